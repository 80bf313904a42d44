//! The messaging fabric between Wyrm's processes, on NATS.
//!
//! Every role instance has a subject of its own under the cluster's
//! prefix ([`Address`]): `wyrm.<cluster>.gate.<id>` for what games send a
//! gate, `wyrm.<cluster>.up.<id>` for what a gate's clients send,
//! `.game.<id>`, `.routes.<id>`, `.answers.<id>`, `.swap.<id>` and
//! `.votes.<id>` between the node and a game in a process of its own, and `wyrm.<cluster>.beat` where
//! every process says, twice a second, that it is alive ([`Presence`],
//! [`Roster`]).
//!
//! What travels are the wire messages of `wyrm-wire`, **batched**: an
//! [`Outbox`] takes messages one at a time from any number of senders and
//! publishes everything waiting as one NATS message (a `Vec` of them,
//! encoded with the wire's version header), so a busy second is a few NATS
//! messages per destination, not one per frame, and an idle one costs
//! nothing — there is no timer: a batch is whatever piled up while the last
//! one was being published. [`Inbox`] decodes them again. NATS keeps the
//! order of one publisher's messages on one subject, so an outbox's
//! messages arrive in the order they were sent.
//!
//! The connection reconnects by itself, for ever, when the NATS server
//! goes away; messages published meanwhile wait in the client's buffer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

pub mod local;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why the fabric could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    /// The NATS server could not be reached.
    #[error("cannot connect to NATS at {url}: {reason}; check [cluster] nats and that nats-server is running")]
    Connect { url: String, reason: String },
    /// A subscription was refused.
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe { subject: String, reason: String },
}

/// A role instance's place on the fabric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// What games send gate `n` (its clients' frames).
    Gate(u16),
    /// What gate `n` sends the games (its clients' calls and moves).
    Up(u16),
    /// What the dispatcher sends game `n`, a game in a process of its own.
    Game(u16),
    /// What game `n` tells and asks the dispatcher about its entities.
    Routes(u16),
    /// The dispatcher's answers to game `n`'s questions.
    Answers(u16),
    /// A hot swap's offer and decision, from the node to game `n`.
    Swap(u16),
    /// Game `n`'s vote and report in a hot swap, to the node.
    Votes(u16),
}

impl Address {
    /// The subject's kind and number.
    fn parts(self) -> (&'static str, u16) {
        match self {
            Self::Gate(n) => ("gate", n),
            Self::Up(n) => ("up", n),
            Self::Game(n) => ("game", n),
            Self::Routes(n) => ("routes", n),
            Self::Answers(n) => ("answers", n),
            Self::Swap(n) => ("swap", n),
            Self::Votes(n) => ("votes", n),
        }
    }

    fn from_parts(kind: &str, n: u16) -> Option<Self> {
        Some(match kind {
            "gate" => Self::Gate(n),
            "up" => Self::Up(n),
            "game" => Self::Game(n),
            "routes" => Self::Routes(n),
            "answers" => Self::Answers(n),
            "swap" => Self::Swap(n),
            "votes" => Self::Votes(n),
            _ => return None,
        })
    }
}

/// A connection to the fabric of one cluster.
#[derive(Clone, Debug)]
pub struct Fabric {
    client: async_nats::Client,
    prefix: String,
    /// How long a process may go unheard before it is taken for gone.
    gone_after: Duration,
}

/// Largest NATS message an outbox publishes when the server does not say
/// (its default limit is 1 MiB).
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// How a process proves itself to the NATS server and checks the server:
/// all optional, for a NATS server that asks. (A user and password go in
/// the URL: `nats://user:pass@host:4222`.)
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// A NATS credentials file (`.creds`: the user's JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    /// Speak TLS, trusting the server's certificate if these CA
    /// certificates (PEM) sign it. A `tls://` URL asks for TLS too, then
    /// trusting the system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for a server that verifies
    /// its clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Fabric {
    /// Connects to the NATS server at `url` as `name` (shown by the server)
    /// for cluster `cluster`. Waits for the first connection; after it,
    /// reconnects by itself whenever the server goes away.
    pub async fn connect(url: &str, cluster: &str, name: &str) -> Result<Self, FabricError> {
        Self::connect_with(url, cluster, name, &Security::default()).await
    }

    /// [`connect`](Self::connect), with credentials and TLS.
    pub async fn connect_with(
        url: &str,
        cluster: &str,
        name: &str,
        security: &Security,
    ) -> Result<Self, FabricError> {
        let refused = |reason: String| FabricError::Connect {
            url: url.to_owned(),
            reason,
        };
        let mut options = async_nats::ConnectOptions::new();
        if let Some(creds) = &security.credentials {
            options = options.credentials_file(creds).await.map_err(|e| {
                refused(format!(
                    "cannot read the credentials file {}: {e}",
                    creds.display()
                ))
            })?;
        }
        if let Some(ca) = &security.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &security.client_cert {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        let url_for_logs = url.to_owned();
        let client = options
            .name(name)
            // Batches, not frames: a few thousand cover any burst a
            // subscriber's task falls behind by.
            .subscription_capacity(64 * 1024)
            .max_reconnects(None)
            .event_callback(move |event| {
                let url = url_for_logs.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => tracing::info!(%url, "NATS connected"),
                        async_nats::Event::Disconnected => {
                            tracing::warn!(%url, "NATS disconnected; reconnecting")
                        }
                        async_nats::Event::SlowConsumer(sid) => tracing::error!(
                            %url,
                            sid,
                            "NATS dropped messages for a subscription that fell behind"
                        ),
                        other => tracing::info!(%url, "NATS: {other}"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| refused(e.to_string()))?;
        Ok(Self {
            client,
            prefix: format!("wyrm.{cluster}"),
            gone_after: GONE_AFTER,
        })
    }

    /// Takes a process that was not heard for `gone_after` for gone (by
    /// default [`GONE_AFTER`]), and beats six times as often: a shorter
    /// time finds a dead process sooner, and takes one whose beats are late
    /// (a NATS server restarting, a machine that stalls) for gone sooner
    /// too. Every process of a cluster should use the same.
    pub fn with_gone_after(mut self, gone_after: Duration) -> Self {
        self.gone_after = gone_after;
        self
    }

    /// How often this process beats.
    pub fn beat_every(&self) -> Duration {
        self.gone_after / 6
    }

    /// The subject of `at`.
    pub fn subject(&self, at: Address) -> String {
        let (kind, n) = at.parts();
        format!("{}.{kind}.{n}", self.prefix)
    }

    /// The largest message the server takes.
    fn max_payload(&self) -> usize {
        match self.client.server_info().max_payload {
            0 => DEFAULT_MAX_PAYLOAD,
            n => n,
        }
    }

    /// An outbox to `to`: messages sent to it are published in batches by a
    /// task of its own, in the order sent. At most `capacity` wait; a sender
    /// past that waits for room. Each message's `K` (a ticket: bytes it
    /// counts against someone) is dropped once it is published.
    pub fn outbox<T, K>(&self, to: Address, capacity: usize) -> Outbox<T, K>
    where
        T: Serialize + Send + 'static,
        K: Send + 'static,
    {
        let (tx, rx) = flume::bounded::<(T, K)>(capacity);
        self.publish_from(to, rx);
        Outbox { tx }
    }

    /// Publishes what arrives on `rx` to `to` in batches, as an
    /// [`outbox`](Self::outbox) does, for a caller that already has a
    /// channel of its own kind: each `I` is a message and its ticket.
    pub fn publish_from<I, T, K>(&self, to: Address, rx: flume::Receiver<I>)
    where
        I: Into<(T, K)> + Send + 'static,
        T: Serialize + Send + 'static,
        K: Send + 'static,
    {
        let client = self.client.clone();
        let subject = self.subject(to);
        let max = self.max_payload();
        tokio::spawn(async move {
            while let Ok(first) = rx.recv_async().await {
                let (item, ticket) = first.into();
                let mut items = vec![item];
                let mut tickets = vec![ticket];
                while let Ok(next) = rx.try_recv() {
                    let (item, ticket) = next.into();
                    items.push(item);
                    tickets.push(ticket);
                    if items.len() >= MAX_BATCH {
                        break;
                    }
                }
                for payload in encode_batches(&items, max) {
                    if let Err(e) = client.publish(subject.clone(), payload).await {
                        tracing::error!(%subject, "NATS publish failed: {e}");
                    }
                }
                drop(tickets);
            }
        });
    }

    /// Messages sent to `at`, a batch at a time, decoded. A message that
    /// does not decode (another release of Wyrm) is logged and skipped.
    pub async fn inbox<T: DeserializeOwned>(&self, at: Address) -> Result<Inbox<T>, FabricError> {
        self.subscribe(self.subject(at)).await
    }

    /// Messages sent to every address of `like`'s kind (every gate's
    /// `Up`, every game's `Routes`), with the address each came to.
    pub async fn inbox_of_all<T: DeserializeOwned>(
        &self,
        like: Address,
    ) -> Result<Inbox<T>, FabricError> {
        let (kind, _) = like.parts();
        self.subscribe(format!("{}.{kind}.*", self.prefix)).await
    }

    async fn subscribe<T: DeserializeOwned>(
        &self,
        subject: String,
    ) -> Result<Inbox<T>, FabricError> {
        let sub =
            self.client
                .subscribe(subject.clone())
                .await
                .map_err(|e| FabricError::Subscribe {
                    subject: subject.clone(),
                    reason: e.to_string(),
                })?;
        self.settled(&subject).await;
        Ok(Inbox {
            sub,
            prefix: format!("{}.", self.prefix),
            _t: std::marker::PhantomData,
        })
    }

    /// Publishes what `presence` says six times per time a process may go
    /// unheard ([`BEAT`] by default), until the returned [`Beating`] is
    /// dropped.
    pub fn beat(&self, presence: Presence) -> Beating {
        let client = self.client.clone();
        let subject = format!("{}.beat", self.prefix);
        let payload = match wyrm_wire::encode(&presence) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::error!("cannot encode a heartbeat: {e}");
                Bytes::new()
            }
        };
        let beat = self.beat_every();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(beat);
            loop {
                every.tick().await;
                if client
                    .publish(subject.clone(), payload.clone())
                    .await
                    .is_err()
                {
                    // The client is closed: the process is stopping.
                    return;
                }
            }
        });
        Beating(task.abort_handle())
    }

    /// Who is alive: a [`Roster`] fed by everyone's heartbeats.
    pub async fn roster(&self) -> Result<Roster, FabricError> {
        let subject = format!("{}.beat", self.prefix);
        let sub = self.subscribe::<Presence>(subject).await?;
        Ok(Roster {
            sub,
            seen: HashMap::new(),
            gone_after: self.gone_after,
        })
    }

    /// Waits until the server has the subscriptions made so far, so that
    /// what anyone publishes from now on reaches them. (A flush only
    /// empties the client's buffer; the server takes a connection's
    /// messages in order, so hearing back a message sent to ourselves
    /// after them proves it has them.)
    async fn settled(&self, subject: &str) {
        let probe = self.client.new_inbox();
        let heard = async {
            let mut echo = self.client.subscribe(probe.clone()).await.ok()?;
            self.client.publish(probe, Bytes::new()).await.ok()?;
            echo.next().await
        };
        if tokio::time::timeout(SETTLE, heard)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            tracing::warn!(%subject, "NATS did not confirm a subscription within {SETTLE:?}");
        }
    }

    /// Waits until everything published so far has reached the server.
    pub async fn flush(&self) {
        if let Err(e) = self.client.flush().await {
            tracing::warn!("NATS flush failed: {e}");
        }
    }
}

/// How long subscribing waits for the server to confirm it.
const SETTLE: Duration = Duration::from_secs(10);

/// Most messages an outbox puts in one batch.
const MAX_BATCH: usize = 4096;

/// `items` as NATS messages of at most `max` bytes each: one if they fit,
/// else halves, and so on. An item too large alone is logged and dropped.
fn encode_batches<T: Serialize>(items: &[T], max: usize) -> Vec<Bytes> {
    match wyrm_wire::encode(&items) {
        Ok(bytes) if bytes.len() <= max => vec![Bytes::from(bytes)],
        Ok(bytes) if items.len() == 1 => {
            tracing::error!(
                bytes = bytes.len(),
                max,
                "a message is larger than NATS takes; dropped"
            );
            Vec::new()
        }
        Ok(_) => {
            let (a, b) = items.split_at(items.len() / 2);
            let mut out = encode_batches(a, max);
            out.extend(encode_batches(b, max));
            out
        }
        Err(e) => {
            tracing::error!("cannot encode a batch: {e}");
            Vec::new()
        }
    }
}

/// Where messages to one address are sent; cheap to clone.
pub struct Outbox<T, K = ()> {
    tx: flume::Sender<(T, K)>,
}

impl<T, K> Clone for Outbox<T, K> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

/// The outbox's task has stopped (the process is stopping).
#[derive(Debug, thiserror::Error)]
#[error("the fabric has stopped")]
pub struct Stopped;

impl<T, K> Outbox<T, K> {
    /// Queues `msg`, waiting for room.
    pub async fn send(&self, msg: T, ticket: K) -> Result<(), Stopped> {
        self.tx.send_async((msg, ticket)).await.map_err(|_| Stopped)
    }

    /// Queues `msg` from a thread outside the runtime, waiting for room.
    pub fn send_blocking(&self, msg: T, ticket: K) -> Result<(), Stopped> {
        self.tx.send((msg, ticket)).map_err(|_| Stopped)
    }
}

/// Batches of messages arriving at one subscription.
pub struct Inbox<T> {
    sub: async_nats::Subscriber,
    /// The cluster's prefix and a dot, to read addresses from subjects.
    prefix: String,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Inbox<T> {
    /// The next batch, with the address it was sent to; `None` once the
    /// connection is closed for good.
    pub async fn next(&mut self) -> Option<(Address, Vec<T>)> {
        loop {
            let msg = self.sub.next().await?;
            let Some(at) = self.address(&msg.subject) else {
                tracing::error!(subject = %msg.subject, "fabric message on an unknown subject skipped");
                continue;
            };
            match wyrm_wire::decode::<Vec<T>>(&msg.payload) {
                Ok(batch) => return Some((at, batch)),
                Err(e) => {
                    tracing::error!(subject = %msg.subject, "undecodable fabric message skipped: {e}")
                }
            }
        }
    }

    fn address(&self, subject: &str) -> Option<Address> {
        let (kind, n) = subject.strip_prefix(&self.prefix)?.split_once('.')?;
        Address::from_parts(kind, n.parse().ok()?)
    }
}

/// Heartbeats being published; dropping it stops them.
#[derive(Debug)]
pub struct Beating(tokio::task::AbortHandle);

impl Drop for Beating {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often a process says it is alive, by default.
pub const BEAT: Duration = Duration::from_millis(250);

/// A process is taken for gone after this long without a heartbeat, by
/// default ([`Fabric::with_gone_after`]).
pub const GONE_AFTER: Duration = Duration::from_millis(1500);

/// What a heartbeat says: which role instance, and which run of it (a
/// process that restarted under the same id is another run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Presence {
    pub role: Role,
    pub id: u16,
    pub run: u64,
}

/// The roles of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Gate,
    /// The process that runs the dispatcher (`wyrm serve` with `[cluster]`).
    Node,
    /// A game in a process of its own (`wyrm game`).
    Game,
}

/// A change in who is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A run of a role instance was heard from for the first time.
    Joined(Presence),
    /// A run was not heard from for [`GONE_AFTER`] (or the fabric's own
    /// setting), or another run of the
    /// same instance started.
    Left(Presence),
}

/// Who is alive, from the heartbeats.
pub struct Roster {
    sub: Inbox<Presence>,
    seen: HashMap<(Role, u16), (Presence, Instant)>,
    gone_after: Duration,
}

impl Roster {
    /// The next change; `None` once the connection is closed for good.
    pub async fn next(&mut self) -> Option<Change> {
        let mut check = tokio::time::interval(self.gone_after / 12);
        loop {
            if let Some(gone) = self.overdue() {
                return Some(Change::Left(gone));
            }
            tokio::select! {
                beat = self.sub.sub.next() => {
                    let beat = beat?;
                    let Ok(p) = wyrm_wire::decode::<Presence>(&beat.payload) else {
                        continue;
                    };
                    let now = Instant::now();
                    match self.seen.insert((p.role, p.id), (p, now)) {
                        Some((old, _)) if old.run == p.run => {}
                        Some((old, _)) => {
                            // Another run under the same id: the old one
                            // left first. The new one joins at its next beat.
                            self.seen.remove(&(p.role, p.id));
                            return Some(Change::Left(old));
                        }
                        None => return Some(Change::Joined(p)),
                    }
                }
                _ = check.tick() => {}
            }
        }
    }

    fn overdue(&mut self) -> Option<Presence> {
        let now = Instant::now();
        let key = self
            .seen
            .iter()
            .find(|(_, (_, at))| now.duration_since(*at) > self.gone_after)
            .map(|(k, _)| *k)?;
        self.seen.remove(&key).map(|(p, _)| p)
    }
}
