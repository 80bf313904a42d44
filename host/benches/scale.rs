//! Scale: the most players one node serves with every player's move seen
//! back within 100 ms at p99 and no error, on two workloads.
//!
//! - **arena**: `examples/arena`, `wyrm bots --scenario arena`. A
//!   2000 × 2000 field with AOI 450, players spread over it as they join,
//!   each moving 8 times a second and shooting twice (every shot shown to
//!   everyone who sees the shooter), monsters chasing them: a crowded
//!   field, where each player sees hundreds of others.
//! - **world**: `plugins/openworld`, `wyrm bots --scenario world`. A
//!   10,000 × 10,000 land with AOI 100, players walking 5 steps a second
//!   and showing one action a second to everyone around: closer to an MMO.
//!
//! Each trial is a fresh `wyrm serve` process and N bots in this process
//! on one thread (one core, leaving the other to the server), over TCP;
//! after a warm-up, a measuring window gives the move latency (move sent →
//! own new position seen), errors, the server's CPU (user and kernel
//! apart), its memory per client (RSS over its RSS with no client), and
//! the frames and bytes each client is sent per second. The search goes up
//! in steps until a trial fails, then halves the gap.
//!
//! Run: `cargo bench -p wyrm --bench scale` (both), `-- arena` or `-- world`
//! (one), `-- arena --at 1500` (one trial). `WYRM_SCALE_SECONDS` sets the
//! measuring window (default 10).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wyrm_bots::{Config, CpuUsage, Scenario};
use wyrm_client::Transport;

mod support;
use support::{rss_kib, ServerProcess};

/// Move latency a trial must keep at p99.
const P99_LIMIT_MS: f64 = 100.0;
const WARMUP: Duration = Duration::from_secs(5);

struct Workload {
    name: &'static str,
    plugin: &'static str,
    boot: &'static str,
    service: &'static str,
    scenario: Scenario,
    first: usize,
    step: usize,
    target: usize,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        name: "arena",
        plugin: "examples/arena/plugin",
        boot: "Account",
        service: "Arena",
        scenario: Scenario::Arena,
        first: 500,
        step: 250,
        target: 1500,
    },
    Workload {
        name: "world",
        plugin: "plugins/openworld",
        boot: "Walker",
        service: "Realm",
        scenario: Scenario::World,
        first: 2000,
        step: 1000,
        target: 5000,
    },
];

/// What one trial measured (over the window after the warm-up).
struct Trial {
    bots: usize,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    server_user: f64,
    server_sys: f64,
    bots_cpu: f64,
    rss_per_client_kib: f64,
    frames_per_client: f64,
    bytes_per_client: f64,
    load: String,
}

impl Trial {
    fn passed(&self) -> bool {
        self.errors == 0 && self.p99_ms <= P99_LIMIT_MS
    }

    fn row(&self) -> String {
        format!(
            "{:>6} {:>7.1} {:>7.1} {:>6} {:>6.0}% {:>6.0}% {:>6.0}% {:>9.1} {:>8.1} {:>9.0}  {:<4} {}",
            self.bots,
            self.p50_ms,
            self.p99_ms,
            self.errors,
            self.server_user,
            self.server_sys,
            self.bots_cpu,
            self.rss_per_client_kib,
            self.frames_per_client,
            self.bytes_per_client,
            if self.passed() { "ok" } else { "FAIL" },
            self.load,
        )
    }
}

const HEADER: &str = "  bots  p50 ms  p99 ms errors  srv usr srv sys   bots  KiB/client frames/s   bytes/s  pass load";

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let at = args
        .iter()
        .position(|a| a == "--at")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse::<usize>())
        .transpose()?;
    let chosen: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| {
            !args.iter().any(|a| a == "arena" || a == "world") || args.iter().any(|a| a == w.name)
        })
        .collect();
    let seconds = std::env::var("WYRM_SCALE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let window = Duration::from_secs(seconds);
    for w in chosen {
        let wasm = wyrm_toolchains::build_plugin(&root.join(w.plugin), &Default::default())?;
        println!(
            "\n{}: bots over TCP on one core, {}; warm-up {} s, window {} s; pass = p99 <= {P99_LIMIT_MS} ms and no error",
            w.name,
            describe(w.scenario),
            WARMUP.as_secs(),
            window.as_secs()
        );
        println!("{HEADER}");
        let run = |n: usize| -> anyhow::Result<Trial> {
            let t = trial(w, &wasm, n, window)?;
            println!("{}", t.row());
            Ok(t)
        };
        if support::in_suite() || at.is_some() {
            let n = at.unwrap_or(w.target);
            let t = run(n)?;
            if support::in_suite() {
                support::suite_row(
                    &format!("{} players, one node", w.name),
                    &format!(
                        "{n}: p99 {:.1} ms, {} errors ({})",
                        t.p99_ms,
                        t.errors,
                        if t.passed() { "pass" } else { "fail" }
                    ),
                    &format!(
                        "{}; server {:.0}% user + {:.0}% kernel, {:.1} KiB/client, {:.0} frames and {:.0} B/s per client",
                        describe(w.scenario),
                        t.server_user,
                        t.server_sys,
                        t.rss_per_client_kib,
                        t.frames_per_client,
                        t.bytes_per_client
                    ),
                );
            }
            continue;
        }
        // Up in steps until a trial fails, then halve the gap.
        let mut good = None::<usize>;
        let mut bad = w.first;
        while run(bad)?.passed() {
            good = Some(bad);
            bad += w.step;
        }
        while let Some(g) = good {
            let mid = (g + bad) / 2 / 50 * 50;
            if bad - g <= w.step / 4 || mid <= g {
                break;
            }
            if run(mid)?.passed() {
                good = Some(mid);
            } else {
                bad = mid;
            }
        }
        match good {
            Some(g) => println!(
                "{}: {g} players at p99 <= {P99_LIMIT_MS} ms with no error (target {})",
                w.name, w.target
            ),
            None => println!("{}: not even {} players passed", w.name, w.first),
        }
    }
    Ok(())
}

fn describe(s: Scenario) -> &'static str {
    match s {
        Scenario::Arena => "arena: 2000x2000, AOI 450, 8 moves + 2 shots/s each",
        Scenario::World => "open world: 10000x10000, AOI 100, 5 steps + 1 emote/s each",
        Scenario::Chat => "chat",
    }
}

/// One trial: a fresh server, `n` bots.
fn trial(w: &Workload, wasm: &Path, n: usize, window: Duration) -> anyhow::Result<Trial> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("wyrm.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nname = \"scale\"\ndata_dir = \"data\"\n\n\
             [net]\ntcp = \"127.0.0.1:0\"\n{}\n\n\
             [game]\nboot_entity = {:?}\nservices = [{:?}]\nspace_tick_hz = 20\n\n\
             [[plugin]]\nname = \"game\"\nsource = {:?}\n",
            support::BENCH_CONNECTIONS,
            w.boot,
            w.service,
            path_str(wasm)
        ),
    )?;
    let server = ServerProcess::serve(&cfg)?;
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = rss_kib(pid)?;
    let config = Config::new(server.tcp()?, Transport::Tcp, w.scenario)
        .bots(n)
        .duration(WARMUP + window)
        .warmup(WARMUP);
    // The bots: this process, one thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sampler = std::thread::spawn(move || sample(pid, WARMUP, window));
    let report = rt.block_on(wyrm_bots::run(config))?;
    let window_stats = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the sampler panicked"))??;
    let secs = window.as_secs_f64();
    let frames: u64 = report
        .seconds
        .iter()
        .filter(|s| s.elapsed > WARMUP && s.elapsed <= WARMUP + window + Duration::from_millis(500))
        .map(|s| s.messages_in)
        .sum();
    let latency = report
        .latency
        .ok_or_else(|| anyhow::anyhow!("no move was answered with {n} bots"))?;
    let move_latency = report
        .per_kind
        .iter()
        .find(|(k, _)| *k == wyrm_bots::ActionKind::Move)
        .map_or(latency, |(_, l)| *l);
    let bots_cpu = report
        .cpu
        .map_or(f64::NAN, |c| c.percent_of_core(report.wall));
    drop(server);
    Ok(Trial {
        bots: n,
        p50_ms: move_latency.p50_ms,
        p99_ms: move_latency.p99_ms,
        errors: report.errors(),
        server_user: window_stats.user.as_secs_f64() / secs * 100.0,
        server_sys: window_stats.system.as_secs_f64() / secs * 100.0,
        bots_cpu,
        rss_per_client_kib: window_stats.rss_kib.saturating_sub(rss_idle) as f64 / n as f64,
        frames_per_client: frames as f64 / secs / n as f64,
        bytes_per_client: window_stats.written as f64 / secs / n as f64,
        load: load_average(),
    })
}

/// The server's use over the measuring window.
struct Window {
    user: Duration,
    system: Duration,
    /// Median RSS over the window, KiB.
    rss_kib: u64,
    /// Bytes the server wrote to its sockets.
    written: u64,
}

/// Samples process `pid` from `after` for `window`.
fn sample(pid: u32, after: Duration, window: Duration) -> anyhow::Result<Window> {
    std::thread::sleep(after);
    let cpu0 = CpuUsage::of_process(pid).ok_or_else(|| anyhow::anyhow!("no CPU time for {pid}"))?;
    let w0 = written(pid)?;
    let start = Instant::now();
    let mut rss = Vec::new();
    while start.elapsed() < window {
        std::thread::sleep(Duration::from_millis(500));
        rss.push(rss_kib(pid)?);
    }
    let cpu1 = CpuUsage::of_process(pid).ok_or_else(|| anyhow::anyhow!("no CPU time for {pid}"))?;
    let w1 = written(pid)?;
    rss.sort_unstable();
    let d = cpu1.since(&cpu0);
    Ok(Window {
        user: d.user,
        system: d.system,
        rss_kib: rss.get(rss.len() / 2).copied().unwrap_or(0),
        written: w1.saturating_sub(w0),
    })
}

/// Bytes process `pid` has written so far (`wchar` in `/proc/<pid>/io`).
fn written(pid: u32) -> anyhow::Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no wchar for {pid}"))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn path_str(p: &Path) -> String {
    PathBuf::from(p).display().to_string()
}
