//! What the server tells a client, with MessagePack already decoded.

use std::fmt;

use rmpv::Value;
use serde::de::DeserializeOwned;
use wyrm_protocol::{AttrOp, ErrorCode, PathSegment};

use crate::{view::format_path, ClientError};

/// One thing the server said. Mirrors the server frames, except `Welcome`
/// (consumed by [`Client::connect`](crate::Client::connect)).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The client now sees `entity`. `own` marks the entity this client is
    /// bound to. `attrs` is a MessagePack map.
    Created {
        entity: u64,
        type_name: String,
        own: bool,
        attrs: Value,
    },
    /// The client no longer sees `entity`.
    Destroyed { entity: u64 },
    /// The server called `method` on the client's view of `entity`. `args`
    /// is normally an array of positional arguments; decode it with
    /// [`from_value`].
    Call {
        entity: u64,
        method: String,
        args: Value,
    },
    /// An attribute of `entity` changed; already applied to the local view.
    /// `value` is `None` for [`AttrOp::Delete`].
    Attr {
        entity: u64,
        op: AttrOp,
        path: Vec<PathSegment>,
        value: Option<Value>,
    },
    /// A request failed (`req_id` is the one [`Client::call`] returned) or,
    /// with `req_id` 0, the server reports a problem not tied to a request,
    /// typically just before it closes the connection.
    ///
    /// [`Client::call`]: crate::Client::call
    Error {
        req_id: u32,
        code: ErrorCode,
        /// The numeric code as sent (meaningful when `code` is `Unknown`).
        code_num: u16,
        message: String,
    },
    /// Answer to [`Client::ping`](crate::Client::ping).
    Pong { nonce: u64 },
    /// The server starts this client's view over: every entity and
    /// position it had is forgotten (already done to the local view), and
    /// `Created` events follow, the client's own entity first. Sent when
    /// the entity came back on another game after the one that ran it
    /// died; the connection and the session go on.
    ViewReset,
    /// Where entities this client sees are now (those that moved since the
    /// server's last tick, or one that just came into view); already applied
    /// to the local view.
    Positions(Vec<wyrm_protocol::EntityPosition>),
    /// The connection ended. Reported once; later reads fail with
    /// [`ClientError::Closed`].
    Closed,
}

impl Event {
    /// For a `Call` event, its arguments decoded as `T`; `None` for any other
    /// event.
    pub fn call_args<T: DeserializeOwned>(&self) -> Option<Result<T, ClientError>> {
        match self {
            Event::Call { method, args, .. } => Some(decode_named(args, method)),
            _ => None,
        }
    }
}

/// Decodes a MessagePack value (for example a call's `args` array) as `T`,
/// the way `rmp_serde` would decode the same bytes: tuples and structs read
/// arrays, maps read maps.
///
/// ```
/// let v = rmpv::Value::Array(vec!["ann".into(), 3.into()]);
/// let (name, n): (String, u32) = wyrm_client::from_value(&v).unwrap();
/// assert_eq!((name.as_str(), n), ("ann", 3));
/// ```
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, ClientError> {
    decode_named(value, "value")
}

pub(crate) fn decode_named<T: DeserializeOwned>(
    value: &Value,
    what: &str,
) -> Result<T, ClientError> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).map_err(|e| ClientError::Deserialize {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    rmp_serde::from_slice(&bytes).map_err(|e| ClientError::Deserialize {
        what: format!("{what} {}", short(value)),
        reason: e.to_string(),
    })
}

/// Decodes exactly one MessagePack value filling all of `bytes`.
pub(crate) fn decode_msgpack(
    bytes: &[u8],
    what: impl Fn() -> String,
) -> Result<Value, ClientError> {
    if bytes.is_empty() {
        return Err(ClientError::payload(
            what(),
            "empty (a MessagePack value is required)",
        ));
    }
    let mut cur = bytes;
    let v = rmpv::decode::read_value(&mut cur).map_err(|e| ClientError::payload(what(), e))?;
    if !cur.is_empty() {
        return Err(ClientError::payload(
            what(),
            format!("{} bytes after the value", cur.len()),
        ));
    }
    Ok(v)
}

/// A value as short text for error messages.
pub(crate) fn short(v: &Value) -> String {
    truncate(v.to_string(), 120)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl fmt::Display for Event {
    /// A one-line summary, used in helper error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Created {
                entity,
                type_name,
                own,
                attrs,
            } => write!(
                f,
                "Created({entity} {type_name}{} {})",
                if *own { " own" } else { "" },
                short(attrs)
            ),
            Event::Destroyed { entity } => write!(f, "Destroyed({entity})"),
            Event::Call {
                entity,
                method,
                args,
            } => write!(f, "Call({entity}.{method} {})", short(args)),
            Event::Attr {
                entity,
                op,
                path,
                value,
            } => {
                write!(f, "Attr({entity} {op:?} {}", format_path(path))?;
                if let Some(v) = value {
                    write!(f, " = {}", short(v))?;
                }
                f.write_str(")")
            }
            Event::Error {
                req_id,
                code,
                code_num,
                message,
            } => write!(f, "Error(req {req_id} {code:?}/{code_num}: {message})"),
            Event::Pong { nonce } => write!(f, "Pong({nonce})"),
            Event::ViewReset => f.write_str("ViewReset"),
            Event::Positions(p) => write!(f, "Positions({} entities)", p.len()),
            Event::Closed => f.write_str("Closed"),
        }
    }
}

/// A bounded list of event summaries for helper error messages.
#[derive(Default)]
pub(crate) struct Seen {
    items: Vec<String>,
    more: usize,
}

impl Seen {
    const MAX: usize = 12;

    pub(crate) fn push(&mut self, e: &Event) {
        if self.items.len() < Self::MAX {
            self.items.push(e.to_string());
        } else {
            self.more += 1;
        }
    }

    pub(crate) fn render(&self) -> String {
        if self.items.is_empty() {
            return "nothing".to_owned();
        }
        let mut s = self.items.join(", ");
        if self.more > 0 {
            s.push_str(&format!(" and {} more", self.more));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_value_reads_tuples_and_structs() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Who {
            room: String,
            names: Vec<String>,
        }
        let v = Value::Array(vec![
            "lobby".into(),
            Value::Array(vec!["ann".into(), "bob".into()]),
        ]);
        let (room, names): (String, Vec<String>) = from_value(&v).unwrap();
        assert_eq!(room, "lobby");
        assert_eq!(names, ["ann", "bob"]);
        let who: Who = from_value(&v).unwrap();
        assert_eq!(who.names.len(), 2);
        let big = Value::Array(vec![Value::from(u64::MAX)]);
        let (n,): (u64,) = from_value(&big).unwrap();
        assert_eq!(n, u64::MAX);
        let err = from_value::<(bool, String)>(&v).unwrap_err();
        assert!(err.to_string().contains("lobby"), "{err}");
    }

    #[test]
    fn msgpack_must_fill_the_payload() {
        assert!(decode_msgpack(&[], || "x".into()).is_err());
        assert!(decode_msgpack(&[0x91, 0x01, 0x02], || "x".into()).is_err());
        assert!(decode_msgpack(&[0x92, 0x01], || "x".into()).is_err());
        assert_eq!(
            decode_msgpack(&[0x91, 0x01], || "x".into()).unwrap(),
            Value::Array(vec![1.into()])
        );
    }

    #[test]
    fn summaries_are_short() {
        let e = Event::Call {
            entity: 1,
            method: "on_chat".into(),
            args: Value::Array(vec![Value::from("x".repeat(500))]),
        };
        let s = e.to_string();
        assert!(s.starts_with("Call(1.on_chat ["), "{s}");
        assert!(s.len() < 200, "{s}");
    }
}
