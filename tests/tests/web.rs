//! The HTTP side of the WebSocket port: the chatroom's page is served.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wyrm_client::Transport;
use wyrm_tests::TestServer;

async fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).await.expect("read");
    let (head, body) = body.split_once("\r\n\r\n").unwrap_or((&body, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_is_served_beside_the_websocket() {
    let server = TestServer::chatroom().await;
    let addr = server.addr(Transport::WebSocket);
    let (status, body) = get(&addr, "/").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.contains("<html") && body.contains("/ws"),
        "the chat page, which connects to /ws"
    );
    let (status, _) = get(&addr, "/../../Cargo.toml").await;
    assert_eq!(
        status, "HTTP/1.1 404 Not Found",
        "no path escapes the web root"
    );
    let (status, _) = get(&addr, "/missing.js").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    // And a WebSocket client still connects on the same port.
    let _player = server.connect(Transport::WebSocket).await;
    server.server.shutdown().await;
}
