//! End-to-end client RPCs per second: clients over TCP call a method on
//! their own entity (`Probe.echo` in the testbed plugin, a Rust guest),
//! which answers each call with a server call back to the client
//! (`on_echo`). Every RPC crosses the whole path twice: socket, gate,
//! dispatcher, game, plugin, and back.
//!
//! The server is the real `wyrm` binary in its own process; the clients run
//! in this one, each keeping a few calls in flight. Both share this
//! machine's cores, so the CPU each side used is printed with the rate.
//!
//! Run: `cargo bench -p wyrm --bench rpc_throughput`

use std::time::{Duration, Instant};

use wyrm_client::{Client, Transport};

mod support;
use support::{cpu_time, median, ServerProcess};

const CLIENTS: usize = 50;
const IN_FLIGHT: usize = 8;
const WARMUP: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(5);
const RUNS: usize = 3;

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = wyrm_toolchains::build_plugin(&root.join("plugins/testbed"), &Default::default())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "end-to-end client RPCs: {CLIENTS} TCP clients, {IN_FLIGHT} calls in flight each, \
         Probe.echo -> on_echo (Rust guest), {}s windows",
        WINDOW.as_secs()
    );
    let mut rates = Vec::new();
    for run in 0..RUNS {
        let dir = tempfile::tempdir()?;
        let server = ServerProcess::start_testbed(
            dir.path(),
            &wasm,
            "client_rate = 1000000\nclient_queue_bytes = 16777216",
        )?;
        let addr = server.tcp()?;
        let (rate, server_cpu, own_cpu) = rt.block_on(async {
            let mut clients = Vec::with_capacity(CLIENTS);
            for _ in 0..CLIENTS {
                let mut c = Client::connect(Transport::Tcp, &addr).await?;
                c.wait_player(Duration::from_secs(10)).await?;
                clients.push(c);
            }
            let count_from = Instant::now() + WARMUP;
            let stop = count_from + WINDOW;
            let tasks: Vec<_> = clients
                .into_iter()
                .map(|c| tokio::spawn(support::echo_loop(c, IN_FLIGHT, count_from, stop)))
                .collect();
            tokio::time::sleep_until(count_from.into()).await;
            let (s0, o0) = (cpu_time(server.pid())?, cpu_time(std::process::id())?);
            tokio::time::sleep_until(stop.into()).await;
            let (s1, o1) = (cpu_time(server.pid())?, cpu_time(std::process::id())?);
            let mut total = 0;
            for t in tasks {
                total += t.await??;
            }
            let secs = WINDOW.as_secs_f64();
            anyhow::Ok((
                total as f64 / secs,
                (s1 - s0).as_secs_f64() / secs * 100.0,
                (o1 - o0).as_secs_f64() / secs * 100.0,
            ))
        })?;
        println!(
            "run {}: {rate:>9.0} RPCs/s   server CPU {server_cpu:>4.0}% of a core, clients {own_cpu:>4.0}%",
            run + 1
        );
        rates.push(rate);
    }
    let med = median(rates);
    println!("median: {med:.0} RPCs/s");
    support::suite_row(
        "client RPCs",
        &format!("{med:.0} /s"),
        &format!("{CLIENTS} TCP clients x {IN_FLIGHT} in flight, call + reply, clients on the same 2 cores"),
    );
    Ok(())
}
