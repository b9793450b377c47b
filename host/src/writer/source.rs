//! Where the writer reads events: the embedded log (one partition) or a
//! Kafka topic through a consumer group.
//!
//! Positions come from the warehouse's commit chains, never from Kafka's
//! group offsets. When the group assigns partitions, the rebalance callback
//! only assigns them, paused; the [`TakeThread`] then takes each one
//! ([`Commits::take`]: the chain is checked against the source's identity
//! and extent), and the source thread seeks it to the chain's end and
//! resumes it. Nothing in the callback waits for the warehouse, so an
//! outage cannot outlast `max.poll.interval.ms` there. A take that keeps
//! failing is given up after [`TAKE_ATTEMPTS`] attempts: the partition is
//! reported stopped with the error, and tried again every
//! [`TAKE_RETRY_AFTER`]; a chain that does not fit the source stops it for
//! good (the reason is logged and reported). A revoke cancels a take in
//! progress. Group offsets are still committed after each warehouse
//! commit, for monitoring (`kafka-consumer-groups --describe` shows the
//! lag).
//!
//! `auto.offset.reset` is `error`: a position the broker no longer has is
//! reported ([`Source::gaps`]), never silently replaced by another.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext};

use super::commit::{CommitError, Commits, Resume, SourceView, TakeOptions};
use crate::faults;
use crate::transport::embedded::EmbeddedLog;
use crate::transport::kafka::{SetupError, apply_options};

/// Bound on each broker request the source makes itself (watermarks,
/// identity, seeks).
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at taking a partition (with backoff from 0.2 s to 5 s: about
/// 20 s in all) before it is reported stopped.
pub const TAKE_ATTEMPTS: u32 = 8;
/// A partition whose take was given up is tried again after this long.
pub const TAKE_RETRY_AFTER: Duration = Duration::from_secs(15);

/// Records of one partition read in one poll, in offset order, in one buffer.
#[derive(Debug, Default)]
pub struct Chunk {
    pub partition: i32,
    pub offsets: Vec<i64>,
    pub data: Vec<u8>,
    /// Record `i` is `data[ends[i-1]..ends[i]]`.
    pub ends: Vec<usize>,
    /// The partition's generation when it was polled: it changes with every
    /// assignment and seek, so a chunk polled before one is recognisable.
    pub generation: u64,
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

    /// Bytes of the records.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

/// A change of the partitions this writer consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Taken: consume from `resume.source`, commit from `resume.chain`.
    Assigned {
        partition: i32,
        resume: Resume,
    },
    Revoked {
        partition: i32,
    },
    /// Assigned to this writer but not consumed: its chain does not fit the
    /// source, or it could not be taken (the reason says why and what to do).
    Stopped {
        partition: i32,
        reason: String,
    },
    /// Assigned by the group, paused until the take thread took it (the
    /// source thread's own business: never forwarded to the router).
    Pending {
        partition: i32,
    },
}

/// How partitions are taken: the chains, the operator's options, and
/// whether the writer is stopping (retries give up then).
pub struct Taker {
    pub commits: Arc<Commits>,
    pub options: TakeOptions,
    pub stop: Arc<AtomicBool>,
    /// For the source thread's heartbeat while retrying.
    pub status: Arc<super::Status>,
}

/// A take that did not happen.
#[derive(Debug)]
enum NotTaken {
    /// The chain does not fit the source: not consumed until the operator acts.
    Refused(String),
    /// The attempt failed (the warehouse or the source did not answer).
    Failed(String),
}

impl Taker {
    /// One attempt at taking `partition` (never from a guessed position).
    fn attempt(
        &self,
        partition: i32,
        view: impl FnOnce() -> Result<SourceView, String>,
    ) -> Result<Resume, NotTaken> {
        let attempt = if faults::fires("take_fail") {
            Err("failpoint take_fail: injected error".to_owned())
        } else {
            view().map_err(|e| format!("reading the source: {e}"))
        };
        let err = match attempt {
            Ok(v) => match self.commits.take(partition, &v, &self.options) {
                Ok(resume) => return Ok(resume),
                Err(CommitError::Refused(why)) => return Err(NotTaken::Refused(why)),
                Err(e @ CommitError::BadRecord { .. }) => {
                    return Err(NotTaken::Refused(format!(
                        "partition {partition}: {e}; the chain cannot be read, so the \
                         partition is not consumed"
                    )));
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        ::metrics::counter!(super::metrics::TAKE_FAILURES).increment(1);
        Err(NotTaken::Failed(err))
    }

    /// Takes `partition`, retrying while the warehouse or the source fail,
    /// until stopping (the embedded log's one partition, before the writer
    /// runs: no group waits for it).
    fn take(
        &self,
        partition: i32,
        mut view: impl FnMut() -> Result<SourceView, String>,
    ) -> Result<Resume, String> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.attempt(partition, &mut view) {
                Ok(resume) => return Ok(resume),
                Err(NotTaken::Refused(why)) => return Err(why),
                Err(NotTaken::Failed(err)) => {
                    if self.stop.load(Ordering::SeqCst) {
                        return Err(format!("stopped before partition {partition} was taken"));
                    }
                    tracing::warn!(partition, "cannot take the partition (retrying): {err}");
                    super::Beats::beat(&self.status.beats.source);
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The source's view of a partition now (identity, earliest, end).
pub type Viewer = Arc<dyn Fn(i32) -> Result<SourceView, String> + Send + Sync>;

/// What the take thread answers.
#[derive(Debug)]
pub enum Taken {
    Yes {
        partition: i32,
        ticket: u64,
        resume: Resume,
    },
    No {
        partition: i32,
        ticket: u64,
        reason: String,
        /// Tried again after [`TAKE_RETRY_AFTER`] (the warehouse or the
        /// source failed; a refusal is for good).
        retry: bool,
    },
}

enum TakeRequest {
    Take { partition: i32, ticket: u64 },
    Release { partition: i32 },
}

/// A take waiting for its next attempt.
struct Queued {
    partition: i32,
    ticket: u64,
    failed: u32,
    not_before: Instant,
    backoff: Duration,
}

/// Takes and releases partitions on a thread of its own, so that neither
/// the rebalance callback nor the poll loop waits for the warehouse. Takes
/// are attempted in turn (a partition whose attempts fail waits for its
/// next one behind the others, never in front of them), at most
/// [`TAKE_ATTEMPTS`] times each. Each take carries a ticket; a revoke
/// cancels every ticket of its partition issued before it (a take queued
/// or between attempts is dropped), and releases the partition after an
/// attempt in progress ended.
pub struct TakeThread {
    requests: Option<mpsc::Sender<TakeRequest>>,
    answers: mpsc::Receiver<Taken>,
    /// Per partition: tickets up to this one are cancelled.
    cancelled: Arc<Mutex<HashMap<i32, u64>>>,
    next_ticket: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TakeThread {
    pub fn start(taker: Arc<Taker>, view: Viewer) -> std::io::Result<TakeThread> {
        let (requests, rx) = mpsc::channel::<TakeRequest>();
        let (answer, answers) = mpsc::channel();
        let cancelled: Arc<Mutex<HashMap<i32, u64>>> = Arc::default();
        let thread = {
            let cancelled = cancelled.clone();
            std::thread::Builder::new()
                .name("writer-take".into())
                .spawn(move || take_loop(&taker, &view, &rx, &answer, &cancelled))?
        };
        Ok(TakeThread {
            requests: Some(requests),
            answers,
            cancelled,
            next_ticket: 0,
            thread: Some(thread),
        })
    }

    /// Asks for `partition` to be taken; the ticket its answer carries.
    pub fn take(&mut self, partition: i32) -> u64 {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        if let Some(r) = &self.requests {
            let _ = r.send(TakeRequest::Take { partition, ticket });
        }
        ticket
    }

    /// Cancels the takes of `partition` asked so far and releases it once
    /// the attempt in progress (if any) ended.
    pub fn release(&mut self, partition: i32) {
        self.cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition, self.next_ticket);
        if let Some(r) = &self.requests {
            let _ = r.send(TakeRequest::Release { partition });
        }
    }

    /// The answers that arrived.
    pub fn answers(&self) -> Vec<Taken> {
        self.answers.try_iter().collect()
    }
}

/// The take thread's loop (see [`TakeThread`]).
fn take_loop(
    taker: &Taker,
    view: &Viewer,
    rx: &mpsc::Receiver<TakeRequest>,
    answer: &mpsc::Sender<Taken>,
    cancelled: &Mutex<HashMap<i32, u64>>,
) {
    let is_cancelled = |q: &Queued| {
        cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&q.partition)
            .is_some_and(|&c| c >= q.ticket)
    };
    let mut queue: std::collections::VecDeque<Queued> = Default::default();
    loop {
        if taker.stop.load(Ordering::SeqCst) {
            return;
        }
        // Requests first; wait for one only while no take is due.
        let due = queue.iter().map(|q| q.not_before).min();
        let request = match due {
            None => match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => return,
            },
            Some(at) => {
                let wait = at
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100));
                match rx.recv_timeout(wait) {
                    Ok(r) => Some(r),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        match request {
            Some(TakeRequest::Release { partition }) => {
                queue.retain(|q| !is_cancelled(q));
                taker.commits.release(partition);
                continue;
            }
            Some(TakeRequest::Take { partition, ticket }) => {
                queue.push_back(Queued {
                    partition,
                    ticket,
                    failed: 0,
                    not_before: Instant::now(),
                    backoff: Duration::from_millis(200),
                });
                continue;
            }
            None => {}
        }
        let now = Instant::now();
        let Some(i) = queue.iter().position(|q| q.not_before <= now) else {
            continue;
        };
        let mut q = queue.remove(i).expect("a queued take");
        if is_cancelled(&q) {
            continue;
        }
        let msg = match taker.attempt(q.partition, || view(q.partition)) {
            Ok(resume) => Taken::Yes {
                partition: q.partition,
                ticket: q.ticket,
                resume,
            },
            Err(NotTaken::Refused(reason)) => Taken::No {
                partition: q.partition,
                ticket: q.ticket,
                reason,
                retry: false,
            },
            Err(NotTaken::Failed(err)) => {
                q.failed += 1;
                if q.failed < TAKE_ATTEMPTS {
                    tracing::warn!(
                        partition = q.partition,
                        "cannot take the partition (attempt {} of {TAKE_ATTEMPTS}, retrying): {err}",
                        q.failed
                    );
                    q.not_before = Instant::now() + q.backoff;
                    q.backoff = (q.backoff * 2).min(Duration::from_secs(5));
                    queue.push_back(q);
                    continue;
                }
                Taken::No {
                    partition: q.partition,
                    ticket: q.ticket,
                    reason: format!(
                        "partition {} could not be taken ({} attempts): {err}; it is not \
                         consumed, and taken again in {} s",
                        q.partition,
                        q.failed,
                        TAKE_RETRY_AFTER.as_secs()
                    ),
                    retry: true,
                }
            }
        };
        if answer.send(msg).is_err() {
            return;
        }
    }
}

impl Drop for TakeThread {
    /// Ends the thread once the attempt it runs ended (each is bounded by
    /// the warehouse's and the broker's timeouts).
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

    /// Up to `max` records and `max_bytes` bytes (a record larger than that
    /// comes alone), waiting at most `timeout` for the first.
    pub fn poll(&mut self, max: usize, max_bytes: usize, timeout: Duration) -> Vec<Chunk> {
        match self {
            Source::Embedded(s) => s.poll(max, max_bytes, timeout),
            Source::Kafka(s) => s.poll(max, max_bytes, timeout),
        }
    }

    /// Partitions taken, revoked or stopped since the last call.
    pub fn take_changes(&mut self) -> Vec<Change> {
        match self {
            Source::Embedded(s) => std::mem::take(&mut s.pending),
            Source::Kafka(s) => std::mem::take(&mut *s.consumer.context().changes.lock().unwrap()),
        }
    }

    /// Continues `partition` from `offset`.
    pub fn seek(&mut self, partition: i32, offset: i64) -> Result<(), String> {
        if faults::fires("seek_fail") {
            return Err("failpoint seek_fail: injected error".into());
        }
        match self {
            Source::Embedded(s) => {
                s.next = offset as u64;
                Ok(())
            }
            Source::Kafka(s) => s
                .consumer
                .seek(&s.topic, partition, Offset::Offset(offset), BROKER_TIMEOUT)
                .map_err(|e| e.to_string()),
        }
    }

    /// Stops consuming `partition` (it stays assigned).
    pub fn pause(&mut self, partition: i32) {
        self.pause_or_resume(partition, true);
    }

    /// Consumes `partition` again (after a take and a seek).
    pub fn resume(&mut self, partition: i32) {
        self.pause_or_resume(partition, false);
    }

    fn pause_or_resume(&mut self, partition: i32, pause: bool) {
        if let Source::Kafka(s) = self {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&s.topic, partition);
            let done = if pause {
                s.consumer.pause(&tpl)
            } else {
                s.consumer.resume(&tpl)
            };
            if let Err(e) = done {
                let what = if pause { "pausing" } else { "resuming" };
                tracing::warn!(partition, "{what} the partition: {e}");
            }
        }
    }

    /// How this source's partitions are taken.
    pub fn taker(&self) -> Arc<Taker> {
        match self {
            Source::Embedded(s) => s.taker.clone(),
            Source::Kafka(s) => s.taker.clone(),
        }
    }

    /// Reads a partition's identity and extent (for the take thread).
    pub fn viewer(&self) -> Viewer {
        match self {
            Source::Embedded(s) => {
                let log = s.log.clone();
                Arc::new(move |_| embedded_view(&log))
            }
            Source::Kafka(s) => {
                let (consumer, cluster) = (s.consumer.clone(), s.cluster.clone());
                let topic = s.topic.clone();
                Arc::new(move |p| kafka_view(&consumer, &topic, &cluster, p))
            }
        }
    }

    /// After the broker reported positions out of range: for each of
    /// `positions` (partition, next position to fetch) the records deleted
    /// before they were read, as `(partition, from, to)`.
    pub fn gaps(&mut self, positions: &HashMap<i32, i64>) -> Vec<(i32, i64, i64)> {
        let Source::Kafka(s) = self else {
            return Vec::new();
        };
        if !std::mem::take(&mut s.out_of_range) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (&p, &pos) in positions {
            match s.consumer.fetch_watermarks(&s.topic, p, BROKER_TIMEOUT) {
                Ok((low, _)) if pos < low => out.push((p, pos, low)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(partition = p, "reading watermarks: {e}");
                    s.out_of_range = true; // ask again next time
                }
            }
        }
        out
    }

    /// Everything below `next` is committed to the warehouse.
    pub fn committed(&mut self, partition: i32, next: i64) {
        match self {
            Source::Embedded(s) => {
                if let Err(e) = s.log.truncate_below(next as u64) {
                    tracing::warn!("cannot truncate the embedded log: {e}");
                }
            }
            Source::Kafka(s) if s.grouped => {
                let mut tpl = TopicPartitionList::new();
                if tpl
                    .add_partition_offset(&s.topic, partition, Offset::Offset(next))
                    .is_ok()
                    && let Err(e) = s.consumer.commit(&tpl, CommitMode::Async)
                {
                    tracing::debug!(partition, "group offset commit failed: {e}");
                }
            }
            Source::Kafka(_) => {}
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

fn embedded_view(log: &EmbeddedLog) -> Result<SourceView, String> {
    Ok(SourceView {
        id: log.id(),
        earliest: log.start_offset().map_err(|e| e.to_string())? as i64,
        end: log.end_offset() as i64,
    })
}

/// The embedded log as a source.
pub struct EmbeddedSource {
    log: Arc<EmbeddedLog>,
    next: u64,
    pending: Vec<Change>,
    taker: Arc<Taker>,
}

impl EmbeddedSource {
    /// Takes the log's one partition; an error (the chain does not fit the
    /// log) means the writer must not start.
    pub fn new(log: Arc<EmbeddedLog>, taker: Taker) -> Result<Self, anyhow::Error> {
        let resume = match taker.take(0, || embedded_view(&log)) {
            Ok(r) => r,
            Err(why) => anyhow::bail!(why),
        };
        let taker = Arc::new(taker);
        Ok(EmbeddedSource {
            log,
            next: resume.source as u64,
            pending: vec![Change::Assigned {
                partition: 0,
                resume,
            }],
            taker,
        })
    }

    fn poll(&mut self, max: usize, max_bytes: usize, timeout: Duration) -> Vec<Chunk> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.log.read_bounded(self.next, max, max_bytes) {
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
    /// Take these partitions directly instead of joining the group (a
    /// drain, `--exit-at-end`: no group join to wait for). A writer of the
    /// group racing for the same range is fenced by the warehouse commit.
    pub assign: Option<Vec<i32>>,
}

impl KafkaSourceConfig {
    /// The user's `[kafka_consumer]` properties over `client`'s, refusing
    /// the ones eventsift must own.
    fn apply_options(&self, client: &mut ClientConfig) -> Result<(), SetupError> {
        apply_options(
            client,
            "kafka_consumer",
            &self.options,
            forbidden_consumer_option,
        )
    }
}

/// The end offset (high watermark) of every partition of the topic now:
/// where `eventsift writer --exit-at-end` stops. Each broker call is
/// bounded by 5 s.
pub fn end_offsets(config: &KafkaSourceConfig) -> Result<HashMap<i32, i64>, SetupError> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    config.apply_options(&mut client)?;
    let consumer: BaseConsumer = client.create()?;
    let md = consumer.fetch_metadata(Some(&config.topic), BROKER_TIMEOUT)?;
    let mut ends = HashMap::new();
    for t in md.topics() {
        if let Some(e) = t.error() {
            return Err(SetupError::Kafka(KafkaError::MetadataFetch(e.into())));
        }
        for p in t.partitions() {
            let (_, high) = consumer.fetch_watermarks(&config.topic, p.id(), BROKER_TIMEOUT)?;
            ends.insert(p.id(), high);
        }
    }
    Ok(ends)
}

/// Consumer options eventsift must own: the warehouse holds the positions.
fn forbidden_consumer_option(key: &str, _value: &str) -> Option<&'static str> {
    match key {
        "group.id" => Some("set the group with `group`"),
        "bootstrap.servers" | "metadata.broker.list" => Some("set the brokers with `kafka`"),
        "enable.auto.commit" | "enable.auto.offset.store" => {
            Some("the writer's positions are its commit records, not Kafka's offsets")
        }
        "auto.offset.reset" => {
            Some("a position the broker lost stops the partition (or --accept-retention-gaps)")
        }
        "partition.assignment.strategy" | "group.protocol" | "group.remote.assignor" => Some(
            "the writer takes partitions with eager rebalancing (range assignment, the classic \
             protocol); cooperative rebalancing is not supported yet",
        ),
        _ => None,
    }
}

/// The consumer's context: assigns the partitions the group hands over,
/// paused (the take thread takes them; see the module docs).
pub struct Rebalancer {
    topic: String,
    changes: Mutex<Vec<Change>>,
    /// Rebalances seen (a poll stops at one, so no chunk mixes assignments).
    rebalances: AtomicU64,
}

impl ClientContext for Rebalancer {}

impl Rebalancer {
    /// Assigns `tpl`'s partitions paused, to be taken; nothing here waits
    /// for the warehouse.
    fn assign_paused<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        partitions: impl IntoIterator<Item = i32>,
    ) {
        let mut at = TopicPartitionList::new();
        let mut changes = Vec::new();
        for p in partitions {
            // A placeholder position: the partition is paused until its
            // take finished and the source thread sought it.
            let _ = at.add_partition_offset(&self.topic, p, Offset::Beginning);
            changes.push(Change::Pending { partition: p });
        }
        if let Err(e) = consumer.assign(&at) {
            tracing::error!("assign failed: {e}");
            return;
        }
        if let Err(e) = consumer.pause(&at) {
            tracing::error!("pausing the assigned partitions failed: {e}");
        }
        let ps: Vec<i32> = at.elements().iter().map(|e| e.partition()).collect();
        tracing::info!("assigned partitions {ps:?} (taken before they are read)");
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(changes);
    }
}

/// The topic's identity (`kafka:<cluster id>/<topic id>`) and a partition's
/// extent, for a take.
fn kafka_view<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    cluster: &Mutex<Option<String>>,
    partition: i32,
) -> Result<SourceView, String> {
    let cluster = {
        let mut cached = cluster.lock().unwrap_or_else(|p| p.into_inner());
        if cached.is_none() {
            // A metadata request first: a new client without a
            // subscription has none in flight, and the cluster id
            // would wait for librdkafka's next periodic refresh (~1 s).
            let _ = consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT);
            *cached = consumer.client().fetch_cluster_id(BROKER_TIMEOUT);
        }
        cached
            .clone()
            .ok_or("the broker did not tell its cluster id")?
    };
    let topic_id = describe_topic_id(consumer.client(), topic, BROKER_TIMEOUT)?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, BROKER_TIMEOUT)
        .map_err(|e| format!("watermarks of partition {partition}: {e}"))?;
    Ok(SourceView {
        id: format!("kafka:{cluster}/{topic_id}"),
        earliest: low,
        end: high,
    })
}

impl ConsumerContext for Rebalancer {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assign_paused(consumer, tpl.elements().iter().map(|e| e.partition()));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let ps: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!("revoked partitions {ps:?}");
                // Released by the take thread (after a take in progress):
                // the callback never waits for the warehouse.
                self.changes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(
                        ps.into_iter()
                            .map(|partition| Change::Revoked { partition }),
                    );
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

/// The topic id (base64, as Kafka's tools print it) through the Admin API's
/// DescribeTopics (rust-rdkafka has no call for it).
fn describe_topic_id<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<String, String> {
    use rdkafka_sys as rd;
    let name = CString::new(topic).map_err(|e| e.to_string())?;
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: every object created here is destroyed before returning; the
    // result event owns the descriptions read from it, which are copied out
    // before it is destroyed. The client pointer is valid while `client` is.
    unsafe {
        let rk = client.native_ptr();
        let mut names = [name.as_ptr()];
        let topics = rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = rd::rd_kafka_queue_new(rk);
        rd::rd_kafka_DescribeTopics(rk, topics, options, queue);
        let event = rd::rd_kafka_queue_poll(queue, ms.saturating_add(1000));
        let result = if event.is_null() {
            Err(format!("no answer to DescribeTopics within {timeout:?}"))
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            Err(CStr::from_ptr(rd::rd_kafka_event_error_string(event))
                .to_string_lossy()
                .into_owned())
        } else {
            let res = rd::rd_kafka_event_DescribeTopics_result(event);
            let mut n = 0usize;
            let descs = rd::rd_kafka_DescribeTopics_result_topics(res, &mut n);
            if n == 0 || descs.is_null() {
                Err(format!("topic {topic} is not described"))
            } else {
                let desc = *descs;
                let err = rd::rd_kafka_TopicDescription_error(desc);
                if !err.is_null()
                    && rd::rd_kafka_error_code(err)
                        != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    Err(CStr::from_ptr(rd::rd_kafka_error_string(err))
                        .to_string_lossy()
                        .into_owned())
                } else {
                    let id = rd::rd_kafka_TopicDescription_topic_id(desc);
                    if id.is_null() {
                        Err(format!(
                            "topic {topic} has no id (a broker older than Kafka 2.8?)"
                        ))
                    } else {
                        Ok(CStr::from_ptr(rd::rd_kafka_Uuid_base64str(id))
                            .to_string_lossy()
                            .into_owned())
                    }
                }
            }
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_TopicCollection_destroy(topics);
        result
    }
}

/// A Kafka topic read through a consumer group.
pub struct KafkaSource {
    topic: String,
    consumer: Arc<BaseConsumer<Rebalancer>>,
    taker: Arc<Taker>,
    /// The cluster id, read once.
    cluster: Arc<Mutex<Option<String>>>,
    /// The broker reported a position out of range since the last [`Source::gaps`].
    out_of_range: bool,
    /// A message polled with a rebalance, for the next poll.
    carry: Option<(i32, i64, Vec<u8>)>,
    /// In the consumer group (else a drain: the partitions were assigned
    /// directly, and no group offsets are reported).
    grouped: bool,
}

impl KafkaSource {
    pub fn new(config: &KafkaSourceConfig, taker: Taker) -> Result<Self, SetupError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            // Set for a drain (`assign`) too, which never joins the group:
            // librdkafka assigns only through a group handler.
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A lost position is an error, never a silent jump.
            .set("auto.offset.reset", "error")
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("socket.timeout.ms", "10000")
            // Bounded prefetch: back-pressure reaches the broker, not memory.
            .set("queued.max.messages.kbytes", "65536")
            // When that bound is reached, check again soon: the default
            // (1 s) leaves the writer idle once it drained its queue.
            .set("fetch.queue.backoff.ms", "5")
            .set("fetch.max.bytes", "16777216")
            .set("max.partition.fetch.bytes", "4194304");
        config.apply_options(&mut client)?;
        let consumer: BaseConsumer<Rebalancer> = client.create_with_context(Rebalancer {
            topic: config.topic.clone(),
            changes: Mutex::new(Vec::new()),
            rebalances: AtomicU64::new(0),
        })?;
        match &config.assign {
            None => consumer.subscribe(&[&config.topic])?,
            Some(partitions) => {
                // Assigned as the group would hand them over: paused, then
                // taken at their warehouse positions by the take thread.
                consumer
                    .context()
                    .assign_paused(&consumer, partitions.iter().copied());
                if consumer.assignment()?.count() != partitions.len() {
                    return Err(SetupError::Kafka(KafkaError::Subscription(
                        "the partitions could not be assigned (see the log)".into(),
                    )));
                }
            }
        }
        Ok(KafkaSource {
            topic: config.topic.clone(),
            consumer: Arc::new(consumer),
            taker: Arc::new(taker),
            cluster: Arc::default(),
            out_of_range: false,
            carry: None,
            grouped: config.assign.is_none(),
        })
    }

    /// The partition's high watermark from the last fetch response (no
    /// request: the router thread must not wait on the broker for a metric).
    fn cached_high_watermark(&self, partition: i32) -> Option<i64> {
        let topic = CString::new(self.topic.as_str()).ok()?;
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
        if self.grouped {
            self.consumer.unsubscribe();
            let _ = self.consumer.poll(Duration::from_millis(100));
        } else {
            // A drain's process exits next, and its consumer holds nothing
            // to hand over (no membership, positions in the warehouse):
            // closing it would wait ~1 s for librdkafka's group handler.
            std::mem::forget(self.consumer);
        }
    }

    fn poll(&mut self, max: usize, max_bytes: usize, timeout: Duration) -> Vec<Chunk> {
        let mut chunks: HashMap<i32, Chunk> = HashMap::new();
        let (mut n, mut bytes) = (0, 0);
        let mut wait = timeout;
        if let Some((p, offset, payload)) = self.carry.take() {
            n += 1;
            bytes += payload.len();
            chunks
                .entry(p)
                .or_insert_with(|| Chunk::new(p))
                .push(offset, &payload);
            wait = Duration::ZERO;
        }
        let rebalances = self.consumer.context().rebalances.load(Ordering::SeqCst);
        while n < max && bytes < max_bytes {
            let polled = self.consumer.poll(wait);
            if self.consumer.context().rebalances.load(Ordering::SeqCst) != rebalances {
                // rust-rdkafka returns right after a rebalance; stop there
                // in any case, so a chunk never spans two assignments.
                if let Some(Ok(m)) = polled {
                    self.carry = Some((
                        m.partition(),
                        m.offset(),
                        m.payload().unwrap_or_default().to_vec(),
                    ));
                }
                break;
            }
            match polled {
                Some(Ok(m)) => {
                    let payload = m.payload().unwrap_or_default();
                    n += 1;
                    bytes += payload.len();
                    chunks
                        .entry(m.partition())
                        .or_insert_with(|| Chunk::new(m.partition()))
                        .push(m.offset(), payload);
                }
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
                ))) => {
                    self.out_of_range = true;
                    break;
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
