//! A public server's defences, tried from outside over real sockets:
//! spoofed KCP datagrams open nothing and draw no amplified answer; a
//! frame begun must end in time; a silent connection is closed; connection
//! limits hold on every transport and say why.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use wyrm_client::{Client, ClientError, ErrorCode, Event, Transport};
use wyrm_protocol::{ClientFrame, ServerFrame, PROTOCOL_VERSION};
use wyrm_tests::chat::{self, join, next_chat, say};
use wyrm_tests::{TestServer, WAIT};

/// Waits until the server counts `n` connections (they end on their own
/// tasks, a moment after the client sees the close).
async fn wait_connections(server: &TestServer, n: usize) {
    let deadline = Instant::now() + WAIT;
    while server.server.connections() != n {
        assert!(
            Instant::now() < deadline,
            "the server holds {} connections, not {n}",
            server.server.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_kcp_datagrams_open_nothing_and_are_not_amplified() {
    let server = TestServer::chatroom().await;
    let raw = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    raw.connect(server.addr(Transport::Kcp))
        .await
        .expect("connect");
    // From one port after another, as a spoofer would: the 24-byte KCP
    // segment that used to open a session, and a handshake Hello.
    let mut sent = 0;
    let mut socks = Vec::new();
    for i in 0..50u32 {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        s.connect(server.addr(Transport::Kcp))
            .await
            .expect("connect");
        let mut push = vec![0u8; 24];
        push[..4].copy_from_slice(&(i + 1).to_le_bytes());
        push[4] = 81; // IKCP_CMD_PUSH
        let hello = wyrm_kcp_hello();
        for _ in 0..20 {
            s.send(&push).await.expect("send");
            s.send(&hello).await.expect("send");
            sent += push.len() + hello.len();
        }
        socks.push(s);
    }
    let mut received = 0;
    let mut buf = [0u8; 2048];
    for s in &socks {
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), s.recv(&mut buf)).await
        {
            assert!(n < 64, "a reply of {n} bytes to requests of 24 and 64");
            received += n;
        }
    }
    // Hellos get cookies, KCP segments without a session a reset: each
    // smaller than what it answers.
    assert!(received > 0, "Hellos are answered with cookies");
    assert!(received < sent, "{received} bytes back for {sent} sent");
    assert_eq!(
        server.server.connections(),
        0,
        "no session without a cookie"
    );
    // A real client still connects and is served.
    let mut k = chat::player(&server, Transport::Kcp, "kay").await;
    join(&mut k, "after").await;
    say(&mut k, "still here").await;
    assert_eq!(next_chat(&mut k).await.2, "still here");
    drop(raw);
    server.server.shutdown().await;
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket connection to the server's `/ws`, without Wyrm's client.
async fn ws_connect(server: &TestServer) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let addr = server.addr(Transport::WebSocket);
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tcp).await?;
    Ok(ws)
}

fn hello_frame() -> Vec<u8> {
    let mut b = Vec::new();
    ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        options: Default::default(),
    }
    .encode(&mut b);
    b
}

/// A handshake Hello as `docs/protocol.md` spells it.
fn wyrm_kcp_hello() -> Vec<u8> {
    let mut d = vec![0, 0, 0, 0, b'W', b'Y', b'R', b'M', 1, 1];
    d.resize(64, 0);
    d
}

async fn expect_timed_out(c: &mut Client, what: &str) {
    let (_, code, msg) = c
        .expect_error(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: no error before the close: {e}"));
    assert_eq!(code, ErrorCode::TimedOut, "{what}: {msg}");
    loop {
        match c.next_event_timeout(WAIT).await {
            Ok(Some(Event::Closed)) | Err(ClientError::Closed) => break,
            Ok(Some(_)) => {}
            other => panic!("{what}: not closed: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_begun_must_end_in_time_on_every_transport() {
    let server = TestServer::start(
        wyrm_tests::chatroom_plugin(),
        "Account",
        &["Lobby"],
        |cfg| cfg.net.frame_timeout_ms = 400,
    )
    .await;
    let mut bystander = chat::player(&server, Transport::Tcp, "by").await;
    join(&mut bystander, "calm").await;
    for t in [Transport::Tcp, Transport::Kcp] {
        let mut c = server.connect(t).await;
        let began = Instant::now();
        // A length prefix of 10 and 3 bytes of the frame, then a byte now
        // and then: trickling does not buy time.
        c.send_raw_bytes(&[10, 0, 0, 0, 0x02, 0, 0])
            .await
            .expect("send");
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = c.send_raw_bytes(&[0]).await;
        }
        expect_timed_out(&mut c, &format!("{t:?}")).await;
        let took = began.elapsed();
        assert!(
            took >= Duration::from_millis(400),
            "{t:?}: closed after {took:?}"
        );
    }
    // WebSocket: a binary frame's header and one byte of its five.
    let mut ws = ws_connect(&server).await.expect("websocket");
    ws.send(Message::Binary(hello_frame().into()))
        .await
        .expect("hello");
    ws.get_mut()
        .write_all(&[0x82, 0x85, 1, 2, 3, 4, 9])
        .await
        .expect("half a frame");
    let mut codes = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(WAIT, ws.next()).await {
        match m {
            Message::Binary(b) => {
                if let Ok(ServerFrame::Error { code, .. }) = ServerFrame::decode(&b) {
                    codes.push(code);
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(codes, [ErrorCode::TimedOut], "WebSocket");
    say(&mut bystander, "unaffected").await;
    assert_eq!(next_chat(&mut bystander).await.2, "unaffected");
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_and_a_browser_kept_by_its_pongs() {
    let server = TestServer::start(
        wyrm_tests::chatroom_plugin(),
        "Account",
        &["Lobby"],
        |cfg| cfg.net.idle_timeout_ms = 1000,
    )
    .await;
    // A WebSocket client that only reads (as a browser's page that sends
    // nothing): its WebSocket layer answers the server's pings.
    let mut ws = ws_connect(&server).await.expect("websocket");
    ws.send(Message::Binary(hello_frame().into()))
        .await
        .expect("hello");
    let reader = tokio::spawn(async move {
        // Reading for three idle timeouts; tungstenite answers each ping.
        let mut pings = 0;
        let until = tokio::time::Instant::now() + Duration::from_millis(3000);
        loop {
            match tokio::time::timeout_at(until, ws.next()).await {
                Err(_) => return (pings, ws),
                Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                Ok(Some(Ok(Message::Close(c)))) => panic!("WebSocket closed: {c:?}"),
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("WebSocket failed: {other:?}"),
            }
        }
    });
    // TCP and KCP clients that say Hello and nothing more (the Rust
    // client's own keepalive comes every 10 s, too late for 1 s).
    let mut quiet = Vec::new();
    for t in [Transport::Tcp, Transport::Kcp] {
        quiet.push((t, server.connect(t).await));
    }
    let began = Instant::now();
    for (t, c) in &mut quiet {
        expect_timed_out(c, &format!("{t:?}")).await;
    }
    let took = began.elapsed();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    let (pings, ws) = reader.await.expect("the WebSocket stayed open");
    assert!(pings >= 2, "{pings} pings");
    wait_connections(&server, 1).await;
    drop(ws);
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_hold_on_every_transport_and_say_why() {
    let server = TestServer::start(
        wyrm_tests::chatroom_plugin(),
        "Account",
        &["Lobby"],
        |cfg| cfg.net.max_connections_per_address = 2,
    )
    .await;
    let a = server.connect(Transport::Tcp).await;
    let _b = server.connect(Transport::Kcp).await;
    wait_connections(&server, 2).await;
    let err = Client::connect(Transport::Tcp, &server.addr(Transport::Tcp))
        .await
        .err();
    let err = err.expect("a third TCP connection is refused");
    match &err {
        ClientError::Server { code, message, .. } => {
            assert_eq!(*code, ErrorCode::Overloaded, "{message}");
            assert!(message.contains("from this address"), "{message}");
        }
        other => panic!("TCP: {other}"),
    }
    let err = Client::connect(Transport::Kcp, &server.addr(Transport::Kcp))
        .await
        .err();
    let err = err.expect("a third KCP connection is refused");
    assert!(
        err.to_string()
            .contains("too many connections from this address"),
        "KCP: {err}"
    );
    let err = ws_connect(&server).await.err();
    let err = err.expect("a third WebSocket connection is refused");
    assert!(err.to_string().contains("503"), "WebSocket: {err}");
    // A place given back is a place to take.
    drop(a);
    wait_connections(&server, 1).await;
    let mut c = server.connect(Transport::WebSocket).await;
    assert!(c.round_trip(WAIT).await.is_ok());
    server.server.shutdown().await;
}
