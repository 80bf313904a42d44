//! Wyrm's client protocol: the frames a client and a server exchange, their
//! binary encoding, and the length-prefixed framing used on stream
//! transports (TCP, KCP). WebSocket carries one frame per binary message.
//!
//! This crate is shared by the host and the Rust client SDK; it does no I/O.
//! The wire format is specified in `docs/protocol.md`; this code is its
//! reference implementation and every decoder here is total: malformed input
//! yields a [`DecodeError`], never a panic.

pub mod attr;
mod codec;
mod frame;
mod positions;
mod stream;

pub use codec::DecodeError;
pub use frame::{
    AttrOp, CallRef, ClientFrame, EntityPosition, ErrorCode, PathSegment, Position, ServerFrame,
};
pub use positions::{
    put_signed, put_varint, quantize_yaw, yaw_value, PositionTable, PositionsWriter, QuantPos,
    Resolution, MAX_SLOT, POSITIONS_TYPE, YAW_STEPS,
};
pub use stream::{write_prefixed, FrameDecoder, FrameError, LENGTH_PREFIX, STREAM_WRITE_CHUNK};

/// Version of the protocol this crate speaks; sent in `Welcome`.
pub const PROTOCOL_VERSION: u16 = 3;

/// Default largest frame (type byte + body) either side accepts.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// The KCP settings both sides of a Wyrm connection use (`docs/protocol.md`,
/// "KCP"): lowest latency, flushed at once, stream mode (frames carry their
/// own length prefix). Sessions expire after 30 s without a datagram, since
/// KCP has no close; clients ping more often than that.
#[cfg(feature = "kcp")]
pub fn kcp_config() -> tokio_kcp::KcpConfig {
    tokio_kcp::KcpConfig {
        mtu: 1400,
        nodelay: tokio_kcp::KcpNoDelayConfig::fastest(),
        wnd_size: (256, 256),
        session_expire: std::time::Duration::from_secs(30),
        flush_write: true,
        flush_acks_input: true,
        stream: true,
        ..Default::default()
    }
}
