//! Active clients at a 20 Hz space tick: `wyrm bots` players in the arena
//! example, each moving 10 times a second (and now and then shooting),
//! against the real `wyrm` binary in its own process. The latency of a move
//! is from sending it until the bot sees its own new position in a
//! `Positions` frame, so it includes waiting for the next tick (up to 50
//! ms). Every player sees every other (they spawn near the middle), so the
//! traffic out grows with the square of the count.
//!
//! The bots run in this process on one thread; the CPU each side used is
//! printed with the numbers.
//!
//! Run: `cargo bench -p wyrm --bench active_clients`

use std::time::Duration;

use wyrm_bots::{Config, Scenario};
use wyrm_client::Transport;

mod support;
use support::{cpu_time, ServerProcess};

const SECONDS: u64 = 10;

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm =
        wyrm::plugin::build_plugin(&root.join("examples/arena/plugin"), &Default::default())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let counts: &[usize] = if support::in_suite() {
        &[200]
    } else {
        &[50, 100, 200, 400]
    };
    println!("active clients: arena bots over TCP, 10 moves/s each, 20 Hz tick, {SECONDS} s each");
    println!(
        "{:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9} {:>7}",
        "clients", "actions/s", "p50 ms", "p99 ms", "max ms", "server CPU", "bots CPU", "errors"
    );
    for &n in counts {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("wyrm.toml");
        std::fs::write(
            &cfg,
            format!(
                "[server]\nname = \"bench\"\ndata_dir = \"data\"\n\n\
                 [net]\ntcp = \"127.0.0.1:0\"\nclient_rate = 1000000\nclient_queue_bytes = 16777216\n\n\
                 [game]\nboot_entity = \"Account\"\nservices = [\"Arena\"]\nspace_tick_hz = 20\n\n\
                 [[plugin]]\nname = \"arena\"\nsource = {:?}\n",
                wasm.display().to_string()
            ),
        )?;
        let server = ServerProcess::serve(&cfg)?;
        let config = Config::new(server.tcp()?, Transport::Tcp, Scenario::Arena)
            .bots(n)
            .duration(Duration::from_secs(SECONDS));
        let cpu_before = cpu_time(server.pid())?;
        let report = rt.block_on(wyrm_bots::run(config))?;
        let server_cpu = (cpu_time(server.pid())? - cpu_before).as_secs_f64()
            / report.wall.as_secs_f64()
            * 100.0;
        let bots_cpu = report
            .cpu
            .map_or(f64::NAN, |c| c.percent_of_core(report.wall));
        let errors =
            report.error_frames + report.timeouts + report.disconnects + report.other_errors;
        let lat = report
            .latency
            .ok_or_else(|| anyhow::anyhow!("no action was answered with {n} bots"))?;
        println!(
            "{n:>7} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>10.0}% {:>8.0}% {errors:>7}",
            report.completed as f64 / report.wall.as_secs_f64(),
            lat.p50_ms,
            lat.p99_ms,
            lat.max_ms,
            server_cpu,
            bots_cpu,
        );
        if support::in_suite() {
            support::suite_row(
                "active clients at a 20 Hz tick",
                &format!("{n}, p99 {:.1} ms", lat.p99_ms),
                &format!(
                    "arena bots over TCP, 10 moves/s each, move -> own position seen; p50 {:.1} ms, \
                     server {server_cpu:.0}% of a core, {errors} errors",
                    lat.p50_ms
                ),
            );
        }
    }
    Ok(())
}
