//! Compact position sync: the `Positions` frame of protocol 3.
//!
//! Positions travel quantized: x, y and z as whole multiples of a space's
//! [`Resolution`] (a power of two, so the values a client rebuilds are
//! exactly the server's), the heading in [`YAW_STEPS`] steps per turn. Each
//! connection numbers the entities it is sent positions of with small
//! *slots*; an entry binds a slot to an entity once (with its absolute
//! place), and after that carries only the fields that changed, as deltas
//! against what this connection was last sent. An entity that did not move
//! is not in the frame at all. Entries are in ascending slot order, so a
//! slot costs a few bits of the entry's first byte.
//!
//! The server keeps, per connection, what it last sent in each slot and
//! writes frames with [`PositionsWriter`]; a client keeps a
//! [`PositionTable`] and applies frames to it. Layout: `docs/protocol.md`,
//! §4 (`0x88 Positions`).

use rustc_hash::FxHashMap;

use crate::codec::DecodeError;
use crate::frame::{EntityPosition, Position};

/// Frame type byte of `Positions`.
pub const POSITIONS_TYPE: u8 = 0x88;

/// Heading steps per full turn: a heading is sent as `0..YAW_STEPS`.
pub const YAW_STEPS: u32 = 1024;

/// The largest slot number a client accepts (a table of at most this many
/// entries); a server never needs more slots than entities a client sees.
pub const MAX_SLOT: u32 = 1 << 20;

const NEW: u8 = 0x80;
const SKIP_SHIFT: u32 = 4;
const SKIP_ESCAPE: u32 = 7;
const FIELD_X: u8 = 1;
const FIELD_Y: u8 = 2;
const FIELD_Z: u8 = 4;
const FIELD_YAW: u8 = 8;

/// How finely a space's positions are sent: coordinates are whole
/// multiples of `2^exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resolution {
    exp: i8,
}

impl Resolution {
    /// The finest resolution, 2^-16.
    pub const MIN_EXP: i8 = -16;
    /// The coarsest resolution, 2^8.
    pub const MAX_EXP: i8 = 8;

    /// A resolution of `2^exp`, for `exp` in `MIN_EXP..=MAX_EXP`.
    pub fn from_exp(exp: i8) -> Option<Self> {
        (Self::MIN_EXP..=Self::MAX_EXP)
            .contains(&exp)
            .then_some(Self { exp })
    }

    /// A resolution of `step` units, which must be a power of two between
    /// 2^-16 and 2^8 (say `0.03125`, `0.25` or `1`).
    pub fn from_step(step: f64) -> Result<Self, String> {
        let exp = step.log2().round();
        let valid = step.is_finite()
            && step > 0.0
            && exp >= f64::from(Self::MIN_EXP)
            && exp <= f64::from(Self::MAX_EXP)
            && (exp.exp2() - step).abs() <= f64::EPSILON * step;
        if !valid {
            let near = if step.is_finite() && step > 0.0 {
                let e = exp.clamp(f64::from(Self::MIN_EXP), f64::from(Self::MAX_EXP));
                format!(" (the nearest is {})", e.exp2())
            } else {
                String::new()
            };
            return Err(format!(
                "a position resolution must be a power of two from 2^-16 to 2^8, such as 0.03125, 0.25 or 1; {step} is not{near}"
            ));
        }
        Ok(Self { exp: exp as i8 })
    }

    /// The exponent: values are multiples of `2^exp`.
    pub fn exp(self) -> i8 {
        self.exp
    }

    /// The step, in world units.
    pub fn step(self) -> f64 {
        f64::from(self.exp).exp2()
    }

    /// `v` as a whole number of steps, rounded to the nearest (and held to
    /// the `i32` range).
    pub fn quantize(self, v: f32) -> i32 {
        // `as` saturates; NaN (never stored by the host) would give 0.
        (f64::from(v) * f64::from(-self.exp).exp2()).round() as i32
    }

    /// The value `q` steps stand for. Exact when it fits an f32 mantissa.
    pub fn value(self, q: i32) -> f32 {
        (f64::from(q) * self.step()) as f32
    }
}

impl Default for Resolution {
    /// 1/32 of a unit: sub-pixel for a game in pixels, 3 cm for one in
    /// metres, and a walking step per tick in one or two bytes.
    fn default() -> Self {
        Self { exp: -5 }
    }
}

/// A heading in radians as `0..YAW_STEPS` (any finite angle; it wraps).
pub fn quantize_yaw(yaw: f32) -> u16 {
    let turns = f64::from(yaw) / std::f64::consts::TAU;
    let q = (turns * f64::from(YAW_STEPS)).round() as i64;
    q.rem_euclid(i64::from(YAW_STEPS)) as u16
}

/// The heading, in radians in `[0, 2π)`, that `q` steps stand for.
pub fn yaw_value(q: u16) -> f32 {
    (f64::from(q) * std::f64::consts::TAU / f64::from(YAW_STEPS)) as f32
}

/// A place as it is sent: whole steps of a [`Resolution`], and a heading
/// in [`YAW_STEPS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct QuantPos {
    pub x: i32,
    pub y: i32,
    pub z: i32,
    pub yaw: u16,
}

impl QuantPos {
    /// `pos` and `yaw` quantized.
    pub fn new(res: Resolution, pos: Position, yaw: f32) -> Self {
        Self {
            x: res.quantize(pos.x),
            y: res.quantize(pos.y),
            z: res.quantize(pos.z),
            yaw: quantize_yaw(yaw),
        }
    }

    /// The position this stands for.
    pub fn position(self, res: Resolution) -> Position {
        Position {
            x: res.value(self.x),
            y: res.value(self.y),
            z: res.value(self.z),
        }
    }
}

/// Writes one `Positions` frame, entry by entry, for one connection. Slots
/// must be given in ascending order.
#[derive(Debug)]
pub struct PositionsWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    next_slot: u32,
}

impl<'a> PositionsWriter<'a> {
    /// Starts a frame (type byte and resolution) at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>, res: Resolution) -> Self {
        let start = out.len();
        out.extend_from_slice(&[POSITIONS_TYPE, res.exp() as u8]);
        Self {
            out,
            start,
            next_slot: 0,
        }
    }

    /// Binds `slot` to `entity` at `q` (absolute).
    pub fn bind(&mut self, slot: u32, entity: u64, q: QuantPos) {
        let mask = mask_of(q.x != 0, q.y != 0, q.z != 0, q.yaw != 0);
        self.head(slot, NEW | mask);
        put_varint(self.out, entity);
        for v in [q.x, q.y, q.z] {
            if v != 0 {
                put_signed(self.out, i64::from(v));
            }
        }
        if q.yaw != 0 {
            put_varint(self.out, u64::from(q.yaw));
        }
    }

    /// Moves `slot` from `from` (what the connection was last sent) to
    /// `to`; writes nothing and returns false if they are equal.
    #[inline]
    pub fn update(&mut self, slot: u32, from: QuantPos, to: QuantPos) -> bool {
        if from == to {
            return false;
        }
        let mask = mask_of(
            from.x != to.x,
            from.y != to.y,
            from.z != to.z,
            from.yaw != to.yaw,
        );
        // Room for the longest entry, so the pushes below never grow.
        self.out.reserve(ENTRY_MAX);
        self.head(slot, mask);
        for (a, b) in [(from.x, to.x), (from.y, to.y), (from.z, to.z)] {
            if a != b {
                put_signed(self.out, i64::from(b) - i64::from(a));
            }
        }
        if from.yaw != to.yaw {
            put_signed(self.out, yaw_delta(from.yaw, to.yaw));
        }
        true
    }

    /// Whether no entry was written.
    pub fn is_empty(&self) -> bool {
        self.out.len() == self.start + 2
    }

    /// Bytes of the frame so far.
    pub fn len(&self) -> usize {
        self.out.len() - self.start
    }

    /// Takes the frame back out if it holds no entry.
    pub fn finish(self) -> bool {
        if self.is_empty() {
            self.out.truncate(self.start);
            false
        } else {
            true
        }
    }

    #[inline]
    fn head(&mut self, slot: u32, flags: u8) {
        debug_assert!(slot >= self.next_slot, "slots must ascend");
        let skip = slot.saturating_sub(self.next_slot);
        self.next_slot = slot + 1;
        if skip < SKIP_ESCAPE {
            self.out.push(flags | ((skip as u8) << SKIP_SHIFT));
        } else {
            self.out.push(flags | ((SKIP_ESCAPE as u8) << SKIP_SHIFT));
            put_varint(self.out, u64::from(skip - SKIP_ESCAPE));
        }
    }
}

/// The longest entry: a head, a skip and an entity, and four fields.
const ENTRY_MAX: usize = 1 + 10 + 10 + 4 * 10;

fn mask_of(x: bool, y: bool, z: bool, yaw: bool) -> u8 {
    u8::from(x) * FIELD_X
        + u8::from(y) * FIELD_Y
        + u8::from(z) * FIELD_Z
        + u8::from(yaw) * FIELD_YAW
}

/// The shortest signed turn from `from` to `to`, in `-512..512`.
fn yaw_delta(from: u16, to: u16) -> i64 {
    let steps = i64::from(YAW_STEPS);
    let d = (i64::from(to) - i64::from(from)).rem_euclid(steps);
    if d >= steps / 2 {
        d - steps
    } else {
        d
    }
}

/// A client's side of position sync: which entity each slot holds and the
/// place last received for it.
#[derive(Debug, Default, Clone)]
pub struct PositionTable {
    slots: Vec<Slot>,
    by_entity: FxHashMap<u64, u32>,
    resolution: Option<Resolution>,
}

/// One slot, packed in 24 bytes: a client applies frames to every slot of
/// every entity it sees, 20 times a second, so the table is kept small.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    entity: u64,
    x: i32,
    y: i32,
    z: i32,
    yaw: u16,
    bound: bool,
}

impl Slot {
    fn q(&self) -> QuantPos {
        QuantPos {
            x: self.x,
            y: self.y,
            z: self.z,
            yaw: self.yaw,
        }
    }
}

impl PositionTable {
    /// An empty table (a new connection's).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the body of one `Positions` frame (what follows its type
    /// byte) and appends the entities it placed, with their new places, to
    /// `out`. On an error the table may hold part of the frame.
    pub fn apply(&mut self, body: &[u8], out: &mut Vec<EntityPosition>) -> Result<(), DecodeError> {
        let (&exp, mut cur) = body
            .split_first()
            .ok_or(DecodeError::Truncated("resolution"))?;
        let res = Resolution::from_exp(exp as i8).ok_or(DecodeError::Invalid("resolution"))?;
        self.resolution = Some(res);
        let mut next_slot: u64 = 0;
        while let Some((&head, rest)) = cur.split_first() {
            cur = rest;
            let mut skip = u64::from((head >> SKIP_SHIFT) & 7);
            if skip == u64::from(SKIP_ESCAPE) {
                skip = skip.saturating_add(get_varint(&mut cur, "slot skip")?);
            }
            let slot = next_slot.saturating_add(skip);
            if slot > u64::from(MAX_SLOT) {
                return Err(DecodeError::Invalid("slot number"));
            }
            next_slot = slot + 1;
            let slot = slot as usize;
            let (entity, q) =
                if head & NEW != 0 {
                    let entity = get_varint(&mut cur, "entity")?;
                    let mut q = QuantPos::default();
                    if head & FIELD_X != 0 {
                        q.x = get_i32(&mut cur, "x")?;
                    }
                    if head & FIELD_Y != 0 {
                        q.y = get_i32(&mut cur, "y")?;
                    }
                    if head & FIELD_Z != 0 {
                        q.z = get_i32(&mut cur, "z")?;
                    }
                    if head & FIELD_YAW != 0 {
                        let yaw = get_varint(&mut cur, "yaw")?;
                        q.yaw = u16::try_from(yaw)
                            .ok()
                            .filter(|&y| u32::from(y) < YAW_STEPS)
                            .ok_or(DecodeError::Invalid("yaw"))?;
                    }
                    self.bind(slot, entity, q);
                    (entity, q)
                } else {
                    let s = self.slots.get_mut(slot).filter(|s| s.bound).ok_or(
                        DecodeError::Invalid("an update for a slot that holds no entity"),
                    )?;
                    if head & FIELD_X != 0 {
                        s.x = add_delta(s.x, get_signed(&mut cur, "x")?)?;
                    }
                    if head & FIELD_Y != 0 {
                        s.y = add_delta(s.y, get_signed(&mut cur, "y")?)?;
                    }
                    if head & FIELD_Z != 0 {
                        s.z = add_delta(s.z, get_signed(&mut cur, "z")?)?;
                    }
                    if head & FIELD_YAW != 0 {
                        let d = get_signed(&mut cur, "yaw")?;
                        if d.unsigned_abs() > u64::from(YAW_STEPS / 2) {
                            return Err(DecodeError::Invalid("yaw"));
                        }
                        s.yaw = (i64::from(s.yaw) + d).rem_euclid(i64::from(YAW_STEPS)) as u16;
                    }
                    (s.entity, s.q())
                };
            out.push(EntityPosition {
                entity,
                pos: q.position(res),
                yaw: yaw_value(q.yaw),
            });
        }
        Ok(())
    }

    /// Forgets `entity` (it was destroyed in this client's view): its slot
    /// is free for the server to bind again.
    pub fn forget(&mut self, entity: u64) {
        if let Some(slot) = self.by_entity.remove(&entity) {
            if let Some(s) = self.slots.get_mut(slot as usize) {
                s.bound = false;
            }
        }
    }

    /// The place last received for `entity`, quantized.
    pub fn get(&self, entity: u64) -> Option<QuantPos> {
        let slot = *self.by_entity.get(&entity)?;
        self.slots
            .get(slot as usize)
            .filter(|s| s.bound)
            .map(Slot::q)
    }

    /// Where `entity` is, as last received.
    pub fn position(&self, entity: u64) -> Option<EntityPosition> {
        let (q, res) = (self.get(entity)?, self.resolution?);
        Some(EntityPosition {
            entity,
            pos: q.position(res),
            yaw: yaw_value(q.yaw),
        })
    }

    /// The resolution of the last frame applied: the grid the places of
    /// the client's space are rounded to.
    pub fn resolution(&self) -> Option<Resolution> {
        self.resolution
    }

    /// Entities with a place in the table.
    pub fn len(&self) -> usize {
        self.by_entity.len()
    }

    /// Whether no entity has a place.
    pub fn is_empty(&self) -> bool {
        self.by_entity.is_empty()
    }

    fn bind(&mut self, slot: usize, entity: u64, q: QuantPos) {
        if self.slots.len() <= slot {
            self.slots.resize(slot + 1, Slot::default());
        }
        let old = std::mem::replace(
            &mut self.slots[slot],
            Slot {
                entity,
                x: q.x,
                y: q.y,
                z: q.z,
                yaw: q.yaw,
                bound: true,
            },
        );
        if old.bound && old.entity != entity {
            self.by_entity.remove(&old.entity);
        }
        if let Some(prev) = self.by_entity.insert(entity, slot as u32) {
            if prev as usize != slot {
                self.slots[prev as usize].bound = false;
            }
        }
    }
}

/// `v` moved by `d`, which a frame may make any i64: checked, since a sum
/// past i64 would panic (debug) or wrap into a valid-looking place.
fn add_delta(v: i32, d: i64) -> Result<i32, DecodeError> {
    i64::from(v)
        .checked_add(d)
        .and_then(|sum| i32::try_from(sum).ok())
        .ok_or(DecodeError::Invalid("position delta"))
}

fn get_i32(cur: &mut &[u8], what: &'static str) -> Result<i32, DecodeError> {
    i32::try_from(get_signed(cur, what)?).map_err(|_| DecodeError::Invalid(what))
}

/// Appends `v` as a LEB128 varint (7 bits a byte, low first).
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded as a varint (small magnitudes, small bytes).
#[inline]
pub fn put_signed(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

#[inline]
fn get_varint(cur: &mut &[u8], what: &'static str) -> Result<u64, DecodeError> {
    // One byte: the common case, a small delta.
    if let Some((&b, rest)) = cur.split_first() {
        if b < 0x80 {
            *cur = rest;
            return Ok(u64::from(b));
        }
    }
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = cur.split_first().ok_or(DecodeError::Truncated(what))?;
        *cur = rest;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return Err(DecodeError::Invalid(what));
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Invalid(what))
}

#[inline]
fn get_signed(cur: &mut &[u8], what: &'static str) -> Result<i64, DecodeError> {
    let z = get_varint(cur, what)?;
    Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(x: i32, y: i32, z: i32, yaw: u16) -> QuantPos {
        QuantPos { x, y, z, yaw }
    }

    #[test]
    fn resolutions_are_powers_of_two() {
        assert_eq!(Resolution::from_step(0.03125).map(Resolution::exp), Ok(-5));
        assert_eq!(Resolution::from_step(1.0).map(Resolution::exp), Ok(0));
        assert_eq!(Resolution::from_step(256.0).map(Resolution::exp), Ok(8));
        for bad in [0.01, 0.0, -1.0, f64::NAN, 512.0, 1e-9, 3.0] {
            let e = Resolution::from_step(bad).unwrap_err();
            assert!(e.contains("power of two"), "{bad}: {e}");
        }
        assert!(Resolution::from_step(0.01)
            .unwrap_err()
            .contains("0.0078125"));
        let r = Resolution::default();
        assert_eq!(r.quantize(1.0), 32);
        assert_eq!(r.quantize(-0.015625), -1); // ties away from zero
        assert_eq!(r.value(r.quantize(123.46875)), 123.46875);
        assert_eq!(r.quantize(f32::MAX), i32::MAX);
    }

    #[test]
    fn yaw_wraps_and_takes_the_short_way() {
        assert_eq!(quantize_yaw(0.0), 0);
        assert_eq!(quantize_yaw(std::f32::consts::PI), 512);
        assert_eq!(quantize_yaw(-std::f32::consts::FRAC_PI_2), 768);
        assert_eq!(quantize_yaw(std::f32::consts::TAU * 3.0), 0);
        assert_eq!(yaw_delta(1020, 3), 7);
        assert_eq!(yaw_delta(3, 1020), -7);
        assert_eq!(yaw_delta(0, 512), -512);
    }

    #[test]
    fn varints_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            16383,
            16384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut cur = &out[..];
            assert_eq!(get_varint(&mut cur, "v"), Ok(v));
            assert!(cur.is_empty());
        }
        for v in [
            0i64,
            -1,
            1,
            -64,
            63,
            -65,
            i64::from(i32::MIN) * 2,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            put_signed(&mut out, v);
            let mut cur = &out[..];
            assert_eq!(get_signed(&mut cur, "v"), Ok(v));
        }
        let mut small = Vec::new();
        put_signed(&mut small, -64);
        assert_eq!(small.len(), 1);
        // Eleven bytes, or bits past 64, are not a u64.
        assert!(get_varint(&mut &[0xff; 11][..], "v").is_err());
        assert!(get_varint(
            &mut &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..],
            "v"
        )
        .is_err());
    }

    #[test]
    fn a_frame_binds_then_sends_only_what_changed() {
        let res = Resolution::default();
        let mut out = Vec::new();
        let mut w = PositionsWriter::new(&mut out, res);
        w.bind(0, 42, q(320, -64, 0, 0));
        w.bind(3, 7, q(1, 2, 3, 1023));
        assert!(w.finish());
        let mut table = PositionTable::new();
        let mut got = Vec::new();
        table.apply(&out[1..], &mut got).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].entity, 42);
        assert_eq!(
            got[0].pos,
            Position {
                x: 10.0,
                y: -2.0,
                z: 0.0
            }
        );
        assert_eq!(table.get(7), Some(q(1, 2, 3, 1023)));

        // Only slot 3's x and yaw changed: one head, two one-byte deltas.
        let mut out = Vec::new();
        let mut w = PositionsWriter::new(&mut out, res);
        assert!(!w.update(0, q(320, -64, 0, 0), q(320, -64, 0, 0)));
        assert!(w.update(3, q(1, 2, 3, 1023), q(5, 2, 3, 2)));
        assert!(w.finish());
        assert_eq!(out, [POSITIONS_TYPE, (-5i8) as u8, (3 << 4) | 1 | 8, 8, 6]);
        got.clear();
        table.apply(&out[1..], &mut got).unwrap();
        assert_eq!(table.get(7), Some(q(5, 2, 3, 2)));
        assert_eq!(got[0].entity, 7);

        // A frame with nothing in it is not written.
        let mut out = vec![9];
        let w = PositionsWriter::new(&mut out, res);
        assert!(!w.finish());
        assert_eq!(out, [9]);
    }

    /// The example in docs/protocol.md, §4 `Positions`.
    #[test]
    fn protocol_doc_example() {
        let res = Resolution::default();
        let mut out = Vec::new();
        let mut w = PositionsWriter::new(&mut out, res);
        w.bind(0, 42, q(320, -64, 0, 0));
        w.bind(1, 300, q(16, 32, 0, 512));
        w.finish();
        assert_eq!(
            out,
            [0x88, 0xfb, 0x83, 0x2a, 0x80, 0x05, 0x7f, 0x8b, 0xac, 0x02, 0x20, 0x40, 0x80, 0x04]
        );
        let mut t = PositionTable::new();
        let mut got = Vec::new();
        t.apply(&out[1..], &mut got).unwrap();
        assert_eq!(
            got[1].pos,
            Position {
                x: 0.5,
                y: 1.0,
                z: 0.0
            }
        );
        assert_eq!(got[1].yaw, std::f32::consts::PI);
        let mut out = Vec::new();
        let mut w = PositionsWriter::new(&mut out, res);
        w.update(1, q(16, 32, 0, 512), q(24, 32, 0, 512));
        w.finish();
        assert_eq!(out, [0x88, 0xfb, 0x11, 0x10]);
    }

    #[test]
    fn rebinding_and_forgetting_keep_one_slot_per_entity() {
        let res = Resolution::default();
        let mut t = PositionTable::new();
        let frame = |entries: &[(u32, u64)]| {
            let mut out = Vec::new();
            let mut w = PositionsWriter::new(&mut out, res);
            for &(slot, e) in entries {
                w.bind(slot, e, q(slot as i32, 0, 0, 0));
            }
            w.finish();
            out
        };
        let mut sink = Vec::new();
        t.apply(&frame(&[(0, 1), (1, 2)])[1..], &mut sink).unwrap();
        // Entity 1 moves to slot 5; slot 1 is given to entity 3.
        t.apply(&frame(&[(1, 3), (5, 1)])[1..], &mut sink).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(1), Some(q(5, 0, 0, 0)));
        assert_eq!(t.get(2), None);
        t.forget(3);
        assert_eq!(t.get(3), None);
        // An update for a slot that holds nothing is an error.
        let mut out = Vec::new();
        let mut w = PositionsWriter::new(&mut out, res);
        w.update(1, q(0, 0, 0, 0), q(1, 0, 0, 0));
        w.finish();
        assert!(t.apply(&out[1..], &mut sink).is_err());
    }

    #[test]
    fn large_skips_and_every_truncation() {
        let res = Resolution::from_exp(0).unwrap();
        let mut out = Vec::new();
        let mut w = PositionsWriter::new(&mut out, res);
        w.bind(1000, u64::MAX, q(i32::MIN, i32::MAX, -1, 512));
        w.bind(1001, 5, q(0, 0, 0, 0));
        w.finish();
        let mut t = PositionTable::new();
        let mut got = Vec::new();
        t.apply(&out[1..], &mut got).unwrap();
        assert_eq!(t.get(u64::MAX), Some(q(i32::MIN, i32::MAX, -1, 512)));
        for cut in 2..out.len() - 1 {
            let mut t = PositionTable::new();
            // Cutting inside an entry is an error; at an entry's end it is
            // a shorter frame.
            let r = t.apply(&out[1..cut], &mut Vec::new());
            if r.is_ok() {
                assert!(t.len() <= 1, "cut at {cut}");
            }
        }
        // A delta near i64's ends is refused, not added (found by fuzzing:
        // fuzz/corpus/positions/bug-delta-overflows-i64).
        let mut t = PositionTable::new();
        let mut out = Vec::new();
        let mut w = PositionsWriter::new(&mut out, res);
        w.bind(0, 1, q(5, 0, 0, 0));
        w.finish();
        t.apply(&out[1..], &mut Vec::new()).unwrap();
        // Slot 0's x, moved by a delta no i32 takes.
        let mut update = vec![res.exp() as u8, FIELD_X];
        put_signed(&mut update, i64::MAX);
        assert_eq!(
            t.apply(&update, &mut Vec::new()),
            Err(DecodeError::Invalid("position delta"))
        );

        // A slot beyond the table's limit is refused, not allocated.
        let mut out = Vec::new();
        let mut w = PositionsWriter::new(&mut out, res);
        w.bind(MAX_SLOT + 1, 1, q(0, 0, 0, 0));
        w.finish();
        assert!(PositionTable::new()
            .apply(&out[1..], &mut Vec::new())
            .is_err());
    }
}
