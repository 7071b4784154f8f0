//! The ingest step: one record of input (a line of a file, a Kafka message's
//! payload) → the engine, with every input rule in one place.
//!
//! For each record, in this order:
//!
//! 1. **Size**: a record longer than `limits.max_event_bytes` is rejected as
//!    `too_large` without being decoded.
//! 2. **Decode** ([`crate::decode::decode`]): a bad record is rejected with
//!    the decoder's reason.
//! 3. **Apply** ([`Engine::apply_event`]): counted, a duplicate (same campaign
//!    and id in the same bin, the engine's dedup), late or shed.
//! 4. **Far future**: an event more than `estimator.max_future` ahead of the
//!    log (or of the driver's clock) is either a bad clock or a real gap in
//!    the log. It is *held*; the next event decides. If that one is also far
//!    ahead, within `max_future` of the held one, time really jumped and both
//!    are applied; otherwise the held one is rejected as `future`, with its
//!    own position. At end of input (or when an idle source advances the
//!    watermark) a held event is rejected.
//! 5. **Bin step, first half**: if the record was not held, the watermark the
//!    single ordered source implies (latest event time minus
//!    `estimator.allowed_lateness`) closes bins: settle, estimate, detect
//!    ([`Engine::advance_detect`]). Onsets are in `out` when
//!    [`Ingest::push`] returns; the driver hands them on, then calls
//!    [`Ingest::plan`] for the second half (forecasts and `scale_ahead`), and
//!    hands those on.
//!
//! The driver owns the framing (lines of a file, messages of a partition) and
//! what a position is ([`LinePosition`] for a file, the partition offset for
//! Kafka); results come back through [`Outcomes`]. `replay`, `backtest`
//! and the Kafka partition task (`service/partition.rs`) all drive it.

use crate::decode::{decode, RejectReason, Rejection};
use crate::engine::{Applied, Engine, EngineConfig, FarAhead};
use crate::event::Event;
use crate::signal::Signal;
use crate::time::{format_duration_ms, rfc3339};

/// Where a line lies in a file or stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinePosition {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line's start.
    pub offset: u64,
}

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

impl LineError {
    /// The error of the line at `at`.
    pub fn at(at: LinePosition, rejection: Rejection) -> LineError {
        LineError { line: at.line, offset: at.offset, rejection }
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} (byte {}): {} [{}]", self.line, self.offset, self.rejection.detail, self.rejection.reason.as_str())
    }
}

/// What the ingest step tells its driver about each record, in input
/// order of decision (a held record is reported when the next one decides).
pub trait Outcomes<P> {
    /// The engine took the event at `at` (counted, duplicate, late or shed).
    fn applied(&mut self, at: &P, event: &Event<'_>, applied: Applied);
    /// The record at `at`, whose bytes are `bytes`, was not applied.
    fn rejected(&mut self, at: &P, bytes: &[u8], rejection: Rejection);
}

/// Whether [`Ingest::push`] decided about the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Applied or rejected; the first half of a bin step ran: hand on `out`,
    /// then call [`Ingest::plan`].
    Decided,
    /// Held back because its time is far ahead; the next record decides. No
    /// bin step ran (a held event does not move the watermark).
    Held,
}

/// A record held back because its time was far ahead of the log.
#[derive(Debug)]
struct Held<P> {
    /// The record, to decode again when the next event agrees (an `Event`
    /// borrows from its bytes).
    bytes: Vec<u8>,
    /// Its position.
    at: P,
    /// Its event time (ms).
    ts_ms: i64,
    /// Why the engine refused it.
    refused: FarAhead,
}

/// The state of the ingest step between records. `P` is the driver's
/// position of a record ([`LinePosition`], a partition offset, …).
#[derive(Debug)]
pub struct Ingest<P> {
    /// `limits.max_event_bytes`.
    max_event_bytes: usize,
    /// `estimator.max_future` (ms): how near the held event the next one
    /// must be for the jump to count as real.
    max_future_ms: i64,
    /// The record waiting for the next one to decide, if any.
    held: Option<Held<P>>,
}

impl<P> Ingest<P> {
    /// A step with the limits of `cfg`.
    pub fn new(cfg: &EngineConfig) -> Ingest<P> {
        Ingest { max_event_bytes: cfg.limits.max_event_bytes as usize, max_future_ms: cfg.estimator.max_future.ms(), held: None }
    }

    /// The position of the held record, if one is held (a Kafka driver must
    /// not commit past it).
    pub fn held_at(&self) -> Option<&P> {
        self.held.as_ref().map(|h| &h.at)
    }

    /// One record: size, decode, apply or hold, then (unless held) the first
    /// half of a bin step at the watermark the source implies. Signals are
    /// appended to `out`; outcomes (of the held record too, if this one
    /// decided about it) go to `outcomes`.
    pub fn push(&mut self, engine: &mut Engine, bytes: &[u8], at: P, out: &mut Vec<Signal>, outcomes: &mut impl Outcomes<P>) -> Pushed {
        let decoded = decode_record(bytes, self.max_event_bytes);
        self.push_decoded(engine, bytes, decoded, at, out, outcomes)
    }

    /// [`Ingest::push`] for a driver that ran steps 1 and 2 (size and decode,
    /// [`decode_record`]) itself, e.g. on other threads, as `replay
    /// --threads` does: `decoded` must be `decode_record(bytes,
    /// limits.max_event_bytes)`. Everything after decoding is the same.
    pub fn push_decoded(
        &mut self,
        engine: &mut Engine,
        bytes: &[u8],
        decoded: Result<Event<'_>, Rejection>,
        at: P,
        out: &mut Vec<Signal>,
        outcomes: &mut impl Outcomes<P>,
    ) -> Pushed {
        match decoded {
            Err(r) => outcomes.rejected(&at, bytes, r),
            Ok(ev) => match engine.apply_event(&ev, out) {
                Ok(applied) => {
                    if let Some(h) = self.held.take() {
                        reject_held(h, outcomes);
                    }
                    outcomes.applied(&at, &ev, applied);
                }
                Err(refused) => match self.held.take() {
                    Some(h) if (ev.ts_ms - h.ts_ms).abs() <= self.max_future_ms => {
                        // Two events agree: time really jumped.
                        engine.accept_jump(h.ts_ms.min(ev.ts_ms));
                        apply_held(h, engine, out, outcomes);
                        match engine.apply_event(&ev, out) {
                            Ok(applied) => outcomes.applied(&at, &ev, applied),
                            Err(refused) => outcomes.rejected(&at, bytes, far_ahead(refused)),
                        }
                    }
                    earlier => {
                        if let Some(h) = earlier {
                            reject_held(h, outcomes);
                        }
                        self.held = Some(Held { bytes: bytes.to_vec(), at, ts_ms: ev.ts_ms, refused });
                        return Pushed::Held;
                    }
                },
            },
        }
        if let Some(wm) = engine.natural_watermark() {
            engine.advance_detect(wm, out);
        }
        Pushed::Decided
    }

    /// `limits.max_event_bytes`, for drivers calling [`decode_record`].
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The second half of the bin step [`Ingest::push`] began: the forecasts,
    /// plans and estimates of the last bin closed, appended to `out`.
    pub fn plan(&mut self, engine: &mut Engine, out: &mut Vec<Signal>) {
        engine.advance_plan(out);
    }

    /// The source says no event earlier than `watermark_ms` will come (an
    /// idle Kafka partition): the held record, if any, is rejected (nothing
    /// came to confirm it) and bins up to the watermark close (both halves).
    pub fn advance_to(&mut self, engine: &mut Engine, watermark_ms: i64, out: &mut Vec<Signal>, outcomes: &mut impl Outcomes<P>) {
        if let Some(h) = self.held.take() {
            reject_held(h, outcomes);
        }
        engine.advance_to(watermark_ms, out);
    }

    /// End of input: the held record (if any) is rejected and every window
    /// flushed.
    pub fn finish(&mut self, engine: &mut Engine, out: &mut Vec<Signal>, outcomes: &mut impl Outcomes<P>) {
        if let Some(h) = self.held.take() {
            reject_held(h, outcomes);
        }
        engine.flush(out);
    }
}

/// Steps 1 and 2 of the ingest step: the size limit, then the decoder. The
/// one place of the `too_large` rule; pure, so drivers may run it on other
/// threads and hand the result to [`Ingest::push_decoded`].
pub fn decode_record(bytes: &[u8], max_event_bytes: usize) -> Result<Event<'_>, Rejection> {
    if bytes.len() > max_event_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!("{} bytes is over limits.max_event_bytes ({})", bytes.len(), max_event_bytes),
        ));
    }
    decode(bytes)
}

/// The held record, once the next event agreed that time jumped.
fn apply_held<P>(h: Held<P>, engine: &mut Engine, out: &mut Vec<Signal>, outcomes: &mut impl Outcomes<P>) {
    match decode(&h.bytes) {
        Ok(ev) => match engine.apply_event(&ev, out) {
            Ok(applied) => outcomes.applied(&h.at, &ev, applied),
            Err(refused) => outcomes.rejected(&h.at, &h.bytes, far_ahead(refused)),
        },
        // It decoded when it was held.
        Err(r) => outcomes.rejected(&h.at, &h.bytes, r),
    }
}

/// The held record, once nothing agreed with it: a bad clock.
fn reject_held<P>(h: Held<P>, outcomes: &mut impl Outcomes<P>) {
    outcomes.rejected(&h.at, &h.bytes, far_ahead(h.refused));
}

/// The one message of a `future` rejection.
pub fn far_ahead(f: FarAhead) -> Rejection {
    Rejection::new(
        RejectReason::Future,
        format!(
            "`ts` {} is more than estimator.max_future ({}) ahead of {} {}",
            rfc3339(f.ts_ms),
            format_duration_ms(f.max_future_ms),
            if f.reference_is_clock { "the clock" } else { "the latest event time" },
            rfc3339(f.reference_ms)
        ),
    )
}

impl Engine {
    /// [`Engine::apply_event`] with a refusal as a `future` [`Rejection`],
    /// for code that applies decoded events itself (tests, benchmarks). It
    /// does not hold far-ahead events: [`Ingest::push`] does, and every
    /// driver of real input (`replay`, `backtest`, the Kafka partition task)
    /// goes through it.
    pub fn apply(&mut self, ev: &Event<'_>, out: &mut Vec<Signal>) -> Result<Applied, Rejection> {
        self.apply_event(ev, out).map_err(far_ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;

    /// What a Kafka-like driver (positions are offsets) is told.
    #[derive(Default)]
    struct Seen {
        applied: Vec<(u64, Applied)>,
        rejected: Vec<(u64, &'static str, String)>,
    }

    impl Outcomes<u64> for Seen {
        fn applied(&mut self, at: &u64, _event: &Event<'_>, applied: Applied) {
            self.applied.push((*at, applied));
        }

        fn rejected(&mut self, at: &u64, _bytes: &[u8], rejection: Rejection) {
            self.rejected.push((*at, rejection.reason.as_str(), rejection.detail));
        }
    }

    fn click(ts: &str, id: u32) -> Vec<u8> {
        format!(r#"{{"type":"click","campaign":"c","ts":"{ts}","id":"i{id}"}}"#).into_bytes()
    }

    fn setup() -> (Engine, Ingest<u64>, Seen, Vec<Signal>) {
        let limits = crate::config::LimitsConfig { max_event_bytes: 200, ..Default::default() };
        let engine = Engine::new(EngineConfig { limits, ..EngineConfig::default() }).expect("engine");
        let ingest = Ingest::new(engine.config());
        (engine, ingest, Seen::default(), Vec::new())
    }

    /// A lone far-ahead event is held, then rejected as `future` with its own
    /// position when the next event disagrees; two that agree are both applied.
    #[test]
    fn far_ahead_is_held_until_the_next_event_decides() {
        let (mut e, mut ingest, mut seen, mut out) = setup();
        assert_eq!(ingest.push(&mut e, &click("2026-03-02T09:00:00Z", 1), 10, &mut out, &mut seen), Pushed::Decided);
        assert_eq!(ingest.push(&mut e, &click("2026-03-05T09:00:00Z", 2), 11, &mut out, &mut seen), Pushed::Held);
        assert_eq!(ingest.held_at(), Some(&11));
        assert!(seen.rejected.is_empty(), "undecided yet");
        assert_eq!(ingest.push(&mut e, &click("2026-03-02T09:00:01Z", 3), 12, &mut out, &mut seen), Pushed::Decided);
        assert_eq!(ingest.held_at(), None);
        assert_eq!(seen.rejected.len(), 1);
        assert_eq!((seen.rejected[0].0, seen.rejected[0].1), (11, "future"));
        assert!(seen.rejected[0].2.contains("ahead of the latest event time 2026-03-02T09:00:00"), "{}", seen.rejected[0].2);
        // A real jump: two events agree.
        assert_eq!(ingest.push(&mut e, &click("2026-03-09T09:00:00Z", 4), 13, &mut out, &mut seen), Pushed::Held);
        assert_eq!(ingest.push(&mut e, &click("2026-03-09T09:00:05Z", 5), 14, &mut out, &mut seen), Pushed::Decided);
        let applied: Vec<u64> = seen.applied.iter().map(|a| a.0).collect();
        assert_eq!(applied, [10, 12, 13, 14]);
        assert_eq!(seen.rejected.len(), 1);
    }

    /// Too large and undecodable records are rejected with their position and
    /// do not decide about a held one; end of input and an idle watermark
    /// reject what is held.
    #[test]
    fn bad_records_do_not_release_a_held_one_but_the_end_does() {
        let (mut e, mut ingest, mut seen, mut out) = setup();
        ingest.push(&mut e, &click("2026-03-02T09:00:00Z", 1), 0, &mut out, &mut seen);
        assert_eq!(ingest.push(&mut e, &click("2026-03-05T09:00:00Z", 2), 1, &mut out, &mut seen), Pushed::Held);
        ingest.push(&mut e, &[b' '; 300], 2, &mut out, &mut seen);
        ingest.push(&mut e, b"{\"type\":", 3, &mut out, &mut seen);
        assert_eq!(ingest.held_at(), Some(&1));
        let reasons: Vec<(u64, &str)> = seen.rejected.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(reasons, [(2, "too_large"), (3, "json")]);
        assert!(seen.rejected[0].2.contains("300 bytes is over limits.max_event_bytes (200)"), "{}", seen.rejected[0].2);
        ingest.finish(&mut e, &mut out, &mut seen);
        assert_eq!((seen.rejected[2].0, seen.rejected[2].1), (1, "future"));

        let (mut e, mut ingest, mut seen, mut out) = setup();
        ingest.push(&mut e, &click("2026-03-02T09:00:00Z", 1), 0, &mut out, &mut seen);
        ingest.push(&mut e, &click("2026-03-05T09:00:00Z", 2), 1, &mut out, &mut seen);
        ingest.advance_to(&mut e, 1_772_442_000_000, &mut out, &mut seen);
        assert_eq!(ingest.held_at(), None);
        assert_eq!((seen.rejected[0].0, seen.rejected[0].1), (1, "future"));
    }
}
