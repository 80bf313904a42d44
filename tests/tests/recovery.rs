//! Checkpoints and revival at scale: a JavaScript plugin (the slowest guest
//! language per entity) holding 20,000 entities with private state is
//! checkpointed while it serves, crashed, and revived with every entity's
//! state — each export and import call a chunk under the call deadline.

use std::time::{Duration, Instant};

use wyrm_client::{Client, ErrorCode, Event, Transport, NO_ARGS};
use wyrm_tests::{call_own, expect, TestServer, WAIT};

/// Sheep spawned per call (one call creates them and queues their numbering).
const PER_SPAWN: u64 = 1000;
const SHEEP: u64 = 20_000;

/// Asks every sheep whether it knows its number; returns how many sheep
/// the shepherd has and how many strayed.
async fn audit(c: &mut Client) -> (u64, u64) {
    call_own(c, "audit", NO_ARGS).await;
    let mut strays = 0;
    loop {
        match c.next_event_timeout(WAIT * 3).await {
            Ok(Some(Event::Call { method, args, .. })) if method == "on_audited" => {
                let (n,): (u64,) = wyrm_client::from_value(&args).expect("on_audited args");
                return (n, strays);
            }
            Ok(Some(Event::Call { method, .. })) if method == "on_stray" => strays += 1,
            Ok(Some(_)) => {}
            other => panic!("no audit: {other:?}"),
        }
    }
}

/// Waits until every game has completed `more` checkpoints past those it
/// had.
async fn wait_checkpoints(server: &TestServer, more: u64) {
    let done = |s: &TestServer| -> Vec<u64> {
        let games = s.server.counters_by_game();
        games.iter().map(|c| c.checkpoints()).collect()
    };
    let from = done(server);
    let deadline = Instant::now() + WAIT * 3;
    while done(server)
        .iter()
        .zip(&from)
        .any(|(now, was)| *now < was + more)
    {
        assert!(Instant::now() < deadline, "no {more} more checkpoints");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_with_20000_entities_is_checkpointed_crashed_and_revived_whole() {
    wyrm_tests::setup_polyglot();
    let wasm = wyrm_tests::plugin("plugins/herd/js", &[]);
    let server = TestServer::start(wasm, "Shepherd", &[], |cfg| {
        cfg.game.checkpoint_interval_ms = 300;
        // 20,000 JavaScript objects and their states need more than the
        // 64 MiB the other tests give a plugin.
        cfg.limits.memory_mb = 256;
    })
    .await;
    let mut c = server.connect(Transport::Tcp).await;
    for _ in 0..SHEEP / PER_SPAWN {
        call_own(&mut c, "spawn", (PER_SPAWN,)).await;
        let _: (u64,) = expect(&mut c, "on_spawned").await;
    }
    assert_eq!(audit(&mut c).await, (SHEEP, 0), "before the crash");
    // A checkpoint begun after the audit, and finished.
    wait_checkpoints(&server, 2).await;
    let revivals = server.game_counters().revivals();
    call_own(&mut c, "spin", NO_ARGS).await;
    let (_, code, msg) = c.expect_error(WAIT).await.expect("the spin is stopped");
    assert_eq!(code, ErrorCode::PluginFault, "{msg}");
    assert!(msg.contains("deadline"), "{msg}");
    assert_eq!(server.game_counters().revivals(), revivals + 1);
    // Every sheep, and the shepherd's list of them, came back.
    assert_eq!(audit(&mut c).await, (SHEEP, 0), "after the revival");
    // And the plugin goes on checkpointing.
    wait_checkpoints(&server, 1).await;
    server.server.shutdown().await;
}
