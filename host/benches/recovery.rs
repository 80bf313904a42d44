//! Recovery after a game's process is killed with SIGKILL, in a cluster.
//!
//! The node (`wyrm serve` with `[cluster]`, game 0) runs in this process;
//! game 1 is a real `wyrm game` process, over a real `nats-server`,
//! storage on a real PostgreSQL. A client whose probe is on game 1 makes
//! [`ENTITIES`] Keepers there — saved entities with a count in their
//! private state — and once every one is saved and checkpointed, game 1
//! is killed. Measured from the kill:
//!
//! - **detected**: until the node takes game 1 for gone (its beats
//!   stopped for `[cluster] lost_after_ms`) and has placed its entities
//!   on game 0;
//! - **served**: until every Keeper has answered a call on game 0 with the
//!   count its checkpoint held. The calls go out the moment the node has
//!   placed them and wait in its dispatcher while the Keepers load, so
//!   served − detected is the reload itself: reading 10,000 rows and
//!   states from PostgreSQL, importing each state into the plugin, and
//!   answering.
//!
//! Each run is made with the default `lost_after_ms` (1,500) and with
//! 3,000, alternating: detection is a setting, the reload is Wyrm's work.
//!
//! Run: `scripts/setup-cluster` once, then
//! `cargo bench -p wyrm --bench recovery`.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

mod support;
use support::{median, ms};

/// Saved entities with private state on the game that is killed.
const ENTITIES: u64 = 10_000;
/// Keepers made per call.
const CHUNK: u64 = 1_000;
/// The count each Keeper's private state holds.
const COUNT: u64 = 7;
const WAIT: Duration = Duration::from_secs(60);

fn runs() -> usize {
    if support::in_suite() {
        1
    } else {
        3
    }
}

/// What one run measured, from the kill.
struct Run {
    detected: Duration,
    served: Duration,
}

async fn measure(
    dir: &Path,
    wasm: &Path,
    nats: &wyrm_fabric::local::LocalNats,
    url: &str,
    name: &str,
    lost_after_ms: u64,
) -> anyhow::Result<Run> {
    let extra = format!(
        "workers = 1\ncheckpoint_interval_ms = 500\n\n[cluster]\nnats = {:?}\nname = {name:?}\ngames = 1\nlost_after_ms = {lost_after_ms}\n\n[storage]\nurl = {url:?}",
        nats.url(),
    );
    let (server, addr) = support::start_testbed_server_with(dir, wasm, &extra).await?;
    let mut game = support::start_game(dir, 1).await?;
    let (mut on0, mut on1) = support::spread(&server, &addr).await?;
    let mut ranges = Vec::new();
    for _ in 0..ENTITIES / CHUNK {
        on1.call_player("keepers", (CHUNK, COUNT)).await?;
        let (_, range) = on1.expect_call_as::<(u64, u64)>("on_keepers", WAIT).await?;
        ranges.push(range);
    }
    let (first, last) = (ranges[0].0, ranges[ranges.len() - 1].1);
    // A checkpoint that holds the last Keeper made holds all of them (a
    // checkpoint starts from every entity there is), and one save wrote
    // their rows.
    wait_recoverable(url, last).await?;

    let killed = Instant::now();
    game.kill()?;
    while server.game_of(first) != Some(0) {
        anyhow::ensure!(
            killed.elapsed() < WAIT,
            "the node did not take game 1 for gone"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let detected = killed.elapsed();
    for &(a, b) in &ranges {
        on0.call_player("keepers_ask", (a, b)).await?;
    }
    let mut answered = HashSet::new();
    while (answered.len() as u64) < ENTITIES {
        let (_, (id, count)) = on0.expect_call_as::<(u64, u64)>("on_keeper", WAIT).await?;
        anyhow::ensure!(
            count == COUNT,
            "Keeper {id} came back with count {count}, not its checkpoint's {COUNT}"
        );
        answered.insert(id);
    }
    let served = killed.elapsed();
    let _ = game.wait();
    server.shutdown().await;
    Ok(Run { detected, served })
}

/// Waits until storage holds Keeper `id`'s row and a checkpointed state
/// of it, as a recovery reads them.
async fn wait_recoverable(url: &str, id: u64) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let opened = wyrm_storage::open::<()>(
        &wyrm_storage::Location::Postgres {
            url: url.into(),
            ca: None,
        },
        &[],
        move |a| {
            if let wyrm_storage::Answer::Loaded { result, .. } = a {
                let _ = tx.send(result);
            }
        },
    )?;
    let started = Instant::now();
    loop {
        opened.store.send(wyrm_storage::Op::Recover { id });
        let loaded = rx.recv_timeout(WAIT)?;
        if loaded.is_ok_and(|l| l.state.is_some()) {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < WAIT,
            "Keeper {id} was not saved and checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn main() -> anyhow::Result<()> {
    let wasm = support::cluster_testbed()?;
    let dir = tempfile::tempdir()?;
    let nats = wyrm_fabric::local::LocalNats::start()?;
    let pg = wyrm::local::LocalPostgres::temporary(&dir.path().join("pg"), false)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let settings = [1500u64, 3000];
    let mut done: Vec<Vec<Run>> = settings.iter().map(|_| Vec::new()).collect();
    for n in 0..runs() {
        for (i, &lost_after_ms) in settings.iter().enumerate() {
            let name = format!("recovery{n}x{lost_after_ms}");
            let run_dir = dir.path().join(&name);
            std::fs::create_dir_all(&run_dir)?;
            let url = pg.database(&name)?;
            let run = rt.block_on(measure(&run_dir, &wasm, &nats, &url, &name, lost_after_ms))?;
            println!(
                "run {n}, lost_after_ms {lost_after_ms}: detected {:.0} ms, every one served {:.0} ms after the kill ({:.0} ms after detection)",
                ms(run.detected),
                ms(run.served),
                ms(run.served - run.detected)
            );
            done[i].push(run);
        }
    }
    let mut rows = Vec::new();
    for (runs_done, lost_after_ms) in done.iter().zip(settings) {
        let med =
            |f: &dyn Fn(&Run) -> Duration| median(runs_done.iter().map(|r| ms(f(r))).collect());
        let (detected, served, reload) = (
            med(&|r| r.detected),
            med(&|r| r.served),
            med(&|r| r.served - r.detected),
        );
        println!(
            "SIGKILL of a game holding {ENTITIES} saved entities with private state, lost_after_ms {lost_after_ms}, \
             medians of {} runs: detected {detected:.0} ms, all served again on the game left {served:.0} ms \
             after the kill (target 2,000 ms), {reload:.0} ms of it after detection",
            runs()
        );
        rows.push((lost_after_ms, served, reload));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
    let [(_, default_served, reload), (long, long_served, _)] = rows[..] else {
        anyhow::bail!("two settings measured");
    };
    support::suite_row(
        "recovery after SIGKILL of a game",
        &format!(
            "{default_served:.0} ms after the kill, {reload:.0} ms of it after detection ({long_served:.0} ms with lost_after_ms {long})"
        ),
        "10k saved entities with private state served again from PostgreSQL and their checkpoint",
    );
    Ok(())
}
