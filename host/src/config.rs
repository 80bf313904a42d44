//! Server configuration, read from a TOML file. Every relative path in it is
//! resolved against the file's own folder, so a config works from any
//! working directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use serde::Deserialize;
pub use wyrm_game::config::{GameConfig, LimitsConfig, SpaceConfig};

/// A whole server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Server-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Listeners and per-connection limits.
    #[serde(default)]
    pub net: NetConfig,
    /// The game: which entities exist from the start, how clients are bound.
    pub game: GameConfig,
    /// Sandbox limits applied to every plugin call.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The local admin endpoint (hot swap).
    #[serde(default)]
    pub admin: AdminConfig,
    /// The embedded database.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The cluster this process is part of, if any.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The certificate of the TLS listeners.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The plugins to load; their entity types together make the game.
    #[serde(rename = "plugin", default)]
    pub plugins: Vec<PluginConfig>,
}

/// Set, replaces `[cluster] nats` (`wyrm cluster` sets it for the roles
/// it starts, with the NATS server it started).
pub const ENV_NATS: &str = "WYRM_NATS";
/// Set, replaces `[storage]` with this PostgreSQL URL (likewise).
pub const ENV_STORAGE_URL: &str = "WYRM_STORAGE_URL";

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Name shown in logs.
    pub name: String,
    /// Folder for the server's data (and, later, its database).
    pub data_dir: PathBuf,
    /// Folder for compiled plugins; `<data_dir>/cache` when unset.
    pub cache_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            name: "wyrm".into(),
            data_dir: PathBuf::from(".wyrm"),
            cache_dir: None,
        }
    }
}

/// `[net]`: each listener is optional; at least one must be set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// WebSocket (at `/ws`) and the static web page, on one HTTP port.
    pub websocket: Option<SocketAddr>,
    /// TCP with length-prefixed frames.
    pub tcp: Option<SocketAddr>,
    /// KCP (reliable UDP) with length-prefixed frames.
    pub kcp: Option<SocketAddr>,
    /// TCP with length-prefixed frames, over TLS (`[tls]`).
    pub tcp_tls: Option<SocketAddr>,
    /// WebSocket over TLS (`wss://…/ws`) and the web page over HTTPS.
    pub websocket_tls: Option<SocketAddr>,
    /// Folder served over HTTP on the WebSocket ports.
    pub web_root: Option<PathBuf>,
    /// Largest frame accepted from a client, in bytes.
    pub max_frame: usize,
    /// Bytes queued to one client (not yet taken by its socket) before it
    /// is judged too slow to keep and dropped, alone.
    pub client_queue_bytes: usize,
    /// Replaced by `client_queue_bytes`: setting it is an error that says
    /// so.
    #[serde(default)]
    pub client_queue: Option<serde::de::IgnoredAny>,
    /// Frames per second a client may send; bursts up to twice this.
    pub client_rate: u32,
    /// Threads for the network (each game has a thread of its own): by
    /// default the cores the games leave, at least one.
    pub threads: Option<usize>,
    /// A frame begun must be complete within this many milliseconds, or
    /// the connection is closed (a client trickling bytes holds nothing).
    pub frame_timeout_ms: u64,
    /// A connection that sends nothing at all (not even a `Ping`) for this
    /// many milliseconds is closed. WebSocket clients are pinged at half
    /// of it, so a browser's page need not ping.
    pub idle_timeout_ms: u64,
    /// Most client connections held at once, on all transports.
    pub max_connections: usize,
    /// Most client connections held at once from one IP address.
    pub max_connections_per_address: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            websocket: None,
            tcp: None,
            kcp: None,
            tcp_tls: None,
            websocket_tls: None,
            web_root: None,
            max_frame: wyrm_protocol::DEFAULT_MAX_FRAME,
            client_queue_bytes: 1024 * 1024,
            client_queue: None,
            client_rate: 200,
            threads: None,
            frame_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            max_connections: 20_000,
            max_connections_per_address: 1_000,
        }
    }
}

/// `[tls]`: the certificate `[net] tcp_tls` and `websocket_tls` present:
/// PEM files (reloaded for new connections when they change), or one made
/// for development.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// Its private key, PEM.
    pub key: Option<PathBuf>,
    /// Makes (once, in `<data_dir>/tls/`) a certificate for `localhost`
    /// issued by an authority of its own, and says how to trust it. For
    /// development only.
    pub self_signed: bool,
    /// How often the files are checked for a new certificate.
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            self_signed: false,
            reload_interval_ms: 2000,
        }
    }
}

/// `[storage]`: the game database — an embedded SQLite file by default, or
/// PostgreSQL — and the stats database (SQLite).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The game database (entities, key-value store, mailboxes), an SQLite
    /// file; `<data_dir>/wyrm.db` when unset.
    pub path: Option<PathBuf>,
    /// A PostgreSQL database for the game's data instead of the file
    /// (`postgres://user:password@host:5432/dbname`): what a cluster's
    /// processes share.
    pub url: Option<String>,
    /// CA certificates (PEM) to trust for PostgreSQL's TLS: with it (or
    /// `sslmode=require` in `url`, then trusting the system's roots) the
    /// connection is TLS or nothing, and the server's certificate must
    /// match the URL's host.
    pub ca: Option<PathBuf>,
    /// The stats database; `<data_dir>/stats.db` when unset.
    pub stats_path: Option<PathBuf>,
    /// How often changed persistent attributes are saved.
    pub save_interval_ms: u64,
    /// Sync every commit to the disk itself (SQLite `synchronous = FULL`):
    /// survives power loss, at a cost per commit. Without it, commits
    /// survive any crash of the server process.
    pub durable: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: None,
            url: None,
            ca: None,
            stats_path: None,
            save_interval_ms: 1000,
            durable: false,
        }
    }
}

/// `[cluster]`: a server whose clients may connect through gates in other
/// processes (`wyrm gate`), over NATS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS server (`nats://host:4222`, or `nats://user:pass@host:4222`);
    /// unset, the server is alone.
    pub nats: Option<String>,
    /// A NATS credentials file (`.creds`), for a NATS server that asks.
    pub nats_credentials: Option<PathBuf>,
    /// Speak TLS to NATS, trusting a server certificate these CA
    /// certificates (PEM) sign (a `tls://` URL trusts the system's roots).
    pub nats_ca: Option<PathBuf>,
    /// A client certificate and key (PEM) for a NATS server that verifies
    /// its clients: both or neither.
    pub nats_cert: Option<PathBuf>,
    pub nats_key: Option<PathBuf>,
    /// The cluster's name: its subjects on NATS start `wyrm.<name>.`, so
    /// clusters can share a NATS server.
    pub name: String,
    /// This process's gate number: 0 for `wyrm serve` (its own gate), 1 and
    /// up, each different, for `wyrm gate`.
    pub gate: u16,
    /// Games in processes of their own (`wyrm game`) that the server's
    /// dispatcher routes to, beside its own `[game] workers`: they are
    /// numbered after those (`workers` to `workers + games - 1`). They
    /// share the server's storage, so it must be PostgreSQL.
    pub games: u16,
    /// What `wyrm cluster` starts as gates 1, 2, …: where each listens.
    pub gates: Vec<GateListen>,
    /// A process not heard for this long is taken for gone (a game: its
    /// entities are loaded again on the games left; a gate: its clients
    /// end); every process beats six times as often. Shorter finds a dead
    /// process sooner but takes a stalled one (a NATS restart, a machine
    /// that stops for a moment) for dead sooner too. The same in every
    /// process of a cluster.
    pub lost_after_ms: u64,
}

/// Where a gate of `[cluster] gates` listens (`wyrm cluster` starts it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateListen {
    pub tcp: Option<SocketAddr>,
    pub websocket: Option<SocketAddr>,
    pub kcp: Option<SocketAddr>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats: None,
            nats_credentials: None,
            nats_ca: None,
            nats_cert: None,
            nats_key: None,
            name: "wyrm".into(),
            gate: 0,
            games: 0,
            gates: Vec::new(),
            lost_after_ms: 1500,
        }
    }
}

/// `[admin]`: the endpoint `wyrm swap` talks to. It listens on loopback by
/// default; every request needs the token, which the server writes with its
/// address to `<data_dir>/admin.json` (readable by the owner only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where to listen; unset turns the endpoint off. Port 0 picks a free
    /// port (written to `admin.json`).
    pub listen: Option<SocketAddr>,
    /// A fixed token; unset makes a random one at every start.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            token: None,
        }
    }
}

/// `[[plugin]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name used in logs and by admin commands.
    pub name: String,
    /// A `.wasm` component, or the folder of a Rust plugin crate that is
    /// built (for `wasm32-wasip2`) when the server starts.
    pub source: PathBuf,
    /// Cargo features to enable when `source` is a crate.
    #[serde(default)]
    pub features: Vec<String>,
}

impl Config {
    /// The game database's file (when it is SQLite).
    pub fn database_path(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("wyrm.db"))
    }

    /// The limits every client connection is held to.
    pub fn conn_limits(&self) -> wyrm_gate::ConnLimits {
        wyrm_gate::ConnLimits {
            max_frame: self.net.max_frame,
            queue_bytes: self.net.client_queue_bytes,
            rate: self.net.client_rate,
            frame_timeout: std::time::Duration::from_millis(self.net.frame_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(self.net.idle_timeout_ms),
        }
    }

    /// Where the gate listens, with `tls` for its TLS listeners (see
    /// [`tls`](Self::tls)).
    pub fn endpoints(&self, tls: Option<Arc<wyrm_gate::net::Tls>>) -> wyrm_gate::Endpoints {
        wyrm_gate::Endpoints {
            tcp: self.net.tcp,
            kcp: self.net.kcp,
            websocket: self.net.websocket,
            tcp_tls: self.net.tcp_tls,
            websocket_tls: self.net.websocket_tls,
            tls,
            web_root: self.net.web_root.clone(),
        }
    }

    /// The certificate of the TLS listeners, if any is set: loaded from
    /// `[tls]`'s files, or the development one (made first if need be,
    /// and returned too, to say how to trust it).
    pub fn tls(
        &self,
    ) -> anyhow::Result<Option<(Arc<wyrm_gate::net::Tls>, Option<wyrm_gate::net::SelfSigned>)>>
    {
        if self.net.tcp_tls.is_none() && self.net.websocket_tls.is_none() {
            return Ok(None);
        }
        let t = &self.tls;
        let (cert, key, dev) = match (&t.cert, &t.key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone(), None),
            _ => {
                let dev = wyrm_gate::net::self_signed(&self.server.data_dir.join("tls"))?;
                (dev.cert.clone(), dev.key.clone(), Some(dev))
            }
        };
        let tls = wyrm_gate::net::Tls::from_files(&cert, &key)
            .context("cannot use the TLS certificate ([tls] cert and key)")?;
        Ok(Some((Arc::new(tls), dev)))
    }

    /// Where the game database is.
    pub fn storage_location(&self) -> wyrm_storage::Location {
        match &self.storage.url {
            Some(url) => wyrm_storage::Location::Postgres {
                url: url.clone(),
                ca: self.storage.ca.clone(),
            },
            None => wyrm_storage::Location::Sqlite {
                path: self.database_path(),
                durable: self.storage.durable,
            },
        }
    }

    /// The stats database's file.
    pub fn stats_path(&self) -> PathBuf {
        self.storage
            .stats_path
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("stats.db"))
    }

    /// Where the running server publishes its admin address and token.
    pub fn admin_file(&self) -> PathBuf {
        self.server.data_dir.join("admin.json")
    }

    /// Where compiled plugins are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.server
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("cache"))
    }

    /// Threads the network runs on (`[net] threads`, or the cores the
    /// games leave, at least one).
    pub fn net_threads(&self) -> usize {
        self.net
            .threads
            .unwrap_or_else(|| cores().saturating_sub(self.workers()).max(1))
    }

    /// Games this process runs (`[game] workers`, or half the cores, at
    /// least one).
    pub fn workers(&self) -> usize {
        self.game.workers.unwrap_or_else(|| (cores() / 2).max(1))
    }

    /// Checks that the config can run a cluster's roles: `[cluster] games`
    /// or `gates` need NATS, and games PostgreSQL.
    pub fn check_cluster(&self) -> anyhow::Result<()> {
        let c = &self.cluster;

        if c.games > 0 && (c.nats.is_none() || self.storage.url.is_none()) {
            anyhow::bail!(
                "[cluster] games needs [cluster] nats (how games reach the dispatcher) and [storage] url (a PostgreSQL every game shares); `wyrm cluster` starts both itself"
            );
        }
        Ok(())
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let mut cfg: Config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        cfg.resolve_paths(base);
        // What `wyrm cluster` started for the roles it runs.
        if let Ok(url) = std::env::var(ENV_NATS) {
            cfg.cluster.nats = Some(url);
        }
        if let Ok(url) = std::env::var(ENV_STORAGE_URL) {
            cfg.storage.path = None;
            cfg.storage.url = Some(url);
        }
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.server.data_dir);
        if let Some(c) = &mut self.server.cache_dir {
            fix(c);
        }
        if let Some(p) = &mut self.storage.path {
            fix(p);
        }
        if let Some(p) = &mut self.storage.stats_path {
            fix(p);
        }
        if let Some(p) = &mut self.storage.ca {
            fix(p);
        }
        if let Some(w) = &mut self.net.web_root {
            fix(w);
        }
        for p in [&mut self.tls.cert, &mut self.tls.key]
            .into_iter()
            .flatten()
        {
            fix(p);
        }
        for p in &mut self.plugins {
            fix(&mut p.source);
        }
        let c = &mut self.cluster;
        for p in [
            &mut c.nats_credentials,
            &mut c.nats_ca,
            &mut c.nats_cert,
            &mut c.nats_key,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }

    /// How the roles prove themselves to NATS and check it.
    pub fn nats_security(&self) -> wyrm_fabric::Security {
        let c = &self.cluster;
        wyrm_fabric::Security {
            credentials: c.nats_credentials.clone(),
            ca: c.nats_ca.clone(),
            client_cert: c.nats_cert.clone().zip(c.nats_key.clone()),
        }
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        let c = &self.cluster;
        if !(300..=60_000).contains(&c.lost_after_ms) {
            anyhow::bail!(
                "[cluster] lost_after_ms must be between 300 and 60000 (it is {}): how long a process may go unheard before it is taken for gone",
                c.lost_after_ms
            );
        }
        let n = &self.net;
        let listeners = [n.websocket, n.tcp, n.kcp, n.tcp_tls, n.websocket_tls];
        if listeners.iter().all(Option::is_none) {
            anyhow::bail!(
                "[net] sets no listener: set at least one of websocket, tcp, kcp, websocket_tls, tcp_tls"
            );
        }
        let t = &self.tls;
        if t.cert.is_some() != t.key.is_some() {
            anyhow::bail!(
                "[tls] needs both cert (the PEM certificate chain) and key (its PEM private key)"
            );
        }
        if t.cert.is_some() && t.self_signed {
            anyhow::bail!("[tls] sets cert and key and self_signed: choose the files, or the development certificate");
        }
        if (n.tcp_tls.is_some() || n.websocket_tls.is_some()) && t.cert.is_none() && !t.self_signed
        {
            anyhow::bail!(
                "[net] tcp_tls / websocket_tls need a certificate: set [tls] cert and key (PEM files), or [tls] self_signed = true for development"
            );
        }
        if t.reload_interval_ms < 100 {
            anyhow::bail!("[tls] reload_interval_ms must be at least 100");
        }
        if n.max_frame < 64 || n.max_frame > 16 * 1024 * 1024 {
            anyhow::bail!("[net] max_frame must be between 64 bytes and 16 MiB");
        }
        if n.client_queue.is_some() {
            anyhow::bail!(
                "[net] client_queue (frames) was replaced by client_queue_bytes: the bytes queued \
                 to one client before it is dropped as too slow (default 1048576)"
            );
        }
        if n.threads == Some(0) {
            anyhow::bail!("[net] threads must be at least 1");
        }
        if n.client_queue_bytes < 64 * 1024 || n.client_rate == 0 {
            anyhow::bail!(
                "[net] client_queue_bytes must be at least 65536 and client_rate positive"
            );
        }
        if n.frame_timeout_ms < 100 || n.idle_timeout_ms < 1000 {
            anyhow::bail!(
                "[net] frame_timeout_ms must be at least 100 and idle_timeout_ms at least 1000"
            );
        }
        if n.max_connections == 0 || n.max_connections_per_address == 0 {
            anyhow::bail!("[net] max_connections and max_connections_per_address must be positive");
        }
        if self.plugins.is_empty() {
            anyhow::bail!("no [[plugin]] is configured");
        }
        let c = &self.cluster;
        if c.name.is_empty()
            || !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            anyhow::bail!(
                "[cluster] name must be letters, digits, '-' or '_' (it names NATS subjects)"
            );
        }
        if c.nats_cert.is_some() != c.nats_key.is_some() {
            anyhow::bail!("[cluster] nats_cert and nats_key go together: set both or neither");
        }
        if self.storage.url.is_some() && self.storage.path.is_some() {
            anyhow::bail!(
                "[storage] sets both path (an SQLite file) and url (PostgreSQL): keep the one to use"
            );
        }
        if self.storage.save_interval_ms == 0 {
            anyhow::bail!("[storage] save_interval_ms must be positive");
        }
        let l = &self.limits;
        if l.call_deadline_ms == 0 || l.memory_mb == 0 {
            anyhow::bail!("[limits] call_deadline_ms and memory_mb must be positive");
        }
        if l.value_bytes < 1024 || l.queued_bytes < l.value_bytes || l.timer_bytes < 1024 {
            anyhow::bail!(
                "[limits] value_bytes and timer_bytes must be at least 1024, and queued_bytes at \
                 least value_bytes (a call must be able to queue one value)"
            );
        }
        if !(1..=1000).contains(&self.game.space_tick_hz) {
            anyhow::bail!("[game] space_tick_hz must be between 1 and 1000");
        }
        if self.game.workers.is_some_and(|n| n > 256) {
            anyhow::bail!("[game] workers must be between 1 and 256");
        }
        if self.game.workers == Some(0) && self.cluster.games == 0 {
            anyhow::bail!(
                "[game] workers = 0 leaves no game to run: it is for a cluster's node that only dispatches (and is gate 0), with [cluster] games = 1 or more in processes of their own"
            );
        }
        self.game.position_resolution()?;
        self.game.space_resolutions()?;
        Ok(())
    }
}

/// The machine's cores (1 if it cannot tell).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
