//! The game's inbox: one queue, in arrival order, for everything the game
//! is sent — its clients' calls and moves (through the dispatcher) and the
//! answers of the server's own threads (storage, password hashing, swaps).
//!
//! It does two things a plain channel would not:
//! - **A move does not wake the game.** Moves matter only to the next space
//!   tick, which wakes the game anyway (and everything before them in the
//!   queue is handled first), so a crowd of moving players costs no thread
//!   wake-up per move; anything else wakes the game at once.
//! - **It is bounded for connections and not for the server's threads.** A
//!   connection whose message does not fit waits (and stops reading its
//!   socket) until the game catches up; storage and the password threads
//!   answer what the game asked for and must never wait on it, or the game
//!   waiting on them (at shutdown, say) would deadlock.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use wyrm_wire::ToGame;

use crate::Routed;

/// The game has stopped: nothing more can be delivered.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the game has stopped")]
pub struct GameStopped;

struct Shared<M> {
    state: Mutex<State<M>>,
    /// The game waits here for something that wakes it.
    ready: Condvar,
    /// Connections wait here for room.
    room: Notify,
    capacity: usize,
    /// Moves do not wake the reader (a game, which a tick wakes anyway).
    lazy_moves: bool,
}

struct State<M> {
    queue: VecDeque<M>,
    /// The game is waiting on `ready`.
    game_waiting: bool,
    /// Connection-side senders alive; with none, the game stops.
    connection_senders: usize,
    /// The game still takes messages.
    open: bool,
}

impl<M> Shared<M> {
    fn lock(&self) -> MutexGuard<'_, State<M>> {
        // Every change to the state is one step; a panic elsewhere cannot
        // leave it half-made.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<M: Routed> Shared<M> {
    fn push(&self, msg: M, mut st: MutexGuard<'_, State<M>>) {
        let wake = st.game_waiting
            && !(self.lazy_moves && matches!(msg.wire(), Some(ToGame::ClientMove { .. })));
        st.queue.push_back(msg);
        drop(st);
        if wake {
            self.ready.notify_one();
        }
    }
}

/// Makes an inbox holding up to `capacity` messages from connections.
pub fn inbox<M: Routed>(capacity: usize) -> (Inbox<M>, InboxSender<M>, InternalSender<M>) {
    make(capacity, true)
}

/// Makes an inbox like [`inbox`] whose reader is woken by moves too: one
/// that relays everything at once to a game in another process.
pub fn relay_inbox<M: Routed>(capacity: usize) -> (Inbox<M>, InboxSender<M>, InternalSender<M>) {
    make(capacity, false)
}

fn make<M: Routed>(
    capacity: usize,
    lazy_moves: bool,
) -> (Inbox<M>, InboxSender<M>, InternalSender<M>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            game_waiting: false,
            connection_senders: 1,
            open: true,
        }),
        ready: Condvar::new(),
        room: Notify::new(),
        capacity: capacity.max(1),
        lazy_moves,
    });
    (
        Inbox {
            shared: shared.clone(),
        },
        InboxSender {
            shared: shared.clone(),
        },
        InternalSender { shared },
    )
}

/// The game's end: see the module docs.
pub struct Inbox<M> {
    shared: Arc<Shared<M>>,
}

/// What waiting on the inbox gave.
#[derive(Debug)]
pub enum Received<M> {
    /// The next message.
    Message(M),
    /// The deadline passed.
    Timeout,
    /// No connection-side sender is left: the server is gone.
    Closed,
}

impl<M: Routed> Inbox<M> {
    /// The next message, waiting until `deadline` for one that wakes the
    /// game (moves queued meanwhile come with it, in order).
    pub fn recv_deadline(&self, deadline: Instant) -> Received<M> {
        let mut st = self.shared.lock();
        loop {
            if let Some(msg) = self.pop(&mut st) {
                return Received::Message(msg);
            }
            if st.connection_senders == 0 {
                return Received::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Received::Timeout;
            }
            st.game_waiting = true;
            let (next, _) = self
                .shared
                .ready
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner());
            st = next;
            st.game_waiting = false;
        }
    }

    /// The next message, if one is queued.
    pub fn try_recv(&self) -> Option<M> {
        let mut st = self.shared.lock();
        self.pop(&mut st)
    }

    fn pop(&self, st: &mut State<M>) -> Option<M> {
        let was_full = st.queue.len() >= self.shared.capacity;
        let msg = st.queue.pop_front()?;
        if was_full {
            // Connections waiting for room look again; `notify_waiters`
            // wakes only those already waiting, which is all that wait.
            self.shared.room.notify_waiters();
        }
        Some(msg)
    }
}

impl<M> Drop for Inbox<M> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.open = false;
        st.queue.clear();
        drop(st);
        self.shared.room.notify_waiters();
    }
}

/// The connections' end, through the dispatcher: bounded, and the server
/// is gone when every one of these is dropped.
pub struct InboxSender<M> {
    shared: Arc<Shared<M>>,
}

impl<M: Routed> InboxSender<M> {
    /// Waits until the inbox has room for a message (which someone else
    /// may take before the caller puts its own: see the dispatcher).
    pub async fn room(&self) -> Result<(), GameStopped> {
        self.when_room(|_| {}).await
    }

    /// Queues `msg`, waiting while the inbox is full.
    pub async fn send(&self, msg: ToGame) -> Result<(), GameStopped> {
        self.when_room(|st| self.shared.push(M::from(msg), st))
            .await
    }

    /// Waits until the inbox has room, then hands `then` the state, still
    /// locked.
    async fn when_room(
        &self,
        then: impl FnOnce(MutexGuard<'_, State<M>>),
    ) -> Result<(), GameStopped> {
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            // Registered before looking, so a pop in between is not missed.
            room.as_mut().enable();
            {
                let st = self.shared.lock();
                if !st.open {
                    return Err(GameStopped);
                }
                if st.queue.len() < self.shared.capacity {
                    then(st);
                    return Ok(());
                }
            }
            room.await;
        }
    }
}

impl<M> Clone for InboxSender<M> {
    fn clone(&self) -> Self {
        self.shared.lock().connection_senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<M> Drop for InboxSender<M> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.connection_senders -= 1;
        let last = st.connection_senders == 0 && st.game_waiting;
        drop(st);
        if last {
            self.shared.ready.notify_one();
        }
    }
}

impl<M> std::fmt::Debug for InboxSender<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InboxSender")
    }
}

/// The server's own threads' end: never waits.
pub struct InternalSender<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for InternalSender<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Routed> InternalSender<M> {
    /// Queues `msg` at once, whatever the inbox holds.
    pub fn send(&self, msg: impl Into<M>) -> Result<(), GameStopped> {
        let msg = msg.into();
        let st = self.shared.lock();
        if !st.open {
            return Err(GameStopped);
        }
        self.shared.push(msg, st);
        Ok(())
    }
}

impl<M> std::fmt::Debug for InternalSender<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalSender")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::TestMsg;
    use wyrm_wire::ClientId;

    const CLIENT: ClientId = ClientId::new(wyrm_wire::GateId(0), 1);

    fn call(n: u32) -> ToGame {
        ToGame::ClientCall {
            client: CLIENT,
            req_id: n,
            entity: 1,
            method: String::new(),
            args: Vec::new(),
        }
    }

    fn mv() -> ToGame {
        ToGame::ClientMove {
            client: CLIENT,
            pos: Default::default(),
            yaw: 0.0,
        }
    }

    fn req(m: Received<TestMsg>) -> u32 {
        match m {
            Received::Message(TestMsg::Wire(ToGame::ClientCall { req_id, .. })) => req_id,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moves_wait_calls_wake_and_order_holds() {
        let (inbox, tx, _internal) = inbox::<TestMsg>(16);
        let game = std::thread::spawn(move || {
            // A move alone does not end the wait; the call after it does,
            // and the move comes first.
            let t = Instant::now();
            let first = inbox.recv_deadline(t + Duration::from_secs(10));
            assert!(matches!(
                first,
                Received::Message(TestMsg::Wire(ToGame::ClientMove { .. }))
            ));
            assert!(
                t.elapsed() >= Duration::from_millis(150),
                "a move woke the game"
            );
            assert_eq!(req(inbox.recv_deadline(Instant::now())), 7);
            assert!(matches!(
                inbox.recv_deadline(Instant::now() + Duration::from_millis(10)),
                Received::Timeout
            ));
            inbox
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(mv()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        tx.send(call(7)).await.unwrap();
        let inbox = game.join().unwrap();
        drop(tx);
        assert!(matches!(
            inbox.recv_deadline(Instant::now() + Duration::from_secs(1)),
            Received::Closed
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_wait_for_room_but_the_server_does_not() {
        let (inbox, tx, internal) = inbox::<TestMsg>(2);
        tx.send(call(1)).await.unwrap();
        tx.send(call(2)).await.unwrap();
        internal.send(call(3)).unwrap(); // past the bound: never waits
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(call(4)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a connection did not wait for room");
        let got: Vec<u32> = (0..3)
            .map(|_| req(inbox.recv_deadline(Instant::now())))
            .collect();
        assert_eq!(got, [1, 2, 3]);
        waiting.await.unwrap().unwrap();
        assert_eq!(req(inbox.recv_deadline(Instant::now())), 4);
        drop(inbox);
        assert!(tx.send(call(5)).await.is_err());
        assert!(internal.send(call(6)).is_err());
    }
}
