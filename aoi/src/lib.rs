//! Wyrm's area of interest (AOI): which entities see which on the ground
//! plane, kept up to date as they move, and reported as enter/leave events.
//!
//! This crate is pure data structure: no I/O, no threads, no knowledge of
//! the world it serves. The host feeds it positions and forwards the events.
//!
//! # Rule
//!
//! Positions are `(x, y)` pairs of `f32`. Every entity has a `radius` and a
//! `hysteresis`; an entity whose radius is not positive sees nothing (it can
//! still be seen). Watcher `w` sees another entity `t` according to a pair
//! state that changes only when `w` or `t` is inserted or moves:
//!
//! - `d2 <= r * r` (the enter threshold): `w` sees `t`;
//! - `d2 > (r + h) * (r + h)` (the leave threshold): `w` does not see `t`;
//! - in between (the hysteresis band): unchanged; a pair that starts in the
//!   band at insertion starts unseen.
//!
//! `d2` is `dx * dx + dy * dy` with `dx = a.x - b.x`, `dy = a.y - b.y`, and
//! every threshold is the product written above, all in `f32`; `r` and `h`
//! are the watcher's. Each change of a pair emits an [`AoiEvent`]; removing
//! an entity emits a leave event for every pair it was part of, in both
//! directions. The order of the events of one operation is unspecified.
//!
//! # Design
//!
//! Space is cut into square cells (half the `cell_size` hint), hashed onto a
//! table that wraps around, so coordinates need no bounds. A cell keeps its
//! entities as planes of `x`, `y`, enter and leave thresholds, so a scan over
//! them compiles to packed SSE2 arithmetic.
//!
//! A pair can only change when its distance crosses one of its thresholds.
//! A short move therefore scans only the cells of the ring between the
//! smallest enter radius and the largest leave radius around the mover,
//! widened by the step, and computes for every lane there whether the
//! pair's class (inside the enter threshold / in the band / beyond the leave
//! threshold) moved into "inside" or "beyond" between the old and the new
//! position, in either direction. Only those few lanes touch pair state.
//! When every watcher in a cell uses the mover's thresholds, one pair of
//! thresholds decides both directions. A long move (teleport) re-checks the
//! pairs in at the destination, then searches the destination for enters.
//!
//! Each entity keeps one small open-addressing table of the entities it is
//! paired with, two bits each (it sees them, they see it), so a move asks
//! only the mover's table and writes the other entity's only on a change,
//! and [`AoiGrid::visible`] / [`AoiGrid::watchers`] iterate it.
//!
//! Watchers whose leave radius exceeds twice the hint are kept in a side
//! list that every operation checks, so one large radius does not widen
//! every search.

#![warn(missing_docs)]

use std::collections::BTreeMap;

/// Lanes of a cell are padded to a multiple of this, one SSE2 register of
/// `f32`: the scans run over whole registers.
const PAD: usize = 4;

/// Cell coordinates are clamped to this range so they stay exact in `f64`;
/// a search reaching it scans every bucket.
const CELL_LIMIT: i64 = 1 << 40;

/// Cells are this many times smaller than the `cell_size` hint: with the hint
/// at the usual leave radius, a short move's ring of cells then covers little
/// more than the band where pairs can change.
const CELL_DIVISOR: f32 = 2.0;

/// Entities whose leave radius exceeds this many times the hint are "large":
/// every move checks them directly instead of widening every search.
const LARGE_FACTOR: f32 = 2.0;

/// The hint `Default` uses.
const DEFAULT_CELL_SIZE: f32 = 100.0;

/// Relative slack on every geometric pruning bound, far above the rounding of
/// the `f32` distance arithmetic, so pruning never drops a pair the exact test
/// would change.
const REL_MARGIN: f64 = 1e-5;

/// Absolute slack on the pruning bounds, for distances so small that their
/// `f32` squares lose precision to underflow.
const ABS_MARGIN: f64 = 1e-18;

/// A search this wide (or wider) scans every bucket: beyond it the squared
/// thresholds overflow `f32` and the ring geometry no longer bounds anything.
const HUGE_RADIUS: f64 = 1e18;

/// Smallest table: 2^5 x 2^5 buckets.
const MIN_BITS: u32 = 5;

/// Largest table: 2^24 buckets.
const MAX_TOTAL_BITS: u32 = 24;

/// Marks a slot that is not in the large list.
const NOT_LARGE: u32 = u32::MAX;

/// Marks a free slot (in `Slot::bucket`).
const FREE: u32 = u32::MAX;

/// Slot indices share a `u32` with two pair bits in the link tables.
const MAX_SLOTS: usize = (1 << 30) - 1;

/// A dense reference to an entity, returned by [`AoiGrid::insert`] and valid
/// until [`AoiGrid::remove`]. Operations on a handle take no hash lookup.
///
/// Passing a handle that was removed panics, unless its slot has been reused
/// by a later insert, in which case it refers to that newer entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle(u32);

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
/// The table of cells grows with the number of entities; every operation
/// reuses its buffers, so moves allocate only when a cell or a link table
/// outgrows its capacity.
pub struct AoiGrid {
    grid: Grid,
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
    /// Large watchers, checked directly by every move.
    large: Lanes,
    large_limit: f32,
    /// Thresholds of the watchers that are not large, as `f32` bits (ordered
    /// like the values since they are never negative), with counts: they
    /// bound the ring a move must search.
    small_enter2: BTreeMap<u32, u32>,
    small_leave2: BTreeMap<u32, u32>,
    /// Smallest of `small_enter2` (infinity if none).
    min_small_enter2: f32,
    /// Largest of `small_leave2` (-1 if none).
    max_small_leave2: f32,
    /// Reused by teleports.
    scratch: Vec<u32>,
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
    /// use. The grid's cells are half of it. Entities reaching more than twice
    /// the hint stay correct but are checked by every move, so a hint far
    /// below the usual radius makes moves slow, and one far above makes cells
    /// crowded. A hint that is not positive and finite selects 100.
    pub fn new(cell_size: f32) -> Self {
        let hint = if cell_size.is_finite() && cell_size > 0.0 {
            cell_size.clamp(1e-6, 1e15)
        } else {
            DEFAULT_CELL_SIZE
        };
        Self {
            grid: Grid::new(f64::from(hint / CELL_DIVISOR), MIN_BITS, MIN_BITS),
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            large: Lanes::default(),
            large_limit: hint * LARGE_FACTOR,
            small_enter2: BTreeMap::new(),
            small_leave2: BTreeMap::new(),
            min_small_enter2: f32::INFINITY,
            max_small_leave2: -1.0,
            scratch: Vec::new(),
        }
    }

    /// Adds entity `id` at `(x, y)` and appends an enter event for every pair
    /// it starts in (both directions) to `events`.
    ///
    /// A non-finite coordinate is replaced by 0. A negative or NaN `radius` or
    /// `hysteresis` counts as 0; a radius of 0 makes an entity that sees
    /// nothing. Ids are not checked for uniqueness: they are only reported.
    ///
    /// # Panics
    ///
    /// With 2^30 - 1 entities already present.
    pub fn insert(
        &mut self,
        id: u64,
        x: f32,
        y: f32,
        radius: f32,
        hysteresis: f32,
        events: &mut Vec<AoiEvent>,
    ) -> Handle {
        let (x, y) = (finite_or_zero(x), finite_or_zero(y));
        let radius = non_negative(radius);
        let hysteresis = non_negative(hysteresis);
        let watcher = radius > 0.0;
        let reach = if watcher { radius + hysteresis } else { -1.0 };
        // Thresholds no distance can meet make a non-watcher's pairs "out"
        // by the same comparisons as everyone else's.
        let (enter2, leave2) = if watcher {
            (radius * radius, reach * reach)
        } else {
            (-1.0, -1.0)
        };
        let large = watcher && reach > self.large_limit;

        let h = match self.free.pop() {
            Some(h) => h,
            None => {
                assert!(self.slots.len() < MAX_SLOTS, "too many AOI entities");
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[h as usize];
        slot.id = id;
        slot.x = x;
        slot.y = y;
        slot.enter2 = enter2;
        slot.leave2 = leave2;
        slot.large = NOT_LARGE;

        let outer = radius_of(leave2.max(self.max_small_leave2));
        self.scan_enters(h, x, y, enter2, outer, events);

        // In the grid, a large watcher looks like a non-watcher: the pairs it
        // watches are checked through the large list.
        let (grid_enter2, grid_leave2) = if watcher && !large {
            (enter2, leave2)
        } else {
            (-1.0, -1.0)
        };
        let lane = Lane {
            x,
            y,
            enter2: grid_enter2,
            leave2: grid_leave2,
            h,
        };
        let bucket = self.grid.bucket_of(x, y);
        let index = self.grid.buckets[bucket].push(lane);
        let slot = &mut self.slots[h as usize];
        slot.bucket = bucket as u32;
        slot.lane = index;
        if large {
            slot.large = self.large.push(Lane {
                enter2,
                leave2,
                ..lane
            });
        } else if watcher {
            count_add(&mut self.small_enter2, enter2);
            count_add(&mut self.small_leave2, leave2);
            self.refresh_small_bounds();
        }
        self.len += 1;
        if self.len > self.grid.buckets.len() {
            self.grow();
        }
        Handle(h)
    }

    /// Removes an entity and appends a leave event for every pair it was in:
    /// for each entity it saw and each entity that saw it.
    ///
    /// # Panics
    ///
    /// If `h` was already removed (see [`Handle`]).
    pub fn remove(&mut self, h: Handle, events: &mut Vec<AoiEvent>) {
        let hi = self.check(h);
        let id = self.slots[hi].id;
        let links = std::mem::take(&mut self.slots[hi].links);
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

        let slot = &self.slots[hi];
        let (bucket, lane, large) = (slot.bucket as usize, slot.lane, slot.large);
        let (enter2, leave2) = (slot.enter2, slot.leave2);
        if let Some(moved) = self.grid.buckets[bucket].swap_remove(lane) {
            self.slots[moved as usize].lane = lane;
        }
        if large != NOT_LARGE {
            if let Some(moved) = self.large.swap_remove(large) {
                self.slots[moved as usize].large = large;
            }
        } else if enter2 >= 0.0 {
            count_remove(&mut self.small_enter2, enter2);
            count_remove(&mut self.small_leave2, leave2);
            self.refresh_small_bounds();
        }
        self.slots[hi].bucket = FREE;
        self.free.push(h.0);
        self.len -= 1;
    }

    /// Moves an entity to `(x, y)` and appends an event for every pair that
    /// changes (both directions) to `events`.
    ///
    /// A non-finite coordinate is replaced by 0.
    ///
    /// # Panics
    ///
    /// If `h` was removed (see [`Handle`]).
    pub fn move_to(&mut self, h: Handle, x: f32, y: f32, events: &mut Vec<AoiEvent>) {
        let hi = self.check(h);
        let (nx, ny) = (finite_or_zero(x), finite_or_zero(y));
        let slot = &self.slots[hi];
        let (ox, oy) = (slot.x, slot.y);
        if ox != nx || oy != ny {
            // The ring a move searches: from the smallest enter radius to the
            // largest leave radius of the mover and of the grid's watchers.
            let outer = radius_of(slot.leave2.max(self.max_small_leave2));
            let inner = if slot.enter2 >= 0.0 {
                radius_of(slot.enter2.min(self.min_small_enter2))
            } else {
                radius_of(self.min_small_enter2)
            };
            let (ddx, ddy) = (f64::from(nx) - f64::from(ox), f64::from(ny) - f64::from(oy));
            let step = (ddx * ddx + ddy * ddy).sqrt();
            // A short step scans a thin ring; past half the search radius the
            // ring is most of a disc and re-checking the pairs in is cheaper.
            if step * 2.0 <= outer {
                self.move_short(h.0, (ox, oy), (nx, ny), step, outer, inner, events);
            } else {
                self.move_far(h.0, nx, ny, outer, events);
            }
        }
        self.relocate(hi, nx, ny);
    }

    /// The position of an entity, as last stored (non-finite inputs read 0).
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

    /// The ids of the entities `h` sees, in no particular order.
    ///
    /// # Panics
    ///
    /// If `h` was removed (see [`Handle`]).
    pub fn visible(&self, h: Handle) -> impl Iterator<Item = u64> + '_ {
        self.linked(h, SEES)
    }

    /// The ids of the entities that see `h`, in no particular order.
    ///
    /// # Panics
    ///
    /// If `h` was removed (see [`Handle`]).
    pub fn watchers(&self, h: Handle) -> impl Iterator<Item = u64> + '_ {
        self.linked(h, SEEN)
    }

    /// Whether `watcher` sees `other`.
    ///
    /// # Panics
    ///
    /// If either handle was removed (see [`Handle`]).
    pub fn sees(&self, watcher: Handle, other: Handle) -> bool {
        let w = self.check(watcher);
        self.check(other);
        self.slots[w].links.get(other.0) & SEES != 0
    }

    /// Appends to `out` the id of every entity at squared distance
    /// `<= radius * radius` from `(x, y)` (computed like pair distances, with
    /// no hysteresis), in no particular order.
    ///
    /// A non-finite coordinate is replaced by 0; a negative or NaN radius
    /// finds nothing.
    pub fn within(&self, x: f32, y: f32, radius: f32, out: &mut Vec<u64>) {
        if radius.is_nan() || radius < 0.0 {
            return;
        }
        let (x, y) = (finite_or_zero(x), finite_or_zero(y));
        let r2 = radius * radius;
        let Self { grid, slots, .. } = self;
        let outer = f64::from(radius) * (1.0 + REL_MARGIN) + ABS_MARGIN;
        grid.for_each_ring(f64::from(x), f64::from(y), outer, -1.0, |lanes| {
            let (lx, ly, _, _) = lanes.planes();
            let handles = lanes.handles();
            for k in 0..lanes.len as usize {
                if dist2(f32::from_bits(lx[k]), f32::from_bits(ly[k]), x, y) <= r2 {
                    out.push(slots[handles[k] as usize].id);
                }
            }
        });
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
            self.slots.get(i).is_some_and(|s| s.bucket != FREE),
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

    /// A short move: only pairs whose class differs between the old and the
    /// new position can change, and they lie in the ring of cells between the
    /// smallest enter radius and the largest leave radius, widened by `step`.
    #[allow(clippy::too_many_arguments)]
    fn move_short(
        &mut self,
        m: u32,
        old: (f32, f32),
        new: (f32, f32),
        step: f64,
        outer: f64,
        inner: f64,
        events: &mut Vec<AoiEvent>,
    ) {
        let Self {
            grid, slots, large, ..
        } = self;
        let mover = &slots[m as usize];
        let (enter2, leave2) = (mover.enter2, mover.leave2);
        mover.links.warm();
        if outer >= 0.0 {
            let outer = outer * (1.0 + REL_MARGIN) + step + ABS_MARGIN;
            let inner = inner * (1.0 - REL_MARGIN) - step - ABS_MARGIN;
            let (px, py) = (f64::from(old.0), f64::from(old.1));
            let (slots, events) = (&mut *slots, &mut *events);
            let mover = (enter2, leave2);
            grid.for_each_ring(px, py, outer, inner, move |lanes| {
                let mask = lanes.changed_mask(old, new, mover);
                if mask != 0 {
                    apply_changes(slots, events, m, lanes, mask, old, new, mover);
                }
            });
        }
        // Only the large watchers' side: the mover's side of those pairs was
        // handled in the grid, where large entities are lanes too.
        let mask = large.changed_mask(old, new, (-1.0, -1.0));
        if mask != 0 {
            apply_changes(slots, events, m, large, mask, old, new, (-1.0, -1.0));
        }
    }

    /// A long move: every pair in is re-checked at the destination (leaves),
    /// then the destination's surroundings are searched (enters).
    fn move_far(&mut self, m: u32, nx: f32, ny: f32, outer: f64, events: &mut Vec<AoiEvent>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let slots = &mut self.slots;
        let (enter2, leave2) = (slots[m as usize].enter2, slots[m as usize].leave2);
        scratch.clear();
        scratch.extend(
            slots[m as usize]
                .links
                .iter()
                .map(|(t, bits)| t << 2 | bits),
        );
        for &link in &scratch {
            let (t, bits) = (link >> 2, link & 3);
            let other = &slots[t as usize];
            let d2 = dist2(other.x, other.y, nx, ny);
            let sees = (bits & SEES != 0 && d2 > leave2).then_some(false);
            let seen = (bits & SEEN != 0 && d2 > other.leave2).then_some(false);
            settle(slots, events, m, t, sees, seen);
        }
        self.scratch = scratch;
        self.scan_enters(m, nx, ny, enter2, outer, events);
    }

    /// Enters every pair between `m` (at `(x, y)`, seeing within `enter2`)
    /// and the entities within their enter thresholds, where not already in.
    /// `outer` bounds every enter radius involved except the large watchers'.
    fn scan_enters(
        &mut self,
        m: u32,
        x: f32,
        y: f32,
        enter2: f32,
        outer: f64,
        events: &mut Vec<AoiEvent>,
    ) {
        let Self {
            grid, slots, large, ..
        } = self;
        if outer >= 0.0 {
            let outer = outer * (1.0 + REL_MARGIN) + ABS_MARGIN;
            let (slots, events) = (&mut *slots, &mut *events);
            grid.for_each_ring(f64::from(x), f64::from(y), outer, -1.0, move |lanes| {
                if lanes.any_within(x, y, enter2) {
                    apply_enters(slots, events, m, lanes, x, y, enter2);
                }
            });
        }
        if large.any_within(x, y, -1.0) {
            apply_enters(slots, events, m, large, x, y, -1.0);
        }
    }

    /// Stores a new position in the slot, the grid lane and the large list.
    fn relocate(&mut self, hi: usize, x: f32, y: f32) {
        let bucket = self.grid.bucket_of(x, y);
        let slot = &mut self.slots[hi];
        slot.x = x;
        slot.y = y;
        let (old, lane, large) = (slot.bucket as usize, slot.lane, slot.large);
        if bucket == old {
            self.grid.buckets[bucket].set_position(lane, x, y);
        } else {
            let mut moving = self.grid.buckets[old].get(lane);
            if let Some(moved) = self.grid.buckets[old].swap_remove(lane) {
                self.slots[moved as usize].lane = lane;
            }
            moving.x = x;
            moving.y = y;
            let index = self.grid.buckets[bucket].push(moving);
            let slot = &mut self.slots[hi];
            slot.bucket = bucket as u32;
            slot.lane = index;
        }
        if large != NOT_LARGE {
            self.large.set_position(large, x, y);
        }
    }

    /// Grows the table (the narrower side first) to about one bucket per
    /// entity, so distant cells rarely share a bucket, and re-files every
    /// lane.
    fn grow(&mut self) {
        let (mut wbits, mut hbits) = (self.grid.wbits, self.grid.hbits);
        while (1usize << (wbits + hbits)) < self.len && wbits + hbits < MAX_TOTAL_BITS {
            if wbits <= hbits {
                wbits += 1;
            } else {
                hbits += 1;
            }
        }
        if (wbits, hbits) == (self.grid.wbits, self.grid.hbits) {
            return;
        }
        let cell = self.grid.cell;
        let old = std::mem::replace(&mut self.grid, Grid::new(cell, wbits, hbits));
        for lanes in &old.buckets {
            for k in 0..lanes.len {
                let lane = lanes.get(k);
                let bucket = self.grid.bucket_of(lane.x, lane.y);
                let index = self.grid.buckets[bucket].push(lane);
                let slot = &mut self.slots[lane.h as usize];
                slot.bucket = bucket as u32;
                slot.lane = index;
            }
        }
    }

    fn refresh_small_bounds(&mut self) {
        self.min_small_enter2 = self
            .small_enter2
            .keys()
            .next()
            .map_or(f32::INFINITY, |&bits| f32::from_bits(bits));
        self.max_small_leave2 = self
            .small_leave2
            .keys()
            .next_back()
            .map_or(-1.0, |&bits| f32::from_bits(bits));
    }
}

/// One entity, in one cache line: a move reads the mover's slot and that of
/// every entity a pair changes with.
#[derive(Default)]
#[repr(align(64))]
struct Slot {
    x: f32,
    y: f32,
    enter2: f32,
    leave2: f32,
    id: u64,
    /// The bucket holding its lane, or `FREE` for a free slot.
    bucket: u32,
    lane: u32,
    /// Index in the large list, or `NOT_LARGE`.
    large: u32,
    links: Links,
}

/// Link bit: this entity sees the other.
const SEES: u32 = 1;
/// Link bit: the other entity sees this one.
const SEEN: u32 = 2;
const NO_LINK: u32 = u32::MAX;

/// The entities one entity is paired with: an open-addressing table
/// (linear probing, backward-shift deletion) of `slot << 2 | bits`.
#[derive(Default)]
struct Links {
    table: Box<[u32]>,
    len: u32,
}

impl Links {
    fn home(&self, t: u32) -> usize {
        let bits = self.table.len().trailing_zeros();
        // Fibonacci hashing: slot indices are dense, one multiply spreads them.
        (t.wrapping_mul(0x9e37_79b9) >> (32 - bits)) as usize
    }

    /// The index of `t`'s entry, or of the empty entry where it would go.
    /// The table must not be empty.
    fn find(&self, t: u32) -> Result<usize, usize> {
        let mask = self.table.len() - 1;
        let mut i = self.home(t);
        loop {
            let e = self.table[i];
            if e == NO_LINK {
                return Err(i);
            }
            if e >> 2 == t {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Loads the table's cache lines, so the lookups a move makes after its
    /// scan find them in cache: the misses overlap each other and the scan
    /// instead of each stalling a lookup.
    #[inline(always)]
    fn warm(&self) {
        let mut acc = 0;
        for i in (0..self.table.len()).step_by(16) {
            acc |= self.table[i];
        }
        std::hint::black_box(acc);
    }

    /// The bits for `t` (0 if not linked).
    fn get(&self, t: u32) -> u32 {
        if self.table.is_empty() {
            return 0;
        }
        match self.find(t) {
            Ok(i) => self.table[i] & 3,
            Err(_) => 0,
        }
    }

    /// Sets the bits for `t`; 0 unlinks it.
    fn set(&mut self, t: u32, bits: u32) {
        if !self.table.is_empty() {
            match self.find(t) {
                Ok(i) if bits == 0 => {
                    self.delete(i);
                    self.len -= 1;
                    let cap = self.table.len();
                    if cap > 8 && (self.len as usize) * 8 < cap {
                        self.resize(cap / 2);
                    }
                    return;
                }
                Ok(i) => {
                    self.table[i] = t << 2 | bits;
                    return;
                }
                Err(_) if bits == 0 => return,
                Err(_) => {}
            }
        } else if bits == 0 {
            return;
        }
        // Load stays at most 3/4 so probe runs stay short.
        if (self.len as usize + 1) * 4 > self.table.len() * 3 {
            self.resize((self.table.len() * 2).max(8));
        }
        if let Err(i) = self.find(t) {
            self.table[i] = t << 2 | bits;
            self.len += 1;
        }
    }

    fn delete(&mut self, mut hole: usize) {
        let mask = self.table.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.table[j];
            if e == NO_LINK {
                break;
            }
            // An entry may fill the hole if the hole lies on its probe path.
            let home = self.home(e >> 2);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.table[hole] = e;
                hole = j;
            }
        }
        self.table[hole] = NO_LINK;
    }

    fn resize(&mut self, cap: usize) {
        let old = std::mem::replace(&mut self.table, vec![NO_LINK; cap].into_boxed_slice());
        for e in old.iter().copied().filter(|&e| e != NO_LINK) {
            if let Err(i) = self.find(e >> 2) {
                self.table[i] = e;
            }
        }
    }

    /// `(slot, bits)` of every link.
    fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.table
            .iter()
            .filter(|&&e| e != NO_LINK)
            .map(|&e| (e >> 2, e & 3))
    }
}

/// One entity as the scans see it.
#[derive(Clone, Copy)]
struct Lane {
    x: f32,
    y: f32,
    /// The thresholds this entity watches with, or -1 where its pairs are
    /// checked elsewhere (non-watchers, large watchers in the grid).
    enter2: f32,
    leave2: f32,
    h: u32,
}

impl Lane {
    /// Padding: NaN fails every comparison, so an empty lane never matches.
    const EMPTY: Lane = Lane {
        x: f32::NAN,
        y: f32::NAN,
        enter2: f32::NAN,
        leave2: f32::NAN,
        h: u32::MAX,
    };
}

/// A list of lanes stored as five planes (x, y, enter2, leave2, handle) of
/// `stride` entries in one allocation, padded with `Lane::EMPTY` to a
/// multiple of `PAD`. Floats are kept as bits so the handle plane can share
/// the buffer.
struct Lanes {
    data: Box<[u32]>,
    stride: u32,
    len: u32,
    /// The thresholds every watching lane uses: -1 if no lane watches, NaN
    /// if lanes watch with different thresholds. Lets a scan test one pair
    /// of thresholds instead of two, the common case where everyone nearby
    /// watches alike.
    watch: (f32, f32),
}

impl Default for Lanes {
    fn default() -> Self {
        Self {
            data: Box::default(),
            stride: 0,
            len: 0,
            watch: (-1.0, -1.0),
        }
    }
}

impl Lanes {
    /// The planes of x, y, enter2 and leave2, cut to the padded length.
    #[inline(always)]
    fn planes(&self) -> (&[u32], &[u32], &[u32], &[u32]) {
        let n = (self.len as usize).next_multiple_of(PAD);
        let s = self.stride as usize;
        (
            &self.data[..n],
            &self.data[s..s + n],
            &self.data[2 * s..2 * s + n],
            &self.data[3 * s..3 * s + n],
        )
    }

    /// The handle plane, cut to the padded length.
    #[inline(always)]
    fn handles(&self) -> &[u32] {
        let n = (self.len as usize).next_multiple_of(PAD);
        let s = self.stride as usize;
        &self.data[4 * s..4 * s + n]
    }

    /// Which lanes' pairs with a mover from `old` to `new`, watching with
    /// `mover` thresholds (-1 for none), may change: bit `k` stands for
    /// lanes `k`, `k + PAD`, `k + 2 * PAD`... (0: none). The loop runs over
    /// whole registers of lanes and only ORs masks, so it stays vectorised.
    #[inline(always)]
    fn changed_mask(&self, old: (f32, f32), new: (f32, f32), mover: (f32, f32)) -> u32 {
        let (x, y, e, l) = self.planes();
        let (x, y) = (x.as_chunks::<PAD>().0, y.as_chunks::<PAD>().0);
        let mut acc = [0i32; PAD];
        let watch = self.watch;
        // Lanes that watch all do so like the mover (or the mover does not
        // watch): one pair of thresholds decides for both directions.
        let same = watch.0.to_bits() == mover.0.to_bits() && watch.1.to_bits() == mover.1.to_bits();
        if watch.0 < 0.0 || same || (mover.0 < 0.0 && !watch.0.is_nan()) {
            let one = if watch.0 < 0.0 { mover } else { watch };
            if one.0 < 0.0 {
                return 0;
            }
            for (x, y) in x.iter().zip(y) {
                for k in 0..PAD {
                    let (lx, ly) = (f32::from_bits(x[k]), f32::from_bits(y[k]));
                    let d2o = dist2(lx, ly, old.0, old.1);
                    let d2n = dist2(lx, ly, new.0, new.1);
                    acc[k] |= forced_mask(d2o, d2n, one.0, one.1);
                }
            }
        } else {
            let (e, l) = (e.as_chunks::<PAD>().0, l.as_chunks::<PAD>().0);
            for ((x, y), (e, l)) in x.iter().zip(y).zip(e.iter().zip(l)) {
                for k in 0..PAD {
                    let (lx, ly) = (f32::from_bits(x[k]), f32::from_bits(y[k]));
                    let (le, ll) = (f32::from_bits(e[k]), f32::from_bits(l[k]));
                    let d2o = dist2(lx, ly, old.0, old.1);
                    let d2n = dist2(lx, ly, new.0, new.1);
                    acc[k] |=
                        forced_mask(d2o, d2n, mover.0, mover.1) | forced_mask(d2o, d2n, le, ll);
                }
            }
        }
        let mut mask = 0;
        for (k, &a) in acc.iter().enumerate() {
            mask |= u32::from(a < 0) << k;
        }
        mask
    }

    /// Whether some lane is within `enter2` of `(px, py)` or within its own
    /// enter threshold.
    #[inline(always)]
    fn any_within(&self, px: f32, py: f32, enter2: f32) -> bool {
        let (x, y, e, _) = self.planes();
        let mut any = false;
        for k in 0..x.len() {
            let d2 = dist2(f32::from_bits(x[k]), f32::from_bits(y[k]), px, py);
            any |= (d2 <= enter2) | (d2 <= f32::from_bits(e[k]));
        }
        any
    }

    fn push(&mut self, lane: Lane) -> u32 {
        if self.len == self.stride {
            self.reserve();
        }
        let index = self.len;
        self.write(index, lane);
        self.len += 1;
        if lane.enter2 >= 0.0 {
            let watch = (lane.enter2, lane.leave2);
            if self.watch.0 < 0.0 {
                self.watch = watch;
            } else if self.watch != watch {
                self.watch = (f32::NAN, f32::NAN);
            }
        }
        index
    }

    /// Doubles the stride, re-laying the planes out.
    fn reserve(&mut self) {
        let old = self.stride as usize;
        let new = (old * 2).max(PAD);
        let mut data = Vec::with_capacity(5 * new);
        for (p, fill) in Self::PADDING.iter().enumerate() {
            data.extend_from_slice(&self.data[p * old..(p + 1) * old]);
            data.resize((p + 1) * new, *fill);
        }
        self.data = data.into_boxed_slice();
        self.stride = new as u32;
    }

    const PADDING: [u32; 5] = [
        Lane::EMPTY.x.to_bits(),
        Lane::EMPTY.y.to_bits(),
        Lane::EMPTY.enter2.to_bits(),
        Lane::EMPTY.leave2.to_bits(),
        Lane::EMPTY.h,
    ];

    #[inline(always)]
    fn get(&self, index: u32) -> Lane {
        let (i, s) = (index as usize, self.stride as usize);
        Lane {
            x: f32::from_bits(self.data[i]),
            y: f32::from_bits(self.data[s + i]),
            enter2: f32::from_bits(self.data[2 * s + i]),
            leave2: f32::from_bits(self.data[3 * s + i]),
            h: self.data[4 * s + i],
        }
    }

    fn write(&mut self, index: u32, lane: Lane) {
        let (i, s) = (index as usize, self.stride as usize);
        self.data[i] = lane.x.to_bits();
        self.data[s + i] = lane.y.to_bits();
        self.data[2 * s + i] = lane.enter2.to_bits();
        self.data[3 * s + i] = lane.leave2.to_bits();
        self.data[4 * s + i] = lane.h;
    }

    fn set_position(&mut self, index: u32, x: f32, y: f32) {
        let (i, s) = (index as usize, self.stride as usize);
        self.data[i] = x.to_bits();
        self.data[s + i] = y.to_bits();
    }

    /// Removes a lane by moving the last one into its place; returns the
    /// handle of the lane that moved, if any.
    fn swap_remove(&mut self, index: u32) -> Option<u32> {
        let last = self.len - 1;
        let moved = (index != last).then(|| {
            let lane = self.get(last);
            self.write(index, lane);
            lane.h
        });
        self.write(last, Lane::EMPTY);
        self.len = last;
        if self.watch.0.is_nan() {
            // Mixed may have become uniform; cells are small, so recount.
            let (_, _, e, l) = self.planes();
            let mut common = (-1.0, -1.0);
            for k in 0..self.len as usize {
                let watch = (f32::from_bits(e[k]), f32::from_bits(l[k]));
                if watch.0 < 0.0 {
                    continue;
                }
                if common.0 < 0.0 {
                    common = watch;
                } else if common != watch {
                    common = (f32::NAN, f32::NAN);
                    break;
                }
            }
            self.watch = common;
        }
        moved
    }
}

/// The cell table: square cells, cell `(i, j)` filed in bucket
/// `(i mod 2^wbits, j mod 2^hbits)`. Buckets shared by distant cells only
/// cost scan time: every lane is tested by exact distance, and every pair
/// update is idempotent, so a bucket visited twice changes nothing twice.
struct Grid {
    cell: f64,
    inv: f64,
    wbits: u32,
    hbits: u32,
    buckets: Vec<Lanes>,
}

impl Grid {
    fn new(cell: f64, wbits: u32, hbits: u32) -> Self {
        let mut buckets = Vec::new();
        buckets.resize_with(1 << (wbits + hbits), Lanes::default);
        Self {
            cell,
            inv: 1.0 / cell,
            wbits,
            hbits,
            buckets,
        }
    }

    /// The cell coordinate of `v`: `floor(v / cell)`, clamped so it stays
    /// exact in `f64`. Monotonic in `v`, which is what makes the searched
    /// ranges cover every entity in range.
    #[inline(always)]
    fn cell_index(&self, v: f64) -> i64 {
        floor((v * self.inv).clamp(-(CELL_LIMIT as f64), CELL_LIMIT as f64))
    }

    fn bucket_of(&self, x: f32, y: f32) -> usize {
        let (i, j) = (self.cell_index(f64::from(x)), self.cell_index(f64::from(y)));
        let wmask = (1u64 << self.wbits) - 1;
        let hmask = (1u64 << self.hbits) - 1;
        ((((j as u64) & hmask) << self.wbits) | ((i as u64) & wmask)) as usize
    }

    /// Calls `f` on every bucket holding a cell that reaches the ring of
    /// distances `[inner, outer]` around `(px, py)`, skipping cells entirely
    /// closer than `inner` (no hole if `inner <= 0`). A bucket may be visited
    /// more than once when distant cells share it.
    #[inline(always)]
    fn for_each_ring(&self, px: f64, py: f64, outer: f64, inner: f64, mut f: impl FnMut(&Lanes)) {
        if outer.is_nan() || outer < 0.0 {
            return;
        }
        let wmask = (1u64 << self.wbits) - 1;
        let hmask = (1u64 << self.hbits) - 1;
        let mut visit = |row: usize, lo: i64, hi: i64| {
            for i in lo..=hi {
                f(&self.buckets[row | ((i as u64) & wmask) as usize]);
            }
        };
        // Everything in cell units. The slack covers the rounding of the
        // products by `inv`, relative to the coordinates' magnitude.
        let (cx, cy) = (px * self.inv, py * self.inv);
        let slack = (cx.abs() + cy.abs() + outer * self.inv + 1.0) * 1e-12;
        let (ro, ri) = (outer * self.inv + slack, inner * self.inv - slack);
        let side = (1u64 << self.wbits.min(self.hbits)) as f64;
        let reach = cx.abs().max(cy.abs()) + ro;
        if !(outer < HUGE_RADIUS && 2.0 * ro + 3.0 < side && reach < CELL_LIMIT as f64 - 2.0) {
            // Wider than the table (each bucket once), or out where cell
            // coordinates are clamped: every bucket.
            for j in 0..=hmask {
                visit((j << self.wbits) as usize, 0, wmask as i64);
            }
            return;
        }
        let (ro2, ri2) = (ro * ro, ri * ri);
        // Rows in batches: computing a batch's spans before visiting them
        // lets their square roots overlap instead of each stalling a row.
        const BATCH: usize = 16;
        let (first, last) = (floor(cy - ro), floor(cy + ro));
        let mut j0 = first;
        while j0 <= last {
            let n = ((last - j0 + 1) as usize).min(BATCH);
            let mut spans = [[0i64; 4]; BATCH];
            for (r, span) in spans.iter_mut().enumerate().take(n) {
                // Row j spans [dy, dy + 1] in y relative to the centre.
                let dy = (j0 + r as i64) as f64 - cy;
                let dy_min = dy.max(-1.0 - dy).max(0.0);
                let dy_max = (-dy).max(dy + 1.0);
                let half = (ro2 - dy_min * dy_min).max(0.0).sqrt();
                // Columns whose cells lie wholly inside the inner circle.
                let hole = (ri2 - dy_max * dy_max).max(0.0).sqrt();
                let (a, b) = if ri > 0.0 && dy_max < ri {
                    (floor(cx - hole) + 1, floor(cx + hole) - 1)
                } else {
                    (1, 0)
                };
                *span = [floor(cx - half), floor(cx + half), a, b];
            }
            for (r, &[lo, hi, a, b]) in spans.iter().enumerate().take(n) {
                let row = ((((j0 + r as i64) as u64) & hmask) << self.wbits) as usize;
                if a <= b {
                    visit(row, lo, hi.min(a - 1));
                    visit(row, lo.max(b + 1), hi);
                } else {
                    visit(row, lo, hi);
                }
            }
            j0 += n as i64;
        }
    }
}

/// `floor(v)` as an integer, for `|v| < 2^62`: a truncating conversion and
/// a correction, since `f64::floor` is a libm call without SSE4.1.
#[inline(always)]
fn floor(v: f64) -> i64 {
    let t = v as i64;
    t - i64::from(t as f64 > v)
}

/// The radius whose square is the threshold `t2` (-1 for a negative one, no
/// radius). The rounding of `t2` is far inside the pruning margins.
fn radius_of(t2: f32) -> f64 {
    if t2 >= 0.0 {
        f64::from(t2).sqrt()
    } else {
        -1.0
    }
}

/// Squared distance exactly as the rule defines it.
#[inline(always)]
fn dist2(ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    let dx = ax - bx;
    let dy = ay - by;
    dx * dx + dy * dy
}

/// Whether the rule forces a change when the squared distance goes from
/// `d2o` to `d2n` (all ones) or not (zero): it crossed into the enter
/// threshold or past the leave threshold; moving into the band changes
/// nothing. Branch-free masks, the form that keeps a loop over four lanes in
/// one SSE2 register.
#[inline(always)]
fn forced_mask(d2o: f32, d2n: f32, enter2: f32, leave2: f32) -> i32 {
    let mask = |b: bool| -i32::from(b);
    (mask(d2n <= enter2) & !mask(d2o <= enter2)) | (mask(d2n > leave2) & !mask(d2o > leave2))
}

/// The state the rule forces (`Some(true)`: in, `Some(false)`: out), if any.
#[inline(always)]
fn forced_state(d2o: f32, d2n: f32, enter2: f32, leave2: f32) -> Option<bool> {
    // Negated comparisons, like `forced_mask`: a NaN (padding) is neither
    // inside nor beyond anything.
    let (was_inside, was_beyond) = (d2o <= enter2, d2o > leave2);
    if d2n <= enter2 && !was_inside {
        Some(true)
    } else if d2n > leave2 && !was_beyond {
        Some(false)
    } else {
        None
    }
}

/// Applies the rule to both directions of the mover's pairs with the lanes
/// of `lanes` that `mask` (from `changed_mask`) points at (`mover` is the
/// mover's thresholds, or -1 to leave its side alone).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn apply_changes(
    slots: &mut [Slot],
    events: &mut Vec<AoiEvent>,
    m: u32,
    lanes: &Lanes,
    mask: u32,
    old: (f32, f32),
    new: (f32, f32),
    mover: (f32, f32),
) {
    let (x, y, e, l) = lanes.planes();
    let handles = lanes.handles();
    for base in (0..lanes.len as usize).step_by(PAD) {
        let mut bits = mask;
        while bits != 0 {
            let k = base + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let (lx, ly) = (f32::from_bits(x[k]), f32::from_bits(y[k]));
            let d2o = dist2(lx, ly, old.0, old.1);
            let d2n = dist2(lx, ly, new.0, new.1);
            let sees = forced_state(d2o, d2n, mover.0, mover.1);
            let seen = forced_state(d2o, d2n, f32::from_bits(e[k]), f32::from_bits(l[k]));
            if (sees.is_some() || seen.is_some()) && handles[k] != m {
                settle(slots, events, m, handles[k], sees, seen);
            }
        }
    }
}

/// Enters both directions of the mover's pairs with `lanes` where within
/// the watcher's enter threshold.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn apply_enters(
    slots: &mut [Slot],
    events: &mut Vec<AoiEvent>,
    m: u32,
    lanes: &Lanes,
    px: f32,
    py: f32,
    enter2: f32,
) {
    let (x, y, e, _) = lanes.planes();
    let handles = lanes.handles();
    for k in 0..lanes.len as usize {
        let d2 = dist2(f32::from_bits(x[k]), f32::from_bits(y[k]), px, py);
        let sees = (d2 <= enter2).then_some(true);
        let seen = (d2 <= f32::from_bits(e[k])).then_some(true);
        if (sees.is_some() || seen.is_some()) && handles[k] != m {
            settle(slots, events, m, handles[k], sees, seen);
        }
    }
}

/// Puts the pair `(m, t)` in the states given (`None`: unchanged) for `m`
/// seeing `t` and `t` seeing `m`, and reports what changed. Setting a pair
/// to the state it has is a no-op, so a pair visited twice changes once.
#[inline(always)]
fn settle(
    slots: &mut [Slot],
    events: &mut Vec<AoiEvent>,
    m: u32,
    t: u32,
    sees: Option<bool>,
    seen: Option<bool>,
) {
    if sees.is_none() && seen.is_none() {
        return;
    }
    let was = slots[m as usize].links.get(t);
    let mut now = was;
    for (bit, state) in [(SEES, sees), (SEEN, seen)] {
        match state {
            Some(true) => now |= bit,
            Some(false) => now &= !bit,
            None => {}
        }
    }
    if now != was {
        store_links(slots, events, m, t, was, now);
    }
}

#[inline(never)]
fn store_links(slots: &mut [Slot], events: &mut Vec<AoiEvent>, m: u32, t: u32, was: u32, now: u32) {
    slots[m as usize].links.set(t, now);
    // The other side holds the same pair seen from t: the bits swapped.
    let mirrored = (now & SEES) << 1 | (now & SEEN) >> 1;
    slots[t as usize].links.set(m, mirrored);
    let (mid, tid) = (slots[m as usize].id, slots[t as usize].id);
    if (was ^ now) & SEES != 0 {
        events.push(AoiEvent {
            watcher: mid,
            other: tid,
            entered: now & SEES != 0,
        });
    }
    if (was ^ now) & SEEN != 0 {
        events.push(AoiEvent {
            watcher: tid,
            other: mid,
            entered: now & SEEN != 0,
        });
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

fn count_add(counts: &mut BTreeMap<u32, u32>, v: f32) {
    *counts.entry(v.to_bits()).or_insert(0) += 1;
}

fn count_remove(counts: &mut BTreeMap<u32, u32>, v: f32) {
    if let Some(n) = counts.get_mut(&v.to_bits()) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&v.to_bits());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_coordinates_read_zero() {
        let mut aoi = AoiGrid::new(10.0);
        let mut events = Vec::new();
        let a = aoi.insert(1, f32::NAN, f32::INFINITY, 5.0, 1.0, &mut events);
        assert_eq!(aoi.position(a), (0.0, 0.0));
        let b = aoi.insert(2, 3.0, 0.0, f32::NAN, -1.0, &mut events);
        assert_eq!(
            events,
            vec![AoiEvent {
                watcher: 1,
                other: 2,
                entered: true
            }]
        );
        events.clear();
        aoi.move_to(b, f32::NEG_INFINITY, f32::NAN, &mut events);
        assert_eq!(aoi.position(b), (0.0, 0.0));
        assert!(events.is_empty());
        assert!(aoi.sees(a, b));
        aoi.move_to(a, 100.0, f32::NAN, &mut events);
        assert_eq!(aoi.position(a), (100.0, 0.0));
        assert_eq!(events.len(), 1);
        let mut out = Vec::new();
        aoi.within(f32::NAN, 0.0, 1.0, &mut out);
        assert_eq!(out, vec![2]);
        out.clear();
        aoi.within(0.0, 0.0, f32::NAN, &mut out);
        assert!(out.is_empty());
    }
}
