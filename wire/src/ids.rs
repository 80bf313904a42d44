//! The ids messages name.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// An entity, unique across every game and never reused: ids are reserved
/// from storage in blocks, and a block is never handed out twice.
pub type EntityId = u64;

/// A game (a game worker in `wyrm serve`, a game process in a cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GameId(pub u16);

/// A gate: the process (or, in `wyrm serve`, the task) that holds client
/// connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GateId(pub u16);

/// A connected client: the [`GateId`] of the gate that holds its connection
/// in the top 16 bits, and a number that gate never gives twice below them.
/// So whoever holds a client id knows which gate to send its frames to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientId(u64);

impl ClientId {
    /// Bits of a client id that number clients within their gate.
    pub const SERIAL_BITS: u32 = 48;
    const SERIAL_MASK: u64 = (1 << Self::SERIAL_BITS) - 1;

    /// The client numbered `serial` on `gate`; `serial` is cut to
    /// [`SERIAL_BITS`](Self::SERIAL_BITS) (2⁴⁸ connections: at a thousand
    /// a second, nine thousand years).
    pub const fn new(gate: GateId, serial: u64) -> Self {
        Self(((gate.0 as u64) << Self::SERIAL_BITS) | (serial & Self::SERIAL_MASK))
    }

    /// The gate that holds this client's connection.
    pub const fn gate(self) -> GateId {
        GateId((self.0 >> Self::SERIAL_BITS) as u16)
    }

    /// The id as one integer (what maps key it by, and what logs print).
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.gate().0, self.0 & Self::SERIAL_MASK)
    }
}

/// Hands out the ids of one gate's clients, from 1.
#[derive(Debug)]
pub struct ClientIds {
    gate: GateId,
    next: AtomicU64,
}

impl ClientIds {
    /// Ids for the clients of `gate`.
    pub fn new(gate: GateId) -> Self {
        Self {
            gate,
            next: AtomicU64::new(1),
        }
    }

    /// Ids for the clients of `gate` from serial `first` on: a gate that
    /// restarts under the same number starts past the ids of its last run
    /// (from the clock), so the two never share one.
    pub fn starting_at(gate: GateId, first: u64) -> Self {
        Self {
            gate,
            next: AtomicU64::new(first.clamp(1, (1 << ClientId::SERIAL_BITS) - 1)),
        }
    }

    /// A client id this gate has not given before.
    pub fn next(&self) -> ClientId {
        ClientId::new(self.gate, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

// ---- maps keyed by ids ----
//
// Ids are assigned by the host, never chosen by a client, so they need no
// DoS-resistant hasher, and the hot paths (a move looks up its entity and
// its place, the gate its client) should not pay for SipHash.

/// A `HashMap` keyed by entity id (or, with `K`, another id made of one
/// integer, such as a client's).
pub type IdMap<V, K = EntityId> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Multiply-shift hashing of one integer (as FxHash does).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_names_its_gate_and_two_gates_never_collide() {
        let (a, b) = (ClientIds::new(GateId(0)), ClientIds::new(GateId(7)));
        let ids: Vec<ClientId> = (0..100).flat_map(|_| [a.next(), b.next()]).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert!(ids.iter().step_by(2).all(|c| c.gate() == GateId(0)));
        assert!(ids.iter().skip(1).step_by(2).all(|c| c.gate() == GateId(7)));
        assert_eq!(
            ClientId::new(GateId(u16::MAX), u64::MAX).gate(),
            GateId(u16::MAX)
        );
        assert_eq!(ClientId::new(GateId(3), 9).to_string(), "3.9");
    }
}
