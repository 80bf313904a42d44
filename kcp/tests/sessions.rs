//! KCP sessions over real UDP sockets on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use wyrm_kcp::handshake::{Datagram, HANDSHAKE_VERSION, REQUEST_LEN};
use wyrm_kcp::{connect, KcpListener, Refusal, Settings};

const WAIT: Duration = Duration::from_secs(30);

/// A listener that echoes every byte back, counting sessions it opened.
async fn echo_server(settings: Settings, max: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let opened = Arc::new(AtomicUsize::new(0));
    let count = opened.clone();
    let mut listener = KcpListener::bind(([127, 0, 0, 1], 0).into(), settings, move |_| {
        if count.load(Ordering::SeqCst) >= max {
            return Err(Refusal::ServerFull);
        }
        count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
    .await
    .expect("bind");
    let addr = listener.local_addr();
    tokio::spawn(async move {
        while let Ok(a) = listener.accept().await {
            tokio::spawn(async move {
                let mut s = a.stream;
                let mut buf = vec![0; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, opened)
}

#[tokio::test]
async fn many_clients_echo_large_and_small_writes_in_order() {
    let (addr, opened) = echo_server(Settings::default(), 1000).await;
    let mut clients = Vec::new();
    for i in 0..20u32 {
        clients.push(tokio::spawn(async move {
            let mut s = connect(addr, Settings::default(), WAIT)
                .await
                .expect("connect");
            // 100 KB: more than a window's worth, so flow control is
            // exercised.
            let data: Vec<u8> = (0..100_000u32).map(|b| (b * 7 + i) as u8).collect();
            let (mut r, mut w) = tokio::io::split(s);
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                for piece in sent.chunks(1 + (i as usize * 997) % 9000) {
                    w.write_all(piece).await.expect("write");
                }
                w
            });
            let mut got = vec![0; data.len()];
            tokio::time::timeout(WAIT, r.read_exact(&mut got))
                .await
                .expect("echo in time")
                .expect("read");
            assert!(got == data, "client {i}: bytes differ");
            s = r.unsplit(writer.await.expect("writer"));
            drop(s);
        }));
    }
    for c in clients {
        c.await.expect("client");
    }
    assert_eq!(opened.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn spoofed_datagrams_open_nothing_and_draw_no_more_than_they_carry() {
    let (addr, opened) = echo_server(Settings::default(), 1000).await;
    let raw = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    raw.connect(addr).await.expect("connect");
    // What an attacker sends from a forged address: KCP segments (the old
    // way to open a session), a Hello, a Connect with a made-up cookie.
    let mut kcp_push = vec![0u8; 24];
    kcp_push[..4].copy_from_slice(&77u32.to_le_bytes());
    kcp_push[4] = 81; // IKCP_CMD_PUSH
    let hello = Datagram::Hello {
        version: HANDSHAKE_VERSION,
    }
    .encode();
    let forged = Datagram::Connect {
        cookie: [9; 20],
        conv: 5,
    }
    .encode();
    let mut sent = 0;
    for _ in 0..200 {
        for d in [&kcp_push, &hello[..20].to_vec(), &hello, &forged] {
            raw.send(d).await.expect("send");
            sent += d.len();
        }
    }
    // Read every reply until the socket has been quiet for a while.
    let mut received = 0;
    let mut replies = 0;
    let mut buf = [0u8; 2048];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), raw.recv(&mut buf)).await
    {
        received += n;
        replies += 1;
        assert!(n < REQUEST_LEN, "a reply of {n} bytes");
    }
    assert_eq!(
        opened.load(Ordering::SeqCst),
        0,
        "no session without a cookie"
    );
    // Hellos get cookies, forged Connects a refusal, nothing else answers
    // (a few replies may be lost to the socket's buffer).
    assert!(replies > 0 && replies <= 400, "{replies} replies");
    assert!(received * 2 < sent, "{received} bytes back for {sent} sent");
}

#[tokio::test]
async fn a_refusal_reaches_the_client_with_its_reason() {
    let (addr, opened) = echo_server(Settings::default(), 1).await;
    let first = connect(addr, Settings::default(), WAIT)
        .await
        .expect("first");
    let err = connect(addr, Settings::default(), WAIT)
        .await
        .err()
        .expect("second is refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(err.to_string().contains("the server is full"), "{err}");
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    drop(first);
}

#[tokio::test]
async fn a_silent_peer_is_removed_and_its_stream_ends() {
    let settings = Settings {
        idle_timeout: Duration::from_millis(300),
        ..Settings::default()
    };
    let mut listener = KcpListener::bind(([127, 0, 0, 1], 0).into(), settings, |_| Ok(()))
        .await
        .expect("bind");
    let addr = listener.local_addr();
    // A client that completes the handshake, then goes quiet for good.
    let raw = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    raw.connect(addr).await.expect("connect");
    raw.send(
        &Datagram::Hello {
            version: HANDSHAKE_VERSION,
        }
        .encode(),
    )
    .await
    .expect("hello");
    let mut buf = [0u8; 64];
    let n = raw.recv(&mut buf).await.expect("cookie");
    let Some(Datagram::Cookie(cookie)) = Datagram::decode(&buf[..n]) else {
        panic!("no cookie: {:?}", &buf[..n]);
    };
    raw.send(&Datagram::Connect { cookie, conv: 1234 }.encode())
        .await
        .expect("connect");
    let mut accepted = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("accepted in time")
        .expect("accepted");
    let n = tokio::time::timeout(WAIT, accepted.stream.read(&mut buf))
        .await
        .expect("the stream ends in time")
        .expect("read");
    assert_eq!(n, 0, "end of stream");
}

#[tokio::test]
async fn nothing_listening_is_a_clear_error() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = taken.local_addr().expect("addr");
    drop(taken);
    let err = connect(addr, Settings::default(), Duration::from_millis(800))
        .await
        .err()
        .expect("no server");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_learns_at_once_that_the_server_lost_its_session() {
    let settings = Settings::default();
    let mut listener = KcpListener::bind(([127, 0, 0, 1], 0).into(), settings, |_| Ok(()))
        .await
        .expect("bind");
    let addr = listener.local_addr();
    let mut client = connect(addr, settings, WAIT).await.expect("connect");
    let accepted = listener.accept().await.expect("accepted");
    // The server goes (as a killed one would) and another takes its port.
    drop(accepted);
    drop(listener);
    let _again = loop {
        match KcpListener::<()>::bind(addr, settings, |_| Ok(())).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    client.write_all(b"anyone there?").await.expect("write");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buf))
        .await
        .expect("the client hears of it within 2 s, not after its retries")
        .expect("read");
    assert_eq!(n, 0, "end of stream");
}
