//! Attribute values: a MessagePack tree per top-level attribute, edited by
//! path. Attributes belong to the host, so a plugin crash or swap never
//! touches them.

use rmpv::Value;

use crate::plugin::bindings::PathSegment;

/// The attributes of one entity, indexed like its type's attribute list.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    values: Vec<Option<Value>>,
}

impl Attrs {
    /// Room for `n` declared attributes, all unset.
    pub fn new(n: usize) -> Self {
        Self {
            values: vec![None; n],
        }
    }

    /// The value of attribute `index`.
    pub fn top(&self, index: usize) -> Option<&Value> {
        self.values.get(index).and_then(Option::as_ref)
    }

    /// The value at `rest` inside attribute `index`.
    pub fn get(&self, index: usize, rest: &[PathSegment]) -> Option<&Value> {
        let mut v = self.top(index)?;
        for seg in rest {
            v = child(v, seg)?;
        }
        Some(v)
    }

    /// Sets the value at `rest` inside attribute `index`; intermediate map
    /// keys are created, list indices must exist.
    pub fn set(&mut self, index: usize, rest: &[PathSegment], value: Value) -> Result<(), String> {
        let slot = self.slot(index)?;
        let Some((last, parents)) = rest.split_last() else {
            *slot = Some(value);
            return Ok(());
        };
        let root = slot.get_or_insert_with(|| Value::Map(Vec::new()));
        let parent = walk_creating(root, parents)?;
        match (parent, last) {
            (Value::Map(entries), PathSegment::Key(k)) => {
                match entries.iter_mut().find(|(key, _)| key.as_str() == Some(k)) {
                    Some((_, v)) => *v = value,
                    None => entries.push((Value::from(k.as_str()), value)),
                }
                Ok(())
            }
            (Value::Array(items), PathSegment::Index(i)) => {
                let len = items.len();
                let item = items
                    .get_mut(*i as usize)
                    .ok_or_else(|| format!("index {i} is past the end of a list of {len}"))?;
                *item = value;
                Ok(())
            }
            (other, seg) => Err(mismatch(other, seg)),
        }
    }

    /// Removes the value at `rest` inside attribute `index` (the whole
    /// attribute if `rest` is empty). Removing what is absent is not an error.
    pub fn delete(&mut self, index: usize, rest: &[PathSegment]) -> Result<(), String> {
        let slot = self.slot(index)?;
        let Some((last, parents)) = rest.split_last() else {
            *slot = None;
            return Ok(());
        };
        let Some(mut parent) = slot.as_mut() else {
            return Ok(());
        };
        for seg in parents {
            match child_mut(parent, seg) {
                Some(next) => parent = next,
                None => return Ok(()),
            }
        }
        match (parent, last) {
            (Value::Map(entries), PathSegment::Key(k)) => entries.retain(|(key, _)| key.as_str() != Some(k)),
            (Value::Array(items), PathSegment::Index(i)) => {
                if (*i as usize) < items.len() {
                    items.remove(*i as usize);
                }
            }
            (other, seg) => return Err(mismatch(other, seg)),
        }
        Ok(())
    }

    /// Appends to the list at `rest` inside attribute `index`, creating it.
    pub fn append(&mut self, index: usize, rest: &[PathSegment], value: Value) -> Result<(), String> {
        let slot = self.slot(index)?;
        let root = slot.get_or_insert_with(|| {
            if rest.is_empty() {
                Value::Array(Vec::new())
            } else {
                Value::Map(Vec::new())
            }
        });
        let target = walk_creating_list(root, rest)?;
        match target {
            Value::Array(items) => {
                items.push(value);
                Ok(())
            }
            other => Err(format!("cannot append to a {}", kind(other))),
        }
    }

    fn slot(&mut self, index: usize) -> Result<&mut Option<Value>, String> {
        self.values
            .get_mut(index)
            .ok_or_else(|| "attribute index out of range".to_string())
    }
}

fn child<'v>(v: &'v Value, seg: &PathSegment) -> Option<&'v Value> {
    match (v, seg) {
        (Value::Map(entries), PathSegment::Key(k)) => entries.iter().find(|(key, _)| key.as_str() == Some(k)).map(|(_, v)| v),
        (Value::Array(items), PathSegment::Index(i)) => items.get(*i as usize),
        _ => None,
    }
}

fn child_mut<'v>(v: &'v mut Value, seg: &PathSegment) -> Option<&'v mut Value> {
    match (v, seg) {
        (Value::Map(entries), PathSegment::Key(k)) => entries.iter_mut().find(|(key, _)| key.as_str() == Some(k)).map(|(_, v)| v),
        (Value::Array(items), PathSegment::Index(i)) => items.get_mut(*i as usize),
        _ => None,
    }
}

/// Walks `path` from `v`, creating missing map entries as maps.
fn walk_creating<'v>(mut v: &'v mut Value, path: &[PathSegment]) -> Result<&'v mut Value, String> {
    for seg in path {
        v = step_creating(v, seg, || Value::Map(Vec::new()))?;
    }
    Ok(v)
}

/// Like [`walk_creating`], but the last step creates a list.
fn walk_creating_list<'v>(mut v: &'v mut Value, path: &[PathSegment]) -> Result<&'v mut Value, String> {
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        v = step_creating(v, seg, || if last { Value::Array(Vec::new()) } else { Value::Map(Vec::new()) })?;
    }
    Ok(v)
}

fn step_creating<'v>(v: &'v mut Value, seg: &PathSegment, make: impl FnOnce() -> Value) -> Result<&'v mut Value, String> {
    match (v, seg) {
        (Value::Map(entries), PathSegment::Key(k)) => {
            let pos = match entries.iter().position(|(key, _)| key.as_str() == Some(k)) {
                Some(p) => p,
                None => {
                    entries.push((Value::from(k.as_str()), make()));
                    entries.len() - 1
                }
            };
            Ok(&mut entries[pos].1)
        }
        (Value::Array(items), PathSegment::Index(i)) => {
            let len = items.len();
            items
                .get_mut(*i as usize)
                .ok_or_else(|| format!("index {i} is past the end of a list of {len}"))
        }
        (other, seg) => Err(mismatch(other, seg)),
    }
}

fn mismatch(v: &Value, seg: &PathSegment) -> String {
    match seg {
        PathSegment::Key(k) => format!("cannot use key {k:?} on a {}", kind(v)),
        PathSegment::Index(i) => format!("cannot use index {i} on a {}", kind(v)),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "integer",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "list",
        Value::Map(_) => "map",
        Value::Ext(..) => "extension value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> PathSegment {
        PathSegment::Key(k.into())
    }

    #[test]
    fn set_get_delete_nested() {
        let mut a = Attrs::new(1);
        a.set(0, &[key("rooms"), key("lobby")], Value::from(3)).unwrap();
        assert_eq!(a.get(0, &[key("rooms"), key("lobby")]), Some(&Value::from(3)));
        a.delete(0, &[key("rooms"), key("lobby")]).unwrap();
        assert_eq!(a.get(0, &[key("rooms"), key("lobby")]), None);
        // deleting what is absent is fine
        a.delete(0, &[key("nope"), key("deeper")]).unwrap();
    }

    #[test]
    fn lists_append_index_and_shift_on_delete() {
        let mut a = Attrs::new(1);
        for i in 0..3 {
            a.append(0, &[], Value::from(i)).unwrap();
        }
        a.set(0, &[PathSegment::Index(1)], Value::from("x")).unwrap();
        assert!(a.set(0, &[PathSegment::Index(9)], Value::Nil).is_err());
        a.delete(0, &[PathSegment::Index(0)]).unwrap();
        assert_eq!(a.top(0), Some(&Value::Array(vec![Value::from("x"), Value::from(2)])));
    }

    #[test]
    fn type_mismatch_is_an_error() {
        let mut a = Attrs::new(1);
        a.set(0, &[], Value::from(5)).unwrap();
        assert!(a.set(0, &[key("k")], Value::Nil).is_err());
        assert!(a.append(0, &[], Value::Nil).is_err());
    }
}
