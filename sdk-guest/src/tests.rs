//! Unit tests for everything that runs without a host: argument and state
//! codecs, paths, the `#[entity]` expansion and the private-state table.
//! (Host imports are stubs that panic off wasm, so nothing here calls one.)

use serde::{Deserialize, Serialize};

use crate::codec::{array_len, decode, decode_args, decode_no_args, encode, encode_args};
use crate::prelude::*;
use crate::runtime;
use crate::{AttrFlags, EntityRef, EntityState, EntityTypeDef, Exposure, PluginDef};

#[derive(Default, Serialize, Deserialize, Debug, PartialEq)]
struct Counter {
    n: u64,
    log: Vec<String>,
    created: bool,
}

#[crate::entity(attrs(total = "all_clients", secret = "persistent|own_client", plain = ""))]
impl Counter {
    #[own_client]
    fn add(&mut self, ctx: &mut Ctx, by: u64) -> Result<(), String> {
        if by == 0 {
            return Err("zero".into());
        }
        self.n += by;
        self.log.push(format!("add {by} on {}", ctx.id()));
        Ok(())
    }

    #[all_clients]
    fn greet(&mut self, who: &str, times: u8) {
        self.log.push(format!("{who} x{times}"));
    }

    fn reset(&mut self) {
        self.n = 0;
    }

    fn value(&mut self, v: rmpv::Value) -> Result<(), Error> {
        self.log.push(v.to_string());
        Ok(())
    }

    fn caller_kind(&self, ctx: &mut Ctx) -> Result<(), String> {
        match ctx.caller().kind {
            CallerKind::OwnClient => Ok(()),
            _ => Err("not own client".into()),
        }
    }

    // Compiled out, and so is everything `#[entity]` generates for it.
    #[cfg(any())]
    #[own_client]
    fn ghost(&mut self) {
        this_does_not_exist();
    }

    #[helper]
    fn helper(&self) -> u64 {
        self.n
    }

    fn on_created(&mut self) {
        self.created = true;
    }
}

#[derive(Default, Serialize, Deserialize, Debug, PartialEq)]
struct V2 {
    count: u64,
}

#[crate::entity(name = "Renamed")]
impl V2 {
    /// Old versions stored `Counter`-shaped state.
    fn migrate(from_version: &str, data: &[u8]) -> Result<Self, String> {
        if from_version.starts_with("1.") {
            let old: Counter = decode(data).map_err(String::from)?;
            Ok(V2 { count: old.n })
        } else {
            decode(data).map_err(String::from)
        }
    }

    fn on_destroyed(&mut self, ctx: &mut Ctx) -> Result<(), String> {
        if ctx.id() == 13 {
            Err("unlucky".into())
        } else {
            Ok(())
        }
    }
}

static DEF: PluginDef = PluginDef {
    name: "test",
    version: "2.0.0",
    types: &[EntityTypeDef::of::<Counter>(), EntityTypeDef::of::<V2>()],
};

// `plugin!` must expand (and export) without complaint.
crate::plugin!(name = "test", entities = [Counter, V2]);

fn server() -> Caller {
    Caller {
        kind: CallerKind::Server,
        entity: None,
    }
}

fn own() -> Caller {
    Caller {
        kind: CallerKind::OwnClient,
        entity: Some(1),
    }
}

fn er(id: u64, kind: u32) -> EntityRef {
    EntityRef { id, kind }
}

fn counter_state(id: u64) -> Counter {
    let out = runtime::export_entities(&DEF, &[id], |_| None).unwrap();
    decode(&out[0].data).unwrap()
}

#[test]
fn encode_args_always_makes_an_array() {
    assert_eq!(encode_args(&("hi",)).unwrap(), [0x91, 0xa2, b'h', b'i']);
    assert_eq!(encode_args(&()).unwrap(), [0x90]);
    assert_eq!(encode_args(&(1u8, true)).unwrap(), [0x92, 0x01, 0xc3]);
    assert_eq!(encode_args(&5u8).unwrap(), [0x91, 0x05]);
    assert_eq!(encode_args(&vec![1u8, 2]).unwrap(), [0x92, 0x01, 0x02]);
    // Structs inside arguments keep their field names.
    #[derive(Serialize)]
    struct P {
        x: u8,
    }
    assert_eq!(
        encode_args(&(P { x: 1 },)).unwrap(),
        [0x91, 0x81, 0xa1, b'x', 0x01]
    );
}

#[test]
fn array_len_reads_every_header() {
    assert_eq!(array_len(&[0x90]), Some(0));
    assert_eq!(array_len(&[0x9f]), Some(15));
    assert_eq!(array_len(&[0xdc, 0x01, 0x00]), Some(256));
    assert_eq!(array_len(&[0xdd, 0, 1, 0, 0]), Some(65536));
    assert_eq!(array_len(&[0xdc, 0x01]), None);
    assert_eq!(array_len(&[0xc0]), None);
    assert_eq!(array_len(&[]), None);
}

#[test]
fn decode_args_checks_count_and_types() {
    let ok: (String, u32) = decode_args(&encode_args(&("a", 7)).unwrap(), 2, "T", "m").unwrap();
    assert_eq!(ok, ("a".to_owned(), 7));

    let e = decode_args::<(String,)>(&encode_args(&("a", 7)).unwrap(), 1, "T", "m").unwrap_err();
    assert_eq!(e, "bad arguments for T.m: expected 1 argument(s), got 2");

    let e = decode_args::<(u32,)>(&encode_args(&("a",)).unwrap(), 1, "T", "m").unwrap_err();
    assert!(e.starts_with("bad arguments for T.m: "), "{e}");

    let e = decode_args::<(u32,)>(&[0x07], 1, "T", "m").unwrap_err();
    assert!(e.contains("expected a MessagePack array"), "{e}");

    // Truncated input is an error, not a panic.
    let e = decode_args::<(String,)>(&[0x91, 0xa5, b'a'], 1, "T", "m").unwrap_err();
    assert!(e.starts_with("bad arguments for T.m: "), "{e}");

    assert!(decode_no_args(&[], "T", "m").is_ok());
    assert!(decode_no_args(&[0xc0], "T", "m").is_ok());
    assert!(decode_no_args(&[0x90], "T", "m").is_ok());
    assert_eq!(
        decode_no_args(&[0x91, 0x01], "T", "m").unwrap_err(),
        "bad arguments for T.m: expected no arguments"
    );
}

#[test]
fn paths() {
    let room = String::from("lobby");
    let p = path!["members", &room, 3u32];
    assert_eq!(p.display(), "members.lobby[3]");
    assert_eq!(Path::from("total").display(), "total");
    assert_eq!(path!["a"].then("b").then(0u32).display(), "a.b[0]");
    assert!(path![].segments().is_empty());
}

#[test]
fn attrs_serialise_as_a_named_map() {
    #[derive(Serialize)]
    struct Pos {
        x: i32,
    }
    let a = attrs! { "name" => "bob", "pos" => Pos { x: -1 }, "name" => "ann" };
    let bytes = encode(&a).unwrap();
    let v: rmpv::Value = decode(&bytes).unwrap();
    assert_eq!(v.to_string(), r#"{"pos": {"x": -1}, "name": "ann"}"#);
    assert!(Attrs::new().is_empty());
}

#[test]
fn entity_declarations() {
    assert_eq!(<Counter as Entity>::TYPE_NAME, "Counter");
    assert_eq!(<V2 as Entity>::TYPE_NAME, "Renamed");
    let attrs: Vec<_> = Counter::ATTRS.iter().map(|a| (a.name, a.flags)).collect();
    assert_eq!(
        attrs,
        [
            ("total", AttrFlags::ALL_CLIENTS),
            ("secret", AttrFlags::PERSISTENT | AttrFlags::OWN_CLIENT),
            ("plain", AttrFlags::empty()),
        ]
    );
    let methods: Vec<_> = Counter::METHODS
        .iter()
        .map(|m| (m.name, m.exposure))
        .collect();
    assert_eq!(
        methods,
        [
            ("add", Exposure::OwnClient),
            ("greet", Exposure::AllClients),
            ("reset", Exposure::Server),
            ("value", Exposure::Server),
            ("caller_kind", Exposure::Server),
        ]
    );
    assert!(V2::METHODS.is_empty());
    assert_eq!(Counter::default().helper(), 0);
}

#[test]
fn init_describes_the_plugin() {
    let info = runtime::init(&DEF);
    assert_eq!(info.name, "test");
    assert_eq!(info.version, "2.0.0");
    let names: Vec<_> = info.entity_types.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Counter", "Renamed"]);
    assert_eq!(info.entity_types[0].attrs.len(), 3);
    assert_eq!(info.entity_types[0].methods[1].name, "greet");
}

#[test]
fn calls_dispatch_and_state_appears_lazily() {
    // No `created` first: the state is made on the first call, from `kind`.
    runtime::call(
        &DEF,
        er(7, 0),
        "add",
        &encode_args(&(5u64,)).unwrap(),
        own(),
    )
    .unwrap();
    runtime::call(
        &DEF,
        er(7, 0),
        "add",
        &encode_args(&(2u64,)).unwrap(),
        own(),
    )
    .unwrap();
    runtime::call(
        &DEF,
        er(7, 0),
        "greet",
        &encode_args(&("ann", 2)).unwrap(),
        own(),
    )
    .unwrap();
    runtime::call(
        &DEF,
        er(7, 0),
        "value",
        &encode_args(&(rmpv::Value::from(3),)).unwrap(),
        server(),
    )
    .unwrap();
    let s = counter_state(7);
    assert_eq!(s.n, 7);
    assert_eq!(s.log, ["add 5 on 7", "add 2 on 7", "ann x2", "3"]);
    assert!(!s.created);

    runtime::call(&DEF, er(7, 0), "reset", &[], server()).unwrap();
    assert_eq!(counter_state(7).n, 0);

    // Errors: from the method, bad args, unknown method, wrong caller seen.
    let e = runtime::call(
        &DEF,
        er(7, 0),
        "add",
        &encode_args(&(0u64,)).unwrap(),
        own(),
    );
    assert_eq!(e.unwrap_err(), "zero");
    let e = runtime::call(&DEF, er(7, 0), "add", &encode_args(&("x",)).unwrap(), own());
    assert!(e
        .unwrap_err()
        .starts_with("bad arguments for Counter.add: "));
    let e = runtime::call(&DEF, er(7, 0), "nope", &[], own());
    assert_eq!(e.unwrap_err(), "unknown method Counter.nope");
    let e = runtime::call(&DEF, er(7, 0), "helper", &[], own());
    assert_eq!(e.unwrap_err(), "unknown method Counter.helper");
    assert!(runtime::call(&DEF, er(7, 0), "caller_kind", &[], own()).is_ok());
    assert!(runtime::call(&DEF, er(7, 0), "caller_kind", &[], server()).is_err());

    // A kind the plugin does not have is an error, not a panic.
    let e = runtime::call(&DEF, er(8, 9), "add", &[], own()).unwrap_err();
    assert!(e.contains("unknown entity kind 9"), "{e}");
}

#[test]
fn hooks_run_and_destroy_drops_state() {
    runtime::created(&DEF, er(1, 0)).unwrap();
    assert!(counter_state(1).created);
    assert_eq!(runtime::table_len(), 1);
    runtime::destroyed(&DEF, er(1, 0)).unwrap();
    assert_eq!(runtime::table_len(), 0);
    // The hook's error is reported, the state dropped all the same.
    runtime::created(&DEF, er(13, 1)).unwrap();
    assert_eq!(runtime::destroyed(&DEF, er(13, 1)).unwrap_err(), "unlucky");
    assert_eq!(runtime::table_len(), 0);
}

#[test]
fn export_import_round_trip() {
    runtime::call(
        &DEF,
        er(1, 0),
        "add",
        &encode_args(&(3u64,)).unwrap(),
        own(),
    )
    .unwrap();
    runtime::created(&DEF, er(2, 1)).unwrap();
    // 3 is unknown to the table: exported fresh if the host knows its type,
    // left out if not.
    let out = runtime::export_entities(&DEF, &[1, 2, 3, 4], |id| {
        (id == 3).then(|| "Renamed".to_owned())
    })
    .unwrap();
    let summary: Vec<_> = out
        .iter()
        .map(|s| {
            (
                s.entity.id,
                s.entity.kind,
                s.type_name.as_str(),
                s.data.is_empty(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, 0, "Counter", false),
            (2, 1, "Renamed", false),
            (3, 1, "Renamed", true)
        ]
    );
    // Named fields, so other languages can read the state.
    let v: rmpv::Value = decode(&out[0].data).unwrap();
    assert_eq!(v["n"].as_u64(), Some(3));

    runtime::destroyed(&DEF, er(1, 0)).unwrap();
    runtime::destroyed(&DEF, er(2, 1)).unwrap();
    assert_eq!(runtime::table_len(), 0);

    runtime::import_entities(&DEF, "2.0.0", &out).unwrap();
    assert_eq!(runtime::table_len(), 3);
    assert_eq!(counter_state(1).n, 3);
    let again = runtime::export_entities(&DEF, &[1, 2, 3], |_| None).unwrap();
    assert_eq!(again[0].data, out[0].data);
    assert_eq!(decode::<V2>(&again[2].data).unwrap(), V2::default());
}

#[test]
fn import_migrates_and_is_all_or_nothing() {
    let old = Counter {
        n: 41,
        ..Counter::default()
    };
    let state = |id, type_name: &str, data: Vec<u8>| EntityState {
        entity: er(id, 0),
        type_name: type_name.to_owned(),
        data,
    };
    // A type is found by name, whatever `kind` says.
    runtime::import_entities(&DEF, "1.4.0", &[state(5, "Renamed", encode(&old).unwrap())]).unwrap();
    let out = runtime::export_entities(&DEF, &[5], |_| None).unwrap();
    assert_eq!(out[0].entity.kind, 1);
    assert_eq!(decode::<V2>(&out[0].data).unwrap(), V2 { count: 41 });

    // One bad entity refuses the whole import.
    let e = runtime::import_entities(
        &DEF,
        "2.0.0",
        &[
            state(6, "Counter", Vec::new()),
            state(7, "Counter", vec![0xc1]),
        ],
    )
    .unwrap_err();
    assert!(
        e.starts_with("cannot import Counter 7 from version 2.0.0: "),
        "{e}"
    );
    let e = runtime::import_entities(&DEF, "2.0.0", &[state(8, "Gone", Vec::new())]).unwrap_err();
    assert!(e.contains("has no entity type Gone"), "{e}");
    assert_eq!(runtime::table_len(), 1);
}
