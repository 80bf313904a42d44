//! The client protocol (`wyrm-protocol`, and the client's use of it):
//! frames both ways, positions, and attribute edits by path.

use rmpv::Value;
use wyrm_protocol::{
    attr, AttrOp, CallRef, ClientFrame, EntityPosition, ErrorCode, PathSegment, Position,
    PositionTable, PositionsWriter, QuantPos, Resolution, ServerFrame, MAX_SLOT,
};

use super::MSGPACK_DICT;
use super::{decode_value, encode_value, ensure, put_piece, sample_values, Choices, FnRunner};
use crate::engine::{Target, Verdict};

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "client_frame",
            about: "ClientFrame::decode (what the server reads from every client); encode(decode(b)) == b",
            corpus: "client_frame",
            max_len: 512,
            ci_iterations: 200_000,
            dict: FRAME_DICT,
            seeds: client_seeds,
            start: |_| Ok(Box::new(FnRunner(client_frame))),
            in_process: true,
        },
        Target {
            name: "server_frame",
            about: "ServerFrame::decode and CallRef::read (what a client reads); they agree, and decoding re-encodes stably",
            corpus: "server_frame",
            max_len: 1024,
            ci_iterations: 100_000,
            dict: FRAME_DICT,
            seeds: server_seeds,
            start: |_| Ok(Box::new(FnRunner(server_frame))),
            in_process: true,
        },
        Target {
            name: "client_view",
            about: "a stream of server frames applied as a client does: attributes (MessagePack), paths, positions, destroys",
            corpus: "client_view",
            max_len: 4096,
            ci_iterations: 60_000,
            dict: FRAME_DICT,
            seeds: view_seeds,
            start: |_| Ok(Box::new(FnRunner(client_view))),
            in_process: true,
        },
        Target {
            name: "positions",
            about: "PositionTable::apply on raw Positions bodies: places it reports are the places it keeps",
            corpus: "positions",
            max_len: 2048,
            ci_iterations: 40_000,
            dict: &[&[0xfb], &[0x80], &[0xf0], &[0xff, 0xff, 0xff, 0xff, 0x0f], &[0x8f]],
            seeds: positions_seeds,
            start: |_| Ok(Box::new(FnRunner(positions))),
            in_process: true,
        },
        Target {
            name: "positions_model",
            about: "PositionsWriter then PositionTable, driven by generated moves: the client's table mirrors the server's slots",
            corpus: "positions_model",
            max_len: 2048,
            ci_iterations: 8_000,
            dict: &[],
            seeds: || vec![vec![0; 64], (0..=255).collect()],
            start: |_| Ok(Box::new(FnRunner(positions_model))),
            in_process: true,
        },
        Target {
            name: "attr_paths",
            about: "Attr frames (path and value decoding) applied by attr::set / append / delete: results hold, failures change nothing",
            corpus: "attr_paths",
            max_len: 4096,
            ci_iterations: 100_000,
            dict: MSGPACK_DICT,
            seeds: attr_seeds,
            start: |_| Ok(Box::new(FnRunner(attr_paths))),
            in_process: true,
        },
        Target {
            name: "rust_msgpack",
            about: "one MessagePack value as the host and the Rust client read it (rmpv): re-encoding is stable",
            corpus: "msgpack",
            max_len: 2048,
            ci_iterations: 150_000,
            dict: MSGPACK_DICT,
            seeds: msgpack_seeds,
            start: |_| Ok(Box::new(FnRunner(rust_msgpack))),
            in_process: true,
        },
    ]
}

const FRAME_DICT: &[&[u8]] = &[
    &[0x01],
    &[0x02],
    &[0x03],
    &[0x04, 0x03, 0x00],
    &[0x80],
    &[0x81],
    &[0x82],
    &[0x83],
    &[0x84],
    &[0x85],
    &[0x86],
    &[0x88],
    &[0x89],
    &[0xff, 0xff],
    &[0x00, 0x00],
    &[0x91, 0xa1, b'a'],
    &[0x92, 0xa1, b'a', 0x00],
    &[0xdc, 0x00, 0x20],
];

// ---- client frames ----------------------------------------------------

fn client_seeds() -> Vec<Vec<u8>> {
    let frames = [
        ClientFrame::Hello {
            version: 3,
            options: Default::default(),
        },
        ClientFrame::Hello {
            version: 4,
            options: wyrm_protocol::HelloOptions {
                compress: vec!["lz4".into(), "zstd".into()],
            },
        },
        ClientFrame::Ping {
            nonce: 0x0102_0304_0506_0708,
        },
        ClientFrame::Move {
            pos: Position {
                x: 1.5,
                y: -2.0,
                z: f32::NAN,
            },
            yaw: 3.0,
        },
        ClientFrame::Call {
            req_id: 7,
            entity: 42,
            method: "say".into(),
            args: vec![0x91, 0xa2, b'h', b'i'],
        },
        ClientFrame::Call {
            req_id: u32::MAX,
            entity: u64::MAX,
            method: "é✓".into(),
            args: vec![],
        },
    ];
    frames
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            f.encode(&mut out);
            out
        })
        .collect()
}

fn client_frame(data: &[u8]) -> Verdict {
    let Ok(frame) = ClientFrame::decode(data) else {
        return Verdict::Rejected;
    };
    let mut out = Vec::new();
    frame.encode(&mut out);
    if matches!(frame, ClientFrame::Hello { version: 4.., .. }) {
        // Options are a MessagePack map, of many encodings and with keys
        // this version skips: what is stable is the re-encoding.
        ensure!(
            ClientFrame::decode(&out).as_ref() == Ok(&frame),
            "a Hello re-encodes to one that decodes differently: {frame:?}"
        );
        return Verdict::Accepted;
    }
    // The rest have one encoding per frame (strings carry their length,
    // floats their bits), so a frame that decodes re-encodes to itself.
    ensure!(
        out == data,
        "a client frame does not re-encode to its bytes: {frame:?} to {out:02x?}, from {data:02x?}"
    );
    Verdict::Accepted
}

// ---- server frames ----------------------------------------------------

fn server_frames() -> Vec<ServerFrame> {
    vec![
        ServerFrame::Welcome {
            version: 3,
            max_frame: 65_536,
            options: Default::default(),
        },
        ServerFrame::Welcome {
            version: 4,
            max_frame: 65_536,
            options: wyrm_protocol::WelcomeOptions {
                compress: Some("lz4".into()),
                compress_min: 256,
            },
        },
        ServerFrame::Compressed {
            codec: wyrm_protocol::LZ4,
            size: 300,
            data: wyrm_protocol::compress_frame(&[0x89; 300])
                .map(|c| c[6..].to_vec())
                .unwrap_or_default(),
        },
        ServerFrame::Error {
            req_id: 3,
            code: ErrorCode::CallFailed,
            message: "no such room".into(),
        },
        ServerFrame::Create {
            entity: 9,
            type_name: "Avatar".into(),
            own: true,
            attrs: encode_value(&Value::Map(vec![(Value::from("hp"), Value::from(10))])),
        },
        ServerFrame::Destroy { entity: 9 },
        ServerFrame::Call {
            entity: 9,
            method: "on_chat".into(),
            args: vec![0x92, 0xa1, b'a', 0x01],
        },
        ServerFrame::CallOwn {
            method: "tick".into(),
            args: vec![0x90],
        },
        ServerFrame::Attr {
            entity: 9,
            op: AttrOp::Set,
            path: vec![PathSegment::Key("inv".into()), PathSegment::Index(2)],
            value: vec![0xa3, b'a', b'x', b'e'],
        },
        ServerFrame::Attr {
            entity: 9,
            op: AttrOp::Delete,
            path: vec![PathSegment::Key("hp".into())],
            value: vec![],
        },
        ServerFrame::Attr {
            entity: 9,
            op: AttrOp::Append,
            path: vec![PathSegment::Key("log".into())],
            value: vec![0x01],
        },
        ServerFrame::Pong { nonce: 77 },
        ServerFrame::Positions {
            body: positions_frame(&[(0, 42, q(320, -64, 0, 0)), (3, 7, q(1, 2, 3, 1023))])[1..]
                .to_vec(),
        },
    ]
}

fn server_seeds() -> Vec<Vec<u8>> {
    server_frames().iter().map(ServerFrame::to_bytes).collect()
}

fn server_frame(data: &[u8]) -> Verdict {
    let decoded = ServerFrame::decode(data);
    // The client's fast path for calls must agree with the full decoder.
    match (CallRef::read(data), &decoded) {
        (None, Ok(ServerFrame::Call { .. } | ServerFrame::CallOwn { .. })) => {
            return Verdict::Fail("CallRef::read missed a call ServerFrame::decode read".into())
        }
        (
            Some(Ok(c)),
            Ok(ServerFrame::Call {
                entity,
                method,
                args,
            }),
        ) => ensure!(
            c.entity == Some(*entity) && c.method == method && c.args == &args[..],
            "CallRef::read read {c:?}, ServerFrame::decode a call to {entity}.{method}"
        ),
        (Some(Ok(c)), Ok(ServerFrame::CallOwn { method, args })) => ensure!(
            c.entity.is_none() && c.method == method && c.args == &args[..],
            "CallRef::read read {c:?}, ServerFrame::decode CallOwn {method}"
        ),
        (Some(Ok(c)), other) => {
            return Verdict::Fail(format!(
                "CallRef::read read {c:?} where ServerFrame::decode gave {other:?}"
            ))
        }
        (Some(Err(e)), Ok(f)) => {
            return Verdict::Fail(format!(
                "CallRef::read refused ({e}) a frame ServerFrame::decode read: {f:?}"
            ))
        }
        _ => {}
    }
    let Ok(frame) = decoded else {
        return Verdict::Rejected;
    };
    // Some fields have several encodings (`own` is any non-zero byte, a
    // path may use wider MessagePack forms than needed, an unknown error
    // code reads as Unknown): what is stable is the re-encoding.
    let bytes = frame.to_bytes();
    match ServerFrame::decode(&bytes) {
        Ok(again) => {
            ensure!(
                again == frame,
                "a server frame re-encodes to one that decodes differently: {frame:?} then {again:?}"
            );
            ensure!(
                again.to_bytes() == bytes,
                "a server frame does not re-encode stably: {frame:?}"
            );
        }
        Err(e) => {
            return Verdict::Fail(format!(
                "a server frame re-encodes to one that does not decode ({e}): {frame:?}"
            ))
        }
    }
    if let ServerFrame::Positions { body } = &frame {
        let _ = PositionTable::new().apply(body, &mut Vec::new());
    }
    if let ServerFrame::Compressed { codec, size, data } = &frame {
        // Whatever it holds, it comes out the size it says or is refused.
        if let Ok(inner) = wyrm_protocol::decompress_frame(*codec, *size, data, 1 << 20) {
            ensure!(
                inner.len() == *size as usize,
                "a Compressed frame decompressed to another size"
            );
        }
    }
    Verdict::Accepted
}

// ---- a client's view --------------------------------------------------

fn view_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let frames = server_frames();
    let mut all = Vec::new();
    for f in &frames {
        put_piece(&mut all, &f.to_bytes());
        let mut one = Vec::new();
        put_piece(&mut one, &f.to_bytes());
        out.push(one);
    }
    out.push(all);
    out
}

/// What a client keeps of one entity.
struct Seen {
    attrs: Value,
}

/// Applies a stream of server frames (each behind a u16 length) the way
/// `wyrm_client` does: `Create` decodes attributes, `Attr` edits them,
/// `Positions` updates the table, `Destroy` forgets.
fn client_view(data: &[u8]) -> Verdict {
    let mut c = Choices::new(data);
    let mut entities: std::collections::HashMap<u64, Seen> = Default::default();
    let mut table = PositionTable::new();
    let mut places = Vec::new();
    let mut accepted = false;
    while !c.is_empty() {
        let frame = c.piece();
        let Ok(f) = ServerFrame::decode(frame) else {
            continue;
        };
        match f {
            ServerFrame::Create { entity, attrs, .. } => {
                let attrs = if attrs.is_empty() {
                    Value::Map(Vec::new())
                } else {
                    match decode_value(&attrs) {
                        Some(v) => v,
                        None => continue,
                    }
                };
                entities.insert(entity, Seen { attrs });
            }
            ServerFrame::Destroy { entity } => {
                entities.remove(&entity);
                table.forget(entity);
                ensure!(
                    table.get(entity).is_none(),
                    "entity {entity} kept a place after its Destroy"
                );
            }
            ServerFrame::Attr {
                entity,
                op,
                path,
                value,
            } => {
                let Some(e) = entities.get_mut(&entity) else {
                    continue;
                };
                let value = if value.is_empty() {
                    None
                } else {
                    match decode_value(&value) {
                        Some(v) => Some(v),
                        None => continue,
                    }
                };
                if wyrm_client::apply_attr(&mut e.attrs, op, &path, value).is_ok() {
                    accepted = true;
                }
            }
            ServerFrame::Positions { body } => {
                places.clear();
                if table.apply(&body, &mut places).is_ok() {
                    accepted = true;
                }
            }
            _ => accepted = true,
        }
    }
    // What a client holds must encode again (a test would print it).
    for e in entities.values() {
        let _ = encode_value(&e.attrs);
    }
    if accepted {
        Verdict::Accepted
    } else {
        Verdict::Rejected
    }
}

// ---- positions --------------------------------------------------------

fn q(x: i32, y: i32, z: i32, yaw: u16) -> QuantPos {
    QuantPos { x, y, z, yaw }
}

/// A whole `Positions` frame (type byte first) binding each (slot, entity).
fn positions_frame(binds: &[(u32, u64, QuantPos)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = PositionsWriter::new(&mut out, Resolution::default());
    for &(slot, entity, at) in binds {
        w.bind(slot, entity, at);
    }
    w.finish();
    out
}

fn positions_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let a = positions_frame(&[(0, 42, q(320, -64, 0, 0)), (1, 300, q(16, 32, 0, 512))]);
    let mut moved = Vec::new();
    let mut w = PositionsWriter::new(&mut moved, Resolution::default());
    w.update(1, q(16, 32, 0, 512), q(24, 32, -5, 3));
    w.finish();
    let far = positions_frame(&[(1000, u64::MAX, q(i32::MIN, i32::MAX, -1, 1023))]);
    // The format `positions` reads: an op byte (0: apply, 1: forget), then
    // a u16-length body without its type byte.
    let mut both = Vec::new();
    for f in [&a, &moved, &far] {
        both.push(0);
        put_piece(&mut both, &f[1..]);
        let mut one = vec![0];
        put_piece(&mut one, &f[1..]);
        out.push(one);
    }
    both.extend_from_slice(&[1, 0]);
    out.push(both);
    out
}

/// Applies `Positions` bodies (op 0) and forgets entities (op 1) in the
/// order the input gives.
fn positions(data: &[u8]) -> Verdict {
    let mut c = Choices::new(data);
    let mut t = PositionTable::new();
    let mut out: Vec<EntityPosition> = Vec::new();
    let mut reported: Vec<u64> = Vec::new();
    let mut accepted = false;
    while !c.is_empty() {
        match c.u8() % 2 {
            0 => {
                let body = c.piece();
                out.clear();
                if t.apply(body, &mut out).is_err() {
                    continue;
                }
                accepted = true;
                ensure!(
                    t.resolution().is_some(),
                    "a frame was applied but the table has no resolution"
                );
                // The last place a frame gives an entity is the one the
                // table keeps, unless the frame gave its slot away after.
                for (i, p) in out.iter().enumerate() {
                    if out[i + 1..].iter().any(|later| later.entity == p.entity) {
                        continue;
                    }
                    if let Some(kept) = t.position(p.entity) {
                        ensure!(
                            same_place(&kept, p),
                            "entity {} reported at {p:?} but kept at {kept:?}",
                            p.entity
                        );
                    }
                    reported.push(p.entity);
                }
                ensure!(
                    t.len() <= MAX_SLOT as usize + 1,
                    "more entities placed than slots: {}",
                    t.len()
                );
            }
            _ => {
                if reported.is_empty() {
                    continue;
                }
                let e = reported[usize::from(c.u8()) % reported.len()];
                t.forget(e);
                ensure!(t.get(e).is_none(), "entity {e} has a place after forget");
            }
        }
    }
    if accepted {
        Verdict::Accepted
    } else {
        Verdict::Rejected
    }
}

fn same_place(a: &EntityPosition, b: &EntityPosition) -> bool {
    a.entity == b.entity
        && a.pos.x.to_bits() == b.pos.x.to_bits()
        && a.pos.y.to_bits() == b.pos.y.to_bits()
        && a.pos.z.to_bits() == b.pos.z.to_bits()
        && a.yaw.to_bits() == b.yaw.to_bits()
}

/// The server's side as `game/src/world/sync.rs` keeps it: slot ->
/// (entity, place last sent).
fn positions_model(data: &[u8]) -> Verdict {
    let mut c = Choices::new(data);
    let res = Resolution::from_exp((c.u8() % 25) as i8 - 16).unwrap_or_default();
    let mut server: std::collections::BTreeMap<u32, (u64, QuantPos)> = Default::default();
    let mut table = PositionTable::new();
    let mut next_entity = 1u64;
    while !c.is_empty() {
        // One tick: some slots bound, some moved, some freed.
        let mut frame = Vec::new();
        let mut w = PositionsWriter::new(&mut frame, res);
        let mut freed = Vec::new();
        let mut writes: std::collections::BTreeMap<u32, Option<QuantPos>> = Default::default();
        for _ in 0..c.u8() % 8 {
            // Mostly the few slots a client near others has; now and then
            // a far one (the table grows to it).
            let slot = match c.u8() % 8 {
                0 => u32::from(c.u16()),
                1 | 2 => u32::from(c.u8()),
                _ => u32::from(c.u8() % 16),
            };
            match c.u8() % 3 {
                0 => {
                    writes.insert(slot, None); // bind to a new entity
                }
                1 => {
                    let to = QuantPos {
                        x: c.u32() as i32 >> (c.u8() % 32),
                        y: c.u32() as i32 >> (c.u8() % 32),
                        z: i32::from(c.u8() as i8),
                        yaw: c.u16() % 1024,
                    };
                    writes.insert(slot, Some(to));
                }
                _ => freed.push(slot),
            }
        }
        for (slot, what) in writes {
            match (what, server.get(&slot).copied()) {
                (Some(to), Some((entity, from))) => {
                    w.update(slot, from, to);
                    server.insert(slot, (entity, to));
                }
                (_, _) => {
                    let entity = next_entity;
                    next_entity += 1;
                    let at = QuantPos {
                        x: i32::from(c.u16() as i16),
                        y: i32::from(c.u8()),
                        z: 0,
                        yaw: c.u16() % 1024,
                    };
                    if let Some((old, _)) = server.insert(slot, (entity, at)) {
                        table.forget(old); // its Destroy went first
                    }
                    w.bind(slot, entity, at);
                }
            }
        }
        w.finish();
        if !frame.is_empty() {
            let mut out = Vec::new();
            if let Err(e) = table.apply(&frame[1..], &mut out) {
                return Verdict::Fail(format!(
                    "the client refused what the writer wrote: {e}; frame {frame:02x?}"
                ));
            }
        }
        for slot in freed {
            if let Some((entity, _)) = server.remove(&slot) {
                table.forget(entity);
            }
        }
        for (slot, (entity, at)) in &server {
            let got = table.get(*entity);
            ensure!(
                got == Some(*at),
                "slot {slot}: the server sent entity {entity} at {at:?}, the client holds {got:?}"
            );
        }
        ensure!(
            table.len() == server.len(),
            "the client places {} entities, the server sent {}",
            table.len(),
            server.len()
        );
    }
    Verdict::Accepted
}

// ---- attribute paths --------------------------------------------------

fn attr_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut all = Vec::new();
    for f in server_frames() {
        if let ServerFrame::Attr { .. } = f {
            put_piece(&mut all, &f.to_bytes());
        }
    }
    out.push(all);
    // A path as long as allowed, and one step longer.
    for n in [attr::MAX_PATH, attr::MAX_PATH + 1] {
        let f = ServerFrame::Attr {
            entity: 1,
            op: AttrOp::Set,
            path: (0..n).map(|_| PathSegment::Key(String::new())).collect(),
            value: vec![0x91, 0x91, 0xc0],
        };
        let mut one = Vec::new();
        put_piece(&mut one, &f.to_bytes());
        out.push(one);
    }
    for v in sample_values().into_iter().take(12) {
        let f = ServerFrame::Attr {
            entity: 1,
            op: AttrOp::Append,
            path: vec![PathSegment::Key("a".into()), PathSegment::Key("b".into())],
            value: encode_value(&v),
        };
        let mut one = Vec::new();
        put_piece(&mut one, &f.to_bytes());
        out.push(one);
    }
    out
}

/// Attr frames (each behind a u16 length) applied to one attribute tree
/// with the rules both the host and clients use.
fn attr_paths(data: &[u8]) -> Verdict {
    let mut c = Choices::new(data);
    let mut root = Value::Nil;
    let mut accepted = false;
    while !c.is_empty() {
        let Ok(ServerFrame::Attr {
            op, path, value, ..
        }) = ServerFrame::decode(c.piece())
        else {
            continue;
        };
        let value = match (op, value.is_empty()) {
            (AttrOp::Delete, true) => None,
            (AttrOp::Delete, false) => continue,
            (_, _) => match decode_value(&value) {
                Some(v) => Some(v),
                None => continue,
            },
        };
        let before = encode_value(&root);
        let result = match (op, value.clone()) {
            (AttrOp::Set, Some(v)) => attr::set(&mut root, &path, v),
            (AttrOp::Append, Some(v)) => attr::append(&mut root, &path, v),
            (AttrOp::Delete, None) => attr::delete(&mut root, &path),
            _ => continue,
        };
        if let Err(e) = result {
            // The host refuses a plugin's change and sends nothing, so a
            // failed change must leave nothing behind: the host's tree and
            // its clients' would differ.
            ensure!(
                encode_value(&root) == before,
                "a failed edit changed the tree: {op:?} at {path:?} ({e})"
            );
            continue;
        }
        accepted = true;
        let at = attr::get(&root, &path).map(encode_value);
        match (op, &value) {
            (AttrOp::Set, Some(v)) => ensure!(
                at.as_deref() == Some(&encode_value(v)[..]),
                "Set at {path:?} succeeded but the path holds {at:02x?}"
            ),
            (AttrOp::Append, Some(v)) => {
                let last = attr::get(&root, &path).and_then(|l| match l {
                    Value::Array(items) => items.last().map(encode_value),
                    _ => None,
                });
                ensure!(
                    last.as_deref() == Some(&encode_value(v)[..]),
                    "Append at {path:?} succeeded but the list does not end with the value"
                );
            }
            (AttrOp::Delete, None) => {
                if matches!(path.last(), Some(PathSegment::Key(_))) {
                    ensure!(
                        at.is_none(),
                        "Delete at {path:?} succeeded but the key is there"
                    );
                }
            }
            _ => {}
        }
        // Whatever the edits made is sent whole to the next client to see
        // the entity (`Create`): it must read back. Values are at most as
        // deep as rmpv reads, and paths add at most MAX_PATH levels.
        let bytes = encode_value(&root);
        let mut cur = &bytes[..];
        ensure!(
            rmpv::decode::read_value_with_max_depth(
                &mut cur,
                rmpv::decode::MAX_DEPTH + attr::MAX_PATH
            )
            .is_ok(),
            "the tree the edits made ({} bytes) does not decode again",
            bytes.len()
        );
    }
    if accepted {
        Verdict::Accepted
    } else {
        Verdict::Rejected
    }
}

// ---- MessagePack ------------------------------------------------------

/// The shared MessagePack seeds.
pub fn msgpack_seeds() -> Vec<Vec<u8>> {
    sample_values().iter().map(encode_value).collect()
}

fn rust_msgpack(data: &[u8]) -> Verdict {
    let Some(v) = decode_value(data) else {
        return Verdict::Rejected;
    };
    let once = encode_value(&v);
    let Some(again) = decode_value(&once) else {
        return Verdict::Fail(format!(
            "a value re-encodes to bytes that do not decode: {v:?}"
        ));
    };
    ensure!(
        encode_value(&again) == once,
        "a value does not re-encode stably: {v:?}"
    );
    Verdict::Accepted
}
