//! The chatroom example end to end: real server, real clients on every
//! transport, the plugin built from source.

use wyrm_client::{Client, ErrorCode, Transport};
use wyrm_tests::chat::{self, join, next_chat, say};
use wyrm_tests::{TestServer, WAIT};

/// Two players on `ta` and `tb` chat, switch rooms and see exactly the lines
/// meant for them, in order.
async fn two_players_chat(server: &TestServer, ta: Transport, tb: Transport, tag: &str) {
    let (na, nb) = (format!("ann_{tag}"), format!("bob_{tag}"));
    let mut a = chat::player(server, ta, &na).await;
    let mut b = chat::player(server, tb, &nb).await;
    let room = format!("room_{tag}");
    join(&mut a, &room).await;
    join(&mut b, &room).await;

    for i in 0..5 {
        say(&mut a, &format!("a{i}")).await;
    }
    say(&mut b, "b0").await;
    // Each side sees every line, in the order its author sent them.
    for (c, who) in [(&mut a, "a"), (&mut b, "b")] {
        let mut from_a = Vec::new();
        let mut from_b = Vec::new();
        for _ in 0..6 {
            let (from, r, text) = next_chat(c).await;
            assert_eq!(r, room, "{who} got a line for another room");
            if from == na {
                from_a.push(text);
            } else {
                assert_eq!(from, nb);
                from_b.push(text);
            }
        }
        assert_eq!(
            from_a,
            ["a0", "a1", "a2", "a3", "a4"],
            "{who} saw ann's lines out of order"
        );
        assert_eq!(from_b, ["b0"]);
        chat::assert_no_chat(c).await;
    }

    // b leaves for another room: a's lines no longer reach b, and b's reach
    // only b.
    let other = format!("other_{tag}");
    join(&mut b, &other).await;
    say(&mut a, "only a hears this").await;
    assert_eq!(
        next_chat(&mut a).await,
        (na.clone(), room.clone(), "only a hears this".into())
    );
    say(&mut b, "only b hears this").await;
    assert_eq!(
        next_chat(&mut b).await,
        (nb.clone(), other.clone(), "only b hears this".into())
    );
    chat::assert_no_chat(&mut a).await;
    chat::assert_no_chat(&mut b).await;

    // The room attribute follows (own-client attribute pushed to b).
    assert_eq!(
        chat::as_str(b.player_view().and_then(|v| v.attr("room"))),
        Some(other.as_str())
    );
    let (r, names) = chat::who(&mut a).await;
    assert_eq!((r, names), (room.clone(), vec![na.clone()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_websocket() {
    let server = TestServer::chatroom().await;
    two_players_chat(&server, Transport::WebSocket, Transport::WebSocket, "ws").await;
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_tcp() {
    let server = TestServer::chatroom().await;
    two_players_chat(&server, Transport::Tcp, Transport::Tcp, "tcp").await;
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_kcp() {
    let server = TestServer::chatroom().await;
    two_players_chat(&server, Transport::Kcp, Transport::Kcp, "kcp").await;
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_across_transports_in_one_room() {
    let server = TestServer::chatroom().await;
    two_players_chat(&server, Transport::WebSocket, Transport::Tcp, "ws_tcp").await;
    two_players_chat(&server, Transport::Kcp, Transport::WebSocket, "kcp_ws").await;
    // Three transports in one room.
    let mut w = chat::player(&server, Transport::WebSocket, "w3").await;
    let mut t = chat::player(&server, Transport::Tcp, "t3").await;
    let mut k = chat::player(&server, Transport::Kcp, "k3").await;
    for c in [&mut w, &mut t, &mut k] {
        join(c, "mixed").await;
    }
    say(&mut k, "hello from kcp").await;
    for c in [&mut w, &mut t, &mut k] {
        assert_eq!(
            next_chat(c).await,
            ("k3".into(), "mixed".into(), "hello from kcp".into())
        );
    }
    let (_, mut names) = chat::who(&mut t).await;
    names.sort();
    assert_eq!(names, ["k3", "t3", "w3"]);
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_taken_name_are_refused() {
    let server = TestServer::chatroom().await;
    let mut a = server.connect(Transport::Tcp).await;
    assert!(chat::register(&mut a, "carol", "right-pass").await.0);
    let mut b = server.connect(Transport::WebSocket).await;
    let (ok, msg) = chat::register(&mut b, "carol", "another").await;
    assert!(!ok, "a taken name must be refused");
    assert!(
        msg.contains("taken"),
        "reason should say the name is taken: {msg}"
    );
    let (ok, msg) = chat::login(&mut b, "carol", "wrong-pass").await;
    assert!(!ok, "a wrong password must be refused");
    assert_eq!(msg, "wrong name or password");
    assert_eq!(
        b.player_view().map(|v| v.type_name.as_str()),
        Some("Account"),
        "still not logged in"
    );
    let (ok, msg) = chat::login(&mut b, "nobody", "whatever").await;
    assert!(
        !ok && msg == "wrong name or password",
        "unknown name: {msg}"
    );
    // Bad input is refused with a reason, not a crash.
    let (ok, _) = chat::register(&mut b, "not a valid name!", "pass").await;
    assert!(!ok);
    // The right password works, once.
    assert!(chat::login(&mut a, "carol", "right-pass").await.0);
    let (ok, msg) = chat::login(&mut b, "carol", "right-pass").await;
    assert!(
        !ok && msg.contains("online"),
        "a second login of an online name is refused: {msg}"
    );
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cannot_call_server_only_or_unknown_methods() {
    let server = TestServer::chatroom().await;
    let mut a = chat::player(&server, Transport::Tcp, "dave").await;
    let req = chat::call_own(&mut a, "announce", ("I am the server now",)).await;
    let (id, code, msg) = a
        .expect_error(WAIT)
        .await
        .expect("an error for a server-only method");
    assert_eq!((id, code), (req, ErrorCode::NotAllowed), "{msg}");
    let req = chat::call_own(&mut a, "no_such_method", ()).await;
    let (id, code, _) = a
        .expect_error(WAIT)
        .await
        .expect("an error for an unknown method");
    assert_eq!((id, code), (req, ErrorCode::NoSuchMethod));
    let req = a.call(999_999, "say", ("hi",)).await.expect("send");
    let (id, code, _) = a
        .expect_error(WAIT)
        .await
        .expect("an error for an unknown entity");
    assert_eq!((id, code), (req, ErrorCode::NoSuchEntity));
    // Arguments of the wrong shape: the plugin refuses, the server stays up.
    let req = chat::call_own(&mut a, "say", (42, 43)).await;
    let (id, code, _) = a
        .expect_error(WAIT)
        .await
        .expect("an error for bad arguments");
    assert_eq!((id, code), (req, ErrorCode::CallFailed));
    // Another player's own-client method is not ours to call.
    let mut b: Client = chat::player(&server, Transport::WebSocket, "erin").await;
    let erin = b.player().expect("erin's avatar");
    let req = a.call(erin, "say", ("impersonating",)).await.expect("send");
    let (id, code, _) = a
        .expect_error(WAIT)
        .await
        .expect("an error for someone else's method");
    assert_eq!((id, code), (req, ErrorCode::NotAllowed));
    chat::assert_no_chat(&mut b).await;
    // Still serving.
    say(&mut a, "still here").await;
    assert_eq!(next_chat(&mut a).await.2, "still here");
    server.server.shutdown().await;
}
