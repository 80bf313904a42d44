//! Game workers: what several games in one process buy and cost.
//!
//! 1. Throughput of CPU-heavy entity calls with 1 and with 2 workers: TCP
//!    clients each keep calls in flight to their own entity's `burn`, a
//!    method doing about 50 µs of arithmetic (calibrated here), on the real
//!    `wyrm` binary in its own process. Runs alternate between the two
//!    configurations; the ratio of the medians is the headline.
//! 2. Call latency from an entity to one on the same game and to one on the
//!    other: a client asks its probe to call a target, which calls the
//!    probe back, which tells the client (two entity-to-entity calls per
//!    round trip).
//! 3. The pause of a migration (messages held, from the hold to the
//!    arrival), over 1,000 migrations of an entity between two spaces on
//!    different games while calls stream to it.
//!
//! Run: `cargo bench -p wyrm --bench workers`

use std::time::{Duration, Instant};

use wyrm_client::{Client, Event, Transport};

mod support;
use support::{cpu_time, median, migrations, ms, percentile, pings, spread, ServerProcess, PINGS};

const CLIENTS: usize = 64;
const IN_FLIGHT: usize = 4;
const WARMUP: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(5);
/// Pairs of runs (1 worker, then 2); one in the suite.
fn runs() -> usize {
    if support::in_suite() {
        1
    } else {
        3
    }
}
/// What one call of the heavy method should cost.
const CALL_WORK: Duration = Duration::from_micros(50);

/// Rounds of `Probe.burn` that take about `CALL_WORK`, measured on the
/// plugin alone.
fn calibrate() -> anyhow::Result<u64> {
    let (_rt, code, _cache) = support::testbed(Duration::from_secs(10), 64 << 20)?;
    let mut instance = code.instantiate()?;
    let mut world = Some(Box::new(support::EmptyWorld));
    let rounds = 100_000u64;
    let mut args = Vec::new();
    rmp::encode::write_array_len(&mut args, 1)?;
    rmp::encode::write_uint(&mut args, rounds)?;
    let caller = wyrm_runtime::Caller {
        kind: wyrm_runtime::CallerKind::OwnClient,
        entity: None,
    };
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let _ = instance.call(&mut world, entity(), "burn", &args, caller);
        times.push(t.elapsed().as_secs_f64());
    }
    let per_round = median(times) / rounds as f64;
    Ok((CALL_WORK.as_secs_f64() / per_round).round() as u64)
}

fn entity() -> wyrm_runtime::EntityRef {
    wyrm_runtime::EntityRef { id: 1, kind: 0 }
}

/// Keeps `IN_FLIGHT` heavy calls outstanding until `stop`; returns the
/// answers received after `count_from`.
async fn burner(
    mut c: Client,
    rounds: u64,
    count_from: Instant,
    stop: Instant,
) -> anyhow::Result<u64> {
    for _ in 0..IN_FLIGHT {
        c.call_player("burn", (rounds,)).await?;
    }
    let mut answered = 0;
    while Instant::now() < stop {
        match c.next_event_timeout(Duration::from_secs(5)).await? {
            Some(Event::Call { method, .. }) if method == "on_burn" => {
                if Instant::now() >= count_from {
                    answered += 1;
                }
                c.call_player("burn", (rounds,)).await?;
            }
            Some(Event::Error { message, .. }) => anyhow::bail!("call failed: {message}"),
            Some(_) => {}
            None => anyhow::bail!("no answer for 5 s"),
        }
    }
    Ok(answered)
}

/// One throughput run with `workers` games: calls per second, the server's
/// CPU and the clients' (percent of a core).
fn throughput(
    rt: &tokio::runtime::Runtime,
    wasm: &std::path::Path,
    workers: usize,
    rounds: u64,
) -> anyhow::Result<(f64, f64, f64)> {
    let dir = tempfile::tempdir()?;
    let server = ServerProcess::start_testbed_with(
        dir.path(),
        wasm,
        "client_rate = 1000000\nclient_queue_bytes = 16777216",
        &format!("workers = {workers}"),
    )?;
    let addr = server.tcp()?;
    rt.block_on(async {
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
            .map(|c| tokio::spawn(burner(c, rounds, count_from, stop)))
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
    })
}

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = wyrm_toolchains::build_plugin(&root.join("plugins/testbed"), &Default::default())?;
    let rounds = calibrate()?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "1. CPU-heavy calls: {CLIENTS} TCP clients x {IN_FLIGHT} in flight, Probe.burn({rounds}) \
         (~{} us each), {}s windows, clients on one thread beside the server",
        CALL_WORK.as_micros(),
        WINDOW.as_secs()
    );
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for run in 0..runs() {
        for workers in [1, 2] {
            let (rate, server_cpu, own_cpu) = throughput(&rt, &wasm, workers, rounds)?;
            println!(
                "run {} workers {workers}: {rate:>8.0} calls/s   server CPU {server_cpu:>4.0}%, clients {own_cpu:>4.0}%",
                run + 1
            );
            if workers == 1 {
                one.push(rate)
            } else {
                two.push(rate)
            }
        }
    }
    let (m1, m2) = (median(one), median(two));
    println!(
        "median: 1 worker {m1:.0} calls/s, 2 workers {m2:.0} calls/s, ratio {:.2}",
        m2 / m1
    );

    let dir = tempfile::tempdir()?;
    let latency = rt.block_on(async {
        let (server, addr) =
            support::start_testbed_server_with(dir.path(), &wasm, "workers = 2").await?;
        let (mut a, mut b) = spread(&server, &addr).await?;
        let own = a.wait_player(Duration::from_secs(5)).await?;
        let other = b.wait_player(Duration::from_secs(5)).await?;
        let same = pings(&mut a, own).await?;
        let cross = pings(&mut a, other).await?;
        let pauses = migrations(&server, &mut a, &mut b, support::MIGRATIONS as usize).await?;
        server.shutdown().await;
        anyhow::Ok((same, cross, pauses))
    })?;
    let (same, cross, pauses) = latency;
    println!("2. entity calls, client round trip with two calls between entities ({PINGS} each):");
    println!(
        "   same game:  p50 {:.3} ms  p99 {:.3} ms",
        ms(percentile(same.clone(), 0.5)),
        ms(percentile(same.clone(), 0.99))
    );
    println!(
        "   other game: p50 {:.3} ms  p99 {:.3} ms",
        ms(percentile(cross.clone(), 0.5)),
        ms(percentile(cross.clone(), 0.99))
    );
    println!(
        "   one call to the other game costs about {:.3} ms more at the median",
        (ms(percentile(cross, 0.5)) - ms(percentile(same, 0.5))) / 2.0
    );
    println!(
        "3. migration pause over {} migrations: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        pauses.len(),
        ms(percentile(pauses.clone(), 0.5)),
        ms(percentile(pauses.clone(), 0.99)),
        ms(percentile(pauses.clone(), 1.0))
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
    support::suite_row(
        "2 workers / 1, heavy calls",
        &format!("{:.2}x", m2 / m1),
        &format!("{CLIENTS} TCP clients, ~50 us calls, clients on the same 2 cores"),
    );
    support::suite_row(
        "migration pause p99",
        &format!("{:.3} ms", ms(percentile(pauses, 0.99))),
        "an entity between spaces on 2 games, 10 calls between moves",
    );
    Ok(())
}
