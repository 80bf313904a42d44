//! Plugin builds: turning a plugin's source folder, in Rust, JavaScript,
//! Python or C, into a WebAssembly component, so a server (or a test) can
//! point at a folder instead of a prebuilt `.wasm`; and `wyrm new`
//! ([`scaffold`]), a plugin project in any of those languages.
//!
//! A folder's language is told by the file that marks it (see
//! [`Language::detect`]); each language has its own module that finds or
//! installs its tools and runs them. Every non-Rust build gets the WIT
//! contract and its language's helper from this binary, so a plugin always
//! builds against the contract of the host that loads it.

mod c;
mod js;
mod python;
mod rust;
pub mod scaffold;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use anyhow::{bail, Context as _};

pub use c::stage_c_sources;
pub use rust::GUEST_TARGET;

/// The WIT contract (`wyrm:game`), file name and text, as this host was
/// built with it.
pub const WIT_FILES: [(&str, &str); 4] = [
    ("types.wit", include_str!("../../wit/types.wit")),
    ("host.wit", include_str!("../../wit/host.wit")),
    ("storage.wit", include_str!("../../wit/storage.wit")),
    ("plugin.wit", include_str!("../../wit/plugin.wit")),
];

/// The world every plugin implements.
pub const WORLD: &str = "plugin";

/// How to build a plugin.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Cargo features to enable (Rust plugins only).
    pub features: Vec<String>,
    /// Build with the dev profile instead of release (Rust plugins only).
    pub debug: bool,
}

/// A language a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// A cargo crate using `wyrm-sdk`; marked by `Cargo.toml`.
    Rust,
    /// An ES module built with componentize-js; marked by `package.json`,
    /// entry `plugin.js`.
    JavaScript,
    /// A module built with componentize-py; marked by `app.py`.
    Python,
    /// C built with clang and wasi-libc; marked by `plugin.c`.
    C,
}

impl Language {
    /// Every language, in the order the docs list them.
    pub const ALL: [Language; 4] = [
        Language::Rust,
        Language::JavaScript,
        Language::Python,
        Language::C,
    ];

    /// The file that marks a plugin folder as this language.
    pub fn marker(self) -> &'static str {
        match self {
            Language::Rust => "Cargo.toml",
            Language::JavaScript => "package.json",
            Language::Python => "app.py",
            Language::C => "plugin.c",
        }
    }

    /// The short name used on the command line (`--lang`).
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::JavaScript => "js",
            Language::Python => "python",
            Language::C => "c",
        }
    }

    /// The language of the plugin in `dir`, told by its marker file.
    pub fn detect(dir: &Path) -> anyhow::Result<Language> {
        let found: Vec<Language> = Self::ALL
            .into_iter()
            .filter(|l| dir.join(l.marker()).is_file())
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => bail!(
                "cannot tell the language of the plugin in {}: it needs one of {} \
                 (`wyrm new` makes a plugin that builds)",
                dir.display(),
                Self::ALL
                    .iter()
                    .map(|l| format!("{} ({l})", l.marker()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            many => bail!(
                "the plugin in {} is marked as more than one language ({}); keep one",
                dir.display(),
                many.iter()
                    .map(|l| l.marker())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Rust => "Rust",
            Language::JavaScript => "JavaScript",
            Language::Python => "Python",
            Language::C => "C",
        })
    }
}

impl FromStr for Language {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Language> {
        match s.to_ascii_lowercase().as_str() {
            "rust" | "rs" => Ok(Language::Rust),
            "js" | "javascript" => Ok(Language::JavaScript),
            "python" | "py" => Ok(Language::Python),
            "c" => Ok(Language::C),
            _ => bail!("unknown language {s:?}: use rust, js, python or c"),
        }
    }
}

/// Builds the plugin in `dir`, whatever its language, and returns the
/// component's path. Tools' own progress goes to stderr.
pub fn build_plugin(dir: &Path, opts: &BuildOptions) -> anyhow::Result<PathBuf> {
    let lang = Language::detect(dir)?;
    if lang != Language::Rust && !opts.features.is_empty() {
        bail!("features are cargo's: a {lang} plugin has none to enable");
    }
    let started = std::time::Instant::now();
    let _span = tracing::info_span!("build", plugin = %dir.display(), %lang).entered();
    tracing::info!("building plugin from source");
    let wasm = match lang {
        Language::Rust => rust::build(dir, opts),
        Language::JavaScript => js::build(dir),
        Language::Python => python::build(dir),
        Language::C => c::build(dir),
    }?;
    tracing::info!(wasm = %wasm.display(), elapsed = ?started.elapsed(), "plugin built");
    Ok(wasm)
}

/// Where a non-Rust plugin's build puts generated files and its component:
/// `target/` inside the plugin's folder.
fn out_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let out = dir.join("target");
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create build folder {}", out.display()))?;
    Ok(out)
}

/// Writes the WIT contract into `dest` (created if missing) and returns it.
fn write_wit(dest: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    for (name, text) in WIT_FILES {
        let path = dest.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dest.to_path_buf())
}

/// Holds an exclusive lock on `path` (created if missing) until the file is
/// dropped, waiting for any other holder first: two builds of one plugin,
/// or two installs of one tool (parallel tests, `wyrm dev` beside a
/// server), take turns.
fn lock(path: &Path) -> anyhow::Result<std::fs::File> {
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// A digest of everything a non-Rust component is built from: the tool's
/// pinned version, the helper, this host's WIT and the plugin's own files.
/// A build whose digest matches the one stored beside the component is
/// skipped ([`BuildInputs::is_built`]), so an unchanged plugin costs a
/// read of its files, and a new host (new helper or contract) rebuilds.
struct BuildInputs(sha2::Sha256);

impl BuildInputs {
    /// Starts a digest with the tool's version and the helper's files.
    fn new(tool: &str, helper: &[&str]) -> Self {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(tool);
        for text in helper {
            h.update([0]);
            h.update(text);
        }
        for (name, text) in WIT_FILES {
            h.update([0]);
            h.update(name);
            h.update([0]);
            h.update(text);
        }
        Self(h)
    }

    /// Adds one of the plugin's files, by its path in the plugin's folder.
    fn file(&mut self, name: &str, bytes: &[u8]) {
        use sha2::Digest as _;
        self.0.update([0]);
        self.0.update(name);
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// The digest, as stored beside a component.
    fn finish(self) -> String {
        use sha2::Digest as _;
        hex::encode(self.0.finalize())
    }

    /// Where the digest of the inputs `wasm` was built from is kept.
    fn stamp(wasm: &Path) -> PathBuf {
        wasm.with_extension("wasm.inputs")
    }

    /// Whether `wasm` exists and was built from inputs with `digest`.
    fn is_built(wasm: &Path, digest: &str) -> bool {
        wasm.is_file()
            && std::fs::read_to_string(Self::stamp(wasm)).is_ok_and(|s| s.trim() == digest)
    }

    /// Records that `wasm` was built from inputs with `digest`.
    fn mark_built(wasm: &Path, digest: &str) -> anyhow::Result<()> {
        let stamp = Self::stamp(wasm);
        std::fs::write(&stamp, digest).with_context(|| format!("cannot write {}", stamp.display()))
    }

    /// Forgets what `wasm` was built from, before a build overwrites it, so
    /// a build that fails halfway is never taken for a finished one.
    fn forget(wasm: &Path) {
        let _ = std::fs::remove_file(Self::stamp(wasm));
    }
}

/// Runs a build tool, its output going to this process's stderr; `what`
/// names the step for the error, `hint` says what to do about a missing
/// tool.
fn run(cmd: &mut Command, what: &str, hint: &str) -> anyhow::Result<()> {
    tracing::debug!(?cmd, "running");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?} for {what}: {hint}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status}); see the tool's output above");
    }
    Ok(())
}

/// Where tools that Wyrm installs for itself live (a Python environment
/// with componentize-py, componentize-js from npm): `$WYRM_TOOLS_DIR`, or
/// `wyrm/tools` in the user's cache folder. Created if missing.
pub fn tools_dir() -> anyhow::Result<PathBuf> {
    let dir = if let Some(d) = std::env::var_os("WYRM_TOOLS_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(d).join("wyrm/tools")
    } else if let Some(home) = std::env::var_os("HOME") {
        PathBuf::from(home).join(".cache/wyrm/tools")
    } else {
        bail!("cannot find a folder for build tools: set WYRM_TOOLS_DIR");
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create tools folder {}", dir.display()))?;
    Ok(dir)
}
