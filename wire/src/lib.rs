//! The messages Wyrm's roles send each other — gate, dispatcher, game — and
//! the ids they name, with one versioned binary encoding.
//!
//! In `wyrm serve` these values travel over in-process channels as they
//! are, never encoded; a cluster carries the very same values between
//! processes, encoded with [`encode`] and read back with [`decode`]. So
//! every message here is plain data: no channel, no instance, no handle,
//! nothing that means something only inside one process. What does (a hot
//! swap's new instance, a storage reply with the bytes it holds against a
//! plugin) is the host's own business and stays out of this crate.
//!
//! Ids name things across the whole deployment: an [`EntityId`] is never
//! handed out twice (ids are reserved from storage in blocks), and a
//! [`ClientId`] carries the [`GateId`] of the gate that owns its
//! connection, so two gates never name different clients alike.

mod codec;
mod ids;
mod msg;
mod route;

pub use codec::{decode, encode, encode_into, WireError, VERSION};
pub use ids::{ClientId, ClientIds, EntityId, GameId, GateId, IdHasher, IdMap};
pub use msg::{
    Arrival, AttrAsk, EntityCall, GateBatch, Migrant, MigrantTimer, NewEntity, PluginIndex,
    QueuedWork, ReplyTo, ToGame, ToGate,
};
pub use route::{RouteAnswer, RouteOp, RouteReply, RouteRequest};
pub use wyrm_protocol::Position;
