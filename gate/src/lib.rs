//! The gate: serves client connections on every transport and keeps the
//! per-client state the game should not care about — the entity a client is
//! bound to, its tags, its outbound queue and its rate limit. It fans calls
//! out to many clients (by tags, or to all), encoding each such frame once.
//!
//! Two halves: [`serve_connection`] runs one task per connection (decode,
//! validate, rate-limit, hand to the dispatcher), and [`Gate`] is one task
//! that owns the client registry and carries out the games'
//! [`GateBatch`](wyrm_wire::GateBatch)es: it queues each frame on its
//! clients' [`Link`](net::Link)s, then writes each client once — at the end
//! of every batch for clients sent a frame of their own, at the end of every
//! tick for everyone with something queued. [`listen`] starts a task per
//! transport that accepts connections and admits them.
//!
//! `net` carries frames as bytes (TCP, KCP, WebSocket and the static page).
//! The gate reaches games only through the dispatcher (`wyrm-dispatcher`),
//! and knows nothing of plugins, storage or WebAssembly.

mod conn;
mod listen;
pub mod net;
mod registry;

pub use conn::{serve_connection, ConnContext, ConnLimits};
pub use listen::{listen, Endpoints, ListenError, Listeners};
pub use registry::{Gate, Registration};
