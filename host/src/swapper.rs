//! Hot swap across every game of the process, and of the cluster: the
//! `Swapper` compiles the new version once, instantiates it for each game
//! off the game threads, hands each game its instance (and offers it to
//! each game in a process of its own, `cluster/swaps.rs`) and commits only
//! when every game has voted yes (see `wyrm_game`'s `swap.rs` for a game's
//! side).

use std::sync::Arc;

use crate::cluster::RemoteSwaps;

use wyrm_game::msg::GameInput;
use wyrm_game::{Ballot, Decision, InternalSender, SwapReport, SwapRequest, World};
use wyrm_runtime::PluginRuntime;

/// What a running server offers its admin endpoint and `wyrm dev`: a handle
/// that can swap plugins.
#[derive(Clone)]
pub struct Swapper {
    pub(crate) games: Arc<[InternalSender]>,
    pub(crate) runtime: Arc<PluginRuntime>,
    pub(crate) plugin_names: Arc<[String]>,
    /// The cluster's games in processes of their own, if any.
    pub(crate) remote: Option<Arc<RemoteSwaps>>,
}

impl Swapper {
    /// Replaces plugin `plugin` with the component `wasm` while the server
    /// runs. Compiling and instantiating happen off the game thread; the
    /// game pauses only to move private state. Every failure, including a
    /// component that does not load, comes back as a refused report.
    pub async fn swap(&self, plugin: &str, wasm: Vec<u8>, dry_run: bool) -> SwapReport {
        if !self.plugin_names.iter().any(|n| n == plugin) {
            let reason = format!(
                "no plugin named {plugin:?} (loaded: {})",
                self.plugin_names.join(", ")
            );
            return SwapReport::refused(plugin, "", "", dry_run, reason);
        }
        let refused = |reason: String| SwapReport::refused(plugin, "", "", dry_run, reason);
        let (runtime, name, n) = (self.runtime.clone(), plugin.to_owned(), self.games.len());
        let wasm = Arc::new(wasm);
        let component = wasm.clone();
        // An instance for every game.
        let prepared = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let code = runtime.load_bytes::<World>(&name, &component)?;
            let instances = (0..n)
                .map(|_| code.instantiate())
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((code, instances))
        })
        .await;
        let (code, instances) = match prepared {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return refused(format!("the new component does not load: {e:#}")),
            Err(e) => return refused(format!("loading the new component failed: {e}")),
        };
        let (votes_tx, mut votes) = tokio::sync::mpsc::unbounded_channel();
        let offered = match &self.remote {
            Some(remote) => Some(remote.offer(plugin, &wasm, dry_run, votes_tx.clone()).await),
            None => None,
        };
        let voters = n + offered.as_ref().map_or(0, |o| o.games);
        let mut decisions = Vec::new();
        let mut reports = Vec::new();
        for ((game, instance), inbox) in instances.into_iter().enumerate().zip(self.games.iter()) {
            let (decide, decision) = crossbeam_channel::bounded(1);
            let (reply, report) = tokio::sync::oneshot::channel();
            let req = SwapRequest {
                plugin: plugin.to_owned(),
                code: code.clone(),
                instance,
                dry_run,
                reply,
                vote: Ballot {
                    game,
                    votes: votes_tx.clone(),
                },
                decision,
            };
            if voters == 1 {
                // The only game's readiness is the decision: it need not
                // wait, paused, for this task to say so.
                let _ = decide.try_send(Decision::Commit);
            }
            decisions.push(decide);
            reports.push(report);
            if inbox.send(GameInput::Swap(Box::new(req))).is_err() {
                let stopped = Decision::Abort("a game has stopped".into());
                for d in &decisions {
                    let _ = d.try_send(stopped.clone());
                }
                if let (Some(remote), Some(offered)) = (&self.remote, &offered) {
                    remote.decide(offered, &stopped).await;
                    remote.forget_swap(offered.swap);
                }
                return refused("the game has stopped".into());
            }
        }
        drop(votes_tx);
        // Every game votes once it has copied everything (and waits,
        // paused); one that cannot says why at once. A game in another
        // process that says nothing in time refuses.
        let mut ready = 0;
        let mut refusal = None;
        while ready < voters {
            let vote = match &offered {
                Some(o) if o.games > 0 => {
                    match tokio::time::timeout(crate::cluster::REMOTE_WAIT, votes.recv()).await {
                        Ok(vote) => vote,
                        Err(_) => {
                            refusal = Some(format!(
                                "a game did not vote within {} s",
                                crate::cluster::REMOTE_WAIT.as_secs()
                            ));
                            break;
                        }
                    }
                }
                _ => votes.recv().await,
            };
            match vote {
                Some((_, Ok(()))) => ready += 1,
                Some((game, Err(reason))) => {
                    refusal = Some(if voters > 1 {
                        format!("game {game}: {reason}")
                    } else {
                        reason
                    });
                    break;
                }
                None => {
                    refusal = Some("a game stopped during the swap".into());
                    break;
                }
            }
        }
        let decision = match &refusal {
            None => Decision::Commit,
            Some(reason) => Decision::Abort(reason.clone()),
        };
        for d in &decisions {
            let _ = d.try_send(decision.clone());
        }
        if let (Some(remote), Some(offered)) = (&self.remote, &offered) {
            remote.decide(offered, &decision).await;
        }
        let mut done = Vec::new();
        for r in reports {
            match r.await {
                Ok(report) => done.push(report),
                Err(_) => return refused("a game stopped during the swap".into()),
            }
        }
        if let (Some(remote), Some(offered)) = (&self.remote, offered) {
            for r in offered.reports {
                match tokio::time::timeout(crate::cluster::REMOTE_WAIT, r).await {
                    Ok(Ok(report)) => done.push(report),
                    // It had the decision; the report says what the others
                    // did.
                    _ => tracing::error!(plugin, "a game in another process sent no swap report"),
                }
            }
            remote.forget_swap(offered.swap);
        }
        SwapReport::combine(done, refusal)
    }
}
