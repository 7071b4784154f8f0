//! floodgate's renewal estimator against the real EpiEstim (Cori et al. 2013,
//! Am J Epidemiol 178(9):1505–1512; imported cases as Thompson et al. 2019,
//! Epidemics 29:100356).
//!
//! The fixtures in `tests/fixtures/epiestim/` were produced by
//! `scripts/epiestim-fixtures.R`, which calls
//! `EpiEstim::estimate_R(incid = data.frame(dates, local, imported),
//! method = "parametric_si", config = make_config(...))` (EpiEstim 2.2-4,
//! R 4.2) and writes inputs and outputs with 17 significant digits, so this
//! test needs no R.
//!
//! To reproduce `estimate_R` the test applies EpiEstim's conventions:
//!
//! * w = `discr_si(0:(T−1), mean_si, std_si)` over the whole series length T,
//!   not renormalised (EpiEstim's `estimate_R_func`; its `si_distr` output is
//!   that vector padded with one trailing 0);
//! * first-bin rule (`process_I`): local cases of the first bin are moved to
//!   imported;
//! * windows are 1-based `t_start..=t_end` with `t_start ≥ 2`, i.e. bins
//!   `t_start−1..=t_end−1` here;
//! * EpiEstim reports NA unless `t_end > Σ_k k·si_distr[k]`.
//!
//! Tolerances: mean and sd 1e-6 relative, 2.5 % / 97.5 % quantiles 1e-5
//! relative (observed agreement is ~1e-14 and ~1e-12). A second check
//! measures how far the engine's truncated [`GenerationInterval`] weights
//! (mass ≥ 1 − 1e-9, see `floodgate::engine::generation_interval`) move the
//! answer.

use std::path::Path;

use floodgate::engine::gamma::Gamma;
use floodgate::engine::generation_interval::{discr_si, GenerationInterval};
use floodgate::engine::renewal::{posterior, Prior};
use serde::Deserialize;

#[derive(Deserialize)]
struct Window {
    t_start: usize,
    t_end: usize,
    mean: Option<f64>,
    std: Option<f64>,
    q025: Option<f64>,
    median: Option<f64>,
    q975: Option<f64>,
}

#[derive(Deserialize)]
struct Fixture {
    name: String,
    mean_si: f64,
    std_si: f64,
    mean_prior: f64,
    std_prior: f64,
    local_input: Vec<f64>,
    imported_input: Vec<f64>,
    local_used: Vec<f64>,
    imported_used: Vec<f64>,
    si_distr: Vec<f64>,
    si_mean: f64,
    discr_si_check: Vec<f64>,
    windows: Vec<Window>,
}

fn load_all() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/epiestim");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let fixtures: Vec<Fixture> = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect();
    assert!(fixtures.len() >= 4, "expected the 4 fixtures from scripts/epiestim-fixtures.R, found {}", fixtures.len());
    fixtures
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / b.abs()
    }
}

/// EpiEstim's `process_I`: all first-bin cases are imported.
fn first_bin_rule(local: &[f64], imported: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (mut l, mut i) = (local.to_vec(), imported.to_vec());
    if l[0] > 0.0 {
        i[0] += l[0];
        l[0] = 0.0;
    }
    (l, i)
}

/// w exactly as `estimate_R_func` builds it for parametric_si.
fn epiestim_w(f: &Fixture) -> Vec<f64> {
    (0..f.local_input.len()).map(|k| discr_si(k, f.mean_si, f.std_si)).collect()
}

#[test]
fn discr_si_matches_epiestim_si_distr() {
    let (mut worst_abs, mut worst_rel) = (0.0f64, 0.0f64);
    for f in load_all() {
        let t = f.local_input.len();
        let w = epiestim_w(&f);
        assert_eq!(f.si_distr.len(), t + 1, "{}: EpiEstim pads si_distr to T+1", f.name);
        assert_eq!(f.si_distr[t], 0.0, "{}", f.name);
        for (k, (&ours, (&theirs, &check))) in w.iter().zip(f.si_distr.iter().zip(&f.discr_si_check)).enumerate() {
            assert_eq!(theirs, check, "{}: si_distr is discr_si(0:(T-1)) unmodified (no renormalisation)", f.name);
            // The formula cancels terms of size ~k (k·F(k) − 2(k−1)F(k−1) + …),
            // so incomplete-gamma rounding of ~1e-16 shows up as ~k·1e-16 absolute.
            let err = (ours - theirs).abs();
            assert!(err <= 1e-11 * theirs + 1e-15 * (k as f64 + 1.0), "{} k {k}: ours {ours:e} EpiEstim {theirs:e}", f.name);
            worst_abs = worst_abs.max(err);
            if theirs > 1e-6 {
                worst_rel = worst_rel.max(err / theirs);
            }
        }
        let mean: f64 = w.iter().enumerate().map(|(k, w)| k as f64 * w).sum();
        assert!(rel(mean, f.si_mean) < 1e-12, "{}: SI mean {mean} vs {}", f.name, f.si_mean);
    }
    eprintln!("discr_si vs EpiEstim: worst absolute difference {worst_abs:e}, worst relative (w > 1e-6) {worst_rel:e}");
}

#[test]
fn posterior_matches_estimate_r() {
    let mut compared = 0;
    let mut worst = [0.0f64; 4];
    for f in load_all() {
        let (local, imported) = first_bin_rule(&f.local_input, &f.imported_input);
        assert_eq!(local, f.local_used, "{}: first-bin rule", f.name);
        assert_eq!(imported, f.imported_used, "{}: first-bin rule", f.name);
        let w = epiestim_w(&f);
        let si_mean: f64 = w.iter().enumerate().map(|(k, w)| k as f64 * w).sum();
        let prior = Prior { mean: f.mean_prior, sd: f.std_prior };
        for win in &f.windows {
            assert!(win.t_start >= 2 && win.t_start <= win.t_end, "{}: EpiEstim windows start at 2", f.name);
            let (Some(mean), Some(std), Some(q025), Some(median), Some(q975)) = (win.mean, win.std, win.q025, win.median, win.q975) else {
                // EpiEstim's NA rule: t_end must exceed the SI mean.
                assert!((win.t_end as f64) <= si_mean, "{}: unexpected NA for window {}..{}", f.name, win.t_start, win.t_end);
                continue;
            };
            assert!((win.t_end as f64) > si_mean);
            let g: Gamma = posterior(&local, &imported, &w, win.t_start - 1, win.t_end - 1, prior);
            let errs = [rel(g.mean(), mean), rel(g.sd(), std), rel(g.quantile(0.025), q025), rel(g.quantile(0.975), q975)];
            let ctx = format!("{} window {}..{} (shape {}, scale {})", f.name, win.t_start, win.t_end, g.shape, g.scale);
            assert!(errs[0] < 1e-6, "{ctx}: mean {} vs EpiEstim {mean}", g.mean());
            assert!(errs[1] < 1e-6, "{ctx}: sd {} vs EpiEstim {std}", g.sd());
            assert!(errs[2] < 1e-5, "{ctx}: q2.5% {} vs EpiEstim {q025}", g.quantile(0.025));
            assert!(errs[3] < 1e-5, "{ctx}: q97.5% {} vs EpiEstim {q975}", g.quantile(0.975));
            assert!(rel(g.quantile(0.5), median) < 1e-5, "{ctx}: median {} vs EpiEstim {median}", g.quantile(0.5));
            for (w, e) in worst.iter_mut().zip(errs) {
                *w = w.max(e);
            }
            compared += 1;
        }
    }
    eprintln!(
        "compared {compared} windows; worst relative error mean {:e}, sd {:e}, q2.5% {:e}, q97.5% {:e}",
        worst[0], worst[1], worst[2], worst[3]
    );
    assert!(compared >= 150, "only {compared} windows compared");
}

/// The engine uses `GenerationInterval` (support cut where the mass reaches
/// 1 − 1e-9, not renormalised) instead of EpiEstim's discr_si(0:(T−1)). Λ_t
/// then misses Σ_{s>K} w_s I_{t−s} ≤ tail · max_{u<t−K} I_u, so Σ_τ Λ and the
/// posterior scale change by at most |τ| · tail · max I / (1/b + Σ_τ Λ):
/// identical while t_end ≤ K, and small unless incidence has fallen far below
/// its earlier peak (worst here: the `zeros` fixture, ~6e-4, windows with
/// almost no recent cases that still feel cases beyond the support).
#[test]
fn truncated_generation_interval_stays_close() {
    let mut worst = 0.0f64;
    let mut worst_at = String::new();
    for f in load_all() {
        let (local, imported) = first_bin_rule(&f.local_input, &f.imported_input);
        let gi = match GenerationInterval::from_mean_sd_bins(f.mean_si, f.std_si) {
            Ok(gi) => gi,
            Err(e) => panic!("{}: {e}", f.name),
        };
        let full = epiestim_w(&f);
        // Same values where both are defined.
        for (a, b) in gi.weights().iter().zip(&full) {
            assert_eq!(a, b);
        }
        let prior = Prior { mean: f.mean_prior, sd: f.std_prior };
        for win in f.windows.iter().filter(|w| w.mean.is_some()) {
            let exact = posterior(&local, &imported, &full, win.t_start - 1, win.t_end - 1, prior);
            let trunc = posterior(&local, &imported, gi.weights(), win.t_start - 1, win.t_end - 1, prior);
            assert_eq!(exact.shape, trunc.shape);
            let e = rel(trunc.mean(), exact.mean());
            if win.t_end <= gi.len() {
                assert_eq!(e, 0.0, "{}: identical while the window is within the support", f.name);
            }
            let tail: f64 = full.iter().skip(gi.len()).sum();
            let max_i = local.iter().zip(&imported).map(|(l, i)| l + i).fold(0.0, f64::max);
            let delta = (win.t_end - win.t_start + 1) as f64 * tail * max_i;
            let bound = delta / (1.0 / exact.scale - delta);
            assert!(
                e <= bound * (1.0 + 1e-9) + 1e-15,
                "{} window {}..{}: truncated-support mean off by {e:e} > bound {bound:e}",
                f.name,
                win.t_start,
                win.t_end
            );
            assert!(e < 1e-3, "{} window {}..{}: truncated-support mean off by {e:e}", f.name, win.t_start, win.t_end);
            if e > worst {
                worst = e;
                worst_at = format!("{} window {}..{}", f.name, win.t_start, win.t_end);
            }
        }
    }
    eprintln!("truncated support: worst relative change of the posterior mean {worst:e} ({worst_at})");
}
