//! Gates in processes of their own (`wyrm gate`), and the node's side of
//! them.
//!
//! - A gate sends what its clients say on its `up` subject, batched; the
//!   node routes each message with its dispatcher as if its own gate had
//!   received it.
//! - The games' output is split by gate ([`Gates`]); a gate that joins gets
//!   an outbox on its `gate` subject, fed from a channel like the node's
//!   own gate's, and frames for many of its clients travel once.
//! - A gate not heard from for `[cluster] lost_after_ms` is gone: its
//!   clients end as if they had
//!   disconnected, and can log in again through another gate. A gate waits
//!   to hear the node before it takes clients, and ends every connection
//!   when the node is not heard for as long (its players' entities went with
//!   it) and every new one until it is heard again: they log in again once
//!   it is back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;
use wyrm_dispatcher::{Charge, GameStopped, Upstream};
use wyrm_fabric::{Address, Beating, Change, Fabric, Outbox, Presence, Role};
use wyrm_game::msg::{Dispatcher, GateBatch, Gates, HeldBatch, ToGame};
use wyrm_gate::{self as gate, net, ConnContext, Gate, Registration};
use wyrm_wire::{ClientIds, GateId};

use super::{connect, hear, run_id};
use crate::config::Config;

/// Batches of output waiting for a remote gate's outbox before games wait.
const GATE_QUEUE: usize = 256;
/// Client messages a gate holds for the fabric before its connections wait.
const UPLINK_QUEUE: usize = 16 * 1024;

/// Takes what every remote gate's clients say into `dispatcher`; a gate
/// heard from gets a way out through `links` if it had none.
pub(super) async fn take_uplinks(
    fabric: &Fabric,
    dispatcher: Dispatcher,
    links: GateLinks,
) -> anyhow::Result<JoinHandle<()>> {
    let mut uplinks = fabric.inbox_of_all::<ToGame>(Address::Up(0)).await?;
    Ok(tokio::spawn(async move {
        while let Some((from, batch)) = uplinks.next().await {
            let Address::Up(g) = from else { continue };
            links.ensure(GateId(g));
            for msg in batch {
                if dispatcher.to_game(msg).await.is_err() {
                    return;
                }
            }
        }
    }))
}

/// Ways out to the remote gates.
#[derive(Clone)]
pub(super) struct GateLinks {
    fabric: Fabric,
    gates: Gates,
}

impl GateLinks {
    pub(super) fn new(fabric: Fabric, gates: Gates) -> Self {
        Self { fabric, gates }
    }

    /// The gates output goes to.
    pub(super) fn gates(&self) -> Gates {
        self.gates.clone()
    }

    /// Gate `gate` is gone: what is addressed to its clients is dropped.
    pub(super) fn remove(&self, gate: GateId) {
        self.gates.set(gate, None);
    }

    /// Gives gate `gate` a way out if it has none: a channel like the
    /// server's own gate's, published from on its subject in batches. The
    /// frames' charges are dropped once published.
    pub(super) fn ensure(&self, gate: GateId) {
        if self.gates.has(gate) {
            return;
        }
        let (tx, rx) = flume::bounded::<HeldBatch>(GATE_QUEUE);
        self.fabric
            .publish_from::<_, GateBatch, Vec<Charge>>(Address::Gate(gate.0), rx);
        self.gates.set(gate, Some(tx));
    }
}

/// A gate's way to the games: its outbox on the fabric, while the server
/// is heard. While it is not, what a client says would reach no one (NATS
/// keeps nothing for a subscriber that is not there), so the connection
/// ends as it would if the games had stopped, and the client can try again.
#[derive(Clone)]
struct FabricUpstream {
    outbox: Outbox<ToGame>,
    server_heard: Arc<AtomicBool>,
}

impl Upstream for FabricUpstream {
    async fn to_game(&self, msg: ToGame) -> Result<(), GameStopped> {
        if !self.server_heard.load(Ordering::Relaxed) {
            return Err(GameStopped);
        }
        self.outbox.send(msg, ()).await.map_err(|_| GameStopped)
    }
}

/// `wyrm gate`: a gate of its own, in a process of its own — listeners and
/// the client registry, its clients' messages sent to the cluster's server
/// and the server's output for them taken from the fabric.
pub struct GateProcess {
    /// Where WebSocket (and the web page) listen, if enabled.
    pub websocket: Option<SocketAddr>,
    /// Where TCP listens, if enabled.
    pub tcp: Option<SocketAddr>,
    /// Where KCP listens, if enabled.
    pub kcp: Option<SocketAddr>,
    /// Where TCP over TLS listens, if enabled.
    pub tcp_tls: Option<SocketAddr>,
    /// Where WebSocket over TLS listens, if enabled.
    pub websocket_tls: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    _beating: Beating,
}

impl GateProcess {
    /// Joins the cluster as gate `[cluster] gate` (1 or more), waits until
    /// the cluster's server is heard, then listens.
    pub async fn start(cfg: Config) -> anyhow::Result<Self> {
        let id = cfg.cluster.gate;
        anyhow::ensure!(
            id >= 1,
            "[cluster] gate must be 1 or more for `wyrm gate` (0 is the server's own gate), and different for each gate"
        );
        let fabric = connect(&cfg, &format!("{} gate {id}", cfg.server.name)).await?;
        let mut roster = fabric.roster().await?;
        tracing::info!(gate = id, cluster = %cfg.cluster.name, "waiting to hear the cluster's node");
        hear(&mut roster, Role::Node).await?;
        let (out_tx, out_rx) = flume::bounded(GATE_QUEUE);
        let (registrations_tx, registrations) = flume::bounded(4096);
        let mut tasks = vec![tokio::spawn(Gate::new(registrations, out_rx).run())];
        // The server gone, its players' entities are gone with it: their
        // connections end, so they come back to a server that knows them.
        let release = registrations_tx.clone();
        let server_heard = Arc::new(AtomicBool::new(true));
        let heard = server_heard.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(change) = roster.next().await {
                match change {
                    Change::Left(p) if p.role == Role::Node => {
                        heard.store(false, Ordering::Relaxed);
                        tracing::warn!(
                            gate = id,
                            "the cluster's server is gone: disconnecting this gate's players"
                        );
                        if release.send_async(Registration::ReleaseAll).await.is_err() {
                            return;
                        }
                    }
                    Change::Joined(p) if p.role == Role::Node => {
                        heard.store(true, Ordering::Relaxed);
                        tracing::info!(gate = id, "the cluster's server is back");
                    }
                    _ => {}
                }
            }
        }));
        let mut downlink = fabric.inbox::<GateBatch>(Address::Gate(id)).await?;
        tasks.push(tokio::spawn(async move {
            while let Some((_, batches)) = downlink.next().await {
                for batch in batches {
                    let out = HeldBatch {
                        batch,
                        held: Vec::new(),
                    };
                    if out_tx.send_async(out).await.is_err() {
                        return;
                    }
                }
            }
        }));
        let beating = fabric.beat(Presence {
            role: Role::Gate,
            id,
            run: run_id(),
        });
        let ctx = ConnContext {
            gate: registrations_tx,
            upstream: FabricUpstream {
                outbox: fabric.outbox(Address::Up(id), UPLINK_QUEUE),
                server_heard,
            },
            limits: cfg.conn_limits(),
        };
        let admission =
            net::Admission::new(cfg.net.max_connections, cfg.net.max_connections_per_address);
        // Past every id an earlier run of this gate could have given.
        let ids = Arc::new(ClientIds::starting_at(GateId(id), run_id()));
        let tls = cfg.tls()?;
        if let Some((tls, _)) = &tls {
            let every = std::time::Duration::from_millis(cfg.tls.reload_interval_ms);
            tasks.push(tls.watch(every));
        }
        let tls = tls.map(|(tls, _)| tls);
        let listeners = gate::listen(&cfg.endpoints(tls), ctx, admission, ids).await?;
        tasks.extend(listeners.tasks);
        tracing::info!(
            gate = id,
            websocket = ?listeners.websocket,
            tcp = ?listeners.tcp,
            kcp = ?listeners.kcp,
            tcp_tls = ?listeners.tcp_tls,
            websocket_tls = ?listeners.websocket_tls,
            "gate started"
        );
        Ok(Self {
            websocket: listeners.websocket,
            tcp: listeners.tcp,
            kcp: listeners.kcp,
            tcp_tls: listeners.tcp_tls,
            websocket_tls: listeners.websocket_tls,
            tasks,
            _beating: beating,
        })
    }

    /// Stops listening and serving; its clients are disconnected.
    pub fn shutdown(self) {}
}

impl Drop for GateProcess {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
