//! An async (tokio) client for Wyrm servers, for bots, tests and tools.
//!
//! One [`Client`] is one connection over TCP, WebSocket or KCP. It speaks the
//! protocol of `docs/protocol.md` (frames from [`wyrm_protocol`]), decodes
//! MessagePack payloads into [`rmpv::Value`]s, and keeps a local view of the
//! entities the server shows it: which one is the player, their types and
//! their attributes, updated by every `Attr` frame.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wyrm_client::ClientError> {
//! use std::time::Duration;
//! use wyrm_client::{Client, Transport};
//!
//! let mut c = Client::connect(Transport::WebSocket, "127.0.0.1:7000").await?;
//! let account = c.wait_player(Duration::from_secs(5)).await?;
//! c.call(account, "register", ("ann", "secret")).await?;
//! # Ok(()) }
//! ```
//!
//! Arguments are serialised with `rmp_serde`; Wyrm methods take a
//! MessagePack *array* of positional arguments, so pass a tuple — `("hi",)`
//! for a single argument, `()` encodes as nil, not as an empty array (use
//! [`NO_ARGS`] for that).
//!
//! The client is used through `&mut self`: it reads only while you await
//! [`Client::next_event`] or one of the `expect_*` / `wait_*` helpers. Events
//! that a helper skips are kept (up to [`BACKLOG_LIMIT`]) and returned by
//! later calls, in order.

mod error;
mod event;
mod transport;
mod view;

use std::{collections::VecDeque, time::Duration};

use rustc_hash::FxHashMap;

use rmpv::Value;
use serde::{de::DeserializeOwned, Serialize};
use tokio::time::Instant;
use wyrm_protocol::{ClientFrame, PositionTable, ServerFrame};

pub use error::ClientError;
pub use event::{from_value, Event};
pub use view::{apply_attr, format_path, EntityView};
pub use wyrm_protocol::{
    AttrOp, EntityPosition, ErrorCode, PathSegment, Position, Resolution, DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
};

use event::{decode_msgpack, decode_named, Seen};
use transport::{Conn, Incoming};

/// An empty argument list (`[]` in MessagePack), for methods without
/// arguments: `client.call(id, "who", NO_ARGS)`.
pub const NO_ARGS: [u8; 0] = [];

/// Most events a client keeps for later when helpers skip them; beyond
/// this the oldest are dropped.
pub const BACKLOG_LIMIT: usize = 4096;

/// The nonce of the `Ping`s a client sends on its own to keep its
/// connection (see `docs/protocol.md`, "Limits"); their `Pong`s are not
/// reported. [`Client::ping`] never uses it.
const KEEPALIVE_NONCE: u64 = 0;

/// How long a client that waits for input may go without sending before it
/// pings: the server closes a connection silent for its idle timeout (30 s
/// by default), and a KCP session expires as long.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// How to reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP, frames with a u32 LE length prefix.
    Tcp,
    /// WebSocket at `ws://HOST:PORT/ws`, one frame per binary message.
    WebSocket,
    /// KCP over UDP ([`kcp_config`]), frames with a u32 LE length prefix.
    /// A KCP server learns of a client only from its first datagram: the
    /// client's `Hello`. While waiting for events, the client pings every
    /// 10 s (nonce 0, its `Pong` not reported) to keep the session.
    Kcp,
}

/// What the server said in `Welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// The server's protocol version.
    pub version: u16,
    /// The largest frame the server accepts; [`Client::call`] refuses to
    /// send larger ones.
    pub max_frame: u32,
    /// Whether the server may send frames compressed (LZ4; the client asked
    /// for it, see [`ClientBuilder::compression`]). They are decompressed
    /// here: events are the same either way.
    pub compressed: bool,
}

/// Connection options. [`Client::connect`] uses the defaults.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    transport: Transport,
    max_frame: usize,
    connect_timeout: Duration,
    tls: Option<ClientTls>,
    compression: bool,
}

/// TLS for a connection (TCP, or WebSocket as `wss://`): the authorities
/// whose certificates the server may present, and the name it must
/// present one for.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// Trusts the certificate authorities in `ca_pem` (PEM) only, for a
    /// server that must present a certificate for `server_name` (a DNS
    /// name or an IP address).
    pub fn with_ca_pem(ca_pem: &[u8], server_name: &str) -> Result<Self, ClientError> {
        use rustls::pki_types::pem::PemObject as _;
        let bad = |reason: String| ClientError::Tls { reason };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| bad(format!("a CA certificate that is not PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("a CA certificate rustls cannot use: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("no CA certificate in the PEM given".into()));
        }
        let server_name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| bad(format!("{server_name:?} is not a server name: {e}")))?;
        // The process's crypto provider: ring, the only one built in.
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
            server_name,
        })
    }

    pub(crate) async fn handshake(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        self.connector.connect(self.server_name.clone(), tcp).await
    }
}

impl ClientBuilder {
    /// Defaults: accept server frames up to 16 MiB, give up connecting
    /// (transport set-up and `Welcome`) after 10 s.
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            max_frame: 16 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            tls: None,
            compression: true,
        }
    }

    /// Whether to ask the server to compress the frames it sends (LZ4, for
    /// frames worth it); on by default.
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Connects over TLS (TCP, or WebSocket as `wss://`), trusting what
    /// `tls` says. KCP has no TLS.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The largest frame accepted from the server. On stream transports a
    /// larger frame is skipped and reported as [`ClientError::FrameTooLarge`];
    /// on WebSocket it ends the connection.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// How long to wait for the transport and the server's `Welcome`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects to `addr` (`host:port`) and waits for `Welcome`.
    pub async fn connect(self, addr: &str) -> Result<Client, ClientError> {
        let timeout = self.connect_timeout;
        let transport = self.transport;
        match tokio::time::timeout(timeout, self.connect_inner(addr)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::ConnectTimeout {
                transport,
                addr: addr.to_owned(),
                after: timeout,
            }),
        }
    }

    async fn connect_inner(self, addr: &str) -> Result<Client, ClientError> {
        let conn = Conn::open(self.transport, addr, self.max_frame, self.tls.as_ref()).await?;
        let mut client = Client {
            transport: self.transport,
            conn,
            welcome: Welcome {
                version: 0,
                max_frame: 0,
                compressed: false,
            },
            max_frame: self.max_frame,
            compressed_frames: 0,
            state: State::Open,
            backlog: VecDeque::new(),
            entities: FxHashMap::default(),
            positions: PositionTable::new(),
            player: None,
            next_req: 1,
            next_nonce: KEEPALIVE_NONCE + 1,
            last_sent: Instant::now(),
        };
        // Say which protocol this client speaks at once, without waiting
        // for `Welcome` (on KCP this opens the session).
        client
            .send_frame(&ClientFrame::Hello {
                version: PROTOCOL_VERSION,
                options: wyrm_protocol::HelloOptions {
                    compress: if self.compression {
                        vec![wyrm_protocol::LZ4_NAME.to_owned()]
                    } else {
                        Vec::new()
                    },
                },
            })
            .await?;
        let frame = match client.conn.recv().await? {
            Incoming::Frame(f) => f,
            Incoming::Closed => {
                return Err(ClientError::ClosedWhileWaiting {
                    waiting_for: "Welcome".into(),
                    saw: "nothing".into(),
                })
            }
        };
        match ServerFrame::decode(&frame)? {
            ServerFrame::Welcome { version, .. } if version != PROTOCOL_VERSION => {
                client.conn.close().await;
                Err(ClientError::VersionMismatch {
                    server: version,
                    client: PROTOCOL_VERSION,
                })
            }
            ServerFrame::Welcome {
                version,
                max_frame,
                options,
            } => {
                let compressed = options.compress.as_deref() == Some(wyrm_protocol::LZ4_NAME);
                client.welcome = Welcome {
                    version,
                    max_frame,
                    compressed,
                };
                Ok(client)
            }
            ServerFrame::Error {
                req_id,
                code,
                message,
            } => Err(ClientError::Server {
                req_id,
                code,
                code_num: error_code_num(&frame, code),
                message,
                waiting_for: "Welcome".into(),
            }),
            other => Err(ClientError::Protocol(format!(
                "the first frame must be Welcome, got {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The server announced it will close (KCP, where the client cannot see
    /// the close itself); report `Closed` next.
    CloseNext,
    Closed,
}

/// A connection to a Wyrm server.
pub struct Client {
    transport: Transport,
    conn: Conn,
    welcome: Welcome,
    state: State,
    backlog: VecDeque<Event>,
    entities: FxHashMap<u64, EntityView>,
    /// Where position sync's slots stand on this connection.
    positions: PositionTable,
    player: Option<u64>,
    next_req: u32,
    next_nonce: u64,
    /// When this client last sent anything (its keepalive counts from it).
    last_sent: Instant,
    /// The largest frame accepted from the server (a compressed one's
    /// size included).
    max_frame: usize,
    /// `Compressed` frames received.
    compressed_frames: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("transport", &self.transport)
            .field("welcome", &self.welcome)
            .field("state", &self.state)
            .field("player", &self.player)
            .field("entities", &self.entities.len())
            .field("backlog", &self.backlog.len())
            .finish()
    }
}

/// What a waiting helper does with one event.
enum Pick<T> {
    Take(T),
    Fail(ClientError),
    Skip(Event),
}

impl Client {
    /// Connects with default options; see [`ClientBuilder`].
    pub async fn connect(transport: Transport, addr: &str) -> Result<Client, ClientError> {
        ClientBuilder::new(transport).connect(addr).await
    }

    /// Options for [`ClientBuilder::connect`].
    pub fn builder(transport: Transport) -> ClientBuilder {
        ClientBuilder::new(transport)
    }

    /// The transport in use.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// `Compressed` frames received so far (decompressed, and reported as
    /// the frames they hold).
    pub fn compressed_frames(&self) -> u64 {
        self.compressed_frames
    }

    /// What the server said in `Welcome`.
    pub fn welcome(&self) -> Welcome {
        self.welcome
    }

    /// True until the connection is known to be closed.
    pub fn is_open(&self) -> bool {
        self.state != State::Closed
    }

    // ---- local view -------------------------------------------------------

    /// The entity this client is bound to (the last `Create` with
    /// `own = true`, until its `Destroy`).
    pub fn player(&self) -> Option<u64> {
        self.player
    }

    /// The view of [`player`](Self::player).
    pub fn player_view(&self) -> Option<&EntityView> {
        self.player.and_then(|id| self.entities.get(&id))
    }

    /// The view of entity `id`, if this client sees it.
    pub fn entity(&self, id: u64) -> Option<&EntityView> {
        self.entities.get(&id)
    }

    /// Every entity this client sees, in no particular order.
    pub fn entities(&self) -> impl Iterator<Item = &EntityView> {
        self.entities.values()
    }

    /// Where entity `id` is, from the `Positions` frames received; `None`
    /// until one placed it (entities in no space never get one) and after
    /// its `Destroy`.
    pub fn position_of(&self, id: u64) -> Option<EntityPosition> {
        self.positions.position(id)
    }

    /// The grid positions are rounded to in this client's space (from the
    /// last `Positions` frame): a position this client sends comes back
    /// rounded to it.
    pub fn position_resolution(&self) -> Option<wyrm_protocol::Resolution> {
        self.positions.resolution()
    }

    // ---- sending ----------------------------------------------------------

    /// Calls `method` on `entity` with `args` serialised by `rmp_serde`
    /// (pass a tuple: it encodes as the positional-argument array). Returns
    /// the request id an `Error` about this call will carry. Success is not
    /// acknowledged; the method's effects arrive as events.
    pub async fn call(
        &mut self,
        entity: u64,
        method: &str,
        args: impl Serialize,
    ) -> Result<u32, ClientError> {
        let args = rmp_serde::to_vec(&args)?;
        self.call_raw(entity, method, args).await
    }

    /// [`call`](Self::call) on this client's own entity.
    pub async fn call_player(
        &mut self,
        method: &str,
        args: impl Serialize,
    ) -> Result<u32, ClientError> {
        let entity = self.player.ok_or(ClientError::NoPlayer)?;
        self.call(entity, method, args).await
    }

    /// Calls `method` with `args` given as ready MessagePack bytes, sent
    /// unchecked (for tests of bad payloads).
    pub async fn call_raw(
        &mut self,
        entity: u64,
        method: &str,
        args: Vec<u8>,
    ) -> Result<u32, ClientError> {
        let req_id = self.next_req;
        self.next_req = self.next_req.checked_add(1).unwrap_or(1);
        self.send_frame(&ClientFrame::Call {
            req_id,
            entity,
            method: method.to_owned(),
            args,
        })
        .await?;
        Ok(req_id)
    }

    /// Moves this client's own entity (a `Move` frame). The server applies
    /// it only if the game lets this client move its entity; others see it
    /// at the server's next tick.
    pub async fn send_move(
        &mut self,
        pos: wyrm_protocol::Position,
        yaw: f32,
    ) -> Result<(), ClientError> {
        self.send_frame(&ClientFrame::Move { pos, yaw }).await
    }

    /// Sends a `Ping`; the matching [`Event::Pong`] carries the returned
    /// nonce.
    pub async fn ping(&mut self) -> Result<u64, ClientError> {
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1).max(KEEPALIVE_NONCE + 1);
        self.send_frame(&ClientFrame::Ping { nonce }).await?;
        Ok(nonce)
    }

    /// Sends a `Ping` and waits for its `Pong`; returns the round-trip time.
    /// Other events are kept for later.
    pub async fn round_trip(&mut self, timeout: Duration) -> Result<Duration, ClientError> {
        let start = Instant::now();
        let nonce = self.ping().await?;
        let waiting = format!("Pong({nonce})");
        self.wait_for(waiting, timeout, |e| match e {
            Event::Pong { nonce: n } if n == nonce => Pick::Take(()),
            Event::Error { .. } => Pick::Fail(error_event("Pong", e)),
            e => Pick::Skip(e),
        })
        .await?;
        Ok(start.elapsed())
    }

    /// Sends `frame` (type byte + body) as is, adding only the transport's
    /// framing (length prefix or WebSocket message). Not checked against
    /// the server's `max_frame`.
    pub async fn send_raw_frame(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        self.ensure_open()?;
        self.last_sent = Instant::now();
        let r = self.conn.send_frame(frame).await;
        self.note(r)
    }

    /// Writes `bytes` to the stream as they are, with no framing (TCP and
    /// KCP only).
    pub async fn send_raw_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.ensure_open()?;
        self.last_sent = Instant::now();
        let r = self.conn.send_raw_bytes(bytes).await;
        match self.note(r)? {
            true => Ok(()),
            false => Err(ClientError::Unsupported {
                what: "sending raw bytes",
                transport: self.transport,
            }),
        }
    }

    /// Sends a WebSocket *text* message (WebSocket only; the protocol uses
    /// binary messages, so this is for tests of bad input).
    pub async fn send_ws_text(&mut self, text: &str) -> Result<(), ClientError> {
        self.ensure_open()?;
        self.last_sent = Instant::now();
        let r = self.conn.send_ws_text(text).await;
        match self.note(r)? {
            true => Ok(()),
            false => Err(ClientError::Unsupported {
                what: "a WebSocket text message",
                transport: self.transport,
            }),
        }
    }

    /// Closes the connection (politely where the transport allows). Later
    /// calls fail with [`ClientError::Closed`]; the local view stays.
    pub async fn close(&mut self) {
        self.conn.close().await;
        self.state = State::Closed;
    }

    async fn send_frame(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.ensure_open()?;
        let mut bytes = Vec::new();
        frame.encode(&mut bytes);
        let max = self.welcome.max_frame as usize;
        if max > 0 && bytes.len() > max {
            return Err(ClientError::TooLargeToSend {
                len: bytes.len(),
                max,
            });
        }
        self.last_sent = Instant::now();
        let r = self.conn.send_frame(&bytes).await;
        self.note(r)
    }

    fn ensure_open(&self) -> Result<(), ClientError> {
        match self.state {
            State::Closed => Err(ClientError::Closed),
            _ => Ok(()),
        }
    }

    /// Marks the client closed after a fatal error.
    fn note<T>(&mut self, r: Result<T, ClientError>) -> Result<T, ClientError> {
        if let Err(e) = &r {
            if e.is_fatal() {
                self.state = State::Closed;
            }
        }
        r
    }

    // ---- receiving --------------------------------------------------------

    /// The next event: first any kept by a helper, then from the connection.
    /// The local view is updated before the event is returned.
    ///
    /// Cancel-safe: dropping the future (for example in `tokio::select!` or
    /// a timeout) loses nothing. Non-fatal errors (see
    /// [`ClientError::is_fatal`]) report one bad frame; call again to go on.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        if let Some(e) = self.backlog.pop_front() {
            return Ok(e);
        }
        self.read_event().await
    }

    /// [`next_event`](Self::next_event) with a deadline: `Ok(None)` if
    /// nothing arrived in time.
    pub async fn next_event_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Event>, ClientError> {
        match tokio::time::timeout(timeout, self.next_event()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Waits for the next server `Call` of `method` and returns its entity
    /// and arguments. Other events are kept for later. Fails on timeout, on
    /// an `Error` frame, or when the connection closes; the error lists what
    /// arrived instead.
    pub async fn expect_call(
        &mut self,
        method: &str,
        timeout: Duration,
    ) -> Result<(u64, Value), ClientError> {
        let waiting = format!("server call {method}");
        self.wait_for(waiting.clone(), timeout, |e| match e {
            Event::Call {
                entity,
                method: m,
                args,
            } if m == method => Pick::Take((entity, args)),
            Event::Error { .. } => Pick::Fail(error_event(&waiting, e)),
            e => Pick::Skip(e),
        })
        .await
    }

    /// [`expect_call`](Self::expect_call), with the arguments decoded as `T`
    /// (usually a tuple matching the positional arguments).
    pub async fn expect_call_as<T: DeserializeOwned>(
        &mut self,
        method: &str,
        timeout: Duration,
    ) -> Result<(u64, T), ClientError> {
        let (entity, args) = self.expect_call(method, timeout).await?;
        Ok((entity, decode_named(&args, &format!("args of {method}"))?))
    }

    /// Waits for the next `Error` frame and returns `(req_id, code,
    /// message)`. Other events are kept for later.
    pub async fn expect_error(
        &mut self,
        timeout: Duration,
    ) -> Result<(u32, ErrorCode, String), ClientError> {
        self.wait_for("an Error frame".into(), timeout, |e| match e {
            Event::Error {
                req_id,
                code,
                message,
                ..
            } => Pick::Take((req_id, code, message)),
            e => Pick::Skip(e),
        })
        .await
    }

    /// Waits until the connection closes. Events before the close are kept
    /// for later (including `Error` frames).
    ///
    /// Over KCP a server-side close cannot be seen; the client reports
    /// `Closed` after an `Error` with code `Malformed` (the one code after
    /// which the server always closes) and otherwise times out.
    pub async fn expect_closed(&mut self, timeout: Duration) -> Result<(), ClientError> {
        if self.state == State::Closed {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        let mut seen = Seen::default();
        for e in &self.backlog {
            seen.push(e);
        }
        loop {
            match tokio::time::timeout_at(deadline, self.read_event()).await {
                Err(_) => {
                    return Err(ClientError::Timeout {
                        waiting_for: "the connection to close".into(),
                        after: timeout,
                        saw: seen.render(),
                    })
                }
                Ok(Ok(Event::Closed)) | Ok(Err(ClientError::Closed)) => return Ok(()),
                Ok(Ok(e)) => {
                    seen.push(&e);
                    self.keep(e);
                }
                Ok(Err(e)) if e.is_fatal() => return Ok(()),
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    /// Returns the player entity, waiting for its `Create` (own = true) if
    /// it has not arrived yet. Other events are kept for later.
    pub async fn wait_player(&mut self, timeout: Duration) -> Result<u64, ClientError> {
        if let Some(p) = self.player {
            return Ok(p);
        }
        self.wait_for("Create of the own entity".into(), timeout, |e| match e {
            Event::Created {
                entity, own: true, ..
            } => Pick::Take(entity),
            Event::Error { .. } => Pick::Fail(error_event("the own entity", e)),
            e => Pick::Skip(e),
        })
        .await
    }

    /// Scans the backlog, then reads, until `pick` takes or fails an event.
    async fn wait_for<T>(
        &mut self,
        waiting_for: String,
        timeout: Duration,
        mut pick: impl FnMut(Event) -> Pick<T>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut seen = Seen::default();
        let mut i = 0;
        while i < self.backlog.len() {
            let Some(e) = self.backlog.remove(i) else {
                break;
            };
            match pick(e) {
                Pick::Take(t) => return Ok(t),
                Pick::Fail(err) => return Err(err),
                Pick::Skip(e) => {
                    seen.push(&e);
                    self.backlog.insert(i, e);
                    i += 1;
                }
            }
        }
        loop {
            let r = match tokio::time::timeout_at(deadline, self.read_event()).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(ClientError::Timeout {
                        waiting_for,
                        after: timeout,
                        saw: seen.render(),
                    })
                }
            };
            match r {
                Ok(Event::Closed) | Err(ClientError::Closed) => {
                    return Err(ClientError::ClosedWhileWaiting {
                        waiting_for,
                        saw: seen.render(),
                    })
                }
                Err(e) => return Err(e),
                Ok(e) => match pick(e) {
                    Pick::Take(t) => return Ok(t),
                    Pick::Fail(err) => return Err(err),
                    Pick::Skip(e) => {
                        seen.push(&e);
                        self.keep(e);
                    }
                },
            }
        }
    }

    fn keep(&mut self, e: Event) {
        if self.backlog.len() >= BACKLOG_LIMIT {
            self.backlog.pop_front();
        }
        self.backlog.push_back(e);
    }

    /// Reads from the connection (not the backlog). Cancel-safe: the only
    /// await is the transport's cancel-safe receive.
    async fn read_event(&mut self) -> Result<Event, ClientError> {
        loop {
            match self.state {
                State::Closed => return Err(ClientError::Closed),
                State::CloseNext => {
                    self.conn.close().await;
                    self.state = State::Closed;
                    return Ok(Event::Closed);
                }
                State::Open => {}
            }
            // The server drops a connection that sends nothing for its idle
            // timeout: while waiting here, keep it with pings whose pongs
            // are not reported.
            let r = loop {
                tokio::select! {
                    r = self.conn.recv() => break r,
                    () = tokio::time::sleep_until(self.last_sent + KEEPALIVE) => {
                        self.send_frame(&ClientFrame::Ping { nonce: KEEPALIVE_NONCE }).await?;
                    }
                }
            };
            match self.note(r)? {
                Incoming::Closed => {
                    self.state = State::Closed;
                    return Ok(Event::Closed);
                }
                Incoming::Frame(frame) => {
                    if let Some(e) = self.apply_frame(&frame)? {
                        return Ok(e);
                    }
                }
            }
        }
    }

    /// Decodes a server frame, updates the local view, and returns the event
    /// to report (`None` for frames the client handles itself).
    fn apply_frame(&mut self, frame: &[u8]) -> Result<Option<Event>, ClientError> {
        if frame.first() == Some(&wyrm_protocol::COMPRESSED_TYPE) {
            let ServerFrame::Compressed { codec, size, data } = ServerFrame::decode(frame)? else {
                return Err(ClientError::Protocol("a bad Compressed frame".into()));
            };
            if !self.welcome.compressed {
                return Err(ClientError::Protocol(
                    "a Compressed frame, which this client did not ask for".into(),
                ));
            }
            let inner = wyrm_protocol::decompress_frame(codec, size, &data, self.max_frame)?;
            if inner.first() == Some(&wyrm_protocol::COMPRESSED_TYPE) {
                return Err(ClientError::Protocol(
                    "a Compressed frame inside another".into(),
                ));
            }
            self.compressed_frames += 1;
            return self.apply_frame(&inner);
        }
        if let Some((&wyrm_protocol::POSITIONS_TYPE, body)) = frame.split_first() {
            // Applied straight from the frame: the table is the decoder,
            // and where each entity is.
            let mut entries = Vec::new();
            self.positions.apply(body, &mut entries)?;
            return Ok(Some(Event::Positions(entries)));
        }
        if let Some(call) = wyrm_protocol::CallRef::read(frame) {
            // Read in place: most frames a client gets are calls.
            let call = call?;
            let method = call.method;
            let entity = match call.entity {
                Some(e) => e,
                None => self.player.ok_or_else(|| {
                    ClientError::Protocol(format!(
                        "a call of {method} on the own entity, but this client has none"
                    ))
                })?,
            };
            let args = decode_msgpack(call.args, || {
                format!("args of server call {method} on entity {entity}")
            })?;
            return Ok(Some(Event::Call {
                entity,
                method: method.to_owned(),
                args,
            }));
        }
        let event = match ServerFrame::decode(frame)? {
            ServerFrame::Welcome { .. } => {
                return Err(ClientError::Protocol(
                    "a second Welcome frame arrived".into(),
                ))
            }
            ServerFrame::Pong { nonce } => {
                if nonce == KEEPALIVE_NONCE {
                    return Ok(None);
                }
                Event::Pong { nonce }
            }
            ServerFrame::Error {
                req_id,
                code,
                message,
            } => {
                // KCP has no close: errors after which the server closes
                // end the client's side here.
                if matches!(code, ErrorCode::Malformed | ErrorCode::TimedOut)
                    && self.transport == Transport::Kcp
                {
                    self.state = State::CloseNext;
                }
                Event::Error {
                    req_id,
                    code,
                    code_num: error_code_num(frame, code),
                    message,
                }
            }
            ServerFrame::Create {
                entity,
                type_name,
                own,
                attrs,
            } => {
                let attrs =
                    decode_msgpack(&attrs, || format!("attrs of Create({entity} {type_name})"))?;
                if !attrs.is_map() {
                    return Err(ClientError::payload(
                        format!("attrs of Create({entity} {type_name})"),
                        "not a map",
                    ));
                }
                if own {
                    self.player = Some(entity);
                } else if self.player == Some(entity) {
                    self.player = None;
                }
                self.entities.insert(
                    entity,
                    EntityView {
                        id: entity,
                        type_name: type_name.clone(),
                        own,
                        attrs: attrs.clone(),
                    },
                );
                Event::Created {
                    entity,
                    type_name,
                    own,
                    attrs,
                }
            }
            ServerFrame::Positions { .. } => {
                return Err(ClientError::Protocol(
                    "a Positions frame that was not applied".into(),
                ))
            }
            ServerFrame::Destroy { entity } => {
                self.entities.remove(&entity);
                self.positions.forget(entity);
                if self.player == Some(entity) {
                    self.player = None;
                }
                Event::Destroyed { entity }
            }
            ServerFrame::Call { .. } | ServerFrame::CallOwn { .. } => {
                return Err(ClientError::Protocol("a call that was not read".into()))
            }
            ServerFrame::Compressed { .. } => {
                return Err(ClientError::Protocol(
                    "a Compressed frame that was not read".into(),
                ))
            }
            ServerFrame::ViewReset => {
                self.entities.clear();
                self.positions = PositionTable::new();
                self.player = None;
                Event::ViewReset
            }
            ServerFrame::Attr {
                entity,
                op,
                path,
                value,
            } => {
                let what = || format!("value of Attr({entity} {op:?} {})", format_path(&path));
                let value = match op {
                    AttrOp::Delete if value.is_empty() => None,
                    AttrOp::Delete => {
                        return Err(ClientError::payload(what(), "Delete carries no value"))
                    }
                    AttrOp::Set | AttrOp::Append => Some(decode_msgpack(&value, what)?),
                };
                let view = self
                    .entities
                    .get_mut(&entity)
                    .ok_or_else(|| ClientError::View {
                        entity,
                        reason: "no such entity in this client's view".into(),
                    })?;
                apply_attr(&mut view.attrs, op, &path, value.clone())
                    .map_err(|reason| ClientError::View { entity, reason })?;
                Event::Attr {
                    entity,
                    op,
                    path,
                    value,
                }
            }
        };
        Ok(Some(event))
    }
}

/// The numeric code of an `Error` frame (type u8, req_id u32, code u16, ...).
fn error_code_num(frame: &[u8], code: ErrorCode) -> u16 {
    match frame.get(5..7) {
        Some(&[a, b]) => u16::from_le_bytes([a, b]),
        _ => code as u16,
    }
}

fn error_event(waiting_for: &str, e: Event) -> ClientError {
    match e {
        Event::Error {
            req_id,
            code,
            code_num,
            message,
        } => ClientError::Server {
            req_id,
            code,
            code_num,
            message,
            waiting_for: waiting_for.to_owned(),
        },
        other => ClientError::Protocol(format!("unexpected {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split(|c: char| c.is_whitespace() || c == '|')
            .filter(|t| !t.is_empty())
            .map(|t| u8::from_str_radix(t, 16).unwrap())
            .collect()
    }

    /// The hex examples in docs/protocol.md §8, checked against the encoder.
    #[test]
    fn protocol_doc_examples_match_the_encoder() {
        let mut call = Vec::new();
        ClientFrame::Call {
            req_id: 1,
            entity: 42,
            method: "say".into(),
            args: rmp_serde::to_vec(&("hello",)).unwrap(),
        }
        .encode(&mut call);
        let mut wire = Vec::new();
        wyrm_protocol::write_prefixed(&mut wire, &call);
        assert_eq!(
            wire,
            hex("19 00 00 00 01 01 00 00 00 2a 00 00 00 00 00 00 00 03 00 73 61 79 91 a5 68 65 6c 6c 6f")
        );
        let cases = [
            (
                ServerFrame::Welcome {
                    version: 1,
                    max_frame: 65536,
                    options: Default::default(),
                },
                "80 | 01 00 | 00 00 01 00",
            ),
            (
                ServerFrame::Create {
                    entity: 42,
                    type_name: "Avatar".into(),
                    own: true,
                    attrs: hex("81 a4 6e 61 6d 65 a3 61 6e 6e"),
                },
                "82 | 2a 00 00 00 00 00 00 00 | 06 00 41 76 61 74 61 72 | 01 | 81 a4 6e 61 6d 65 a3 61 6e 6e",
            ),
            (
                ServerFrame::Attr {
                    entity: 42,
                    op: AttrOp::Set,
                    path: vec![PathSegment::Key("room".into())],
                    value: hex("a5 6c 6f 62 62 79"),
                },
                "85 | 2a 00 00 00 00 00 00 00 | 00 | 91 a4 72 6f 6f 6d | a5 6c 6f 62 62 79",
            ),
            (
                ServerFrame::Error {
                    req_id: 1,
                    code: ErrorCode::NoSuchMethod,
                    message: "no method sya".into(),
                },
                "81 | 01 00 00 00 | 04 00 | 0d 00 6e 6f 20 6d 65 74 68 6f 64 20 73 79 61",
            ),
        ];
        for (frame, text) in cases {
            assert_eq!(frame.to_bytes(), hex(text), "{frame:?}");
        }
    }

    #[test]
    fn argument_encodings() {
        assert_eq!(rmp_serde::to_vec(&NO_ARGS).unwrap(), [0x90]);
        assert_eq!(rmp_serde::to_vec(&()).unwrap(), [0xc0]);
        assert_eq!(
            rmp_serde::to_vec(&("a", 1)).unwrap(),
            [0x92, 0xa1, b'a', 0x01]
        );
    }
}
