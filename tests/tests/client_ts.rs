//! The TypeScript client SDK (`client-ts/`): the TypeScript compiler checks
//! it and writes its declarations, its own tests run under Node's test
//! runner, and its live tests play the chatroom (over TCP and WebSocket,
//! plain and over TLS) and the arena (WebSocket) against real servers.
//!
//! Needs Node.js 20 or later with npm (`scripts/setup-browser` installs
//! them); installs the SDK's pinned development packages itself (`npm
//! ci`) when they are missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wyrm_client::Transport;
use wyrm_tests::{repo_root, TestServer};

fn sdk_dir() -> PathBuf {
    repo_root().join("client-ts")
}

/// Runs `node <args>` in `dir` with `env`, on a blocking thread.
async fn node(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new("node");
    cmd.args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let what = format!("node {}", args.join(" "));
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the node thread")
        .unwrap_or_else(|e| {
            panic!("cannot run {what}: {e}; the SDK's tests need Node.js >= 20 (scripts/setup-browser installs it)")
        })
}

fn assert_ok(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{what}:\n{stdout}");
}

/// Installs the pinned development packages unless they are there.
fn npm_ci(dir: &Path) {
    if dir.join("node_modules/typescript/package.json").is_file()
        && dir.join("node_modules/ws/package.json").is_file()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run npm ci in {}: {e} (scripts/setup-browser installs Node.js and npm)",
                dir.display()
            )
        });
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_type_checks_passes_its_tests_and_plays_real_servers() {
    let dir = sdk_dir();
    npm_ci(&dir);

    // Strict checking of the JSDoc-typed sources, and the declarations.
    let tsc = node(&dir, &["node_modules/typescript/bin/tsc", "-p", "."], &[]).await;
    assert_ok(&tsc, "tsc -p client-ts");
    assert!(
        dir.join("dist/index.d.ts").is_file(),
        "tsc wrote the declarations"
    );

    let unit = node(&dir, &["--test", "test/"], &[]).await;
    assert_ok(&unit, "node --test client-ts/test/");

    let chat = TestServer::start(
        wyrm_tests::chatroom_plugin(),
        "Account",
        &["Lobby"],
        |cfg| {
            cfg.net.tcp_tls = Some("127.0.0.1:0".parse().expect("address"));
            cfg.net.websocket_tls = Some("127.0.0.1:0".parse().expect("address"));
            cfg.tls.self_signed = true;
        },
    )
    .await;
    let dev = chat
        .server
        .dev_certificate
        .clone()
        .expect("a development certificate");
    let (tls, wss) = (
        chat.server.tcp_tls.expect("TLS TCP"),
        chat.server.websocket_tls.expect("wss"),
    );
    let web = repo_root().join("examples/arena/web");
    let arena = TestServer::start(wyrm_tests::arena_plugin(), "Account", &["Arena"], |cfg| {
        cfg.net.web_root = Some(web);
    })
    .await;
    let env = [
        (
            "WYRM_CHAT_TCP",
            format!("tcp://{}", chat.addr(Transport::Tcp)),
        ),
        (
            "WYRM_CHAT_WS",
            format!("ws://{}/ws", chat.addr(Transport::WebSocket)),
        ),
        ("WYRM_CHAT_TLS", format!("tls://{tls}")),
        ("WYRM_CHAT_WSS", format!("wss://{wss}/ws")),
        ("WYRM_CHAT_CA", dev.ca.display().to_string()),
        (
            "WYRM_ARENA_WS",
            format!("ws://{}/ws", arena.addr(Transport::WebSocket)),
        ),
    ];
    let live = node(&dir, &["--test", "live/"], &env).await;
    assert_ok(&live, "node --test client-ts/live/");
    let passed = String::from_utf8_lossy(&live.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("# pass ").map(str::to_owned))
        .unwrap_or_default();
    assert_eq!(
        passed, "6",
        "the chat on four transports, the untrusted certificate and the arena ran"
    );
    chat.server.shutdown().await;
    arena.server.shutdown().await;
}
