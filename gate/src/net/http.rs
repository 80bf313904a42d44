//! Just enough HTTP/1.1 for one port to serve a static web page and accept
//! WebSocket upgrades: a request head parser and a file responder.

use std::path::{Component, Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;

/// A parsed request head.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this asks for a WebSocket upgrade.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
            && self.header("connection").is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
    }
}

/// Reads a request head. Returns it with any bytes read past its end.
pub async fn read_request(
    stream: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<(Request, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_request_head(&buf) {
            Head::Complete { request, len } => {
                let rest = buf.split_off(len);
                return Ok(request.map(|r| (r, rest)));
            }
            Head::Partial if buf.len() > MAX_HEAD => return Ok(None),
            Head::Partial => {}
        }
    }
}

/// What the bytes read so far make of a request head.
#[derive(Debug)]
pub enum Head {
    /// The head has not ended yet: read more (unless past [`MAX_HEAD`]).
    Partial,
    /// The head takes the first `len` bytes (its blank line included);
    /// `request` is `None` when they are not a request head.
    Complete {
        request: Option<Request>,
        len: usize,
    },
}

/// Parses a request head from the start of `buf`: the I/O-free part of
/// [`read_request`], public so it can be fuzzed alone.
pub fn parse_request_head(buf: &[u8]) -> Head {
    match find_head_end(buf) {
        Some(len) => Head::Complete {
            request: parse_head(&buf[..len]),
            len,
        },
        None => Head::Partial,
    }
}

/// Reads a request body of `Content-Length` bytes (at most `max`), `rest`
/// being what was read past the head.
pub async fn read_body(
    stream: &mut (impl AsyncRead + Unpin),
    req: &Request,
    mut rest: Vec<u8>,
    max: usize,
) -> Result<Vec<u8>, String> {
    let len: usize = req
        .header("content-length")
        .ok_or("a Content-Length header is required")?
        .parse()
        .map_err(|_| "invalid Content-Length")?;
    if len > max {
        return Err(format!("body of {len} bytes exceeds the limit of {max}"));
    }
    if rest.len() > len {
        return Err("more bytes than Content-Length announced".into());
    }
    let have = rest.len();
    rest.resize(len, 0);
    stream
        .read_exact(&mut rest[have..])
        .await
        .map_err(|e| format!("body ended early: {e}"))?;
    Ok(rest)
}

/// Writes a whole response and closes the write side.
pub async fn respond_with(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    status: &str,
    ctype: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await?;
    // The client may still be sending (a refused upload): closing with
    // unread input would reset the connection and could destroy the
    // answer. Read and drop what comes, briefly.
    let mut sink = [0u8; 8192];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
    Ok(())
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Request {
        method,
        path,
        headers,
    })
}

/// Where every server serves the JavaScript client SDK (`client-ts/src`),
/// whatever its web root holds: a page imports `/wyrm/index.js`.
pub const SDK_PATH: &str = "/wyrm/";

/// Each named module of `client-ts/src`, with its text.
macro_rules! sdk_modules {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../client-ts/src/", $name)))),*]
    };
}

/// The SDK's modules, built into the server so that its pages work with no
/// build step and always speak this server's protocol.
const SDK: &[(&str, &str)] = sdk_modules![
    "index.js",
    "client.js",
    "transport.js",
    "frames.js",
    "positions.js",
    "attrs.js",
    "msgpack.js",
    "lz4.js",
    "errors.js",
];

/// The SDK module at URL path `path`, if it names one.
fn sdk_module(path: &str) -> Option<&'static str> {
    let name = path.split(['?', '#']).next()?.strip_prefix(SDK_PATH)?;
    SDK.iter().find(|(n, _)| *n == name).map(|(_, body)| *body)
}

/// Answers a plain HTTP request from `web_root` (or the SDK, under
/// [`SDK_PATH`]), then closes.
pub async fn serve_file(
    stream: &mut (impl AsyncWrite + Unpin),
    req: &Request,
    web_root: Option<&Path>,
) -> std::io::Result<()> {
    if req.method != "GET" && req.method != "HEAD" {
        return respond(
            stream,
            "405 Method Not Allowed",
            "text/plain",
            b"method not allowed\n",
            req,
        )
        .await;
    }
    if let Some(module) = sdk_module(&req.path) {
        let ctype = "text/javascript; charset=utf-8";
        return respond(stream, "200 OK", ctype, module.as_bytes(), req).await;
    }
    let Some(file) = web_root.and_then(|root| resolve(root, &req.path)) else {
        return respond(stream, "404 Not Found", "text/plain", b"not found\n", req).await;
    };
    match tokio::fs::read(&file).await {
        Ok(body) => respond(stream, "200 OK", content_type(&file), &body, req).await,
        Err(_) => respond(stream, "404 Not Found", "text/plain", b"not found\n", req).await,
    }
}

/// Maps a URL path to a file under `root`, refusing anything that would
/// leave it.
pub fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let path = url_path.split(['?', '#']).next().unwrap_or("/");
    let mut out = root.to_path_buf();
    for part in Path::new(path.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.is_dir() {
        out.push("index.html");
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

async fn respond(
    stream: &mut (impl AsyncWrite + Unpin),
    status: &str,
    ctype: &str,
    body: &[u8],
    req: &Request,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if req.method != "HEAD" {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_refuses_escapes() {
        let root = Path::new("/srv/web");
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(
            resolve(root, "/a/b.js?x=1"),
            Some(PathBuf::from("/srv/web/a/b.js"))
        );
    }

    #[test]
    fn the_sdk_is_served_under_its_path_only() {
        let index = sdk_module("/wyrm/index.js").expect("index.js");
        assert!(index.contains("export { connect"));
        assert!(sdk_module("/wyrm/client.js?v=1").is_some());
        assert_eq!(sdk_module("/wyrm/../Cargo.toml"), None);
        assert_eq!(sdk_module("/wyrm/"), None);
        assert_eq!(sdk_module("/index.js"), None);
        // Every module the SDK imports is served.
        for (_, body) in SDK {
            for import in body.split("from \"./").skip(1) {
                let name = import.split('"').next().unwrap_or_default();
                assert!(
                    SDK.iter().any(|(n, _)| *n == name),
                    "{name} is imported but not served"
                );
            }
        }
    }

    #[test]
    fn parses_upgrade_request() {
        let r = parse_head(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n").unwrap();
        assert_eq!(r.path, "/ws");
        assert!(r.is_websocket_upgrade());
    }
}
