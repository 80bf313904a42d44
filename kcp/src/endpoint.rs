//! The task that owns a UDP socket: the server side (handshake, sessions by
//! peer address, admission) and the client side (one session).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::handshake::{
    is_handshake, unix_seconds, CookieJar, Datagram, Refusal, HANDSHAKE_VERSION,
};
use crate::session::{Fate, KcpStream, Session};
use crate::{Settings, INTERVAL_MS};

/// Largest datagram read (UDP's own limit).
const MAX_DATAGRAM: usize = 64 * 1024;

/// Bytes of a KCP segment's header: anything shorter is not KCP.
const KCP_HEADER: usize = 24;

/// Sessions accepted and not yet taken by `accept`.
const BACKLOG: usize = 1024;

/// How often a client repeats a handshake request that got no answer.
const RESEND: Duration = Duration::from_millis(250);

/// A session the listener opened, with what the admission gave for it.
pub struct Accepted<T> {
    pub stream: KcpStream,
    pub peer: SocketAddr,
    /// What `admit` returned for this peer; keep it as long as the session.
    pub ticket: T,
}

/// A server's KCP socket. Sessions open only through the handshake, and
/// only when `admit` says yes. Dropping the listener closes every session.
pub struct KcpListener<T> {
    local: SocketAddr,
    accepted: mpsc::Receiver<Accepted<T>>,
}

impl<T: Send + 'static> KcpListener<T> {
    /// Binds `addr`; `admit` is asked for each peer that completes the
    /// handshake, and its refusal is sent to the peer.
    pub async fn bind(
        addr: SocketAddr,
        settings: Settings,
        admit: impl FnMut(SocketAddr) -> Result<T, Refusal> + Send + 'static,
    ) -> io::Result<Self> {
        let socket = Arc::new(bind_server_socket(addr)?);
        let local = socket.local_addr()?;
        let (tx, accepted) = mpsc::channel(BACKLOG);
        let server = Server {
            socket,
            settings,
            sessions: FxHashMap::default(),
            jar: CookieJar::new()?,
            admit: Box::new(admit),
            accepted: tx,
            refusals: RefusalLog::default(),
        };
        tokio::spawn(server.run());
        Ok(Self { local, accepted })
    }

    /// The next session opened.
    pub async fn accept(&mut self) -> io::Result<Accepted<T>> {
        self.accepted
            .recv()
            .await
            .ok_or_else(|| io::Error::other("the KCP endpoint stopped"))
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

type Admit<T> = Box<dyn FnMut(SocketAddr) -> Result<T, Refusal> + Send>;

struct Server<T> {
    socket: Arc<UdpSocket>,
    settings: Settings,
    sessions: FxHashMap<SocketAddr, Arc<Session>>,
    jar: CookieJar,
    admit: Admit<T>,
    accepted: mpsc::Sender<Accepted<T>>,
    refusals: RefusalLog,
}

impl<T: Send + 'static> Server<T> {
    async fn run(mut self) {
        let mut buf = vec![0; MAX_DATAGRAM];
        let mut ticker = tokio::time::interval(Duration::from_millis(INTERVAL_MS.into()));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let accepted = self.accepted.clone();
        loop {
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => self.datagram(&buf[..n], peer),
                    // ICMP errors for earlier sends surface here; they end
                    // nothing (the session times out if its peer is gone).
                    Err(e) => tracing::trace!("KCP socket: {e}"),
                },
                _ = ticker.tick(), if !self.sessions.is_empty() => {
                    tick_all(&mut self.sessions, &self.settings);
                }
                () = accepted.closed() => break,
            }
        }
        for session in self.sessions.values() {
            session.close();
        }
    }

    fn datagram(&mut self, d: &[u8], peer: SocketAddr) {
        if !is_handshake(d) {
            // KCP's segment header starts with the conv; only the session
            // that peer opened, with the conv it chose, takes it.
            if d.len() < KCP_HEADER {
                return;
            }
            let conv = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            match self.sessions.get(&peer) {
                Some(session) if session.conv() == conv => session.input(d),
                // No such session (this server restarted, or dropped it):
                // say so, so the client need not wait for its retries to
                // give up. The answer is smaller than any KCP segment, so
                // it amplifies nothing.
                _ => {
                    let _ = self
                        .socket
                        .try_send_to(&Datagram::Reset { conv }.encode(), peer);
                }
            }
            return;
        }
        let reply = match Datagram::decode(d) {
            Some(Datagram::Hello { version }) if version == HANDSHAKE_VERSION => {
                Datagram::Cookie(self.jar.make(peer, unix_seconds()))
            }
            Some(Datagram::Hello { .. }) => Datagram::Refuse(Refusal::Version),
            Some(Datagram::Connect { cookie, conv }) if conv != 0 => {
                if !self.jar.check(peer, &cookie, unix_seconds()) {
                    Datagram::Refuse(Refusal::BadCookie)
                } else {
                    self.open(peer, conv)
                }
            }
            _ => return, // not a request, or malformed: no answer
        };
        let _ = self.socket.try_send_to(&reply.encode(), peer);
    }

    /// Opens a session for a peer that proved its address (or repeats the
    /// answer to a `Connect` whose `Accept` was lost).
    fn open(&mut self, peer: SocketAddr, conv: u32) -> Datagram {
        if let Some(old) = self.sessions.get(&peer) {
            if old.conv() == conv {
                return Datagram::Accept { conv };
            }
            // The same address with another conv: a client that restarted
            // on the same port. Its old session is of no use to anyone.
            old.close();
            self.sessions.remove(&peer);
        }
        let ticket = match (self.admit)(peer) {
            Ok(ticket) => ticket,
            Err(why) => {
                self.refusals.note(peer, why);
                return Datagram::Refuse(why);
            }
        };
        let session = Session::new(conv, self.socket.clone(), peer, &self.settings);
        let opened = Accepted {
            stream: KcpStream::new(session.clone(), peer),
            peer,
            ticket,
        };
        if self.accepted.try_send(opened).is_err() {
            self.refusals.note(peer, Refusal::ServerFull);
            session.close();
            return Datagram::Refuse(Refusal::ServerFull);
        }
        self.sessions.insert(peer, session);
        Datagram::Accept { conv }
    }
}

fn tick_all(sessions: &mut FxHashMap<SocketAddr, Arc<Session>>, settings: &Settings) {
    let now = Instant::now();
    sessions.retain(|peer, session| match session.tick(now, settings) {
        Fate::Keep => true,
        Fate::Remove(why) => {
            tracing::debug!(%peer, "KCP session removed: {why}");
            session.close();
            false
        }
    });
}

/// Logs refusals: the first at once, then a count at most every 10 s, so
/// a flood of refused handshakes cannot flood the log.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since_last: u64,
}

impl RefusalLog {
    fn note(&mut self, peer: SocketAddr, why: Refusal) {
        self.since_last += 1;
        let due = self
            .last
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                %peer,
                refused = self.since_last,
                "KCP connection refused: {why} ({} refused since the last such line)",
                self.since_last
            );
            self.last = Some(Instant::now());
            self.since_last = 0;
        }
    }
}

/// Opens a KCP session with a server: the handshake (repeated while
/// unanswered, for at most `timeout`), then KCP with a conv of its own.
pub async fn connect(
    server: SocketAddr,
    settings: Settings,
    timeout: Duration,
) -> io::Result<KcpStream> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    let conv = random_conv()?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut request = Datagram::Hello {
        version: HANDSHAKE_VERSION,
    };
    let mut buf = vec![0; MAX_DATAGRAM];
    'send: loop {
        socket.send(&request.encode()).await?;
        let resend = (tokio::time::Instant::now() + RESEND).min(deadline);
        loop {
            let n = match tokio::time::timeout_at(resend, socket.recv(&mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("nothing answers on UDP {server} (port unreachable)"),
                    ))
                }
                Ok(Err(e)) => return Err(e),
                Err(_) if resend >= deadline => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no KCP handshake answer from {server} within {timeout:?}"),
                    ))
                }
                Err(_) => continue 'send,
            };
            match (Datagram::decode(&buf[..n]), request) {
                (Some(Datagram::Cookie(cookie)), Datagram::Hello { .. }) => {
                    request = Datagram::Connect { cookie, conv };
                    continue 'send;
                }
                (Some(Datagram::Accept { conv: c }), Datagram::Connect { .. }) if c == conv => {
                    break 'send;
                }
                (Some(Datagram::Refuse(Refusal::BadCookie)), Datagram::Connect { .. }) => {
                    request = Datagram::Hello {
                        version: HANDSHAKE_VERSION,
                    };
                    continue 'send;
                }
                (Some(Datagram::Refuse(why)), _) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("KCP connection refused by {server}: {why}"),
                    ))
                }
                _ => {} // late or stray: wait on
            }
        }
    }
    let socket = Arc::new(socket);
    let session = Session::new(conv, socket.clone(), server, &settings);
    tokio::spawn(run_client(socket, session.clone(), settings));
    Ok(KcpStream::new(session, server))
}

/// A client's endpoint: feeds its one session until the session goes.
async fn run_client(socket: Arc<UdpSocket>, session: Arc<Session>, settings: Settings) {
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut ticker = tokio::time::interval(Duration::from_millis(INTERVAL_MS.into()));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) if !is_handshake(&buf[..n]) => session.input(&buf[..n]),
                Ok(n) => {
                    // The server no longer knows this session: it is over.
                    let conv = session.conv();
                    if Datagram::decode(&buf[..n]) == Some(Datagram::Reset { conv }) {
                        tracing::debug!("KCP session reset by the server");
                        session.close();
                        return;
                    }
                    // Otherwise a repeated answer to the handshake.
                }
                Err(e) => tracing::trace!("KCP socket: {e}"),
            },
            _ = ticker.tick() => {
                if let Fate::Remove(why) = session.tick(Instant::now(), &settings) {
                    tracing::debug!("KCP session ended: {why}");
                    session.close();
                    return;
                }
            }
        }
    }
}

/// Socket buffers asked for on a server's socket: the default (about
/// 200 KiB) overflows when many sessions burst at once, and each datagram
/// lost there costs a resend. The kernel caps it at `net.core.rmem_max`.
const SERVER_SOCKET_BUFFER: usize = 4 << 20;

fn bind_server_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: a smaller buffer only costs resends.
    let _ = socket.set_recv_buffer_size(SERVER_SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SERVER_SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn random_conv() -> io::Result<u32> {
    loop {
        let mut b = [0; 4];
        getrandom::getrandom(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
        let conv = u32::from_le_bytes(b);
        if conv != 0 {
            return Ok(conv);
        }
    }
}
