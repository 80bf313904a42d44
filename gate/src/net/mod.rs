//! Transports: TCP and KCP with length-prefixed frames, WebSocket with one
//! frame per binary message (beside a static web page on the same port);
//! TCP and WebSocket also over TLS.
//!
//! Each accepted connection is two halves: a [`FrameConn`], which the
//! connection's task reads from, and a [`Link`], through which anyone —
//! mostly the gate — queues frames for the client and writes them, many to
//! a write. This module knows frames as bytes only: nothing here decodes a
//! frame's contents or knows of entities.

mod admission;
mod deframe;
pub mod http;
mod kcp;
mod link;
mod tcp;
mod tls;
mod ws;

use std::future::Future;
use std::io;
use std::ops::ControlFlow;

pub use admission::{Admission, Refused, Ticket};
pub use deframe::{Deframer, FramingError, Piece, PrefixDeframer, WsDeframer, WS_PONG};
pub use kcp::{kcp_conn, listen_kcp, KcpConn};
pub use link::{CloseReason, Duty, Framing, Link, Overflow};
pub use tcp::{listen_tcp, refuse_tcp, tcp_conn, tls_tcp_conn, TcpConn};
pub use tls::{self_signed, SelfSigned, Tls, TlsConn, TlsError};
pub use ws::{accept_http, accept_https, listen_websocket, refuse_http, ws_control_frame, WsConn};

/// Bytes read from a socket at a time: a read that finds many frames
/// waiting takes them all in one call.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// How a read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// Everything read was handed on; read again.
    More,
    /// The receiver of the pieces asked to stop.
    Stopped,
    /// The peer closed its side.
    PeerClosed,
}

impl From<ControlFlow<()>> for ReadEnd {
    fn from(flow: ControlFlow<()>) -> Self {
        match flow {
            ControlFlow::Continue(()) => ReadEnd::More,
            ControlFlow::Break(()) => ReadEnd::Stopped,
        }
    }
}

/// A failure that ends a connection.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer does not speak the framing (for example a zero length).
    #[error("bad framing: {0}")]
    Framing(#[from] FramingError),
}

/// The reading half of a connection, whatever the transport; writing goes
/// through its [`Link`].
pub trait FrameConn: Send + 'static {
    /// Waits for input, then hands everything one read brought to `on`,
    /// piece by piece. Cancel-safe: a cancelled call loses no bytes.
    fn read(
        &mut self,
        on: &mut (dyn FnMut(Piece<'_>) -> ControlFlow<()> + Send),
    ) -> impl Future<Output = Result<ReadEnd, NetError>> + Send;

    /// Writes what the link holds, waiting for the transport as needed
    /// (when the link says [`Duty::Write`]).
    fn write_queued(&mut self, link: &Link) -> impl Future<Output = io::Result<()>> + Send;

    /// Sends what is still queued (briefly, and not to a client dropped
    /// for reading too slowly), the transport's own close, and closes.
    fn close(&mut self, link: &Link) -> impl Future<Output = ()> + Send;

    /// The transport's name, for logs.
    fn transport(&self) -> &'static str;

    /// Whether the client has begun a frame it has not finished.
    fn mid_frame(&self) -> bool;

    /// Bytes that make a quiet client answer without its program's help
    /// (a WebSocket ping, which browsers answer on their own).
    fn probe(&self) -> Option<&[u8]> {
        None
    }
}
