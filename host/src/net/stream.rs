//! Stream transports: TCP and KCP, both carrying frames behind a u32
//! little-endian length prefix.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_kcp::{KcpListener, KcpStream};
use wyrm_protocol::{FrameDecoder, FrameError};

use super::{FrameConn, Inbound, NetError};

/// A length-prefixed connection over any byte stream.
pub struct StreamConn<S> {
    io: S,
    decoder: FrameDecoder,
    out: Vec<u8>,
    name: &'static str,
}

impl<S> StreamConn<S> {
    /// Wraps a stream accepting frames of at most `max_frame` bytes.
    pub fn new(io: S, max_frame: usize, name: &'static str) -> Self {
        Self {
            io,
            decoder: FrameDecoder::new(max_frame),
            out: Vec::new(),
            name,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> FrameConn for StreamConn<S> {
    async fn recv(&mut self) -> Result<Option<Inbound>, NetError> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => return Ok(Some(Inbound::Frame(frame.freeze()))),
                Ok(None) => {}
                Err(FrameError::TooLarge { len, .. }) => {
                    return Ok(Some(Inbound::TooLarge { len }))
                }
                Err(e @ FrameError::BadLength(_)) => return Err(NetError::Framing(e.to_string())),
            }
            // read_buf appends into the decoder's buffer: cancel-safe.
            if self.io.read_buf(self.decoder.buffer_mut()).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn send(&mut self, frame: Bytes) -> io::Result<()> {
        self.out.clear();
        wyrm_protocol::write_prefixed(&mut self.out, &frame);
        for chunk in self.out.chunks(wyrm_protocol::STREAM_WRITE_CHUNK) {
            self.io.write_all(chunk).await?;
        }
        self.io.flush().await?;
        if self.out.capacity() > 16 * 1024 {
            self.out = Vec::new(); // do not pin a big frame's buffer
        }
        Ok(())
    }

    async fn close(&mut self) {
        let _ = self.io.shutdown().await;
        if self.name != "tcp" {
            return; // KCP has no end-of-stream to wait for
        }
        // Closing a TCP socket with unread input makes the kernel send a
        // reset, which can destroy the last frame we sent (an error saying
        // why we close). Drain until the peer closes too, briefly.
        let mut sink = [0u8; 1024];
        let drain = async {
            while let Ok(n) = self.io.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
    }

    fn transport(&self) -> &'static str {
        self.name
    }
}

/// Binds a TCP listener.
pub async fn listen_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Prepares an accepted TCP stream.
pub fn tcp_conn(stream: TcpStream, max_frame: usize) -> StreamConn<TcpStream> {
    let _ = stream.set_nodelay(true);
    StreamConn::new(stream, max_frame, "tcp")
}

/// Binds a KCP listener.
pub async fn listen_kcp(addr: SocketAddr) -> io::Result<KcpListener> {
    KcpListener::bind(wyrm_protocol::kcp_config(), addr)
        .await
        .map_err(|e| io::Error::other(format!("cannot bind KCP on {addr}: {e}")))
}

/// Prepares an accepted KCP stream.
pub fn kcp_conn(stream: KcpStream, max_frame: usize) -> StreamConn<KcpStream> {
    StreamConn::new(stream, max_frame, "kcp")
}
