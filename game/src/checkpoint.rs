//! Checkpoints and recovery: a plugin's private state saved a chunk at a
//! time between messages, and a faulted instance replaced by a fresh one
//! that takes its entities back a chunk at a time.
//!
//! Every call into a guest runs under the call deadline, and a plugin in a
//! slow language exports or imports only so many entities within it (the
//! JavaScript conformance plugin: a few thousand). So nothing here hands a
//! plugin all its entities in one call: a [`Chunker`] per plugin learns
//! what an entity costs and sizes each chunk to a fraction of the deadline.
//! A plugin that cannot be revived is not left dead: it is marked down,
//! its calls fail at once with a message saying so, and revival is tried
//! again with a growing pause, each try logged.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Game, World};
use crate::msg::EntityId;
use wyrm_runtime::{EntityState, Fault, PluginInstance};

/// The last private state saved from a plugin, to restore after a crash.
pub(super) struct Checkpoint {
    /// The version that exported it.
    pub version: String,
    /// Each entity's state.
    pub states: HashMap<EntityId, Vec<u8>>,
}

/// How many entities one export or import call takes, learnt from what the
/// last ones cost: a chunk aims at a quarter of the call deadline, and at
/// most [`Chunker::HOLD`] of the game thread's time.
#[derive(Debug, Clone)]
pub(super) struct Chunker {
    size: usize,
}

impl Chunker {
    const MIN: usize = 8;
    const MAX: usize = 8192;
    const START: usize = 256;
    /// The longest a chunk should hold the game thread.
    const HOLD: Duration = Duration::from_millis(20);

    pub(super) fn new() -> Self {
        Self { size: Self::START }
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Learns from a chunk of `n` entities that took `took` under
    /// `deadline`: the next chunk is sized for the target, growing at most
    /// twofold a step.
    pub(super) fn record(&mut self, n: usize, took: Duration, deadline: Duration) {
        if n == 0 {
            return;
        }
        let target = (deadline / 4).min(Self::HOLD);
        let per_entity = (took / n as u32).max(Duration::from_nanos(100));
        let fits = (target.as_nanos() / per_entity.as_nanos()) as usize;
        self.size = fits.min(self.size * 2).clamp(Self::MIN, Self::MAX);
    }

    /// After a chunk ran out of time: much smaller from now on.
    pub(super) fn shrink(&mut self) {
        self.size = (self.size / 8).max(Self::MIN);
    }
}

/// A checkpoint being taken, a chunk between messages.
pub(super) struct CheckpointRun {
    plugin: usize,
    /// The instance it exports from; a new instance ends the run.
    generation: u64,
    version: String,
    pending: VecDeque<EntityId>,
    states: HashMap<EntityId, Vec<u8>>,
    /// The bytes of `states`, held to the plugin's state limit.
    bytes: usize,
    started: Instant,
}

/// A plugin that could not be revived: its calls fail at once until a try
/// succeeds.
pub(super) struct Down {
    pub reason: String,
    tries: u32,
    pub next_try: Instant,
}

/// Pause before the next revival try: 1 s, doubling, at most 30 s.
fn retry_pause(tries: u32) -> Duration {
    Duration::from_secs(1 << tries.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// Counts for watching a game from outside (tests, and later metrics).
#[derive(Debug, Default)]
pub struct GameCounters {
    checkpoints: AtomicU64,
    revivals: AtomicU64,
    migrations: AtomicU64,
}

impl GameCounters {
    /// Checkpoints completed (one per plugin per interval).
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    /// Fresh instances that took over a faulted plugin's entities.
    pub fn revivals(&self) -> u64 {
        self.revivals.load(Ordering::Relaxed)
    }

    /// Entities that arrived from another game.
    pub fn migrations(&self) -> u64 {
        self.migrations.load(Ordering::Relaxed)
    }

    pub(super) fn count_migration(&self) {
        self.migrations.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts of several games together.
    pub fn sum<'a>(games: impl IntoIterator<Item = &'a GameCounters>) -> GameCounters {
        let total = GameCounters::default();
        for g in games {
            total
                .checkpoints
                .fetch_add(g.checkpoints(), Ordering::Relaxed);
            total.revivals.fetch_add(g.revivals(), Ordering::Relaxed);
            total
                .migrations
                .fetch_add(g.migrations(), Ordering::Relaxed);
        }
        total
    }
}

impl Game {
    /// Starts a checkpoint of every plugin that is up and not being
    /// swapped (a swap makes its own); one still in progress goes on.
    pub(super) fn start_checkpoints(&mut self) {
        if !self.checkpointing.is_empty() {
            return;
        }
        for p in 0..self.plugins.len() {
            if self.plugins[p].down.is_some()
                || self.swapping.as_ref().is_some_and(|s| s.plugin() == p)
            {
                continue;
            }
            self.checkpointing.push_back(CheckpointRun {
                plugin: p,
                generation: self.plugins[p].generation,
                version: self.plugins[p].instance.version().to_owned(),
                pending: self.world_ref().ids_of_plugin(p).into(),
                states: HashMap::new(),
                bytes: 0,
                started: Instant::now(),
            });
        }
    }

    /// Whether a checkpoint is being taken.
    pub(super) fn checkpointing(&self) -> bool {
        !self.checkpointing.is_empty()
    }

    /// Exports one chunk of the checkpoint in progress; a run with nothing
    /// left becomes the plugin's checkpoint.
    pub(super) fn checkpoint_step(&mut self) {
        let Some(mut run) = self.checkpointing.pop_front() else {
            return;
        };
        let p = run.plugin;
        let slot = &self.plugins[p];
        if slot.generation != run.generation
            || self.swapping.as_ref().is_some_and(|s| s.plugin() == p)
        {
            return; // the instance changed, or a swap will save the state
        }
        let mut chunk = Vec::with_capacity(slot.chunker.size().min(run.pending.len()));
        while chunk.len() < slot.chunker.size() {
            let Some(id) = run.pending.pop_front() else {
                break;
            };
            // Destroyed since the run began: nothing to save.
            if self.world_ref().entity_ref(id).is_some() {
                chunk.push(id);
            }
        }
        if !chunk.is_empty() {
            let started = Instant::now();
            match self.plugins[p].instance.export(&mut self.world, &chunk) {
                Ok(Ok(states)) => {
                    let slot = &mut self.plugins[p];
                    slot.chunker
                        .record(chunk.len(), started.elapsed(), slot.instance.deadline());
                    run.bytes += states.iter().map(|s| s.data.len()).sum::<usize>();
                    let limit = slot.instance.state_limit();
                    if run.bytes > limit {
                        // The last checkpoint stays; this one is dropped
                        // before it takes more of the host's memory.
                        tracing::warn!(
                            plugin = slot.code.name(),
                            "checkpoint refused: the plugin's private state passed {limit} bytes \
                             (twice [limits] memory_mb), which the host does not keep"
                        );
                        return;
                    }
                    run.states
                        .extend(states.into_iter().map(|s| (s.entity.id, s.data)));
                }
                Ok(Err(e)) => {
                    let plugin = self.plugins[p].code.name();
                    tracing::warn!(plugin, "checkpoint refused by the plugin: {e}");
                    return;
                }
                Err(fault) => {
                    if matches!(fault, Fault::Deadline { .. }) {
                        self.plugins[p].chunker.shrink();
                    }
                    tracing::warn!(
                        plugin = self.plugins[p].code.name(),
                        entities = chunk.len(),
                        first = chunk[0],
                        "saving a checkpoint chunk failed; an entity whose state takes longer than a call may to export cannot be checkpointed"
                    );
                    self.recover(p, &fault);
                    return;
                }
            }
        }
        if !run.pending.is_empty() {
            self.checkpointing.push_front(run);
            return;
        }
        tracing::debug!(
            plugin = self.plugins[p].code.name(),
            entities = run.states.len(),
            elapsed = ?run.started.elapsed(),
            "checkpoint"
        );
        self.world().store_checkpoint(&run.version, &run.states);
        self.checkpoints[p] = Some(Checkpoint {
            version: run.version,
            states: run.states,
        });
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces a faulted instance with a fresh one that takes over every
    /// entity of the plugin, restoring private state from the last
    /// checkpoint (or fresh state, if the plugin cannot read it). If neither
    /// works, the plugin is down until a later try succeeds.
    /// Host-owned state (attributes, clients, timers) is untouched.
    pub(super) fn recover(&mut self, plugin: usize, fault: &Fault) {
        let name = self.plugins[plugin].code.name().to_owned();
        // At the plugin's rate of log lines: one that faults in a loop
        // must not fill the log.
        if self.plugins[plugin].code.log_admit() {
            tracing::error!(plugin = %name, "{fault}; starting a fresh instance");
        }
        if let Some(swap) = self.swapping.take_if(|s| s.plugin() == plugin) {
            // What was copied came from the instance that just died.
            self.end_swap(
                swap,
                Err(format!(
                    "the running version faulted during the swap: {fault}"
                )),
            );
        }
        self.checkpointing.retain(|r| r.plugin != plugin);
        self.revive_or_go_down(plugin, fault.to_string());
    }

    /// Tries to bring a down plugin back, if its next try is due.
    pub(super) fn retry_revivals(&mut self, now: Instant) {
        for p in 0..self.plugins.len() {
            let due = self.plugins[p]
                .down
                .as_ref()
                .is_some_and(|d| d.next_try <= now);
            if due {
                let reason = self.plugins[p]
                    .down
                    .as_ref()
                    .map_or_else(String::new, |d| d.reason.clone());
                self.revive_or_go_down(p, reason);
            }
        }
    }

    /// When the next revival try of a down plugin is due.
    pub(super) fn next_revival(&self) -> Option<Instant> {
        self.plugins
            .iter()
            .filter_map(|s| s.down.as_ref().map(|d| d.next_try))
            .min()
    }

    fn revive_or_go_down(&mut self, plugin: usize, why_down: String) {
        let name = self.plugins[plugin].code.name().to_owned();
        let started = Instant::now();
        let revived = match self.revive(plugin, true) {
            Ok(r) => Ok(r),
            Err(e) if self.checkpoints[plugin].is_some() => {
                tracing::error!(plugin = %name, "cannot restore the checkpoint, starting from fresh state: {e}");
                self.revive(plugin, false)
            }
            Err(e) => Err(e),
        };
        match revived {
            Ok((instance, entities, restored)) => {
                let slot = &mut self.plugins[plugin];
                slot.instance = instance;
                slot.generation += 1;
                slot.down = None;
                self.counters.revivals.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = %name, entities, restored, elapsed = ?started.elapsed(), "plugin instance replaced");
            }
            Err(e) => {
                let tries = self.plugins[plugin].down.as_ref().map_or(0, |d| d.tries) + 1;
                let pause = retry_pause(tries);
                tracing::error!(
                    plugin = %name,
                    tries,
                    "cannot start a fresh instance: {e}; the plugin is down (its calls fail) until a try succeeds, the next in {pause:?}"
                );
                self.plugins[plugin].down = Some(Down {
                    reason: if tries == 1 { why_down } else { e },
                    tries,
                    next_try: Instant::now() + pause,
                });
            }
        }
    }

    /// A fresh instance that has taken over the plugin's entities, a chunk
    /// at a time, and how many there were and how many got their
    /// checkpointed state back. A chunk that runs out of time starts it
    /// over with smaller chunks, a few times.
    fn revive(
        &mut self,
        plugin: usize,
        from_checkpoint: bool,
    ) -> Result<(PluginInstance<World>, usize, usize), String> {
        let checkpoint = self.checkpoints[plugin]
            .as_ref()
            .filter(|_| from_checkpoint);
        let version = checkpoint.map(|c| c.version.clone());
        let states = self
            .world_ref()
            .states_for_revival(plugin, checkpoint.map(|c| &c.states));
        let restored = states.iter().filter(|s| !s.data.is_empty()).count();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.import_in_chunks(plugin, version.as_deref(), &states) {
                Ok(fresh) => return Ok((fresh, states.len(), restored)),
                Err((Some(Fault::Deadline { .. }), _)) if attempts < 4 => {
                    self.plugins[plugin].chunker.shrink();
                }
                Err((_, e)) => return Err(e),
            }
        }
    }

    /// Instantiates the plugin and imports `states` into it, a chunk per
    /// call; on failure, the fault (if it was one) and what went wrong.
    fn import_in_chunks(
        &mut self,
        plugin: usize,
        version: Option<&str>,
        states: &[EntityState],
    ) -> Result<PluginInstance<World>, (Option<Fault>, String)> {
        let mut fresh = self.plugins[plugin]
            .code
            .instantiate()
            .map_err(|e| (None, format!("{e:#}")))?;
        let version = version.map_or_else(|| fresh.version().to_owned(), str::to_owned);
        let deadline = fresh.deadline();
        let mut rest = states;
        while !rest.is_empty() {
            let n = self.plugins[plugin].chunker.size().min(rest.len());
            let (chunk, after) = rest.split_at(n);
            let started = Instant::now();
            match fresh.import(&mut self.world, &version, chunk) {
                Ok(Ok(())) => {
                    self.plugins[plugin]
                        .chunker
                        .record(n, started.elapsed(), deadline);
                    rest = after;
                }
                Ok(Err(e)) => {
                    return Err((
                        None,
                        format!("the fresh instance refused its entities: {e}"),
                    ))
                }
                Err(f) => {
                    let e = format!("the fresh instance faulted taking over its entities: {f}");
                    return Err((Some(f), e));
                }
            }
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_millis(200);

    #[test]
    fn chunks_aim_at_the_target_and_grow_gently() {
        let mut c = Chunker::new();
        // 1 µs an entity: 20 ms fit 20,000, but growth is at most twofold.
        c.record(256, Duration::from_micros(256), DEADLINE);
        assert_eq!(c.size(), 512);
        for _ in 0..10 {
            c.record(c.size(), Duration::from_micros(c.size() as u64), DEADLINE);
        }
        assert_eq!(c.size(), Chunker::MAX);
        // 100 µs an entity (a slow language): 200 fit in 20 ms.
        c.record(1000, Duration::from_millis(100), DEADLINE);
        assert_eq!(c.size(), 200);
        // A short deadline: a quarter of 40 ms is 10 ms, so 100.
        c.record(200, Duration::from_millis(20), Duration::from_millis(40));
        assert_eq!(c.size(), 100);
    }

    #[test]
    fn a_chunk_out_of_time_shrinks_the_next_and_size_stays_in_bounds() {
        let mut c = Chunker::new();
        c.shrink();
        assert_eq!(c.size(), Chunker::START / 8);
        for _ in 0..10 {
            c.shrink();
        }
        assert_eq!(c.size(), Chunker::MIN);
        c.record(8, Duration::from_secs(10), DEADLINE);
        assert_eq!(c.size(), Chunker::MIN);
        c.record(0, Duration::ZERO, DEADLINE);
        assert_eq!(c.size(), Chunker::MIN);
    }

    #[test]
    fn revival_tries_back_off_to_half_a_minute() {
        let pauses: Vec<u64> = (1..=7).map(|t| retry_pause(t).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
    }
}
