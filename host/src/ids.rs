//! Maps keyed by entity or client id, with a cheap hash: ids are assigned
//! by the host, never chosen by a client, so they need no DoS-resistant
//! hasher, and the hot paths (a move looks up its entity and its place, the
//! gate its client) should not pay for SipHash.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::msg::EntityId;

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
