//! What the roles of one process send each other: the wire messages of
//! [`wyrm_wire`], which a cluster carries between processes too, and beside
//! them what only means something inside this process — a hot swap's new
//! instance, a storage answer, the bytes a message holds against a plugin.

pub use wyrm_dispatcher::{Gates, HeldBatch};
pub use wyrm_wire::{
    AttrAsk, ClientId, EntityCall, EntityId, GateBatch, PluginIndex, ToGame, ToGate,
};

/// The dispatcher of this process, routing [`GameInput`].
pub type Dispatcher = wyrm_dispatcher::Dispatcher<GameInput>;
/// What one game tells the dispatcher and sends through it.
pub type GameRoutes = wyrm_dispatcher::GameRoutes<GameInput>;
/// Where the server's own threads deliver answers.
pub type Answers = wyrm_dispatcher::Answers<GameInput>;
/// A game's inbox, and its two ends.
pub type Inbox = wyrm_dispatcher::Inbox<GameInput>;
pub type InboxSender = wyrm_dispatcher::InboxSender<GameInput>;
pub type InternalSender = wyrm_dispatcher::InternalSender<GameInput>;
pub type Received = wyrm_dispatcher::Received<GameInput>;

/// Everything a game's inbox takes.
#[derive(Debug)]
pub enum GameInput {
    /// From a gate or another game, through the dispatcher.
    Wire(ToGame),
    /// A call routed to the entity's game: from another game's plugin, or
    /// from off any game thread (a password hash, a storage reply: a server
    /// call).
    Call {
        call: EntityCall,
        /// What the call counts against the plugin that made it until it
        /// has run: it waits in inboxes and work queues with arguments the
        /// plugin chose.
        charge: Option<wyrm_dispatcher::Charge>,
    },
    /// A question about an attribute of an entity (`ask-attr`), from
    /// another game's plugin.
    Ask {
        ask: AttrAsk,
        /// What the question (its context, its answer) counts against the
        /// plugin that asked until the answer has run.
        charge: Option<wyrm_dispatcher::Charge>,
    },
    /// A saved entity read by storage (or why it could not be).
    Loaded {
        id: EntityId,
        /// Boxed: loads are rare, and every other message should not pay
        /// for this variant's size.
        result: Box<Result<wyrm_storage::LoadedEntity, String>>,
    },
    /// Replace a plugin with a new version (hot swap) on this game, if
    /// every game can.
    Swap(Box<crate::SwapRequest>),
    /// In a cluster, the node (its dispatcher, its gates' links) is gone
    /// (`false`: every client was let go with it) or back (`true`: report
    /// every entity to its new dispatcher).
    Node { back: bool },
}

impl GameInput {
    /// A call from the host (no plugin's rights to check) of `method` on
    /// `entity`.
    pub fn host_call(
        entity: EntityId,
        method: String,
        args: Vec<u8>,
        charge: Option<wyrm_dispatcher::Charge>,
    ) -> Self {
        Self::Call {
            call: EntityCall {
                entity,
                method,
                args,
                from: None,
                plugin: None,
            },
            charge,
        }
    }
}

impl wyrm_dispatcher::Routed for GameInput {
    fn entity(&self) -> Option<EntityId> {
        match self {
            Self::Call { call, .. } => Some(call.entity),
            Self::Ask { ask, .. } => Some(ask.entity),
            Self::Wire(ToGame::CreateEntity(new)) => Some(new.id),
            Self::Wire(ToGame::ClientCall { entity, .. })
            | Self::Wire(ToGame::DestroyEntity { entity })
            | Self::Wire(ToGame::CallClient { entity, .. })
            | Self::Wire(ToGame::TakeClient { entity, .. })
            | Self::Wire(ToGame::ReleaseClient { entity, .. }) => Some(*entity),
            Self::Wire(ToGame::GiveClient { from, .. }) => Some(*from),
            Self::Loaded { id, .. } => Some(*id),
            _ => None,
        }
    }

    fn wire(&self) -> Option<&ToGame> {
        match self {
            Self::Wire(msg) => Some(msg),
            _ => None,
        }
    }

    fn loaded(&self) -> Option<EntityId> {
        match self {
            Self::Loaded { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// What a charge held stays behind: it counts bytes in this process.
    fn into_wire(self) -> Result<ToGame, Self> {
        match self {
            Self::Wire(msg) => Ok(msg),
            Self::Call { call, .. } => Ok(ToGame::EntityCall(call)),
            Self::Ask { ask, .. } => Ok(ToGame::AskAttr(ask)),
            other => Err(other),
        }
    }
}

impl From<wyrm_storage::Answer<Option<wyrm_dispatcher::Charge>>> for GameInput {
    fn from(answer: wyrm_storage::Answer<Option<wyrm_dispatcher::Charge>>) -> Self {
        match answer {
            // A reply keeps counting against the plugin that asked until it
            // has run.
            wyrm_storage::Answer::Reply { reply, ticket } => {
                Self::host_call(reply.entity, reply.method, reply.args, ticket)
            }
            wyrm_storage::Answer::Loaded { id, result } => Self::Loaded {
                id,
                result: Box::new(result),
            },
        }
    }
}

impl From<ToGame> for GameInput {
    fn from(msg: ToGame) -> Self {
        match msg {
            ToGame::EntityCall(call) => Self::Call { call, charge: None },
            ToGame::AskAttr(ask) => Self::Ask { ask, charge: None },
            msg => Self::Wire(msg),
        }
    }
}
