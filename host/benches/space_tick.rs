//! Full space-tick time with many moving entities, through a running
//! server: the testbed's `Swarm` moves every `Mover` in it (AOI radius 100,
//! hysteresis 10) on each tick from one guest call, so a tick is the logic
//! (10k `set-position` imports), the AOI updates and client views, and the
//! position batches for the connected clients, each bound to a mover.
//!
//! Prints median, p99 and max tick time over the last ~3 s of ticks at
//! 20 Hz, for several entity and client counts (target: ≤ 10 ms with 10k
//! moving entities).
//!
//! Run: `cargo bench -p wyrm --bench space_tick`

use std::time::Duration;

use wyrm_client::{Client, Transport};

mod support;
use support::median;

const FIELD: f32 = 2000.0;
const SPEED: f32 = 100.0;

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Tick times in ms with `n` movers, `clients` of them played by clients.
async fn run(wasm: &std::path::Path, n: u32, clients: usize) -> anyhow::Result<Vec<f64>> {
    let dir = tempfile::tempdir()?;
    let (server, addr) = support::start_testbed_server(dir.path(), wasm).await?;
    let wait = Duration::from_secs(60);
    let mut owner = Client::connect(Transport::Tcp, &addr).await?;
    owner.wait_player(wait).await?;
    owner.call_player("make_swarm", (n, FIELD, SPEED)).await?;
    let (_, (swarm,)): (u64, (u64,)) = owner.expect_call_as("swarm", wait).await?;
    let mut players = Vec::new();
    for _ in 0..clients {
        let mut c = Client::connect(Transport::Tcp, &addr).await?;
        c.wait_player(wait).await?;
        c.call_player("join_swarm", (swarm,)).await?;
        players.push(c);
    }
    // Clients read what they are sent (views and positions) meanwhile.
    let readers: Vec<_> = players
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                while let Ok(Some(_)) = c.next_event_timeout(Duration::from_secs(10)).await {}
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await; // warm up
    let before = server.tick_times().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let times = server.tick_times();
    let fresh = times.len().saturating_sub(before).clamp(1, times.len());
    let ms: Vec<f64> = times[times.len() - fresh..]
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    for r in readers {
        r.abort();
    }
    server.shutdown().await;
    Ok(ms)
}

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = wyrm_toolchains::build_plugin(&root.join("plugins/testbed"), &Default::default())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "space tick, 20 Hz, movers at {SPEED} u/s on {FIELD}x{FIELD}, AOI radius 100 (+10), Rust guest"
    );
    println!(
        "{:>8} {:>8} {:>7} {:>11} {:>9} {:>9}",
        "movers", "clients", "ticks", "median ms", "p99 ms", "max ms"
    );
    for (n, clients) in [(1_000, 0), (10_000, 0), (10_000, 100)] {
        if support::in_suite() && (n, clients) != (10_000, 100) {
            continue;
        }
        let ms = rt.block_on(run(&wasm, n, clients))?;
        let max = ms.iter().copied().fold(0.0, f64::max);
        if (n, clients) == (10_000, 100) {
            support::suite_row(
                "space tick",
                &format!("{:.2} ms", median(ms.clone())),
                &format!(
                    "10k entities moving at 20 Hz, AOI r=100, 100 clients; median, p99 {:.2} ms",
                    percentile(ms.clone(), 0.99)
                ),
            );
        }
        println!(
            "{n:>8} {clients:>8} {:>7} {:>11.2} {:>9.2} {:>9.2}",
            ms.len(),
            median(ms.clone()),
            percentile(ms, 0.99),
            max
        );
    }
    Ok(())
}
