//! Compression (protocol 4): a client that asks for LZ4 in its `Hello` gets
//! the frames worth it as `Compressed` frames, and sees exactly what a
//! client that did not ask sees — calls to its entity, broadcasts, errors,
//! attribute changes and entities coming into view — over every transport.

use rmpv::Value;
use wyrm_client::{Client, Transport, NO_ARGS};
use wyrm_tests::{chat::expect, TestServer, WAIT};

async fn client(server: &TestServer, t: Transport, compression: bool) -> Client {
    let addr = server.addr(t);
    let mut c = Client::builder(t)
        .compression(compression)
        .connect(&addr)
        .await
        .unwrap_or_else(|e| panic!("connect over {t:?}: {e}"));
    c.wait_player(WAIT).await.expect("own probe");
    assert_eq!(c.welcome().version, wyrm_protocol::PROTOCOL_VERSION);
    assert_eq!(c.welcome().compressed, compression, "the server agreed");
    c
}

/// The walker `c` becomes in `plane` at `(x, y)`.
async fn walk_in(c: &mut Client, plane: u64, x: f32, y: f32) -> u64 {
    let probe = c.player().expect("own probe");
    c.call_player("walk_in", (plane, x, y)).await.expect("send");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(id) = c.player().filter(|&id| id != probe) {
            return id;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event_timeout(left).await {
            Ok(Some(_)) => {}
            other => panic!("no walker arrived: {other:?}"),
        }
    }
}

fn mood_of(c: &Client, id: u64) -> Option<String> {
    let attrs = &c.entity(id)?.attrs;
    let Value::Map(entries) = attrs else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("mood"))
        .and_then(|(_, v)| v.as_str().map(str::to_owned))
}

/// Waits until `c` sees `id`'s mood as `mood`.
async fn until_mood(c: &mut Client, id: u64, mood: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while mood_of(c, id).as_deref() != Some(mood) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event_timeout(left).await {
            Ok(Some(_)) => {}
            other => panic!("never saw mood {mood:.20}… of {id}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_asks_gets_compressed_frames_and_sees_the_same() {
    let server = TestServer::start(wyrm_tests::testbed_plugin(), "Probe", &[], |_| {}).await;
    for t in [Transport::Tcp, Transport::WebSocket, Transport::Kcp] {
        let mut packed = client(&server, t, true).await;
        let mut plain = client(&server, t, false).await;
        let long: String = "the wyrm coils, ".repeat(100);

        // A call to its own client (Call).
        for c in [&mut packed, &mut plain] {
            c.call_player("echo", (long.as_str(),)).await.expect("send");
            let (v,): (String,) = expect(c, "on_echo").await;
            assert_eq!(v, long);
        }
        // A broadcast (CallOwn), to both.
        packed
            .call_player("blast", (3000u32, 7u8))
            .await
            .expect("send");
        let mut blobs = Vec::new();
        for c in [&mut packed, &mut plain] {
            let (blob,): (Value,) = expect(c, "blob").await;
            blobs.push(blob.as_slice().map(<[u8]>::to_vec).unwrap_or_default());
        }
        let want: Vec<u8> = (0..3000u32)
            .map(|i| (i as u8).wrapping_mul(31) ^ 7)
            .collect();
        assert_eq!(blobs, [want.clone(), want]);
        // An error with a long message (Error).
        let mut errors = Vec::new();
        for c in [&mut packed, &mut plain] {
            c.call_player("panic_with", (long.as_str(),))
                .await
                .expect("send");
            let (_, code, message) = c.expect_error(WAIT).await.expect("an error");
            errors.push((code, message));
        }
        assert_eq!(errors[0], errors[1]);
        assert!(errors[0].1.len() > 300, "{}", errors[0].1);

        // Walkers side by side: attribute changes (Attr) and an entity
        // that comes into view with long attributes (Create).
        packed
            .call_player("make_plane", NO_ARGS)
            .await
            .expect("send");
        let (plane,): (u64,) = expect(&mut packed, "plane").await;
        let p = walk_in(&mut packed, plane, 10.0, 10.0).await;
        let u = walk_in(&mut plain, plane, 20.0, 10.0).await;
        let moods = [format!("calm {long}"), format!("wild {long}")];
        packed
            .call_player("set_mood", (&moods[0],))
            .await
            .expect("send");
        plain
            .call_player("set_mood", (&moods[1],))
            .await
            .expect("send");
        for c in [&mut packed, &mut plain] {
            until_mood(c, p, &moods[0]).await;
            until_mood(c, u, &moods[1]).await;
        }
        let mut third = client(&server, t, false).await;
        let w = walk_in(&mut third, plane, 500.0, 500.0).await;
        let far = format!("far {long}");
        third.call_player("set_mood", (&far,)).await.expect("send");
        until_mood(&mut third, w, &far).await;
        third
            .call_player("goto", (15.0f32, 15.0f32))
            .await
            .expect("send");
        for c in [&mut packed, &mut plain] {
            until_mood(c, w, &far).await;
        }

        assert!(
            packed.compressed_frames() >= 5,
            "{t:?}: {} compressed frames",
            packed.compressed_frames()
        );
        assert_eq!(plain.compressed_frames(), 0, "{t:?}: not asked, not sent");
        for mut c in [packed, plain, third] {
            c.close().await;
        }
    }
    server.server.shutdown().await;
}
