//! C plugins: `plugin.c` (and any other `*.c` beside it) compiled with
//! Debian's clang for `wasm32-wasi` as a reactor, against bindings that
//! `wit-bindgen-c` generates here (used as a library, no CLI to install) and
//! the helper `wyrm.c`/`wyrm.h` embedded in this binary; `wit-component`
//! then wraps the core module into a component with the WASI reactor
//! adapter. Only clang, lld and wasi-libc come from the system
//! (`scripts/setup-polyglot`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_bindgen_core::wit_parser::Resolve;
use wit_bindgen_core::Files;

use super::{lock, out_dir, run, write_wit, BuildInputs, WORLD};

/// The C helper library, written beside the generated bindings so a plugin
/// includes it as `"wyrm.h"` without carrying a copy.
const SDK_FILES: [(&str, &str); 2] = [
    ("wyrm.h", include_str!("../../sdk-c/wyrm.h")),
    ("wyrm.c", include_str!("../../sdk-c/wyrm.c")),
];

/// What to do when the system C toolchain is missing.
const SETUP_HINT: &str = "C plugins need Debian's packages clang, lld, wasi-libc and \
     libclang-rt-dev-wasm32: run scripts/setup-polyglot (as root it installs them), or \
     `apt-get install clang lld wasi-libc libclang-rt-dev-wasm32`";

/// The compiler: `$WYRM_CLANG` if set (e.g. `clang-19`), else `clang`.
fn clang() -> OsString {
    std::env::var_os("WYRM_CLANG").unwrap_or_else(|| "clang".into())
}

/// What generates the bindings and the component, for the build digest: a
/// host built with other versions of them rebuilds every C plugin.
const GENERATORS: &str = "wit-bindgen-c 0.63.0, wit-component 0.262.0, adapter 48.0.8";

/// Builds the C plugin in `dir` and returns the component's path
/// (`<dir>/target/plugin.wasm`). Skips the build when neither the plugin's
/// `.c`/`.h` files nor this host's helper and contract changed since the
/// last one.
pub(super) fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let out = out_dir(dir)?;
    let _lock = lock(&out.join(".c-build.lock"))?;
    let wasm = out.join("plugin.wasm");
    let own_sources = plugin_files(dir, "c")?;
    let mut inputs = BuildInputs::new(GENERATORS, &SDK_FILES.map(|(_, text)| text));
    for path in own_sources.iter().chain(&plugin_files(dir, "h")?) {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        inputs.file(
            &path.file_name().unwrap_or_default().to_string_lossy(),
            &bytes,
        );
    }
    let digest = inputs.finish();
    if BuildInputs::is_built(&wasm, &digest) {
        tracing::info!(wasm = %wasm.display(), "C plugin is up to date");
        return Ok(wasm);
    }

    let (gen, bindings) = stage_c_sources(&out)?;
    let mut sources = own_sources;
    sources.push(gen.join("wyrm.c"));
    sources.extend(bindings);
    let core = out.join("core.wasm");
    check_toolchain()?;
    tracing::info!(
        sources = sources.len(),
        "compiling with clang for wasm32-wasi"
    );
    let mut cmd = Command::new(clang());
    cmd.args([
        "--target=wasm32-wasi",
        "-mexec-model=reactor",
        "-std=c11",
        "-O2",
        "-Wall",
        "-Wextra",
        // The generated bindings leave some parameters unused.
        "-Wno-unused-parameter",
    ])
    .arg("-I")
    .arg(&gen)
    .arg("-I")
    .arg(dir)
    .args(&sources)
    // Strip debug info and names: a plugin ships small.
    .arg("-Wl,--strip-debug")
    .arg("-o")
    .arg(&core);
    run(&mut cmd, "compiling the C plugin", SETUP_HINT)?;

    tracing::info!("making the component (wit-component, WASI reactor adapter)");
    let module = std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .context("the compiled C module does not carry the `plugin` world (were the generated bindings linked?)")?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("cannot use the WASI reactor adapter")?
        .encode()
        .context("cannot make a component of the compiled C plugin")?;
    BuildInputs::forget(&wasm);
    std::fs::write(&wasm, component).with_context(|| format!("cannot write {}", wasm.display()))?;
    BuildInputs::mark_built(&wasm, &digest)?;
    Ok(wasm)
}

/// Writes what every C plugin compiles against into `<out>/gen`: the C
/// helper (`wyrm.h`, `wyrm.c`) and the bindings of the `plugin` world
/// (`plugin.h` and what to link). Returns that folder and the generated
/// files to compile and link. Public so the helper can also be compiled
/// natively, for the fuzz harness (`fuzz/`).
pub fn stage_c_sources(out: &Path) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    let gen = out.join("gen");
    tracing::info!(dir = %gen.display(), "generating C bindings (wit-bindgen-c)");
    let bindings = generate_bindings(out, &gen)?;
    for (name, text) in SDK_FILES {
        write_if_changed(&gen.join(name), text.as_bytes())?;
    }
    Ok((gen, bindings))
}

/// Fails early, saying what to install, when clang cannot build for
/// wasm32-wasi: no clang, no wasm-ld, no wasi-libc or no wasm32 builtins.
fn check_toolchain() -> anyhow::Result<()> {
    let cc = clang();
    let print = |arg: &str| -> anyhow::Result<String> {
        let output = Command::new(&cc)
            .args(["--target=wasm32-wasi", arg])
            .output()
            .with_context(|| format!("cannot run {}: {SETUP_HINT}", cc.to_string_lossy()))?;
        if !output.status.success() {
            bail!(
                "{} {arg} failed ({}): {SETUP_HINT}",
                cc.to_string_lossy(),
                output.status
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    // clang answers with the bare name when it finds no such file.
    let libc = print("-print-file-name=libc.a")?;
    if !Path::new(&libc).is_absolute() {
        bail!("wasi-libc is missing (clang finds no libc.a for wasm32-wasi): {SETUP_HINT}");
    }
    let builtins = print("-print-libgcc-file-name")?;
    if !Path::new(&builtins).is_file() {
        bail!("the wasm32 compiler runtime is missing ({builtins}): {SETUP_HINT}");
    }
    let ld = print("-print-prog-name=wasm-ld")?;
    let found = Path::new(&ld).is_file()
        || Command::new(&ld)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !found {
        bail!("the wasm linker (wasm-ld, package lld) is missing: {SETUP_HINT}");
    }
    Ok(())
}

/// Writes the WIT into `<out>/wit`, generates the C bindings of world
/// `plugin` into `gen`, and returns the files to compile and link (the
/// bindings' `.c` and the object carrying the component type).
fn generate_bindings(out: &Path, gen: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let wit = write_wit(&out.join("wit"))?;
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(&wit)
        .with_context(|| format!("cannot read the WIT in {}", wit.display()))?;
    let world = resolve
        .select_world(&[pkg], Some(WORLD))
        .with_context(|| format!("the WIT has no world {WORLD}"))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("cannot generate the C bindings")?;
    std::fs::create_dir_all(gen).with_context(|| format!("cannot create {}", gen.display()))?;
    let mut link = Vec::new();
    for (name, bytes) in files.iter() {
        let path = gen.join(name);
        write_if_changed(&path, bytes)?;
        if name.ends_with(".c") || name.ends_with(".o") {
            link.push(path);
        }
    }
    Ok(link)
}

/// The plugin's own files with extension `ext` (top level of its folder),
/// sorted so builds are reproducible.
fn plugin_files(dir: &Path, ext: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == ext) && path.is_file() {
            sources.push(path);
        }
    }
    sources.sort();
    Ok(sources)
}

/// Writes `bytes` unless the file already holds them, so editors and
/// tools watching `target/gen` do not see needless changes.
fn write_if_changed(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
