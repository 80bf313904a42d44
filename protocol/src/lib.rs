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
    compress_frame, decompress_frame, AttrOp, CallRef, ClientFrame, EntityPosition, ErrorCode,
    HelloOptions, PathSegment, Position, ServerFrame, WelcomeOptions, COMPRESSED_TYPE, LZ4,
};
pub use positions::{
    put_signed, put_varint, quantize_yaw, yaw_value, PositionTable, PositionsWriter, QuantPos,
    Resolution, MAX_SLOT, POSITIONS_TYPE, YAW_STEPS,
};
pub use stream::{write_prefixed, FrameDecoder, FrameError, LENGTH_PREFIX, STREAM_WRITE_CHUNK};

/// Version of the protocol this crate speaks; sent in `Welcome`.
pub const PROTOCOL_VERSION: u16 = 4;

/// The oldest version a server still speaks (to clients that say so in
/// their `Hello`).
pub const OLDEST_PROTOCOL_VERSION: u16 = 3;

/// The name of LZ4 compression in `Hello` and `Welcome` options.
pub const LZ4_NAME: &str = "lz4";

/// Frames shorter than this are not worth compressing.
pub const COMPRESS_MIN: u32 = 256;

/// Default largest frame (type byte + body) either side accepts.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;
