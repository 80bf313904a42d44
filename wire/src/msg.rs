//! The messages.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wyrm_protocol::{PathSegment, Position};

use crate::ids::{ClientId, EntityId, GameId};

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
    /// A call to an entity on another game: from a plugin's code there
    /// (checked here, where the target's type is known), or from the host
    /// (a storage reply, a password result: `plugin` is `None`).
    EntityCall(EntityCall),
    /// A plugin on another game destroys its entity `entity` (it checked
    /// the entity is its own).
    DestroyEntity { entity: EntityId },
    /// A plugin on another game calls `method` on the client of its entity
    /// `entity` (if it has one).
    CallClient {
        entity: EntityId,
        method: String,
        /// MessagePack.
        args: Vec<u8>,
    },
    /// Hand the client of `from` to `to`, which lives on another game or
    /// was named by a plugin on one: `from`'s game unbinds it and sends
    /// `TakeClient` on.
    GiveClient { from: EntityId, to: EntityId },
    /// Bind `client`, handed over by another game, to `entity`.
    TakeClient { client: ClientId, entity: EntityId },
    /// `client`, bound to `entity`, was handed to an entity on another
    /// game (which took it already): unbind it here.
    ReleaseClient { entity: EntityId, client: ClientId },
    /// To the game an entity leaves, on the path every message for it
    /// takes: everything routed to it before its messages were held is
    /// ahead of this (see `wyrm-dispatcher`). The game sends it on to `to`.
    Depart {
        entity: EntityId,
        to: GameId,
        /// What it does once there.
        then: Option<Arrival>,
        /// When its messages began to be held (microseconds since the Unix
        /// epoch): the start of its pause.
        held_at_us: u64,
    },
    /// An entity arriving from another game (or coming back, refused).
    Arrive(Box<Migrant>),
    /// A plugin on another game created this entity, which the dispatcher
    /// placed here by load: make it as that game would have.
    CreateEntity(Box<NewEntity>),
    /// A plugin on another game asks for an attribute of an entity here.
    AskAttr(AttrAsk),
    /// A plugin on another game loads saved entity `entity` here (the
    /// dispatcher placed it, and holds its messages until it is in):
    /// `reply` gets the answer.
    LoadEntity { entity: EntityId, reply: ReplyTo },
    /// Load saved entity `entity` here, with its last checkpointed private
    /// state: the game that ran it died (the dispatcher placed it here and
    /// holds its messages until it is in). `client`, still connected, was
    /// bound to it there: bind it again once it is in, or let it go if it
    /// cannot come back (one never saved is simply gone).
    Reload {
        entity: EntityId,
        client: Option<ClientId>,
    },
    /// What this game (in a process of its own) sent for an entity that
    /// is on no game, back for it to handle as it would have at once in
    /// one process: into the entity's mailbox, or answered as missing.
    Returned(Box<ToGame>),
    /// Stop: serve what came before, save every persistent entity, end.
    Shutdown,
}

/// What a migrating entity does once it has arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Arrival {
    /// Enter `space` (which lives on the game it goes to) at `pos`.
    EnterSpace {
        space: EntityId,
        pos: Position,
        yaw: f32,
    },
}

/// An entity on its way between games: everything that is its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migrant {
    pub id: EntityId,
    pub type_name: String,
    /// The game it leaves.
    pub from: GameId,
    /// Every attribute it has: a MessagePack map by name.
    pub attrs: Vec<u8>,
    /// Its private state, as its plugin's state hook exported it.
    pub state: Vec<u8>,
    /// The plugin version that exported `state`.
    pub version: String,
    pub timers: Vec<MigrantTimer>,
    /// The client bound to it.
    pub client: Option<ClientId>,
    /// Its client may move it.
    pub client_moves: bool,
    /// A persistent attribute changed since it was last saved.
    pub dirty: bool,
    /// The plugin it counts against (`[limits] entities`).
    pub counted: PluginIndex,
    /// The plugin that created it and may still give it its client.
    pub handoff: Option<PluginIndex>,
    /// Work queued for it when it left, in order.
    pub work: Vec<QueuedWork>,
    pub then: Option<Arrival>,
    /// Why the game it went to could not take it: it is back where it was.
    pub bounced: Option<String>,
    /// When its messages began to be held (microseconds since the Unix
    /// epoch).
    pub held_at_us: u64,
}

/// An armed timer of a migrating entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrantTimer {
    /// Its id, which the plugin may hold to cancel it: ids are unique
    /// across games.
    pub id: u64,
    /// Due this long after the entity arrives.
    pub due_in_us: u64,
    /// Period, for a repeating timer.
    pub every_us: Option<u64>,
    pub method: String,
    /// MessagePack.
    pub args: Vec<u8>,
    /// Its last call travels in the entity's work.
    pub queued: bool,
}

/// Work that waited for a migrating entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QueuedWork {
    Created,
    ClientConnected,
    ClientDisconnected,
    Call {
        call: EntityCall,
        /// How the target sees its caller (the plugin's `caller-kind`:
        /// 0 server, 1 own client, 2 another client).
        caller_kind: u8,
        /// The client request it answers with an error if it fails.
        reply: Option<(ClientId, u32)>,
        /// The timer that fired it.
        timer: Option<u64>,
    },
}

/// An entity a plugin on one game creates on another (`create-entity`
/// with locality `anywhere`). Its id is live in the dispatcher already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEntity {
    pub id: EntityId,
    pub type_name: String,
    /// Its initial attributes: a MessagePack map by name (checked by the
    /// creating game), or empty.
    pub attrs: Vec<u8>,
    /// It is a space of this kind (`create-space`).
    pub space: Option<String>,
    /// The plugin whose code created it: it counts against it, its
    /// `created` hook is queued as its work, and, if the type is another
    /// plugin's, it may give it its client once.
    pub creator: Option<PluginIndex>,
}

/// A question about an attribute of `entity`, asked by `plugin`'s code on
/// another game (`ask-attr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttrAsk {
    pub entity: EntityId,
    pub path: Vec<PathSegment>,
    pub reply: ReplyTo,
    pub plugin: PluginIndex,
}

/// Where an answer goes: `method` on `entity`, with MessagePack args
/// `[error, value, context]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub entity: EntityId,
    pub method: String,
    /// MessagePack, handed back untouched.
    pub context: Vec<u8>,
}

/// A method call on an entity, made somewhere else than where it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityCall {
    pub entity: EntityId,
    pub method: String,
    /// MessagePack.
    pub args: Vec<u8>,
    /// The calling entity, if an entity's code called.
    pub from: Option<EntityId>,
    /// The calling plugin, whose rights the target's game checks; `None`
    /// for the host itself (replies, timers), which may call any method.
    pub plugin: Option<PluginIndex>,
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
    /// End the client's connection: the game that ran its entity is gone
    /// (its process died), so it must log in again to play on.
    Release { client: ClientId },
    /// Call `method` on every client bound to an entity of plugin `plugin`.
    Broadcast {
        method: String,
        args: Bytes,
        plugin: PluginIndex,
    },
}
