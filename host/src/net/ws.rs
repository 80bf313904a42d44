//! WebSocket: one frame per binary message, at `/ws` on an HTTP port that
//! also serves the static web page.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::http;
use super::{FrameConn, Inbound, NetError};

/// How long a new connection may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A WebSocket client connection.
pub struct WsConn {
    ws: WebSocketStream<TcpStream>,
    max_frame: usize,
}

/// Binds the HTTP/WebSocket listener.
pub async fn listen_websocket(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// tungstenite allocates its read buffer per connection up front (128 KiB by
/// default) and caps nothing on writes; a game server needs both small.
fn ws_config(max_frame: usize) -> WebSocketConfig {
    // Messages up to a few times our limit are read and refused with an
    // error frame; anything larger makes tungstenite drop the connection.
    let hard_limit = max_frame.saturating_mul(4);
    WebSocketConfig::default()
        .read_buffer_size(2048)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit))
}

/// Handles a new HTTP connection: serves a file and closes, or upgrades to a
/// WebSocket and returns it.
pub async fn accept_http(
    mut stream: TcpStream,
    web_root: Option<&Path>,
    max_frame: usize,
) -> io::Result<Option<WsConn>> {
    let _ = stream.set_nodelay(true);
    let Ok(head) = tokio::time::timeout(HEAD_TIMEOUT, http::read_request(&mut stream)).await else {
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
    let cfg = Some(ws_config(max_frame));
    let ws = if rest.is_empty() {
        WebSocketStream::from_raw_socket(stream, Role::Server, cfg).await
    } else {
        WebSocketStream::from_partially_read(stream, rest, Role::Server, cfg).await
    };
    Ok(Some(WsConn { ws, max_frame }))
}

impl FrameConn for WsConn {
    async fn recv(&mut self) -> Result<Option<Inbound>, NetError> {
        loop {
            // StreamExt::next on a WebSocketStream is cancel-safe.
            let msg = match self.ws.next().await {
                None => return Ok(None),
                Some(Ok(m)) => m,
                Some(Err(
                    WsError::ConnectionClosed
                    | WsError::AlreadyClosed
                    | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                )) => return Ok(None),
                Some(Err(WsError::Io(e))) => return Err(NetError::Io(e)),
                Some(Err(e)) => return Err(NetError::Framing(e.to_string())),
            };
            match msg {
                Message::Binary(b) if b.len() > self.max_frame => {
                    return Ok(Some(Inbound::TooLarge { len: b.len() }))
                }
                Message::Binary(b) => return Ok(Some(Inbound::Frame(b))),
                Message::Close(_) => return Ok(None),
                // tungstenite answers pings itself; text is not our protocol.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                Message::Text(_) => {
                    return Err(NetError::Framing(
                        "text message: the protocol is binary".into(),
                    ))
                }
            }
        }
    }

    async fn send(&mut self, frame: Bytes) -> io::Result<()> {
        self.ws
            .send(Message::Binary(frame))
            .await
            .map_err(|e| match e {
                WsError::Io(e) => e,
                other => io::Error::other(other.to_string()),
            })
    }

    async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }

    fn transport(&self) -> &'static str {
        "websocket"
    }
}
