//! Who sees whom: one small open-addressing table per entity.

/// Link bit: this entity sees the other.
pub(crate) const SEES: u32 = 1;
/// Link bit: the other entity sees this one.
pub(crate) const SEEN: u32 = 2;
const NO_LINK: u32 = u32::MAX;

/// The entities one entity is paired with: an open-addressing table
/// (linear probing, backward-shift deletion) of `slot << 2 | bits`, where
/// `bits` is [`SEES`] and/or [`SEEN`]. Only pairs with a bit set are stored.
#[derive(Default)]
pub(crate) struct Links {
    table: Box<[u32]>,
    len: u32,
}

impl Links {
    fn home(&self, t: u32) -> usize {
        let bits = self.table.len().trailing_zeros();
        // Fibonacci hashing: slot indices are dense, one multiply spreads them.
        (t.wrapping_mul(0x9e37_79b9) >> (32 - bits)) as usize
    }

    /// The index of `t`'s entry, or of the empty entry where it would go.
    /// The table must not be empty.
    fn find(&self, t: u32) -> Result<usize, usize> {
        let mask = self.table.len() - 1;
        let mut i = self.home(t);
        loop {
            let e = self.table[i];
            if e == NO_LINK {
                return Err(i);
            }
            if e >> 2 == t {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to bring `t`'s home entry into the cache (no effect on
    /// the table).
    #[inline(always)]
    pub(crate) fn prefetch(&self, t: u32) {
        #[cfg(target_arch = "x86_64")]
        if !self.table.is_empty() {
            let at: *const u32 = &self.table[self.home(t)];
            // SAFETY: a prefetch reads nothing the program sees and never
            // faults; the address is in the table anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast())
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = t;
    }

    /// Whether no pair is stored.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bits for `t` (0 if not linked).
    pub(crate) fn get(&self, t: u32) -> u32 {
        if self.len == 0 {
            return 0;
        }
        match self.find(t) {
            Ok(i) => self.table[i] & 3,
            Err(_) => 0,
        }
    }

    /// Sets the bits for `t`; 0 unlinks it.
    pub(crate) fn set(&mut self, t: u32, bits: u32) {
        let mut at = None;
        if !self.table.is_empty() {
            match self.find(t) {
                Ok(i) if bits == 0 => {
                    self.delete(i);
                    self.len -= 1;
                    let cap = self.table.len();
                    if cap > 8 && (self.len as usize) * 8 < cap {
                        self.resize(cap / 2);
                    }
                    return;
                }
                Ok(i) => {
                    self.table[i] = t << 2 | bits;
                    return;
                }
                Err(_) if bits == 0 => return,
                Err(i) => at = Some(i),
            }
        } else if bits == 0 {
            return;
        }
        // Load stays at most 1/2 so probe runs stay short, lookups of absent
        // pairs included (a third of the lookups of an update).
        if (self.len as usize + 1) * 2 > self.table.len() {
            self.resize((self.table.len() * 2).max(8));
            at = self.find(t).err();
        }
        if let Some(i) = at {
            self.table[i] = t << 2 | bits;
            self.len += 1;
        }
    }

    fn delete(&mut self, mut hole: usize) {
        let mask = self.table.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.table[j];
            if e == NO_LINK {
                break;
            }
            // An entry may fill the hole if the hole lies on its probe path.
            let home = self.home(e >> 2);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.table[hole] = e;
                hole = j;
            }
        }
        self.table[hole] = NO_LINK;
    }

    fn resize(&mut self, cap: usize) {
        let old = std::mem::replace(&mut self.table, vec![NO_LINK; cap].into_boxed_slice());
        for e in old.iter().copied().filter(|&e| e != NO_LINK) {
            if let Err(i) = self.find(e >> 2) {
                self.table[i] = e;
            }
        }
    }

    /// `(slot, bits)` of every link.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.table
            .iter()
            .filter(|&&e| e != NO_LINK)
            .map(|&e| (e >> 2, e & 3))
    }

    /// Empties the table, returning its links.
    pub(crate) fn take(&mut self) -> Links {
        std::mem::take(self)
    }
}
