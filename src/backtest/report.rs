//! The self-contained HTML report of a backtest: inline CSS, inline SVG
//! charts drawn here, and a little inline JavaScript (hover read-outs and a
//! self-check that sets `document.title` to `ok` once every chart has
//! rendered — the browser test reads it). Nothing is fetched from the network.

use std::fmt::Write;

use super::capacity::MIN;
use super::policy::POLICIES;
use super::sweep::{StartupFrontier, Sweep, SweepPoint, ORACLE};
use super::{Backtest, CampaignRun, TargetRun};
use crate::time::{format_duration_ms, rfc3339};

/// Colours of the policies, in [`POLICIES`] order.
const COLOURS: [&str; 3] = ["#d9480f", "#7048e8", "#1971c2"];

/// Escapes text for HTML (element content and attribute values).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn hhmm(ms: i64) -> String {
    rfc3339(ms).get(11..16).unwrap_or("").to_string()
}

fn opt(x: Option<f64>) -> String {
    x.map_or("–".to_string(), |v| format!("{v:.1}"))
}

/// A "nice" step for about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.abs() >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Geometry of one chart: plot area and data ranges.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    t0: i64,
    t1: i64,
    y1: f64,
}

impl Frame {
    fn x(&self, t: i64) -> f64 {
        let pw = self.w - self.left - self.right;
        self.left + pw * (t - self.t0) as f64 / (self.t1 - self.t0).max(1) as f64
    }
    fn y(&self, v: f64) -> f64 {
        let ph = self.h - self.top - self.bottom;
        self.top + ph * (1.0 - (v / self.y1).clamp(0.0, 1.05))
    }
    fn axes(&self, out: &mut String, y_label: &str) {
        let (x0, x1) = (self.left, self.w - self.right);
        let (yb, yt) = (self.h - self.bottom, self.top);
        let ystep = nice_step(self.y1, 5.0);
        let mut v = 0.0;
        while v <= self.y1 + 1e-9 {
            let y = self.y(v);
            let _ = write!(
                out,
                r##"<line x1="{x0:.1}" x2="{x1:.1}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                fmt_num(v)
            );
            v += ystep;
        }
        let span = self.t1 - self.t0;
        let tstep = [5, 10, 15, 30, 60, 120, 240, 360, 720, 1440].iter().map(|m| m * MIN).find(|s| span / s <= 12).unwrap_or(1440 * MIN);
        let mut t = (self.t0 + tstep - 1).div_euclid(tstep) * tstep;
        while t <= self.t1 {
            let x = self.x(t);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{yt:.1}" y2="{yb:.1}" class="grid"/><text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"##,
                yb + 16.0,
                hhmm(t)
            );
            t += tstep;
        }
        let _ = write!(
            out,
            r##"<line x1="{x0:.1}" x2="{x1:.1}" y1="{yb:.1}" y2="{yb:.1}" class="axis"/><line x1="{x0:.1}" x2="{x0:.1}" y1="{yt:.1}" y2="{yb:.1}" class="axis"/><text x="12" y="{:.1}" class="label" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"##,
            (yt + yb) / 2.0,
            (yt + yb) / 2.0,
            esc(y_label)
        );
    }
}

/// A step-function path through per-minute values.
fn step_path(f: &Frame, start_ms: i64, values: impl Iterator<Item = f64>) -> String {
    let mut d = String::new();
    for (m, v) in values.enumerate() {
        let (a, b) = (start_ms + m as i64 * MIN, start_ms + (m as i64 + 1) * MIN);
        let y = f.y(v);
        if m == 0 {
            let _ = write!(d, "M{:.1},{y:.1}", f.x(a));
        } else {
            let _ = write!(d, "V{y:.1}");
        }
        let _ = write!(d, "H{:.1}", f.x(b));
    }
    d
}

fn target_chart(b: &Backtest, t: &TargetRun, idx: usize, out: &mut String) {
    let f_w = 1200.0;
    let n = b.minutes;
    let demand: Vec<f64> = t.requests_per_minute.iter().map(|r| r / 60.0).collect();
    let caps: Vec<Vec<f64>> = t.policies.iter().map(|p| p.capacity_per_minute.iter().map(|c| c / 60.0).collect()).collect();
    let ymax = demand.iter().chain(caps.iter().flatten()).copied().fold(1.0, f64::max);
    let strip = 14.0;
    let f = Frame {
        w: f_w,
        h: 340.0 + strip * t.policies.len() as f64,
        left: 64.0,
        right: 16.0,
        top: 24.0,
        bottom: 34.0 + strip * t.policies.len() as f64,
        t0: b.start_ms,
        t1: b.start_ms + n as i64 * MIN,
        y1: ymax * 1.05,
    };
    let _ = write!(
        out,
        r##"<svg class="chart target-chart" id="target-{idx}" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="requests and capacity of {name}" data-series="series-{idx}">"##,
        w = f.w,
        h = f.h,
        name = esc(&t.target)
    );
    f.axes(out, "requests/s");
    // Demand as a filled area.
    let line = step_path(&f, b.start_ms, demand.iter().copied());
    let base = f.y(0.0);
    let _ = write!(out, r##"<path class="demand" d="{line}V{base:.1}H{:.1}Z"/>"##, f.x(b.start_ms));
    // Capacity per policy.
    for (i, c) in caps.iter().enumerate() {
        let _ = write!(
            out,
            r##"<path class="cap" stroke="{}" d="{}"><title>{} ready capacity</title></path>"##,
            COLOURS[i % 3],
            step_path(&f, b.start_ms, c.iter().copied()),
            POLICIES[i % 3]
        );
    }
    // Viral onsets and surges of this target's campaigns.
    for c in b.campaigns.iter().filter(|c| c.target.as_deref() == Some(&t.target)) {
        if let Some(o) = c.viral_onset_ms {
            let x = f.x(o + b.allowed_lateness_ms);
            let _ = write!(
                out,
                r##"<line class="onset" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{base:.1}"><title>viral_onset {} (acted on at {})</title></line><text class="onset-label" x="{:.1}" y="{:.1}">{}</text>"##,
                f.top,
                esc(&c.campaign),
                hhmm(o + b.allowed_lateness_ms),
                x + 3.0,
                f.top + 10.0,
                esc(&c.campaign)
            );
        }
        if let (Some(s), Some(_)) = (c.surge_ms, c.viral_onset_ms) {
            let x = f.x(s);
            let _ = write!(
                out,
                r##"<line class="surge" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{base:.1}"><title>surge of {} at {}</title></line>"##,
                f.top,
                esc(&c.campaign),
                hhmm(s)
            );
        }
    }
    // floodgate's decisions as markers on the top edge.
    for m in &t.scale_ahead {
        let x = f.x(m.effective_ms);
        let y = f.top - 2.0;
        let _ = write!(
            out,
            r##"<path class="mark" d="M{:.1},{:.1}L{:.1},{:.1}L{x:.1},{y:.1}Z"><title>scale_ahead → {} replicas ({}, {} → acted on {})</title></path>"##,
            x - 4.0,
            y - 8.0,
            x + 4.0,
            y - 8.0,
            m.desired_replicas,
            m.reason,
            hhmm(m.signal_ms),
            hhmm(m.effective_ms)
        );
    }
    // Overload strips: one row per policy, red where requests exceeded capacity.
    for (i, p) in t.policies.iter().enumerate() {
        let y = f.h - strip * (t.policies.len() - i) as f64 - 4.0;
        let _ =
            write!(out, r##"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##, f.left - 6.0, y + 10.0, POLICIES[i % 3]);
        let _ = write!(
            out,
            r##"<rect class="strip" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"/>"##,
            f.left,
            f.w - f.left - f.right,
            strip - 3.0
        );
        for (m, (&r, &c)) in t.requests_per_minute.iter().zip(&p.capacity_per_minute).enumerate() {
            if r > c + 1e-9 {
                let (a, bb) = (f.x(b.start_ms + m as i64 * MIN), f.x(b.start_ms + (m as i64 + 1) * MIN));
                let _ = write!(
                    out,
                    r##"<rect class="over" x="{a:.1}" y="{y:.1}" width="{:.2}" height="{:.1}"><title>{}: {:.0} requests over capacity at {}</title></rect>"##,
                    (bb - a).max(1.0),
                    strip - 3.0,
                    POLICIES[i % 3],
                    r - c,
                    hhmm(b.start_ms + m as i64 * MIN)
                );
            }
        }
    }
    let _ = write!(out, r##"<line class="cursor" x1="0" x2="0" y1="{:.1}" y2="{base:.1}" visibility="hidden"/>"##, f.top);
    out.push_str("</svg>");
    // Data for the hover read-out.
    let _ = write!(
        out,
        r##"<script type="application/json" id="series-{idx}">{{"start":{},"left":{},"right":{},"width":{},"demand":["##,
        b.start_ms, f.left, f.right, f.w
    );
    join(out, demand.iter().map(|v| format!("{v:.2}")));
    out.push_str("],\"capacity\":[");
    for (i, c) in caps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        join(out, c.iter().map(|v| format!("{v:.2}")));
        out.push(']');
    }
    out.push_str("]}</script>");
}

fn join(out: &mut String, items: impl Iterator<Item = String>) {
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&s);
    }
}

/// Colour of a policy in the frontier chart (the oracle is black).
fn policy_colour(policy: &str) -> &'static str {
    POLICIES.iter().position(|p| *p == policy).map_or("#212529", |i| COLOURS[i % 3])
}

/// One start-up delay's frontier: overload (square-root scale, so small
/// shares stay apart) against cost relative to the oracle; a dot per
/// setting, a line through each policy's frontier, the oracle as a black
/// diamond, floodgate's configured setting ringed.
fn frontier_chart(f: &StartupFrontier, idx: usize, out: &mut String) {
    let (w, h, left, right, top, bottom) = (560.0, 340.0, 64.0, 16.0, 16.0, 40.0);
    let xmax = f.points.iter().map(|p| p.cost_vs_oracle).filter(|x| x.is_finite()).fold(1.2_f64, f64::max) * 1.05;
    let xmin = 0.9_f64.min(f.points.iter().map(|p| p.cost_vs_oracle).filter(|x| x.is_finite()).fold(1.0, f64::min) * 0.95);
    let ymax = f.points.iter().map(|p| p.overloaded_pct).fold(0.01_f64, f64::max) * 1.05;
    let (pw, ph) = (w - left - right, h - top - bottom);
    let x = |v: f64| left + pw * ((v - xmin) / (xmax - xmin)).clamp(0.0, 1.0);
    let y = |v: f64| top + ph * (1.0 - (v.max(0.0) / ymax).sqrt().clamp(0.0, 1.0));
    let _ = write!(
        out,
        r##"<figure class="rfig"><svg class="chart frontier-chart" id="frontier-{idx}" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="cost and overload at start-up {}">"##,
        format_duration_ms(f.startup_ms)
    );
    // Axes: y ticks at shares whose square roots are evenly spaced.
    for k in 0..=4 {
        let v = ymax * (f64::from(k) / 4.0).powi(2);
        let yy = y(v);
        let _ = write!(
            out,
            r##"<line x1="{left:.1}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"##,
            w - right,
            left - 6.0,
            yy + 4.0,
            if v >= 1.0 { format!("{v:.1}%") } else { format!("{v:.2}%") }
        );
    }
    let step = nice_step(xmax - xmin, 6.0);
    let mut v = (xmin / step).ceil() * step;
    while v <= xmax + 1e-9 {
        let xx = x(v);
        let _ = write!(
            out,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top:.1}" y2="{:.1}" class="grid"/><text x="{xx:.1}" y="{:.1}" class="tick" text-anchor="middle">{v:.1}×</text>"##,
            h - bottom,
            h - bottom + 16.0
        );
        v += step;
    }
    let _ = write!(
        out,
        r##"<line x1="{left:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="axis"/><line x1="{left:.1}" x2="{left:.1}" y1="{top:.1}" y2="{:.1}" class="axis"/><text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">replica-minutes / oracle</text><text x="12" y="{:.1}" class="label" transform="rotate(-90 12 {:.1})" text-anchor="middle">requests over capacity (√ scale)</text>"##,
        w - right,
        h - bottom,
        h - bottom,
        h - bottom,
        left + pw / 2.0,
        h - 4.0,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for policy in POLICIES {
        let mut front: Vec<&SweepPoint> = f.points.iter().filter(|p| p.policy == policy && p.on_frontier).collect();
        front.sort_by(|a, b| a.replica_minutes.total_cmp(&b.replica_minutes));
        let mut d = String::new();
        for (i, p) in front.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, x(p.cost_vs_oracle), y(p.overloaded_pct));
        }
        if !d.is_empty() {
            let _ =
                write!(out, r##"<path class="front" stroke="{}" d="{d}"><title>{policy} frontier</title></path>"##, policy_colour(policy));
        }
    }
    for p in &f.points {
        let (cx, cy) = (x(p.cost_vs_oracle), y(p.overloaded_pct));
        let _ = write!(
            out,
            r##"<circle class="pt" cx="{cx:.1}" cy="{cy:.1}" r="4" fill="{}"><title>{} {}: {:.3}% over capacity, {:.0} replica-minutes ({:.2}× oracle)</title></circle>"##,
            policy_colour(&p.policy),
            p.policy,
            esc(&p.setting),
            p.overloaded_pct,
            p.replica_minutes,
            p.cost_vs_oracle
        );
        if p.configured {
            let _ = write!(out, r##"<circle class="ring" cx="{cx:.1}" cy="{cy:.1}" r="8"/>"##);
        }
    }
    let (ox, oy) = (x(1.0), y(f.oracle.overloaded_pct));
    let _ = write!(
        out,
        r##"<path class="oracle" d="M{ox:.1},{:.1}L{:.1},{oy:.1}L{ox:.1},{:.1}L{:.1},{oy:.1}Z"><title>oracle: {:.3}% over capacity, {:.0} replica-minutes</title></path></svg>"##,
        oy - 7.0,
        ox + 7.0,
        oy + 7.0,
        ox - 7.0,
        f.oracle.overloaded_pct,
        f.oracle.replica_minutes
    );
    let _ = write!(
        out,
        r##"<figcaption><b>start-up {}</b> · oracle {:.0} replica-minutes · floodgate as configured: {} · dominated by: {}</figcaption></figure>"##,
        format_duration_ms(f.startup_ms),
        f.oracle.replica_minutes,
        f.configured().map_or("–".to_string(), |c| format!("{:.3}% over, {:.2}× oracle", c.overloaded_pct, c.cost_vs_oracle)),
        esc(&if f.configured_dominated_by.is_empty() { "none".to_string() } else { f.configured_dominated_by.join(", ") })
    );
}

/// The sweep section: legend, one frontier chart per start-up, and a table.
fn sweep_section(s: &Sweep, out: &mut String) {
    out.push_str("<h2>Cost–overload frontier</h2>");
    let _ = write!(
        out,
        r##"<p class="meta">Every setting of every policy on all targets{}: share of requests over capacity against replica-minutes relative to the <b>oracle</b> (perfect foresight: each minute exactly the replicas its requests need, asked start-up ahead — no plan holding one count per minute is cheaper at zero overload). Lines join each policy's frontier (settings no other setting of the same policy beats on both). Reactive at target utilisation 0.5–0.9, trend at 0.6–0.8, floodgate at the configured setting (ringed) and a grid of r_quantile × quantile × headroom (+ cooldowns), each with planner.startup set to the start-up modelled.</p><p class="legend">"##,
        if s.day { ", whole UTC days (<code>--day</code>)" } else { ", over the log's span" }
    );
    for p in POLICIES {
        let _ = write!(out, r##"<span><i class="sw" style="background:{}"></i>{p}</span>"##, policy_colour(p));
    }
    out.push_str(r##"<span><i class="sw" style="background:#212529;height:8px;width:8px"></i>oracle</span></p><div class="grid2">"##);
    for (i, f) in s.startups.iter().enumerate() {
        frontier_chart(f, i, out);
    }
    out.push_str("</div><table><tr><th>start-up</th><th class=\"l\">policy</th><th class=\"l\">setting</th><th>over capacity %</th><th>replica-minutes</th><th>× oracle</th><th>on frontier</th></tr>");
    for f in &s.startups {
        for p in std::iter::once(&f.oracle).chain(&f.points) {
            let _ = write!(
                out,
                r##"<tr{}><td>{}</td><td class="l">{}</td><td class="l">{}{}</td><td>{:.3}</td><td>{:.0}</td><td>{:.2}</td><td>{}</td></tr>"##,
                if p.configured || p.policy == ORACLE { r##" class="best""## } else { "" },
                format_duration_ms(f.startup_ms),
                p.policy,
                esc(&p.setting),
                if p.configured { " (configured)" } else { "" },
                p.overloaded_pct,
                p.replica_minutes,
                p.cost_vs_oracle,
                if p.on_frontier { "yes" } else { "" }
            );
        }
    }
    out.push_str("</table>");
}

fn r_chart(b: &Backtest, c: &CampaignRun, idx: usize, out: &mut String) {
    let (Some(first), Some(last)) = (c.r.first(), c.r.last()) else { return };
    let t0 = c.send_ms.unwrap_or(first.t_ms).min(first.t_ms);
    let ymax = c.r.iter().map(|p| p.hi).fold(2.0, f64::max).min(6.0);
    let f = Frame { w: 440.0, h: 200.0, left: 40.0, right: 10.0, top: 12.0, bottom: 28.0, t0, t1: last.t_ms.max(t0 + MIN), y1: ymax };
    let _ = write!(
        out,
        r##"<figure class="rfig"><svg class="chart r-chart" id="r-{idx}" viewBox="0 0 {} {}" width="100%" role="img" aria-label="R of {}">"##,
        f.w,
        f.h,
        esc(&c.campaign)
    );
    f.axes(out, "R");
    let mut band = String::new();
    for (i, p) in c.r.iter().enumerate() {
        let _ = write!(band, "{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, f.x(p.t_ms), f.y(p.hi));
    }
    for p in c.r.iter().rev() {
        let _ = write!(band, "L{:.1},{:.1}", f.x(p.t_ms), f.y(p.lo));
    }
    band.push('Z');
    let mut mean = String::new();
    for (i, p) in c.r.iter().enumerate() {
        let _ = write!(mean, "{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, f.x(p.t_ms), f.y(p.mean));
    }
    let one = f.y(1.0);
    let _ = write!(
        out,
        r##"<path class="band" d="{band}"/><line class="one" x1="{:.1}" x2="{:.1}" y1="{one:.1}" y2="{one:.1}"/><path class="rmean" d="{mean}"/>"##,
        f.left,
        f.w - f.right
    );
    if let Some(o) = c.viral_onset_ms {
        let x = f.x(o);
        let _ = write!(
            out,
            r##"<line class="onset" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}"><title>viral_onset at {}</title></line>"##,
            f.top,
            f.h - f.bottom,
            hhmm(o)
        );
    }
    if let Some(s) = c.surge_ms {
        if s <= f.t1 {
            let x = f.x(s);
            let _ = write!(
                out,
                r##"<line class="surge" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}"><title>surge at {}</title></line>"##,
                f.top,
                f.h - f.bottom,
                hhmm(s)
            );
        }
    }
    out.push_str("</svg>");
    let _ = write!(
        out,
        r##"<figcaption><b>{}</b> → {}{} · {} clicks · last R {:.2} [{:.2}, {:.2}]</figcaption></figure>"##,
        esc(&c.campaign),
        esc(c.target.as_deref().unwrap_or("?")),
        if c.viral_onset_ms.is_some() { r##" <span class="viral">viral</span>"## } else { "" },
        c.clicks,
        last.mean,
        last.lo,
        last.hi
    );
    let _ = b;
}

const STYLE: &str = r##"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px 32px;color:#212529;background:#fff}
h1{font-size:24px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #dee2e6;padding-bottom:4px} h3{font-size:16px;margin:18px 0 6px}
p.meta{color:#495057;margin:4px 0}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dee2e6;padding:3px 8px;text-align:right} th{background:#f1f3f5} td.l,th.l{text-align:left}
tr.best td{background:#e7f5ff}
.legend span{display:inline-block;margin-right:16px} .sw{display:inline-block;width:18px;height:4px;vertical-align:middle;margin-right:5px}
svg.chart{display:block;max-width:1200px;background:#fff}
svg .grid{stroke:#f1f3f5} svg .axis{stroke:#868e96} svg .tick{font-size:11px;fill:#495057} svg .label{font-size:12px;fill:#495057}
svg .demand{fill:#adb5bd;fill-opacity:.55;stroke:#495057;stroke-width:1}
svg .cap{fill:none;stroke-width:2}
svg .onset{stroke:#e03131;stroke-dasharray:5 3;stroke-width:1.3} svg .onset-label{font-size:11px;fill:#e03131}
svg .surge{stroke:#212529;stroke-dasharray:2 3;stroke-width:1}
svg .mark{fill:#1971c2}
svg .strip{fill:#f1f3f5} svg .over{fill:#e03131}
svg .band{fill:#74c0fc;fill-opacity:.45} svg .rmean{fill:none;stroke:#1864ab;stroke-width:1.6} svg .one{stroke:#495057;stroke-dasharray:4 3}
svg .cursor{stroke:#212529;stroke-width:1}
svg .front{fill:none;stroke-width:2} svg .pt{fill-opacity:.85} svg .ring{fill:none;stroke:#1971c2;stroke-width:2} svg .oracle{fill:#212529}
.grid2{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
figure{margin:0} figcaption{font-size:12px;color:#495057}
.viral{background:#ffe3e3;color:#c92a2a;border-radius:3px;padding:0 4px;font-size:11px}
.readout{position:fixed;pointer-events:none;background:#fff;border:1px solid #adb5bd;padding:4px 8px;font-size:12px;display:none;box-shadow:0 1px 4px rgba(0,0,0,.15)}
"##;

const SCRIPT: &str = r##"
(function(){
  var ro=document.getElementById('readout');
  var names=JSON.parse(document.getElementById('policies').textContent);
  document.querySelectorAll('svg.target-chart').forEach(function(svg){
    var data=JSON.parse(document.getElementById(svg.dataset.series).textContent);
    var cur=svg.querySelector('.cursor');
    svg.addEventListener('mousemove',function(ev){
      var r=svg.getBoundingClientRect(), vb=svg.viewBox.baseVal;
      var x=(ev.clientX-r.left)*vb.width/r.width;
      var pw=data.width-data.left-data.right, n=data.demand.length;
      var m=Math.floor((x-data.left)/pw*n);
      if(m<0||m>=n){ro.style.display='none';cur.setAttribute('visibility','hidden');return;}
      cur.setAttribute('x1',x);cur.setAttribute('x2',x);cur.setAttribute('visibility','visible');
      var t=new Date(data.start+m*60000).toISOString().slice(11,16);
      var h='<b>'+t+' UTC</b><br>requests '+data.demand[m].toFixed(1)+'/s';
      data.capacity.forEach(function(c,i){h+='<br>'+names[i]+' capacity '+c[m].toFixed(1)+'/s';});
      ro.innerHTML=h;ro.style.display='block';ro.style.left=(ev.clientX+14)+'px';ro.style.top=(ev.clientY+14)+'px';
    });
    svg.addEventListener('mouseleave',function(){ro.style.display='none';cur.setAttribute('visibility','hidden');});
  });
  // Self-check (read by the browser test): every chart drew something visible.
  var bad=[], charts=document.querySelectorAll('svg.chart');
  if(charts.length===0) bad.push('no charts');
  charts.forEach(function(s){
    var b=s.getBBox();
    if(!s.querySelector('path')||!(b.width>0&&b.height>0)) bad.push(s.id);
  });
  if(document.title.indexOf('error')!==0) document.title = bad.length ? 'error: charts without content: '+bad.join(' ') : 'ok';
})();
"##;

/// Renders the whole report as one HTML document.
pub fn html(b: &Backtest) -> String {
    let mut o = String::with_capacity(256 * 1024);
    o.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    o.push_str("<title>floodgate backtest (rendering)</title>");
    o.push_str("<script>window.addEventListener('error',function(e){document.title='error: '+e.message;});</script>");
    let _ = write!(o, "<style>{STYLE}</style></head><body>");
    let end = b.start_ms + b.minutes as i64 * MIN;
    let m = &b.model;
    let _ = write!(
        o,
        r##"<h1>floodgate backtest</h1><p class="meta">{} – {} UTC ({} min) · {} campaigns on {} targets · {} clicks ({} duplicates dropped, {} lines not decodable)</p>"##,
        esc(&rfc3339(b.start_ms)),
        hhmm(end),
        b.minutes,
        b.campaigns.len(),
        b.targets.len(),
        b.input.clicks,
        b.input.duplicates,
        b.input.rejected
    );
    let _ = write!(
        o,
        r##"<p class="meta">Model: replica start-up {}, metrics delay {}, scale-down stabilisation {}, sync {}, trend window {} (look-ahead = start-up); floodgate acts on a forecast decision {} (<code>estimator.allowed_lateness</code>) after its bin ends. Requests = clicks × requests_per_click + baseline; capacity = ready replicas × capacity_per_replica.</p>"##,
        format_duration_ms(m.startup_ms),
        format_duration_ms(m.metrics_delay_ms),
        format_duration_ms(m.stabilisation_ms),
        format_duration_ms(m.sync_ms),
        format_duration_ms(m.trend_window_ms),
        format_duration_ms(b.allowed_lateness_ms)
    );
    let _ = write!(o, r##"<script type="application/json" id="policies">["{}"]</script>"##, POLICIES.join("\",\""));

    // Summary.
    o.push_str("<h2>Summary</h2>");
    if b.targets.iter().any(|t| t.has_viral) {
        o.push_str("<h3>Targets of viral campaigns, all together</h3><table><tr><th class=\"l\">policy</th><th>requests</th><th>over capacity</th><th>%</th><th>minutes overloaded</th><th>replica-minutes</th><th>vs reactive</th><th>peak replicas</th><th>median lead (min)</th><th>median ready lead (min)</th></tr>");
        let base = b.viral_total("reactive").map_or(0.0, |v| v.replica_minutes);
        for v in &b.viral_totals {
            let _ = write!(
                o,
                r##"<tr><td class="l">{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.2}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"##,
                v.policy,
                v.requests,
                v.overloaded_requests,
                v.overloaded_pct,
                v.minutes_overloaded,
                v.replica_minutes,
                if base > 0.0 { format!("{:.2}×", v.replica_minutes / base) } else { "–".into() },
                v.peak_replicas,
                opt(v.median_lead_min),
                opt(v.median_ready_lead_min)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("<h3>Per target</h3><table><tr><th class=\"l\">target</th><th class=\"l\">policy</th><th>requests</th><th>over capacity</th><th>%</th><th>minutes overloaded</th><th>replica-minutes</th><th>peak replicas</th><th>scale-ups</th></tr>");
    for t in &b.targets {
        for p in &t.policies {
            let s = &p.summary;
            let _ = write!(
                o,
                r##"<tr><td class="l">{}{}</td><td class="l">{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.2}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td></tr>"##,
                esc(&t.target),
                if t.has_viral { r##" <span class="viral">viral</span>"## } else { "" },
                s.policy,
                s.requests,
                s.overloaded_requests,
                s.overloaded_pct,
                s.minutes_overloaded,
                s.replica_minutes,
                s.peak_replicas,
                s.scale_ups
            );
        }
    }
    o.push_str("</table>");

    // Viral campaigns.
    let viral: Vec<&CampaignRun> = b.campaigns.iter().filter(|c| c.viral_onset_ms.is_some()).collect();
    if !viral.is_empty() {
        o.push_str("<h3>Viral campaigns: lead before the surge, minutes</h3><p class=\"meta\">Surge: first minute with 3× the direct wave's peak clicks. Lead: surge − first scale-up of the target after the send; ready: surge − first minute whose ready capacity covers the surge minute's requests. Negative = after the surge.</p>");
        o.push_str("<table><tr><th class=\"l\">campaign</th><th class=\"l\">target</th><th>send</th><th>onset known</th><th>surge</th>");
        for p in POLICIES {
            let _ = write!(o, "<th>{p} lead</th><th>{p} ready</th>");
        }
        o.push_str("</tr>");
        for c in viral {
            let _ = write!(
                o,
                r##"<tr><td class="l">{}</td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td>"##,
                esc(&c.campaign),
                esc(c.target.as_deref().unwrap_or("?")),
                c.send_ms.map_or("–".into(), hhmm),
                c.viral_onset_ms.map_or("–".into(), |t| hhmm(t + b.allowed_lateness_ms)),
                c.surge_ms.map_or("none in log".into(), hhmm)
            );
            for p in POLICIES {
                let l = c.leads.iter().find(|l| l.policy == p);
                let _ = write!(o, "<td>{}</td><td>{}</td>", opt(l.and_then(|l| l.lead_min)), opt(l.and_then(|l| l.ready_lead_min)));
            }
            o.push_str("</tr>");
        }
        o.push_str("</table>");
    }

    if let Some(s) = &b.sweep {
        sweep_section(s, &mut o);
    }

    // Target charts.
    o.push_str("<h2>Requests and capacity per target</h2><p class=\"legend\"><span><i class=\"sw\" style=\"background:#adb5bd\"></i>requests/s</span>");
    for (i, p) in POLICIES.iter().enumerate() {
        let _ = write!(o, r##"<span><i class="sw" style="background:{}"></i>{p} ready capacity</span>"##, COLOURS[i]);
    }
    o.push_str(r##"<span><i class="sw" style="background:#1971c2;height:8px;width:8px"></i>floodgate scale_ahead (when acted on)</span><span><i class="sw" style="background:#e03131"></i>viral_onset known / overloaded minute</span><span><i class="sw" style="background:#212529;height:1px"></i>surge (dotted)</span></p>"##);
    for (i, t) in b.targets.iter().enumerate() {
        let _ = write!(
            o,
            r##"<h3>{}{}</h3><p class="meta">{} requests per click, {} requests/s per replica, reactive target utilisation {:.2}; campaigns: {}</p>"##,
            esc(&t.target),
            if t.has_viral { r##" <span class="viral">viral</span>"## } else { "" },
            fmt_num(t.requests_per_click),
            fmt_num(t.capacity_per_replica),
            t.target_utilisation,
            esc(&t.campaigns.join(", "))
        );
        target_chart(b, t, i, &mut o);
    }

    // R per campaign.
    o.push_str("<h2>R per campaign</h2><p class=\"meta\">Posterior mean of R (line) and 95 % interval (band) at each bin step; dashed red: viral_onset; dotted: surge.</p><div class=\"grid2\">");
    for (i, c) in b.campaigns.iter().enumerate() {
        r_chart(b, c, i, &mut o);
    }
    o.push_str("</div>");
    let _ = write!(o, r##"<div id="readout" class="readout"></div><script>{SCRIPT}</script></body></html>"##);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_ticks() {
        assert_eq!(esc("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert_eq!(fmt_num(12_600.0), "13k");
    }
}
