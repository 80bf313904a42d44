//! KCP (`wyrm-kcp`): the handshake's datagrams, KCP's own segment parser
//! as a session runs it, and a real server endpoint fed datagrams over UDP.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::time::Duration;

use wyrm_kcp::handshake::{is_handshake, CookieJar, Datagram, COOKIE_LEN, REQUEST_LEN};
use wyrm_kcp::{KcpListener, Settings};

use super::{ensure, put_piece, Choices, FnRunner};
use crate::engine::{take_other_panics, watch_this_thread, Env, Runner, Target, Verdict};

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "kcp_handshake",
            about: "handshake datagrams (Datagram::decode) and cookie checks: re-encoding is stable, only full-size requests are answered",
            corpus: "kcp_handshake",
            max_len: 256,
            ci_iterations: 200_000,
            dict: &[b"\0\0\0\0WYRM", b"WYRM", &[1], &[2], &[3], &[4], &[5]],
            seeds: handshake_seeds,
            start: |_| Ok(Box::new(FnRunner(kcp_handshake))),
            in_process: true,
        },
        Target {
            name: "kcp_segments",
            about: "KCP segments into a session's state machine (input, update, recv, send) with Wyrm's settings",
            corpus: "kcp_segments",
            max_len: 8192,
            ci_iterations: 30_000,
            dict: &[&[81], &[82], &[83], &[84], &[0x78, 0x56, 0x34, 0x12], &[0xff, 0xff, 0xff, 0x7f]],
            seeds: segment_seeds,
            start: |_| Ok(Box::new(FnRunner(kcp_segments))),
            in_process: true,
        },
        Target {
            name: "kcp_endpoint",
            about: "a real KcpListener over UDP fed datagrams, before and after a proper handshake: no session without a cookie, no amplified reply, the endpoint survives",
            corpus: "kcp_endpoint",
            max_len: 4096,
            ci_iterations: 2_000,
            dict: &[b"\0\0\0\0WYRM", &[1], &[3], &[81], &[82]],
            seeds: endpoint_seeds,
            start: start_endpoint,
            in_process: true,
        },
    ]
}

// ---- the handshake ----------------------------------------------------

fn handshake_seeds() -> Vec<Vec<u8>> {
    let cookie = [7; COOKIE_LEN];
    [
        Datagram::Hello { version: 1 },
        Datagram::Cookie(cookie),
        Datagram::Connect {
            cookie,
            conv: 0xdead_beef,
        },
        Datagram::Accept { conv: 42 },
        Datagram::Refuse(wyrm_kcp::Refusal::BadCookie),
    ]
    .iter()
    .map(Datagram::encode)
    .collect()
}

fn jar() -> &'static CookieJar {
    static JAR: OnceLock<CookieJar> = OnceLock::new();
    JAR.get_or_init(|| CookieJar::new().expect("randomness for the cookie jar"))
}

fn kcp_handshake(data: &[u8]) -> Verdict {
    let Some(d) = Datagram::decode(data) else {
        return Verdict::Rejected;
    };
    ensure!(
        is_handshake(data),
        "a datagram that is not a handshake's decoded as {d:?}"
    );
    let bytes = d.encode();
    ensure!(
        Datagram::decode(&bytes) == Some(d),
        "a datagram re-encodes to bytes that decode differently: {d:?} to {bytes:02x?}"
    );
    match d {
        Datagram::Hello { .. } | Datagram::Connect { .. } => {
            // A server answers these: only when they are at least as long
            // as any answer, so a spoofed source gains nothing.
            ensure!(
                data.len() >= REQUEST_LEN,
                "a {}-byte {d:?} was accepted as a request",
                data.len()
            );
        }
        _ => ensure!(
            bytes.len() < REQUEST_LEN,
            "a server's {d:?} takes {} bytes, not less than a request",
            bytes.len()
        ),
    }
    if let Datagram::Connect { cookie, .. } = d {
        // A cookie this jar did not make is never good.
        let peer: SocketAddr = ([203, 0, 113, 5], 4000).into();
        let made = u32::from_le_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]);
        for now in [
            made,
            made.wrapping_add(1),
            wyrm_kcp::handshake::unix_seconds(),
        ] {
            let ok = jar().check(peer, &cookie, now);
            ensure!(
                !ok || jar().make(peer, made) == cookie,
                "a forged cookie {cookie:02x?} passed the check"
            );
        }
    }
    Verdict::Accepted
}

// ---- KCP segments -----------------------------------------------------

const CONV: u32 = 0x1234_5678;

/// Datagrams a session sent.
type Sent = std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>;

/// Where a session's datagrams would go: kept, so the seeds can be made
/// from what a real peer sends.
#[derive(Default)]
struct Capture(Sent);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn session(conv: u32) -> (kcp::Kcp<Capture>, Sent) {
    let out = Capture::default();
    let sent = out.0.clone();
    let mut k = kcp::Kcp::new_stream(conv, out);
    Settings::default().apply(&mut k);
    let _ = k.update(0);
    (k, sent)
}

/// Datagrams a real peer sends: data (small and large), acks of what it
/// received, window probes.
fn peer_datagrams() -> Vec<Vec<u8>> {
    let (mut a, a_out) = session(CONV);
    let (mut b, b_out) = session(CONV);
    let _ = a.send(b"\x05\x00\x00\x00\x04\x03\x00hello");
    let _ = a.send(&[0x42; 5000]);
    let _ = a.flush();
    for d in a_out.borrow().iter() {
        let _ = b.input(d);
    }
    let _ = b.flush();
    let _ = b.update(20);
    let mut all: Vec<Vec<u8>> = a_out.borrow().clone();
    all.extend(b_out.borrow().iter().cloned());
    all
}

fn segment_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut all = Vec::new();
    for d in peer_datagrams() {
        let mut one = vec![0];
        put_piece(&mut one, &d);
        out.push(one);
        all.push(0);
        put_piece(&mut all, &d);
        all.extend_from_slice(&[2, 3, 3, 16]);
    }
    out.push(all);
    out
}

/// Operations on one session, as the endpoint and a stream use it: a
/// datagram in (op 0/1; op 1 writes the session's conv first, so KCP parses
/// it), time passing (2), the owner reading and writing (3).
fn kcp_segments(data: &[u8]) -> Verdict {
    let mut c = Choices::new(data);
    let (mut k, _sent) = session(CONV);
    let mut clock = 0u32;
    let mut buf = vec![0u8; 64 * 1024];
    let mut took = false;
    while !c.is_empty() {
        match c.u8() % 4 {
            0 | 1 => {
                let mut d = c.piece().to_vec();
                if d.len() >= 4 && c.bool() {
                    d[..4].copy_from_slice(&CONV.to_le_bytes());
                }
                if k.input(&d).is_ok() {
                    took = true;
                    let _ = k.flush_ack();
                }
            }
            2 => {
                clock = clock.wrapping_add(u32::from(c.u8()) * 10);
                let _ = k.update(clock);
                let _ = k.check(clock);
                let _ = k.is_dead_link();
            }
            _ => {
                // As KcpStream::poll_read does: take whole segments.
                while let Ok(size) = k.peeksize() {
                    if size > buf.len() {
                        buf.resize(size, 0);
                    }
                    match k.recv(&mut buf) {
                        Ok(n) => ensure!(n <= size, "recv gave {n} bytes, peeksize said {size}"),
                        Err(_) => break,
                    }
                }
                let n = usize::from(c.u8()) * 64;
                let _ = k.send(&vec![0x5a; n]);
                let _ = k.flush();
                let _ = k.wait_snd();
            }
        }
    }
    if took {
        Verdict::Accepted
    } else {
        Verdict::Rejected
    }
}

// ---- a real endpoint --------------------------------------------------

fn endpoint_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // Mode byte: even, an unproven peer; odd, one that did the handshake
    // (whose datagrams then carry its conv).
    let mut raw = vec![0];
    for d in handshake_seeds() {
        put_piece(&mut raw, &d);
    }
    out.push(raw);
    let mut proven = vec![1];
    for d in peer_datagrams() {
        put_piece(&mut proven, &d);
    }
    out.push(proven);
    out
}

/// A server endpoint on a runtime of its own, and what it accepted.
struct Endpoint {
    rt: tokio::runtime::Runtime,
    listener: KcpListener<()>,
    server: SocketAddr,
    /// A second peer that checks the endpoint still answers.
    probe: UdpSocket,
    /// The conv of the next session: each input's own, since a new socket
    /// may get the port of an old one whose session the endpoint still
    /// holds, and a `Connect` with that session's conv only repeats its
    /// `Accept`.
    next_conv: u32,
}

fn start_endpoint(_: &Env) -> Result<Box<dyn Runner>, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(watch_this_thread)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let settings = Settings {
        // Sessions opened by inputs go soon, so a long run does not pile
        // them up.
        idle_timeout: Duration::from_millis(500),
        linger: Duration::from_millis(100),
    };
    let listener = rt
        .block_on(KcpListener::bind(
            ([127, 0, 0, 1], 0).into(),
            settings,
            |_| Ok(()),
        ))
        .map_err(|e| format!("cannot bind a KCP listener: {e}"))?;
    let server = listener.local_addr();
    let probe = client_socket()?;
    Ok(Box::new(Endpoint {
        rt,
        listener,
        server,
        probe,
        next_conv: 1,
    }))
}

fn client_socket() -> Result<UdpSocket, String> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("cannot bind UDP: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| format!("cannot set a UDP timeout: {e}"))?;
    Ok(s)
}

/// Sends `request` and waits for the first handshake answer.
fn ask(s: &UdpSocket, server: SocketAddr, request: &Datagram) -> Result<Datagram, String> {
    s.send_to(&request.encode(), server)
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut buf = [0u8; 2048];
    for _ in 0..20 {
        let (n, _) = s
            .recv_from(&mut buf)
            .map_err(|e| format!("no answer to {request:?}: {e}"))?;
        if let Some(d) = Datagram::decode(&buf[..n]) {
            return Ok(d);
        }
    }
    Err(format!("no handshake answer to {request:?}"))
}

impl Endpoint {
    /// Whether the endpoint still answers a `Hello` with a cookie.
    fn alive(&self) -> Result<(), String> {
        match ask(&self.probe, self.server, &Datagram::Hello { version: 1 }) {
            Ok(Datagram::Cookie(_)) => Ok(()),
            Ok(other) => Err(format!("the endpoint answered a Hello with {other:?}")),
            Err(e) => Err(format!("the endpoint stopped answering: {e}")),
        }
    }

    /// Opens a session from `s` the proper way, with `conv`.
    fn handshake(&mut self, s: &UdpSocket, conv: u32) -> Result<(), String> {
        let Datagram::Cookie(cookie) = ask(s, self.server, &Datagram::Hello { version: 1 })? else {
            return Err("no cookie for a Hello".into());
        };
        match ask(s, self.server, &Datagram::Connect { cookie, conv })? {
            Datagram::Accept { conv: c } if c == conv => Ok(()),
            other => Err(format!("a proper Connect was answered with {other:?}")),
        }
    }
}

impl Runner for Endpoint {
    fn run(&mut self, input: &[u8]) -> Verdict {
        let mut c = Choices::new(input);
        let proven = c.u8() % 2 == 1;
        let s = match client_socket() {
            Ok(s) => s,
            Err(e) => return Verdict::Fail(e),
        };
        let conv = self.next_conv;
        self.next_conv = self.next_conv.checked_add(1).unwrap_or(1);
        if proven {
            if let Err(e) = self.handshake(&s, conv) {
                return Verdict::Fail(e);
            }
        }
        let mut sent = Vec::new();
        while !c.is_empty() {
            let mut d = c.piece().to_vec();
            if proven && d.len() >= 4 && !(d.len() >= 8 && &d[4..8] == b"WYRM") {
                d[..4].copy_from_slice(&conv.to_le_bytes());
            }
            if s.send_to(&d, self.server).is_ok() {
                sent.push(d.len());
            }
        }
        // The endpoint handles datagrams in the order they arrive: once it
        // answers the probe, sent after them, it has handled them all (and
        // sent its replies, which loopback delivers at once).
        let alive = self.alive();
        let others = take_other_panics();
        ensure!(
            others.is_empty(),
            "the endpoint panicked: {}",
            others.join("; ")
        );
        if let Err(e) = alive {
            return Verdict::Fail(e);
        }
        // Replies: no session without the handshake, nothing larger than
        // a request.
        s.set_nonblocking(true).ok();
        let mut buf = [0u8; 65_536];
        let mut replies = Vec::new();
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            replies.push(buf[..n].to_vec());
        }
        let mut opened = 0;
        self.rt.block_on(async {
            while let Ok(Ok(a)) =
                tokio::time::timeout(Duration::from_millis(1), self.listener.accept()).await
            {
                drop(a);
                opened += 1;
            }
        });
        ensure!(
            opened == usize::from(proven),
            "a wrong number of sessions opened: {opened} for a peer that {} the handshake",
            if proven { "did" } else { "did not do" }
        );
        if !proven {
            // A new socket may get the port of an earlier input's, whose
            // session still sends to it: KCP datagrams with an earlier conv
            // are that session's, not answers to this peer.
            let answers: Vec<&Vec<u8>> = replies
                .iter()
                .filter(|r| {
                    is_handshake(r)
                        || r.len() < 4
                        || u32::from_le_bytes([r[0], r[1], r[2], r[3]]) >= conv
                })
                .collect();
            // Answers are handshake datagrams, no more of them than
            // datagrams sent, each smaller than a request and than the
            // largest datagram sent: nothing to amplify with.
            let biggest = sent.iter().copied().max().unwrap_or(0);
            ensure!(
                answers.len() <= sent.len(),
                "an unproven peer got {} answers to {} datagrams",
                answers.len(),
                sent.len()
            );
            for r in &answers {
                ensure!(
                    is_handshake(r) && r.len() < REQUEST_LEN && r.len() < biggest,
                    "an unproven peer that sent at most {biggest} bytes a datagram was answered with {} bytes: {:02x?}",
                    r.len(),
                    &r[..r.len().min(32)]
                );
            }
        }
        Verdict::Accepted
    }
}
