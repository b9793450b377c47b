//! The stream writer: events -> plugins -> Arrow -> Parquet tables, exactly
//! once.
//!
//! Three threads joined by bounded channels. The **source** thread polls
//! the [`source`] (Kafka or the embedded log) and forwards chunks and
//! assignment changes in order. The **router** thread keeps each
//! partition's position (accepting only records contiguous with it) and
//! turns records into table batches ([`router`]). The **sink** thread
//! encodes them into Parquet and commits them ([`sink`], [`commit`]) to the
//! [`warehouse`]. The positions a writer resumes from are the warehouse's
//! commit records.

pub mod commit;
pub mod dedup;
pub mod delta;
pub mod metrics;
pub mod recent;
pub mod router;
pub mod schemas;
pub mod sink;
pub mod source;
pub mod table;
pub mod warehouse;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use crate::plugin::Registry;
use crate::transport::embedded::EmbeddedLog;
use commit::{Commits, Resume, TakeOptions};
use router::{RouteTimes, Router};
use schemas::Schemas;
use sink::{FromSink, Sink, SinkLimits, SinkTimes, ToSink};
use source::{Change, KafkaSource, KafkaSourceConfig, Source, Taker};
use warehouse::Warehouse;

/// Records routed per poll (at most).
const POLL_MAX: usize = 8192;
/// How long a stopping writer on the embedded log keeps routing to reach
/// the log's end.
pub const DRAIN_BOUND: Duration = Duration::from_secs(10);
/// Bytes of records routed per poll (at most; a larger record comes alone).
pub const POLL_MAX_BYTES: usize = 32 << 20;

/// Where the writer reads.
pub enum Input {
    Embedded(Arc<EmbeddedLog>),
    Kafka(KafkaSourceConfig),
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub warehouse: String,
    /// `hive` or `delta` ([`delta::TableFormat`]).
    pub table_format: delta::TableFormat,
    pub limits: SinkLimits,
    pub plugin_wait: Duration,
    pub max_record_bytes: usize,
    /// Commit records kept per partition.
    pub keep_records: usize,
    /// What to do with partitions whose chain does not fit the source.
    pub take: TakeOptions,
    /// Bound on each HDFS call.
    pub warehouse_timeout: Duration,
    /// Deduplication of client-named events per partition.
    pub dedup: dedup::DedupLimits,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            warehouse: "./warehouse".into(),
            table_format: Default::default(),
            limits: SinkLimits {
                flush_interval: Duration::from_secs(10),
                max_file_rows: 1_000_000,
                max_buffer_bytes: 64 << 20,
            },
            plugin_wait: Duration::from_secs(30),
            max_record_bytes: (1 << 20) + (64 << 10),
            keep_records: commit::DEFAULT_KEEP_RECORDS,
            take: TakeOptions::default(),
            warehouse_timeout: warehouse::DEFAULT_TIMEOUT,
            dedup: dedup::DedupLimits::default(),
        }
    }
}

/// What the writer reports about itself (for `/healthz` and the benchmark).
#[derive(Debug, Default)]
pub struct Status {
    /// Set once the writer runs; cleared when it stops.
    pub running: AtomicBool,
    /// Committed position per partition.
    pub committed: Mutex<HashMap<i32, i64>>,
    /// Routed (not yet necessarily committed) position per partition.
    pub routed: Mutex<HashMap<i32, i64>>,
    /// The source position each partition was assigned at (past the chain's
    /// end only after an accepted retention gap).
    pub resumed: Mutex<HashMap<i32, i64>>,
    /// Records not yet committed per partition (when known).
    pub lag: Mutex<HashMap<i32, i64>>,
    /// Partitions assigned but not consumed, with the reason.
    pub stopped: Mutex<HashMap<i32, String>>,
    /// When the last commit succeeded.
    pub last_commit: Mutex<Option<SystemTime>>,
    /// When each partition's last commit succeeded.
    pub commit_times: Mutex<HashMap<i32, SystemTime>>,
    /// Time spent per stage.
    pub times: Mutex<Times>,
    /// Heartbeats of the three threads (Unix ms): each beats at every turn
    /// of its loop and of its retry loops, so a thread stuck in one call
    /// stops beating.
    pub beats: Beats,
    /// The flush interval (readiness counts commits in intervals).
    pub flush_interval: Mutex<Duration>,
    /// The sink is inside a commit (its storage calls beat for it).
    pub sink_committing: AtomicBool,
}

/// Whether every partition of `ends` is taken and routed (or committed) up
/// to its end (`--exit-at-end`): stopping the writer then commits all of
/// it. False until every one is taken; an error naming the partition once
/// one stopped (it will not get there).
pub fn drained(status: &Status, ends: &HashMap<i32, i64>) -> Result<bool, String> {
    if let Some((p, why)) = status
        .stopped
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .next()
    {
        return Err(format!("partition {p} cannot be drained: {why}"));
    }
    let committed = status.committed.lock().unwrap_or_else(|p| p.into_inner());
    let routed = status.routed.lock().unwrap_or_else(|p| p.into_inner());
    let resumed = status.resumed.lock().unwrap_or_else(|p| p.into_inner());
    // Every partition of `ends`, once taken (takes come one at a time);
    // positions below where it resumed were skipped deliberately.
    Ok(!ends.is_empty()
        && ends.iter().all(|(p, &end)| {
            committed.get(p).is_some_and(|&c| {
                let at = c
                    .max(routed.get(p).copied().unwrap_or(c))
                    .max(resumed.get(p).copied().unwrap_or(c));
                at >= end
            })
        }))
}

/// After a drain (`--exit-at-end`) stopped: `Ok` only when every partition
/// of `ends` is committed up to its end (or was assigned at or past it,
/// with nothing to commit); otherwise the partitions that are not, with
/// where they stand, so the drain exits non-zero.
pub fn drain_complete(status: &Status, ends: &HashMap<i32, i64>) -> Result<(), String> {
    let committed = status.committed.lock().unwrap_or_else(|p| p.into_inner());
    let resumed = status.resumed.lock().unwrap_or_else(|p| p.into_inner());
    let mut short: Vec<String> = ends
        .iter()
        .filter(|&(p, &end)| {
            let nothing_to_commit = resumed.get(p).is_some_and(|&r| r >= end);
            !nothing_to_commit && committed.get(p).is_none_or(|&c| c < end)
        })
        .map(|(p, end)| match committed.get(p) {
            Some(c) => format!("partition {p} committed up to {c} of {end}"),
            None => format!("partition {p} not committed (end {end})"),
        })
        .collect();
    if short.is_empty() {
        return Ok(());
    }
    short.sort();
    Err(format!(
        "the drain's final commit did not reach the end it read: {}; what was not committed \
         is read again by the next run",
        short.join(", ")
    ))
}

/// When each writer thread last showed it is not stuck (Unix ms; 0: not
/// started).
#[derive(Debug, Default)]
pub struct Beats {
    pub source: AtomicU64,
    pub router: AtomicU64,
    pub sink: AtomicU64,
}

/// Unix ms now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A thread not beating for this long is wedged (not alive): well above
/// the longest wait a thread makes on purpose (a warehouse call is bounded
/// by its timeout, a wait for a plugin by `--plugin-wait`).
pub fn wedged_after(warehouse_timeout: Duration, plugin_wait: Duration) -> Duration {
    (warehouse_timeout * 6)
        .max(plugin_wait * 2)
        .max(Duration::from_secs(20))
}

impl Beats {
    pub fn beat(cell: &AtomicU64) {
        cell.store(now_ms(), Ordering::Relaxed);
    }
}

impl Status {
    /// Liveness: the writer's threads run and none is stuck in one call for
    /// longer than `bound`. An outage it rides out keeps it alive.
    pub fn liveness(&self, bound: Duration) -> Result<(), String> {
        if !self.running.load(Ordering::SeqCst) {
            return Err("the writer stopped".into());
        }
        let now = now_ms();
        for (name, cell) in [
            ("source", &self.beats.source),
            ("router", &self.beats.router),
            ("sink", &self.beats.sink),
        ] {
            let at = cell.load(Ordering::Relaxed);
            if at > 0 && now.saturating_sub(at) > bound.as_millis() as u64 {
                return Err(format!(
                    "the writer's {name} thread has been stuck for {} s",
                    now.saturating_sub(at) / 1000
                ));
            }
        }
        Ok(())
    }

    /// Readiness: alive, and committing: with records waiting, the last
    /// commit is at most three flush intervals (and 30 s) old.
    pub fn readiness(&self, bound: Duration) -> Result<(), String> {
        self.liveness(bound)?;
        let lag: i64 = self
            .lag
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|l| **l > 0)
            .sum();
        let flush = *self
            .flush_interval
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let allowed = (flush * 3).max(Duration::from_secs(30));
        let age = metrics::last_commit_age().unwrap_or(0.0);
        if lag > 0 && age > allowed.as_secs_f64() {
            return Err(format!(
                "the writer has {lag} records waiting and its last commit is {age:.0} s old \
                 (more than {} s)",
                allowed.as_secs()
            ));
        }
        Ok(())
    }

    /// The writer's state as JSON (for `/healthz` and `/readyz`).
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "committed": self.committed.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            "lag": self.lag.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            "stopped_partitions": self.stopped.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            "last_commit_age_seconds": metrics::last_commit_age(),
        })
    }
}

/// Where the writer's time went.
#[derive(Debug, Default, Clone, Copy)]
pub struct Times {
    pub consume: Duration,
    pub route: RouteTimes,
    pub sink: SinkTimes,
}

/// A running writer.
pub struct Writer {
    stop: Arc<AtomicBool>,
    /// On the embedded log: the position to route up to before the final
    /// commit when stopping (-1: not stopping).
    drain: Arc<AtomicI64>,
    log: Option<Arc<EmbeddedLog>>,
    pub status: Arc<Status>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Writer {
    /// Opens the warehouse and the source and starts the writer threads.
    /// Fails when the embedded log's chain does not fit the log (the error
    /// says why and how to start a new chain).
    pub fn start(config: WriterConfig, input: Input, registry: Arc<Registry>) -> Result<Writer> {
        // Install the metrics recorder before the first event is counted.
        crate::api::metrics::handle();
        metrics::writer_started();
        let wh = Arc::new(
            Warehouse::open_with_timeout(&config.warehouse, config.warehouse_timeout)
                .with_context(|| format!("opening the warehouse {}", config.warehouse))?,
        );
        let writer_id = format!("{}-{}", hostname(), uuid::Uuid::now_v7().simple());
        let source_name = match &input {
            Input::Embedded(_) => "log".to_owned(),
            Input::Kafka(k) => k.topic.clone(),
        };
        delta::settle_format(&wh, config.table_format).map_err(|e| anyhow::anyhow!(e))?;
        let status = Arc::new(Status::default());
        let mut commits = Commits::new(wh.clone(), &source_name, &writer_id, config.keep_records);
        if config.table_format == delta::TableFormat::Delta {
            // A long Delta commit of the sink's that progresses call by
            // call keeps the sink alive (each call is bounded).
            let sink_beat = {
                let status = status.clone();
                Arc::new(move || {
                    if status.sink_committing.load(Ordering::Relaxed) {
                        Beats::beat(&status.beats.sink);
                    }
                }) as crate::storage::timeout::Progress
            };
            let tables = delta::DeltaTables::open_with_progress(
                &config.warehouse,
                config.warehouse_timeout,
                Some(sink_beat),
            )
            .map_err(|e| anyhow::anyhow!(e))?;
            commits = commits.with_delta(Arc::new(tables));
        }
        let commits = Arc::new(commits);
        let pump_stop = Arc::new(AtomicBool::new(false));
        let taker = Taker {
            commits: commits.clone(),
            options: config.take.clone(),
            stop: pump_stop.clone(),
            status: status.clone(),
        };
        let log = match &input {
            Input::Embedded(log) => Some(log.clone()),
            Input::Kafka(_) => None,
        };
        let source = match input {
            Input::Embedded(log) => Source::Embedded(source::EmbeddedSource::new(log, taker)?),
            Input::Kafka(k) => {
                Source::Kafka(KafkaSource::new(&k, taker).context("creating the Kafka consumer")?)
            }
        };
        tracing::info!(
            warehouse = %wh.location(),
            source = source.name(),
            "writer starting (flush every {:?})",
            config.limits.flush_interval
        );
        let schemas = Arc::new(Schemas::new(wh.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let drain = Arc::new(AtomicI64::new(-1));
        status.running.store(true, Ordering::SeqCst);
        *status.flush_interval.lock().unwrap() = config.limits.flush_interval;
        metrics::flush_interval(config.limits.flush_interval);
        let thread = {
            let (stop, drain, status) = (stop.clone(), drain.clone(), status.clone());
            std::thread::Builder::new()
                .name("writer-router".into())
                .spawn(move || {
                    // A panic anywhere below still marks the writer stopped.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run(
                            config, source, commits, schemas, registry, &stop, &drain, pump_stop,
                            &status,
                        )
                    }))
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the writer thread panicked")));
                    status.running.store(false, Ordering::SeqCst);
                    if let Err(e) = &result {
                        tracing::error!("writer stopped: {e:#}");
                    }
                    result
                })?
        };
        Ok(Writer {
            stop,
            drain,
            log,
            status,
            thread: Some(thread),
        })
    }

    /// Whether the writer thread is still running.
    pub fn is_running(&self) -> bool {
        self.status.running.load(Ordering::SeqCst)
    }

    /// Commits what is buffered and stops. On the embedded log (whose
    /// producer, the API, stopped first) it first routes everything the log
    /// holds (for at most [`DRAIN_BOUND`]), so a stopped `serve` leaves no
    /// acknowledged event only in its data dir.
    pub fn stop(mut self) -> Result<()> {
        if let Some(log) = &self.log {
            self.drain.store(log.end_offset() as i64, Ordering::SeqCst);
        }
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "writer".into())
}

/// Sends on a bounded channel, beating while the receiver applies
/// back-pressure (waiting for a busy thread is not being stuck).
fn send_beating<T>(tx: &mpsc::SyncSender<T>, mut msg: T, beat: &AtomicU64) -> Result<(), ()> {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(()),
            Err(mpsc::TrySendError::Full(m)) => {
                msg = m;
                Beats::beat(beat);
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// What the source thread hands the router, in source order.
enum Pumped {
    /// Records polled (and how long the poll took).
    Chunks(Vec<source::Chunk>, Duration),
    /// A partition taken, revoked or stopped (after the chunks polled
    /// before it); `generation` is the generation its chunks carry from now on.
    Change(Change, u64),
    /// Records before `to` are gone from the source and accepted as a gap
    /// (`--accept-retention-gaps`): continue at `to`, generation `generation`.
    Skip {
        partition: i32,
        to: i64,
        generation: u64,
    },
}

/// The generation of a partition whose source is being sought back
/// ([`PumpCommand::Rewind`]): no chunk carries it.
const REWINDING: u64 = u64::MAX;

/// What the router asks of the source thread.
enum PumpCommand {
    /// Read the partition again from the position (a chunk the router
    /// could not route); the router takes its chunks again once the seek
    /// is made (a [`Pumped::Skip`] to the position, new generation).
    Rewind(i32, i64),
    /// Take the partition again (fenced) and continue at its chain's end.
    Retake(i32),
    /// Everything below the position is committed.
    Committed(i32, i64),
    /// Stop consuming the partition (a gap that must not be accepted).
    Halt(i32),
}

/// A seek the source thread still has to make.
enum Pending {
    Assign(Resume),
    Skip(i64),
}

/// The source thread: polls, forwards chunks (tagged with their
/// partition's generation) and partition changes in order, carries out
/// retakes and seeks (a seek that fails is retried: the partition waits,
/// its stale chunks are dropped), and keeps the lag gauge.
fn pump(
    mut source: Source,
    tx: mpsc::SyncSender<Pumped>,
    commands: mpsc::Receiver<PumpCommand>,
    accept_gaps: bool,
    stop: &AtomicBool,
    status: &Status,
) {
    let mut gens: HashMap<i32, u64> = HashMap::new();
    let mut fetched: HashMap<i32, i64> = HashMap::new();
    let mut pending: HashMap<i32, Pending> = HashMap::new();
    let mut committed: HashMap<i32, i64> = HashMap::new();
    let counter = AtomicU64::new(0);
    let next_gen = || counter.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last_lag = Instant::now();
    let mut last_seek = Instant::now() - Duration::from_secs(1);
    let send = |m: Pumped| send_beating(&tx, m, &status.beats.source).is_ok();
    // Takes run on their own thread; per partition the ticket of the take
    // awaited, and when to try again a take that was given up.
    let mut takes = match source::TakeThread::start(source.taker(), source.viewer()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cannot start the take thread: {e}");
            return;
        }
    };
    let mut taking: HashMap<i32, u64> = HashMap::new();
    let mut retry_at: HashMap<i32, Instant> = HashMap::new();
    // The partitions the group assigned to this writer (a command for
    // another, sent before the router saw a revoke, is ignored).
    let mut assigned: std::collections::HashSet<i32> = Default::default();
    'run: while !stop.load(Ordering::SeqCst) {
        Beats::beat(&status.beats.source);
        // Assignment changes first: an answer of the take thread is only
        // applied to the assignment it was asked for.
        for change in source.take_changes() {
            let generation = match &change {
                Change::Pending { partition } => {
                    // Assigned by the group, paused: taken on the take thread.
                    assigned.insert(*partition);
                    gens.remove(partition);
                    fetched.remove(partition);
                    pending.remove(partition);
                    retry_at.remove(partition);
                    source.pause(*partition);
                    taking.insert(*partition, takes.take(*partition));
                    continue;
                }
                Change::Assigned { partition, resume } => {
                    assigned.insert(*partition);
                    let generation = next_gen();
                    gens.insert(*partition, generation);
                    fetched.insert(*partition, resume.source);
                    pending.remove(partition);
                    committed.insert(*partition, resume.chain);
                    generation
                }
                Change::Revoked { partition } | Change::Stopped { partition, .. } => {
                    if matches!(change, Change::Revoked { .. }) {
                        // Cancels a take in progress; released after it.
                        assigned.remove(partition);
                        taking.remove(partition);
                        retry_at.remove(partition);
                        takes.release(*partition);
                    }
                    gens.remove(partition);
                    fetched.remove(partition);
                    pending.remove(partition);
                    committed.remove(partition);
                    status.lag.lock().unwrap().remove(partition);
                    0
                }
            };
            if !send(Pumped::Change(change, generation)) {
                break 'run;
            }
        }
        for answer in takes.answers() {
            match answer {
                source::Taken::Yes {
                    partition,
                    ticket,
                    resume,
                } if taking.get(&partition) == Some(&ticket) => {
                    taking.remove(&partition);
                    pending.insert(partition, Pending::Assign(resume));
                    last_seek = Instant::now() - Duration::from_secs(1);
                }
                source::Taken::No {
                    partition,
                    ticket,
                    reason,
                    retry,
                } if taking.get(&partition) == Some(&ticket) => {
                    taking.remove(&partition);
                    tracing::error!(partition, "not consuming the partition: {reason}");
                    if retry {
                        retry_at.insert(partition, Instant::now() + source::TAKE_RETRY_AFTER);
                    }
                    if !send(Pumped::Change(Change::Stopped { partition, reason }, 0)) {
                        break 'run;
                    }
                }
                // Answers to takes a revoke or a newer take replaced.
                _ => {}
            }
        }
        let due: Vec<i32> = retry_at
            .iter()
            .filter(|(_, at)| Instant::now() >= **at)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            retry_at.remove(&p);
            if assigned.contains(&p) {
                taking.insert(p, takes.take(p));
            }
        }
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                PumpCommand::Retake(p) if assigned.contains(&p) => {
                    gens.remove(&p);
                    fetched.remove(&p);
                    pending.remove(&p);
                    source.pause(p);
                    taking.insert(p, takes.take(p));
                }
                PumpCommand::Committed(p, pos) => {
                    source.committed(p, pos);
                    committed.insert(p, pos);
                }
                PumpCommand::Rewind(p, to) if assigned.contains(&p) => {
                    if gens.remove(&p).is_some() {
                        pending.insert(p, Pending::Skip(to));
                        last_seek = Instant::now() - Duration::from_secs(1);
                    }
                }
                PumpCommand::Halt(p) if assigned.contains(&p) => {
                    source.pause(p);
                    gens.remove(&p);
                    fetched.remove(&p);
                    pending.remove(&p);
                }
                // For a partition revoked meanwhile: not ours any more.
                PumpCommand::Retake(_) | PumpCommand::Rewind(..) | PumpCommand::Halt(_) => {}
            }
        }
        if !pending.is_empty() && last_seek.elapsed() >= Duration::from_millis(500) {
            last_seek = Instant::now();
            let ps: Vec<i32> = pending.keys().copied().collect();
            for p in ps {
                let to = match &pending[&p] {
                    Pending::Assign(r) => r.source,
                    Pending::Skip(to) => *to,
                };
                match source.seek(p, to) {
                    Ok(()) => {
                        let generation = next_gen();
                        gens.insert(p, generation);
                        fetched.insert(p, to);
                        let msg = match pending.remove(&p) {
                            Some(Pending::Assign(resume)) => {
                                source.resume(p);
                                committed.insert(p, resume.chain);
                                tracing::info!(
                                    "partition {p} taken at position {} (the chain ends at {})",
                                    resume.source,
                                    resume.chain
                                );
                                Pumped::Change(
                                    Change::Assigned {
                                        partition: p,
                                        resume,
                                    },
                                    generation,
                                )
                            }
                            _ => Pumped::Skip {
                                partition: p,
                                to,
                                generation,
                            },
                        };
                        if !send(msg) {
                            break 'run;
                        }
                    }
                    Err(e) => {
                        ::metrics::counter!(metrics::SEEK_FAILURES).increment(1);
                        tracing::warn!(
                            partition = p,
                            position = to,
                            "seek failed (retrying; the partition waits): {e}"
                        );
                    }
                }
            }
        }
        let t0 = Instant::now();
        let mut chunks = source.poll(POLL_MAX, POLL_MAX_BYTES, Duration::from_millis(100));
        let took = t0.elapsed();
        chunks.retain_mut(|c| match gens.get(&c.partition) {
            Some(&generation) => {
                c.generation = generation;
                if let Some(&last) = c.offsets.last() {
                    fetched.insert(c.partition, last + 1);
                }
                true
            }
            // Not ours, or waiting for a seek: polled from a stale position.
            None => false,
        });
        if !chunks.is_empty() && !send(Pumped::Chunks(chunks, took)) {
            break;
        }
        for (p, from, to) in source.gaps(&fetched) {
            if matches!(pending.get(&p), Some(Pending::Assign(_))) {
                // Being taken: its take's position is sought next.
                continue;
            }
            gens.remove(&p);
            if accept_gaps {
                tracing::warn!(
                    partition = p,
                    position = from,
                    "records {from}..{to} were deleted from the source before they were \
                     written: skipping them (--accept-retention-gaps)"
                );
                ::metrics::counter!(metrics::GAP_RECORDS, "partition" => p.to_string())
                    .increment((to - from) as u64);
                pending.insert(p, Pending::Skip(to));
                last_seek = Instant::now() - Duration::from_secs(1);
            } else {
                source.pause(p);
                fetched.remove(&p);
                let reason = format!(
                    "{} partition {p}: records {from}..{to} were deleted from the source \
                     (retention) before they were written. Nothing more is written for this \
                     partition. To skip them deliberately, run again with \
                     --accept-retention-gaps",
                    source.name()
                );
                tracing::error!(
                    partition = p,
                    position = from,
                    "not consuming the partition: {reason}"
                );
                if !send(Pumped::Change(
                    Change::Stopped {
                        partition: p,
                        reason,
                    },
                    0,
                )) {
                    break 'run;
                }
            }
        }
        if last_lag.elapsed() >= Duration::from_secs(1) {
            last_lag = Instant::now();
            let mut lag = status.lag.lock().unwrap();
            for (&p, &pos) in &committed {
                if let Some(l) = source.lag(p, pos) {
                    lag.insert(p, l);
                    ::metrics::gauge!(metrics::LAG, "partition" => p.to_string()).set(l as f64);
                }
            }
        }
    }
    // Positions committed while stopping.
    while let Ok(cmd) = commands.try_recv() {
        if let PumpCommand::Committed(p, pos) = cmd {
            source.committed(p, pos);
        }
    }
    // The take thread first: it holds the consumer too.
    drop(takes);
    if let Source::Kafka(k) = source {
        k.close();
    }
}

/// The router loop (see the module docs).
#[allow(clippy::too_many_arguments)]
fn run(
    config: WriterConfig,
    source: Source,
    commits: Arc<Commits>,
    schemas: Arc<Schemas>,
    registry: Arc<Registry>,
    stop: &Arc<AtomicBool>,
    drain: &AtomicI64,
    pump_stop: Arc<AtomicBool>,
    status: &Arc<Status>,
) -> Result<()> {
    let (to_sink, sink_rx) = mpsc::sync_channel::<ToSink>(4);
    let (feedback_tx, feedback) = mpsc::channel::<FromSink>();
    let sink = Sink::new(
        commits.clone(),
        source.name(),
        config.limits,
        feedback_tx,
        status.clone(),
        stop.clone(),
    );
    let sink_thread = std::thread::Builder::new()
        .name("writer-sink".into())
        .spawn(move || sink.run(sink_rx))?;
    let (pumped_tx, pumped) = mpsc::sync_channel::<Pumped>(4);
    let (commands, commands_rx) = mpsc::channel::<PumpCommand>();
    let accept_gaps = config.take.accept_gaps;
    let pump_thread = {
        let (stop, status) = (pump_stop.clone(), status.clone());
        std::thread::Builder::new()
            .name("writer-source".into())
            .spawn(move || pump(source, pumped_tx, commands_rx, accept_gaps, &stop, &status))?
    };
    // Snapshots come often enough that pruning keeps the records after one.
    let dedup_limits = dedup::DedupLimits {
        snapshot_every: config
            .dedup
            .snapshot_every
            .min(config.keep_records / 2)
            .max(1),
        ..config.dedup
    };
    let mut router = Router::new(
        registry,
        schemas,
        config.plugin_wait,
        config.max_record_bytes,
    )
    .with_dedup(dedup_limits);

    // Per consumed partition: the next source position to route, the
    // generation its chunks carry, and the sink's epoch.
    let mut next: HashMap<i32, (i64, u64, u64)> = HashMap::new();
    let mut consume = Duration::ZERO;
    let mut last_times = Instant::now();
    let send = |msg: ToSink| {
        send_beating(&to_sink, msg, &status.beats.router)
            .map_err(|()| anyhow::anyhow!("the sink thread stopped"))
    };
    let stopped_gauge = |status: &Status| {
        let n = status.stopped.lock().unwrap().len();
        ::metrics::gauge!(metrics::PARTITIONS_STOPPED).set(n as f64);
    };

    let mut stopping_since: Option<Instant> = None;
    let result = (|| -> Result<()> {
        loop {
            Beats::beat(&status.beats.router);
            if stop.load(Ordering::SeqCst) {
                let since = *stopping_since.get_or_insert_with(Instant::now);
                let target = drain.load(Ordering::SeqCst);
                let drained = target < 0
                    || next.is_empty()
                    || next.values().all(|(pos, _, _)| *pos >= target);
                if drained || since.elapsed() >= DRAIN_BOUND {
                    break;
                }
            }
            if crate::faults::fires("writer_panic") {
                panic!("failpoint writer_panic");
            }
            while let Ok(msg) = feedback.try_recv() {
                match msg {
                    FromSink::Committed {
                        partition,
                        next: committed,
                        snapshot,
                    } => {
                        let _ = commands.send(PumpCommand::Committed(partition, committed));
                        status
                            .committed
                            .lock()
                            .unwrap()
                            .insert(partition, committed);
                        status
                            .commit_times
                            .lock()
                            .unwrap()
                            .insert(partition, SystemTime::now());
                        if let Some(&(_, _, epoch)) = next.get(&partition)
                            && let Some((count, data)) =
                                router.committed(partition, committed, snapshot)
                        {
                            send(ToSink::Snapshot {
                                partition,
                                epoch,
                                upto: committed,
                                count,
                                data,
                            })?;
                        }
                    }
                    FromSink::Failed {
                        partition,
                        epoch,
                        reason,
                    } => {
                        if next.get(&partition).is_some_and(|(_, _, e)| *e == epoch) {
                            next.remove(&partition);
                            router.drop_window(partition);
                            let _ = commands.send(PumpCommand::Halt(partition));
                            status.stopped.lock().unwrap().insert(partition, reason);
                            stopped_gauge(status);
                        }
                    }
                    FromSink::Fenced { partition, epoch } => {
                        if next.get(&partition).is_some_and(|(_, _, e)| *e == epoch) {
                            next.remove(&partition);
                            router.drop_window(partition);
                            let _ = commands.send(PumpCommand::Retake(partition));
                        }
                    }
                }
            }
            let chunks = match pumped.recv_timeout(Duration::from_millis(50)) {
                Ok(Pumped::Chunks(chunks, took)) => {
                    consume += took;
                    chunks
                }
                Ok(Pumped::Change(change, generation)) => {
                    match change {
                        Change::Assigned { partition, resume } => {
                            // The window as the commits left it, read here
                            // (not in the rebalance callback).
                            let beat = || Beats::beat(&status.beats.router);
                            if !router.load_window(partition, &commits, stop, &beat) {
                                continue;
                            }
                            next.insert(partition, (resume.source, generation, generation));
                            status
                                .committed
                                .lock()
                                .unwrap()
                                .insert(partition, resume.chain);
                            status
                                .resumed
                                .lock()
                                .unwrap()
                                .insert(partition, resume.source);
                            status.stopped.lock().unwrap().remove(&partition);
                            send(ToSink::Assign {
                                partition,
                                epoch: generation,
                                start: resume.chain,
                            })?;
                        }
                        Change::Revoked { partition } => {
                            next.remove(&partition);
                            router.drop_window(partition);
                            status.stopped.lock().unwrap().remove(&partition);
                            // Another writer's now (the status page and
                            // --exit-at-end count this writer's partitions).
                            status.committed.lock().unwrap().remove(&partition);
                            status.routed.lock().unwrap().remove(&partition);
                            status.resumed.lock().unwrap().remove(&partition);
                            send(ToSink::Drop { partition })?;
                        }
                        Change::Stopped { partition, reason } => {
                            next.remove(&partition);
                            router.drop_window(partition);
                            status.stopped.lock().unwrap().insert(partition, reason);
                            send(ToSink::Drop { partition })?;
                        }
                        Change::Pending { .. } => {}
                    }
                    stopped_gauge(status);
                    continue;
                }
                Ok(Pumped::Skip {
                    partition,
                    to,
                    generation,
                }) => {
                    if let Some(n) = next.get_mut(&partition) {
                        n.0 = to;
                        n.1 = generation;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the source thread stopped")
                }
            };
            for chunk in chunks {
                let Some(&(mut from, generation, epoch)) = next.get(&chunk.partition) else {
                    continue; // not (or no longer) ours
                };
                let (Some(&first), Some(&last)) = (chunk.offsets.first(), chunk.offsets.last())
                else {
                    continue;
                };
                if chunk.generation != generation || last < from {
                    continue; // polled before a seek, or already routed
                }
                if first > from {
                    let p = chunk.partition;
                    if !config.take.accept_gaps {
                        let reason = format!(
                            "partition {p}: the source skipped from position {from} to {first}; \
                             nothing more is written for this partition. To accept such gaps \
                             deliberately, run again with --accept-retention-gaps"
                        );
                        tracing::error!(partition = p, position = from, "{reason}");
                        next.remove(&p);
                        let _ = commands.send(PumpCommand::Halt(p));
                        status.stopped.lock().unwrap().insert(p, reason);
                        stopped_gauge(status);
                        send(ToSink::Drop { partition: p })?;
                        continue;
                    }
                    tracing::warn!(
                        partition = p,
                        position = from,
                        "records {from}..{first} are missing from the source: skipped \
                         (--accept-retention-gaps)"
                    );
                    ::metrics::counter!(metrics::GAP_RECORDS, "partition" => p.to_string())
                        .increment((first - from) as u64);
                    from = first;
                }
                let Some(routed) = router.route(&chunk, from, stop) else {
                    // Stopping before the chunk could be routed (nothing of
                    // it was): read it again from `from`. Until the source
                    // has sought back, no chunk counts (the next one would
                    // look like a gap).
                    next.insert(chunk.partition, (from, REWINDING, epoch));
                    let _ = commands.send(PumpCommand::Rewind(chunk.partition, from));
                    continue;
                };
                if let Some(reason) = routed.failed {
                    let p = chunk.partition;
                    tracing::error!(partition = p, position = from, "{reason}");
                    ::metrics::counter!(metrics::ENCODE_FAILURES).increment(1);
                    next.remove(&p);
                    router.drop_window(p);
                    let _ = commands.send(PumpCommand::Halt(p));
                    status.stopped.lock().unwrap().insert(p, reason);
                    stopped_gauge(status);
                    send(ToSink::Drop { partition: p })?;
                    continue;
                }
                next.insert(chunk.partition, (last + 1, generation, epoch));
                status
                    .routed
                    .lock()
                    .unwrap()
                    .insert(chunk.partition, last + 1);
                send(ToSink::Chunk {
                    partition: chunk.partition,
                    epoch,
                    next: last + 1,
                    tables: routed.tables,
                    ids: routed.ids,
                })?;
            }
            if last_times.elapsed() >= Duration::from_millis(100) {
                last_times = Instant::now();
                metrics::stages(consume, &router.times);
                let mut times = status.times.lock().unwrap();
                times.consume = consume;
                times.route = router.times;
            }
        }
        Ok(())
    })();

    tracing::info!("writer stopping: final commit");
    let _ = to_sink.send(ToSink::Stop);
    drop(to_sink);
    let sink_times = sink_thread.join();
    while let Ok(msg) = feedback.try_recv() {
        if let FromSink::Committed {
            partition, next, ..
        } = msg
        {
            let _ = commands.send(PumpCommand::Committed(partition, next));
            status.committed.lock().unwrap().insert(partition, next);
        }
    }
    pump_stop.store(true, Ordering::SeqCst);
    drop(pumped);
    let pumped_ok = pump_thread.join();
    let sink_times = sink_times.map_err(|_| anyhow::anyhow!("the sink thread panicked"))?;
    pumped_ok.map_err(|_| anyhow::anyhow!("the source thread panicked"))?;
    let mut times = status.times.lock().unwrap();
    times.consume = consume;
    times.route = router.times;
    times.sink = sink_times;
    drop(times);
    metrics::stages(consume, &router.times);
    metrics::sink_stages(&sink_times);
    let t = router.times;
    tracing::info!(
        "writer stopped; thread time per stage: poll {:.3} s, decode {:.3} s, dedup {:.3} s, \
         plugins {:.3} s, arrow {:.3} s, parquet {:.3} s, commit {:.3} s",
        consume.as_secs_f64(),
        t.decode.as_secs_f64(),
        t.dedup.as_secs_f64(),
        t.plugins.as_secs_f64(),
        t.arrow.as_secs_f64(),
        sink_times.encode.as_secs_f64(),
        sink_times.commit.as_secs_f64(),
    );
    result
}
