//! The messages.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wyrm_protocol::Position;

use crate::ids::{ClientId, EntityId};

/// A plugin, by its place in the server's list of plugins (`[[plugin]]` in
/// the config, in order): every game of a deployment loads the same list.
pub type PluginIndex = u32;

/// To a game, from a gate (through the dispatcher).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToGame {
    /// A client connected: create its boot entity and bind the client to it.
    ClientConnected { client: ClientId },
    /// A client went away.
    ClientDisconnected { client: ClientId },
    /// A client called a method on an entity.
    ClientCall {
        client: ClientId,
        /// The client's number for the request, echoed in an error.
        req_id: u32,
        entity: EntityId,
        method: String,
        /// MessagePack.
        args: Vec<u8>,
    },
    /// A client moved its own entity (a `Move` frame); applied only if the
    /// game lets that client move it.
    ClientMove {
        client: ClientId,
        pos: Position,
        yaw: f32,
    },
    /// Stop: serve what came before, save every persistent entity, end.
    Shutdown,
}

/// To a gate: what one game produced for clients in one batch of work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateBatch {
    /// In the order the game produced them.
    pub ops: Vec<ToGate>,
    /// The batch ends a space tick: every client with frames queued is
    /// written to. Otherwise only clients that were sent a frame of their
    /// own (`Send`) are; frames sent to many, and changes of view, wait for
    /// the next tick, so each client gets one write per tick however many
    /// frames it brought.
    pub tick: bool,
}

/// One thing for a gate to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToGate {
    /// The client is now bound to `entity` (or to none), an entity of
    /// plugin `plugin`. The gate uses both to address fan-out calls.
    Bind {
        client: ClientId,
        entity: Option<EntityId>,
        plugin: PluginIndex,
    },
    /// One encoded frame for one client, written at the end of the batch.
    Send { client: ClientId, frame: Bytes },
    /// A change of what one client sees (an entity came into or left its
    /// area of interest), written with the next tick's frames.
    View { client: ClientId, frame: Bytes },
    /// One encoded frame for several clients: the same bytes for each.
    SendMany {
        clients: Vec<ClientId>,
        frame: Bytes,
    },
    /// Set or remove a tag on a client.
    SetTag {
        client: ClientId,
        key: String,
        value: Option<String>,
    },
    /// Call `method` on every client whose tags include all of `filter`,
    /// among those bound to an entity of plugin `plugin`: a plugin speaks
    /// only to clients of its own entities.
    CallFiltered {
        filter: Vec<(String, String)>,
        method: String,
        args: Bytes,
        plugin: PluginIndex,
    },
    /// Call `method` on every client bound to an entity of plugin `plugin`.
    Broadcast {
        method: String,
        args: Bytes,
        plugin: PluginIndex,
    },
}
