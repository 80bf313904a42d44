//! Wyrm's area of interest (AOI): which entities see which on the ground
//! plane, updated once per tick, and reported as enter/leave events.
//!
//! This crate is pure data structure: no I/O, no threads, no knowledge of
//! the world it serves. The host feeds it positions, calls
//! [`AoiGrid::update`] once per tick and forwards the events.
//!
//! # Rule
//!
//! Positions are `(x, y)` pairs of `f32`. Every entity has a `radius` and a
//! `hysteresis`; an entity whose radius is not positive sees nothing (it can
//! still be seen). Moves are only recorded; at each [`AoiGrid::update`],
//! for every ordered pair of entities present (watcher `w`, other `t`),
//! with `d2` their squared distance at their latest positions:
//!
//! - `d2 <= r * r` (the enter threshold): `w` sees `t`;
//! - `d2 > (r + h) * (r + h)` (the leave threshold): `w` does not see `t`;
//! - in between (the hysteresis band): unchanged from the previous update;
//!   a pair that did not exist at the previous update (one of them was
//!   inserted since) starts unseen.
//!
//! `d2` is `dx * dx + dy * dy` with `dx = a.x - b.x`, `dy = a.y - b.y`, and
//! every threshold is the product written above, all in `f32`; `r` and `h`
//! are the watcher's. Positions between two updates do not matter, only the
//! latest. Each change of a pair emits an [`AoiEvent`]. Removing an entity
//! is immediate: it emits a leave event for every pair it is in, in both
//! directions. The order of the events of one call is unspecified.
//!
//! # Design
//!
//! Each entity keeps its position at the previous update and its latest
//! one. The state of a pair at the previous update follows from its old
//! distance alone except in the band: inside the enter threshold it was
//! seen, beyond the leave threshold it was not. So a pair can change only if
//! its distance now is inside the enter threshold and was not before, or is
//! now beyond the leave threshold and was not before; only those pairs look
//! up the stored pair state, at about the rate of events.
//!
//! [`AoiGrid::update`] counting-sorts the entities into square cells half
//! as wide as the largest reach (radius + hysteresis) of the watchers that
//! are not large plus some slack, as planes of new and old `x`, `y` and
//! thresholds, row by row. Each entity is swept against the rest of its own
//! cell and the next two of its row, and the five cells around its column
//! in each of the next two rows: three contiguous runs of the planes, so
//! each unordered pair within two cells on both axes is computed once and
//! decides both directions. The inner loop runs on packed registers: AVX2
//! (lanes of 8, written with its intrinsics) when the CPU has it, else SSE2
//! (lanes of 4, portable code the compiler vectorizes; the crate's unit
//! tests run the oracle test on this path). The AVX2 sweep turns its
//! comparisons into bits of lanes at once, which also give the new states
//! of the pairs that may change, and sets up the runs shared by the
//! entities of a cell once per cell. Where every entity of a run has the
//! entity's own thresholds (one kind of entity, the common case) one mask
//! serves both directions. The pairs that may change are collected, then
//! settled (their link tables prefetched a few pairs ahead). The cells form
//! a dense table over the entities' bounding box when that is small, else a
//! table that wraps around (distant cells sharing a bucket only cost
//! distance tests).
//!
//! A pair the sweep does not visit is further apart than two cells, so
//! beyond every small reach; it can only change if one of its entities saw
//! the other, and since the old distance was then within reach, one of
//! them moved further than half the slack. The links of those few far
//! movers are checked directly, before the sweep.
//!
//! Watchers whose reach exceeds twice the `cell_size` hint are "large": in
//! the sweep they only are watched, and each update checks their own view
//! against every entity, so one large radius does not widen every cell.
//!
//! Each entity keeps one small open-addressing table of the entities it is
//! paired with, two bits each (it sees them, they see it), written only on
//! changes; [`AoiGrid::visible`], [`AoiGrid::watchers`] and
//! [`AoiGrid::sees`] read it.
//!
//! [`AoiGrid::within`] looks in the cells of the last update, widened by
//! the distance an entity may move before [`AoiGrid::move_to`] lists it
//! (half the slack: 0.075 of the hint), and at the listed entities (inserted
//! or moved further since); it tests the latest positions.

#![warn(missing_docs)]

mod links;
mod sweep;

// The oracle test again, inside the crate, where the sweep takes its SSE2
// path (the integration test takes the AVX2 one where the CPU has it).
#[cfg(test)]
extern crate self as wyrm_aoi;
#[cfg(test)]
#[path = "../tests/oracle.rs"]
mod oracle_sse2;

use links::{Links, SEEN, SEES};
use sweep::{dist2, Sweep};

/// Entities whose reach exceeds this many times the hint are "large".
const LARGE_FACTOR: f32 = 2.0;

/// Cells leave this fraction of the hint as slack beyond the largest small
/// reach: entities moving less than half of it per update cost no check
/// beyond the sweep.
const SLACK_FACTOR: f64 = 0.15;

/// The hint `Default` uses.
const DEFAULT_CELL_SIZE: f32 = 100.0;

/// Slot indices share a `u32` with two pair bits in the link tables.
const MAX_SLOTS: usize = (1 << 30) - 1;

/// A dense reference to an entity, returned by [`AoiGrid::insert`] and valid
/// until [`AoiGrid::remove`]. Operations on a handle take no hash lookup.
///
/// Passing a handle that was removed panics, unless its slot has been reused
/// by a later insert, in which case it refers to that newer entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle(u32);

impl Handle {
    /// A small number, unique among the grid's live entities (reused after
    /// a removal), for indexing side tables kept beside the grid.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A change of one pair: `watcher` started (`entered`) or stopped seeing
/// `other`. Both are the ids given to [`AoiGrid::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AoiEvent {
    /// The entity whose view changed.
    pub watcher: u64,
    /// The entity that entered or left the watcher's view.
    pub other: u64,
    /// `true` when `watcher` started seeing `other`, `false` when it stopped.
    pub entered: bool,
}

/// The set of entities and who sees whom.
///
/// Every operation reuses its buffers: once they have grown, an update
/// allocates only when a link table outgrows its capacity.
pub struct AoiGrid {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
    /// Entities whose reach exceeds this are large.
    large_limit: f32,
    /// Room cells leave beyond the largest small reach.
    slack: f64,
    /// An entity that moved further than this on an axis since the last
    /// update (or was inserted since) is in `moved`.
    drift: f32,
    /// Entities [`AoiGrid::within`] does not find in the last update's
    /// cells: inserted or moved further than `drift` since (some may have
    /// been removed since).
    moved: Vec<u32>,
    sweep: Sweep,
}

/// One entity.
#[derive(Default)]
pub(crate) struct Slot {
    /// Latest position.
    pub(crate) x: f32,
    pub(crate) y: f32,
    /// Position at the previous update; NaN if inserted since.
    pub(crate) ox: f32,
    pub(crate) oy: f32,
    /// Thresholds `r * r` and `(r + h) * (r + h)`; -1 for non-watchers.
    pub(crate) enter2: f32,
    pub(crate) leave2: f32,
    /// `r + h`; -1 for non-watchers.
    pub(crate) reach: f32,
    pub(crate) large: bool,
    pub(crate) live: bool,
    /// In `AoiGrid::moved`.
    pub(crate) moved: bool,
    pub(crate) id: u64,
    pub(crate) links: Links,
}

impl Default for AoiGrid {
    /// A grid for a cell-size hint of 100.
    fn default() -> Self {
        Self::new(DEFAULT_CELL_SIZE)
    }
}

impl AoiGrid {
    /// Creates an empty grid.
    ///
    /// `cell_size` is a hint: the largest radius + hysteresis most entities
    /// use. Cells are sized to the largest reach of the watchers present, up
    /// to twice the hint; watchers reaching further stay exact but each costs
    /// a check against every entity at each update. A hint that is not
    /// positive and finite selects 100.
    pub fn new(cell_size: f32) -> Self {
        let hint = if cell_size.is_finite() && cell_size > 0.0 {
            cell_size.clamp(1e-6, 1e15)
        } else {
            DEFAULT_CELL_SIZE
        };
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            large_limit: hint * LARGE_FACTOR,
            slack: f64::from(hint) * SLACK_FACTOR,
            drift: (f64::from(hint) * SLACK_FACTOR * 0.5) as f32,
            moved: Vec::new(),
            sweep: Sweep::default(),
        }
    }

    /// Adds entity `id` at `(x, y)`. It takes part from the next
    /// [`update`](Self::update) on, where its pairs start unseen.
    ///
    /// A non-finite coordinate is replaced by 0. A negative or NaN `radius` or
    /// `hysteresis` counts as 0; a radius of 0 makes an entity that sees
    /// nothing. Ids are not checked for uniqueness: they are only reported.
    ///
    /// # Panics
    ///
    /// With 2^30 - 1 entities already present.
    pub fn insert(&mut self, id: u64, x: f32, y: f32, radius: f32, hysteresis: f32) -> Handle {
        let radius = non_negative(radius);
        let hysteresis = non_negative(hysteresis);
        let watcher = radius > 0.0;
        let reach = radius + hysteresis;
        let h = match self.free.pop() {
            Some(h) => h,
            None => {
                assert!(self.slots.len() < MAX_SLOTS, "too many AOI entities");
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        if !self.slots[h as usize].moved {
            self.moved.push(h);
        }
        self.slots[h as usize] = Slot {
            x: finite_or_zero(x),
            y: finite_or_zero(y),
            ox: f32::NAN,
            oy: f32::NAN,
            enter2: if watcher { radius * radius } else { -1.0 },
            leave2: if watcher { reach * reach } else { -1.0 },
            reach: if watcher { reach } else { -1.0 },
            large: watcher && reach > self.large_limit,
            live: true,
            moved: true,
            id,
            links: Links::default(),
        };
        self.len += 1;
        Handle(h)
    }

    /// Records a new position for an entity; it takes effect at the next
    /// [`update`](Self::update). Only the latest position before an update
    /// counts.
    ///
    /// A non-finite coordinate is replaced by 0.
    ///
    /// # Panics
    ///
    /// If `h` was removed (see [`Handle`]).
    #[inline]
    pub fn move_to(&mut self, h: Handle, x: f32, y: f32) {
        let hi = self.check(h);
        let slot = &mut self.slots[hi];
        slot.x = finite_or_zero(x);
        slot.y = finite_or_zero(y);
        // NaN (inserted since the last update) fails the comparison.
        let stays =
            (slot.x - slot.ox).abs() <= self.drift && (slot.y - slot.oy).abs() <= self.drift;
        if !stays && !slot.moved {
            slot.moved = true;
            self.moved.push(h.0);
        }
    }

    /// Removes an entity now, appending a leave event for every pair it is
    /// in: for each entity it sees and each entity that sees it.
    ///
    /// # Panics
    ///
    /// If `h` was already removed (see [`Handle`]).
    pub fn remove(&mut self, h: Handle, events: &mut Vec<AoiEvent>) {
        let hi = self.check(h);
        let id = self.slots[hi].id;
        let links = self.slots[hi].links.take();
        for (t, bits) in links.iter() {
            let other = &mut self.slots[t as usize];
            other.links.set(h.0, 0);
            if bits & SEES != 0 {
                events.push(AoiEvent {
                    watcher: id,
                    other: other.id,
                    entered: false,
                });
            }
            if bits & SEEN != 0 {
                events.push(AoiEvent {
                    watcher: other.id,
                    other: id,
                    entered: false,
                });
            }
        }
        self.slots[hi].live = false;
        self.free.push(h.0);
        self.len -= 1;
    }

    /// Applies the rule to every pair at the entities' latest positions and
    /// appends an event for every pair that changes (both directions) to
    /// `events`.
    pub fn update(&mut self, events: &mut Vec<AoiEvent>) {
        self.sweep.update(&mut self.slots, self.slack, events);
        for &i in &self.moved {
            self.slots[i as usize].moved = false;
        }
        self.moved.clear();
    }

    /// The latest position given for an entity (non-finite inputs read 0).
    ///
    /// # Panics
    ///
    /// If `h` was removed (see [`Handle`]).
    pub fn position(&self, h: Handle) -> (f32, f32) {
        let slot = &self.slots[self.check(h)];
        (slot.x, slot.y)
    }

    /// The id an entity was inserted with.
    ///
    /// # Panics
    ///
    /// If `h` was removed (see [`Handle`]).
    pub fn id(&self, h: Handle) -> u64 {
        self.slots[self.check(h)].id
    }

    /// The ids of the entities `h` sees as of the last update (less those
    /// removed since), in no particular order.
    ///
    /// # Panics
    ///
    /// If `h` was removed (see [`Handle`]).
    pub fn visible(&self, h: Handle) -> impl Iterator<Item = u64> + '_ {
        self.linked(h, SEES)
    }

    /// The ids of the entities that see `h` as of the last update (less
    /// those removed since), in no particular order.
    ///
    /// # Panics
    ///
    /// If `h` was removed (see [`Handle`]).
    pub fn watchers(&self, h: Handle) -> impl Iterator<Item = u64> + '_ {
        self.linked(h, SEEN)
    }

    /// Whether `watcher` sees `other` as of the last update.
    ///
    /// # Panics
    ///
    /// If either handle was removed (see [`Handle`]).
    pub fn sees(&self, watcher: Handle, other: Handle) -> bool {
        let w = self.check(watcher);
        self.check(other);
        self.slots[w].links.get(other.0) & SEES != 0
    }

    /// Appends to `out` the id of every entity whose latest position is at
    /// squared distance `<= radius * radius` from `(x, y)` (computed like
    /// pair distances, with no hysteresis), in no particular order.
    ///
    /// It looks in the cells of the last update around the query, widened
    /// by how far an entity may have moved unnoticed, and at the entities
    /// inserted or moved further since: it costs about the entities near
    /// the query plus those. A radius wider than the field checks every
    /// entity.
    ///
    /// A non-finite coordinate is replaced by 0; a negative or NaN radius
    /// finds nothing.
    pub fn within(&self, x: f32, y: f32, radius: f32, out: &mut Vec<u64>) {
        if radius.is_nan() || radius < 0.0 {
            return;
        }
        let (x, y) = (finite_or_zero(x), finite_or_zero(y));
        let r2 = radius * radius;
        let hit = |s: &Slot| s.live && dist2(s.x, s.y, x, y) <= r2;
        // A found entity is within `radius` on each axis, up to the rounding
        // of `dist2` (relative 2^-22, or below 1e-22 where squares
        // underflow); one not in `moved` is within `drift` (up to rounding)
        // of where the last update put it. Rounding the box to `f64` is
        // monotonic, so it still holds those places.
        let reach = (f64::from(radius) + f64::from(self.drift)) * 1.001 + 1e-15;
        let (xs, ys) = (
            (f64::from(x) - reach, f64::from(x) + reach),
            (f64::from(y) - reach, f64::from(y) + reach),
        );
        let indexed = reach < 1e30
            && self.sweep.near(xs, ys, |i| {
                let s = &self.slots[i as usize];
                if !s.moved && hit(s) {
                    out.push(s.id);
                }
            });
        if indexed {
            out.extend(
                self.moved
                    .iter()
                    .map(|&i| &self.slots[i as usize])
                    .filter(|s| hit(s))
                    .map(|s| s.id),
            );
        } else {
            out.extend(self.slots.iter().filter(|s| hit(s)).map(|s| s.id));
        }
    }

    /// The number of entities.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entities.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot index of a live handle.
    fn check(&self, h: Handle) -> usize {
        let i = h.0 as usize;
        assert!(
            self.slots.get(i).is_some_and(|s| s.live),
            "AOI handle {h:?} was removed"
        );
        i
    }

    /// The ids linked to `h` with `bit` set.
    fn linked(&self, h: Handle, bit: u32) -> impl Iterator<Item = u64> + '_ {
        let slot = &self.slots[self.check(h)];
        slot.links
            .iter()
            .filter(move |&(_, bits)| bits & bit != 0)
            .map(|(t, _)| self.slots[t as usize].id)
    }
}

fn finite_or_zero(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

fn non_negative(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}
