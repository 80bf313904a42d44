//! Server resident memory per idle WebSocket connection.
//!
//! Starts the real `wyrm` binary (testbed plugin, one `Probe` entity bound to
//! each client), measures its resident set before and after opening N
//! WebSocket connections from this process, and prints the difference per
//! connection. Each connection is a whole Wyrm client: socket, gate state,
//! queues and its boot entity.
//!
//! Run: `cargo bench -p wyrm --bench idle_connections` (N defaults to
//! 10,000; set WYRM_BENCH_CONNS to change it).

use std::path::Path;
use std::time::{Duration, Instant};

use wyrm_client::{Client, Transport};

mod support;
use support::{rss_kib, ServerProcess};

const RUNS: usize = 3;

async fn open(addr: &str, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(n);
    let mut started = 0;
    while started < n {
        let batch = (n - started).min(250);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let addr = addr.to_string();
            set.spawn(async move {
                let mut c = Client::connect(Transport::WebSocket, &addr).await?;
                c.wait_player(Duration::from_secs(30)).await?;
                anyhow::Ok(c)
            });
        }
        while let Some(r) = set.join_next().await {
            clients.push(r??);
        }
        started += batch;
    }
    Ok(clients)
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("WYRM_BENCH_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = wyrm_toolchains::build_plugin(&root.join("plugins/testbed"), &Default::default())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut per_conn = Vec::new();
    let runs = if support::in_suite() { 1 } else { RUNS };
    for run in 0..runs {
        let dir = tempfile::tempdir()?;
        let server = ServerProcess::start_testbed(dir.path(), &wasm, "client_rate = 200\n# idle clients that never answer a ping\nidle_timeout_ms = 86400000")?;
        let (pid, addr) = (server.pid(), server.websocket()?);
        // Let the server finish starting and one client warm every path.
        rt.block_on(open(&addr, 1))?;
        std::thread::sleep(Duration::from_millis(500));
        let before = rss_kib(pid)?;
        let t = Instant::now();
        let clients = rt.block_on(open(&addr, n))?;
        let opened = t.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let after = rss_kib(pid)?;
        let kib = (after.saturating_sub(before)) as f64 / n as f64;
        println!(
            "run {}: {n} idle WebSocket connections opened in {:.1}s; server RSS {before} KiB -> {after} KiB: {kib:.2} KiB per connection",
            run + 1,
            opened.as_secs_f64()
        );
        per_conn.push(kib);
        drop(clients);
        drop(server);
    }
    per_conn.sort_by(f64::total_cmp);
    let med = per_conn[per_conn.len() / 2];
    println!("median: {med:.2} KiB server memory per idle WebSocket connection (target <= 5 KiB; Colyseus adds 9-15 KiB per client on this machine)");
    support::suite_row(
        "idle connections: server memory",
        &format!("{med:.2} KiB/conn"),
        &format!("{n} idle WebSocket clients held; median of {runs} runs"),
    );
    Ok(())
}
