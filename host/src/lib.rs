//! The Wyrm game server host.
//!
//! A native host that owns everything that must stay up while a game is
//! played — client connections, routing, the entity table, attributes,
//! timers — and runs game logic as WebAssembly components that implement the
//! `wyrm:game` WIT world. See `ARCHITECTURE.md` at the repository root for
//! the map.
//!
//! The roles are crates of their own, dependencies pointing one way:
//! `wyrm-gate` (client connections) and `wyrm-game` (the logic threads)
//! over `wyrm-dispatcher` (routing between them) over `wyrm-wire` (the
//! messages); `wyrm-runtime` runs plugins, `wyrm-storage` keeps what
//! is saved, `wyrm-toolchains` builds plugins, `wyrm-bots` loads a server.
//! This crate wires them into one process and holds what only the process
//! needs:
//! - [`server`]: one gate, one dispatcher and `[game] workers` games;
//!   plugins built and loaded. [`swapper`]: hot swap on every game or
//!   none.
//! - [`config`]: the TOML config; [`admin`]: the local admin endpoint (hot
//!   swap) and its client.
//! - [`cluster`]: gates and games in other processes (`wyrm gate`, `wyrm
//!   game`) over NATS, with `wyrm serve` as the node that dispatches.
//! - [`local`]: a PostgreSQL server of Wyrm's own on this machine, for a
//!   cluster on one machine, tests and benchmarks.
//!
//! `main.rs` is the `wyrm` command over it.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod local;
pub mod server;
pub mod swapper;

pub use config::Config;
pub use server::Server;
pub use swapper::Swapper;
pub use wyrm_game::{GameCounters, SwapOutcome, SwapReport};
