//! Transports: TCP and KCP with length-prefixed frames, WebSocket with one
//! frame per binary message (beside a static web page on the same port).
//!
//! Each transport yields connections that implement [`FrameConn`]; the gate
//! serves any of them the same way. This module knows frames as bytes only:
//! nothing here decodes a frame's contents or knows of entities.

pub(crate) mod http;
mod stream;
mod ws;

use std::future::Future;
use std::io;

use bytes::Bytes;

pub use stream::{kcp_conn, listen_kcp, listen_tcp, tcp_conn, StreamConn};
pub use ws::{accept_http, listen_websocket, WsConn};

/// What a connection received.
#[derive(Debug)]
pub enum Inbound {
    /// One whole frame (type byte and body).
    Frame(Bytes),
    /// A frame over the maximum arrived and was discarded.
    TooLarge {
        /// Its announced length.
        len: usize,
    },
}

/// A failure that ends a connection.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer does not speak the framing (for example a zero length).
    #[error("bad framing: {0}")]
    Framing(String),
}

/// A connection that carries whole frames, whatever the transport.
pub trait FrameConn: Send + 'static {
    /// The next frame from the peer, or `None` when it closed. Cancel-safe:
    /// a cancelled call loses no bytes.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Inbound>, NetError>> + Send;

    /// Sends one frame (shared bytes: a fan-out frame is not copied).
    fn send(&mut self, frame: Bytes) -> impl Future<Output = io::Result<()>> + Send;

    /// Closes the connection, flushing what was sent.
    fn close(&mut self) -> impl Future<Output = ()> + Send;

    /// The transport's name, for logs.
    fn transport(&self) -> &'static str;
}
