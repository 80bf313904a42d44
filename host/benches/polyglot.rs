//! Call cost and swap pause per plugin language, side by side: the
//! conformance plugin (`plugins/conformance/README.md`) in Rust,
//! JavaScript, Python and C, each built from source by `wyrm build`'s own
//! tools and run by the same runtime.
//!
//! For each language it prints the component's size, its compile time (a
//! fresh cache), instantiation time, the cost of one host→guest call of
//! `Member.echo([nil])` (decode the args, one `call-client` import, encode),
//! and the worst-case swap pause: one `export-entities` of 1,000 members and
//! the room, then `import-entities` of it all into a fresh instance of the
//! same language. Medians over several runs. A language whose tools are
//! missing is reported as skipped, with the reason.
//!
//! Run: `cargo bench -p wyrm --bench polyglot`

use std::time::{Duration, Instant};

use wyrm_runtime::{Caller, CallerKind, EntityRef, EntityState, PluginCode, PluginRuntime};
use wyrm_toolchains::{BuildOptions, Language};

mod support;
use support::{median, EmptyWorld};

const RUNS: usize = 5;
const CALLS: u32 = 20_000;
const MEMBERS: u64 = 1_000;

struct Row {
    size_kb: f64,
    compile_ms: f64,
    instantiate_us: f64,
    call_ns: f64,
    swap_ms: f64,
}

fn fault(f: wyrm_runtime::Fault) -> anyhow::Error {
    anyhow::anyhow!("{f}")
}

/// A MessagePack map `{"said": n}`: a member's private state.
fn member_state(n: u64) -> Vec<u8> {
    let mut v = vec![0x81, 0xa4];
    v.extend_from_slice(b"said");
    v.push(0xcf);
    v.extend_from_slice(&n.to_be_bytes());
    v
}

fn measure(lang: Language) -> anyhow::Result<Row> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("plugins/conformance").join(lang.name());
    let wasm = wyrm_toolchains::build_plugin(&dir, &BuildOptions::default())?;
    let size_kb = std::fs::metadata(&wasm)?.len() as f64 / 1024.0;
    let cache = tempfile::tempdir()?;
    let runtime = PluginRuntime::new(
        cache.path().to_path_buf(),
        wyrm_runtime::Limits {
            deadline: Duration::from_secs(30),
            memory_bytes: 1 << 30,
        },
    )?;
    let started = Instant::now();
    let code: PluginCode<EmptyWorld> = runtime.load(lang.name(), &wasm)?;
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;

    let mut inst_times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let i = code.instantiate()?;
        inst_times.push(t.elapsed().as_secs_f64() * 1e6);
        drop(i);
    }

    let mut world = Some(Box::new(EmptyWorld));
    let mut inst = code.instantiate()?;
    let kind_of = |name: &str| -> anyhow::Result<u32> {
        let k = inst
            .info()
            .entity_types
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| anyhow::anyhow!("the {lang} plugin declares no {name}"))?;
        Ok(u32::try_from(k)?)
    };
    let (member, room) = (kind_of("Member")?, kind_of("Room")?);
    let entity = EntityRef {
        id: 1,
        kind: member,
    };
    let caller = Caller {
        kind: CallerKind::OwnClient,
        entity: Some(1),
    };
    let args = vec![0x91, 0xc0]; // [nil]
    for _ in 0..1_000 {
        inst.call(&mut world, entity, "echo", &args, caller)
            .map_err(fault)?
            .map_err(|e| anyhow::anyhow!("echo failed: {e}"))?;
    }
    let mut calls = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        for _ in 0..CALLS {
            let _ = inst.call(&mut world, entity, "echo", &args, caller);
        }
        calls.push(t.elapsed().as_nanos() as f64 / f64::from(CALLS));
    }

    // Worst-case swap: every entity changed, so all of them move in the pause.
    let version = inst.version().to_owned();
    let mut states: Vec<EntityState> = (1..=MEMBERS)
        .map(|id| EntityState {
            entity: EntityRef { id, kind: member },
            type_name: "Member".into(),
            data: member_state(id),
        })
        .collect();
    states.push(EntityState {
        entity: EntityRef {
            id: MEMBERS + 1,
            kind: room,
        },
        type_name: "Room".into(),
        data: Vec::new(),
    });
    let ids: Vec<u64> = states.iter().map(|s| s.entity.id).collect();
    let mut swaps = Vec::new();
    for _ in 0..RUNS {
        let mut old = code.instantiate()?;
        old.import(&mut world, &version, &states)
            .map_err(fault)?
            .map_err(anyhow::Error::msg)?;
        let mut new = code.instantiate()?;
        let t = Instant::now();
        let exported = old
            .export(&mut world, &ids)
            .map_err(fault)?
            .map_err(anyhow::Error::msg)?;
        new.import(&mut world, &version, &exported)
            .map_err(fault)?
            .map_err(anyhow::Error::msg)?;
        swaps.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            exported.len() == states.len(),
            "{lang}: exported {} of {} entities",
            exported.len(),
            states.len()
        );
    }
    Ok(Row {
        size_kb,
        compile_ms,
        instantiate_us: median(inst_times),
        call_ns: median(calls),
        swap_ms: median(swaps),
    })
}

fn main() -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for lang in Language::ALL {
        rows.push((lang, measure(lang)));
    }
    println!(
        "conformance plugin per language: Member.echo([nil]) call, worst-case swap of \
         {MEMBERS} members + room, median of {RUNS} runs"
    );
    println!(
        "{:<11} {:>10} {:>11} {:>14} {:>10} {:>9} {:>13}",
        "language", "size KB", "compile ms", "instantiate µs", "call ns", "vs Rust", "swap ms"
    );
    let rust_call = rows
        .iter()
        .find_map(|(l, r)| (*l == Language::Rust).then_some(r.as_ref().ok()?.call_ns));
    for (lang, row) in &rows {
        match row {
            Ok(r) => println!(
                "{:<11} {:>10.0} {:>11.0} {:>14.0} {:>10.0} {:>8.1}x {:>13.2}",
                lang.to_string(),
                r.size_kb,
                r.compile_ms,
                r.instantiate_us,
                r.call_ns,
                rust_call.map_or(f64::NAN, |b| r.call_ns / b),
                r.swap_ms
            ),
            Err(e) => println!("{:<11} skipped: {e:#}", lang.to_string()),
        }
    }
    Ok(())
}
