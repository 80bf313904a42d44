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
//!
//! With several games, every game copies its own entities to an instance
//! of its own, and the switch is all or nothing: a game whose copy is done
//! votes and waits, paused, for the decision; the `Swapper` that asked
//! tells every game to switch once all have voted yes, and to drop the new
//! version as soon as one says no.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checkpoint::Checkpoint;
use super::{Game, PluginSlot, World};
use crate::msg::EntityId;
use wyrm_runtime::{clip, Fault, PluginCode, PluginInstance, MAX_MESSAGE};

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
    /// Where this game says whether it can switch.
    pub vote: Ballot,
    /// Whether to switch, once every game has voted.
    pub decision: crossbeam_channel::Receiver<Decision>,
}

/// A game's vote in a swap: ready to switch, or why it cannot.
#[derive(Debug, Clone)]
pub struct Ballot {
    /// The voting game, for the coordinator's messages.
    pub game: usize,
    pub votes: tokio::sync::mpsc::UnboundedSender<(usize, Result<(), String>)>,
}

impl Ballot {
    fn cast(&self, vote: Result<(), String>) {
        // The coordinator gone is a decision too: see `await_decision`.
        let _ = self.votes.send((self.game, vote));
    }
}

/// What every game does once all have voted.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Every game is ready: switch.
    Commit,
    /// A game refused (why): keep the running version.
    Abort(String),
}

/// Longest a game waits, paused, for the decision after it voted to switch.
const DECISION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

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

    /// One report for a swap every game made: the running version, entities
    /// and bytes of all, the longest pause and copy; refused, with
    /// `refusal`, if any game refused.
    pub fn combine(reports: Vec<SwapReport>, refusal: Option<String>) -> SwapReport {
        let mut it = reports.into_iter();
        let Some(mut total) = it.next() else {
            let reason = refusal.unwrap_or_else(|| "no game to swap on".into());
            return SwapReport::refused("", "", "", false, reason);
        };
        for r in it {
            total.entities += r.entities;
            total.bytes += r.bytes;
            total.pause_us = total.pause_us.max(r.pause_us);
            total.copy_us = total.copy_us.max(r.copy_us);
            if !r.succeeded() && total.succeeded() {
                total.outcome = r.outcome;
            }
        }
        if let Some(reason) = refusal {
            total.outcome = SwapOutcome::Refused { reason };
        }
        total
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

/// Waits, paused, for every game's vote to be counted.
fn await_decision(decision: &crossbeam_channel::Receiver<Decision>) -> Result<(), String> {
    match decision.recv_timeout(DECISION_WAIT) {
        Ok(Decision::Commit) => Ok(()),
        Ok(Decision::Abort(reason)) => Err(reason),
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(format!(
            "the other games did not all vote within {} s",
            DECISION_WAIT.as_secs()
        )),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            Err("whoever asked for the swap is gone".into())
        }
    }
}

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
    vote: Ballot,
    decision: crossbeam_channel::Receiver<Decision>,
    /// The decision came before this game voted.
    committed: bool,
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
    /// `id` of `plugin` left for another game: a swap of that plugin under
    /// way drops it from the new version too.
    pub(super) fn forget_in_swap(&mut self, plugin: usize, id: EntityId) {
        let Some(s) = self.swapping.as_mut().filter(|s| s.plugin == plugin) else {
            return;
        };
        s.touched.remove(&id);
        if s.copied.remove(&id).is_some() {
            if let Err(fault) = s.fresh.forget(&mut self.world, &[id]) {
                tracing::warn!(
                    entity = id,
                    "the new version faulted dropping a departed entity: {fault}"
                );
            }
        }
    }

    /// Starts a swap: checks it can work and begins copying. The copy goes
    /// on between messages ([`swap_step`](Self::swap_step)).
    pub(super) fn swap(&mut self, req: SwapRequest) {
        let SwapRequest {
            plugin: name,
            mut code,
            instance: mut fresh,
            dry_run,
            reply,
            vote,
            decision,
        } = req;
        let to = fresh.version().to_owned();
        let refuse = |from: &str, reason: String| {
            vote.cast(Err(reason.clone()));
            SwapReport::refused(&name, from, &to, dry_run, reason)
        };
        let Some(p) = self.plugins.iter().position(|s| s.code.name() == name) else {
            return answer(
                reply,
                refuse("", format!("no plugin named {name:?} is loaded")),
            );
        };
        // The new version answers to the old one's slot from its first
        // call on (the world tells plugins apart by it).
        code.set_slot(p);
        fresh.set_slot(p);
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
            vote,
            decision,
            committed: false,
        });
    }

    /// Runs one step of the swap in progress: copies a chunk, or, with
    /// everything copied once, pauses the plugin, copies what changed
    /// meanwhile and switches.
    pub(super) fn swap_step(&mut self) {
        let Some(mut s) = self.swapping.take() else {
            return;
        };
        match s.decision.try_recv() {
            Ok(Decision::Abort(reason)) => return self.end_swap(s, Err(reason)),
            // Decided before the vote (the only game): kept for the switch.
            Ok(Decision::Commit) => s.committed = true,
            Err(_) => {}
        }
        let size = self.plugins[s.plugin].chunker.size();
        let mut chunk = Vec::with_capacity(size.min(s.pending.len()));
        while chunk.len() < size {
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
            // Every game switches, or none: a game decided for already
            // (the only one) votes after its pause.
            if !s.committed {
                s.vote.cast(Ok(()));
                await_decision(&s.decision)?;
            }
            if !s.dry_run {
                self.world().apply_swap(plan);
            }
            Ok(paused.elapsed())
        });
        if s.committed && result.is_ok() {
            s.vote.cast(Ok(()));
        }
        self.end_swap(s, result);
    }

    /// Exports `ids` from the running version and imports them into the new
    /// one.
    fn copy(&mut self, s: &mut ActiveSwap, ids: &[EntityId]) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let exported = if self.plugins[s.plugin].down.is_some() {
            // The running instance is dead: what it last saved is its
            // state, and a new version may be just what brings it back.
            let saved = self.checkpoints[s.plugin].as_ref().map(|c| &c.states);
            let wanted: HashSet<EntityId> = ids.iter().copied().collect();
            let mut states = self.world_ref().states_for_revival(s.plugin, saved);
            states.retain(|st| wanted.contains(&st.entity.id));
            Ok(Ok(states))
        } else {
            self.plugins[s.plugin].instance.export(&mut self.world, ids)
        };
        let mut states = match exported {
            Ok(Ok(states)) => states,
            Ok(Err(e)) => {
                return Err(format!(
                    "the running version refused to export its state: {}",
                    clip(e, MAX_MESSAGE)
                ))
            }
            Err(fault) => {
                if matches!(fault, Fault::Deadline { .. }) {
                    self.plugins[s.plugin].chunker.shrink();
                }
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
        // What was copied so far, plus this chunk (an entity copied again
        // counts twice: a bound, not a tally).
        let bytes = s.bytes + states.iter().map(|st| st.data.len()).sum::<usize>();
        let limit = self.plugins[s.plugin].instance.state_limit();
        if bytes > limit {
            return Err(format!(
                "the running version's private state passed {limit} bytes (twice [limits] \
                 memory_mb), more than the host keeps"
            ));
        }
        match s.fresh.import(&mut self.world, &s.from, &states) {
            Ok(Ok(())) => {
                // Export and import together: a copy step holds the game
                // for both.
                let slot = &mut self.plugins[s.plugin];
                slot.chunker
                    .record(ids.len(), started.elapsed(), slot.instance.deadline());
            }
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
    pub(super) fn end_swap(&mut self, s: ActiveSwap, result: Result<std::time::Duration, String>) {
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
            vote,
            ..
        } = s;
        let to = fresh.version().to_owned();
        let report = match result {
            Err(reason) => {
                // A second vote (after an abort) changes nothing.
                vote.cast(Err(reason.clone()));
                SwapReport::refused(&name, &from, &to, dry_run, reason)
            }
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
                    let old = &self.plugins[plugin];
                    let mut slot = PluginSlot::new(code, fresh);
                    slot.generation = old.generation + 1;
                    slot.chunker = old.chunker.clone();
                    self.plugins[plugin] = slot;
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
}
