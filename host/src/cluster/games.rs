//! Games in processes of their own (`wyrm game`), and the node's side of
//! them.
//!
//! - The node's dispatcher routes to a remote game as to its own: into an
//!   inbox ([`relay_inbox`](wyrm_dispatcher::relay_inbox)), which a thread
//!   relays at once, batched, to the game's `game` subject. One publisher
//!   on one subject keeps the order the dispatcher routed in, which is
//!   what keeps an entity's messages in order.
//! - What the game's `GameRoutes` would do under the dispatcher's lock in
//!   one process it sends as `RouteOp`s on its `routes` subject, in order;
//!   the node does each in turn with `Dispatcher::apply` and answers those
//!   with an answer on the game's `answers` subject, which the game thread
//!   waits for ([`FabricRouteLink`]).
//! - The game sends its output to every gate's subject itself (gate 0 is
//!   the node's own), split by gate as on the node.
//! - Storage is PostgreSQL, shared with the node and every other game; the
//!   game's storage and password threads answer straight into its inbox.
//! - A game waits to hear the node before it starts, and says when it is
//!   ready (`RouteOp::Up`): only then does the dispatcher place entities
//!   on it. A game not heard for `[cluster] lost_after_ms` is lost: its
//!   entities are loaded again on the games left from their last save and
//!   checkpoint, with their players (`Dispatcher::game_lost`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use wyrm_dispatcher::RouteLink;
use wyrm_fabric::{Address, Beating, Change, Fabric, Outbox, Presence, Role};
use wyrm_game::msg::{
    Answers, Dispatcher, GameInput, GameRoutes, GateBatch, Gates, HeldBatch, Inbox, ToGame,
};
use wyrm_game::{self as game, Game, GameChannels, GameStorage};
use wyrm_wire::{GameId, GateId, RouteAnswer, RouteOp, RouteReply, RouteRequest};

use super::gates::GateLinks;
use super::{connect, drain, hear, run_id};
use crate::config::Config;

/// Messages relayed to a remote game that wait for the fabric before the
/// dispatcher's relay thread (and then the connections) wait.
const RELAY_QUEUE: usize = 16 * 1024;
/// Route requests a game's thread queues for the fabric before it waits.
const ROUTES_QUEUE: usize = 16 * 1024;
/// Longest a game thread waits for the dispatcher to answer; past it, the
/// game goes on as if the dispatcher knew nothing (and logs it).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The node's side: relays what is routed to each remote game, does what
/// they tell the dispatcher and answers what they ask, and hands their
/// output for gate 0 to `own_gate`.
pub(super) async fn serve_games(
    fabric: &Fabric,
    dispatcher: Dispatcher,
    relays: Vec<(GameId, Inbox)>,
    own_gate: flume::Sender<HeldBatch>,
    run: u64,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    // Each may be running already (this node restarted): until it has
    // reported what it runs, a message for an id no game has reported
    // waits, rather than going to a mailbox.
    dispatcher.await_reports(relays.iter().map(|(g, _)| *g));
    for (game, inbox) in relays {
        // Not up until it is heard: nothing new is placed on it.
        dispatcher.set_game_up(game, false);
        let (tx, rx) = flume::bounded::<(ToGame, ())>(RELAY_QUEUE);
        fabric.publish_from::<_, ToGame, ()>(Address::Game(game.0), rx);
        drain(format!("wyrm-relay-{}", game.0), inbox, move |msg| {
            match wyrm_dispatcher::Routed::into_wire(msg) {
                Ok(wire) => tx.send((wire, ())).is_ok(),
                Err(other) => {
                    tracing::debug!(?other, "not for a game in another process; dropped");
                    true
                }
            }
        })
        .context("cannot start a relay thread")?;
    }
    let mut requests = fabric
        .inbox_of_all::<RouteRequest>(Address::Routes(0))
        .await?;
    let answers_fabric = fabric.clone();
    tasks.push(tokio::spawn(async move {
        let mut answers: HashMap<u16, Outbox<RouteReply>> = HashMap::new();
        while let Some((from, batch)) = requests.next().await {
            let Address::Routes(g) = from else { continue };
            for RouteRequest { ask, op } in batch {
                let answer = match op {
                    // Answered in order, with this node's run: a game
                    // whose messages went to a node that died before it
                    // confirmed them sends them again.
                    RouteOp::Settle => Some(RouteAnswer::Settled(run)),
                    op => dispatcher.apply(GameId(g), op),
                };
                let (Some(ask), Some(answer)) = (ask, answer) else {
                    continue;
                };
                let out = answers
                    .entry(g)
                    .or_insert_with(|| answers_fabric.outbox(Address::Answers(g), ROUTES_QUEUE));
                if out.send(RouteReply { ask, answer }, ()).await.is_err() {
                    return;
                }
            }
        }
    }));
    let mut to_own_gate = fabric.inbox::<GateBatch>(Address::Gate(0)).await?;
    tasks.push(tokio::spawn(async move {
        while let Some((_, batches)) = to_own_gate.next().await {
            for batch in batches {
                let out = HeldBatch {
                    batch,
                    held: Vec::new(),
                };
                if own_gate.send_async(out).await.is_err() {
                    return;
                }
            }
        }
    }));
    Ok(tasks)
}

/// A game's way to the node's dispatcher over the fabric: requests go out
/// in order on its `routes` subject; answers come back on its `answers`
/// subject, matched by number, to the game thread waiting for them.
struct FabricRouteLink {
    out: flume::Sender<(RouteRequest, ())>,
    waiting: Arc<Mutex<HashMap<u64, flume::Sender<RouteAnswer>>>>,
    next: AtomicU64,
    /// The node is heard: while it is not, nothing is sent and no question
    /// waits for an answer that cannot come.
    node_heard: AtomicBool,
    /// Something was told since the last [`settle`](RouteLink::settle).
    told: AtomicBool,
    /// Messages for entities on other games (`RouteOp::Send`) the node may
    /// not have passed on: those told since its last answer (lost with it,
    /// if it dies now) and, while it is away and until this game has
    /// rejoined a new one, every one told. Sent again, in order, once the
    /// game has rejoined: at least once (one the old node passed on just
    /// before it died arrives twice).
    unsure: Mutex<VecDeque<RouteOp>>,
    /// The node was lost and the game has not rejoined a new one yet:
    /// messages wait in `unsure`.
    holding: AtomicBool,
    /// The run of the node that answered the last `Settle`.
    node_run: AtomicU64,
    /// Messages dropped from `unsure` for want of room (logged now and
    /// then).
    dropped: AtomicU64,
}

/// Most messages a game holds for a node that is away; past it the
/// oldest are dropped, with a log line.
const UNSURE_MAX: usize = 65_536;

/// Messages kept unsure of before the game asks the node to confirm them
/// (otherwise it does before each round's frames go out).
const SETTLE_EVERY: usize = 4096;

impl FabricRouteLink {
    /// The node is gone: nothing is sent, messages are held, and a
    /// question waiting for its answer stops waiting now.
    fn node_lost(&self) {
        self.holding.store(true, Ordering::Relaxed);
        self.node_heard.store(false, Ordering::Relaxed);
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Keeps `op` (a `Send`) until the node is known to have it; how many
    /// are kept now.
    fn keep(&self, op: RouteOp) -> usize {
        let mut unsure = self.unsure.lock().unwrap_or_else(|e| e.into_inner());
        if unsure.len() >= UNSURE_MAX {
            unsure.pop_front();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_multiple_of(10_000) {
                tracing::error!(
                    dropped = dropped + 1,
                    "more than {UNSURE_MAX} messages held for the cluster's node: the oldest are dropped"
                );
            }
        }
        unsure.push_back(op);
        unsure.len()
    }
}

impl FabricRouteLink {
    async fn start(fabric: &Fabric, game: GameId) -> anyhow::Result<Self> {
        let waiting: Arc<Mutex<HashMap<u64, flume::Sender<RouteAnswer>>>> = Arc::default();
        let mut answers = fabric.inbox::<RouteReply>(Address::Answers(game.0)).await?;
        let w = waiting.clone();
        tokio::spawn(async move {
            while let Some((_, replies)) = answers.next().await {
                for RouteReply { ask, answer } in replies {
                    let to = w.lock().unwrap_or_else(|e| e.into_inner()).remove(&ask);
                    // One that waited too long has gone on without it.
                    if let Some(to) = to {
                        let _ = to.send(answer);
                    }
                }
            }
        });
        let (out, rx) = flume::bounded(ROUTES_QUEUE);
        fabric.publish_from::<_, RouteRequest, ()>(Address::Routes(game.0), rx);
        Ok(Self {
            out,
            waiting,
            next: AtomicU64::new(1),
            node_heard: AtomicBool::new(true),
            told: AtomicBool::new(false),
            unsure: Mutex::new(VecDeque::new()),
            holding: AtomicBool::new(false),
            node_run: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }
}

impl RouteLink for FabricRouteLink {
    fn tell(&self, op: RouteOp) {
        let send = matches!(op, RouteOp::Send { .. });
        if send && self.holding.load(Ordering::Relaxed) {
            self.keep(op);
            return;
        }
        if !self.node_heard.load(Ordering::Relaxed) {
            // The rest is what the game reports when it rejoins.
            return;
        }
        let kept = send.then(|| self.keep(op.clone()));
        self.told.store(true, Ordering::Relaxed);
        if self.out.send((RouteRequest { ask: None, op }, ())).is_err() {
            tracing::error!("the fabric is gone: a route update was lost");
        }
        // A game that sends much and shows clients little settles now and
        // then all the same, so what it keeps stays small.
        if kept.is_some_and(|n| n >= SETTLE_EVERY) {
            self.settle();
        }
    }

    fn settle(&self) {
        if self.told.swap(false, Ordering::Relaxed) {
            // An answer in order is the proof; none (the node gone) has
            // nothing to wait for. What was kept is confirmed only by the
            // node that confirmed last time: a new one may have started
            // after the old one took (and lost) them. (Told from this
            // thread only: nothing was told while it waited.)
            if let Some(RouteAnswer::Settled(run)) = self.ask(RouteOp::Settle) {
                let same = self.node_run.swap(run, Ordering::Relaxed) == run;
                if same && !self.holding.load(Ordering::Relaxed) {
                    self.unsure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clear();
                }
            }
        }
    }

    fn rejoined(&self) {
        let held = std::mem::take(&mut *self.unsure.lock().unwrap_or_else(|e| e.into_inner()));
        self.holding.store(false, Ordering::Relaxed);
        if !held.is_empty() {
            tracing::info!(
                messages = held.len(),
                "sending again what the lost node may not have passed on"
            );
        }
        for op in held {
            self.tell(op);
        }
    }

    fn ask(&self, op: RouteOp) -> Option<RouteAnswer> {
        // Rejoining is what it asks once the node is back.
        if !self.node_heard.load(Ordering::Relaxed) && !matches!(op, RouteOp::Rejoin { .. }) {
            return None;
        }
        let ask = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        let lock = || self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        lock().insert(ask, tx);
        let request = RouteRequest { ask: Some(ask), op };
        if self.out.send((request, ())).is_err() {
            lock().remove(&ask);
            return None;
        }
        let answer = rx.recv_timeout(ASK_TIMEOUT).ok();
        if answer.is_none() {
            lock().remove(&ask);
            // Lost with the node, if it went meanwhile: nothing to say.
            if self.node_heard.load(Ordering::Relaxed) {
                tracing::warn!(
                    "the cluster's node did not answer within {ASK_TIMEOUT:?}: going on as if it knew nothing"
                );
            }
        }
        answer
    }
}

/// `wyrm game`: one game in a process of its own, joined to the cluster's
/// node: its plugins, world, timers and storage thread, fed by the node's
/// dispatcher and writing to the gates itself.
pub struct GameProcess {
    /// The game's number.
    pub id: GameId,
    /// Into the game's inbox, to stop it.
    internal: game::InternalSender,
    /// Holds the inbox open: with no sender left the game stops.
    _inbox_open: game::InboxSender,
    counters: Arc<game::GameCounters>,
    /// The game's, then storage's and stats'.
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Fires when the game thread has ended.
    done: tokio::sync::oneshot::Receiver<()>,
    tasks: Vec<JoinHandle<()>>,
    _beating: Beating,
}

impl GameProcess {
    /// Joins the cluster as game `id` (one of the node's `[cluster] games`,
    /// numbered after its `[game] workers`), waits to hear the node, loads
    /// the plugins and starts the game; then beats, and the dispatcher
    /// places entities on it.
    pub async fn start(cfg: Config, id: u16) -> anyhow::Result<Self> {
        let first = cfg.workers() as u16;
        let last = first + cfg.cluster.games;
        anyhow::ensure!(
            (first..last).contains(&id),
            "game {id} is not one of this cluster's: with [game] workers = {first} on the node and [cluster] games = {}, `wyrm game` takes --id {first} to {}",
            cfg.cluster.games,
            last.saturating_sub(1)
        );
        cfg.check_cluster()?;
        let game_id = GameId(id);
        let fabric = connect(&cfg, &format!("{} game {id}", cfg.server.name)).await?;
        let mut roster = fabric.roster().await?;
        let listening_since = tokio::time::Instant::now();
        tracing::info!(game = id, cluster = %cfg.cluster.name, "waiting to hear the cluster's node");
        hear(&mut roster, Role::Node).await?;

        let link = Arc::new(FabricRouteLink::start(&fabric, game_id).await?);
        let (inbox, inbox_open, internal) = game::inbox(crate::server::GAME_INBOX);
        let mut tasks = Vec::new();
        let mut from_dispatcher = fabric.inbox::<ToGame>(Address::Game(id)).await?;
        // Gate 0 is the node's; the others join and leave, and a client
        // of one not heard yet brings its link with it.
        let gates = GateLinks::new(fabric.clone(), Gates::default());
        gates.ensure(GateId(0));
        let (feed, links) = (internal.clone(), gates.clone());
        tasks.push(tokio::spawn(async move {
            while let Some((_, batch)) = from_dispatcher.next().await {
                for msg in batch {
                    let client = match &msg {
                        ToGame::ClientConnected { client } | ToGame::TakeClient { client, .. } => {
                            Some(*client)
                        }
                        ToGame::Arrive(m) => m.client,
                        ToGame::Reload { client, .. } => *client,
                        _ => None,
                    };
                    if let Some(client) = client {
                        links.ensure(client.gate());
                    }
                    if feed.send(GameInput::from(msg)).is_err() {
                        return;
                    }
                }
            }
        }));

        let (game, runtime, threads) = {
            let (cfg, answers) = (cfg.clone(), Answers::to_game(internal.clone()));
            let (gates, routes) = (gates.gates(), GameRoutes::remote(game_id, link.clone()));
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let storage_answers = answers.clone();
                // Game 0 runs the services (on a node without games of
                // its own, this is it): it loads those saved before.
                let services = if id == 0 { &cfg.game.services[..] } else { &[] };
                let opened =
                    wyrm_storage::open(&cfg.storage_location(), services, move |answer| {
                        storage_answers.deliver(GameInput::from(answer))
                    })?;
                // Its own stats file: SQLite, one writer.
                let stats_path = cfg.server.data_dir.join(format!("stats-game-{id}.db"));
                let (stats, stats_thread) = game::StatsSink::open(&stats_path)?;
                let runtime = Arc::new(crate::server::plugin_runtime(&cfg)?);
                let plugins = crate::server::load_plugins(&runtime, &cfg)?;
                let passwords = game::PasswordPool::start(2, answers)
                    .context("cannot start password threads")?;
                let storage = GameStorage {
                    ids: game::EntityIds::new(opened.ids.clone(), opened.store.clone()),
                    store: opened.store.clone(),
                    stats,
                    services: opened.services,
                    save_every: Duration::from_millis(cfg.storage.save_interval_ms),
                    // Its entities come back on the games left if it dies.
                    recoverable: true,
                };
                let channels = GameChannels {
                    inbox,
                    routes,
                    passwords,
                    gate: gates,
                };
                let limits = game::GuestLimits::new(&cfg.limits, cfg.net.client_queue_bytes);
                let game = Game::new(plugins, &cfg.game, limits, channels, storage)
                    .with_context(|| format!("starting game {id}"))?;
                Ok((game, runtime, vec![opened.thread, stats_thread]))
            })
            .await
            .context("starting the game panicked")??
        };
        tasks.push(super::swaps::serve_swaps(&fabric, game_id, runtime, internal.clone()).await?);
        let counters = game.counters();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let game_thread = std::thread::Builder::new()
            .name(format!("wyrm-game-{id}"))
            .spawn(move || {
                game.run();
                let _ = done_tx.send(());
            })
            .context("cannot start the game thread")?;
        let mut threads = threads;
        threads.insert(0, game_thread);
        let beat = fabric.beat_every();
        let seen = gates.clone();
        super::ensure_alone(&mut roster, (Role::Game, id), listening_since, beat, |c| {
            if let Change::Joined(p) = c {
                if p.role == Role::Gate {
                    seen.ensure(GateId(p.id));
                }
            }
        })
        .await?;
        let beating = fabric.beat(Presence {
            role: Role::Game,
            id,
            run: run_id(),
        });
        let (node_link, to_game) = (link.clone(), internal.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(change) = roster.next().await {
                match change {
                    Change::Joined(p) if p.role == Role::Gate => gates.ensure(GateId(p.id)),
                    Change::Left(p) if p.role == Role::Gate => gates.remove(GateId(p.id)),
                    // Its players went with it; once it is back (a new
                    // dispatcher), the game reports what it runs.
                    Change::Left(p) if p.role == Role::Node => {
                        tracing::warn!(game = id, "the cluster's node is gone");
                        node_link.node_lost();
                        let _ = to_game.send(GameInput::Node { back: false });
                    }
                    Change::Joined(p)
                        if p.role == Role::Node
                            && !node_link.node_heard.swap(true, Ordering::Relaxed) =>
                    {
                        tracing::info!(game = id, "the cluster's node is back: rejoining");
                        let _ = to_game.send(GameInput::Node { back: true });
                    }
                    _ => {}
                }
            }
        }));
        // Ready: the dispatcher may place entities here from now on.
        let up = tokio::task::spawn_blocking(move || link.ask(RouteOp::Up)).await?;
        anyhow::ensure!(
            up == Some(RouteAnswer::Yes(true)),
            "the cluster's node did not take game {id} in: is another process running as game {id}?"
        );
        tracing::info!(game = id, "game started");
        Ok(Self {
            id: game_id,
            internal,
            _inbox_open: inbox_open,
            counters,
            threads,
            done,
            tasks,
            _beating: beating,
        })
    }

    /// Checkpoints taken, faulted plugins revived and entities arrived
    /// from other games, so far.
    pub fn counters(&self) -> &game::GameCounters {
        &self.counters
    }

    /// Runs until `stop` (then the game serves what it has, saves every
    /// persistent entity and ends) or until the game ends by itself (the
    /// node shut down); returns once storage has closed.
    pub async fn run_until(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::select! {
            _ = stop => {
                tracing::info!(game = self.id.0, "shutting down");
                let _ = self.internal.send(ToGame::Shutdown);
            }
            _ = &mut self.done => {}
        }
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for GameProcess {
    /// A game dropped without [`run_until`](Self::run_until) (in tests)
    /// stops as at a shutdown; its tasks end.
    fn drop(&mut self) {
        let _ = self.internal.send(ToGame::Shutdown);
        for t in &self.tasks {
            t.abort();
        }
    }
}
