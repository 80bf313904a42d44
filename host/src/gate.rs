//! The gate: serves client connections on every transport and keeps the
//! per-client state the game should not care about — the entity a client is
//! bound to, its tags, its outbound queue and its rate limit. It fans calls
//! out to many clients (by tags, or to all).
//!
//! Two halves: [`serve_connection`] runs one task per connection (decode,
//! validate, rate-limit, write), and [`Gate`] is one task that owns the
//! client registry and routes what the dispatcher sends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::Instrument;
use wyrm_protocol::{ClientFrame, ErrorCode, ServerFrame, PROTOCOL_VERSION};

use crate::msg::{ClientId, EntityId, ToDispatcher, ToGame, ToGate};
use crate::net::{FrameConn, Inbound, NetError};

/// Into the gate task.
#[derive(Debug)]
pub enum GateMsg {
    /// A connection started; frames for it go into `tx`.
    Register {
        client: ClientId,
        tx: mpsc::Sender<Bytes>,
    },
    /// A connection ended.
    Unregister { client: ClientId },
    /// Something the dispatcher routed here.
    Route(ToGate),
}

struct ClientSlot {
    tx: mpsc::Sender<Bytes>,
    entity: Option<EntityId>,
    tags: HashMap<String, String>,
}

/// The gate's client registry; run it with [`Gate::run`].
pub struct Gate {
    clients: HashMap<ClientId, ClientSlot>,
    inbox: mpsc::UnboundedReceiver<GateMsg>,
}

impl Gate {
    /// A gate reading `inbox`.
    pub fn new(inbox: mpsc::UnboundedReceiver<GateMsg>) -> Self {
        Self {
            clients: HashMap::new(),
            inbox,
        }
    }

    /// Runs until every sender is gone; dropping the registry then closes
    /// every connection.
    pub async fn run(mut self) {
        while let Some(msg) = self.inbox.recv().await {
            self.handle(msg);
        }
    }

    fn handle(&mut self, msg: GateMsg) {
        match msg {
            GateMsg::Register { client, tx } => {
                self.clients.insert(
                    client,
                    ClientSlot {
                        tx,
                        entity: None,
                        tags: HashMap::new(),
                    },
                );
            }
            GateMsg::Unregister { client } => {
                self.clients.remove(&client);
            }
            GateMsg::Route(ToGate::Bind { client, entity }) => {
                if let Some(c) = self.clients.get_mut(&client) {
                    c.entity = entity;
                }
            }
            GateMsg::Route(ToGate::Send { client, frame }) => self.push(client, frame),
            GateMsg::Route(ToGate::SetTag { client, key, value }) => {
                if let Some(c) = self.clients.get_mut(&client) {
                    match value {
                        Some(v) => c.tags.insert(key, v),
                        None => c.tags.remove(&key),
                    };
                }
            }
            GateMsg::Route(ToGate::CallFiltered {
                filter,
                method,
                args,
            }) => {
                self.fan_out(&method, &args, |c| {
                    filter.iter().all(|(k, v)| c.tags.get(k) == Some(v))
                });
            }
            GateMsg::Route(ToGate::Broadcast { method, args }) => {
                self.fan_out(&method, &args, |_| true)
            }
        }
    }

    /// Calls `method` on every matching client's bound entity.
    fn fan_out(&mut self, method: &str, args: &[u8], matches: impl Fn(&ClientSlot) -> bool) {
        let targets: Vec<(ClientId, EntityId)> = self
            .clients
            .iter()
            .filter(|(_, c)| matches(c))
            .filter_map(|(&id, c)| c.entity.map(|e| (id, e)))
            .collect();
        for (client, entity) in targets {
            let frame = ServerFrame::Call {
                entity,
                method: method.to_owned(),
                args: args.to_vec(),
            };
            self.push(client, Bytes::from(frame.to_bytes()));
        }
    }

    /// Queues a frame for a client; a client whose queue is full is too slow
    /// to keep and is dropped, alone.
    fn push(&mut self, client: ClientId, frame: Bytes) {
        let Some(c) = self.clients.get(&client) else {
            return;
        };
        match c.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    client,
                    "client reads too slowly, outbound queue full: dropping it"
                );
                // Dropping the sender ends its connection task.
                self.clients.remove(&client);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.clients.remove(&client);
            }
        }
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Frames queued to the client before it is dropped.
    pub queue: usize,
    /// Frames per second the client may send (bursts of twice that).
    pub rate: u32,
}

/// What a connection needs to reach the rest of the server.
#[derive(Clone)]
pub struct ConnContext {
    /// The gate task.
    pub gate: mpsc::UnboundedSender<GateMsg>,
    /// The dispatcher.
    pub dispatcher: mpsc::UnboundedSender<ToDispatcher>,
    /// Limits.
    pub limits: ConnLimits,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    PeerClosed,
    Dropped,
    Malformed(String),
    Flooding,
    Io(String),
}

/// Serves one client connection until it ends; its log lines carry the
/// client's id and transport.
pub async fn serve_connection<C: FrameConn>(conn: C, client: ClientId, ctx: ConnContext) {
    let span = tracing::info_span!("client", id = client, transport = conn.transport());
    serve(conn, client, ctx).instrument(span).await
}

async fn serve<C: FrameConn>(mut conn: C, client: ClientId, ctx: ConnContext) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(ctx.limits.queue);
    let welcome = ServerFrame::Welcome {
        version: PROTOCOL_VERSION,
        max_frame: ctx.limits.max_frame as u32,
    };
    if conn.send(welcome.to_bytes().into()).await.is_err() {
        return;
    }
    if ctx.gate.send(GateMsg::Register { client, tx }).is_err() {
        return;
    }
    let _ = ctx
        .dispatcher
        .send(ToDispatcher::FromGate(ToGame::ClientConnected { client }));
    tracing::debug!("connected");

    let mut bucket = TokenBucket::new(ctx.limits.rate);
    let end = loop {
        tokio::select! {
            biased;
            out = rx.recv() => match out {
                Some(frame) => {
                    if let Err(e) = conn.send(frame).await {
                        break End::Io(e.to_string());
                    }
                }
                None => break End::Dropped,
            },
            inbound = conn.recv() => match inbound {
                Ok(None) => break End::PeerClosed,
                Err(NetError::Io(e)) => break End::Io(e.to_string()),
                Err(e @ NetError::Framing(_)) => break End::Malformed(e.to_string()),
                Ok(Some(Inbound::TooLarge { len })) => {
                    tracing::warn!(len, max = ctx.limits.max_frame, "oversized frame refused");
                    let msg = format!("frame of {len} bytes exceeds the maximum of {}", ctx.limits.max_frame);
                    if send_error(&mut conn, 0, ErrorCode::FrameTooLarge, msg).await.is_err() {
                        break End::Io("write failed".into());
                    }
                }
                Ok(Some(Inbound::Frame(frame))) => {
                    match bucket.take() {
                        Admit::Yes => {}
                        Admit::Refuse => {
                            let _ = send_error(&mut conn, 0, ErrorCode::Overloaded, "sending too fast; frame dropped".into()).await;
                            continue;
                        }
                        Admit::Disconnect => break End::Flooding,
                    }
                    match ClientFrame::decode(&frame) {
                        Ok(ClientFrame::Ping { nonce }) => {
                            if conn.send(ServerFrame::Pong { nonce }.to_bytes().into()).await.is_err() {
                                break End::Io("write failed".into());
                            }
                        }
                        Ok(ClientFrame::Call { req_id, entity, method, args }) => {
                            tracing::trace!(req_id, entity, %method, "call");
                            let msg = ToGame::ClientCall { client, req_id, entity, method, args };
                            let _ = ctx.dispatcher.send(ToDispatcher::FromGate(msg));
                        }
                        Ok(ClientFrame::Move { pos, yaw }) => {
                            let msg = ToGame::ClientMove { client, pos, yaw };
                            let _ = ctx.dispatcher.send(ToDispatcher::FromGate(msg));
                        }
                        Err(e) => break End::Malformed(e.to_string()),
                    }
                }
            },
        }
    };
    let _ = ctx.gate.send(GateMsg::Unregister { client });
    let _ = ctx
        .dispatcher
        .send(ToDispatcher::FromGate(ToGame::ClientDisconnected {
            client,
        }));
    match &end {
        End::PeerClosed => tracing::debug!("disconnected"),
        // The gate logs why (a slow client); at shutdown it is expected.
        End::Dropped => tracing::debug!("dropped by the server"),
        End::Malformed(why) => tracing::warn!("malformed input, closing: {why}"),
        End::Flooding => tracing::warn!("kept flooding past its rate limit, closing"),
        End::Io(why) => tracing::debug!("connection failed: {why}"),
    }
    match end {
        End::Malformed(why) => {
            let _ = send_error(&mut conn, 0, ErrorCode::Malformed, why).await;
        }
        End::Flooding => {
            let _ = send_error(
                &mut conn,
                0,
                ErrorCode::Overloaded,
                "flooding; disconnected".into(),
            )
            .await;
        }
        _ => {}
    }
    conn.close().await;
}

async fn send_error<C: FrameConn>(
    conn: &mut C,
    req_id: u32,
    code: ErrorCode,
    message: String,
) -> std::io::Result<()> {
    conn.send(
        ServerFrame::Error {
            req_id,
            code,
            message,
        }
        .to_bytes()
        .into(),
    )
    .await
}

enum Admit {
    Yes,
    Refuse,
    Disconnect,
}

/// A token bucket: `rate` frames per second, bursts of twice that. A client
/// refused for as many frames again as its burst is disconnected.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refused: u32,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        let burst = f64::from(rate) * 2.0;
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            refused: 0,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> Admit {
        let now = Instant::now();
        let elapsed = now
            .saturating_duration_since(self.last)
            .min(Duration::from_secs(10));
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            Admit::Yes
        } else {
            self.refused += 1;
            if f64::from(self.refused) > self.burst {
                Admit::Disconnect
            } else {
                Admit::Refuse
            }
        }
    }
}
