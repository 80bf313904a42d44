//! Spaces: which entity is in which space, where, and what it sees.
//!
//! A space is an entity made a space by `create-space`; entities enter it
//! with a position and a heading. Each space keeps an [`AoiGrid`] that says
//! who sees whom. Entering and moving are recorded; who sees whom is worked
//! out for every space at once by [`Spaces::update_aoi`], once per tick, so
//! each pair is checked once however many moves the tick brought. Leaving
//! takes effect at once. Either way the resulting AOI changes land in
//! [`Spaces::events`] for the world to act on (client views, logic
//! events). Each space also keeps every entity's place as it is sent to
//! clients — quantized at the space's resolution — indexed like the grid,
//! so position sync reads it without a lookup ([`SpacePlaces`]).

use std::collections::HashMap;

use wyrm_aoi::{AoiEvent, AoiGrid, Handle};
use wyrm_protocol::{Position, QuantPos, Resolution};

use crate::msg::EntityId;
use wyrm_wire::IdMap;

/// An entity type's area of interest: it sees what is within `radius`,
/// and stops seeing it past `radius + hysteresis`; with `events`, its logic
/// is told what comes and goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aoi {
    pub radius: f32,
    pub hysteresis: f32,
    pub events: bool,
}

/// Where an entity is: its space, position and heading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub space: EntityId,
    pub pos: Position,
    pub yaw: f32,
}

/// A grid cell is this wide when no type in the space declares a larger
/// area of interest; the grid adapts its search to larger radii.
const DEFAULT_CELL: f32 = 100.0;

struct Space {
    kind: String,
    grid: AoiGrid,
    resolution: Resolution,
    /// By grid handle: the entity there and its place as sent to clients.
    places: Vec<SentPlace>,
    /// By grid handle: its place at the last tick's position sync, which
    /// every client that was sent it then holds.
    settled: Vec<QuantPos>,
    /// By grid handle, one bit each: the place changed since the last
    /// tick's position sync.
    changed: Vec<u64>,
}

/// An entity's place as clients are sent it.
#[derive(Debug, Clone, Copy, Default)]
struct SentPlace {
    entity: EntityId,
    q: QuantPos,
}

impl Space {
    fn set_place(&mut self, handle: Handle, entity: EntityId, pos: Position, yaw: f32) {
        let q = QuantPos::new(self.resolution, pos, yaw);
        let i = handle.index();
        if self.places.len() <= i {
            self.places.resize(i + 1, SentPlace::default());
            self.settled.resize(i + 1, QuantPos::default());
            self.changed.resize(self.places.len().div_ceil(64), 0);
        }
        let place = &mut self.places[i];
        if place.entity != entity || place.q != q {
            *place = SentPlace { entity, q };
            self.changed[i / 64] |= 1 << (i % 64);
        }
    }
}

/// The places of one space's entities as clients are sent them.
pub struct SpacePlaces<'a> {
    resolution: Resolution,
    places: &'a [SentPlace],
    settled: &'a [QuantPos],
    changed: &'a [u64],
}

impl SpacePlaces<'_> {
    /// The space's resolution.
    pub fn resolution(&self) -> Resolution {
        self.resolution
    }

    /// The entity at handle index `i` and its place.
    #[inline]
    pub fn get(&self, i: usize) -> Option<(EntityId, QuantPos)> {
        self.places.get(i).map(|p| (p.entity, p.q))
    }

    /// The place at handle index `i` as of the last tick's position sync:
    /// what a client that was sent it by then holds.
    #[inline]
    pub fn settled(&self, i: usize) -> QuantPos {
        self.settled.get(i).copied().unwrap_or_default()
    }

    /// Whether the place at handle index `i` changed since the last tick's
    /// position sync. Every client in the space is sent its changes at each
    /// tick, so a place that did not change is what every client already
    /// holds.
    #[inline]
    pub fn changed(&self, i: usize) -> bool {
        self.changed
            .get(i / 64)
            .is_none_or(|w| w & (1 << (i % 64)) != 0)
    }
}

/// Where an entity in a space is.
struct Placed {
    space: EntityId,
    handle: Handle,
    z: f32,
    yaw: f32,
}

/// See the module docs.
#[derive(Default)]
pub struct Spaces {
    spaces: IdMap<Space>,
    placed: IdMap<Placed>,
    /// The resolution of spaces whose kind is not in `resolutions`.
    resolution: Resolution,
    resolutions: HashMap<String, Resolution>,
    /// AOI changes the last operations produced, oldest first; the world
    /// drains them after each operation that can produce them.
    pub events: Vec<AoiEvent>,
}

impl Spaces {
    /// No spaces yet; positions of a space of kind `k` will be sent at
    /// `resolutions[k]`, or at `resolution`.
    pub fn new(resolution: Resolution, resolutions: HashMap<String, Resolution>) -> Self {
        Self {
            resolution,
            resolutions,
            ..Self::default()
        }
    }

    /// Makes entity `id` a space of `kind`.
    pub fn create(&mut self, id: EntityId, kind: String) {
        let resolution = self
            .resolutions
            .get(&kind)
            .copied()
            .unwrap_or(self.resolution);
        self.spaces.insert(
            id,
            Space {
                kind,
                grid: AoiGrid::new(DEFAULT_CELL),
                resolution,
                places: Vec::new(),
                settled: Vec::new(),
                changed: Vec::new(),
            },
        );
    }

    /// The kind of space `id`, if it is one.
    pub fn kind(&self, id: EntityId) -> Option<&str> {
        self.spaces.get(&id).map(|s| s.kind.as_str())
    }

    /// Whether `id` is a space.
    pub fn is_space(&self, id: EntityId) -> bool {
        self.spaces.contains_key(&id)
    }

    /// Every space, in ascending id order (ticks run in a stable order).
    pub fn ids(&self) -> Vec<EntityId> {
        let mut ids: Vec<EntityId> = self.spaces.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Ends space `id`, taking every entity out of it (leave events for
    /// all of them); returns those entities.
    pub fn destroy(&mut self, id: EntityId) -> Vec<EntityId> {
        let members: Vec<EntityId> = self.members(id).collect();
        for &m in &members {
            self.leave(m);
        }
        self.spaces.remove(&id);
        members
    }

    /// Puts `id` into `space` at `pos`, leaving any space it is in first
    /// (returned). `aoi` is its type's area of interest; who it sees, and
    /// who sees it, is worked out at the next [`update_aoi`](Self::update_aoi).
    pub fn enter(
        &mut self,
        id: EntityId,
        space: EntityId,
        pos: Position,
        yaw: f32,
        aoi: Option<Aoi>,
    ) -> Result<Option<EntityId>, String> {
        check_finite(pos, yaw)?;
        if self.spaces.contains_key(&id) {
            return Err(format!("entity {id} is a space; a space cannot enter one"));
        }
        if !self.spaces.contains_key(&space) {
            return Err(format!("entity {space} is not a space"));
        }
        let left = self.leave(id);
        let s = self
            .spaces
            .get_mut(&space)
            .ok_or_else(|| format!("entity {space} is not a space"))?;
        let (radius, hysteresis) = aoi.map_or((0.0, 0.0), |a| (a.radius, a.hysteresis));
        let handle = s.grid.insert(id, pos.x, pos.y, radius, hysteresis);
        s.set_place(handle, id, pos, yaw);
        self.placed.insert(
            id,
            Placed {
                space,
                handle,
                z: pos.z,
                yaw,
            },
        );
        Ok(left)
    }

    /// Takes `id` out of its space; returns the space it was in.
    pub fn leave(&mut self, id: EntityId) -> Option<EntityId> {
        let p = self.placed.remove(&id)?;
        if let Some(s) = self.spaces.get_mut(&p.space) {
            s.grid.remove(p.handle, &mut self.events);
            if let Some(place) = s.places.get_mut(p.handle.index()) {
                *place = SentPlace::default();
            }
        }
        Some(p.space)
    }

    /// Moves `id` within its space; AOI follows at the next
    /// [`update_aoi`](Self::update_aoi).
    pub fn set_position(&mut self, id: EntityId, pos: Position, yaw: f32) -> Result<(), String> {
        check_finite(pos, yaw)?;
        let p = self
            .placed
            .get_mut(&id)
            .ok_or_else(|| format!("entity {id} is in no space"))?;
        let s = self
            .spaces
            .get_mut(&p.space)
            .ok_or_else(|| format!("entity {id} is in no space"))?;
        s.grid.move_to(p.handle, pos.x, pos.y);
        s.set_place(p.handle, id, pos, yaw);
        p.z = pos.z;
        p.yaw = yaw;
        Ok(())
    }

    /// Where `id` is, if it is in a space.
    pub fn placement(&self, id: EntityId) -> Option<Place> {
        let p = self.placed.get(&id)?;
        let (x, y) = self.spaces.get(&p.space)?.grid.position(p.handle);
        Some(Place {
            space: p.space,
            pos: Position { x, y, z: p.z },
            yaw: p.yaw,
        })
    }

    /// The space `id` is in.
    pub fn space_of(&self, id: EntityId) -> Option<EntityId> {
        self.placed.get(&id).map(|p| p.space)
    }

    /// `id`'s handle in its space's grid, if it is in a space.
    pub fn handle(&self, id: EntityId) -> Option<Handle> {
        self.placed.get(&id).map(|p| p.handle)
    }

    /// The places of space `space`'s entities, as clients are sent them.
    pub fn places(&self, space: EntityId) -> Option<SpacePlaces<'_>> {
        self.spaces.get(&space).map(|s| SpacePlaces {
            resolution: s.resolution,
            places: &s.places,
            settled: &s.settled,
            changed: &s.changed,
        })
    }

    /// Every place is as clients were sent it: called after a tick's
    /// position sync.
    pub fn settle(&mut self) {
        for s in self.spaces.values_mut() {
            for (w, bits) in s.changed.iter_mut().enumerate() {
                let mut b = std::mem::take(bits);
                while b != 0 {
                    let i = w * 64 + b.trailing_zeros() as usize;
                    b &= b - 1;
                    if let (Some(to), Some(p)) = (s.settled.get_mut(i), s.places.get(i)) {
                        *to = p.q;
                    }
                }
            }
        }
    }

    /// The entities `id` sees, as of the last [`update_aoi`](Self::update_aoi).
    pub fn visible(&self, id: EntityId) -> impl Iterator<Item = EntityId> + '_ {
        self.grid_of(id).into_iter().flat_map(|(g, h)| g.visible(h))
    }

    /// The entities that see `id`, as of the last
    /// [`update_aoi`](Self::update_aoi).
    pub fn watchers(&self, id: EntityId) -> impl Iterator<Item = EntityId> + '_ {
        self.grid_of(id)
            .into_iter()
            .flat_map(|(g, h)| g.watchers(h))
    }

    /// The entities in space `space`.
    pub fn members(&self, space: EntityId) -> impl Iterator<Item = EntityId> + '_ {
        let in_space = self.spaces.contains_key(&space);
        self.placed
            .iter()
            .filter(move |(_, p)| in_space && p.space == space)
            .map(|(&id, _)| id)
    }

    /// The entities of `space` within `radius` of `center`.
    pub fn near(&self, space: EntityId, center: Position, radius: f32) -> Vec<EntityId> {
        let mut out = Vec::new();
        if let Some(s) = self.spaces.get(&space) {
            if radius.is_finite() && radius >= 0.0 {
                s.grid.within(center.x, center.y, radius, &mut out);
            }
        }
        out
    }

    /// Works out who sees whom in every space after the moves since the last
    /// call; the changes land in [`events`](Self::events).
    pub fn update_aoi(&mut self) {
        for s in self.spaces.values_mut() {
            s.grid.update(&mut self.events);
        }
    }

    fn grid_of(&self, id: EntityId) -> Option<(&AoiGrid, Handle)> {
        let p = self.placed.get(&id)?;
        Some((&self.spaces.get(&p.space)?.grid, p.handle))
    }
}

fn check_finite(pos: Position, yaw: f32) -> Result<(), String> {
    if [pos.x, pos.y, pos.z, yaw].iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err("positions and headings must be finite numbers".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: EntityId = 1;
    const SEES_10: Option<Aoi> = Some(Aoi {
        radius: 10.0,
        hysteresis: 2.0,
        events: false,
    });

    fn at(x: f32, y: f32) -> Position {
        Position { x, y, z: 0.0 }
    }

    fn field() -> Spaces {
        let mut s = Spaces::new(Resolution::default(), Default::default());
        s.create(SPACE, "field".into());
        s
    }

    /// The AOI changes since the last call, as (watcher, other, entered),
    /// sorted.
    fn events(s: &mut Spaces) -> Vec<(EntityId, EntityId, bool)> {
        let mut v: Vec<_> = s
            .events
            .drain(..)
            .map(|e| (e.watcher, e.other, e.entered))
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn who_sees_whom_changes_at_the_tick_with_hysteresis_and_at_once_on_leaving() {
        let mut s = field();
        s.enter(10, SPACE, at(0.0, 0.0), 0.0, SEES_10).unwrap();
        s.enter(20, SPACE, at(5.0, 0.0), 0.0, SEES_10).unwrap();
        // A blind entity is seen but sees nothing.
        s.enter(30, SPACE, at(0.0, 5.0), 0.0, None).unwrap();
        assert!(events(&mut s).is_empty(), "worked out at the tick");
        s.update_aoi();
        assert_eq!(
            events(&mut s),
            [
                (10, 20, true),
                (10, 30, true),
                (20, 10, true),
                (20, 30, true)
            ]
        );
        // Past the radius but within the hysteresis: 10 still sees 20 (and
        // 20 it); 30, 12.5 away now, is out of 20's sight.
        s.set_position(20, at(11.5, 0.0), 1.0).unwrap();
        s.update_aoi();
        assert_eq!(events(&mut s), [(20, 30, false)]);
        s.set_position(20, at(12.5, 0.0), 1.0).unwrap();
        s.update_aoi();
        assert_eq!(events(&mut s), [(10, 20, false), (20, 10, false)]);
        // Leaving tells at once.
        assert_eq!(s.leave(30), Some(SPACE));
        assert_eq!(events(&mut s), [(10, 30, false)]);
        assert_eq!(
            s.placement(20).map(|p| (p.space, p.pos, p.yaw)),
            Some((SPACE, at(12.5, 0.0), 1.0))
        );
        assert_eq!(s.placement(30), None);
    }

    #[test]
    fn entering_another_space_leaves_the_first_and_a_destroyed_space_empties() {
        let mut s = field();
        s.create(2, "cave".into());
        s.enter(10, SPACE, at(0.0, 0.0), 0.0, SEES_10).unwrap();
        s.enter(20, SPACE, at(1.0, 0.0), 0.0, SEES_10).unwrap();
        s.update_aoi();
        events(&mut s);
        assert_eq!(s.enter(20, 2, at(0.0, 0.0), 0.0, SEES_10), Ok(Some(SPACE)));
        assert_eq!(events(&mut s), [(10, 20, false), (20, 10, false)]);
        assert_eq!(s.space_of(20), Some(2));
        let mut members: Vec<_> = s.members(SPACE).collect();
        members.sort_unstable();
        assert_eq!(members, [10]);
        assert_eq!(s.destroy(2), [20]);
        assert_eq!(s.space_of(20), None);
        assert!(!s.is_space(2));
        assert_eq!(s.ids(), [SPACE]);
    }

    #[test]
    fn bad_places_and_bad_spaces_are_refused() {
        let mut s = field();
        assert!(
            s.enter(10, 99, at(0.0, 0.0), 0.0, None).is_err(),
            "not a space"
        );
        assert!(
            s.enter(SPACE, SPACE, at(0.0, 0.0), 0.0, None).is_err(),
            "a space in a space"
        );
        assert!(s.enter(10, SPACE, at(f32::NAN, 0.0), 0.0, None).is_err());
        assert!(s
            .enter(10, SPACE, at(0.0, 0.0), f32::INFINITY, None)
            .is_err());
        assert!(
            s.set_position(10, at(1.0, 1.0), 0.0).is_err(),
            "in no space"
        );
        s.enter(10, SPACE, at(0.0, 0.0), 0.0, None).unwrap();
        assert!(s.set_position(10, at(0.0, f32::NEG_INFINITY), 0.0).is_err());
        assert_eq!(
            s.placement(10).map(|p| p.pos),
            Some(at(0.0, 0.0)),
            "unchanged"
        );
    }

    #[test]
    fn near_finds_what_is_within_the_radius() {
        let mut s = field();
        for (id, x) in [(10, 0.0), (11, 3.0), (12, 6.0), (13, 50.0)] {
            s.enter(id, SPACE, at(x, 0.0), 0.0, None).unwrap();
        }
        let mut near = s.near(SPACE, at(1.0, 0.0), 5.0);
        near.sort_unstable();
        assert_eq!(near, [10, 11, 12]);
        assert!(s.near(SPACE, at(0.0, 0.0), f32::NAN).is_empty());
        assert!(s.near(99, at(0.0, 0.0), 5.0).is_empty());
    }

    #[test]
    fn a_place_is_marked_changed_until_the_tick_settles_it() {
        let mut s = field();
        s.enter(10, SPACE, at(1.0, 2.0), 0.0, None).unwrap();
        let h = s.handle(10).unwrap().index();
        let sent = |s: &Spaces| {
            let p = s.places(SPACE).unwrap();
            (p.get(h).map(|(e, _)| e), p.changed(h), p.settled(h))
        };
        let (entity, changed, settled) = sent(&s);
        assert_eq!((entity, changed), (Some(10), true));
        assert_eq!(settled, QuantPos::default(), "nothing settled yet");
        s.settle();
        let q = s.places(SPACE).unwrap().get(h).unwrap().1;
        assert_eq!(sent(&s), (Some(10), false, q));
        // The same place again is no change; another is.
        s.set_position(10, at(1.0, 2.0), 0.0).unwrap();
        assert!(!sent(&s).1);
        s.set_position(10, at(1.5, 2.0), 0.0).unwrap();
        assert!(sent(&s).1);
        assert_eq!(
            sent(&s).2,
            q,
            "clients hold the settled place until the tick"
        );
    }
}
