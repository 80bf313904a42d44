//! `wyrm new`: a project made in each language builds with `wyrm build`'s
//! own tools and serves from its own `wyrm.toml`, as it is; its private
//! state survives a swap to itself.

use std::net::SocketAddr;

use wyrm_client::{Client, Transport};
use wyrm_tests::{call_own, expect, init_logs, repo_root, WAIT};
use wyrm_toolchains::Language;

async fn greet(c: &mut Client, name: &str) -> (String, u64) {
    call_own(c, "hello", (name,)).await;
    expect(c, "on_hello").await
}

async fn new_project_serves(lang: Language) {
    init_logs();
    if lang != Language::Rust {
        wyrm_tests::setup_polyglot();
    }
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join(format!("my-{}-game", lang.name()));
    if let Err(e) = wyrm_toolchains::scaffold::create(&dir, lang) {
        panic!("wyrm new --lang {}: {e:#}", lang.name());
    }
    let mut cfg = match wyrm::Config::load(&dir.join("wyrm.toml")) {
        Ok(c) => c,
        Err(e) => panic!("the new project's wyrm.toml: {e:#}"),
    };
    // The project's own ports may be taken on a test machine.
    let any = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.net.websocket = any;
    cfg.net.tcp = any;
    cfg.server.cache_dir = Some(repo_root().join("target/wyrm-test-cache"));
    let server = match wyrm::Server::start(cfg).await {
        Ok(s) => s,
        Err(e) => panic!("serving the new {lang} project: {e:#}"),
    };
    let addr = server.tcp.expect("tcp listener").to_string();
    let mut c = Client::connect(Transport::Tcp, &addr)
        .await
        .expect("connect");
    c.wait_player(WAIT).await.expect("own entity");
    assert_eq!(greet(&mut c, "ann").await, ("Hello, ann!".into(), 1));
    assert_eq!(greet(&mut c, "ann").await.1, 2, "{lang}: the count is kept");

    // Swap the project for itself, rebuilt: the count carries over.
    let wasm = wyrm_toolchains::build_plugin(&dir, &Default::default()).expect("rebuild");
    let bytes = std::fs::read(&wasm).expect("read component");
    let name = format!("my-{}-game", lang.name());
    let report = server.swapper().swap(&name, bytes, false).await;
    assert!(report.succeeded(), "{report}");
    assert_eq!(
        greet(&mut c, "ann").await.1,
        3,
        "{lang}: count after a swap"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_rust_project_serves() {
    new_project_serves(Language::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_js_project_serves() {
    new_project_serves(Language::JavaScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_python_project_serves() {
    new_project_serves(Language::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_c_project_serves() {
    new_project_serves(Language::C).await;
}
