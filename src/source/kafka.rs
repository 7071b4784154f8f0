//! Kafka plumbing for the source side: the consumer-group context whose
//! rebalance callback hands partitions to the service, topic creation, and
//! `floodgate produce`.
//!
//! The consumer is a [`BaseConsumer`] polled on a dedicated OS thread (see
//! [`crate::service`]), so the rebalance callback may block: on revoke it
//! waits for the partition tasks to drain their acknowledgements and commits
//! their offsets synchronously before the partitions go; on assign it reads
//! the committed offsets and rewinds each partition for the state rebuild.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;

use crate::config::KafkaConfig;
use crate::sink::kafka::{client_config, ErrorLog, QuietContext};

/// What the service does when partitions come and go. Called on the
/// consumer thread, inside `poll`.
pub trait RebalanceHandler: Send + Sync + 'static {
    /// Partitions are being assigned: set each element's start offset in
    /// `tpl` (the rebuild rewind) and start their tasks.
    fn on_assign(&self, consumer: &BaseConsumer<GroupContext>, tpl: &mut TopicPartitionList);
    /// Partitions are being revoked: drain and commit them.
    fn on_revoke(&self, consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList);
    /// An asynchronous commit of `offsets` failed (e.g. the broker is down).
    fn on_commit_failed(&self, _offsets: &TopicPartitionList) {}
}

/// The consumer context: routes rebalances to a [`RebalanceHandler`] and
/// applies the assignment itself (eager or cooperative).
pub struct GroupContext {
    handler: Arc<dyn RebalanceHandler>,
    errors: ErrorLog,
}

impl GroupContext {
    /// A context calling `handler`.
    pub fn new(handler: Arc<dyn RebalanceHandler>) -> GroupContext {
        GroupContext { handler, errors: ErrorLog::default() }
    }
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report("consumer", &error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.handler.on_assign(consumer, tpl);
                let r = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(e) = r {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.handler.on_revoke(consumer, tpl);
                let r = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                if let Err(e) = r {
                    tracing::error!(error = %e, "unassigning partitions failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                let _ = consumer.unassign();
            }
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, "offset commit failed (retried at the next interval)");
            self.handler.on_commit_failed(offsets);
        }
    }
}

/// The group consumer: manual offset commits, no auto offset store, reading
/// from the earliest offset when the group has none.
pub fn group_consumer(cfg: &KafkaConfig, handler: Arc<dyn RebalanceHandler>) -> Result<BaseConsumer<GroupContext>, KafkaError> {
    let mut c = client_config(cfg);
    c.set("group.id", &cfg.group);
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("auto.offset.reset", "earliest");
    c.set("enable.partition.eof", "false");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.create_with_context(GroupContext::new(handler))
}

/// A consumer of the same group that never subscribes: reads committed
/// offsets and watermarks. (Kept for the process lifetime; see
/// [`crate::service`] on why it is never dropped.)
pub fn offsets_reader(cfg: &KafkaConfig) -> Result<BaseConsumer<QuietContext>, KafkaError> {
    let mut c = client_config(cfg);
    c.set("group.id", &cfg.group);
    c.set("enable.auto.commit", "false");
    c.create_with_context(QuietContext::new("offsets-reader"))
}

/// Creates `topic` with `partitions` partitions if it does not exist (an
/// existing topic is left as it is). Tansu 0.6 supports CreateTopics with
/// any partition count.
pub async fn ensure_topic(cfg: &KafkaConfig, topic: &str, partitions: i32) -> Result<(), KafkaError> {
    ensure_topic_with(cfg, topic, partitions, &[]).await
}

/// [`ensure_topic`] with topic configuration entries for a topic it
/// creates (e.g. `cleanup.policy=compact`); an existing topic is left as it is.
pub async fn ensure_topic_with(cfg: &KafkaConfig, topic: &str, partitions: i32, config: &[(&str, &str)]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))).request_timeout(Some(Duration::from_secs(15)));
    for r in admin.create_topics([&new], &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(KafkaError::AdminOp(code)).inspect_err(|_| tracing::warn!(topic = %t, "could not create topic")),
        }
    }
    Ok(())
}

/// Why `floodgate produce` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// Reading the input failed.
    #[error("reading the input: {0}")]
    Io(#[from] std::io::Error),
    /// The broker refused or could not be reached.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// What `floodgate produce` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProduceReport {
    /// Records published.
    pub published: u64,
    /// Of which without a key (no campaign could be read from the line).
    pub unkeyed: u64,
}

/// The campaign of an NDJSON event line, read cheaply: the value of the
/// top-level `"campaign"` key, if it is a plain JSON string (no escapes, not
/// empty). A `"campaign"` that is a value (`{"target":"campaign",…}`), sits
/// inside a string, or is a key of a nested object does not count. `None`
/// for malformed lines, which are still published, unkeyed.
pub fn campaign_of(line: &[u8]) -> Option<&str> {
    let rest = top_level_value(line, b"campaign")?.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
    if rest.get(end) == Some(&b'\\') || end == 0 {
        return None;
    }
    std::str::from_utf8(rest.get(..end)?).ok()
}

/// The event time of an NDJSON line (the top-level `"ts"`, as RFC 3339 or
/// epoch ms), read cheaply; the same key rule as [`campaign_of`].
pub fn ts_of(line: &[u8]) -> Option<i64> {
    let rest = top_level_value(line, b"ts")?;
    if let Some(s) = rest.strip_prefix(b"\"") {
        let end = s.iter().position(|&c| c == b'"')?;
        crate::time::parse_rfc3339_ms(std::str::from_utf8(s.get(..end)?).ok()?)
    } else {
        let end = rest.iter().position(|c| !c.is_ascii_digit()).unwrap_or(rest.len());
        std::str::from_utf8(rest.get(..end)?).ok()?.parse().ok()
    }
}

/// The bytes after `"key":` (blanks skipped) where `key` is a key of the
/// top-level JSON object `line`; `None` if the line is not an object or has
/// no such key. One pass over the line, no allocation: strings are skipped
/// with their escapes, nested objects and arrays by depth, so only a string
/// in key position of the outermost object is compared with `key` (as
/// written: an escaped spelling of the key is not recognised).
fn top_level_value<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut i = skip_blanks(line, 0);
    if line.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    // Nesting depth at `i`: 1 inside the top-level object.
    let mut depth = 1usize;
    // At depth 1, right after `{` or `,`: the next string is a key.
    let mut expect_key = true;
    while let Some(&c) = line.get(i) {
        match c {
            b'"' => {
                let start = i + 1;
                let end = string_end(line, start)?;
                i = end + 1;
                if depth == 1 && expect_key {
                    expect_key = false;
                    i = skip_blanks(line, i);
                    if line.get(i) != Some(&b':') {
                        return None;
                    }
                    i = skip_blanks(line, i + 1);
                    if line.get(start..end) == Some(key) {
                        return line.get(i..);
                    }
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return None;
                }
            }
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the `"` closing the JSON string whose content starts at `start`.
fn string_end(line: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        match line.get(i)? {
            b'"' => return Some(i),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// `i` moved past spaces and tabs.
fn skip_blanks(line: &[u8], mut i: usize) -> usize {
    while matches!(line.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// Publishes NDJSON lines to `topic`, keyed by campaign, with the message
/// timestamp set to the event time when it can be read. Blank lines are
/// skipped; malformed lines are published unkeyed (so dead-letter handling
/// can be exercised). Waits for every acknowledgement.
pub async fn produce_ndjson(cfg: &KafkaConfig, topic: &str, input: impl BufRead) -> Result<ProduceReport, ProduceError> {
    let mut c = client_config(cfg);
    c.set("enable.idempotence", "true");
    c.set("linger.ms", "20");
    c.set("message.timeout.ms", "60000");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    let producer: FutureProducer = c.create()?;
    let mut report = ProduceReport::default();
    let mut pending = std::collections::VecDeque::new();
    for line in input.split(b'\n') {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let key = campaign_of(&line).map(str::to_owned);
        let ts = ts_of(&line);
        loop {
            let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(line.as_slice());
            if let Some(k) = &key {
                rec = rec.key(k.as_str());
            }
            if let Some(t) = ts.filter(|&t| t >= 0) {
                rec = rec.timestamp(t);
            }
            match producer.send_result(rec) {
                Ok(f) => {
                    pending.push_back(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if let Some(f) = pending.pop_front() {
                        check(f.await)?;
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        report.published += 1;
        if key.is_none() {
            report.unkeyed += 1;
        }
        while pending.len() > 10_000 {
            if let Some(f) = pending.pop_front() {
                check(f.await)?;
            }
        }
    }
    for f in pending {
        check(f.await)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(report)
}

fn check(
    r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
) -> Result<(), KafkaError> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_campaign_and_ts_cheaply() {
        let l = br#"{"type":"click","campaign": "spring-sale","ts":"2026-03-02T08:00:01Z"}"#;
        assert_eq!(campaign_of(l), Some("spring-sale"));
        assert_eq!(ts_of(l), Some(1_772_438_401_000));
        assert_eq!(ts_of(br#"{"ts": 1700000000000}"#), Some(1_700_000_000_000));
        assert_eq!(campaign_of(br#"{"campaign":5}"#), None);
        assert_eq!(campaign_of(br#"{"campaign":"a\"b"}"#), None);
        assert_eq!(campaign_of(b"not json"), None);
    }

    #[test]
    fn reads_the_top_level_key_not_the_first_occurrence_of_the_text() {
        // Issue 14: a value equal to "campaign" before the key.
        let l = br#"{"target":"campaign","campaign":"c1","type":"click","ts":"2026-03-02T08:00:01Z"}"#;
        assert_eq!(campaign_of(l), Some("c1"));
        // Inside a string value, with escaped quotes around it.
        assert_eq!(campaign_of(br#"{"note":"say \"campaign\":\"x\"","campaign":"c2"}"#), Some("c2"));
        // A key of a nested object, or an array element, before the real key.
        assert_eq!(campaign_of(br#"{"meta":{"campaign":"x","a":[1,{"campaign":"y"}]},"campaign":"c3"}"#), Some("c3"));
        assert_eq!(campaign_of(br#"{"tags":["campaign","campaign"], "campaign" : "c4"}"#), Some("c4"));
        // Only nested or only as a value: no key.
        assert_eq!(campaign_of(br#"{"meta":{"campaign":"x"}}"#), None);
        assert_eq!(campaign_of(br#"{"target":"campaign"}"#), None);
        assert_eq!(campaign_of(br#"["campaign","c1"]"#), None);
        // A key with escapes inside it is skipped correctly.
        assert_eq!(campaign_of(br#"{"a\"b":"campaign","campaign":"c5"}"#), Some("c5"));
        // Unterminated input.
        assert_eq!(campaign_of(br#"{"target":"campaign"#), None);
        assert_eq!(campaign_of(br#"{"campaign":"c6"#), None);
        // The same rule for ts.
        assert_eq!(ts_of(br#"{"type":"ts","meta":{"ts":5},"ts":7}"#), Some(7));
        assert_eq!(ts_of(br#"{"meta":{"ts":5}}"#), None);
        assert_eq!(ts_of(br#"{"note":"\"ts\":5","ts":"2026-03-02T08:00:01Z"}"#), Some(1_772_438_401_000));
    }
}
