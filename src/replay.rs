//! The file driver: NDJSON lines → engine → signals.
//!
//! Shared by `floodgate replay`, `floodgate backtest`, the end-to-end tests and
//! the benchmarks. The watermark of a single ordered file is the latest event
//! time minus `estimator.allowed_lateness`; at end of input every window is
//! flushed.

use std::collections::BTreeMap;
use std::io::{self, BufRead};

use serde::Serialize;

use crate::decode::Rejection;
use crate::engine::{Applied, Engine, Stats};
use crate::event::Event;
use crate::ingest::{Ingest, LinePosition, Outcomes, Pushed};
use crate::signal::Signal;

pub use crate::ingest::LineError;
pub use parallel::{replay_threads, replay_threads_into};

mod parallel;

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

/// Where a replay's results go: signals as soon as they are final, bad lines,
/// and (for drivers that need the traffic itself, as `backtest` does) each
/// event the engine took.
pub trait ReplaySink {
    /// A signal, in output order. An error stops the replay.
    fn signal(&mut self, signal: &Signal) -> io::Result<()>;
    /// A line that was not applied.
    fn error(&mut self, error: &LineError);
    /// An event the engine took (counted, duplicate, late or shed), at `at`.
    fn applied(&mut self, _at: &LinePosition, _event: &Event<'_>, _applied: Applied) {}
}

/// The sink of [`replay`]: two closures.
struct Closures<S, E> {
    on_signal: S,
    on_error: E,
}

impl<S: FnMut(&Signal) -> io::Result<()>, E: FnMut(&LineError)> ReplaySink for Closures<S, E> {
    fn signal(&mut self, signal: &Signal) -> io::Result<()> {
        (self.on_signal)(signal)
    }

    fn error(&mut self, error: &LineError) {
        (self.on_error)(error)
    }
}

/// Reads NDJSON from `input` into `engine`. Each signal goes to `on_signal`
/// as soon as it is final; each bad line to `on_error`. I/O errors stop the
/// replay; bad lines never do.
///
/// Lines are decoded where they lie in `input`'s buffer (found with a SIMD
/// `memchr`); only a line that straddles two buffer fills is copied.
pub fn replay<R: BufRead>(
    input: R,
    engine: &mut Engine,
    on_signal: impl FnMut(&Signal) -> io::Result<()>,
    on_error: impl FnMut(&LineError),
) -> io::Result<ReplayReport> {
    replay_into(input, engine, &mut Closures { on_signal, on_error })
}

/// [`replay`] with a [`ReplaySink`].
pub fn replay_into<R: BufRead>(mut input: R, engine: &mut Engine, sink: &mut impl ReplaySink) -> io::Result<ReplayReport> {
    let mut d = Driver::new(engine, sink);
    // The start of a line whose end is not in the buffer yet.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let avail = input.fill_buf()?;
        if avail.is_empty() {
            if !carry.is_empty() {
                d.line(&carry)?;
            }
            break;
        }
        match memchr::memchr(b'\n', avail) {
            Some(i) if carry.is_empty() => {
                d.line(&avail[..=i])?;
                input.consume(i + 1);
            }
            Some(i) => {
                carry.extend_from_slice(&avail[..=i]);
                input.consume(i + 1);
                d.line(&carry)?;
                carry.clear();
            }
            None => {
                let n = avail.len();
                carry.extend_from_slice(avail);
                input.consume(n);
            }
        }
    }
    d.finish()
}

/// The record of a line: the line without its terminator (`\n`, `\r\n`),
/// or `None` for a blank line (skipped, not counted).
fn record_of(raw: &[u8]) -> Option<&[u8]> {
    let mut line = raw;
    while let Some((&last, rest)) = line.split_last() {
        if last == b'\n' || last == b'\r' {
            line = rest;
        } else {
            break;
        }
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(line)
    }
}

/// The state of one replay between lines.
struct Driver<'e, 's, K> {
    engine: &'e mut Engine,
    ingest: Ingest<LinePosition>,
    tally: Tally<'s, K>,
    out: Vec<Signal>,
    /// Lines read so far (blank ones included).
    line_no: u64,
    /// Byte offset of the next line.
    offset: u64,
}

/// The report being counted, and the sink outcomes go on to.
struct Tally<'s, K> {
    report: ReplayReport,
    sink: &'s mut K,
}

impl<K: ReplaySink> Outcomes<LinePosition> for Tally<'_, K> {
    fn applied(&mut self, at: &LinePosition, event: &Event<'_>, applied: Applied) {
        match applied {
            Applied::Accepted => self.report.accepted += 1,
            Applied::Duplicate => self.report.duplicates += 1,
            Applied::Late => self.report.late += 1,
            Applied::Shed => self.report.shed += 1,
        }
        self.sink.applied(at, event, applied);
    }

    fn rejected(&mut self, at: &LinePosition, _bytes: &[u8], rejection: Rejection) {
        self.report.rejected += 1;
        *self.report.rejected_by_reason.entry(rejection.reason.as_str()).or_default() += 1;
        self.sink.error(&LineError::at(*at, rejection));
    }
}

impl<'e, 's, K: ReplaySink> Driver<'e, 's, K> {
    /// A replay into `engine`, results to `sink`, before the first line.
    fn new(engine: &'e mut Engine, sink: &'s mut K) -> Self {
        Driver {
            ingest: Ingest::new(engine.config()),
            engine,
            tally: Tally { report: ReplayReport::default(), sink },
            out: Vec::new(),
            line_no: 0,
            offset: 0,
        }
    }

    /// One line, with its terminator if it has one.
    fn line(&mut self, raw: &[u8]) -> io::Result<()> {
        let at = self.next_position(raw.len());
        let Some(record) = record_of(raw) else { return Ok(()) };
        self.tally.report.lines += 1;
        let pushed = self.ingest.push(self.engine, record, at, &mut self.out, &mut self.tally);
        self.after_push(pushed)
    }

    /// One line whose record (if any: `decoded` is `None` for a blank line)
    /// was decoded by a worker thread ([`replay_threads_into`]).
    fn decoded_line(&mut self, raw: &[u8], decoded: Option<Result<Event<'_>, Rejection>>) -> io::Result<()> {
        let at = self.next_position(raw.len());
        let (Some(record), Some(decoded)) = (record_of(raw), decoded) else { return Ok(()) };
        self.tally.report.lines += 1;
        let pushed = self.ingest.push_decoded(self.engine, record, decoded, at, &mut self.out, &mut self.tally);
        self.after_push(pushed)
    }

    /// The position of the next line, `len` bytes long with its terminator.
    fn next_position(&mut self, len: usize) -> LinePosition {
        self.line_no += 1;
        let at = LinePosition { line: self.line_no, offset: self.offset };
        self.offset += len as u64;
        at
    }

    /// After a record went through the ingest step: hands on the first half
    /// of the bin step, makes the second half, hands that on.
    fn after_push(&mut self, pushed: Pushed) -> io::Result<()> {
        if pushed == Pushed::Held {
            return Ok(());
        }
        // Onsets are handed on before the bin's capacity forecasts are made.
        if !self.out.is_empty() {
            self.emit()?;
        }
        self.ingest.plan(self.engine, &mut self.out);
        if !self.out.is_empty() {
            self.emit()?;
        }
        Ok(())
    }

    /// Hands the signals in `out` to the sink, counting them.
    fn emit(&mut self) -> io::Result<()> {
        self.engine.count_signals(&self.out);
        let report = &mut self.tally.report;
        for s in self.out.drain(..) {
            report.signals += 1;
            *report.signals_by_type.entry(s.kind()).or_default() += 1;
            self.tally.sink.signal(&s)?;
        }
        Ok(())
    }

    /// End of input: the held event (if any) is rejected, every window flushed.
    fn finish(mut self) -> io::Result<ReplayReport> {
        self.ingest.finish(self.engine, &mut self.out, &mut self.tally);
        self.emit()?;
        let report = &mut self.tally.report;
        report.campaigns = self.engine.stats().campaigns_seen;
        report.engine = self.engine.stats().clone();
        Ok(std::mem::take(report))
    }
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

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;
    use crate::config::Config;
    use crate::decode::decode;

    fn run(data: &[u8], buffer: usize) -> (Vec<String>, ReplayReport, Vec<String>) {
        let mut engine = Engine::new(Config::default()).expect("engine");
        let (mut signals, mut errors) = (Vec::new(), Vec::new());
        let report = replay(
            BufReader::with_capacity(buffer, data),
            &mut engine,
            |s| {
                signals.push(format!("{s:?}"));
                Ok(())
            },
            |e| errors.push(e.to_string()),
        )
        .expect("replay");
        (signals, report, errors)
    }

    /// Lines found in the reader's buffer and lines straddling two fills (a
    /// buffer smaller than a line) give the same events, signals, line
    /// numbers and byte offsets — also for CRLF, blank lines and a last line
    /// without a newline.
    #[test]
    fn lines_are_the_same_whatever_the_buffer_size() {
        let mut data = Vec::new();
        for (i, e) in crate::simulate::simulate(&crate::simulate::demo_scenario(3, 1_772_438_400_000)).into_iter().enumerate().take(3000) {
            data.extend_from_slice(e.line.as_bytes());
            data.extend_from_slice(if i % 7 == 0 { b"\r\n" } else { b"\n" });
            if i % 500 == 0 {
                data.extend_from_slice(b"\n   \n{\"type\":\"click\",\"campaign\":\"\"}\n");
            }
        }
        data.extend_from_slice(br#"{"type":"click","campaign":"last","ts":"2026-03-02T09:00:00Z"}"#);
        let reference = run(&data, 1 << 16);
        assert_eq!(reference.1.lines, 3000 + 6 + 1);
        assert_eq!(reference.2.len(), 6, "{:?}", reference.2);
        assert!(reference.2[1].starts_with("line "), "{}", reference.2[1]);
        assert!(!reference.0.is_empty());
        for buffer in [1, 7, 64, 150, 4096] {
            assert_eq!(run(&data, buffer), reference, "buffer of {buffer} bytes");
        }
    }

    /// `advance_detect` + `advance_plan` (what `replay` does) emit exactly
    /// what `advance_to` does, in the same order; and an onset is out after
    /// `advance_detect`, before its bin's scale decisions.
    #[test]
    fn split_bin_step_emits_what_advance_to_emits() {
        let lines: Vec<String> =
            crate::simulate::simulate(&crate::simulate::demo_scenario(4, 1_772_438_400_000)).into_iter().map(|e| e.line).collect();
        let data = lines.join("\n");
        let new = || Engine::new(Config::default()).expect("engine").with_estimates(true);
        let (split, _, _) = replay_bytes(data.as_bytes(), &mut new());
        let (mut a, mut b) = (new(), new());
        let (mut whole, mut halves, mut out) = (Vec::new(), Vec::new(), Vec::new());
        let mut onsets_before_plans = 0;
        for line in &lines {
            let ev = decode(line.as_bytes()).expect("simulated lines decode");
            let _ = a.apply(&ev, &mut whole);
            let _ = b.apply(&ev, &mut halves);
            if let Some(wm) = a.natural_watermark() {
                a.advance_to(wm, &mut whole);
            }
            if let Some(wm) = b.natural_watermark() {
                b.advance_detect(wm, &mut out);
                let onset_times: Vec<i64> = out.iter().filter(|s| matches!(s, Signal::ViralOnset(_))).map(Signal::time_ms).collect();
                assert!(out.iter().all(|s| !matches!(s, Signal::ScaleAhead(x) if onset_times.contains(&x.time_ms))));
                let n = out.len();
                b.advance_plan(&mut out);
                if !onset_times.is_empty() && out.len() > n {
                    onsets_before_plans += 1;
                }
                halves.append(&mut out);
            }
        }
        a.flush(&mut whole);
        b.flush(&mut halves);
        let show = |v: &[Signal]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>();
        assert_eq!(show(&halves), show(&whole));
        assert_eq!(show(&split), show(&whole));
        assert!(split.iter().any(|s| matches!(s, Signal::ViralOnset(_))));
        assert!(onsets_before_plans > 0, "an onset bin also planned after its detection");
    }
}
