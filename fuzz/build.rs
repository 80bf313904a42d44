//! Compiles `src/sancov.c`: the callbacks LLVM's SanitizerCoverage calls
//! when `scripts/fuzz` builds with coverage instrumentation, and the crash
//! dump that saves the input a process dies on. It is C because it must not
//! be instrumented itself (a comparison callback that is instrumented calls
//! itself), and the `cc` build is not touched by the instrumenting
//! RUSTFLAGS.

fn main() {
    println!("cargo:rerun-if-changed=src/sancov.c");
    cc::Build::new()
        .file("src/sancov.c")
        .warnings(true)
        .extra_warnings(true)
        .compile("wyrm_fuzz_sancov");
}
