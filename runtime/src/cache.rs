//! Compiled plugins cached on disk, so a restart does not recompile.
//!
//! An artifact is named by the SHA-256 of the component's bytes and a hash of
//! the engine's compilation settings; wasmtime checks compatibility again when
//! loading, and an artifact that fails to load is compiled afresh.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Loads `wasm` as a component, from the cache in `dir` when possible.
pub(crate) fn load_component(
    engine: &Engine,
    dir: &Path,
    wasm: &[u8],
    label: &str,
) -> anyhow::Result<Component> {
    let path = artifact_path(engine, dir, wasm);
    if path.exists() {
        let started = Instant::now();
        // SAFETY: the file was written by `Component::serialize` from this
        // cache (named by the hash of its source and of the engine settings);
        // wasmtime validates its header and engine compatibility on load.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => {
                tracing::info!(plugin = label, artifact = %path.display(), elapsed = ?started.elapsed(), "loaded cached compiled plugin");
                return Ok(c);
            }
            Err(e) => {
                tracing::warn!(plugin = label, artifact = %path.display(), "cached artifact unusable, recompiling: {e:#}")
            }
        }
    }
    let started = Instant::now();
    let component = Component::new(engine, wasm)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .with_context(|| format!("plugin {label} is not a valid WebAssembly component"))?;
    tracing::info!(plugin = label, elapsed = ?started.elapsed(), "compiled plugin");
    if let Err(e) = store(&component, &path) {
        tracing::warn!(
            plugin = label,
            "could not cache compiled plugin at {}: {e:#}",
            path.display()
        );
    }
    Ok(component)
}

fn artifact_path(engine: &Engine, dir: &Path, wasm: &[u8]) -> PathBuf {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let digest = Sha256::digest(wasm);
    dir.join(format!(
        "{}-{:016x}.cwasm",
        hex::encode(&digest[..16]),
        engine_hash.finish()
    ))
}

fn store(component: &Component, path: &Path) -> anyhow::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write then rename, so a crash never leaves a half-written artifact.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
