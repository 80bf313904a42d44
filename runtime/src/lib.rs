//! The plugin runtime: WebAssembly components that implement the `wyrm:game`
//! world, run by wasmtime.
//!
//! Each plugin is compiled once (and cached on disk), pre-instantiated, and
//! instantiated into its own store. Every call into a guest runs under a
//! deadline of CPU time and a memory cap; a guest that traps, loops or runs out of
//! memory fails that call with a [`Fault`], and the caller replaces the dead
//! instance. Guests get no filesystem, network, environment or arguments.
//!
//! This crate knows nothing of sockets, clients or storage: the game lends
//! it a world that implements [`GameHost`] for the length of each call.
//! [`logs`] keeps what plugins write to the log to a rate.

pub mod bindings;
mod cache;
mod cpu_time;
mod host_state;
pub mod logs;
mod stdio;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, Trap, WasmBacktrace};

pub use bindings::{Caller, CallerKind, EntityRef, EntityState, PluginInfo};
pub use host_state::{EntityId, GameHost, HostState, Stop};

use bindings::exports::wyrm::game::entities::Guest;

/// How often the epoch advances for a call deadline of `deadline`;
/// deadlines are measured in these ticks. Twenty ticks to a deadline stop a
/// runaway call within 5% of it, and an idle server's ticker wakes 100
/// times a second at the default 200 ms deadline rather than 1,000 (each a
/// context switch, which at light load is most of what a server spends).
fn epoch_tick(deadline: Duration) -> Duration {
    (deadline / 20).clamp(Duration::from_millis(1), Duration::from_millis(10))
}

/// Sandbox limits for every instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most CPU time one call into a guest may use. Time its thread spends
    /// waiting for a core does not count, so a starved host does not stop
    /// guests that did nothing wrong.
    pub deadline: Duration,
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
}

/// Longest message about a plugin's failure that a client is sent, in
/// bytes: a plugin's error, a panic's text. Enough for any message meant
/// for a person; a plugin that returns megabytes does not get to send them.
pub const MAX_MESSAGE: usize = 512;

/// `text` cut to at most `max` bytes, at a character boundary, ending in
/// "…" when cut.
pub fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let end = text.floor_char_boundary(max.saturating_sub('…'.len_utf8()));
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Why a call into a guest did not complete. The instance that produced a
/// fault is dead and must be replaced. Its text is for people (clients,
/// swap reports): the guest's own words or a short description of the
/// trap, never a backtrace, which goes to the log only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    /// The call ran past its deadline and was stopped.
    #[error("plugin {plugin} ran past its {deadline:?} deadline and was stopped")]
    Deadline {
        plugin: Arc<str>,
        deadline: Duration,
    },
    /// The guest stopped itself — a panic, an uncaught exception, an abort —
    /// having written why to stderr.
    #[error("plugin {plugin} {how}: {message}")]
    Crash {
        plugin: Arc<str>,
        /// "panicked", "raised", "threw" or "aborted".
        how: &'static str,
        /// What it wrote, boiled down (a panic's message and place, an
        /// exception's last line), at most [`MAX_MESSAGE`] bytes.
        message: String,
    },
    /// The guest trapped without saying why (an out-of-bounds access, out
    /// of memory, a stack overflow…).
    #[error("plugin {plugin} trapped: {reason}")]
    Trap { plugin: Arc<str>, reason: String },
}

/// Compiles, caches and instantiates plugins. One per server.
pub struct PluginRuntime {
    engine: Engine,
    cache_dir: PathBuf,
    limits: Limits,
    ticker_stop: Arc<AtomicBool>,
}

impl PluginRuntime {
    /// A runtime caching compiled plugins in `cache_dir`.
    pub fn new(cache_dir: PathBuf, limits: Limits) -> anyhow::Result<Self> {
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        cfg.wasm_component_model(true);
        // `WYRM_PROFILE=perfmap` names guest functions for `perf`, so a
        // plugin's hot spots can be profiled like native code.
        if std::env::var("WYRM_PROFILE").is_ok_and(|v| v == "perfmap") {
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&cfg).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (e, stop) = (engine.clone(), ticker_stop.clone());
        let tick = epoch_tick(limits.deadline);
        std::thread::Builder::new()
            .name("wyrm-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    cpu_time::sample_all();
                    e.increment_epoch();
                }
            })
            .context("cannot start the epoch ticker thread")?;
        Ok(Self {
            engine,
            cache_dir,
            limits,
            ticker_stop,
        })
    }

    /// The limits every instance runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles (or loads from cache) the component at `wasm` and prepares
    /// it for instantiation.
    pub fn load<W: GameHost>(&self, name: &str, wasm: &Path) -> anyhow::Result<PluginCode<W>> {
        let bytes = std::fs::read(wasm)
            .with_context(|| format!("cannot read plugin {name} at {}", wasm.display()))?;
        self.load_bytes(name, &bytes)
    }

    /// Like [`load`](Self::load), from bytes in memory.
    pub fn load_bytes<W: GameHost>(
        &self,
        name: &str,
        wasm: &[u8],
    ) -> anyhow::Result<PluginCode<W>> {
        let component = cache::load_component(&self.engine, &self.cache_dir, wasm, name)?;
        let mut linker: Linker<HostState<W>> = Linker::new(&self.engine);
        let wasm_err = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wasm_err)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(wasm_err)?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            anyhow::anyhow!("plugin {name} does not fit the wyrm:game world: {e:#}")
        })?;
        let pre = bindings::PluginPre::new(pre).map_err(|e| {
            anyhow::anyhow!("plugin {name} does not export wyrm:game/entities@0.3.0: {e:#}")
        })?;
        Ok(PluginCode {
            name: name.into(),
            pre,
            engine: self.engine.clone(),
            limits: self.limits,
            slot: 0,
            log_budget: Arc::default(),
        })
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A compiled, pre-instantiated plugin: instances are cheap to make from it.
pub struct PluginCode<W: 'static> {
    name: Arc<str>,
    pre: bindings::PluginPre<HostState<W>>,
    engine: Engine,
    limits: Limits,
    /// The index the game knows the plugin by, told to the world at each
    /// call ([`GameHost::enter_plugin`]).
    slot: usize,
    /// Log lines its instances may write, shared by all of them so that a
    /// fresh instance does not start with a fresh allowance.
    log_budget: Arc<crate::logs::LogBudget>,
}

/// Another handle to the same compiled code (what one game worker
/// instantiates its own instances from): cheap, nothing is compiled again,
/// and the log allowance stays shared.
impl<W: 'static> Clone for PluginCode<W> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            pre: self.pre.clone(),
            engine: self.engine.clone(),
            limits: self.limits,
            slot: self.slot,
            log_budget: self.log_budget.clone(),
        }
    }
}

impl<W: GameHost> PluginCode<W> {
    /// The name the server gave the plugin.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the index the game knows this plugin by (0 until set): instances
    /// made from now on tell the world it at every call.
    pub fn set_slot(&mut self, slot: usize) {
        self.slot = slot;
    }

    /// Whether a log line about this plugin may be written now (its
    /// [`LogBudget`](crate::logs::LogBudget), which its own lines use too).
    pub fn log_admit(&self) -> bool {
        self.log_budget.admit(&self.name)
    }

    /// A fresh instance in a store of its own, initialised (`init` called).
    pub fn instantiate(&self) -> anyhow::Result<PluginInstance<W>> {
        let stdout = stdio::GuestOutput::stdout(self.name.clone(), self.log_budget.clone());
        let stderr = stdio::GuestOutput::stderr(self.name.clone(), self.log_budget.clone());
        let wasi = wasmtime_wasi::WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let limits = host_state::MemoryCap::new(self.limits.memory_bytes);
        let mut store = Store::new(
            &self.engine,
            HostState::new(
                self.name.clone(),
                limits,
                wasi,
                [stdout, stderr],
                self.log_budget.clone(),
            ),
        );
        store.limiter(|s| &mut s.limits);
        // The epoch deadline is wall-clock time; when it passes, the call
        // stops only if its thread spent the deadline running it (see
        // `cpu_time`), and otherwise runs on for what it has left.
        let deadline_ns = self.limits.deadline.as_nanos() as u64;
        let tick_ns = epoch_tick(self.limits.deadline).as_nanos().max(1) as u64;
        store.epoch_deadline_callback(move |ctx| {
            let used = cpu_time::now().saturating_sub(ctx.data().call_cpu_start);
            Ok(match deadline_ns.checked_sub(used) {
                Some(left) if left > 0 => wasmtime::UpdateDeadline::Continue(left / tick_ns + 1),
                _ => wasmtime::UpdateDeadline::Interrupt,
            })
        });
        // What one import's arguments (or one export's results) may make
        // the host allocate. Without aliasing a guest cannot pass more than
        // its memory holds; with it (a list of strings that all point at
        // one buffer) it could make the host copy that buffer for every
        // item. wasmtime counts the bytes it lifts and fails the transfer
        // past this, with "too much data is being copied between the host
        // and the guest".
        store.set_hostcall_fuel(self.limits.memory_bytes.saturating_mul(2));
        let mut instance = PluginInstance {
            name: self.name.clone(),
            slot: self.slot,
            deadline_ticks: deadline_ticks(self.limits.deadline),
            deadline: self.limits.deadline,
            bindings: None,
            store,
            info: empty_info(),
        };
        instance.store.set_epoch_deadline(instance.deadline_ticks);
        instance.store.data_mut().call_cpu_start = cpu_time::sampled();
        let bindings = match self.pre.instantiate(&mut instance.store) {
            Ok(b) => b,
            Err(e) => {
                let why = instance.classify(e);
                anyhow::bail!("cannot instantiate plugin {}: {why}", self.name)
            }
        };
        instance.bindings = Some(bindings);
        let mut no_world = None;
        let info = instance
            .run(&mut no_world, |g, s| g.call_init(s))
            .map_err(|f| anyhow::anyhow!("plugin {} failed in init: {f}", self.name))?;
        instance.info = info;
        Ok(instance)
    }
}

/// A wasm backtrace, one frame a line, with Rust names demangled (wasmtime
/// demangles only with a feature this build leaves out).
struct Backtrace<'a>(&'a WasmBacktrace);

impl std::fmt::Display for Backtrace<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, frame) in self.0.frames().iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let module = frame.module().name().unwrap_or("<unknown>");
            write!(f, "{i:>4}: {module}!")?;
            match frame.func_name() {
                Some(name) => write!(f, "{:#}", rustc_demangle::demangle(name))?,
                None => write!(f, "<wasm function {}>", frame.func_index())?,
            }
            if let Some(offset) = frame.module_offset() {
                write!(f, " @ {offset:#x}")?;
            }
        }
        Ok(())
    }
}

fn deadline_ticks(d: Duration) -> u64 {
    let tick = epoch_tick(d).as_micros().max(1);
    (d.as_micros() / tick).max(1) as u64 + 1
}

fn empty_info() -> PluginInfo {
    PluginInfo {
        name: String::new(),
        version: String::new(),
        entity_types: Vec::new(),
    }
}

/// A live instance of a plugin.
pub struct PluginInstance<W: 'static> {
    name: Arc<str>,
    /// See [`PluginCode::set_slot`].
    slot: usize,
    store: Store<HostState<W>>,
    bindings: Option<bindings::Plugin>,
    info: PluginInfo,
    deadline: Duration,
    deadline_ticks: u64,
}

impl<W: GameHost> PluginInstance<W> {
    /// What the plugin declared in `init`.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The version the plugin declared.
    pub fn version(&self) -> &str {
        &self.info.version
    }

    /// How long one call may run.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Sets the index the game knows this plugin by (see
    /// [`PluginCode::set_slot`]); for an instance made before its slot was
    /// known (a swap's new version).
    pub fn set_slot(&mut self, slot: usize) {
        self.slot = slot;
    }

    /// The most private state, in bytes, the host keeps of this plugin (a
    /// checkpoint, a swap's copy): twice its memory cap. The state lives in
    /// the plugin's memory; its exported form may be larger, not without
    /// bound.
    pub fn state_limit(&self) -> usize {
        self.store.data().limits.bytes.saturating_mul(2)
    }

    /// The state hook, export side: the private state of `ids`. An answer
    /// that is not the state of those entities — a state for an entity not
    /// asked for, one entity twice, a type name that is not the entity's —
    /// is taken as a refusal (`Ok(Err)`), saying what was wrong.
    pub fn export(
        &mut self,
        world: &mut Option<Box<W>>,
        ids: &[EntityId],
    ) -> Result<Result<Vec<EntityState>, String>, Fault> {
        let states = match self.run(world, |g, s| g.call_export_entities(s, ids))? {
            Ok(states) => states,
            Err(e) => return Ok(Err(e)),
        };
        let Some(w) = world.as_deref_mut() else {
            return Ok(Ok(states));
        };
        let asked: std::collections::HashSet<EntityId> = ids.iter().copied().collect();
        let mut seen = std::collections::HashSet::with_capacity(states.len());
        for st in &states {
            let id = st.entity.id;
            let wrong = if !asked.contains(&id) {
                Some(format!(
                    "a state for entity {id}, which it was not asked for"
                ))
            } else if !seen.insert(id) {
                Some(format!("entity {id} more than once"))
            } else {
                match w.entity_type(id) {
                    Some(t) if t != st.type_name => Some(format!(
                        "entity {id} as a {}, which is a {t}",
                        clip(st.type_name.clone(), 64)
                    )),
                    _ => None,
                }
            };
            if let Some(wrong) = wrong {
                let why = format!("plugin {} exported malformed state: {wrong}", self.name);
                tracing::warn!(plugin = &*self.name, "{why}");
                return Ok(Err(why));
            }
        }
        Ok(Ok(states))
    }

    /// `ids` left this instance for another game (their state exported
    /// first): the plugin drops their private state.
    pub fn forget(&mut self, world: &mut Option<Box<W>>, ids: &[EntityId]) -> Result<(), Fault> {
        self.run(world, |g, s| g.call_forget_entities(s, ids))
    }

    /// The state hook, import side: take over `states`, exported by a plugin
    /// of `from_version`.
    pub fn import(
        &mut self,
        world: &mut Option<Box<W>>,
        from_version: &str,
        states: &[EntityState],
    ) -> Result<Result<(), String>, Fault> {
        self.run(world, |g, s| {
            g.call_import_entities(s, from_version, states)
        })
    }

    /// Runs `f` against the guest with `world` lent to the store, under the
    /// deadline. The world is always returned to `world`, whatever happens.
    pub fn run<R>(
        &mut self,
        world: &mut Option<Box<W>>,
        f: impl FnOnce(&Guest, &mut Store<HostState<W>>) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        let Some(bindings) = &self.bindings else {
            return Err(Fault::Trap {
                plugin: self.name.clone(),
                reason: "instance was never initialised".into(),
            });
        };
        let data = self.store.data_mut();
        for out in &data.output {
            out.begin_call();
        }
        data.limits.refused = None;
        data.call_cpu_start = cpu_time::sampled();
        data.world = world.take();
        if let Some(w) = data.world.as_deref_mut() {
            w.enter_plugin(self.slot);
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        let result = f(bindings.wyrm_game_entities(), &mut self.store);
        *world = self.store.data_mut().world.take();
        if let Some(w) = world.as_deref_mut() {
            w.leave_plugin();
        }
        result.map_err(|e| self.classify(e))
    }

    /// Turns what a failed call returned into a [`Fault`] a person can
    /// read, and logs it with the wasm backtrace.
    fn classify(&self, e: wasmtime::Error) -> Fault {
        let plugin = self.name.clone();
        let trap = e.downcast_ref::<Trap>().copied();
        let data = self.store.data();
        let fault = match (trap, data.limits.refused) {
            (Some(Trap::Interrupt), _) => Fault::Deadline {
                plugin,
                deadline: self.deadline,
            },
            (_, Some(asked)) => Fault::Trap {
                plugin,
                reason: format!(
                    "out of memory (it asked for {} MiB, the cap is {} MiB)",
                    asked.div_ceil(1 << 20),
                    data.limits.bytes >> 20
                ),
            },
            // How every guest language stops on a panic or an uncaught
            // exception: it writes why to stderr, then aborts.
            (Some(Trap::UnreachableCodeReached), None) => {
                let [_, stderr] = &data.output;
                match stdio::last_words(&stderr.last_words()) {
                    Some(w) => Fault::Crash {
                        plugin,
                        how: w.how,
                        message: clip(w.text, MAX_MESSAGE),
                    },
                    None => Fault::Trap {
                        plugin,
                        reason: "aborted (wasm `unreachable`) without writing why to stderr".into(),
                    },
                }
            }
            (Some(t), None) => {
                let text = t.to_string();
                Fault::Trap {
                    plugin,
                    reason: text.strip_prefix("wasm trap: ").unwrap_or(&text).to_owned(),
                }
            }
            // A host function's error or a resource limit: its own message
            // says what happened; the layers wasmtime adds say where.
            (None, None) if e.downcast_ref::<WasmBacktrace>().is_some() => Fault::Trap {
                plugin,
                reason: clip(e.root_cause().to_string(), MAX_MESSAGE),
            },
            (None, None) => Fault::Trap {
                plugin,
                reason: clip(format!("{e:#}"), MAX_MESSAGE),
            },
        };
        // A plugin that faults in a loop (every call it gets) writes its
        // faults at its rate of log lines, not one a call.
        if !data.log_budget.admit(&self.name) {
            return fault;
        }
        match e.downcast_ref::<WasmBacktrace>() {
            Some(bt) => tracing::warn!(
                plugin = &*self.name,
                "{fault}; wasm backtrace:\n{}",
                Backtrace(bt)
            ),
            None => tracing::warn!(plugin = &*self.name, "{fault}"),
        }
        fault
    }

    /// Calls `method` on `entity`. The outer result is the fault, if any; the
    /// inner one is the plugin's own answer.
    #[allow(clippy::ptr_arg, reason = "the generated export takes &Vec<u8>")]
    pub fn call(
        &mut self,
        world: &mut Option<Box<W>>,
        entity: EntityRef,
        method: &str,
        args: &Vec<u8>,
        caller: Caller,
    ) -> Result<Result<(), String>, Fault> {
        self.run(world, |g, s| g.call_call(s, entity, method, args, caller))
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_cuts_at_a_character_boundary_and_says_so() {
        assert_eq!(clip("short".into(), 8), "short");
        assert_eq!(clip("exactly8".into(), 8), "exactly8");
        assert_eq!(clip("abcdefghij".into(), 8), "abcde…");
        // "é" is two bytes: 5 bytes of room keep two of them, not a half.
        let cut = clip("éééééé".into(), 8);
        assert_eq!(cut, "éé…");
        assert!(cut.len() <= 8);
    }
}
