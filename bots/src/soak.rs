//! The soak: two real servers (the chatroom and the arena examples, every
//! transport on) driven by bots for a long while, with a hot swap every few
//! seconds and one SIGKILL-and-restart of both servers in the middle; then
//! a report of what a player would have noticed.
//!
//! The servers are `wyrm serve` processes of the given binary, and swaps go
//! through `wyrm swap`, as an operator's would. Bots reconnect after the
//! kill, chat bots log in again with the accounts the server confirmed, so
//! the report can say what the kill cost: disconnects (expected only then),
//! chat lines lost or doubled, confirmed accounts missing after the restart,
//! and RSS and p99 latency over time.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wyrm_client::Transport;

use crate::{Config, Integrity, Report, Scenario, SecondStats};

/// What to soak, and for how long.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The `wyrm` binary that serves and swaps.
    pub wyrm: PathBuf,
    /// The repository, for the example plugins' folders.
    pub repo: PathBuf,
    /// Where the servers' data, logs and the report go (made fresh).
    pub dir: PathBuf,
    /// Bots in all: half chat, half arena, each half spread over TCP,
    /// WebSocket and KCP.
    pub bots: usize,
    /// How long the bots play.
    pub duration: Duration,
    /// Time between hot swaps (chat and arena in turn).
    pub swap_every: Duration,
    /// When both servers are killed and restarted, from the start.
    pub kill_at: Duration,
}

/// After the servers are back from the kill, how long disconnects,
/// timeouts and errors are expected: every player logs in again at once,
/// and a login checks a password (tens of milliseconds of a hashing
/// thread), so the last of 500 chat players is in some seconds later.
const KILL_WINDOW: Duration = Duration::from_secs(60);

/// Bots of a group start spread over this long, as players arrive, rather
/// than all logging in within a second or two.
const RAMP: Duration = Duration::from_secs(30);

/// How long a server may take to start (it builds its plugin the first
/// time).
const START_TIMEOUT: Duration = Duration::from_secs(300);

struct Server {
    name: &'static str,
    config: PathBuf,
    plugin_dir: PathBuf,
    tcp: SocketAddr,
    ws: SocketAddr,
    kcp: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn prepare(
        dir: &Path,
        name: &'static str,
        plugin_dir: PathBuf,
        game: &str,
    ) -> io::Result<Self> {
        let home = dir.join(name);
        fs::create_dir_all(&home)?;
        let (tcp, ws, kcp) = (free_tcp()?, free_tcp()?, free_udp()?);
        let config = home.join("wyrm.toml");
        fs::write(
            &config,
            format!(
                "[server]\nname = \"soak-{name}\"\ndata_dir = {data:?}\n\n\
                 [net]\ntcp = \"{tcp}\"\nwebsocket = \"{ws}\"\nkcp = \"{kcp}\"\n\
                 # every bot comes from this machine\nmax_connections_per_address = 100000\n\n\
                 {game}\n\n\
                 [[plugin]]\nname = \"game\"\nsource = {source:?}\n",
                data = home.join("data").display().to_string(),
                source = plugin_dir.display().to_string(),
            ),
        )?;
        Ok(Self {
            name,
            config,
            plugin_dir,
            tcp,
            ws,
            kcp,
            log: home.join("server.log"),
            child: None,
        })
    }

    fn start(&mut self, wyrm: &Path) -> io::Result<()> {
        // A killed server leaves its admin file behind: readiness waits for
        // the new one.
        let _ = fs::remove_file(self.config.with_file_name("data").join("admin.json"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(wyrm)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the server takes TCP connections and its admin endpoint
    /// is published.
    fn wait_ready(&mut self) -> io::Result<Duration> {
        let started = Instant::now();
        let admin = self.config.with_file_name("data").join("admin.json");
        loop {
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!(
                        "the {} server exited ({status}); see {}",
                        self.name,
                        self.log.display()
                    )));
                }
            }
            if admin.exists()
                && TcpStream::connect_timeout(&self.tcp, Duration::from_millis(200)).is_ok()
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(io::Error::other(format!(
                    "the {} server did not start within {START_TIMEOUT:?}; see {}",
                    self.name,
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reaps it.
    fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM (the server saves everything and exits), at most a minute.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) with a pid of our own child and a valid signal.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn addr(&self, t: Transport) -> SocketAddr {
        match t {
            Transport::Tcp => self.tcp,
            Transport::WebSocket => self.ws,
            Transport::Kcp => self.kcp,
        }
    }
}

fn free_tcp() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn free_udp() -> io::Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One swap as the operator saw it.
struct SwapRecord {
    at: Duration,
    server: &'static str,
    ok: bool,
    /// `wyrm swap`'s report line (or its error).
    said: String,
}

/// What the soak saw of the servers, second by second.
#[derive(Default)]
struct Timeline {
    swaps: Vec<SwapRecord>,
    /// (time, server, RSS KiB).
    rss: Vec<(Duration, &'static str, u64)>,
    /// When the servers were killed, and when both served again.
    killed_at: Option<Duration>,
    back_at: Option<Duration>,
}

/// A bots group: one scenario over one transport.
struct Group {
    scenario: Scenario,
    transport: Transport,
    rows: Vec<SecondStats>,
    report: Option<Report>,
}

/// Runs the soak; returns the report's text and whether it passed.
pub fn run(cfg: &SoakConfig) -> io::Result<(String, bool)> {
    if cfg.dir.exists() {
        fs::remove_dir_all(&cfg.dir)?;
    }
    fs::create_dir_all(&cfg.dir)?;
    let mut servers = [
        Server::prepare(
            &cfg.dir,
            "chat",
            cfg.repo.join("examples/chatroom/plugin"),
            "[game]\nboot_entity = \"Account\"\nservices = [\"Lobby\"]",
        )?,
        Server::prepare(
            &cfg.dir,
            "arena",
            cfg.repo.join("examples/arena/plugin"),
            "[game]\nboot_entity = \"Account\"\nservices = [\"Arena\"]\nspace_tick_hz = 20",
        )?,
    ];
    for s in &mut servers {
        s.start(&cfg.wyrm)?;
    }
    for s in &mut servers {
        let took = s.wait_ready()?;
        eprintln!(
            "soak: {} server ready in {:.1} s",
            s.name,
            took.as_secs_f64()
        );
    }

    let groups = start_bots(cfg, &servers);
    let start = Instant::now();
    let mut timeline = Timeline::default();
    let mut next_swap = start + cfg.swap_every;
    let mut next_rss = start;
    let mut next_progress = start + Duration::from_secs(60);
    let mut swap_turn = 0;
    let end = start + cfg.duration;
    while Instant::now() < end {
        let now = Instant::now();
        if timeline.killed_at.is_none() && now >= start + cfg.kill_at {
            timeline.killed_at = Some(now - start);
            eprintln!(
                "soak: SIGKILL both servers at {:.0} s",
                (now - start).as_secs_f64()
            );
            for s in &mut servers {
                s.kill()?;
            }
            for s in &mut servers {
                s.start(&cfg.wyrm)?;
            }
            for s in &mut servers {
                s.wait_ready()?;
            }
            timeline.back_at = Some(start.elapsed());
            eprintln!(
                "soak: both servers back at {:.1} s",
                start.elapsed().as_secs_f64()
            );
            next_swap = Instant::now() + cfg.swap_every;
        }
        if now >= next_rss {
            for s in &servers {
                if let Some(kib) = s.pid().and_then(rss_kib) {
                    timeline.rss.push((now - start, s.name, kib));
                }
            }
            next_rss += Duration::from_secs(10);
        }
        if now >= next_swap {
            let s = &servers[swap_turn % servers.len()];
            swap_turn += 1;
            timeline.swaps.push(swap(cfg, s, now - start));
            next_swap = Instant::now() + cfg.swap_every;
        }
        if now >= next_progress {
            let failed = timeline.swaps.iter().filter(|s| !s.ok).count();
            eprintln!(
                "soak: {:.0} min, {} swaps ({failed} refused or failed), RSS {}",
                (now - start).as_secs_f64() / 60.0,
                timeline.swaps.len(),
                latest_rss(&timeline)
            );
            next_progress += Duration::from_secs(60);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let groups = match groups.join() {
        Ok(g) => g,
        Err(_) => return Err(io::Error::other("the bots thread panicked")),
    };
    for s in &mut servers {
        s.stop();
    }
    let groups = match Arc::try_unwrap(groups) {
        Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
        Err(_) => return Err(io::Error::other("bot groups still shared")),
    };
    let (text, passed) = report(cfg, &groups, &timeline);
    fs::write(cfg.dir.join("report.txt"), &text)?;
    Ok((text, passed))
}

fn latest_rss(t: &Timeline) -> String {
    let mut out = String::new();
    for name in ["chat", "arena"] {
        if let Some((_, _, kib)) = t.rss.iter().rev().find(|r| r.1 == name) {
            let _ = write!(out, "{name} {:.0} MiB ", *kib as f64 / 1024.0);
        }
    }
    out
}

fn swap(cfg: &SoakConfig, s: &Server, at: Duration) -> SwapRecord {
    let out = Command::new(&cfg.wyrm)
        .arg("swap")
        .arg(&s.config)
        .arg("game")
        .arg(&s.plugin_dir)
        .output();
    let (ok, said) = match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(if o.status.success() {
                &o.stdout
            } else {
                &o.stderr
            })
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .to_owned();
            (o.status.success(), text)
        }
        Err(e) => (false, format!("cannot run wyrm swap: {e}")),
    };
    if !ok {
        eprintln!(
            "soak: swap of {} at {:.0} s failed: {said}",
            s.name,
            at.as_secs_f64()
        );
    }
    SwapRecord {
        at,
        server: s.name,
        ok,
        said,
    }
}

/// Starts the bots on a thread of their own (one core), one group per
/// scenario and transport; the groups fill in as the run goes.
fn start_bots(
    cfg: &SoakConfig,
    servers: &[Server; 2],
) -> std::thread::JoinHandle<Arc<Mutex<Vec<Group>>>> {
    let transports = [Transport::Tcp, Transport::WebSocket, Transport::Kcp];
    let mut configs = Vec::new();
    let tag: String = crate::default_tag().chars().take(4).collect();
    for (si, (scenario, server)) in [
        (Scenario::Chat, &servers[0]),
        (Scenario::Arena, &servers[1]),
    ]
    .into_iter()
    .enumerate()
    {
        for (ti, t) in transports.into_iter().enumerate() {
            let i = si * 3 + ti;
            // Spread the bots evenly; the first groups take the remainder.
            let n = cfg.bots / 6 + usize::from(i < cfg.bots % 6);
            if n == 0 {
                continue;
            }
            let mut c = Config::new(server.addr(t).to_string(), t, scenario)
                .bots(n)
                .duration(cfg.duration)
                .timeout(Duration::from_secs(5))
                .ramp(RAMP.min(cfg.duration / 4))
                .reconnect(true);
            c.name_tag = format!("{tag}{i}");
            configs.push(c);
        }
    }
    let groups = Arc::new(Mutex::new(
        configs
            .iter()
            .map(|c| Group {
                scenario: c.scenario,
                transport: c.transport,
                rows: Vec::new(),
                report: None,
            })
            .collect::<Vec<_>>(),
    ));
    let shared = groups.clone();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("soak: cannot start the bots' runtime: {e}");
                return shared;
            }
        };
        rt.block_on(async {
            let mut runs = tokio::task::JoinSet::new();
            for (i, c) in configs.into_iter().enumerate() {
                let groups = shared.clone();
                runs.spawn(async move {
                    let r = crate::run_with_progress(c, |row| {
                        lock(&groups)[i].rows.push(row.clone());
                    })
                    .await;
                    if let Ok(report) = r {
                        lock(&groups)[i].report = Some(report);
                    }
                });
            }
            while runs.join_next().await.is_some() {}
        });
        shared
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes the report; passes if nothing a player would mind happened
/// outside the kill's window and nothing confirmed was lost.
fn report(cfg: &SoakConfig, groups: &[Group], t: &Timeline) -> (String, bool) {
    let mut out = String::new();
    let mut failures: Vec<String> = Vec::new();
    let load = crate::cpu::load_average();
    let _ = writeln!(
        out,
        "Wyrm soak: {} bots (half chat, half arena; TCP, WebSocket, KCP), {:.1} min, a swap every {:.0} s, SIGKILL of both servers at {:.0} s",
        cfg.bots,
        cfg.duration.as_secs_f64() / 60.0,
        cfg.swap_every.as_secs_f64(),
        cfg.kill_at.as_secs_f64()
    );
    if let Some((a, b, c)) = load {
        let _ = writeln!(out, "load average at the end: {a:.2} {b:.2} {c:.2}");
    }
    let window = match (t.killed_at, t.back_at) {
        (Some(k), Some(b)) => {
            let _ = writeln!(
                out,
                "kill at {:.1} s; both servers serving again at {:.1} s ({:.1} s down)",
                k.as_secs_f64(),
                b.as_secs_f64(),
                (b - k).as_secs_f64()
            );
            Some((k, b + KILL_WINDOW))
        }
        _ => {
            failures.push("the kill did not happen".into());
            None
        }
    };
    let in_window = |e: Duration| window.is_some_and(|(a, b)| e >= a && e <= b);

    // Bots.
    let _ = writeln!(out, "\nbots");
    let mut integrity = Integrity::default();
    let mut outside = (0u64, 0u64, 0u64, 0u64);
    let mut inside = (0u64, 0u64, 0u64, 0u64);
    for g in groups {
        let Some(r) = &g.report else {
            failures.push(format!(
                "{} over {:?}: no report",
                g.scenario.name(),
                g.transport
            ));
            continue;
        };
        let l = r.latency.map_or("no answers".into(), |l| {
            format!("p50 {:.1} ms, p99 {:.1} ms", l.p50_ms, l.p99_ms)
        });
        let _ = writeln!(
            out,
            "  {:<5} {:<9} {:>4} bots, {:>8} actions, {:>8} answered, {l}; reconnects {}",
            g.scenario.name(),
            format!("{:?}", g.transport),
            r.config.bots,
            r.actions,
            r.completed,
            r.integrity.reconnects
        );
        let i = r.integrity;
        integrity.reconnects += i.reconnects;
        integrity.duplicated_lines += i.duplicated_lines;
        integrity.lost_lines += i.lost_lines;
        integrity.unconfirmed_lines += i.unconfirmed_lines;
        integrity.lost_accounts += i.lost_accounts;
        integrity.busy_refusals += i.busy_refusals;
        for row in &g.rows {
            let counts = if in_window(row.elapsed) {
                &mut inside
            } else {
                &mut outside
            };
            counts.0 += row.disconnects;
            counts.1 += row.timeouts;
            counts.2 += row.error_frames;
            counts.3 += row.other_errors;
        }
    }
    let _ = writeln!(
        out,
        "  disconnects {} in the kill's window, {} outside it; timeouts {} / {}; error frames {} / {}; other errors {} / {}  (window / outside)",
        inside.0, outside.0, inside.1, outside.1, inside.2, outside.2, inside.3, outside.3
    );
    let _ = writeln!(
        out,
        "  chat: own lines lost {}, duplicated {}, unconfirmed at the kill {}; confirmed accounts missing after the restart {}; reconnects {}; logins refused as busy {}",
        integrity.lost_lines,
        integrity.duplicated_lines,
        integrity.unconfirmed_lines,
        integrity.lost_accounts,
        integrity.reconnects,
        integrity.busy_refusals
    );
    if outside != (0, 0, 0, 0) {
        failures.push(format!(
            "disconnects, timeouts or errors outside the kill's window: {outside:?}"
        ));
    }
    if integrity.lost_lines + integrity.duplicated_lines + integrity.lost_accounts > 0 {
        failures.push("chat lines or confirmed accounts lost or doubled".into());
    }

    // Latency over time: per minute, the median and the worst of the
    // seconds' p99 across every group.
    let _ = writeln!(
        out,
        "\np99 latency over time (ms; per minute: median and worst second, all groups)"
    );
    let minutes = (cfg.duration.as_secs() / 60).max(1);
    for m in 0..=minutes {
        let (from, to) = (
            Duration::from_secs(m * 60),
            Duration::from_secs((m + 1) * 60),
        );
        let mut p99s: Vec<f64> = groups
            .iter()
            .flat_map(|g| g.rows.iter())
            .filter(|r| r.elapsed > from && r.elapsed <= to)
            .filter_map(|r| r.latency.map(|l| l.p99_ms))
            .collect();
        if p99s.is_empty() {
            continue;
        }
        p99s.sort_by(f64::total_cmp);
        let median = p99s[p99s.len() / 2];
        let worst = p99s[p99s.len() - 1];
        let mark = if window.is_some_and(|(a, b)| from <= b && to >= a) {
            "  (kill)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {:>3} min  {median:>8.1}  {worst:>8.1}{mark}", m);
    }

    // Memory over time.
    let _ = writeln!(out, "\nserver RSS over time (MiB)");
    let _ = writeln!(out, "  {:>7}  {:>8}  {:>8}", "time", "chat", "arena");
    let mut times: Vec<Duration> = t.rss.iter().map(|r| r.0).collect();
    times.dedup();
    for (i, at) in times.iter().enumerate() {
        // Every minute, and the last sample.
        if i % 6 != 0 && i + 1 != times.len() {
            continue;
        }
        let of = |name| {
            t.rss
                .iter()
                .find(|r| r.0 == *at && r.1 == name)
                .map_or("-".into(), |r| format!("{:.1}", r.2 as f64 / 1024.0))
        };
        let _ = writeln!(
            out,
            "  {:>6.0}s  {:>8}  {:>8}",
            at.as_secs_f64(),
            of("chat"),
            of("arena")
        );
    }

    // Swaps.
    let failed: Vec<&SwapRecord> = t.swaps.iter().filter(|s| !s.ok).collect();
    let _ = writeln!(
        out,
        "\nswaps: {} ({} chat, {} arena), {} failed",
        t.swaps.len(),
        t.swaps.iter().filter(|s| s.server == "chat").count(),
        t.swaps.iter().filter(|s| s.server == "arena").count(),
        failed.len()
    );
    if let Some(last) = t.swaps.iter().rev().find(|s| s.ok) {
        let _ = writeln!(out, "  last: {}", last.said);
    }
    for s in failed.iter().take(5) {
        let _ = writeln!(
            out,
            "  failed at {:.0} s ({}): {}",
            s.at.as_secs_f64(),
            s.server,
            s.said
        );
    }
    // A swap refused while a server restarts (no admin endpoint yet) is
    // the kill's doing.
    if failed.iter().any(|s| !in_window(s.at)) {
        failures.push("swaps failed outside the kill's window".into());
    }

    let passed = failures.is_empty();
    let _ = writeln!(
        out,
        "\nresult: {}",
        if passed {
            "PASS".to_owned()
        } else {
            format!("FAIL: {}", failures.join("; "))
        }
    );
    (out, passed)
}
