//! What a game in another process costs against one in the same process.
//!
//! The same testbed and the same measurements as `workers` 2 and 3, on two
//! deployments, each run `runs()` times in alternation:
//!
//! - **workers**: `wyrm serve` with `[game] workers = 2`, in this process;
//! - **cluster**: the node (`wyrm serve` with `[cluster]`, one game of its
//!   own) in this process and game 1 as a real `wyrm game` process, over a
//!   real `nats-server`, storage on a real PostgreSQL.
//!
//! 1. Call latency: a client asks its probe (game 0) to call a target,
//!    which calls it back, which tells the client — two entity-to-entity
//!    calls per round trip, to a probe on the same game and on the other.
//! 2. Migration pause of one entity between spaces on the two games, over
//!    1,000 migrations with calls streaming to it. The node records the
//!    pauses of arrivals on its own game: all of them with workers, half
//!    (those from game 1) in the cluster, each from the hold in the node's
//!    dispatcher to the arrival, across both processes.
//!
//! Run: `scripts/setup-cluster` once, then
//! `cargo bench -p wyrm --bench cluster`.

use std::path::Path;
use std::time::Duration;

mod support;
use support::{median, migrations, ms, percentile, pings, spread, MIGRATIONS};

fn runs() -> usize {
    if support::in_suite() {
        1
    } else {
        3
    }
}

/// What one run of one deployment measured.
struct Run {
    same: Vec<Duration>,
    other: Vec<Duration>,
    pauses: Vec<Duration>,
}

/// The cluster's parts: NATS, PostgreSQL and game 1's process.
struct ClusterParts {
    nats: wyrm_fabric::local::LocalNats,
    pg: wyrm::local::LocalPostgres,
}

async fn measure(
    dir: &Path,
    wasm: &Path,
    cluster: Option<&ClusterParts>,
    n: usize,
) -> anyhow::Result<Run> {
    let extra = match cluster {
        None => "workers = 2".to_owned(),
        Some(parts) => format!(
            "workers = 1\n\n[cluster]\nnats = {:?}\nname = \"bench{n}\"\ngames = 1\n\n[storage]\nurl = {:?}",
            parts.nats.url(),
            parts.pg.database(&format!("bench{n}"))?,
        ),
    };
    let (server, addr) = support::start_testbed_server_with(dir, wasm, &extra).await?;
    let game = match cluster {
        None => None,
        Some(_) => Some(support::start_game(dir, 1).await?),
    };
    let (mut a, mut b) = spread(&server, &addr).await?;
    let own = a.wait_player(Duration::from_secs(5)).await?;
    let other = b.wait_player(Duration::from_secs(5)).await?;
    let same = pings(&mut a, own).await?;
    let cross = pings(&mut a, other).await?;
    let recorded = match cluster {
        None => MIGRATIONS as usize,
        Some(_) => MIGRATIONS as usize / 2,
    };
    let pauses = migrations(&server, &mut a, &mut b, recorded).await?;
    server.shutdown().await;
    if let Some(mut child) = game {
        // The node's shutdown ends it; it must not linger.
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    }
    Ok(Run {
        same,
        other: cross,
        pauses,
    })
}

fn print(name: &str, runs: &[Run]) -> (f64, f64, f64, f64) {
    let p = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let same50 = p(&|r| ms(percentile(r.same.clone(), 0.5)));
    let other50 = p(&|r| ms(percentile(r.other.clone(), 0.5)));
    let other99 = p(&|r| ms(percentile(r.other.clone(), 0.99)));
    let pause99 = p(&|r| ms(percentile(r.pauses.clone(), 0.99)));
    println!(
        "{name:>8}: same game p50 {same50:.3} ms p99 {:.3} ms | other game p50 {other50:.3} ms p99 {other99:.3} ms | migration pause p50 {:.3} ms p99 {pause99:.3} ms max {:.3} ms",
        p(&|r| ms(percentile(r.same.clone(), 0.99))),
        p(&|r| ms(percentile(r.pauses.clone(), 0.5))),
        p(&|r| ms(percentile(r.pauses.clone(), 1.0))),
    );
    (same50, other50, other99, pause99)
}

fn main() -> anyhow::Result<()> {
    let wasm = support::cluster_testbed()?;
    let dir = tempfile::tempdir()?;
    let parts = ClusterParts {
        nats: wyrm_fabric::local::LocalNats::start()?,
        pg: wyrm::local::LocalPostgres::temporary(&dir.path().join("pg"), false)?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (mut workers, mut cluster) = (Vec::new(), Vec::new());
    for n in 0..runs() {
        for in_cluster in [false, true] {
            let run_dir = dir.path().join(format!("run{n}-{in_cluster}"));
            std::fs::create_dir_all(&run_dir)?;
            let parts = in_cluster.then_some(&parts);
            let run = rt.block_on(measure(&run_dir, &wasm, parts, n))?;
            if in_cluster {
                cluster.push(run);
            } else {
                workers.push(run);
            }
        }
    }
    println!(
        "entity calls, client round trip with two calls between entities ({} each); medians of {} runs:",
        support::PINGS,
        runs()
    );
    let (_, w50, w99, wpause) = print("workers", &workers);
    let (_, c50, c99, cpause) = print("cluster", &cluster);
    println!(
        "other game: p50 {:.2}x, p99 {:.2}x in the cluster; one call to a game in another process costs about {:.3} ms more at the median than to one in the same process",
        c50 / w50,
        c99 / w99,
        (c50 - w50) / 2.0
    );
    println!("migration pause p99: {cpause:.3} ms across processes (target 5 ms), {wpause:.3} ms between workers");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
    support::suite_row(
        "cross-process round trip p50",
        &format!("{c50:.3} ms ({:.2}x workers)", c50 / w50),
        "client, probe, entity on a game in another process and back",
    );
    support::suite_row(
        "cross-process migration pause p99",
        &format!("{cpause:.3} ms"),
        "an entity between spaces on games in 2 processes",
    );
    Ok(())
}
