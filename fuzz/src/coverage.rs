//! Coverage feedback from SanitizerCoverage's inline 8-bit counters, and
//! the operands of recent comparisons (both gathered by `src/sancov.c`).
//!
//! A build without the instrumenting flags has no counters: every call
//! here is then cheap and reports nothing new, and the fuzzer mutates its
//! seeds blindly (which is what `cargo test` runs).

use std::ffi::{c_char, CString};
use std::path::Path;

extern "C" {
    fn wyrm_fuzz_region_count() -> usize;
    fn wyrm_fuzz_region(i: usize, len: *mut usize) -> *mut u8;
    fn wyrm_fuzz_set_tracing(on: i32);
    fn wyrm_fuzz_collect(
        start: *const u8,
        len: usize,
        base: usize,
        seen: *mut u64,
        edges_only: i32,
        hit: *mut i32,
    ) -> usize;
    fn wyrm_fuzz_cmp(i: usize, a: *mut u64, b: *mut u64) -> u32;
    fn wyrm_fuzz_cmp_slots() -> usize;
    fn wyrm_fuzz_set_current(data: *const u8, len: usize);
    fn wyrm_fuzz_arm_dump(path: *const c_char) -> i32;
}

/// One module's counters.
struct Region {
    start: *mut u8,
    len: usize,
    /// Index of its first counter among all counters.
    base: usize,
}

/// The counters of every instrumented module and the features seen so far.
pub struct Coverage {
    regions: Vec<Region>,
    /// Regions any input has reached: only these are cleared and read per
    /// input. The program has far more code (wasmtime, tokio, ...) than a
    /// target reaches, and reading every counter would cost most of the
    /// time of a small target.
    is_active: Vec<bool>,
    runs: u64,
    /// One bit per (counter, hit-count bucket), as libFuzzer counts them.
    seen: Vec<u64>,
    features: usize,
    /// Count an edge once, whatever its hit count (for merging a corpus:
    /// fewer inputs, each reaching code the others do not).
    edges_only: bool,
}

/// Every region is read for the first inputs (the corpus, mostly), then
/// once in this many: a region first reached in between is noticed then
/// (its features credited to that input).
const FULL_SCAN_EVERY: u64 = 256;

// The regions point into the program's own static data, which lives as
// long as the process; they are only read and cleared through atomics.
unsafe impl Send for Coverage {}

impl Coverage {
    /// The program's counters (none in an uninstrumented build).
    pub fn new() -> Self {
        let mut regions = Vec::new();
        let mut base = 0;
        // SAFETY: the C side hands out the (start, len) pairs LLVM
        // registered; they stay valid for the life of the process.
        let count = unsafe { wyrm_fuzz_region_count() };
        for i in 0..count {
            let mut len = 0;
            let start = unsafe { wyrm_fuzz_region(i, &mut len) };
            if !start.is_null() && len > 0 {
                regions.push(Region { start, len, base });
                base += len;
            }
        }
        Coverage {
            is_active: vec![false; regions.len()],
            regions,
            runs: 0,
            seen: vec![0; (base * 8).div_ceil(64)],
            features: 0,
            edges_only: false,
        }
    }

    /// The same, counting edges only (not how often each was hit).
    pub fn edges_only() -> Self {
        Coverage {
            edges_only: true,
            ..Self::new()
        }
    }

    /// Whether the build is instrumented.
    pub fn enabled(&self) -> bool {
        !self.regions.is_empty()
    }

    /// Counters in the program.
    pub fn counters(&self) -> usize {
        self.regions.last().map_or(0, |r| r.base + r.len)
    }

    /// Features (counter, bucket) seen so far.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Clears every counter and starts recording comparisons: call right
    /// before running an input.
    pub fn start(&mut self) {
        if !self.enabled() {
            return;
        }
        let all = self.full_scan_due();
        for (i, r) in self.regions.iter().enumerate() {
            if all || self.is_active[i] {
                // SAFETY: the region is the module's counter array;
                // instrumented code only ever increments its bytes.
                unsafe { std::ptr::write_bytes(r.start, 0, r.len) };
            }
        }
        unsafe { wyrm_fuzz_set_tracing(1) };
    }

    fn full_scan_due(&self) -> bool {
        // A merge reads everything every time: it must credit each input
        // exactly.
        self.edges_only || self.runs < FULL_SCAN_EVERY || self.runs.is_multiple_of(FULL_SCAN_EVERY)
    }

    /// Stops recording comparisons and notes the features the input hit;
    /// returns how many were new.
    pub fn finish(&mut self) -> usize {
        if !self.enabled() {
            return 0;
        }
        unsafe { wyrm_fuzz_set_tracing(0) };
        let all = self.full_scan_due();
        self.runs += 1;
        let mut new = 0;
        for (i, r) in self.regions.iter().enumerate() {
            if !all && !self.is_active[i] {
                continue;
            }
            let mut hit = 0;
            // SAFETY: the region is valid for `len` bytes; `seen` has a bit
            // for every (counter, bucket) of every region.
            new += unsafe {
                wyrm_fuzz_collect(
                    r.start,
                    r.len,
                    r.base,
                    self.seen.as_mut_ptr(),
                    i32::from(self.edges_only),
                    &mut hit,
                )
            };
            if hit != 0 {
                self.is_active[i] = true;
            }
        }
        self.features += new;
        new
    }
}

impl Default for Coverage {
    fn default() -> Self {
        Self::new()
    }
}

/// A comparison a target made: `a` is what it had (often from the input),
/// `b` what it compared it with; `width` in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmp {
    pub a: u64,
    pub b: u64,
    pub width: usize,
}

/// Comparison slot `i` (any number; it wraps), if it holds one.
pub fn cmp(i: usize) -> Option<Cmp> {
    let (mut a, mut b) = (0, 0);
    // SAFETY: the C side bounds `i` and writes both operands.
    let width = unsafe { wyrm_fuzz_cmp(i % wyrm_fuzz_cmp_slots(), &mut a, &mut b) } as usize;
    (width > 0).then_some(Cmp { a, b, width })
}

/// Tells the crash dump which input this thread runs (empty: none). The
/// slice must stay alive until the next call.
pub fn set_current(input: &[u8]) {
    // SAFETY: the C side only reads the bytes, from its SIGABRT handler,
    // while the input is being run.
    unsafe { wyrm_fuzz_set_current(input.as_ptr(), input.len()) }
}

/// Clears the input the crash dump would save.
pub fn clear_current() {
    unsafe { wyrm_fuzz_set_current(std::ptr::null(), 0) }
}

/// Where this thread's crash dump goes if the process aborts.
pub fn arm_crash_dump(path: &Path) -> Result<(), String> {
    let c = CString::new(path.to_string_lossy().as_bytes())
        .map_err(|_| format!("crash dump path {} holds a NUL", path.display()))?;
    // SAFETY: a NUL-terminated path; the C side copies it.
    match unsafe { wyrm_fuzz_arm_dump(c.as_ptr()) } {
        0 => Ok(()),
        _ => Err(format!("cannot arm the crash dump at {}", path.display())),
    }
}
