//! The lineage estimator's clicker table: person → cohort, offspring so far,
//! forwarded addressees so far.
//!
//! Why not a general hash map. During a big send one campaign follows
//! hundreds of thousands of clickers, and every click, forward and offspring
//! touches a random one: a cache miss each, which made the lineage the most
//! expensive part of the engine. This table is built to miss as little as
//! possible:
//!
//! - **One slot per clicker, key and value together** (24 bytes), probed
//!   linearly. A lookup reads one cache line (rarely two), where a SwissTable
//!   reads a control byte and then a bucket stored elsewhere.
//! - **The key is its own hash.** Person keys are already uniform 64-bit
//!   hashes ([`crate::event::person_key`]), so the home slot is the key's low
//!   bits.
//! - **Expiry without a miss per clicker.** When a cohort leaves the lineage
//!   window its clickers are not looked up and removed one by one: a clicker
//!   whose cohort is before [`ClickerTable::expire_before`]'s bin is *stale*,
//!   reads as absent, and its slot is taken by the next insertion that probes
//!   past it. Stale slots are dropped all at once when the table is rebuilt
//!   (one sequential pass, when it would otherwise grow).
//!
//! Slots are never emptied except by a rebuild, so a probe that meets an
//! empty slot has seen every slot its key can be in (the linear-probing
//! invariant). The table holds at most 4/5 used slots (live + stale); that
//! keeps an unsuccessful probe to about 13 slots on average, a few cache
//! lines read in sequence, and the memory per live clicker between 30 and
//! 60 bytes.

/// The key standing for "empty slot".
const EMPTY: u64 = 0;

/// The key a person whose key is [`EMPTY`] is stored under (two people
/// already share a key with probability 2⁻⁶⁴ per pair; this adds one more
/// such pair).
const ZERO_KEY: u64 = 0x9e37_79b9_7f4a_7c15;

/// Smallest table, in slots.
const MIN_SLOTS: usize = 16;

/// One clicker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clicker {
    key: u64,
    /// The bin of the person's first click (their cohort).
    pub cohort: i64,
    /// Offspring clicks so far.
    pub offspring: u32,
    /// Forwarded addressees so far.
    pub addressees: u32,
}

/// Person key → [`Clicker`], for the clickers of cohorts from
/// `live_from` on (module docs).
#[derive(Clone, Debug)]
pub struct ClickerTable {
    /// Empty or a power of two long.
    slots: Vec<Clicker>,
    /// Slots holding a key, live or stale.
    used: usize,
    /// Live clickers.
    live: usize,
    /// Clickers of cohorts before this bin are stale.
    live_from: i64,
}

impl ClickerTable {
    /// An empty table (no allocation until the first insertion).
    pub fn new(live_from: i64) -> Self {
        ClickerTable { slots: Vec::new(), used: 0, live: 0, live_from }
    }

    /// Live clickers.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there is no live clicker.
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

    /// The slot of live clicker `key`, if any.
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
                return (s.cohort >= self.live_from).then_some(i);
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
                _mm_prefetch::<_MM_HINT_T0>((slot as *const Clicker).cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// Whether `key` is a live clicker.
    pub fn contains(&self, key: u64) -> bool {
        self.find(Self::normalise(key)).is_some()
    }

    /// Live clicker `key`, to update.
    #[inline]
    pub fn get_mut(&mut self, key: u64) -> Option<&mut Clicker> {
        let i = self.find(Self::normalise(key))?;
        Some(&mut self.slots[i])
    }

    /// Adds `key` as a clicker of `cohort` (with no offspring or forwards
    /// yet) unless it is a live clicker already. Returns whether it was added.
    #[inline]
    pub fn insert(&mut self, key: u64, cohort: i64) -> bool {
        let key = Self::normalise(key);
        if (self.used + 1) * 5 > self.slots.len() * 4 {
            self.rebuild();
        }
        let mask = self.slots.len() - 1;
        let mut i = key as usize & mask;
        // The first stale slot on the probe path: the new clicker takes it
        // once the whole path shows the key is not live.
        let mut stale = None;
        loop {
            let s = &self.slots[i];
            if s.key == key {
                if s.cohort >= self.live_from {
                    return false;
                }
                // The same person again after their cohort expired: a new
                // clicker in the same slot.
                stale = Some(i);
                break;
            }
            if s.key == EMPTY {
                break;
            }
            if stale.is_none() && s.cohort < self.live_from {
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
        self.slots[at] = Clicker { key, cohort, offspring: 0, addressees: 0 };
        self.live += 1;
        true
    }

    /// Makes the clickers of cohorts before `bin` stale; `expired` is how
    /// many live clickers those cohorts held. A table left without live
    /// clickers gives its memory back.
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

    /// Re-inserts the live clickers into a table with room for one more:
    /// the same size when at least half of the slots would stay free, else
    /// twice the size. Stale slots are dropped.
    #[cold]
    fn rebuild(&mut self) {
        let mut len = self.slots.len().max(MIN_SLOTS);
        if (self.live + 1) * 2 > len {
            len *= 2;
        }
        let old = std::mem::replace(&mut self.slots, vec![Clicker::default(); len]);
        let mask = len - 1;
        for c in old.into_iter().filter(|c| c.key != EMPTY && c.cohort >= self.live_from) {
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
        let mut t = ClickerTable::new(0);
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
                    let added = t.insert(key, bin);
                    let expect = !model.contains_key(&ClickerTable::normalise(key));
                    assert_eq!(added, expect, "insert {key} at step {step}");
                    if expect {
                        model.insert(ClickerTable::normalise(key), (bin, 0));
                    }
                }
                5..=7 => {
                    let got = t.get_mut(key).map(|c| {
                        c.offspring += 1;
                        (c.cohort, c.offspring)
                    });
                    let want = model.get_mut(&ClickerTable::normalise(key)).map(|v| {
                        v.1 += 1;
                        *v
                    });
                    assert_eq!(got, want, "get {key} at step {step}");
                }
                8 => bin += 1,
                _ => {
                    if x % 97 == 0 {
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
            assert_eq!(t.get_mut(*k).map(|c| (c.cohort, c.offspring)), Some(*v));
        }
    }

    #[test]
    fn a_table_without_live_clickers_frees_its_slots() {
        let mut t = ClickerTable::new(0);
        for k in 1..=1000u64 {
            assert!(t.insert(k.wrapping_mul(0x2545_f491_4f6c_dd1d), k as i64 % 3));
        }
        assert_eq!(t.len(), 1000);
        assert!(t.slots.len() >= 1250);
        t.expire_before(3, 1000);
        assert!(t.is_empty());
        assert!(t.slots.is_empty());
        assert!(!t.contains(0x2545_f491_4f6c_dd1d));
        assert!(t.insert(0x2545_f491_4f6c_dd1d, 3));
    }
}
