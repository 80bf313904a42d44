//! An entity's attributes: one MessagePack tree per declared attribute,
//! edited by path with the protocol's rules (`wyrm_protocol::attr`), which
//! clients apply to their copies too. Attributes belong to the host, so a
//! plugin crash or swap never touches them.

use rmpv::Value;
use wyrm_protocol::attr;

use wyrm_runtime::bindings::PathSegment;

/// The attributes of one entity, indexed like its type's attribute list.
/// An unset attribute is nil.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    values: Vec<Value>,
}

impl Attrs {
    /// Room for `n` declared attributes, all unset.
    pub fn new(n: usize) -> Self {
        Self {
            values: vec![Value::Nil; n],
        }
    }

    /// The value of attribute `index`, if set.
    pub fn top(&self, index: usize) -> Option<&Value> {
        self.values.get(index).filter(|v| !v.is_nil())
    }

    /// The value at `rest` inside attribute `index`.
    pub fn get(&self, index: usize, rest: &[PathSegment]) -> Option<&Value> {
        attr::get(self.top(index)?, rest).filter(|v| !v.is_nil())
    }

    /// Sets the value at `rest` inside attribute `index`.
    pub fn set(&mut self, index: usize, rest: &[PathSegment], value: Value) -> Result<(), String> {
        attr::set(self.slot(index)?, rest, value)
    }

    /// Removes the value at `rest` inside attribute `index`.
    pub fn delete(&mut self, index: usize, rest: &[PathSegment]) -> Result<(), String> {
        attr::delete(self.slot(index)?, rest)
    }

    /// Appends to the list at `rest` inside attribute `index`.
    pub fn append(
        &mut self,
        index: usize,
        rest: &[PathSegment],
        value: Value,
    ) -> Result<(), String> {
        attr::append(self.slot(index)?, rest, value)
    }

    fn slot(&mut self, index: usize) -> Result<&mut Value, String> {
        self.values
            .get_mut(index)
            .ok_or_else(|| "attribute index out of range".to_string())
    }
}

impl Attrs {
    /// Moves values to new indices after the type's declaration changed:
    /// `map[old] = new`, `len` the new number of attributes.
    pub fn remap(&mut self, map: &[usize], len: usize) {
        let mut values = vec![Value::Nil; len];
        for (old, v) in std::mem::take(&mut self.values).into_iter().enumerate() {
            if let Some(&new) = map.get(old) {
                values[new] = v;
            }
        }
        self.values = values;
    }
}
