//! The benchmark suite: every headline number Wyrm publishes, in one table.
//!
//! Runs each benchmark as its own process (`cargo bench -p <crate> --bench
//! <name>` with `WYRM_BENCH_SUITE=1`, which selects a standard, shorter
//! workload), one after the other so they never compete for the cores, and
//! collects the `SUITE` line each prints. Prints the table with the machine
//! it ran on, and writes it to `target/bench/suite.json` and each
//! benchmark's full output to `target/bench/<name>.log`.
//!
//! Run: `cargo bench -p wyrm --bench suite` (or name some benchmarks after
//! `--` to run only those).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The benchmarks, by crate, in the order the table lists them.
const BENCHES: [(&str, &str); 11] = [
    ("wyrm", "idle_connections"),
    ("wyrm", "scale"),
    ("wyrm", "rpc_throughput"),
    ("wyrm", "call_cost"),
    ("wyrm", "swap_pause"),
    ("wyrm-aoi", "aoi_moves"),
    ("wyrm", "space_tick"),
    ("wyrm", "storage"),
    ("wyrm", "workers"),
    ("wyrm", "cluster"),
    ("wyrm", "recovery"),
];

struct Row {
    bench: &'static str,
    measure: String,
    value: String,
    workload: String,
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let machine = format!(
        "{} cores, {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        first_line("uname", &["-sr"])
    );
    let commit = first_line("git", &["rev-parse", "--short", "HEAD"]);
    let load_before = load_average();
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (krate, bench) in BENCHES {
        if !only.is_empty() && !only.iter().any(|o| o == bench) {
            continue;
        }
        eprint!("suite: {bench} … ");
        let t = Instant::now();
        let out = Command::new(&cargo)
            .args(["bench", "-q", "-p", krate, "--bench", bench])
            .current_dir(&root)
            .env("WYRM_BENCH_SUITE", "1")
            .output()?;
        let log = out_dir.join(format!("{bench}.log"));
        let mut f = std::fs::File::create(&log)?;
        f.write_all(&out.stdout)?;
        f.write_all(&out.stderr)?;
        let found: Vec<Row> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut parts = l.strip_prefix("SUITE\t")?.splitn(3, '\t');
                Some(Row {
                    bench,
                    measure: parts.next()?.to_owned(),
                    value: parts.next()?.to_owned(),
                    workload: parts.next().unwrap_or("").to_owned(),
                })
            })
            .collect();
        if !out.status.success() || found.is_empty() {
            eprintln!("FAILED ({}; see {})", out.status, log.display());
            failed.push(bench);
        } else {
            eprintln!("{:.0} s", t.elapsed().as_secs_f64());
        }
        rows.extend(found);
    }
    let load_after = load_average();
    let w = rows.iter().map(|r| r.measure.len()).max().unwrap_or(0);
    let v = rows.iter().map(|r| r.value.len()).max().unwrap_or(0);
    println!();
    println!("Wyrm benchmark suite, commit {commit}");
    println!("machine: {machine}");
    println!(
        "load average before {load_before}, after {load_after}; {:.0} s in all",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("{:<w$}  {:>v$}  workload", "measure", "result");
    println!("{}", "-".repeat(w + v + 12));
    for r in &rows {
        println!("{:<w$}  {:>v$}  {}", r.measure, r.value, r.workload);
    }
    let json = serde_json::json!({
        "commit": commit,
        "machine": machine,
        "load_before": load_before,
        "load_after": load_after,
        "rows": rows.iter().map(|r| serde_json::json!({
            "bench": r.bench,
            "measure": r.measure,
            "result": r.value,
            "workload": r.workload,
        })).collect::<Vec<_>>(),
        "failed": failed,
    });
    std::fs::write(
        out_dir.join("suite.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    if !failed.is_empty() {
        anyhow::bail!("benchmarks that failed: {}", failed.join(", "));
    }
    Ok(())
}
