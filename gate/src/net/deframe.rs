//! Cutting a connection's incoming bytes into frames: the u32 length prefix
//! of TCP and KCP, and WebSocket's own framing (the server's side of RFC
//! 6455: masked client frames, fragments, control frames). No I/O.
//!
//! Both work on the bytes of one read as they lie in the reader's buffer:
//! whole frames are handed on from there, and only an incomplete tail is
//! kept (in a buffer that an idle connection gives back), so a read that
//! holds many frames costs no copy and an idle connection holds no memory.

use std::ops::ControlFlow;

/// A piece of input for the connection's logic.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// One whole frame (type byte and body).
    Frame(&'a [u8]),
    /// A frame (or WebSocket message) longer than the maximum; its bytes are
    /// skipped.
    TooLarge { len: usize },
    /// A WebSocket ping with its payload: answer with a pong.
    Ping(&'a [u8]),
    /// A WebSocket close from the peer.
    Close,
}

/// The peer does not speak the framing; the connection should close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FramingError(pub String);

/// An oversized frame is skipped rather than fatal only up to this multiple
/// of the maximum; beyond that the peer is not speaking the protocol.
const SKIP_LIMIT_FACTOR: usize = 64;

/// A tail buffer above this is given back once drained.
const KEEP_TAIL: usize = 4096;

/// Splits input into pieces; see the module docs.
pub trait Deframer: Send + Sync {
    /// Feeds the bytes of one read (which the deframer may change in place,
    /// to unmask them) and hands each piece to `on`, in order, until it
    /// returns `Break`. Returns whether every piece was handed on.
    fn feed(
        &mut self,
        data: &mut [u8],
        on: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, FramingError>;

    /// Whether a frame has begun and not ended (bytes of it are held, or
    /// an oversized one is being skipped).
    fn mid_frame(&self) -> bool;
}

/// Runs `parse` over `data`, or over the kept tail with `data` appended;
/// keeps what `parse` could not use.
fn feed_with(
    tail: &mut Vec<u8>,
    data: &mut [u8],
    mut parse: impl FnMut(&mut [u8]) -> Result<(usize, ControlFlow<()>), FramingError>,
) -> Result<ControlFlow<()>, FramingError> {
    let flow = if tail.is_empty() {
        let (used, flow) = parse(data)?;
        tail.extend_from_slice(&data[used..]);
        flow
    } else {
        tail.extend_from_slice(data);
        let (used, flow) = parse(tail)?;
        tail.drain(..used);
        flow
    };
    if tail.is_empty() && tail.capacity() > KEEP_TAIL {
        *tail = Vec::new();
    }
    if flow.is_break() {
        // Nothing after a stop is read again.
        *tail = Vec::new();
    }
    Ok(flow)
}

/// Passes over what is left to discard of an oversized frame (`skipping`
/// bytes, from `at` in `buf`); false if the data ends first.
fn skip(buf: &[u8], at: &mut usize, skipping: &mut usize) -> bool {
    let n = (*skipping).min(buf.len() - *at);
    *at += n;
    *skipping -= n;
    *skipping == 0
}

/// Frames behind a u32 little-endian length (TCP, KCP).
#[derive(Debug)]
pub struct PrefixDeframer {
    max: usize,
    tail: Vec<u8>,
    /// Bytes of an oversized frame still to discard.
    skipping: usize,
}

impl PrefixDeframer {
    /// Accepts frames of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            tail: Vec::new(),
            skipping: 0,
        }
    }
}

impl Deframer for PrefixDeframer {
    fn mid_frame(&self) -> bool {
        !self.tail.is_empty() || self.skipping > 0
    }

    fn feed(
        &mut self,
        data: &mut [u8],
        on: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, FramingError> {
        let (max, skipping) = (self.max, &mut self.skipping);
        feed_with(&mut self.tail, data, |buf| {
            let mut at = 0;
            loop {
                if !skip(buf, &mut at, skipping) {
                    return Ok((at, ControlFlow::Continue(())));
                }
                let rest = &buf[at..];
                let Some(prefix) = rest.first_chunk::<4>() else {
                    return Ok((at, ControlFlow::Continue(())));
                };
                let len = u32::from_le_bytes(*prefix) as usize;
                if len == 0 || len > max.saturating_mul(SKIP_LIMIT_FACTOR) {
                    return Err(FramingError(format!("invalid frame length {len}")));
                }
                if len > max {
                    at += 4;
                    *skipping = len;
                    if on(Piece::TooLarge { len }).is_break() {
                        return Ok((at, ControlFlow::Break(())));
                    }
                    continue;
                }
                if rest.len() < 4 + len {
                    return Ok((at, ControlFlow::Continue(())));
                }
                let flow = on(Piece::Frame(&rest[4..4 + len]));
                at += 4 + len;
                if flow.is_break() {
                    return Ok((at, flow));
                }
            }
        })
    }
}

/// The WebSocket opcodes.
mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// WebSocket frames from a client: each binary message is one protocol
/// frame. Messages in fragments are put together; text messages are not
/// the protocol and end the connection.
#[derive(Debug)]
pub struct WsDeframer {
    max: usize,
    tail: Vec<u8>,
    /// A fragmented message being put together.
    message: Option<Vec<u8>>,
    /// The message in progress is too large: its fragments are skipped.
    discarding: bool,
    /// Bytes of an oversized frame's payload still to discard.
    skipping: usize,
}

impl WsDeframer {
    /// Accepts messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            tail: Vec::new(),
            message: None,
            discarding: false,
            skipping: 0,
        }
    }
}

/// A parsed frame header.
struct Head {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: usize,
    size: usize,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, FramingError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FramingError(
            "WebSocket frame with reserved bits set (no extension was agreed)".into(),
        ));
    }
    if b1 & 0x80 == 0 {
        return Err(FramingError(
            "unmasked WebSocket frame from a client".into(),
        ));
    }
    let (len, ext) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0; 8];
                a.copy_from_slice(b);
                (u64::from_be_bytes(a), 8)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    let Some(mask) = buf.get(2 + ext..6 + ext) else {
        return Ok(None);
    };
    Ok(Some(Head {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        mask: [mask[0], mask[1], mask[2], mask[3]],
        len: usize::try_from(len).unwrap_or(usize::MAX),
        size: 6 + ext,
    }))
}

/// XORs `data` with the frame's mask.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

impl Deframer for WsDeframer {
    fn mid_frame(&self) -> bool {
        !self.tail.is_empty() || self.skipping > 0 || self.message.is_some() || self.discarding
    }

    fn feed(
        &mut self,
        data: &mut [u8],
        on: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, FramingError> {
        let max = self.max;
        let (message, discarding, skipping) =
            (&mut self.message, &mut self.discarding, &mut self.skipping);
        feed_with(&mut self.tail, data, |buf| {
            let mut at = 0;
            loop {
                if !skip(buf, &mut at, skipping) {
                    return Ok((at, ControlFlow::Continue(())));
                }
                let Some(h) = parse_head(&buf[at..])? else {
                    return Ok((at, ControlFlow::Continue(())));
                };
                let control = h.opcode & 0x8 != 0;
                if control && (!h.fin || h.len > 125) {
                    return Err(FramingError(
                        "fragmented or oversized WebSocket control frame".into(),
                    ));
                }
                if h.len > max.saturating_mul(SKIP_LIMIT_FACTOR) {
                    return Err(FramingError(format!("WebSocket frame of {} bytes", h.len)));
                }
                match h.opcode {
                    op::TEXT => {
                        return Err(FramingError("text message: the protocol is binary".into()))
                    }
                    op::BINARY if message.is_some() || *discarding => {
                        return Err(FramingError(
                            "a new WebSocket message inside a fragmented one".into(),
                        ))
                    }
                    op::CONTINUATION if message.is_none() && !*discarding => {
                        return Err(FramingError(
                            "a WebSocket continuation frame outside a message".into(),
                        ))
                    }
                    op::BINARY | op::CONTINUATION | op::CLOSE | op::PING | op::PONG => {}
                    other => return Err(FramingError(format!("unknown WebSocket opcode {other}"))),
                }
                if !control {
                    let so_far = message.as_ref().map_or(0, Vec::len);
                    if *discarding || so_far + h.len > max {
                        // Too large: skip the payload, and the rest of the
                        // message if more fragments follow.
                        at += h.size;
                        *skipping = h.len;
                        let first = !*discarding;
                        *discarding = !h.fin;
                        *message = None;
                        if first
                            && on(Piece::TooLarge {
                                len: so_far + h.len,
                            })
                            .is_break()
                        {
                            return Ok((at, ControlFlow::Break(())));
                        }
                        continue;
                    }
                }
                let end = at + h.size + h.len;
                if buf.len() < end {
                    return Ok((at, ControlFlow::Continue(())));
                }
                let payload = &mut buf[at + h.size..end];
                unmask(payload, h.mask);
                at = end;
                let flow = match h.opcode {
                    op::CLOSE => on(Piece::Close),
                    op::PING => on(Piece::Ping(payload)),
                    op::PONG => ControlFlow::Continue(()),
                    _ if h.fin && message.is_none() => on(Piece::Frame(payload)),
                    _ => {
                        let m = message.get_or_insert_with(Vec::new);
                        m.extend_from_slice(payload);
                        if h.fin {
                            let m = message.take().unwrap_or_default();
                            on(Piece::Frame(&m))
                        } else {
                            ControlFlow::Continue(())
                        }
                    }
                };
                if flow.is_break() {
                    return Ok((at, flow));
                }
            }
        })
    }
}

/// Bytes a WebSocket header takes for a payload of `len`.
pub fn ws_header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// Appends an unmasked (server) WebSocket frame header.
pub fn put_ws_header(out: &mut impl bytes::BufMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | opcode);
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xffff => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
}

/// The opcodes a server writes.
pub use op::{BINARY as WS_BINARY, CLOSE as WS_CLOSE, PING as WS_PING, PONG as WS_PONG};

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes; collects what comes out.
    fn run(d: &mut dyn Deframer, wire: &[u8], step: usize) -> Result<Vec<String>, FramingError> {
        let mut got = Vec::new();
        for chunk in wire.chunks(step.max(1)) {
            let mut chunk = chunk.to_vec();
            let _ = d.feed(&mut chunk, &mut |p| {
                got.push(match p {
                    Piece::Frame(f) => format!("frame {}", String::from_utf8_lossy(f)),
                    Piece::TooLarge { len } => format!("too large {len}"),
                    Piece::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                    Piece::Close => "close".into(),
                });
                ControlFlow::Continue(())
            })?;
        }
        Ok(got)
    }

    fn prefixed(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    /// A masked client frame.
    fn ws(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn prefixed_frames_in_any_cut() {
        let wire = prefixed(&[b"abc", &[b'x'; 300], b"ok"]);
        for step in [1, 2, 3, 7, 64, 1000] {
            let got = run(&mut PrefixDeframer::new(1024), &wire, step).unwrap();
            assert_eq!(got.len(), 3, "step {step}");
            assert_eq!(got[0], "frame abc");
            assert_eq!(got[2], "frame ok");
        }
    }

    #[test]
    fn prefixed_oversized_is_skipped_and_absurd_is_fatal() {
        let wire = prefixed(&[&[1u8; 100], b"ok"]);
        for step in [1, 5, 50, 200] {
            let got = run(&mut PrefixDeframer::new(10), &wire, step).unwrap();
            assert_eq!(got, ["too large 100", "frame ok"], "step {step}");
        }
        assert!(run(&mut PrefixDeframer::new(10), &0u32.to_le_bytes(), 4).is_err());
        assert!(run(&mut PrefixDeframer::new(10), &u32::MAX.to_le_bytes(), 4).is_err());
    }

    #[test]
    fn a_stop_keeps_nothing() {
        let mut wire = prefixed(&[b"one", b"two"]);
        let mut d = PrefixDeframer::new(100);
        let mut n = 0;
        let flow = d
            .feed(&mut wire, &mut |_| {
                n += 1;
                ControlFlow::Break(())
            })
            .unwrap();
        assert!(flow.is_break());
        assert_eq!(n, 1);
        assert!(d.tail.is_empty());
    }

    #[test]
    fn ws_messages_fragments_and_control_frames() {
        let mut wire = ws(true, op::BINARY, b"hello");
        wire.extend(ws(false, op::BINARY, b"fra"));
        wire.extend(ws(true, op::PING, b"p"));
        wire.extend(ws(false, op::CONTINUATION, b"gme"));
        wire.extend(ws(true, op::CONTINUATION, b"nts"));
        wire.extend(ws(true, op::BINARY, &[b'y'; 200]));
        wire.extend(ws(true, op::BINARY, &[b'z'; 70_000]));
        wire.extend(ws(true, op::CLOSE, &[3, 232]));
        for step in [1, 3, 10, 100, 100_000] {
            let got = run(&mut WsDeframer::new(100_000), &wire, step).unwrap();
            assert_eq!(got.len(), 6, "step {step}");
            assert_eq!(got[0], "frame hello");
            assert_eq!(got[1], "ping p");
            assert_eq!(got[2], "frame fragments");
            assert_eq!(got[3].len(), "frame ".len() + 200);
            assert_eq!(got[4].len(), "frame ".len() + 70_000);
            assert_eq!(got[5], "close");
        }
    }

    #[test]
    fn ws_oversized_messages_are_skipped_whole() {
        let mut wire = ws(true, op::BINARY, &[1; 50]);
        wire.extend(ws(false, op::BINARY, b"12345"));
        wire.extend(ws(false, op::CONTINUATION, b"67890"));
        wire.extend(ws(true, op::CONTINUATION, b"abc"));
        wire.extend(ws(true, op::BINARY, b"ok"));
        for step in [1, 4, 1000] {
            let got = run(&mut WsDeframer::new(8), &wire, step).unwrap();
            assert_eq!(
                got,
                ["too large 50", "too large 10", "frame ok"],
                "step {step}"
            );
        }
    }

    #[test]
    fn ws_bad_input_is_an_error() {
        let bad = [
            ws(true, op::TEXT, b"hi"),
            ws(true, 0x3, b"x"),
            ws(false, op::PING, b"x"),
            ws(true, op::PING, &[0; 126]),
            ws(true, op::CONTINUATION, b"x"),
            {
                let mut w = ws(false, op::BINARY, b"a");
                w.extend(ws(true, op::BINARY, b"b"));
                w
            },
            {
                let mut w = ws(true, op::BINARY, b"a");
                w[0] |= 0x40; // RSV1
                w
            },
            vec![0x82, 0x01, b'a'], // unmasked
        ];
        for wire in bad {
            assert!(
                run(&mut WsDeframer::new(1000), &wire, 1000).is_err(),
                "{wire:02x?}"
            );
        }
        let huge = ws(true, op::BINARY, &[0; 1000]);
        assert!(run(&mut WsDeframer::new(10), &huge, 1000).is_err());
    }

    #[test]
    fn server_headers() {
        let mut out = Vec::new();
        put_ws_header(&mut out, WS_BINARY, 5);
        put_ws_header(&mut out, WS_BINARY, 300);
        put_ws_header(&mut out, WS_BINARY, 70_000);
        assert_eq!(
            out,
            [0x82, 5, 0x82, 126, 1, 44, 0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]
        );
        assert_eq!(ws_header_len(5), 2);
        assert_eq!(ws_header_len(300), 4);
        assert_eq!(ws_header_len(70_000), 10);
        let mut data = *b"0123456789abc";
        let mask = [1, 2, 3, 4];
        unmask(&mut data, mask);
        unmask(&mut data, mask);
        assert_eq!(&data, b"0123456789abc");
    }
}
