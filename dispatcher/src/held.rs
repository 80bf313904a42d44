//! Bytes the host holds on a plugin's behalf until they are delivered.
//!
//! Whatever a plugin queues — a call for another entity, a frame for a
//! client, a storage operation, a password hash, a stats event — waits
//! somewhere in the host: the game's work queue, a batch for the gate, the
//! storage, password or stats thread's queue. Each of those queues is
//! bounded in items, but an item can carry a value of up to `[limits]
//! value_bytes`, so items alone do not bound memory. A [`Charge`] travels
//! with what was queued and counts its bytes against the plugin's [`Held`]
//! total until it is dropped, wherever that happens; the game refuses what
//! would take a plugin past `[limits] queued_bytes`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What one queued item counts on top of its own bytes: its bookkeeping
/// (the item, the queue's slot), so that a flood of empty items counts too.
pub const ITEM_BYTES: usize = 128;

/// The bytes a plugin has queued on the host, not yet delivered.
#[derive(Debug, Clone, Default)]
pub struct Held(Arc<AtomicUsize>);

impl Held {
    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts `bytes` until the returned charge is dropped.
    pub fn charge(&self, bytes: usize) -> Charge {
        self.0.fetch_add(bytes, Ordering::Relaxed);
        Charge {
            held: self.0.clone(),
            bytes,
        }
    }
}

/// Bytes counted against a plugin's [`Held`] total until this is dropped.
#[derive(Debug)]
pub struct Charge {
    held: Arc<AtomicUsize>,
    bytes: usize,
}

impl Charge {
    /// Counts `bytes` more under this charge.
    pub fn add(&mut self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
        self.bytes += bytes;
    }

    /// The bytes this charge counts.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A game's output batch on its way to the gate, with what its frames
/// count against the plugins that made them (`[limits] queued_bytes`)
/// until the gate has handed them on and drops it.
#[derive(Debug, Default)]
pub struct HeldBatch {
    pub batch: wyrm_wire::GateBatch,
    pub held: Vec<Charge>,
}

impl From<HeldBatch> for (wyrm_wire::GateBatch, Vec<Charge>) {
    /// The batch, and what it holds until it has been handed on.
    fn from(out: HeldBatch) -> Self {
        (out.batch, out.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_counts_until_dropped() {
        let held = Held::default();
        let mut a = held.charge(100);
        let b = held.charge(28);
        assert_eq!(held.bytes(), 128);
        a.add(72);
        assert_eq!((held.bytes(), a.bytes()), (200, 172));
        drop(a);
        assert_eq!(held.bytes(), 28);
        drop(b);
        assert_eq!(held.bytes(), 0);
    }
}
