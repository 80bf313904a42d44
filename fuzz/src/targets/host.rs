//! What the host's network code decodes before any frame exists: the
//! length-prefixed stream (the server's `PrefixDeframer` and the client's
//! `FrameDecoder`), WebSocket framing, and HTTP request heads.

use std::ops::ControlFlow;
use std::path::{Component, Path};

use wyrm_gate::net::http::{parse_request_head, resolve, Head, MAX_HEAD};
use wyrm_gate::net::{Deframer, Piece, PrefixDeframer, WsDeframer};
use wyrm_protocol::{FrameDecoder, FrameError};

use super::{ensure, Choices, FnRunner};
use crate::engine::{Target, Verdict};
use crate::mutate::Rng;

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "prefix_stream",
            about: "length-prefixed streams cut by PrefixDeframer (server) and FrameDecoder (client), read in random pieces, against a reference",
            corpus: "prefix_stream",
            max_len: 8192,
            ci_iterations: 60_000,
            dict: &[&[0, 0, 0, 0], &[0xff, 0xff, 0xff, 0xff], &[1, 0, 0, 0], &[0x41, 0, 0, 0]],
            seeds: prefix_seeds,
            start: |_| Ok(Box::new(FnRunner(prefix_stream))),
            in_process: true,
        },
        Target {
            name: "ws_stream",
            about: "raw bytes through WsDeframer: the same pieces and the same verdict however the reads cut them",
            corpus: "ws_stream",
            max_len: 8192,
            ci_iterations: 30_000,
            dict: &[&[0x82], &[0x02], &[0x80], &[0x88], &[0x89], &[0x8a], &[0xfe], &[0xff], &[0x37, 0xfa, 0x21, 0x3d]],
            seeds: ws_seeds,
            start: |_| Ok(Box::new(FnRunner(ws_stream))),
            in_process: true,
        },
        Target {
            name: "ws_messages",
            about: "generated WebSocket traffic (fragments, control frames, masks, sizes) through WsDeframer: exactly the messages sent come out",
            corpus: "ws_messages",
            max_len: 4096,
            ci_iterations: 4_000,
            dict: &[],
            seeds: || vec![vec![0; 32], (0..=255).collect()],
            start: |_| Ok(Box::new(FnRunner(ws_messages))),
            in_process: true,
        },
        Target {
            name: "http_head",
            about: "HTTP request heads (the WebSocket port's and the admin endpoint's parser) and the web root's path resolution",
            corpus: "http_head",
            max_len: MAX_HEAD + 1024,
            ci_iterations: 60_000,
            dict: &[b"\r\n", b"\r\n\r\n", b"GET ", b" HTTP/1.1", b"Upgrade: websocket", b"Connection: Upgrade", b"/../", b"%2e", b"?", b"#", b"//", b":"],
            seeds: http_seeds,
            start: |_| Ok(Box::new(FnRunner(http_head))),
            in_process: true,
        },
    ]
}

/// What came out of a deframer, owned, to compare runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Frame(Vec<u8>),
    TooLarge(usize),
    Ping(Vec<u8>),
    Close,
}

fn own(p: Piece<'_>) -> Out {
    match p {
        Piece::Frame(f) => Out::Frame(f.to_vec()),
        Piece::TooLarge { len } => Out::TooLarge(len),
        Piece::Ping(p) => Out::Ping(p.to_vec()),
        Piece::Close => Out::Close,
    }
}

/// Cuts `stream` into reads: sizes from a generator seeded by the input.
fn cuts(seed: u64, len: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut at = 0;
    let style = rng.below(4);
    while at < len {
        let n = match style {
            0 => 1,
            1 => 1 + rng.below(8),
            2 => 1 + rng.below(300),
            _ => 1 + rng.below(len),
        };
        let n = n.min(len - at);
        out.push(n);
        at += n;
    }
    out
}

/// Feeds `stream` to `d` in reads of the given sizes, each read a fresh
/// buffer (the deframer may unmask in place); stops at the first error.
fn feed_all(d: &mut dyn Deframer, stream: &[u8], reads: &[usize]) -> (Vec<Out>, Option<String>) {
    let mut out = Vec::new();
    let mut at = 0;
    for &n in reads {
        let mut chunk = stream[at..at + n].to_vec();
        at += n;
        if let Err(e) = d.feed(&mut chunk, &mut |p| {
            out.push(own(p));
            ControlFlow::Continue(())
        }) {
            return (out, Some(e.0));
        }
    }
    (out, None)
}

// ---- length prefix ----------------------------------------------------

const MAXES: [usize; 6] = [1, 2, 5, 16, 100, 65_536];

fn prefix_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for max_pick in [2u8, 3, 5] {
        let mut s = vec![max_pick, 7];
        for f in [&b"\x02abc"[..], &[0x01; 40], b"\x04\x03\x00", &[9; 200]] {
            s.extend_from_slice(&(f.len() as u32).to_le_bytes());
            s.extend_from_slice(f);
        }
        out.push(s);
    }
    out.push(vec![4, 1, 0, 0, 0, 0]);
    out.push(vec![4, 2, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]);
    out
}

/// The framing by its definition (`docs/protocol.md`, §2 and §6), on the
/// whole stream at once: frames, oversized frames skipped, and the length
/// that ends the connection. Also whether bytes are left over (a frame
/// begun, or one still being skipped).
fn prefix_reference(stream: &[u8], max: usize) -> (Vec<Out>, Option<usize>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        let Some(prefix) = rest.first_chunk::<4>() else {
            return (out, None, !rest.is_empty());
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if len == 0 || len > max.saturating_mul(64) {
            return (out, Some(len), true);
        }
        if len > max {
            out.push(Out::TooLarge(len));
            if rest.len() < 4 + len {
                return (out, None, true);
            }
            at += 4 + len;
            continue;
        }
        if rest.len() < 4 + len {
            return (out, None, true);
        }
        out.push(Out::Frame(rest[4..4 + len].to_vec()));
        at += 4 + len;
    }
}

fn prefix_stream(data: &[u8]) -> Verdict {
    let mut c = Choices::new(data);
    let max = MAXES[usize::from(c.u8()) % MAXES.len()];
    let seed = u64::from(c.u8());
    let stream = c.rest();
    let (want, fatal, leftover) = prefix_reference(stream, max);
    let reads = cuts(seed, stream.len());

    // The server's deframer.
    let mut d = PrefixDeframer::new(max);
    let (got, err) = feed_all(&mut d, stream, &reads);
    ensure!(
        got == want,
        "PrefixDeframer (max {max}, reads {reads:?}) gave {got:?}, the framing says {want:?}"
    );
    ensure!(
        err.is_some() == fatal.is_some(),
        "PrefixDeframer (max {max}) error {err:?}, the framing says fatal length {fatal:?}"
    );
    if err.is_none() {
        ensure!(
            d.mid_frame() == leftover,
            "PrefixDeframer says mid-frame {}, but bytes left over: {leftover}",
            d.mid_frame()
        );
    }

    // The client's decoder.
    let mut dec = FrameDecoder::new(max);
    let mut got = Vec::new();
    let mut bad = None;
    let mut at = 0;
    'reads: for &n in &reads {
        dec.buffer_mut().extend_from_slice(&stream[at..at + n]);
        at += n;
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => got.push(Out::Frame(f.to_vec())),
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max: m }) => {
                    ensure!(m == max, "FrameDecoder reports max {m}, not {max}");
                    got.push(Out::TooLarge(len));
                }
                Err(FrameError::BadLength(len)) => {
                    bad = Some(len);
                    break 'reads;
                }
            }
        }
    }
    ensure!(
        got == want,
        "FrameDecoder (max {max}, reads {reads:?}) gave {got:?}, the framing says {want:?}"
    );
    ensure!(
        bad == fatal,
        "FrameDecoder ended on length {bad:?}, the framing says {fatal:?}"
    );
    if want.is_empty() && fatal.is_none() {
        Verdict::Rejected
    } else {
        Verdict::Accepted
    }
}

// ---- WebSocket --------------------------------------------------------

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame.
fn ws_frame(fin: bool, opcode: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
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

fn ws_seeds() -> Vec<Vec<u8>> {
    let mut s = vec![3, 5];
    s.extend(ws_frame(true, 2, MASK, b"\x04\x03\x00"));
    s.extend(ws_frame(false, 2, MASK, b"fra"));
    s.extend(ws_frame(true, 9, MASK, b"p"));
    s.extend(ws_frame(true, 0, MASK, b"gment"));
    s.extend(ws_frame(true, 2, MASK, &[7; 300]));
    s.extend(ws_frame(true, 10, MASK, b""));
    s.extend(ws_frame(true, 8, MASK, &[3, 232]));
    vec![s, {
        let mut t = vec![0, 1];
        t.extend(ws_frame(true, 2, [0; 4], &[1; 70_000][..2000]));
        t
    }]
}

/// Raw bytes, read whole and read in pieces: the same pieces, the same
/// error.
fn ws_stream(data: &[u8]) -> Verdict {
    let mut c = Choices::new(data);
    let max = MAXES[usize::from(c.u8()) % MAXES.len()];
    let seed = u64::from(c.u8());
    let stream = c.rest();
    let (whole, whole_err) = feed_all(&mut WsDeframer::new(max), stream, &[stream.len()]);
    let reads = cuts(seed, stream.len());
    let mut d = WsDeframer::new(max);
    let (cut, cut_err) = feed_all(&mut d, stream, &reads);
    ensure!(
        whole == cut,
        "WsDeframer (max {max}) gave {whole:?} for one read but {cut:?} for reads {reads:?}"
    );
    ensure!(
        whole_err == cut_err,
        "WsDeframer (max {max}) ended with {whole_err:?} for one read but {cut_err:?} for reads {reads:?}"
    );
    for p in &whole {
        if let Out::Frame(f) = p {
            ensure!(
                f.len() <= max,
                "a message of {} bytes passed the maximum of {max}",
                f.len()
            );
        }
    }
    if whole.is_empty() {
        Verdict::Rejected
    } else {
        Verdict::Accepted
    }
}

/// Generated traffic: messages in fragments with control frames between,
/// some over the maximum; the deframer must hand on exactly what was sent.
fn ws_messages(data: &[u8]) -> Verdict {
    let mut c = Choices::new(data);
    let max = [8, 125, 126, 1000, 65_536][usize::from(c.u8()) % 5];
    let seed = u64::from(c.u8());
    let mut wire = Vec::new();
    let mut want = Vec::new();
    let mut counter = 0u8;
    // A quarter of a megabyte of traffic is plenty (four messages of the
    // largest size), and keeps an input's run short.
    while !c.is_empty() && wire.len() < 1 << 18 {
        let mask = if c.bool() {
            [0; 4]
        } else {
            [c.u8(), c.u8(), c.u8(), c.u8()]
        };
        match c.u8() % 6 {
            0 => {
                let n = usize::from(c.u8() % 126);
                let p = c.bytes(n).to_vec();
                wire.extend(ws_frame(true, 9, mask, &p));
                want.push(Out::Ping(p));
            }
            1 => {
                let n = usize::from(c.u8() % 126);
                wire.extend(ws_frame(true, 10, mask, c.bytes(n)));
            }
            _ => {
                // A message in 1..=4 fragments, with a ping between some.
                let size = match c.u8() % 4 {
                    0 => usize::from(c.u8()),
                    1 => usize::from(c.u16()),
                    _ => usize::from(c.u8() % 32),
                };
                counter = counter.wrapping_add(1);
                // A fragment over 64 times the maximum ends the connection
                // (the peer is not speaking the protocol): stay under it.
                let size = size.min(max * 64);
                let msg: Vec<u8> = (0..size).map(|i| (i as u8) ^ counter).collect();
                let parts = 1 + usize::from(c.u8() % 4);
                let mut ends: Vec<usize> = (0..parts - 1)
                    .map(|_| usize::from(c.u16()) % (size + 1))
                    .collect();
                ends.sort_unstable();
                ends.push(size);
                // What the deframer owes for it (RFC 6455 and the maximum):
                // the message when it fits; else one TooLarge, reported by
                // the fragment that takes it past the maximum, and nothing
                // of the rest. Pings between fragments arrive in order.
                let (mut start, mut so_far, mut over) = (0, 0, false);
                for (i, &end) in ends.iter().enumerate() {
                    let fin = i + 1 == ends.len();
                    let opcode = if i == 0 { 2 } else { 0 };
                    wire.extend(ws_frame(fin, opcode, mask, &msg[start..end]));
                    let len = end - start;
                    start = end;
                    if !over {
                        if so_far + len > max {
                            over = true;
                            want.push(Out::TooLarge(so_far + len));
                        } else {
                            so_far += len;
                        }
                    }
                    if fin && !over {
                        want.push(Out::Frame(msg.clone()));
                    }
                    if !fin && c.u8().is_multiple_of(4) {
                        wire.extend(ws_frame(true, 9, mask, b"mid"));
                        want.push(Out::Ping(b"mid".to_vec()));
                    }
                }
            }
        }
    }
    wire.extend(ws_frame(true, 8, [1, 2, 3, 4], &[3, 232]));
    want.push(Out::Close);
    let reads = cuts(seed, wire.len());
    let (got, err) = feed_all(&mut WsDeframer::new(max), &wire, &reads);
    ensure!(
        err.is_none(),
        "WsDeframer (max {max}) refused well-formed traffic: {err:?}"
    );
    ensure!(
        got == want,
        "WsDeframer (max {max}) gave {:?}, sent {:?}",
        summarize(&got),
        summarize(&want)
    );
    Verdict::Accepted
}

fn summarize(v: &[Out]) -> Vec<String> {
    v.iter()
        .map(|o| match o {
            Out::Frame(f) => format!("frame {}", f.len()),
            Out::TooLarge(n) => format!("too large {n}"),
            Out::Ping(p) => format!("ping {}", p.len()),
            Out::Close => "close".into(),
        })
        .collect()
}

// ---- HTTP -------------------------------------------------------------

fn http_seeds() -> Vec<Vec<u8>> {
    vec![
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(),
        b"GET /index.html?x=1#top HTTP/1.1\r\nHost: localhost\r\n\r\nextra".to_vec(),
        b"POST /swap?plugin=a%2Fb HTTP/1.1\r\nContent-Length: 4\r\nAuthorization: Bearer t\r\n\r\nwasm".to_vec(),
        b"GET /../../etc/passwd HTTP/1.1\r\n\r\n".to_vec(),
        b"HEAD / HTTP/1.0\r\n\r\n".to_vec(),
    ]
}

fn http_head(data: &[u8]) -> Verdict {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4);
    match parse_request_head(data) {
        Head::Partial => {
            ensure!(
                end.is_none(),
                "the head ends at {end:?} but the parser wants more"
            );
            Verdict::Rejected
        }
        Head::Complete { request, len } => {
            ensure!(
                Some(len) == end,
                "the head ends at {end:?}, the parser says {len}"
            );
            let Some(req) = request else {
                return Verdict::Rejected;
            };
            let _ = req.is_websocket_upgrade();
            let _ = req.header("content-length");
            // Whatever the path, a file served comes from under the root.
            let root = Path::new("/nonexistent-wyrm-fuzz/web");
            if let Some(file) = resolve(root, &req.path) {
                ensure!(
                    file.starts_with(root),
                    "a path resolves outside the web root: {:?} to {}",
                    req.path,
                    file.display()
                );
                ensure!(
                    file.components()
                        .all(|c| !matches!(c, Component::ParentDir)),
                    "a path resolves to one with a parent step: {:?} to {}",
                    req.path,
                    file.display()
                );
            }
            Verdict::Accepted
        }
    }
}
