//! The frames of the protocol and their encoding. Layouts are documented in
//! `docs/protocol.md`; keep the two in step.

use crate::codec::{put_f32, put_str, put_u16, put_u32, put_u64, DecodeError, Reader};

/// Frame type bytes. Client-to-server types are below 0x80.
mod ty {
    pub const C_CALL: u8 = 0x01;
    pub const C_PING: u8 = 0x02;
    pub const C_MOVE: u8 = 0x03;
    pub const C_HELLO: u8 = 0x04;
    pub const S_WELCOME: u8 = 0x80;
    pub const S_ERROR: u8 = 0x81;
    pub const S_CREATE: u8 = 0x82;
    pub const S_DESTROY: u8 = 0x83;
    pub const S_CALL: u8 = 0x84;
    pub const S_ATTR: u8 = 0x85;
    pub const S_PONG: u8 = 0x86;
    pub const S_POSITIONS: u8 = crate::positions::POSITIONS_TYPE;
    pub const S_CALL_OWN: u8 = 0x89;
    pub const S_VIEW_RESET: u8 = 0x8a;
    pub const S_COMPRESSED: u8 = 0x8b;
}

/// A frame a client sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// Call `method` on `entity` with MessagePack `args`. If the call is
    /// refused or fails, the server answers with an `Error` carrying `req_id`.
    Call {
        req_id: u32,
        entity: u64,
        method: String,
        args: Vec<u8>,
    },
    /// Asks for a `Pong` with the same nonce.
    Ping { nonce: u64 },
    /// Moves the client's own entity, if the game lets its client move it.
    Move { pos: Position, yaw: f32 },
    /// The first frame of every connection: the protocol version the client
    /// speaks and, from version 4, what it asks for.
    Hello { version: u16, options: HelloOptions },
}

/// What a client of protocol 4 asks for in its `Hello` (a MessagePack map
/// on the wire; keys this version does not know are ignored, so later
/// ones can be added). A protocol-3 `Hello` has none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HelloOptions {
    /// The compression codecs the client can read, preferred first
    /// (`"lz4"` is the one there is).
    pub compress: Vec<String>,
}

/// What the server chose, in its `Welcome` to a protocol-4 client (a
/// MessagePack map on the wire, like [`HelloOptions`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WelcomeOptions {
    /// The codec of the `Compressed` frames the server may send, if any.
    pub compress: Option<String>,
    /// Frames shorter than this are never compressed.
    pub compress_min: u32,
}

/// A point in a space: x/y is the ground plane, z is height.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Position {
    pub x: f32,
    pub y: f32,
    pub z: f32,
}

/// Where an entity is now, as a `Positions` frame told it (see
/// [`crate::PositionTable`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EntityPosition {
    pub entity: u64,
    pub pos: Position,
    /// Heading in radians, in `[0, 2π)`.
    pub yaw: f32,
}

/// A frame a server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    /// The answer to `Hello`; its options only from version 4.
    Welcome {
        version: u16,
        max_frame: u32,
        options: WelcomeOptions,
    },
    /// A request failed, or the connection is about to close (`req_id` 0
    /// when no request is concerned).
    Error {
        req_id: u32,
        code: ErrorCode,
        message: String,
    },
    /// The client now sees `entity`; `own` is true for the entity this client
    /// is bound to (its player). `attrs` is a MessagePack map of the
    /// attributes this client may see.
    Create {
        entity: u64,
        type_name: String,
        own: bool,
        attrs: Vec<u8>,
    },
    /// The client no longer sees `entity`.
    Destroy { entity: u64 },
    /// The server calls `method` on the client's view of `entity`.
    Call {
        entity: u64,
        method: String,
        args: Vec<u8>,
    },
    /// An attribute of `entity` changed.
    Attr {
        entity: u64,
        op: AttrOp,
        path: Vec<PathSegment>,
        /// MessagePack value for `Set` and `Append`; empty for `Delete`.
        value: Vec<u8>,
    },
    /// Answer to `Ping`.
    Pong { nonce: u64 },
    /// Where entities the client sees are now, relative to what this
    /// connection was sent before: the frame's body, to apply to the
    /// connection's [`crate::PositionTable`] (written by
    /// [`crate::PositionsWriter`]).
    Positions { body: Vec<u8> },
    /// The server calls `method` on the client's own entity (the one it is
    /// bound to when the frame arrives): how broadcasts and tag-filtered
    /// calls reach each client with the same bytes.
    CallOwn { method: String, args: Vec<u8> },
    /// Forget every entity and position slot: the view starts over with
    /// the frames that follow (the client's entity came back on another
    /// game after the one that ran it died).
    ViewReset,
    /// Another frame, compressed with `codec` ([`LZ4`] is 1); `size` is
    /// the frame's length. Sent only to a client that asked for the codec.
    Compressed { codec: u8, size: u32, data: Vec<u8> },
}

/// The codec byte of LZ4 (block format) in a `Compressed` frame.
pub const LZ4: u8 = 1;

/// The type byte of a `Compressed` frame.
pub const COMPRESSED_TYPE: u8 = ty::S_COMPRESSED;

/// `frame` compressed with LZ4 into a `Compressed` frame, if that is
/// smaller.
pub fn compress_frame(frame: &[u8]) -> Option<Vec<u8>> {
    let size = u32::try_from(frame.len()).ok()?;
    let mut out = Vec::with_capacity(6 + lz4_flex::block::get_maximum_output_size(frame.len()));
    out.push(ty::S_COMPRESSED);
    out.push(LZ4);
    put_u32(&mut out, size);
    let head = out.len();
    out.resize(
        head + lz4_flex::block::get_maximum_output_size(frame.len()),
        0,
    );
    let n = lz4_flex::block::compress_into(frame, &mut out[head..]).ok()?;
    out.truncate(head + n);
    (out.len() < frame.len()).then_some(out)
}

/// The frame inside a `Compressed` frame's fields, refusing one that says
/// it is larger than `max` bytes (or that does not come out the size it
/// says).
pub fn decompress_frame(
    codec: u8,
    size: u32,
    data: &[u8],
    max: usize,
) -> Result<Vec<u8>, DecodeError> {
    if codec != LZ4 {
        return Err(DecodeError::Invalid("compression codec"));
    }
    let size = size as usize;
    if size == 0 || size > max {
        return Err(DecodeError::Invalid("compressed frame size"));
    }
    let mut out = vec![0; size];
    match lz4_flex::block::decompress_into(data, &mut out) {
        Ok(n) if n == size => Ok(out),
        _ => Err(DecodeError::Invalid("compressed frame")),
    }
}

/// Encodes options as a MessagePack map of their set fields.
fn put_options(out: &mut Vec<u8>, fields: &[(&str, rmpv::Value)]) {
    let map = rmpv::Value::Map(
        fields
            .iter()
            .map(|(k, v)| (rmpv::Value::from(*k), v.clone()))
            .collect(),
    );
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(out, &map);
}

/// The map that fills the rest of a frame, as (key, value) pairs; keys
/// that are not strings are skipped.
fn read_options(r: &mut Reader<'_>) -> Result<Vec<(String, rmpv::Value)>, DecodeError> {
    const BAD: DecodeError = DecodeError::Invalid("options");
    let mut rest = r.rest();
    let value = rmpv::decode::read_value_with_max_depth(&mut rest, 8).map_err(|_| BAD)?;
    if !rest.is_empty() {
        return Err(BAD);
    }
    let rmpv::Value::Map(entries) = value else {
        return Err(BAD);
    };
    Ok(entries
        .into_iter()
        .filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v)))
        .collect())
}

/// Why a request failed. Numeric values are part of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// A frame could not be decoded; the server closes the connection.
    Malformed = 1,
    /// A frame was larger than the server's maximum; it was discarded.
    FrameTooLarge = 2,
    /// The called entity does not exist.
    NoSuchEntity = 3,
    /// The called entity's type has no such method.
    NoSuchMethod = 4,
    /// The caller may not call that method (for example a server-only one).
    NotAllowed = 5,
    /// The plugin ran the method and returned an error.
    CallFailed = 6,
    /// The plugin trapped, ran past its deadline or out of memory.
    PluginFault = 7,
    /// The client sends too fast or the server is saturated.
    Overloaded = 8,
    /// Anything else on the server's side.
    Internal = 9,
    /// The client speaks another protocol version (or did not say which,
    /// in `Hello`); the server closes the connection.
    UnsupportedVersion = 10,
    /// The client took too long: a frame it began did not end in time, or
    /// it sent nothing at all for too long; the server closes the
    /// connection.
    TimedOut = 11,
    /// A code this version does not know.
    Unknown = 0xffff,
}

impl ErrorCode {
    /// The code for a wire value; unknown values map to `Unknown`.
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => Self::Malformed,
            2 => Self::FrameTooLarge,
            3 => Self::NoSuchEntity,
            4 => Self::NoSuchMethod,
            5 => Self::NotAllowed,
            6 => Self::CallFailed,
            7 => Self::PluginFault,
            8 => Self::Overloaded,
            9 => Self::Internal,
            10 => Self::UnsupportedVersion,
            11 => Self::TimedOut,
            _ => Self::Unknown,
        }
    }
}

/// What an `Attr` frame does at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrOp {
    /// Set the value at the path.
    Set = 0,
    /// Remove the value at the path.
    Delete = 1,
    /// Append the value to the list at the path.
    Append = 2,
}

/// One step of an attribute path: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PathSegment {
    Key(String),
    Index(u32),
}

impl ClientFrame {
    /// Appends the encoded frame (type byte and body) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Call {
                req_id,
                entity,
                method,
                args,
            } => {
                out.push(ty::C_CALL);
                put_u32(out, *req_id);
                put_u64(out, *entity);
                put_str(out, method);
                out.extend_from_slice(args);
            }
            Self::Ping { nonce } => {
                out.push(ty::C_PING);
                put_u64(out, *nonce);
            }
            Self::Move { pos, yaw } => {
                out.push(ty::C_MOVE);
                put_f32(out, pos.x);
                put_f32(out, pos.y);
                put_f32(out, pos.z);
                put_f32(out, *yaw);
            }
            Self::Hello { version, options } => {
                out.push(ty::C_HELLO);
                put_u16(out, *version);
                if *version >= 4 {
                    let codecs = options.compress.iter().map(|c| c.as_str().into()).collect();
                    put_options(out, &[("compress", rmpv::Value::Array(codecs))]);
                }
            }
        }
    }

    /// Decodes one whole frame.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let (&t, body) = frame.split_first().ok_or(DecodeError::Empty)?;
        let mut r = Reader::new(body);
        let f = match t {
            ty::C_CALL => Self::Call {
                req_id: r.u32("req_id")?,
                entity: r.u64("entity")?,
                method: r.str("method")?,
                args: r.rest().to_vec(),
            },
            ty::C_PING => Self::Ping {
                nonce: r.u64("nonce")?,
            },
            ty::C_MOVE => Self::Move {
                pos: read_position(&mut r)?,
                yaw: r.f32("yaw")?,
            },
            ty::C_HELLO => {
                let version = r.u16("version")?;
                let mut options = HelloOptions::default();
                if version >= 4 {
                    for (k, v) in read_options(&mut r)? {
                        if k == "compress" {
                            let codecs = v.as_array().map(Vec::as_slice).unwrap_or_default();
                            options.compress = codecs
                                .iter()
                                .filter_map(|c| c.as_str().map(str::to_owned))
                                .collect();
                        }
                    }
                }
                Self::Hello { version, options }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        expect_end(&r)?;
        Ok(f)
    }
}

/// A server call (`Call` or `CallOwn`) read in place, without copying its
/// method or arguments: what a client does most often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRef<'a> {
    /// The entity called; `None` for `CallOwn` (the client's own).
    pub entity: Option<u64>,
    pub method: &'a str,
    /// MessagePack arguments.
    pub args: &'a [u8],
}

impl<'a> CallRef<'a> {
    /// The call `frame` holds, or `None` if it is another kind of frame.
    pub fn read(frame: &'a [u8]) -> Option<Result<Self, DecodeError>> {
        let (&t, body) = frame.split_first()?;
        let mut r = Reader::new(body);
        let entity = match t {
            ty::S_CALL => match r.u64("entity") {
                Ok(e) => Some(e),
                Err(e) => return Some(Err(e)),
            },
            ty::S_CALL_OWN => None,
            _ => return None,
        };
        Some(r.str_ref("method").map(|method| CallRef {
            entity,
            method,
            args: r.rest(),
        }))
    }
}

impl ServerFrame {
    /// Appends the encoded frame (type byte and body) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Welcome {
                version,
                max_frame,
                options,
            } => {
                out.push(ty::S_WELCOME);
                put_u16(out, *version);
                put_u32(out, *max_frame);
                if *version >= 4 {
                    let mut fields = Vec::new();
                    if let Some(codec) = &options.compress {
                        fields.push(("compress", codec.as_str().into()));
                    }
                    if options.compress_min != 0 {
                        fields.push(("compress_min", options.compress_min.into()));
                    }
                    put_options(out, &fields);
                }
            }
            Self::Error {
                req_id,
                code,
                message,
            } => {
                out.push(ty::S_ERROR);
                put_u32(out, *req_id);
                put_u16(out, *code as u16);
                put_str(out, message);
            }
            Self::Create {
                entity,
                type_name,
                own,
                attrs,
            } => {
                out.push(ty::S_CREATE);
                put_u64(out, *entity);
                put_str(out, type_name);
                out.push(u8::from(*own));
                out.extend_from_slice(attrs);
            }
            Self::Destroy { entity } => {
                out.push(ty::S_DESTROY);
                put_u64(out, *entity);
            }
            Self::Call {
                entity,
                method,
                args,
            } => {
                out.push(ty::S_CALL);
                put_u64(out, *entity);
                put_str(out, method);
                out.extend_from_slice(args);
            }
            Self::Attr {
                entity,
                op,
                path,
                value,
            } => {
                out.push(ty::S_ATTR);
                put_u64(out, *entity);
                out.push(*op as u8);
                encode_path(out, path);
                out.extend_from_slice(value);
            }
            Self::Pong { nonce } => {
                out.push(ty::S_PONG);
                put_u64(out, *nonce);
            }
            Self::Positions { body } => {
                out.push(ty::S_POSITIONS);
                out.extend_from_slice(body);
            }
            Self::CallOwn { method, args } => {
                out.push(ty::S_CALL_OWN);
                put_str(out, method);
                out.extend_from_slice(args);
            }
            Self::ViewReset => out.push(ty::S_VIEW_RESET),
            Self::Compressed { codec, size, data } => {
                out.push(ty::S_COMPRESSED);
                out.push(*codec);
                put_u32(out, *size);
                out.extend_from_slice(data);
            }
        }
    }

    /// The encoded frame as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one whole frame.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        let (&t, body) = frame.split_first().ok_or(DecodeError::Empty)?;
        let mut r = Reader::new(body);
        let f = match t {
            ty::S_WELCOME => {
                let version = r.u16("version")?;
                let max_frame = r.u32("max_frame")?;
                let mut options = WelcomeOptions::default();
                if version >= 4 {
                    for (k, v) in read_options(&mut r)? {
                        match k.as_str() {
                            "compress" => options.compress = v.as_str().map(str::to_owned),
                            "compress_min" => {
                                options.compress_min =
                                    v.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
                            }
                            _ => {}
                        }
                    }
                }
                Self::Welcome {
                    version,
                    max_frame,
                    options,
                }
            }
            ty::S_ERROR => Self::Error {
                req_id: r.u32("req_id")?,
                code: ErrorCode::from_u16(r.u16("code")?),
                message: r.str("message")?,
            },
            ty::S_CREATE => Self::Create {
                entity: r.u64("entity")?,
                type_name: r.str("type")?,
                own: r.u8("own")? != 0,
                attrs: r.rest().to_vec(),
            },
            ty::S_DESTROY => Self::Destroy {
                entity: r.u64("entity")?,
            },
            ty::S_CALL => Self::Call {
                entity: r.u64("entity")?,
                method: r.str("method")?,
                args: r.rest().to_vec(),
            },
            ty::S_ATTR => {
                let entity = r.u64("entity")?;
                let op = match r.u8("op")? {
                    0 => AttrOp::Set,
                    1 => AttrOp::Delete,
                    2 => AttrOp::Append,
                    _ => return Err(DecodeError::Invalid("attr op")),
                };
                let path = decode_path(&mut r)?;
                Self::Attr {
                    entity,
                    op,
                    path,
                    value: r.rest().to_vec(),
                }
            }
            ty::S_PONG => Self::Pong {
                nonce: r.u64("nonce")?,
            },
            ty::S_POSITIONS => Self::Positions {
                body: r.rest().to_vec(),
            },
            ty::S_CALL_OWN => Self::CallOwn {
                method: r.str("method")?,
                args: r.rest().to_vec(),
            },
            ty::S_VIEW_RESET => Self::ViewReset,
            ty::S_COMPRESSED => Self::Compressed {
                codec: r.u8("codec")?,
                size: r.u32("size")?,
                data: r.rest().to_vec(),
            },
            other => return Err(DecodeError::UnknownType(other)),
        };
        expect_end(&r)?;
        Ok(f)
    }
}

fn read_position(r: &mut Reader<'_>) -> Result<Position, DecodeError> {
    Ok(Position {
        x: r.f32("x")?,
        y: r.f32("y")?,
        z: r.f32("z")?,
    })
}

fn expect_end(r: &Reader<'_>) -> Result<(), DecodeError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Invalid("trailing bytes after frame"))
    }
}

/// A path is a MessagePack array whose items are strings (keys) or unsigned
/// integers (indices).
fn encode_path(out: &mut Vec<u8>, path: &[PathSegment]) {
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_array_len(out, path.len() as u32);
    for seg in path {
        let _ = match seg {
            PathSegment::Key(k) => rmp::encode::write_str(out, k),
            PathSegment::Index(i) => rmp::encode::write_uint(out, u64::from(*i)).map(|_| ()),
        };
    }
}

fn decode_path(r: &mut Reader<'_>) -> Result<Vec<PathSegment>, DecodeError> {
    const BAD: DecodeError = DecodeError::Invalid("attr path");
    let mut cur = r.remaining();
    let n = rmp::decode::read_array_len(&mut cur).map_err(|_| BAD)?;
    // No edit with a longer path is ever made (`attr::MAX_PATH`).
    if n as usize > crate::attr::MAX_PATH {
        return Err(BAD);
    }
    let mut path = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let marker_probe = cur.first().copied().ok_or(BAD)?;
        let is_str = matches!(marker_probe, 0xa0..=0xbf | 0xd9 | 0xda | 0xdb);
        if is_str {
            let len = rmp::decode::read_str_len(&mut cur).map_err(|_| BAD)? as usize;
            if cur.len() < len {
                return Err(BAD);
            }
            let (s, tail) = cur.split_at(len);
            let s = std::str::from_utf8(s).map_err(|_| DecodeError::BadUtf8("attr path key"))?;
            path.push(PathSegment::Key(s.to_owned()));
            cur = tail;
        } else {
            let i: u64 = rmp::decode::read_int(&mut cur).map_err(|_| BAD)?;
            path.push(PathSegment::Index(u32::try_from(i).map_err(|_| BAD)?));
        }
    }
    r.advance_to(cur);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_server(f: ServerFrame) {
        let bytes = f.to_bytes();
        assert_eq!(ServerFrame::decode(&bytes), Ok(f));
    }

    #[test]
    fn server_frames_round_trip() {
        round_trip_server(ServerFrame::Welcome {
            version: 1,
            max_frame: 65536,
            options: WelcomeOptions::default(),
        });
        round_trip_server(ServerFrame::Error {
            req_id: 7,
            code: ErrorCode::NotAllowed,
            message: "server-only".into(),
        });
        round_trip_server(ServerFrame::Create {
            entity: 42,
            type_name: "Avatar".into(),
            own: true,
            attrs: vec![0x80],
        });
        round_trip_server(ServerFrame::Attr {
            entity: 9,
            op: AttrOp::Append,
            path: vec![PathSegment::Key("log".into()), PathSegment::Index(3)],
            value: vec![0xa2, b'h', b'i'],
        });
        round_trip_server(ServerFrame::Attr {
            entity: 9,
            op: AttrOp::Delete,
            path: vec![PathSegment::Key("x".into())],
            value: vec![],
        });
    }

    #[test]
    fn moves_hello_and_own_calls_round_trip() {
        round_trip_server(ServerFrame::CallOwn {
            method: "on_chat".into(),
            args: vec![0x91, 0xa2, b'h', b'i'],
        });
        round_trip_server(ServerFrame::Positions {
            body: vec![0xfb, 0x80, 0x01],
        });
        round_trip_server(ServerFrame::ViewReset);
        assert_eq!(ServerFrame::ViewReset.to_bytes(), [0x8a]);
        let m = ClientFrame::Move {
            pos: Position {
                x: 1.0,
                y: 2.0,
                z: 3.0,
            },
            yaw: 0.5,
        };
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(out.len(), 17);
        assert_eq!(ClientFrame::decode(&out), Ok(m));
        for cut in 0..out.len() {
            assert!(ClientFrame::decode(&out[..cut]).is_err());
        }
        let v3 = ClientFrame::Hello {
            version: 3,
            options: HelloOptions::default(),
        };
        let mut hello = Vec::new();
        v3.encode(&mut hello);
        assert_eq!(hello, [0x04, 3, 0], "protocol 3's Hello has no options");
        assert_eq!(ClientFrame::decode(&hello), Ok(v3));
        assert_eq!(ErrorCode::from_u16(10), ErrorCode::UnsupportedVersion);
    }

    #[test]
    fn protocol_4_says_what_each_side_wants_in_hello_and_welcome() {
        let hello = ClientFrame::Hello {
            version: 4,
            options: HelloOptions {
                compress: vec!["lz4".into()],
            },
        };
        let mut bytes = Vec::new();
        hello.encode(&mut bytes);
        // 04 | 04 00 | {"compress": ["lz4"]}
        assert_eq!(
            bytes,
            [
                0x04, 4, 0, 0x81, 0xa8, b'c', b'o', b'm', b'p', b'r', b'e', b's', b's', 0x91, 0xa3,
                b'l', b'z', b'4'
            ]
        );
        assert_eq!(ClientFrame::decode(&bytes), Ok(hello));
        // Keys a server does not know are skipped; an empty map asks for
        // nothing; no map at all is malformed.
        let mut more = vec![0x04, 4, 0, 0x82, 0xa1, b'x', 0x01];
        more.extend_from_slice(&bytes[3 + 1..]);
        assert_eq!(
            ClientFrame::decode(&more),
            Ok(ClientFrame::Hello {
                version: 4,
                options: HelloOptions {
                    compress: vec!["lz4".into()]
                }
            })
        );
        assert_eq!(
            ClientFrame::decode(&[0x04, 4, 0, 0x80]),
            Ok(ClientFrame::Hello {
                version: 4,
                options: HelloOptions::default()
            })
        );
        assert!(ClientFrame::decode(&[0x04, 4, 0]).is_err());
        assert!(ClientFrame::decode(&[0x04, 4, 0, 0x91, 0x01]).is_err());
        let welcome = ServerFrame::Welcome {
            version: 4,
            max_frame: 65536,
            options: WelcomeOptions {
                compress: Some("lz4".into()),
                compress_min: 256,
            },
        };
        // As docs/protocol.md §8 spells it.
        assert_eq!(
            welcome.to_bytes(),
            [
                0x80, 4, 0, 0, 0, 1, 0, 0x82, 0xa8, b'c', b'o', b'm', b'p', b'r', b'e', b's', b's',
                0xa3, b'l', b'z', b'4', 0xac, b'c', b'o', b'm', b'p', b'r', b'e', b's', b's', b'_',
                b'm', b'i', b'n', 0xcd, 1, 0
            ]
        );
        round_trip_server(welcome);
        let plain = ServerFrame::Welcome {
            version: 4,
            max_frame: 1024,
            options: WelcomeOptions::default(),
        };
        assert_eq!(plain.to_bytes(), [0x80, 4, 0, 0, 4, 0, 0, 0x80]);
        round_trip_server(plain);
    }

    #[test]
    fn a_compressed_frame_holds_a_whole_frame_and_is_refused_when_it_lies() {
        let history = ServerFrame::CallOwn {
            method: "on_history".into(),
            args: "line of chat ".repeat(100).into_bytes(),
        }
        .to_bytes();
        let packed = compress_frame(&history).expect("worth compressing");
        assert!(
            packed.len() < history.len() / 4,
            "{} of {}",
            packed.len(),
            history.len()
        );
        let ServerFrame::Compressed { codec, size, data } =
            ServerFrame::decode(&packed).expect("a Compressed frame")
        else {
            panic!("not a Compressed frame");
        };
        assert_eq!((codec, size as usize), (LZ4, history.len()));
        assert_eq!(
            decompress_frame(codec, size, &data, 1 << 20),
            Ok(history.clone())
        );
        // Too large for the reader, another size than said, another codec,
        // broken data: refused.
        assert!(decompress_frame(codec, size, &data, 100).is_err());
        assert!(decompress_frame(codec, size + 1, &data, 1 << 20).is_err());
        assert!(decompress_frame(codec, size - 1, &data, 1 << 20).is_err());
        assert!(decompress_frame(2, size, &data, 1 << 20).is_err());
        assert!(decompress_frame(codec, size, &data[..data.len() / 2], 1 << 20).is_err());
        // Not worth it: not compressed.
        assert_eq!(
            compress_frame(&ServerFrame::Pong { nonce: 1 }.to_bytes()),
            None
        );
    }

    #[test]
    fn client_call_round_trips() {
        let f = ClientFrame::Call {
            req_id: 3,
            entity: u64::MAX,
            method: "say".into(),
            args: vec![0x91, 0x01],
        };
        let mut out = Vec::new();
        f.encode(&mut out);
        assert_eq!(ClientFrame::decode(&out), Ok(f));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        ClientFrame::Call {
            req_id: 1,
            entity: 2,
            method: "hello".into(),
            args: vec![],
        }
        .encode(&mut out);
        for cut in 0..out.len() {
            assert!(ClientFrame::decode(&out[..cut]).is_err(), "cut at {cut}");
        }
        let attr = ServerFrame::Attr {
            entity: 1,
            op: AttrOp::Set,
            path: vec![PathSegment::Key("hp".into())],
            value: vec![],
        }
        .to_bytes();
        for cut in 0..attr.len() {
            let _ = ServerFrame::decode(&attr[..cut]);
        }
    }

    #[test]
    fn unknown_type_and_trailing_bytes_are_rejected() {
        assert_eq!(
            ClientFrame::decode(&[0x7f]),
            Err(DecodeError::UnknownType(0x7f))
        );
        let mut ping = Vec::new();
        ClientFrame::Ping { nonce: 1 }.encode(&mut ping);
        ping.push(0);
        assert!(ClientFrame::decode(&ping).is_err());
    }
}
