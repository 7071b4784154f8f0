//! The lineage estimator: count each clicker's offspring.
//!
//! When clicks carry `parent` (the person whose forward was clicked), R can be
//! measured directly: it is the mean number of offspring clicks per clicker.
//! Clickers are grouped into *cohorts* by the bin of their first click. A
//! clicker of cohort `c` has, by the end of bin `t`, had `L = t − c` bins to
//! produce offspring, and the generation interval says that only the fraction
//! `F(L) = Σ_{k ≤ L} w_k` of its eventual offspring can have clicked yet
//! (right censoring). With `n_c` clickers and `Y_c` observed offspring per
//! cohort, the censoring-corrected estimate over the cohort window is
//!
//! ```text
//! R̂ = Σ_c Y_c / Σ_c n_c F(L_c)
//! ```
//!
//! (the maximum-likelihood estimate when each clicker's observed offspring is
//! Poisson with mean `R·F(L)` — the same thinning argument as the nowcasting
//! literature, e.g. Cauchemez et al. 2006, Stat Med 25:1437, "Real-time
//! estimates in early detection of SARS").
//!
//! **Uncertainty.** Pass-along is strongly overdispersed: most readers forward
//! to nobody, a few to dozens. A Poisson interval would be far too narrow. We
//! use the quasi-Poisson model `Var(y_i) = φ·μ_i` and estimate the dispersion
//! φ from Pearson's statistic over individual clickers,
//!
//! ```text
//! φ̂ = max(1, Σ_i (y_i − R̂F_i)² / (R̂F_i) / (N − 1))
//! ```
//!
//! which needs only per-cohort sums `n_c, Y_c, Q_c = Σ y_i²` (kept
//! incrementally). The posterior is the conjugate Gamma of the Poisson model
//! with the likelihood tempered by 1/φ (a standard "effective sample size"
//! correction): `Gamma(shape = a + Y/φ, rate = 1/b + Σ n_c F_c / φ)`, with the
//! same Gamma(a, b) prior as the renewal estimator. Its mean is ≈ R̂ and its
//! variance ≈ φ·R̂ / Σ n F, the quasi-likelihood variance.
//!
//! **Forwards as a leading indicator.** A clicker's forwards precede its
//! offspring clicks by the forward→click delay, and a forward carries its
//! number of addressees. Writing R = m·q (forwarded addressees per clicker ×
//! click-through of a forwarded copy), `m` is visible one forward-delay after
//! the click rather than one generation interval, and `q` is a property of the
//! audience that changes slowly. We estimate `q̂` from *matured* cohorts
//! (F(L) ≥ 0.9: offspring / addressees, with a Beta prior `click_prior`,
//! weight `click_prior_weight`), and `m̂ = Σ r / Σ n_c G(L_c)` with `G` the
//! forward-delay CDF. `R_fwd = q̂·m̂`; its variance combines the binomial
//! variance of q̂ and the quasi-Poisson variance of m̂ (delta method). The two
//! estimates are pooled by precision weighting of their means, but the pooled
//! variance is the *smaller of the two variances*, not their harmonic sum,
//! because both use the same offspring counts and an honest interval must not
//! count that data twice. The forward estimate is only used once matured
//! cohorts hold at least `4 × click_prior_weight` addressees, so q̂ is driven
//! by the campaign's own data and not by the prior.

use hashbrown::HashMap;

use super::gamma::Gamma;
use super::generation_interval::GenerationInterval;
use super::renewal::Prior;
use super::window::Bins;

/// One clicker: its cohort and its offspring / forwarded addressees so far.
#[derive(Clone, Copy, Debug)]
struct Clicker {
    cohort: i64,
    offspring: u32,
    addressees: u32,
}

/// Person key → clicker.
type Clickers = HashMap<u64, Clicker, foldhash::fast::FixedState>;

/// The clicker `person` if it is followed: in the table and its cohort not
/// expired (from `live_from` on; see [`Lineage`]).
fn followed(clickers: &mut Clickers, person: u64, live_from: i64) -> Option<&mut Clicker> {
    clickers.get_mut(&person).filter(|c| c.cohort >= live_from)
}

/// Sums over the clickers of one cohort.
#[derive(Clone, Debug, Default)]
pub struct Cohort {
    /// Clickers.
    pub n: u64,
    /// Σ offspring.
    pub y: u64,
    /// Σ offspring².
    pub y2: u64,
    /// Σ forwarded addressees.
    pub r: u64,
    /// Σ forwarded addressees².
    pub r2: u64,
}

/// How forwards are used (`[estimator.forward]`).
#[derive(Clone, Debug)]
pub struct ForwardModel {
    /// Click → forward delay distribution on bins.
    pub delay: GenerationInterval,
    /// Prior click-through of a forwarded copy.
    pub click_prior: f64,
    /// Weight of the prior, in addressees.
    pub click_prior_weight: f64,
}

/// The lineage estimate of one campaign at one bin step.
#[derive(Clone, Copy, Debug)]
pub struct LineageEstimate {
    /// Posterior of R.
    pub posterior: Gamma,
    /// Dispersion φ̂ used (≥ 1).
    pub dispersion: f64,
    /// Σ offspring observed in the cohort window.
    pub offspring: u64,
    /// Σ n·F: expected offspring per unit R (the exposure).
    pub exposure: f64,
    /// Clickers of the cohort window (Σ n, every cohort).
    pub clickers: u64,
    /// Whether forwards contributed.
    pub with_forwards: bool,
}

/// Lineage state of one campaign.
///
/// Two horizons. The cohort sums (`cohorts`) cover the lineage window, what
/// an estimate reads. Clickers are *followed* longer, for
/// `estimator.generation_interval.follow` (`followed`), so that their late
/// offspring are still linked and the generation interval's tail can be
/// learned (`generation_learner.rs`); with learning off both horizons are
/// the lineage window.
///
/// Expiry is lazy. When cohorts leave the follow horizon their clickers are
/// not looked up and removed one by one (a cache miss each, in a table of
/// up to hundreds of thousands of clickers): an entry whose cohort is before
/// `followed.base()` is *expired*, reads as absent, and is overwritten if the
/// person clicks again. Expired entries are purged together, in one
/// sequential pass over the table, once they reach half the live ones, so
/// the table holds at most 1.5 entries per followed clicker and the purge
/// costs O(1) per expired entry.
#[derive(Clone, Debug)]
pub struct Lineage {
    /// Followed clickers, and expired ones not purged yet.
    clickers: Clickers,
    /// Sums per cohort over the lineage window.
    cohorts: Bins<Cohort>,
    /// Clickers per cohort over the follow horizon (at least the lineage
    /// window): its base is the first cohort still followed.
    followed: Bins<u32>,
    /// Entries of `clickers` whose cohort has expired.
    expired: usize,
    max_clickers: usize,
    shed: u64,
}

impl Lineage {
    /// Empty state; at most `max_clickers` clickers are followed at once.
    pub fn new(first_bin: i64, max_clickers: usize) -> Self {
        Lineage {
            clickers: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0x6c69_6e65)),
            cohorts: Bins::starting_at(first_bin),
            followed: Bins::starting_at(first_bin),
            expired: 0,
            max_clickers,
            shed: 0,
        }
    }

    /// Clickers followed now.
    pub fn clickers(&self) -> usize {
        self.clickers.len() - self.expired
    }

    /// Clickers not followed because of `limits.max_clickers_per_campaign`.
    pub fn shed(&self) -> u64 {
        self.shed
    }

    /// Registers a clicker in cohort `bin` (first click wins). Returns false
    /// if the person was already a clicker or the limit was hit.
    pub fn add_clicker(&mut self, person: u64, bin: i64) -> bool {
        let live_from = self.followed.base();
        if self.clickers() >= self.max_clickers {
            // At the limit: no `entry`, which could grow the table for a
            // key it will not insert.
            if followed(&mut self.clickers, person, live_from).is_none() {
                self.shed += 1;
            }
            return false;
        }
        let Some(followed) = self.followed.get_mut(bin) else { return false };
        let clicker = Clicker { cohort: bin, offspring: 0, addressees: 0 };
        // One hash probe for the lookup and the insertion.
        match self.clickers.entry(person) {
            hashbrown::hash_map::Entry::Occupied(mut e) => {
                if e.get().cohort >= live_from {
                    return false;
                }
                // Expired: the person starts over as a new clicker.
                e.insert(clicker);
                self.expired -= 1;
            }
            hashbrown::hash_map::Entry::Vacant(e) => {
                e.insert(clicker);
            }
        }
        *followed += 1;
        if let Some(cohort) = self.cohorts.get_mut(bin) {
            cohort.n += 1;
        }
        true
    }

    /// Records one offspring click of `parent`. Returns the parent's cohort
    /// if the parent is a followed clicker (the click is *linked*).
    pub fn add_offspring(&mut self, parent: u64) -> Option<i64> {
        let c = followed(&mut self.clickers, parent, self.followed.base())?;
        let y = u64::from(c.offspring);
        c.offspring = c.offspring.saturating_add(1);
        let parent_cohort = c.cohort;
        if let Some(cohort) = self.cohorts.get_mut_if_held(parent_cohort) {
            cohort.y += 1;
            cohort.y2 += 2 * y + 1;
        }
        Some(parent_cohort)
    }

    /// Records a forward by `person` to `addressees`. Returns whether the
    /// person is a followed clicker.
    pub fn add_forward(&mut self, person: u64, addressees: u64) -> bool {
        let Some(c) = followed(&mut self.clickers, person, self.followed.base()) else { return false };
        let before = u64::from(c.addressees);
        let add = addressees.min(u64::from(u32::MAX) - before);
        c.addressees += add as u32;
        let after = before + add;
        if let Some(cohort) = self.cohorts.get_mut_if_held(c.cohort) {
            cohort.r += add;
            cohort.r2 += after * after - before * before;
        }
        true
    }

    /// The cohorts whose clickers are followed, with their clickers.
    pub fn followed_cohorts(&self) -> impl Iterator<Item = (i64, u32)> + '_ {
        self.followed.iter_range(i64::MIN, i64::MAX).map(|(c, &n)| (c, n))
    }

    /// Forgets the sums of cohorts before `bin` (they left the lineage
    /// window), handing each cohort's bin and sums to `f` first.
    pub fn expire_before(&mut self, bin: i64, mut f: impl FnMut(i64, &Cohort)) {
        self.cohorts.drain_before(bin, |c, cohort| f(c, &cohort));
    }

    /// Stops following the clickers of cohorts before `bin` (lazily: see
    /// [`Lineage`]).
    pub fn unfollow_before(&mut self, bin: i64) {
        let mut expired = 0u64;
        self.followed.drain_before(bin, |_, n| expired += u64::from(n));
        if expired == 0 {
            return;
        }
        self.expired += usize::try_from(expired).unwrap_or(usize::MAX);
        let live = self.clickers();
        if live == 0 {
            // Nothing followed any more: give the table's memory back.
            self.clickers.clear();
            self.clickers.shrink_to_fit();
            self.expired = 0;
        } else if self.expired * 2 >= live {
            let live_from = self.followed.base();
            self.clickers.retain(|_, c| c.cohort >= live_from);
            self.expired = 0;
        }
    }

    /// The estimate at the end of bin `last` (cohorts `first..=last`).
    ///
    /// Everything — R̂'s sums, both Pearson statistics and the forward
    /// model's sums — comes from one pass over the cohorts (`WindowSums`);
    /// the module docs give the formulas.
    pub fn estimate(
        &self,
        first: i64,
        last: i64,
        gi: &GenerationInterval,
        forward: Option<&ForwardModel>,
        prior: Prior,
    ) -> LineageEstimate {
        let s = self.window_sums(first, last, gi, forward.map(|f| &f.delay));
        let exposure = s.offspring.exposure;
        let r_hat = if exposure > 0.0 { s.y as f64 / exposure } else { 0.0 };
        let dispersion = s.offspring.dispersion(r_hat, s.offspring.units);
        let shape = prior.shape() + s.y as f64 / dispersion;
        let rate = 1.0 / prior.scale() + exposure / dispersion;
        let lineage = Gamma { shape, scale: 1.0 / rate };
        let mut est =
            LineageEstimate { posterior: lineage, dispersion, offspring: s.y, exposure, clickers: s.clickers, with_forwards: false };
        if let Some(fm) = forward {
            if let Some(pooled) = with_forwards(&s, fm, &lineage) {
                est.posterior = pooled;
                est.with_forwards = true;
            }
        }
        est
    }

    /// The sums of one estimate, in one pass over cohorts `first..=last`.
    fn window_sums(&self, first: i64, last: i64, gi: &GenerationInterval, delay: Option<&GenerationInterval>) -> WindowSums {
        let mut s = WindowSums::default();
        for (c, co) in self.cohorts.iter_range(first, last) {
            let age = (last - c) as usize;
            let f = gi.cdf(age);
            s.y += co.y;
            s.clickers += co.n;
            s.offspring.add(f, co.n, co.y, co.y2);
            if let Some(delay) = delay {
                if f >= 0.9 {
                    s.y_mature += co.y;
                    s.r_mature += co.r;
                }
                s.r += co.r;
                s.addressees.add(delay.cdf(age), co.n, co.r, co.r2);
            }
        }
        s
    }
}

/// Sums over the cohort window that every part of the estimate needs.
#[derive(Debug, Default)]
struct WindowSums {
    /// Σ offspring, over every cohort (also those with F = 0).
    y: u64,
    /// Σ clickers, over every cohort (also those with F = 0).
    clickers: u64,
    /// Offspring per clicker, weighted by the GI CDF F (exposure Σ n·F:
    /// expected offspring per unit R).
    offspring: CohortSums,
    /// Σ offspring and Σ addressees of matured cohorts (F(L) ≥ 0.9).
    y_mature: u64,
    r_mature: u64,
    /// Σ forwarded addressees.
    r: u64,
    /// Addressees per clicker, weighted by the forward-delay CDF G.
    addressees: CohortSums,
}

/// Sums of a per-clicker count (offspring, or forwarded addressees) over
/// cohorts whose observed fraction `f_c` (a delay CDF at the cohort's age) is
/// positive: the clickers `Σ n_c`, the exposure `C = Σ n_c f_c`, `S = Σ S_c`
/// and `A = Σ Q_c / f_c` (`S_c`, `Q_c` the cohort's sum and sum of squares).
///
/// Pearson's statistic `X² = Σ_c (Q_c − 2μ_c S_c + μ_c² n_c) / μ_c` with
/// `μ_c = rate·f_c` is then `A/rate − 2S + rate·C`: the rate estimate and X²
/// come from the same pass.
#[derive(Debug, Default, Clone, Copy)]
struct CohortSums {
    units: u64,
    exposure: f64,
    s1: f64,
    a: f64,
}

impl CohortSums {
    #[inline]
    fn add(&mut self, f: f64, n: u64, s1: u64, s2: u64) {
        if f > 0.0 && n > 0 {
            self.units += n;
            self.exposure += n as f64 * f;
            self.s1 += s1 as f64;
            self.a += s2 as f64 / f;
        }
    }

    /// φ̂ = max(1, X² / (units − 1)); 1 when there is nothing to estimate it from.
    fn dispersion(&self, rate: f64, units: u64) -> f64 {
        if rate <= 0.0 || units < 2 {
            return 1.0;
        }
        let x2 = self.a / rate - 2.0 * self.s1 + rate * self.exposure;
        (x2 / (units - 1) as f64).max(1.0)
    }
}

/// The forward-based estimate pooled with the lineage posterior, if the
/// matured cohorts hold enough addressees (module docs).
fn with_forwards(s: &WindowSums, fm: &ForwardModel, lineage: &Gamma) -> Option<Gamma> {
    let forward_exposure = s.addressees.exposure;
    if (s.r_mature as f64) < 4.0 * fm.click_prior_weight || forward_exposure <= 0.0 || s.r == 0 {
        return None;
    }
    let w = fm.click_prior_weight;
    let q = (s.y_mature as f64 + fm.click_prior * w) / (s.r_mature as f64 + w);
    let m = s.r as f64 / forward_exposure;
    let phi_m = s.addressees.dispersion(m, s.addressees.units);
    // Offspring per addressee are overdispersed like offspring per clicker:
    // reuse the lineage dispersion for q's binomial variance.
    let phi_q = s.offspring.dispersion(lineage.mean().max(1e-9), 2);
    let var_q = phi_q * q * (1.0 - q).max(0.0) / (s.r_mature as f64 + w);
    let var_m = phi_m * m / forward_exposure;
    let r_fwd = q * m;
    if r_fwd <= 0.0 {
        return None;
    }
    let var_fwd = r_fwd * r_fwd * (var_q / (q * q) + var_m / (m * m));
    let (mu_l, var_l) = (lineage.mean(), lineage.var());
    let mean = (mu_l / var_l + r_fwd / var_fwd) / (1.0 / var_l + 1.0 / var_fwd);
    let var = var_l.min(var_fwd);
    if !(mean > 0.0 && var > 0.0 && mean.is_finite() && var.is_finite()) {
        return None;
    }
    Some(Gamma { shape: mean * mean / var, scale: var / mean })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gi() -> GenerationInterval {
        GenerationInterval::from_mean_sd_bins(3.0, 1.5).expect("valid")
    }

    #[test]
    fn fully_observed_cohort_gives_offspring_mean() {
        // 4 clickers in bin 0 with 0, 0, 1, 5 offspring; by bin 40 F(40) ≈ 1.
        let mut l = Lineage::new(0, 1000);
        for p in 1..=4 {
            assert!(l.add_clicker(p, 0));
        }
        l.add_offspring(3);
        for _ in 0..5 {
            l.add_offspring(4);
        }
        assert!(l.add_offspring(99).is_none(), "unknown parent is not linked");
        let prior = Prior { mean: 5.0, sd: 5.0 };
        let e = l.estimate(0, 40, &gi(), None, prior);
        assert_eq!(e.offspring, 6);
        assert!((e.exposure - 4.0).abs() < 1e-3);
        // Hand computation: R̂ = 6/4 = 1.5; Pearson X² = Σ (y−1.5)²/1.5
        // = (2.25+2.25+0.25+12.25)/1.5 = 11.333…; φ = X²/(4−1) = 3.777…
        let phi = 17.0 / 1.5 / 3.0;
        assert!((e.dispersion - phi).abs() < 1e-3, "{}", e.dispersion);
        // Posterior Gamma(1 + 6/φ, rate 1/5 + 4/φ).
        let f = e.exposure;
        let shape = 1.0 + 6.0 / phi;
        let rate = 0.2 + f / phi;
        assert!((e.posterior.mean() - shape / rate).abs() < 1e-3);
    }

    /// The estimator as the module docs define it, one formula per pass
    /// (Pearson's X² summed term by term with μ known), to check the
    /// single-pass sums against.
    fn reference(l: &Lineage, first: i64, last: i64, gi: &GenerationInterval, fm: &ForwardModel, prior: Prior) -> Gamma {
        let cohorts = || (first.max(l.cohorts.base())..=last).filter_map(|c| l.cohorts.get(c).map(|co| (c, co)));
        let pearson = |rate: f64, units: u64, cdf: &dyn Fn(usize) -> f64, sums: &dyn Fn(&Cohort) -> (u64, u64)| {
            if rate <= 0.0 || units < 2 {
                return 1.0;
            }
            let mut x2 = 0.0;
            for (c, co) in cohorts() {
                let f = cdf((last - c) as usize);
                if f <= 0.0 || co.n == 0 {
                    continue;
                }
                let mu = rate * f;
                let (s1, s2) = sums(co);
                x2 += (s2 as f64 - 2.0 * mu * s1 as f64 + mu * mu * co.n as f64) / mu;
            }
            (x2 / (units - 1) as f64).max(1.0f64)
        };
        let (mut y, mut exposure, mut clickers) = (0u64, 0.0, 0u64);
        for (c, co) in cohorts() {
            let f = gi.cdf((last - c) as usize);
            y += co.y;
            exposure += co.n as f64 * f;
            if f > 0.0 {
                clickers += co.n;
            }
        }
        let r_hat = if exposure > 0.0 { y as f64 / exposure } else { 0.0 };
        let phi = pearson(r_hat, clickers, &|a| gi.cdf(a), &|co| (co.y, co.y2));
        let lineage = Gamma { shape: prior.shape() + y as f64 / phi, scale: 1.0 / (1.0 / prior.scale() + exposure / phi) };
        let (mut y_mat, mut r_mat, mut r_all, mut fexp, mut units) = (0u64, 0u64, 0u64, 0.0, 0u64);
        for (c, co) in cohorts() {
            let age = (last - c) as usize;
            if gi.cdf(age) >= 0.9 {
                y_mat += co.y;
                r_mat += co.r;
            }
            let g = fm.delay.cdf(age);
            r_all += co.r;
            fexp += co.n as f64 * g;
            if g > 0.0 {
                units += co.n;
            }
        }
        if (r_mat as f64) < 4.0 * fm.click_prior_weight || fexp <= 0.0 || r_all == 0 {
            return lineage;
        }
        let w = fm.click_prior_weight;
        let q = (y_mat as f64 + fm.click_prior * w) / (r_mat as f64 + w);
        let m = r_all as f64 / fexp;
        let phi_m = pearson(m, units, &|a| fm.delay.cdf(a), &|co| (co.r, co.r2));
        let phi_q = pearson(lineage.mean().max(1e-9), 2, &|a| gi.cdf(a), &|co| (co.y, co.y2));
        let var_q = phi_q * q * (1.0 - q).max(0.0) / (r_mat as f64 + w);
        let var_m = phi_m * m / fexp;
        let r_fwd = q * m;
        let var_fwd = r_fwd * r_fwd * (var_q / (q * q) + var_m / (m * m));
        let (mu_l, var_l) = (lineage.mean(), lineage.var());
        let mean = (mu_l / var_l + r_fwd / var_fwd) / (1.0 / var_l + 1.0 / var_fwd);
        let var = var_l.min(var_fwd);
        Gamma { shape: mean * mean / var, scale: var / mean }
    }

    #[test]
    fn single_pass_sums_equal_the_term_by_term_definition() {
        let g = GenerationInterval::from_mean_sd_bins(17.0, 10.0).expect("valid");
        let fm = ForwardModel {
            delay: GenerationInterval::from_mean_sd_bins(7.0, 6.0).expect("valid"),
            click_prior: 0.3,
            click_prior_weight: 50.0,
        };
        let prior = Prior { mean: 5.0, sd: 5.0 };
        // A small deterministic generator (no dependency): offspring and
        // forwards heavily overdispersed, as in pass-along.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut checked_forwards = 0;
        for case in 0..40 {
            let mut l = Lineage::new(0, 1_000_000);
            let bins = 20 + next(60) as i64;
            let mut person = 0u64;
            for b in 0..bins {
                for _ in 0..next(40 + case) {
                    person += 1;
                    l.add_clicker(person, b);
                    if next(5) == 0 {
                        for _ in 0..next(12) {
                            l.add_offspring(person);
                        }
                    }
                    if next(3) == 0 {
                        l.add_forward(person, next(30));
                    }
                }
            }
            let first = next(bins as u64) as i64;
            let fast = l.estimate(first, bins - 1, &g, Some(&fm), prior);
            let slow = reference(&l, first, bins - 1, &g, &fm, prior);
            checked_forwards += usize::from(fast.with_forwards);
            for (a, b) in [(fast.posterior.shape, slow.shape), (fast.posterior.scale, slow.scale)] {
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-12), "case {case}: {a} vs {b}");
            }
        }
        assert!(checked_forwards >= 10, "the forward branch was exercised in {checked_forwards} cases");
    }

    #[test]
    fn censoring_correction_uses_gi_cdf() {
        let g = gi();
        let mut l = Lineage::new(0, 1000);
        for p in 0..100 {
            l.add_clicker(p, 0);
        }
        for p in 0..30 {
            l.add_offspring(p);
        }
        // At the end of bin 3 only F(3) of the offspring can have clicked.
        let e = l.estimate(0, 3, &g, None, Prior { mean: 5.0, sd: 5.0 });
        let f3 = g.cdf(3);
        assert!((e.exposure - 100.0 * f3).abs() < 1e-9);
        assert!(e.offspring == 30);
    }

    #[test]
    fn expiry_forgets_clickers() {
        let mut l = Lineage::new(0, 1000);
        l.add_clicker(1, 0);
        l.add_clicker(2, 1);
        l.expire_before(1, |_, _| {});
        l.unfollow_before(1);
        assert!(l.add_offspring(1).is_none());
        assert!(l.add_offspring(2).is_some());
        assert_eq!(l.clickers(), 1);
    }

    #[test]
    fn an_expired_clicker_clicking_again_starts_a_new_cohort() {
        let mut l = Lineage::new(0, 1000);
        assert!(l.add_clicker(1, 0));
        assert!(!l.add_clicker(1, 0), "first click wins");
        l.expire_before(1, |_, _| {});
        l.unfollow_before(1);
        assert_eq!(l.clickers(), 0);
        assert!(!l.add_forward(1, 3), "an expired clicker is not followed");
        assert!(l.add_clicker(1, 2));
        assert!(l.add_forward(1, 3));
        assert_eq!(l.cohorts.get(2).map(|c| (c.n, c.r)), Some((1, 3)));
        assert_eq!(l.clickers(), 1);
    }

    proptest::proptest! {
        /// Lazy expiry against eager removal (a map person → cohort from
        /// which expired cohorts' clickers are removed at once): the same
        /// answers, the same count, and at most 1.5 table entries per
        /// followed clicker.
        #[test]
        fn lazy_expiry_behaves_like_removal(ops in proptest::collection::vec((0u8..4, 0u64..60, 0i64..3), 1..600)) {
            let mut l = Lineage::new(0, 40);
            let mut model: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
            let mut now = 0i64;
            let mut base = 0i64;
            for (op, person, step) in ops {
                match op {
                    0 => {
                        let bin = now + step;
                        let expected = !model.contains_key(&person) && model.len() < 40;
                        if expected {
                            model.insert(person, bin);
                        }
                        proptest::prop_assert_eq!(l.add_clicker(person, bin), expected);
                    }
                    1 => proptest::prop_assert_eq!(l.add_offspring(person).is_some(), model.contains_key(&person)),
                    2 => proptest::prop_assert_eq!(l.add_forward(person, 2), model.contains_key(&person)),
                    _ => {
                        now += step;
                        base = base.max(now - 2);
                        l.expire_before(base, |_, _| {});
        l.unfollow_before(base);
                        model.retain(|_, &mut c| c >= base);
                    }
                }
                proptest::prop_assert_eq!(l.clickers(), model.len());
                proptest::prop_assert!(l.expired == 0 || l.expired * 2 < l.clickers(), "{} expired, {} live", l.expired, l.clickers());
            }
        }
    }

    #[test]
    fn clickers_followed_past_the_lineage_window_link_but_do_not_count() {
        let mut l = Lineage::new(0, 1000);
        l.add_clicker(1, 0);
        l.add_clicker(2, 5);
        // Lineage window: cohorts from 3 on; followed: cohorts from 0 on.
        l.expire_before(3, |_, _| {});
        assert_eq!(l.add_offspring(1), Some(0), "still followed: its child is linked to cohort 0");
        assert_eq!(l.add_offspring(2), Some(5));
        assert!(l.cohorts.get(0).is_none());
        assert_eq!(l.cohorts.get(5).map(|c| c.y), Some(1), "only the cohort in the window counts the child");
        l.unfollow_before(3);
        assert!(l.add_offspring(1).is_none());
        assert_eq!(l.clickers(), 1);
    }

    #[test]
    fn clicker_limit_sheds() {
        let mut l = Lineage::new(0, 2);
        assert!(l.add_clicker(1, 0));
        assert!(l.add_clicker(2, 0));
        assert!(!l.add_clicker(3, 0));
        assert_eq!(l.shed(), 1);
    }
}
