//! What a game in a process of its own tells the dispatcher about its
//! entities, and the dispatcher's answers: the calls of the dispatcher's
//! `GameRoutes`, as data. In one process they are method calls under the
//! dispatcher's lock; a game on another process sends them, in order, on
//! its `routes` subject, and waits for the answer to those that have one.

use serde::{Deserialize, Serialize};

use crate::ids::{ClientId, EntityId, GameId};
use crate::msg::{Arrival, ToGame};

/// One thing a game tells or asks the dispatcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RouteOp {
    /// The game is ready: the dispatcher may place entities on it.
    /// Answer: [`RouteAnswer::Yes`].
    Up,
    /// Answer: [`RouteAnswer::Yes`], once everything sent before is done:
    /// the game asks before its frames go out, so that what a client does
    /// about them cannot overtake what the game sent other games first.
    Settle,
    /// The game is ready again after the dispatcher restarted, and runs
    /// these entities (id, type). Answer: [`RouteAnswer::Taken`].
    Rejoin { entities: Vec<(EntityId, u32)> },
    /// The game made `id`, of type `ty` (a registry index). Answer:
    /// [`RouteAnswer::Yes`] once the dispatcher knows, so that nothing the
    /// game sends about `id` (its frames to clients) can reach anyone
    /// before the dispatcher can route to it.
    Created { id: EntityId, ty: u32 },
    /// Place new entity `id` by load; `create` is sent to the game chosen
    /// if that is another. Answer: [`RouteAnswer::Back`], `create` if the
    /// asking game was chosen (it makes the entity itself).
    CreateAnywhere {
        id: EntityId,
        ty: u32,
        create: ToGame,
    },
    /// `id` is to be loaded here or (`anywhere`) by load. Answer:
    /// [`RouteAnswer::Game`], `None` if it is live somewhere already.
    Arriving { id: EntityId, anywhere: bool },
    /// `id` is in. Answer: [`RouteAnswer::Held`].
    Arrived { id: EntityId, ty: u32 },
    /// `id` is gone from the game. Answer: [`RouteAnswer::Held`].
    Gone { id: EntityId },
    /// Answer: [`RouteAnswer::Type`].
    TypeOf { id: EntityId },
    /// Answer: [`RouteAnswer::Game`].
    GameOf { id: EntityId },
    /// Send `msg` to its entity's game; if that entity is on no game, it
    /// comes back to the sender as [`ToGame::Returned`].
    Send { msg: ToGame },
    /// Start moving `id` from the game to `to`. Answer:
    /// [`RouteAnswer::Refused`].
    BeginMigration {
        id: EntityId,
        to: GameId,
        then: Option<Arrival>,
    },
    /// `id` could not move. Answer: [`RouteAnswer::Held`].
    MigrationFailed { id: EntityId },
    /// `msg` straight to game `to`, with `client` moved there.
    Ship {
        to: GameId,
        client: Option<ClientId>,
        msg: ToGame,
    },
    /// `client` is bound to `entity` (or none) on the game.
    Bound {
        client: ClientId,
        entity: Option<EntityId>,
    },
    /// Take the client of `from` for `to`. Answer: [`RouteAnswer::Client`].
    ClaimClient { from: EntityId, to: EntityId },
    /// Answer: [`RouteAnswer::Entity`].
    ClientEntity { client: ClientId },
    /// Answer: [`RouteAnswer::Yes`].
    RegisterService { name: String, id: EntityId },
    /// Answer: [`RouteAnswer::Entity`].
    Service { name: String },
}

/// A [`RouteOp`] as a game sends it: `ask` numbers those with an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRequest {
    pub ask: Option<u64>,
    pub op: RouteOp,
}

/// The dispatcher's answer to the request numbered `ask`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteReply {
    pub ask: u64,
    pub answer: RouteAnswer,
}

/// What the dispatcher answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RouteAnswer {
    /// The message sent, if it is the asker's to handle after all.
    Back(Option<ToGame>),
    Game(Option<GameId>),
    /// What waited for an entity, oldest first.
    Held(Vec<ToGame>),
    Type(Option<u32>),
    /// Why the dispatcher refused, if it did.
    Refused(Option<String>),
    Client(Option<ClientId>),
    Entity(Option<EntityId>),
    Yes(bool),
    /// Entities another game reported first: the asker drops its copies.
    Taken(Vec<EntityId>),
    /// Everything told before the `Settle` is done, by the node of this
    /// run (a game tells one node's confirmation from another's).
    Settled(u64),
    /// The dispatcher cannot say yet: it restarted, and some game has not
    /// reported what it runs.
    NotYet,
}
