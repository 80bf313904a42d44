//! Every fuzz target, and what they share: reading structured choices out
//! of an input, and MessagePack values to seed with.

use crate::engine::{Runner, Target, Verdict};

mod external;
mod host;
mod kcp;
mod protocol;
mod sdk;
mod wire;

pub use external::setup_polyglot;

/// Runs a plain function per input, in this process.
pub struct FnRunner(pub fn(&[u8]) -> Verdict);

impl Runner for FnRunner {
    fn run(&mut self, input: &[u8]) -> Verdict {
        (self.0)(input)
    }
}

/// Every target, in the order `scripts/fuzz all` runs them.
pub fn all() -> &'static [Target] {
    static ALL: std::sync::OnceLock<Vec<Target>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut v = Vec::new();
        v.extend(protocol::targets());
        v.extend(wire::targets());
        v.extend(host::targets());
        v.extend(kcp::targets());
        v.extend(sdk::targets());
        v.extend(external::targets());
        v
    })
}

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    all().iter().find(|t| t.name == name)
}

/// Fails the input with a message when `cond` does not hold.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return $crate::engine::Verdict::Fail(format!($($msg)+));
        }
    };
}
pub(crate) use ensure;

/// Reads an input as a stream of choices (structure-aware targets): each
/// read takes what it needs, and the input running out reads as zeros.
pub struct Choices<'a> {
    data: &'a [u8],
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    /// A piece with a u16 length in front.
    pub fn piece(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.bytes(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Writes `piece` with the u16 length `Choices::piece` reads.
pub fn put_piece(out: &mut Vec<u8>, piece: &[u8]) {
    let n = piece.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&piece[..n]);
}

/// MessagePack values of every kind and size class, to seed decoders with.
pub fn sample_values() -> Vec<rmpv::Value> {
    use rmpv::Value as V;
    let long = "x".repeat(300);
    let mut out = vec![
        V::Nil,
        V::Boolean(true),
        V::Boolean(false),
        V::from(0),
        V::from(127),
        V::from(128),
        V::from(-1),
        V::from(-32),
        V::from(-33),
        V::from(65_535),
        V::from(65_536),
        V::from(u64::from(u32::MAX) + 1),
        V::from(u64::MAX),
        V::from(i64::MIN),
        V::from(9_007_199_254_740_993u64), // above JavaScript's safe integers
        V::F32(1.5),
        V::F64(-0.0),
        V::F64(f64::NAN),
        V::F64(1e300),
        V::from(""),
        V::from("hello"),
        V::from("héllo ✓ 🐉"),
        V::from(long.as_str()),
        V::Binary(vec![0, 1, 2, 255]),
        V::Binary(vec![7; 300]),
        V::Array(vec![]),
        V::Array(vec![V::from(1), V::from("two"), V::Nil]),
        V::Map(vec![]),
        V::Map(vec![
            (V::from("name"), V::from("ann")),
            (V::from("hp"), V::from(100)),
            (V::from("pos"), V::Array(vec![V::F64(1.0), V::F64(2.5)])),
        ]),
        // Keys that are not plain strings: JavaScript turns such maps into a
        // Map, Python into dict keys of other types.
        V::Map(vec![(V::from(1), V::from("one")), (V::from("7"), V::Nil)]),
        V::Map(vec![(
            V::Array(vec![V::from(1), V::from(2)]),
            V::from(true),
        )]),
        V::Map(vec![(V::from("__proto__"), V::from(1))]),
        V::Ext(5, vec![1, 2, 3, 4]),
        V::Ext(-1, vec![0; 12]),
        V::Ext(1, vec![9]),
        V::Array((0..20).map(V::from).collect()),
    ];
    let mut nested = V::from(1);
    for _ in 0..40 {
        nested = V::Array(vec![nested]);
    }
    out.push(nested);
    let mut nested = V::Nil;
    for i in 0..20 {
        nested = V::Map(vec![(V::from(format!("k{i}")), nested)]);
    }
    out.push(nested);
    out
}

/// `v` as MessagePack.
pub fn encode_value(v: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

/// Exactly one MessagePack value filling `bytes` (the host's and the
/// client's rule for values).
pub fn decode_value(bytes: &[u8]) -> Option<rmpv::Value> {
    let mut cur = bytes;
    let v = rmpv::decode::read_value(&mut cur).ok()?;
    cur.is_empty().then_some(v)
}

/// MessagePack tokens for dictionaries.
pub const MSGPACK_DICT: &[&[u8]] = &[
    &[0xc0],
    &[0xc2],
    &[0xc3],
    &[0x90],
    &[0x80],
    &[0xa0],
    &[0xdc, 0xff, 0xff],
    &[0xdd, 0xff, 0xff, 0xff, 0xff],
    &[0xde, 0x00, 0x10],
    &[0xdf, 0x7f, 0xff, 0xff, 0xff],
    &[0xdb, 0xff, 0xff, 0xff, 0xff],
    &[0xc6, 0x00, 0x01, 0x00, 0x00],
    &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
    &[0xca, 0x7f, 0xc0, 0, 0],
    &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
    &[0xd4, 0x01, 0x00],
    &[0xd8, 0xff],
    &[0xed, 0xa0, 0x80], // a UTF-16 surrogate in UTF-8 form
    &[0xc0, 0x80],       // an overlong NUL
    b"\xa9__proto__",
    b"\xa1\x37",
    b"\x91\x91\x91\x91\x91\x91\x91\x91",
    b"\x81\x81\x81\x81\x81\x81\x81\x81",
];
