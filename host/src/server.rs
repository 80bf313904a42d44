//! `wyrm serve`: one gate, one dispatcher and `[game] workers` games in one
//! process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;

use crate::admin;
use crate::config::Config;
use crate::swapper::Swapper;
use wyrm_game::msg::{Dispatcher, GameInput, ToGame};
use wyrm_game::{self as game, Game, GameChannels, GameStorage, World};
use wyrm_gate::{self as gate, net, ConnContext, Gate};
use wyrm_wire::GameId;

/// Messages from connections a game holds before connections wait.
pub(crate) const GAME_INBOX: usize = 16 * 1024;
/// Batches of output a gate holds before games wait.
const GATE_INBOX: usize = 256;
/// Connections starting or ending that the gate holds before they wait.
const GATE_REGISTRATIONS: usize = 4096;
use wyrm_runtime::{Limits, PluginRuntime};

/// A running server.
pub struct Server {
    /// Where WebSocket (and the web page) listen, if enabled.
    pub websocket: Option<SocketAddr>,
    /// Where TCP listens, if enabled.
    pub tcp: Option<SocketAddr>,
    /// Where KCP listens, if enabled.
    pub kcp: Option<SocketAddr>,
    /// Where TCP over TLS listens, if enabled.
    pub tcp_tls: Option<SocketAddr>,
    /// Where WebSocket over TLS (and the page over HTTPS) listen, if
    /// enabled.
    pub websocket_tls: Option<SocketAddr>,
    /// The development certificate the TLS listeners present, if they
    /// use one (`[tls] self_signed`).
    pub dev_certificate: Option<wyrm_gate::net::SelfSigned>,
    /// Where the admin endpoint listens, if enabled.
    pub admin: Option<SocketAddr>,
    /// Into each game from inside the server (swaps), by `GameId`.
    internal_tx: Arc<[game::InternalSender]>,
    dispatcher: Dispatcher,
    game_threads: Vec<std::thread::JoinHandle<()>>,
    /// Storage and stats threads; they end once the game has.
    storage_threads: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    runtime: Arc<PluginRuntime>,
    plugin_names: Arc<[String]>,
    tick_times: Vec<Arc<game::RecentTimes>>,
    migration_pauses: Vec<Arc<game::RecentTimes>>,
    counters: Vec<Arc<game::GameCounters>>,
    admission: net::Admission,
    /// Heartbeats to the rest of the cluster, when in one.
    cluster: Option<wyrm_fabric::Beating>,
    /// Swaps offered to the cluster's games in processes of their own.
    remote_swaps: Option<Arc<crate::cluster::RemoteSwaps>>,
}

impl Server {
    /// Builds and loads the plugins, starts the game thread and binds every
    /// configured listener. Must run inside a tokio runtime.
    pub async fn start(cfg: Config) -> anyhow::Result<Self> {
        cfg.check_cluster()?;
        let runtime = Arc::new(plugin_runtime(&cfg)?);

        let workers = cfg.workers();
        let mut inboxes = Vec::new();
        let mut ends = Vec::new();
        for _ in 0..workers {
            let (inbox, connections, internal) = game::inbox(GAME_INBOX);
            inboxes.push(inbox);
            ends.push((connections, internal));
        }
        let internal_tx: Vec<game::InternalSender> = ends.iter().map(|e| e.1.clone()).collect();
        // The cluster's games in processes of their own, after these: what
        // is routed to them is relayed from an inbox here.
        let mut relays = Vec::new();
        for i in 0..usize::from(cfg.cluster.games) {
            let (inbox, connections, internal) = wyrm_dispatcher::relay_inbox(GAME_INBOX);
            relays.push((GameId((workers + i) as u16), inbox));
            ends.push((connections, internal));
        }
        let dispatcher = Dispatcher::new(ends);
        let (gate_tx, gate_rx) = flume::bounded(GATE_INBOX);
        // This process's gate is gate 0; a cluster's other gates join.
        let gates = wyrm_game::msg::Gates::default();
        gates.set(wyrm_wire::GateId(0), Some(gate_tx.clone()));
        let (registrations_tx, registrations) = flume::bounded(GATE_REGISTRATIONS);

        // Opening databases and building, compiling and loading plugins is
        // slow, blocking work; so is bringing up each game's instances.
        let (games, storage_threads) = {
            let (runtime, cfg, dispatcher) = (runtime.clone(), cfg.clone(), dispatcher.clone());
            let gates = gates.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let answers = dispatcher.answers();
                let storage_answers = answers.clone();
                let opened = wyrm_storage::open(
                    &cfg.storage_location(),
                    &cfg.game.services,
                    // To the game that runs the entity, without waiting.
                    move |answer| storage_answers.deliver(GameInput::from(answer)),
                )?;
                let (stats, stats_thread) = game::StatsSink::open(&cfg.stats_path())?;
                let plugins = load_plugins(&runtime, &cfg)?;
                let hashers = std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(4);
                let passwords = game::PasswordPool::start(hashers, answers)
                    .context("cannot start password threads")?;
                let ids = game::EntityIds::new(opened.ids.clone(), opened.store.clone());
                let limits = game::GuestLimits::new(&cfg.limits, cfg.net.client_queue_bytes);
                let mut services = Some(opened.services);
                let mut games = Vec::new();
                for (i, inbox) in inboxes.into_iter().enumerate() {
                    let id = GameId(i as u16);
                    let storage = GameStorage {
                        ids: ids.clone(),
                        store: opened.store.clone(),
                        stats: stats.clone(),
                        // Services run on the first game.
                        services: services.take().unwrap_or_default(),
                        save_every: Duration::from_millis(cfg.storage.save_interval_ms),
                        recoverable: false,
                    };
                    let channels = GameChannels {
                        inbox,
                        routes: dispatcher.for_game(id),
                        passwords: passwords.clone(),
                        gate: gates.clone(),
                    };
                    let game = Game::new(plugins.clone(), &cfg.game, limits, channels, storage)
                        .with_context(|| format!("starting game {i}"))?;
                    games.push(game);
                }
                Ok((games, [opened.thread, stats_thread]))
            })
            .await
            .context("starting the game panicked")??
        };
        let tick_times: Vec<_> = games.iter().map(Game::tick_times).collect();
        let migration_pauses: Vec<_> = games.iter().map(Game::migration_pauses).collect();
        let counters: Vec<_> = games.iter().map(Game::counters).collect();
        let mut game_threads = Vec::new();
        for (i, game) in games.into_iter().enumerate() {
            let thread =
                game::spawn(game, GameId(i as u16)).context("cannot start a game thread")?;
            game_threads.push(thread);
        }

        // The first task routes the games' output; the ones added below
        // listen.
        let mut tasks = vec![tokio::spawn(Gate::new(registrations, gate_rx).run())];
        let ctx = ConnContext {
            gate: registrations_tx,
            upstream: dispatcher.clone(),
            limits: cfg.conn_limits(),
        };
        let admission =
            net::Admission::new(cfg.net.max_connections, cfg.net.max_connections_per_address);
        // One gate in this process: gate 0.
        let ids = Arc::new(wyrm_wire::ClientIds::new(wyrm_wire::GateId(0)));
        let mut server = Self {
            websocket: None,
            tcp: None,
            kcp: None,
            tcp_tls: None,
            websocket_tls: None,
            dev_certificate: None,
            admin: None,
            internal_tx: internal_tx.into(),
            dispatcher,
            game_threads,
            storage_threads: storage_threads.into(),
            tasks: Vec::new(),
            runtime,
            plugin_names: cfg.plugins.iter().map(|p| p.name.clone()).collect(),
            tick_times,
            migration_pauses,
            counters,
            admission: admission.clone(),
            cluster: None,
            remote_swaps: None,
        };

        let tls = cfg.tls()?;
        if let Some((tls, _)) = &tls {
            let every = std::time::Duration::from_millis(cfg.tls.reload_interval_ms);
            tasks.push(tls.watch(every));
        }
        let (tls, dev) = tls.unzip();
        server.dev_certificate = dev.flatten();
        let listeners = gate::listen(&cfg.endpoints(tls), ctx, admission, ids).await?;
        (server.tcp, server.kcp, server.websocket) =
            (listeners.tcp, listeners.kcp, listeners.websocket);
        (server.tcp_tls, server.websocket_tls) = (listeners.tcp_tls, listeners.websocket_tls);
        tasks.extend(listeners.tasks);
        if cfg.cluster.nats.is_some() {
            let node =
                crate::cluster::serve_node(&cfg, server.dispatcher.clone(), gates, gate_tx, relays)
                    .await?;
            // Stopped with the listeners: no client is taken in once
            // shutting down has begun.
            tasks.extend(node.tasks);
            server.cluster = Some(node._beating);
            server.remote_swaps = Some(node.swaps);
        }
        // After the cluster: its swaps reach the remote games too.
        if let Some(addr) = cfg.admin.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for admin requests on {addr}"))?;
            let local = listener.local_addr()?;
            let token = admin::publish(&cfg, local)?;
            server.admin = Some(local);
            tasks.push(tokio::spawn(admin::serve(
                listener,
                token,
                server.swapper(),
            )));
        }
        server.tasks = tasks;
        tracing::info!(
            name = %cfg.server.name,
            websocket = ?server.websocket,
            tcp = ?server.tcp,
            kcp = ?server.kcp,
            tcp_tls = ?server.tcp_tls,
            websocket_tls = ?server.websocket_tls,
            admin = ?server.admin,
            "server started"
        );
        Ok(server)
    }

    /// Client connections open now, on all transports (a KCP session
    /// counts from its handshake's end).
    pub fn connections(&self) -> usize {
        self.admission.open()
    }

    /// Checkpoints taken and faulted plugins revived so far, by every game.
    pub fn game_counters(&self) -> game::GameCounters {
        game::GameCounters::sum(self.counters.iter().map(|c| &**c))
    }

    /// Each game's own counts, by game.
    pub fn counters_by_game(&self) -> &[Arc<game::GameCounters>] {
        &self.counters
    }

    /// How long the recent space ticks of every game took (each game's,
    /// oldest first, one game after another).
    pub fn tick_times(&self) -> Vec<Duration> {
        self.tick_times.iter().flat_map(|t| t.recent()).collect()
    }

    /// How long the entities that recently moved between games had their
    /// messages held (from the hold to their arrival), every game's.
    pub fn migration_pauses(&self) -> Vec<Duration> {
        self.migration_pauses
            .iter()
            .flat_map(|t| t.recent())
            .collect()
    }

    /// The game (worker) that runs entity `id`, if any does.
    pub fn game_of(&self, id: wyrm_wire::EntityId) -> Option<u16> {
        self.dispatcher.game_of(id).map(|g| g.0)
    }

    /// A handle that swaps this server's plugins.
    pub fn swapper(&self) -> Swapper {
        Swapper {
            games: self.internal_tx.clone(),
            runtime: self.runtime.clone(),
            plugin_names: self.plugin_names.clone(),
            remote: self.remote_swaps.clone(),
        }
    }

    /// Stops accepting, saves every persistent entity, stops the game and
    /// waits until storage has closed its files.
    pub async fn shutdown(mut self) {
        // Stop accepting; then stop the game through the dispatcher, so
        // everything clients sent before now is served and saved first.
        let (routing, listeners) = self.tasks.split_at(1);
        for t in listeners {
            t.abort();
        }
        if self.dispatcher.to_game(ToGame::Shutdown).await.is_err() {
            tracing::debug!("the game had already stopped");
        }
        let games = std::mem::take(&mut self.game_threads);
        let storage = std::mem::take(&mut self.storage_threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in games {
                let _ = t.join();
            }
            for t in storage {
                let _ = t.join();
            }
        })
        .await;
        for t in routing {
            t.abort();
        }
    }
}

/// The plugin runtime `[limits]` asks for, caching compiled code in the
/// cache folder.
pub(crate) fn plugin_runtime(cfg: &Config) -> anyhow::Result<PluginRuntime> {
    let limits = Limits {
        deadline: Duration::from_millis(cfg.limits.call_deadline_ms),
        memory_bytes: cfg.limits.memory_mb * 1024 * 1024,
    };
    PluginRuntime::new(cfg.cache_dir(), limits)
}

/// Loads every configured plugin (building Rust crates from source first).
pub(crate) fn load_plugins(
    runtime: &PluginRuntime,
    cfg: &Config,
) -> anyhow::Result<Vec<wyrm_runtime::PluginCode<World>>> {
    let mut out = Vec::new();
    for p in &cfg.plugins {
        let wasm = if p.source.is_dir() {
            let opts = wyrm_toolchains::BuildOptions {
                features: p.features.clone(),
                debug: false,
            };
            wyrm_toolchains::build_plugin(&p.source, &opts)?
        } else {
            p.source.clone()
        };
        out.push(runtime.load(&p.name, &wasm)?);
    }
    Ok(out)
}
