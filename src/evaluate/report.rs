//! The evaluation as one self-contained HTML page: the tables, per charted
//! campaign its actual clicks per horizon window against floodgate's
//! forecast mean and 90 % band, and a calibration plot (nominal vs actual
//! coverage of the central intervals, one line per horizon). Inline SVG,
//! no external resources; a small inline script checks that every chart drew
//! something and sets `document.title` to `ok` (or `error: …`), which the
//! headless-browser test reads.

use std::fmt::Write;

use super::{CampaignSeries, Evaluation, HorizonScores, Score};
use crate::backtest::report::esc;
use crate::time::rfc3339;

const W: f64 = 760.0;
const H: f64 = 220.0;
const PAD_L: f64 = 56.0;
const PAD_R: f64 = 12.0;
const PAD_T: f64 = 12.0;
const PAD_B: f64 = 30.0;

fn cell(x: Option<f64>, pct: bool) -> String {
    match x {
        None => "–".into(),
        Some(v) if !v.is_finite() => "∞".into(),
        Some(v) if pct => format!("{:.0} %", 100.0 * v),
        Some(v) => format!("{v:.2}"),
    }
}

fn score_row(o: &mut String, name: &str, s: &Score) {
    let _ = write!(
        o,
        "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        cell(s.mdape, true),
        cell(s.coverage_90, true),
        cell(s.mean_width, false),
        cell(s.crps, false)
    );
}

fn horizon_table(o: &mut String, h: &HorizonScores) {
    let _ = write!(
        o,
        "<h3>{} min ahead — {} windows</h3><table><tr><th>forecaster</th><th>MdAPE</th><th>90 % coverage</th><th>mean width</th><th>CRPS</th></tr>",
        h.horizon_s / 60.0,
        h.windows
    );
    score_row(o, "floodgate", &h.floodgate);
    score_row(o, "persistence", &h.persistence);
    score_row(o, "linear trend", &h.linear_trend);
    score_row(o, "send-only", &h.send_only);
    o.push_str("</table>");
}

/// A polyline path through (x, y) points, `None` breaking it.
fn path(points: impl Iterator<Item = Option<(f64, f64)>>) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for p in points {
        match p {
            Some((x, y)) => {
                let _ = write!(d, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, x, y);
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    d
}

fn campaign_chart(o: &mut String, s: &CampaignSeries, idx: usize) {
    let Some(first) = s.points.first() else { return };
    let t0 = first.time_ms;
    let t1 = s.points.last().map_or(t0 + 1, |p| p.time_ms.max(t0 + 1));
    let ymax = s.points.iter().map(|p| p.hi.max(p.actual.unwrap_or(0) as f64)).fold(1.0, f64::max);
    let x = |t: i64| PAD_L + (t - t0) as f64 / (t1 - t0) as f64 * (W - PAD_L - PAD_R);
    let y = |v: f64| PAD_T + (1.0 - v / ymax) * (H - PAD_T - PAD_B);
    let _ = write!(
        o,
        "<h3>{} — {} clicks; clicks in the next {} min</h3><svg class=\"chart\" id=\"campaign-{idx}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\">",
        esc(&s.campaign),
        s.clicks,
        s.horizon_s / 60.0
    );
    // Band: upper edge forward, lower edge back.
    let mut band = String::new();
    for (i, p) in s.points.iter().enumerate() {
        let _ = write!(band, "{}{:.1},{:.1} ", if i == 0 { "M" } else { "L" }, x(p.time_ms), y(p.hi));
    }
    for p in s.points.iter().rev() {
        let _ = write!(band, "L{:.1},{:.1} ", x(p.time_ms), y(p.lo));
    }
    band.push('Z');
    let _ = write!(o, "<path d=\"{band}\" fill=\"#9ecae1\" fill-opacity=\"0.6\" stroke=\"none\"/>");
    let mean = path(s.points.iter().map(|p| Some((x(p.time_ms), y(p.mean)))));
    let _ = write!(o, "<path d=\"{mean}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/>");
    let actual = path(s.points.iter().map(|p| p.actual.map(|a| (x(p.time_ms), y(a as f64)))));
    let _ = write!(o, "<path d=\"{actual}\" fill=\"none\" stroke=\"#111\" stroke-width=\"1.5\"/>");
    axes(o, &format!("{ymax:.0}"), &rfc3339(t0), &rfc3339(t1));
    o.push_str("</svg><p class=\"legend\"><span style=\"color:#111\">— actual</span> <span style=\"color:#1f77b4\">— forecast mean</span> <span style=\"color:#6baed6\">■ 90 % interval</span></p>");
}

fn axes(o: &mut String, ytop: &str, left: &str, right: &str) {
    let _ = write!(
        o,
        "<line x1=\"{PAD_L}\" y1=\"{PAD_T}\" x2=\"{PAD_L}\" y2=\"{yb}\" stroke=\"#555\"/><line x1=\"{PAD_L}\" y1=\"{yb}\" x2=\"{xr}\" y2=\"{yb}\" stroke=\"#555\"/>\
<text x=\"{tx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{ytop}</text><text x=\"{tx}\" y=\"{yb}\" font-size=\"11\" text-anchor=\"end\">0</text>\
<text x=\"{PAD_L}\" y=\"{lb}\" font-size=\"11\">{left}</text><text x=\"{xr}\" y=\"{lb}\" font-size=\"11\" text-anchor=\"end\">{right}</text>",
        yb = H - PAD_B,
        xr = W - PAD_R,
        tx = PAD_L - 4.0,
        ty = PAD_T + 10.0,
        lb = H - 8.0,
    );
}

fn calibration_chart(o: &mut String, ev: &Evaluation) {
    let side = 320.0;
    let (l, b) = (40.0, side - 30.0);
    let span = side - 50.0;
    let x = |v: f64| l + v * span;
    let y = |v: f64| b - v * span;
    let _ = write!(o, "<svg class=\"chart\" id=\"calibration\" viewBox=\"0 0 {side} {side}\" width=\"{side}\" height=\"{side}\">");
    let _ = write!(
        o,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#aaa\" stroke-dasharray=\"4 3\"/>",
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    );
    let colours = ["#d62728", "#2ca02c", "#1f77b4", "#9467bd", "#ff7f0e"];
    for (i, h) in ev.horizons.iter().enumerate() {
        if h.windows == 0 {
            continue;
        }
        let c = colours[i % colours.len()];
        let d = path(std::iter::once(Some((x(0.0), y(0.0)))).chain(h.calibration.iter().map(|p| Some((x(p.nominal), y(p.actual))))));
        let _ = write!(o, "<path d=\"{d}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>");
        for p in &h.calibration {
            let _ = write!(o, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>", x(p.nominal), y(p.actual));
        }
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{c}\">{} min</text>",
            x(0.05),
            y(0.95) + 14.0 * i as f64,
            h.horizon_s / 60.0
        );
    }
    let _ = write!(
        o,
        "<line x1=\"{l}\" y1=\"{b}\" x2=\"{}\" y2=\"{b}\" stroke=\"#555\"/><line x1=\"{l}\" y1=\"{b}\" x2=\"{l}\" y2=\"{}\" stroke=\"#555\"/>\
<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">nominal coverage</text><text x=\"12\" y=\"{}\" font-size=\"11\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">actual coverage</text></svg>",
        x(1.0),
        y(1.0),
        x(0.5),
        side - 6.0,
        y(0.5),
        y(0.5)
    );
}

const SCRIPT: &str = r#"(function(){var bad=[];document.querySelectorAll('svg.chart').forEach(function(s){if(s.querySelectorAll('path').length===0||s.getBBox().width<=0)bad.push(s.id);});
if(document.title.indexOf('error')!==0)document.title=bad.length?'error: charts without content: '+bad.join(' '):'ok';})();"#;

/// The self-contained HTML page.
pub fn html(ev: &Evaluation) -> String {
    let mut o = String::with_capacity(64 * 1024);
    o.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>floodgate evaluate</title>");
    o.push_str("<script>window.addEventListener('error',function(e){document.title='error: '+e.message;});</script>");
    o.push_str("<style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}.legend{font-size:12px}</style></head><body>");
    let _ =
        write!(o, "<h1>floodgate evaluate</h1><p>{} campaigns, {} clicks, {} estimates scored.</p>", ev.campaigns, ev.clicks, ev.estimates);
    o.push_str("<h2>Click forecasts</h2><p>Windows with at least 10 actual clicks; MdAPE = median absolute percentage error; CRPS in clicks (absolute error for point forecasts).</p>");
    for h in &ev.horizons {
        horizon_table(&mut o, h);
    }
    let f = &ev.final_size;
    let _ = write!(
        o,
        "<h2>Final size at 1 h after the send</h2><table><tr><th>campaigns</th><th>floodgate</th><th>persistence</th><th>linear trend</th><th>send-only</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        f.campaigns,
        cell(f.floodgate_mdape, true),
        cell(f.persistence_mdape, true),
        cell(f.linear_trend_mdape, true),
        cell(f.send_only_mdape, true)
    );
    let r = &ev.r;
    let _ = write!(
        o,
        "<h2>R against the realized case R</h2><table><tr><th>windows</th><th>95 % coverage</th><th><code>r_case</code> 95 % coverage</th><th>median relative error</th><th>bias</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        r.windows,
        cell(r.coverage_95, true),
        cell(r.coverage_95_case, true),
        cell(r.median_relative_error, true),
        cell(r.bias, true)
    );
    let n = &ev.onsets;
    let _ = write!(
        o,
        "<h2>Viral onsets</h2><p>{} onsets, {} with a realized R: {} below 1, {} below 0.8.</p>",
        n.onsets, n.with_realized_r, n.below_1, n.below_0_8
    );
    let b = &ev.bad_input;
    let _ = write!(
        o,
        "<h2>Bad input</h2><p>{} rejected lines; {} campaigns without a send.</p><ul>",
        b.rejected_lines, b.campaigns_without_send
    );
    for e in &b.examples {
        let _ = write!(o, "<li>{}</li>", esc(e));
    }
    o.push_str("</ul><h2>Calibration</h2>");
    calibration_chart(&mut o, ev);
    o.push_str("<h2>Largest campaigns</h2>");
    for (i, s) in ev.series.iter().enumerate() {
        campaign_chart(&mut o, s, i);
    }
    let _ = write!(o, "<script>{SCRIPT}</script></body></html>");
    o
}
