//! The dispatcher in one process: the [`Directory`] behind a lock, with the inbox of every game. It routes what gates send
//! (a client's calls by the entity called, its moves and disconnect by the
//! game that runs its entity, a new client to the least loaded game) and
//! what the server's own threads answer (storage replies and password
//! results, by entity), and games tell it which entities they create,
//! load and drop.
//!
//! Routing a message and pushing it into the chosen inbox happen under the
//! lock, so the order messages are routed in is the order each game
//! receives them, and an entity's messages cannot overtake each other when
//! it moves. A connection first waits, without the lock, for room in the
//! inbox it is headed for (so a full game slows the connections feeding
//! it); the inbox can overfill by one message per connection racing it.
//! The server's own threads never wait.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use wyrm_wire::{ClientId, EntityId, GameId, IdMap, RouteAnswer, RouteOp, ToGame};

use crate::inbox::{GameStopped, InboxSender, InternalSender};
use crate::{Directory, Placement, Route, Routed};

/// Routes messages to games; cheap to clone (one per connection). The
/// games stop taking messages from connections once every clone is gone.
pub struct Dispatcher<M> {
    shared: Arc<Shared<M>>,
    /// Each game's bounded end, where connections wait for room.
    connections: Arc<Vec<InboxSender<M>>>,
}

impl<M> Clone for Dispatcher<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            connections: self.connections.clone(),
        }
    }
}

/// What the games and the server's own threads hold of the dispatcher:
/// routing, and the ends of the inboxes that never wait. (Not the
/// connections' ends: a game whose connections are all gone must see its
/// inbox close, whoever still answers it.)
struct Shared<M> {
    routing: Mutex<Routing<M>>,
    internal: Vec<InternalSender<M>>,
    /// Woken when a game comes up: a new client waits for one.
    came_up: tokio::sync::Notify,
}

struct Routing<M> {
    directory: Directory<M>,
    /// The type of every entity in the directory, as an index of the type
    /// registry (the same on every game: they load the same plugins).
    types: IdMap<u32>,
    /// Each connected client: the game that runs its entity, and the entity.
    clients: IdMap<Seat, ClientId>,
    /// The client bound to each entity that has one.
    bound: IdMap<ClientId>,
}

impl<M> Routing<M> {
    /// Seats `client` at `seat`, keeping `bound` in step.
    fn seat(&mut self, client: ClientId, seat: Seat) {
        let Some(s) = self.clients.get_mut(&client) else {
            return;
        };
        let old = std::mem::replace(s, seat);
        if let Some(e) = old.entity {
            if self.bound.get(&e) == Some(&client) {
                self.bound.remove(&e);
            }
        }
        if let Some(e) = seat.entity {
            self.bound.insert(e, client);
        }
    }
}

/// Where a client is.
#[derive(Debug, Clone, Copy)]
struct Seat {
    game: GameId,
    entity: Option<EntityId>,
}

impl<M> std::fmt::Debug for Dispatcher<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("games", &self.connections.len())
            .finish()
    }
}

impl<M: Routed> Dispatcher<M> {
    /// The game that runs `id` (or will, once it has arrived there).
    pub fn game_of(&self, id: EntityId) -> Option<GameId> {
        self.shared.lock().directory.game_of(id)
    }

    /// A dispatcher to `games`, each given by its inbox's two ends, in
    /// `GameId` order.
    pub fn new(games: Vec<(InboxSender<M>, InternalSender<M>)>) -> Self {
        let n = games.len();
        let (connections, internal) = games.into_iter().unzip();
        Self {
            shared: Arc::new(Shared {
                routing: Mutex::new(Routing {
                    directory: Directory::new(n),
                    types: IdMap::default(),
                    clients: IdMap::default(),
                    bound: IdMap::default(),
                }),
                internal,
                came_up: tokio::sync::Notify::new(),
            }),
            connections: Arc::new(connections),
        }
    }

    /// Delivers what a gate received to the game that handles it, waiting
    /// while that game's inbox is full. `Shutdown` goes to every game.
    pub async fn to_game(&self, msg: ToGame) -> Result<(), GameStopped> {
        if matches!(msg, ToGame::Shutdown) {
            for g in self.connections.iter() {
                g.send(ToGame::Shutdown).await?;
            }
            return Ok(());
        }
        if matches!(msg, ToGame::ClientConnected { .. }) {
            self.wait_for_a_game().await;
        }
        // With one game there is nothing to look up.
        let headed = if self.connections.len() == 1 {
            GameId(0)
        } else {
            self.shared.lock().headed(&msg)
        };
        if let Some(g) = self.connections.get(usize::from(headed.0)) {
            g.room().await?;
        }
        let shared = &self.shared;
        let mut r = shared.lock();
        let target = match &msg {
            ToGame::ClientConnected { client } => {
                let game = r.directory.place(Placement::Anywhere);
                r.clients.insert(*client, Seat { game, entity: None });
                Some(game)
            }
            ToGame::ClientCall { client, entity, .. } => {
                let fallback = r.client_game(*client);
                return match r.directory.route(*entity, M::from(msg)) {
                    Route::Deliver(g, m) => shared.send(g, m),
                    Route::Held => Ok(()),
                    // The client's own game answers that there is no such
                    // entity.
                    Route::Absent(m) => shared.send(fallback, m),
                };
            }
            ToGame::ClientMove { client, .. } => r.clients.get(client).map(|s| s.game),
            ToGame::ClientDisconnected { client } => {
                let seat = r.clients.remove(client);
                if let Some(e) = seat.and_then(|s| s.entity) {
                    r.bound.remove(&e);
                }
                seat.map(|s| s.game)
            }
            // Games send these, through their `GameRoutes`.
            _ => None,
        };
        match target {
            Some(g) => shared.send(g, msg),
            // A client that never connected has nothing to move or end.
            None => Ok(()),
        }
    }

    /// Returns once a game is up: at once, but on a cluster's node whose
    /// games are all in processes of their own (or all lost) before one
    /// of them is.
    async fn wait_for_a_game(&self) {
        loop {
            let came_up = self.shared.came_up.notified();
            tokio::pin!(came_up);
            // Registered before the look, so a game coming up between the
            // two is not missed.
            came_up.as_mut().enable();
            if self.shared.lock().directory.any_up() {
                return;
            }
            came_up.await;
        }
    }

    /// Gate `gate` is gone (its process died): each of its clients ends as
    /// if it had disconnected.
    pub async fn gate_lost(&self, gate: wyrm_wire::GateId) {
        let clients: Vec<ClientId> = {
            let r = self.shared.lock();
            r.clients
                .keys()
                .filter(|c| c.gate() == gate)
                .copied()
                .collect()
        };
        if !clients.is_empty() {
            tracing::warn!(
                gate = gate.0,
                clients = clients.len(),
                "gate lost: its clients are disconnected"
            );
        }
        for client in clients {
            let _ = self.to_game(ToGame::ClientDisconnected { client }).await;
        }
    }

    /// Where the server's own threads deliver their answers.
    pub fn answers(&self) -> Answers<M> {
        Answers {
            to: AnswersTo::Dispatcher(self.shared.clone()),
        }
    }

    /// A view of the dispatcher for game `game`, to tell it what the game
    /// does with entities.
    pub fn for_game(&self, game: GameId) -> GameRoutes<M> {
        GameRoutes {
            link: Link::Local(self.shared.clone()),
            game,
        }
    }

    /// Game `game`, in another process, is there (it takes new entities)
    /// or not.
    pub fn set_game_up(&self, game: GameId, up: bool) {
        self.shared.lock().directory.set_up(game, up);
        if up {
            self.shared.came_up.notify_waiters();
        }
    }

    /// Game `game`, in another process, runs `entities` (id, type) and is
    /// ready: what it reports after this dispatcher restarted. What waited
    /// for those ids meanwhile goes to it, before anything newer. The ones
    /// another game reported first stay there, and are returned.
    pub fn rejoin(&self, game: GameId, entities: Vec<(EntityId, u32)>) -> Vec<EntityId> {
        let shared = &self.shared;
        let mut r = shared.lock();
        let mut taken = Vec::new();
        for (id, ty) in entities {
            match r.directory.reported(id, game) {
                Ok(held) => {
                    r.types.insert(id, ty);
                    for m in held {
                        let _ = shared.send(game, m);
                    }
                }
                Err(_) => taken.push(id),
            }
        }
        r.directory.set_up(game, true);
        shared.reports_done(&mut r, game);
        drop(r);
        shared.came_up.notify_waiters();
        taken
    }

    /// This dispatcher (new, in a cluster's restarted node) waits for
    /// `games`, which may be running already, to report what they run: a
    /// message for an id none has reported yet is held until one does,
    /// until each of them has [rejoined](Self::rejoin) (or said it is up,
    /// fresh, or was lost), or until [`stop_awaiting`](Self::stop_awaiting).
    pub fn await_reports(&self, games: impl IntoIterator<Item = GameId>) {
        self.shared.lock().directory.await_reports(games);
    }

    /// Waits no longer for games to report (those that have not are taken
    /// for gone): what was held for ids none reported is mailed.
    pub fn stop_awaiting(&self) {
        let mut r = self.shared.lock();
        let left = r.directory.stop_awaiting();
        if !left.is_empty() {
            tracing::warn!(
                messages = left.len(),
                "games did not report in time after the node restarted: messages for entities none reported are mailed"
            );
        }
        self.shared.unreported(&mut r, left);
    }

    /// Whether game `game` takes new entities (in a cluster: its process
    /// said it is ready and has not been lost since).
    pub fn is_game_up(&self, game: GameId) -> bool {
        self.shared.lock().directory.is_up(game)
    }

    /// Game `game`'s process is gone: it takes nothing new, and each
    /// entity it ran is loaded again on the games left, from its last
    /// save and checkpoint, with what was held for it still held (one
    /// never saved is simply gone then). A client bound to one of them
    /// stays connected and is seated with it, to be bound again where it
    /// comes back. How many entities there were, and the clients that
    /// played on it with no entity to come back to, whose connections are
    /// to end.
    pub fn game_lost(&self, game: GameId) -> (usize, Vec<ClientId>) {
        let shared = &self.shared;
        let mut r = shared.lock();
        r.directory.set_up(game, false);
        // It will not report now.
        shared.reports_done(&mut r, game);
        let lost = r.directory.game_lost(game);
        let count = lost.len();
        for (id, held) in lost {
            r.types.remove(&id);
            let to = r.directory.place(Placement::Anywhere);
            if to == game || r.directory.arriving(id, to).is_err() {
                continue;
            }
            for m in held {
                // Held again: it is arriving.
                let _ = r.directory.route(id, m);
            }
            let client = r.bound.get(&id).copied();
            if let Some(c) = client {
                r.seat(
                    c,
                    Seat {
                        game: to,
                        entity: Some(id),
                    },
                );
            }
            let _ = shared.send(to, ToGame::Reload { entity: id, client });
        }
        let clients: Vec<ClientId> = r
            .clients
            .iter()
            .filter(|(_, seat)| seat.game == game)
            .map(|(c, _)| *c)
            .collect();
        for c in &clients {
            if let Some(seat) = r.clients.remove(c) {
                if let Some(e) = seat.entity {
                    r.bound.remove(&e);
                }
            }
        }
        (count, clients)
    }

    /// Does what game `game`, in another process, told or asked, as its
    /// `GameRoutes` would have in this one; the answer, if `op` has one.
    pub fn apply(&self, game: GameId, op: RouteOp) -> Option<RouteAnswer> {
        let op = match op {
            RouteOp::Up => {
                // Fresh: it has nothing to report.
                self.shared.reports_done(&mut self.shared.lock(), game);
                self.set_game_up(game, true);
                return Some(RouteAnswer::Yes(true));
            }
            // Everything before it is done: it is answered in order. (A
            // cluster's node answers it itself, with its run.)
            RouteOp::Settle => return Some(RouteAnswer::Settled(0)),
            RouteOp::Rejoin { entities } => {
                return Some(RouteAnswer::Taken(self.rejoin(game, entities)));
            }
            op => op,
        };
        let r = self.for_game(game);
        let back = |m: Result<(), M>| m.err().and_then(|m| m.into_wire().ok());
        Some(match op {
            RouteOp::Created { id, ty } => {
                r.created(id, ty);
                RouteAnswer::Yes(true)
            }
            RouteOp::CreateAnywhere { id, ty, create } => {
                RouteAnswer::Back(back(r.create_anywhere(id, ty, M::from(create))))
            }
            RouteOp::Arriving { id, anywhere } => RouteAnswer::Game(r.arriving(id, anywhere)),
            RouteOp::Arrived { id, ty } => RouteAnswer::Held(wire_all(r.arrived(id, ty))),
            RouteOp::Gone { id } => RouteAnswer::Held(wire_all(r.gone(id))),
            RouteOp::TypeOf { id } => RouteAnswer::Type(r.type_of(id)),
            RouteOp::GameOf { id } => {
                let r = self.shared.lock();
                match r.directory.game_of(id) {
                    None if r.directory.awaits_reports() => RouteAnswer::NotYet,
                    game => RouteAnswer::Game(game),
                }
            }
            RouteOp::Send { msg } => {
                if let Some(msg) = back(r.send(M::from(msg))) {
                    // Behind everything routed to the sender so far.
                    let _ = self.shared.send(game, ToGame::Returned(Box::new(msg)));
                }
                return None;
            }
            RouteOp::BeginMigration { id, to, then } => {
                RouteAnswer::Refused(r.begin_migration(id, to, then).err())
            }
            RouteOp::MigrationFailed { id } => RouteAnswer::Held(wire_all(r.migration_failed(id))),
            RouteOp::Ship { to, client, msg } => {
                r.ship(to, client, M::from(msg));
                return None;
            }
            RouteOp::Bound { client, entity } => {
                r.bound(client, entity);
                return None;
            }
            RouteOp::ClaimClient { from, to } => RouteAnswer::Client(r.claim_client(from, to)),
            RouteOp::ClientEntity { client } => RouteAnswer::Entity(r.client_entity(client)),
            RouteOp::RegisterService { name, id } => {
                RouteAnswer::Yes(r.register_service(&name, id))
            }
            RouteOp::Service { name } => RouteAnswer::Entity(r.service(&name)),
            RouteOp::Up | RouteOp::Settle | RouteOp::Rejoin { .. } => return None,
        })
    }
}

/// Held messages, for a game in another process: those that can travel.
fn wire_all<M: Routed>(held: VecDeque<M>) -> Vec<ToGame> {
    held.into_iter()
        .filter_map(|m| match m.into_wire() {
            Ok(w) => Some(w),
            Err(m) => {
                tracing::debug!(entity = ?m.entity(), "a held message that cannot leave this process dropped");
                None
            }
        })
        .collect()
}

impl<M: Routed> Shared<M> {
    fn lock(&self) -> MutexGuard<'_, Routing<M>> {
        // Every change under the lock is one step; a panic elsewhere cannot
        // leave it half-made.
        self.routing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `game` has reported what it runs, or never will: once no game is
    /// awaited, what no game claimed is let go ([`unreported`](Self::unreported)).
    fn reports_done(&self, r: &mut Routing<M>, game: GameId) {
        let left = r.directory.reports_done(game);
        self.unreported(r, left);
    }

    /// Messages held for ids no game reported (after a restart), now that
    /// none will: a client's call goes to its own game, which answers
    /// that there is no such entity; anything else to a game that is up,
    /// which mails it, as one that came back to its sender.
    fn unreported(&self, r: &mut Routing<M>, messages: Vec<(EntityId, M)>) {
        for (_, m) in messages {
            let _ = match m.wire() {
                Some(ToGame::ClientCall { client, .. }) => self.send(r.client_game(*client), m),
                _ => {
                    let g = r.directory.place(Placement::Anywhere);
                    match m.into_wire() {
                        Ok(w) => self.send(g, ToGame::Returned(Box::new(w))),
                        Err(m) => self.send(g, m),
                    }
                }
            };
        }
    }

    /// Into game `g`'s inbox, without waiting. Game ids come from the
    /// directory, which knows only these games.
    fn send(&self, g: GameId, msg: impl Into<M>) -> Result<(), GameStopped> {
        match self.internal.get(usize::from(g.0)) {
            Some(inbox) => inbox.send(msg),
            None => Err(GameStopped),
        }
    }
}

/// Where a gate sends what its clients say: the dispatcher of its own
/// process, or, in a cluster, the fabric to the dispatcher of another.
pub trait Upstream: Clone + Send + Sync + 'static {
    /// Delivers `msg` to the game that handles it, waiting while there is
    /// no room for it.
    fn to_game(
        &self,
        msg: ToGame,
    ) -> impl std::future::Future<Output = Result<(), GameStopped>> + Send;
}

impl<M: Routed> Upstream for Dispatcher<M> {
    fn to_game(
        &self,
        msg: ToGame,
    ) -> impl std::future::Future<Output = Result<(), GameStopped>> + Send {
        Dispatcher::to_game(self, msg)
    }
}

/// Where the server's own threads (storage, password hashing) deliver
/// answers: to the game that runs the entity, without waiting.
pub struct Answers<M> {
    to: AnswersTo<M>,
}

enum AnswersTo<M> {
    /// Routed by the dispatcher of this process.
    Dispatcher(Arc<Shared<M>>),
    /// Into the inbox of the one game of this process (a game in a
    /// process of its own, whose threads answer only what it asked).
    Game(InternalSender<M>),
}

impl<M> Clone for Answers<M> {
    fn clone(&self) -> Self {
        Self {
            to: match &self.to {
                AnswersTo::Dispatcher(s) => AnswersTo::Dispatcher(s.clone()),
                AnswersTo::Game(g) => AnswersTo::Game(g.clone()),
            },
        }
    }
}

impl<M: Routed> Answers<M> {
    /// Answers that go straight into `game`'s inbox: the one game of a
    /// process with no dispatcher of its own.
    pub fn to_game(game: InternalSender<M>) -> Self {
        Self {
            to: AnswersTo::Game(game),
        }
    }

    /// Delivers `msg` (a storage reply, a password result, a load). An
    /// answer for an entity no game runs goes to the first game, which
    /// drops it as it drops any call to a missing entity; a game that has
    /// stopped (at shutdown) has no use for it.
    pub fn deliver(&self, msg: M) {
        let shared = match &self.to {
            AnswersTo::Dispatcher(shared) => shared,
            AnswersTo::Game(game) => {
                let _ = game.send(msg);
                return;
            }
        };
        let mut r = shared.lock();
        let first = GameId(0);
        // The game that asked for a load is the one it is arriving on.
        if let Some(id) = msg.loaded() {
            let g = r.directory.game_of(id).unwrap_or(first);
            let _ = shared.send(g, msg);
            return;
        }
        let _ = match msg.entity() {
            Some(entity) => match r.directory.route(entity, msg) {
                Route::Deliver(g, m) => shared.send(g, m),
                Route::Held => Ok(()),
                Route::Absent(m) => shared.send(first, m),
            },
            None => shared.send(first, msg),
        };
    }
}

impl<M> std::fmt::Debug for Answers<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answers")
    }
}

impl<M> Routing<M> {
    /// The game a message is most likely headed for, to wait for room in.
    fn headed(&self, msg: &ToGame) -> GameId {
        match msg {
            ToGame::ClientConnected { .. } => self.directory.place(Placement::Anywhere),
            ToGame::ClientCall { client, entity, .. } => self
                .directory
                .game_of(*entity)
                .unwrap_or_else(|| self.client_game(*client)),
            ToGame::ClientMove { client, .. } | ToGame::ClientDisconnected { client } => {
                self.client_game(*client)
            }
            _ => GameId(0),
        }
    }

    fn client_game(&self, client: ClientId) -> GameId {
        self.clients.get(&client).map_or(GameId(0), |s| s.game)
    }
}

/// What one game tells the dispatcher about its entities: under the lock
/// of the dispatcher of its process, or, for a game in a process of its
/// own, as [`RouteOp`]s over a [`RouteLink`]. Errors are the game's bugs
/// (an id it did not own, a load it did not start); they are logged and
/// change nothing.
pub struct GameRoutes<M> {
    link: Link<M>,
    game: GameId,
}

enum Link<M> {
    Local(Arc<Shared<M>>),
    Remote(Arc<dyn RouteLink>),
}

/// How a game in a process of its own reaches the dispatcher. Whatever it
/// sends arrives in the order sent, and the dispatcher does each in turn,
/// as under its lock.
pub trait RouteLink: Send + Sync + 'static {
    /// Sends `op`, which has no answer.
    fn tell(&self, op: RouteOp);
    /// Sends `op` and waits for its answer; `None` if none came (the
    /// dispatcher is gone).
    fn ask(&self, op: RouteOp) -> Option<RouteAnswer>;
    /// Waits until the dispatcher has done everything told so far, if
    /// anything was told since the last time.
    fn settle(&self) {}
    /// The dispatcher (a new one, after the last was lost) has taken this
    /// game's report of what it runs: messages held meanwhile may go.
    fn rejoined(&self) {}
}

/// Asks `op` over `link` and takes the answer `pick` expects. Another
/// answer, or none, is logged and gives `None`: the caller goes on as if
/// the dispatcher knew nothing.
fn ask<T>(
    link: &Arc<dyn RouteLink>,
    op: RouteOp,
    asked: &str,
    pick: impl FnOnce(RouteAnswer) -> Result<T, RouteAnswer>,
) -> Option<T> {
    match link.ask(op).map(pick) {
        Some(Ok(t)) => Some(t),
        Some(Err(other)) => {
            unexpected(asked, Some(other));
            None
        }
        None => {
            unexpected(asked, None);
            None
        }
    }
}

/// An answer that is not the one asked for (or none): logged; the caller
/// goes on as if the dispatcher knew nothing.
fn unexpected(asked: &str, answer: Option<RouteAnswer>) {
    match answer {
        None => tracing::warn!("dispatcher: no answer to {asked}"),
        Some(a) => tracing::error!("dispatcher: answered {a:?} to {asked}"),
    }
}

impl<M: Routed> GameRoutes<M> {
    /// The routes of game `game`, in a process of its own, over `link`.
    pub fn remote(game: GameId, link: Arc<dyn RouteLink>) -> Self {
        Self {
            link: Link::Remote(link),
            game,
        }
    }

    /// The game this view speaks for.
    pub fn game(&self) -> GameId {
        self.game
    }

    /// The game made `id`, of type `ty`: it lives here.
    pub fn created(&self, id: EntityId, ty: u32) {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => {
                let answer = link.ask(RouteOp::Created { id, ty });
                if answer != Some(RouteAnswer::Yes(true)) {
                    unexpected("created", answer);
                }
                return;
            }
        };
        let mut r = shared.lock();
        match r.directory.created(id, self.game) {
            Ok(()) => {
                r.types.insert(id, ty);
            }
            Err(e) => tracing::error!(entity = id, "dispatcher: {e}"),
        }
    }

    /// Places a new entity `id`, of type `ty`, on the least loaded game
    /// and, if that is another, sends it `create` there (under the lock,
    /// so whatever is routed to `id` next comes after it). On this game,
    /// `create` comes back: the game makes the entity itself (and says
    /// [`created`](Self::created)).
    pub fn create_anywhere(&self, id: EntityId, ty: u32, create: M) -> Result<(), M> {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => {
                let create = create.into_wire()?;
                return match link.ask(RouteOp::CreateAnywhere { id, ty, create }) {
                    Some(RouteAnswer::Back(None)) => Ok(()),
                    Some(RouteAnswer::Back(Some(create))) => Err(M::from(create)),
                    // Not placed anywhere: nothing to make here either.
                    other => {
                        unexpected("create-anywhere", other);
                        Ok(())
                    }
                };
            }
        };
        let mut r = shared.lock();
        let game = r.directory.place(Placement::Anywhere);
        if game == self.game {
            return Err(create);
        }
        if let Err(e) = r.directory.created(id, game) {
            tracing::error!(entity = id, "dispatcher: {e}");
            return Err(create);
        }
        r.types.insert(id, ty);
        // A game that stopped is shutting down with the rest.
        let _ = shared.send(game, create);
        Ok(())
    }

    /// `id` is to be loaded: here, or (`anywhere`) on the least loaded
    /// game. Messages for it wait until it is in. The game that is to load
    /// it, or `None` if it is live (or arriving) somewhere already: not
    /// loaded again.
    pub fn arriving(&self, id: EntityId, anywhere: bool) -> Option<GameId> {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => {
                let op = RouteOp::Arriving { id, anywhere };
                return ask(link, op, "arriving", |a| match a {
                    RouteAnswer::Game(game) => Ok(game),
                    a => Err(a),
                })
                .flatten();
            }
        };
        let mut r = shared.lock();
        let placement = if anywhere {
            Placement::Anywhere
        } else {
            Placement::Here(self.game)
        };
        let game = r.directory.place(placement);
        r.directory.arriving(id, game).ok().map(|()| game)
    }

    /// `id`, of type `ty`, is in: what waited for it, oldest first, for the
    /// game to queue before anything newer.
    pub fn arrived(&self, id: EntityId, ty: u32) -> VecDeque<M> {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => return held(link, RouteOp::Arrived { id, ty }, "arrived"),
        };
        let mut r = shared.lock();
        match r.directory.arrived(id, self.game) {
            Ok(held) => {
                r.types.insert(id, ty);
                held
            }
            Err(e) => {
                tracing::error!(entity = id, "dispatcher: {e}");
                VecDeque::new()
            }
        }
    }

    /// `id` is gone from the game (destroyed, unloaded, a load that
    /// failed): what waited for it, for the game to answer or drop.
    pub fn gone(&self, id: EntityId) -> VecDeque<M> {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => return held(link, RouteOp::Gone { id }, "gone"),
        };
        let mut r = shared.lock();
        r.types.remove(&id);
        r.directory.gone(id)
    }

    /// The type (registry index) of `id`, wherever it lives or arrives.
    pub fn type_of(&self, id: EntityId) -> Option<u32> {
        match &self.link {
            Link::Local(shared) => shared.lock().types.get(&id).copied(),
            Link::Remote(link) => ask(link, RouteOp::TypeOf { id }, "type-of", |a| match a {
                RouteAnswer::Type(ty) => Ok(ty),
                a => Err(a),
            })
            .flatten(),
        }
    }

    /// Whether `id` is live on, or on its way to, some game.
    pub fn exists(&self, id: EntityId) -> bool {
        self.game_of(id).is_some()
    }

    /// [`exists`](Self::exists), or `None` for a game in another process
    /// whose dispatcher cannot be asked now (the node is away): a message
    /// sent to `id` then is held until a node is back, and comes back if
    /// it is for no entity.
    pub fn exists_if_known(&self, id: EntityId) -> Option<bool> {
        self.game_of_answered(id).map(|game| game.is_some())
    }

    /// Sends `msg` to the game of the entity it is for (it waits there if
    /// the entity is on its way). An entity on no game gives `msg` back
    /// (to a game in another process, later: see [`RouteOp::Send`]).
    pub fn send(&self, msg: M) -> Result<(), M> {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            // Not waited for: a message for an entity on no game comes
            // back to this game later, as `ToGame::Returned`.
            Link::Remote(link) => {
                link.tell(RouteOp::Send {
                    msg: msg.into_wire()?,
                });
                return Ok(());
            }
        };
        let Some(entity) = msg.entity() else {
            return Err(msg);
        };
        let mut r = shared.lock();
        if let Some(ToGame::TakeClient { client, .. }) = msg.wire() {
            // A client handed on follows its entity; one that left
            // meanwhile is handed to nothing.
            let Some(game) = r.directory.game_of(entity) else {
                return Err(msg);
            };
            if !r.clients.contains_key(client) {
                return Ok(());
            }
            let seat = Seat {
                game,
                entity: Some(entity),
            };
            r.seat(*client, seat);
        }
        match r.directory.route(entity, msg) {
            Route::Deliver(g, m) => {
                // A game that stopped is shutting down with the rest.
                let _ = shared.send(g, m);
                Ok(())
            }
            Route::Held => Ok(()),
            Route::Absent(m) => Err(m),
        }
    }

    /// The game that runs `id` (or will, once it has arrived there).
    pub fn game_of(&self, id: EntityId) -> Option<GameId> {
        self.game_of_answered(id).flatten()
    }

    /// [`game_of`](Self::game_of), or `None` if the dispatcher (in another
    /// process) did not answer it or cannot say yet.
    fn game_of_answered(&self, id: EntityId) -> Option<Option<GameId>> {
        match &self.link {
            Link::Local(shared) => Some(shared.lock().directory.game_of(id)),
            Link::Remote(link) => match link.ask(RouteOp::GameOf { id }) {
                Some(RouteAnswer::Game(game)) => Some(game),
                // A dispatcher that restarted and waits for games to
                // report cannot say yet.
                None | Some(RouteAnswer::NotYet) => None,
                other => {
                    unexpected("game-of", other);
                    None
                }
            },
        }
    }

    /// Starts moving `id` from this game to `to`: messages for it are held
    /// from now on, and this game gets a `Depart` marker behind everything
    /// already routed to it.
    pub fn begin_migration(
        &self,
        id: EntityId,
        to: GameId,
        then: Option<wyrm_wire::Arrival>,
    ) -> Result<(), String> {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => {
                return match link.ask(RouteOp::BeginMigration { id, to, then }) {
                    Some(RouteAnswer::Refused(None)) => Ok(()),
                    Some(RouteAnswer::Refused(Some(why))) => Err(why),
                    _ => Err("the dispatcher did not answer".into()),
                };
            }
        };
        let mut r = shared.lock();
        let from = r
            .directory
            .begin_migration(id, to)
            .map_err(|e| e.to_string())?;
        let held_at_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let marker = ToGame::Depart {
            entity: id,
            to,
            then,
            held_at_us,
        };
        let _ = shared.send(from, marker);
        Ok(())
    }

    /// `id` could not move (it could not be exported or taken in): it is
    /// live on this game again, and what was held for it comes back, as
    /// from [`arrived`](Self::arrived).
    pub fn migration_failed(&self, id: EntityId) -> VecDeque<M> {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => {
                return held(link, RouteOp::MigrationFailed { id }, "migration-failed")
            }
        };
        match shared.lock().directory.migration_failed(id) {
            Ok((_, held)) => held,
            Err(e) => {
                tracing::error!(entity = id, "dispatcher: {e}");
                VecDeque::new()
            }
        }
    }

    /// Sends `msg` (a migrating entity) straight to game `to`, moving its
    /// client there too, so the client's moves and its end arrive after
    /// the entity. A client that left while its entity was leaving (its
    /// end went to the game it left, which no longer had it) is ended
    /// there, after the entity.
    pub fn ship(&self, to: GameId, client: Option<ClientId>, msg: M) {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => {
                match msg.into_wire() {
                    Ok(msg) => link.tell(RouteOp::Ship { to, client, msg }),
                    Err(m) => {
                        tracing::error!(entity = ?m.entity(), "cannot ship a message that cannot leave this process")
                    }
                }
                return;
            }
        };
        let mut r = shared.lock();
        let _ = shared.send(to, msg);
        let Some(client) = client else {
            return;
        };
        match r.clients.get(&client).copied() {
            Some(seat) => r.seat(client, Seat { game: to, ..seat }),
            None => {
                let _ = shared.send(to, ToGame::ClientDisconnected { client });
            }
        }
    }

    /// `client` is bound to `entity` (or to none) on this game.
    pub fn bound(&self, client: ClientId, entity: Option<EntityId>) {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => return link.tell(RouteOp::Bound { client, entity }),
        };
        let seat = Seat {
            game: self.game,
            entity,
        };
        shared.lock().seat(client, seat);
    }

    /// Takes the client bound to `from` (on another game) for `to`, on
    /// this game: the client's messages come here from now on. `None` if
    /// `from` has no client (any more).
    pub fn claim_client(&self, from: EntityId, to: EntityId) -> Option<ClientId> {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => {
                let op = RouteOp::ClaimClient { from, to };
                return ask(link, op, "claim-client", |a| match a {
                    RouteAnswer::Client(client) => Ok(client),
                    a => Err(a),
                })
                .flatten();
            }
        };
        let mut r = shared.lock();
        let client = *r.bound.get(&from)?;
        let seat = Seat {
            game: self.game,
            entity: Some(to),
        };
        r.seat(client, seat);
        Some(client)
    }

    /// The entity `client` is bound to, on whichever game.
    pub fn client_entity(&self, client: ClientId) -> Option<EntityId> {
        match &self.link {
            Link::Local(shared) => shared.lock().clients.get(&client)?.entity,
            Link::Remote(link) => entity(link, RouteOp::ClientEntity { client }, "client-entity"),
        }
    }

    /// `id` is service `name`; false if another entity is.
    pub fn register_service(&self, name: &str, id: EntityId) -> bool {
        let shared = match &self.link {
            Link::Local(shared) => shared,
            Link::Remote(link) => {
                let op = RouteOp::RegisterService {
                    name: name.to_owned(),
                    id,
                };
                return ask(link, op, "register-service", |a| match a {
                    RouteAnswer::Yes(yes) => Ok(yes),
                    a => Err(a),
                })
                .unwrap_or(false);
            }
        };
        match shared.lock().directory.register_service(name, id) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(entity = id, "dispatcher: {e}");
                false
            }
        }
    }

    /// The dispatcher restarted: this game runs `entities` (id, type) and
    /// is ready. The ones another game reported first are returned, for
    /// this game to drop. (A game in the dispatcher's own process restarts
    /// with it: nothing to do.)
    pub fn rejoin(&self, entities: Vec<(EntityId, u32)>) -> Vec<EntityId> {
        let Link::Remote(link) = &self.link else {
            return Vec::new();
        };
        let taken = ask(link, RouteOp::Rejoin { entities }, "rejoin", |a| match a {
            RouteAnswer::Taken(taken) => Ok(taken),
            a => Err(a),
        });
        if taken.is_some() {
            link.rejoined();
        }
        taken.unwrap_or_default()
    }

    /// Waits until the dispatcher has done what this game told it (for a
    /// game in another process; in one, it is done already): called before
    /// the game's frames go out, so that what a client does about them
    /// cannot reach another game before what this game sent it first.
    pub fn settle(&self) {
        if let Link::Remote(link) = &self.link {
            link.settle();
        }
    }

    /// The entity that is service `name`.
    pub fn service(&self, name: &str) -> Option<EntityId> {
        match &self.link {
            Link::Local(shared) => shared.lock().directory.service(name),
            Link::Remote(link) => {
                let op = RouteOp::Service {
                    name: name.to_owned(),
                };
                entity(link, op, "service")
            }
        }
    }
}

/// What waited for an entity, asked over `link`.
fn held<M: From<ToGame>>(link: &Arc<dyn RouteLink>, op: RouteOp, asked: &str) -> VecDeque<M> {
    let held = ask(link, op, asked, |a| match a {
        RouteAnswer::Held(held) => Ok(held),
        a => Err(a),
    });
    held.unwrap_or_default().into_iter().map(M::from).collect()
}

/// An entity, asked over `link`.
fn entity(link: &Arc<dyn RouteLink>, op: RouteOp, asked: &str) -> Option<EntityId> {
    ask(link, op, asked, |a| match a {
        RouteAnswer::Entity(id) => Ok(id),
        a => Err(a),
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::testing::TestMsg;
    use crate::{inbox, Inbox, Received};
    use wyrm_wire::{GateId, Position};

    fn games(n: usize) -> (Dispatcher<TestMsg>, Vec<Inbox<TestMsg>>) {
        let (mut ends, mut inboxes) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let (inbox, connections, internal) = inbox(64);
            ends.push((connections, internal));
            inboxes.push(inbox);
        }
        (Dispatcher::new(ends), inboxes)
    }

    fn next(inbox: &Inbox<TestMsg>) -> Option<TestMsg> {
        match inbox.recv_deadline(Instant::now() + Duration::from_millis(20)) {
            Received::Message(m) => Some(m),
            _ => None,
        }
    }

    fn call(client: ClientId, entity: EntityId, req_id: u32) -> ToGame {
        ToGame::ClientCall {
            client,
            req_id,
            entity,
            method: "m".into(),
            args: Vec::new(),
        }
    }

    fn req_id(m: Option<TestMsg>) -> Option<u32> {
        match m {
            Some(TestMsg::Wire(ToGame::ClientCall { req_id, .. })) => Some(req_id),
            _ => None,
        }
    }

    #[tokio::test]
    async fn clients_spread_and_their_messages_follow_their_game() {
        let (d, inboxes) = games(2);
        let (a, b) = (ClientId::new(GateId(0), 1), ClientId::new(GateId(0), 2));
        // Each game's first entity is its new client's boot entity.
        d.to_game(ToGame::ClientConnected { client: a })
            .await
            .unwrap();
        d.for_game(GameId(0)).created(100, 0);
        d.to_game(ToGame::ClientConnected { client: b })
            .await
            .unwrap();
        d.for_game(GameId(1)).created(200, 0);
        assert!(matches!(
            next(&inboxes[0]),
            Some(TestMsg::Wire(ToGame::ClientConnected { client })) if client == a
        ));
        assert!(matches!(
            next(&inboxes[1]),
            Some(TestMsg::Wire(ToGame::ClientConnected { client })) if client == b
        ));
        // A's call to B's entity goes to B's game; A's move to A's.
        d.to_game(call(a, 200, 1)).await.unwrap();
        d.to_game(ToGame::ClientMove {
            client: a,
            pos: Position::default(),
            yaw: 0.0,
        })
        .await
        .unwrap();
        assert_eq!(req_id(next(&inboxes[1])), Some(1));
        assert!(matches!(
            next(&inboxes[0]),
            Some(TestMsg::Wire(ToGame::ClientMove { .. }))
        ));
        // A call to no entity goes to the caller's game, which says so.
        d.to_game(call(b, 999, 2)).await.unwrap();
        assert_eq!(req_id(next(&inboxes[1])), Some(2));
        // Shutdown reaches every game.
        d.to_game(ToGame::Shutdown).await.unwrap();
        for inbox in &inboxes {
            assert!(matches!(next(inbox), Some(TestMsg::Wire(ToGame::Shutdown))));
        }
    }

    #[tokio::test]
    async fn what_is_sent_to_a_loading_entity_waits_for_it_in_order() {
        let (d, inboxes) = games(1);
        let routes = d.for_game(GameId(0));
        let client = ClientId::new(GateId(0), 1);
        d.to_game(ToGame::ClientConnected { client }).await.unwrap();
        assert!(next(&inboxes[0]).is_some());
        assert_eq!(routes.arriving(7, false), Some(GameId(0)));
        assert_eq!(routes.arriving(7, true), None, "one load at a time");
        d.to_game(call(client, 7, 1)).await.unwrap();
        d.answers().deliver(TestMsg::Call(wyrm_wire::EntityCall {
            entity: 7,
            method: "on_saved".into(),
            args: Vec::new(),
            from: None,
            plugin: None,
        }));
        d.to_game(call(client, 7, 2)).await.unwrap();
        assert!(next(&inboxes[0]).is_none(), "held while it loads");
        // The load's own answer is what it waits for: not held.
        d.answers().deliver(TestMsg::Loaded(7));
        assert!(matches!(next(&inboxes[0]), Some(TestMsg::Loaded(7))));
        let held = routes.arrived(7, 0);
        let order: Vec<String> = held
            .iter()
            .map(|m| match m {
                TestMsg::Wire(ToGame::ClientCall { req_id, .. }) => format!("call {req_id}"),
                TestMsg::Call(call) => call.method.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(order, ["call 1", "on_saved", "call 2"]);
        d.to_game(call(client, 7, 3)).await.unwrap();
        assert_eq!(req_id(next(&inboxes[0])), Some(3));
        assert!(routes.gone(7).is_empty());
    }

    #[tokio::test]
    async fn a_connection_waits_for_room_in_its_game() {
        let (inbox_end, connections, internal) = inbox(1);
        let d = Dispatcher::new(vec![(connections, internal)]);
        let client = ClientId::new(GateId(0), 1);
        d.to_game(ToGame::ClientConnected { client }).await.unwrap();
        let waiting = tokio::spawn({
            let d = d.clone();
            async move { d.to_game(call(client, 1, 1)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "did not wait for room");
        assert!(next(&inbox_end).is_some());
        waiting.await.unwrap().unwrap();
        assert!(next(&inbox_end).is_some());
    }

    #[tokio::test]
    async fn a_client_taken_by_another_game_moves_with_its_messages() {
        let (d, inboxes) = games(2);
        let client = ClientId::new(GateId(0), 1);
        d.to_game(ToGame::ClientConnected { client }).await.unwrap();
        assert!(next(&inboxes[0]).is_some());
        let (g0, g1) = (d.for_game(GameId(0)), d.for_game(GameId(1)));
        g0.created(100, 0);
        g0.bound(client, Some(100));
        g1.created(200, 0);
        assert_eq!(g1.client_entity(client), Some(100));
        assert_eq!(g1.claim_client(100, 200), Some(client));
        assert_eq!(g1.claim_client(100, 200), None, "taken once");
        let step = ToGame::ClientMove {
            client,
            pos: Position::default(),
            yaw: 0.0,
        };
        d.to_game(step.clone()).await.unwrap();
        assert!(matches!(
            next(&inboxes[1]),
            Some(TestMsg::Wire(ToGame::ClientMove { .. }))
        ));
        // Handed back through a message: the seat follows the message.
        let take = TestMsg::Wire(ToGame::TakeClient {
            client,
            entity: 100,
        });
        assert!(g1.send(take).is_ok());
        assert!(next(&inboxes[0]).is_some());
        d.to_game(step).await.unwrap();
        assert!(next(&inboxes[0]).is_some());
        // A client that left is handed to nothing.
        d.to_game(ToGame::ClientDisconnected { client })
            .await
            .unwrap();
        assert!(next(&inboxes[0]).is_some());
        assert_eq!(g0.claim_client(100, 200), None);
        let take = TestMsg::Wire(ToGame::TakeClient {
            client,
            entity: 200,
        });
        assert!(g0.send(take).is_ok());
        assert!(next(&inboxes[1]).is_none());
    }

    #[tokio::test]
    async fn a_client_that_left_while_its_entity_moved_is_ended_where_it_arrives() {
        let (d, inboxes) = games(2);
        let client = ClientId::new(GateId(0), 1);
        d.to_game(ToGame::ClientConnected { client }).await.unwrap();
        assert!(next(&inboxes[0]).is_some());
        let g0 = d.for_game(GameId(0));
        g0.created(100, 0);
        g0.bound(client, Some(100));
        // Its end reaches game 0 after the entity left it...
        d.to_game(ToGame::ClientDisconnected { client })
            .await
            .unwrap();
        assert!(next(&inboxes[0]).is_some());
        // ...so game 1 gets it after the entity.
        g0.ship(GameId(1), Some(client), TestMsg::Wire(ToGame::Shutdown));
        assert!(matches!(
            next(&inboxes[1]),
            Some(TestMsg::Wire(ToGame::Shutdown))
        ));
        assert!(matches!(
            next(&inboxes[1]),
            Some(TestMsg::Wire(ToGame::ClientDisconnected { client: c })) if c == client
        ));
    }

    /// A game "in another process" whose link is the dispatcher itself:
    /// what its routes send as data must do what they do under the lock.
    struct Loopback {
        d: Dispatcher<TestMsg>,
        game: GameId,
    }

    impl crate::RouteLink for Loopback {
        fn tell(&self, op: RouteOp) {
            assert!(self.d.apply(self.game, op).is_none(), "told, not asked");
        }
        fn ask(&self, op: RouteOp) -> Option<RouteAnswer> {
            self.d.apply(self.game, op)
        }
    }

    #[tokio::test]
    async fn a_remote_games_routes_do_what_a_local_games_do() {
        let (d, inboxes) = games(2);
        let link = Arc::new(Loopback {
            d: d.clone(),
            game: GameId(1),
        });
        let remote = GameRoutes::<TestMsg>::remote(GameId(1), link);
        let local = d.for_game(GameId(0));
        // Not up until it says so: new clients go to game 0.
        d.set_game_up(GameId(1), false);
        d.set_game_up(GameId(0), true);
        local.created(1, 0);
        let a = ClientId::new(GateId(0), 1);
        d.to_game(ToGame::ClientConnected { client: a })
            .await
            .unwrap();
        assert!(next(&inboxes[0]).is_some());
        assert_eq!(
            d.apply(GameId(1), RouteOp::Up),
            Some(RouteAnswer::Yes(true))
        );
        let b = ClientId::new(GateId(0), 2);
        d.to_game(ToGame::ClientConnected { client: b })
            .await
            .unwrap();
        assert!(next(&inboxes[1]).is_some(), "up: the least loaded");

        remote.created(200, 3);
        remote.bound(b, Some(200));
        assert_eq!(local.type_of(200), Some(3));
        assert_eq!(remote.type_of(1), Some(0));
        assert_eq!(remote.client_entity(b), Some(200));
        assert!(remote.register_service("Lobby", 1));
        assert!(!remote.register_service("Lobby", 200), "taken");
        assert_eq!(remote.service("Lobby"), Some(1));
        // A message for an entity on no game comes back to the sender.
        let gone = TestMsg::Wire(ToGame::DestroyEntity { entity: 999 });
        assert!(remote.send(gone).is_ok());
        assert!(matches!(
            next(&inboxes[1]),
            Some(TestMsg::Wire(ToGame::Returned(m))) if *m == ToGame::DestroyEntity { entity: 999 }
        ));
        // One for an entity elsewhere reaches its game.
        assert!(remote
            .send(TestMsg::Call(wyrm_wire::EntityCall {
                entity: 1,
                method: "hi".into(),
                args: Vec::new(),
                from: Some(200),
                plugin: Some(0),
            }))
            .is_ok());
        assert!(matches!(next(&inboxes[0]), Some(TestMsg::Call(c)) if c.method == "hi"));
        // What waits for a loading entity comes back with `arrived`.
        assert_eq!(remote.arriving(300, false), Some(GameId(1)));
        d.to_game(call(a, 300, 7)).await.unwrap();
        let held = remote.arrived(300, 3);
        assert_eq!(req_id(held.into_iter().next()), Some(7));
        // The client claimed by game 1 is seated there.
        local.created(100, 0);
        local.bound(a, Some(100));
        assert_eq!(remote.claim_client(100, 200), Some(a));
        d.to_game(ToGame::ClientMove {
            client: a,
            pos: Position::default(),
            yaw: 0.0,
        })
        .await
        .unwrap();
        assert!(matches!(
            next(&inboxes[1]),
            Some(TestMsg::Wire(ToGame::ClientMove { .. }))
        ));
        // Migration: the marker goes to the game it leaves.
        remote.begin_migration(300, GameId(0), None).unwrap();
        assert!(matches!(
            next(&inboxes[1]),
            Some(TestMsg::Wire(ToGame::Depart { entity: 300, .. }))
        ));
        assert!(remote.migration_failed(300).is_empty());
        assert_eq!(remote.game_of(300), Some(GameId(1)));
        // The game's process gone: its entities are loaded again on game 0
        // (what is sent to them waits for that); a, bound to 200 since its
        // claim, goes with it, and b (whose entity that no longer is) is
        // let go.
        while next(&inboxes[0]).is_some() {}
        let (entities, clients) = d.game_lost(GameId(1));
        assert_eq!((entities, clients), (2, vec![b]));
        let mut reloads = Vec::new();
        while let Some(TestMsg::Wire(ToGame::Reload { entity, client })) = next(&inboxes[0]) {
            reloads.push((entity, client));
        }
        reloads.sort_by_key(|(e, _)| *e);
        assert_eq!(reloads, [(200, Some(a)), (300, None)]);
        assert_eq!(local.game_of(200), Some(GameId(0)));
        assert_eq!(local.client_entity(a), Some(200), "seated with it");
        d.to_game(ToGame::ClientMove {
            client: a,
            pos: Position::default(),
            yaw: 0.0,
        })
        .await
        .unwrap();
        assert!(matches!(
            next(&inboxes[0]),
            Some(TestMsg::Wire(ToGame::ClientMove { .. }))
        ));
        d.to_game(call(b, 200, 9)).await.unwrap();
        assert!(next(&inboxes[0]).is_none(), "held while it loads again");
        assert_eq!(req_id(local.arrived(200, 3).into_iter().next()), Some(9));
    }

    #[tokio::test]
    async fn a_restarted_dispatcher_holds_what_is_for_games_yet_to_rejoin() {
        let (d, inboxes) = games(3);
        let remote = |g: u16| {
            let link = Arc::new(Loopback {
                d: d.clone(),
                game: GameId(g),
            });
            GameRoutes::<TestMsg>::remote(GameId(g), link)
        };
        let (one, two) = (remote(1), remote(2));
        d.set_game_up(GameId(1), false);
        d.set_game_up(GameId(2), false);
        d.await_reports([GameId(1), GameId(2)]);
        let rejoin = |g: u16, ids: &[EntityId]| {
            let entities = ids.iter().map(|&id| (id, 0)).collect();
            d.apply(GameId(g), RouteOp::Rejoin { entities })
        };
        let hi = |entity: EntityId, method: &str| {
            TestMsg::Call(wyrm_wire::EntityCall {
                entity,
                method: method.into(),
                args: Vec::new(),
                from: None,
                plugin: None,
            })
        };
        assert_eq!(rejoin(1, &[10]), Some(RouteAnswer::Taken(Vec::new())));
        // Game 1 sends again what it held for 20, on game 2, which has
        // not rejoined; a client calls it too.
        assert!(one.send(hi(20, "first")).is_ok());
        let a = ClientId::new(GateId(0), 1);
        d.to_game(ToGame::ClientConnected { client: a })
            .await
            .unwrap();
        assert!(next(&inboxes[0]).is_some());
        d.to_game(call(a, 20, 5)).await.unwrap();
        assert!(one.send(hi(20, "second")).is_ok());
        assert_eq!(
            d.apply(GameId(1), RouteOp::GameOf { id: 20 }),
            Some(RouteAnswer::NotYet)
        );
        assert_eq!(one.exists_if_known(20), None, "cannot say yet");
        assert!(inboxes.iter().all(|i| next(i).is_none()), "all held");
        // Game 2 rejoins with it: all three, in order, before anything
        // newer.
        assert_eq!(rejoin(2, &[20]), Some(RouteAnswer::Taken(Vec::new())));
        assert!(one.send(hi(20, "third")).is_ok());
        assert!(matches!(next(&inboxes[2]), Some(TestMsg::Call(c)) if c.method == "first"));
        assert_eq!(req_id(next(&inboxes[2])), Some(5));
        assert!(matches!(next(&inboxes[2]), Some(TestMsg::Call(c)) if c.method == "second"));
        assert!(matches!(next(&inboxes[2]), Some(TestMsg::Call(c)) if c.method == "third"));
        // Every game has rejoined: an unknown id is no one's now.
        assert_eq!(one.exists_if_known(99), Some(false));
        assert!(two.send(hi(99, "nobody")).is_ok());
        assert!(matches!(
            next(&inboxes[2]),
            Some(TestMsg::Wire(ToGame::Returned(_)))
        ));

        // Another restart, and game 2 never rejoins: once the node stops
        // waiting, a call comes back to be mailed (on a game that is up)
        // and a client's call goes to its own game, which answers it.
        let (d, inboxes) = games(3);
        d.set_game_up(GameId(1), false);
        d.set_game_up(GameId(2), false);
        d.await_reports([GameId(1), GameId(2)]);
        assert_eq!(
            d.apply(
                GameId(1),
                RouteOp::Rejoin {
                    entities: Vec::new()
                }
            ),
            Some(RouteAnswer::Taken(Vec::new()))
        );
        d.for_game(GameId(0)).send(hi(20, "late")).ok();
        d.to_game(ToGame::ClientConnected { client: a })
            .await
            .unwrap();
        assert!(next(&inboxes[0]).is_some());
        d.to_game(call(a, 20, 6)).await.unwrap();
        assert!(inboxes.iter().all(|i| next(i).is_none()), "all held");
        d.stop_awaiting();
        let returned = next(&inboxes[0]);
        assert!(
            matches!(&returned, Some(TestMsg::Wire(ToGame::Returned(m))) if matches!(&**m, ToGame::EntityCall(c) if c.method == "late")),
            "{returned:?}"
        );
        assert_eq!(req_id(next(&inboxes[0])), Some(6));
    }
}
