//! The load driver of the Wyrm / Colyseus benchmark (`bench/colyseus/`)
//! works against a real Wyrm server: 10 clients join the benchroom over
//! WebSocket, move 10 times a second for 2 s, and see their own moves come
//! back in `Positions` frames. Needs Node.js (skipped with a message when
//! it is absent) and installs the bench's pinned npm packages itself
//! (`npm ci`) when they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use wyrm_client::Transport;
use wyrm_tests::{plugin, repo_root, TestServer};

fn bench_dir() -> PathBuf {
    repo_root().join("bench/colyseus")
}

/// Node's major version, or `None` when `node` cannot be run.
fn node_major() -> Option<u32> {
    let out = Command::new("node").arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v = String::from_utf8_lossy(&out.stdout);
    v.trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Installs the pinned packages unless the driver's one dependency is there.
fn npm_ci(dir: &Path) {
    if dir.join("node_modules/ws/package.json").is_file() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run npm ci in {}: {e}", dir.display()));
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// The number after `"key":` in `json`, searching from `from`; `None` for
/// `null` or a missing key. (The driver prints flat, compact JSON; the
/// tests crate has no JSON parser.)
fn number_after(json: &str, from: &str, key: &str) -> Option<f64> {
    let start = json.find(from)?;
    let rest = &json[start..];
    let at = rest.find(&format!("\"{key}\":"))? + key.len() + 3;
    let tail = &rest[at..];
    let end = tail
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(tail.len());
    tail[..end].parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_sees_its_own_moves_come_back_from_wyrm() {
    let Some(major) = node_major() else {
        eprintln!("SKIPPED: node is not installed; the bench/colyseus driver needs Node.js >= 20");
        return;
    };
    if major < 20 {
        eprintln!(
            "SKIPPED: node {major} is too old; the bench/colyseus driver needs Node.js >= 20"
        );
        return;
    }
    let dir = bench_dir();
    npm_ci(&dir);

    let wasm = plugin("plugins/benchroom", &[]);
    let server = TestServer::start(wasm, "Player", &["Bench"], |cfg| {
        // As in bench/colyseus/wyrm.toml: the clients are not throttled.
        cfg.net.client_rate = 100_000;
        cfg.net.client_queue_bytes = 16 << 20;
    })
    .await;
    let url = format!("ws://{}/ws", server.addr(Transport::WebSocket));

    let driver = dir.join("driver.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&driver)
            .args(["--server", "wyrm", "--url", &url, "--clients", "10"])
            .args(["--warmup", "1", "--measure", "2", "--samples", "3"])
            .output()
    })
    .await
    .expect("the driver's thread")
    .expect("node runs the driver");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the driver failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let json = stdout.trim().lines().last().unwrap_or_default();
    let get = |key: &str| number_after(json, "{", key);

    assert_eq!(get("joined"), Some(10.0), "every client joined: {json}");
    assert_eq!(get("active_at_end"), Some(10.0), "none was dropped: {json}");
    let sent = get("moves_sent").unwrap_or(0.0);
    let acked = get("moves_acked").unwrap_or(0.0);
    // 10 clients × 10 moves/s × 2 s, give or take a timer tick each.
    assert!(sent >= 150.0, "moves were sent: {json}");
    assert!(acked > 0.0, "clients saw their own moves: {json}");
    // Every move sent in the window is accounted for exactly once: seen,
    // overwritten by the client's next move before a tick, or never seen.
    let superseded = get("moves_superseded").unwrap_or(-1.0);
    let lost = get("moves_lost").unwrap_or(-1.0);
    assert_eq!(acked + superseded + lost, sent, "moves add up: {json}");
    assert!(
        acked >= 0.5 * sent,
        "most moves come back (a move is only overwritten when the next one lands in the same tick): {json}"
    );

    let p50 = number_after(json, "\"latency_ms\"", "p50").expect("a p50 latency");
    let p99 = number_after(json, "\"latency_ms\"", "p99").expect("a p99 latency");
    let min = number_after(json, "\"latency_ms\"", "min").expect("a min latency");
    assert!(min.is_finite() && min > 0.0, "latency is positive: {json}");
    assert!(p50.is_finite() && p99.is_finite() && min <= p50 && p50 <= p99);
    // The host sends positions at its 20 Hz tick, so a client hears about
    // its move at the earliest at the next tick: the states it reads come
    // at about that rate, one frame per tick and not one per move.
    let states = get("states_in_per_client_s").unwrap_or(0.0);
    assert!(
        (5.0..=40.0).contains(&states),
        "about 20 Positions frames a second per client: {json}"
    );
    // The raw samples name the client and the x it moved to.
    assert!(
        json.contains("\"raw_samples\":[{\"client\":"),
        "raw samples are printed: {json}"
    );

    server.server.shutdown().await;
}
