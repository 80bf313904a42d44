//! The dispatcher: decides which game handles what a gate receives. In
//! `wyrm serve` there is one game, so routing is one send into that game's
//! inbox, made by the connection's own task: no task of its own, no hop
//! that only forwards. The inbox is bounded; a connection whose message
//! does not fit waits (and so stops reading its socket) until the game has
//! caught up.
//!
//! Games reach gates the other way directly too: each game sends its
//! [`GateBatch`](crate::msg::GateBatch)es into the gate's inbox.

use crate::game::{GameStopped, InboxSender};
use crate::msg::ToGame;

/// Routes gate messages to games; cheap to clone (one per connection).
#[derive(Clone, Debug)]
pub struct Dispatcher {
    game: InboxSender,
}

impl Dispatcher {
    /// A dispatcher to one game, through its inbox.
    pub fn new(game: InboxSender) -> Self {
        Self { game }
    }

    /// Delivers `msg` to the game that handles it, waiting while that
    /// game's inbox is full.
    pub async fn to_game(&self, msg: ToGame) -> Result<(), GameStopped> {
        self.game.send(msg).await
    }
}
