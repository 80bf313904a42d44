//! The short fuzzing run of `cargo test`: every target, a bounded number of
//! inputs each (the committed corpus, then mutations of it, from a fixed
//! seed), without coverage feedback. A failure names the input and where
//! it was saved; `scripts/fuzz replay <target> <file>` runs it again.
//! Long, coverage-guided runs: `scripts/fuzz`.

use std::time::Duration;

use wyrm_fuzz::engine::{self, Config, Env};
use wyrm_fuzz::{corpus_dir, repo_root, targets};

fn short(name: &str) {
    let t = targets::find(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    if !t.in_process {
        // Like the conformance tests: the other languages' tools are
        // required, and installed if missing.
        targets::setup_polyglot(&repo_root());
    }
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wyrm-fuzz");
    let seed = std::env::var("WYRM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| engine::hash(name.as_bytes()));
    let cfg = Config {
        iterations: Some(t.ci_iterations),
        // A safety net for a slow machine; the count is what is meant.
        time: Some(Duration::from_secs(45)),
        seed,
        corpus_dirs: vec![corpus_dir(t)],
        queue: None,
        findings: tmp.join("findings"),
        keep_going: false,
        progress: None,
        timeout: Duration::from_secs(60),
        env: Env {
            repo: repo_root(),
            work: tmp.join("work"),
        },
    };
    let r = engine::run(t, &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("{} (seed {seed})", r.summary());
    if let Some(f) = r.findings.first() {
        panic!(
            "{name}: {}\ninput saved in {} ({} bytes): {}\nreplay: scripts/fuzz replay {name} {}",
            f.message,
            f.saved.display(),
            f.input.len(),
            engine::hex_preview(&f.input),
            f.saved.display()
        );
    }
}

macro_rules! short_runs {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                short(stringify!($name));
            }
        )*

        /// A new target gets a short run here too.
        #[test]
        fn every_target_has_a_short_run() {
            let listed = [$(stringify!($name)),*];
            for t in targets::all() {
                assert!(listed.contains(&t.name), "fuzz target {} has no short run in tests/short.rs", t.name);
            }
        }
    };
}

short_runs!(
    client_frame,
    server_frame,
    client_view,
    positions,
    positions_model,
    attr_paths,
    rust_msgpack,
    wire,
    prefix_stream,
    ws_stream,
    ws_messages,
    http_head,
    kcp_handshake,
    kcp_segments,
    kcp_endpoint,
    rust_args,
    rust_state,
    js_msgpack,
    js_args,
    js_state,
    py_msgpack,
    py_args,
    py_state,
    c_msgpack,
    c_args,
    c_state,
);
