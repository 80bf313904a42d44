//! The fuzzing loop: load a corpus, run it, then mutate and run inputs
//! until a count or a time is reached, keeping inputs that reach new
//! coverage (in an instrumented build) and saving every failure with its
//! message.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crate::coverage::{self, Coverage};
use crate::mutate::{mutate, Rng, Sources};

/// What running one input showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The decoder took the input (and every property held).
    Accepted,
    /// The decoder refused it with its own error type, as it should.
    Rejected,
    /// A property failed, the code panicked, or the process running it
    /// died: the message says which.
    Fail(String),
}

/// A running target: takes inputs one at a time.
pub trait Runner {
    /// Runs one input. An in-process runner may panic; the engine catches
    /// it and reports a failure.
    fn run(&mut self, input: &[u8]) -> Verdict;

    /// Called once after the last input: a problem found only at the end
    /// (a child process that leaked, say).
    fn finish(&mut self) -> Option<String> {
        None
    }
}

/// Where a target may put files and find the repository.
#[derive(Debug, Clone)]
pub struct Env {
    /// The repository's root.
    pub repo: PathBuf,
    /// A scratch folder of this run's (built harnesses, sockets).
    pub work: PathBuf,
}

/// A fuzz target: one decoder (or a few that must agree) and its checks.
pub struct Target {
    pub name: &'static str,
    /// One line for `scripts/fuzz list`.
    pub about: &'static str,
    /// Folder under `fuzz/corpus/` with its seeds (targets that read the
    /// same format share one).
    pub corpus: &'static str,
    /// Inputs are cut to this length.
    pub max_len: usize,
    /// Iterations of the short run in `cargo test`.
    pub ci_iterations: u64,
    /// Tokens worth inserting.
    pub dict: &'static [&'static [u8]],
    /// Valid inputs made by the encoders, added to the corpus at start.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Starts a runner.
    pub start: fn(&Env) -> Result<Box<dyn Runner>, String>,
    /// Whether the runner runs inputs in this process (so its panics are
    /// caught and a hang needs the watchdog); external runners watch their
    /// own child process.
    pub in_process: bool,
}

/// How long and how to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Stop after this many inputs (the corpus included)...
    pub iterations: Option<u64>,
    /// ... or after this long, whichever comes first.
    pub time: Option<Duration>,
    /// The generator's seed: a run is reproducible from it.
    pub seed: u64,
    /// Folders whose files are loaded into the corpus.
    pub corpus_dirs: Vec<PathBuf>,
    /// Where inputs that reached new coverage are written (none: kept in
    /// memory only).
    pub queue: Option<PathBuf>,
    /// Where failing inputs are written, with their messages.
    pub findings: PathBuf,
    /// Go on after a failure (long runs) or stop at the first (tests).
    pub keep_going: bool,
    /// Print a progress line this often.
    pub progress: Option<Duration>,
    /// An input running longer than this is a hang.
    pub timeout: Duration,
    pub env: Env,
}

/// A failing input.
#[derive(Debug, Clone)]
pub struct Finding {
    pub message: String,
    pub input: Vec<u8>,
    /// Where the input was saved (the message is beside it, `.txt`).
    pub saved: PathBuf,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub iterations: u64,
    /// Inputs the decoder took (the rest it refused).
    pub accepted: u64,
    pub elapsed: Duration,
    pub corpus: usize,
    /// Coverage features seen (0 without instrumentation).
    pub features: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        self.iterations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line: iterations, speed, corpus, features, findings.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} iterations in {:.1}s ({:.0}/s), {:.0}% accepted, corpus {}, {} features, {} finding(s)",
            self.target,
            self.iterations,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            100.0 * self.accepted as f64 / self.iterations.max(1) as f64,
            self.corpus,
            self.features,
            self.findings.len()
        )
    }
}

/// A 64-bit FNV-1a hash, for file names.
pub fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Reads every file of `dir` (sorted by name; none if it does not exist).
pub fn read_dir_inputs(dir: &Path, max_len: usize) -> Result<Vec<Vec<u8>>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        // Beside a finding, its message.
        .filter(|p| p.extension().is_none_or(|x| x != "txt"))
        .collect();
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let mut data =
            std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        data.truncate(max_len);
        out.push(data);
    }
    Ok(out)
}

/// Writes `data` as `<dir>/<hash>`, unless it is there; returns its path.
pub fn save_input(dir: &Path, data: &[u8]) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{:016x}", hash(data)));
    if !path.exists() {
        std::fs::write(&path, data).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(path)
}

// ---- panics -----------------------------------------------------------

thread_local! {
    /// Set while this thread runs an input: its panics are the target's.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static CAPTURED: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Set on threads a target started (a runtime's workers): their panics
    /// are kept for it.
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

/// Panics on watched threads, kept for the target that started them.
static OTHER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Marks the calling thread as one of a target's own (call it from the
/// thread, say from a runtime's `on_thread_start`): its panics are kept
/// for [`take_other_panics`].
pub fn watch_this_thread() {
    WATCHED.with(|w| w.set(true));
}

/// Installs a panic hook that records a running input's panic quietly
/// (the finding reports it) and leaves every other panic to the usual hook.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = panic_text(info);
            if CAPTURING.with(Cell::get) {
                CAPTURED.with(|c| *c.borrow_mut() = Some(msg));
            } else {
                if WATCHED.with(Cell::get) {
                    if let Ok(mut others) = OTHER_PANICS.lock() {
                        others.push(msg);
                    }
                }
                previous(info);
            }
        }));
    });
}

fn panic_text(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a non-string panic)".to_owned());
    match info.location() {
        Some(l) => format!("panicked at {}:{}: {what}", l.file(), l.line()),
        None => format!("panicked: {what}"),
    }
}

/// Takes the panics recorded on watched threads.
pub fn take_other_panics() -> Vec<String> {
    OTHER_PANICS
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default()
}

// ---- the watchdog -----------------------------------------------------

/// Notices an in-process input that runs too long: saves it and ends the
/// process (a hung thread cannot be stopped from outside).
struct Watchdog {
    state: Arc<WatchState>,
}

struct WatchState {
    /// Milliseconds since `epoch` when the running input began; 0: idle.
    began: AtomicU64,
    epoch: Instant,
    input: Mutex<Vec<u8>>,
    stop: AtomicBool,
}

impl Watchdog {
    fn start(target: &'static str, timeout: Duration, findings: PathBuf) -> Self {
        let state = Arc::new(WatchState {
            began: AtomicU64::new(0),
            epoch: Instant::now(),
            input: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = state.clone();
        std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let began = s.began.load(Ordering::Relaxed);
                let now = s.epoch.elapsed().as_millis() as u64;
                if began != 0 && now.saturating_sub(began) > timeout.as_millis() as u64 {
                    let input = s.input.lock().map(|i| i.clone()).unwrap_or_default();
                    let msg = format!("{target}: an input ran longer than {timeout:?} (a hang)");
                    let saved = save_finding(&findings, &input, &msg)
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|e| e);
                    eprintln!("wyrm-fuzz: {msg}; input saved in {saved}; stopping");
                    std::process::abort();
                }
            }
        });
        Watchdog { state }
    }

    fn begin(&self, input: &[u8]) {
        if let Ok(mut i) = self.state.input.lock() {
            i.clear();
            i.extend_from_slice(input);
        }
        let now = (self.state.epoch.elapsed().as_millis() as u64).max(1);
        self.state.began.store(now, Ordering::Relaxed);
    }

    fn end(&self) {
        self.state.began.store(0, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }
}

fn save_finding(dir: &Path, input: &[u8], message: &str) -> Result<PathBuf, String> {
    let path = save_input(dir, input)?;
    let txt = path.with_extension("txt");
    std::fs::write(&txt, format!("{message}\n"))
        .map_err(|e| format!("cannot write {}: {e}", txt.display()))?;
    Ok(path)
}

/// Failures whose messages begin alike are the same bug: messages say
/// what broke first and show the data after, and a panic's begins with its
/// place. Numbers vary between inputs, so they do not count.
fn failure_key(message: &str) -> String {
    let line = message.lines().next().unwrap_or("");
    let mut key = String::new();
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !key.ends_with('#') {
                key.push('#');
            }
        } else {
            key.push(c);
        }
        if key.chars().count() >= 80 {
            break;
        }
    }
    key
}

// ---- the loop ---------------------------------------------------------

struct Session<'a> {
    target: &'a Target,
    runner: Box<dyn Runner>,
    cov: Coverage,
    watchdog: Option<Watchdog>,
}

impl Session<'_> {
    fn exec(&mut self, input: &[u8]) -> (Verdict, usize) {
        if let Some(w) = &self.watchdog {
            w.begin(input);
        }
        coverage::set_current(input);
        self.cov.start();
        let verdict = if self.target.in_process {
            CAPTURING.with(|c| c.set(true));
            let r = catch_unwind(AssertUnwindSafe(|| self.runner.run(input)));
            CAPTURING.with(|c| c.set(false));
            r.unwrap_or_else(|_| {
                let msg = CAPTURED.with(|c| c.borrow_mut().take());
                Verdict::Fail(msg.unwrap_or_else(|| "panicked".to_owned()))
            })
        } else {
            self.runner.run(input)
        };
        let new = self.cov.finish();
        coverage::clear_current();
        if let Some(w) = &self.watchdog {
            w.end();
        }
        (verdict, new)
    }

    /// A shorter input that fails the same way, found by cutting pieces
    /// out (at most `budget` tries).
    fn minimize(&mut self, input: &[u8], key: &str, budget: usize) -> Vec<u8> {
        let mut best = input.to_vec();
        let mut tries = 0;
        let mut chunk = best.len() / 2;
        while chunk > 0 && tries < budget {
            let mut at = 0;
            while at < best.len() && tries < budget {
                let end = (at + chunk).min(best.len());
                let mut candidate = best.clone();
                candidate.drain(at..end);
                tries += 1;
                match self.exec(&candidate).0 {
                    Verdict::Fail(m) if failure_key(&m) == key => best = candidate,
                    _ => at += chunk,
                }
            }
            chunk /= 2;
        }
        best
    }
}

/// Runs `target` as `cfg` says.
pub fn run(target: &Target, cfg: &Config) -> Result<Report, String> {
    install_panic_hook();
    let started = Instant::now();
    let findings_dir = cfg.findings.join(target.name);
    std::fs::create_dir_all(&findings_dir)
        .map_err(|e| format!("cannot create {}: {e}", findings_dir.display()))?;
    std::fs::create_dir_all(&cfg.env.work)
        .map_err(|e| format!("cannot create {}: {e}", cfg.env.work.display()))?;
    coverage::arm_crash_dump(&findings_dir.join(format!("aborted-{}", std::process::id())))?;
    let runner = (target.start)(&cfg.env).map_err(|e| format!("{}: {e}", target.name))?;
    let mut s = Session {
        target,
        runner,
        cov: Coverage::new(),
        watchdog: target
            .in_process
            .then(|| Watchdog::start(target.name, cfg.timeout, findings_dir.clone())),
    };

    // The corpus: files, then what the encoders make, each once.
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut known = std::collections::HashSet::new();
    let mut initial = Vec::new();
    for dir in &cfg.corpus_dirs {
        initial.extend(read_dir_inputs(dir, target.max_len)?);
    }
    initial.extend((target.seeds)().into_iter().map(|mut s| {
        s.truncate(target.max_len);
        s
    }));
    let mut report = Report {
        target: target.name,
        iterations: 0,
        accepted: 0,
        elapsed: Duration::ZERO,
        corpus: 0,
        features: 0,
        findings: Vec::new(),
    };
    let mut keys = std::collections::HashSet::new();
    let mut rng = Rng::new(cfg.seed);
    let deadline = cfg.time.map(|t| started + t);
    let mut next_progress = cfg.progress.map(|p| Instant::now() + p);
    let mut pending = initial.into_iter();
    let mut scratch = Vec::new();
    loop {
        if cfg.iterations.is_some_and(|n| report.iterations >= n)
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        // The corpus first, as it is; then mutations of it.
        let replaying = match pending.next() {
            Some(input) => {
                if !known.insert(hash(&input)) {
                    continue;
                }
                scratch = input;
                true
            }
            None => {
                scratch.clear();
                if let Some(parent) = rng.pick(&corpus) {
                    scratch.extend_from_slice(parent);
                }
                let src = Sources {
                    corpus: &corpus,
                    dict: target.dict,
                    cmps: s.cov.enabled(),
                    max_len: target.max_len,
                };
                mutate(&mut rng, &mut scratch, &src);
                false
            }
        };
        let (verdict, new) = s.exec(&scratch);
        report.iterations += 1;
        match verdict {
            Verdict::Accepted => report.accepted += 1,
            Verdict::Rejected => {}
            Verdict::Fail(message) => {
                let key = failure_key(&message);
                if keys.insert(key.clone()) {
                    // A child process restarts after each crash it
                    // reproduces, so external targets get fewer tries.
                    let budget = if target.in_process { 2000 } else { 200 };
                    let input = s.minimize(&scratch, &key, budget);
                    let saved = save_finding(&findings_dir, &input, &message)?;
                    eprintln!(
                        "wyrm-fuzz: {}: FAILURE: {message}\n  input ({} bytes, saved in {}): {}",
                        target.name,
                        input.len(),
                        saved.display(),
                        hex_preview(&input)
                    );
                    report.findings.push(Finding {
                        message,
                        input,
                        saved,
                    });
                    if !cfg.keep_going {
                        break;
                    }
                }
            }
        }
        // Keep what the corpus had, and what reached new coverage.
        if replaying || new > 0 {
            if new > 0 && !replaying {
                if let Some(q) = &cfg.queue {
                    save_input(q, &scratch)?;
                }
            }
            if replaying || known.insert(hash(&scratch)) {
                corpus.push(scratch.clone());
            }
        }
        if let Some(at) = next_progress {
            if Instant::now() >= at {
                report.elapsed = started.elapsed();
                report.corpus = corpus.len();
                report.features = s.cov.features();
                eprintln!("wyrm-fuzz: {}", report.summary());
                next_progress = cfg.progress.map(|p| Instant::now() + p);
            }
        }
    }
    if let Some(problem) = s.runner.finish() {
        let saved = save_finding(&findings_dir, b"", &problem)?;
        eprintln!(
            "wyrm-fuzz: {}: FAILURE at the end of the run: {problem}",
            target.name
        );
        report.findings.push(Finding {
            message: problem,
            input: Vec::new(),
            saved,
        });
    }
    report.elapsed = started.elapsed();
    report.corpus = corpus.len();
    report.features = s.cov.features();
    Ok(report)
}

/// Runs the given inputs once each (replaying saved findings).
pub fn replay(target: &Target, env: &Env, inputs: &[Vec<u8>]) -> Result<Vec<Verdict>, String> {
    install_panic_hook();
    let runner = (target.start)(env)?;
    let mut s = Session {
        target,
        runner,
        cov: Coverage::new(),
        watchdog: None,
    };
    let mut out: Vec<Verdict> = inputs.iter().map(|i| s.exec(i).0).collect();
    if let Some(problem) = s.runner.finish() {
        out.push(Verdict::Fail(problem));
    }
    Ok(out)
}

/// Whether this build carries coverage instrumentation.
pub fn instrumented() -> bool {
    Coverage::new().enabled()
}

/// The first bytes of an input as hex, for messages.
pub fn hex_preview(data: &[u8]) -> String {
    let shown: String = data.iter().take(96).map(|b| format!("{b:02x}")).collect();
    if data.len() > 96 {
        format!("{shown}…")
    } else {
        shown
    }
}
