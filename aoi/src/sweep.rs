//! The batch update: entities sorted into cells, every pair of neighbouring
//! cells swept once, and the few pairs that can change looked up.

use crate::links::{SEEN, SEES};
use crate::{AoiEvent, Slot};

/// Cell coordinates are clamped to this range so they stay exact in `f64`.
const CELL_LIMIT: f64 = (1u64 << 40) as f64;

/// Relative slack on the largest reach when sizing cells, far above the
/// rounding of the `f32` distance arithmetic.
const REACH_MARGIN: f64 = 1e-5;

/// Relative slack on the cell size, above the rounding of cell coordinates
/// (at most 2^-12 of a cell where they are clamped).
const CELL_MARGIN: f64 = 1e-3;

/// A dense table of cells is used when it has at most this many cells per
/// entity (plus `DENSE_EXTRA`); otherwise cells are hashed onto a table that
/// wraps around.
const DENSE_PER_ENTITY: u64 = 2;
const DENSE_EXTRA: u64 = 64;

/// Bits of the wrapping table: at least 4 buckets a side (so a bucket's
/// neighbours are distinct buckets), at most 2^24 buckets.
const MIN_SIDE_BITS: u32 = 2;
const MAX_TOTAL_BITS: u32 = 24;

/// Lanes per SSE2 register of `f32`: buckets are padded to whole registers
/// so the sweep's loops have no remainder.
const PAD: usize = 4;

/// The forward half of a cell's neighbours: with the cell itself, each
/// unordered pair of neighbouring cells is swept exactly once.
const FORWARD: [(i64, i64); 4] = [(1, 0), (-1, 1), (0, 1), (1, 1)];

/// How cell coordinates map to buckets for one update.
#[derive(Clone, Copy)]
struct Layout {
    /// Dense: the lowest cell coordinates. Wrapped: unused.
    i0: i64,
    j0: i64,
    w: u32,
    h: u32,
    wrap: bool,
}

impl Layout {
    /// Bucket coordinates of cell `(ci, cj)`.
    fn bucket(&self, ci: i64, cj: i64) -> (u32, u32) {
        if self.wrap {
            (
                (ci & i64::from(self.w - 1)) as u32,
                (cj & i64::from(self.h - 1)) as u32,
            )
        } else {
            ((ci - self.i0) as u32, (cj - self.j0) as u32)
        }
    }

    fn index(&self, (bi, bj): (u32, u32)) -> usize {
        bj as usize * self.w as usize + bi as usize
    }

    /// The bucket at offset `(di, dj)` from `(bi, bj)`, if any.
    fn neighbour(&self, (bi, bj): (u32, u32), (di, dj): (i64, i64)) -> Option<(u32, u32)> {
        let (ni, nj) = (i64::from(bi) + di, i64::from(bj) + dj);
        let (w, h) = (i64::from(self.w), i64::from(self.h));
        if self.wrap {
            Some(((ni & (w - 1)) as u32, (nj & (h - 1)) as u32))
        } else if (0..w).contains(&ni) && (0..h).contains(&nj) {
            Some((ni as u32, nj as u32))
        } else {
            None
        }
    }

    /// Whether the sweep visits the pairs between buckets `a` and `b`: the
    /// same bucket or neighbours (around the wrap, in a wrapped table).
    fn adjacent(&self, a: (u32, u32), b: (u32, u32)) -> bool {
        let near = |x: u32, y: u32, n: u32| {
            if self.wrap {
                let d = x.wrapping_sub(y) & (n - 1);
                d <= 1 || d == n - 1
            } else {
                x.abs_diff(y) <= 1
            }
        };
        near(a.0, b.0, self.w) && near(a.1, b.1, self.h)
    }
}

/// One entity as the sweep sees it.
#[derive(Clone, Copy)]
struct Probe {
    xn: f32,
    yn: f32,
    xo: f32,
    yo: f32,
    e2: f32,
    l2: f32,
}

/// The planes of the sorted entities: position now (`xn`, `yn`) and at the
/// previous update (`xo`, `yo`, NaN for an entity inserted since), the
/// thresholds the sweep applies for each (-1 for non-watchers and large
/// watchers), and the slot.
#[derive(Default)]
struct Planes {
    xn: Vec<f32>,
    yn: Vec<f32>,
    xo: Vec<f32>,
    yo: Vec<f32>,
    e2: Vec<f32>,
    l2: Vec<f32>,
    slot: Vec<u32>,
}

impl Planes {
    /// `n` lanes of padding: NaN fails every comparison, so it never
    /// changes anything.
    fn resize(&mut self, n: usize) {
        for v in [
            &mut self.xn,
            &mut self.yn,
            &mut self.xo,
            &mut self.yo,
            &mut self.e2,
            &mut self.l2,
        ] {
            v.clear();
            v.resize(n, f32::NAN);
        }
        self.slot.clear();
        self.slot.resize(n, u32::MAX);
    }

    fn probe(&self, p: usize) -> Probe {
        Probe {
            xn: self.xn[p],
            yn: self.yn[p],
            xo: self.xo[p],
            yo: self.yo[p],
            e2: self.e2[p],
            l2: self.l2[p],
        }
    }
}

/// Buffers of the update, kept between updates so it does not allocate once
/// they have grown.
#[derive(Default)]
pub(crate) struct Sweep {
    /// `(slot, cell x, cell y)` of every live entity.
    order: Vec<(u32, i64, i64)>,
    /// Entities that moved further than half the slack and have links.
    far: Vec<u32>,
    /// Large watchers.
    large: Vec<u32>,
    /// Bucket `b` holds planes `starts[b]..starts[b + 1]`, a whole number
    /// of registers, of which `starts[b]..cursor[b]` are entities.
    starts: Vec<u32>,
    cursor: Vec<u32>,
    planes: Planes,
    /// Bucket coordinates of each slot, this update.
    bucket_of: Vec<(u32, u32)>,
    links: Vec<(u32, u32)>,
}

impl Sweep {
    /// Applies the rule to every pair of live entities in `slots`, from
    /// their positions at the previous update (`ox`, `oy`) to now (`x`, `y`),
    /// appending an event for each change; then makes now the previous.
    ///
    /// `slack` is the room cells leave beyond the largest small reach; an
    /// entity that moved at most half of it needs no check of its links.
    pub(crate) fn update(&mut self, slots: &mut [Slot], slack: f64, events: &mut Vec<AoiEvent>) {
        self.large.clear();
        let mut max_reach = 0.0f32;
        for (i, s) in slots.iter().enumerate() {
            if !s.live {
                continue;
            }
            if s.large {
                self.large.push(i as u32);
            } else if s.reach > max_reach {
                max_reach = s.reach;
            }
        }
        let cell = (f64::from(max_reach) * (1.0 + REACH_MARGIN) + slack) * (1.0 + CELL_MARGIN);
        let inv = 1.0 / cell;
        let cell_index = |v: f32| floor((f64::from(v) * inv).clamp(-CELL_LIMIT, CELL_LIMIT));
        let far2 = (slack * 0.5) * (slack * 0.5);

        self.order.clear();
        self.far.clear();
        let (mut imin, mut imax, mut jmin, mut jmax) = (i64::MAX, i64::MIN, i64::MAX, i64::MIN);
        for (i, s) in slots.iter().enumerate() {
            if !s.live {
                continue;
            }
            let (ci, cj) = (cell_index(s.x), cell_index(s.y));
            (imin, imax, jmin, jmax) = (imin.min(ci), imax.max(ci), jmin.min(cj), jmax.max(cj));
            self.order.push((i as u32, ci, cj));
            // NaN (inserted since the previous update) compares false.
            let (dx, dy) = (
                f64::from(s.x) - f64::from(s.ox),
                f64::from(s.y) - f64::from(s.oy),
            );
            if dx * dx + dy * dy > far2 && !s.links.is_empty() {
                self.far.push(i as u32);
            }
        }
        let n = self.order.len();
        if n == 0 {
            return;
        }
        let layout = choose_layout(n, imin, imax, jmin, jmax);
        self.sort(slots, layout);
        self.check_far(slots, layout, events);
        self.sweep(slots, layout, events);
        self.sweep_large(slots, events);
        for s in slots.iter_mut().filter(|s| s.live) {
            s.ox = s.x;
            s.oy = s.y;
        }
    }

    /// Counting sort of the live entities into buckets, as planes.
    fn sort(&mut self, slots: &[Slot], layout: Layout) {
        let buckets = layout.w as usize * layout.h as usize;
        self.starts.clear();
        self.starts.resize(buckets + 1, 0);
        if self.bucket_of.len() < slots.len() {
            self.bucket_of.resize(slots.len(), (0, 0));
        }
        for &(i, ci, cj) in &self.order {
            let b = layout.bucket(ci, cj);
            self.bucket_of[i as usize] = b;
            self.starts[layout.index(b) + 1] += 1;
        }
        // Each bucket padded to whole registers.
        for b in 0..buckets {
            self.starts[b + 1] = self.starts[b] + self.starts[b + 1].next_multiple_of(PAD as u32);
        }
        self.cursor.clear();
        self.cursor.extend_from_slice(&self.starts[..buckets]);
        let p = &mut self.planes;
        p.resize(self.starts[buckets] as usize);
        for &(i, _, _) in &self.order {
            let b = layout.index(self.bucket_of[i as usize]);
            let k = self.cursor[b] as usize;
            self.cursor[b] += 1;
            let s = &slots[i as usize];
            p.xn[k] = s.x;
            p.yn[k] = s.y;
            p.xo[k] = s.ox;
            p.yo[k] = s.oy;
            (p.e2[k], p.l2[k]) = if s.large {
                (-1.0, -1.0)
            } else {
                (s.enter2, s.leave2)
            };
            p.slot[k] = i;
        }
    }

    /// Pairs a far mover was in (in a small watcher's direction) whose
    /// buckets the sweep will not visit together: they are now beyond any
    /// small reach, so they leave.
    fn check_far(&mut self, slots: &mut [Slot], layout: Layout, events: &mut Vec<AoiEvent>) {
        for &m in &self.far {
            self.links.clear();
            self.links.extend(slots[m as usize].links.iter());
            for &(t, bits) in &self.links {
                if layout.adjacent(self.bucket_of[m as usize], self.bucket_of[t as usize]) {
                    continue;
                }
                let (a, b) = (&slots[m as usize], &slots[t as usize]);
                let d2 = dist2(a.x, a.y, b.x, b.y);
                let state = |s: &Slot, was: bool| {
                    (!s.large).then_some(d2 <= s.enter2 || (was && d2 <= s.leave2))
                };
                let sees = state(a, bits & SEES != 0);
                let seen = state(b, bits & SEEN != 0);
                settle(slots, events, m, t, sees, seen);
            }
        }
    }

    /// Every pair in the same or neighbouring buckets, once: both directions
    /// decided from one distance computation.
    fn sweep(&mut self, slots: &mut [Slot], layout: Layout, events: &mut Vec<AoiEvent>) {
        let Self {
            starts,
            cursor,
            planes,
            ..
        } = self;
        for bj in 0..layout.h {
            for bi in 0..layout.w {
                let b = layout.index((bi, bj));
                // Real lanes end at `cursor[b]`, padding at `starts[b + 1]`.
                let (s, e, pe) = (
                    starts[b] as usize,
                    cursor[b] as usize,
                    starts[b + 1] as usize,
                );
                if s == e {
                    continue;
                }
                let mut ranges = [(0, 0); 4];
                for (r, &d) in ranges.iter_mut().zip(&FORWARD) {
                    if let Some(nb) = layout.neighbour((bi, bj), d) {
                        let nb = layout.index(nb);
                        *r = (starts[nb] as usize, starts[nb + 1] as usize);
                    }
                }
                for p in s..e {
                    let probe = planes.probe(p);
                    let slot = planes.slot[p];
                    // The lanes after `p` in its own bucket, from the
                    // register holding `p + 1`.
                    let own = (s + ((p + 1 - s) & !(PAD - 1)), pe);
                    row(slots, events, planes, slot, probe, 3, own, p + 1);
                    for &range in &ranges {
                        if range.0 < range.1 {
                            row(slots, events, planes, slot, probe, 3, range, 0);
                        }
                    }
                }
            }
        }
    }

    /// The large watchers' own view of every entity (bit 0 only: the other
    /// direction is the sweep's, or the other large watcher's).
    fn sweep_large(&mut self, slots: &mut [Slot], events: &mut Vec<AoiEvent>) {
        let all = (0, self.planes.slot.len());
        for &l in &self.large {
            let s = &slots[l as usize];
            let probe = Probe {
                xn: s.x,
                yn: s.y,
                xo: s.ox,
                yo: s.oy,
                e2: s.enter2,
                l2: s.leave2,
            };
            row(slots, events, &self.planes, l, probe, 1, all, 0);
        }
    }
}

/// Sweeps `probe` (of slot `p`) against planes `qs..qe` (whole registers),
/// and settles the pairs whose masks show a possible change in the
/// directions `want` (bit 0: the probe watching, bit 1: watched), for lanes
/// `lo..` only.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row(
    slots: &mut [Slot],
    events: &mut Vec<AoiEvent>,
    planes: &Planes,
    p: u32,
    probe: Probe,
    want: u32,
    (qs, qe): (usize, usize),
    lo: usize,
) {
    let xn = planes.xn[qs..qe].as_chunks::<PAD>().0;
    let yn = planes.yn[qs..qe].as_chunks::<PAD>().0;
    let xo = planes.xo[qs..qe].as_chunks::<PAD>().0;
    let yo = planes.yo[qs..qe].as_chunks::<PAD>().0;
    let e2 = planes.e2[qs..qe].as_chunks::<PAD>().0;
    let l2 = planes.l2[qs..qe].as_chunks::<PAD>().0;
    let n = xn.len().min(yn.len()).min(xo.len()).min(yo.len());
    let n = n.min(e2.len()).min(l2.len());
    for c in 0..n {
        let (xn, yn, xo, yo, e2, l2) = (&xn[c], &yn[c], &xo[c], &yo[c], &e2[c], &l2[c]);
        let mut m = [0u32; PAD];
        for k in 0..PAD {
            let d2n = dist2(probe.xn, probe.yn, xn[k], yn[k]);
            let d2o = dist2(probe.xo, probe.yo, xo[k], yo[k]);
            m[k] = ((may_change(d2o, d2n, probe.e2, probe.l2) & 1)
                | (may_change(d2o, d2n, e2[k], l2[k]) & 2))
                & want;
        }
        if m.iter().fold(0, |a, &b| a | b) != 0 {
            settle_chunk(slots, events, planes, p, probe, qs + c * PAD, m, lo);
        }
    }
}

/// Settles the pairs of `probe` (of slot `p`) with lanes `q0..q0 + PAD`
/// that `m` marks, skipping lanes before `lo` and the probe itself.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn settle_chunk(
    slots: &mut [Slot],
    events: &mut Vec<AoiEvent>,
    planes: &Planes,
    p: u32,
    probe: Probe,
    q0: usize,
    m: [u32; PAD],
    lo: usize,
) {
    for (k, &m) in m.iter().enumerate() {
        let q = q0 + k;
        let t = planes.slot[q];
        if m == 0 || q < lo || t == p {
            continue;
        }
        let d2 = dist2(probe.xn, probe.yn, planes.xn[q], planes.yn[q]);
        // A possible change is decided: inside the enter threshold or
        // beyond the leave threshold.
        let sees = (m & 1 != 0).then_some(d2 <= probe.e2);
        let seen = (m & 2 != 0).then_some(d2 <= planes.e2[q]);
        settle(slots, events, p, t, sees, seen);
    }
}

/// All ones when the rule may change a pair going from squared distance
/// `d2o` to `d2n`: now inside the enter threshold and not inside before, or
/// now beyond the leave threshold and not beyond before. A NaN `d2o` (a pair
/// that did not exist) can only enter. Otherwise zero.
#[inline(always)]
fn may_change(d2o: f32, d2n: f32, e2: f32, l2: f32) -> u32 {
    let mask = |b: bool| u32::from(b).wrapping_neg();
    (mask(d2n <= e2) & !mask(d2o <= e2)) | (mask(d2n > l2) & mask(d2o <= l2))
}

/// Squared distance exactly as the rule defines it.
#[inline(always)]
pub(crate) fn dist2(ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    let dx = ax - bx;
    let dy = ay - by;
    dx * dx + dy * dy
}

/// Picks a dense table over the cells' bounding box when it is small enough,
/// else a wrapping table of about one bucket per entity.
fn choose_layout(n: usize, imin: i64, imax: i64, jmin: i64, jmax: i64) -> Layout {
    let (w, h) = ((imax - imin + 1) as u64, (jmax - jmin + 1) as u64);
    let limit = DENSE_PER_ENTITY * n as u64 + DENSE_EXTRA;
    if w <= limit && h <= limit && w * h <= limit {
        return Layout {
            i0: imin,
            j0: jmin,
            w: w as u32,
            h: h as u32,
            wrap: false,
        };
    }
    let total = (usize::BITS - n.leading_zeros()).clamp(2 * MIN_SIDE_BITS, MAX_TOTAL_BITS);
    let wbits = total / 2;
    Layout {
        i0: 0,
        j0: 0,
        w: 1 << wbits,
        h: 1 << (total - wbits),
        wrap: true,
    }
}

/// `floor(v)` as an integer, for `|v| < 2^62`: a truncating conversion and
/// a correction, since `f64::floor` is a libm call without SSE4.1.
#[inline(always)]
fn floor(v: f64) -> i64 {
    let t = v as i64;
    t - i64::from(t as f64 > v)
}

/// Puts the pair `(m, t)` in the states given (`None`: unchanged) for `m`
/// seeing `t` and `t` seeing `m`, and reports what changed. Setting a pair
/// to the state it has is a no-op.
#[inline(always)]
pub(crate) fn settle(
    slots: &mut [Slot],
    events: &mut Vec<AoiEvent>,
    m: u32,
    t: u32,
    sees: Option<bool>,
    seen: Option<bool>,
) {
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
