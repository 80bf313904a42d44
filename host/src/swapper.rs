//! Hot swap across every game of the process: the `Swapper` compiles the
//! new version once, instantiates it for each game off the game threads,
//! hands each game its instance and commits only when every game has voted
//! yes (see `wyrm_game`'s `swap.rs` for a game's side).

use std::sync::Arc;

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
        // An instance for every game.
        let prepared = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let code = runtime.load_bytes::<World>(&name, &wasm)?;
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
            if n == 1 {
                // The only game's readiness is the decision: it need not
                // wait, paused, for this task to say so.
                let _ = decide.try_send(Decision::Commit);
            }
            decisions.push(decide);
            reports.push(report);
            if inbox.send(GameInput::Swap(Box::new(req))).is_err() {
                for d in &decisions {
                    let _ = d.try_send(Decision::Abort("a game has stopped".into()));
                }
                return refused("the game has stopped".into());
            }
        }
        drop(votes_tx);
        // Every game votes once it has copied everything (and waits,
        // paused); one that cannot says why at once.
        let mut ready = 0;
        let mut refusal = None;
        while ready < n {
            match votes.recv().await {
                Some((_, Ok(()))) => ready += 1,
                Some((game, Err(reason))) => {
                    refusal = Some(if n > 1 {
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
        let mut done = Vec::new();
        for r in reports {
            match r.await {
                Ok(report) => done.push(report),
                Err(_) => return refused("a game stopped during the swap".into()),
            }
        }
        SwapReport::combine(done, refusal)
    }
}
