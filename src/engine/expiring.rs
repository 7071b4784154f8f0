//! A table from 64-bit hashed keys to values, where every entry belongs to a
//! bin and all entries of bins before a given one expire together: the
//! lineage estimator's clickers (person → cohort, offspring, addressees),
//! whose cohorts leave the lineage window one bin at a time.
//!
//! Why not a general hash map. During a big send one campaign follows
//! hundreds of thousands of clickers, and every click, forward and
//! offspring touches a random one: a cache miss each. This table is built
//! to miss as little as possible, and to take less memory:
//!
//! - **One slot per entry, key and value together** (24 bytes for a
//!   clicker), probed linearly. A lookup reads one cache line (rarely
//!   two), where a SwissTable reads a control byte and then a bucket stored
//!   elsewhere.
//! - **The key is its own hash.** Keys are already uniform 64-bit hashes
//!   ([`crate::event::person_key`]), so the home slot is the key's low bits.
//! - **Expiry without a miss per entry.** When a bin expires its entries are
//!   not looked up and removed one by one: an entry of a bin before
//!   [`ExpiringTable::expire_before`]'s bin is *stale*, reads as absent, and
//!   its slot is taken by the next insertion that probes past it. Stale
//!   slots are dropped all at once when the table is rebuilt (one sequential
//!   pass, when it would otherwise grow).
//! - **Prefetch.** [`ExpiringTable::prefetch`] lets a caller with a batch of
//!   keys start their cache misses before it needs them, so they overlap.
//!
//! Slots are never emptied except by a rebuild, so a probe that meets an
//! empty slot has seen every slot its key can be in (the linear-probing
//! invariant). The table holds at most 4/5 used slots (live + stale): an
//! unsuccessful probe reads about 13 slots on average, a few cache lines in
//! sequence, and the memory per live entry stays between 1.25 and 2.5 slots.

/// The key standing for "empty slot".
const EMPTY: u64 = 0;

/// The key a person whose key is [`EMPTY`] is stored under (two people
/// already share a key with probability 2⁻⁶⁴ per pair; this adds one more
/// such pair).
const ZERO_KEY: u64 = 0x9e37_79b9_7f4a_7c15;

/// Smallest table, in slots.
const MIN_SLOTS: usize = 4;

/// One entry: its key, its bin and its value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry<V> {
    key: u64,
    /// The bin the entry belongs to (a clicker's cohort).
    pub bin: i64,
    /// The value.
    pub value: V,
}

/// Key → value, for the entries of bins from `live_from` on (module docs).
#[derive(Clone, Debug)]
pub struct ExpiringTable<V> {
    /// Empty or a power of two long.
    slots: Vec<Entry<V>>,
    /// Slots holding a key, live or stale.
    used: usize,
    /// Live entries.
    live: usize,
    /// Entries of bins before this one are stale.
    live_from: i64,
}

impl<V: Copy + Default> ExpiringTable<V> {
    /// An empty table (no allocation until the first insertion).
    pub fn new(live_from: i64) -> Self {
        ExpiringTable { slots: Vec::new(), used: 0, live: 0, live_from }
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there is no live entry.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    #[inline]
    fn normalise(key: u64) -> u64 {
        if key == EMPTY {
            ZERO_KEY
        } else {
            key
        }
    }

    /// The slot of live entry `key`, if any.
    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = key as usize & mask;
        loop {
            let s = &self.slots[i];
            if s.key == key {
                return (s.bin >= self.live_from).then_some(i);
            }
            if s.key == EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to start loading `key`'s home slot, so that a lookup a
    /// little later finds it in cache. Callers with a batch of keys
    /// prefetch a few ahead of the one they work on, and the cache misses
    /// of the batch overlap instead of following one another.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        #[cfg(target_arch = "x86_64")]
        if !self.slots.is_empty() {
            let slot = &self.slots[Self::normalise(key) as usize & (self.slots.len() - 1)];
            // SAFETY: a prefetch only hints the cache; it reads nothing the
            // program sees and cannot fault (and the address is a live
            // element of `slots` anyway). SSE is part of the x86-64 baseline.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>((slot as *const Entry<V>).cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// Whether `key` is a live entry.
    pub fn contains(&self, key: u64) -> bool {
        self.find(Self::normalise(key)).is_some()
    }

    /// Live entry `key`, to update.
    #[inline]
    pub fn get_mut(&mut self, key: u64) -> Option<&mut Entry<V>> {
        let i = self.find(Self::normalise(key))?;
        Some(&mut self.slots[i])
    }

    /// Adds `key` with `value` in `bin` unless it is a live entry already.
    /// Returns whether it was added. An entry for a bin that has already
    /// expired is not stored (it would be stale at once), but counts as
    /// added.
    #[inline]
    pub fn insert(&mut self, key: u64, bin: i64, value: V) -> bool {
        let key = Self::normalise(key);
        if bin < self.live_from {
            return !self.contains(key);
        }
        if (self.used + 1) * 5 > self.slots.len() * 4 {
            self.rebuild();
        }
        let mask = self.slots.len() - 1;
        let mut i = key as usize & mask;
        // The first stale slot on the probe path: the new entry takes it
        // once the whole path shows the key is not live.
        let mut stale = None;
        loop {
            let s = &self.slots[i];
            if s.key == key {
                if s.bin >= self.live_from {
                    return false;
                }
                // The same key again after its bin expired: a new entry in
                // the same slot.
                stale = Some(i);
                break;
            }
            if s.key == EMPTY {
                break;
            }
            if stale.is_none() && s.bin < self.live_from {
                stale = Some(i);
            }
            i = (i + 1) & mask;
        }
        let at = match stale {
            Some(s) => s,
            None => {
                self.used += 1;
                i
            }
        };
        self.slots[at] = Entry { key, bin, value };
        self.live += 1;
        true
    }

    /// Makes the entries of bins before `bin` stale; `expired` is how many
    /// live entries those bins held. A table left without live entries
    /// gives its memory back.
    pub fn expire_before(&mut self, bin: i64, expired: usize) {
        if bin <= self.live_from {
            return;
        }
        self.live_from = bin;
        self.live = self.live.saturating_sub(expired);
        if self.live == 0 {
            self.slots = Vec::new();
            self.used = 0;
        }
    }

    /// Re-inserts the live entries into a table with room for one more:
    /// the same size when at least half of the slots would stay free, else
    /// twice the size. Stale slots are dropped.
    #[cold]
    fn rebuild(&mut self) {
        let mut len = self.slots.len().max(MIN_SLOTS);
        if (self.live + 1) * 2 > len {
            len *= 2;
        }
        let old = std::mem::replace(&mut self.slots, vec![Entry::default(); len]);
        let mask = len - 1;
        for c in old.into_iter().filter(|c| c.key != EMPTY && c.bin >= self.live_from) {
            let mut i = c.key as usize & mask;
            while self.slots[i].key != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = c;
        }
        self.used = self.live;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The table against a `HashMap` model: random inserts, updates,
    /// lookups and expiries, with keys crowded onto few home slots so that
    /// probe chains, stale reuse and rebuilds all happen.
    #[test]
    fn behaves_like_a_map_with_expiry() {
        let mut t = ExpiringTable::<u32>::new(0);
        let mut model: HashMap<u64, (i64, u32)> = HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut bin = 0i64;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct keys, many sharing low bits; key 0 included.
            let key = (x % 5000) << 6 | (x >> 60);
            match x % 10 {
                0..=4 => {
                    let added = t.insert(key, bin, 0);
                    let expect = !model.contains_key(&ExpiringTable::<u32>::normalise(key));
                    assert_eq!(added, expect, "insert {key} at step {step}");
                    if expect {
                        model.insert(ExpiringTable::<u32>::normalise(key), (bin, 0));
                    }
                }
                5..=7 => {
                    let got = t.get_mut(key).map(|c| {
                        c.value += 1;
                        (c.bin, c.value)
                    });
                    let want = model.get_mut(&ExpiringTable::<u32>::normalise(key)).map(|v| {
                        v.1 += 1;
                        *v
                    });
                    assert_eq!(got, want, "get {key} at step {step}");
                }
                8 => bin += 1,
                _ => {
                    if x.is_multiple_of(97) {
                        let before = bin - (x % 5) as i64;
                        let expired = model.values().filter(|v| v.0 < before).count();
                        model.retain(|_, v| v.0 >= before);
                        t.expire_before(before, expired);
                    }
                }
            }
            assert_eq!(t.len(), model.len());
            assert!(t.used * 5 <= t.slots.len() * 4 || t.slots.is_empty());
        }
        for (k, v) in &model {
            assert_eq!(t.get_mut(*k).map(|c| (c.bin, c.value)), Some(*v));
        }
    }

    #[test]
    fn an_entry_of_an_expired_bin_is_not_kept() {
        let mut t = ExpiringTable::<()>::new(0);
        assert!(t.insert(7, 5, ()));
        t.expire_before(3, 0);
        assert!(t.insert(9, 2, ()), "accepted");
        assert!(!t.contains(9), "but not kept");
        assert!(!t.insert(7, 2, ()), "a live key stays live");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_table_without_live_entries_frees_its_slots() {
        let mut t = ExpiringTable::<()>::new(0);
        for k in 1..=1000u64 {
            assert!(t.insert(k.wrapping_mul(0x2545_f491_4f6c_dd1d), k as i64 % 3, ()));
        }
        assert_eq!(t.len(), 1000);
        assert!(t.slots.len() >= 1250);
        t.expire_before(3, 1000);
        assert!(t.is_empty());
        assert!(t.slots.is_empty());
        assert!(!t.contains(0x2545_f491_4f6c_dd1d));
        assert!(t.insert(0x2545_f491_4f6c_dd1d, 3, ()));
    }
}
