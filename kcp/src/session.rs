//! One KCP session: the KCP state machine behind a lock, shared by the
//! endpoint task (which feeds it datagrams and runs its timers) and the
//! [`KcpStream`] its owner reads and writes.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use kcp::{Error as KcpError, Kcp};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;

use crate::Settings;

/// Where a session's datagrams go. A datagram the socket cannot take now
/// is dropped: to KCP that is loss, and it sends it again.
pub(crate) struct Output {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
}

impl Write for Output {
    fn write(&mut self, datagram: &[u8]) -> io::Result<usize> {
        match self.socket.try_send_to(datagram, self.peer) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => tracing::debug!(peer = %self.peer, "UDP send failed: {e}"),
        }
        Ok(datagram.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A session as the endpoint and the stream share it.
pub(crate) struct Session {
    state: Mutex<State>,
    started: Instant,
}

struct State {
    kcp: Kcp<Output>,
    /// KCP's clock (ms since `started`) at which `update` is next due.
    next_update: u32,
    last_input: Instant,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// The owner is done writing (shut down or dropped the stream); the
    /// endpoint lets what is unacknowledged go out, then removes it.
    closing: Option<Instant>,
    /// The endpoint removed it: reads end, writes fail.
    closed: bool,
}

/// What the endpoint should do with a session after a tick.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Keep,
    Remove(&'static str),
}

impl Session {
    pub(crate) fn new(
        conv: u32,
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        settings: &Settings,
    ) -> Arc<Self> {
        let mut kcp = Kcp::new_stream(conv, Output { socket, peer });
        settings.apply(&mut kcp);
        let session = Arc::new(Self {
            state: Mutex::new(State {
                kcp,
                next_update: 0,
                last_input: Instant::now(),
                reader: None,
                writer: None,
                closing: None,
                closed: false,
            }),
            started: Instant::now(),
        });
        // KCP refuses to work until its clock has been set once.
        session.tick(Instant::now(), settings);
        session
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves KCP mid-update at worst;
        // the session then fails its peer's checks and times out.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn clock(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.started).as_millis() as u32
    }

    pub(crate) fn conv(&self) -> u32 {
        self.lock().kcp.conv()
    }

    /// Feeds one datagram from the peer.
    pub(crate) fn input(&self, datagram: &[u8]) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        match s.kcp.input(datagram) {
            Ok(_) => {}
            // A corrupt or foreign segment: KCP dropped it, nothing else to do.
            Err(e) => {
                tracing::trace!("KCP input refused: {e}");
                return;
            }
        }
        s.last_input = Instant::now();
        // Acknowledge at once rather than at the next update: a round trip
        // then costs microseconds on a fast path, not the timer interval.
        let _ = s.kcp.flush_ack();
        s.wake_ready();
    }

    /// Runs KCP's timers if due; says whether the session should go.
    pub(crate) fn tick(&self, now: Instant, settings: &Settings) -> Fate {
        let clock = self.clock(now);
        let mut s = self.lock();
        if s.closed {
            return Fate::Remove("closed");
        }
        if now.saturating_duration_since(s.last_input) > settings.idle_timeout {
            return Fate::Remove("silent for too long");
        }
        if s.kcp.is_dead_link() {
            return Fate::Remove("the peer stopped acknowledging");
        }
        if let Some(since) = s.closing {
            if s.kcp.wait_snd() == 0 || now.saturating_duration_since(since) > settings.linger {
                return Fate::Remove("closed by its owner");
            }
        }
        if clock.wrapping_sub(s.next_update) as i32 >= 0 {
            let _ = s.kcp.update(clock);
            s.next_update = s.kcp.check(clock);
            s.wake_ready();
        }
        Fate::Keep
    }

    /// Marks the session gone: its stream's reads end and writes fail.
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        if let Some(w) = s.reader.take() {
            w.wake();
        }
        if let Some(w) = s.writer.take() {
            w.wake();
        }
    }

    fn start_closing(&self) {
        let mut s = self.lock();
        let _ = s.kcp.flush();
        s.closing.get_or_insert_with(Instant::now);
    }
}

impl State {
    fn window_full(&self) -> bool {
        let waiting = self.kcp.wait_snd();
        waiting >= usize::from(self.kcp.snd_wnd()) || waiting >= usize::from(self.kcp.rmt_wnd())
    }

    fn wake_ready(&mut self) {
        if self.reader.is_some() && self.kcp.peeksize().is_ok() {
            if let Some(w) = self.reader.take() {
                w.wake();
            }
        }
        if self.writer.is_some() && !self.window_full() {
            if let Some(w) = self.writer.take() {
                w.wake();
            }
        }
    }
}

/// A KCP session's byte stream. Reads end (0 bytes) when the session is
/// closed: by the peer's silence, a dead link, or the endpoint stopping.
/// Dropping or shutting it down lets what is unacknowledged go out, for a
/// while, before the session is removed.
pub struct KcpStream {
    session: Arc<Session>,
    peer: SocketAddr,
    /// What a read could not take of the segment it received.
    leftover: Vec<u8>,
    leftover_at: usize,
}

impl KcpStream {
    pub(crate) fn new(session: Arc<Session>, peer: SocketAddr) -> Self {
        Self {
            session,
            peer,
            leftover: Vec::new(),
            leftover_at: 0,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The session's conv.
    pub fn conv(&self) -> u32 {
        self.session.conv()
    }
}

impl Drop for KcpStream {
    fn drop(&mut self) {
        self.session.start_closing();
    }
}

/// Most bytes handed to KCP in one write: KCP refuses a send that needs
/// 128 or more segments.
const MAX_WRITE: usize = 64 * 1024;

impl AsyncRead for KcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.leftover_at < this.leftover.len() {
            let n = buf.remaining().min(this.leftover.len() - this.leftover_at);
            buf.put_slice(&this.leftover[this.leftover_at..this.leftover_at + n]);
            this.leftover_at += n;
            return Poll::Ready(Ok(()));
        }
        let mut s = this.session.lock();
        let before = buf.filled().len();
        while buf.remaining() > 0 {
            let Ok(size) = s.kcp.peeksize() else { break };
            if size <= buf.remaining() {
                match s.kcp.recv(buf.initialize_unfilled()) {
                    Ok(n) => buf.advance(n),
                    Err(_) => break,
                }
            } else {
                // A segment larger than the caller's room: keep the rest.
                this.leftover.resize(size, 0);
                if let Ok(n) = s.kcp.recv(&mut this.leftover) {
                    this.leftover.truncate(n);
                    let take = buf.remaining().min(n);
                    buf.put_slice(&this.leftover[..take]);
                    this.leftover_at = take;
                }
                break;
            }
        }
        if buf.filled().len() > before {
            // Taking segments may reopen the receive window: tell the peer.
            s.wake_ready();
            return Poll::Ready(Ok(()));
        }
        if s.closed {
            return Poll::Ready(Ok(())); // end of stream
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for KcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.session.lock();
        if s.closed || s.closing.is_some() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if s.window_full() {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let data = &data[..data.len().min(MAX_WRITE)];
        match s.kcp.send(data) {
            Ok(n) => {
                // Send now rather than at the next update (10 ms later).
                let _ = s.kcp.flush();
                Poll::Ready(Ok(n))
            }
            Err(KcpError::IoError(e)) => Poll::Ready(Err(e)),
            Err(e) => Poll::Ready(Err(io::Error::other(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.session.lock();
        let _ = s.kcp.flush();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.session.start_closing();
        Poll::Ready(Ok(()))
    }
}
