//! The local admin endpoint, and its client (used by `wyrm swap`).
//!
//! Plain HTTP/1.1 on loopback; every request carries the server's token as
//! `Authorization: Bearer <token>`. The server publishes its address and
//! token in `<data_dir>/admin.json`, readable by its owner only.
//!
//! `POST /swap?plugin=NAME[&dry_run=1]`, body: the new component's bytes →
//! a JSON [`SwapReport`]; status 200 if the swap (or dry run) succeeded, 409
//! if it was refused.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::swapper::Swapper;
use wyrm_game::SwapReport;
use wyrm_gate::net::http;

/// Largest component accepted.
pub const MAX_COMPONENT: usize = 256 * 1024 * 1024;

/// Where a running server's admin endpoint is, and its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminInfo {
    /// The endpoint's address.
    pub addr: SocketAddr,
    /// The bearer token.
    pub token: String,
}

/// Chooses the token and writes `admin.json`; returns the token.
pub fn publish(cfg: &Config, addr: SocketAddr) -> anyhow::Result<String> {
    let token = cfg.admin.token.clone().unwrap_or_else(random_token);
    let info = AdminInfo {
        addr,
        token: token.clone(),
    };
    let path = cfg.admin_file();
    write_private(&path, &serde_json::to_vec_pretty(&info)?)
        .with_context(|| format!("cannot write the admin file {}", path.display()))?;
    Ok(token)
}

/// Reads the admin file a server started with `cfg` wrote.
pub fn read_info(cfg: &Config) -> anyhow::Result<AdminInfo> {
    let path = cfg.admin_file();
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {} — is the server running with this config?",
            path.display()
        )
    })?;
    serde_json::from_slice(&text).with_context(|| format!("invalid admin file {}", path.display()))
}

fn random_token() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        std::io::Write::write_all(&mut opts.open(&tmp)?, bytes)?;
    }
    std::fs::rename(tmp, path)
}

/// Serves admin requests until the task is aborted.
pub async fn serve(listener: TcpListener, token: String, swapper: Swapper) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let (token, swapper) = (token.clone(), swapper.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &token, &swapper).await {
                tracing::warn!(%peer, "admin request failed: {e}");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, token: &str, swapper: &Swapper) -> std::io::Result<()> {
    let Some((req, rest)) = http::read_request(&mut stream).await? else {
        return Ok(());
    };
    let authorized = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()));
    if !authorized {
        tracing::warn!(path = %req.path, "admin request without a valid token refused");
        return http::respond_with(
            &mut stream,
            "401 Unauthorized",
            "text/plain",
            b"missing or wrong admin token\n",
        )
        .await;
    }
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    if req.method != "POST" || path != "/swap" {
        return http::respond_with(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"POST /swap?plugin=NAME[&dry_run=1]\n",
        )
        .await;
    }
    let mut plugin = None;
    let mut dry_run = false;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("plugin", v)) => plugin = Some(percent_decode(v)),
            Some(("dry_run", v)) => dry_run = v == "1" || v == "true",
            _ => {}
        }
    }
    let Some(plugin) = plugin else {
        return http::respond_with(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"the plugin parameter is required\n",
        )
        .await;
    };
    let wasm = match http::read_body(&mut stream, &req, rest, MAX_COMPONENT).await {
        Ok(b) => b,
        Err(e) => {
            return http::respond_with(
                &mut stream,
                "400 Bad Request",
                "text/plain",
                format!("{e}\n").as_bytes(),
            )
            .await
        }
    };
    tracing::info!(plugin, dry_run, bytes = wasm.len(), "swap requested");
    let report = swapper.swap(&plugin, wasm, dry_run).await;
    let status = if report.succeeded() {
        "200 OK"
    } else {
        "409 Conflict"
    };
    let body = serde_json::to_vec(&report).unwrap_or_default();
    http::respond_with(&mut stream, status, "application/json", &body).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match bytes.get(i + 1..i + 3).and_then(hex_byte) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    u8::from_str_radix(std::str::from_utf8(two).ok()?, 16).ok()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks the server at `info` to swap `plugin` for the component `wasm`.
pub async fn request_swap(
    info: &AdminInfo,
    plugin: &str,
    wasm: &[u8],
    dry_run: bool,
) -> anyhow::Result<SwapReport> {
    let mut stream = TcpStream::connect(info.addr).await.with_context(|| {
        format!(
            "cannot reach the admin endpoint at {} — is the server running?",
            info.addr
        )
    })?;
    let head = format!(
        "POST /swap?plugin={}&dry_run={} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/wasm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        percent_encode(plugin),
        u8::from(dry_run),
        info.addr,
        info.token,
        wasm.len()
    );
    // The server may answer (and stop reading) before the upload ends, for
    // example on a wrong token: read its answer even if sending failed.
    let sent = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(wasm).await
    }
    .await;
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response).await;
    if response.is_empty() {
        sent?;
        read?;
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.contains(" 200 ") || status.contains(" 409 ") {
        serde_json::from_str(body).with_context(|| format!("unreadable swap report: {body}"))
    } else {
        anyhow::bail!("the server answered {status}: {}", body.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip_and_token_compare() {
        for s in ["chat room", "a&b=c", "plain-name_1", "ünï"] {
            assert_eq!(percent_decode(&percent_encode(s)), s);
        }
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
