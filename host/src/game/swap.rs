//! Hot swap and checkpoints: the state hook (`export-entities` /
//! `import-entities`) moving private state from one instance to another.
//!
//! A swap runs on the game thread between two messages, so everything that
//! arrives meanwhile waits in the inbox and is served, in order, by whichever
//! version won. It exports from the running instance, imports into the new
//! one (compiled and instantiated off the game thread beforehand) and
//! switches; if any step traps, runs out of time or returns an error, the
//! running instance stays and the swap is refused with the reason.
//! Host-owned state — attributes, clients, timers — never moves.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Game, PluginSlot, World};
use crate::msg::EntityId;
use crate::plugin::{clip, EntityState, PluginCode, PluginInstance, MAX_MESSAGE};

/// Asks the game to replace a plugin with a new version.
pub struct SwapRequest {
    /// The configured name of the plugin to replace.
    pub plugin: String,
    /// The new version, compiled.
    pub code: PluginCode<World>,
    /// An initialised instance of it, made off the game thread.
    pub instance: PluginInstance<World>,
    /// Import into the new instance, then throw it away: change nothing.
    pub dry_run: bool,
    /// Where the report goes.
    pub reply: tokio::sync::oneshot::Sender<SwapReport>,
}

impl std::fmt::Debug for SwapRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwapRequest")
            .field("plugin", &self.plugin)
            .field("to_version", &self.instance.version())
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

/// What a swap did, for logs and for whoever asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapReport {
    /// The plugin's configured name.
    pub plugin: String,
    /// The version that was running.
    pub from_version: String,
    /// The version offered.
    pub to_version: String,
    /// Entities whose private state moved.
    pub entities: usize,
    /// Bytes of private state moved.
    pub bytes: usize,
    /// Microseconds during which no message reached the plugin: the final
    /// copy of what changed during the swap, and the switch. For a dry run:
    /// what the pause would have been.
    pub pause_us: u64,
    /// Microseconds from the start of the copy to the switch, while the
    /// running version kept serving.
    pub copy_us: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// How it ended.
    pub outcome: SwapOutcome,
}

/// How a swap ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SwapOutcome {
    /// The new version runs.
    Swapped,
    /// A dry run that would have succeeded; nothing changed.
    WouldSwap,
    /// The running version stays, untouched.
    Refused {
        /// Why.
        reason: String,
    },
}

impl SwapReport {
    /// A refusal before any state moved.
    pub fn refused(plugin: &str, from: &str, to: &str, dry_run: bool, reason: String) -> Self {
        Self {
            plugin: plugin.to_owned(),
            from_version: from.to_owned(),
            to_version: to.to_owned(),
            entities: 0,
            bytes: 0,
            pause_us: 0,
            copy_us: 0,
            dry_run,
            outcome: SwapOutcome::Refused { reason },
        }
    }

    /// Whether the swap (or dry run) succeeded.
    pub fn succeeded(&self) -> bool {
        !matches!(self.outcome, SwapOutcome::Refused { .. })
    }
}

impl std::fmt::Display for SwapReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.outcome {
            SwapOutcome::Swapped => "swapped".to_owned(),
            SwapOutcome::WouldSwap => "dry run: would swap".to_owned(),
            SwapOutcome::Refused { reason } => format!("refused: {reason}"),
        };
        write!(
            f,
            "plugin {} {} -> {}: {what} ({} entities, {} bytes, pause {:.3} ms, copied in {:.3} ms)",
            self.plugin,
            self.from_version,
            self.to_version,
            self.entities,
            self.bytes,
            self.pause_us as f64 / 1000.0,
            self.copy_us as f64 / 1000.0
        )
    }
}

/// Logs a swap report and sends it to whoever asked.
fn answer(reply: tokio::sync::oneshot::Sender<SwapReport>, report: SwapReport) {
    if report.succeeded() {
        tracing::info!(plugin = %report.plugin, "{report}");
    } else {
        tracing::warn!(plugin = %report.plugin, "{report}");
    }
    let _ = reply.send(report);
}

/// The last private state saved from a plugin, to restore after a crash.
pub(super) struct Checkpoint {
    /// The version that exported it.
    pub version: String,
    /// Each entity's state.
    pub states: HashMap<EntityId, Vec<u8>>,
}

impl Checkpoint {
    fn new(version: &str, states: &[EntityState]) -> Self {
        Self {
            version: version.to_owned(),
            states: states
                .iter()
                .map(|s| (s.entity.id, s.data.clone()))
                .collect(),
        }
    }
}

/// Entities copied per step while the running version keeps serving.
const COPY_CHUNK: usize = 1000;

/// A swap in progress. The game copies private state to the new instance a
/// chunk at a time between messages, noting every entity the running version
/// touches meanwhile; the final step copies those again and switches. So the
/// pause — the only time nothing reaches the plugin — is proportional to the
/// entities that changed during the copy, not to all of them.
pub(super) struct ActiveSwap {
    name: String,
    plugin: usize,
    code: PluginCode<World>,
    fresh: PluginInstance<World>,
    from: String,
    /// New kind index of each type name.
    kinds: HashMap<String, u32>,
    /// Entities not copied yet.
    pending: VecDeque<EntityId>,
    /// Entities that ran code (or appeared) since they were copied.
    touched: HashSet<EntityId>,
    /// The state last copied of each entity: the next checkpoint.
    copied: HashMap<EntityId, Vec<u8>>,
    bytes: usize,
    started: Instant,
    dry_run: bool,
    reply: tokio::sync::oneshot::Sender<SwapReport>,
}

impl ActiveSwap {
    /// The plugin being swapped.
    pub(super) fn plugin(&self) -> usize {
        self.plugin
    }

    /// Notes that `id` ran code in the running version.
    pub(super) fn touch(&mut self, id: EntityId) {
        self.touched.insert(id);
    }
}

impl Game {
    /// Starts a swap: checks it can work and begins copying. The copy goes
    /// on between messages ([`swap_step`](Self::swap_step)).
    pub(super) fn swap(&mut self, req: SwapRequest) {
        let SwapRequest {
            plugin: name,
            code,
            instance: fresh,
            dry_run,
            reply,
        } = req;
        let to = fresh.version().to_owned();
        let refuse =
            |from: &str, reason: String| SwapReport::refused(&name, from, &to, dry_run, reason);
        let Some(p) = self.plugins.iter().position(|s| s.code.name() == name) else {
            return answer(
                reply,
                refuse("", format!("no plugin named {name:?} is loaded")),
            );
        };
        let from = self.plugins[p].instance.version().to_owned();
        if self.swapping.is_some() {
            return answer(reply, refuse(&from, "another swap is in progress".into()));
        }
        if let Err(e) = self.world().plan_swap(p, fresh.info()) {
            return answer(reply, refuse(&from, e));
        }
        let kinds = fresh
            .info()
            .entity_types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i as u32))
            .collect();
        tracing::info!(plugin = %name, from = %from, to = %to, dry_run, "swap started");
        self.swapping = Some(ActiveSwap {
            pending: self.world().ids_of_plugin(p).into(),
            name,
            plugin: p,
            code,
            fresh,
            from,
            kinds,
            touched: HashSet::new(),
            copied: HashMap::new(),
            bytes: 0,
            started: Instant::now(),
            dry_run,
            reply,
        });
    }

    /// Runs one step of the swap in progress: copies a chunk, or, with
    /// everything copied once, pauses the plugin, copies what changed
    /// meanwhile and switches.
    pub(super) fn swap_step(&mut self) {
        let Some(mut s) = self.swapping.take() else {
            return;
        };
        let mut chunk = Vec::with_capacity(COPY_CHUNK.min(s.pending.len()));
        while chunk.len() < COPY_CHUNK {
            let Some(id) = s.pending.pop_front() else {
                break;
            };
            if self.world_ref().entity_ref(id).is_some() {
                chunk.push(id);
            }
        }
        if !chunk.is_empty() {
            match self.copy(&mut s, &chunk) {
                Ok(()) => self.swapping = Some(s),
                Err(reason) => self.end_swap(s, Err(reason)),
            }
            return;
        }
        // The pause: nothing reaches the plugin until the switch.
        let paused = Instant::now();
        let world = self.world_ref();
        let mut again: Vec<EntityId> = s
            .touched
            .drain()
            .filter(|&id| world.entity_ref(id).is_some())
            .collect();
        again.sort_unstable();
        let result = self.copy(&mut s, &again).and_then(|()| {
            // Entities created during the copy may have changed what is in
            // use: check the new version against them once more.
            let plan = self.world().plan_swap(s.plugin, s.fresh.info())?;
            if !s.dry_run {
                self.world().apply_swap(plan);
            }
            Ok(paused.elapsed())
        });
        self.end_swap(s, result);
    }

    /// Exports `ids` from the running version and imports them into the new
    /// one.
    fn copy(&mut self, s: &mut ActiveSwap, ids: &[EntityId]) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut states = match self.plugins[s.plugin].instance.export(&mut self.world, ids) {
            Ok(Ok(states)) => states,
            Ok(Err(e)) => {
                return Err(format!(
                    "the running version refused to export its state: {}",
                    clip(e, MAX_MESSAGE)
                ))
            }
            Err(fault) => {
                self.recover(s.plugin, &fault);
                return Err(format!(
                    "the running version faulted exporting its state: {fault}"
                ));
            }
        };
        for st in &mut states {
            st.entity.kind = *s
                .kinds
                .get(&st.type_name)
                .ok_or_else(|| format!("the new version has no entity type {}", st.type_name))?;
        }
        match s.fresh.import(&mut self.world, &s.from, &states) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(format!(
                    "the new version refused the state: {}",
                    clip(e, MAX_MESSAGE)
                ))
            }
            Err(fault) => {
                return Err(format!(
                    "the new version faulted importing the state: {fault}"
                ))
            }
        }
        for st in states {
            s.touched.remove(&st.entity.id);
            s.bytes += st.data.len();
            s.copied.insert(st.entity.id, st.data);
        }
        Ok(())
    }

    /// Ends a swap: switches to the new version (unless refused or a dry
    /// run) and answers. `result` is the pause, or why the swap was refused.
    fn end_swap(&mut self, s: ActiveSwap, result: Result<std::time::Duration, String>) {
        let ActiveSwap {
            name,
            plugin,
            code,
            fresh,
            from,
            copied,
            bytes,
            started,
            dry_run,
            reply,
            ..
        } = s;
        let to = fresh.version().to_owned();
        let report = match result {
            Err(reason) => SwapReport::refused(&name, &from, &to, dry_run, reason),
            Ok(pause) => {
                let entities = copied.len();
                // The copied states are the running version's latest: they
                // are the checkpoint a crash of the new version restores.
                self.checkpoints[plugin] = Some(Checkpoint {
                    version: from.clone(),
                    states: copied,
                });
                let outcome = if dry_run {
                    SwapOutcome::WouldSwap
                } else {
                    self.plugins[plugin] = PluginSlot {
                        code,
                        instance: fresh,
                    };
                    SwapOutcome::Swapped
                };
                SwapReport {
                    plugin: name,
                    from_version: from,
                    to_version: to,
                    entities,
                    bytes,
                    pause_us: pause.as_micros() as u64,
                    copy_us: started.elapsed().as_micros() as u64,
                    dry_run,
                    outcome,
                }
            }
        };
        answer(reply, report);
    }

    /// Saves every plugin's private state, so a crash costs at most one
    /// interval of it.
    pub(super) fn checkpoint_all(&mut self) {
        for p in 0..self.plugins.len() {
            let started = Instant::now();
            let ids = self.world().ids_of_plugin(p);
            match self.plugins[p].instance.export(&mut self.world, &ids) {
                Ok(Ok(states)) => {
                    let version = self.plugins[p].instance.version().to_owned();
                    self.checkpoints[p] = Some(Checkpoint::new(&version, &states));
                    tracing::debug!(plugin = self.plugins[p].code.name(), entities = ids.len(), elapsed = ?started.elapsed(), "checkpoint");
                }
                Ok(Err(e)) => tracing::warn!(
                    plugin = self.plugins[p].code.name(),
                    "checkpoint refused by the plugin: {e}"
                ),
                Err(fault) => self.recover(p, &fault),
            }
        }
    }

    /// Replaces a faulted instance with a fresh one that takes over every
    /// entity of the plugin, restoring private state from the last
    /// checkpoint (or fresh state, if the plugin cannot read it).
    /// Host-owned state (attributes, clients, timers) is untouched.
    pub(super) fn recover(&mut self, plugin: usize, fault: &crate::plugin::Fault) {
        let name = self.plugins[plugin].code.name().to_owned();
        tracing::error!(plugin = %name, "{fault}; starting a fresh instance");
        if let Some(swap) = self.swapping.take_if(|s| s.plugin == plugin) {
            // What was copied came from the instance that just died.
            self.end_swap(
                swap,
                Err(format!(
                    "the running version faulted during the swap: {fault}"
                )),
            );
        }
        let started = Instant::now();
        let revived = match self.revive(plugin, true) {
            Ok(r) => Ok(r),
            Err(e) => {
                tracing::error!(plugin = %name, "cannot restore the checkpoint, starting from fresh state: {e}");
                self.revive(plugin, false)
            }
        };
        match revived {
            Ok((instance, entities, restored)) => {
                self.plugins[plugin].instance = instance;
                tracing::info!(plugin = %name, entities, restored, elapsed = ?started.elapsed(), "plugin instance replaced");
            }
            Err(e) => {
                tracing::error!(plugin = %name, "cannot start a fresh instance, calls will keep failing: {e}")
            }
        }
    }

    /// A fresh instance that has taken over the plugin's entities, and how
    /// many there were and how many got their checkpointed state back.
    fn revive(
        &mut self,
        plugin: usize,
        from_checkpoint: bool,
    ) -> Result<(PluginInstance<World>, usize, usize), String> {
        let mut fresh = self.plugins[plugin]
            .code
            .instantiate()
            .map_err(|e| format!("{e:#}"))?;
        let checkpoint = self.checkpoints[plugin]
            .as_ref()
            .filter(|_| from_checkpoint);
        let version = checkpoint.map_or_else(|| fresh.version().to_owned(), |c| c.version.clone());
        let states = self
            .world_ref()
            .states_for_revival(plugin, checkpoint.map(|c| &c.states));
        let restored = states.iter().filter(|s| !s.data.is_empty()).count();
        match fresh.import(&mut self.world, &version, &states) {
            Ok(Ok(())) => Ok((fresh, states.len(), restored)),
            Ok(Err(e)) => Err(format!("the fresh instance refused its entities: {e}")),
            Err(f) => Err(format!(
                "the fresh instance faulted taking over its entities: {f}"
            )),
        }
    }
}
