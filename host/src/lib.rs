//! The Wyrm game server host.
//!
//! A native host that owns everything that must stay up while a game is
//! played — client connections, routing, the entity table, attributes,
//! timers — and runs game logic as WebAssembly components that implement the
//! `wyrm:game` WIT world. See `ARCHITECTURE.md` at the repository root for
//! the map.
//!
//! Modules, by concern, dependencies pointing down:
//! - [`server`]: wires one gate, one dispatcher and one game into a process.
//! - the gate (`wyrm-gate`): client connections, tags, fan-out, rate
//!   limits, writes.
//! - the dispatcher (`wyrm-dispatcher`): routes what connections receive
//!   to their game, and what games send each other.
//! - [`game`]: the logic thread: world, work queue, crash recovery.
//! - [`admin`]: the local admin endpoint (hot swap) and its client.
//! - [`msg`]: the game's input (the wire messages and this process's own);
//!   [`config`]: the TOML config.

pub mod admin;
pub mod config;
pub mod game;
pub mod msg;
pub mod server;

pub use config::Config;
pub use game::{SwapOutcome, SwapReport};
pub use server::{Server, Swapper};
