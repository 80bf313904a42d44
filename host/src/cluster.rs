//! Gates in other processes: a `wyrm serve` with `[cluster] nats` takes
//! clients through gates that run as processes of their own (`wyrm gate`,
//! on this machine or others), over the fabric (NATS, `wyrm-fabric`).
//!
//! - A gate sends what its clients say on its `up` subject, batched; the
//!   server routes each message with its dispatcher as if its own gate had
//!   received it.
//! - The games' output is split by gate ([`Gates`]); a gate that joins gets
//!   an outbox on its `gate` subject, fed from a channel like the server's
//!   own gate's, and frames for many of its clients travel once.
//! - Every process beats; a gate not heard from for 3 s is gone: its clients
//!   end as if they had disconnected, and can log in again through another
//!   gate. A gate waits to hear the server before it takes clients, and
//!   ends every connection when the server is not heard for 3 s (its
//!   players' entities went with it) and every new one until it is heard
//!   again: they log in again once it is back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use wyrm_dispatcher::{Charge, GameStopped, Upstream};
use wyrm_fabric::{Address, Beating, Change, Fabric, Outbox, Presence, Role};
use wyrm_game::msg::{Dispatcher, GateBatch, Gates, HeldBatch, ToGame};
use wyrm_gate::{self as gate, net, ConnContext, Gate, Registration};
use wyrm_wire::{ClientIds, GateId};

use crate::config::Config;

/// Batches of output waiting for a remote gate's outbox before games wait.
const GATE_QUEUE: usize = 256;
/// Client messages a gate holds for the fabric before its connections wait.
const UPLINK_QUEUE: usize = 16 * 1024;

/// A number for this run of a process, so that a restart under the same
/// role and id is told apart.
fn run_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Connects to `[cluster] nats` as `name`.
async fn connect(cfg: &Config, name: &str) -> anyhow::Result<Fabric> {
    let url = cfg
        .cluster
        .nats
        .as_deref()
        .context("[cluster] nats is not set: the NATS server's URL, nats://host:4222")?;
    Ok(Fabric::connect(url, &cfg.cluster.name, name).await?)
}

/// What a server runs for the gates of other processes; its tasks end when
/// aborted, its heartbeats when dropped.
pub(crate) struct RemoteGates {
    pub tasks: Vec<JoinHandle<()>>,
    pub _beating: Beating,
}

/// Takes what every remote gate's clients say into `dispatcher`, and sends
/// the games' output to each gate that joins through `gates`.
pub(crate) async fn serve_remote_gates(
    cfg: &Config,
    dispatcher: Dispatcher,
    gates: Gates,
) -> anyhow::Result<RemoteGates> {
    let fabric = connect(cfg, &format!("{} server", cfg.server.name)).await?;
    let mut uplinks = fabric.inbox_of_all_up::<ToGame>().await?;
    let mut roster = fabric.roster().await?;
    let beating = fabric.beat(Presence {
        role: Role::Node,
        id: 0,
        run: run_id(),
    });
    let links = GateLinks { fabric, gates };
    let up = {
        let (links, dispatcher) = (links.clone(), dispatcher.clone());
        tokio::spawn(async move {
            while let Some((from, batch)) = uplinks.next().await {
                let Address::Up(g) = from else { continue };
                links.ensure(GateId(g));
                for msg in batch {
                    if dispatcher.to_game(msg).await.is_err() {
                        return;
                    }
                }
            }
        })
    };
    let membership = tokio::spawn(async move {
        while let Some(change) = roster.next().await {
            match change {
                Change::Joined(p) if p.role == Role::Gate => {
                    tracing::info!(gate = p.id, "gate joined");
                    links.ensure(GateId(p.id));
                }
                Change::Left(p) if p.role == Role::Gate => {
                    let gate = GateId(p.id);
                    links.gates.set(gate, None);
                    dispatcher.gate_lost(gate).await;
                }
                _ => {}
            }
        }
    });
    Ok(RemoteGates {
        tasks: vec![up, membership],
        _beating: beating,
    })
}

/// Ways out to the remote gates.
#[derive(Clone)]
struct GateLinks {
    fabric: Fabric,
    gates: Gates,
}

impl GateLinks {
    /// Gives gate `gate` a way out if it has none: a channel like the
    /// server's own gate's, published from on its subject in batches. The
    /// frames' charges are dropped once published.
    fn ensure(&self, gate: GateId) {
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
        tracing::info!(gate = id, cluster = %cfg.cluster.name, "waiting to hear the cluster's server");
        loop {
            match roster.next().await {
                Some(Change::Joined(p)) if p.role == Role::Node => break,
                Some(_) => {}
                None => anyhow::bail!("the NATS connection closed before the server was heard"),
            }
        }
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
        let listeners = gate::listen(&cfg.endpoints(), ctx, admission, ids).await?;
        tasks.extend(listeners.tasks);
        tracing::info!(
            gate = id,
            websocket = ?listeners.websocket,
            tcp = ?listeners.tcp,
            kcp = ?listeners.kcp,
            "gate started"
        );
        Ok(Self {
            websocket: listeners.websocket,
            tcp: listeners.tcp,
            kcp: listeners.kcp,
            tasks,
            _beating: beating,
        })
    }

    /// Stops listening and serving; its clients are disconnected.
    pub fn shutdown(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}
