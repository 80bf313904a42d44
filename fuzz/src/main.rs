//! `wyrm-fuzz`: long fuzzing runs (`scripts/fuzz` builds it with coverage
//! instrumentation and runs it), replays of findings, and corpus upkeep.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wyrm_fuzz::engine::{self, Config, Env, Verdict};
use wyrm_fuzz::{corpus_dir, repo_root, targets};

#[derive(Parser)]
#[command(about = "Fuzzes Wyrm's decoders (see scripts/fuzz)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists the targets.
    List,
    /// Fuzzes one target, or all of them one after another.
    Run {
        /// A target's name, or `all`.
        target: String,
        /// Seconds per target (default: until stopped, or 60 each for `all`).
        #[arg(long)]
        time: Option<u64>,
        /// Stop after this many inputs per target.
        #[arg(long)]
        iterations: Option<u64>,
        /// The generator's seed (default: from the clock; printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Stop at the first failure instead of going on.
        #[arg(long)]
        stop: bool,
    },
    /// Runs saved inputs (findings, corpus files) once and says what each did.
    Replay { target: String, files: Vec<PathBuf> },
    /// Copies the inputs of past runs (`fuzz/out/queue/<target>`) that
    /// reach coverage the committed corpus does not into `fuzz/corpus/`.
    /// Needs the instrumented build.
    Merge { target: String },
    /// Writes what the encoders make for a target into its corpus folder.
    Seeds { target: String },
}

fn out_dir() -> PathBuf {
    repo_root().join("fuzz/out")
}

fn env() -> Env {
    Env {
        repo: repo_root(),
        work: out_dir().join("work"),
    }
}

fn pick(name: &str) -> Result<Vec<&'static engine::Target>, String> {
    if name == "all" {
        return Ok(targets::all().iter().collect());
    }
    targets::find(name)
        .map(|t| vec![t])
        .ok_or_else(|| format!("no target {name:?}: `scripts/fuzz list` shows them"))
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli.command) {
        eprintln!("wyrm-fuzz: {e}");
        std::process::exit(1);
    }
}

fn run(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::List => {
            for t in targets::all() {
                println!("{:<16} {}", t.name, t.about);
            }
            Ok(())
        }
        Cmd::Run {
            target,
            time,
            iterations,
            seed,
            stop,
        } => {
            let chosen = pick(&target)?;
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
            let time = time
                .map(Duration::from_secs)
                .or((chosen.len() > 1 && iterations.is_none()).then(|| Duration::from_secs(60)));
            let counters = wyrm_fuzz::coverage::Coverage::new().counters();
            eprintln!(
                "wyrm-fuzz: seed {seed}; coverage {}",
                if counters > 0 {
                    format!("on ({counters} edge counters)")
                } else {
                    "off (not an instrumented build: use scripts/fuzz)".into()
                }
            );
            if chosen.iter().any(|t| !t.in_process) {
                targets::setup_polyglot(&repo_root());
            }
            let mut reports = Vec::new();
            for t in chosen {
                let cfg = Config {
                    iterations,
                    time,
                    seed,
                    corpus_dirs: vec![corpus_dir(t), out_dir().join("queue").join(t.name)],
                    queue: Some(out_dir().join("queue").join(t.name)),
                    findings: out_dir().join("findings"),
                    keep_going: !stop,
                    progress: Some(Duration::from_secs(5)),
                    timeout: Duration::from_secs(10),
                    env: env(),
                };
                let r = engine::run(t, &cfg)?;
                eprintln!("wyrm-fuzz: done: {}", r.summary());
                reports.push(r);
            }
            let found: usize = reports.iter().map(|r| r.findings.len()).sum();
            println!("\nsummary (seed {seed}):");
            for r in &reports {
                println!("  {}", r.summary());
                for f in &r.findings {
                    println!(
                        "    FINDING {}: {}",
                        f.saved.display(),
                        f.message.lines().next().unwrap_or("")
                    );
                }
            }
            if found > 0 {
                Err(format!(
                    "{found} finding(s), saved under {}",
                    out_dir().join("findings").display()
                ))
            } else {
                Ok(())
            }
        }
        Cmd::Replay { target, files } => {
            let t = targets::find(&target).ok_or_else(|| format!("no target {target:?}"))?;
            if !t.in_process {
                targets::setup_polyglot(&repo_root());
            }
            let mut inputs = Vec::new();
            for f in &files {
                inputs.push(
                    std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?,
                );
            }
            let verdicts = engine::replay(t, &env(), &inputs)?;
            let mut failed = false;
            for (i, v) in verdicts.iter().enumerate() {
                let name = files
                    .get(i)
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "(end of run)".into());
                match v {
                    Verdict::Fail(m) => {
                        failed = true;
                        println!("{name}: FAIL: {m}");
                    }
                    other => println!("{name}: {other:?}"),
                }
            }
            if failed {
                Err("some inputs fail".into())
            } else {
                Ok(())
            }
        }
        Cmd::Merge { target } => {
            if !engine::instrumented() {
                return Err("merging needs coverage: run it through scripts/fuzz".into());
            }
            for t in pick(&target)? {
                let kept = merge(t)?;
                eprintln!(
                    "wyrm-fuzz: {}: {kept} input(s) added to {}",
                    t.name,
                    corpus_dir(t).display()
                );
            }
            Ok(())
        }
        Cmd::Seeds { target } => {
            for t in pick(&target)? {
                let dir = corpus_dir(t);
                let seeds = (t.seeds)();
                for s in &seeds {
                    engine::save_input(&dir, s)?;
                }
                eprintln!(
                    "wyrm-fuzz: {}: {} seed(s) in {}",
                    t.name,
                    seeds.len(),
                    dir.display()
                );
            }
            Ok(())
        }
    }
}

/// Runs the committed corpus, then the queue smallest first, keeping the
/// queued inputs that reach new coverage.
fn merge(t: &'static engine::Target) -> Result<usize, String> {
    use wyrm_fuzz::coverage::Coverage;
    let committed = engine::read_dir_inputs(&corpus_dir(t), t.max_len)?;
    let mut queued = engine::read_dir_inputs(&out_dir().join("queue").join(t.name), t.max_len)?;
    queued.sort_by_key(Vec::len);
    let mut runner = (t.start)(&env())?;
    // Edges, not hit counts: the committed corpus should be small.
    let mut cov = Coverage::edges_only();
    engine::install_panic_hook();
    let mut exec = |input: &[u8], cov: &mut Coverage| {
        cov.start();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run(input)));
        cov.finish()
    };
    for input in &committed {
        exec(input, &mut cov);
    }
    let mut kept = 0;
    for input in &queued {
        if exec(input, &mut cov) > 0 {
            engine::save_input(&corpus_dir(t), input)?;
            kept += 1;
        }
    }
    Ok(kept)
}
