//! The game: one logic thread that owns the world and the plugin instances.
//! Everything that touches guest code happens here, one message at a time,
//! in order.
//!
//! A message from the dispatcher becomes work (a hook or a method call);
//! work a call produces (calls to other entities, new entities, destroys) is
//! queued and run after it, so a plugin is never re-entered. A call that
//! faults fails alone: the instance is replaced by a fresh one that takes
//! over every entity, and the queue carries on.

mod attrs;
mod checkpoint;
pub mod config;
mod entity_ids;
mod migration;
pub mod msg;
mod passwords;
mod space;
mod swap;
mod timers;
mod types;
mod world;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wyrm_protocol::ErrorCode;

use crate::config::GameConfig;
use crate::msg::{GameInput, GateBatch, HeldBatch, ToGame};
use wyrm_runtime::{clip, PluginCode, PluginInstance, MAX_MESSAGE};

pub use crate::msg::{Inbox, InboxSender, InternalSender, Received};
pub use checkpoint::GameCounters;
pub use entity_ids::EntityIds;
pub use passwords::PasswordPool;
pub use swap::{Ballot, Decision, SwapOutcome, SwapReport, SwapRequest};
pub use world::{GuestLimits, World};
pub use wyrm_dispatcher::{inbox, GameStopped};

/// Work items run before the game looks at its inbox again, so an entity
/// that keeps calling itself cannot starve clients.
const WORK_BATCH: usize = 4096;

/// Longest the game runs queued work before it looks at its inbox again
/// (it finishes the call in progress, which may take up to the call
/// deadline): a plugin whose calls each run close to the deadline holds
/// the inbox for one call, not for a batch of them.
const WORK_TIME: Duration = Duration::from_millis(10);

/// Longest a checkpoint or a swap waits for a moment without queued work
/// before it copies a chunk anyway: a plugin that keeps the queue busy
/// forever (an entity calling itself) must not stop every plugin's
/// checkpoints and swaps.
const CHORE_WAIT: Duration = Duration::from_millis(100);

/// Messages the game takes from its inbox before it sends what they
/// produced: everything waiting, up to this many, or this much time.
const INBOX_BATCH: usize = 1024;
const INBOX_BATCH_TIME: Duration = Duration::from_millis(5);

/// How a game talks to the rest of the process.
pub struct GameChannels {
    /// Everything sent to the game (see [`inbox`]).
    pub inbox: Inbox,
    /// What the game tells the dispatcher about its entities.
    pub routes: crate::msg::GameRoutes,
    /// Password hashing, shared by every game (its threads answer through
    /// the dispatcher, to whichever game runs the entity).
    pub passwords: PasswordPool,
    /// Where its output for clients goes, a batch at a time (bounded: the
    /// game waits when the gate falls behind).
    pub gate: wyrm_dispatcher::Gates,
}

struct PluginSlot {
    code: PluginCode<World>,
    instance: PluginInstance<World>,
    /// Counts the instances this slot has had, so work begun on one (a
    /// checkpoint) can tell it is gone.
    generation: u64,
    /// How many entities an export or import call takes.
    chunker: checkpoint::Chunker,
    /// Set while the plugin cannot be revived.
    down: Option<checkpoint::Down>,
}

impl PluginSlot {
    fn new(code: PluginCode<World>, instance: PluginInstance<World>) -> Self {
        Self {
            code,
            instance,
            generation: 0,
            chunker: checkpoint::Chunker::new(),
            down: None,
        }
    }
}

/// A game, ready to run on its own thread.
pub struct Game {
    /// Present except while lent to a plugin during a call.
    world: Option<Box<World>>,
    plugins: Vec<PluginSlot>,
    inbox: Inbox,
    gate: wyrm_dispatcher::Gates,
    boot_entity: String,
    /// Per plugin, its last saved private state.
    checkpoints: Vec<Option<checkpoint::Checkpoint>>,
    /// Checkpoints being taken, a chunk between messages.
    checkpointing: VecDeque<checkpoint::CheckpointRun>,
    counters: Arc<GameCounters>,
    checkpoint_every: Option<Duration>,
    next_checkpoint: Option<Instant>,
    save_every: Duration,
    next_save: Instant,
    /// The swap being copied, if any.
    swapping: Option<swap::ActiveSwap>,
    space_tick: Duration,
    next_space_tick: Instant,
    last_space_tick: Instant,
    tick_times: Arc<RecentTimes>,
    /// Pauses of the entities that migrated here.
    migration_pauses: Arc<RecentTimes>,
    last_overrun_warning: Option<Instant>,
    /// When a checkpoint or swap last copied a chunk.
    last_chore: Instant,
}

/// How long the most recent of something took (a space tick: logic, AOI,
/// position sync; a migration's pause), for monitoring and benchmarks.
#[derive(Debug, Default)]
pub struct RecentTimes(Mutex<VecDeque<Duration>>);

impl RecentTimes {
    const KEEP: usize = 1024;

    pub(crate) fn record(&self, d: Duration) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == Self::KEEP {
            q.pop_front();
        }
        q.push_back(d);
    }

    /// The last (up to 1024) tick durations, oldest first.
    pub fn recent(&self) -> Vec<Duration> {
        let q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().copied().collect()
    }
}

/// Storage as a game uses it: each operation carries what it holds against
/// the plugin that asked (`[limits] queued_bytes`) until its reply has run.
pub type Store = wyrm_storage::Store<Option<wyrm_dispatcher::Charge>>;
/// The stats sink as a game uses it: an event holds its bytes against the
/// plugin that emitted it until it is written.
pub type StatsSink = wyrm_storage::StatsSink<Option<wyrm_dispatcher::Charge>>;

/// What a game persists through (see [`wyrm_storage`]).
pub struct GameStorage {
    /// The storage thread.
    pub store: Store,
    /// The stats sink.
    pub stats: StatsSink,
    /// Entity ids, shared by every game of the process.
    pub ids: Arc<EntityIds>,
    /// Service entities earlier runs saved, by type.
    pub services: std::collections::HashMap<String, wyrm_storage::LoadedEntity>,
    /// How often changed persistent entities are saved.
    pub save_every: Duration,
    /// Write checkpoints of persistent entities' private state to storage
    /// too: a game in a process of its own, whose entities are loaded
    /// again elsewhere (with that state) if the process dies.
    pub recoverable: bool,
}

impl Game {
    /// Instantiates `plugins` (already loaded by `runtime`), checks the
    /// config against the entity types they declare and brings up the
    /// service entities (loaded, if an earlier run saved them).
    pub fn new(
        plugins: Vec<PluginCode<World>>,
        cfg: &GameConfig,
        limits: GuestLimits,
        channels: GameChannels,
        storage: GameStorage,
    ) -> anyhow::Result<Self> {
        let GameChannels {
            inbox,
            routes,
            passwords,
            gate,
        } = channels;
        let mut types = types::TypeRegistry::default();
        let mut slots = Vec::new();
        for (i, mut code) in plugins.into_iter().enumerate() {
            code.set_slot(i);
            let instance = code.instantiate()?;
            let info = instance.info();
            tracing::info!(
                plugin = code.name(),
                name = %info.name,
                version = %info.version,
                types = ?info.entity_types.iter().map(|t| &t.name).collect::<Vec<_>>(),
                "plugin ready"
            );
            types.add_plugin(i, info)?;
            slots.push(PluginSlot::new(code, instance));
        }
        if types.find(&cfg.boot_entity).is_none() {
            anyhow::bail!(
                "[game] boot_entity {:?} is not an entity type of any plugin",
                cfg.boot_entity
            );
        }
        let GameStorage {
            store,
            stats,
            ids,
            mut services,
            save_every,
            recoverable,
        } = storage;
        let persistence = world::Persistence::new(store, stats, recoverable);
        let spaces = space::Spaces::new(cfg.position_resolution()?, cfg.space_resolutions()?);
        // The first game runs the services; the others find them through
        // the dispatcher.
        let first = routes.game() == wyrm_wire::GameId(0);
        let mut world = World::new(types, spaces, passwords, persistence, routes, ids, limits);
        world.set_plugins(slots.iter().map(|s| s.code.name().to_owned()).collect());
        for s in cfg.services.iter().filter(|_| first) {
            world
                .start_service(s, services.remove(s))
                .map_err(|e| anyhow::anyhow!("[game] service {s:?}: {e}"))?;
        }
        let checkpoint_every = (cfg.checkpoint_interval_ms > 0)
            .then(|| Duration::from_millis(cfg.checkpoint_interval_ms));
        let mut game = Self {
            world: Some(Box::new(world)),
            checkpoints: slots.iter().map(|_| None).collect(),
            checkpointing: VecDeque::new(),
            counters: Arc::default(),
            plugins: slots,
            inbox,
            gate,
            boot_entity: cfg.boot_entity.clone(),
            checkpoint_every,
            next_checkpoint: checkpoint_every.map(|d| Instant::now() + d),
            save_every,
            next_save: Instant::now() + save_every,
            swapping: None,
            space_tick: Duration::from_secs(1) / cfg.space_tick_hz.max(1),
            next_space_tick: Instant::now(),
            last_space_tick: Instant::now(),
            tick_times: Arc::default(),
            migration_pauses: Arc::default(),
            last_overrun_warning: None,
            last_chore: Instant::now(),
        };
        game.run_work(WORK_TIME);
        game.send_output(false);
        Ok(game)
    }

    /// Runs until `Shutdown` arrives or every connection's sender is gone.
    pub fn run(mut self) {
        loop {
            // A swap or a checkpoint in progress copies between messages:
            // never block then.
            let busy =
                !self.world().work.is_empty() || self.swapping.is_some() || self.checkpointing();
            let deadline = if busy {
                Instant::now()
            } else {
                let timer = self.world().timers.next_due();
                let chores = [
                    Some(self.next_save),
                    self.next_checkpoint,
                    Some(self.next_space_tick),
                    self.next_revival(),
                ];
                let next = timer.into_iter().chain(chores.into_iter().flatten()).min();
                // Something is always due: the next save.
                next.unwrap_or_else(|| Instant::now() + self.save_every)
            };
            // What is waiting is taken together, so what it produces for a
            // client leaves in one write.
            let mut next = match self.inbox.recv_deadline(deadline) {
                Received::Message(m) => Some(m),
                Received::Timeout => None,
                Received::Closed => {
                    self.shut_down();
                    break;
                }
            };
            let started = Instant::now();
            let mut taken = 0;
            let mut stop = false;
            while let Some(msg) = next.take() {
                if matches!(msg, GameInput::Wire(ToGame::Shutdown)) {
                    stop = true;
                    break;
                }
                self.handle(msg);
                self.run_work(WORK_TIME);
                taken += 1;
                if taken < INBOX_BATCH && started.elapsed() < INBOX_BATCH_TIME {
                    next = self.inbox.try_recv();
                }
            }
            if stop {
                self.shut_down();
                break;
            }
            let now = Instant::now();
            self.world().fire_timers(now, WORK_BATCH);
            self.run_work(WORK_TIME);
            let mut ticked = false;
            if self.next_space_tick <= now {
                self.tick_spaces(now);
                ticked = true;
                // Fixed rate; after a stall, resume from now instead of
                // bursting to catch up.
                self.next_space_tick = (self.next_space_tick + self.space_tick).max(now);
            }
            // Copies go between messages when nothing else waits, or,
            // when work never stops coming, every so often anyway.
            let chore_due = self.world().work.is_empty() || self.last_chore.elapsed() >= CHORE_WAIT;
            if self.swapping.is_some() && chore_due {
                self.swap_step();
                self.last_chore = Instant::now();
            }
            if self.checkpointing() && chore_due {
                self.checkpoint_step();
                self.last_chore = Instant::now();
            }
            self.retry_revivals(now);
            if self.next_save <= now {
                self.world().save_dirty();
                self.next_save = Instant::now() + self.save_every;
            }
            if let (Some(due), Some(every)) = (self.next_checkpoint, self.checkpoint_every) {
                if due <= now {
                    self.start_checkpoints();
                    self.next_checkpoint = Some(Instant::now() + every);
                }
            }
            self.send_output(ticked);
        }
        tracing::info!("game stopped");
    }

    /// Saves everything, waits for storage, and sends what is left for
    /// clients.
    fn shut_down(&mut self) {
        self.world().save_all_and_flush();
        self.send_output(true);
    }

    /// Hands what this round of work produced for clients to the gate, in
    /// one batch; `tick` asks the gate to write every client.
    /// Then sends on what it addressed to other games: what they do in
    /// answer reaches clients after it.
    fn send_output(&mut self, tick: bool) {
        let (ops, held) = self.world().take_output();
        if !ops.is_empty() {
            self.world().settle_routes();
        }
        if !ops.is_empty() || tick {
            // The gate outlives the game except at shutdown, when output
            // no longer matters.
            self.gate.send(HeldBatch {
                batch: GateBatch { ops, tick },
                held,
            });
        }
        self.world().send_outbox();
    }

    /// Counts of checkpoints and revivals.
    pub fn counters(&self) -> Arc<GameCounters> {
        self.counters.clone()
    }

    /// Where this game records its tick durations.
    pub fn tick_times(&self) -> Arc<RecentTimes> {
        self.tick_times.clone()
    }

    /// Where this game records the pauses of entities that migrated to it.
    pub fn migration_pauses(&self) -> Arc<RecentTimes> {
        self.migration_pauses.clone()
    }

    fn world_ref(&self) -> &World {
        // See `world`.
        self.world
            .as_deref()
            .expect("world is lent only during a plugin call")
    }

    fn world(&mut self) -> &mut World {
        // Invariant: the world is lent only inside `PluginInstance::run`,
        // which always hands it back before returning.
        self.world
            .as_deref_mut()
            .expect("world is lent only during a plugin call")
    }

    fn handle(&mut self, msg: GameInput) {
        match msg {
            GameInput::Wire(msg) => self.handle_wire(msg),
            GameInput::Swap(req) => self.swap(*req),
            GameInput::Node { back: false } => self.world().node_lost(),
            GameInput::Node { back: true } => self.world().rejoin(),
            GameInput::Loaded { id, mut result } => {
                if let Ok(loaded) = result.as_mut() {
                    self.restore_state(loaded);
                }
                self.world().finish_load(id, *result);
            }
            routed => self.world().take(routed),
        }
    }

    fn handle_wire(&mut self, msg: ToGame) {
        match msg {
            ToGame::ClientConnected { client } => {
                let boot = self.boot_entity.clone();
                if let Err(e) = self.world().connect_client(client, &boot) {
                    tracing::error!(%client, "cannot create boot entity {boot}: {e}");
                }
            }
            ToGame::ClientDisconnected { client } => self.world().disconnect_client(client),
            ToGame::ClientMove { client, pos, yaw } => self.world().client_move(client, pos, yaw),
            ToGame::Depart {
                entity,
                to,
                then,
                held_at_us,
            } => self.depart(entity, to, then, held_at_us),
            ToGame::Arrive(m) => self.arrive(*m),
            ToGame::Returned(msg) => self.world().undeliverable(GameInput::from(*msg)),
            ToGame::Reload { entity, client } => self.world().reload(entity, client),
            // Taken by `run` before it gets here.
            ToGame::Shutdown => {}
            routed => self.world().take(GameInput::from(routed)),
        }
    }

    /// Runs queued work, up to a batch or for up to `time` (and the call
    /// that passes it), fairly between the plugins' lanes.
    fn run_work(&mut self, time: Duration) {
        let started = Instant::now();
        for _ in 0..WORK_BATCH {
            let Some((lane, work)) = self.world().work.pop() else {
                return;
            };
            let timer = match &work {
                world::Work::Call(c) => c.timer,
                _ => None,
            };
            let began = Instant::now();
            self.run_one(work);
            let world = self.world();
            world.work.spent(lane, began.elapsed());
            if let Some(t) = timer {
                world.timers.ran(t);
            }
            if started.elapsed() >= time {
                return;
            }
        }
    }

    /// One space tick: AOI is worked out for the moves since the last one
    /// (clients are told what came into and left their view), AOI events go
    /// to the plugins that asked for them, every space's `tick` runs, then
    /// clients get the positions that changed.
    fn tick_spaces(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last_space_tick);
        self.last_space_tick = now;
        let dt_ms = u32::try_from(dt.as_millis()).unwrap_or(u32::MAX);
        self.world().update_aoi();
        for (plugin, events) in self.world().take_aoi_events() {
            self.run_aoi_events(plugin, &events);
        }
        let world = self.world();
        for space in world.spaces.ids() {
            world.queue_host(world::Work::Tick { space, dt_ms });
        }
        // The tick's work may take up to a tick period, so that positions
        // go out after every space's logic ran, unless that logic (or work
        // queued before it) holds the thread longer.
        self.run_work(self.space_tick);
        let world = self
            .world
            .as_deref_mut()
            .expect("world is lent only during a plugin call");
        world.flush_positions(&self.gate);
        let took = now.elapsed();
        self.tick_times.record(took);
        if took > self.space_tick
            && self
                .last_overrun_warning
                .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            self.last_overrun_warning = Some(Instant::now());
            tracing::warn!(
                took_ms = took.as_secs_f64() * 1e3,
                period_ms = self.space_tick.as_secs_f64() * 1e3,
                "a space tick took longer than the tick period (warned at most every 10 s)"
            );
        }
    }

    fn run_one(&mut self, work: world::Work) {
        use world::Work;
        let id = work.entity();
        let reply = match &work {
            Work::Call(c) => c.reply,
            _ => None,
        };
        let target = match &work {
            Work::Destroy(id) => self.world().remove_entity(*id),
            _ => self.world().entity_ref(id),
        };
        let Some((plugin, entity)) = target else {
            if let Work::Call(c) = &work {
                let msg = format!("entity {} is gone", c.entity);
                self.world()
                    .reply_error(reply, ErrorCode::NoSuchEntity, msg);
            }
            return;
        };
        let _span = tracing::debug_span!("work", entity = id, plugin).entered();
        if let Some(down) = &self.plugins[plugin].down {
            let msg = format!(
                "plugin {} is down, to be revived (it failed: {})",
                self.plugins[plugin].code.name(),
                down.reason
            );
            self.world()
                .reply_error(reply, ErrorCode::PluginFault, clip(msg, MAX_MESSAGE));
            return;
        }
        if let Some(swap) = self.swapping.as_mut().filter(|s| s.plugin() == plugin) {
            // Its state may change: copy it again before the switch.
            swap.touch(id);
        }
        self.world().current = Some(id);
        let slot = &mut self.plugins[plugin];
        let result = match work {
            Work::Created(_) => slot
                .instance
                .run(&mut self.world, |g, s| g.call_created(s, entity)),
            Work::Destroy(_) => slot
                .instance
                .run(&mut self.world, |g, s| g.call_destroyed(s, entity).map(Ok)),
            Work::ClientConnected(_) => slot.instance.run(&mut self.world, |g, s| {
                g.call_client_connected(s, entity).map(Ok)
            }),
            Work::ClientDisconnected(_) => slot.instance.run(&mut self.world, |g, s| {
                g.call_client_disconnected(s, entity).map(Ok)
            }),
            Work::Tick { dt_ms, .. } => slot.instance.run(&mut self.world, |g, s| {
                g.call_tick(s, entity, dt_ms).map(Ok)
            }),
            Work::Call(c) => {
                let r = slot
                    .instance
                    .call(&mut self.world, entity, &c.method, &c.args, c.caller);
                if let Ok(Err(e)) = &r {
                    tracing::debug!(entity = id, method = %c.method, "call returned an error: {e}");
                }
                r
            }
        };
        self.world().current = None;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                self.world()
                    .reply_error(reply, ErrorCode::CallFailed, clip(message, MAX_MESSAGE))
            }
            Err(fault) => {
                self.world().reply_error(
                    reply,
                    ErrorCode::PluginFault,
                    clip(fault.to_string(), MAX_MESSAGE),
                );
                self.recover(plugin, &fault);
            }
        }
    }

    /// Delivers a batch of AOI events to a plugin (not through the work
    /// queue: a batch belongs to a plugin, not to one entity).
    fn run_aoi_events(&mut self, plugin: usize, events: &[wyrm_runtime::bindings::AoiEvent]) {
        let _span = tracing::debug_span!("aoi-events", plugin, n = events.len()).entered();
        if self.plugins[plugin].down.is_some() {
            return;
        }
        if let Some(swap) = self.swapping.as_mut().filter(|s| s.plugin() == plugin) {
            for ev in events {
                swap.touch(ev.watcher.id);
            }
        }
        let result = self.plugins[plugin]
            .instance
            .run(&mut self.world, |g, s| g.call_aoi_events(s, events));
        if let Err(fault) = result {
            self.recover(plugin, &fault);
        }
    }
}

/// Starts `game` on its own thread, named after its id.
pub fn spawn(game: Game, id: wyrm_wire::GameId) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("wyrm-game-{}", id.0))
        .spawn(move || game.run())
}
