//! The encoding of a message between processes: its [`VERSION`] as two
//! bytes, little-endian, then the message in postcard (varints, no field
//! names, no padding). A reader refuses any other version with
//! [`WireError::Version`] rather than misreading it: every process of a
//! deployment runs one Wyrm release.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version of the wire vocabulary. Any change to a message's shape
/// (a field, a variant, an order) makes a new version.
pub const VERSION: u16 = 4;

/// Why bytes did not decode into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Written by a Wyrm of another wire version: run one release across
    /// the deployment.
    #[error("a message of wire version {got}, this process speaks {VERSION}: every process of a deployment must run the same Wyrm release")]
    Version { got: u16 },
    /// Fewer than the two bytes of a version.
    #[error("a message of {0} bytes is too short to hold its version")]
    Short(usize),
    /// The bytes after the version are not a message of the expected type.
    #[error("a malformed message: {0}")]
    Malformed(String),
    /// A message that would not encode (a value serde refuses).
    #[error("a message that cannot be encoded: {0}")]
    Encode(String),
}

/// `msg`, encoded.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    encode_into(msg, &mut out)?;
    Ok(out)
}

/// Appends `msg`, encoded, to `out` (to batch messages in one buffer).
pub fn encode_into<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.extend_from_slice(&VERSION.to_le_bytes());
    let body = std::mem::take(out);
    *out = postcard::to_extend(msg, body).map_err(|e| WireError::Encode(e.to_string()))?;
    Ok(())
}

/// The message `bytes` hold; every byte must belong to it.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (version, body) = match bytes {
        [a, b, body @ ..] => (u16::from_le_bytes([*a, *b]), body),
        _ => return Err(WireError::Short(bytes.len())),
    };
    if version != VERSION {
        return Err(WireError::Version { got: version });
    }
    match postcard::take_from_bytes(body) {
        Ok((msg, [])) => Ok(msg),
        Ok((_, rest)) => Err(WireError::Malformed(format!(
            "{} bytes left over after the message",
            rest.len()
        ))),
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{ClientId, GateBatch, GateId, Position, ToGame, ToGate};

    fn every_message() -> (Vec<ToGame>, GateBatch) {
        let client = ClientId::new(GateId(2), 41);
        let to_game = vec![
            ToGame::ClientConnected { client },
            ToGame::ClientDisconnected { client },
            ToGame::ClientCall {
                client,
                req_id: 7,
                entity: u64::MAX,
                method: "say".into(),
                args: vec![0x91, 0xa2, b'h', b'i'],
            },
            ToGame::ClientMove {
                client,
                pos: Position {
                    x: 1.5,
                    y: -2.0,
                    z: f32::MAX,
                },
                yaw: 0.25,
            },
            ToGame::CreateEntity(Box::new(crate::NewEntity {
                id: 12,
                type_name: "Room".into(),
                attrs: vec![0x81, 0xa1, b'n', 0x01],
                space: Some("lobby".into()),
                creator: Some(2),
            })),
            ToGame::AskAttr(crate::AttrAsk {
                entity: 12,
                path: vec![
                    wyrm_protocol::PathSegment::Key("n".into()),
                    wyrm_protocol::PathSegment::Index(3),
                ],
                reply: crate::ReplyTo {
                    entity: 9,
                    method: "told".into(),
                    context: vec![0xc0],
                },
                plugin: 1,
            }),
            ToGame::LoadEntity {
                entity: 12,
                reply: crate::ReplyTo {
                    entity: 9,
                    method: "loaded".into(),
                    context: Vec::new(),
                },
            },
            ToGame::Shutdown,
        ];
        let frame = Bytes::from_static(b"\x00\x00\x00\x02\x81\x01");
        let batch = GateBatch {
            tick: true,
            ops: vec![
                ToGate::Bind {
                    client,
                    entity: Some(9),
                    plugin: 1,
                },
                ToGate::Bind {
                    client,
                    entity: None,
                    plugin: 0,
                },
                ToGate::Send {
                    client,
                    frame: frame.clone(),
                },
                ToGate::View {
                    client,
                    frame: frame.clone(),
                },
                ToGate::SendMany {
                    clients: vec![client, ClientId::new(GateId(0), 1)],
                    frame,
                },
                ToGate::SetTag {
                    client,
                    key: "team".into(),
                    value: Some("red".into()),
                },
                ToGate::SetTag {
                    client,
                    key: "team".into(),
                    value: None,
                },
                ToGate::CallFiltered {
                    filter: vec![("team".into(), "red".into())],
                    method: "on_chat".into(),
                    args: Bytes::from_static(b"\x90"),
                    plugin: 0,
                },
                ToGate::Broadcast {
                    method: "on_news".into(),
                    args: Bytes::new(),
                    plugin: 3,
                },
                ToGate::Release { client },
            ],
        };
        (to_game, batch)
    }

    #[test]
    fn every_message_comes_back_as_it_was_sent() {
        let (to_game, batch) = every_message();
        for msg in to_game {
            let bytes = encode(&msg).expect("encodes");
            assert_eq!(decode::<ToGame>(&bytes), Ok(msg));
        }
        let bytes = encode(&batch).expect("encodes");
        assert_eq!(decode::<GateBatch>(&bytes), Ok(batch));
    }

    #[test]
    fn another_version_a_short_message_and_trailing_bytes_are_refused() {
        let mut bytes = encode(&ToGame::Shutdown).expect("encodes");
        assert_eq!(decode::<ToGame>(&bytes[..1]), Err(WireError::Short(1)));
        bytes.push(0);
        assert!(matches!(
            decode::<ToGame>(&bytes),
            Err(WireError::Malformed(m)) if m.contains("1 bytes left over")
        ));
        bytes.pop();
        bytes[..2].copy_from_slice(&(VERSION + 1).to_le_bytes());
        let err = decode::<ToGame>(&bytes).expect_err("another version");
        assert_eq!(err, WireError::Version { got: VERSION + 1 });
        assert!(err.to_string().contains("same Wyrm release"));
    }

    #[test]
    fn every_cut_of_a_message_is_an_error_not_a_panic() {
        let (_, batch) = every_message();
        let bytes = encode(&batch).expect("encodes");
        for end in 0..bytes.len() {
            assert!(decode::<GateBatch>(&bytes[..end]).is_err(), "cut at {end}");
        }
    }

    #[test]
    fn messages_batch_in_one_buffer() {
        let (to_game, _) = every_message();
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for msg in &to_game {
            encode_into(msg, &mut buf).expect("encodes");
            ends.push(buf.len());
        }
        let mut start = 0;
        for (msg, end) in to_game.iter().zip(ends) {
            assert_eq!(decode::<ToGame>(&buf[start..end]).as_ref(), Ok(msg));
            start = end;
        }
    }
}
