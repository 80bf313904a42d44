//! Test harness: builds the plugins from source, starts real servers on
//! loopback ports and connects real clients to them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wyrm::config::{
    AdminConfig, Config, GameConfig, LimitsConfig, NetConfig, PluginConfig, ServerConfig,
    StorageConfig,
};
use wyrm_client::{Client, Transport};

pub use wyrm_client;

pub mod chat;
pub mod services;

/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Turns on log output once (`WYRM_LOG=debug cargo test` to see more).
pub fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = std::env::var("WYRM_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    });
}

/// Builds a plugin (folder relative to the repository root, any language)
/// with `features`, once per test process.
pub fn plugin(dir: &str, features: &[&str]) -> PathBuf {
    /// A crate folder and its features.
    type BuildKey = (String, Vec<String>);
    static BUILT: Mutex<Vec<(BuildKey, PathBuf)>> = Mutex::new(Vec::new());
    let key = (
        dir.to_owned(),
        features.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(k, _)| *k == key) {
        return p.clone();
    }
    let opts = wyrm_toolchains::BuildOptions {
        features: key.1.clone(),
        debug: false,
    };
    let path = match wyrm_toolchains::build_plugin(&repo_root().join(dir), &opts) {
        Ok(p) => p,
        Err(e) => panic!("building {dir} with {features:?} failed: {e:#}"),
    };
    built.push((key, path.clone()));
    path
}

/// The chatroom plugin, with the `faults` feature (methods that loop and
/// panic on request) and any `extra` features.
pub fn chatroom_plugin_with(extra: &[&str]) -> PathBuf {
    let mut features = vec!["faults"];
    features.extend_from_slice(extra);
    plugin("examples/chatroom/plugin", &features)
}

/// The chatroom plugin, with the `faults` feature.
pub fn chatroom_plugin() -> PathBuf {
    chatroom_plugin_with(&[])
}

/// The testbed plugin, with `features`.
pub fn testbed_plugin_with(features: &[&str]) -> PathBuf {
    plugin("plugins/testbed", features)
}

/// The testbed plugin.
pub fn testbed_plugin() -> PathBuf {
    testbed_plugin_with(&[])
}

/// Makes the system tools non-Rust plugins need present, once per test
/// process: `scripts/setup-polyglot` (Debian's clang and wasi-libc for C,
/// Node.js for JavaScript, python3-venv for Python; as root it installs
/// them, otherwise it says what to run).
pub fn setup_polyglot() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let script = repo_root().join("scripts/setup-polyglot");
        match std::process::Command::new(&script).status() {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{} failed ({s}); see its output above", script.display()),
            Err(e) => panic!("cannot run {}: {e}", script.display()),
        }
    });
}

/// The conformance plugin (`plugins/conformance/README.md`) written in
/// `lang`, built with `wyrm build`'s own tools.
pub fn conformance_plugin(lang: wyrm_toolchains::Language) -> PathBuf {
    if lang != wyrm_toolchains::Language::Rust {
        setup_polyglot();
    }
    plugin(&format!("plugins/conformance/{}", lang.name()), &[])
}

/// The arena example's plugin.
pub fn arena_plugin() -> PathBuf {
    plugin("examples/arena/plugin", &[])
}

/// Calls a method on the client's own entity.
pub async fn call_own<A: serde::Serialize>(c: &mut Client, method: &str, args: A) -> u32 {
    match c.call_player(method, args).await {
        Ok(id) => id,
        Err(e) => panic!("calling {method}: {e}"),
    }
}

/// Waits for a server call and decodes its arguments.
pub async fn expect<T: serde::de::DeserializeOwned>(c: &mut Client, method: &str) -> T {
    match c.expect_call_as::<T>(method, WAIT).await {
        Ok((_, v)) => v,
        Err(e) => panic!("waiting for {method}: {e}"),
    }
}

/// The games each test server runs: `WYRM_TEST_WORKERS`, or 1. CI runs the
/// suites that must pass with any number again with 2.
pub fn workers() -> usize {
    match std::env::var("WYRM_TEST_WORKERS") {
        Ok(n) => match n.parse() {
            Ok(n) => n,
            Err(_) => panic!("WYRM_TEST_WORKERS={n:?} is not a number"),
        },
        Err(_) => 1,
    }
}

/// Whether each test server is a cluster (`WYRM_TEST_CLUSTER=1`): the
/// server as the node with one game of its own, one game and one gate
/// more as `wyrm game` and `wyrm gate` roles over a real `nats-server`,
/// its storage a real PostgreSQL, and clients spread over both gates. CI
/// runs the suites that must pass on a cluster again this way.
pub fn cluster() -> bool {
    match std::env::var("WYRM_TEST_CLUSTER") {
        Ok(v) => v == "1",
        Err(_) => false,
    }
}

/// The database a test server keeps its game data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// The embedded default: an SQLite file in the data folder.
    Sqlite,
    /// A database of this process's throwaway PostgreSQL server, one per
    /// data folder ([`services::postgres_database`]).
    Postgres,
}

impl Db {
    /// Points `cfg` at this database for the data folder `dir`.
    pub fn use_for(self, cfg: &mut Config, dir: &Path) {
        if self == Db::Postgres {
            cfg.storage.url = Some(services::postgres_database(dir));
        }
    }
}

/// A server running in this process on loopback ports.
pub struct TestServer {
    /// The running server (in a cluster, the node).
    pub server: wyrm::Server,
    cfg: Config,
    /// In a cluster: the game and the gate beside the node.
    roles: Option<(wyrm::cluster::GameProcess, wyrm::cluster::GateProcess)>,
    /// Connections made, to spread them over the gates.
    connections: std::sync::atomic::AtomicUsize,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with every transport on, running `plugin`, its data
    /// in a fresh temporary folder.
    pub async fn start(
        plugin: PathBuf,
        boot_entity: &str,
        services: &[&str],
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        match Self::try_start(plugin, boot_entity, services, tweak, None).await {
            Ok(s) => s,
            Err(e) => panic!("server did not start: {e:#}"),
        }
    }

    /// The config [`start`](Self::start) uses, with data in `dir`.
    pub fn config_in(dir: &Path, plugin: PathBuf, boot_entity: &str, services: &[&str]) -> Config {
        let any = |p| Some(SocketAddr::from(([127, 0, 0, 1], p)));
        Config {
            server: ServerConfig {
                name: "test".into(),
                data_dir: dir.to_path_buf(),
                // Compiled plugins are shared between tests so that each
                // server does not compile them again.
                cache_dir: Some(repo_root().join("target/wyrm-test-cache")),
            },
            net: NetConfig {
                websocket: any(0),
                tcp: any(0),
                kcp: any(0),
                web_root: Some(repo_root().join("examples/chatroom/web")),
                // Tests hold clients while they build plugin versions (a
                // cold build takes longer than the default 30 s): the idle
                // timeout is the hardening tests' business, which set it.
                idle_timeout_ms: 600_000,
                ..NetConfig::default()
            },
            game: GameConfig {
                services: services.iter().map(|s| s.to_string()).collect(),
                checkpoint_interval_ms: 5000,
                space_tick_hz: 20,
                workers: Some(workers()),
                ..GameConfig::new(boot_entity)
            },
            admin: AdminConfig::default(),
            storage: StorageConfig::default(),
            cluster: Default::default(),
            tls: Default::default(),
            limits: LimitsConfig {
                call_deadline_ms: 200,
                memory_mb: 64,
                ..LimitsConfig::default()
            },
            plugins: vec![PluginConfig {
                name: "game".into(),
                source: plugin,
                features: vec![],
            }],
        }
    }

    /// Starts a server whose data lives in `dir` (kept by the caller, to
    /// start again on it) or, with `None`, in a fresh temporary folder.
    pub async fn try_start(
        plugin: PathBuf,
        boot_entity: &str,
        services: &[&str],
        tweak: impl FnOnce(&mut Config),
        dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        init_logs();
        let temp = tempfile::tempdir()?;
        let dir = dir.unwrap_or(temp.path());
        let mut cfg = Self::config_in(dir, plugin, boot_entity, services);
        tweak(&mut cfg);
        if cluster() {
            static CLUSTERS: std::sync::atomic::AtomicUsize =
                std::sync::atomic::AtomicUsize::new(0);
            let n = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            cfg.cluster.nats = Some(services::nats_url());
            cfg.cluster.name = format!("t{}n{n}", std::process::id());
            cfg.cluster.games = 1;
            cfg.game.workers = Some(1);
            cfg.storage.path = None;
            cfg.storage.url = Some(services::postgres_database(dir));
        }
        let server = wyrm::Server::start(cfg.clone()).await?;
        let roles = if cluster() {
            let game = wyrm::cluster::GameProcess::start(cfg.clone(), 1).await?;
            let mut at_gate = cfg.clone();
            at_gate.cluster.gate = 1;
            let gate = wyrm::cluster::GateProcess::start(at_gate).await?;
            Some((game, gate))
        } else {
            None
        };
        Ok(Self {
            server,
            cfg,
            roles,
            connections: Default::default(),
            _dir: temp,
        })
    }

    /// Swaps the server's plugin (named "game") for the component at `wasm`
    /// through the admin endpoint, as `wyrm swap` does.
    pub async fn swap(&self, wasm: &Path, dry_run: bool) -> wyrm::SwapReport {
        let info = match wyrm::admin::read_info(&self.cfg) {
            Ok(i) => i,
            Err(e) => panic!("no admin endpoint: {e:#}"),
        };
        let bytes = match std::fs::read(wasm) {
            Ok(b) => b,
            Err(e) => panic!("cannot read {}: {e}", wasm.display()),
        };
        match wyrm::admin::request_swap(&info, "game", &bytes, dry_run).await {
            Ok(r) => r,
            Err(e) => panic!("swap request failed: {e:#}"),
        }
    }

    /// The server's config.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The chatroom server.
    pub async fn chatroom() -> Self {
        Self::start(chatroom_plugin(), "Account", &["Lobby"], |_| {}).await
    }

    /// The address a transport listens on.
    pub fn addr(&self, t: Transport) -> String {
        let a = match t {
            Transport::WebSocket => self.server.websocket,
            Transport::Tcp => self.server.tcp,
            Transport::Kcp => self.server.kcp,
        };
        match a {
            Some(a) => a.to_string(),
            None => panic!("{t:?} is not enabled"),
        }
    }

    /// What every game of the server (of the cluster) counted.
    pub fn game_counters(&self) -> wyrm::GameCounters {
        let node = self.server.counters_by_game().iter().map(|c| &**c);
        let others = self.roles.iter().map(|(game, _)| game.counters());
        wyrm::GameCounters::sum(node.chain(others))
    }

    /// The address a transport listens on, on every gate (one but in a
    /// cluster).
    pub fn gate_addrs(&self, t: Transport) -> Vec<String> {
        let mut addrs = vec![self.addr(t)];
        if let Some((_, gate)) = &self.roles {
            let a = match t {
                Transport::WebSocket => gate.websocket,
                Transport::Tcp => gate.tcp,
                Transport::Kcp => gate.kcp,
            };
            addrs.extend(a.map(|a| a.to_string()));
        }
        addrs
    }

    /// A connected client whose own entity has arrived; in a cluster, on
    /// each gate in turn.
    pub async fn connect(&self, t: Transport) -> Client {
        let addrs = self.gate_addrs(t);
        let n = self
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = &addrs[n % addrs.len()];
        let mut c = match Client::connect(t, addr).await {
            Ok(c) => c,
            Err(e) => panic!("connect over {t:?}: {e}"),
        };
        if let Err(e) = c.wait_player(WAIT).await {
            panic!("no own entity over {t:?}: {e}");
        }
        c
    }
}
