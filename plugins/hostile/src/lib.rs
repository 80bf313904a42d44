//! A hostile plugin: every method of `Imp` does one thing a plugin should
//! not get away with, when its client asks — allocate past the memory cap,
//! reach for entities that do not exist or belong to another plugin, push
//! gigantic values through an import, call itself in a cycle, export
//! enormous or malformed state, arm timers by the hundred thousand, flood
//! its client. `tests/tests/hostile.rs` runs it beside a well-behaved plugin
//! and checks that each act is contained: the act fails (or the instance is
//! replaced), every other plugin and client carries on, and the host's
//! memory stays bounded.
//!
//! It is also the server's door: `Imp` is the boot entity of the test
//! server, and `enter_chatroom` hands a well-behaved client on to the
//! chatroom plugin (an `Account` this plugin creates for it).

// Natively (clippy, unit tests) there are no component exports, so the
// export machinery below is never used.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

use std::cell::RefCell;

use wyrm_sdk::bindings::exports::wyrm::game::entities;
use wyrm_sdk::prelude::*;
use wyrm_sdk::rmpv::Value;
use wyrm_sdk::{EntityRef, EntityState, Locality, PathSegment, Tag};

/// One MiB.
const MIB: usize = 1 << 20;

/// A client's entity, and the hostile acts.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Imp {
    /// Calls of `tock` since this instance took the entity over.
    tocks: u64,
}

/// `bytes` as one MessagePack `bin` value, built in one allocation (a
/// guest near its memory cap cannot afford the copies an encoder makes).
fn bin(bytes: usize, fill: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes + 5);
    v.push(0xc6);
    v.extend_from_slice(&(bytes as u32).to_be_bytes());
    v.resize(bytes + 5, fill);
    v
}

/// A state every type of this plugin reads back (`{"pad": bin}`: fields
/// it does not know are skipped, those it lacks take their defaults),
/// `bytes` long: enormous, yet importable.
fn padded_state(bytes: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes + 16);
    v.push(0x81);
    v.push(0xa3);
    v.extend_from_slice(b"pad");
    v.push(0xc6);
    v.extend_from_slice(&(bytes as u32).to_be_bytes());
    v.resize(v.len() + bytes, 7);
    v
}

/// RPC arguments `[bin]` of `bytes` bytes.
fn bin_args(bytes: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes + 6);
    v.push(0x91);
    v.push(0xc6);
    v.extend_from_slice(&(bytes as u32).to_be_bytes());
    v.resize(bytes + 6, 7);
    v
}

fn key(k: &str) -> PathSegment {
    PathSegment::Key(k.to_owned())
}

/// What the host answered, in words, for `on_poked`.
fn said<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => format!("refused: {e}"),
    }
}

#[wyrm_sdk::entity(attrs(mark = "all_clients", note = "own_client"))]
impl Imp {
    /// The well-behaved way on: creates a chatroom `Account` (a type of
    /// another plugin), hands this client to it and goes away.
    #[own_client]
    fn enter_chatroom(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let account = ctx.create_entity("Account", ())?;
        ctx.give_client_to(ctx.id(), account)?;
        ctx.destroy_entity(ctx.id())
    }

    /// Answers `on_pong()`: proves the plugin serves.
    #[own_client]
    fn ping(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.call_client("on_pong", ())?;
        Ok(())
    }

    /// Allocates and touches `mib` MiB; answers `on_hogged(mib)` if it got
    /// that far.
    #[own_client]
    fn hog(&mut self, ctx: &mut Ctx, mib: u32) -> Result<(), Error> {
        let block = vec![1u8; mib as usize * MIB];
        let touched = block.iter().step_by(4096).filter(|&&b| b == 1).count();
        ctx.call_client("on_hogged", (core::hint::black_box(touched) / 256,))?;
        Ok(())
    }

    /// Turns every import that takes an entity id against `target` (with
    /// `space` for the space imports) and answers `on_poked(results)`: one
    /// `(import, what the host said)` pair each. Imports without an answer
    /// are made all the same; the test checks their effect (none).
    #[own_client]
    fn poke(&mut self, ctx: &mut Ctx, target: EntityId, space: EntityId) -> Result<(), Error> {
        use wyrm_sdk::raw;
        use wyrm_sdk::raw_storage as storage;
        let me = ctx.id();
        let here = Position {
            x: 1.0,
            y: 1.0,
            z: 0.0,
        };
        let name = vec![key("name")];
        let value = wyrm_sdk::codec::encode("mallory")?;
        let mut r: Vec<(&str, String)> = vec![
            ("entity-type", format!("{:?}", raw::entity_type(target))),
            ("attr-get", said(raw::attr_get(target, &name))),
            ("attr-set", said(raw::attr_set(target, &name, &value))),
            ("attr-append", said(raw::attr_append(target, &name, &value))),
            ("attr-delete", said(raw::attr_delete(target, &name))),
            (
                "set-client-tag",
                said(raw::set_client_tag(target, "room", Some("hijacked"))),
            ),
            (
                "give-client-to (take)",
                said(raw::give_client_to(target, me)),
            ),
            (
                "give-client-to (give)",
                said(raw::give_client_to(me, target)),
            ),
            (
                "enter-space",
                said(raw::enter_space(target, space, here, 0.0)),
            ),
            ("set-position", said(raw::set_position(target, here, 0.0))),
            ("leave-space", said(raw::leave_space(target))),
            (
                "allow-client-moves",
                said(raw::allow_client_moves(target, true)),
            ),
            (
                "placement-of",
                format!("{:?}", raw::placement_of(target).map(|p| p.space)),
            ),
            ("aoi-of", format!("{:?}", raw::aoi_of(target))),
            (
                "set-timer",
                said(raw::set_timer(target, 1, true, "verified", &[0x90])),
            ),
            (
                "call-client",
                format!(
                    "{}",
                    raw::call_client(
                        target,
                        "on_chat",
                        &[0x93, 0xa1, b'x', 0xa1, b'y', 0xa1, b'z']
                    )
                ),
            ),
        ];
        // No answer from these: the test looks for their effects.
        raw::call_aoi_clients(
            target,
            "on_chat",
            &[0x93, 0xa1, b'x', 0xa1, b'y', 0xa1, b'z'],
        );
        raw::hash_password(target, "pw", "verified", &[0xc0]);
        raw::verify_password(target, "pw", "nohash", "verified", &[0xc0]);
        let reply = storage::ReplyTo {
            entity: target,
            method: "verified".into(),
            context: vec![0xc0],
        };
        storage::entity_exists(target, &reply);
        storage::kv_get("hostile", &reply);
        storage::save_entity(target, Some(&reply));
        storage::load_entity(target, Locality::Anywhere, &reply);
        r.push(("destroy-entity", said(raw::destroy_entity(target))));
        ctx.call_client("on_poked", (r,))?;
        Ok(())
    }

    /// Calls `method` on entity `target` with `args` (call-entity), as this
    /// entity: a server-only method of another plugin, say.
    #[own_client]
    fn call_as_server(
        &mut self,
        ctx: &mut Ctx,
        target: EntityId,
        method: String,
        args: Value,
    ) -> Result<(), Error> {
        wyrm_sdk::raw::call_entity(target, &method, &wyrm_sdk::codec::encode(&args)?);
        ctx.call_client("on_called", ())?;
        Ok(())
    }

    /// Cancels every timer id in `from..to`; answers `on_cancelled(n)`
    /// with how many the host said it cancelled.
    #[own_client]
    fn cancel_timers(&mut self, ctx: &mut Ctx, from: u64, to: u64) -> Result<(), Error> {
        let n = (from..to).filter(|&t| ctx.cancel_timer(t)).count();
        ctx.call_client("on_cancelled", (n,))?;
        Ok(())
    }

    /// Passes `mib` MiB (a value, a string or a name, as the import takes)
    /// through `import`; answers `on_giant(import, result)` if the call
    /// survives.
    #[own_client]
    fn giant(&mut self, ctx: &mut Ctx, import: String, mib: u32) -> Result<(), Error> {
        use wyrm_sdk::raw;
        use wyrm_sdk::raw_storage as storage;
        let n = mib as usize * MIB;
        let me = ctx.id();
        let text = || "a".repeat(n);
        let reply = |method: String| storage::ReplyTo {
            entity: me,
            method,
            context: vec![0xc0],
        };
        let result: String = match import.as_str() {
            "call-client" => raw::call_client(me, "on_giant_frame", &bin_args(n)).to_string(),
            "call-client-method" => raw::call_client(me, &text(), &[0x90]).to_string(),
            "broadcast" => {
                raw::broadcast("on_giant_frame", &bin_args(n));
                "sent".into()
            }
            "call-filtered-clients" => {
                let tags = [Tag {
                    key: "k".into(),
                    value: text(),
                }];
                raw::call_filtered_clients(&tags, "on_giant_frame", &[0x90]);
                "sent".into()
            }
            "call-aoi-clients" => {
                raw::call_aoi_clients(me, "on_giant_frame", &bin_args(n));
                "sent".into()
            }
            "call-entity" => {
                raw::call_entity(me, "ping", &bin_args(n));
                "sent".into()
            }
            "call-entity-method" => {
                raw::call_entity(me, &text(), &[0x90]);
                "sent".into()
            }
            "attr-set" => said(raw::attr_set(me, &[key("note")], &bin(n, 7))),
            "attr-append" => said(raw::attr_append(me, &[key("note")], &bin(n, 7))),
            "attr-path" => said(raw::attr_set(me, &[key("note"), key(&text())], &[0xc0])),
            "create-entity" => {
                let mut attrs = vec![0x81, 0xa4];
                attrs.extend_from_slice(b"note");
                attrs.extend_from_slice(&bin(n, 7));
                said(raw::create_entity("Imp", &attrs, Locality::Here))
            }
            "create-entity-type" => said(raw::create_entity(&text(), &[], Locality::Here)),
            "create-space-kind" => said(raw::create_space("Echo", &text(), &[], Locality::Here)),
            "set-timer" => said(raw::set_timer(me, 60_000, false, "tock", &bin_args(n))),
            "set-timer-method" => said(raw::set_timer(me, 60_000, false, &text(), &[0x90])),
            "set-client-tag" => said(raw::set_client_tag(me, "k", Some(&text()))),
            "give-client-to" => said(raw::give_client_to(me, me)),
            "log" => {
                wyrm_sdk::log(LogLevel::Warn, &text());
                "logged".into()
            }
            "hash-password" => {
                raw::hash_password(me, &text(), "tock", &[0xc0]);
                "sent".into()
            }
            "verify-password" => {
                raw::verify_password(me, "pw", &text(), "tock", &[0xc0]);
                "sent".into()
            }
            "password-context" => {
                raw::hash_password(me, "pw", "tock", &bin(n, 7));
                "sent".into()
            }
            "kv-put" => {
                storage::kv_put("hostile/giant", &bin(n, 7), None);
                "sent".into()
            }
            "kv-key" => {
                storage::kv_get(&text(), &reply("tock".into()));
                "sent".into()
            }
            "reply-method" => {
                storage::kv_get("hostile/giant", &reply(text()));
                "sent".into()
            }
            "emit-stat" => {
                storage::emit_stat("hostile", &bin(n, 7));
                "sent".into()
            }
            other => return Err(format!("no import {other:?} here").into()),
        };
        ctx.call_client("on_giant", (import, result))?;
        Ok(())
    }

    /// Passes a list of `n` items through `import` whose strings all
    /// point at one `mib`-MiB buffer: the canonical ABI lets a list alias
    /// memory, so the host would copy `n × mib` MiB. Answers
    /// `on_alias(import)` if the call survives.
    #[own_client]
    fn alias(&mut self, ctx: &mut Ctx, import: String, n: u32, mib: u32) -> Result<(), Error> {
        let text = "a".repeat(mib as usize * MIB);
        match import.as_str() {
            "call-filtered-clients" => {
                let tag = [
                    text.as_ptr() as u32,
                    text.len() as u32,
                    text.as_ptr() as u32,
                    text.len() as u32,
                ];
                let tags = vec![tag; n as usize];
                let method = "on_alias";
                // SAFETY: the import's core signature, as the canonical
                // ABI lays out `(list<tag>, string, list<u8>)`; every
                // pointer is into live memory of this instance.
                unsafe {
                    raw_abi::call_filtered_clients(
                        tags.as_ptr().cast(),
                        tags.len(),
                        method.as_ptr(),
                        method.len(),
                        [0x90u8].as_ptr(),
                        1,
                    )
                };
            }
            "attr-path" => {
                // A path-segment is a variant: a tag byte, then the key's
                // pointer and length. Every key is the same huge string.
                let seg = [0u32, text.as_ptr() as u32, text.len() as u32];
                let path = vec![seg; n as usize];
                let mut ret = [0u32; 3];
                // SAFETY: as above, for `attr-set(u64, list<path-segment>,
                // list<u8>) -> result<_, string>` with its return area.
                unsafe {
                    raw_abi::attr_set(
                        ctx.id() as i64,
                        path.as_ptr().cast(),
                        path.len(),
                        [0xc0u8].as_ptr(),
                        1,
                        ret.as_mut_ptr().cast(),
                    )
                };
            }
            other => return Err(format!("no aliasing import {other:?} here").into()),
        }
        ctx.call_client("on_alias", (import,))?;
        Ok(())
    }

    /// Starts two `Echo`s calling each other forever.
    #[own_client]
    fn cycle(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let a = ctx.create_entity("Echo", ())?;
        let b = ctx.create_entity("Echo", ())?;
        ctx.call(a, "ping", (b, 0u64, 0u32))?;
        ctx.call_client("on_cycling", ())?;
        Ok(())
    }

    /// Starts two `Echo`s calling each other forever, each call spending
    /// `ms` milliseconds of the game thread.
    #[own_client]
    fn slow_cycle(&mut self, ctx: &mut Ctx, ms: u32) -> Result<(), Error> {
        let a = ctx.create_entity("Echo", ())?;
        let b = ctx.create_entity("Echo", ())?;
        ctx.call(a, "ping", (b, 0u64, ms))?;
        ctx.call_client("on_cycling", ())?;
        Ok(())
    }

    /// Starts an `Echo` that calls itself forever.
    #[own_client]
    fn self_loop(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let a = ctx.create_entity("Echo", ())?;
        ctx.call(a, "again", (0u64,))?;
        ctx.call_client("on_cycling", ())?;
        Ok(())
    }

    /// Starts an `Echo` each of whose calls makes two more: the queue of
    /// work doubles every generation.
    #[own_client]
    fn fan_out(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        let a = ctx.create_entity("Echo", ())?;
        ctx.call(a, "split", (0u64,))?;
        ctx.call_client("on_cycling", ())?;
        Ok(())
    }

    /// Arms `n` timers on this entity calling `tock` every `delay_ms`
    /// (once, unless `repeat`), each with `arg_bytes` of arguments; stops
    /// at the first refusal. Answers `on_timers(armed, refusal)`.
    #[own_client]
    fn timers(
        &mut self,
        ctx: &mut Ctx,
        n: u32,
        delay_ms: u32,
        repeat: bool,
        arg_bytes: u32,
    ) -> Result<(), Error> {
        let args = bin_args(arg_bytes as usize);
        let mut armed = 0u32;
        let mut refusal = None;
        for _ in 0..n {
            match wyrm_sdk::raw::set_timer(ctx.id(), delay_ms, repeat, "tock", &args) {
                Ok(_) => armed += 1,
                Err(e) => {
                    refusal = Some(e);
                    break;
                }
            }
        }
        ctx.call_client("on_timers", (armed, refusal))?;
        Ok(())
    }

    /// What the timers call (with the padding they were armed with).
    fn tock(&mut self, _padding: Value) {
        self.tocks += 1;
    }

    /// Answers `on_tocks(n)`.
    #[own_client]
    fn tocks(&mut self, ctx: &mut Ctx) -> Result<(), Error> {
        ctx.call_client("on_tocks", (self.tocks,))?;
        Ok(())
    }

    /// Sends its client `n` frames of `bytes` bytes each in this one call;
    /// answers `on_flooded(n)` if the call survives.
    #[own_client]
    fn flood(&mut self, ctx: &mut Ctx, n: u32, bytes: u32) -> Result<(), Error> {
        let args = bin_args(bytes as usize);
        for _ in 0..n {
            wyrm_sdk::raw::call_client(ctx.id(), "on_flood", &args);
        }
        ctx.call_client("on_flooded", (n,))?;
        Ok(())
    }

    /// Floods every `every_ms`: `n` frames of `bytes` bytes a time, from a
    /// repeating timer.
    #[own_client]
    fn flood_steadily(
        &mut self,
        ctx: &mut Ctx,
        every_ms: u32,
        n: u32,
        bytes: u32,
    ) -> Result<(), Error> {
        ctx.set_repeating_timer(every_ms, "flood_tick", (n, bytes))?;
        ctx.call_client("on_flooding", ())?;
        Ok(())
    }

    /// The steady flood's timer.
    fn flood_tick(&mut self, ctx: &mut Ctx, n: u32, bytes: u32) {
        let args = bin_args(bytes as usize);
        for _ in 0..n {
            wyrm_sdk::raw::call_client(ctx.id(), "on_flood", &args);
        }
    }

    /// Broadcasts `n` frames of `bytes` bytes in this one call.
    #[own_client]
    fn broadcast_flood(&mut self, ctx: &mut Ctx, n: u32, bytes: u32) -> Result<(), Error> {
        let args = bin_args(bytes as usize);
        for _ in 0..n {
            wyrm_sdk::raw::broadcast("on_flood", &args);
        }
        ctx.call_client("on_flooded", (n,))?;
        Ok(())
    }

    /// Writes `n` log lines of `bytes` bytes each, through the `log` import
    /// and (every other line) stderr.
    #[own_client]
    fn spam_log(&mut self, ctx: &mut Ctx, n: u32, bytes: u32) -> Result<(), Error> {
        let line = "s".repeat(bytes as usize);
        for i in 0..n {
            if i % 2 == 0 {
                wyrm_sdk::log(LogLevel::Warn, &line);
            } else {
                eprintln!("{line}");
            }
        }
        ctx.call_client("on_spammed", (n,))?;
        Ok(())
    }

    /// Queues `n` key-value writes of `kib` KiB each, each asking for a
    /// reply (which waits, with the write's bytes, until this call ends);
    /// answers `on_stored(n)` if the call survives.
    #[own_client]
    fn storm(&mut self, ctx: &mut Ctx, n: u32, kib: u32) -> Result<(), Error> {
        let value = bin(kib as usize * 1024, 7);
        let reply = wyrm_sdk::raw_storage::ReplyTo {
            entity: ctx.id(),
            method: "tock".into(),
            context: vec![0xc0],
        };
        for i in 0..n {
            let key = format!("hostile/{}", i % 16);
            wyrm_sdk::raw_storage::kv_put(&key, &value, Some(&reply));
        }
        ctx.call_client("on_stored", (n,))?;
        Ok(())
    }

    /// Creates `n` `Echo`s (entities with state to export); answers
    /// `on_spawned(n)`.
    #[own_client]
    fn spawn(&mut self, ctx: &mut Ctx, n: u32) -> Result<(), Error> {
        for _ in 0..n {
            let e = ctx.create_entity("Echo", ())?;
            ctx.call(e, "wake", ())?;
        }
        ctx.call_client("on_spawned", (n,))?;
        Ok(())
    }

    /// Sets how `export-entities` misbehaves from now on (see
    /// [`ExportMode`]); answers `on_mode()`.
    #[own_client]
    fn export_mode(&mut self, ctx: &mut Ctx, mode: String, arg: u64) -> Result<(), Error> {
        let m = match mode.as_str() {
            "normal" => ExportMode::Normal,
            "enormous" => ExportMode::Enormous(arg as usize * MIB),
            "foreign" => ExportMode::Foreign(arg),
            "duplicate" => ExportMode::Duplicate,
            "garbage" => ExportMode::Garbage,
            "wrong-type" => ExportMode::WrongType,
            "refuse" => ExportMode::Refuse,
            "trap" => ExportMode::Trap,
            other => return Err(format!("no export mode {other:?}").into()),
        };
        MODE.with(|cell| *cell.borrow_mut() = m);
        ctx.call_client("on_mode", ())?;
        Ok(())
    }
}

/// An entity without a client: the far end of cycles, and state to export.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Echo {
    hops: u64,
}

#[wyrm_sdk::entity]
impl Echo {
    /// Calls `peer.ping(self)` back, after spending `ms` milliseconds.
    fn ping(&mut self, ctx: &mut Ctx, peer: EntityId, n: u64, ms: u32) -> Result<(), Error> {
        self.hops = n;
        if ms > 0 {
            let until = ctx.now_ms() + u64::from(ms);
            while ctx.now_ms() < until {
                core::hint::spin_loop();
            }
        }
        ctx.call(peer, "ping", (ctx.id(), n + 1, ms))
    }

    /// Calls itself again.
    fn again(&mut self, ctx: &mut Ctx, n: u64) -> Result<(), Error> {
        self.hops = n;
        ctx.call(ctx.id(), "again", (n + 1,))
    }

    /// Calls itself twice.
    fn split(&mut self, ctx: &mut Ctx, n: u64) -> Result<(), Error> {
        self.hops = n;
        ctx.call(ctx.id(), "split", (n + 1,))?;
        ctx.call(ctx.id(), "split", (n + 1,))
    }

    /// Gives the entity some private state.
    fn wake(&mut self) {
        self.hops = 1;
    }
}

/// How `export-entities` misbehaves.
#[derive(Clone, Copy, Default)]
enum ExportMode {
    /// As the SDK does.
    #[default]
    Normal,
    /// The first state of every answer is this many bytes (the state
    /// itself is small: the bytes are made at export time, and the SDK
    /// reads them back).
    Enormous(usize),
    /// An extra state for this id, which was not asked for.
    Foreign(u64),
    /// Every state twice.
    Duplicate,
    /// States the SDK cannot read back.
    Garbage,
    /// Every state under another type's name.
    WrongType,
    /// An error instead of states.
    Refuse,
    /// A panic.
    Trap,
}

thread_local! {
    static MODE: RefCell<ExportMode> = const { RefCell::new(ExportMode::Normal) };
}

static PLUGIN: wyrm_sdk::PluginDef = wyrm_sdk::PluginDef {
    name: "hostile",
    version: env!("CARGO_PKG_VERSION"),
    types: &[
        wyrm_sdk::EntityTypeDef::of::<Imp>(),
        wyrm_sdk::EntityTypeDef::of::<Echo>(),
    ],
};

struct Def;

impl wyrm_sdk::Plugin for Def {
    fn def() -> &'static wyrm_sdk::PluginDef {
        &PLUGIN
    }
}

/// The SDK's exports, but for `export-entities`, which misbehaves as the
/// mode says. (`plugin!` would export the SDK's own; this is that, by
/// hand, with one function changed.)
type Sdk = wyrm_sdk::__private::Guest<Def>;

struct Hostile;

impl entities::Guest for Hostile {
    fn init() -> wyrm_sdk::bindings::wyrm::game::types::PluginInfo {
        <Sdk as entities::Guest>::init()
    }
    fn created(entity: EntityRef) -> Result<(), String> {
        <Sdk as entities::Guest>::created(entity)
    }
    fn destroyed(entity: EntityRef) {
        <Sdk as entities::Guest>::destroyed(entity)
    }
    fn client_connected(entity: EntityRef) {
        <Sdk as entities::Guest>::client_connected(entity)
    }
    fn client_disconnected(entity: EntityRef) {
        <Sdk as entities::Guest>::client_disconnected(entity)
    }
    fn call(
        entity: EntityRef,
        method: String,
        args: Vec<u8>,
        caller: wyrm_sdk::Caller,
    ) -> Result<(), String> {
        <Sdk as entities::Guest>::call(entity, method, args, caller)
    }
    fn tick(space: EntityRef, dt_ms: u32) {
        <Sdk as entities::Guest>::tick(space, dt_ms)
    }
    fn aoi_events(events: Vec<wyrm_sdk::bindings::wyrm::game::types::AoiEvent>) {
        <Sdk as entities::Guest>::aoi_events(events)
    }
    fn export_entities(ids: Vec<EntityId>) -> Result<Vec<EntityState>, String> {
        let mode = MODE.with(|cell| *cell.borrow());
        let mut states = <Sdk as entities::Guest>::export_entities(ids)?;
        match mode {
            ExportMode::Normal => {}
            ExportMode::Enormous(bytes) => {
                if let Some(first) = states.first_mut() {
                    first.data = padded_state(bytes);
                }
            }
            ExportMode::Foreign(id) => {
                if let Some(first) = states.first() {
                    let mut extra = first.clone();
                    extra.entity.id = id;
                    states.push(extra);
                }
            }
            ExportMode::Duplicate => {
                let again = states.clone();
                states.extend(again);
            }
            ExportMode::Garbage => {
                for s in &mut states {
                    s.data = vec![0xc1, 0xc1, 0xc1];
                }
            }
            ExportMode::WrongType => {
                for s in &mut states {
                    s.type_name = if s.type_name == "Imp" { "Echo" } else { "Imp" }.into();
                }
            }
            ExportMode::Refuse => return Err("this plugin will not export its state".into()),
            ExportMode::Trap => panic!("export-entities panics on purpose"),
        }
        Ok(states)
    }
    fn forget_entities(ids: Vec<EntityId>) {
        <Sdk as entities::Guest>::forget_entities(ids)
    }

    fn import_entities(from_version: String, states: Vec<EntityState>) -> Result<(), String> {
        <Sdk as entities::Guest>::import_entities(from_version, states)
    }
}

#[cfg(target_family = "wasm")]
wyrm_sdk::bindings::export!(Hostile with_types_in wyrm_sdk::bindings);

/// Host imports declared by hand at the canonical ABI's core level, so
/// their lists can alias memory as no generated binding would.
#[cfg(target_family = "wasm")]
mod raw_abi {
    #[link(wasm_import_module = "wyrm:game/host@0.3.0")]
    extern "C" {
        #[link_name = "call-filtered-clients"]
        pub fn call_filtered_clients(
            filter: *const u8,
            filter_len: usize,
            method: *const u8,
            method_len: usize,
            args: *const u8,
            args_len: usize,
        );
        #[link_name = "attr-set"]
        pub fn attr_set(
            id: i64,
            path: *const u8,
            path_len: usize,
            value: *const u8,
            value_len: usize,
            ret: *mut u8,
        );
    }
}

/// Natively (unit tests, clippy) there is no host to call.
#[cfg(not(target_family = "wasm"))]
mod raw_abi {
    pub unsafe fn call_filtered_clients(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
    ) {
    }
    pub unsafe fn attr_set(_: i64, _: *const u8, _: usize, _: *const u8, _: usize, _: *mut u8) {}
}
