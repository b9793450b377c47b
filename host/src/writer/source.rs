//! Where the writer reads events: the embedded log (one partition) or a
//! Kafka topic through a consumer group.
//!
//! Positions come from the warehouse's commit records, never from Kafka's
//! group offsets: when the group assigns a partition, the rebalance callback
//! recovers the partition from its commit records and assigns it at that
//! position. Group offsets are still committed after each warehouse commit,
//! for monitoring (`kafka-consumer-groups --describe` shows the lag).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext};

use super::commit::Commits;
use crate::transport::embedded::EmbeddedLog;
use crate::transport::kafka::{SetupError, apply_options};

/// Records of one partition read in one poll, in offset order, in one buffer.
#[derive(Debug, Default)]
pub struct Chunk {
    pub partition: i32,
    pub offsets: Vec<i64>,
    pub data: Vec<u8>,
    /// Record `i` is `data[ends[i-1]..ends[i]]`.
    pub ends: Vec<usize>,
    /// The first chunk of the partition since it was assigned or sought.
    pub reset: bool,
}

impl Chunk {
    fn new(partition: i32) -> Self {
        Chunk {
            partition,
            ..Default::default()
        }
    }

    fn push(&mut self, offset: i64, payload: &[u8]) {
        self.offsets.push(offset);
        self.data.extend_from_slice(payload);
        self.ends.push(self.data.len());
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

/// Partitions gained or lost since the last call.
#[derive(Debug, Default)]
pub struct Assignment {
    pub revoked: Vec<i32>,
    /// Partition and the position recovered from the warehouse.
    pub assigned: Vec<(i32, i64)>,
}

pub enum Source {
    Embedded(EmbeddedSource),
    Kafka(KafkaSource),
}

impl Source {
    /// A short name for commit records: the topic, or `log`.
    pub fn name(&self) -> &str {
        match self {
            Source::Embedded(_) => "log",
            Source::Kafka(k) => &k.topic,
        }
    }

    /// Up to `max` records, waiting at most `timeout` for the first.
    pub fn poll(&mut self, max: usize, timeout: Duration) -> Vec<Chunk> {
        match self {
            Source::Embedded(s) => s.poll(max, timeout),
            Source::Kafka(s) => s.poll(max, timeout),
        }
    }

    pub fn take_assignment(&mut self) -> Assignment {
        match self {
            Source::Embedded(s) => std::mem::take(&mut s.pending),
            Source::Kafka(s) => std::mem::take(&mut *s.consumer.context().changes.lock().unwrap()),
        }
    }

    /// Continues `partition` from `offset`.
    pub fn seek(&mut self, partition: i32, offset: i64) {
        match self {
            Source::Embedded(s) => s.next = offset as u64,
            Source::Kafka(s) => {
                if let Err(e) = s.consumer.seek(
                    &s.topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(10),
                ) {
                    tracing::warn!(partition, offset, "seek failed: {e}");
                }
            }
        }
    }

    /// Everything below `next` is committed to the warehouse.
    pub fn committed(&mut self, partition: i32, next: i64) {
        match self {
            Source::Embedded(s) => {
                if let Err(e) = s.log.truncate_below(next as u64) {
                    tracing::warn!("cannot truncate the embedded log: {e}");
                }
            }
            Source::Kafka(s) => {
                let mut tpl = TopicPartitionList::new();
                if tpl
                    .add_partition_offset(&s.topic, partition, Offset::Offset(next))
                    .is_ok()
                    && let Err(e) = s.consumer.commit(&tpl, CommitMode::Async)
                {
                    tracing::debug!(partition, "group offset commit failed: {e}");
                }
            }
        }
    }

    /// Records after `next` in `partition` (the writer's lag), when known.
    pub fn lag(&self, partition: i32, next: i64) -> Option<i64> {
        match self {
            Source::Embedded(s) => Some(s.log.end_offset() as i64 - next),
            Source::Kafka(s) => s
                .cached_high_watermark(partition)
                .map(|high| (high - next).max(0)),
        }
    }
}

/// The embedded log as a source.
pub struct EmbeddedSource {
    log: Arc<EmbeddedLog>,
    next: u64,
    pending: Assignment,
}

impl EmbeddedSource {
    pub fn new(
        log: Arc<EmbeddedLog>,
        commits: &Commits,
    ) -> Result<Self, super::commit::CommitError> {
        let next = commits.recover(0)?;
        Ok(EmbeddedSource {
            log,
            next: next as u64,
            pending: Assignment {
                revoked: Vec::new(),
                assigned: vec![(0, next)],
            },
        })
    }

    fn poll(&mut self, max: usize, timeout: Duration) -> Vec<Chunk> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.log.read(self.next, max) {
                Ok(records) if !records.is_empty() => {
                    let mut chunk = Chunk::new(0);
                    for r in &records {
                        chunk.push(r.offset as i64, &r.payload);
                    }
                    self.next = records.last().map_or(self.next, |r| r.offset + 1);
                    return vec![chunk];
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot read the embedded log: {e}"),
            }
            let now = Instant::now();
            if now >= deadline {
                return Vec::new();
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
    }
}

/// Kafka settings of the writer.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// librdkafka properties applied over eventsift's (config `[kafka_consumer]`).
    pub options: BTreeMap<String, String>,
}

/// Consumer options eventsift must own: the warehouse holds the positions.
fn forbidden_consumer_option(key: &str, _value: &str) -> Option<&'static str> {
    match key {
        "group.id" => Some("set the group with `group`"),
        "bootstrap.servers" | "metadata.broker.list" => Some("set the brokers with `kafka`"),
        "enable.auto.commit" | "enable.auto.offset.store" => {
            Some("the writer's positions are its commit records, not Kafka's offsets")
        }
        _ => None,
    }
}

/// The consumer's context: assigns partitions at their warehouse positions.
pub struct Rebalancer {
    commits: Arc<Commits>,
    changes: Mutex<Assignment>,
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut assigned = Vec::new();
                for e in tpl.elements() {
                    let p = e.partition();
                    let pos = recover_with_retry(&self.commits, p);
                    assigned.push((e.topic().to_owned(), p, pos));
                }
                let mut at = TopicPartitionList::new();
                for (topic, p, pos) in &assigned {
                    let _ = at.add_partition_offset(topic, *p, Offset::Offset(*pos));
                }
                if let Err(e) = consumer.assign(&at) {
                    tracing::error!("assign failed: {e}");
                }
                let ps: Vec<_> = assigned.iter().map(|(_, p, pos)| (*p, *pos)).collect();
                tracing::info!("assigned partitions (partition, position): {ps:?}");
                self.changes.lock().unwrap().assigned.extend(ps);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let ps: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!("revoked partitions {ps:?}");
                let mut changes = self.changes.lock().unwrap();
                changes.assigned.retain(|(p, _)| !ps.contains(p));
                changes.revoked.extend(ps);
                drop(changes);
                if let Err(e) = consumer.unassign() {
                    tracing::error!("unassign failed: {e}");
                }
            }
            other => {
                tracing::error!("rebalance error: {other:?}");
                let _ = consumer.unassign();
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!("group offset commit: {e}");
        }
    }
}

/// Recovers a partition, retrying while the warehouse is unreachable: a
/// partition is never consumed from a guessed position.
fn recover_with_retry(commits: &Commits, partition: i32) -> i64 {
    let mut backoff = Duration::from_millis(200);
    loop {
        match commits.recover(partition) {
            Ok(pos) => return pos,
            Err(e) => {
                tracing::warn!(partition, "cannot recover the partition (retrying): {e}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A Kafka topic read through a consumer group.
pub struct KafkaSource {
    topic: String,
    consumer: BaseConsumer<Rebalancer>,
}

impl KafkaSource {
    pub fn new(config: &KafkaSourceConfig, commits: Arc<Commits>) -> Result<Self, SetupError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            // Bounded prefetch: back-pressure reaches the broker, not memory.
            .set("queued.max.messages.kbytes", "65536")
            // When that bound is reached, check again soon: the default
            // (1 s) leaves the writer idle once it drained its queue.
            .set("fetch.queue.backoff.ms", "5")
            .set("fetch.max.bytes", "16777216")
            .set("max.partition.fetch.bytes", "4194304");
        apply_options(
            &mut client,
            "kafka_consumer",
            &config.options,
            forbidden_consumer_option,
        )?;
        let consumer: BaseConsumer<Rebalancer> = client.create_with_context(Rebalancer {
            commits,
            changes: Mutex::new(Assignment::default()),
        })?;
        consumer.subscribe(&[&config.topic])?;
        Ok(KafkaSource {
            topic: config.topic.clone(),
            consumer,
        })
    }

    /// The partition's high watermark from the last fetch response (no
    /// request: the router thread must not wait on the broker for a metric).
    fn cached_high_watermark(&self, partition: i32) -> Option<i64> {
        let topic = std::ffi::CString::new(self.topic.as_str()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid while `self.consumer` lives;
        // the call only reads librdkafka's cached offsets into the two locals.
        let err = unsafe {
            rdkafka_sys::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }

    /// Leaves the group (its partitions go to the other writers at once).
    pub fn close(self) {
        self.consumer.unsubscribe();
        let _ = self.consumer.poll(Duration::from_millis(100));
    }

    fn poll(&mut self, max: usize, timeout: Duration) -> Vec<Chunk> {
        let mut chunks: HashMap<i32, Chunk> = HashMap::new();
        let mut n = 0;
        let mut wait = timeout;
        while n < max {
            match self.consumer.poll(wait) {
                Some(Ok(m)) => {
                    n += 1;
                    chunks
                        .entry(m.partition())
                        .or_insert_with(|| Chunk::new(m.partition()))
                        .push(m.offset(), m.payload().unwrap_or_default());
                }
                Some(Err(e)) => {
                    tracing::warn!("consumer: {e}");
                    break;
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        let mut out: Vec<Chunk> = chunks.into_values().collect();
        out.sort_by_key(|c| c.partition);
        out
    }
}
