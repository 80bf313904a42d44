//! The data a plugin's store holds, and the host imports it answers.
//!
//! Game state is not owned here: the game lends its world (anything that
//! implements [`GameHost`]) to the store for the length of one call, so
//! several plugins can share it without locks and a plugin can never hold
//! on to it.

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{
    HostImports, Locality, LogLevel, PathSegment, Placement, Position, ReplyTo, StorageImports, Tag,
};
use super::stdio::GuestOutput;
use crate::logs::{clip_line, LogBudget};

/// Entity ids as plugins see them.
pub type EntityId = u64;

/// What stops a plugin's call: an import without an error value (WIT
/// gives it none) that the plugin used beyond a limit. The call traps with
/// this message; for an import with an error value, the plugin gets the
/// message as that value instead.
pub type Stop = String;

/// What the game provides to plugins: the host imports of the WIT world,
/// in Rust terms. Functions that can fail return `Err(message)`, which the
/// plugin receives as its error value (never a trap); functions whose WIT
/// signature has no error value return `Err(Stop)` for a limit the plugin
/// passed, which stops (traps) its call.
#[allow(missing_docs)] // each function is documented in wit/host.wit
pub trait GameHost: Send + 'static {
    /// The world is lent to plugin `plugin` (the slot its code was given,
    /// [`PluginCode::set_slot`](super::PluginCode::set_slot)) for one call:
    /// every import until [`leave_plugin`](Self::leave_plugin) is its.
    fn enter_plugin(&mut self, plugin: usize) {
        let _ = plugin;
    }
    /// The call that [`enter_plugin`](Self::enter_plugin) began is over.
    fn leave_plugin(&mut self) {}
    fn create_entity(
        &mut self,
        type_name: &str,
        attrs: &[u8],
        at: Locality,
    ) -> Result<EntityId, String>;
    fn destroy_entity(&mut self, id: EntityId) -> Result<(), String>;
    fn entity_type(&mut self, id: EntityId) -> Option<String>;
    fn ask_entity_type(&mut self, id: EntityId, reply: ReplyTo) -> Result<(), Stop>;
    fn service(&mut self, type_name: &str) -> Option<EntityId>;
    fn call_entity(&mut self, id: EntityId, method: String, args: Vec<u8>) -> Result<(), Stop>;
    fn call_client(&mut self, id: EntityId, method: &str, args: &[u8]) -> Result<bool, Stop>;
    fn call_filtered_clients(
        &mut self,
        filter: Vec<Tag>,
        method: String,
        args: Vec<u8>,
    ) -> Result<(), Stop>;
    fn broadcast(&mut self, method: String, args: Vec<u8>) -> Result<(), Stop>;
    fn give_client_to(&mut self, from: EntityId, to: EntityId) -> Result<(), String>;
    fn set_client_tag(
        &mut self,
        id: EntityId,
        key: String,
        value: Option<String>,
    ) -> Result<(), String>;
    fn create_space(
        &mut self,
        type_name: &str,
        kind: String,
        attrs: &[u8],
        at: Locality,
    ) -> Result<EntityId, String>;
    fn space_kind(&mut self, id: EntityId) -> Option<String>;
    fn enter_space(
        &mut self,
        id: EntityId,
        space: EntityId,
        pos: Position,
        yaw: f32,
    ) -> Result<(), String>;
    fn leave_space(&mut self, id: EntityId) -> Result<(), String>;
    fn set_position(&mut self, id: EntityId, pos: Position, yaw: f32) -> Result<(), String>;
    fn placement_of(&mut self, id: EntityId) -> Option<Placement>;
    fn allow_client_moves(&mut self, id: EntityId, allowed: bool) -> Result<(), String>;
    fn aoi_of(&mut self, id: EntityId) -> Vec<EntityId>;
    fn entities_near(&mut self, space: EntityId, center: Position, radius: f32) -> Vec<EntityId>;
    fn call_aoi_clients(&mut self, id: EntityId, method: &str, args: &[u8]) -> Result<(), Stop>;
    fn attr_get(&mut self, id: EntityId, path: &[PathSegment]) -> Result<Option<Vec<u8>>, String>;
    fn ask_attr(
        &mut self,
        id: EntityId,
        path: Vec<PathSegment>,
        reply: ReplyTo,
    ) -> Result<(), Stop>;
    fn attr_set(&mut self, id: EntityId, path: &[PathSegment], value: &[u8]) -> Result<(), String>;
    fn attr_delete(&mut self, id: EntityId, path: &[PathSegment]) -> Result<(), String>;
    fn attr_append(
        &mut self,
        id: EntityId,
        path: &[PathSegment],
        value: &[u8],
    ) -> Result<(), String>;
    fn set_timer(
        &mut self,
        id: EntityId,
        delay_ms: u32,
        repeat: bool,
        method: String,
        args: Vec<u8>,
    ) -> Result<u64, String>;
    fn cancel_timer(&mut self, timer: u64) -> bool;
    fn hash_password(
        &mut self,
        id: EntityId,
        password: String,
        method: String,
        context: Vec<u8>,
    ) -> Result<(), Stop>;
    fn verify_password(
        &mut self,
        id: EntityId,
        password: String,
        hash: String,
        method: String,
        context: Vec<u8>,
    ) -> Result<(), Stop>;
    // storage, as in wit/storage.wit
    fn load_entity(&mut self, id: EntityId, at: Locality, reply: ReplyTo) -> Result<(), Stop>;
    fn save_entity(&mut self, id: EntityId, reply: Option<ReplyTo>) -> Result<(), Stop>;
    fn entity_exists(&mut self, id: EntityId, reply: ReplyTo) -> Result<(), Stop>;
    fn saved_ids(&mut self, type_name: String, reply: ReplyTo) -> Result<(), Stop>;
    fn kv_get(&mut self, key: String, reply: ReplyTo) -> Result<(), Stop>;
    fn kv_put(&mut self, key: String, value: Vec<u8>, reply: Option<ReplyTo>) -> Result<(), Stop>;
    fn kv_get_or_put(&mut self, key: String, value: Vec<u8>, reply: ReplyTo) -> Result<(), Stop>;
    fn kv_range(&mut self, prefix: String, reply: ReplyTo) -> Result<(), Stop>;
    fn emit_stat(&mut self, name: String, fields: Vec<u8>);
}

/// A plugin store's data.
pub struct HostState<W> {
    /// The plugin's name, for log lines.
    pub(crate) plugin: std::sync::Arc<str>,
    /// The game world, present only while the game is calling in.
    pub(crate) world: Option<Box<W>>,
    pub(crate) limits: MemoryCap,
    /// The guest's stdout and stderr, as WASI was given them: the host
    /// marks where each call starts and reads why a call failed.
    pub(crate) output: [GuestOutput; 2],
    /// The plugin's allowance of log lines, shared with its output streams
    /// and its other instances.
    pub(crate) log_budget: std::sync::Arc<LogBudget>,
    /// Its thread's CPU time when the current call began, in nanoseconds
    /// (see `cpu_time`): what the call's deadline counts from.
    pub(crate) call_cpu_start: u64,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl<W> HostState<W> {
    pub(crate) fn new(
        plugin: std::sync::Arc<str>,
        limits: MemoryCap,
        wasi: WasiCtx,
        output: [GuestOutput; 2],
        log_budget: std::sync::Arc<LogBudget>,
    ) -> Self {
        Self {
            plugin,
            world: None,
            limits,
            output,
            log_budget,
            call_cpu_start: 0,
            wasi,
            table: ResourceTable::new(),
        }
    }

    fn world(&mut self) -> wasmtime::Result<&mut W> {
        // Host functions only run inside a call, and the game lends its world
        // for every call; reaching this without one is a host bug, reported
        // as a trap rather than a panic.
        self.world
            .as_deref_mut()
            .ok_or_else(|| wasmtime::Error::msg("host function called outside a game call"))
    }
}

/// The store's limits, remembering a growth they refused: a guest stopped
/// by the memory cap is then told "out of memory" rather than wasmtime's
/// words for it.
pub(crate) struct MemoryCap {
    limits: StoreLimits,
    /// The cap, in bytes.
    pub(crate) bytes: usize,
    /// The size the guest last asked to grow its memory to and was refused,
    /// since the current call began.
    pub(crate) refused: Option<usize>,
}

impl MemoryCap {
    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            limits: StoreLimitsBuilder::new()
                .memory_size(bytes)
                .trap_on_grow_failure(true)
                .build(),
            bytes,
            refused: None,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grown = self.limits.memory_growing(current, desired, maximum);
        if !matches!(grown, Ok(true)) {
            self.refused = Some(desired);
        }
        grown
    }
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }
    fn instances(&self) -> usize {
        self.limits.instances()
    }
    fn tables(&self) -> usize {
        self.limits.tables()
    }
    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl<W: Send> WasiView for HostState<W> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

type R<T> = wasmtime::Result<T>;

impl<W: GameHost> super::bindings::wyrm::game::types::Host for HostState<W> {}

/// A [`Stop`] as the trap that ends the guest's call.
fn stop<T>(r: Result<T, Stop>) -> R<T> {
    r.map_err(wasmtime::Error::msg)
}

impl<W: GameHost> StorageImports for HostState<W> {
    fn load_entity(&mut self, id: EntityId, at: Locality, reply: ReplyTo) -> R<()> {
        stop(self.world()?.load_entity(id, at, reply))
    }
    fn save_entity(&mut self, id: EntityId, reply: Option<ReplyTo>) -> R<()> {
        stop(self.world()?.save_entity(id, reply))
    }
    fn entity_exists(&mut self, id: EntityId, reply: ReplyTo) -> R<()> {
        stop(self.world()?.entity_exists(id, reply))
    }
    fn saved_ids(&mut self, type_name: String, reply: ReplyTo) -> R<()> {
        stop(self.world()?.saved_ids(type_name, reply))
    }
    fn kv_get(&mut self, key: String, reply: ReplyTo) -> R<()> {
        stop(self.world()?.kv_get(key, reply))
    }
    fn kv_put(&mut self, key: String, value: Vec<u8>, reply: Option<ReplyTo>) -> R<()> {
        stop(self.world()?.kv_put(key, value, reply))
    }
    fn kv_get_or_put(&mut self, key: String, value: Vec<u8>, reply: ReplyTo) -> R<()> {
        stop(self.world()?.kv_get_or_put(key, value, reply))
    }
    fn kv_range(&mut self, prefix: String, reply: ReplyTo) -> R<()> {
        stop(self.world()?.kv_range(prefix, reply))
    }
    fn emit_stat(&mut self, name: String, fields: Vec<u8>) -> R<()> {
        self.world()?.emit_stat(name, fields);
        Ok(())
    }
}

impl<W: GameHost> HostImports for HostState<W> {
    fn create_entity(
        &mut self,
        type_name: String,
        attrs: Vec<u8>,
        at: Locality,
    ) -> R<Result<EntityId, String>> {
        Ok(self.world()?.create_entity(&type_name, &attrs, at))
    }
    fn destroy_entity(&mut self, id: EntityId) -> R<Result<(), String>> {
        Ok(self.world()?.destroy_entity(id))
    }
    fn entity_type(&mut self, id: EntityId) -> R<Option<String>> {
        Ok(self.world()?.entity_type(id))
    }
    fn ask_entity_type(&mut self, id: EntityId, reply: ReplyTo) -> R<()> {
        stop(self.world()?.ask_entity_type(id, reply))
    }
    fn service(&mut self, type_name: String) -> R<Option<EntityId>> {
        Ok(self.world()?.service(&type_name))
    }
    fn call_entity(&mut self, id: EntityId, method: String, args: Vec<u8>) -> R<()> {
        stop(self.world()?.call_entity(id, method, args))
    }
    fn call_client(&mut self, id: EntityId, method: String, args: Vec<u8>) -> R<bool> {
        stop(self.world()?.call_client(id, &method, &args))
    }
    fn call_filtered_clients(&mut self, filter: Vec<Tag>, method: String, args: Vec<u8>) -> R<()> {
        stop(self.world()?.call_filtered_clients(filter, method, args))
    }
    fn broadcast(&mut self, method: String, args: Vec<u8>) -> R<()> {
        stop(self.world()?.broadcast(method, args))
    }
    fn give_client_to(&mut self, from: EntityId, to: EntityId) -> R<Result<(), String>> {
        Ok(self.world()?.give_client_to(from, to))
    }
    fn set_client_tag(
        &mut self,
        id: EntityId,
        key: String,
        value: Option<String>,
    ) -> R<Result<(), String>> {
        Ok(self.world()?.set_client_tag(id, key, value))
    }
    fn create_space(
        &mut self,
        type_name: String,
        kind: String,
        attrs: Vec<u8>,
        at: Locality,
    ) -> R<Result<EntityId, String>> {
        Ok(self.world()?.create_space(&type_name, kind, &attrs, at))
    }
    fn space_kind(&mut self, id: EntityId) -> R<Option<String>> {
        Ok(self.world()?.space_kind(id))
    }
    fn enter_space(
        &mut self,
        id: EntityId,
        space: EntityId,
        pos: Position,
        yaw: f32,
    ) -> R<Result<(), String>> {
        Ok(self.world()?.enter_space(id, space, pos, yaw))
    }
    fn leave_space(&mut self, id: EntityId) -> R<Result<(), String>> {
        Ok(self.world()?.leave_space(id))
    }
    fn set_position(&mut self, id: EntityId, pos: Position, yaw: f32) -> R<Result<(), String>> {
        Ok(self.world()?.set_position(id, pos, yaw))
    }
    fn placement_of(&mut self, id: EntityId) -> R<Option<Placement>> {
        Ok(self.world()?.placement_of(id))
    }
    fn allow_client_moves(&mut self, id: EntityId, allowed: bool) -> R<Result<(), String>> {
        Ok(self.world()?.allow_client_moves(id, allowed))
    }
    fn aoi_of(&mut self, id: EntityId) -> R<Vec<EntityId>> {
        Ok(self.world()?.aoi_of(id))
    }
    fn entities_near(
        &mut self,
        space: EntityId,
        center: Position,
        radius: f32,
    ) -> R<Vec<EntityId>> {
        Ok(self.world()?.entities_near(space, center, radius))
    }
    fn call_aoi_clients(&mut self, id: EntityId, method: String, args: Vec<u8>) -> R<()> {
        stop(self.world()?.call_aoi_clients(id, &method, &args))
    }
    fn attr_get(
        &mut self,
        id: EntityId,
        path: Vec<PathSegment>,
    ) -> R<Result<Option<Vec<u8>>, String>> {
        Ok(self.world()?.attr_get(id, &path))
    }
    fn ask_attr(&mut self, id: EntityId, path: Vec<PathSegment>, reply: ReplyTo) -> R<()> {
        stop(self.world()?.ask_attr(id, path, reply))
    }
    fn attr_set(
        &mut self,
        id: EntityId,
        path: Vec<PathSegment>,
        value: Vec<u8>,
    ) -> R<Result<(), String>> {
        Ok(self.world()?.attr_set(id, &path, &value))
    }
    fn attr_delete(&mut self, id: EntityId, path: Vec<PathSegment>) -> R<Result<(), String>> {
        Ok(self.world()?.attr_delete(id, &path))
    }
    fn attr_append(
        &mut self,
        id: EntityId,
        path: Vec<PathSegment>,
        value: Vec<u8>,
    ) -> R<Result<(), String>> {
        Ok(self.world()?.attr_append(id, &path, &value))
    }
    fn set_timer(
        &mut self,
        id: EntityId,
        delay_ms: u32,
        repeat: bool,
        method: String,
        args: Vec<u8>,
    ) -> R<Result<u64, String>> {
        Ok(self.world()?.set_timer(id, delay_ms, repeat, method, args))
    }
    fn cancel_timer(&mut self, timer: u64) -> R<bool> {
        Ok(self.world()?.cancel_timer(timer))
    }
    fn hash_password(
        &mut self,
        id: EntityId,
        password: String,
        method: String,
        context: Vec<u8>,
    ) -> R<()> {
        stop(self.world()?.hash_password(id, password, method, context))
    }
    fn verify_password(
        &mut self,
        id: EntityId,
        password: String,
        hash: String,
        method: String,
        context: Vec<u8>,
    ) -> R<()> {
        stop(
            self.world()?
                .verify_password(id, password, hash, method, context),
        )
    }
    fn log(&mut self, level: LogLevel, message: String) -> R<()> {
        let plugin = &*self.plugin;
        // Over its rate, a line is dropped (and counted); an overlong one
        // is cut. Logging never fails the call: WIT gives `log` no error.
        if !self.log_budget.admit(plugin) {
            return Ok(());
        }
        let message = clip_line(&message);
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
    fn now_ms(&mut self) -> R<u64> {
        Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0))
    }
}
