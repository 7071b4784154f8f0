#!/usr/bin/env Rscript
# Generates tests/fixtures/epiestim/*.json: inputs and outputs of the real
# EpiEstim::estimate_R(method = "parametric_si") (Cori et al. 2013, Am J
# Epidemiol 178(9):1505-1512; imported cases as Thompson et al. 2019,
# Epidemics 29:100356), checked by tests/epiestim_reference.rs.
#
# Usage (from the crate root; needs R >= 4 and EpiEstim, e.g. Debian's
# r-cran-epiestim 2.2-4):  Rscript scripts/epiestim-fixtures.R [OUT_DIR]
# (OUT_DIR defaults to tests/fixtures/epiestim; scripts/test writes to a
# temporary folder and compares with scripts/compare-fixtures.py.)
#
# Every number is written with 17 significant digits ("%.17g"), so the JSON
# round-trips R's doubles exactly. Windows that EpiEstim reports as NA
# (t_end <= mean of its si_distr) are written as null.
#
# What EpiEstim does (read from EpiEstim:::estimate_R_func, process_I,
# overall_infectivity, check_times in 2.2-4), recorded in each fixture:
#  * si_distr = discr_si(0:(T-1), mean_si, std_si), T = nrow(incid): not
#    renormalised, not cut at a mass threshold; padded with one 0 to T+1.
#  * process_I: if incid$local[1] > 0 it is moved to incid$imported[1] (with a
#    warning): all day-1 cases count as imported.
#  * lambda[1] = NA; lambda[t] = sum(si_distr[1:t] * (local + imported)[t:1]).
#  * t_start, t_end must be integers in 2..T (check_times).
#  * a_post = a_prior + sum(local[t_start:t_end]);
#    b_post = 1 / (1/b_prior + sum(lambda[t_start:t_end])),
#    only if t_end > sum(si_distr * (0:(length(si_distr)-1))), else NA.
#  * Mean = a*b, Std = sqrt(a)*b, quantiles = qgamma(p, a, scale = b).

suppressPackageStartupMessages(library(EpiEstim))

args <- commandArgs(trailingOnly = TRUE)
out_dir <- if (length(args) >= 1) args[[1]] else file.path("tests", "fixtures", "epiestim")
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)

num <- function(x) ifelse(is.na(x), "null", sprintf("%.17g", x))
arr <- function(x) paste0("[", paste(num(x), collapse = ", "), "]")
str_json <- function(s) paste0("\"", gsub("\"", "\\\\\"", s), "\"")

fixture <- function(name, description, local, imported, mean_si, std_si, t_start, t_end,
                    mean_prior = 5, std_prior = 5) {
  T <- length(local)
  incid <- data.frame(dates = seq(as.Date("2020-01-01"), by = 1, length.out = T),
                      local = local, imported = imported)
  res <- suppressWarnings(estimate_R(
    incid = incid, method = "parametric_si",
    config = make_config(list(mean_si = mean_si, std_si = std_si,
                              t_start = t_start, t_end = t_end,
                              mean_prior = mean_prior, std_prior = std_prior))))
  R <- res$R
  windows <- vapply(seq_len(nrow(R)), function(i) {
    sprintf("    {\"t_start\": %d, \"t_end\": %d, \"mean\": %s, \"std\": %s, \"q025\": %s, \"median\": %s, \"q975\": %s}",
            as.integer(R$t_start[i]), as.integer(R$t_end[i]), num(R$`Mean(R)`[i]), num(R$`Std(R)`[i]),
            num(R$`Quantile.0.025(R)`[i]), num(R$`Median(R)`[i]), num(R$`Quantile.0.975(R)`[i]))
  }, character(1))
  json <- paste0(
    "{\n",
    "  \"name\": ", str_json(name), ",\n",
    "  \"description\": ", str_json(description), ",\n",
    "  \"generator\": ", str_json(sprintf("scripts/epiestim-fixtures.R with EpiEstim %s, %s",
                                         as.character(packageVersion("EpiEstim")), R.version.string)), ",\n",
    "  \"mean_si\": ", num(mean_si), ",\n",
    "  \"std_si\": ", num(std_si), ",\n",
    "  \"mean_prior\": ", num(mean_prior), ",\n",
    "  \"std_prior\": ", num(std_prior), ",\n",
    "  \"local_input\": ", arr(local), ",\n",
    "  \"imported_input\": ", arr(imported), ",\n",
    "  \"local_used\": ", arr(res$I_local), ",\n",
    "  \"imported_used\": ", arr(res$I_imported), ",\n",
    "  \"si_distr\": ", arr(as.numeric(res$si_distr)), ",\n",
    "  \"si_mean\": ", num(res$SI.Moments$Mean), ",\n",
    "  \"discr_si_check\": ", arr(discr_si(0:(T - 1), mean_si, std_si)), ",\n",
    "  \"windows\": [\n", paste(windows, collapse = ",\n"), "\n  ]\n",
    "}\n")
  path <- file.path(out_dir, paste0(name, ".json"))
  writeLines(json, path, sep = "")
  cat("wrote", path, "\n")
}

# 1. Imported cases (Thompson et al. 2019): imports seed and keep arriving;
#    only local cases enter the posterior shape, both enter Lambda.
fixture("imported",
        "Short series with imported cases on several days; weekly sliding windows; SI 2.6/1.5 (Flu2009 vignette values)",
        local    = c(0, 1, 2, 1, 3, 4, 2, 6, 5, 8, 7, 9, 12, 10, 14, 11, 15, 13, 18, 16),
        imported = c(3, 2, 0, 1, 0, 2, 0, 0, 1, 0, 3, 0, 0, 0, 1, 0, 0, 2, 0, 0),
        mean_si = 2.6, std_si = 1.5,
        t_start = 2:14, t_end = 8:20)

# 2. Zeros: long runs of zero incidence, windows with no local cases at all
#    (posterior shape = prior shape), and day-1 local cases (moved to imported
#    by EpiEstim's process_I).
fixture("zeros",
        "Day-1 local cases (EpiEstim moves them to imported), runs of zeros, windows with zero local cases; 3-day windows; SI 3/1.5",
        local    = c(4, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 3, 0, 0, 0, 0, 0),
        imported = c(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        mean_si = 3, std_si = 1.5,
        t_start = 2:23, t_end = 4:25)

# 3. Long epidemic-shaped series (deterministic renewal curve, R stepping
#    3 -> 0.7), in "bins" with the generation interval floodgate uses by
#    default for email (17 min mean, 10 min sd, 1-minute bins); some early
#    windows end before the SI mean and are NA in EpiEstim.
epi <- local({
  T <- 120
  w <- discr_si(0:(T - 1), 17, 10)
  I <- numeric(T)
  I[1] <- 200
  for (t in 2:T) {
    Rt <- if (t < 50) 1.6 else if (t < 80) 1.1 else 0.7
    I[t] <- round(Rt * sum(w[2:t] * I[(t - 1):1]) + 50 * (t %% 3 == 0) * (t < 20))
  }
  I
})
fixture("epidemic",
        "120-bin epidemic curve (renewal, R 1.6 -> 1.1 -> 0.7), SI 17/10 bins; weekly windows incl. NA ones before the SI mean, plus long windows",
        local    = c(0, epi[-1]),
        imported = c(epi[1], rep(0, 119)),
        mean_si = 17, std_si = 10,
        t_start = c(2:114, 2, 30, 61, 2), t_end = c(8:120, 60, 90, 120, 120))

# 4. EpiEstim's own example data (Flu2009, Cori et al. 2013 Fig. 2 / the
#    package vignette), weekly sliding windows, parametric SI 2.6/1.5, and a
#    non-default prior.
data("Flu2009", package = "EpiEstim")
flu <- Flu2009$incidence$I
fixture("flu2009",
        "EpiEstim's Flu2009 incidence (pandemic influenza, Pennsylvania school 2009), weekly windows, SI 2.6/1.5, prior mean 2 sd 3",
        local    = c(0, flu[-1]),
        imported = c(flu[1], rep(0, length(flu) - 1)),
        mean_si = 2.6, std_si = 1.5,
        t_start = 2:26, t_end = 8:32,
        mean_prior = 2, std_prior = 3)
