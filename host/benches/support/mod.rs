//! Shared by the benchmarks.

#![allow(dead_code)] // each benchmark uses part of this

use std::path::Path;
use std::time::Duration;
use wyrm_runtime::bindings::{Locality, PathSegment, Placement, Position, ReplyTo, Tag};

use wyrm_runtime::{EntityId, GameHost, Limits, PluginCode, PluginRuntime, Stop};
use wyrm_toolchains::BuildOptions;

/// A world with nothing in it, for benchmarks of the plugin boundary alone:
/// the guest code they run calls no host function that needs a world.
pub struct EmptyWorld;

impl GameHost for EmptyWorld {
    fn create_entity(&mut self, _: &str, _: &[u8], _: Locality) -> Result<EntityId, String> {
        Err("empty world".into())
    }
    fn destroy_entity(&mut self, _: EntityId) -> Result<(), String> {
        Err("empty world".into())
    }
    fn entity_type(&mut self, _: EntityId) -> Option<String> {
        None
    }
    fn ask_entity_type(&mut self, _: EntityId, _: ReplyTo) -> Result<(), Stop> {
        Ok(())
    }
    fn service(&mut self, _: &str) -> Option<EntityId> {
        None
    }
    fn call_entity(&mut self, _: EntityId, _: String, _: Vec<u8>) -> Result<(), Stop> {
        Ok(())
    }
    fn call_client(&mut self, _: EntityId, _: &str, _: &[u8]) -> Result<bool, Stop> {
        Ok(false)
    }
    fn call_filtered_clients(&mut self, _: Vec<Tag>, _: String, _: Vec<u8>) -> Result<(), Stop> {
        Ok(())
    }
    fn broadcast(&mut self, _: String, _: Vec<u8>) -> Result<(), Stop> {
        Ok(())
    }
    fn give_client_to(&mut self, _: EntityId, _: EntityId) -> Result<(), String> {
        Err("empty world".into())
    }
    fn set_client_tag(&mut self, _: EntityId, _: String, _: Option<String>) -> Result<(), String> {
        Err("empty world".into())
    }
    fn create_space(
        &mut self,
        _: &str,
        _: String,
        _: &[u8],
        _: Locality,
    ) -> Result<EntityId, String> {
        Err("empty world".into())
    }
    fn space_kind(&mut self, _: EntityId) -> Option<String> {
        None
    }
    fn enter_space(&mut self, _: EntityId, _: EntityId, _: Position, _: f32) -> Result<(), String> {
        Err("empty world".into())
    }
    fn leave_space(&mut self, _: EntityId) -> Result<(), String> {
        Err("empty world".into())
    }
    fn set_position(&mut self, _: EntityId, _: Position, _: f32) -> Result<(), String> {
        Err("empty world".into())
    }
    fn placement_of(&mut self, _: EntityId) -> Option<Placement> {
        None
    }
    fn allow_client_moves(&mut self, _: EntityId, _: bool) -> Result<(), String> {
        Err("empty world".into())
    }
    fn aoi_of(&mut self, _: EntityId) -> Vec<EntityId> {
        Vec::new()
    }
    fn entities_near(&mut self, _: EntityId, _: Position, _: f32) -> Vec<EntityId> {
        Vec::new()
    }
    fn call_aoi_clients(&mut self, _: EntityId, _: &str, _: &[u8]) -> Result<(), Stop> {
        Ok(())
    }
    fn attr_get(&mut self, _: EntityId, _: &[PathSegment]) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
    fn ask_attr(&mut self, _: EntityId, _: Vec<PathSegment>, _: ReplyTo) -> Result<(), Stop> {
        Ok(())
    }
    fn attr_set(&mut self, _: EntityId, _: &[PathSegment], _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn attr_delete(&mut self, _: EntityId, _: &[PathSegment]) -> Result<(), String> {
        Ok(())
    }
    fn attr_append(&mut self, _: EntityId, _: &[PathSegment], _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn set_timer(
        &mut self,
        _: EntityId,
        _: u32,
        _: bool,
        _: String,
        _: Vec<u8>,
    ) -> Result<u64, String> {
        Err("empty world".into())
    }
    fn cancel_timer(&mut self, _: u64) -> bool {
        false
    }
    fn hash_password(&mut self, _: EntityId, _: String, _: String, _: Vec<u8>) -> Result<(), Stop> {
        Ok(())
    }
    fn verify_password(
        &mut self,
        _: EntityId,
        _: String,
        _: String,
        _: String,
        _: Vec<u8>,
    ) -> Result<(), Stop> {
        Ok(())
    }
    fn load_entity(&mut self, _: EntityId, _: Locality, _: ReplyTo) -> Result<(), Stop> {
        Ok(())
    }
    fn save_entity(&mut self, _: EntityId, _: Option<ReplyTo>) -> Result<(), Stop> {
        Ok(())
    }
    fn entity_exists(&mut self, _: EntityId, _: ReplyTo) -> Result<(), Stop> {
        Ok(())
    }
    fn saved_ids(&mut self, _: String, _: ReplyTo) -> Result<(), Stop> {
        Ok(())
    }
    fn kv_get(&mut self, _: String, _: ReplyTo) -> Result<(), Stop> {
        Ok(())
    }
    fn kv_put(&mut self, _: String, _: Vec<u8>, _: Option<ReplyTo>) -> Result<(), Stop> {
        Ok(())
    }
    fn kv_get_or_put(&mut self, _: String, _: Vec<u8>, _: ReplyTo) -> Result<(), Stop> {
        Ok(())
    }
    fn kv_range(&mut self, _: String, _: ReplyTo) -> Result<(), Stop> {
        Ok(())
    }
    fn emit_stat(&mut self, _: String, _: Vec<u8>) {}
}

/// The median of some measurements.
/// `[net]` lines for a benchmark: every bot comes from one address, in
/// numbers far past what one address may hold by default.
pub const BENCH_CONNECTIONS: &str =
    "max_connections = 100000\nmax_connections_per_address = 100000";

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The testbed plugin, built from source and compiled, ready to
/// instantiate under `deadline` and `memory_bytes`. Keep the runtime (its
/// epoch ticker enforces deadlines) and the cache folder alive with it.
pub fn testbed(
    deadline: Duration,
    memory_bytes: usize,
) -> anyhow::Result<(PluginRuntime, PluginCode<EmptyWorld>, tempfile::TempDir)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm =
        wyrm_toolchains::build_plugin(&root.join("plugins/testbed"), &BuildOptions::default())?;
    let cache = tempfile::tempdir()?;
    let runtime = PluginRuntime::new(
        cache.path().to_path_buf(),
        Limits {
            deadline,
            memory_bytes,
        },
    )?;
    let code = runtime.load::<EmptyWorld>("testbed", &wasm)?;
    Ok((runtime, code, cache))
}

/// Starts a server in this process running the testbed component `wasm`,
/// with TCP only and the limits a benchmark wants (no rate limit, deep
/// client queues, long deadlines, 1 GiB per instance, no checkpoints); its
/// config and data go in `dir`, which must outlive it. Returns the server
/// and its TCP address.
pub async fn start_testbed_server(
    dir: &Path,
    wasm: &Path,
) -> anyhow::Result<(wyrm::Server, String)> {
    start_testbed_server_with(dir, wasm, "").await
}

/// [`start_testbed_server`] with more `[game]` settings (and sections after
/// them); checkpoints stay off unless these set their interval.
pub async fn start_testbed_server_with(
    dir: &Path,
    wasm: &Path,
    game_extra: &str,
) -> anyhow::Result<(wyrm::Server, String)> {
    let cfg_path = dir.join("wyrm.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[net]\ntcp = \"127.0.0.1:0\"\nclient_rate = 1000000\nclient_queue_bytes = 16777216\n{BENCH_CONNECTIONS}\n\n\
             [game]\nboot_entity = \"Probe\"\n{checkpoints}{game_extra}\n\n\
             [limits]\ncall_deadline_ms = 10000\nmemory_mb = 1024\n\n\
             [[plugin]]\nname = \"testbed\"\nsource = {:?}\n",
            wasm.display().to_string(),
            checkpoints = if game_extra.contains("checkpoint_interval_ms") {
                ""
            } else {
                "checkpoint_interval_ms = 0\n"
            },
        ),
    )?;
    let server = wyrm::Server::start(wyrm::Config::load(&cfg_path)?).await?;
    let addr = server
        .tcp
        .ok_or_else(|| anyhow::anyhow!("no tcp listener"))?
        .to_string();
    Ok((server, addr))
}

/// Installs what a cluster needs (`scripts/setup-cluster`: nats-server,
/// PostgreSQL), builds the testbed plugin and prints the load average:
/// where a cluster benchmark starts. Returns the plugin's component.
pub fn cluster_testbed() -> anyhow::Result<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(root.join("scripts/setup-cluster"))
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "scripts/setup-cluster failed");
    let wasm =
        wyrm_toolchains::build_plugin(&root.join("plugins/testbed"), &BuildOptions::default())?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.trim());
    Ok(wasm)
}

/// Starts game `id` of the cluster whose config is `dir/wyrm.toml` as a
/// `wyrm game` process, and returns once it is running (the node places
/// entities on it from then on).
pub async fn start_game(dir: &Path, id: u16) -> anyhow::Result<std::process::Child> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wyrm"))
        .args(["game", "--id", &id.to_string()])
        .arg(dir.join("wyrm.toml"))
        .env("WYRM_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let ready = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("is running"))
    })
    .await?;
    anyhow::ensure!(ready, "wyrm game ended before it was running");
    Ok(child)
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    wyrm_bots::CpuUsage::of_process(pid)
        .map(|c| c.total())
        .ok_or_else(|| anyhow::anyhow!("cannot read the CPU time of process {pid}"))
}

/// The real `wyrm` binary serving a config, killed when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    websocket: Option<String>,
    tcp: Option<String>,
}

impl ServerProcess {
    /// Starts `wyrm serve` on the testbed component `wasm` with listeners on
    /// port 0 (WebSocket and TCP), data in `dir`; `net_extra` is more
    /// `[net]` settings.
    pub fn start_testbed(dir: &Path, wasm: &Path, net_extra: &str) -> anyhow::Result<Self> {
        Self::start_testbed_with(dir, wasm, net_extra, "")
    }

    /// [`start_testbed`](Self::start_testbed) with more `[game]` settings.
    pub fn start_testbed_with(
        dir: &Path,
        wasm: &Path,
        net_extra: &str,
        game_extra: &str,
    ) -> anyhow::Result<Self> {
        let cfg = dir.join("wyrm.toml");
        std::fs::write(
            &cfg,
            format!(
                "[server]\nname = \"bench\"\ndata_dir = \"data\"\n\n\
                 [net]\nwebsocket = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n{BENCH_CONNECTIONS}\n{net_extra}\n\n\
                 [game]\nboot_entity = \"Probe\"\n{game_extra}\n\n\
                 [[plugin]]\nname = \"testbed\"\nsource = {:?}\n",
                wasm.display().to_string()
            ),
        )?;
        Self::serve(&cfg)
    }

    /// Starts `wyrm serve cfg` and waits until it prints its addresses.
    pub fn serve(cfg: &Path) -> anyhow::Result<Self> {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wyrm"))
            .arg("serve")
            .arg(cfg)
            .env("WYRM_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut server = Self {
            child,
            websocket: None,
            tcp: None,
        };
        // The server prints its WebSocket and TCP addresses, in that order,
        // once it listens; the last line names TCP.
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if let Some(ws) = line.split("ws://").nth(1) {
                server.websocket = ws.split('/').next().map(str::to_owned);
            } else if let Some(tcp) = line.strip_prefix("TCP clients: ") {
                server.tcp = Some(tcp.trim().to_owned());
                break;
            }
        }
        if server.websocket.is_none() && server.tcp.is_none() {
            anyhow::bail!("the server exited before it listened (see its log above)");
        }
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The WebSocket address.
    pub fn websocket(&self) -> anyhow::Result<String> {
        self.websocket
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no websocket listener"))
    }

    /// The TCP address.
    pub fn tcp(&self) -> anyhow::Result<String> {
        self.tcp
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no tcp listener"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this benchmark runs as part of the suite (`cargo bench -p wyrm
/// --bench suite` sets `WYRM_BENCH_SUITE`): a standard, shorter workload.
pub fn in_suite() -> bool {
    std::env::var_os("WYRM_BENCH_SUITE").is_some()
}

/// Prints the line the suite collects for its table: what was measured,
/// the headline number with its unit, and the workload behind it.
pub fn suite_row(measure: &str, value: &str, workload: &str) {
    println!("SUITE\t{measure}\t{value}\t{workload}");
}

/// Round trips each latency measurement takes (after 100 to warm up).
pub const PINGS: usize = 2000;
/// Moves of the shuttle in a migration measurement.
pub const MIGRATIONS: u64 = 1000;

/// The value at fraction `p` of `v` (sorted here).
pub fn percentile(mut v: Vec<std::time::Duration>, p: f64) -> std::time::Duration {
    v.sort();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Two testbed clients at `addr` whose probes are on game 0 and on game 1
/// of `server` (the node, in a cluster: it knows where every entity is).
pub async fn spread(
    server: &wyrm::Server,
    addr: &str,
) -> anyhow::Result<(wyrm_client::Client, wyrm_client::Client)> {
    use wyrm_client::{Client, Transport};
    let (mut on0, mut on1) = (None, None);
    for _ in 0..8 {
        let mut c = Client::connect(Transport::Tcp, addr).await?;
        let id = c.wait_player(Duration::from_secs(10)).await?;
        match server.game_of(id) {
            Some(0) if on0.is_none() => on0 = Some(c),
            Some(1) if on1.is_none() => on1 = Some(c),
            _ => {}
        }
    }
    match (on0, on1) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => anyhow::bail!("the clients' probes did not spread over both games"),
    }
}

/// Round trips of `ping(target)` from `c`: its probe calls `target`, which
/// calls the probe back, which tells the client.
pub async fn pings(
    c: &mut wyrm_client::Client,
    target: u64,
) -> anyhow::Result<Vec<std::time::Duration>> {
    let mut out = Vec::with_capacity(PINGS);
    for k in 0..PINGS as u64 + 100 {
        let t = std::time::Instant::now();
        c.call_player("ping", (target, k)).await?;
        c.expect_call("on_bounced", Duration::from_secs(5)).await?;
        if k >= 100 {
            out.push(t.elapsed());
        }
    }
    Ok(out)
}

/// Moves a shuttle between planes on the games of `a`'s and `b`'s probes
/// [`MIGRATIONS`] times, ten calls and a report between moves; returns the
/// pauses `server` has recorded (the arrivals on its own games), at least
/// `recorded` of them.
pub async fn migrations(
    server: &wyrm::Server,
    a: &mut wyrm_client::Client,
    b: &mut wyrm_client::Client,
    recorded: usize,
) -> anyhow::Result<Vec<std::time::Duration>> {
    use wyrm_client::NO_ARGS;
    let mut planes = Vec::new();
    for c in [&mut *a, &mut *b] {
        c.call_player("make_plane", NO_ARGS).await?;
        let (_, (plane,)): (_, (u64,)) = c.expect_call_as("plane", Duration::from_secs(5)).await?;
        planes.push(plane);
    }
    a.call_player("make_shuttle", (planes,)).await?;
    let (_, (shuttle,)): (_, (u64,)) = a
        .expect_call_as("on_shuttle", Duration::from_secs(5))
        .await?;
    let probe = b.wait_player(Duration::from_secs(5)).await?;
    let before = server.migration_pauses().len();
    for chunk in 0..MIGRATIONS {
        for seq in chunk * 10..chunk * 10 + 10 {
            b.call(shuttle, "take", (0u32, seq)).await?;
        }
        b.call(shuttle, "report", (probe,)).await?;
        b.expect_call("on_shuttle_report", Duration::from_secs(5))
            .await?;
    }
    // The last report may have run before the move its chunk's last call
    // asked for (it was routed before that call ran); one more comes after
    // the move, once the shuttle has arrived.
    b.call(shuttle, "report", (probe,)).await?;
    b.expect_call("on_shuttle_report", Duration::from_secs(5))
        .await?;
    let pauses = server.migration_pauses();
    anyhow::ensure!(
        pauses.len() >= before + recorded,
        "{} migrations recorded",
        pauses.len() - before
    );
    Ok(pauses)
}

/// Keeps `in_flight` `Probe.echo` calls outstanding on `c` until `stop`
/// (each answer, `on_echo`, sends the next); returns the answers that came
/// after `count_from`.
pub async fn echo_loop(
    mut c: wyrm_client::Client,
    in_flight: usize,
    count_from: std::time::Instant,
    stop: std::time::Instant,
) -> anyhow::Result<u64> {
    use wyrm_client::Event;
    for _ in 0..in_flight {
        c.call_player("echo", (1,)).await?;
    }
    let mut answered = 0;
    while std::time::Instant::now() < stop {
        match c.next_event_timeout(Duration::from_secs(5)).await? {
            Some(Event::Call { method, .. }) if method == "on_echo" => {
                if std::time::Instant::now() >= count_from {
                    answered += 1;
                }
                c.call_player("echo", (1,)).await?;
            }
            Some(Event::Error { message, .. }) => anyhow::bail!("call failed: {message}"),
            Some(_) => {}
            None => anyhow::bail!("no answer for 5 s"),
        }
    }
    Ok(answered)
}
