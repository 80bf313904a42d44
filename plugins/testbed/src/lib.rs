//! The testbed plugin: `Probe`, whose methods exercise the host's plugin
//! runtime for tests and benchmarks (raw call cost, client calls, private
//! state, attributes, timers, runaway and panicking guests), with `Blob` and
//! `Vault` for swaps and storage, `Plane` / `Walker` for spaces and AOI,
//! and `Shuttle` for migration between games.

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
} else if cfg!(feature = "refuse_counted") {
    "0.1.1-refuse-counted"
} else {
    env!("CARGO_PKG_VERSION")
};

#[wyrm_sdk::entity(attrs(hits = "all_clients"))]
impl Probe {
    /// Does nothing: measures the raw host → guest call cost.
    #[all_clients]
    fn noop(&mut self) {}

    /// Creates a `Plane` space; answers `plane(id)`.
    #[own_client]
    fn make_plane(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let plane = ctx.create_space("Plane", "test", attrs! { "name" => "plane" })?;
        ctx.call_client("plane", (plane,))?;
        Ok(())
    }

    /// Creates a `Swarm` of `n` movers; answers `swarm(id)`.
    #[own_client]
    fn make_swarm(&mut self, ctx: &mut Ctx, n: u32, size: f32, speed: f32) -> Result<(), Error> {
        let swarm = ctx.create_space("Swarm", "bench", ())?;
        ctx.call(swarm, "populate", (n, size, speed, ctx.id()))
    }

    /// Creates a `Churn` of `n` drifters on a `size`-square field; answers
    /// `churn(id)`.
    #[own_client]
    fn make_churn(&mut self, ctx: &mut Ctx, n: u32, size: f32, seed: u64) -> Result<(), Error> {
        let churn = ctx.create_space("Churn", "churn", ())?;
        ctx.call(churn, "populate", (n, size, seed, ctx.id()))
    }

    /// Sends `n` calls `seq(i)` to this probe's client, each a different
    /// way: its own (`call-client`), a broadcast, the clients that see it
    /// (only its own: a probe is in no space). They must arrive in order.
    #[own_client]
    fn sequence(&mut self, ctx: &mut Ctx, n: u32) -> Result<(), Error> {
        for i in 0..n {
            match i % 3 {
                0 => {
                    ctx.call_client("seq", (i,))?;
                }
                1 => ctx.broadcast("seq", (i,))?,
                _ => ctx.call_aoi_clients("seq", (i,))?,
            }
        }
        Ok(())
    }

    /// Broadcasts `blob(bytes)`: `len` bytes of a pattern that starts at
    /// `seed` (each client checks every byte).
    #[own_client]
    fn blast(&mut self, ctx: &mut Ctx, len: u32, seed: u8) -> Result<(), Error> {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        ctx.broadcast("blob", (wyrm_sdk::rmpv::Value::Binary(bytes),))
    }

    /// Becomes (the client of) a mover of `swarm`.
    #[own_client]
    fn join_swarm(&mut self, ctx: &mut Ctx, swarm: EntityId) -> Result<(), Error> {
        ctx.call(swarm, "adopt", (ctx.id(),))
    }

    /// Becomes a `Walker` in `plane` at `(x, y)`: the client is handed to
    /// the walker and this probe goes away.
    #[own_client]
    fn walk_in(&mut self, ctx: &mut Ctx, plane: EntityId, x: f32, y: f32) -> Result<(), Error> {
        let w = ctx.create_entity("Walker", ())?;
        ctx.enter_space_of(w, plane, Position { x, y, z: 0.0 }, 0.0)?;
        ctx.give_client_to(ctx.id(), w)?;
        ctx.destroy_entity(ctx.id())
    }

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
        *n += if cfg!(feature = "refuse_counted") {
            100
        } else {
            1
        };
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
        if cfg!(feature = "refuse_counted") {
            let mut old: Self = wyrm_sdk::decode_state(data)?;
            if *old.counter() > 0 {
                return Err("this build refuses a probe that has counted".into());
            }
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

    /// Creates a Vault holding `value`; answers `on_vault(id)`.
    #[own_client]
    fn vault_new(&mut self, ctx: &mut Ctx, value: i64) -> Result<(), Error> {
        let id = ctx.create_entity("Vault", wyrm_sdk::attrs! { "value" => value })?;
        ctx.call_client("on_vault", (id,))?;
        Ok(())
    }

    /// Sets a Vault's value and saves it; answers `on_vault_saved(id, value,
    /// error)` once it is on disk.
    #[own_client]
    fn vault_set(&mut self, ctx: &mut Ctx, id: EntityId, value: i64) -> Result<(), Error> {
        ctx.call(id, "set", (value, ctx.id()))
    }

    /// Sets a Vault's value without saving it now.
    #[own_client]
    fn vault_set_lazy(&mut self, ctx: &mut Ctx, id: EntityId, value: i64) -> Result<(), Error> {
        ctx.call(id, "set_lazy", (value,))
    }

    /// Appends to a Vault's log, whether it is loaded or not (then the call
    /// waits in its mailbox).
    #[own_client]
    fn vault_log(&mut self, ctx: &mut Ctx, id: EntityId, line: String) -> Result<(), Error> {
        ctx.call(id, "log", (line,))
    }

    /// Unloads a Vault.
    #[own_client]
    fn vault_unload(&mut self, ctx: &mut Ctx, id: EntityId) -> Result<(), Error> {
        ctx.call(id, "unload", ())
    }

    /// Asks a Vault for its value without loading it: `on_vault_value(id,
    /// value, log, error)` comes once it is live (the call waits in its
    /// mailbox until then).
    #[own_client]
    fn vault_ask(&mut self, ctx: &mut Ctx, id: EntityId) -> Result<(), Error> {
        ctx.call(id, "report", (ctx.id(),))
    }

    /// Loads a Vault (if needed) and answers `on_vault_value(id, value, log,
    /// error)`.
    #[own_client]
    fn vault_get(&mut self, ctx: &mut Ctx, id: EntityId) -> Result<(), Error> {
        ctx.load_entity(id, "vault_loaded", ())
    }

    /// `vault_get`, loading the Vault on whichever game the server
    /// chooses.
    #[own_client]
    fn vault_get_anywhere(&mut self, ctx: &mut Ctx, id: EntityId) -> Result<(), Error> {
        ctx.load_entity_at(id, Locality::Anywhere, "vault_loaded", ())
    }

    /// Storage's answer to `load_entity`.
    fn vault_loaded(
        &mut self,
        ctx: &mut Ctx,
        error: Option<String>,
        id: EntityId,
        _context: (),
    ) -> Result<(), Error> {
        match error {
            Some(e) => {
                ctx.call_client(
                    "on_vault_value",
                    (id, None::<i64>, Vec::<String>::new(), Some(e)),
                )?;
                Ok(())
            }
            None => ctx.call(id, "report", (ctx.id(),)),
        }
    }

    /// A Vault's report.
    fn vault_report(
        &mut self,
        ctx: &mut Ctx,
        id: EntityId,
        value: Option<i64>,
        log: Vec<String>,
    ) -> Result<(), Error> {
        ctx.call_client("on_vault_value", (id, value, log, None::<String>))?;
        Ok(())
    }

    /// A Vault's save confirmation.
    fn vault_saved(
        &mut self,
        ctx: &mut Ctx,
        id: EntityId,
        value: i64,
        error: Option<String>,
    ) -> Result<(), Error> {
        ctx.call_client("on_vault_saved", (id, value, error))?;
        Ok(())
    }

    /// Creates `n` Blobs; answers `on_blobs(first_id, last_id)` (ids are
    /// consecutive).
    #[own_client]
    fn spawn_blobs(&mut self, ctx: &mut Ctx, n: u32) -> Result<(), Error> {
        let mut range = None;
        for _ in 0..n {
            let id = ctx.create_entity("Blob", ())?;
            range = Some((range.map_or(id, |(first, _)| first), id));
        }
        let (first, last) = range.unwrap_or((0, 0));
        ctx.call_client("on_blobs", (first, last))?;
        Ok(())
    }

    /// Creates `n` Keepers here, each counting from `count` (in private
    /// state); answers `on_keepers(first_id, last_id)` (ids are
    /// consecutive). They are saved at the save interval, their state at
    /// the next checkpoint.
    #[own_client]
    fn keepers(&mut self, ctx: &mut Ctx, n: u32, count: u64) -> Result<(), Error> {
        let mut range = None;
        for _ in 0..n {
            let id = ctx.create_entity("Keeper", wyrm_sdk::attrs! { "name" => "keeper" })?;
            ctx.call(id, "set", (count,))?;
            range = Some((range.map_or(id, |(first, _)| first), id));
        }
        let (first, last) = range.unwrap_or((0, 0));
        ctx.call_client("on_keepers", (first, last))?;
        Ok(())
    }

    /// Creates a Keeper here, saves it and hands it this probe's client,
    /// which gets `on_keeper_saved(error)` once it is on disk.
    #[own_client]
    fn keeper_take(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let id = ctx.create_entity("Keeper", wyrm_sdk::attrs! { "name" => "mine" })?;
        ctx.give_client_to(ctx.id(), id)?;
        ctx.call(id, "save", ())
    }

    /// Asks Keepers `first..=last` for their counts: `on_keeper(id,
    /// count)` for each, as it answers.
    #[own_client]
    fn keepers_ask(&mut self, ctx: &mut Ctx, first: EntityId, last: EntityId) -> Result<(), Error> {
        for id in first..=last {
            ctx.call(id, "report", (ctx.id(),))?;
        }
        Ok(())
    }

    /// A Keeper's answer.
    fn keeper_said(&mut self, ctx: &mut Ctx, id: EntityId, count: u64) -> Result<(), Error> {
        ctx.call_client("on_keeper", (id, count))?;
        Ok(())
    }

    /// Touches Blob `id` (it changes its private state).
    #[own_client]
    fn touch_blob(&mut self, ctx: &mut Ctx, id: EntityId) -> Result<(), Error> {
        ctx.call(id, "touch", ())
    }

    /// Asks Blob `id` how often it was touched: `on_blob(id, touched)`.
    #[own_client]
    fn ask_blob(&mut self, ctx: &mut Ctx, id: EntityId) -> Result<(), Error> {
        ctx.call(id, "tell", (ctx.id(),))
    }

    /// A Blob's answer.
    fn blob_said(&mut self, ctx: &mut Ctx, id: EntityId, touched: u64) -> Result<(), Error> {
        ctx.call_client("on_blob", (id, touched))?;
        Ok(())
    }

    /// Answers `on_exists(id, found)`: whether `id` is loaded or saved.
    #[own_client]
    fn exists(&mut self, ctx: &mut Ctx, id: EntityId) -> Result<(), Error> {
        ctx.entity_exists(id, "exists_answer", id)
    }

    /// Storage's answer to `entity_exists`.
    fn exists_answer(
        &mut self,
        ctx: &mut Ctx,
        error: Option<String>,
        found: bool,
        id: EntityId,
    ) -> Result<(), Error> {
        if let Some(e) = error {
            return Err(Error::new(e));
        }
        ctx.call_client("on_exists", (id, found))?;
        Ok(())
    }

    /// Answers `on_vault_ids(ids)`: every saved Vault.
    #[own_client]
    fn vault_ids(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.saved_ids("Vault", "vault_ids_answer", ())
    }

    /// Storage's answer to `saved_ids`.
    fn vault_ids_answer(
        &mut self,
        ctx: &mut Ctx,
        error: Option<String>,
        ids: Vec<EntityId>,
        _context: (),
    ) -> Result<(), Error> {
        if let Some(e) = error {
            return Err(Error::new(e));
        }
        ctx.call_client("on_vault_ids", (ids,))?;
        Ok(())
    }

    /// Stores `value` under `key`; answers `on_kv_put(key)` once on disk.
    #[own_client]
    fn kv_put(
        &mut self,
        ctx: &mut Ctx,
        key: String,
        value: wyrm_sdk::rmpv::Value,
    ) -> Result<(), Error> {
        ctx.kv_put_then(&key, value, "kv_answer", ("put", key.as_str()))
    }

    /// Answers `on_kv_get(key, value)`.
    #[own_client]
    fn kv_get(&mut self, ctx: &mut Ctx, key: String) -> Result<(), Error> {
        ctx.kv_get(&key, "kv_answer", ("get", key.as_str()))
    }

    /// Stores `value` under `key` unless set; answers `on_kv_get(key, stored)`.
    #[own_client]
    fn kv_get_or_put(
        &mut self,
        ctx: &mut Ctx,
        key: String,
        value: wyrm_sdk::rmpv::Value,
    ) -> Result<(), Error> {
        ctx.kv_get_or_put(&key, value, "kv_answer", ("get", key.as_str()))
    }

    /// Answers `on_kv_range(prefix, pairs)`.
    #[own_client]
    fn kv_range(&mut self, ctx: &mut Ctx, prefix: String) -> Result<(), Error> {
        ctx.kv_range(&prefix, "kv_answer", ("range", prefix.as_str()))
    }

    /// Storage's answers to the key-value calls, passed on to the client.
    fn kv_answer(
        &mut self,
        ctx: &mut Ctx,
        error: Option<String>,
        value: wyrm_sdk::rmpv::Value,
        context: (String, String),
    ) -> Result<(), Error> {
        if let Some(e) = error {
            return Err(Error::new(e));
        }
        let (op, key) = context;
        ctx.call_client(&format!("on_kv_{op}"), (key, value))?;
        Ok(())
    }

    /// Records a stats event `name` with field `n`.
    #[own_client]
    fn stat(&mut self, ctx: &mut Ctx, name: String, n: i64) -> Result<(), Error> {
        ctx.emit_stat(&name, wyrm_sdk::attrs! { "n" => n })
    }

    /// Does `rounds` rounds of arithmetic and sends `on_burn(result)`: a
    /// call that needs a known amount of CPU time.
    #[own_client]
    fn burn(&mut self, ctx: &mut Ctx, rounds: u64) -> Result<(), Error> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..rounds {
            x = core::hint::black_box(x.rotate_left(7) ^ i).wrapping_mul(0x2545_f491_4f6c_dd1d);
        }
        ctx.call_client("on_burn", (x,))?;
        Ok(())
    }

    /// Creates a `Shuttle` that starts in the first of `planes`; answers
    /// `on_shuttle(id)`.
    #[own_client]
    fn make_shuttle(&mut self, ctx: &mut Ctx, planes: Vec<EntityId>) -> Result<(), Error> {
        let id = ctx.create_entity("Shuttle", ())?;
        ctx.call(id, "start", (planes,))?;
        ctx.call_client("on_shuttle", (id,))?;
        Ok(())
    }

    /// How many entities this game's instance holds private state for:
    /// `on_held(n)`.
    #[own_client]
    fn held(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.call_client("on_held", (wyrm_sdk::states_held(),))?;
        Ok(())
    }

    /// Sends `n` calls of stream 1 to `shuttle` from this entity's code,
    /// then asks it for its report.
    #[own_client]
    fn relay(&mut self, ctx: &mut Ctx, shuttle: EntityId, n: u64) -> Result<(), Error> {
        for seq in 0..n {
            ctx.call(shuttle, "take", (1, seq))?;
        }
        ctx.call(shuttle, "report", (ctx.id(),))
    }

    /// A shuttle's report, for the client: `on_shuttle_report(...)`.
    fn shuttle_said(
        &mut self,
        ctx: &mut Ctx,
        next: Vec<u64>,
        errors: u64,
        hops: u64,
        taken: u64,
    ) -> Result<(), Error> {
        ctx.call_client("on_shuttle_report", (next, errors, hops, taken))?;
        Ok(())
    }

    /// Calls `target.bounce(me, k)`; the target calls back `bounced(k)`,
    /// which tells this client `on_bounced(k)`: one call to an entity and
    /// one back, for latency between entities.
    #[own_client]
    fn ping(&mut self, ctx: &mut Ctx, target: EntityId, k: u64) -> Result<(), Error> {
        ctx.call(target, "bounce", (ctx.id(), k))
    }

    /// See `ping`.
    #[all_clients]
    fn bounce(&mut self, ctx: &mut Ctx, from: EntityId, k: u64) -> Result<(), Error> {
        ctx.call(from, "bounced", (k,))
    }

    /// See `ping`.
    fn bounced(&mut self, ctx: &mut Ctx, k: u64) -> Result<(), Error> {
        ctx.call_client("on_bounced", (k,))?;
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

    /// Panics with `message`, for what a client is told of a panic.
    #[own_client]
    fn panic_with(&mut self, message: String) {
        panic!("{message}");
    }
}

/// A saved entity for the storage tests: a value and a log, both persistent.
#[derive(Default, Serialize, Deserialize)]
pub struct Vault {}

#[wyrm_sdk::entity(attrs(value = "persistent", log = "persistent"))]
impl Vault {
    /// Sets the value, saves at once and tells `probe` once it is on disk.
    fn set(&mut self, ctx: &mut Ctx, value: i64, probe: EntityId) -> Result<(), Error> {
        ctx.set_attr("value", value)?;
        ctx.save_now("saved", (probe, value))
    }

    /// Sets the value and leaves saving to the host's interval (or shutdown).
    fn set_lazy(&mut self, ctx: &mut Ctx, value: i64) -> Result<(), Error> {
        ctx.set_attr("value", value)
    }

    /// Storage's answer to `save_now`.
    fn saved(
        &mut self,
        ctx: &mut Ctx,
        error: Option<String>,
        _id: EntityId,
        context: (EntityId, i64),
    ) -> Result<(), Error> {
        let (probe, value) = context;
        ctx.call(probe, "vault_saved", (ctx.id(), value, error))
    }

    /// Appends a line to the log.
    fn log(&mut self, ctx: &mut Ctx, line: String) -> Result<(), Error> {
        ctx.append_attr("log", line)
    }

    /// Tells `probe` the value and the log.
    fn report(&mut self, ctx: &mut Ctx, probe: EntityId) -> Result<(), Error> {
        let value: Option<i64> = ctx.get_attr("value")?;
        let log: Option<Vec<String>> = ctx.get_attr("log")?;
        ctx.call(
            probe,
            "vault_report",
            (ctx.id(), value, log.unwrap_or_default()),
        )
    }

    /// Leaves the world (saved as it goes, to be loaded again).
    fn unload(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.destroy_entity(ctx.id())
    }
}

/// A saved entity with a count in its private state: what comes back, and
/// how far, when the game that ran it dies (its count from the last
/// checkpoint, its client bound again).
#[derive(Default, Serialize, Deserialize)]
pub struct Keeper {
    count: u64,
}

#[wyrm_sdk::entity(attrs(name = "persistent|all_clients"))]
impl Keeper {
    /// Starts the count at `count`.
    fn set(&mut self, count: u64) {
        self.count = count;
    }

    /// Counts one more; its client gets `on_count(count)`.
    #[own_client]
    fn bump(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        self.count += 1;
        ctx.call_client("on_count", (self.count,))?;
        Ok(())
    }

    /// Saves it now; its client gets `on_keeper_saved(error)`.
    fn save(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.save_now("saved", ())
    }

    /// Storage's answer to `save_now`.
    fn saved(
        &mut self,
        ctx: &mut Ctx,
        error: Option<String>,
        _id: EntityId,
        _context: (),
    ) -> Result<(), Error> {
        ctx.call_client("on_keeper_saved", (error,))?;
        Ok(())
    }

    /// Tells `probe` its count.
    #[all_clients]
    fn report(&mut self, ctx: &mut Ctx, probe: EntityId) -> Result<(), Error> {
        ctx.call(probe, "keeper_said", (ctx.id(), self.count))
    }

    /// Bumps Keeper `to` in `delay_ms` (a timer: the message leaves when
    /// it fires, whatever else is happening then); tells `probe` its count
    /// once the timer is armed.
    #[all_clients]
    fn bump_later(
        &mut self,
        ctx: &mut Ctx,
        to: EntityId,
        delay_ms: u32,
        probe: EntityId,
    ) -> Result<(), Error> {
        ctx.set_timer(delay_ms, "bump_other", (to,))?;
        ctx.call(probe, "keeper_said", (ctx.id(), self.count))
    }

    /// Timer target of `bump_later`; says so in the log (at warn, which
    /// tests read).
    fn bump_other(&mut self, ctx: &mut Ctx, to: EntityId) -> Result<(), Error> {
        ctx.log(LogLevel::Warn, "bumping another keeper");
        ctx.call(to, "bump", ())
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

    /// Tells `probe` how often this blob was touched.
    fn tell(&mut self, ctx: &mut Ctx, probe: EntityId) -> Result<(), Error> {
        ctx.call(probe, "blob_said", (ctx.id(), self.touched))
    }
}

/// A space for the AOI tests: counts its ticks.
#[derive(Default, Serialize, Deserialize)]
pub struct Plane {
    ticks: u64,
    elapsed_ms: u64,
}

#[wyrm_sdk::entity(attrs(name = "all_clients"))]
impl Plane {
    fn on_tick(&mut self, dt_ms: u32) {
        self.ticks += 1;
        self.elapsed_ms += u64::from(dt_ms);
    }

    /// Tells `to`'s client `plane_ticks(ticks, elapsed_ms)`.
    fn report(&mut self, ctx: &mut Ctx, to: EntityId) -> Result<(), Error> {
        ctx.call_client_of(to, "plane_ticks", (self.ticks, self.elapsed_ms))?;
        Ok(())
    }
}

/// An entity in a `Plane`, moved by its client; logs its AOI events in
/// `log` as `[["enter" | "leave", other], ...]`.
#[derive(Default, Serialize, Deserialize)]
pub struct Walker {}

#[wyrm_sdk::entity(
    attrs(mood = "all_clients", secret = "own_client", log = "own_client"),
    aoi(radius = 100.0, hysteresis = 10.0)
)]
impl Walker {
    fn on_created(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.allow_client_moves(true)
    }

    fn on_client_disconnected(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.destroy_entity(ctx.id())
    }

    fn on_aoi_enter(&mut self, ctx: &mut Ctx, other: EntityId) -> Result<(), Error> {
        ctx.append_attr("log", ("enter", other))
    }

    fn on_aoi_leave(&mut self, ctx: &mut Ctx, other: EntityId) -> Result<(), Error> {
        ctx.append_attr("log", ("leave", other))
    }

    /// Answers `synced()` after `delay_ms` (a timer): everything the server
    /// sent this client before then has arrived when `synced` does.
    #[own_client]
    fn sync(&mut self, ctx: &mut Ctx, delay_ms: u32) -> Result<(), Error> {
        ctx.set_timer(delay_ms, "synced", ())?;
        Ok(())
    }

    fn synced(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.call_client("synced", ())?;
        Ok(())
    }

    #[own_client]
    fn set_mood(&mut self, ctx: &mut Ctx, mood: String) -> Result<(), Error> {
        ctx.set_attr("mood", mood)
    }

    #[own_client]
    fn set_secret(&mut self, ctx: &mut Ctx, secret: String) -> Result<(), Error> {
        ctx.set_attr("secret", secret)
    }

    /// Calls `heard(text)` on every client that sees this walker.
    #[own_client]
    fn shout(&mut self, ctx: &mut Ctx, text: String) -> Result<(), Error> {
        ctx.call_aoi_clients("heard", (text,))
    }

    /// Stops (or allows again) moves by the client.
    #[own_client]
    fn freeze(&mut self, ctx: &mut Ctx, frozen: bool) -> Result<(), Error> {
        ctx.allow_client_moves(!frozen)
    }

    /// Moves on the server's side.
    #[own_client]
    fn goto(&mut self, ctx: &mut Ctx, x: f32, y: f32) -> Result<(), Error> {
        ctx.set_position(Position { x, y, z: 0.0 }, 0.0)
    }

    /// Answers `at(x, y)`, or an error when in no space.
    #[own_client]
    fn where_am_i(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let p = ctx.placement().ok_or_else(|| Error::new("in no space"))?;
        ctx.call_client("at", (p.pos.x, p.pos.y))?;
        Ok(())
    }

    /// Answers `seen(ids)`: what this walker sees, sorted.
    #[own_client]
    fn seen(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let mut ids = ctx.aoi();
        ids.sort_unstable();
        ctx.call_client("seen", (ids,))?;
        Ok(())
    }

    /// Asks its plane for `plane_ticks(ticks, elapsed_ms)`.
    #[own_client]
    fn plane_ticks(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let space = ctx
            .placement()
            .ok_or_else(|| Error::new("in no space"))?
            .space;
        ctx.call(space, "report", (ctx.id(),))
    }

    /// Leaves the plane.
    #[own_client]
    fn leave(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.leave_space()
    }
}

/// One mover as its swarm keeps it.
#[derive(Default, Serialize, Deserialize)]
struct Flyer {
    id: EntityId,
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
}

/// A space whose logic moves every `Mover` in it on every tick, in one guest
/// call (the space-tick benchmark).
#[derive(Default, Serialize, Deserialize)]
pub struct Swarm {
    movers: Vec<Flyer>,
    size: f32,
    adopted: usize,
    rng: u64,
}

impl Swarm {
    fn random(&mut self) -> f32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[wyrm_sdk::entity]
impl Swarm {
    /// Fills the swarm with `n` movers at random places on a `size`-square
    /// field, flying at `speed` units/s; answers `swarm(id)` to `probe`.
    fn populate(
        &mut self,
        ctx: &mut Ctx,
        n: u32,
        size: f32,
        speed: f32,
        probe: EntityId,
    ) -> Result<(), Error> {
        self.size = size;
        self.rng = 0x2545_f491_4f6c_dd1d;
        for _ in 0..n {
            let id = ctx.create_entity("Mover", ())?;
            let (x, y) = (self.random() * size, self.random() * size);
            let angle = self.random() * std::f32::consts::TAU;
            ctx.enter_space_of(id, ctx.id(), Position { x, y, z: 0.0 }, angle)?;
            let (vx, vy) = (speed * angle.cos(), speed * angle.sin());
            self.movers.push(Flyer { id, x, y, vx, vy });
        }
        ctx.call_client_of(probe, "swarm", (ctx.id(),))?;
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Ctx, dt_ms: u32) -> Result<(), Error> {
        let dt = dt_ms.min(200) as f32 / 1000.0;
        let size = self.size;
        for m in &mut self.movers {
            m.x += m.vx * dt;
            m.y += m.vy * dt;
            if !(0.0..=size).contains(&m.x) {
                m.vx = -m.vx;
                m.x = m.x.clamp(0.0, size);
            }
            if !(0.0..=size).contains(&m.y) {
                m.vy = -m.vy;
                m.y = m.y.clamp(0.0, size);
            }
            let yaw = m.vy.atan2(m.vx);
            ctx.set_position_of(
                m.id,
                Position {
                    x: m.x,
                    y: m.y,
                    z: 0.0,
                },
                yaw,
            )?;
        }
        Ok(())
    }

    /// Hands `probe`'s client to the next mover nobody plays yet.
    fn adopt(&mut self, ctx: &mut Ctx, probe: EntityId) -> Result<(), Error> {
        let m = self
            .movers
            .get(self.adopted)
            .ok_or_else(|| Error::new("every mover has a client"))?
            .id;
        self.adopted += 1;
        ctx.give_client_to(probe, m)?;
        ctx.destroy_entity(probe)
    }
}

/// A swarm member: sees within 100 units.
#[derive(Default, Serialize, Deserialize)]
pub struct Mover {}

#[wyrm_sdk::entity(aoi(radius = 100.0, hysteresis = 10.0))]
impl Mover {}

/// A drifter as its churn keeps it.
#[derive(Default, Serialize, Deserialize)]
struct Drift {
    id: EntityId,
    x: f32,
    y: f32,
    z: f32,
    yaw: f32,
    inside: bool,
}

/// A space whose logic, while running, moves, turns, lifts, removes and
/// brings back its `Drifter`s at random on every tick (the position-sync
/// test); stopped, it can report where they all are.
#[derive(Default, Serialize, Deserialize)]
pub struct Churn {
    drifters: Vec<Drift>,
    size: f32,
    running: bool,
    rng: u64,
}

impl Churn {
    fn random(&mut self) -> f32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[wyrm_sdk::entity]
impl Churn {
    /// Fills the churn with `n` drifters; answers `churn(id)` to `probe`.
    fn populate(
        &mut self,
        ctx: &mut Ctx,
        n: u32,
        size: f32,
        seed: u64,
        probe: EntityId,
    ) -> Result<(), Error> {
        self.size = size;
        self.rng = seed | 1;
        for _ in 0..n {
            let id = ctx.create_entity("Drifter", ())?;
            let (x, y) = (self.random() * size, self.random() * size);
            ctx.enter_space_of(id, ctx.id(), Position { x, y, z: 0.0 }, 0.0)?;
            self.drifters.push(Drift {
                id,
                x,
                y,
                z: 0.0,
                yaw: 0.0,
                inside: true,
            });
        }
        ctx.call_client_of(probe, "churn", (ctx.id(),))?;
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Ctx, _dt_ms: u32) -> Result<(), Error> {
        if !self.running {
            return Ok(());
        }
        let space = ctx.id();
        let size = self.size;
        let mut drifters = std::mem::take(&mut self.drifters);
        for d in &mut drifters {
            let roll = self.random();
            if !d.inside {
                if roll < 0.2 {
                    d.inside = true;
                    let at = Position {
                        x: d.x,
                        y: d.y,
                        z: d.z,
                    };
                    ctx.enter_space_of(d.id, space, at, d.yaw)?;
                }
                continue;
            }
            if roll < 0.03 {
                d.inside = false;
                ctx.call(d.id, "go", ())?;
                continue;
            }
            if roll < 0.5 {
                // Small steps mostly, a jump across the field sometimes;
                // heights and headings of every sign.
                let jump = self.random() < 0.1;
                let reach = if jump { size } else { 8.0 };
                d.x = (d.x + (self.random() - 0.5) * reach).clamp(0.0, size);
                d.y = (d.y + (self.random() - 0.5) * reach).clamp(0.0, size);
                if self.random() < 0.3 {
                    d.z = (self.random() - 0.5) * 40.0;
                }
                d.yaw = (self.random() - 0.5) * 20.0;
                let at = Position {
                    x: d.x,
                    y: d.y,
                    z: d.z,
                };
                ctx.set_position_of(d.id, at, d.yaw)?;
            }
        }
        self.drifters = drifters;
        Ok(())
    }

    /// Starts (`true`) or stops the churn.
    #[all_clients]
    fn run(&mut self, running: bool) {
        self.running = running;
    }

    /// Sends `placements([[id, x, y, z, yaw], ...])` to `to`'s client: where
    /// every drifter in the churn is, as the host has it.
    #[all_clients]
    fn report(&mut self, ctx: &mut Ctx, to: EntityId) -> Result<(), Error> {
        let mut all = Vec::new();
        for d in &self.drifters {
            if let Some(p) = ctx.placement_of(d.id) {
                all.push((d.id, p.pos.x, p.pos.y, p.pos.z, p.yaw));
            }
        }
        ctx.call_client_of(to, "placements", (all,))?;
        Ok(())
    }
}

/// A churn member: seen, seeing nothing.
#[derive(Default, Serialize, Deserialize)]
pub struct Drifter {}

#[wyrm_sdk::entity]
impl Drifter {
    /// Leaves its space.
    fn go(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.leave_space()
    }
}

/// An entity that moves between two planes (usually on different games)
/// while calls stream in, and checks each stream arrives once and in
/// order: every tenth call it takes, it enters the other plane (unless it
/// is still on its way from its last move).
#[derive(Default, Serialize, Deserialize)]
pub struct Shuttle {
    planes: Vec<EntityId>,
    /// Per stream, the next sequence number expected.
    next: Vec<u64>,
    /// Calls that came out of order, twice or after a gap.
    errors: u64,
    hops: u64,
    /// The plane it last asked to leave: it asks again once it is
    /// somewhere else.
    left: Option<EntityId>,
}

#[wyrm_sdk::entity(attrs(taken = "none"))]
impl Shuttle {
    /// Starts in the first of `planes`.
    fn start(&mut self, ctx: &mut Ctx, planes: Vec<EntityId>) -> Result<(), Error> {
        let first = *planes
            .first()
            .ok_or_else(|| Error::new("a shuttle needs planes"))?;
        self.planes = planes;
        ctx.enter_space(
            first,
            Position {
                x: 0.0,
                y: 0.0,
                z: 0.0,
            },
            0.0,
        )
    }

    /// Takes call `seq` of stream `stream` (0 or 1).
    #[all_clients]
    fn take(&mut self, ctx: &mut Ctx, stream: usize, seq: u64) -> Result<(), Error> {
        if self.next.len() <= stream {
            self.next.resize(stream + 1, 0);
        }
        if self.next[stream] != seq {
            self.errors += 1;
        }
        self.next[stream] = seq + 1;
        let taken: u64 = ctx.get_attr("taken")?.unwrap_or(0);
        ctx.set_attr("taken", taken + 1)?;
        let here = ctx.placement().map(|p| p.space);
        if seq % 10 == 9 && self.planes.len() > 1 && here != self.left {
            let other = if here == Some(self.planes[0]) {
                self.planes[1]
            } else {
                self.planes[0]
            };
            let origin = Position {
                x: 0.0,
                y: 0.0,
                z: 0.0,
            };
            ctx.enter_space(other, origin, 0.0)?;
            self.left = here;
            self.hops += 1;
        }
        Ok(())
    }

    /// Tells `probe` what it took: `shuttle_said(next per stream, errors,
    /// hops, taken)`.
    #[all_clients]
    fn report(&mut self, ctx: &mut Ctx, probe: EntityId) -> Result<(), Error> {
        let taken: u64 = ctx.get_attr("taken")?.unwrap_or(0);
        ctx.call(
            probe,
            "shuttle_said",
            (self.next.clone(), self.errors, self.hops, taken),
        )
    }
}

wyrm_sdk::plugin!(
    name = "testbed",
    version = VERSION,
    entities = [Probe, Blob, Vault, Keeper, Plane, Walker, Swarm, Mover, Churn, Drifter, Shuttle]
);
