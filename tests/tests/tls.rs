//! TLS on TCP and WebSocket (`[net] tcp_tls`, `websocket_tls`): the
//! chatroom played by clients that trust the server's authority, a client
//! that does not is refused, and a certificate replaced in its files is
//! what new connections get, with no restart and no open connection lost.

use std::path::Path;
use std::time::{Duration, Instant};

use wyrm_client::{Client, ClientError, ClientTls, Transport};
use wyrm_tests::chat::{join, next_chat, player_with, say};
use wyrm_tests::{chatroom_plugin, TestServer};

fn trust(ca: &Path) -> ClientTls {
    let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("read {}: {e}", ca.display()));
    match ClientTls::with_ca_pem(&pem, "localhost") {
        Ok(t) => t,
        Err(e) => panic!("a CA client: {e}"),
    }
}

async fn connect_tls(t: Transport, addr: &str, tls: ClientTls) -> Result<Client, ClientError> {
    Client::builder(t).tls(tls).connect(addr).await
}

/// A chatroom server with TLS listeners beside the plain ones; `tls` sets
/// `[tls]`.
async fn tls_server(
    tls: impl FnOnce(&mut wyrm::config::TlsConfig),
) -> (TestServer, String, String) {
    let server = TestServer::start(chatroom_plugin(), "Account", &["Lobby"], |cfg| {
        cfg.net.tcp_tls = Some("127.0.0.1:0".parse().expect("address"));
        cfg.net.websocket_tls = Some("127.0.0.1:0".parse().expect("address"));
        cfg.tls.reload_interval_ms = 100;
        tls(&mut cfg.tls);
    })
    .await;
    let tcp = server.server.tcp_tls.expect("TLS TCP listens").to_string();
    let wss = server
        .server
        .websocket_tls
        .expect("wss listens")
        .to_string();
    (server, tcp, wss)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_trust_the_development_authority_chat_over_tls_tcp_and_wss() {
    let (server, tcp, wss) = tls_server(|t| t.self_signed = true).await;
    let dev = server
        .server
        .dev_certificate
        .clone()
        .expect("a development certificate was made");
    assert!(dev.ca.is_file() && dev.cert.is_file() && dev.key.is_file());
    assert_eq!(dev.spki_sha256.len(), 44, "a base64 SHA-256");

    let mut ann = player_with(
        connect_tls(Transport::Tcp, &tcp, trust(&dev.ca)).await,
        "ann",
    )
    .await;
    let mut bob = player_with(
        connect_tls(Transport::WebSocket, &wss, trust(&dev.ca)).await,
        "bob",
    )
    .await;
    // And one on the plain port: the same game.
    let mut cy = wyrm_tests::chat::player(&server, Transport::Tcp, "cy").await;
    say(&mut ann, "over tls").await;
    for c in [&mut ann, &mut bob, &mut cy] {
        let (from, room, text) = next_chat(c).await;
        assert_eq!(
            (from.as_str(), room.as_str(), text.as_str()),
            ("ann", "lobby", "over tls")
        );
    }
    join(&mut bob, "side").await;
    say(&mut bob, "from wss").await;
    let (from, _, text) = next_chat(&mut bob).await;
    assert_eq!((from.as_str(), text.as_str()), ("bob", "from wss"));
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let (server, tcp, wss) = tls_server(|t| t.self_signed = true).await;
    // Another machine's development authority.
    let other = tempfile::tempdir().expect("temp dir");
    let stranger = wyrm_gate::net::self_signed(other.path()).expect("another authority");
    for (t, addr) in [(Transport::Tcp, &tcp), (Transport::WebSocket, &wss)] {
        match connect_tls(t, addr, trust(&stranger.ca)).await {
            Ok(_) => panic!("{t:?}: a client that trusts another authority connected"),
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("TLS handshake failed") && text.contains("certificate"),
                    "{t:?}: {text}"
                );
            }
        }
    }
    // The certificate is for localhost, not for another name.
    let dev = server
        .server
        .dev_certificate
        .clone()
        .expect("dev certificate");
    let pem = std::fs::read(&dev.ca).expect("read the CA");
    let elsewhere = ClientTls::with_ca_pem(&pem, "game.example.com").expect("settings");
    let refused = connect_tls(Transport::Tcp, &tcp, elsewhere).await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("certificate")),
        "a name the certificate is not for"
    );
    // Plain bytes on the TLS port are no protocol at all.
    let plain = Client::connect(Transport::Tcp, &tcp).await;
    assert!(plain.is_err(), "a plain client on the TLS port");
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_in_its_files_serves_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = wyrm_gate::net::self_signed(&dir.path().join("first")).expect("first");
    let second = wyrm_gate::net::self_signed(&dir.path().join("second")).expect("second");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(&first.cert, &cert).expect("cert");
    std::fs::copy(&first.key, &key).expect("key");
    let (server, tcp, _) = tls_server(|t| {
        t.cert = Some(cert.clone());
        t.key = Some(key.clone());
    })
    .await;
    assert!(server.server.dev_certificate.is_none());
    let mut kept = player_with(
        connect_tls(Transport::Tcp, &tcp, trust(&first.ca)).await,
        "kept",
    )
    .await;

    // The new pair, key first (a half-written pair is not taken).
    std::fs::copy(&second.key, &key).expect("key");
    std::fs::copy(&second.cert, &cert).expect("cert");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match connect_tls(Transport::Tcp, &tcp, trust(&second.ca)).await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the new certificate was never served: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        connect_tls(Transport::Tcp, &tcp, trust(&first.ca))
            .await
            .is_err(),
        "new connections no longer get the old certificate"
    );
    // The connection made before goes on.
    say(&mut kept, "still here").await;
    let (from, _, text) = next_chat(&mut kept).await;
    assert_eq!((from.as_str(), text.as_str()), ("kept", "still here"));
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_limit_is_closed_before_its_handshake() {
    let server = TestServer::start(chatroom_plugin(), "Account", &["Lobby"], |cfg| {
        cfg.net.tcp_tls = Some("127.0.0.1:0".parse().expect("address"));
        cfg.net.max_connections = 1;
        cfg.tls.self_signed = true;
    })
    .await;
    let tcp = server.server.tcp_tls.expect("TLS TCP listens").to_string();
    let ca = server
        .server
        .dev_certificate
        .clone()
        .expect("dev certificate")
        .ca;
    let mut first = connect_tls(Transport::Tcp, &tcp, trust(&ca))
        .await
        .expect("the first connection");
    first
        .wait_player(wyrm_tests::WAIT)
        .await
        .expect("own entity");
    let refused = connect_tls(Transport::Tcp, &tcp, trust(&ca)).await;
    let text = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("TLS handshake failed"), "{text}");
    // Room again once the first has gone.
    first.close().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect_tls(Transport::Tcp, &tcp, trust(&ca)).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "never let in again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.server.shutdown().await;
}
