//! Editing attribute trees by path. The host applies a plugin's change with
//! these functions and pushes it to clients, which apply it to their copy
//! with the same functions: both sides follow one set of rules.
//!
//! Rules: `set` creates missing map entries on the way (as maps) and may
//! replace a list element that exists; `append` also creates the list
//! itself; `delete` of something absent is not an error, and deleting a list
//! element shifts the rest down.

use rmpv::Value;

use crate::PathSegment;

/// The most steps a path may have, the attribute's name included. Edits
/// with longer paths are refused: each step can make a level of nesting,
/// and a tree nested without bound overflows the stack of whoever drops,
/// encodes or walks it (the host's game thread, a client).
pub const MAX_PATH: usize = 32;

fn check_len<S>(path: &[S]) -> Result<(), String> {
    if path.len() > MAX_PATH {
        return Err(format!(
            "a path of {} steps is longer than the limit of {MAX_PATH}",
            path.len()
        ));
    }
    Ok(())
}

/// One step of a path, whatever type carries it.
pub trait Segment {
    /// The map key, if this step is one.
    fn key(&self) -> Option<&str>;
    /// The list index, if this step is one.
    fn index(&self) -> Option<u32>;
}

impl Segment for PathSegment {
    fn key(&self) -> Option<&str> {
        match self {
            PathSegment::Key(k) => Some(k),
            PathSegment::Index(_) => None,
        }
    }
    fn index(&self) -> Option<u32> {
        match self {
            PathSegment::Index(i) => Some(*i),
            PathSegment::Key(_) => None,
        }
    }
}

/// The value at `path` under `root`.
pub fn get<'v, S: Segment>(root: &'v Value, path: &[S]) -> Option<&'v Value> {
    path.iter().try_fold(root, |v, seg| child(v, seg))
}

/// Sets the value at `path` (replacing `root` itself for an empty path).
/// A set that fails changes nothing.
pub fn set<S: Segment>(root: &mut Value, path: &[S], value: Value) -> Result<(), String> {
    check_len(path)?;
    let Some((last, parents)) = path.split_last() else {
        *root = value;
        return Ok(());
    };
    // Find any error before creating anything on the way: the host sends
    // clients only the edits that succeed, so a failed one must leave the
    // tree as it was, or the host's copy and the clients' would differ.
    match (check_walk(root, parents)?, last.key(), last.index()) {
        (None | Some(Value::Nil) | Some(Value::Map(_)), Some(_), _) => {}
        (Some(Value::Array(items)), _, Some(i)) if (i as usize) < items.len() => {}
        (Some(Value::Array(items)), _, Some(i)) => {
            return Err(format!(
                "index {i} is past the end of a list of {}",
                items.len()
            ))
        }
        (None, _, _) => return Err(mismatch(&Value::Map(Vec::new()), last)),
        (Some(other), _, _) => return Err(mismatch(other, last)),
    }
    let parent = walk_creating(root, parents, false)?;
    if parent.is_nil() && last.key().is_some() {
        *parent = Value::Map(Vec::new());
    }
    match (parent, last.key(), last.index()) {
        (Value::Map(entries), Some(k), _) => {
            match entries.iter_mut().find(|(key, _)| key.as_str() == Some(k)) {
                Some((_, v)) => *v = value,
                None => entries.push((Value::from(k), value)),
            }
            Ok(())
        }
        (Value::Array(items), _, Some(i)) => {
            let len = items.len();
            let item = items
                .get_mut(i as usize)
                .ok_or_else(|| format!("index {i} is past the end of a list of {len}"))?;
            *item = value;
            Ok(())
        }
        (other, _, _) => Err(mismatch(other, last)),
    }
}

/// Removes the value at `path`; absent values are not an error. An empty
/// path clears `root` to nil.
pub fn delete<S: Segment>(root: &mut Value, path: &[S]) -> Result<(), String> {
    check_len(path)?;
    let Some((last, parents)) = path.split_last() else {
        *root = Value::Nil;
        return Ok(());
    };
    let mut parent = root;
    for seg in parents {
        match child_mut(parent, seg) {
            Some(next) => parent = next,
            None => return Ok(()),
        }
    }
    match (parent, last.key(), last.index()) {
        (Value::Map(entries), Some(k), _) => entries.retain(|(key, _)| key.as_str() != Some(k)),
        (Value::Array(items), _, Some(i)) => {
            if (i as usize) < items.len() {
                items.remove(i as usize);
            }
        }
        (Value::Nil, _, _) => {}
        (other, _, _) => return Err(mismatch(other, last)),
    }
    Ok(())
}

/// Appends `value` to the list at `path`, creating the list (and maps on the
/// way) if absent. An append that fails changes nothing.
pub fn append<S: Segment>(root: &mut Value, path: &[S], value: Value) -> Result<(), String> {
    check_len(path)?;
    // As in `set`: refuse before creating anything.
    match check_walk(root, path)? {
        None | Some(Value::Array(_)) => {}
        Some(Value::Nil) if path.is_empty() => {}
        Some(other) => return Err(format!("cannot append to a {}", kind(other))),
    }
    if root.is_nil() {
        *root = if path.is_empty() {
            Value::Array(Vec::new())
        } else {
            Value::Map(Vec::new())
        };
    }
    match walk_creating(root, path, true)? {
        Value::Array(items) => {
            items.push(value);
            Ok(())
        }
        other => Err(format!("cannot append to a {}", kind(other))),
    }
}

fn child<'v, S: Segment>(v: &'v Value, seg: &S) -> Option<&'v Value> {
    match (v, seg.key(), seg.index()) {
        (Value::Map(entries), Some(k), _) => entries
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v),
        (Value::Array(items), _, Some(i)) => items.get(i as usize),
        _ => None,
    }
}

fn child_mut<'v, S: Segment>(v: &'v mut Value, seg: &S) -> Option<&'v mut Value> {
    match (v, seg.key(), seg.index()) {
        (Value::Map(entries), Some(k), _) => entries
            .iter_mut()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v),
        (Value::Array(items), _, Some(i)) => items.get_mut(i as usize),
        _ => None,
    }
}

/// Follows `path` as [`walk_creating`] would, without changing anything:
/// the value it would end at, `None` if it would create it, or the error it
/// would meet. Nil and missing entries become maps on the way, so only keys
/// can follow them.
fn check_walk<'v, S: Segment>(root: &'v Value, path: &[S]) -> Result<Option<&'v Value>, String> {
    let mut v = Some(root);
    for seg in path {
        v = match (v, seg.key(), seg.index()) {
            (None | Some(Value::Nil), Some(_), _) => None,
            (None | Some(Value::Nil), _, _) => return Err(mismatch(&Value::Map(Vec::new()), seg)),
            (Some(Value::Map(entries)), Some(k), _) => entries
                .iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v),
            (Some(Value::Array(items)), _, Some(i)) => {
                Some(items.get(i as usize).ok_or_else(|| {
                    format!("index {i} is past the end of a list of {}", items.len())
                })?)
            }
            (Some(other), _, _) => return Err(mismatch(other, seg)),
        };
    }
    Ok(v)
}

/// Walks `path`, creating missing map entries: as maps, except the last one
/// when `last_is_list`.
fn walk_creating<'v, S: Segment>(
    mut v: &'v mut Value,
    path: &[S],
    last_is_list: bool,
) -> Result<&'v mut Value, String> {
    for (n, seg) in path.iter().enumerate() {
        let make_list = last_is_list && n + 1 == path.len();
        if v.is_nil() {
            *v = Value::Map(Vec::new());
        }
        v = match (v, seg.key(), seg.index()) {
            (Value::Map(entries), Some(k), _) => {
                let pos = match entries.iter().position(|(key, _)| key.as_str() == Some(k)) {
                    Some(p) => p,
                    None => {
                        let fresh = if make_list {
                            Value::Array(Vec::new())
                        } else {
                            Value::Map(Vec::new())
                        };
                        entries.push((Value::from(k), fresh));
                        entries.len() - 1
                    }
                };
                &mut entries[pos].1
            }
            (Value::Array(items), _, Some(i)) => {
                let len = items.len();
                items
                    .get_mut(i as usize)
                    .ok_or_else(|| format!("index {i} is past the end of a list of {len}"))?
            }
            (other, _, _) => return Err(mismatch(other, seg)),
        };
    }
    Ok(v)
}

fn mismatch<S: Segment>(v: &Value, seg: &S) -> String {
    match (seg.key(), seg.index()) {
        (Some(k), _) => format!("cannot use key {k:?} on a {}", kind(v)),
        (_, Some(i)) => format!("cannot use index {i} on a {}", kind(v)),
        _ => format!("invalid path step on a {}", kind(v)),
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
        let mut root = Value::Nil;
        set(&mut root, &[key("top")], Value::from(1)).unwrap();
        assert_eq!(get(&root, &[key("top")]), Some(&Value::from(1)));
        set(&mut root, &[key("rooms"), key("lobby")], Value::from(3)).unwrap();
        assert_eq!(
            get(&root, &[key("rooms"), key("lobby")]),
            Some(&Value::from(3))
        );
        delete(&mut root, &[key("rooms"), key("lobby")]).unwrap();
        assert_eq!(get(&root, &[key("rooms"), key("lobby")]), None);
        delete(&mut root, &[key("nope"), key("deeper")]).unwrap();
    }

    #[test]
    fn lists_append_index_and_shift_on_delete() {
        let mut root = Value::Nil;
        for i in 0..3 {
            append(&mut root, &[key("log")], Value::from(i)).unwrap();
        }
        set(
            &mut root,
            &[key("log"), PathSegment::Index(1)],
            Value::from("x"),
        )
        .unwrap();
        assert!(set(&mut root, &[key("log"), PathSegment::Index(9)], Value::Nil).is_err());
        delete(&mut root, &[key("log"), PathSegment::Index(0)]).unwrap();
        assert_eq!(
            get(&root, &[key("log")]),
            Some(&Value::Array(vec![Value::from("x"), Value::from(2)]))
        );
    }

    /// Found by fuzzing (`fuzz/corpus/attr_paths`): a failed edit created
    /// the maps on its way, so the host's tree (which sends clients only the
    /// edits that succeed) and its clients' differed.
    #[test]
    fn a_failed_edit_changes_nothing() {
        let mut root = Value::Map(vec![(Value::from("hp"), Value::from(1))]);
        let before = root.clone();
        let i = PathSegment::Index(2);
        assert!(set(&mut root, &[key("inv"), i.clone()], Value::Nil).is_err());
        assert!(set(
            &mut root,
            &[key("a"), key("b"), i.clone(), key("c")],
            Value::Nil
        )
        .is_err());
        assert!(append(&mut root, &[key("a"), i.clone()], Value::Nil).is_err());
        assert!(append(&mut root, &[key("hp"), key("x")], Value::Nil).is_err());
        assert_eq!(root, before);
        let mut nil = Value::Nil;
        assert!(append(&mut nil, &[i], Value::Nil).is_err());
        assert_eq!(nil, Value::Nil);
    }

    /// Found by fuzzing: a path of thousands of steps made a tree nested as
    /// deep, which overflowed the stack when dropped (a plugin could crash
    /// the host this way, and a server any client).
    #[test]
    fn long_paths_are_refused() {
        let deep: Vec<PathSegment> = (0..=MAX_PATH).map(|i| key(&i.to_string())).collect();
        let mut root = Value::Nil;
        assert!(set(&mut root, &deep, Value::Nil).is_err());
        assert!(append(&mut root, &deep, Value::Nil).is_err());
        assert!(delete(&mut root, &deep).is_err());
        assert_eq!(root, Value::Nil);
        assert!(set(&mut root, &deep[..MAX_PATH], Value::Nil).is_ok());
    }

    #[test]
    fn type_mismatch_is_an_error() {
        let mut root = Value::from(5);
        assert!(set(&mut root, &[key("k")], Value::Nil).is_err());
        assert!(append(&mut root, &[] as &[PathSegment], Value::Nil).is_err());
    }
}
