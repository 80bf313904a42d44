//! Storage throughput and latency, through Wyrm's storage thread exactly as
//! the game uses it, on SQLite (the embedded default) and on PostgreSQL (a
//! cluster's, a local server started for the run on loopback):
//! - entity saves per second, batched the way the save interval batches them
//!   (one `Save` of many rows) and one row at a time (as `save-entity` does,
//!   which the storage thread then batches into transactions itself);
//! - load latency: `Load` of a saved entity until the game would have it;
//! - loads per second when many are asked at once (a failed game's entities
//!   coming back elsewhere).
//!
//! Each database is measured in two settings that lose the same things:
//! "crash-safe" (a commit survives a crash of any process, not of the
//! machine: SQLite `synchronous = NORMAL`, Wyrm's default; PostgreSQL with
//! `fsync = off`) and "durable" (a commit is on the disk: SQLite `FULL`,
//! PostgreSQL's defaults). Baseline in the same run: the same rows inserted
//! with plain rusqlite in one transaction.
//!
//! Needs PostgreSQL's server installed (`scripts/setup-cluster`).
//!
//! Run: `cargo bench -p wyrm --bench storage`

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use wyrm::local::LocalPostgres;
use wyrm_storage::{self as storage, Answer, EntityRow, Location, Op};

mod support;
use support::median;

const ROWS: u64 = 100_000;
const RUNS: usize = 3;

/// About 100 bytes of persistent attributes, MessagePack-encoded.
fn attrs(i: u64) -> Vec<u8> {
    let v = rmpv::Value::Map(vec![
        ("name".into(), format!("player-{i:08}").into()),
        ("level".into(), (i % 90).into()),
        ("gold".into(), (i * 37).into()),
        (
            "inventory".into(),
            rmpv::Value::Array((0..8).map(|k| (k * i % 1000).into()).collect()),
        ),
        ("guild".into(), "the-long-guild-name".into()),
    ]);
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, &v);
    out
}

fn row(id: u64) -> EntityRow {
    EntityRow {
        id,
        type_name: "Player".into(),
        attrs: attrs(id),
    }
}

/// Storage answers into a game's inbox; here into a channel the benchmark
/// reads.
type Opened = storage::Opened<()>;
fn open(location: &Location) -> anyhow::Result<(Opened, mpsc::Receiver<Answer<()>>)> {
    let (tx, rx) = mpsc::channel();
    let opened = storage::open(location, &[], move |a| {
        let _ = tx.send(a);
    })?;
    Ok((opened, rx))
}

/// Closes a store: its thread ends, releasing the database, once its last
/// handle is gone.
fn close(opened: Opened) {
    let storage::Opened { store, thread, .. } = opened;
    drop(store);
    let _ = thread.join();
}

/// One run's numbers.
struct Run {
    batched: f64,
    single: f64,
    load_p50_us: f64,
    load_p99_us: f64,
    bulk_loads: f64,
}

fn flush(opened: &Opened) -> anyhow::Result<()> {
    anyhow::ensure!(
        opened.store.flush(Duration::from_secs(300)),
        "flush timed out"
    );
    Ok(())
}

/// Saves, loads and bulk loads on a fresh, empty database at `location`.
fn measure(location: &Location) -> anyhow::Result<Run> {
    let (opened, _rx) = open(location)?;
    // Batched: rows in groups of 1,000, as a save tick sends them.
    let t = Instant::now();
    for chunk in (1..=ROWS).collect::<Vec<_>>().chunks(1000) {
        opened.store.send(Op::Save {
            rows: chunk.iter().map(|&i| row(i)).collect(),
            reply: None,
        });
    }
    flush(&opened)?;
    let batched = ROWS as f64 / t.elapsed().as_secs_f64();

    // One row per operation: the storage thread batches them.
    let t = Instant::now();
    for i in 1..=ROWS {
        opened.store.send(Op::Save {
            rows: vec![row(i)],
            reply: None,
        });
    }
    flush(&opened)?;
    let single = ROWS as f64 / t.elapsed().as_secs_f64();
    close(opened);

    // Load latency, one at a time, as a game would wait for them.
    let (opened, rx) = open(location)?;
    let mut lat = Vec::new();
    for k in 0..2000u64 {
        let id = 1 + (k * 7919) % ROWS;
        let t = Instant::now();
        opened.store.send(Op::Load { id });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Answer::Loaded { result, .. }) if result.is_ok() => {
                lat.push(t.elapsed().as_secs_f64() * 1e6)
            }
            other => anyhow::bail!("unexpected answer {other:?}"),
        }
    }
    lat.sort_by(f64::total_cmp);

    // Many loads at once: the storage thread reads them together.
    const BULK: u64 = 10_000;
    let t = Instant::now();
    for k in 0..BULK {
        opened.store.send(Op::Load {
            id: 1 + (k * 7919) % ROWS,
        });
    }
    for _ in 0..BULK {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Answer::Loaded { result, .. }) if result.is_ok() => {}
            other => anyhow::bail!("unexpected answer {other:?}"),
        }
    }
    let bulk_loads = BULK as f64 / t.elapsed().as_secs_f64();
    close(opened);
    Ok(Run {
        batched,
        single,
        load_p50_us: lat[lat.len() / 2],
        load_p99_us: lat[lat.len() * 99 / 100],
        bulk_loads,
    })
}

/// Plain rusqlite, one transaction, the same rows and settings as Wyrm's
/// default.
fn raw_sqlite() -> anyhow::Result<f64> {
    let base = tempfile::tempdir()?;
    let mut conn = rusqlite::Connection::open(base.path().join("raw.db"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE entities (id INTEGER PRIMARY KEY, type TEXT NOT NULL, attrs BLOB NOT NULL, saved_at INTEGER NOT NULL);",
    )?;
    let t = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut stmt =
            tx.prepare("INSERT INTO entities (id, type, attrs, saved_at) VALUES (?1, ?2, ?3, 0)")?;
        for i in 1..=ROWS {
            let r = row(i);
            stmt.execute(rusqlite::params![r.id as i64, r.type_name, r.attrs])?;
        }
    }
    tx.commit()?;
    Ok(ROWS as f64 / t.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let bytes = attrs(1).len();
    println!(
        "storage: {ROWS} entities of {bytes} B attributes, median of {RUNS} runs per database"
    );
    let pg_parent = std::env::temp_dir().join("wyrm-bench-postgres");
    let mut results: Vec<(&str, Vec<Run>)> = Vec::new();
    let mut raw = Vec::new();
    for durable in [false, true] {
        let pg = LocalPostgres::temporary(&pg_parent, durable)
            .context("starting PostgreSQL (scripts/setup-cluster installs it)")?;
        let (mut lite, mut post) = (Vec::new(), Vec::new());
        for run in 0..RUNS {
            let dir = tempfile::tempdir()?;
            lite.push(measure(&Location::Sqlite {
                path: dir.path().join("bench.db"),
                durable,
            })?);
            let url = pg.database(&format!("bench{run}"))?;
            post.push(measure(&Location::Postgres { url, ca: None })?);
            if !durable {
                raw.push(raw_sqlite()?);
            }
        }
        let (l, p) = if durable {
            ("SQLite FULL (durable)", "PostgreSQL (durable)")
        } else {
            (
                "SQLite NORMAL (crash-safe)",
                "PostgreSQL fsync=off (crash-safe)",
            )
        };
        results.push((l, lite));
        results.push((p, post));
    }
    let r = median(raw);
    println!(
        "  {:<34} {:>12} {:>12} {:>10} {:>10} {:>12}",
        "", "batched /s", "1 per op /s", "load p50", "load p99", "bulk loads/s"
    );
    let mut medians = Vec::new();
    for (name, runs) in &results {
        let pick = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let b = pick(|r| r.batched);
        medians.push(b);
        println!(
            "  {name:<34} {b:>12.0} {:>12.0} {:>8.0}us {:>8.0}us {:>12.0}",
            pick(|r| r.single),
            pick(|r| r.load_p50_us),
            pick(|r| r.load_p99_us),
            pick(|r| r.bulk_loads),
        );
    }
    println!("  raw SQLite, one transaction        {r:>12.0}   (baseline)");
    let (lite, post) = (medians[0], medians[1]);
    println!(
        "  batched saves: SQLite {:.2}x raw SQLite; PostgreSQL {:.2}x SQLite crash-safe, {:.2}x durable   target >= 50,000/s: SQLite {}, PostgreSQL {}",
        lite / r,
        post / lite,
        medians[3] / medians[2],
        if lite >= 50_000.0 { "met" } else { "NOT met" },
        if post >= 50_000.0 { "met" } else { "NOT met" },
    );
    support::suite_row(
        "storage saves",
        &format!("{lite:.0} /s"),
        &format!(
            "{ROWS} entities of ~100 B, batched 1,000 per op, SQLite WAL; {:.2}x raw SQLite",
            lite / r
        ),
    );
    support::suite_row(
        "storage saves, PostgreSQL",
        &format!("{post:.0} /s"),
        &format!(
            "the same on PostgreSQL over loopback (fsync off); {:.2}x SQLite",
            post / lite
        ),
    );
    Ok(())
}
