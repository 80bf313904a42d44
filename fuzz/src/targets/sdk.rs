//! The Rust guest SDK (`wyrm-sdk`), natively: method arguments decoded by
//! what `#[entity]` generates, and private state through the state hook's
//! import (`decode_state` and `Entity::migrate`), as a plugin's exports
//! run them.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wyrm_sdk::bindings::exports::wyrm::game::entities::Guest as _;
use wyrm_sdk::codec::{decode_args, encode_args};
use wyrm_sdk::{Caller, CallerKind, EntityRef, EntityState, EntityTypeDef, PluginDef};

use super::{encode_value, ensure, sample_values, Choices, FnRunner, MSGPACK_DICT};
use crate::engine::{Target, Verdict};

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "rust_args",
            about: "method arguments through the Rust SDK's generated dispatch (serde into typed parameters)",
            corpus: "args",
            max_len: 2048,
            ci_iterations: 60_000,
            dict: MSGPACK_DICT,
            seeds: args_seeds,
            start: |_| Ok(Box::new(FnRunner(rust_args))),
            in_process: true,
        },
        Target {
            name: "rust_state",
            about: "entity state through the Rust SDK's import-entities (decode_state / migrate), then export and import again",
            corpus: "state",
            max_len: 2048,
            ci_iterations: 60_000,
            dict: MSGPACK_DICT,
            seeds: state_seeds,
            start: |_| Ok(Box::new(FnRunner(rust_state))),
            in_process: true,
        },
    ]
}

// ---- the plugin the targets call --------------------------------------

/// A shape, to have an enum in the state.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
enum Shape {
    #[default]
    Empty,
    Circle(f64),
    Rect {
        w: u32,
        h: u32,
    },
}

/// An entity whose state has a field of most kinds serde maps. Missing
/// fields keep their default, as the state format promises.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
struct Fields {
    n: u64,
    name: String,
    tags: Vec<String>,
    pos: Option<(f64, f64)>,
    scores: BTreeMap<String, i64>,
    shape: Shape,
    small: i8,
}

thread_local! {
    /// A property a method found broken (methods cannot fail the input
    /// any other way than their error, which is the caller's).
    static BROKEN: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn broken(why: String) {
    BROKEN.with(|b| *b.borrow_mut() = Some(why));
}

/// Arguments that decoded must encode, and decode and encode to the same
/// bytes (compared as bytes: a float may be NaN, not equal to itself).
fn check_args<A>(args: &A, count: usize)
where
    A: Serialize + for<'de> Deserialize<'de> + std::fmt::Debug,
{
    let once = match encode_args(args) {
        Ok(b) => b,
        Err(e) => {
            return broken(format!(
                "arguments that decoded do not encode ({e}): {args:?}"
            ))
        }
    };
    match decode_args::<A>(&once, count, "Fields", "again").map(|a| encode_args(&a)) {
        Ok(Ok(twice)) if twice == once => {}
        Ok(Ok(_)) => broken(format!("re-encoding arguments is not stable: {args:?}")),
        Ok(Err(e)) => broken(format!(
            "re-decoded arguments do not encode ({e}): {args:?}"
        )),
        Err(e) => broken(format!(
            "re-encoded arguments do not decode ({e}): {args:?}"
        )),
    }
}

#[wyrm_sdk::entity]
impl Fields {
    fn none(&mut self) {}

    fn one(&mut self, v: rmpv::Value) {
        // rmpv values hold NaN, which is not equal to itself: compare the
        // encodings.
        let once = encode_value(&v);
        match decode_args::<(rmpv::Value,)>(&encode_args(&(v,)).unwrap_or_default(), 1, "F", "o") {
            Ok((again,)) if encode_value(&again) == once => {}
            other => broken(format!("a re-encoded value decodes differently: {other:?}")),
        }
    }

    fn pair(&mut self, s: String, n: i64) {
        check_args(&(s.clone(), n), 2);
        self.name = s;
    }

    fn mixed(&mut self, b: bool, d: f64, tags: Vec<String>, w: u32, shape: Shape) {
        check_args(&(b, d, tags.clone(), w, shape.clone()), 5);
        self.tags = tags;
        self.shape = shape;
    }
}

/// An entity whose state is any one MessagePack value, kept as it came.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct Any(rmpv::Value);

impl Default for Any {
    fn default() -> Self {
        Any(rmpv::Value::Nil)
    }
}

#[wyrm_sdk::entity]
impl Any {}

static DEF: PluginDef = PluginDef {
    name: "fuzz",
    version: "1.0.0",
    types: &[EntityTypeDef::of::<Fields>(), EntityTypeDef::of::<Any>()],
};

struct FuzzPlugin;

impl wyrm_sdk::Plugin for FuzzPlugin {
    fn def() -> &'static PluginDef {
        &DEF
    }
}

type Exports = wyrm_sdk::__private::Guest<FuzzPlugin>;

const METHODS: [&str; 4] = ["none", "one", "pair", "mixed"];

// ---- arguments --------------------------------------------------------

/// The shared format of the args targets (every language's helper): a
/// byte picking the method (`none`, `one`, `pair`, `mixed`, modulo 4),
/// then the MessagePack arguments.
pub fn args_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let with = |m: u8, args: Vec<u8>| {
        let mut v = vec![m];
        v.extend(args);
        v
    };
    out.push(with(0, vec![]));
    out.push(with(0, vec![0x90]));
    out.push(with(0, vec![0xc0]));
    for v in sample_values() {
        out.push(with(1, encode_args(&(v,)).unwrap_or_default()));
    }
    out.push(with(2, encode_args(&("ann", -5i64)).unwrap_or_default()));
    out.push(with(2, encode_args(&("é", i64::MIN)).unwrap_or_default()));
    out.push(with(
        3,
        encode_args(&(
            true,
            2.5f64,
            vec!["a", "b"],
            7u32,
            Shape::Rect { w: 1, h: 2 },
        ))
        .unwrap_or_default(),
    ));
    out.push(with(
        3,
        encode_args(&(
            false,
            -0.0f64,
            Vec::<String>::new(),
            u32::MAX,
            Shape::Circle(1.0),
        ))
        .unwrap_or_default(),
    ));
    out
}

fn rust_args(data: &[u8]) -> Verdict {
    let mut c = Choices::new(data);
    let method = METHODS[usize::from(c.u8()) % METHODS.len()];
    let args = c.rest().to_vec();
    // Every helper takes no bytes, nil and an empty array as no arguments.
    let no_args = method == "none" && matches!(args.as_slice(), [] | [0xc0] | [0x90]);
    BROKEN.with(|b| b.borrow_mut().take());
    let result = Exports::call(
        EntityRef { id: 1, kind: 0 },
        method.to_owned(),
        args,
        Caller {
            kind: CallerKind::OwnClient,
            entity: Some(1),
        },
    );
    if let Some(why) = BROKEN.with(|b| b.borrow_mut().take()) {
        return Verdict::Fail(format!("Fields.{method}: {why}"));
    }
    match result {
        Ok(()) => Verdict::Accepted,
        Err(e) => {
            ensure!(
                !no_args,
                "a method without parameters refused no arguments: {e}"
            );
            ensure!(
                e.starts_with(&format!("bad arguments for Fields.{method}: ")),
                "Fields.{method} failed with an error that does not say the arguments were bad: {e}"
            );
            Verdict::Rejected
        }
    }
}

// ---- state ------------------------------------------------------------

/// The shared format of the state targets: a byte picking the type (0: a
/// type with named fields, 1: a type that keeps any value), then the
/// state's bytes.
pub fn state_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let fields = Fields {
        n: 3,
        name: "ann".into(),
        tags: vec!["a".into(), "é".into()],
        pos: Some((1.0, -2.5)),
        scores: [("x".to_owned(), -1)].into_iter().collect(),
        shape: Shape::Rect { w: 2, h: 3 },
        small: -7,
    };
    for f in [fields, Fields::default()] {
        let mut v = vec![0];
        v.extend(wyrm_sdk::encode_state(&f).unwrap_or_default());
        out.push(v);
    }
    // The same field names other languages' tests use.
    let mut v = vec![0];
    v.extend(encode_value(&rmpv::Value::Map(vec![
        (rmpv::Value::from("n"), rmpv::Value::from(5)),
        (rmpv::Value::from("name"), rmpv::Value::from("bob")),
        (rmpv::Value::from("unknown"), rmpv::Value::Nil),
    ])));
    out.push(v);
    for value in sample_values() {
        let mut v = vec![1];
        v.extend(encode_value(&value));
        out.push(v);
    }
    out
}

fn state(kind: u32, data: Vec<u8>) -> EntityState {
    EntityState {
        entity: EntityRef { id: 7, kind },
        type_name: ["Fields", "Any"][kind as usize].to_owned(),
        data,
    }
}

fn rust_state(data: &[u8]) -> Verdict {
    let mut c = Choices::new(data);
    let kind = u32::from(c.u8() % 2);
    let bytes = c.rest().to_vec();
    if let Err(e) = Exports::import_entities("1.0.0".into(), vec![state(kind, bytes)]) {
        ensure!(
            e.starts_with("cannot import "),
            "import failed with an error that does not say what: {e}"
        );
        return Verdict::Rejected;
    }
    // What was imported exports, and that imports and exports the same.
    let first = match Exports::export_entities(vec![7]) {
        Ok(mut s) if s.len() == 1 => s.remove(0).data,
        other => return Verdict::Fail(format!("an imported state does not export: {other:?}")),
    };
    if let Err(e) = Exports::import_entities("1.0.0".into(), vec![state(kind, first.clone())]) {
        return Verdict::Fail(format!("an exported state does not import again: {e}"));
    }
    let second = match Exports::export_entities(vec![7]) {
        Ok(mut s) if s.len() == 1 => s.remove(0).data,
        other => return Verdict::Fail(format!("a re-imported state does not export: {other:?}")),
    };
    ensure!(
        first == second,
        "export, import, export is not stable: {first:02x?} then {second:02x?}"
    );
    Verdict::Accepted
}
