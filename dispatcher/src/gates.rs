//! Where the games' output goes: to the one gate of `wyrm serve`, or split
//! by gate among every gate of a cluster. A client's frames go to the gate
//! its id names; a frame for many clients to each of their gates once (the
//! same bytes, encoded once); broadcasts and tag-filtered calls to every
//! gate; the end of a tick to every gate, so each writes its clients.

use std::sync::{Arc, RwLock};

use wyrm_wire::{ClientId, GateBatch, GateId, ToGate};

use crate::HeldBatch;

/// The gates output can go to, by [`GateId`]; cheap to clone, shared by
/// every game of a process. Gates join and leave while games run.
#[derive(Clone, Debug, Default)]
pub struct Gates {
    by_id: Arc<RwLock<Vec<Option<flume::Sender<HeldBatch>>>>>,
}

impl Gates {
    /// Output to `gate` goes to `to` from now on (`None`: the gate is gone,
    /// and what is addressed to its clients is dropped).
    pub fn set(&self, gate: GateId, to: Option<flume::Sender<HeldBatch>>) {
        let mut by_id = self.by_id.write().unwrap_or_else(|e| e.into_inner());
        let i = usize::from(gate.0);
        if by_id.len() <= i {
            by_id.resize(i + 1, None);
        }
        by_id[i] = to;
    }

    /// Whether output to `gate` has somewhere to go.
    pub fn has(&self, gate: GateId) -> bool {
        let by_id = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        matches!(by_id.get(usize::from(gate.0)), Some(Some(_)))
    }

    /// Hands `out` to the gates it is for, waiting while one has no room.
    /// Its charges go with the first part.
    pub fn send(&self, out: HeldBatch) {
        // Not under the lock: a gate that has no room must not keep one
        // from joining or leaving. With one gate (as in `wyrm serve`)
        // everything is its own, and nothing is allocated. (Frames for a
        // gone gate's clients reach it then; it drops them as it drops
        // frames for any client that left.)
        let gates: Vec<(GateId, flume::Sender<HeldBatch>)> = {
            let by_id = self.by_id.read().unwrap_or_else(|e| e.into_inner());
            let mut live = by_id.iter().flatten();
            match (live.next(), live.next()) {
                (None, _) => return,
                (Some(only), None) => {
                    let only = only.clone();
                    drop(by_id);
                    let _ = only.send(out);
                    return;
                }
                _ => by_id
                    .iter()
                    .enumerate()
                    .filter_map(|(i, g)| Some((GateId(i as u16), g.clone()?)))
                    .collect(),
            }
        };
        let mut held = Some(out.held);
        for (gate, batch) in split(out.batch, &gates) {
            if batch.ops.is_empty() && !batch.tick {
                continue;
            }
            if let Some((_, to)) = gates.iter().find(|(g, _)| *g == gate) {
                let held = held.take().unwrap_or_default();
                let _ = to.send(HeldBatch { batch, held });
            }
        }
    }
}

/// `batch` as one batch per gate of `gates`, in the same order.
fn split<T>(batch: GateBatch, gates: &[(GateId, T)]) -> Vec<(GateId, GateBatch)> {
    let mut per: Vec<(GateId, GateBatch)> = gates
        .iter()
        .map(|(g, _)| {
            (
                *g,
                GateBatch {
                    ops: Vec::new(),
                    tick: batch.tick,
                },
            )
        })
        .collect();
    let slot = |per: &mut Vec<(GateId, GateBatch)>, client: ClientId| {
        per.iter().position(|(g, _)| *g == client.gate())
    };
    for op in batch.ops {
        match op {
            ToGate::Bind { client, .. }
            | ToGate::Send { client, .. }
            | ToGate::View { client, .. }
            | ToGate::SetTag { client, .. }
            | ToGate::Release { client } => {
                // A client of a gate that is gone is gone too.
                if let Some(i) = slot(&mut per, client) {
                    per[i].1.ops.push(op);
                }
            }
            ToGate::SendMany { clients, frame } => {
                let mut by_gate: Vec<Vec<ClientId>> = vec![Vec::new(); per.len()];
                for c in clients {
                    if let Some(i) = slot(&mut per, c) {
                        by_gate[i].push(c);
                    }
                }
                for (i, clients) in by_gate.into_iter().enumerate() {
                    if !clients.is_empty() {
                        per[i].1.ops.push(ToGate::SendMany {
                            clients,
                            frame: frame.clone(),
                        });
                    }
                }
            }
            ToGate::CallFiltered { .. } | ToGate::Broadcast { .. } => {
                for (_, b) in per.iter_mut() {
                    b.ops.push(op.clone());
                }
            }
        }
    }
    per
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn client(gate: u16, n: u64) -> ClientId {
        ClientId::new(GateId(gate), n)
    }

    #[test]
    fn output_is_split_by_gate_in_order() {
        let (a, b) = (client(0, 1), client(1, 1));
        let frame = Bytes::from_static(b"f");
        let batch = GateBatch {
            ops: vec![
                ToGate::Send {
                    client: a,
                    frame: frame.clone(),
                },
                ToGate::SendMany {
                    clients: vec![a, b, client(7, 1)],
                    frame: frame.clone(),
                },
                ToGate::Broadcast {
                    method: "m".into(),
                    args: Bytes::new(),
                    plugin: 0,
                },
                ToGate::View {
                    client: b,
                    frame: frame.clone(),
                },
            ],
            tick: true,
        };
        let per = split(batch, &[(GateId(0), ()), (GateId(1), ())]);
        let names = |b: &GateBatch| {
            b.ops
                .iter()
                .map(|op| match op {
                    ToGate::Send { .. } => "send".to_owned(),
                    ToGate::SendMany { clients, .. } => format!("many {}", clients.len()),
                    ToGate::Broadcast { .. } => "broadcast".to_owned(),
                    ToGate::View { .. } => "view".to_owned(),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(per[0].0, GateId(0));
        assert_eq!(names(&per[0].1), ["send", "many 1", "broadcast"]);
        assert_eq!(names(&per[1].1), ["many 1", "broadcast", "view"]);
        assert!(per.iter().all(|(_, b)| b.tick), "every gate ends the tick");
    }

    #[test]
    fn one_gate_gets_everything_and_a_gone_gate_nothing() {
        let gates = Gates::default();
        let (tx0, rx0) = flume::unbounded();
        gates.set(GateId(0), Some(tx0));
        let batch = |client| HeldBatch {
            batch: GateBatch {
                ops: vec![ToGate::Send {
                    client,
                    frame: Bytes::from_static(b"x"),
                }],
                tick: false,
            },
            held: Vec::new(),
        };
        gates.send(batch(client(0, 1)));
        assert_eq!(rx0.try_recv().map(|b| b.batch.ops.len()).ok(), Some(1));
        let (tx1, rx1) = flume::unbounded();
        gates.set(GateId(1), Some(tx1));
        gates.send(batch(client(1, 1)));
        assert!(rx0.try_recv().is_err(), "nothing for gate 0");
        assert_eq!(rx1.try_recv().map(|b| b.batch.ops.len()).ok(), Some(1));
        gates.set(GateId(1), None);
        assert!(!gates.has(GateId(1)));
        gates.send(batch(client(1, 1)));
        assert!(rx1.try_recv().is_err(), "a gone gate gets nothing");
    }
}
