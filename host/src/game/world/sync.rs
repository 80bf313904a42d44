//! Position sync for one client: the slots of protocol 3's `Positions`
//! frame. Each entity whose place the client is sent holds a slot, from
//! the moment the client is told to create it (or, for its own entity, from
//! entering a space) until it is told to destroy it; the slot remembers the
//! place last sent, so a frame carries only what changed since.
//!
//! Every entity in a client's slots is in one space — the space of the
//! client's own entity — so a slot refers to it by its handle in that
//! space's grid, and reading its place is an array access.

use wyrm_aoi::Handle;
use wyrm_protocol::{PositionsWriter, QuantPos};

use crate::game::space::SpacePlaces;
use crate::msg::EntityId;

/// See the module docs.
#[derive(Debug, Default)]
pub(in crate::game) struct PositionSync {
    /// The space the slots are in.
    space: Option<EntityId>,
    slots: Vec<Slot>,
    /// No slot below this is free.
    first_free: usize,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// `None` for a free slot.
    handle: Option<Handle>,
    entity: EntityId,
    /// What the client holds for this slot; `None` until it is bound.
    sent: Option<QuantPos>,
}

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
        self.slots.clear();
        self.first_free = 0;
    }

    /// The client is told of `entity` (at `handle` in the slots' space):
    /// the next frame binds it a slot.
    pub(super) fn show(&mut self, entity: EntityId, handle: Handle) {
        if self.space.is_none() || self.slot_of(entity).is_some() {
            return;
        }
        let slot = Slot {
            handle: Some(handle),
            entity,
            sent: None,
        };
        let free = self.slots[self.first_free..]
            .iter()
            .position(|s| s.handle.is_none())
            .map(|i| i + self.first_free);
        match free {
            Some(i) => {
                self.slots[i] = slot;
                self.first_free = i + 1;
            }
            None => {
                self.slots.push(slot);
                self.first_free = self.slots.len();
            }
        }
    }

    /// The client is told `entity` is gone: its slot is free.
    pub(super) fn hide(&mut self, entity: EntityId) {
        if let Some(i) = self.slot_of(entity) {
            self.slots[i].handle = None;
            self.first_free = self.first_free.min(i);
            while self.slots.last().is_some_and(|s| s.handle.is_none()) {
                self.slots.pop();
            }
        }
    }

    fn slot_of(&self, entity: EntityId) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.handle.is_some() && s.entity == entity)
    }

    /// Appends a `Positions` frame with what changed since the last one to
    /// `out`; returns false (and appends nothing) when nothing did.
    pub(super) fn write(&mut self, places: &SpacePlaces<'_>, out: &mut Vec<u8>) -> bool {
        let mut w = PositionsWriter::new(out, places.resolution());
        for (i, s) in self.slots.iter_mut().enumerate() {
            let Some(handle) = s.handle else {
                continue;
            };
            // A handle is reused only after its entity left the space,
            // which frees its slots first; check anyway.
            let Some(now) = places.get(handle, s.entity) else {
                continue;
            };
            let slot = i as u32;
            match s.sent {
                None => w.bind(slot, s.entity, now),
                Some(before) => {
                    if !w.update(slot, before, now) {
                        continue;
                    }
                }
            }
            s.sent = Some(now);
        }
        w.finish()
    }

    /// Slots in use.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.handle.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::space::Spaces;
    use crate::plugin::bindings::Position;
    use wyrm_protocol::{EntityPosition, PositionTable, Resolution};

    fn at(x: f32, y: f32) -> Position {
        Position { x, y, z: 0.0 }
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
                        sync.hide(id);
                        table.forget(id);
                    }
                    spaces.leave(id);
                }
                2 if spaces.space_of(id).is_some() && !shown.contains(&id) => {
                    sync.show(id, spaces.handle(id).unwrap());
                    shown.insert(id);
                }
                3 if shown.contains(&id) => {
                    sync.hide(id);
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
                if sync.write(&spaces.places(space).unwrap(), &mut buf) {
                    got.clear();
                    table.apply(&buf[1..], &mut got).unwrap();
                }
                for &id in &shown {
                    let p = spaces.placement(id).unwrap();
                    let expect = QuantPos::new(
                        res,
                        wyrm_protocol::Position {
                            x: p.pos.x,
                            y: p.pos.y,
                            z: p.pos.z,
                        },
                        p.yaw,
                    );
                    assert_eq!(table.get(id), Some(expect), "entity {id} at round {round}");
                }
                assert_eq!(sync.len(), shown.len());
            }
        }
    }
}
