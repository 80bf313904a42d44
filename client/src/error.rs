//! The client's error type.

use std::time::Duration;

use wyrm_protocol::{DecodeError, ErrorCode, FrameError};

use crate::Transport;

/// Everything that can go wrong in the client.
///
/// Errors are either *fatal* (the connection is gone or unusable; every later
/// call fails with [`ClientError::Closed`]) or not: a frame the client could
/// not decode or apply is reported once and the connection keeps working.
/// [`ClientError::is_fatal`] tells which.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The transport could not be set up (DNS, TCP connect, UDP bind, WebSocket
    /// upgrade).
    #[error("cannot connect over {transport:?} to {addr}: {reason}")]
    Connect {
        transport: Transport,
        addr: String,
        reason: String,
    },
    /// The TLS settings cannot be used (no CA certificate, a bad server
    /// name).
    #[error("TLS settings: {reason}")]
    Tls { reason: String },
    /// No `Welcome` arrived within the connect timeout.
    #[error("connecting over {transport:?} to {addr} timed out after {after:?}")]
    ConnectTimeout {
        transport: Transport,
        addr: String,
        after: Duration,
    },
    /// Reading or writing the connection failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket layer failed.
    #[error("websocket error: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The server's byte stream is not length-prefixed frames (zero or absurd
    /// length). Fatal.
    #[error("bad framing from server: {0}")]
    Framing(FrameError),
    /// The server sent a frame larger than this client accepts; it was
    /// skipped and the connection goes on (fatal on WebSocket).
    #[error("server sent a frame of {len} bytes, over this client's limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    /// A frame the server sent could not be decoded; it was skipped.
    #[error("cannot decode server frame: {0}")]
    Decode(#[from] DecodeError),
    /// A frame's MessagePack payload (args, attrs, attr value) was invalid;
    /// the frame was skipped.
    #[error("bad MessagePack in {what}: {reason}")]
    Payload { what: String, reason: String },
    /// An `Attr` frame could not be applied to the local view of an entity
    /// (unknown entity, path that does not exist, wrong container type).
    #[error("cannot apply attr update to entity {entity}: {reason}")]
    View { entity: u64, reason: String },
    /// The server broke the protocol in some other way (a frame out of
    /// order, a WebSocket text message, ...).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A frame this client was asked to send is larger than the `max_frame`
    /// the server announced in `Welcome`; nothing was sent.
    #[error("frame of {len} bytes exceeds the server's limit of {max}")]
    TooLargeToSend { len: usize, max: usize },
    /// Arguments could not be serialised to MessagePack.
    #[error("cannot encode arguments: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A MessagePack value did not have the shape of the requested type.
    #[error("cannot decode {what} as the requested type: {reason}")]
    Deserialize { what: String, reason: String },
    /// The server answered with an `Error` frame while a helper waited for
    /// something else.
    #[error("server error {code:?} (code {code_num}, req_id {req_id}) while waiting for {waiting_for}: {message}")]
    Server {
        req_id: u32,
        code: ErrorCode,
        code_num: u16,
        message: String,
        waiting_for: String,
    },
    /// A helper's deadline passed. `saw` lists the events that arrived
    /// meanwhile (they stay queued for [`Client::next_event`]).
    ///
    /// [`Client::next_event`]: crate::Client::next_event
    #[error("timed out after {after:?} waiting for {waiting_for}; saw instead: {saw}")]
    Timeout {
        waiting_for: String,
        after: Duration,
        saw: String,
    },
    /// The connection closed while a helper waited for something.
    #[error("connection closed while waiting for {waiting_for}; saw before: {saw}")]
    ClosedWhileWaiting { waiting_for: String, saw: String },
    /// The server speaks another protocol version; nothing was sent but
    /// `Hello`. Fatal.
    #[error("the server speaks protocol {server}; this client speaks {client}: use a client and a server of the same protocol version")]
    VersionMismatch { server: u16, client: u16 },
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The call needs the client's own entity, and there is none.
    #[error("this client has no own entity (no Create with own=true yet)")]
    NoPlayer,
    /// The operation makes no sense on this transport.
    #[error("{what} is not supported over {transport:?}")]
    Unsupported {
        what: &'static str,
        transport: Transport,
    },
}

impl ClientError {
    /// True if the connection can no longer be used after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::ConnectTimeout { .. }
                | Self::Io(_)
                | Self::WebSocket(_)
                | Self::Framing(_)
                | Self::VersionMismatch { .. }
                | Self::Closed
                | Self::ClosedWhileWaiting { .. }
        )
    }

    pub(crate) fn payload(what: impl Into<String>, reason: impl ToString) -> Self {
        Self::Payload {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(e))
    }
}
