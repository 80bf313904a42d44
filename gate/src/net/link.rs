//! A client's outbound path: what is queued for it and how it reaches the
//! socket.
//!
//! The gate appends frames to a client's [`Link`] as the game produces them
//! and flushes the link once per batch, so everything queued leaves in one
//! write: framing headers and small frames gathered in one buffer, larger
//! frames (often one frame shared by many clients) referenced where they
//! lie, all in one vectored write. On TCP and WebSocket the flush writes
//! straight from the caller's thread when the socket takes it; when it does
//! not (its buffer is full), or on KCP, the connection's own task is woken
//! to finish ([`Link::next_duty`]). Every write happens under the link's
//! lock, from the head of the queue, so frames leave in the order they were
//! queued whoever writes them.
//!
//! The queue is bounded in bytes: a client whose queue would pass the limit
//! reads too slowly to keep, and the caller closes its link.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::deframe::{put_ws_header, ws_header_len, WS_BINARY};

/// How frames are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A u32 little-endian length before each frame (TCP, KCP).
    Prefixed,
    /// One binary WebSocket message per frame.
    WebSocket,
}

impl Framing {
    fn header_len(self, len: usize) -> usize {
        match self {
            Framing::Prefixed => 4,
            Framing::WebSocket => ws_header_len(len),
        }
    }

    fn put_header(self, out: &mut BytesMut, len: usize) {
        match self {
            // A frame over 4 GiB cannot be queued: the queue limit is far
            // below, and `push` refuses it first.
            Framing::Prefixed => out.put_u32_le(len as u32),
            Framing::WebSocket => put_ws_header(out, WS_BINARY, len),
        }
    }
}

/// Why a link closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Its queue passed the limit: the client reads too slowly.
    SlowReader {
        /// Bytes the queue would have held.
        queued: usize,
        /// The limit.
        limit: usize,
    },
    /// Writing to the socket failed.
    Io(String),
    /// The server let the client go (it is shutting down, or the gate
    /// forgot the client).
    Released,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::SlowReader { queued, limit } => write!(
                f,
                "the client reads too slowly: {queued} bytes would be queued for it (limit {limit}, [net] client_queue_bytes)"
            ),
            CloseReason::Io(e) => write!(f, "writing failed: {e}"),
            CloseReason::Released => f.write_str("released by the server"),
        }
    }
}

/// What the connection's task must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Duty {
    /// Write what is queued: the socket did not take it all (TCP,
    /// WebSocket), or the transport is written by the task (KCP).
    Write,
    /// End the connection.
    Close(CloseReason),
}

/// Frames at most this long are copied into the gathering buffer; longer
/// ones are referenced.
const COPY_MAX: usize = 512;
/// Slices in one vectored write.
const MAX_IOV: usize = 64;
/// A gathering buffer above this is given back once drained: a thousand
/// clients holding a tick's worth each would be megabytes for nothing.
const KEEP_OPEN: usize = 256;
/// What a gathering buffer starts with.
const OPEN_START: usize = 2048;

/// See the module docs.
#[derive(Debug)]
pub struct Link {
    framing: Framing,
    /// The socket, for writing from any thread; `None` when only the
    /// connection's task can write (KCP).
    socket: Option<Arc<TcpStream>>,
    limit: usize,
    out: Mutex<Outbox>,
    wake: Notify,
    /// Frames of at least this many bytes are compressed; 0: none is.
    compress_min: std::sync::atomic::AtomicU32,
}

#[derive(Debug, Default)]
struct Outbox {
    /// What is queued, in order: sealed parts of `open` and referenced
    /// frames.
    segs: VecDeque<Bytes>,
    /// Headers and small frames being gathered, after `segs`.
    open: BytesMut,
    /// Bytes of `segs[0]` already written.
    head: usize,
    /// Bytes queued and not yet written.
    queued: usize,
    /// The connection's task owns the writing until the queue is empty.
    task_writes: bool,
    closed: Option<CloseReason>,
}

impl Outbox {
    fn seal(&mut self) {
        if !self.open.is_empty() {
            let part = self.open.split().freeze();
            self.segs.push_back(part);
        }
    }

    fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let Some(front) = self.segs.front() else {
                break;
            };
            let left = front.len() - self.head;
            if n >= left {
                n -= left;
                self.segs.pop_front();
                self.head = 0;
            } else {
                self.head += n;
                n = 0;
            }
        }
    }

    fn release_if_idle(&mut self) {
        if self.queued == 0 && self.open.capacity() > KEEP_OPEN {
            self.open = BytesMut::new();
        }
    }

    /// Writes as much as the socket takes now; true when the queue is empty.
    fn write_to(&mut self, socket: &TcpStream) -> io::Result<bool> {
        self.seal();
        while !self.segs.is_empty() {
            let (n, offered) = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut k = 0;
                let mut offered = 0;
                for (i, seg) in self.segs.iter().take(MAX_IOV).enumerate() {
                    let s = if i == 0 { &seg[self.head..] } else { &seg[..] };
                    offered += s.len();
                    iov[k] = IoSlice::new(s);
                    k += 1;
                }
                match socket.try_write_vectored(&iov[..k]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => (n, offered),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            };
            self.consume(n);
            if n < offered {
                return Ok(false); // the socket's buffer is full
            }
        }
        Ok(true)
    }
}

/// A frame was not queued: the queue would pass its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    /// Bytes the queue would have held.
    pub queued: usize,
    /// The limit.
    pub limit: usize,
}

impl Link {
    /// A link for a connection framed by `framing`, holding at most `limit`
    /// bytes; with `socket`, flushes write from the caller's thread.
    pub fn new(framing: Framing, socket: Option<Arc<TcpStream>>, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            framing,
            socket,
            limit,
            out: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            compress_min: std::sync::atomic::AtomicU32::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding the lock leaves a consistent queue (every
        // change is one step); keep going.
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, frames of at least `min` bytes are sent compressed
    /// (LZ4, in a `Compressed` frame) when that makes them smaller: the
    /// client asked for it in its `Hello`.
    pub fn compress_from(&self, min: u32) {
        self.compress_min
            .store(min.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// `frame` compressed, if this link compresses and it is worth it.
    fn compressed(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let min = self.compress_min.load(std::sync::atomic::Ordering::Relaxed);
        if min == 0 || frame.len() < min as usize {
            return None;
        }
        wyrm_protocol::compress_frame(frame)
    }

    /// Queues one frame (type byte and body); large frames are referenced,
    /// not copied. A closed link takes it and drops it.
    pub fn push(&self, frame: &Bytes) -> Result<(), Overflow> {
        if let Some(smaller) = self.compressed(frame) {
            return self.push_slice_as_is(&smaller);
        }
        self.push_with(frame, |out, f| {
            if f.len() <= COPY_MAX {
                out.open.extend_from_slice(f);
            } else {
                out.seal();
                out.segs.push_back(f.clone());
            }
        })
    }

    /// Queues one frame given as a slice (copied).
    pub fn push_slice(&self, frame: &[u8]) -> Result<(), Overflow> {
        match self.compressed(frame) {
            Some(smaller) => self.push_slice_as_is(&smaller),
            None => self.push_slice_as_is(frame),
        }
    }

    fn push_slice_as_is(&self, frame: &[u8]) -> Result<(), Overflow> {
        self.push_with(frame, |out, f| out.open.extend_from_slice(f))
    }

    fn push_with<F: AsRef<[u8]> + ?Sized>(
        &self,
        frame: &F,
        put: impl FnOnce(&mut Outbox, &F),
    ) -> Result<(), Overflow> {
        let len = frame.as_ref().len();
        let total = self.framing.header_len(len) + len;
        let mut out = self.lock();
        if out.closed.is_some() {
            return Ok(());
        }
        let queued = out.queued + total;
        if queued > self.limit {
            return Err(Overflow {
                queued,
                limit: self.limit,
            });
        }
        if out.open.capacity() == 0 {
            // Most of a tick's frames for a client fit: one allocation a
            // tick rather than one per doubling.
            out.open.reserve(OPEN_START);
        }
        self.framing.put_header(&mut out.open, len);
        put(&mut out, frame);
        out.queued = queued;
        Ok(())
    }

    /// Queues bytes already framed for this transport (a WebSocket control
    /// frame).
    pub fn push_raw(&self, bytes: &[u8]) {
        let mut out = self.lock();
        if out.closed.is_none() {
            out.open.extend_from_slice(bytes);
            out.queued += bytes.len();
        }
    }

    /// Starts writing what is queued: at once from this thread if the
    /// socket takes it, otherwise by waking the connection's task.
    pub fn flush(&self) {
        let mut out = self.lock();
        if out.closed.is_some() || out.task_writes || out.queued == 0 {
            return;
        }
        let Some(socket) = &self.socket else {
            out.task_writes = true;
            drop(out);
            self.wake.notify_one();
            return;
        };
        match out.write_to(socket) {
            Ok(true) => out.release_if_idle(),
            Ok(false) => {
                out.task_writes = true;
                drop(out);
                self.wake.notify_one();
            }
            Err(e) => {
                out.closed = Some(CloseReason::Io(e.to_string()));
                drop(out);
                self.wake.notify_one();
            }
        }
    }

    /// Closes the link: nothing more is queued, and the connection's task
    /// ends (see [`next_duty`](Self::next_duty)).
    pub fn close(&self, reason: CloseReason) {
        let mut out = self.lock();
        if out.closed.is_none() {
            out.closed = Some(reason);
        }
        drop(out);
        self.wake.notify_one();
    }

    /// Whether the link was closed, and why.
    pub fn closed(&self) -> Option<CloseReason> {
        self.lock().closed.clone()
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }

    /// For the connection's task: waits until it has something to do.
    /// Cancel-safe.
    pub async fn next_duty(&self) -> Duty {
        loop {
            {
                let out = self.lock();
                if let Some(r) = &out.closed {
                    return Duty::Close(r.clone());
                }
                if out.task_writes {
                    return Duty::Write;
                }
            }
            self.wake.notified().await;
        }
    }

    /// For the connection's task on a socket link: writes until the queue
    /// is empty, waiting for the socket to take more.
    pub async fn write_out(&self) -> io::Result<()> {
        let Some(socket) = &self.socket else {
            return Err(io::Error::other("this link has no socket"));
        };
        loop {
            {
                let mut out = self.lock();
                if out.closed.is_some() {
                    return Ok(());
                }
                match out.write_to(socket) {
                    Ok(true) => {
                        out.task_writes = false;
                        out.release_if_idle();
                        return Ok(());
                    }
                    Ok(false) => {}
                    Err(e) => {
                        out.closed = Some(CloseReason::Io(e.to_string()));
                        return Err(e);
                    }
                }
            }
            socket.writable().await?;
        }
    }

    /// For the connection's task on a link without a socket: moves what is
    /// queued to the end of `into` and returns true, or, when nothing is
    /// queued, gives the writing back to [`flush`](Self::flush) and returns
    /// false. A closed link yields nothing more.
    pub fn take_queued(&self, into: &mut Vec<u8>) -> bool {
        let mut out = self.lock();
        if out.queued == 0 || out.closed.is_some() {
            out.task_writes = false;
            out.release_if_idle();
            return false;
        }
        out.seal();
        let head = out.head;
        for (i, seg) in out.segs.drain(..).enumerate() {
            into.extend_from_slice(if i == 0 { &seg[head..] } else { &seg[..] });
        }
        out.head = 0;
        out.queued = 0;
        true
    }

    /// Writes what is still queued before the connection closes (an error
    /// saying why, say), whatever closed the link.
    pub fn drain_for_close(&self) -> Vec<u8> {
        let mut out = self.lock();
        out.seal();
        let head = out.head;
        let mut bytes = Vec::with_capacity(out.queued);
        for (i, seg) in out.segs.drain(..).enumerate() {
            bytes.extend_from_slice(if i == 0 { &seg[head..] } else { &seg[..] });
        }
        out.head = 0;
        out.queued = 0;
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_gather_small_and_reference_large_in_order() {
        let link = Link::new(Framing::Prefixed, None, 1 << 20);
        let big = Bytes::from(vec![7u8; 2000]);
        link.push_slice(b"ab").unwrap();
        link.push(&big).unwrap();
        link.push(&Bytes::from_static(b"c")).unwrap();
        {
            let out = link.lock();
            assert_eq!(out.queued, 4 + 2 + 4 + 2000 + 4 + 1);
            // The big frame is the very allocation it was pushed as.
            assert_eq!(out.segs.len(), 2);
            assert_eq!(out.segs[1].as_ptr(), big.as_ptr());
        }
        let mut wire = Vec::new();
        assert!(link.take_queued(&mut wire));
        let mut expect = Vec::new();
        for f in [&b"ab"[..], &big[..], b"c"] {
            expect.extend_from_slice(&(f.len() as u32).to_le_bytes());
            expect.extend_from_slice(f);
        }
        assert_eq!(wire, expect);
        assert!(!link.take_queued(&mut wire));
    }

    #[test]
    fn the_limit_refuses_and_a_closed_link_drops() {
        let link = Link::new(Framing::WebSocket, None, 100);
        link.push_slice(&[0; 90]).unwrap();
        let e = link.push_slice(&[0; 10]).unwrap_err();
        assert_eq!(e.queued, 92 + 12);
        link.close(CloseReason::Released);
        link.push_slice(&[0; 1000]).unwrap();
        assert_eq!(link.queued(), 92);
    }

    #[test]
    fn consume_walks_partial_segments() {
        let mut out = Outbox::default();
        out.segs.push_back(Bytes::from_static(b"abc"));
        out.segs.push_back(Bytes::from_static(b"defgh"));
        out.queued = 8;
        out.consume(2);
        assert_eq!((out.segs.len(), out.head, out.queued), (2, 2, 6));
        out.consume(4);
        assert_eq!((out.segs.len(), out.head, out.queued), (1, 3, 2));
        out.consume(2);
        assert!(out.segs.is_empty());
        assert_eq!(out.queued, 0);
    }
}
