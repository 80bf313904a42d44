//! The batch update: entities sorted into cells, every pair of nearby cells
//! swept once, and the few pairs that can change looked up.

use std::ops::Range;

use crate::links::{SEEN, SEES};
use crate::{AoiEvent, Slot};

/// Cells per reach: a cell is `1 / K` of the largest small reach (plus
/// slack), and a cell's neighbourhood is the `(2K + 1) x (2K + 1)` block
/// around it.
const K: i64 = 2;

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

/// Bits of the wrapping table: at least 8 buckets a side (more than the
/// `2K + 1` a neighbourhood spans, so its buckets are distinct), at most
/// 2^24 buckets.
const MIN_SIDE_BITS: u32 = 3;
const MAX_TOTAL_BITS: u32 = 24;

/// The widest register the sweep uses, in `f32` lanes: the planes end with
/// this many NaN lanes so a sweep may read a whole register past its end.
const MAX_LANES: usize = 8;

/// Threshold key of a bucket with no entity, and of one whose entities do
/// not all share their thresholds (no real key: thresholds are never NaN).
const EMPTY: u64 = u64::MAX - 1;
const MIXED: u64 = u64::MAX;

/// How cell coordinates map to buckets for one update.
#[derive(Clone, Copy, Default)]
pub(crate) struct Layout {
    /// Dense: the lowest cell coordinates. Wrapped: unused.
    i0: i64,
    j0: i64,
    w: u32,
    h: u32,
    wrap: bool,
    /// Cells per unit of distance.
    inv: f64,
}

impl Layout {
    /// The cell coordinate of `v` (monotonic in `v`).
    #[inline(always)]
    fn cell(&self, v: f64) -> i64 {
        floor((v * self.inv).clamp(-CELL_LIMIT, CELL_LIMIT))
    }

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

    /// The buckets of row `bj + dj` (if any) and columns `bi + a ..= bi + b`,
    /// as at most two runs of consecutive bucket indices `(first, last)`.
    fn runs(&self, (bi, bj): (u32, u32), dj: i64, a: i64, b: i64) -> [Option<(usize, usize)>; 2] {
        let (w, h) = (i64::from(self.w), i64::from(self.h));
        let (lo, hi, nj) = (i64::from(bi) + a, i64::from(bi) + b, i64::from(bj) + dj);
        let row = |j: i64| j as usize * self.w as usize;
        if self.wrap {
            let r = row(nj & (h - 1));
            let (lo, hi) = (lo.rem_euclid(w), hi.rem_euclid(w));
            if lo <= hi {
                [Some((r + lo as usize, r + hi as usize)), None]
            } else {
                [
                    Some((r + lo as usize, r + w as usize - 1)),
                    Some((r, r + hi as usize)),
                ]
            }
        } else if (0..h).contains(&nj) {
            let (lo, hi) = (lo.max(0), hi.min(w - 1));
            let r = row(nj);
            [
                (lo <= hi).then_some((r + lo as usize, r + hi as usize)),
                None,
            ]
        } else {
            [None, None]
        }
    }

    /// Whether the sweep visits the pairs between buckets `a` and `b`: at
    /// most `K` apart on both axes (around the wrap, in a wrapped table).
    fn adjacent(&self, a: (u32, u32), b: (u32, u32)) -> bool {
        let k = K as u32;
        let near = |x: u32, y: u32, n: u32| {
            if self.wrap {
                let d = x.wrapping_sub(y) & (n - 1);
                d <= k || d >= n - k
            } else {
                x.abs_diff(y) <= k
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
    /// Its slot.
    slot: u32,
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
    /// `n` entities and `MAX_LANES` lanes of NaN padding (NaN fails every
    /// comparison, so padding never changes anything).
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
            v.resize(n + MAX_LANES, f32::NAN);
        }
        self.slot.clear();
        self.slot.resize(n + MAX_LANES, u32::MAX);
    }

    #[inline(always)]
    fn probe(&self, p: usize) -> Probe {
        Probe {
            xn: self.xn[p],
            yn: self.yn[p],
            xo: self.xo[p],
            yo: self.yo[p],
            e2: self.e2[p],
            l2: self.l2[p],
            slot: self.slot[p],
        }
    }

    /// The thresholds of lane `p` as one key.
    fn key(&self, p: usize) -> u64 {
        threshold_key(self.e2[p], self.l2[p])
    }
}

fn threshold_key(e2: f32, l2: f32) -> u64 {
    u64::from(e2.to_bits()) << 32 | u64::from(l2.to_bits())
}

/// The key of a group: the common key, `EMPTY` or `MIXED`.
fn merge_key(a: u64, b: u64) -> u64 {
    match (a, b) {
        (EMPTY, k) | (k, EMPTY) => k,
        (a, b) if a == b => a,
        _ => MIXED,
    }
}

/// A pair the sweep found that may change: the directions decided (bit 0:
/// `p` watching `t`, bit 1: `t` watching `p`) and their new states (bit 2:
/// `p` sees `t`, bit 3: `t` sees `p`).
#[derive(Clone, Copy)]
struct Hit {
    p: u32,
    t: u32,
    code: u32,
}

/// The pairs collected: `v[..n]` (`v` is only grown, so the sweep's writes
/// need no capacity check).
#[derive(Default)]
struct Hits {
    v: Vec<Hit>,
    n: usize,
}

impl Hits {
    /// Makes room for `extra` more pairs.
    #[inline(always)]
    fn room(&mut self, extra: usize) {
        if self.v.len() < self.n + extra {
            self.grow(extra);
        }
    }

    #[inline(never)]
    fn grow(&mut self, extra: usize) {
        let len = (self.n + extra).max(2 * self.v.len());
        self.v.resize(
            len,
            Hit {
                p: 0,
                t: 0,
                code: 0,
            },
        );
    }

    /// Appends a pair; [`Hits::room`] made room for it.
    #[inline(always)]
    fn push(&mut self, h: Hit) {
        self.v[self.n] = h;
        self.n += 1;
    }

    fn as_slice(&self) -> &[Hit] {
        &self.v[..self.n]
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
    /// Large watchers, with their positions at the previous update.
    large: Vec<(u32, f32, f32)>,
    /// Bucket `b` holds planes `starts[b]..starts[b + 1]`.
    starts: Vec<u32>,
    cursor: Vec<u32>,
    /// Per bucket: the threshold key of its entities, then of the row of
    /// `2K + 1` buckets centred on it (or the key of all entities, when
    /// they all have one).
    key: Vec<u64>,
    row_key: Vec<u64>,
    planes: Planes,
    /// Bucket coordinates of each slot, this update.
    bucket_of: Vec<(u32, u32)>,
    /// The bucket index of each entry of `order`.
    order_bucket: Vec<u32>,
    links: Vec<(u32, u32)>,
    hits: Hits,
    /// The layout of the last update (`w == 0`: none yet).
    layout: Layout,
}

impl Sweep {
    /// Calls `f` with the slot of every entity the last update put in a
    /// cell that meets the box `x0..=x1`, `y0..=y1` (and some others), or
    /// returns `false` without calling it if that takes more buckets than
    /// there were entities.
    pub(crate) fn near(
        &self,
        (x0, x1): (f64, f64),
        (y0, y1): (f64, f64),
        mut f: impl FnMut(u32),
    ) -> bool {
        let l = self.layout;
        if l.w == 0 {
            return true;
        }
        // The bucket columns (or rows) that cells `a..=b` fall in, as runs.
        let span = |a: i64, b: i64, n: u32, o: i64| -> [(i64, i64); 2] {
            if l.wrap {
                let m = i64::from(n);
                if b - a + 1 >= m {
                    [(0, m - 1), (1, 0)]
                } else {
                    let (a, b) = (a.rem_euclid(m), b.rem_euclid(m));
                    if a <= b {
                        [(a, b), (1, 0)]
                    } else {
                        [(a, m - 1), (0, b)]
                    }
                }
            } else {
                [((a - o).max(0), (b - o).min(i64::from(n) - 1)), (1, 0)]
            }
        };
        let cols = span(l.cell(x0), l.cell(x1), l.w, l.i0);
        let rows = span(l.cell(y0), l.cell(y1), l.h, l.j0);
        let count = |r: [(i64, i64); 2]| {
            r.iter()
                .map(|&(a, b)| (b - a + 1).max(0) as u64)
                .sum::<u64>()
        };
        if count(cols) * count(rows) > self.order.len() as u64 {
            return false;
        }
        for &(r0, r1) in &rows {
            for r in r0..=r1 {
                for &(c0, c1) in &cols {
                    if c0 > c1 {
                        continue;
                    }
                    let base = r as usize * l.w as usize;
                    let (lo, hi) = (
                        self.starts[base + c0 as usize],
                        self.starts[base + c1 as usize + 1],
                    );
                    for &s in &self.planes.slot[lo as usize..hi as usize] {
                        f(s);
                    }
                }
            }
        }
        true
    }
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
                self.large.push((i as u32, s.ox, s.oy));
            } else if s.reach > max_reach {
                max_reach = s.reach;
            }
        }
        let reach = (f64::from(max_reach) * (1.0 + REACH_MARGIN) + slack) * (1.0 + CELL_MARGIN);
        let mut layout = Layout {
            inv: K as f64 / reach,
            ..Layout::default()
        };
        let far2 = (slack * 0.5) * (slack * 0.5);

        self.far.clear();
        // Written by index (no capacity check in the loop), then cut to the
        // live entities.
        self.order.resize(slots.len(), (0, 0, 0));
        let order = &mut self.order[..slots.len()];
        let mut n = 0;
        let (mut imin, mut imax, mut jmin, mut jmax) = (i64::MAX, i64::MIN, i64::MAX, i64::MIN);
        for (i, s) in slots.iter().enumerate() {
            if !s.live {
                continue;
            }
            let (ci, cj) = (layout.cell(f64::from(s.x)), layout.cell(f64::from(s.y)));
            (imin, imax, jmin, jmax) = (imin.min(ci), imax.max(ci), jmin.min(cj), jmax.max(cj));
            order[n] = (i as u32, ci, cj);
            n += 1;
            // NaN (inserted since the previous update) compares false.
            let (dx, dy) = (
                f64::from(s.x) - f64::from(s.ox),
                f64::from(s.y) - f64::from(s.oy),
            );
            if dx * dx + dy * dy > far2 && !s.links.is_empty() {
                self.far.push(i as u32);
            }
        }
        self.order.truncate(n);
        let n = self.order.len();
        if n == 0 {
            self.layout = Layout::default();
            return;
        }
        choose_layout(&mut layout, n, imin, imax, jmin, jmax);
        self.layout = layout;
        self.sort(slots, layout);
        self.check_far(slots, layout, events);
        self.hits.n = 0;
        self.sweep(layout);
        self.sweep_large(slots);
        // The first look at a pair's links is usually a cache miss: each is
        // requested a few pairs ahead.
        const AHEAD: usize = 8;
        let hits = self.hits.as_slice();
        for (i, h) in hits.iter().enumerate() {
            if let Some(a) = hits.get(i + AHEAD) {
                slots[a.p as usize].links.prefetch(a.t);
            }
            // Bits 0 and 1 of the code are the link bits `SEES` and `SEEN`
            // decided, bits 2 and 3 their new states.
            let decided = h.code & (SEES | SEEN);
            settle_bits(slots, events, h.p, h.t, decided, h.code >> 2 & decided);
        }
    }

    /// Counting sort of the live entities into buckets, as planes; then
    /// makes their positions now the previous ones.
    fn sort(&mut self, slots: &mut [Slot], layout: Layout) {
        let buckets = layout.w as usize * layout.h as usize;
        self.starts.clear();
        self.starts.resize(buckets + 1, 0);
        if self.bucket_of.len() < slots.len() {
            self.bucket_of.resize(slots.len(), (0, 0));
        }
        self.order_bucket.clear();
        for &(i, ci, cj) in &self.order {
            let b = layout.bucket(ci, cj);
            self.bucket_of[i as usize] = b;
            let b = layout.index(b);
            self.order_bucket.push(b as u32);
            self.starts[b + 1] += 1;
        }
        for b in 0..buckets {
            self.starts[b + 1] += self.starts[b];
        }
        self.cursor.clear();
        self.cursor.extend_from_slice(&self.starts[..buckets]);
        self.key.clear();
        self.key.resize(buckets, EMPTY);
        let p = &mut self.planes;
        let m = self.order.len();
        p.resize(m);
        // One length for all planes: one bounds check serves them all.
        let (xn, yn, xo, yo) = (
            &mut p.xn[..m],
            &mut p.yn[..m],
            &mut p.xo[..m],
            &mut p.yo[..m],
        );
        let (e2p, l2p, slot) = (&mut p.e2[..m], &mut p.l2[..m], &mut p.slot[..m]);
        let (cursor, key) = (&mut self.cursor[..buckets], &mut self.key[..buckets]);
        for (&(i, _, _), &b) in self.order.iter().zip(&self.order_bucket) {
            let b = b as usize;
            let k = cursor[b] as usize;
            cursor[b] += 1;
            let s = &mut slots[i as usize];
            let (e2, l2) = if s.large {
                (-1.0, -1.0)
            } else {
                (s.enter2, s.leave2)
            };
            (xn[k], yn[k], xo[k], yo[k]) = (s.x, s.y, s.ox, s.oy);
            (e2p[k], l2p[k], slot[k]) = (e2, l2, i);
            (s.ox, s.oy) = (s.x, s.y);
            key[b] = merge_key(key[b], threshold_key(e2, l2));
        }
        self.row_key.clear();
        // One key for all (one kind of entity): every run has it.
        let all = self.key.iter().fold(EMPTY, |k, &b| merge_key(k, b));
        if all != MIXED {
            self.row_key.resize(buckets, all);
            return;
        }
        for bj in 0..layout.h {
            for bi in 0..layout.w {
                let mut key = EMPTY;
                for (a, b) in layout.runs((bi, bj), 0, -K, K).into_iter().flatten() {
                    key = self.key[a..=b].iter().fold(key, |k, &b| merge_key(k, b));
                }
                self.row_key.push(key);
            }
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

    /// Every pair in buckets at most `K` apart, once: both directions
    /// decided from one distance computation. Collects the pairs that may
    /// change in `hits`.
    fn sweep(&mut self, layout: Layout) {
        #[cfg(target_arch = "x86_64")]
        if use_avx2() {
            // SAFETY: `use_avx2` checked that this CPU has AVX2.
            unsafe { self.sweep_avx2(layout) };
            return;
        }
        self.sweep_lanes(layout, |planes, hits, probes, own_end, own_key, shared| {
            for p in probes {
                let probe = planes.probe(p);
                let key = planes.key(p);
                let uni = |k: u64| k == key || k == EMPTY;
                scan_range::<4>(planes, hits, &probe, p + 1, own_end, uni(own_key), 3);
                for &(lo, hi, k) in shared {
                    scan_range::<4>(planes, hits, &probe, lo, hi, uni(k), 3);
                }
            }
        });
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn sweep_avx2(&mut self, layout: Layout) {
        self.sweep_lanes(layout, |planes, hits, probes, own_end, own_key, shared| {
            scan_avx2(planes, hits, probes, own_end, own_key, shared)
        });
    }

    /// The sweep, bucket by bucket: `scan(planes, hits, probes, own_end,
    /// own_key, shared)` records the pairs that may change of each probe `p`
    /// of the bucket with lanes `p + 1..own_end` (whose key is `own_key`) and
    /// with each shared range `(lo, hi, key)`.
    #[inline(always)]
    fn sweep_lanes(
        &mut self,
        layout: Layout,
        scan: impl Fn(&Planes, &mut Hits, Range<usize>, usize, u64, &[(usize, usize, u64)]),
    ) {
        let Self {
            starts,
            planes,
            row_key,
            hits,
            ..
        } = self;
        let lanes = |(a, b): (usize, usize)| (starts[a] as usize, starts[b + 1] as usize);
        for bj in 0..layout.h {
            for bi in 0..layout.w {
                let b = layout.index((bi, bj));
                let (s, e) = (starts[b] as usize, starts[b + 1] as usize);
                if s == e {
                    continue;
                }
                let own_key = row_key[b];
                // This row: the bucket after the probe and the next `K`, in
                // one run, or two around the wrap.
                let mut shared = [(0, 0, EMPTY); 1 + 2 * K as usize * 2];
                let mut n = 0;
                let [first, second] = layout.runs((bi, bj), 0, 0, K);
                let own_end = first.map_or(e, |r| lanes(r).1);
                if let Some((lo, hi)) = second.map(lanes) {
                    shared[n] = (lo, hi, own_key);
                    n += usize::from(lo < hi);
                }
                // The rows after this one: lanes and the key of their run.
                for dj in 1..=K {
                    for run in layout.runs((bi, bj), dj, -K, K).into_iter().flatten() {
                        let w = layout.w as usize;
                        let key = row_key[run.0 / w * w + bi as usize];
                        let (lo, hi) = lanes(run);
                        shared[n] = (lo, hi, key);
                        n += usize::from(lo < hi);
                    }
                }
                scan(planes, hits, s..e, own_end, own_key, &shared[..n]);
            }
        }
    }

    /// The large watchers' own view of every entity (bit 0 only: the other
    /// direction is the sweep's, or the other large watcher's).
    fn sweep_large(&mut self, slots: &[Slot]) {
        let n = self.planes.slot.len() - MAX_LANES;
        for &(l, xo, yo) in &self.large {
            let s = &slots[l as usize];
            let probe = Probe {
                xn: s.x,
                yn: s.y,
                xo,
                yo,
                e2: s.enter2,
                l2: s.leave2,
                slot: l,
            };
            scan_range::<4>(&self.planes, &mut self.hits, &probe, 0, n, false, 1);
        }
    }
}

/// Whether the sweep runs on AVX2 (lanes of 8) rather than SSE2 (lanes of
/// 4): when the CPU has it, except in this crate's unit tests, which run the
/// oracle test on the SSE2 path (the integration test runs the other).
#[cfg(target_arch = "x86_64")]
#[inline]
fn use_avx2() -> bool {
    #[cfg(test)]
    {
        false
    }
    #[cfg(not(test))]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
}

/// Sweeps `probe` against lanes `lo..hi` in registers of `L` lanes and
/// records in `hits` the pairs whose masks show a possible change in the
/// directions `want` (bit 0: the probe watching, bit 1: watched). `uni`:
/// every lane has the probe's thresholds, so one mask serves both
/// directions.
#[inline(always)]
fn scan_range<const L: usize>(
    planes: &Planes,
    hits: &mut Hits,
    probe: &Probe,
    lo: usize,
    hi: usize,
    uni: bool,
    want: u32,
) {
    if lo >= hi {
        return;
    }
    // Whole registers, reading up to `L - 1` lanes past `hi` (the padding
    // at the end of the planes, or real lanes the hit path skips).
    let end = lo + (hi - lo).next_multiple_of(L);
    let xn = planes.xn[lo..end].as_chunks::<L>().0;
    let yn = planes.yn[lo..end].as_chunks::<L>().0;
    let xo = planes.xo[lo..end].as_chunks::<L>().0;
    let yo = planes.yo[lo..end].as_chunks::<L>().0;
    let n = xn.len().min(yn.len()).min(xo.len()).min(yo.len());
    hits.room(L * n);
    if uni {
        for c in 0..n {
            let (xn, yn, xo, yo) = (&xn[c], &yn[c], &xo[c], &yo[c]);
            let mut m = [0u32; L];
            for k in 0..L {
                let d2n = dist2(probe.xn, probe.yn, xn[k], yn[k]);
                let d2o = dist2(probe.xo, probe.yo, xo[k], yo[k]);
                m[k] = may_change(d2o, d2n, probe.e2, probe.l2) & want;
            }
            if m.iter().fold(0, |a, &b| a | b) != 0 {
                record(planes, hits, probe, lo + c * L, hi, &m);
            }
        }
    } else {
        let e2 = planes.e2[lo..end].as_chunks::<L>().0;
        let l2 = planes.l2[lo..end].as_chunks::<L>().0;
        let n = n.min(e2.len()).min(l2.len());
        for c in 0..n {
            let (xn, yn, xo, yo, e2, l2) = (&xn[c], &yn[c], &xo[c], &yo[c], &e2[c], &l2[c]);
            let mut m = [0u32; L];
            for k in 0..L {
                let d2n = dist2(probe.xn, probe.yn, xn[k], yn[k]);
                let d2o = dist2(probe.xo, probe.yo, xo[k], yo[k]);
                m[k] = ((may_change(d2o, d2n, probe.e2, probe.l2) & 1)
                    | (may_change(d2o, d2n, e2[k], l2[k]) & 2))
                    & want;
            }
            if m.iter().fold(0, |a, &b| a | b) != 0 {
                record(planes, hits, probe, lo + c * L, hi, &m);
            }
        }
    }
}

/// Lanes `lo..hi` of the position planes as registers of 8 lanes, the
/// last one reading up to 7 lanes past `hi` (the padding at the end of the
/// planes, or real lanes `record_bits` skips), and the key of their run.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Run<'a> {
    lo: usize,
    hi: usize,
    key: u64,
    xn: &'a [[f32; 8]],
    yn: &'a [[f32; 8]],
    xo: &'a [[f32; 8]],
    yo: &'a [[f32; 8]],
}

#[cfg(target_arch = "x86_64")]
impl<'a> Run<'a> {
    #[inline(always)]
    fn new(planes: &'a Planes, lo: usize, hi: usize, key: u64) -> Self {
        let regs = |v: &'a [f32]| {
            let end = lo + hi.saturating_sub(lo).next_multiple_of(8);
            v[lo..end].as_chunks::<8>().0
        };
        Run {
            lo,
            hi,
            key,
            xn: regs(&planes.xn),
            yn: regs(&planes.yn),
            xo: regs(&planes.xo),
            yo: regs(&planes.yo),
        }
    }

    /// The registers of a threshold plane for these lanes.
    #[inline(always)]
    fn regs(&self, v: &'a [f32]) -> &'a [[f32; 8]] {
        let end = self.lo + self.hi.saturating_sub(self.lo).next_multiple_of(8);
        v[self.lo..end].as_chunks::<8>().0
    }
}

/// The sweep of the probes of one bucket (the closure of
/// [`Sweep::sweep_lanes`]) in registers of 8 lanes, both directions: the
/// masks become bits of lanes at once, and the new states of the pairs come
/// from the same comparisons.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scan_avx2(
    planes: &Planes,
    hits: &mut Hits,
    probes: Range<usize>,
    own_end: usize,
    own_key: u64,
    shared: &[(usize, usize, u64)],
) {
    use std::arch::x86_64::*;
    let load = |a: &[f32; 8]| _mm256_setr_ps(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    let d2 = |px: __m256, py: __m256, x: __m256, y: __m256| {
        let (dx, dy) = (_mm256_sub_ps(px, x), _mm256_sub_ps(py, y));
        _mm256_add_ps(_mm256_mul_ps(dx, dx), _mm256_mul_ps(dy, dy))
    };
    // `may_change` on all lanes, and whether `d2n` is inside the enter
    // threshold (the new state where it may change), as bits of lanes.
    let change = |d2o: __m256, d2n: __m256, e2: __m256, l2: __m256| {
        let inside = _mm256_cmp_ps::<_CMP_LE_OQ>(d2n, e2);
        let enters = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(d2o, e2), inside);
        let leaves = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(d2n, l2),
            _mm256_cmp_ps::<_CMP_LE_OQ>(d2o, l2),
        );
        (
            _mm256_movemask_ps(_mm256_or_ps(enters, leaves)) as u32,
            _mm256_movemask_ps(inside) as u32,
        )
    };
    // Slot 0 is the probe's own run, the others are shared by all probes.
    let empty = Run::new(planes, 0, 0, EMPTY);
    let mut runs = [empty; 2 + 2 * K as usize * 2];
    let mut lanes = 0;
    for (r, &(lo, hi, key)) in runs[1..].iter_mut().zip(shared) {
        *r = Run::new(planes, lo, hi, key);
        lanes += r.xn.len();
    }
    let runs = &mut runs[..1 + shared.len()];
    for p in probes {
        let probe = planes.probe(p);
        let key = planes.key(p);
        let (pxn, pyn) = (_mm256_set1_ps(probe.xn), _mm256_set1_ps(probe.yn));
        let (pxo, pyo) = (_mm256_set1_ps(probe.xo), _mm256_set1_ps(probe.yo));
        let (pe2, pl2) = (_mm256_set1_ps(probe.e2), _mm256_set1_ps(probe.l2));
        runs[0] = Run::new(planes, p + 1, own_end, own_key);
        hits.room(8 * (lanes + runs[0].xn.len()));
        for run in runs.iter() {
            let regs = run.xn.iter().zip(run.yn).zip(run.xo).zip(run.yo);
            if run.key == key || run.key == EMPTY {
                for (c, (((xn, yn), xo), yo)) in regs.enumerate() {
                    let d2n = d2(pxn, pyn, load(xn), load(yn));
                    let d2o = d2(pxo, pyo, load(xo), load(yo));
                    let (bits, inside) = change(d2o, d2n, pe2, pl2);
                    if bits != 0 {
                        let bits = [bits, bits, inside, inside];
                        record_bits(planes, hits, &probe, run.lo + c * 8, run.hi, bits);
                    }
                }
            } else {
                let regs = regs.zip(run.regs(&planes.e2)).zip(run.regs(&planes.l2));
                for (c, (((((xn, yn), xo), yo), e2), l2)) in regs.enumerate() {
                    let d2n = d2(pxn, pyn, load(xn), load(yn));
                    let d2o = d2(pxo, pyo, load(xo), load(yo));
                    let (p_bits, p_in) = change(d2o, d2n, pe2, pl2);
                    let (t_bits, t_in) = change(d2o, d2n, load(e2), load(l2));
                    if p_bits | t_bits != 0 {
                        let bits = [p_bits, t_bits, p_in, t_in];
                        record_bits(planes, hits, &probe, run.lo + c * 8, run.hi, bits);
                    }
                }
            }
        }
    }
}

/// Records the pairs of `probe` with lanes `q0..q0 + 8` (below `hi`) whose
/// bit is set in `bits[0]` (the probe watching may change) or `bits[1]`
/// (watched), with their new states in `bits[2]` and `bits[3]`.
#[inline(always)]
fn record_bits(
    planes: &Planes,
    hits: &mut Hits,
    probe: &Probe,
    q0: usize,
    hi: usize,
    bits: [u32; 4],
) {
    // Lanes from `hi` on belong to other ranges (or are padding).
    let keep = if hi - q0 < 32 {
        (1u32 << (hi - q0)) - 1
    } else {
        u32::MAX
    };
    let mut any = (bits[0] | bits[1]) & keep;
    while any != 0 {
        let k = any.trailing_zeros();
        any &= any - 1;
        let t = planes.slot[q0 + k as usize];
        if t == probe.slot {
            continue;
        }
        let code = (bits[0] >> k & 1)
            | (bits[1] >> k & 1) << 1
            | (bits[2] >> k & 1) << 2
            | (bits[3] >> k & 1) << 3;
        hits.push(Hit {
            p: probe.slot,
            t,
            code,
        });
    }
}

/// Bit `k` set when lane `k` of `m` is not zero.
#[inline(always)]
fn lane_bits<const L: usize>(m: &[u32; L]) -> u32 {
    (0..L).fold(0, |a, k| a | u32::from(m[k] != 0) << k)
}

/// Records the pairs of `probe` with lanes `q0..q0 + L` (below `hi`) that
/// `m` marks, with their new states.
#[inline(never)]
fn record<const L: usize>(
    planes: &Planes,
    hits: &mut Hits,
    probe: &Probe,
    q0: usize,
    hi: usize,
    m: &[u32; L],
) {
    let mut bits = lane_bits(m);
    // Lanes from `hi` on belong to other ranges (or are padding).
    bits &= u32::MAX
        .checked_shl((hi - q0) as u32)
        .map_or(u32::MAX, |v| !v);
    while bits != 0 {
        let k = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        let (q, m) = (q0 + k, m[k]);
        if planes.slot[q] == probe.slot {
            continue;
        }
        let d2 = dist2(probe.xn, probe.yn, planes.xn[q], planes.yn[q]);
        // A possible change is decided: inside the enter threshold or
        // beyond the leave threshold.
        let sees = u32::from(d2 <= probe.e2) << 2;
        let seen = u32::from(d2 <= planes.e2[q]) << 3;
        hits.push(Hit {
            p: probe.slot,
            t: planes.slot[q],
            code: (m & 3) | sees | seen,
        });
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
fn choose_layout(l: &mut Layout, n: usize, imin: i64, imax: i64, jmin: i64, jmax: i64) {
    let (w, h) = ((imax - imin + 1) as u64, (jmax - jmin + 1) as u64);
    let limit = DENSE_PER_ENTITY * n as u64 + DENSE_EXTRA;
    if w <= limit && h <= limit && w * h <= limit {
        (l.i0, l.j0, l.w, l.h, l.wrap) = (imin, jmin, w as u32, h as u32, false);
        return;
    }
    let total = (usize::BITS - n.leading_zeros()).clamp(2 * MIN_SIDE_BITS, MAX_TOTAL_BITS);
    let wbits = total / 2;
    (l.i0, l.j0, l.w, l.h, l.wrap) = (0, 0, 1 << wbits, 1 << (total - wbits), true);
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
    let bits = |state: Option<bool>, bit: u32| match state {
        Some(true) => (bit, bit),
        Some(false) => (bit, 0),
        None => (0, 0),
    };
    let ((a, b), (c, d)) = (bits(sees, SEES), bits(seen, SEEN));
    settle_bits(slots, events, m, t, a | c, b | d);
}

/// [`settle`] with the link bits decided in `decided` and their new states
/// in `states` (within `decided`).
#[inline(always)]
fn settle_bits(
    slots: &mut [Slot],
    events: &mut Vec<AoiEvent>,
    m: u32,
    t: u32,
    decided: u32,
    states: u32,
) {
    let was = slots[m as usize].links.get(t);
    let now = was & !decided | states;
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
