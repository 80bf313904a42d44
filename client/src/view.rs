//! The client's local view of the entities it can see, and how `Attr` frames
//! update it.

use rmpv::Value;
use wyrm_protocol::{AttrOp, PathSegment};

/// What this client knows about one entity it can see.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityView {
    /// The entity's id.
    pub id: u64,
    /// Its type name, as sent in `Create`.
    pub type_name: String,
    /// True for the entity this client is bound to (its player).
    pub own: bool,
    /// The attributes this client may see: a MessagePack map, kept up to date
    /// by applying `Attr` frames.
    pub attrs: Value,
}

impl EntityView {
    /// The top-level attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        get(&self.attrs, &[PathSegment::Key(key.to_owned())])
    }

    /// The value at `path` inside the attributes, if present.
    pub fn attr_at(&self, path: &[PathSegment]) -> Option<&Value> {
        get(&self.attrs, path)
    }
}

/// The value at `path` under `root`.
pub fn get<'a>(root: &'a Value, path: &[PathSegment]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, seg| match (v, seg) {
        (Value::Map(entries), PathSegment::Key(k)) => entries
            .iter()
            .find(|(ek, _)| ek.as_str() == Some(k))
            .map(|(_, ev)| ev),
        (Value::Array(items), PathSegment::Index(i)) => items.get(*i as usize),
        _ => None,
    })
}

fn get_mut<'a>(root: &'a mut Value, path: &[PathSegment]) -> Result<&'a mut Value, String> {
    let mut cur = root;
    for (depth, seg) in path.iter().enumerate() {
        let here = || format_path(&path[..=depth]);
        cur = match (cur, seg) {
            (Value::Map(entries), PathSegment::Key(k)) => entries
                .iter_mut()
                .find(|(ek, _)| ek.as_str() == Some(k))
                .map(|(_, ev)| ev)
                .ok_or_else(|| format!("no key at {}", here()))?,
            (Value::Array(items), PathSegment::Index(i)) => {
                let len = items.len();
                items
                    .get_mut(*i as usize)
                    .ok_or_else(|| format!("index out of range at {} (length {len})", here()))?
            }
            (v, _) => {
                return Err(format!(
                    "{} steps into a {}, not a {}",
                    here(),
                    kind(v),
                    match seg {
                        PathSegment::Key(_) => "map",
                        PathSegment::Index(_) => "list",
                    }
                ))
            }
        };
    }
    Ok(cur)
}

/// Applies one `Attr` operation to an attribute tree. `value` is `None` only
/// for [`AttrOp::Delete`]. The rules are those of `docs/protocol.md`:
///
/// - `Set` at an empty path replaces the whole tree. Otherwise every segment
///   but the last must exist; the last one may name a new map key, an
///   existing list index, or the index one past the end (which appends).
/// - `Delete` removes a map key (a missing key is not an error) or a list
///   element (later elements shift down). Its path is never empty.
/// - `Append` pushes onto the list at the path, which must exist.
///
/// On error the tree is unchanged.
pub fn apply_attr(
    root: &mut Value,
    op: AttrOp,
    path: &[PathSegment],
    value: Option<Value>,
) -> Result<(), String> {
    let need_value = || format!("{op:?} without a value");
    match op {
        AttrOp::Append => {
            let value = value.ok_or_else(need_value)?;
            match get_mut(root, path)? {
                Value::Array(items) => {
                    items.push(value);
                    Ok(())
                }
                other => Err(format!(
                    "Append at {} targets a {}, not a list",
                    format_path(path),
                    kind(other)
                )),
            }
        }
        AttrOp::Set | AttrOp::Delete => {
            let Some((last, parent_path)) = path.split_last() else {
                return match op {
                    AttrOp::Set => {
                        *root = value.ok_or_else(need_value)?;
                        Ok(())
                    }
                    _ => Err("Delete with an empty path".to_owned()),
                };
            };
            let parent = get_mut(root, parent_path)?;
            let at = || format_path(path);
            match (parent, last, op) {
                (Value::Map(entries), PathSegment::Key(k), AttrOp::Set) => {
                    let value = value.ok_or_else(need_value)?;
                    match entries.iter_mut().find(|(ek, _)| ek.as_str() == Some(k)) {
                        Some((_, slot)) => *slot = value,
                        None => entries.push((Value::from(k.as_str()), value)),
                    }
                    Ok(())
                }
                (Value::Map(entries), PathSegment::Key(k), _) => {
                    entries.retain(|(ek, _)| ek.as_str() != Some(k));
                    Ok(())
                }
                (Value::Array(items), PathSegment::Index(i), AttrOp::Set) => {
                    let value = value.ok_or_else(need_value)?;
                    let i = *i as usize;
                    match i.cmp(&items.len()) {
                        std::cmp::Ordering::Less => items[i] = value,
                        std::cmp::Ordering::Equal => items.push(value),
                        std::cmp::Ordering::Greater => {
                            return Err(format!(
                                "Set at {} is past the end (length {})",
                                at(),
                                items.len()
                            ))
                        }
                    }
                    Ok(())
                }
                (Value::Array(items), PathSegment::Index(i), _) => {
                    let i = *i as usize;
                    if i < items.len() {
                        items.remove(i);
                        Ok(())
                    } else {
                        Err(format!(
                            "Delete at {} is out of range (length {})",
                            at(),
                            items.len()
                        ))
                    }
                }
                (parent, seg, _) => Err(format!(
                    "{op:?} at {}: the parent is a {}, which has no {}",
                    at(),
                    kind(parent),
                    match seg {
                        PathSegment::Key(_) => "keys",
                        PathSegment::Index(_) => "indices",
                    }
                )),
            }
        }
    }
}

/// A path as text: `/inventory/3/name`; the empty path is `/`.
pub fn format_path(path: &[PathSegment]) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut s = String::new();
    for seg in path {
        s.push('/');
        match seg {
            PathSegment::Key(k) => s.push_str(k),
            PathSegment::Index(i) => s.push_str(&i.to_string()),
        }
    }
    s
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
        Value::Ext(..) => "ext",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> PathSegment {
        PathSegment::Key(k.to_owned())
    }

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    }

    fn sample() -> Value {
        map(vec![
            ("name", Value::from("ann")),
            ("hp", Value::from(10)),
            (
                "bag",
                Value::Array(vec![
                    map(vec![("item", Value::from("sword"))]),
                    map(vec![("item", Value::from("shield"))]),
                ]),
            ),
        ])
    }

    #[test]
    fn set_replaces_and_inserts_keys() {
        let mut v = sample();
        apply_attr(&mut v, AttrOp::Set, &[key("hp")], Some(Value::from(7))).unwrap();
        apply_attr(
            &mut v,
            AttrOp::Set,
            &[key("room")],
            Some(Value::from("lobby")),
        )
        .unwrap();
        assert_eq!(get(&v, &[key("hp")]), Some(&Value::from(7)));
        assert_eq!(get(&v, &[key("room")]), Some(&Value::from("lobby")));
        assert_eq!(v.as_map().unwrap().len(), 4);
    }

    #[test]
    fn set_nested_in_list() {
        let mut v = sample();
        let p = [key("bag"), PathSegment::Index(1), key("item")];
        apply_attr(&mut v, AttrOp::Set, &p, Some(Value::from("bow"))).unwrap();
        assert_eq!(get(&v, &p), Some(&Value::from("bow")));
        // Index == len appends; past the end is an error.
        let bag = [key("bag"), PathSegment::Index(2)];
        apply_attr(&mut v, AttrOp::Set, &bag, Some(Value::Nil)).unwrap();
        let past = [key("bag"), PathSegment::Index(9)];
        assert!(apply_attr(&mut v, AttrOp::Set, &past, Some(Value::Nil)).is_err());
        assert_eq!(get(&v, &[key("bag")]).unwrap().as_array().unwrap().len(), 3);
    }

    #[test]
    fn set_empty_path_replaces_root() {
        let mut v = sample();
        apply_attr(&mut v, AttrOp::Set, &[], Some(map(vec![]))).unwrap();
        assert_eq!(v, map(vec![]));
    }

    #[test]
    fn delete_keys_and_indices() {
        let mut v = sample();
        apply_attr(&mut v, AttrOp::Delete, &[key("hp")], None).unwrap();
        assert_eq!(get(&v, &[key("hp")]), None);
        // Deleting a missing key is fine.
        apply_attr(&mut v, AttrOp::Delete, &[key("hp")], None).unwrap();
        apply_attr(
            &mut v,
            AttrOp::Delete,
            &[key("bag"), PathSegment::Index(0)],
            None,
        )
        .unwrap();
        assert_eq!(
            get(&v, &[key("bag"), PathSegment::Index(0), key("item")]),
            Some(&Value::from("shield"))
        );
        assert!(apply_attr(
            &mut v,
            AttrOp::Delete,
            &[key("bag"), PathSegment::Index(5)],
            None
        )
        .is_err());
        assert!(apply_attr(&mut v, AttrOp::Delete, &[], None).is_err());
    }

    #[test]
    fn append_pushes_onto_lists_only() {
        let mut v = sample();
        apply_attr(
            &mut v,
            AttrOp::Append,
            &[key("bag")],
            Some(Value::from("rope")),
        )
        .unwrap();
        assert_eq!(
            get(&v, &[key("bag"), PathSegment::Index(2)]),
            Some(&Value::from("rope"))
        );
        let err = apply_attr(&mut v, AttrOp::Append, &[key("hp")], Some(Value::Nil)).unwrap_err();
        assert!(err.contains("not a list"), "{err}");
        let err = apply_attr(&mut v, AttrOp::Append, &[key("nope")], Some(Value::Nil)).unwrap_err();
        assert!(err.contains("no key at /nope"), "{err}");
    }

    #[test]
    fn type_mismatches_are_errors_and_leave_tree_unchanged() {
        let mut v = sample();
        let before = v.clone();
        assert!(apply_attr(
            &mut v,
            AttrOp::Set,
            &[key("name"), key("x")],
            Some(Value::Nil)
        )
        .is_err());
        assert!(apply_attr(
            &mut v,
            AttrOp::Set,
            &[PathSegment::Index(0)],
            Some(Value::Nil)
        )
        .is_err());
        assert!(apply_attr(
            &mut v,
            AttrOp::Set,
            &[key("bag"), key("x")],
            Some(Value::Nil)
        )
        .is_err());
        assert!(apply_attr(&mut v, AttrOp::Set, &[key("hp")], None).is_err());
        assert_eq!(v, before);
    }

    #[test]
    fn paths_format_readably() {
        assert_eq!(format_path(&[]), "/");
        assert_eq!(
            format_path(&[key("bag"), PathSegment::Index(3), key("item")]),
            "/bag/3/item"
        );
    }
}
