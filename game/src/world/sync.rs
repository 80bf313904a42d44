//! Position sync for one client: the slots of protocol 3's `Positions`
//! frame. Each entity whose place the client is sent holds a slot, from
//! the moment the client is told to create it (or, for its own entity, from
//! entering a space) until it is told to destroy it.
//!
//! Every entity in a client's slots is in one space — the space of the
//! client's own entity — so a slot refers to it by its handle in that
//! space's grid, and reading its place is an array access. What a client
//! holds of a place need not be kept per client: every client in a space is
//! sent the changes of every place it has a slot for at each tick, so
//! between ticks it holds the place as the last tick settled it, which the
//! space keeps once for all ([`SpacePlaces::settled`]). A slot is bound
//! between ticks (a client that logs in, or walks into a space) with the
//! place as it is then; such a slot is marked, and bound again at the next
//! tick if the place changed since the last.

use wyrm_aoi::Handle;
use wyrm_protocol::PositionsWriter;

use crate::msg::EntityId;
use crate::space::SpacePlaces;

/// See the module docs. A client holds a slot for every entity it sees
/// (hundreds, in a crowd), and a tick looks at every slot of every client:
/// a slot is one word.
#[derive(Debug, Default)]
pub(crate) struct PositionSync {
    /// The space the slots are in.
    space: Option<EntityId>,
    /// By slot: the handle's index, with `UNSENT` while the slot is not
    /// bound on the client yet and `BETWEEN` if it was bound between two
    /// ticks, and above them the low half of the entity's id; `FREE` for a
    /// free slot. The full id is the space's (the slot is checked against
    /// it before use); the low half finds the slot of an entity, with the
    /// space's id telling apart two that share it.
    slots: Vec<u64>,
    /// No slot below this is free.
    first_free: usize,
}

const FREE: u64 = u64::MAX;
/// Handle indices stay below 2^30 (the AOI grid's limit).
const INDEX: u64 = (1 << 30) - 1;
const BETWEEN: u64 = 1 << 30;
const UNSENT: u64 = 1 << 31;
const TAG: u64 = !(INDEX | BETWEEN | UNSENT);

impl PositionSync {
    /// The space the client's own entity is in.
    pub(super) fn space(&self) -> Option<EntityId> {
        self.space
    }

    /// The client's own entity moved to `space` (or out of any): every slot
    /// is free again. Entities of the old space the client still holds get
    /// their `Destroy`, which frees nothing more; the client rebinds slots
    /// as the next frames say.
    pub(super) fn reset(&mut self, space: Option<EntityId>) {
        self.space = space;
        self.slots = Vec::new();
        self.first_free = 0;
    }

    /// The client is told of `entity` (at `handle` in the slots' space):
    /// the next frame binds it a slot.
    pub(super) fn show(&mut self, entity: EntityId, handle: Handle) {
        if self.space.is_none() {
            return;
        }
        // A client is told to create what it sees once until it is told
        // to destroy it: no slot holds `entity` yet.
        let word = (entity << 32) | handle.index() as u64 | UNSENT;
        let free = self.slots[self.first_free..]
            .iter()
            .position(|&w| w == FREE)
            .map(|i| i + self.first_free);
        match free {
            Some(i) => {
                self.slots[i] = word;
                self.first_free = i + 1;
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Grow by a quarter, not double: a crowd's clients
                    // hold hundreds of slots each.
                    self.slots.reserve_exact(self.slots.len() / 4 + 8);
                }
                self.slots.push(word);
                self.first_free = self.slots.len();
            }
        }
    }

    /// The client is told `entity` is gone: its slot is free. `places`
    /// are the slots' space's.
    pub(super) fn hide(&mut self, entity: EntityId, places: Option<&SpacePlaces<'_>>) {
        if let Some(i) = self.slot_of(entity, places) {
            self.slots[i] = FREE;
            self.first_free = self.first_free.min(i);
            while self.slots.last() == Some(&FREE) {
                self.slots.pop();
            }
            if self.slots.capacity() > 2 * self.slots.len() + 16 {
                self.slots.shrink_to(self.slots.len() * 5 / 4);
            }
        }
    }

    /// The slot holding `entity`. Slots whose entity has the same low half
    /// of its id (ids 2^32 apart) are told apart by the space: the slot of
    /// an entity still in it names it; the slot of one that just left it
    /// names nobody.
    fn slot_of(&self, entity: EntityId, places: Option<&SpacePlaces<'_>>) -> Option<usize> {
        let tag = entity << 32;
        let mut left = None;
        for (i, &w) in self.slots.iter().enumerate() {
            if w == FREE || w & TAG != tag {
                continue;
            }
            match places.and_then(|p| p.get((w & INDEX) as usize)) {
                Some((e, _)) if e == entity => return Some(i),
                Some((0, _)) | None => left = left.or(Some(i)),
                Some(_) => {}
            }
        }
        left
    }

    /// Appends a `Positions` frame to `out`; returns false (and appends
    /// nothing) when it would be empty. At a tick (`tick`) it carries every
    /// change since the last tick of the places this client has slots for,
    /// and binds new slots; between ticks it only binds new slots.
    pub(super) fn write(
        &mut self,
        places: &SpacePlaces<'_>,
        tick: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        let mut w = PositionsWriter::new(out, places.resolution());
        for (i, word) in self.slots.iter_mut().enumerate() {
            let bind = *word & (UNSENT | BETWEEN) != 0;
            if *word == FREE || !tick && *word & UNSENT == 0 {
                continue;
            }
            let index = (*word & INDEX) as usize;
            if tick && *word & UNSENT == 0 && !places.changed(index) {
                // Bound between ticks at the place it still has.
                *word &= !BETWEEN;
                continue;
            }
            // A handle is reused only after its entity left the space,
            // which frees its slots first; check anyway.
            let Some((entity, now)) = places.get(index).filter(|&(e, _)| e << 32 == *word & TAG)
            else {
                continue;
            };
            let slot = i as u32;
            if bind {
                w.bind(slot, entity, now);
                *word = (*word & !(UNSENT | BETWEEN)) | if tick { 0 } else { BETWEEN };
            } else {
                w.update(slot, places.settled(index), now);
            }
        }
        w.finish()
    }

    /// Slots in use.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().filter(|&&w| w != FREE).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Spaces;
    use wyrm_protocol::{EntityPosition, Position, PositionTable, QuantPos, Resolution};

    fn at(x: f32, y: f32) -> Position {
        Position { x, y, z: 0.0 }
    }

    /// Two entities whose ids share their low half (2^32 apart) keep their
    /// own slots: hiding one, in the space or just out of it, frees its slot
    /// and not the other's.
    #[test]
    fn ids_that_share_their_low_half_keep_their_own_slots() {
        let mut spaces = Spaces::new(Resolution::default(), Default::default());
        spaces.create(1, "field".into());
        let (a, b) = (7, 7 + (1 << 32));
        let mut sync = PositionSync::default();
        sync.reset(Some(1));
        for id in [a, b] {
            spaces.enter(id, 1, at(1.0, 2.0), 0.0, None).unwrap();
            sync.show(id, spaces.handle(id).unwrap());
        }
        // `b` moves out of sight, still in the space.
        sync.hide(b, spaces.places(1).as_ref());
        let mut out = Vec::new();
        assert!(sync.write(&spaces.places(1).unwrap(), false, &mut out));
        let mut table = PositionTable::new();
        let mut got = Vec::new();
        table.apply(&out[1..], &mut got).unwrap();
        assert_eq!(got.iter().map(|p| p.entity).collect::<Vec<_>>(), [a]);
        // `b` comes back, then `a` leaves the space: its slot goes, `b`'s
        // stays.
        sync.show(b, spaces.handle(b).unwrap());
        spaces.leave(a);
        sync.hide(a, spaces.places(1).as_ref());
        assert_eq!(sync.len(), 1);
        out.clear();
        assert!(sync.write(&spaces.places(1).unwrap(), false, &mut out));
        got.clear();
        table.apply(&out[1..], &mut got).unwrap();
        assert_eq!(got.iter().map(|p| p.entity).collect::<Vec<_>>(), [b]);
    }

    /// The client's table, after applying every frame the sync wrote,
    /// holds exactly the server's quantized places.
    #[test]
    fn a_client_table_follows_random_moves_shows_and_hides() {
        let res = Resolution::default();
        let mut spaces = Spaces::new(res, Default::default());
        let space = 1;
        spaces.create(space, "field".into());
        let mut sync = PositionSync::default();
        sync.reset(Some(space));
        let mut table = PositionTable::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let ids: Vec<EntityId> = (10..60).collect();
        let mut shown = std::collections::HashSet::new();
        let mut buf = Vec::new();
        let mut got: Vec<EntityPosition> = Vec::new();
        for round in 0..3000 {
            let id = ids[(next() % ids.len() as u64) as usize];
            let place = at(
                (next() % 40_000) as f32 / 7.0,
                (next() % 40_000) as f32 / 3.0 - 5e3,
            );
            match next() % 6 {
                0 if spaces.space_of(id).is_none() => {
                    spaces.enter(id, space, place, 0.5, None).unwrap();
                }
                1 if spaces.space_of(id).is_some() => {
                    if shown.remove(&id) {
                        sync.hide(id, spaces.places(space).as_ref());
                        table.forget(id);
                    }
                    spaces.leave(id);
                }
                2 if spaces.space_of(id).is_some() && !shown.contains(&id) => {
                    sync.show(id, spaces.handle(id).unwrap());
                    shown.insert(id);
                }
                3 if shown.contains(&id) => {
                    sync.hide(id, spaces.places(space).as_ref());
                    table.forget(id);
                    shown.remove(&id);
                }
                _ if spaces.space_of(id).is_some() => {
                    let yaw = (next() % 10_000) as f32 / 100.0 - 50.0;
                    spaces.set_position(id, place, yaw).unwrap();
                }
                _ => {}
            }
            if round % 7 == 0 {
                buf.clear();
                // Between ticks only new slots are bound; at a tick the
                // client must hold every place as it is.
                let tick = round % 14 == 0;
                let wrote = sync.write(&spaces.places(space).unwrap(), tick, &mut buf);
                if tick {
                    spaces.settle();
                }
                if wrote {
                    got.clear();
                    table.apply(&buf[1..], &mut got).unwrap();
                }
                for &id in shown.iter().filter(|_| tick) {
                    let p = spaces.placement(id).unwrap();
                    let expect = QuantPos::new(res, p.pos, p.yaw);
                    assert_eq!(table.get(id), Some(expect), "entity {id} at round {round}");
                }
                assert_eq!(sync.len(), shown.len());
            }
        }
    }
}
