//! The entity trait and the static description of a plugin.

use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{codec, AttrFlags, Ctx, EntityId, Exposure};

/// An entity type: its private state (`Self`), its declared attributes and
/// methods, the RPC dispatch, and lifecycle hooks.
///
/// Write an inherent `impl` block with [`#[entity]`](crate::entity) rather
/// than implementing this by hand; the macro fills in the constants and
/// [`dispatch`](Entity::dispatch), and routes methods named like the hooks
/// below (and an associated `fn migrate`) to this trait.
///
/// The state must be `Default` (new entities, and entities whose state was
/// lost) and serde-serialisable (the state hook).
pub trait Entity: Default + Serialize + DeserializeOwned + 'static {
    /// The type name, as the host and clients know it (default: the Rust
    /// type's name).
    const TYPE_NAME: &'static str;
    /// The attributes the type declares.
    const ATTRS: &'static [AttrSpec];
    /// The methods the type declares, with who may call them.
    const METHODS: &'static [MethodSpec];
    /// Its area of interest in a space (`#[entity(aoi(radius = .., hysteresis = ..))]`),
    /// or `None`: it sees nothing, though others may see it.
    const AOI: Option<AoiSpec> = None;

    /// Runs `method` with MessagePack `args` (an array of positional values).
    fn dispatch(&mut self, ctx: &mut Ctx, method: &str, args: &[u8]) -> Result<(), String>;

    /// The entity was just created; its initial attributes are set.
    fn on_created(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        let _ = ctx;
        Ok(())
    }

    /// The entity is gone (its attributes too); its state is dropped next.
    /// An error is only logged.
    fn on_destroyed(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        let _ = ctx;
        Ok(())
    }

    /// A client is now bound to the entity. An error is only logged.
    fn on_client_connected(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        let _ = ctx;
        Ok(())
    }

    /// The client bound to the entity went away. An error is only logged.
    fn on_client_disconnected(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        let _ = ctx;
        Ok(())
    }

    /// A space tick, `dt_ms` after the previous one: called on a space
    /// entity at the server's space tick rate. An error is only logged.
    fn on_tick(&mut self, ctx: &mut Ctx, dt_ms: u32) -> Result<(), String> {
        let _ = (ctx, dt_ms);
        Ok(())
    }

    /// `other` came into this entity's area of interest. Defining this (or
    /// `on_aoi_leave`) asks the host for AOI events. An error is only logged.
    fn on_aoi_enter(&mut self, ctx: &mut Ctx, other: EntityId) -> Result<(), String> {
        let _ = (ctx, other);
        Ok(())
    }

    /// `other` left this entity's area of interest. An error is only logged.
    fn on_aoi_leave(&mut self, ctx: &mut Ctx, other: EntityId) -> Result<(), String> {
        let _ = (ctx, other);
        Ok(())
    }

    /// Rebuilds the state from `data`, exported by plugin version
    /// `from_version` (this plugin's own version after a crash). Called by
    /// `import-entities` for non-empty data; empty data means `Default`.
    ///
    /// The default decodes `data` as this type's MessagePack form. Override
    /// it when a new version changes the state's shape.
    fn migrate(from_version: &str, data: &[u8]) -> Result<Self, String> {
        let _ = from_version;
        decode_state(data)
    }

    /// Serialises the state for `export-entities` (MessagePack, named fields).
    fn save(&self) -> Result<Vec<u8>, String> {
        encode_state(self)
    }
}

/// Encodes an entity state as `export-entities` does: MessagePack with named
/// fields.
pub fn encode_state<T: Serialize + ?Sized>(state: &T) -> Result<Vec<u8>, String> {
    codec::encode(state).map_err(String::from)
}

/// Decodes an entity state as the default [`Entity::migrate`] does; empty
/// data gives `Default`.
pub fn decode_state<T: DeserializeOwned + Default>(data: &[u8]) -> Result<T, String> {
    if data.is_empty() {
        return Ok(T::default());
    }
    rmp_serde::from_slice(data).map_err(|e| format!("cannot decode state: {e}"))
}

/// What a method (or a hook) may return: `()` or `Result<(), E: Display>`.
pub trait IntoCallResult {
    /// The call's outcome; an error string goes back to the caller.
    fn into_call_result(self) -> Result<(), String>;
}

impl IntoCallResult for () {
    fn into_call_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> IntoCallResult for Result<(), E> {
    fn into_call_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// An attribute an entity type declares.
#[derive(Clone, Copy, Debug)]
pub struct AttrSpec {
    /// Top-level attribute name.
    pub name: &'static str,
    /// Visibility and persistence.
    pub flags: AttrFlags,
}

/// How far an entity type sees in a space.
#[derive(Clone, Copy, Debug)]
pub struct AoiSpec {
    /// Others come into view within this distance on the ground plane.
    pub radius: f32,
    /// ... and leave it only beyond `radius + hysteresis`.
    pub hysteresis: f32,
    /// Whether the plugin wants `on_aoi_enter` / `on_aoi_leave`.
    pub events: bool,
}

/// A method an entity type declares.
#[derive(Clone, Copy, Debug)]
pub struct MethodSpec {
    /// Method name.
    pub name: &'static str,
    /// Who may call it.
    pub exposure: Exposure,
}

/// The static description of one entity type, with type-erased entry points
/// into it. Built by [`plugin!`](crate::plugin) with [`EntityTypeDef::of`].
pub struct EntityTypeDef {
    /// Type name.
    pub name: &'static str,
    /// Declared attributes.
    pub attrs: &'static [AttrSpec],
    /// Declared methods.
    pub methods: &'static [MethodSpec],
    /// Area of interest.
    pub aoi: Option<AoiSpec>,
    pub(crate) fresh: fn() -> Box<dyn AnyEntity>,
    pub(crate) restore: RestoreFn,
}

/// Rebuilds a type-erased state from `(from_version, data)`.
pub(crate) type RestoreFn = fn(&str, &[u8]) -> Result<Box<dyn AnyEntity>, String>;

impl EntityTypeDef {
    /// The description of entity type `T`.
    pub const fn of<T: Entity>() -> Self {
        EntityTypeDef {
            name: T::TYPE_NAME,
            attrs: T::ATTRS,
            methods: T::METHODS,
            aoi: T::AOI,
            fresh: fresh::<T>,
            restore: restore::<T>,
        }
    }
}

fn fresh<T: Entity>() -> Box<dyn AnyEntity> {
    Box::new(T::default())
}

fn restore<T: Entity>(from_version: &str, data: &[u8]) -> Result<Box<dyn AnyEntity>, String> {
    if data.is_empty() {
        return Ok(Box::new(T::default()));
    }
    Ok(Box::new(T::migrate(from_version, data)?))
}

/// A whole plugin: name, version and entity types, in the order `init`
/// reports them (a type's position is its `kind`).
pub struct PluginDef {
    /// Plugin name.
    pub name: &'static str,
    /// Plugin version.
    pub version: &'static str,
    /// Entity types.
    pub types: &'static [EntityTypeDef],
}

/// A lifecycle hook, for type-erased dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hook {
    Created,
    Destroyed,
    ClientConnected,
    ClientDisconnected,
    Tick(u32),
    AoiEnter(EntityId),
    AoiLeave(EntityId),
}

/// An entity state behind a type-erased pointer.
pub(crate) trait AnyEntity {
    fn dispatch(&mut self, ctx: &mut Ctx, method: &str, args: &[u8]) -> Result<(), String>;
    fn hook(&mut self, ctx: &mut Ctx, hook: Hook) -> Result<(), String>;
    fn save(&self) -> Result<Vec<u8>, String>;
}

impl<T: Entity> AnyEntity for T {
    fn dispatch(&mut self, ctx: &mut Ctx, method: &str, args: &[u8]) -> Result<(), String> {
        Entity::dispatch(self, ctx, method, args)
    }

    fn hook(&mut self, ctx: &mut Ctx, hook: Hook) -> Result<(), String> {
        match hook {
            Hook::Created => self.on_created(ctx),
            Hook::Destroyed => self.on_destroyed(ctx),
            Hook::ClientConnected => self.on_client_connected(ctx),
            Hook::ClientDisconnected => self.on_client_disconnected(ctx),
            Hook::Tick(dt_ms) => self.on_tick(ctx, dt_ms),
            Hook::AoiEnter(other) => self.on_aoi_enter(ctx, other),
            Hook::AoiLeave(other) => self.on_aoi_leave(ctx, other),
        }
    }

    fn save(&self) -> Result<Vec<u8>, String> {
        Entity::save(self)
    }
}

/// The error for a method the type does not have.
pub fn unknown_method(type_name: &str, method: &str) -> String {
    format!("unknown method {type_name}.{method}")
}
