//! The gate's listeners: a task per transport that accepts connections,
//! admits them under the connection limits (refusing the rest with a frame
//! that says why) and starts each one's task.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use wyrm_dispatcher::Upstream;
use wyrm_wire::ClientIds;

use crate::net::{self, Admission};
use crate::{serve_connection, ConnContext};

/// Where the gate listens (`[net]` in the config); a transport without an
/// address is off.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub tcp: Option<SocketAddr>,
    pub kcp: Option<SocketAddr>,
    pub websocket: Option<SocketAddr>,
    /// Raw TCP framing over TLS.
    pub tcp_tls: Option<SocketAddr>,
    /// WebSocket over TLS (`wss://`), beside the page over HTTPS.
    pub websocket_tls: Option<SocketAddr>,
    /// The certificate of the TLS listeners (required if either is set).
    pub tls: Option<Arc<net::Tls>>,
    /// Served as static files on the WebSocket ports.
    pub web_root: Option<PathBuf>,
}

/// A transport the gate could not listen on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {transport} on {addr}: {source}")]
pub struct ListenError {
    pub transport: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The gate's listening tasks and the addresses they are bound to.
#[derive(Debug, Default)]
pub struct Listeners {
    pub tcp: Option<SocketAddr>,
    pub kcp: Option<SocketAddr>,
    pub websocket: Option<SocketAddr>,
    pub tcp_tls: Option<SocketAddr>,
    pub websocket_tls: Option<SocketAddr>,
    /// One per transport; they run until aborted.
    pub tasks: Vec<JoinHandle<()>>,
}

/// Listens on every transport `at` names. Client ids come from `ids`;
/// connections are counted by `admission`.
pub async fn listen<U: Upstream>(
    at: &Endpoints,
    ctx: ConnContext<U>,
    admission: Admission,
    ids: Arc<ClientIds>,
) -> Result<Listeners, ListenError> {
    let mut out = Listeners::default();
    let failed = |transport, addr| {
        move |source| ListenError {
            transport,
            addr,
            source,
        }
    };
    if let Some(addr) = at.tcp {
        let listener = net::listen_tcp(addr).await.map_err(failed("TCP", addr))?;
        out.tcp = Some(listener.local_addr().map_err(failed("TCP", addr))?);
        let (ctx, ids, admission) = (ctx.clone(), ids.clone(), admission.clone());
        out.tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let ticket = match admission.admit(peer, "tcp") {
                            Ok(ticket) => ticket,
                            Err(refused) => {
                                tokio::spawn(net::refuse_tcp(stream, refusal_frame(refused)));
                                continue;
                            }
                        };
                        let l = ctx.limits;
                        let (conn, link) = net::tcp_conn(stream, l.max_frame, l.queue_bytes);
                        tokio::spawn(serve_connection(
                            conn,
                            link,
                            ids.next(),
                            ctx.clone(),
                            ticket,
                        ));
                    }
                    Err(e) => accept_failed("tcp", e).await,
                }
            }
        }));
    }
    if let Some(addr) = at.kcp {
        let mut listener = net::listen_kcp(addr, ctx.limits.idle_timeout, admission.clone())
            .await
            .map_err(failed("KCP", addr))?;
        out.kcp = Some(listener.local_addr());
        let (ctx, ids) = (ctx.clone(), ids.clone());
        out.tasks.push(tokio::spawn(async move {
            // Ends when the endpoint does (it stops only with the server).
            while let Ok(opened) = listener.accept().await {
                let l = ctx.limits;
                let (conn, link) = net::kcp_conn(opened.stream, l.max_frame, l.queue_bytes);
                tokio::spawn(serve_connection(
                    conn,
                    link,
                    ids.next(),
                    ctx.clone(),
                    opened.ticket,
                ));
            }
        }));
    }
    if let Some(addr) = at.websocket {
        let listener = net::listen_websocket(addr)
            .await
            .map_err(failed("WebSocket", addr))?;
        out.websocket = Some(listener.local_addr().map_err(failed("WebSocket", addr))?);
        let web_root: Option<Arc<std::path::Path>> = at.web_root.clone().map(Into::into);
        let (ctx, ids, admission) = (ctx.clone(), ids.clone(), admission.clone());
        out.tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        // Page requests count too: a connection is a
                        // connection until it says what it is.
                        let ticket = match admission.admit(peer, "websocket") {
                            Ok(ticket) => ticket,
                            Err(refused) => {
                                tokio::spawn(net::refuse_http(stream, refused));
                                continue;
                            }
                        };
                        let (ctx, ids, web_root) = (ctx.clone(), ids.clone(), web_root.clone());
                        tokio::spawn(async move {
                            let l = ctx.limits;
                            match net::accept_http(
                                stream,
                                web_root.as_deref(),
                                l.max_frame,
                                l.queue_bytes,
                                l.frame_timeout,
                            )
                            .await
                            {
                                Ok(Some((conn, link))) => {
                                    serve_connection(conn, link, ids.next(), ctx, ticket).await
                                }
                                Ok(None) => {}
                                Err(e) => tracing::debug!("http connection failed: {e}"),
                            }
                        });
                    }
                    Err(e) => accept_failed("websocket", e).await,
                }
            }
        }));
    }
    let tls_for = |transport| {
        at.tls.clone().ok_or_else(|| ListenError {
            transport,
            addr: at
                .tcp_tls
                .or(at.websocket_tls)
                .unwrap_or(([0, 0, 0, 0], 0).into()),
            source: std::io::Error::other("no TLS certificate is configured"),
        })
    };
    if let Some(addr) = at.tcp_tls {
        let tls = tls_for("TLS TCP")?;
        let listener = net::listen_tcp(addr)
            .await
            .map_err(failed("TLS TCP", addr))?;
        out.tcp_tls = Some(listener.local_addr().map_err(failed("TLS TCP", addr))?);
        let timeout = ctx.limits.frame_timeout;
        let (ctx, ids) = (ctx.clone(), ids.clone());
        let serve = move |stream, ticket| {
            let (ctx, ids) = (ctx.clone(), ids.clone());
            async move {
                let l = ctx.limits;
                let (conn, link) = net::tls_tcp_conn(stream, l.max_frame, l.queue_bytes);
                serve_connection(conn, link, ids.next(), ctx, ticket).await;
            }
        };
        out.tasks.push(accept_tls(
            listener,
            tls,
            admission.clone(),
            "tcp-tls",
            timeout,
            serve,
        ));
    }
    if let Some(addr) = at.websocket_tls {
        let tls = tls_for("TLS WebSocket")?;
        let listener = net::listen_websocket(addr)
            .await
            .map_err(failed("TLS WebSocket", addr))?;
        out.websocket_tls = Some(
            listener
                .local_addr()
                .map_err(failed("TLS WebSocket", addr))?,
        );
        let web_root: Option<Arc<std::path::Path>> = at.web_root.clone().map(Into::into);
        let timeout = ctx.limits.frame_timeout;
        let serve = move |stream, ticket| {
            let (ctx, ids, web_root) = (ctx.clone(), ids.clone(), web_root.clone());
            async move {
                let l = ctx.limits;
                let root = web_root.as_deref();
                match net::accept_https(stream, root, l.max_frame, l.queue_bytes, l.frame_timeout)
                    .await
                {
                    Ok(Some((conn, link))) => {
                        serve_connection(conn, link, ids.next(), ctx, ticket).await
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!("https connection failed: {e}"),
                }
            }
        };
        out.tasks
            .push(accept_tls(listener, tls, admission, "wss", timeout, serve));
    }
    Ok(out)
}

/// Accepts TLS connections on `listener` until aborted: each is admitted
/// under `admission`, does its handshake (within `timeout`) on a task of
/// its own, so a slow one holds up no other, and is then `serve`d with its
/// ticket. A connection refused under the limits is closed before its
/// handshake, without a word: a handshake costs the server about a
/// millisecond of CPU, which a flood at the limit must not buy.
fn accept_tls<F, Fut>(
    listener: tokio::net::TcpListener,
    tls: Arc<net::Tls>,
    admission: Admission,
    transport: &'static str,
    timeout: Duration,
    serve: F,
) -> JoinHandle<()>
where
    F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, net::Ticket) -> Fut
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(transport, e).await;
                    continue;
                }
            };
            let Ok(ticket) = admission.admit(peer, transport) else {
                continue;
            };
            let (tls, serve) = (tls.clone(), serve.clone());
            tokio::spawn(async move {
                if let Ok(stream) = tls.accept(stream, timeout).await {
                    serve(stream, ticket).await;
                }
            });
        }
    })
}

/// The frame a refused connection is sent before it is closed.
fn refusal_frame(refused: net::Refused) -> Vec<u8> {
    let frame = wyrm_protocol::ServerFrame::Error {
        req_id: 0,
        code: wyrm_protocol::ErrorCode::Overloaded,
        message: format!("connection refused: {refused}"),
    };
    let mut wire = Vec::new();
    wyrm_protocol::write_prefixed(&mut wire, &frame.to_bytes());
    wire
}

/// Accept errors (out of file descriptors, mostly) are transient: log and
/// back off instead of spinning.
async fn accept_failed(transport: &str, e: std::io::Error) {
    tracing::warn!(transport, "accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
