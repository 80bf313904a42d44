//! Spaces: which entity is in which space, where, and what it sees.
//!
//! A space is an entity made a space by `create-space`; entities enter it
//! with a position and a heading. Each space keeps an [`AoiGrid`] that says
//! who sees whom. Entering and moving are recorded; who sees whom is worked
//! out for every space at once by [`Spaces::update_aoi`], once per tick, so
//! each pair is checked once however many moves the tick brought. Leaving
//! takes effect at once. Either way the resulting AOI changes land in
//! [`Spaces::events`] for the world to act on (client views, logic
//! events). Positions that changed since the last tick are remembered so
//! the tick can send them, one batch per client.

use wyrm_aoi::{AoiEvent, AoiGrid, Handle};

use super::ids::IdMap;
use crate::msg::EntityId;
use crate::plugin::bindings::{AoiDecl, Placement, Position};

/// A grid cell is this wide when no type in the space declares a larger
/// area of interest; the grid adapts its search to larger radii.
const DEFAULT_CELL: f32 = 100.0;

struct Space {
    kind: String,
    grid: AoiGrid,
    /// Entities in the space whose position changed since the last tick.
    moved: Vec<EntityId>,
}

/// Where an entity in a space is.
struct Placed {
    space: EntityId,
    handle: Handle,
    z: f32,
    yaw: f32,
    /// In its space's `moved` list.
    moved: bool,
}

/// See the module docs.
#[derive(Default)]
pub struct Spaces {
    spaces: IdMap<Space>,
    placed: IdMap<Placed>,
    /// AOI changes the last operations produced, oldest first; the world
    /// drains them after each operation that can produce them.
    pub events: Vec<AoiEvent>,
}

impl Spaces {
    /// Makes entity `id` a space of `kind`.
    pub fn create(&mut self, id: EntityId, kind: String) {
        self.spaces.insert(
            id,
            Space {
                kind,
                grid: AoiGrid::new(DEFAULT_CELL),
                moved: Vec::new(),
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
        s.moved.push(id);
        self.placed.insert(
            id,
            Placed {
                space,
                handle,
                z: pos.z,
                yaw,
                moved: true,
            },
        );
        Ok(left)
    }

    /// Takes `id` out of its space; returns the space it was in.
    pub fn leave(&mut self, id: EntityId) -> Option<EntityId> {
        let p = self.placed.remove(&id)?;
        if let Some(s) = self.spaces.get_mut(&p.space) {
            s.grid.remove(p.handle, &mut self.events);
            if p.moved {
                s.moved.retain(|&m| m != id);
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
        p.z = pos.z;
        p.yaw = yaw;
        if !p.moved {
            p.moved = true;
            s.moved.push(id);
        }
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

    /// Whether `id`'s position changed since the last tick.
    pub fn moved(&self, id: EntityId) -> bool {
        self.placed.get(&id).is_some_and(|p| p.moved)
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

    /// Forgets which positions changed: called once the tick has sent them.
    pub fn clear_moved(&mut self) {
        for s in self.spaces.values_mut() {
            for id in s.moved.drain(..) {
                if let Some(p) = self.placed.get_mut(&id) {
                    p.moved = false;
                }
            }
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
