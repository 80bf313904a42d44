//! Connections over a TCP socket: raw TCP with length-prefixed frames, and
//! (with another deframer and a close frame) WebSocket.
//!
//! The socket is shared between the connection's task, which reads it, and
//! its [`Link`], which writes from whichever thread flushes.

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use std::io::Read as _;

use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

use super::link::{CloseReason, Framing, Link};
use super::{Deframer, FrameConn, NetError, Piece, PrefixDeframer, ReadEnd, READ_CHUNK};

/// How long a closing connection may take to send its last frames and see
/// the peer close.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// The reading half of a connection on a TCP socket.
pub struct SocketConn<D> {
    socket: Arc<TcpStream>,
    deframer: D,
    name: &'static str,
    /// Sent last when the server closes (a WebSocket close frame).
    goodbye: Option<Vec<u8>>,
    /// Sent to a quiet client to draw an answer (a WebSocket ping).
    probe: Option<Vec<u8>>,
    /// Bytes that arrived before the connection was handed over (behind a
    /// WebSocket upgrade request), read first.
    early: Vec<u8>,
}

/// A raw TCP connection.
pub type TcpConn = SocketConn<PrefixDeframer>;

impl<D: Deframer> SocketConn<D> {
    /// Wraps `socket`; returns the connection and its link, which holds up
    /// to `queue` bytes.
    pub(crate) fn new(
        socket: TcpStream,
        deframer: D,
        framing: Framing,
        name: &'static str,
        queue: usize,
    ) -> (Self, Arc<Link>) {
        let socket = Arc::new(socket);
        let link = Link::new(framing, Some(socket.clone()), queue);
        let conn = Self {
            socket,
            deframer,
            name,
            goodbye: None,
            probe: None,
            early: Vec::new(),
        };
        (conn, link)
    }

    /// Bytes to send last when the server closes the connection.
    pub(crate) fn set_goodbye(&mut self, bytes: Vec<u8>) {
        self.goodbye = Some(bytes);
    }

    /// Bytes that draw an answer from a quiet client.
    pub(crate) fn set_probe(&mut self, bytes: Vec<u8>) {
        self.probe = Some(bytes);
    }

    /// Bytes already read from the socket, to be read before it.
    pub(crate) fn push_early(&mut self, bytes: Vec<u8>) {
        self.early = bytes;
    }

    /// Writes `bytes` (within the close grace, whole or not at all).
    async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            self.socket.writable().await?;
            match self.socket.try_write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<D: Deframer + 'static> FrameConn for SocketConn<D> {
    async fn read(
        &mut self,
        on: &mut (dyn FnMut(Piece<'_>) -> ControlFlow<()> + Send),
    ) -> Result<ReadEnd, NetError> {
        if !self.early.is_empty() {
            let mut early = std::mem::take(&mut self.early);
            return Ok(self.deframer.feed(&mut early, on)?.into());
        }
        loop {
            self.socket.readable().await?;
            // The buffer lives only between awaits, so an idle connection's
            // task does not carry it.
            let mut buf = [0u8; READ_CHUNK];
            let mut got = 0;
            let read = self.socket.try_io(Interest::READABLE, || {
                got = (&*socket2::SockRef::from(&*self.socket)).read(&mut buf)?;
                if got > 0 && got < buf.len() {
                    // A short read emptied the socket: say so now rather
                    // than learn it from one more read that would block.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            match read {
                Ok(()) if got == 0 => return Ok(ReadEnd::PeerClosed),
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e.into()),
                _ if got > 0 => return Ok(self.deframer.feed(&mut buf[..got], on)?.into()),
                _ => {}
            }
        }
    }

    async fn write_queued(&mut self, link: &Link) -> io::Result<()> {
        link.write_out().await
    }

    async fn close(&mut self, link: &Link) {
        let slow = matches!(link.closed(), Some(CloseReason::SlowReader { .. }));
        link.close(CloseReason::Released);
        let mut last = if slow {
            Vec::new()
        } else {
            link.drain_for_close()
        };
        if let Some(bye) = self.goodbye.take() {
            last.extend_from_slice(&bye);
        }
        let finish = async {
            let _ = self.write_all(&last).await;
            // Closing a socket with unread input makes the kernel send a
            // reset, which can destroy the last frames written (an error
            // saying why we close). Shut down writing, then read until the
            // peer closes too.
            let _ = socket2::SockRef::from(&*self.socket).shutdown(std::net::Shutdown::Write);
            let mut sink = [0u8; 1024];
            loop {
                if self.socket.readable().await.is_err() {
                    break;
                }
                match self.socket.try_read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
    }

    fn transport(&self) -> &'static str {
        self.name
    }

    fn mid_frame(&self) -> bool {
        self.deframer.mid_frame()
    }

    fn probe(&self) -> Option<&[u8]> {
        self.probe.as_deref()
    }
}

/// Sends a connection that was not admitted its reason (`bytes`, whole
/// or not at all, within the close grace) and closes it.
pub async fn refuse_tcp(mut stream: TcpStream, bytes: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let finish = async {
        stream.write_all(&bytes).await?;
        // As in `close`: shut down writing and read to the peer's end, so
        // unread input does not turn the close into a reset that loses the
        // reason.
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
}

/// Binds a TCP listener.
pub async fn listen_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Prepares an accepted TCP stream: frames of at most `max_frame` bytes in,
/// at most `queue` bytes queued out.
pub fn tcp_conn(stream: TcpStream, max_frame: usize, queue: usize) -> (TcpConn, Arc<Link>) {
    // Writes are already whole batches; do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    SocketConn::new(
        stream,
        PrefixDeframer::new(max_frame),
        Framing::Prefixed,
        "tcp",
        queue,
    )
}

/// Prepares an accepted TLS stream for the raw TCP framing: frames of at
/// most `max_frame` bytes in, at most `queue` bytes queued out.
pub fn tls_tcp_conn(
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    max_frame: usize,
    queue: usize,
) -> (super::TlsConn<PrefixDeframer>, Arc<Link>) {
    super::TlsConn::new(
        stream,
        PrefixDeframer::new(max_frame),
        Framing::Prefixed,
        "tcp-tls",
        queue,
    )
}
