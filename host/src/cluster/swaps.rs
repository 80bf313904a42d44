//! One hot swap for the whole cluster: the node's [`Swapper`] offers the
//! new version to each game in a process of its own as it hands it to its
//! own games, counts their votes with its own games' and sends every game
//! the one decision — all switch, or none does — then adds up every
//! game's report into one.
//!
//! The component travels on the game's `swap` subject in parts (NATS
//! takes 1 MiB a message by default, a JavaScript component is 12 MB);
//! the game compiles and instantiates it off its game thread, and hands
//! its game a `SwapRequest` as the node does its own. Its vote and its
//! report come back on its `votes` subject. A game that does not vote in
//! time refuses, so the swap is aborted everywhere.
//!
//! [`Swapper`]: crate::Swapper

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use wyrm_fabric::{Address, Fabric, Outbox};
use wyrm_game::msg::GameInput;
use wyrm_game::{Ballot, Decision, InternalSender, SwapReport, SwapRequest, World};
use wyrm_runtime::PluginRuntime;
use wyrm_wire::GameId;

/// The largest part of a component one message carries.
const PART: usize = 512 * 1024;
/// Longest the node waits for a remote game's vote (it compiles the
/// component first: seconds for a large one) or its report.
pub(crate) const REMOTE_WAIT: Duration = Duration::from_secs(120);

/// What node and game say to each other in a swap.
#[derive(Debug, Serialize, Deserialize)]
enum SwapMsg {
    /// Part `index` of `total` of the component offered in swap `swap`.
    Part {
        swap: u64,
        plugin: String,
        dry_run: bool,
        index: u32,
        total: u32,
        bytes: Vec<u8>,
    },
    /// Every game voted yes (`None`), or why not.
    Decide { swap: u64, abort: Option<String> },
    /// A game can switch, or why it cannot.
    Vote {
        swap: u64,
        game: u16,
        ready: Result<(), String>,
    },
    /// A game's report once it switched or stayed: JSON, as the admin
    /// endpoint sends it (its outcome is an internally tagged enum, which
    /// the wire's encoding does not do).
    Report {
        swap: u64,
        game: u16,
        report: String,
    },
}

/// The votes of one swap, as its `Swapper` counts them.
pub(crate) type Votes = tokio::sync::mpsc::UnboundedSender<(usize, Result<(), String>)>;

/// A swap the node waits on remote games for.
struct Pending {
    votes: Votes,
    reports: HashMap<u16, tokio::sync::oneshot::Sender<SwapReport>>,
}

/// The node's side: offers swaps to the cluster's remote games.
pub struct RemoteSwaps {
    fabric: Fabric,
    dispatcher: wyrm_game::msg::Dispatcher,
    /// The remote games, by number.
    games: Vec<GameId>,
    pending: Mutex<HashMap<u64, Pending>>,
    next: AtomicU64,
    outboxes: Mutex<HashMap<u16, Outbox<SwapMsg>>>,
}

/// A swap offered to the remote games: their reports to come, and the way
/// to tell them the decision.
pub(crate) struct Offered {
    pub games: usize,
    pub reports: Vec<tokio::sync::oneshot::Receiver<SwapReport>>,
    pub swap: u64,
    to: Vec<GameId>,
}

impl RemoteSwaps {
    /// Listens for the votes and reports of `games` (the remote games).
    pub(crate) async fn start(
        fabric: Fabric,
        dispatcher: wyrm_game::msg::Dispatcher,
        games: Vec<GameId>,
    ) -> anyhow::Result<(Arc<Self>, JoinHandle<()>)> {
        let mut inbox = fabric.inbox_of_all::<SwapMsg>(Address::Votes(0)).await?;
        let this = Arc::new(Self {
            fabric,
            dispatcher,
            games,
            pending: Mutex::default(),
            next: AtomicU64::new(run_start()),
            outboxes: Mutex::default(),
        });
        let me = this.clone();
        let task = tokio::spawn(async move {
            while let Some((_, msgs)) = inbox.next().await {
                for msg in msgs {
                    me.heard(msg);
                }
            }
        });
        Ok((this, task))
    }

    fn heard(&self, msg: SwapMsg) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match msg {
            SwapMsg::Vote { swap, game, ready } => {
                if let Some(p) = pending.get(&swap) {
                    let _ = p.votes.send((usize::from(game), ready));
                }
            }
            SwapMsg::Report { swap, game, report } => {
                if let Some(p) = pending.get_mut(&swap) {
                    let Some(to) = p.reports.remove(&game) else {
                        return;
                    };
                    match serde_json::from_str(&report) {
                        Ok(report) => {
                            let _ = to.send(report);
                        }
                        Err(e) => tracing::error!(game, "an unreadable swap report: {e}"),
                    }
                }
            }
            other => tracing::debug!(?other, "not for the node; ignored"),
        }
    }

    fn outbox(&self, game: GameId) -> Outbox<SwapMsg> {
        let mut outboxes = self.outboxes.lock().unwrap_or_else(|e| e.into_inner());
        outboxes
            .entry(game.0)
            .or_insert_with(|| self.fabric.outbox(Address::Swap(game.0), 64))
            .clone()
    }

    /// Offers `wasm` as plugin `plugin`'s new version to every remote game
    /// that is up; their votes go to `votes`.
    pub(crate) async fn offer(
        &self,
        plugin: &str,
        wasm: &[u8],
        dry_run: bool,
        votes: Votes,
    ) -> Offered {
        let swap = self.next.fetch_add(1, Ordering::Relaxed);
        let to: Vec<GameId> = self
            .games
            .iter()
            .copied()
            .filter(|g| self.dispatcher.is_game_up(*g))
            .collect();
        let mut reports = Vec::new();
        let mut waiting = HashMap::new();
        for g in &to {
            let (tx, rx) = tokio::sync::oneshot::channel();
            waiting.insert(g.0, tx);
            reports.push(rx);
        }
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                swap,
                Pending {
                    votes,
                    reports: waiting,
                },
            );
        let parts: Vec<&[u8]> = wasm.chunks(PART).collect();
        let total = parts.len() as u32;
        for g in &to {
            let out = self.outbox(*g);
            for (index, bytes) in parts.iter().enumerate() {
                let part = SwapMsg::Part {
                    swap,
                    plugin: plugin.to_owned(),
                    dry_run,
                    index: index as u32,
                    total,
                    bytes: bytes.to_vec(),
                };
                // A game whose outbox closed does not vote: the swap waits
                // for it, then aborts.
                let _ = out.send(part, ()).await;
            }
        }
        Offered {
            games: to.len(),
            reports,
            swap,
            to,
        }
    }

    /// Tells the games of `offered` the decision.
    pub(crate) async fn decide(&self, offered: &Offered, decision: &Decision) {
        let abort = match decision {
            Decision::Commit => None,
            Decision::Abort(why) => Some(why.clone()),
        };
        for g in &offered.to {
            let msg = SwapMsg::Decide {
                swap: offered.swap,
                abort: abort.clone(),
            };
            let _ = self.outbox(*g).send(msg, ()).await;
        }
    }

    /// Forgets swap `swap` (ended, whether or not every report came).
    pub(crate) fn forget_swap(&self, swap: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&swap);
    }
}

/// Swap numbers start from the clock, so that a restarted node's swaps are
/// not taken for an earlier run's.
fn run_start() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

/// The game's side: takes the node's offers, has its game swap as the
/// node's own do, and sends back its vote and its report.
pub(super) async fn serve_swaps(
    fabric: &Fabric,
    game: GameId,
    runtime: Arc<PluginRuntime>,
    inbox: InternalSender,
) -> anyhow::Result<JoinHandle<()>> {
    let mut offers = fabric.inbox::<SwapMsg>(Address::Swap(game.0)).await?;
    let out: Outbox<SwapMsg> = fabric.outbox(Address::Votes(game.0), 64);
    Ok(tokio::spawn(async move {
        // The parts of the offer being received, and the decisions the
        // games' swaps wait for.
        let mut parts: Vec<u8> = Vec::new();
        let mut decisions: HashMap<u64, crossbeam_channel::Sender<Decision>> = HashMap::new();
        while let Some((_, msgs)) = offers.next().await {
            for msg in msgs {
                match msg {
                    SwapMsg::Part {
                        swap,
                        plugin,
                        dry_run,
                        index,
                        total,
                        bytes,
                    } => {
                        if index == 0 {
                            parts.clear();
                        }
                        parts.extend_from_slice(&bytes);
                        if index + 1 < total {
                            continue;
                        }
                        let wasm = std::mem::take(&mut parts);
                        let (decide, decision) = crossbeam_channel::bounded(1);
                        decisions.insert(swap, decide);
                        let offer = Offer {
                            swap,
                            game,
                            plugin,
                            dry_run,
                            wasm,
                        };
                        tokio::spawn(offer.run(
                            runtime.clone(),
                            inbox.clone(),
                            out.clone(),
                            decision,
                        ));
                    }
                    SwapMsg::Decide { swap, abort } => {
                        if let Some(d) = decisions.remove(&swap) {
                            let _ = d.try_send(match abort {
                                None => Decision::Commit,
                                Some(why) => Decision::Abort(why),
                            });
                        }
                    }
                    other => tracing::debug!(?other, "not for a game; ignored"),
                }
            }
        }
    }))
}

/// A swap offered to this game.
struct Offer {
    swap: u64,
    game: GameId,
    plugin: String,
    dry_run: bool,
    wasm: Vec<u8>,
}

impl Offer {
    /// Loads the component, has the game swap, and reports back.
    async fn run(
        self,
        runtime: Arc<PluginRuntime>,
        inbox: InternalSender,
        out: Outbox<SwapMsg>,
        decision: crossbeam_channel::Receiver<Decision>,
    ) {
        let Self {
            swap,
            game,
            plugin,
            dry_run,
            wasm,
        } = self;
        let name = plugin.clone();
        let prepared = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let code = runtime.load_bytes::<World>(&name, &wasm)?;
            let instance = code.instantiate()?;
            Ok((code, instance))
        })
        .await;
        let report_msg = |report: &SwapReport| SwapMsg::Report {
            swap,
            game: game.0,
            report: serde_json::to_string(report).unwrap_or_default(),
        };
        let refuse =
            |reason: String| report_msg(&SwapReport::refused(&plugin, "", "", dry_run, reason));
        let (code, instance) = match prepared {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let why = format!("the new component does not load: {e:#}");
                let vote = SwapMsg::Vote {
                    swap,
                    game: game.0,
                    ready: Err(why.clone()),
                };
                let _ = out.send(vote, ()).await;
                let _ = out.send(refuse(why), ()).await;
                return;
            }
            Err(e) => {
                let why = format!("loading the new component failed: {e}");
                let _ = out.send(refuse(why), ()).await;
                return;
            }
        };
        let (votes_tx, mut votes) = tokio::sync::mpsc::unbounded_channel();
        let (reply, report) = tokio::sync::oneshot::channel();
        let req = SwapRequest {
            plugin: plugin.clone(),
            code,
            instance,
            dry_run,
            reply,
            vote: Ballot {
                game: usize::from(game.0),
                votes: votes_tx,
            },
            decision,
        };
        if inbox.send(GameInput::Swap(Box::new(req))).is_err() {
            let _ = out.send(refuse("the game has stopped".into()), ()).await;
            return;
        }
        if let Some((_, ready)) = votes.recv().await {
            let vote = SwapMsg::Vote {
                swap,
                game: game.0,
                ready,
            };
            let _ = out.send(vote, ()).await;
        }
        let msg = match report.await {
            Ok(report) => report_msg(&report),
            Err(_) => refuse("the game stopped during the swap".into()),
        };
        let _ = out.send(msg, ()).await;
    }
}
