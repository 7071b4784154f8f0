//! The Kafka sink: one idempotent producer per instance for signals, estimates
//! and dead letters.
//!
//! Delivery is tracked by the caller: [`Outbox::try_send`] returns a
//! [`Pending`] whose future resolves when the broker acknowledged the record;
//! a failed delivery is re-sent (the record is kept until acknowledged), so a
//! signal is never dropped and offsets are never committed past an unsent
//! signal. `message.timeout.ms` defaults to 0 (librdkafka retries until
//! delivered) unless set in `kafka.properties`; what still fails (a missing
//! topic, after `topic.metadata.propagation.max.ms`) is re-sent by the
//! service, which stops taking input meanwhile.
//!
//! A *fatal* producer error (the idempotent producer lost its sequence state,
//! e.g. a broker that forgot the producer) makes the producer unusable: the
//! [`Fatal`] tripwire then stops the service, which commits only what was
//! acknowledged and exits with an error, so that a restart (a new producer)
//! re-processes the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::sync::broadcast;

use crate::config::KafkaConfig;
use crate::signal::Signal;

/// How often the same librdkafka error is logged per client.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(30);

/// Rate-limits librdkafka's global errors (a broker outage reports
/// `AllBrokersDown` and transport failures many times a second per client):
/// each distinct error is logged once per 30 s, with the number suppressed.
#[derive(Debug, Default)]
pub struct ErrorLog {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl ErrorLog {
    /// Logs `error` for `client` unless the same error was logged recently.
    pub fn report(&self, client: &str, error: &KafkaError, reason: &str) {
        let key = format!("{client}:{error}");
        let suppressed = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() > 256 {
                seen.clear();
            }
            match seen.get_mut(&key) {
                Some((at, n)) if at.elapsed() < ERROR_LOG_EVERY => {
                    *n += 1;
                    return;
                }
                Some((at, n)) => {
                    *at = Instant::now();
                    std::mem::take(n)
                }
                None => {
                    seen.insert(key, (Instant::now(), 0));
                    0
                }
            }
        };
        let fatal = matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal));
        if fatal {
            tracing::error!(client, error = %error, reason, suppressed, "kafka client error");
        } else {
            tracing::warn!(client, error = %error, reason, suppressed, "kafka client error (retried by librdkafka)");
        }
    }
}

/// The client context of the producer and the offsets reader: librdkafka's
/// own log lines as usual, global errors rate-limited by [`ErrorLog`].
#[derive(Debug)]
pub struct QuietContext {
    client: &'static str,
    errors: ErrorLog,
}

impl QuietContext {
    /// A context for the client named `client` (in log lines).
    pub fn new(client: &'static str) -> QuietContext {
        QuietContext { client, errors: ErrorLog::default() }
    }
}

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(self.client, &error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}

/// Stops the service after a fatal producer error (see the module docs).
#[derive(Debug)]
pub struct Fatal {
    reason: Mutex<Option<String>>,
    tx: broadcast::Sender<()>,
}

impl Fatal {
    /// A tripwire that sends on `tx` when tripped.
    pub fn new(tx: broadcast::Sender<()>) -> Fatal {
        Fatal { reason: Mutex::new(None), tx }
    }

    /// Records `reason` (the first one wins) and stops the service.
    pub fn trip(&self, reason: String) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            tracing::error!(reason = %reason, "fatal Kafka producer error: stopping (commit what was acknowledged, exit with an error; a restart re-processes the rest)");
            *r = Some(reason);
            let _ = self.tx.send(());
        }
    }

    /// The reason, once tripped.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A client configuration with `bootstrap.servers` and every
/// `kafka.properties` entry (SASL, TLS, … pass through unchanged).
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// The producer used for signals and dead letters: idempotent
/// (`enable.idempotence=true`, so retries never duplicate or reorder a
/// partition's records), `acks=all`, infinite retry by default. Any of these
/// can be overridden in `kafka.properties`.
pub fn producer(cfg: &KafkaConfig) -> Result<FutureProducer<QuietContext>, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    c.set("enable.idempotence", "true");
    c.set("acks", "all");
    c.set("linger.ms", "5");
    c.set("message.timeout.ms", "0");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.create_with_context(QuietContext::new("producer"))
}

/// An owned record, kept until the broker acknowledged it.
#[derive(Clone, Debug)]
pub struct OutRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Key (campaign or target for signals; the original key for dead letters).
    pub key: Option<Vec<u8>>,
    /// Value.
    pub payload: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// Message timestamp (ms), if any.
    pub timestamp_ms: Option<i64>,
}

impl OutRecord {
    /// A signal as CloudEvents JSON keyed by [`Signal::key`], with `ce_id`
    /// and `ce_type` headers.
    pub fn signal(topic: Arc<str>, source: &str, s: &Signal, buf: &mut String) -> OutRecord {
        buf.clear();
        s.write_cloudevent(source, buf);
        OutRecord {
            topic,
            key: Some(s.key().as_bytes().to_vec()),
            payload: Some(buf.as_bytes().to_vec()),
            headers: vec![("ce_id", s.id().into_bytes()), ("ce_type", s.kind().as_bytes().to_vec()), ("ce_specversion", b"1.0".to_vec())],
            timestamp_ms: Some(s.time_ms()),
        }
    }
}

/// A record handed to the producer and not yet acknowledged.
pub struct Pending {
    /// The lowest input offset whose effects include this record: offsets
    /// below it may be committed while it is pending, this one may not.
    pub guard: i64,
    /// When the input message that caused it was received (latency metric).
    pub received: Option<Instant>,
    /// The record (re-sent on failure).
    pub record: OutRecord,
    /// Resolves on acknowledgement; `None` while the record waits to be
    /// (re-)sent.
    pub delivery: Option<DeliveryFuture>,
}

/// Sends records through the shared producer, waiting while its queue is full.
#[derive(Clone)]
pub struct Outbox {
    producer: FutureProducer<QuietContext>,
    fatal: Arc<Fatal>,
    last_warning: Arc<Mutex<Option<Instant>>>,
}

impl Outbox {
    /// Wraps the instance's producer; fatal producer errors trip `fatal`.
    pub fn new(producer: FutureProducer<QuietContext>, fatal: Arc<Fatal>) -> Outbox {
        Outbox { producer, fatal, last_warning: Arc::new(Mutex::new(None)) }
    }

    /// The producer.
    pub fn producer(&self) -> &FutureProducer<QuietContext> {
        &self.producer
    }

    /// Whether the producer is in a fatal state (then the tripwire is tripped).
    pub fn check_fatal(&self) -> bool {
        match self.producer.client().fatal_error() {
            Some((code, reason)) => {
                self.fatal.trip(format!("{code:?}: {reason}"));
                true
            }
            None => false,
        }
    }

    /// Whether to log a warning now (at most one every 10 s per instance).
    pub fn should_warn(&self) -> bool {
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            true
        } else {
            false
        }
    }

    /// Hands `record` to the producer (no waiting: a full local queue is
    /// `QueueFull`, a topic known not to exist `UnknownTopic`, …).
    pub fn try_send(&self, record: &OutRecord) -> Result<DeliveryFuture, KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (k, v) in &record.headers {
            headers = headers.insert(Header { key: k, value: Some(v.as_slice()) });
        }
        let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&record.topic).headers(headers);
        if let Some(k) = &record.key {
            fr = fr.key(k.as_slice());
        }
        if let Some(p) = &record.payload {
            fr = fr.payload(p.as_slice());
        }
        if let Some(ts) = record.timestamp_ms {
            fr = fr.timestamp(ts);
        }
        self.producer.send_result(fr).map_err(|(e, _)| e)
    }

    /// Flushes the producer (shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}
