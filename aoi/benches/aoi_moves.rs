//! Moves per second of `AoiGrid` on one core.
//!
//! 10,000 watchers (radius 100, hysteresis 10) uniformly on a 2000 x 2000
//! field. A round is one tick: every entity moves once (`move_to`), by at
//! most 5 units in x and y (a unit walking 100 u/s at a 20 Hz tick), clamped
//! to the field, then one `update` applies the rule. Moves per second count
//! the time of the moves and the update together. A second scenario
//! teleports every entity to a random place each round, for information, and
//! a third times `within` queries of radius 100.
//!
//! The baseline, measured in the same run on the same kind of moves from the
//! same start, is the textbook grid: cells as wide as the leave radius, each
//! move checks every entity in the 3 x 3 cells around its old and new place
//! against the same rule at once, and each entity's seen set is a `HashSet`.
//!
//! Run with `cargo bench -p wyrm-aoi --bench aoi_moves`. It prints numbers and
//! asserts nothing about them.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Instant;

use wyrm_aoi::{AoiEvent, AoiGrid, Handle};

const ENTITIES: usize = 10_000;
const FIELD: f32 = 2_000.0;
const RADIUS: f32 = 100.0;
const HYSTERESIS: f32 = 10.0;
const STEP: f32 = 5.0;
const RUNS: usize = 7;

/// xorshift64*: enough randomness for positions, and cheap next to a move.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

struct World {
    aoi: AoiGrid,
    handles: Vec<Handle>,
    rng: Rng,
    events: Vec<AoiEvent>,
}

impl World {
    fn new() -> Self {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut aoi = AoiGrid::new(RADIUS + HYSTERESIS);
        let handles = (0..ENTITIES as u64)
            .map(|id| {
                let (x, y) = (rng.unit() * FIELD, rng.unit() * FIELD);
                aoi.insert(id, x, y, RADIUS, HYSTERESIS)
            })
            .collect();
        let mut events = Vec::new();
        aoi.update(&mut events);
        events.clear();
        Self {
            aoi,
            handles,
            rng,
            events,
        }
    }

    /// Rounds of `moves / ENTITIES` walking ticks; returns the number of
    /// events.
    fn walk(&mut self, moves: usize) -> usize {
        let mut total = 0;
        for _ in 0..moves / ENTITIES {
            for &h in &self.handles {
                let (x, y) = self.aoi.position(h);
                let dx = (self.rng.unit() * 2.0 - 1.0) * STEP;
                let dy = (self.rng.unit() * 2.0 - 1.0) * STEP;
                let (x, y) = ((x + dx).clamp(0.0, FIELD), (y + dy).clamp(0.0, FIELD));
                self.aoi.move_to(h, x, y);
            }
            self.aoi.update(&mut self.events);
            total += self.events.len();
            self.events.clear();
        }
        total
    }

    /// Rounds where every entity jumps to a random place; returns the number
    /// of events.
    fn teleport(&mut self, moves: usize) -> usize {
        let mut total = 0;
        for _ in 0..moves / ENTITIES {
            for &h in &self.handles {
                let (x, y) = (self.rng.unit() * FIELD, self.rng.unit() * FIELD);
                self.aoi.move_to(h, x, y);
            }
            self.aoi.update(&mut self.events);
            total += self.events.len();
            self.events.clear();
        }
        total
    }
}

/// The textbook grid AOI, for the baseline (same rule, all watchers alike).
struct NaiveGrid {
    pos: Vec<(f32, f32)>,
    cells: HashMap<(i32, i32), Vec<u32>>,
    sees: Vec<HashSet<u32>>,
    rng: Rng,
}

impl NaiveGrid {
    const CELL: f32 = RADIUS + HYSTERESIS;

    fn cell(p: (f32, f32)) -> (i32, i32) {
        (
            (p.0 / Self::CELL).floor() as i32,
            (p.1 / Self::CELL).floor() as i32,
        )
    }

    fn new() -> Self {
        // The same seed and draws as `World::new`: the same entities.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut g = NaiveGrid {
            pos: Vec::new(),
            cells: HashMap::new(),
            sees: Vec::new(),
            rng: Rng(0),
        };
        for i in 0..ENTITIES as u32 {
            let p = (rng.unit() * FIELD, rng.unit() * FIELD);
            g.pos.push(p);
            g.sees.push(HashSet::new());
            g.cells.entry(Self::cell(p)).or_default().push(i);
        }
        for i in 0..ENTITIES as u32 {
            let c = Self::cell(g.pos[i as usize]);
            g.update(i, c);
        }
        g.rng = rng;
        g
    }

    /// Applies the rule to every pair of `i` and an entity in the 3 x 3
    /// cells around its place and, after a change of cell, around its old
    /// cell `old` too (a pair it leaves may lie only there); returns the
    /// number of changes.
    fn update(&mut self, i: u32, old: (i32, i32)) -> usize {
        let (enter, leave) = (
            RADIUS * RADIUS,
            (RADIUS + HYSTERESIS) * (RADIUS + HYSTERESIS),
        );
        let p = self.pos[i as usize];
        let now = Self::cell(p);
        let near = |a: (i32, i32), b: (i32, i32)| (a.0 - b.0).abs() <= 1 && (a.1 - b.1).abs() <= 1;
        let block = |(cx, cy): (i32, i32)| {
            (cx - 1..=cx + 1).flat_map(move |x| (cy - 1..=cy + 1).map(move |y| (x, y)))
        };
        let cells = block(now).chain(block(old).filter(|&c| !near(c, now)));
        let mut changes = 0;
        for c in cells {
            let Some(cell) = self.cells.get(&c) else {
                continue;
            };
            for &j in cell {
                if j == i {
                    continue;
                }
                let q = self.pos[j as usize];
                let (dx, dy) = (p.0 - q.0, p.1 - q.1);
                let d2 = dx * dx + dy * dy;
                for (w, t) in [(i, j), (j, i)] {
                    let set = &mut self.sees[w as usize];
                    if d2 <= enter {
                        changes += usize::from(set.insert(t));
                    } else if d2 > leave {
                        changes += usize::from(set.remove(&t));
                    }
                }
            }
        }
        changes
    }

    fn walk(&mut self, moves: usize) -> usize {
        let mut total = 0;
        for _ in 0..moves {
            let i = self.rng.below(ENTITIES) as u32;
            let (x, y) = self.pos[i as usize];
            let dx = (self.rng.unit() * 2.0 - 1.0) * STEP;
            let dy = (self.rng.unit() * 2.0 - 1.0) * STEP;
            let to = ((x + dx).clamp(0.0, FIELD), (y + dy).clamp(0.0, FIELD));
            let (from_cell, to_cell) = (Self::cell((x, y)), Self::cell(to));
            if from_cell != to_cell {
                if let Some(c) = self.cells.get_mut(&from_cell) {
                    c.retain(|&j| j != i);
                }
                self.cells.entry(to_cell).or_default().push(i);
            }
            self.pos[i as usize] = to;
            total += self.update(i, from_cell);
        }
        total
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints each run's rate and the median; returns the median (moves/s).
fn measure<W>(
    name: &str,
    world: &mut W,
    moves: usize,
    run: impl Fn(&mut W, usize) -> usize,
) -> f64 {
    run(world, moves / 2);
    let mut rates = Vec::new();
    let mut events = 0;
    for i in 0..RUNS {
        let start = Instant::now();
        events += black_box(run(world, moves));
        let rate = moves as f64 / start.elapsed().as_secs_f64();
        println!("{name} run {}: {:>7.3} M moves/s", i + 1, rate / 1e6);
        rates.push(rate);
    }
    let m = median(rates);
    println!(
        "{name}: median {:.3} M moves/s, {:.3} events/move ({moves} moves per run)",
        m / 1e6,
        events as f64 / (RUNS * moves) as f64,
    );
    m
}

/// `within` queries of radius 100 around random entities, right after an
/// update and again after every entity moved (not yet updated), per second.
fn within(world: &mut World) {
    let mut out = Vec::new();
    for phase in ["after update", "after moves"] {
        if phase == "after moves" {
            for &h in &world.handles {
                let (x, y) = world.aoi.position(h);
                let dx = (world.rng.unit() * 2.0 - 1.0) * STEP;
                let dy = (world.rng.unit() * 2.0 - 1.0) * STEP;
                world
                    .aoi
                    .move_to(h, (x + dx).clamp(0.0, FIELD), (y + dy).clamp(0.0, FIELD));
            }
        }
        let queries = 200_000;
        let mut rates = Vec::new();
        let mut found = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            for _ in 0..queries {
                let h = world.handles[world.rng.below(ENTITIES)];
                let (x, y) = world.aoi.position(h);
                out.clear();
                world.aoi.within(x, y, RADIUS, &mut out);
                found += black_box(out.len());
            }
            rates.push(queries as f64 / start.elapsed().as_secs_f64());
        }
        println!(
            "within radius {RADIUS} ({phase}): median {:.3} M queries/s, {:.1} found per query",
            median(rates) / 1e6,
            found as f64 / (RUNS * queries) as f64,
        );
    }
    world.aoi.update(&mut world.events);
    world.events.clear();
}

fn main() {
    let start = Instant::now();
    let mut world = World::new();
    let seen: usize = world
        .handles
        .iter()
        .map(|&h| world.aoi.visible(h).count())
        .sum();
    println!(
        "{ENTITIES} entities, radius {RADIUS} + {HYSTERESIS}, {FIELD} x {FIELD} field: \
         built in {:.0} ms, {:.1} seen per entity",
        start.elapsed().as_secs_f64() * 1e3,
        seen as f64 / ENTITIES as f64,
    );
    // `cargo bench ... -- walk` (or `baseline`, `teleport`, `within`) runs one
    // scenario.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    // `AOI_BENCH_QUICK=1`: one short run of the walk alone, for callgrind.
    if std::env::var_os("AOI_BENCH_QUICK").is_some() {
        let events = world.walk(10 * ENTITIES);
        println!("quick walk: {events} events");
        return;
    }
    // Run by Wyrm's benchmark suite: the walk, and one line for its table.
    if std::env::var_os("WYRM_BENCH_SUITE").is_some() {
        let grid = measure("walk", &mut world, 1_000_000, World::walk);
        println!(
            "SUITE\tAOI moves\t{:.2} M/s\t{ENTITIES} entities, radius {RADIUS} + {HYSTERESIS}, \
             {FIELD} x {FIELD}, each moves once per update (tick); one core",
            grid / 1e6
        );
        return;
    }
    if wanted("walk") {
        let grid = measure("walk", &mut world, 1_000_000, World::walk);
        // The baseline is slow: `-- walk` alone skips it.
        if only.is_empty() || wanted("baseline") {
            let mut naive = NaiveGrid::new();
            let base = measure("baseline walk", &mut naive, 1_000_000, NaiveGrid::walk);
            println!("walk: AoiGrid / textbook grid = {:.2}x", grid / base);
        }
    }
    if wanted("teleport") {
        measure("teleport", &mut world, 200_000, World::teleport);
    }
    if wanted("within") {
        within(&mut world);
    }
}
