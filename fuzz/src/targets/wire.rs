//! The messages between roles (`wyrm-wire`): what a process reads from
//! another. Every process of a deployment is trusted, but a message cut
//! short, of another version or damaged on the way must be an error, never
//! a panic or a huge allocation.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wyrm_wire::{decode, encode, ClientId, GateBatch, GateId, Position, ToGame, ToGate};

use super::{ensure, FnRunner};
use crate::engine::{Target, Verdict};

pub fn targets() -> Vec<Target> {
    vec![Target {
        name: "wire",
        about: "wyrm_wire::decode of ToGame and GateBatch (the first byte picks which); what decodes re-encodes to bytes that decode to the same",
        corpus: "wire",
        max_len: 2048,
        ci_iterations: 100_000,
        dict: &[&[1, 0], &[0xff, 0xff, 0xff, 0xff, 0x0f], &[0x80, 0x80, 0x80]],
        seeds,
        start: |_| Ok(Box::new(FnRunner(wire))),
        in_process: true,
    }]
}

fn seeds() -> Vec<Vec<u8>> {
    let client = ClientId::new(GateId(1), 5);
    let calls = [
        ToGame::ClientConnected { client },
        ToGame::ClientCall {
            client,
            req_id: 3,
            entity: 77,
            method: "say".into(),
            args: vec![0x91, 0x01],
        },
        ToGame::ClientMove {
            client,
            pos: Position {
                x: 1.0,
                y: 2.0,
                z: 0.0,
            },
            yaw: 0.5,
        },
        ToGame::EntityCall(wyrm_wire::EntityCall {
            entity: 9,
            method: "hit".into(),
            args: vec![0x90],
            from: Some(8),
            plugin: Some(1),
        }),
        ToGame::GiveClient { from: 8, to: 9 },
        ToGame::TakeClient { client, entity: 9 },
        ToGame::Shutdown,
    ];
    let batch = GateBatch {
        tick: true,
        ops: vec![
            ToGate::Bind {
                client,
                entity: Some(77),
                plugin: 0,
            },
            ToGate::SendMany {
                clients: vec![client],
                frame: Bytes::from_static(&[0, 0, 0, 1, 0x81]),
            },
            ToGate::CallFiltered {
                filter: vec![("room".into(), "hall".into())],
                method: "on_chat".into(),
                args: Bytes::from_static(&[0x90]),
                plugin: 1,
            },
        ],
    };
    let mut out: Vec<Vec<u8>> = calls.iter().map(|m| tagged(0, m)).collect();
    out.push(tagged(1, &batch));
    out
}

fn tagged(kind: u8, msg: &impl Serialize) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend(encode(msg).unwrap_or_default());
    v
}

fn wire(data: &[u8]) -> Verdict {
    match data.split_first() {
        Some((k, rest)) if k % 2 == 0 => stable::<ToGame>(rest),
        Some((_, rest)) => stable::<GateBatch>(rest),
        None => Verdict::Rejected,
    }
}

/// Bytes that decode re-encode into bytes that decode, and encode again,
/// to the same (the first encoding may differ: a varint can be written
/// longer than it needs, and NaN is not equal to itself).
fn stable<T: Serialize + DeserializeOwned + std::fmt::Debug>(data: &[u8]) -> Verdict {
    let Ok(msg) = decode::<T>(data) else {
        return Verdict::Rejected;
    };
    let Ok(once) = encode(&msg) else {
        return Verdict::Fail(format!("{msg:?} decoded but does not encode"));
    };
    let again = decode::<T>(&once).map(|m| encode(&m));
    ensure!(
        matches!(&again, Ok(Ok(twice)) if *twice == once),
        "{msg:?} re-encodes to {once:02x?}, which reads back as {again:?}"
    );
    Verdict::Accepted
}
