//! The sink thread: encodes table batches into Parquet files (zstd), one
//! open file per (source partition, table, day), and commits them with the
//! [`commit`](super::commit) protocol when the flush timer fires, when a
//! partition reaches the row cap, or when buffered bytes reach the cap.
//!
//! It runs beside the router thread so that Parquet encoding and I/O use the
//! second core; a bounded channel between the two is the back-pressure.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::Status;
use super::commit::{CommitError, CommitOutcome, Commits, PendingDedup, PendingFile};
use super::metrics as m;
use super::router::TableBatch;
use super::table;

/// After a stop is asked, commits are retried this long before the writer
/// gives up on them (they are read again after the restart).
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Router -> sink.
pub enum ToSink {
    /// Start (or restart) `partition` at `start`; data of older epochs is dropped.
    Assign {
        partition: i32,
        epoch: u64,
        start: i64,
    },
    /// Rows of `partition`; everything before `next` has been routed.
    /// `ids`: the client-named event ids routed (id, event µs), committed
    /// with the rows.
    Chunk {
        partition: i32,
        epoch: u64,
        next: i64,
        tables: Vec<TableBatch>,
        ids: Vec<(u128, i64)>,
    },
    /// A snapshot of `partition`'s deduplication window as of `upto` (a
    /// committed position), to commit with its next range.
    Snapshot {
        partition: i32,
        epoch: u64,
        upto: i64,
        count: u64,
        data: Bytes,
    },
    /// The partition was revoked: drop what is buffered for it.
    Drop { partition: i32 },
    /// Commit everything, then stop.
    Stop,
}

/// Sink -> router.
#[derive(Debug)]
pub enum FromSink {
    Committed {
        partition: i32,
        next: i64,
        /// Whether a deduplication snapshot was committed with it.
        snapshot: bool,
    },
    /// Another writer committed the partition first; recover it.
    Fenced { partition: i32, epoch: u64 },
    /// Rows could not be encoded: the range was not committed and the
    /// partition must stop (the reason says why).
    Failed {
        partition: i32,
        epoch: u64,
        reason: String,
    },
}

/// Rotation and memory caps.
#[derive(Debug, Clone, Copy)]
pub struct SinkLimits {
    pub flush_interval: Duration,
    pub max_file_rows: u64,
    pub max_buffer_bytes: usize,
}

struct OpenFile {
    table: Arc<str>,
    day: i32,
    schema: SchemaRef,
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
}

struct Part {
    epoch: u64,
    start: i64,
    next: i64,
    files: Vec<OpenFile>,
    rows: u64,
    /// Client-named ids routed since `start`.
    ids: Vec<(u128, i64)>,
    /// A deduplication snapshot to commit with the next range.
    snapshot: Option<(i64, u64, Bytes)>,
    /// Rows of the range could not be encoded (why): the range must not
    /// commit, since its positions would move past rows not written.
    failed: Option<String>,
}

/// Time spent by the sink (for the benchmark's breakdown).
#[derive(Debug, Default, Clone, Copy)]
pub struct SinkTimes {
    pub encode: Duration,
    pub commit: Duration,
}

pub struct Sink {
    commits: Arc<Commits>,
    source: String,
    limits: SinkLimits,
    props: WriterProperties,
    parts: HashMap<i32, Part>,
    feedback: Sender<FromSink>,
    status: Arc<Status>,
    /// The writer's stop flag, and when this thread first saw it set:
    /// commits are retried until [`STOP_GRACE`] after that.
    stop: Arc<AtomicBool>,
    stop_seen: Cell<Option<Instant>>,
    pub times: SinkTimes,
}

pub(crate) fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("zstd level 1 is valid"),
        ))
        .set_column_dictionary_enabled("event_id".into(), false)
        .set_column_dictionary_enabled("raw_event".into(), false)
        .set_column_dictionary_enabled("raw".into(), false)
        // Unique, long values: min/max statistics would only cost time.
        .set_column_statistics_enabled("raw_event".into(), EnabledStatistics::None)
        .set_column_statistics_enabled("raw".into(), EnabledStatistics::None)
        .set_created_by(format!("eventsift {}", env!("CARGO_PKG_VERSION")))
        .build()
}

impl Sink {
    pub fn new(
        commits: Arc<Commits>,
        source: &str,
        limits: SinkLimits,
        feedback: Sender<FromSink>,
        status: Arc<Status>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Sink {
            commits,
            source: source.to_owned(),
            limits,
            props: properties(),
            parts: HashMap::new(),
            feedback,
            status,
            stop,
            stop_seen: Cell::new(None),
            times: SinkTimes::default(),
        }
    }

    /// Whether a stop was asked more than [`STOP_GRACE`] ago: then commits
    /// are given up (what they held is read again after the restart).
    fn giving_up(&self) -> bool {
        if !self.stop.load(Ordering::SeqCst) {
            return false;
        }
        let since = match self.stop_seen.get() {
            Some(t) => t,
            None => {
                let now = Instant::now();
                self.stop_seen.set(Some(now));
                now
            }
        };
        since.elapsed() >= STOP_GRACE
    }

    /// Runs until [`ToSink::Stop`] (or the router is gone), then commits
    /// what is buffered.
    pub fn run(mut self, rx: Receiver<ToSink>) -> SinkTimes {
        let mut next_tick = Instant::now() + self.limits.flush_interval;
        loop {
            super::Beats::beat(&self.status.beats.sink);
            let wait = next_tick
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            match rx.recv_timeout(wait) {
                Ok(ToSink::Assign {
                    partition,
                    epoch,
                    start,
                }) => {
                    self.parts.insert(
                        partition,
                        Part {
                            epoch,
                            start,
                            next: start,
                            files: Vec::new(),
                            rows: 0,
                            ids: Vec::new(),
                            snapshot: None,
                            failed: None,
                        },
                    );
                }
                Ok(ToSink::Snapshot {
                    partition,
                    epoch,
                    upto,
                    count,
                    data,
                }) => {
                    if let Some(part) = self.parts.get_mut(&partition)
                        && part.epoch == epoch
                    {
                        part.snapshot = Some((upto, count, data));
                    }
                }
                Ok(ToSink::Chunk {
                    partition,
                    epoch,
                    next,
                    tables,
                    ids,
                }) => {
                    if let Some(part) = self.parts.get_mut(&partition)
                        && part.epoch == epoch
                    {
                        part.ids.extend(ids);
                    }
                    if self.append(partition, epoch, next, tables) {
                        self.flush(partition);
                    }
                    if self.buffered_bytes() >= self.limits.max_buffer_bytes {
                        tracing::debug!("buffer cap reached: committing every partition");
                        self.flush_all();
                    }
                }
                Ok(ToSink::Drop { partition }) => {
                    self.parts.remove(&partition);
                }
                Ok(ToSink::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush_all();
                    return self.times;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.flush_all();
                next_tick = Instant::now() + self.limits.flush_interval;
            }
        }
    }

    /// Buffers rows; true when the partition reached the row cap.
    fn append(&mut self, partition: i32, epoch: u64, next: i64, tables: Vec<TableBatch>) -> bool {
        let t0 = Instant::now();
        let Some(part) = self.parts.get_mut(&partition) else {
            return false;
        };
        if part.epoch != epoch {
            return false;
        }
        part.next = next;
        for tb in tables {
            if part.failed.is_some() {
                break;
            }
            let schema = tb.batch.schema();
            let found = part
                .files
                .iter()
                .rposition(|f| f.table == tb.table && f.day == tb.day && f.schema == schema);
            let i = match found {
                Some(i) => i,
                None => {
                    match ArrowWriter::try_new(
                        Vec::with_capacity(1 << 20),
                        schema.clone(),
                        Some(self.props.clone()),
                    ) {
                        Ok(writer) => part.files.push(OpenFile {
                            table: tb.table.clone(),
                            day: tb.day,
                            schema,
                            writer,
                            rows: 0,
                        }),
                        Err(e) => {
                            part.failed = Some(format!(
                                "cannot encode rows of table {} (its schema has no Parquet \
                                 form): {e}",
                                tb.table
                            ));
                            break;
                        }
                    }
                    part.files.len() - 1
                }
            };
            let f = &mut part.files[i];
            let written = if crate::faults::fires("encode_fail") {
                Err("failpoint encode_fail: injected error".to_owned())
            } else {
                f.writer.write(&tb.batch).map_err(|e| e.to_string())
            };
            if let Err(e) = written {
                part.failed = Some(format!(
                    "cannot encode {} rows of table {}: {e}",
                    tb.batch.num_rows(),
                    tb.table
                ));
                break;
            }
            f.rows += tb.batch.num_rows() as u64;
            part.rows += tb.batch.num_rows() as u64;
        }
        self.times.encode += t0.elapsed();
        part.rows >= self.limits.max_file_rows
    }

    fn buffered_bytes(&self) -> usize {
        self.parts
            .values()
            .flat_map(|p| &p.files)
            .map(|f| f.writer.memory_size() + f.writer.inner().len())
            .sum::<usize>()
            + self
                .parts
                .values()
                .map(|p| {
                    p.ids.capacity() * std::mem::size_of::<(u128, i64)>()
                        + p.snapshot.as_ref().map_or(0, |(_, _, data)| data.len())
                })
                .sum::<usize>()
    }

    fn flush_all(&mut self) {
        let mut ps: Vec<i32> = self.parts.keys().copied().collect();
        ps.sort_unstable();
        for p in ps {
            self.flush(p);
        }
    }

    /// Rows of `partition`'s range `start..end` could not be encoded: the
    /// range is not committed (its positions must not move past rows that
    /// were not written), its rows are dropped, and the router stops the
    /// partition with `why`.
    fn fail(&mut self, partition: i32, epoch: u64, start: i64, end: i64, why: String) {
        metrics::counter!(m::ENCODE_FAILURES).increment(1);
        let reason = format!(
            "{} partition {partition}: {why}; positions {start}..{end} are not committed and \
             the partition is stopped (a bug: please report it with this message); a restart \
             reads them again",
            self.source
        );
        tracing::error!(partition, position = start, "{reason}");
        self.parts.remove(&partition);
        let _ = self.feedback.send(FromSink::Failed {
            partition,
            epoch,
            reason,
        });
    }

    /// Commits what `partition` buffered; retries while the warehouse fails
    /// (the positions do not move until a commit succeeds, so nothing is lost).
    fn flush(&mut self, partition: i32) {
        let Some(part) = self.parts.get_mut(&partition) else {
            return;
        };
        if part.next <= part.start {
            return;
        }
        if self.stop.load(Ordering::SeqCst)
            && self
                .stop_seen
                .get()
                .is_some_and(|t| t.elapsed() >= STOP_GRACE)
        {
            tracing::warn!(
                partition,
                position = part.start,
                "stopping: positions {}..{} not committed (read again after the restart)",
                part.start,
                part.next
            );
            self.parts.remove(&partition);
            return;
        }
        if crate::faults::fires("sink_stall") {
            tracing::warn!("failpoint sink_stall: the sink stops in one call");
            std::thread::sleep(Duration::from_secs(3600));
        }
        let t0 = Instant::now();
        let (start, end, epoch) = (part.start, part.next, part.epoch);
        if let Some(why) = part.failed.take() {
            self.fail(partition, epoch, start, end, why);
            return;
        }
        let mut pending = Vec::with_capacity(part.files.len());
        let mut unfinished: Option<String> = None;
        let mut seq: HashMap<(Arc<str>, i32), u32> = HashMap::new();
        // Chains after the first name their files apart: a new chain's
        // positions may repeat an old one's.
        let chain = match self.commits.chain(partition) {
            Some(c) if c > 1 => format!("c{c:06}-"),
            _ => String::new(),
        };
        for f in part.files.drain(..) {
            let n = seq.entry((f.table.clone(), f.day)).or_default();
            let name = format!(
                "{}/dt={}/{}-{partition}-{chain}{start:020}-{n}.parquet",
                f.table,
                table::date_string(f.day),
                self.source
            );
            *n += 1;
            match f.writer.into_inner() {
                Ok(data) => pending.push(PendingFile {
                    table: f.table.to_string(),
                    path: name,
                    rows: f.rows,
                    data: Bytes::from(data),
                }),
                Err(e) => {
                    unfinished.get_or_insert(format!(
                        "cannot finish the Parquet file {name} ({} rows): {e}",
                        f.rows
                    ));
                }
            }
        }
        if let Some(why) = unfinished {
            self.fail(partition, epoch, start, end, why);
            return;
        }
        let part = self
            .parts
            .get_mut(&partition)
            .expect("the partition is still buffered");
        part.rows = 0;
        let dedup = PendingDedup {
            ids: (!part.ids.is_empty()).then(|| {
                (
                    part.ids.len() as u64,
                    super::dedup::encode(&std::mem::take(&mut part.ids)),
                )
            }),
            snapshot: part.snapshot.take(),
        };
        let carries_snapshot = dedup.snapshot.is_some();
        self.times.encode += t0.elapsed();

        let t1 = Instant::now();
        let mut backoff = Duration::from_millis(200);
        let give_up = || self.giving_up();
        let outcome = loop {
            self.status.sink_committing.store(true, Ordering::Relaxed);
            let attempt = self
                .commits
                .commit_with(partition, start, end, &pending, &dedup, &give_up);
            self.status.sink_committing.store(false, Ordering::Relaxed);
            match attempt {
                Ok((outcome, _)) => break Some(outcome),
                Err(e @ CommitError::Unresolved(_)) => {
                    // The attempt stays for recovery to resolve: whoever
                    // takes the partition next (this writer, at once,
                    // unless it is stopping) reads the record or its absence.
                    tracing::warn!(
                        partition,
                        position = start,
                        "{e}; the partition is taken again, which resolves it"
                    );
                    break None;
                }
                Err(e) => {
                    metrics::counter!(m::COMMIT_FAILURES).increment(1);
                    if give_up() || !e.is_transient() {
                        tracing::warn!(
                            partition,
                            position = start,
                            "commit of positions {start}..{end} failed: {e}; not committed \
                             (read again after the restart)"
                        );
                        break None;
                    }
                    tracing::warn!(partition, position = start, "commit failed (retrying): {e}");
                    super::Beats::beat(&self.status.beats.sink);
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !give_up() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let took = t1.elapsed();
        self.times.commit += took;
        m::sink_stages(&self.times);
        let Some(outcome) = outcome else {
            // Not committed: drop the rows; unless stopping, the router
            // takes the partition again from its chain's end.
            self.parts.remove(&partition);
            if !self.stop.load(Ordering::SeqCst) {
                let _ = self.feedback.send(FromSink::Fenced { partition, epoch });
            }
            return;
        };
        match outcome {
            CommitOutcome::Committed => {
                metrics::histogram!(m::COMMIT_SECONDS).record(took.as_secs_f64());
                metrics::counter!(m::COMMITS).increment(1);
                *self
                    .status
                    .last_commit
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(std::time::SystemTime::now());
                m::committed_now();
                for f in &pending {
                    tracing::debug!(
                        table = %f.table,
                        partition,
                        position = start,
                        file = %f.path,
                        rows = f.rows,
                        bytes = f.data.len(),
                        "committed"
                    );
                    let table = f.table.clone();
                    metrics::counter!(m::ROWS, "table" => table.clone()).increment(f.rows);
                    metrics::counter!(m::FILES, "table" => table.clone()).increment(1);
                    metrics::counter!(m::BYTES, "table" => table).increment(f.data.len() as u64);
                }
                if let Some(part) = self.parts.get_mut(&partition) {
                    part.start = end;
                }
                let _ = self.feedback.send(FromSink::Committed {
                    partition,
                    next: end,
                    snapshot: carries_snapshot,
                });
            }
            CommitOutcome::Fenced => {
                tracing::warn!(
                    partition,
                    position = start,
                    "another writer committed this range first: dropping it and recovering"
                );
                metrics::counter!(m::FENCED).increment(1);
                self.parts.remove(&partition);
                let _ = self.feedback.send(FromSink::Fenced { partition, epoch });
            }
        }
    }
}
