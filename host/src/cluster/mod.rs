//! The cluster: Wyrm's roles in processes of their own, on this machine or
//! others, talking over the fabric (NATS, `wyrm-fabric`).
//!
//! - `wyrm serve` with `[cluster] nats` is the cluster's **node**: its
//!   dispatcher routes for every game and gate, its own gate is gate 0 and
//!   its own games are games 0 to `workers - 1` ([`serve_node`]).
//! - `wyrm gate` runs a gate alone (`gates.rs`): what its clients say goes
//!   to the node's dispatcher on its `up` subject, and the games' output
//!   for them comes on its `gate` subject.
//! - `wyrm game` runs one game alone (`games.rs`): the node's dispatcher
//!   sends it what is routed to it on its `game` subject, it tells and asks
//!   the dispatcher about its entities on its `routes` subject, and sends
//!   its output to each gate's subject itself.
//! - A hot swap on the node is one for the cluster (`swaps.rs`): every game
//!   votes, and all switch or none does.
//!
//! `wyrm cluster` starts all of them on this machine (`launch.rs`).
//!
//! Every process beats; one not heard for `[cluster] lost_after_ms` (1.5 s
//! by default) is gone, and each role says
//! what that means for it.

mod games;
mod gates;
mod launch;
mod swaps;

pub use games::GameProcess;
pub use gates::GateProcess;
pub use launch::Launched;
pub use swaps::RemoteSwaps;
pub(crate) use swaps::REMOTE_WAIT;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use wyrm_dispatcher::Received;
use wyrm_fabric::{Beating, Change, Fabric, Presence, Role};
use wyrm_game::msg::{Dispatcher, Gates, HeldBatch, Inbox};
use wyrm_wire::{GameId, GateId};

use crate::config::Config;

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
    let security = cfg.nats_security();
    let gone_after = std::time::Duration::from_millis(cfg.cluster.lost_after_ms);
    Ok(
        Fabric::connect_with(url, &cfg.cluster.name, name, &security)
            .await?
            .with_gone_after(gone_after),
    )
}

/// What the node runs for the rest of the cluster; its tasks end when
/// aborted, its heartbeats when dropped.
pub(crate) struct NodeLinks {
    pub tasks: Vec<JoinHandle<()>>,
    pub _beating: Beating,
    /// Swaps offered to the remote games.
    pub swaps: std::sync::Arc<RemoteSwaps>,
}

/// Makes `wyrm serve` the cluster's node: takes what every remote gate's
/// clients say into `dispatcher`, sends the games' output to each gate
/// that joins through `gates`, relays what is routed to each remote game
/// (`relays`, read from their inboxes here) and does what those games tell
/// the dispatcher. `own_gate` takes the remote games' output for gate 0.
pub(crate) async fn serve_node(
    cfg: &Config,
    dispatcher: Dispatcher,
    gates: Gates,
    own_gate: flume::Sender<HeldBatch>,
    relays: Vec<(GameId, Inbox)>,
) -> anyhow::Result<NodeLinks> {
    let fabric = connect(cfg, &format!("{} node", cfg.server.name)).await?;
    let links = gates::GateLinks::new(fabric.clone(), gates);
    let remote_games = relays.iter().map(|(g, _)| *g).collect();
    let (swaps, swap_task) =
        RemoteSwaps::start(fabric.clone(), dispatcher.clone(), remote_games).await?;
    let mut tasks = vec![
        gates::take_uplinks(&fabric, dispatcher.clone(), links.clone()).await?,
        swap_task,
    ];
    let run = run_id();
    tasks.extend(games::serve_games(&fabric, dispatcher.clone(), relays, own_gate, run).await?);
    let mut roster = fabric.roster().await?;
    let beating = fabric.beat(Presence {
        role: Role::Node,
        id: 0,
        run,
    });
    // A game that has not reported within `lost_after_ms` of hearing this
    // node is not running: no message waits for it longer.
    let (waiting, lost_after) = (dispatcher.clone(), cfg.cluster.lost_after_ms);
    tasks.push(tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(lost_after)).await;
        waiting.stop_awaiting();
    }));
    tasks.push(tokio::spawn(async move {
        while let Some(change) = roster.next().await {
            match change {
                Change::Joined(p) if p.role == Role::Gate => {
                    tracing::info!(gate = p.id, "gate joined");
                    links.ensure(GateId(p.id));
                }
                Change::Left(p) if p.role == Role::Gate => {
                    let gate = GateId(p.id);
                    links.remove(gate);
                    dispatcher.gate_lost(gate).await;
                }
                // It says itself when it is ready (`RouteOp::Up`).
                Change::Joined(p) if p.role == Role::Game => {
                    tracing::info!(game = p.id, "game joined")
                }
                Change::Left(p) if p.role == Role::Game => {
                    let (entities, clients) = dispatcher.game_lost(GameId(p.id));
                    tracing::warn!(
                        game = p.id,
                        entities,
                        clients = clients.len(),
                        "game lost: its entities are loaded again on the games left, with their players; players whose entity cannot come back are let go, to log in again"
                    );
                    let release = wyrm_wire::GateBatch {
                        ops: clients
                            .into_iter()
                            .map(|client| wyrm_wire::ToGate::Release { client })
                            .collect(),
                        tick: false,
                    };
                    links.gates().send(HeldBatch {
                        batch: release,
                        held: Vec::new(),
                    });
                }
                _ => {}
            }
        }
    }));
    Ok(NodeLinks {
        tasks,
        _beating: beating,
        swaps,
    })
}

/// Waits until a process of `role` is heard.
async fn hear(roster: &mut wyrm_fabric::Roster, role: Role) -> anyhow::Result<()> {
    loop {
        match roster.next().await {
            Some(Change::Joined(p)) if p.role == role => return Ok(()),
            Some(_) => {}
            None => anyhow::bail!("the NATS connection closed before the cluster's node was heard"),
        }
    }
}

/// Fails if another run of `role` `id` is heard beating within two beats
/// of `since` (when `roster` began to listen): two processes in one place
/// would each take the other's work. Called before this process beats,
/// so that the node does not take the running one for a restarted one
/// and its work for lost. What else the roster says meanwhile goes to
/// `other`.
async fn ensure_alone(
    roster: &mut wyrm_fabric::Roster,
    (role, id): (Role, u16),
    since: tokio::time::Instant,
    beat: std::time::Duration,
    mut other: impl FnMut(Change),
) -> anyhow::Result<()> {
    let until = since + beat * 2;
    loop {
        match tokio::time::timeout_at(until, roster.next()).await {
            Err(_) => return Ok(()),
            Ok(None) => anyhow::bail!("the NATS connection closed"),
            Ok(Some(Change::Joined(p))) if p.role == role && p.id == id => anyhow::bail!(
                "another process is running as {role:?} {id} (its heartbeat is heard): stop it first, or give this one another --id"
            ),
            Ok(Some(change)) => other(change),
        }
    }
}

/// Reads `inbox` on a thread of its own until it closes, handing each
/// message to `forward` as it comes (moves too: a relay's inbox wakes it
/// for every message); stops when `forward` says so.
fn drain<M: wyrm_dispatcher::Routed>(
    name: String,
    inbox: wyrm_dispatcher::Inbox<M>,
    mut forward: impl FnMut(M) -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || loop {
        let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        match inbox.recv_deadline(far) {
            Received::Message(m) => {
                if !forward(m) {
                    return;
                }
            }
            Received::Timeout => {}
            Received::Closed => return,
        }
    })
}
