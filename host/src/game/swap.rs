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

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Game, PluginSlot, World};
use crate::msg::EntityId;
use crate::plugin::{EntityState, PluginCode, PluginInstance};

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
    /// Microseconds during which no message reached the plugin (export,
    /// import and switch). For a dry run: what the pause would have been.
    pub pause_us: u64,
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
            "plugin {} {} -> {}: {what} ({} entities, {} bytes, pause {:.3} ms)",
            self.plugin,
            self.from_version,
            self.to_version,
            self.entities,
            self.bytes,
            self.pause_us as f64 / 1000.0
        )
    }
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

impl Game {
    /// Runs a swap request and answers it.
    pub(super) fn swap(&mut self, req: SwapRequest) {
        let SwapRequest {
            plugin,
            code,
            instance,
            dry_run,
            reply,
        } = req;
        let report = self.try_swap(&plugin, code, instance, dry_run);
        if report.succeeded() {
            tracing::info!(plugin, "{report}");
        } else {
            tracing::warn!(plugin, "{report}");
        }
        let _ = reply.send(report);
    }

    fn try_swap(
        &mut self,
        name: &str,
        code: PluginCode<World>,
        mut fresh: PluginInstance<World>,
        dry_run: bool,
    ) -> SwapReport {
        let to = fresh.version().to_owned();
        let Some(p) = self.plugins.iter().position(|s| s.code.name() == name) else {
            return SwapReport::refused(
                name,
                "",
                &to,
                dry_run,
                format!("no plugin named {name:?} is loaded"),
            );
        };
        let from = self.plugins[p].instance.version().to_owned();
        let refuse = |reason: String| SwapReport::refused(name, &from, &to, dry_run, reason);
        let plan = match self.world().plan_swap(p, fresh.info()) {
            Ok(plan) => plan,
            Err(e) => return refuse(e),
        };

        let started = Instant::now();
        let ids = self.world().ids_of_plugin(p);
        let mut states = match self.plugins[p].instance.export(&mut self.world, &ids) {
            Ok(Ok(states)) => states,
            Ok(Err(e)) => {
                return refuse(format!(
                    "the running version refused to export its state: {e}"
                ))
            }
            Err(fault) => {
                self.recover(p, &fault);
                return refuse(format!(
                    "the running version faulted exporting its state: {fault}"
                ));
            }
        };
        let bytes = states.iter().map(|s| s.data.len()).sum();
        // Every swap starts from a fresh checkpoint of the running version.
        self.checkpoints[p] = Some(Checkpoint::new(&from, &states));

        let kinds: HashMap<&str, u32> = fresh
            .info()
            .entity_types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i as u32))
            .collect();
        for s in &mut states {
            match kinds.get(s.type_name.as_str()) {
                Some(&k) => s.entity.kind = k,
                None => {
                    return refuse(format!(
                        "the new version has no entity type {}",
                        s.type_name
                    ))
                }
            }
        }
        match fresh.import(&mut self.world, &from, &states) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return refuse(format!("the new version refused the state: {e}")),
            Err(fault) => {
                return refuse(format!(
                    "the new version faulted importing the state: {fault}"
                ))
            }
        }

        let outcome = if dry_run {
            SwapOutcome::WouldSwap
        } else {
            self.world().apply_swap(plan);
            self.plugins[p] = PluginSlot {
                code,
                instance: fresh,
            };
            SwapOutcome::Swapped
        };
        SwapReport {
            plugin: name.to_owned(),
            from_version: from,
            to_version: to,
            entities: states.len(),
            bytes,
            pause_us: started.elapsed().as_micros() as u64,
            dry_run,
            outcome,
        }
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
