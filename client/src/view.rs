//! The client's local view of the entities it can see, and how `Attr` frames
//! update it.

use rmpv::Value;
use wyrm_protocol::{attr, AttrOp, PathSegment};

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
    /// by applying `Attr` frames. (Where it is: [`Client::position_of`].)
    ///
    /// [`Client::position_of`]: crate::Client::position_of
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
    attr::get(root, path)
}

/// Applies one `Attr` operation to an attribute tree, by the same rules the
/// server used to make the change (`wyrm_protocol::attr`, described in
/// `docs/protocol.md`). `value` is `None` only for [`AttrOp::Delete`].
pub fn apply_attr(
    root: &mut Value,
    op: AttrOp,
    path: &[PathSegment],
    value: Option<Value>,
) -> Result<(), String> {
    let at = || format_path(path);
    match (op, value) {
        (AttrOp::Set, Some(v)) => attr::set(root, path, v),
        (AttrOp::Append, Some(v)) => attr::append(root, path, v),
        (AttrOp::Delete, None) => attr::delete(root, path),
        (AttrOp::Delete, Some(_)) => Err(format!("Delete at {} carries a value", at())),
        (op, None) => Err(format!("{op:?} at {} without a value", at())),
    }
    .map_err(|e| format!("{op:?} at {}: {e}", at()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> PathSegment {
        PathSegment::Key(k.to_owned())
    }

    #[test]
    fn applies_set_append_delete() {
        let mut v = Value::Map(vec![]);
        apply_attr(&mut v, AttrOp::Set, &[key("hp")], Some(Value::from(7))).unwrap();
        apply_attr(
            &mut v,
            AttrOp::Append,
            &[key("log")],
            Some(Value::from("a")),
        )
        .unwrap();
        apply_attr(
            &mut v,
            AttrOp::Append,
            &[key("log")],
            Some(Value::from("b")),
        )
        .unwrap();
        apply_attr(
            &mut v,
            AttrOp::Delete,
            &[key("log"), PathSegment::Index(0)],
            None,
        )
        .unwrap();
        assert_eq!(get(&v, &[key("hp")]), Some(&Value::from(7)));
        assert_eq!(
            get(&v, &[key("log")]),
            Some(&Value::Array(vec![Value::from("b")]))
        );
    }

    #[test]
    fn ops_without_their_value_are_errors() {
        let mut v = Value::Map(vec![]);
        assert!(apply_attr(&mut v, AttrOp::Set, &[key("hp")], None).is_err());
        assert!(apply_attr(&mut v, AttrOp::Delete, &[key("hp")], Some(Value::Nil)).is_err());
        let err = apply_attr(
            &mut v,
            AttrOp::Append,
            &[key("hp"), PathSegment::Index(2)],
            Some(Value::Nil),
        )
        .unwrap_err();
        assert!(err.contains("/hp/2"), "{err}");
    }

    #[test]
    fn paths_format_readably() {
        assert_eq!(format_path(&[]), "/");
        assert_eq!(format_path(&[key("bag"), PathSegment::Index(3)]), "/bag/3");
    }
}
