//! Faults stay with whoever caused them: a guest that loops or panics, a
//! client that sends garbage or oversized frames. Everyone else keeps
//! playing.

use std::time::{Duration, Instant};

use rmpv::Value;
use wyrm_client::{ErrorCode, Transport};
use wyrm_tests::chat::{self, join, next_chat, say};
use wyrm_tests::{TestServer, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_method_fails_within_the_deadline_and_others_keep_chatting() {
    let server = TestServer::chatroom().await;
    let mut looper = chat::player(&server, Transport::Tcp, "looper").await;
    let mut a = chat::player(&server, Transport::WebSocket, "amy").await;
    let mut b = chat::player(&server, Transport::Kcp, "ben").await;
    for c in [&mut looper, &mut a, &mut b] {
        join(c, "busy").await;
    }

    let started = Instant::now();
    let req = chat::call_own(&mut looper, "spin", wyrm_client::NO_ARGS).await;
    let (id, code, msg) = looper
        .expect_error(WAIT)
        .await
        .expect("the looping call must fail");
    let took = started.elapsed();
    assert_eq!((id, code), (req, ErrorCode::PluginFault), "{msg}");
    assert!(
        msg.contains("deadline"),
        "the error names the deadline: {msg}"
    );
    // 200 ms deadline in the test config; generous bound for a loaded box.
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");

    // The others keep chatting, and so does the looper.
    say(&mut a, "still alive?").await;
    for c in [&mut looper, &mut a, &mut b] {
        assert_eq!(
            next_chat(c).await,
            ("amy".into(), "busy".into(), "still alive?".into())
        );
    }
    say(&mut looper, "sorry").await;
    assert_eq!(next_chat(&mut b).await.2, "sorry");
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_method_fails_alone_and_a_fresh_instance_serves_on() {
    let server = TestServer::chatroom().await;
    let mut p = chat::player(&server, Transport::WebSocket, "pat").await;
    let mut q = chat::player(&server, Transport::Tcp, "quinn").await;
    join(&mut p, "den").await;
    join(&mut q, "den").await;
    let avatar = p.player().expect("pat's avatar");

    let req = chat::call_own(&mut p, "boom", wyrm_client::NO_ARGS).await;
    let (id, code, msg) = p
        .expect_error(WAIT)
        .await
        .expect("the panicking call must fail");
    assert_eq!((id, code), (req, ErrorCode::PluginFault), "{msg}");
    assert!(
        msg.contains("Avatar.boom called at examples/chatroom/plugin/src/lib.rs:"),
        "the error is the panic's text and place: {msg}"
    );

    // Host-owned state survived: bindings, tags, attributes, the Lobby's
    // accounts and online list.
    assert_eq!(p.player(), Some(avatar));
    say(&mut p, "after the crash").await;
    for c in [&mut p, &mut q] {
        assert_eq!(
            next_chat(c).await,
            ("pat".into(), "den".into(), "after the crash".into())
        );
    }
    let (room, mut names) = chat::who(&mut q).await;
    names.sort();
    assert_eq!(
        (room.as_str(), names),
        ("den", vec!["pat".to_string(), "quinn".to_string()])
    );
    // Accounts live in host attributes: a new login still checks them.
    let mut r = server.connect(Transport::Kcp).await;
    let (ok, msg) = chat::login(&mut r, "pat", "wrong").await;
    assert!(!ok && msg == "wrong name or password", "{msg}");
    let (ok, msg) = chat::login(&mut r, "pat", "pat-secret").await;
    assert!(!ok && msg.contains("online"), "{msg}");
    server.server.shutdown().await;
}

/// Asserts that `msg` is meant for a person: bounded, and without the
/// wasm backtrace that goes to the server's log.
fn for_people(msg: &str) {
    assert!(
        msg.len() <= wyrm_runtime::MAX_MESSAGE,
        "{} bytes: {msg}",
        msg.len()
    );
    for internal in ["backtrace", "<wasm function", ".wasm!", "wasm trap"] {
        assert!(!msg.contains(internal), "{internal:?} in {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_fails_tells_the_client_why_in_words_not_a_backtrace() {
    let server = TestServer::start(wyrm_tests::testbed_plugin(), "Probe", &[], |_| {}).await;
    let mut c = server.connect(Transport::Tcp).await;
    let mut fail = async |method: &str, args: Value| {
        let req = c.call_player(method, args).await.expect("send");
        let (id, code, msg) = c.expect_error(WAIT).await.expect("the call must fail");
        assert_eq!((id, code), (req, ErrorCode::PluginFault), "{msg}");
        for_people(&msg);
        msg
    };

    // A panic: its message and where it was, as Rust's panic hook wrote
    // them to the guest's stderr.
    let msg = fail("boom", Value::Array(vec![])).await;
    assert!(
        msg.starts_with("plugin game panicked: Probe.boom called at ")
            && msg.contains("src/lib.rs:"),
        "{msg}"
    );
    let msg = fail(
        "panic_with",
        vec![Value::from(
            "index out of bounds: the len is 3 but the index is 7",
        )]
        .into(),
    )
    .await;
    assert!(
        msg.contains("panicked: index out of bounds: the len is 3 but the index is 7 at "),
        "{msg}"
    );
    // A long one is cut, at a character boundary, and says so.
    let long = "é".repeat(2000);
    let msg = fail("panic_with", vec![Value::from(long.as_str())].into()).await;
    let kept = msg
        .strip_prefix("plugin game panicked: ")
        .and_then(|m| m.strip_suffix('…'))
        .unwrap_or_else(|| panic!("cut and marked: {msg}"));
    assert!(kept.len() > 200 && long.starts_with(kept), "{msg}");

    // A trap that is not a panic: a short description of it.
    let msg = fail("hog", vec![Value::from(256)].into()).await;
    assert!(
        msg.starts_with("plugin game trapped: out of memory (it asked for ")
            && msg.ends_with("the cap is 64 MiB)"),
        "{msg}"
    );

    // And the instance that took over serves on.
    c.call_player("count", wyrm_client::NO_ARGS)
        .await
        .expect("send");
    let (n,): (u64,) = wyrm_tests::chat::expect(&mut c, "on_count").await;
    assert_eq!(n, 1);
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused_and_the_connection_stays() {
    let server = TestServer::chatroom().await;
    let mut bystander = chat::player(&server, Transport::WebSocket, "by").await;
    join(&mut bystander, "quiet").await;
    for t in [Transport::Tcp, Transport::WebSocket, Transport::Kcp] {
        let mut c = server.connect(t).await;
        // A Ping frame padded far past the 64 KiB maximum.
        let mut frame = vec![0x02];
        frame.resize(100 * 1024, 0);
        c.send_raw_frame(&frame).await.expect("send");
        let (_, code, msg) = c
            .expect_error(WAIT)
            .await
            .expect("an error for the oversized frame");
        assert_eq!(code, ErrorCode::FrameTooLarge, "{t:?}: {msg}");
        // Still connected and served.
        let rtt = c.round_trip(WAIT).await;
        assert!(rtt.is_ok(), "{t:?}: connection should stay open: {rtt:?}");
    }
    say(&mut bystander, "unaffected").await;
    assert_eq!(next_chat(&mut bystander).await.2, "unaffected");
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_that_connection() {
    let server = TestServer::chatroom().await;
    let mut bystander = chat::player(&server, Transport::Tcp, "calm").await;
    join(&mut bystander, "calm").await;
    let bad_frames: [&[u8]; 3] = [
        &[0x7e, 1, 2, 3],                                              // unknown frame type
        &[0x01, 1, 0],                                                 // a truncated Call
        &[0x01, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xff, 0xfe], // method name not UTF-8
    ];
    for t in [Transport::Tcp, Transport::WebSocket, Transport::Kcp] {
        for bad in bad_frames {
            let mut c = server.connect(t).await;
            c.send_raw_frame(bad).await.expect("send");
            let (_, code, msg) = c
                .expect_error(WAIT)
                .await
                .expect("an error for the malformed frame");
            assert_eq!(code, ErrorCode::Malformed, "{t:?}: {msg}");
            c.expect_closed(WAIT)
                .await
                .expect("the server closes a malformed connection");
        }
    }
    // A zero-length frame on a stream transport is not the protocol either.
    let mut c = server.connect(Transport::Tcp).await;
    c.send_raw_bytes(&[0, 0, 0, 0]).await.expect("send");
    c.expect_closed(WAIT)
        .await
        .expect("closed after a zero-length frame");

    say(&mut bystander, "unaffected").await;
    assert_eq!(next_chat(&mut bystander).await.2, "unaffected");
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_throttled_then_dropped_alone() {
    let server = TestServer::start(
        wyrm_tests::chatroom_plugin(),
        "Account",
        &["Lobby"],
        |cfg| {
            cfg.net.client_rate = 20;
        },
    )
    .await;
    let mut calm = chat::player(&server, Transport::WebSocket, "zen").await;
    join(&mut calm, "zen").await;
    let mut flood = server.connect(Transport::Tcp).await;
    let mut refused = false;
    for i in 0..500u64 {
        if flood.ping().await.is_err() {
            break;
        }
        if i == 100 {
            refused = matches!(
                flood.expect_error(WAIT).await,
                Ok((_, ErrorCode::Overloaded, _))
            );
        }
    }
    assert!(refused, "a client over its rate gets Overloaded errors");
    flood
        .expect_closed(WAIT)
        .await
        .expect("a client that keeps flooding is dropped");
    say(&mut calm, "fine here").await;
    assert_eq!(next_chat(&mut calm).await.2, "fine here");
    server.server.shutdown().await;
}
