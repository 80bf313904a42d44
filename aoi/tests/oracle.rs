//! `AoiGrid` against a brute-force oracle that applies the rule to every
//! pair involving the entity an operation touches.

use std::collections::{BTreeSet, HashMap, HashSet};

use proptest::prelude::*;
use proptest::sample::{select, Index};
use wyrm_aoi::{AoiEvent, AoiGrid, Handle};

/// The rule, written as plainly as possible.
#[derive(Default)]
struct Oracle {
    entities: HashMap<u64, Entity>,
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

impl Oracle {
    /// Applies the rule to `w` watching `t`; `inserting` makes the band "out"
    /// for a pair that did not exist.
    fn rule(&mut self, w: u64, t: u64, inserting: bool, events: &mut EventSet) {
        let (we, te) = (self.entities[&w], self.entities[&t]);
        if we.radius <= 0.0 {
            return;
        }
        let enter2 = we.radius * we.radius;
        let leave2 = (we.radius + we.hysteresis) * (we.radius + we.hysteresis);
        let d2 = dist2(we, te);
        let was = self.seen.contains(&(w, t));
        let now = if d2 <= enter2 {
            true
        } else if d2 > leave2 || inserting {
            false
        } else {
            was
        };
        if now != was {
            if now {
                self.seen.insert((w, t));
            } else {
                self.seen.remove(&(w, t));
            }
            assert!(events.insert((w, t, now)));
        }
    }

    fn others(&self, id: u64) -> Vec<u64> {
        self.entities.keys().copied().filter(|&o| o != id).collect()
    }

    fn insert(&mut self, id: u64, e: Entity) -> EventSet {
        self.entities.insert(id, e);
        let mut events = EventSet::new();
        for o in self.others(id) {
            self.rule(id, o, true, &mut events);
            self.rule(o, id, true, &mut events);
        }
        events
    }

    fn move_to(&mut self, id: u64, x: f32, y: f32) -> EventSet {
        let e = self.entities.get_mut(&id).expect("moved entity exists");
        e.x = x;
        e.y = y;
        let mut events = EventSet::new();
        for o in self.others(id) {
            self.rule(id, o, false, &mut events);
            self.rule(o, id, false, &mut events);
        }
        events
    }

    fn remove(&mut self, id: u64) -> EventSet {
        self.entities.remove(&id);
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
        let at = Entity {
            x,
            y,
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

    /// The events the grid emitted since the last call, as a set (callers
    /// compare its size with the number emitted, to catch duplicates).
    fn take_events(&mut self) -> EventSet {
        let set: EventSet = self
            .events
            .drain(..)
            .map(|e| (e.watcher, e.other, e.entered))
            .collect();
        set
    }

    fn insert(&mut self, x: f32, y: f32, radius: f32, hysteresis: f32) -> Handle {
        let id = self.next_id;
        self.next_id += 7_919;
        self.events.clear();
        let h = self
            .aoi
            .insert(id, x, y, radius, hysteresis, &mut self.events);
        let emitted = self.events.len();
        let got = self.take_events();
        assert_eq!(emitted, got.len(), "duplicate events on insert");
        let want = self.oracle.insert(
            id,
            Entity {
                x,
                y,
                radius,
                hysteresis,
            },
        );
        assert_eq!(
            got, want,
            "insert {id} at ({x}, {y}) r {radius} h {hysteresis}"
        );
        self.live.push((h, id));
        h
    }

    fn move_to(&mut self, i: usize, x: f32, y: f32) {
        let (h, id) = self.live[i];
        self.events.clear();
        self.aoi.move_to(h, x, y, &mut self.events);
        let emitted = self.events.len();
        let got = self.take_events();
        assert_eq!(emitted, got.len(), "duplicate events on move");
        let want = self.oracle.move_to(id, x, y);
        assert_eq!(got, want, "move {id} to ({x}, {y})");
        assert_eq!(self.aoi.position(h), (x, y));
    }

    fn remove(&mut self, i: usize) {
        let (h, id) = self.live.swap_remove(i);
        self.events.clear();
        self.aoi.remove(h, &mut self.events);
        let emitted = self.events.len();
        let got = self.take_events();
        assert_eq!(emitted, got.len(), "duplicate events on remove");
        assert_eq!(got, self.oracle.remove(id), "remove {id}");
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
            let visible: BTreeSet<u64> = self.aoi.visible(h).collect();
            let want: BTreeSet<u64> = self
                .oracle
                .seen
                .iter()
                .filter(|&&(w, _)| w == id)
                .map(|&(_, t)| t)
                .collect();
            assert_eq!(visible, want, "visible({id})");
            let watchers: BTreeSet<u64> = self.aoi.watchers(h).collect();
            let want: BTreeSet<u64> = self
                .oracle
                .seen
                .iter()
                .filter(|&&(_, t)| t == id)
                .map(|&(w, _)| w)
                .collect();
            assert_eq!(watchers, want, "watchers({id})");
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
    /// cells, some long enough to take the teleport path for small radii.
    Step(Index, i32, i32),
    Teleport(Index, u32, u32),
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
        0.0, 0.0, 3.0, 5.0, 10.0, 10.0, 20.0, 25.0, 45.0, 120.0,
    ])
}

fn hysteresis() -> impl Strategy<Value = f32> {
    select(vec![0.0, 0.5, 2.0, 5.0, 20.0])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..=STEPS, 0..=STEPS, any::<Index>()).prop_map(|(x, y, kind)| Op::Insert { x, y, kind }),
        1 => any::<Index>().prop_map(Op::Remove),
        8 => (any::<Index>(), -30..=30i32, -30..=30i32).prop_map(|(i, dx, dy)| Op::Step(i, dx, dy)),
        1 => (any::<Index>(), 0..=STEPS, 0..=STEPS).prop_map(|(i, x, y)| Op::Teleport(i, x, y)),
        1 => (0..=STEPS, 0..=STEPS, select(vec![0.0, 4.0, 17.5, 60.0, 500.0]))
            .prop_map(|(x, y, radius)| Op::Within { x, y, radius }),
    ]
}

/// One to three kinds of entity per case: alike entities (the common case,
/// where searches skip the cells inside everyone's enter radius) as well as
/// mixed ones, with or without non-watchers.
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
            Op::Within { x, y, radius } => hx.within(x as f32 * unit, y as f32 * unit, radius),
            _ => {}
        }
        hx.check_state();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A 200 x 200 field (or a 2000 x 2000 one, where distant cells share
    /// buckets), cell hints from "everything is large" to "one cell".
    #[test]
    fn matches_oracle(
        cell_size in select(vec![20.0f32, 20.0, 50.0, 1.0, 1000.0]),
        unit in select(vec![0.5f32, 0.5, 0.5, 5.0]),
        palette in palette(),
        ops in prop::collection::vec(op(), 1..250),
    ) {
        run(cell_size, unit, &palette, &ops);
    }
}

/// Many entities: the table grows (and re-files every lane) while the oracle
/// keeps checking events.
#[test]
fn grows_and_stays_exact() {
    let mut hx = Harness::new(20.0);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % u64::from(n)) as f32
    };
    for _ in 0..2_500 {
        let (x, y) = (next(1_000), next(1_000));
        let radius = [0.0, 5.0, 10.0, 15.0][next(4) as usize];
        hx.insert(x, y, radius, next(4));
    }
    for _ in 0..2_000 {
        let i = next(hx.live.len() as u32) as usize;
        let (x, y) = hx.aoi.position(hx.live[i].0);
        hx.move_to(i, x + next(9) - 4.0, y + next(9) - 4.0);
    }
    hx.check_state();
    for _ in 0..100 {
        hx.within(next(1_000), next(1_000), next(50));
    }
}

/// An entity oscillating across the enter radius, inside the leave radius,
/// enters once and never leaves.
#[test]
fn hysteresis_is_respected() {
    let mut hx = Harness::new(10.0);
    let watcher = hx.insert(0.0, 0.0, 10.0, 3.0);
    let other = hx.insert(11.0, 0.0, 0.0, 0.0);
    let other_id = hx.aoi.id(other);
    assert!(!hx.aoi.sees(watcher, other), "starts in the band: unseen");
    let mut enters = 0;
    for i in 0..20 {
        let x = if i % 2 == 0 { 9.5 } else { 12.5 };
        hx.events.clear();
        hx.aoi.move_to(other, x, 0.0, &mut hx.events);
        for e in hx.events.drain(..) {
            assert_eq!((e.other, e.entered), (other_id, true));
            enters += 1;
        }
        assert!(hx.aoi.sees(watcher, other));
    }
    assert_eq!(enters, 1);
    // Exactly on the leave radius is still in; just past it is out.
    hx.aoi.move_to(other, 13.0, 0.0, &mut hx.events);
    assert!(hx.events.is_empty());
    hx.aoi.move_to(other, 13.01, 0.0, &mut hx.events);
    assert_eq!(
        hx.events,
        vec![AoiEvent {
            watcher: hx.aoi.id(watcher),
            other: other_id,
            entered: false
        }]
    );
}

/// Removing an entity ends its pairs in both directions.
#[test]
fn remove_leaves_both_directions() {
    let mut aoi = AoiGrid::new(10.0);
    let mut events = Vec::new();
    let a = aoi.insert(1, 0.0, 0.0, 10.0, 0.0, &mut events);
    let b = aoi.insert(2, 5.0, 0.0, 10.0, 0.0, &mut events);
    let c = aoi.insert(3, 0.0, 8.0, 0.0, 0.0, &mut events);
    let _far = aoi.insert(4, 500.0, 0.0, 10.0, 0.0, &mut events);
    assert_eq!(events.len(), 4); // a<->b, a->c, b->c
    events.clear();
    aoi.remove(a, &mut events);
    let got: BTreeSet<_> = events
        .iter()
        .map(|e| (e.watcher, e.other, e.entered))
        .collect();
    let want: BTreeSet<_> = [(1, 2, false), (2, 1, false), (1, 3, false)].into();
    assert_eq!(got, want);
    assert_eq!(events.len(), 3);
    assert_eq!(aoi.len(), 3);
    assert_eq!(aoi.watchers(c).collect::<Vec<_>>(), vec![2]);
    assert_eq!(aoi.visible(b).collect::<Vec<_>>(), vec![3]);
    // The freed slot is reused and starts clean.
    events.clear();
    let d = aoi.insert(5, 100.0, 100.0, 1.0, 0.0, &mut events);
    assert!(events.is_empty());
    assert_eq!(aoi.visible(d).count() + aoi.watchers(d).count(), 0);
}

/// A removed handle is refused, not misread.
#[test]
#[should_panic(expected = "was removed")]
fn removed_handle_panics() {
    let mut aoi = AoiGrid::default();
    let mut events = Vec::new();
    let a = aoi.insert(1, 0.0, 0.0, 10.0, 0.0, &mut events);
    aoi.remove(a, &mut events);
    aoi.position(a);
}

/// NaN and infinities never panic and read as 0, consistently with how
/// pairs are then computed.
#[test]
fn nan_does_not_panic() {
    let mut hx = Harness::new(10.0);
    hx.insert(0.0, 0.0, 5.0, 1.0);
    let mut events = Vec::new();
    let h = hx.aoi.insert(
        99,
        f32::NAN,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::INFINITY,
        &mut events,
    );
    assert_eq!(hx.aoi.position(h), (0.0, 0.0));
    assert_eq!(events.len(), 1); // the watcher at the origin sees it
    for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 3.0] {
        hx.aoi.move_to(h, v, v, &mut events);
    }
    let mut out = Vec::new();
    hx.aoi.within(f32::NAN, f32::INFINITY, 1.0, &mut out);
    hx.aoi.within(0.0, 0.0, f32::INFINITY, &mut out);
    hx.aoi.remove(h, &mut events);
}
