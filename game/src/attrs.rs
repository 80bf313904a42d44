//! An entity's attributes: one MessagePack tree per declared attribute,
//! edited by path with the protocol's rules (`wyrm_protocol::attr`), which
//! clients apply to their copies too. Attributes belong to the host, so a
//! plugin crash or swap never touches them.

use rmpv::Value;
use wyrm_protocol::attr::{self, Segment};

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
    pub fn get<S: Segment>(&self, index: usize, rest: &[S]) -> Option<&Value> {
        attr::get(self.top(index)?, rest).filter(|v| !v.is_nil())
    }

    /// Sets the value at `rest` inside attribute `index`.
    pub fn set<S: Segment>(
        &mut self,
        index: usize,
        rest: &[S],
        value: Value,
    ) -> Result<(), String> {
        attr::set(self.slot(index)?, rest, value)
    }

    /// Sets attribute `index` as a whole.
    pub fn set_top(&mut self, index: usize, value: Value) -> Result<(), String> {
        *self.slot(index)? = value;
        Ok(())
    }

    /// Removes the value at `rest` inside attribute `index`.
    pub fn delete<S: Segment>(&mut self, index: usize, rest: &[S]) -> Result<(), String> {
        attr::delete(self.slot(index)?, rest)
    }

    /// Appends to the list at `rest` inside attribute `index`.
    pub fn append<S: Segment>(
        &mut self,
        index: usize,
        rest: &[S],
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

#[cfg(test)]
mod tests {
    use wyrm_protocol::PathSegment;

    use super::*;

    fn key(k: &str) -> PathSegment {
        PathSegment::Key(k.into())
    }

    #[test]
    fn attributes_are_edited_by_path_and_survive_a_new_declaration_order() {
        let mut a = Attrs::new(2);
        assert_eq!(a.top(0), None, "unset is nil");
        a.set(0, &[key("hp")], Value::from(10)).unwrap();
        a.append(1, &[key("log")], Value::from("hi")).unwrap();
        a.append(1, &[key("log")], Value::from("there")).unwrap();
        assert_eq!(a.get(0, &[key("hp")]), Some(&Value::from(10)));
        assert_eq!(
            a.get(1, &[key("log"), PathSegment::Index(1)]),
            Some(&Value::from("there"))
        );
        a.delete(1, &[key("log"), PathSegment::Index(0)]).unwrap();
        assert_eq!(
            a.get(1, &[key("log"), PathSegment::Index(0)]),
            Some(&Value::from("there"))
        );
        // A failed edit changes nothing.
        assert!(a
            .set(0, &[key("hp"), key("deeper")], Value::from(1))
            .is_err());
        assert_eq!(a.get(0, &[key("hp")]), Some(&Value::from(10)));
        assert!(a.set(5, &[key("x")], Value::Nil).is_err(), "no attribute 5");
        // The type now declares them the other way round, and one more.
        a.remap(&[1, 0], 3);
        assert_eq!(a.get(1, &[key("hp")]), Some(&Value::from(10)));
        assert!(a.top(0).is_some());
        assert_eq!(a.top(2), None);
    }
}
