//! The Rust guest SDK for Wyrm: it turns plain Rust entity types into a Wyrm
//! plugin, a WebAssembly component implementing the `wyrm:game` world.
//!
//! A plugin never runs `wit-bindgen` itself. It declares entity types with
//! [`#[entity]`](entity), lists them in [`plugin!`], and builds for
//! `wasm32-wasip2` with `crate-type = ["cdylib"]`:
//!
//! ```no_run
//! use wyrm_sdk::prelude::*;
//!
//! #[derive(Default, Serialize, Deserialize)]
//! pub struct Counter { n: u64 }            // private per-entity state (serde)
//!
//! #[wyrm_sdk::entity(attrs(total = "all_clients", secret = "persistent"))]
//! impl Counter {
//!     #[own_client]                         // or #[all_clients]; none = server-only
//!     fn add(&mut self, ctx: &mut Ctx, by: u64) -> Result<(), String> {
//!         self.n += by;
//!         ctx.set_attr("total", self.n)?;
//!         ctx.call_client("on_total", (self.n,))?;
//!         Ok(())
//!     }
//!     fn reset(&mut self) { self.n = 0; }
//! }
//!
//! wyrm_sdk::plugin!(name = "counter", entities = [Counter]);
//! ```
//!
//! What the SDK does for you:
//!
//! - **RPC dispatch.** Method arguments arrive as a MessagePack array of
//!   positional values and are decoded into the method's parameters; a
//!   decoding failure is an error reply, never a panic.
//! - **Private state.** Each entity's state (the `Self` value) lives in a
//!   guest-side table keyed by entity id. An id the table does not know (for
//!   example after the host replaced a trapped instance) gets `Default` state.
//! - **State hook.** `export-entities` / `import-entities` serialise states
//!   with MessagePack (named fields); [`Entity::migrate`] lets a new version
//!   read an old version's state.
//! - **Host access.** [`Ctx`] wraps every host import with typed helpers; the
//!   raw imports stay reachable in [`raw`].
//!
//! The deriving crate needs `serde` as a direct dependency (the serde derive
//! macros refer to it by name).

#![warn(missing_docs)]

// Lets `#[entity]`-generated code (which names `::wyrm_sdk`) work inside this
// crate's own tests.
extern crate self as wyrm_sdk;

/// The bindings `wit-bindgen` generates for the `wyrm:game/plugin` world.
///
/// Plugins rarely need these directly: [`Ctx`] wraps the imports and
/// [`plugin!`] implements the exports.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "wyrm_sdk::bindings",
    });
}

mod attrs;
pub mod codec;
mod ctx;
mod entity;
mod error;
mod path;
mod runtime;

pub use attrs::Attrs;
pub use ctx::Ctx;
pub use entity::{
    decode_state, encode_state, AoiSpec, AttrSpec, Entity, EntityTypeDef, IntoCallResult,
    MethodSpec, PluginDef,
};
pub use error::{Error, Result};
pub use path::{IntoSegment, Path};
pub use runtime::Plugin;

/// The `#[entity]` attribute macro: turns an inherent `impl` block into an
/// [`Entity`] implementation. See the macro's own documentation.
pub use wyrm_sdk_macros::entity;

pub use bindings::wyrm::game::types::{
    AttrFlags, Caller, CallerKind, EntityRef, EntityState, Exposure, Locality, LogLevel,
    PathSegment, Placement, Position, Tag,
};

/// The raw host imports, exactly as `wit-bindgen` generates them. Every one of
/// them also has a typed wrapper on [`Ctx`] or in this crate's root.
pub use bindings::wyrm::game::host as raw;

/// The raw storage imports (`wit/storage.wit`); [`Ctx`] wraps each of them.
pub use bindings::wyrm::game::storage as raw_storage;

/// Re-exported so plugins use the same versions as the SDK.
pub use rmp_serde;
/// Re-exported so plugins use the same versions as the SDK.
pub use rmpv;
/// Re-exported so plugins use the same versions as the SDK.
pub use serde;

/// An entity's id: unique within a server for its whole life, never reused.
pub type EntityId = u64;

/// A timer's id, as returned by [`Ctx::set_timer`].
pub type TimerId = u64;

/// Everything a plugin usually needs: `use wyrm_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        attrs, debug, error, info, path, trace, warn, Attrs, Caller, CallerKind, Ctx, Entity,
        EntityId, Error, Locality, LogLevel, Path, Placement, Position, TimerId,
    };
    pub use serde::{Deserialize, Serialize};
}

/// Writes a log line attributed to the plugin (host import `log`).
///
/// The [`trace!`], [`debug!`], [`info!`], [`warn!`] and [`error!`] macros
/// format their arguments and call this.
pub fn log(level: LogLevel, message: &str) {
    raw::log(level, message);
}

/// Wall-clock time in milliseconds since the Unix epoch (host import `now-ms`).
pub fn now_ms() -> u64 {
    raw::now_ms()
}

/// How many entities this instance of the plugin holds private state for
/// (state is made on an entity's first call and dropped when it is
/// destroyed or moves to another game): for diagnostics and tests.
pub fn states_held() -> usize {
    runtime::states_held()
}

/// Logs a formatted line at trace level: `trace!("x = {x}")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log($crate::LogLevel::Trace, &::std::format!($($arg)+)) };
}

/// Logs a formatted line at debug level: `debug!("x = {x}")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log($crate::LogLevel::Debug, &::std::format!($($arg)+)) };
}

/// Logs a formatted line at info level: `info!("x = {x}")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log($crate::LogLevel::Info, &::std::format!($($arg)+)) };
}

/// Logs a formatted line at warn level: `warn!("x = {x}")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log($crate::LogLevel::Warn, &::std::format!($($arg)+)) };
}

/// Logs a formatted line at error level: `error!("x = {x}")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log($crate::LogLevel::Error, &::std::format!($($arg)+)) };
}

/// Builds an attribute [`Path`]: `path!["members", room, 0u32]`.
///
/// Strings (`&str`, `String`, `&String`) become map keys, `u32` values list
/// indices. The first segment is the top-level attribute's name.
#[macro_export]
macro_rules! path {
    ($($seg:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut p = $crate::Path::new();
        $(p.push($seg);)*
        p
    }};
}

/// Builds an [`Attrs`] map for [`Ctx::create_entity`]:
/// `attrs! { "name" => name, "room" => "lobby" }`.
#[macro_export]
macro_rules! attrs {
    ($($key:expr => $value:expr),* $(,)?) => {
        $crate::Attrs::new()$(.with($key, $value))*
    };
}

/// Declares the plugin: its name, optional version (default: the crate's
/// `CARGO_PKG_VERSION`) and its entity types, and exports the component's
/// `entities` interface. Use it once per plugin crate.
///
/// ```ignore
/// wyrm_sdk::plugin!(name = "chatroom", entities = [Account, Avatar, Lobby]);
/// wyrm_sdk::plugin!(name = "chatroom", version = "2.0.0", entities = [Account]);
/// ```
///
/// The order of `entities` is the order of the `entity-types` list `init`
/// returns, so the host's `kind` index for a type is its position here.
#[macro_export]
macro_rules! plugin {
    (name = $name:expr, entities = [$($ty:ty),* $(,)?] $(,)?) => {
        $crate::plugin!(name = $name, version = ::core::env!("CARGO_PKG_VERSION"), entities = [$($ty),*]);
    };
    (name = $name:expr, version = $version:expr, entities = [$($ty:ty),* $(,)?] $(,)?) => {
        const _: () = {
            static __WYRM_PLUGIN_DEF: $crate::PluginDef = $crate::PluginDef {
                name: $name,
                version: $version,
                types: &[$($crate::EntityTypeDef::of::<$ty>()),*],
            };
            struct __WyrmPlugin;
            impl $crate::Plugin for __WyrmPlugin {
                fn def() -> &'static $crate::PluginDef {
                    &__WYRM_PLUGIN_DEF
                }
            }
            #[allow(dead_code)] // used only by the wasm exports below
            type __WyrmGuest = $crate::__private::Guest<__WyrmPlugin>;
            // The component exports exist only in the wasm build: natively
            // (unit tests, clippy) the plugin crate is plain Rust, and its
            // export names (`wyrm:game/entities@0.3.0#call`) could not be
            // linked into a native library anyway.
            #[cfg(target_family = "wasm")]
            $crate::bindings::export!(__WyrmGuest with_types_in $crate::bindings);
        };
    };
}

/// Implementation details used by the macros. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::codec::{decode_args, decode_no_args};
    pub use crate::entity::unknown_method;
    pub use crate::runtime::Guest;
}

#[cfg(test)]
mod tests;
