//! The dispatcher: routes messages between gates and games. In `wyrm serve`
//! there is one of each and routing is direct; the dispatcher is still its
//! own task so that the same messages, in the same order, flow when roles
//! live in separate processes.

use crossbeam_channel::Sender;
use tokio::sync::mpsc;

use crate::gate::GateMsg;
use crate::msg::{ToDispatcher, ToGame};

/// See the module docs.
pub struct Dispatcher {
    inbox: mpsc::UnboundedReceiver<ToDispatcher>,
    game: Sender<ToGame>,
    gate: mpsc::UnboundedSender<GateMsg>,
}

impl Dispatcher {
    /// A dispatcher between one gate and one game.
    pub fn new(
        inbox: mpsc::UnboundedReceiver<ToDispatcher>,
        game: Sender<ToGame>,
        gate: mpsc::UnboundedSender<GateMsg>,
    ) -> Self {
        Self { inbox, game, gate }
    }

    /// Routes until every sender is gone.
    pub async fn run(mut self) {
        while let Some(msg) = self.inbox.recv().await {
            match msg {
                ToDispatcher::FromGate(m) => {
                    if self.game.send(m).is_err() {
                        break;
                    }
                }
                ToDispatcher::FromGame(m) => {
                    if self.gate.send(GateMsg::Route(m)).is_err() {
                        break;
                    }
                }
            }
        }
    }
}
