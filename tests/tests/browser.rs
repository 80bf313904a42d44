//! The example pages played in real headless Chromium, driven by
//! Playwright: the arena (`tests/browser/arena.mjs`: two players log in,
//! one moves with the keyboard, the other sees it move) and the chatroom
//! (`tests/browser/chatroom.mjs`: two people register, log in, talk and
//! change rooms), both on the TypeScript SDK the server serves at
//! `/wyrm/`. Screenshots go to `target/screenshots/`.
//!
//! Needs Debian's `chromium` and `playwright-core` from npm:
//! `scripts/setup-browser` installs both (Chromium through apt-get, so as
//! root; otherwise it says what to run) and these tests run it first.

use std::path::PathBuf;
use std::process::Command;

use wyrm_client::Transport;
use wyrm_tests::{repo_root, TestServer};

/// Runs `tests/browser/<driver>` against the page at `url`; returns where
/// its screenshots went.
async fn drive(driver: &str, url: String) -> PathBuf {
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

fn assert_screenshots(shots: &std::path::Path, names: &[&str]) {
    for name in names {
        let len = std::fs::metadata(shots.join(name)).map_or(0, |m| m.len());
        assert!(len > 1000, "screenshot {name} missing or empty");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_play_the_arena_and_see_each_other_move() {
    let web = repo_root().join("examples/arena/web");
    let server = TestServer::start(wyrm_tests::arena_plugin(), "Account", &["Arena"], |cfg| {
        cfg.net.web_root = Some(web);
    })
    .await;
    let shots = repo_root().join("target/screenshots");
    for name in ["arena-alice.png", "arena-bob.png"] {
        let _ = std::fs::remove_file(shots.join(name));
    }
    let url = format!("http://{}/", server.addr(Transport::WebSocket));
    let shots = drive("arena.mjs", url).await;
    assert_screenshots(&shots, &["arena-alice.png", "arena-bob.png"]);
    server.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_through_the_chatroom_page() {
    let web = repo_root().join("examples/chatroom/web");
    let server = TestServer::start(
        wyrm_tests::chatroom_plugin(),
        "Account",
        &["Lobby"],
        |cfg| {
            cfg.net.web_root = Some(web);
        },
    )
    .await;
    let shots = repo_root().join("target/screenshots");
    for name in ["chatroom-ann.png", "chatroom-bob.png"] {
        let _ = std::fs::remove_file(shots.join(name));
    }
    let url = format!("http://{}/", server.addr(Transport::WebSocket));
    let shots = drive("chatroom.mjs", url).await;
    assert_screenshots(&shots, &["chatroom-ann.png", "chatroom-bob.png"]);
    server.server.shutdown().await;
}
