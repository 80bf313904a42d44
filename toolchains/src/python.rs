//! Python plugins: a folder with `app.py`, built into a component by
//! componentize-py (from PyPI), which Wyrm installs for itself into a
//! virtual environment under [`tools_dir`](super::tools_dir).
//!
//! The plugin's folder is copied into `target/python/app/` and built from
//! there, beside the helper `wyrm.py` (embedded in this binary, so a plugin
//! never carries a copy) and the WIT contract: componentize-py writes
//! `__pycache__` folders next to the modules it imports, and a build should
//! leave the plugin's sources alone.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use super::{lock, out_dir, run, tools_dir, write_wit, BuildInputs, WORLD};

/// The componentize-py release Wyrm installs and builds with. Pinned: each
/// release bundles its own CPython (0.25 bundles 3.14), so a different one
/// makes a different component.
const COMPONENTIZE_PY: &str = "0.25.1";

/// The Python helper library, staged beside every plugin as `wyrm.py`.
const WYRM_PY: &str = include_str!("../../sdk-python/wyrm.py");

/// Folder names never copied from a plugin's folder: build output, bytecode
/// caches and virtual environments (hidden folders are skipped too).
const SKIP_DIRS: [&str; 5] = ["target", "__pycache__", "node_modules", "venv", "env"];

/// Builds the Python plugin in `dir` (its module `app`, in `app.py`) and
/// returns the component's path, `target/plugin.wasm`. Installs
/// componentize-py on first use; rebuilds only when the plugin's files, the
/// helper or the contract changed.
pub(super) fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    // componentize-py runs in the staging folder: every path it gets must be
    // absolute.
    let dir = &std::path::absolute(dir)
        .with_context(|| format!("cannot resolve the plugin folder {}", dir.display()))?;
    let out = out_dir(dir)?;
    // One build of a folder at a time: a second one (another test process,
    // `wyrm dev` and a server) waits, then finds the component up to date.
    let lock = lock(&out.join("python.lock"))?;
    let stage = out.join("python");
    let app = stage.join("app");
    if app.exists() {
        std::fs::remove_dir_all(&app)
            .with_context(|| format!("cannot clear the staging folder {}", app.display()))?;
    }
    let mut inputs = BuildInputs::new(COMPONENTIZE_PY, &[WYRM_PY]);
    copy_sources(dir, &app, Path::new(""), &mut inputs)?;
    let digest = inputs.finish();

    let wasm = out.join("plugin.wasm");
    if BuildInputs::is_built(&wasm, &digest) {
        tracing::info!(wasm = %wasm.display(), "Python plugin is up to date");
        return Ok(wasm);
    }

    let tool = ensure_componentize_py()?;
    let lib = stage.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    let helper = lib.join("wyrm.py");
    std::fs::write(&helper, WYRM_PY)
        .with_context(|| format!("cannot write {}", helper.display()))?;
    let wit = write_wit(&stage.join("wit"))?;

    // Write to a temporary name and rename, so a failed build never leaves a
    // truncated component where the last good one was.
    let partial = out.join("plugin.wasm.partial");
    tracing::info!(
        componentize_py = COMPONENTIZE_PY,
        "componentizing (takes 10-20 s: it snapshots an initialised CPython)"
    );
    let mut cmd = Command::new(&tool);
    cmd.arg("-d")
        .arg(&wit)
        .args(["-w", WORLD, "componentize", "app", "-p"])
        .arg(&app)
        .arg("-p")
        .arg(&lib)
        .arg("-o")
        .arg(&partial)
        .current_dir(&stage)
        // Without this componentize-py adds the site-packages of whatever
        // virtual environment or `python` is active to the plugin's path;
        // ours holds only componentize-py, so builds do not depend on the
        // caller's shell. A plugin's pure-Python dependencies go in its folder.
        .env("VIRTUAL_ENV", venv_dir()?)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let built = run(
        &mut cmd,
        &format!("componentize-py on {}", dir.display()),
        "delete the Python tools folder to reinstall them",
    );
    if let Err(e) = built {
        let app_py = std::fs::read_to_string(dir.join("app.py")).unwrap_or_default();
        if !app_py.contains("Entities") {
            return Err(e.context(
                "app.py must name the export componentize-py looks for: end it with \
                 `Entities = plugin.export()`",
            ));
        }
        return Err(e);
    }
    std::fs::rename(&partial, &wasm)
        .with_context(|| format!("cannot move the component to {}", wasm.display()))?;
    BuildInputs::mark_built(&wasm, &digest)?;
    drop(lock);
    Ok(wasm)
}

/// Copies the plugin's sources from `src` into `dest` (recursively, skipping
/// [`SKIP_DIRS`] and hidden entries), feeding each file's relative path and
/// contents into `inputs`, in name order so the digest is stable.
fn copy_sources(
    src: &Path,
    dest: &Path,
    rel: &Path,
    inputs: &mut BuildInputs,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut entries = std::fs::read_dir(src)
        .with_context(|| format!("cannot read the plugin folder {}", src.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read the plugin folder {}", src.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if text.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if kind.is_dir() {
            if !SKIP_DIRS.contains(&text.as_ref()) {
                copy_sources(&path, &dest.join(&name), &rel.join(&name), inputs)?;
            }
        } else if kind.is_file() {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            inputs.file(&rel.join(&name).to_string_lossy(), &bytes);
            let to = dest.join(&name);
            std::fs::write(&to, &bytes)
                .with_context(|| format!("cannot write {}", to.display()))?;
        }
    }
    Ok(())
}

/// The virtual environment holding componentize-py.
fn venv_dir() -> anyhow::Result<PathBuf> {
    Ok(tools_dir()?.join("python"))
}

/// A program in the virtual environment's scripts folder.
fn venv_bin(venv: &Path, program: &str) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join(format!("{program}.exe"))
    } else {
        venv.join("bin").join(program)
    }
}

/// The version `componentize-py --version` reports, if it runs at all.
fn installed_version(tool: &Path) -> Option<String> {
    let out = Command::new(tool).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().last().map(str::to_owned)
}

/// The path of componentize-py [`COMPONENTIZE_PY`], installing it first if
/// it is missing or another version: `python3 -m venv` (once), then
/// `pip install componentize-py==<version>` from PyPI.
fn ensure_componentize_py() -> anyhow::Result<PathBuf> {
    let venv = venv_dir()?;
    let tool = venv_bin(&venv, "componentize-py");
    if installed_version(&tool).as_deref() == Some(COMPONENTIZE_PY) {
        return Ok(tool);
    }
    // Two builds (parallel tests) may get here at once: one installs, the
    // other waits and then finds it installed.
    let _lock = lock(&tools_dir()?.join("python.lock"))?;
    if installed_version(&tool).as_deref() == Some(COMPONENTIZE_PY) {
        return Ok(tool);
    }

    let python = venv_bin(&venv, "python");
    let venv_works = Command::new(&python)
        .args(["-c", "import pip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !venv_works {
        let system_python: OsString =
            std::env::var_os("WYRM_PYTHON").unwrap_or_else(|| "python3".into());
        tracing::info!(venv = %venv.display(), "creating a Python environment for componentize-py");
        run(
            Command::new(&system_python)
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
            "creating a Python virtual environment",
            "install Python 3 with its venv module (Debian: `apt-get install python3 \
             python3-venv`), or set WYRM_PYTHON to a Python 3 interpreter",
        )?;
    }
    tracing::info!(
        version = COMPONENTIZE_PY,
        venv = %venv.display(),
        "installing componentize-py from PyPI"
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .arg(format!("componentize-py=={COMPONENTIZE_PY}")),
        "installing componentize-py",
        "check that PyPI is reachable (pip's proxy settings apply)",
    )?;
    match installed_version(&tool) {
        Some(v) if v == COMPONENTIZE_PY => {
            tracing::info!(version = COMPONENTIZE_PY, "componentize-py installed");
            Ok(tool)
        }
        other => bail!(
            "componentize-py {COMPONENTIZE_PY} was installed into {} but {} reports {:?}; \
             delete that folder and build again",
            venv.display(),
            tool.display(),
            other
        ),
    }
}
