//! `AoiGrid` against a brute-force oracle that applies the rule to every
//! pair involving the entity an operation touches.

use std::collections::{BTreeSet, HashMap, HashSet};

use proptest::prelude::*;
use proptest::sample::{select, Index};
use wyrm_aoi::{AoiEvent, AoiGrid, Handle};

/// The rule, written as plainly as possible: every ordered pair at every
/// update.
#[derive(Default)]
struct Oracle {
    entities: HashMap<u64, Entity>,
    /// Ids present at the previous update.
    present: HashSet<u64>,
    /// `(watcher, other)` pairs that are in.
    seen: HashSet<(u64, u64)>,
}

#[derive(Clone, Copy)]
struct Entity {
    x: f32,
    y: f32,
    radius: f32,
    hysteresis: f32,
}

type EventSet = BTreeSet<(u64, u64, bool)>;

fn dist2(a: Entity, b: Entity) -> f32 {
    let dx = a.x - b.x;
    let dy = a.y - b.y;
    dx * dx + dy * dy
}

fn clean(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

impl Oracle {
    fn insert(&mut self, id: u64, e: Entity) {
        let e = Entity {
            x: clean(e.x),
            y: clean(e.y),
            radius: if e.radius > 0.0 { e.radius } else { 0.0 },
            hysteresis: if e.hysteresis > 0.0 {
                e.hysteresis
            } else {
                0.0
            },
        };
        self.entities.insert(id, e);
    }

    fn move_to(&mut self, id: u64, x: f32, y: f32) {
        let e = self.entities.get_mut(&id).expect("moved entity exists");
        e.x = clean(x);
        e.y = clean(y);
    }

    fn update(&mut self) -> EventSet {
        let mut events = EventSet::new();
        let ids: Vec<u64> = self.entities.keys().copied().collect();
        for &w in &ids {
            for &t in &ids {
                if w == t {
                    continue;
                }
                let (we, te) = (self.entities[&w], self.entities[&t]);
                let was = self.seen.contains(&(w, t));
                let now = if we.radius <= 0.0 {
                    false
                } else {
                    let enter2 = we.radius * we.radius;
                    let reach = we.radius + we.hysteresis;
                    let leave2 = reach * reach;
                    let d2 = dist2(we, te);
                    let existed = self.present.contains(&w) && self.present.contains(&t);
                    if d2 <= enter2 {
                        true
                    } else if d2 > leave2 || !existed {
                        false
                    } else {
                        was
                    }
                };
                if now != was {
                    if now {
                        self.seen.insert((w, t));
                    } else {
                        self.seen.remove(&(w, t));
                    }
                    events.insert((w, t, now));
                }
            }
        }
        self.present = ids.into_iter().collect();
        events
    }

    fn remove(&mut self, id: u64) -> EventSet {
        self.entities.remove(&id);
        self.present.remove(&id);
        let gone: Vec<(u64, u64)> = self
            .seen
            .iter()
            .copied()
            .filter(|&(w, t)| w == id || t == id)
            .collect();
        gone.into_iter()
            .map(|(w, t)| {
                self.seen.remove(&(w, t));
                (w, t, false)
            })
            .collect()
    }

    fn within(&self, x: f32, y: f32, radius: f32) -> BTreeSet<u64> {
        if radius.is_nan() || radius < 0.0 {
            return BTreeSet::new();
        }
        let at = Entity {
            x: clean(x),
            y: clean(y),
            radius: 0.0,
            hysteresis: 0.0,
        };
        self.entities
            .iter()
            .filter(|(_, &e)| dist2(e, at) <= radius * radius)
            .map(|(&id, _)| id)
            .collect()
    }
}

/// The grid, the oracle and the handle of every live entity.
struct Harness {
    aoi: AoiGrid,
    oracle: Oracle,
    live: Vec<(Handle, u64)>,
    next_id: u64,
    events: Vec<AoiEvent>,
}

impl Harness {
    fn new(cell_size: f32) -> Self {
        Self {
            aoi: AoiGrid::new(cell_size),
            oracle: Oracle::default(),
            live: Vec::new(),
            next_id: 1_000,
            events: Vec::new(),
        }
    }

    /// The events the grid emitted since the last call, as a set, checking
    /// there were no duplicates.
    fn take_events(&mut self, what: &str) -> EventSet {
        let emitted = self.events.len();
        let set: EventSet = self
            .events
            .drain(..)
            .map(|e| (e.watcher, e.other, e.entered))
            .collect();
        assert_eq!(emitted, set.len(), "duplicate events on {what}");
        set
    }

    fn insert(&mut self, x: f32, y: f32, radius: f32, hysteresis: f32) -> Handle {
        let id = self.next_id;
        self.next_id += 7_919;
        let h = self.aoi.insert(id, x, y, radius, hysteresis);
        self.oracle.insert(
            id,
            Entity {
                x,
                y,
                radius,
                hysteresis,
            },
        );
        self.live.push((h, id));
        h
    }

    fn move_to(&mut self, i: usize, x: f32, y: f32) {
        let (h, id) = self.live[i];
        self.aoi.move_to(h, x, y);
        self.oracle.move_to(id, x, y);
        assert_eq!(self.aoi.position(h), (clean(x), clean(y)));
    }

    fn update(&mut self) {
        self.events.clear();
        self.aoi.update(&mut self.events);
        let got = self.take_events("update");
        assert_eq!(got, self.oracle.update(), "update");
        self.check_state();
    }

    fn remove(&mut self, i: usize) {
        let (h, id) = self.live.swap_remove(i);
        self.events.clear();
        self.aoi.remove(h, &mut self.events);
        let got = self.take_events("remove");
        assert_eq!(got, self.oracle.remove(id), "remove {id}");
        self.check_state();
    }

    fn within(&self, x: f32, y: f32, radius: f32) {
        let mut out = Vec::new();
        self.aoi.within(x, y, radius, &mut out);
        let got: BTreeSet<u64> = out.iter().copied().collect();
        assert_eq!(got.len(), out.len(), "duplicate ids from within");
        assert_eq!(got, self.oracle.within(x, y, radius), "within");
    }

    /// Every query against the oracle's pair matrix.
    fn check_state(&self) {
        assert_eq!(self.aoi.len(), self.live.len());
        assert_eq!(self.aoi.is_empty(), self.live.is_empty());
        for &(h, id) in &self.live {
            assert_eq!(self.aoi.id(h), id);
            let visible: Vec<u64> = self.aoi.visible(h).collect();
            let want: BTreeSet<u64> = self
                .oracle
                .seen
                .iter()
                .filter(|&&(w, _)| w == id)
                .map(|&(_, t)| t)
                .collect();
            assert_eq!(visible.len(), want.len(), "visible({id}) duplicates");
            assert_eq!(
                visible.into_iter().collect::<BTreeSet<_>>(),
                want,
                "visible({id})"
            );
            let watchers: Vec<u64> = self.aoi.watchers(h).collect();
            let want: BTreeSet<u64> = self
                .oracle
                .seen
                .iter()
                .filter(|&&(_, t)| t == id)
                .map(|&(w, _)| w)
                .collect();
            assert_eq!(watchers.len(), want.len(), "watchers({id}) duplicates");
            assert_eq!(
                watchers.into_iter().collect::<BTreeSet<_>>(),
                want,
                "watchers({id})"
            );
            for &(h2, id2) in &self.live {
                assert_eq!(
                    self.aoi.sees(h, h2),
                    self.oracle.seen.contains(&(id, id2)),
                    "sees({id}, {id2})"
                );
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// `kind` picks the radius and hysteresis from the case's palette.
    Insert {
        x: u32,
        y: u32,
        kind: Index,
    },
    Remove(Index),
    /// A step of up to 15 units either way: mostly short moves, some across
    /// cells, some further than the slack.
    Step(Index, i32, i32),
    Teleport(Index, u32, u32),
    /// A non-finite coordinate (read as 0).
    Bad(Index, u8),
    Update,
    Within {
        x: u32,
        y: u32,
        radius: f32,
    },
}

/// Coordinates are multiples of a case's `unit` up to `STEPS * unit`, so
/// exact ties with the thresholds (and exact cell borders) happen often.
const STEPS: u32 = 400;

fn radius() -> impl Strategy<Value = f32> {
    select(vec![
        0.0,
        0.0,
        -1.0,
        3.0,
        5.0,
        10.0,
        10.0,
        20.0,
        25.0,
        45.0,
        120.0,
        1e30,
        f32::INFINITY,
    ])
}

fn hysteresis() -> impl Strategy<Value = f32> {
    select(vec![0.0, 0.5, 2.0, 5.0, 20.0, f32::NAN, -3.0, 1e25])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..=STEPS, 0..=STEPS, any::<Index>()).prop_map(|(x, y, kind)| Op::Insert { x, y, kind }),
        1 => any::<Index>().prop_map(Op::Remove),
        8 => (any::<Index>(), -30..=30i32, -30..=30i32).prop_map(|(i, dx, dy)| Op::Step(i, dx, dy)),
        1 => (any::<Index>(), 0..=STEPS, 0..=STEPS).prop_map(|(i, x, y)| Op::Teleport(i, x, y)),
        1 => (any::<Index>(), 0..3u8).prop_map(|(i, k)| Op::Bad(i, k)),
        4 => Just(Op::Update),
        1 => (0..=STEPS, 0..=STEPS, select(vec![0.0, 4.0, 17.5, 60.0, 500.0, f32::NAN, -1.0, f32::INFINITY]))
            .prop_map(|(x, y, radius)| Op::Within { x, y, radius }),
    ]
}

/// One to three kinds of entity per case: alike entities (the common case)
/// as well as mixed ones, with or without non-watchers and large watchers.
fn palette() -> impl Strategy<Value = Vec<(f32, f32)>> {
    prop::collection::vec((radius(), hysteresis()), 1..4)
}

fn run(cell_size: f32, unit: f32, palette: &[(f32, f32)], ops: &[Op]) {
    let mut hx = Harness::new(cell_size);
    let field = STEPS as f32 * unit;
    for op in ops {
        match *op {
            Op::Insert { x, y, kind } => {
                let (radius, hysteresis) = palette[kind.index(palette.len())];
                hx.insert(x as f32 * unit, y as f32 * unit, radius, hysteresis);
            }
            Op::Remove(i) if !hx.live.is_empty() => hx.remove(i.index(hx.live.len())),
            Op::Step(i, dx, dy) if !hx.live.is_empty() => {
                let i = i.index(hx.live.len());
                let (x, y) = hx.aoi.position(hx.live[i].0);
                // Multiples of 0.5, so on the coordinate grid when `unit` is 0.5.
                let x = (x + dx as f32 * 0.5).clamp(0.0, field);
                let y = (y + dy as f32 * 0.5).clamp(0.0, field);
                hx.move_to(i, x, y);
            }
            Op::Teleport(i, x, y) if !hx.live.is_empty() => {
                let i = i.index(hx.live.len());
                hx.move_to(i, x as f32 * unit, y as f32 * unit);
            }
            Op::Bad(i, k) if !hx.live.is_empty() => {
                let i = i.index(hx.live.len());
                let v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][k as usize];
                let (x, _) = hx.aoi.position(hx.live[i].0);
                hx.move_to(i, x, v);
            }
            Op::Update => hx.update(),
            Op::Within { x, y, radius } => hx.within(x as f32 * unit, y as f32 * unit, radius),
            _ => {}
        }
    }
    hx.update();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A 200 x 200 field (or a 2000 x 2000 one), cell hints from
    /// "everything is large" to "one cell".
    #[test]
    fn matches_oracle(
        cell_size in select(vec![20.0f32, 20.0, 50.0, 1.0, 1000.0]),
        unit in select(vec![0.5f32, 0.5, 0.5, 5.0]),
        palette in palette(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run(cell_size, unit, &palette, &ops);
    }
}

/// Many entities spread far apart (the wrapping table), moving in ticks,
/// some jumping further than the slack, against the oracle.
#[test]
fn many_entities_stay_exact() {
    let mut hx = Harness::new(20.0);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % u64::from(n)) as f32
    };
    for k in 0..600 {
        // A dense block and a few outliers far away.
        let (x, y) = if k % 50 == 0 {
            (next(1_000) * 1e4, next(1_000) * 1e4)
        } else {
            (next(300), next(300))
        };
        let radius = [0.0, 5.0, 10.0, 15.0][next(4) as usize];
        hx.insert(x, y, radius, next(4));
    }
    hx.update();
    for tick in 0..15 {
        for i in 0..hx.live.len() {
            let (x, y) = hx.aoi.position(hx.live[i].0);
            let jump = if (i + tick) % 37 == 0 { 40.0 } else { 4.0 };
            let (dx, dy) = (next(9) - 4.0, next(9) - 4.0);
            hx.move_to(i, x + dx * jump / 4.0, y + dy * jump / 4.0);
        }
        hx.update();
    }
    for _ in 0..50 {
        hx.within(next(300), next(300), next(50));
    }
}

/// An entity oscillating across the enter radius, inside the leave radius,
/// enters once and never leaves; ties on both thresholds.
#[test]
fn hysteresis_is_respected() {
    let mut hx = Harness::new(10.0);
    let watcher = hx.insert(0.0, 0.0, 10.0, 3.0);
    let other = hx.insert(11.0, 0.0, 0.0, 0.0);
    hx.update();
    assert!(!hx.aoi.sees(watcher, other), "starts in the band: unseen");
    for i in 0..20 {
        let x = if i % 2 == 0 { 9.5 } else { 12.5 };
        hx.move_to(1, x, 0.0);
        hx.update();
        assert!(hx.aoi.sees(watcher, other));
    }
    // Exactly on the leave radius is still in; just past it is out.
    hx.move_to(1, 13.0, 0.0);
    hx.update();
    assert!(hx.aoi.sees(watcher, other));
    hx.move_to(1, 13.01, 0.0);
    hx.update();
    assert!(!hx.aoi.sees(watcher, other));
    // Exactly on the enter radius is in.
    hx.move_to(1, 0.0, 10.0);
    hx.update();
    assert!(hx.aoi.sees(watcher, other));
}

/// Only the last position before an update counts; removal is immediate;
/// an entity inserted and removed between updates leaves no trace.
#[test]
fn tick_semantics() {
    let mut aoi = AoiGrid::new(10.0);
    let mut events = Vec::new();
    let a = aoi.insert(1, 0.0, 0.0, 10.0, 0.0);
    let b = aoi.insert(2, 5.0, 0.0, 10.0, 0.0);
    let c = aoi.insert(3, 0.0, 8.0, 0.0, 0.0);
    assert!(!aoi.sees(a, b), "nothing before the first update");
    let gone = aoi.insert(9, 1.0, 1.0, 10.0, 0.0);
    aoi.remove(gone, &mut events);
    assert!(events.is_empty());
    aoi.update(&mut events);
    assert_eq!(events.len(), 4); // a<->b, a->c, b->c
    events.clear();
    // Out and back before the update: nothing.
    aoi.move_to(b, 500.0, 0.0);
    aoi.move_to(b, 6.0, 0.0);
    aoi.update(&mut events);
    assert!(events.is_empty());
    aoi.remove(a, &mut events);
    let got: BTreeSet<_> = events
        .iter()
        .map(|e| (e.watcher, e.other, e.entered))
        .collect();
    let want: BTreeSet<_> = [(1, 2, false), (2, 1, false), (1, 3, false)].into();
    assert_eq!(got, want);
    assert_eq!(events.len(), 3);
    assert_eq!(aoi.len(), 2);
    assert_eq!(aoi.watchers(c).collect::<Vec<_>>(), vec![2]);
    assert_eq!(aoi.visible(b).collect::<Vec<_>>(), vec![3]);
    // The freed slot is reused and starts clean.
    events.clear();
    let d = aoi.insert(5, 100.0, 100.0, 1.0, 0.0);
    aoi.update(&mut events);
    assert!(events.is_empty());
    assert_eq!(aoi.visible(d).count() + aoi.watchers(d).count(), 0);
}

/// A removed handle is refused, not misread.
#[test]
#[should_panic(expected = "was removed")]
fn removed_handle_panics() {
    let mut aoi = AoiGrid::default();
    let mut events = Vec::new();
    let a = aoi.insert(1, 0.0, 0.0, 10.0, 0.0);
    aoi.remove(a, &mut events);
    aoi.position(a);
}

/// Huge coordinates (clamped cells) and NaN/infinite inputs stay exact.
#[test]
fn extreme_inputs() {
    let mut hx = Harness::new(10.0);
    hx.insert(3e38, 3e38, 5.0, 1.0);
    hx.insert(3e38, 3e38, 1e30, 0.0);
    hx.insert(-3e38, 1e20, 5.0, 1.0);
    hx.insert(f32::NAN, f32::NEG_INFINITY, f32::NAN, f32::INFINITY);
    hx.insert(1.0, 0.0, 5.0, f32::INFINITY);
    hx.update();
    hx.move_to(3, 3e38, 3e38);
    hx.move_to(0, f32::INFINITY, 2.0);
    hx.update();
    hx.move_to(4, 1e9, 0.0);
    hx.update();
    for v in [f32::NAN, f32::INFINITY, 3e38] {
        hx.within(v, v, 1.0);
        hx.within(0.0, 0.0, v);
    }
}
