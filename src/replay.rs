//! The file driver: NDJSON lines → engine → signals.
//!
//! Shared by `floodgate replay`, `floodgate backtest`, the end-to-end tests and
//! the benchmarks. The watermark of a single ordered file is the latest event
//! time minus `estimator.allowed_lateness`; at end of input every window is
//! flushed.

use std::collections::BTreeMap;
use std::io::{self, BufRead};

use serde::Serialize;

use crate::decode::{decode, RejectReason, Rejection};
use crate::engine::{Applied, Engine, Stats};
use crate::signal::Signal;

/// A line that was not applied, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line's start.
    pub offset: u64,
    /// Why.
    pub rejection: Rejection,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} (byte {}): {} [{}]", self.line, self.offset, self.rejection.detail, self.rejection.reason.as_str())
    }
}

/// What a replay did, as written by `--stats`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ReplayReport {
    /// Non-empty lines read.
    pub lines: u64,
    /// Events counted.
    pub accepted: u64,
    /// Lines rejected (malformed or invalid).
    pub rejected: u64,
    /// Rejections by reason.
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Events beyond the allowed lateness.
    pub late: u64,
    /// Events of campaigns over `limits.max_campaigns`.
    pub shed: u64,
    /// Campaigns seen.
    pub campaigns: u64,
    /// Signals emitted.
    pub signals: u64,
    /// Signals by type.
    pub signals_by_type: BTreeMap<&'static str, u64>,
    /// The engine's counters.
    pub engine: Stats,
}

/// Reads NDJSON from `input` into `engine`. Each signal goes to `on_signal`
/// as soon as it is final; each bad line to `on_error`. I/O errors stop the
/// replay; bad lines never do.
pub fn replay<R: BufRead>(
    mut input: R,
    engine: &mut Engine,
    mut on_signal: impl FnMut(&Signal) -> io::Result<()>,
    mut on_error: impl FnMut(&LineError),
) -> io::Result<ReplayReport> {
    let mut report = ReplayReport::default();
    let max_bytes = engine.config().limits.max_event_bytes as usize;
    let mut buf = Vec::with_capacity(1024);
    let mut out: Vec<Signal> = Vec::new();
    let (mut line_no, mut offset) = (0u64, 0u64);
    let max_future = engine.config().estimator.max_future.ms();
    let mut held: Option<Held> = None;
    let mut emit = |out: &mut Vec<Signal>, engine: &mut Engine, report: &mut ReplayReport| -> io::Result<()> {
        engine.count_signals(out);
        for s in out.drain(..) {
            report.signals += 1;
            *report.signals_by_type.entry(s.kind()).or_default() += 1;
            on_signal(&s)?;
        }
        Ok(())
    };
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let start = offset;
        offset += n as u64;
        let mut line = buf.as_slice();
        while let Some((&last, rest)) = line.split_last() {
            if last == b'\n' || last == b'\r' {
                line = rest;
            } else {
                break;
            }
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        report.lines += 1;
        let result = if line.len() > max_bytes {
            Err(Rejection::new(RejectReason::TooLarge, format!("{} bytes is over limits.max_event_bytes ({max_bytes})", line.len())))
        } else {
            match decode(line) {
                Err(r) => Err(r),
                Ok(ev) => {
                    let mut result = engine.apply(&ev, &mut out);
                    let is_future = matches!(&result, Err(r) if r.reason == RejectReason::Future);
                    // An event far ahead is either a bad clock or a real gap in
                    // the log. Hold it; the next event decides: if it agrees
                    // (also far ahead, near the held one) time really jumped
                    // and both are applied; otherwise the held one was a bad
                    // clock and is rejected with its own line number.
                    match (held.take(), is_future) {
                        (Some(h), true) if (ev.ts_ms - h.ts_ms).abs() <= max_future => {
                            engine.accept_jump(h.ts_ms.min(ev.ts_ms));
                            apply_held(&h, engine, &mut out, &mut report, &mut on_error);
                            result = engine.apply(&ev, &mut out);
                        }
                        (Some(h), _) => {
                            reject_held(h, &mut report, &mut on_error);
                            if is_future {
                                held = Some(Held {
                                    bytes: line.to_vec(),
                                    line: line_no,
                                    offset: start,
                                    ts_ms: ev.ts_ms,
                                    rejection: result.clone().err(),
                                });
                                continue;
                            }
                        }
                        (None, true) => {
                            held = Some(Held {
                                bytes: line.to_vec(),
                                line: line_no,
                                offset: start,
                                ts_ms: ev.ts_ms,
                                rejection: result.clone().err(),
                            });
                            continue;
                        }
                        (None, false) => {}
                    }
                    result
                }
            }
        };
        match result {
            Ok(applied) => count(applied, &mut report),
            Err(rejection) => reject(LineError { line: line_no, offset: start, rejection }, &mut report, &mut on_error),
        }
        if let Some(wm) = engine.natural_watermark() {
            engine.advance_to(wm, &mut out);
        }
        if !out.is_empty() {
            emit(&mut out, engine, &mut report)?;
        }
    }
    if let Some(h) = held.take() {
        reject_held(h, &mut report, &mut on_error);
    }
    engine.flush(&mut out);
    emit(&mut out, engine, &mut report)?;
    report.campaigns = engine.stats().campaigns_seen;
    report.engine = engine.stats().clone();
    Ok(report)
}

/// A line held back because its time was far ahead of the others.
struct Held {
    bytes: Vec<u8>,
    line: u64,
    offset: u64,
    ts_ms: i64,
    rejection: Option<Rejection>,
}

fn apply_held(h: &Held, engine: &mut Engine, out: &mut Vec<Signal>, report: &mut ReplayReport, on_error: &mut impl FnMut(&LineError)) {
    match decode(&h.bytes).and_then(|ev| engine.apply(&ev, out)) {
        Ok(applied) => count(applied, report),
        Err(rejection) => reject(LineError { line: h.line, offset: h.offset, rejection }, report, on_error),
    }
}

fn reject_held(h: Held, report: &mut ReplayReport, on_error: &mut impl FnMut(&LineError)) {
    let rejection = h.rejection.unwrap_or_else(|| Rejection::new(RejectReason::Future, "event time far ahead of the log"));
    reject(LineError { line: h.line, offset: h.offset, rejection }, report, on_error);
}

fn count(applied: Applied, report: &mut ReplayReport) {
    match applied {
        Applied::Accepted => report.accepted += 1,
        Applied::Duplicate => report.duplicates += 1,
        Applied::Late => report.late += 1,
        Applied::Shed => report.shed += 1,
    }
}

fn reject(e: LineError, report: &mut ReplayReport, on_error: &mut impl FnMut(&LineError)) {
    report.rejected += 1;
    *report.rejected_by_reason.entry(e.rejection.reason.as_str()).or_default() += 1;
    on_error(&e);
}

/// Replays a whole byte buffer and returns the signals (tests, benchmarks).
pub fn replay_bytes(data: &[u8], engine: &mut Engine) -> (Vec<Signal>, ReplayReport, Vec<LineError>) {
    let mut signals = Vec::new();
    let mut errors = Vec::new();
    let report = replay(
        data,
        engine,
        |s| {
            signals.push(s.clone());
            Ok(())
        },
        |e| errors.push(e.clone()),
    );
    // Reading from a slice cannot fail and the sink above never errors.
    let report = report.unwrap_or_default();
    (signals, report, errors)
}
