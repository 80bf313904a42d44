//! The one message vocabulary spoken between gate, dispatcher and game.
//! In `wyrm serve` these travel over in-process channels, bounded so that a
//! role that falls behind slows the one feeding it; a cluster will carry the
//! same messages between processes.

use bytes::Bytes;

/// A connected client, unique within a server.
pub type ClientId = u64;
/// An entity, unique within a server, never reused.
pub type EntityId = u64;

/// To a game.
#[derive(Debug)]
pub enum ToGame {
    /// A client connected: create its boot entity and bind the client to it.
    ClientConnected { client: ClientId },
    /// A client went away.
    ClientDisconnected { client: ClientId },
    /// A client called a method on an entity.
    ClientCall {
        client: ClientId,
        req_id: u32,
        entity: EntityId,
        method: String,
        args: Vec<u8>,
    },
    /// A client moved its own entity (a `Move` frame); applied only if the
    /// game lets that client move it.
    ClientMove {
        client: ClientId,
        pos: wyrm_protocol::Position,
        yaw: f32,
    },
    /// A continuation arriving from off the game thread (a password hash, a
    /// storage reply): a server call of `method` on `entity`.
    Continuation {
        entity: EntityId,
        method: String,
        args: Vec<u8>,
        /// What the request counts against the plugin that made it, until
        /// its reply has run: a reply waits in the game's inbox and work
        /// queue with its context, which the plugin chose.
        charge: Option<crate::held::Charge>,
    },
    /// A saved entity read by storage (or why it could not be).
    Loaded {
        id: EntityId,
        /// Boxed: loads are rare, and every other message should not pay
        /// for this variant's size.
        result: Box<Result<crate::storage::LoadedEntity, String>>,
    },
    /// Replace a plugin with a new version (hot swap).
    Swap(Box<crate::game::SwapRequest>),
    /// Stop the game loop.
    Shutdown,
}

/// To a gate: what one game produced for clients in one batch of work.
#[derive(Debug, Default)]
pub struct GateBatch {
    /// In the order the game produced them.
    pub ops: Vec<ToGate>,
    /// The batch ends a space tick: every client with frames queued is
    /// written to. Otherwise only clients that were sent a frame of their
    /// own (`Send`) are; frames sent to many, and changes of view, wait for
    /// the next tick, so each client gets one write per tick however many
    /// frames it brought.
    pub tick: bool,
    /// What the batch's frames count against the plugins that made them
    /// (`[limits] queued_bytes`), until the gate has handed them on and
    /// drops the batch.
    pub held: Vec<crate::held::Charge>,
}

/// One thing for a gate to do.
#[derive(Debug)]
pub enum ToGate {
    /// The client is now bound to `entity` (or to none), an entity of the
    /// plugin `plugin` (its index). The gate uses both to address fan-out
    /// calls.
    Bind {
        client: ClientId,
        entity: Option<EntityId>,
        plugin: usize,
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
        plugin: usize,
    },
    /// Call `method` on every client bound to an entity of plugin `plugin`.
    Broadcast {
        method: String,
        args: Bytes,
        plugin: usize,
    },
}
