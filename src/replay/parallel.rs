//! `replay --threads N`: the same replay, with decoding on `N` worker threads.
//!
//! ```text
//! reader ──chunk k (whole lines)──► worker k mod N: size limit + decode ──┐
//!                                                                          ▼
//!                      engine thread (the caller): chunks in order k = 0, 1, 2, …
//!                      → the ingest step after decoding (Ingest::push_decoded)
//! ```
//!
//! Decoding is a line's own business (no state), so it is the part that runs
//! in parallel; everything that depends on the order of lines — the
//! far-future hold, dedup, the watermark, both halves of every bin step,
//! planning — runs on one thread, through the very same [`Driver`] as
//! `--threads 1`, in input order. The output (signals, errors with their line
//! numbers and byte offsets, the report) is therefore the one-thread output
//! byte for byte, whatever `N` and however the lines fall into chunks.
//!
//! The reader cuts the input into chunks of at least [`CHUNK_BYTES`] ending
//! at a line end (a longer line makes a longer chunk), hands chunk `k` to
//! worker `k mod N`, and the engine thread takes the decoded chunks back from
//! the workers in the same round-robin order, so no sequence numbers or
//! reordering buffers are needed. Bounded channels ([`AHEAD`] chunks per
//! worker) keep memory flat; chunk buffers go back to the reader to be
//! filled again.

use std::borrow::Cow;
use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use super::{record_of, replay_into, Driver, ReplayReport, ReplaySink};
use crate::decode::Rejection;
use crate::engine::Engine;
use crate::event::{Event, EventKind};
use crate::ingest::decode_record;
use crate::signal::Signal;

use super::{Closures, LineError};

/// A chunk holds at least this many bytes of whole lines (but the last).
const CHUNK_BYTES: usize = 1 << 20;

/// Decoded chunks each worker may hold ready ahead of the engine thread (and
/// chunks waiting for it).
const AHEAD: usize = 2;

/// A line of a chunk, after a worker decoded it.
struct DecodedLine {
    /// Where the line ends in the chunk's bytes (after its terminator); it
    /// starts where the previous line ends.
    end: usize,
    /// The record's size check and decoding ([`decode_record`]), its
    /// strings as places in the chunk; `None` for a blank line.
    decoded: Option<Result<CompactEvent, Rejection>>,
}

/// A string of a decoded event, kept without copying it where it can be.
enum Text {
    /// The string lies in the chunk's bytes at `start..end` (the decoder
    /// borrowed it from the line).
    InChunk {
        /// Its first byte in the chunk.
        start: usize,
        /// One past its last byte.
        end: usize,
    },
    /// The decoder had to build it (a JSON escape): its own copy.
    Built(Box<str>),
}

impl Text {
    /// Where `s` (decoded from `chunk`) is: in the chunk, or its own copy.
    fn of(s: Cow<'_, str>, chunk: &[u8]) -> Text {
        let base = chunk.as_ptr() as usize;
        let start = (s.as_ptr() as usize).wrapping_sub(base);
        match s {
            Cow::Borrowed(b) if start <= chunk.len() && b.len() <= chunk.len() - start => Text::InChunk { start, end: start + b.len() },
            other => Text::Built(other.into_owned().into_boxed_str()),
        }
    }

    /// The string again, borrowed from `chunk`.
    fn get<'a>(&'a self, chunk: &'a Chunk) -> Option<Cow<'a, str>> {
        match self {
            Text::InChunk { start, end } => chunk.str_at(*start, *end).map(Cow::Borrowed),
            Text::Built(s) => Some(Cow::Borrowed(s)),
        }
    }
}

/// An [`Event`] that does not borrow from its chunk, so that it can travel
/// with it between threads; [`CompactEvent::event`] borrows again.
struct CompactEvent {
    /// [`Event::kind`].
    kind: EventKind,
    /// [`Event::campaign`].
    campaign: Text,
    /// [`Event::ts_ms`].
    ts_ms: i64,
    /// [`Event::id`].
    id: Option<Text>,
    /// [`Event::person`].
    person: Option<Text>,
    /// [`Event::parent`].
    parent: Option<Text>,
    /// [`Event::generation`].
    generation: u32,
    /// [`Event::recipients`].
    recipients: u64,
    /// [`Event::target`].
    target: Option<Text>,
    /// [`Event::audience`].
    audience: Option<Text>,
}

impl CompactEvent {
    /// `ev`, decoded from a line of `chunk`.
    fn new(ev: Event<'_>, chunk: &[u8]) -> CompactEvent {
        let text = |s: Option<Cow<'_, str>>| s.map(|s| Text::of(s, chunk));
        CompactEvent {
            kind: ev.kind,
            campaign: Text::of(ev.campaign, chunk),
            ts_ms: ev.ts_ms,
            id: text(ev.id),
            person: text(ev.person),
            parent: text(ev.parent),
            generation: ev.generation,
            recipients: ev.recipients,
            target: text(ev.target),
            audience: text(ev.audience),
        }
    }

    /// The event, borrowing from `chunk` (the chunk it was decoded from).
    /// `None` only if a string is not where it was (not expected: the
    /// caller then decodes the line again).
    fn event<'a>(&'a self, chunk: &'a Chunk) -> Option<Event<'a>> {
        let text = |t: &'a Option<Text>| -> Option<Option<Cow<'a, str>>> {
            match t {
                Some(t) => t.get(chunk).map(Some),
                None => Some(None),
            }
        };
        Some(Event {
            kind: self.kind,
            campaign: self.campaign.get(chunk)?,
            ts_ms: self.ts_ms,
            id: text(&self.id)?,
            person: text(&self.person)?,
            parent: text(&self.parent)?,
            generation: self.generation,
            recipients: self.recipients,
            target: text(&self.target)?,
            audience: text(&self.audience)?,
        })
    }
}

/// Whole lines of the input, and (once a worker had them) their decodings.
#[derive(Default)]
struct Chunk {
    /// The bytes, terminators included (empty once they moved to `text`).
    bytes: Vec<u8>,
    /// The same bytes as a `String`, once the worker found them valid UTF-8
    /// (almost always): the engine thread then takes each string of an
    /// event by a boundary check, without validating it again.
    text: Option<String>,
    /// One entry per line, in order; empty until decoded.
    lines: Vec<DecodedLine>,
}

impl Chunk {
    /// The chunk's bytes, wherever they are.
    fn data(&self) -> &[u8] {
        self.text.as_deref().map_or(&self.bytes, str::as_bytes)
    }

    /// The text at `start..end`, if it is text.
    fn str_at(&self, start: usize, end: usize) -> Option<&str> {
        match &self.text {
            Some(text) => text.get(start..end),
            None => self.bytes.get(start..end).and_then(|b| std::str::from_utf8(b).ok()),
        }
    }

    /// After the workers decoded the lines: keeps the bytes as text if they
    /// are (one validation per chunk, on the worker).
    fn keep_as_text(&mut self) {
        match String::from_utf8(std::mem::take(&mut self.bytes)) {
            Ok(text) => self.text = Some(text),
            Err(not_text) => self.bytes = not_text.into_bytes(),
        }
    }

    /// Empty, for the reader to fill again (keeping the buffers).
    fn clear(&mut self) {
        if let Some(text) = self.text.take() {
            self.bytes = text.into_bytes();
        }
        self.bytes.clear();
        self.lines.clear();
    }
}

/// What goes from the reader to a worker and on to the engine thread.
enum Job {
    /// The next chunk of the input.
    Chunk(Chunk),
    /// Reading failed here; the replay stops with this error after the
    /// chunks before it.
    Failed(io::Error),
}

/// [`super::replay`] with decoding on `threads` worker threads (see the
/// module documentation). `threads <= 1` is [`super::replay`] itself.
pub fn replay_threads<R: Read + Send>(
    input: R,
    engine: &mut Engine,
    threads: usize,
    on_signal: impl FnMut(&Signal) -> io::Result<()>,
    on_error: impl FnMut(&LineError),
) -> io::Result<ReplayReport> {
    replay_threads_into(input, engine, &mut Closures { on_signal, on_error }, threads)
}

/// [`replay_threads`] with a [`ReplaySink`] (the sink is called on the
/// caller's thread only, in the one-thread order).
pub fn replay_threads_into<R: Read + Send>(
    input: R,
    engine: &mut Engine,
    sink: &mut impl ReplaySink,
    threads: usize,
) -> io::Result<ReplayReport> {
    if threads <= 1 {
        return replay_into(io::BufReader::with_capacity(1 << 16, input), engine, sink);
    }
    replay_chunked(input, engine, sink, threads, CHUNK_BYTES)
}

/// [`replay_threads_into`] with chunks of at least `chunk_bytes` (tests make
/// them tiny, so that lines fall on chunk boundaries in every way).
fn replay_chunked<R: Read + Send>(
    input: R,
    engine: &mut Engine,
    sink: &mut impl ReplaySink,
    threads: usize,
    chunk_bytes: usize,
) -> io::Result<ReplayReport> {
    let max_event_bytes = engine.config().limits.max_event_bytes as usize;
    let mut driver = Driver::new(engine, sink);
    std::thread::scope(|scope| {
        let (recycle, recycled) = mpsc::channel::<Chunk>();
        let mut to_workers = Vec::with_capacity(threads);
        let mut from_workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (jobs_in, jobs) = mpsc::sync_channel::<Job>(AHEAD);
            let (done, done_out) = mpsc::sync_channel::<Job>(AHEAD);
            scope.spawn(move || decode_chunks(jobs, done, max_event_bytes));
            to_workers.push(jobs_in);
            from_workers.push(done_out);
        }
        scope.spawn(move || read_chunks(input, chunk_bytes, &to_workers, &recycled));
        let result = apply_chunks(&mut driver, &from_workers, &recycle);
        // On an early return (the sink failed), the workers' sends fail
        // once these are gone, and then the reader's: every thread ends.
        drop(from_workers);
        drop(recycle);
        result?;
        driver.finish()
    })
}

/// The engine thread: the decoded chunks in input order, through the driver.
fn apply_chunks<K: ReplaySink>(driver: &mut Driver<'_, '_, K>, from_workers: &[Receiver<Job>], recycle: &Sender<Chunk>) -> io::Result<()> {
    for k in 0.. {
        match from_workers[k % from_workers.len()].recv() {
            Ok(Job::Chunk(mut chunk)) => {
                let mut start = 0;
                let max_event_bytes = driver.ingest.max_event_bytes();
                for line in &chunk.lines {
                    let raw = &chunk.data()[start..line.end];
                    let decoded = match &line.decoded {
                        None => None,
                        Some(Err(rejection)) => Some(Err(rejection.clone())),
                        Some(Ok(compact)) => Some(match compact.event(&chunk) {
                            Some(ev) => Ok(ev),
                            // Not expected; the line decodes the same again.
                            None => decode_record(record_of(raw).unwrap_or(raw), max_event_bytes),
                        }),
                    };
                    driver.decoded_line(raw, decoded)?;
                    start = line.end;
                }
                chunk.lines.clear();
                // The reader may have stopped already; then the buffer goes.
                let _ = recycle.send(chunk);
            }
            Ok(Job::Failed(e)) => return Err(e),
            // The worker of chunk k has no more: there is no chunk k.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// A worker: decodes the lines of each chunk it is given, and passes it on.
fn decode_chunks(jobs: Receiver<Job>, done: SyncSender<Job>, max_event_bytes: usize) {
    for job in jobs {
        let job = match job {
            Job::Chunk(mut chunk) => {
                decode_lines(&mut chunk, max_event_bytes);
                chunk.keep_as_text();
                Job::Chunk(chunk)
            }
            failed => failed,
        };
        if done.send(job).is_err() {
            return;
        }
    }
}

/// Fills `chunk.lines`: each line's end, and its record decoded as the
/// one-thread replay would ([`record_of`], [`decode_record`]).
fn decode_lines(chunk: &mut Chunk, max_event_bytes: usize) {
    let bytes = &chunk.bytes;
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', bytes).map(|i| i + 1);
    // A last line without a terminator (end of input) is a line too.
    let tail = (bytes.last() != Some(&b'\n') && !bytes.is_empty()).then_some(bytes.len());
    for end in ends.chain(tail) {
        let decoded = record_of(&bytes[start..end]).map(|r| decode_record(r, max_event_bytes).map(|ev| CompactEvent::new(ev, bytes)));
        chunk.lines.push(DecodedLine { end, decoded });
        start = end;
    }
}

/// The reader: cuts `input` into chunks of whole lines and deals them to the
/// workers in turn (chunk `k` to worker `k mod N`). A chunk is at least
/// `chunk_bytes` long, but the last.
fn read_chunks<R: Read>(mut input: R, chunk_bytes: usize, to_workers: &[SyncSender<Job>], recycled: &Receiver<Chunk>) {
    // The start of a line whose end was not read yet.
    let mut carry: Vec<u8> = Vec::new();
    let mut k = 0usize;
    let mut send = |job: Job| {
        let sent = to_workers[k % to_workers.len()].send(job).is_ok();
        k += 1;
        sent
    };
    loop {
        let mut chunk = recycled.try_recv().unwrap_or_default();
        chunk.clear();
        chunk.bytes.append(&mut carry);
        // A line longer than a chunk: read on, doubling, until it ends.
        let want = chunk_bytes.max(2 * chunk.bytes.len()).max(1);
        let before = chunk.bytes.len();
        let read = (&mut input).take((want - before) as u64).read_to_end(&mut chunk.bytes);
        let at_end = match &read {
            Ok(_) => chunk.bytes.len() < want,
            Err(_) => true,
        };
        if !at_end || read.is_err() {
            // Only whole lines go out; the rest starts the next chunk.
            match memchr::memrchr(b'\n', &chunk.bytes) {
                Some(i) => {
                    carry.extend_from_slice(&chunk.bytes[i + 1..]);
                    chunk.bytes.truncate(i + 1);
                }
                None => carry = std::mem::take(&mut chunk.bytes),
            }
        }
        if !chunk.bytes.is_empty() && !send(Job::Chunk(chunk)) {
            return;
        }
        match read {
            Err(e) => {
                send(Job::Failed(e));
                return;
            }
            Ok(_) if at_end => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::config::Config;

    /// Everything a replay tells its sink, as text.
    #[derive(Default, Debug, PartialEq)]
    struct Seen {
        signals: Vec<String>,
        errors: Vec<String>,
        applied: Vec<String>,
    }

    impl ReplaySink for Seen {
        fn signal(&mut self, signal: &Signal) -> io::Result<()> {
            self.signals.push(format!("{signal:?}"));
            Ok(())
        }

        fn error(&mut self, error: &LineError) {
            self.errors.push(error.to_string());
        }

        fn applied(&mut self, at: &crate::ingest::LinePosition, event: &Event<'_>, applied: crate::engine::Applied) {
            self.applied.push(format!("{at:?} {event:?} {applied:?}"));
        }
    }

    fn engine() -> Engine {
        let cfg = Config::from_toml("[limits]\nmax_event_bytes = 400\n").expect("config");
        Engine::new(cfg).expect("engine").with_estimates(true)
    }

    /// A log with every kind of trouble: duplicates, undecodable and too
    /// large lines, blank and CRLF lines, a lone far-future line (a bad
    /// clock), two agreeing far-future lines (a real jump), late lines, and a
    /// last line without a newline.
    fn messy_log() -> Vec<u8> {
        let mut data = Vec::new();
        let events = crate::simulate::simulate(&crate::simulate::demo_scenario(5, 1_772_438_400_000));
        let n = events.len().min(4000);
        for (i, e) in events.iter().take(n).enumerate() {
            data.extend_from_slice(e.line.as_bytes());
            data.extend_from_slice(if i % 11 == 0 { b"\r\n" } else { b"\n" });
            if i % 97 == 0 {
                // A duplicate of the line just written.
                data.extend_from_slice(e.line.as_bytes());
                data.push(b'\n');
            }
            if i % 301 == 0 {
                data.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\n  \n");
                data.extend_from_slice(format!("{{\"type\":\"click\",\"campaign\":\"c\",\"pad\":\"{}\"}}\n", "x".repeat(500)).as_bytes());
            }
            if i == n / 3 {
                data.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\"clock\",\"ts\":\"2026-09-01T00:00:00Z\",\"id\":\"f1\"}\n");
            }
            if i == n - 10 {
                data.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\"t\",\"ts\":\"2026-03-04T00:00:00Z\",\"id\":\"j1\"}\n");
                data.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\"t\",\"ts\":\"2026-03-04T00:00:01Z\",\"id\":\"j2\"}\n");
                data.extend_from_slice(b"{\"type\":\"click\",\"campaign\":\"late\",\"ts\":\"2026-03-02T08:00:00Z\",\"id\":\"l1\"}\n");
            }
        }
        data.extend_from_slice(br#"{"type":"click","campaign":"last","ts":"2026-03-04T00:00:02Z"}"#);
        data
    }

    fn one_thread(data: &[u8]) -> (Seen, ReplayReport) {
        let mut seen = Seen::default();
        let report = replay_into(data, &mut engine(), &mut seen).expect("replay");
        (seen, report)
    }

    /// Whatever the number of threads and however lines fall into chunks
    /// (chunks of 1 byte, smaller than a line, of a few lines, of many), the
    /// sink is told exactly what the one-thread replay tells it, in the same
    /// order, and the reports are equal.
    #[test]
    fn threads_give_the_one_thread_output_whatever_the_chunks() {
        let data = messy_log();
        let (reference, report) = one_thread(&data);
        assert!(reference.signals.iter().any(|s| s.starts_with("ViralOnset")), "an onset to compare");
        assert!(reference.signals.iter().any(|s| s.starts_with("Estimate")), "estimates to compare");
        let reasons: Vec<&str> = report.rejected_by_reason.keys().copied().collect();
        for reason in ["future", "json", "too_large"] {
            assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
        }
        assert!(report.duplicates > 0 && report.late > 0, "{report:?}");
        assert!(reference.applied.iter().any(|a| a.contains("\"j1\"")), "the confirmed jump was applied");
        for threads in [2, 3] {
            for chunk_bytes in [1, 150, 4096, 1 << 20] {
                let mut seen = Seen::default();
                let got = replay_chunked(&data[..], &mut engine(), &mut seen, threads, chunk_bytes).expect("replay");
                assert_eq!(got, report, "{threads} threads, chunks of {chunk_bytes} bytes");
                assert_eq!(seen.errors, reference.errors, "{threads} threads, chunks of {chunk_bytes} bytes");
                assert_eq!(seen.applied, reference.applied, "{threads} threads, chunks of {chunk_bytes} bytes");
                assert!(seen.signals == reference.signals, "{threads} threads, chunks of {chunk_bytes} bytes: signals differ");
            }
        }
    }

    /// A read error stops the replay with that error, after the lines before it.
    #[test]
    fn a_read_error_stops_the_replay() {
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = self.0.read(buf)?;
                Ok(n)
            }
        }
        let data = messy_log();
        let mut seen = Seen::default();
        let err = replay_chunked(Failing(&data[..]), &mut engine(), &mut seen, 2, 4096).expect_err("a read error");
        assert_eq!(err.to_string(), "disk on fire");
        assert!(!seen.applied.is_empty(), "the lines before the error were applied");
    }

    /// A sink that fails stops the replay, and every thread ends (the test
    /// would hang otherwise).
    #[test]
    fn a_failing_sink_stops_every_thread() {
        let data = messy_log();
        let mut engine = engine();
        let err = replay_threads(&data[..], &mut engine, 2, |_| Err(io::Error::other("stdout closed")), |_| {}).expect_err("sink error");
        assert_eq!(err.to_string(), "stdout closed");
    }
}
