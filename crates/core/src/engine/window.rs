//! Event-time bins of one campaign, kept in a ring.
//!
//! A bin `b` covers `[b·bin_ms, (b+1)·bin_ms)` of event time (bins are aligned
//! to the Unix epoch, so every campaign and every process agrees on them). The
//! ring holds the bins from `base` upwards: closed bins still needed by the
//! estimators (the window plus the generation-interval support) and the open
//! bins that may still receive late events. Memory per campaign is therefore
//! bounded by `window + gi_len + (allowed_lateness + max_future)/bin` bins.

use std::collections::VecDeque;

/// Tallies of one campaign in one bin.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BinCounts {
    /// Generation ≥ 1 clicks: *local* cases of the renewal model.
    pub local: u32,
    /// Generation 0 clicks: *imported* cases (direct recipients).
    pub imported: u32,
    /// Local clicks whose `parent` was a known clicker (set when the bin closes).
    pub linked: u32,
    /// Infectivity Λ of this bin (Cori et al. 2013), computed once when the
    /// bin closes: Σ_{s≥1} w_s (local + imported) of the bins before it.
    pub lambda: f64,
}

impl BinCounts {
    /// The bin's incidence I_t of the renewal model: local + imported clicks.
    pub fn incidence(&self) -> f64 {
        f64::from(self.local) + f64::from(self.imported)
    }
}

/// A ring of bins indexed by absolute bin number.
#[derive(Clone, Debug, Default)]
pub struct Bins<T> {
    base: i64,
    items: VecDeque<T>,
}

impl<T: Default> Bins<T> {
    /// An empty ring whose first bin will be `base`.
    pub fn starting_at(base: i64) -> Self {
        Bins { base, items: VecDeque::new() }
    }

    /// First bin still held.
    pub fn base(&self) -> i64 {
        self.base
    }

    /// One past the last bin held.
    pub fn end(&self) -> i64 {
        self.base + self.items.len() as i64
    }

    /// The bin, if held.
    pub fn get(&self, bin: i64) -> Option<&T> {
        if bin < self.base {
            return None;
        }
        self.items.get((bin - self.base) as usize)
    }

    /// The held bins of `from..=to` with their bin numbers, oldest first
    /// (one pass over the ring's two slices, no per-bin index arithmetic).
    pub fn iter_range(&self, from: i64, to: i64) -> impl DoubleEndedIterator<Item = (i64, &T)> {
        let hi = ((to.saturating_add(1)).min(self.end()) - self.base).max(0) as usize;
        let lo = ((from.max(self.base) - self.base) as usize).min(hi);
        let base = self.base + lo as i64;
        self.items.range(lo..hi).enumerate().map(move |(i, t)| (base + i as i64, t))
    }

    /// The bin, only if already held (never grows the ring).
    pub fn get_mut_if_held(&mut self, bin: i64) -> Option<&mut T> {
        if bin < self.base {
            return None;
        }
        self.items.get_mut((bin - self.base) as usize)
    }

    /// The bin, created (with all bins before it) if needed. `None` if `bin` is
    /// before the ring's base (already discarded).
    pub fn get_mut(&mut self, bin: i64) -> Option<&mut T> {
        if bin < self.base {
            return None;
        }
        let idx = (bin - self.base) as usize;
        if idx >= self.items.capacity() {
            // Grow to what is needed, not to the next power of two: a ring
            // reaches its steady length once and keeps it.
            self.items.reserve_exact(idx + 1 - self.items.len());
        }
        while self.items.len() <= idx {
            self.items.push_back(T::default());
        }
        self.items.get_mut(idx)
    }

    /// Drops every bin before `bin`.
    pub fn trim_before(&mut self, bin: i64) {
        while self.base < bin {
            if self.items.pop_front().is_none() {
                self.base = bin;
                break;
            }
            self.base += 1;
        }
    }

    /// Drops every bin before `bin`, handing each to `f` first.
    pub fn drain_before(&mut self, bin: i64, mut f: impl FnMut(i64, T)) {
        while self.base < bin {
            match self.items.pop_front() {
                Some(item) => f(self.base, item),
                None => {
                    self.base = bin;
                    break;
                }
            }
            self.base += 1;
        }
    }
}

/// The bin holding event time `ts_ms`.
#[inline]
pub fn bin_of(ts_ms: i64, bin_ms: i64) -> i64 {
    ts_ms.div_euclid(bin_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_grows_and_trims() {
        let mut b: Bins<u32> = Bins::starting_at(10);
        *b.get_mut(12).unwrap() += 3;
        assert_eq!(b.end(), 13);
        assert_eq!(b.get(11), Some(&0));
        assert_eq!(b.get(12), Some(&3));
        assert!(b.get_mut(9).is_none());
        b.trim_before(12);
        assert_eq!(b.base(), 12);
        assert_eq!(b.get(12), Some(&3));
        b.trim_before(20);
        assert_eq!(b.base(), 20);
        assert_eq!(b.end(), 20);
        assert_eq!(b.iter_range(0, 100).count(), 0);
        for k in 21..26 {
            *b.get_mut(k).unwrap() = k as u32;
        }
        let got: Vec<(i64, u32)> = b.iter_range(22, 24).map(|(k, v)| (k, *v)).collect();
        assert_eq!(got, vec![(22, 22), (23, 23), (24, 24)]);
        let back: Vec<i64> = b.iter_range(22, 24).rev().map(|(k, _)| k).collect();
        assert_eq!(back, vec![24, 23, 22], "reversed, bin numbers stay right");
        assert_eq!(b.iter_range(0, 20).map(|(k, _)| k).collect::<Vec<_>>(), vec![20]);
        assert_eq!(b.iter_range(25, 99).map(|(k, _)| k).collect::<Vec<_>>(), vec![25]);
        assert_eq!(b.iter_range(30, 40).count(), 0);
        assert_eq!(b.iter_range(24, 22).count(), 0);
    }

    #[test]
    fn bins_are_epoch_aligned_for_negative_times() {
        assert_eq!(bin_of(59_999, 60_000), 0);
        assert_eq!(bin_of(60_000, 60_000), 1);
        assert_eq!(bin_of(-1, 60_000), -1);
    }
}
