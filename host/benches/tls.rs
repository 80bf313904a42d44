//! What TLS costs a client, against plain TCP on the same server: the
//! handshake (connect until the own entity has arrived, one client after
//! another) and every frame after it (end-to-end RPCs, `Probe.echo` →
//! `on_echo`, with a few calls in flight per client).
//!
//! The server is the real `wyrm` binary in its own process, with a TCP and
//! a TLS TCP listener (its development certificate, trusted here through
//! its authority); the clients run in this one. Each run measures plain and
//! TLS in turn (the order alternating); medians over the runs.
//!
//! Run: `cargo bench -p wyrm --bench tls`

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use wyrm_client::{Client, ClientTls, Transport};

mod support;
use support::{cpu_time, median, ms, percentile};

const CONNECTS: usize = 200;
const CLIENTS: usize = 20;
const IN_FLIGHT: usize = 8;
const WARMUP: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(4);
const RUNS: usize = 3;

struct Server {
    child: std::process::Child,
    tcp: String,
    tls: String,
    ca: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, wasm: &Path) -> anyhow::Result<Server> {
    let cfg = dir.join("wyrm.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nname = \"bench\"\ndata_dir = \"data\"\n\n\
             [net]\ntcp = \"127.0.0.1:0\"\ntcp_tls = \"127.0.0.1:0\"\nclient_rate = 1000000\n\
             client_queue_bytes = 16777216\n{}\n\n[tls]\nself_signed = true\n\n\
             [game]\nboot_entity = \"Probe\"\n\n\
             [[plugin]]\nname = \"testbed\"\nsource = {:?}\n",
            support::BENCH_CONNECTIONS,
            wasm.display().to_string()
        ),
    )?;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wyrm"))
        .arg("serve")
        .arg(&cfg)
        .env("WYRM_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (mut tcp, mut tls) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(a) = line.strip_prefix("TCP clients: ") {
            tcp = Some(a.trim().to_owned());
        } else if let Some(a) = line.strip_prefix("TLS TCP clients: ") {
            tls = Some(a.trim().to_owned());
            break;
        }
    }
    let (Some(tcp), Some(tls)) = (tcp, tls) else {
        anyhow::bail!("the server exited before it listened (see its log above)");
    };
    let ca = dir.join("data/tls/dev-ca.pem");
    Ok(Server {
        child,
        tcp,
        tls,
        ca,
    })
}

async fn connect(addr: &str, tls: Option<&ClientTls>) -> anyhow::Result<Client> {
    let mut b = Client::builder(Transport::Tcp);
    if let Some(t) = tls {
        b = b.tls(t.clone());
    }
    let mut c = b.connect(addr).await?;
    c.wait_player(Duration::from_secs(10)).await?;
    Ok(c)
}

/// Connects `CONNECTS` clients one after another: the median and p99 time
/// to the own entity, and the server's CPU per connection.
async fn handshakes(
    pid: u32,
    addr: &str,
    tls: Option<&ClientTls>,
) -> anyhow::Result<(f64, f64, f64)> {
    let mut times = Vec::with_capacity(CONNECTS);
    let cpu0 = cpu_time(pid)?;
    for _ in 0..CONNECTS {
        let t = Instant::now();
        let c = connect(addr, tls).await?;
        times.push(t.elapsed());
        drop(c);
    }
    let cpu = cpu_time(pid)? - cpu0;
    Ok((
        ms(percentile(times.clone(), 0.5)),
        ms(percentile(times, 0.99)),
        ms(cpu) / CONNECTS as f64,
    ))
}

/// RPCs per second over `CLIENTS` clients, and the server's CPU per RPC
/// in microseconds.
async fn rpcs(pid: u32, addr: &str, tls: Option<&ClientTls>) -> anyhow::Result<(f64, f64)> {
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        clients.push(connect(addr, tls).await?);
    }
    let count_from = Instant::now() + WARMUP;
    let stop = count_from + WINDOW;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(support::echo_loop(c, IN_FLIGHT, count_from, stop)))
        .collect();
    tokio::time::sleep_until(count_from.into()).await;
    let cpu0 = cpu_time(pid)?;
    tokio::time::sleep_until(stop.into()).await;
    let cpu = cpu_time(pid)? - cpu0;
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let per_s = total as f64 / WINDOW.as_secs_f64();
    Ok((per_s, cpu.as_secs_f64() * 1e6 / total.max(1) as f64))
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = wyrm_toolchains::build_plugin(&root.join("plugins/testbed"), &Default::default())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "TLS against plain TCP: {CONNECTS} connections one after another (to the own entity); \
         {CLIENTS} clients x {IN_FLIGHT} echo RPCs in flight, {}s windows; {RUNS} runs",
        WINDOW.as_secs()
    );
    let mut rows: [Vec<[f64; 5]>; 2] = [Vec::new(), Vec::new()];
    for run in 0..RUNS {
        let dir = tempfile::tempdir()?;
        let server = start(dir.path(), &wasm)?;
        let trust = ClientTls::with_ca_pem(&std::fs::read(&server.ca)?, "localhost")?;
        let pid = server.child.id();
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let (addr, tls) = match which {
                0 => (&server.tcp, None),
                _ => (&server.tls, Some(&trust)),
            };
            let (p50, p99, cpu_ms) = rt.block_on(handshakes(pid, addr, tls))?;
            let (rate, cpu_us) = rt.block_on(rpcs(pid, addr, tls))?;
            println!(
                "run {} {:5}: connect p50 {p50:.2} ms p99 {p99:.2} ms, server CPU {cpu_ms:.3} ms/connection; \
                 {rate:.0} RPCs/s, server CPU {cpu_us:.1} us/RPC",
                run + 1,
                ["plain", "TLS"][which]
            );
            rows[which].push([p50, p99, cpu_ms, rate, cpu_us]);
        }
    }
    let col = |which: usize, i: usize| median(rows[which].iter().map(|r| r[i]).collect());
    let names = [
        "connect p50 ms",
        "connect p99 ms",
        "server CPU ms/connection",
        "RPCs/s",
        "server CPU us/RPC",
    ];
    println!("median          plain        TLS    TLS/plain");
    for (i, name) in names.iter().enumerate() {
        let (p, t) = (col(0, i), col(1, i));
        println!("{name:26} {p:10.3} {t:10.3} {:8.2}x", t / p);
    }
    support::suite_row(
        "TLS handshake",
        &format!("{:.2} ms", col(1, 0)),
        &format!(
            "TCP+TLS connect to own entity, p50 (plain {:.2} ms); RPCs {:.2}x the server CPU of plain",
            col(0, 0),
            col(1, 4) / col(0, 4)
        ),
    );
    Ok(())
}
