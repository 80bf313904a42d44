//! Live hot swap: a running plugin replaced by a new version through the
//! admin endpoint, while real clients stay connected.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rmpv::Value;
use wyrm::SwapOutcome;
use wyrm_client::{Client, ErrorCode, Event, Transport, NO_ARGS};
use wyrm_tests::chat::{self, expect, join, next_chat, say};
use wyrm_tests::{
    chatroom_plugin, chatroom_plugin_with, testbed_plugin, testbed_plugin_with, TestServer, WAIT,
};

async fn probe_server(checkpoint_ms: u64) -> TestServer {
    TestServer::start(testbed_plugin(), "Probe", &[], |cfg| {
        cfg.game.checkpoint_interval_ms = checkpoint_ms
    })
    .await
}

async fn count(c: &mut Client) -> u64 {
    c.call_player("count", NO_ARGS).await.expect("send");
    let (n,): (u64,) = expect(c, "on_count").await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_survives_a_swap_to_a_version_with_a_new_command() {
    let v2 = chatroom_plugin_with(&["v2"]);
    let server = TestServer::chatroom().await;
    let mut a = chat::player(&server, Transport::WebSocket, "ava").await;
    let mut b = chat::player(&server, Transport::Tcp, "bea").await;
    let mut k = chat::player(&server, Transport::Kcp, "kit").await;
    for c in [&mut a, &mut b, &mut k] {
        join(c, "swap").await;
    }
    // Version 1 has no `shout`.
    let req = chat::call_own(&mut a, "shout", ("hi",)).await;
    let (id, code, _) = a
        .expect_error(WAIT)
        .await
        .expect("shout is unknown before the swap");
    assert_eq!((id, code), (req, ErrorCode::NoSuchMethod));

    // Lines sent before, during and after the swap.
    let swap = server.swap(&v2, false);
    let talk = async {
        for i in 0..30 {
            say(&mut a, &format!("m{i}")).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let (report, ()) = tokio::join!(swap, talk);
    assert_eq!(report.outcome, SwapOutcome::Swapped, "{report}");
    assert_eq!(
        (report.from_version.as_str(), report.to_version.as_str()),
        ("0.1.0", "0.2.0")
    );
    assert!(
        report.entities >= 4,
        "Lobby and three avatars moved: {report}"
    );

    for c in [&mut a, &mut b, &mut k] {
        for i in 0..30 {
            assert_eq!(
                next_chat(c).await,
                ("ava".into(), "swap".into(), format!("m{i}")),
                "every line once, in order"
            );
        }
    }
    // The new command works, for a player who connected before the swap.
    chat::call_own(&mut b, "shout", ("hello",)).await;
    for c in [&mut a, &mut b, &mut k] {
        assert_eq!(
            next_chat(c).await,
            ("bea".into(), "swap".into(), "HELLO".into())
        );
        chat::assert_no_chat(c).await;
    }
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_state_carries_across_and_migrates_to_a_new_shape() {
    let server = probe_server(0).await;
    let mut c = server.connect(Transport::Tcp).await;
    let mut other = server.connect(Transport::WebSocket).await;
    for n in 1..=3 {
        assert_eq!(count(&mut c).await, n);
    }
    assert_eq!(count(&mut other).await, 1);

    // Same shape: the counter carries.
    let report = server.swap(&testbed_plugin(), false).await;
    assert_eq!(report.outcome, SwapOutcome::Swapped, "{report}");
    assert_eq!(count(&mut c).await, 4);

    // Version 2 keeps its count in another shape and migrates version 1's.
    let report = server.swap(&testbed_plugin_with(&["v2"]), false).await;
    assert_eq!(report.outcome, SwapOutcome::Swapped, "{report}");
    assert_eq!(report.to_version, "0.2.0");
    assert_eq!(report.entities, 2);
    assert!(report.bytes > 0);
    assert_eq!(count(&mut c).await, 5, "migrated value");
    assert_eq!(count(&mut other).await, 2, "migrated value");
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_trapping_import_leaves_the_old_version_serving() {
    let server = probe_server(0).await;
    let mut c = server.connect(Transport::Tcp).await;
    assert_eq!(count(&mut c).await, 1);
    assert_eq!(count(&mut c).await, 2);

    let report = server
        .swap(&testbed_plugin_with(&["refuse_import"]), false)
        .await;
    let SwapOutcome::Refused { reason } = &report.outcome else {
        panic!("a refusing import must refuse the swap: {report}");
    };
    assert!(reason.contains("refuses state from 0.1.0"), "{reason}");
    assert_eq!(
        count(&mut c).await,
        3,
        "old version serving, state unchanged"
    );

    let report = server
        .swap(&testbed_plugin_with(&["trap_import"]), false)
        .await;
    let SwapOutcome::Refused { reason } = &report.outcome else {
        panic!("a trapping import must refuse the swap: {report}");
    };
    // The panic's text and place, not a backtrace.
    assert!(
        reason.contains("faulted")
            && reason.contains("panicked: this build traps importing state from 0.1.0 at ")
            && reason.contains("src/lib.rs:")
            && !reason.contains("backtrace"),
        "{reason}"
    );
    assert_eq!(
        count(&mut c).await,
        4,
        "old version serving, state unchanged"
    );

    // A dry run of a good version says it would work and changes nothing.
    let report = server.swap(&testbed_plugin_with(&["v2"]), true).await;
    assert_eq!(report.outcome, SwapOutcome::WouldSwap, "{report}");
    assert!(report.dry_run);
    c.call_player("arm", (1u32, "tick")).await.expect("send");
    let (_, args) = c.expect_call("on_tick", WAIT).await.expect("tick");
    assert_eq!(
        args,
        Value::Array(vec![]),
        "still version 1 after a dry run"
    );
    assert_eq!(count(&mut c).await, 5);

    // Not a component at all, an unknown plugin, a wrong token: refused
    // with a reason, nothing changes.
    let junk = std::env::temp_dir().join(format!("wyrm-junk-{}.wasm", std::process::id()));
    std::fs::write(&junk, b"definitely not wasm").expect("write junk");
    let report = server.swap(&junk, false).await;
    assert!(
        matches!(&report.outcome, SwapOutcome::Refused { reason } if reason.contains("does not load")),
        "{report}"
    );
    let _ = std::fs::remove_file(&junk);
    let mut info = wyrm::admin::read_info(server.config()).expect("admin info");
    let wasm = std::fs::read(testbed_plugin()).expect("read");
    let report = wyrm::admin::request_swap(&info, "nope", &wasm, false)
        .await
        .expect("answered");
    assert!(
        matches!(&report.outcome, SwapOutcome::Refused { reason } if reason.contains("no plugin named")),
        "{report}"
    );
    info.token = "wrong".into();
    let err = wyrm::admin::request_swap(&info, "game", &wasm, false)
        .await
        .expect_err("wrong token");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(count(&mut c).await, 6);
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_armed_before_a_swap_fire_into_the_new_code() {
    let v2 = testbed_plugin_with(&["v2"]);
    let server = probe_server(0).await;
    let mut c = server.connect(Transport::Kcp).await;
    let armed = Instant::now();
    c.call_player("arm", (600u32, "tick")).await.expect("send");
    let report = server.swap(&v2, false).await;
    assert_eq!(report.outcome, SwapOutcome::Swapped, "{report}");
    let (_, args) = c
        .expect_call("on_tick", WAIT)
        .await
        .expect("the timer fires");
    assert_eq!(
        args,
        Value::Array(vec![Value::from("v2")]),
        "fired into version 2"
    );
    assert!(armed.elapsed() >= Duration::from_millis(600));
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_restores_private_state_from_the_last_checkpoint() {
    let server = probe_server(100).await;
    let mut c = server.connect(Transport::WebSocket).await;
    for n in 1..=3 {
        assert_eq!(count(&mut c).await, n);
    }
    // Let a checkpoint (every 100 ms) pass.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let req = c.call_player("boom", NO_ARGS).await.expect("send");
    let (id, code, _) = c.expect_error(WAIT).await.expect("boom fails");
    assert_eq!((id, code), (req, ErrorCode::PluginFault));
    // The client saw only the failed call; the counter came back.
    assert_eq!(count(&mut c).await, 4, "restored from the checkpoint");
    let mut seen = Vec::new();
    while let Ok(Some(e)) = c.next_event_timeout(Duration::from_millis(200)).await {
        seen.push(e);
    }
    assert!(
        seen.iter().all(|e| matches!(e, Event::Attr { .. })),
        "nothing but attribute updates: {seen:?}"
    );
    server.server.shutdown().await;
}

/// One player's share of the traffic: `lines` numbered chat lines sent every
/// `every`, while reading everything; returns, per sender, the numbers seen.
async fn talk_and_listen(
    mut c: Client,
    me: String,
    lines: u32,
    every: Duration,
    expect_total: usize,
) -> (Client, HashMap<String, Vec<u32>>) {
    let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
    let mut total = 0;
    let mut sent = 0;
    let mut next = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while total < expect_total || sent < lines {
        tokio::select! {
            _ = tokio::time::sleep_until(next), if sent < lines => {
                c.call_player("say", (format!("{me}:{sent}"),)).await.expect("send");
                sent += 1;
                next += every;
            }
            e = c.next_event() => match e {
                Ok(Event::Call { method, args, .. }) if method == "on_chat" => {
                    let text = args.as_array().and_then(|a| a.get(2)).and_then(Value::as_str).unwrap_or_default().to_owned();
                    let Some((from, n)) = text.split_once(':') else { panic!("{me}: not a numbered line: {args:?}") };
                    seen.entry(from.to_owned()).or_default().push(n.parse().expect("number"));
                    total += 1;
                }
                Ok(Event::Error { code, message, .. }) => panic!("{me} got an error: {code:?} {message}"),
                Ok(Event::Closed) | Err(_) => panic!("{me} was disconnected"),
                Ok(_) => {}
            },
            _ = tokio::time::sleep_until(deadline) => panic!("{me} timed out with {total}/{expect_total} lines"),
        }
    }
    (c, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_swaps_under_traffic_lose_and_duplicate_nothing() {
    // Build both versions before anyone connects: a cold build takes long
    // enough for an idle KCP session to expire.
    let (v1, v2) = (chatroom_plugin(), chatroom_plugin_with(&["v2"]));
    let server = TestServer::chatroom().await;
    let transports = [Transport::WebSocket, Transport::Tcp, Transport::Kcp];
    let mut players = Vec::new();
    for i in 0..6 {
        let name = format!("p{i}");
        let mut c = chat::player(&server, transports[i % 3], &name).await;
        join(&mut c, "storm").await;
        players.push((name, c));
    }
    // Warm the compile cache for both versions.
    assert!(server.swap(&v2, true).await.succeeded());

    const LINES: u32 = 150;
    let total = players.len() * LINES as usize;
    let tasks: Vec<_> = players
        .into_iter()
        .map(|(name, c)| {
            tokio::spawn(talk_and_listen(
                c,
                name,
                LINES,
                Duration::from_millis(20),
                total,
            ))
        })
        .collect();
    let mut pauses = Vec::new();
    for i in 0..100 {
        let wasm = if i % 2 == 0 { &v2 } else { &v1 };
        let report = server.swap(wasm, false).await;
        assert_eq!(report.outcome, SwapOutcome::Swapped, "swap {i}: {report}");
        pauses.push(report.pause_us);
    }
    let mut clients = Vec::new();
    for task in tasks {
        let (c, seen) = task.await.expect("player task");
        assert_eq!(seen.len(), 6, "lines from every player");
        for (from, ns) in &seen {
            assert_eq!(
                *ns,
                (0..LINES).collect::<Vec<_>>(),
                "lines from {from}: none lost, none duplicated, in order"
            );
        }
        clients.push(c);
    }
    for c in &mut clients {
        assert!(c.is_open(), "still connected");
        let (room, names) = chat::who(c).await;
        assert_eq!((room.as_str(), names.len()), ("storm", 6), "{names:?}");
    }
    pauses.sort_unstable();
    println!(
        "100 swaps: median pause {} us, max {} us",
        pauses[50], pauses[99]
    );
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_changed_while_the_swap_copies_arrive_with_their_latest_state() {
    let server = TestServer::start(testbed_plugin(), "Probe", &[], |cfg| {
        cfg.net.client_rate = 1_000_000
    })
    .await;
    let mut c = server.connect(Transport::Tcp).await;
    // 5,000 blobs: the copy takes several steps.
    c.call_player("spawn_blobs", (5000u32,))
        .await
        .expect("send");
    let (first, last): (u64, u64) = expect(&mut c, "on_blobs").await;
    assert_eq!(last - first, 4999);

    // Touch the first blob (copied first) and the last (copied last) from
    // before the swap starts until after it ends.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toucher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.call_player("touch_blob", (first,)).await.expect("send");
                c.call_player("touch_blob", (last,)).await.expect("send");
                n += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (c, n)
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = server.swap(&testbed_plugin(), false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut c, touches) = toucher.await.expect("toucher");
    assert_eq!(report.outcome, SwapOutcome::Swapped, "{report}");
    assert!(report.entities > 5000, "every blob copied: {report}");
    assert!(report.copy_us >= report.pause_us, "{report}");

    for id in [first, last] {
        c.call_player("ask_blob", (id,)).await.expect("send");
        let (got, touched): (u64, u64) = expect(&mut c, "on_blob").await;
        assert_eq!(
            (got, touched),
            (id, touches),
            "blob {id} has every touch, before, during and after the copy"
        );
    }
    server.server.shutdown().await;
}
