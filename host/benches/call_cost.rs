//! Host→guest call cost: ns per call of an empty entity method (`noop` in
//! the testbed plugin, a Rust guest), through the same path the game uses
//! (`PluginInstance::call`, with the epoch deadline set on every call).
//!
//! Prints the median over several runs and, as a baseline measured in the
//! same run, the cost of `PluginInstance::run` with a closure that does not
//! enter the guest: the difference is the component-model boundary itself.
//!
//! Run: `cargo bench -p wyrm --bench call_cost`

use std::time::{Duration, Instant};

use wyrm_runtime::{Caller, CallerKind, EntityRef};

mod support;
use support::{median, EmptyWorld};

const CALLS: u32 = 200_000;
const RUNS: usize = 7;

fn main() -> anyhow::Result<()> {
    let (_runtime, code, _cache) = support::testbed(Duration::from_secs(1), 64 << 20)?;
    let mut inst = code.instantiate()?;
    let kind = inst
        .info()
        .entity_types
        .iter()
        .position(|t| t.name == "Probe")
        .ok_or_else(|| anyhow::anyhow!("testbed declares no Probe"))? as u32;
    let entity = EntityRef { id: 1, kind };
    let caller = Caller {
        kind: CallerKind::Server,
        entity: None,
    };
    let args = vec![0x90]; // an empty MessagePack array: no arguments
    let mut world = Some(Box::new(EmptyWorld));

    // Warm up, and make sure the call really succeeds.
    for _ in 0..10_000 {
        inst.call(&mut world, entity, "noop", &args, caller)
            .map_err(|f| anyhow::anyhow!("{f}"))?
            .map_err(|e| anyhow::anyhow!("noop failed: {e}"))?;
    }

    let mut guest = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        for _ in 0..CALLS {
            let _ = inst.call(&mut world, entity, "noop", &args, caller);
        }
        guest.push(t.elapsed().as_nanos() as f64 / f64::from(CALLS));
        let t = Instant::now();
        for _ in 0..CALLS {
            let _ = inst.run(&mut world, |_, s| {
                Ok(std::hint::black_box(s as *mut _ as usize))
            });
        }
        baseline.push(t.elapsed().as_nanos() as f64 / f64::from(CALLS));
    }
    let (g, b) = (median(guest.clone()), median(baseline));
    println!("host->guest call of an empty method (Rust guest, {RUNS} runs x {CALLS} calls)");
    println!(
        "  median     {g:8.0} ns/call   (runs: {})",
        guest
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  host side  {b:8.0} ns/call   (lend world + deadline, no guest entry)");
    println!(
        "  boundary   {:8.0} ns/call   ratio call/host-side = {:.1}x",
        g - b,
        g / b.max(1.0)
    );
    println!(
        "  target    <=     500 ns/call: {}",
        if g <= 500.0 { "met" } else { "NOT met" }
    );
    support::suite_row(
        "host->guest call",
        &format!("{g:.0} ns"),
        "empty method, Rust guest, through PluginInstance::call",
    );
    Ok(())
}
