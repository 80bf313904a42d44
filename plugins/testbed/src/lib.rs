//! The testbed plugin: one entity type, `Probe`, whose methods exercise the
//! host's plugin runtime for tests and benchmarks (raw call cost, client
//! calls, private state, attributes, timers, runaway and panicking guests).

use wyrm_sdk::prelude::*;

/// A probe entity. Its private state counts `count` calls.
#[derive(Default, Serialize, Deserialize)]
pub struct Probe {
    n: u64,
}

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
        self.n += 1;
        ctx.set_attr("hits", self.n)?;
        ctx.call_client("on_count", (self.n,))?;
        Ok(())
    }

    /// Sets a one-shot timer on this entity that calls `method` (no
    /// arguments) after `delay_ms`.
    #[own_client]
    fn arm(&mut self, ctx: &mut Ctx, delay_ms: u32, method: String) -> Result<(), Error> {
        ctx.set_timer(delay_ms, &method, ())?;
        Ok(())
    }

    /// Timer target: sends `on_tick()` to the client.
    fn tick(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.call_client("on_tick", ())?;
        Ok(())
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

wyrm_sdk::plugin!(name = "testbed", entities = [Probe]);
