//! The three transports behind one small interface: send a frame, receive a
//! frame. Stream transports (TCP, KCP) add the u32 LE length prefix;
//! WebSocket carries one frame per binary message.

use std::io;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::{
    tungstenite::{self, protocol::WebSocketConfig, Message},
    WebSocketStream,
};
use wyrm_protocol::{write_prefixed, FrameDecoder, FrameError};

use crate::{ClientError, ClientTls, Transport};

/// How long the KCP handshake may take, repeats included.
const KCP_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

use wyrm_protocol::STREAM_WRITE_CHUNK as WRITE_CHUNK;

pub(crate) trait StreamIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> StreamIo for T {}

pub(crate) enum Conn {
    Stream {
        io: Box<dyn StreamIo>,
        decoder: FrameDecoder,
    },
    Ws(Box<WebSocketStream<Box<dyn StreamIo>>>),
    /// Closed by this side; the socket is dropped.
    Gone,
}

/// What a receive produced.
pub(crate) enum Incoming {
    Frame(Bytes),
    Closed,
}

fn connect_error(transport: Transport, addr: &str, reason: impl ToString) -> ClientError {
    ClientError::Connect {
        transport,
        addr: addr.to_owned(),
        reason: reason.to_string(),
    }
}

/// A read error that just means the peer went away.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
    )
}

impl Conn {
    /// Opens the transport. `max_frame` is the largest frame accepted from
    /// the server.
    pub(crate) async fn open(
        transport: Transport,
        addr: &str,
        max_frame: usize,
        tls: Option<&ClientTls>,
    ) -> Result<Conn, ClientError> {
        // TCP (plain or under TLS) for the stream transports but KCP.
        let stream = || async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| connect_error(transport, addr, e))?;
            // Small frames should leave at once; errors here only cost latency.
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn StreamIo> = match tls {
                None => Box::new(tcp),
                Some(tls) => Box::new(tls.handshake(tcp).await.map_err(|e| {
                    connect_error(transport, addr, format!("TLS handshake failed: {e}"))
                })?),
            };
            Ok::<_, ClientError>(io)
        };
        match transport {
            Transport::Tcp => Ok(Conn::Stream {
                io: stream().await?,
                decoder: FrameDecoder::new(max_frame),
            }),
            Transport::WebSocket => {
                let io = stream().await?;
                let config = WebSocketConfig::default()
                    .read_buffer_size(16 * 1024)
                    .max_message_size(Some(max_frame))
                    .max_frame_size(Some(max_frame));
                let scheme = if tls.is_some() { "wss" } else { "ws" };
                let url = format!("{scheme}://{addr}/ws");
                let (ws, _response) =
                    tokio_tungstenite::client_async_with_config(url.as_str(), io, Some(config))
                        .await
                        .map_err(|e| connect_error(transport, addr, e))?;
                Ok(Conn::Ws(Box::new(ws)))
            }
            Transport::Kcp if tls.is_some() => Err(connect_error(
                transport,
                addr,
                "TLS over KCP is not supported: use TCP or WebSocket for TLS",
            )),
            Transport::Kcp => {
                let peer = tokio::net::lookup_host(addr)
                    .await
                    .map_err(|e| connect_error(transport, addr, e))?
                    .next()
                    .ok_or_else(|| connect_error(transport, addr, "no address found"))?;
                let kcp =
                    wyrm_kcp::connect(peer, wyrm_kcp::Settings::default(), KCP_HANDSHAKE_TIMEOUT)
                        .await
                        .map_err(|e| connect_error(transport, addr, e))?;
                Ok(Conn::Stream {
                    io: Box::new(kcp),
                    decoder: FrameDecoder::new(max_frame),
                })
            }
        }
    }

    /// Sends one frame (type byte + body).
    pub(crate) async fn send_frame(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        match self {
            Conn::Stream { io, .. } => {
                let mut wire = Vec::with_capacity(frame.len() + 4);
                write_prefixed(&mut wire, frame);
                write_chunked(io, &wire).await
            }
            Conn::Ws(ws) => {
                ws.send(Message::Binary(Bytes::copy_from_slice(frame)))
                    .await?;
                Ok(())
            }
            Conn::Gone => Err(ClientError::Closed),
        }
    }

    /// Writes bytes as they are (stream transports only).
    pub(crate) async fn send_raw_bytes(&mut self, bytes: &[u8]) -> Result<bool, ClientError> {
        match self {
            Conn::Stream { io, .. } => write_chunked(io, bytes).await.map(|()| true),
            Conn::Ws(_) => Ok(false),
            Conn::Gone => Err(ClientError::Closed),
        }
    }

    /// Sends a WebSocket text message (WebSocket only).
    pub(crate) async fn send_ws_text(&mut self, text: &str) -> Result<bool, ClientError> {
        match self {
            Conn::Ws(ws) => {
                ws.send(Message::text(text)).await?;
                Ok(true)
            }
            Conn::Stream { .. } => Ok(false),
            Conn::Gone => Err(ClientError::Closed),
        }
    }

    /// Receives the next frame. Cancel-safe: if the future is dropped before
    /// it completes, no data is lost.
    pub(crate) async fn recv(&mut self) -> Result<Incoming, ClientError> {
        match self {
            Conn::Stream { io, decoder } => loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => return Ok(Incoming::Frame(frame.freeze())),
                    Ok(None) => {}
                    Err(FrameError::TooLarge { len, max }) => {
                        return Err(ClientError::FrameTooLarge { len, max })
                    }
                    Err(e @ FrameError::BadLength(_)) => return Err(ClientError::Framing(e)),
                }
                // `read_buf` is cancel-safe: bytes are only taken from the
                // socket when the read completes.
                match io.read_buf(decoder.buffer_mut()).await {
                    Ok(0) => return Ok(Incoming::Closed),
                    Ok(_) => {}
                    Err(e) if is_disconnect(&e) => return Ok(Incoming::Closed),
                    Err(e) => return Err(e.into()),
                }
            },
            Conn::Ws(ws) => loop {
                // `StreamExt::next` is cancel-safe: the stream keeps its state.
                match ws.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(Incoming::Closed),
                    Some(Ok(Message::Binary(b))) => return Ok(Incoming::Frame(b)),
                    Some(Ok(Message::Text(t))) => {
                        return Err(ClientError::Protocol(format!(
                            "server sent a WebSocket text message ({} bytes); frames are binary",
                            t.len()
                        )))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Err(tungstenite::Error::Io(e))) if is_disconnect(&e) => {
                        return Ok(Incoming::Closed)
                    }
                    Some(Err(tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ))) => return Ok(Incoming::Closed),
                    Some(Err(e)) => return Err(e.into()),
                }
            },
            Conn::Gone => Ok(Incoming::Closed),
        }
    }

    /// Closes the connection politely and drops the socket; errors are
    /// ignored (the peer may already be gone). KCP has no close handshake:
    /// dropping the stream just ends the local session.
    pub(crate) async fn close(&mut self) {
        match self {
            Conn::Stream { io, .. } => {
                let _ = io.shutdown().await;
            }
            Conn::Ws(ws) => {
                // The WebSocket's own close (a Close frame), not the
                // `SinkExt::close` that a `Box` of a sink also has.
                let _ = WebSocketStream::close(ws, None).await;
            }
            Conn::Gone => {}
        }
        *self = Conn::Gone;
    }
}

async fn write_chunked(io: &mut Box<dyn StreamIo>, bytes: &[u8]) -> Result<(), ClientError> {
    for chunk in bytes.chunks(WRITE_CHUNK) {
        io.write_all(chunk).await?;
    }
    io.flush().await?;
    Ok(())
}
