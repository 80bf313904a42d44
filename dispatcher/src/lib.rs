//! The dispatcher: where every message between Wyrm's roles goes.
//!
//! - [`Directory`] (`directory.rs`): the logic — where every live entity
//!   is, where new ones go, which entity is each service, and the messages
//!   held for an entity between games, delivered in order and once. Plain
//!   data, tested on its own.
//! - [`Dispatcher`], [`GameRoutes`], [`Answers`] (`routes.rs`): the
//!   dispatcher of one process — the directory behind a lock, with the
//!   [`Inbox`] of every game (`inbox.rs`), routing what gates, games and
//!   the server's own threads send. A game in another process has a
//!   [`relay_inbox`] here, and its `GameRoutes` send what they would have
//!   done under the lock as `RouteOp`s over a [`RouteLink`], which the
//!   dispatcher's process does with [`Dispatcher::apply`].
//! - [`Held`] and [`Charge`] (`held.rs`): the bytes a message holds against
//!   the plugin that queued it, wherever it waits, and the [`HeldBatch`] a
//!   game hands a gate.
//!
//! What the dispatcher routes is the games' input, [`Routed`]: the wire
//! messages of `wyrm-wire` and whatever one process adds beside them (a
//! game's own controls, a `Charge`), defined by the game. Gates and games
//! depend on this crate; it depends on neither.

mod directory;
mod gates;
mod held;
mod inbox;
mod routes;

pub use directory::{Directory, DirectoryError, Placement, Route};
pub use gates::Gates;
pub use held::{Charge, Held, HeldBatch, ITEM_BYTES};
pub use inbox::{inbox, relay_inbox, GameStopped, Inbox, InboxSender, InternalSender, Received};
pub use routes::{Answers, Dispatcher, GameRoutes, RouteLink, Upstream};

use wyrm_wire::{EntityId, ToGame};

/// A game's input as the dispatcher routes it and its inbox holds it.
pub trait Routed: From<ToGame> + Send + 'static {
    /// The entity it is for, if it is routed by entity.
    fn entity(&self) -> Option<EntityId>;
    /// The wire message it is, if it is one.
    fn wire(&self) -> Option<&ToGame>;
    /// The entity it brings from storage, if it is a load's answer: it goes
    /// to the game loading that entity, which holds everything else for it
    /// until then.
    fn loaded(&self) -> Option<EntityId>;
    /// The wire message it becomes to leave this process (for a game in
    /// another), or itself if it cannot (it means something only here).
    fn into_wire(self) -> Result<ToGame, Self>
    where
        Self: Sized;
}

/// A game's input for the tests: the wire messages, calls and loads.
#[cfg(test)]
mod testing {
    use wyrm_wire::{EntityCall, EntityId, ToGame};

    #[derive(Debug)]
    pub enum TestMsg {
        Wire(ToGame),
        Call(EntityCall),
        Loaded(EntityId),
    }

    impl From<ToGame> for TestMsg {
        fn from(msg: ToGame) -> Self {
            match msg {
                ToGame::EntityCall(call) => Self::Call(call),
                msg => Self::Wire(msg),
            }
        }
    }

    impl crate::Routed for TestMsg {
        fn entity(&self) -> Option<EntityId> {
            match self {
                Self::Call(call) => Some(call.entity),
                Self::Loaded(id) => Some(*id),
                Self::Wire(ToGame::ClientCall { entity, .. })
                | Self::Wire(ToGame::TakeClient { entity, .. }) => Some(*entity),
                Self::Wire(_) => None,
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
                Self::Loaded(id) => Some(*id),
                _ => None,
            }
        }
        fn into_wire(self) -> Result<ToGame, Self> {
            match self {
                Self::Wire(msg) => Ok(msg),
                Self::Call(call) => Ok(ToGame::EntityCall(call)),
                other => Err(other),
            }
        }
    }
}
