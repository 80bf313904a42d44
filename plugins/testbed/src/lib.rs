//! The testbed plugin: one entity type, `Probe`, whose methods exercise the
//! host's plugin runtime for tests and benchmarks (raw call cost, client
//! calls, private state, attributes, timers, runaway and panicking guests).

use wyrm_sdk::prelude::*;

/// A probe entity. Its private state counts `count` calls.
#[cfg(not(feature = "v2"))]
#[derive(Default, Serialize, Deserialize)]
pub struct Probe {
    n: u64,
}

/// Version 2 of the probe's state: a different shape, migrated from
/// version 1's (feature `v2`).
#[cfg(feature = "v2")]
#[derive(Default, Serialize, Deserialize)]
pub struct Probe {
    count: u64,
    migrated_from: Option<String>,
}

/// Version 1's state, as version 2 reads it when migrating.
#[cfg(feature = "v2")]
#[derive(Deserialize)]
struct ProbeV1 {
    n: u64,
}

impl Probe {
    #[cfg(not(feature = "v2"))]
    fn counter(&mut self) -> &mut u64 {
        &mut self.n
    }

    #[cfg(feature = "v2")]
    fn counter(&mut self) -> &mut u64 {
        &mut self.count
    }
}

/// The version this build reports; each feature is a "release" for the
/// hot-swap tests.
const VERSION: &str = if cfg!(feature = "v2") {
    "0.2.0"
} else if cfg!(feature = "refuse_import") {
    "0.1.1-refuse"
} else if cfg!(feature = "trap_import") {
    "0.1.1-trap"
} else {
    env!("CARGO_PKG_VERSION")
};

#[wyrm_sdk::entity(attrs(hits = "all_clients"))]
impl Probe {
    /// Does nothing: measures the raw host → guest call cost.
    #[all_clients]
    fn noop(&mut self) {}

    /// Sends `v` back to the caller's client as `on_echo(v)`.
    #[own_client]
    fn echo(&mut self, ctx: &mut Ctx, v: wyrm_sdk::rmpv::Value) -> Result<(), Error> {
        ctx.call_client("on_echo", (v,))?;
        Ok(())
    }

    /// Increments the private counter, mirrors it in attribute `hits` and
    /// sends `on_count(n)` to the client.
    #[own_client]
    fn count(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let n = self.counter();
        *n += 1;
        let n = *n;
        ctx.set_attr("hits", n)?;
        ctx.call_client("on_count", (n,))?;
        Ok(())
    }

    /// Sets a one-shot timer on this entity that calls `method` (no
    /// arguments) after `delay_ms`.
    #[own_client]
    fn arm(&mut self, ctx: &mut Ctx, delay_ms: u32, method: String) -> Result<(), Error> {
        ctx.set_timer(delay_ms, &method, ())?;
        Ok(())
    }

    /// Timer target: sends `on_tick()` to the client (`on_tick("v2")` from
    /// version 2, so a test sees which code a timer fired into).
    fn tick(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        if cfg!(feature = "v2") {
            ctx.call_client("on_tick", ("v2",))?;
        } else {
            ctx.call_client("on_tick", ())?;
        }
        Ok(())
    }

    /// Reads state exported by an earlier version. Version 2 migrates
    /// version 1's shape; the `refuse_import` and `trap_import` builds
    /// refuse or trap, for the swap's rollback.
    fn migrate(from_version: &str, data: &[u8]) -> Result<Self, String> {
        if cfg!(feature = "refuse_import") {
            return Err(format!("this build refuses state from {from_version}"));
        }
        if cfg!(feature = "trap_import") {
            panic!("this build traps importing state from {from_version}");
        }
        #[cfg(feature = "v2")]
        if from_version.starts_with("0.1") && !data.is_empty() {
            let old: ProbeV1 = wyrm_sdk::rmp_serde::from_slice(data).map_err(|e| e.to_string())?;
            return Ok(Self {
                count: old.n,
                migrated_from: Some(from_version.to_owned()),
            });
        }
        wyrm_sdk::decode_state(data)
    }

    /// Sends `on_hits(hits)` with the host-owned attribute `hits` as the host
    /// holds it (nil when unset): shows what survives a crash.
    #[own_client]
    fn read_hits(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let hits: Option<u64> = ctx.get_attr("hits")?;
        ctx.call_client("on_hits", (hits,))?;
        Ok(())
    }

    /// Allocates and touches `mib` MiB, for the host's memory cap; sends
    /// `on_hogged(mib)` if it got that far.
    #[own_client]
    fn hog(&mut self, ctx: &mut Ctx, mib: u32) -> Result<(), Error> {
        let block = vec![1u8; mib as usize * 1024 * 1024];
        let sum: u64 = block.iter().step_by(4096).map(|&b| u64::from(b)).sum();
        ctx.call_client("on_hogged", (core::hint::black_box(sum) / 256,))?;
        Ok(())
    }

    /// Loops forever, for the host's deadline.
    #[own_client]
    fn spin(&mut self) {
        let mut i = 0u64;
        loop {
            i = core::hint::black_box(i.wrapping_add(1));
        }
    }

    /// Panics (a trap), for the host's crash recovery.
    #[own_client]
    fn boom(&mut self) {
        panic!("Probe.boom called");
    }
}

/// An entity with about 100 bytes of private state and nothing else, shaped
/// like a game character's: the swap-pause benchmark moves many of these.
#[derive(Serialize, Deserialize)]
pub struct Blob {
    name: String,
    level: u32,
    xp: u64,
    hp: f32,
    pos: [f32; 3],
    inventory: Vec<u32>,
    quest: Option<String>,
    touched: u64,
}

impl Default for Blob {
    fn default() -> Self {
        Self {
            name: "wandering-blob".into(),
            level: 17,
            xp: 123_456,
            hp: 87.5,
            pos: [1024.5, 33.25, -7.0],
            inventory: vec![101, 2002, 30_003, 4, 55, 666, 7_777_777],
            quest: Some("find the wyrm".into()),
            touched: 0,
        }
    }
}

#[wyrm_sdk::entity]
impl Blob {
    /// Changes the state a little.
    fn touch(&mut self) {
        self.touched += 1;
    }
}

wyrm_sdk::plugin!(
    name = "testbed",
    version = VERSION,
    entities = [Probe, Blob]
);
