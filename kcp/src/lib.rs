//! KCP over UDP for Wyrm: reliable, ordered byte streams over datagrams,
//! opened by a stateless cookie handshake ([`handshake`]) so that a server
//! keeps nothing, and sends nothing larger than it received, for a peer
//! that has not shown it receives at its address.
//!
//! One endpoint task per UDP socket reads every datagram, hands it to its
//! session and runs the sessions' KCP timers; each session's owner reads
//! and writes it as a [`KcpStream`]. A server socket is a [`KcpListener`]
//! (which asks its caller to admit each new peer, so connection limits stay
//! the server's business); a client opens one session with [`connect`].

mod endpoint;
pub mod handshake;
mod session;

use std::time::Duration;

pub use endpoint::{connect, Accepted, KcpListener};
pub use handshake::Refusal;
pub use session::KcpStream;

/// Largest datagram a session sends.
pub const MTU: usize = 1400;

/// KCP's timer interval, in milliseconds.
pub const INTERVAL_MS: u32 = 10;

/// Send and receive windows, in segments.
pub const WINDOW: u16 = 256;

/// How a session behaves; both sides of a connection use the same KCP
/// settings (`docs/protocol.md`, "KCP"), only the timeouts are a side's own.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// A session that receives no datagram for this long is removed (KCP
    /// has no close, so a silent peer is a gone peer).
    pub idle_timeout: Duration,
    /// How long a session whose owner closed it may keep resending what the
    /// peer has not acknowledged.
    pub linger: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(3),
        }
    }
}

impl Settings {
    /// Lowest latency: no delay, fast resend after 2 skips, no congestion
    /// window; stream mode (frames carry their own length prefix). Public
    /// so the fuzz harness (`fuzz/`) drives KCP exactly as a session does.
    pub fn apply<W: std::io::Write>(&self, kcp: &mut kcp::Kcp<W>) {
        // 1400 is above KCP's minimum, so this cannot fail.
        let _ = kcp.set_mtu(MTU);
        kcp.set_nodelay(true, INTERVAL_MS as i32, 2, true);
        kcp.set_wndsize(WINDOW, WINDOW);
    }
}
