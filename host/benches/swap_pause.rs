//! Hot-swap pause: the time during which no message reaches a plugin while
//! its entities' private state moves from the running instance to the new
//! one (`export-entities` then `import-entities`), at 1k, 10k and 100k
//! entities of about 100 bytes of state each (the testbed's `Blob`, a Rust
//! guest).
//!
//! Prints medians over several runs, bytes moved, and the cost per entity,
//! whose ratio between sizes shows how the pause scales.
//!
//! Run: `cargo bench -p wyrm --bench swap_pause`

use std::path::Path;
use std::time::{Duration, Instant};

use wyrm::plugin::{BuildOptions, EntityRef, EntityState, Limits, PluginRuntime};

mod support;
use support::{median, EmptyWorld};

const RUNS: usize = 5;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm =
        wyrm::plugin::build_rust_plugin(&root.join("plugins/testbed"), &BuildOptions::default())?;
    let cache = tempfile::tempdir()?;
    // 100k entities need more than the default 64 MiB per instance.
    let runtime = PluginRuntime::new(
        cache.path().to_path_buf(),
        Limits {
            deadline: Duration::from_secs(30),
            memory_bytes: 1 << 30,
        },
    )?;
    let code = runtime.load::<EmptyWorld>("testbed", &wasm)?;
    let mut world = Some(Box::new(EmptyWorld));
    let fault = |f: wyrm::plugin::Fault| anyhow::anyhow!("{f}");

    println!(
        "swap pause, Rust guest (testbed Blob, ~100 B private state each), median of {RUNS} runs"
    );
    println!(
        "{:>9} {:>10} {:>12} {:>12} {:>14}",
        "entities", "bytes", "pause ms", "ns/entity", "target"
    );
    let mut per_entity_1k = None;
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
        per_entity_1k.get_or_insert(ns_per);
        let target = match n {
            10_000 => format!("<= 5 ms: {}", if ms <= 5.0 { "met" } else { "NOT met" }),
            100_000 => format!("<= 50 ms: {}", if ms <= 50.0 { "met" } else { "NOT met" }),
            _ => String::new(),
        };
        println!("{n:>9} {bytes:>10} {ms:>12.2} {ns_per:>12.0} {target:>14}");
    }
    if let Some(base) = per_entity_1k {
        println!("(ns/entity relative to 1k entities shows the scaling; 1k = {base:.0} ns)");
    }
    Ok(())
}
