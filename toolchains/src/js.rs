//! JavaScript plugins: ES modules turned into a component by componentize-js
//! (StarlingMonkey, a SpiderMonkey build for WASI), installed from npm into
//! Wyrm's tools folder on first use.
//!
//! The plugin's `.js` files, the helper `wyrm.js` (embedded in this binary)
//! and the WIT are staged in `<dir>/target/js/`, and componentize-js runs
//! there on `plugin.js`: it resolves relative imports (`./wyrm.js`,
//! `./other.js`) against that folder while it pre-initialises the engine, so
//! plugins may be split into several modules without a bundler.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use sha2::{Digest, Sha256};

use super::{lock, out_dir, run, tools_dir, write_wit, BuildInputs, WORLD};

/// The componentize-js release Wyrm installs, pinned: it works offline
/// (without `--aot`, which downloads weval) and reads a WIT folder. The
/// exact version is in `TOOLS_MANIFEST`; every transitive one in
/// `TOOLS_LOCK`.
const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The npm package that provides it.
const COMPONENTIZE_JS_PACKAGE: &str = "@bytecodealliance/componentize-js";

/// The tools' `package.json` and `package-lock.json`: npm installs the
/// locked tree, so every machine gets the same versions.
const TOOLS_MANIFEST: &str = include_str!("../../sdk-js/tools/package.json");
const TOOLS_LOCK: &str = include_str!("../../sdk-js/tools/package-lock.json");

/// The helper every JS plugin imports as `./wyrm.js`.
const HELPER: &str = include_str!("../../sdk-js/wyrm.js");

/// The module componentize-js starts from.
const ENTRY: &str = "plugin.js";

/// Builds the JS plugin in `dir` (entry `plugin.js`) and returns the path of
/// its component, `<dir>/target/plugin.wasm`. Skips the build when neither
/// the sources nor this host's helper and WIT changed since the last one.
pub(super) fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let entry = dir.join(ENTRY);
    if !entry.is_file() {
        bail!(
            "{} has no {ENTRY}: a JavaScript plugin's entry module is {ENTRY}, \
             exporting `entities` (see sdk-js/README.md)",
            dir.display()
        );
    }
    let sources = sources(dir)?;
    let out = out_dir(dir)?;
    // Two builds of the same plugin at once (parallel tests) would stage into
    // the same folder: take turns.
    let _lock = lock(&out.join(".js-build.lock"))?;

    let wasm = out.join("plugin.wasm");
    let mut inputs = BuildInputs::new(TOOLS_LOCK, &[HELPER]);
    for (name, path) in &sources {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        inputs.file(name, &bytes);
    }
    let digest = inputs.finish();
    if BuildInputs::is_built(&wasm, &digest) {
        tracing::info!(wasm = %wasm.display(), "JavaScript plugin is up to date");
        return Ok(wasm);
    }

    let cli = ensure_componentize_js()?;
    let stage = out.join("js");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("cannot clear staging folder {}", stage.display()))?;
    }
    std::fs::create_dir_all(&stage)
        .with_context(|| format!("cannot create staging folder {}", stage.display()))?;
    for (name, path) in &sources {
        std::fs::copy(path, stage.join(name))
            .with_context(|| format!("cannot copy {} to {}", path.display(), stage.display()))?;
    }
    std::fs::write(stage.join("wyrm.js"), HELPER)
        .with_context(|| format!("cannot write wyrm.js into {}", stage.display()))?;
    write_wit(&stage.join("wit"))?;

    BuildInputs::forget(&wasm);
    tracing::info!(
        plugin = %dir.display(),
        componentize_js = COMPONENTIZE_JS_VERSION,
        "componentizing JavaScript (about 10-30 s)"
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(&stage)
        .arg(&cli)
        .arg(ENTRY)
        .args(["--wit", "wit", "--world-name", WORLD])
        // The host links no wasi:http; the rest of WASI it provides (with
        // an empty context).
        .args(["--disable", "http", "fetch-event"])
        .arg("--out")
        // Absolute: the tool runs in the staging folder.
        .arg(std::path::absolute(&wasm).with_context(|| format!("bad path {}", wasm.display()))?);
    run(
        &mut cmd,
        "componentize-js",
        "install Node.js 20 or newer (`apt-get install nodejs npm`)",
    )?;
    if !wasm.is_file() {
        bail!(
            "componentize-js finished but {} is missing; see its output above",
            wasm.display()
        );
    }
    BuildInputs::mark_built(&wasm, &digest)?;
    Ok(wasm)
}

/// The plugin's own modules: every `.js` / `.mjs` file at the top of `dir`,
/// by name, sorted. A `wyrm.js` there is refused: the build provides it.
fn sources(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !path.is_file() || !(name.ends_with(".js") || name.ends_with(".mjs")) {
            continue;
        }
        if name == "wyrm.js" {
            bail!(
                "{} has its own wyrm.js: remove it, the build writes the helper that \
                 matches this host next to your modules",
                dir.display()
            );
        }
        found.push((name.to_owned(), path));
    }
    found.sort();
    Ok(found)
}

/// Installs componentize-js into `<tools>/js` with npm unless that version
/// is there already, and returns the path of its command-line script.
fn ensure_componentize_js() -> anyhow::Result<PathBuf> {
    let home = tools_dir()?.join("js");
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    // Absolute: node runs it from the plugin's staging folder.
    let home =
        std::path::absolute(&home).with_context(|| format!("bad path {}", home.display()))?;
    let cli = home
        .join("node_modules")
        .join(COMPONENTIZE_JS_PACKAGE)
        .join("src/cli.js");
    // The stamp (the lock's digest) is written only after npm succeeded,
    // so a broken install, or one from another lock, is redone.
    let stamp = home.join("installed.sha256");
    let want = hex::encode(Sha256::digest(TOOLS_LOCK));
    let installed =
        || cli.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&want);
    if installed() {
        return Ok(cli);
    }
    let _lock = lock(&home.join(".install.lock"))?;
    if installed() {
        return Ok(cli); // another build installed it while we waited
    }
    tracing::info!(
        package = COMPONENTIZE_JS_PACKAGE,
        version = COMPONENTIZE_JS_VERSION,
        into = %home.display(),
        "installing componentize-js from npm (once; about 400 MB, a minute)"
    );
    for (name, text) in [
        ("package.json", TOOLS_MANIFEST),
        ("package-lock.json", TOOLS_LOCK),
    ] {
        std::fs::write(home.join(name), text)
            .with_context(|| format!("cannot write {name} in {}", home.display()))?;
    }
    let mut cmd = Command::new("npm");
    cmd.current_dir(&home)
        // `install` with the lock rather than `ci`: it installs the locked
        // versions just the same, but `ci` refuses a lock that lacks the
        // optional per-platform packages npm could not resolve.
        .args([
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--loglevel=warn",
        ]);
    run(
        &mut cmd,
        "installing componentize-js with npm",
        "install Node.js 20 or newer with npm (`apt-get install nodejs npm`), \
         or set WYRM_TOOLS_DIR to a folder where it is installed",
    )?;
    if !cli.is_file() {
        bail!(
            "npm installed {COMPONENTIZE_JS_PACKAGE}@{COMPONENTIZE_JS_VERSION} but {} is \
             missing; delete {} and try again",
            cli.display(),
            home.display()
        );
    }
    std::fs::write(&stamp, &want).with_context(|| format!("cannot write {}", stamp.display()))?;
    tracing::info!(
        version = COMPONENTIZE_JS_VERSION,
        "componentize-js installed"
    );
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The version the logs name is the one npm installs.
    #[test]
    fn manifest_pins_the_logged_version() {
        let pin = format!("\"{COMPONENTIZE_JS_PACKAGE}\": \"{COMPONENTIZE_JS_VERSION}\"");
        assert!(
            TOOLS_MANIFEST.contains(&pin),
            "sdk-js/tools/package.json must pin {pin}"
        );
        assert!(TOOLS_LOCK.contains(&format!("\"version\": \"{COMPONENTIZE_JS_VERSION}\"")));
    }
}
