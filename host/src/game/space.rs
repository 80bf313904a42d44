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
use wyrm_protocol::{QuantPos, Resolution};

use crate::ids::IdMap;
use crate::msg::EntityId;
use wyrm_runtime::bindings::{AoiDecl, Placement, Position};

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
        let q = QuantPos::new(
            self.resolution,
            wyrm_protocol::Position {
                x: pos.x,
                y: pos.y,
                z: pos.z,
            },
            yaw,
        );
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
        aoi: Option<AoiDecl>,
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
    pub fn placement(&self, id: EntityId) -> Option<Placement> {
        let p = self.placed.get(&id)?;
        let (x, y) = self.spaces.get(&p.space)?.grid.position(p.handle);
        Some(Placement {
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
