//! The arena example played in two real headless Chromium pages, driven by
//! Playwright (`tests/browser/arena.mjs`): both log in, one moves with the
//! keyboard, the other sees it move; screenshots go to
//! `target/screenshots/`.
//!
//! Needs Debian's `chromium` and `playwright-core` from npm:
//! `scripts/setup-browser` installs both (Chromium through apt-get, so as
//! root; otherwise it says what to run) and this test runs it first.

use std::process::Command;

use wyrm_client::Transport;
use wyrm_tests::{repo_root, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_play_the_arena_and_see_each_other_move() {
    let root = repo_root();
    let setup = Command::new(root.join("scripts/setup-browser"))
        .status()
        .expect("run scripts/setup-browser");
    assert!(
        setup.success(),
        "scripts/setup-browser failed: the browser test needs Debian's chromium and \
         playwright-core (see its output above)"
    );
    let web = root.join("examples/arena/web");
    let server = TestServer::start(wyrm_tests::arena_plugin(), "Account", &["Arena"], |cfg| {
        cfg.net.web_root = Some(web);
    })
    .await;
    let url = format!("http://{}/", server.addr(Transport::WebSocket));
    let shots = root.join("target/screenshots");
    let _ = std::fs::remove_file(shots.join("arena-alice.png"));
    let _ = std::fs::remove_file(shots.join("arena-bob.png"));
    // The driver bounds its own run (60 s) and always closes the browser.
    let driver = root.join("tests/browser/arena.mjs");
    let out = {
        let shots = shots.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(driver)
                .arg(url)
                .arg(shots)
                .output()
        })
        .await
        .expect("driver thread")
        .expect("run node tests/browser/arena.mjs")
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
    for name in ["arena-alice.png", "arena-bob.png"] {
        let len = std::fs::metadata(shots.join(name)).map_or(0, |m| m.len());
        assert!(len > 1000, "screenshot {name} missing or empty");
    }
    server.server.shutdown().await;
}
