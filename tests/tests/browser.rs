//! The example pages played in real headless Chromium, driven by
//! Playwright: the arena (`tests/browser/arena.mjs`: two players log in,
//! one moves with the keyboard, the other sees it move) and the chatroom
//! (`tests/browser/chatroom.mjs`: two people register, log in, talk and
//! change rooms), both on the TypeScript SDK the server serves at
//! `/wyrm/`, over HTTPS and `wss://` with the server's development
//! certificate (Chromium trusts it by its key's hash, as the server says
//! to). Screenshots go to `target/screenshots/`.
//!
//! Needs Debian's `chromium` and `playwright-core` from npm:
//! `scripts/setup-browser` installs both (Chromium through apt-get, so as
//! root; otherwise it says what to run) and these tests run it first.

use std::path::PathBuf;
use std::process::Command;

use wyrm_tests::{repo_root, TestServer};

/// Runs `tests/browser/<driver>` against the page at `url`, trusting the
/// development certificate whose public key hashes to `spki`; returns
/// where its screenshots went.
async fn drive(driver: &str, url: String, spki: String) -> PathBuf {
    let root = repo_root();
    let setup = Command::new(root.join("scripts/setup-browser"))
        .status()
        .expect("run scripts/setup-browser");
    assert!(
        setup.success(),
        "scripts/setup-browser failed: the browser tests need Debian's chromium and \
         playwright-core (see its output above)"
    );
    let shots = root.join("target/screenshots");
    // The driver bounds its own run (60 s) and always closes the browser.
    let script = root.join("tests/browser").join(driver);
    let out = {
        let shots = shots.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(script)
                .arg(url)
                .arg(shots)
                .env("WYRM_TRUST_SPKI", spki)
                .output()
        })
        .await
        .expect("driver thread")
        .unwrap_or_else(|e| panic!("run node tests/browser/{driver}: {e}"))
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
    shots
}

/// A server for `plugin` serving `web` (an example's folder) over HTTPS,
/// with a development certificate; the page's address and the
/// certificate's key hash.
async fn https_server(
    plugin: PathBuf,
    boot: &str,
    services: &[&str],
    web: &str,
) -> (TestServer, String, String) {
    let web = repo_root().join(web);
    let server = TestServer::start(plugin, boot, services, |cfg| {
        cfg.net.web_root = Some(web);
        cfg.net.websocket_tls = Some("127.0.0.1:0".parse().expect("address"));
        cfg.tls.self_signed = true;
    })
    .await;
    let addr = server.server.websocket_tls.expect("https listens");
    let dev = server.server.dev_certificate.clone();
    let spki = dev.expect("a development certificate").spki_sha256;
    (server, format!("https://{addr}/"), spki)
}

fn assert_screenshots(shots: &std::path::Path, names: &[&str]) {
    for name in names {
        let len = std::fs::metadata(shots.join(name)).map_or(0, |m| m.len());
        assert!(len > 1000, "screenshot {name} missing or empty");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_play_the_arena_and_see_each_other_move() {
    let (server, url, spki) = https_server(
        wyrm_tests::arena_plugin(),
        "Account",
        &["Arena"],
        "examples/arena/web",
    )
    .await;
    let shots = repo_root().join("target/screenshots");
    for name in ["arena-alice.png", "arena-bob.png"] {
        let _ = std::fs::remove_file(shots.join(name));
    }
    let shots = drive("arena.mjs", url, spki).await;
    assert_screenshots(&shots, &["arena-alice.png", "arena-bob.png"]);
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_through_the_chatroom_page() {
    let (server, url, spki) = https_server(
        wyrm_tests::chatroom_plugin(),
        "Account",
        &["Lobby"],
        "examples/chatroom/web",
    )
    .await;
    let shots = repo_root().join("target/screenshots");
    for name in ["chatroom-ann.png", "chatroom-bob.png"] {
        let _ = std::fs::remove_file(shots.join(name));
    }
    let shots = drive("chatroom.mjs", url, spki).await;
    assert_screenshots(&shots, &["chatroom-ann.png", "chatroom-bob.png"]);
    server.server.shutdown().await;
}
