//! The Kafka sink: one idempotent producer per instance for signals, estimates
//! and dead letters.
//!
//! Delivery is tracked by the caller: [`Outbox::send`] returns a
//! [`Pending`] whose future resolves when the broker acknowledged the record;
//! a failed delivery is re-sent (the record is kept until acknowledged), so a
//! signal is never dropped and offsets are never committed past an unsent
//! signal. `message.timeout.ms` defaults to 0 (librdkafka retries until
//! delivered) unless set in `kafka.properties`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::config::KafkaConfig;
use crate::signal::Signal;

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
pub fn producer(cfg: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    c.set("enable.idempotence", "true");
    c.set("acks", "all");
    c.set("linger.ms", "5");
    c.set("message.timeout.ms", "0");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.create()
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
    /// Resolves on acknowledgement.
    pub delivery: DeliveryFuture,
}

/// Sends records through the shared producer, waiting while its queue is full.
#[derive(Clone)]
pub struct Outbox {
    producer: FutureProducer,
}

impl Outbox {
    /// Wraps the instance's producer.
    pub fn new(producer: FutureProducer) -> Outbox {
        Outbox { producer }
    }

    /// The producer.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Enqueues `record`; waits (asynchronously) while the local queue is full.
    pub async fn send(&self, record: OutRecord, guard: i64, received: Option<Instant>) -> Pending {
        loop {
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
            match self.producer.send_result(fr) {
                Ok(delivery) => return Pending { guard, received, record, delivery },
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    tracing::warn!(topic = %record.topic, error = %e, "could not enqueue a record; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Waits for `p` to be acknowledged, re-sending it after a failure (with
    /// a back-off), so it is never dropped.
    pub async fn confirm(&self, mut p: Pending) -> Pending {
        loop {
            match (&mut p.delivery).await {
                Ok(Ok(_)) => return p,
                Ok(Err((e, _))) => {
                    tracing::warn!(topic = %p.record.topic, error = %e, "delivery failed; re-sending");
                }
                Err(_) => tracing::warn!(topic = %p.record.topic, "delivery future cancelled; re-sending"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let record = p.record.clone();
            p = self.send(record, p.guard, p.received).await;
        }
    }

    /// Flushes the producer (shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}
