//! Mutations: how the fuzzer makes a new input from the corpus. Byte-level
//! (flips, interesting values, inserts, deletes, copies, splices) and
//! aware of what decoders care about (length fields, dictionary tokens,
//! the operands of the target's own comparisons).

use crate::coverage;

/// A small, fast, seedable generator (SplitMix64): runs are reproducible
/// from their seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A small number, mostly tiny: 1, 2, 4... up to `max`.
    pub fn small(&mut self, max: usize) -> usize {
        let max = max.max(1);
        let bits = (usize::BITS - max.leading_zeros()) as usize;
        // A power of two up to the highest one in `max`, then below it.
        let cap = 1usize << self.below(bits);
        1 + self.below(cap.min(max))
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// Values at the edges of integer types and of MessagePack's formats.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x0f,
    0x10,
    0x1f,
    0x20,
    0x7e,
    0x7f,
    0x80,
    0x81,
    0xfe,
    0xff,
    0x100,
    0x3ff,
    0x400,
    0x7fff,
    0x8000,
    0xfffe,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX - 1,
    u64::MAX,
];

/// Bytes that start MessagePack values of every kind, and frame types.
const MARKERS: &[u8] = &[
    0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
    0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7,
    0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff, 0x01, 0x02, 0x03, 0x04, 0x81, 0x82,
    0x83, 0x84, 0x85, 0x86, 0x88, 0x89,
];

/// What a mutation may draw on besides the input itself.
pub struct Sources<'a> {
    /// Other inputs, for splices.
    pub corpus: &'a [Vec<u8>],
    /// The target's tokens.
    pub dict: &'a [&'a [u8]],
    /// Whether the comparison table is worth reading (coverage builds).
    pub cmps: bool,
    /// The longest input the target takes.
    pub max_len: usize,
}

/// Applies one to eight mutations to `data`.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, src: &Sources<'_>) {
    let rounds = rng.small(8);
    for _ in 0..rounds {
        // Retry a mutation that could not apply (say, a delete on nothing).
        for _ in 0..4 {
            if mutate_once(rng, data, src) {
                break;
            }
        }
    }
    data.truncate(src.max_len);
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, src: &Sources<'_>) -> bool {
    let len = data.len();
    match rng.below(17) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // A random byte.
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.byte();
        }
        // A marker byte.
        2 if len > 0 => {
            let i = rng.below(len);
            data[i] = *rng.pick(MARKERS).unwrap_or(&0);
        }
        // Add or subtract a little, on a byte or a wider integer.
        3 if len > 0 => {
            let width = [1, 2, 4, 8][rng.below(4)].min(len);
            let at = rng.below(len - width + 1);
            let delta = rng.small(35) as u64;
            let big = rng.one_in(2);
            let v = read_int(&data[at..at + width], big);
            let v = if rng.one_in(2) {
                v.wrapping_add(delta)
            } else {
                v.wrapping_sub(delta)
            };
            write_int(&mut data[at..at + width], v, big);
        }
        // An interesting integer, either byte order.
        4 if len > 0 => {
            let width = [1, 2, 4, 8][rng.below(4)].min(len);
            let at = rng.below(len - width + 1);
            let mut v = *rng.pick(INTERESTING).unwrap_or(&0);
            if rng.one_in(4) {
                v = v.wrapping_neg();
            }
            write_int(&mut data[at..at + width], v, rng.one_in(2));
        }
        // A length field: what is left after it, give or take one.
        5 if len > 0 => {
            let width = [1, 2, 4][rng.below(3)].min(len);
            let at = rng.below(len - width + 1);
            let left = (len - at - width) as u64;
            let v = match rng.below(4) {
                0 => left.wrapping_sub(1),
                1 => left + 1,
                2 => left / 2,
                _ => left,
            };
            write_int(&mut data[at..at + width], v, rng.one_in(2));
        }
        // Insert random bytes, or one byte repeated.
        6 => {
            let n = rng.small(32).min(src.max_len.saturating_sub(len));
            if n == 0 {
                return false;
            }
            let at = rng.below(len + 1);
            let fill: Vec<u8> = if rng.one_in(2) {
                vec![rng.byte(); n]
            } else {
                (0..n).map(|_| rng.byte()).collect()
            };
            data.splice(at..at, fill);
        }
        // Delete a run.
        7 if len > 0 => {
            let n = rng.small(len.min(64)).min(len);
            let at = rng.below(len - n + 1);
            data.drain(at..at + n);
        }
        // Copy a run of the input over or into another place (nesting).
        8 if len > 1 => {
            let n = rng.small(len.min(128)).min(len);
            let from = rng.below(len - n + 1);
            let chunk = data[from..from + n].to_vec();
            let at = rng.below(len + 1);
            if rng.one_in(2) && len + n <= src.max_len {
                data.splice(at..at, chunk);
            } else {
                let end = (at + n).min(len);
                data.splice(at..end, chunk);
            }
        }
        // Splice: this input's head with another's tail, or a piece of
        // another inserted.
        9 => {
            let Some(other) = rng.pick(src.corpus) else {
                return false;
            };
            if other.is_empty() {
                return false;
            }
            if rng.one_in(2) {
                let keep = rng.below(len + 1);
                let from = rng.below(other.len());
                data.truncate(keep);
                data.extend_from_slice(&other[from..]);
            } else {
                let n = rng.small(other.len().min(256)).min(other.len());
                let from = rng.below(other.len() - n + 1);
                let at = rng.below(len + 1);
                data.splice(at..at, other[from..from + n].iter().copied());
            }
        }
        // Cut the end off.
        10 if len > 0 => {
            let keep = rng.below(len);
            data.truncate(keep);
        }
        // A dictionary token, inserted or written over.
        11 | 12 => {
            let Some(token) = rng.pick(src.dict) else {
                return false;
            };
            let at = rng.below(len + 1);
            if rng.one_in(2) {
                data.splice(at..at, token.iter().copied());
            } else {
                let end = (at + token.len()).min(len);
                data.splice(at..end, token.iter().copied());
            }
        }
        // Swap two bytes.
        13 if len > 1 => {
            let (i, j) = (rng.below(len), rng.below(len));
            data.swap(i, j);
        }
        // Replace a value the target compared with what it wanted.
        14..=16 if src.cmps && len > 0 => return replace_compared(rng, data),
        _ => return false,
    }
    true
}

/// Looks for the operand of a recent comparison in the input (either byte
/// order) and writes the other operand there; failing that, writes the
/// wanted value anywhere.
fn replace_compared(rng: &mut Rng, data: &mut [u8]) -> bool {
    for _ in 0..8 {
        let Some(c) = coverage::cmp(rng.next_u64() as usize) else {
            continue;
        };
        let width = c.width.min(data.len());
        if width == 0 {
            continue;
        }
        let (from, to) = if rng.one_in(2) {
            (c.a, c.b)
        } else {
            (c.b, c.a)
        };
        for big in [false, true] {
            let mut needle = vec![0; width];
            write_int(&mut needle, from, big);
            if let Some(at) = data.windows(width).position(|w| w == needle) {
                write_int(&mut data[at..at + width], to, big);
                return true;
            }
        }
        let at = rng.below(data.len() - width + 1);
        write_int(&mut data[at..at + width], to, rng.one_in(2));
        return true;
    }
    false
}

fn read_int(bytes: &[u8], big: bool) -> u64 {
    let mut v = 0u64;
    if big {
        for &b in bytes {
            v = (v << 8) | u64::from(b);
        }
    } else {
        for &b in bytes.iter().rev() {
            v = (v << 8) | u64::from(b);
        }
    }
    v
}

fn write_int(bytes: &mut [u8], v: u64, big: bool) {
    let n = bytes.len();
    for (i, b) in bytes.iter_mut().enumerate() {
        let shift = if big { (n - 1 - i) * 8 } else { i * 8 };
        *b = if shift >= 64 { 0 } else { (v >> shift) as u8 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_round_trip_in_both_orders() {
        let mut b = [0u8; 4];
        write_int(&mut b, 0x0102_0304, true);
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(read_int(&b, true), 0x0102_0304);
        write_int(&mut b, 0x0102_0304, false);
        assert_eq!(b, [4, 3, 2, 1]);
        assert_eq!(read_int(&b, false), 0x0102_0304);
    }

    #[test]
    fn mutations_stay_within_the_length_limit() {
        let mut rng = Rng::new(7);
        let corpus = vec![vec![1, 2, 3], vec![0xff; 40]];
        let src = Sources {
            corpus: &corpus,
            dict: &[b"WYRM"],
            cmps: false,
            max_len: 50,
        };
        let mut data = vec![0u8; 10];
        for _ in 0..10_000 {
            mutate(&mut rng, &mut data, &src);
            assert!(data.len() <= 50);
        }
    }
}
