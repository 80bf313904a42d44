//! WebSocket: one frame per binary message, at `/ws` on an HTTP port that
//! also serves the static web page.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::deframe::{put_ws_header, WS_CLOSE, WS_PING};
use super::http;
use super::link::{Framing, Link};
use super::tcp::SocketConn;
use super::tls::TlsConn;
use super::WsDeframer;

/// A WebSocket client connection: one protocol frame per binary message,
/// read and written by Wyrm's own framing (server side of RFC 6455, no
/// extensions), so that a batch of frames leaves in one write and an idle
/// connection holds no buffer.
pub type WsConn = SocketConn<WsDeframer>;

/// Binds the HTTP/WebSocket listener.
pub async fn listen_websocket(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// A WebSocket control frame from the server (pong, close).
pub fn ws_control_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + payload.len());
    put_ws_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// Answers a connection that was not admitted with `503` and the reason,
/// and closes it.
pub async fn refuse_http(stream: TcpStream, reason: impl std::fmt::Display) {
    let body = format!("{reason}\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    super::tcp::refuse_tcp(stream, response.into_bytes()).await;
}

/// Handles a new HTTP connection: serves a file and closes, or upgrades to a
/// WebSocket and returns it with its link (`max_frame` bytes in, at most
/// `queue` bytes queued out). The request head must arrive within
/// `head_timeout` (the frame timeout: it is the connection's first frame).
pub async fn accept_http(
    stream: TcpStream,
    web_root: Option<&Path>,
    max_frame: usize,
    queue: usize,
    head_timeout: Duration,
) -> io::Result<Option<(WsConn, Arc<Link>)>> {
    let _ = stream.set_nodelay(true);
    let Some((stream, early)) = upgrade(stream, web_root, head_timeout).await? else {
        return Ok(None);
    };
    let deframer = WsDeframer::new(max_frame);
    let (mut conn, link) =
        SocketConn::new(stream, deframer, Framing::WebSocket, "websocket", queue);
    conn.set_goodbye(goodbye());
    conn.set_probe(ws_control_frame(WS_PING, b""));
    conn.push_early(early);
    Ok(Some((conn, link)))
}

/// [`accept_http`] over TLS (HTTPS, `wss://`), once the TLS handshake is
/// done.
pub async fn accept_https(
    stream: TlsStream<TcpStream>,
    web_root: Option<&Path>,
    max_frame: usize,
    queue: usize,
    head_timeout: Duration,
) -> io::Result<Option<(TlsConn<WsDeframer>, Arc<Link>)>> {
    let Some((stream, early)) = upgrade(stream, web_root, head_timeout).await? else {
        return Ok(None);
    };
    let deframer = WsDeframer::new(max_frame);
    let (mut conn, link) = TlsConn::new(stream, deframer, Framing::WebSocket, "wss", queue);
    conn.set_goodbye(goodbye());
    conn.set_probe(ws_control_frame(WS_PING, b""));
    conn.push_early(early);
    Ok(Some((conn, link)))
}

/// Going away (1001): the server ends the connection.
fn goodbye() -> Vec<u8> {
    ws_control_frame(WS_CLOSE, &1001u16.to_be_bytes())
}

/// Reads the request head: answers a page request (or a bad upgrade) and
/// returns `None`, or answers the upgrade and returns the stream with the
/// bytes the client sent behind its head (frames that did not wait for the
/// answer: they are read first).
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    web_root: Option<&Path>,
    head_timeout: Duration,
) -> io::Result<Option<(S, Vec<u8>)>> {
    let Ok(head) = tokio::time::timeout(head_timeout, http::read_request(&mut stream)).await else {
        return Ok(None);
    };
    let Some((req, rest)) = head? else {
        return Ok(None);
    };
    if !req.is_websocket_upgrade() {
        http::serve_file(&mut stream, &req, web_root).await?;
        return Ok(None);
    }
    let key = req.header("sec-websocket-key").unwrap_or_default();
    if req.path.split('?').next() != Some("/ws") || key.is_empty() {
        stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        return Ok(None);
    }
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    Ok(Some((stream, rest)))
}
