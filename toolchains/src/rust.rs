//! Rust plugins: a crate built with cargo for `wasm32-wasip2`, which links
//! a component directly.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use super::BuildOptions;

/// The target every Rust plugin builds for: it links a component directly.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Builds the Rust plugin crate in `crate_dir` for `wasm32-wasip2` (adding
/// the target through rustup if it is missing) and returns the component's
/// path. Cargo's own progress goes to stderr.
pub(super) fn build(crate_dir: &Path, opts: &BuildOptions) -> anyhow::Result<PathBuf> {
    let manifest = crate_dir.join("Cargo.toml");
    let name = package_name(&manifest)?;
    ensure_target()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = plugin_target_dir(&cargo, &manifest, &opts.features)?;
    tracing::info!(plugin = %name, dir = %crate_dir.display(), "building plugin from source");
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--target", GUEST_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        // The shared release profile keeps line tables for the host's
        // backtraces; a plugin does not need them (12x smaller).
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    if !opts.debug {
        cmd.arg("--release");
    }
    if !opts.features.is_empty() {
        cmd.arg("--features").arg(opts.features.join(","));
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!(
            "building plugin {name} in {} failed ({status}); see cargo's output above",
            crate_dir.display()
        );
    }
    let profile = if opts.debug { "debug" } else { "release" };
    let wasm = target_dir
        .join(GUEST_TARGET)
        .join(profile)
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !wasm.is_file() {
        bail!(
            "cargo built plugin {name} but {} is missing: is its crate-type \"cdylib\"?",
            wasm.display()
        );
    }
    Ok(wasm)
}

fn package_name(manifest: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest).with_context(|| {
        format!(
            "{} is not a Rust crate (cannot read it)",
            manifest.display()
        )
    })?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid {}", manifest.display()))?;
    doc.get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no [package] name", manifest.display()))
}

/// Plugins build into their own target folder beside the workspace's, one per
/// feature set, so builds never wait on the host's build lock and two
/// feature sets of one crate never overwrite each other's output.
fn plugin_target_dir(
    cargo: &std::ffi::OsStr,
    manifest: &Path,
    features: &[String],
) -> anyhow::Result<PathBuf> {
    let out = Command::new(cargo)
        .args([
            "locate-project",
            "--workspace",
            "--message-format",
            "plain",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .context("cannot run cargo locate-project")?;
    if !out.status.success() {
        bail!(
            "cargo cannot find the workspace of {}: {}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let root_manifest = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let root = root_manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut dir = String::from("plugins");
    for f in features {
        dir.push('-');
        dir.extend(
            f.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    Ok(root.join("target").join(dir))
}

/// Adds the guest target with rustup when it is missing; rustup on some
/// machines does not add targets on its own.
fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == GUEST_TARGET)
            {
                return Ok(());
            }
        }
        // No rustup: trust the toolchain to have the target, cargo says if not.
        _ => return Ok(()),
    }
    tracing::info!("adding the {GUEST_TARGET} target with rustup (once)");
    let status = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add {GUEST_TARGET}` failed; plugins cannot be built without it");
    }
    Ok(())
}
