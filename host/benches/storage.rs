//! Storage throughput and latency, through Wyrm's storage thread exactly as
//! the game uses it:
//! - entity saves per second, batched the way the save interval batches them
//!   (one `Save` of many rows) and one row at a time (as `save-entity` does,
//!   which the storage thread then batches into transactions itself);
//! - load latency: `Load` of a saved entity until the game would have it.
//!
//! Baseline measured in the same run: the same rows inserted with plain
//! rusqlite in one transaction, so the ratio shows what Wyrm's path costs.
//!
//! Run: `cargo bench -p wyrm --bench storage`

use std::time::{Duration, Instant};

use std::sync::mpsc;

use wyrm_storage::{self as storage, Answer, EntityRow, Op};

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
fn open(dir: &std::path::Path) -> anyhow::Result<(Opened, mpsc::Receiver<Answer<()>>)> {
    let (tx, rx) = mpsc::channel();
    let opened = storage::open(&dir.join("bench.db"), false, &[], move |a| {
        let _ = tx.send(a);
    })?;
    Ok((opened, rx))
}

fn main() -> anyhow::Result<()> {
    let bytes = attrs(1).len();
    println!("storage, SQLite WAL synchronous=NORMAL, {ROWS} entities of {bytes} B attributes, median of {RUNS} runs");

    let mut batched = Vec::new();
    let mut single = Vec::new();
    let mut raw = Vec::new();
    let mut loads = Vec::new();
    for _ in 0..RUNS {
        // Batched: rows in groups of 1,000, as a save tick sends them.
        let dir = tempfile::tempdir()?;
        let (opened, _rx) = open(dir.path())?;
        let t = Instant::now();
        for chunk in (1..=ROWS).collect::<Vec<_>>().chunks(1000) {
            opened.store.send(Op::Save {
                rows: chunk.iter().map(|&i| row(i)).collect(),
                reply: None,
            });
        }
        anyhow::ensure!(
            opened.store.flush(Duration::from_secs(120)),
            "flush timed out"
        );
        batched.push(ROWS as f64 / t.elapsed().as_secs_f64());

        // One row per operation: the storage thread batches them.
        let t = Instant::now();
        for i in 1..=ROWS {
            opened.store.send(Op::Save {
                rows: vec![row(i)],
                reply: None,
            });
        }
        anyhow::ensure!(
            opened.store.flush(Duration::from_secs(120)),
            "flush timed out"
        );
        single.push(ROWS as f64 / t.elapsed().as_secs_f64());

        // Load latency, one at a time, as a game would wait for them.
        let (opened2, rx) = {
            // The storage thread ends, releasing the database, once its
            // last handle is gone.
            let storage::Opened { store, thread, .. } = opened;
            drop(store);
            let _ = thread.join();
            open(dir.path())?
        };
        let mut lat = Vec::new();
        for k in 0..2000u64 {
            let id = 1 + (k * 7919) % ROWS;
            let t = Instant::now();
            opened2.store.send(Op::Load { id });
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Answer::Loaded { result, .. }) if result.is_ok() => {
                    lat.push(t.elapsed().as_secs_f64() * 1e6)
                }
                other => anyhow::bail!("unexpected answer {other:?}"),
            }
        }
        lat.sort_by(f64::total_cmp);
        loads.push((lat[lat.len() / 2], lat[lat.len() * 99 / 100]));

        // Baseline: plain rusqlite, one transaction, same rows and settings.
        let base = tempfile::tempdir()?;
        let mut conn = rusqlite::Connection::open(base.path().join("raw.db"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE entities (id INTEGER PRIMARY KEY, type TEXT NOT NULL, attrs BLOB NOT NULL, saved_at INTEGER NOT NULL);",
        )?;
        let t = Instant::now();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO entities (id, type, attrs, saved_at) VALUES (?1, ?2, ?3, 0)",
            )?;
            for i in 1..=ROWS {
                let r = row(i);
                stmt.execute(rusqlite::params![r.id as i64, r.type_name, r.attrs])?;
            }
        }
        tx.commit()?;
        raw.push(ROWS as f64 / t.elapsed().as_secs_f64());
    }
    let (b, s, r) = (median(batched), median(single), median(raw));
    let p50 = median(loads.iter().map(|l| l.0).collect());
    let p99 = median(loads.iter().map(|l| l.1).collect());
    println!("  saves, batched 1,000 per op   {b:>10.0} /s   ({:.2}x raw SQLite)   target >= 50,000/s: {}", b / r, if b >= 50_000.0 { "met" } else { "NOT met" });
    println!(
        "  saves, one row per op         {s:>10.0} /s   ({:.2}x raw SQLite)",
        s / r
    );
    println!("  raw SQLite, one transaction   {r:>10.0} /s   (baseline)");
    println!("  load latency (request to answer): p50 {p50:.0} us, p99 {p99:.0} us");
    support::suite_row(
        "storage saves",
        &format!("{b:.0} /s"),
        &format!(
            "{ROWS} entities of ~100 B, batched 1,000 per op, SQLite WAL; {:.2}x raw SQLite",
            b / r
        ),
    );
    Ok(())
}
