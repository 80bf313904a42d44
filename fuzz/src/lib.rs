//! Fuzzing of every decoder a client or a plugin can reach: client and
//! server frames, stream and WebSocket framing, HTTP request heads,
//! positions, attribute paths and values, the KCP handshake and segments,
//! and MessagePack arguments and state through each language's helper.
//!
//! The fuzzer is this crate's own and runs on stable Rust: a mutation
//! engine ([`mutate`]) over a corpus kept in the repository
//! (`fuzz/corpus/`), checking properties per target ([`targets`]), guided by
//! coverage when built with SanitizerCoverage's stable flags
//! ([`coverage`]; `scripts/fuzz` does that), and blind otherwise (the
//! short run in `cargo test`, `tests/short.rs`).

use std::path::{Path, PathBuf};

pub mod coverage;
pub mod engine;
pub mod mutate;
pub mod targets;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The committed corpus of `target`.
pub fn corpus_dir(target: &engine::Target) -> PathBuf {
    repo_root().join("fuzz/corpus").join(target.corpus)
}
