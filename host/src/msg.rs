//! What the roles of one process send each other: the wire messages of
//! [`wyrm_wire`], which a cluster carries between processes too, and beside
//! them what only means something inside this process — a hot swap's new
//! instance, a storage answer, the bytes a batch holds against a plugin.

pub use wyrm_wire::{ClientId, EntityId, GateBatch, PluginIndex, ToGame, ToGate};

/// Everything a game's inbox takes.
#[derive(Debug)]
pub enum GameInput {
    /// From a gate, through the dispatcher.
    Wire(ToGame),
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
        result: Box<Result<wyrm_storage::LoadedEntity, String>>,
    },
    /// Replace a plugin with a new version (hot swap).
    Swap(Box<crate::game::SwapRequest>),
}

impl From<wyrm_storage::Answer<Option<crate::held::Charge>>> for GameInput {
    fn from(answer: wyrm_storage::Answer<Option<crate::held::Charge>>) -> Self {
        match answer {
            // A reply keeps counting against the plugin that asked until it
            // has run.
            wyrm_storage::Answer::Reply { reply, ticket } => Self::Continuation {
                entity: reply.entity,
                method: reply.method,
                args: reply.args,
                charge: ticket,
            },
            wyrm_storage::Answer::Loaded { id, result } => Self::Loaded {
                id,
                result: Box::new(result),
            },
        }
    }
}

impl From<ToGame> for GameInput {
    fn from(msg: ToGame) -> Self {
        Self::Wire(msg)
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
