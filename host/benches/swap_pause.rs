//! Hot-swap pause at 1k, 10k and 100k entities of about 100 bytes of private
//! state each (the testbed's `Blob`, a Rust guest), two ways:
//!
//! 1. Through a running server (`Swapper::swap`, as `wyrm swap` does): the
//!    swap copies state while the old version serves, then pauses to copy
//!    what changed meanwhile and switch. Reports the pause (no message
//!    reaches the plugin) and the whole copy time. Entities are idle here.
//! 2. The worst case, every entity changed during the copy: one
//!    `export-entities` + `import-entities` of all of them, measured on the
//!    plugin runtime directly — the pause if nothing could be pre-copied.
//!
//! Prints medians over several runs.
//!
//! Run: `cargo bench -p wyrm --bench swap_pause`

use std::time::{Duration, Instant};

use wyrm_runtime::{EntityRef, EntityState};

mod support;
use support::{median, EmptyWorld};

const RUNS: usize = 5;

/// Pause and copy time, in ms, of swapping the testbed for itself in a
/// running server holding `n` Blobs.
fn through_server(n: u32, wasm: &std::path::Path) -> anyhow::Result<(f64, f64)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let (server, addr) = support::start_testbed_server(dir.path(), wasm).await?;
        let mut c = wyrm_client::Client::connect(wyrm_client::Transport::Tcp, &addr).await?;
        c.wait_player(Duration::from_secs(10)).await?;
        let mut left = n;
        while left > 0 {
            let batch = left.min(10_000);
            c.call_player("spawn_blobs", (batch,)).await?;
            c.expect_call("on_blobs", Duration::from_secs(60)).await?;
            left -= batch;
        }
        let bytes = std::fs::read(wasm)?;
        let swapper = server.swapper();
        let (mut pauses, mut copies) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let report = swapper.swap("testbed", bytes.clone(), false).await;
            anyhow::ensure!(report.succeeded(), "{report}");
            pauses.push(report.pause_us as f64 / 1000.0);
            copies.push(report.copy_us as f64 / 1000.0);
        }
        server.shutdown().await;
        Ok((median(pauses), median(copies)))
    })
}

fn main() -> anyhow::Result<()> {
    // 100k entities need more than the default 64 MiB per instance.
    let (_runtime, code, _cache) = support::testbed(Duration::from_secs(30), 1 << 30)?;
    let mut world = Some(Box::new(EmptyWorld));
    let fault = |f: wyrm_runtime::Fault| anyhow::anyhow!("{f}");

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = wyrm_toolchains::build_plugin(&root.join("plugins/testbed"), &Default::default())?;
    println!(
        "swap pause, Rust guest (testbed Blob, ~120 B private state each), median of {RUNS} runs"
    );
    println!("through a running server, entities idle during the swap:");
    println!(
        "{:>9} {:>12} {:>12} {:>16}",
        "entities", "pause ms", "copy ms", "target"
    );
    for n in [1_000u32, 10_000, 100_000] {
        let (pause, copy) = through_server(n, &wasm)?;
        let target = match n {
            10_000 => format!("<= 5 ms: {}", if pause <= 5.0 { "met" } else { "NOT met" }),
            100_000 => format!(
                "<= 50 ms: {}",
                if pause <= 50.0 { "met" } else { "NOT met" }
            ),
            _ => String::new(),
        };
        println!("{n:>9} {pause:>12.2} {copy:>12.2} {target:>16}");
        if n == 10_000 {
            support::suite_row(
                "swap pause",
                &format!("{pause:.2} ms"),
                &format!("10k entities (Rust guest), through a running server; copy {copy:.1} ms"),
            );
        }
        if support::in_suite() && n == 10_000 {
            return Ok(());
        }
    }
    println!("worst case, every entity changed during the copy (one export + import of all):");
    println!(
        "{:>9} {:>10} {:>12} {:>12}",
        "entities", "bytes", "pause ms", "ns/entity"
    );
    for n in [1_000u64, 10_000, 100_000] {
        let mut pauses = Vec::new();
        let mut bytes = 0;
        for _ in 0..RUNS {
            let mut old = code.instantiate()?;
            let kind =
                old.info()
                    .entity_types
                    .iter()
                    .position(|t| t.name == "Blob")
                    .ok_or_else(|| anyhow::anyhow!("testbed has no Blob"))? as u32;
            let version = old.version().to_owned();
            // Empty data: each entity starts with Blob's default ~100 B state.
            let fresh: Vec<EntityState> = (1..=n)
                .map(|id| EntityState {
                    entity: EntityRef { id, kind },
                    type_name: "Blob".into(),
                    data: Vec::new(),
                })
                .collect();
            old.import(&mut world, &version, &fresh)
                .map_err(fault)?
                .map_err(anyhow::Error::msg)?;
            let ids: Vec<u64> = (1..=n).collect();
            let mut new = code.instantiate()?;

            let started = Instant::now();
            let states = old
                .export(&mut world, &ids)
                .map_err(fault)?
                .map_err(anyhow::Error::msg)?;
            let exported = started.elapsed();
            new.import(&mut world, &version, &states)
                .map_err(fault)?
                .map_err(anyhow::Error::msg)?;
            if std::env::var_os("WYRM_BENCH_SPLIT").is_some() {
                eprintln!(
                    "n={n} export {:?} import {:?}",
                    exported,
                    started.elapsed() - exported
                );
            }
            pauses.push(started.elapsed().as_secs_f64() * 1000.0);
            bytes = states.iter().map(|s| s.data.len()).sum::<usize>();
        }
        let ms = median(pauses);
        let ns_per = ms * 1e6 / n as f64;
        println!("{n:>9} {bytes:>10} {ms:>12.2} {ns_per:>12.0}");
    }
    Ok(())
}
