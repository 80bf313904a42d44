//! KCP: reliable UDP, frames behind a u32 length over KCP's byte stream.
//! Sessions open through `wyrm-kcp`'s cookie handshake, admitted by the
//! server's connection limits.
//! The KCP stream can only be written by its owner, so a KCP link never
//! writes from the gate's thread: a flush wakes the connection's task,
//! which writes everything queued in one go (KCP packs it into as few
//! datagrams as its MTU allows).

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wyrm_kcp::{KcpListener, KcpStream, Refusal, Settings};

use super::link::{CloseReason, Framing, Link};
use super::{Admission, Refused, Ticket};
use super::{Deframer, FrameConn, NetError, Piece, PrefixDeframer, ReadEnd};

/// Bytes read from the KCP stream at a time.
const READ_CHUNK: usize = 4096;

/// The reading (and, for its link, writing) half of a KCP connection.
pub struct KcpConn {
    stream: KcpStream,
    deframer: PrefixDeframer,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl FrameConn for KcpConn {
    async fn read(
        &mut self,
        on: &mut (dyn FnMut(Piece<'_>) -> ControlFlow<()> + Send),
    ) -> Result<ReadEnd, NetError> {
        // `read` is cancel-safe: bytes are either returned or left in KCP.
        let n = self.stream.read(&mut self.buf).await?;
        if n == 0 {
            return Ok(ReadEnd::PeerClosed);
        }
        Ok(self.deframer.feed(&mut self.buf[..n], on)?.into())
    }

    async fn write_queued(&mut self, link: &Link) -> io::Result<()> {
        while link.take_queued(&mut self.out) {
            // KCP refuses one send that needs 128 or more segments.
            for chunk in self.out.chunks(wyrm_protocol::STREAM_WRITE_CHUNK) {
                self.stream.write_all(chunk).await?;
            }
            self.stream.flush().await?;
            self.out.clear();
        }
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new(); // do not pin a burst's buffer
        }
        Ok(())
    }

    async fn close(&mut self, link: &Link) {
        if !matches!(link.closed(), Some(CloseReason::SlowReader { .. })) {
            let last = link.drain_for_close();
            for chunk in last.chunks(wyrm_protocol::STREAM_WRITE_CHUNK) {
                if self.stream.write_all(chunk).await.is_err() {
                    break;
                }
            }
        }
        link.close(CloseReason::Released);
        // KCP has no end-of-stream for the peer to see (clients learn of a
        // close from the error frame before it, or by silence).
        let _ = self.stream.flush().await;
        let _ = self.stream.shutdown().await;
    }

    fn transport(&self) -> &'static str {
        "kcp"
    }

    fn mid_frame(&self) -> bool {
        self.deframer.mid_frame()
    }
}

/// Binds a KCP listener whose sessions expire after `idle_timeout` without
/// a datagram; each peer that completes the handshake must get a ticket
/// from `admission`, which stays with its session.
pub async fn listen_kcp(
    addr: SocketAddr,
    idle_timeout: std::time::Duration,
    admission: Admission,
) -> io::Result<KcpListener<Ticket>> {
    let settings = Settings {
        idle_timeout,
        ..Settings::default()
    };
    KcpListener::bind(addr, settings, move |peer| {
        admission
            .admit(peer, "kcp")
            .map_err(|refused| match refused {
                Refused::Full(_) => Refusal::ServerFull,
                Refused::AddressFull(_) => Refusal::AddressFull,
            })
    })
    .await
    .map_err(|e| io::Error::other(format!("cannot bind KCP on {addr}: {e}")))
}

/// Prepares an accepted KCP stream: frames of at most `max_frame` bytes in,
/// at most `queue` bytes queued out.
pub fn kcp_conn(stream: KcpStream, max_frame: usize, queue: usize) -> (KcpConn, Arc<Link>) {
    let conn = KcpConn {
        stream,
        deframer: PrefixDeframer::new(max_frame),
        buf: vec![0; READ_CHUNK],
        out: Vec::new(),
    };
    (conn, Link::new(Framing::Prefixed, None, queue))
}
