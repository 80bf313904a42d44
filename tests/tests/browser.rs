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

/// Plays the example in `web` (its folder) with `plugin` in Chromium over
/// HTTPS, with the server's development certificate: `driver` runs the
/// pages and must leave the screenshots `shots`.
async fn play(
    plugin: PathBuf,
    (boot, services): (&str, &[&str]),
    web: &str,
    driver: &str,
    shots: &[&str],
) {
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
    let dir = repo_root().join("target/screenshots");
    for name in shots {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let dir = drive(driver, format!("https://{addr}/"), spki).await;
    for name in shots {
        let len = std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        assert!(len > 1000, "screenshot {name} missing or empty");
    }
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_play_the_arena_and_see_each_other_move() {
    play(
        wyrm_tests::arena_plugin(),
        ("Account", &["Arena"]),
        "examples/arena/web",
        "arena.mjs",
        &["arena-alice.png", "arena-bob.png"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_through_the_chatroom_page() {
    play(
        wyrm_tests::chatroom_plugin(),
        ("Account", &["Lobby"]),
        "examples/chatroom/web",
        "chatroom.mjs",
        &["chatroom-ann.png", "chatroom-bob.png"],
    )
    .await;
}
