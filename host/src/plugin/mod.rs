//! The plugin runtime: WebAssembly components that implement the `wyrm:game`
//! world, run by wasmtime.
//!
//! Each plugin is compiled once (and cached on disk), pre-instantiated, and
//! instantiated into its own store. Every call into a guest runs under an
//! epoch deadline and a memory cap; a guest that traps, loops or runs out of
//! memory fails that call with a [`Fault`], and the caller replaces the dead
//! instance. Guests get no filesystem, network, environment or arguments.
//!
//! This module knows nothing of sockets or clients: the game lends it a world
//! that implements [`GameHost`] for the length of each call.

pub mod bindings;
mod build;
mod cache;
mod host_state;
mod stdio;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap};

pub use bindings::{Caller, CallerKind, EntityRef, EntityState, PluginInfo};
pub use build::{build_plugin, tools_dir, BuildOptions, Language, GUEST_TARGET, WIT_FILES};
pub use host_state::{EntityId, GameHost, HostState};

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
    /// Longest one call into a guest may run.
    pub deadline: Duration,
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
}

/// Why a call into a guest did not complete. The instance that produced a
/// fault is dead and must be replaced.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    /// The call ran past its deadline and was stopped.
    #[error("plugin {plugin} ran past its {deadline:?} deadline and was stopped")]
    Deadline {
        plugin: Arc<str>,
        deadline: Duration,
    },
    /// The guest trapped (a panic, an out-of-bounds access, out of memory…).
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
            anyhow::anyhow!("plugin {name} does not export wyrm:game/entities@0.2.0: {e:#}")
        })?;
        Ok(PluginCode {
            name: name.into(),
            pre,
            engine: self.engine.clone(),
            limits: self.limits,
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
}

impl<W: GameHost> PluginCode<W> {
    /// The name the server gave the plugin.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh instance in a store of its own, initialised (`init` called).
    pub fn instantiate(&self) -> anyhow::Result<PluginInstance<W>> {
        let wasi = wasmtime_wasi::WasiCtx::builder()
            .stdout(stdio::GuestOutput::new(self.name.clone(), "stdout"))
            .stderr(stdio::GuestOutput::new(self.name.clone(), "stderr"))
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState::new(self.name.clone(), limits, wasi),
        );
        store.limiter(|s| &mut s.limits);
        let mut instance = PluginInstance {
            name: self.name.clone(),
            deadline_ticks: deadline_ticks(self.limits.deadline),
            deadline: self.limits.deadline,
            bindings: None,
            store,
            info: empty_info(),
        };
        instance.store.set_epoch_deadline(instance.deadline_ticks);
        let bindings = self
            .pre
            .instantiate(&mut instance.store)
            .map_err(|e| anyhow::anyhow!("cannot instantiate plugin {}: {e:#}", self.name))?;
        instance.bindings = Some(bindings);
        let mut no_world = None;
        let info = instance
            .run(&mut no_world, |g, s| g.call_init(s))
            .map_err(|f| anyhow::anyhow!("plugin {} failed in init: {f}", self.name))?;
        instance.info = info;
        Ok(instance)
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

    /// The state hook, export side: the private state of `ids`.
    pub fn export(
        &mut self,
        world: &mut Option<Box<W>>,
        ids: &[EntityId],
    ) -> Result<Result<Vec<EntityState>, String>, Fault> {
        self.run(world, |g, s| g.call_export_entities(s, ids))
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
        self.store.data_mut().world = world.take();
        self.store.set_epoch_deadline(self.deadline_ticks);
        let result = f(bindings.wyrm_game_entities(), &mut self.store);
        *world = self.store.data_mut().world.take();
        result.map_err(|e| self.classify(e))
    }

    fn classify(&self, e: wasmtime::Error) -> Fault {
        if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            Fault::Deadline {
                plugin: self.name.clone(),
                deadline: self.deadline,
            }
        } else {
            Fault::Trap {
                plugin: self.name.clone(),
                reason: format!("{e:#}"),
            }
        }
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
