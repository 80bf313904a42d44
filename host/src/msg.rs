//! What the roles of one process send each other: the wire messages of
//! [`wyrm_wire`], which a cluster carries between processes too, and beside
//! them what only means something inside this process — a hot swap's new
//! instance, a storage answer, the bytes a message holds against a plugin.

pub use wyrm_wire::{
    AttrAsk, ClientId, EntityCall, EntityId, GateBatch, PluginIndex, ToGame, ToGate,
};

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
        charge: Option<crate::held::Charge>,
    },
    /// A question about an attribute of an entity (`ask-attr`), from
    /// another game's plugin.
    Ask {
        ask: AttrAsk,
        /// What the question (its context, its answer) counts against the
        /// plugin that asked until the answer has run.
        charge: Option<crate::held::Charge>,
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
    Swap(Box<crate::game::SwapRequest>),
}

impl GameInput {
    /// A call from the host (no plugin's rights to check) of `method` on
    /// `entity`.
    pub fn host_call(
        entity: EntityId,
        method: String,
        args: Vec<u8>,
        charge: Option<crate::held::Charge>,
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

    /// The entity the message is for, if it is routed by entity.
    pub fn entity(&self) -> Option<EntityId> {
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
}

impl From<wyrm_storage::Answer<Option<crate::held::Charge>>> for GameInput {
    fn from(answer: wyrm_storage::Answer<Option<crate::held::Charge>>) -> Self {
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

/// A game's output batch on its way to the gate, with what its frames
/// count against the plugins that made them (`[limits] queued_bytes`)
/// until the gate has handed them on and drops it.
#[derive(Debug, Default)]
pub struct HeldBatch {
    pub batch: GateBatch,
    pub held: Vec<crate::held::Charge>,
}
