//! The sink thread: encodes table batches into Parquet files (zstd), one
//! open file per (source partition, table, day), and commits them with the
//! [`commit`](super::commit) protocol when the flush timer fires, when a
//! partition reaches the row cap, or when buffered bytes reach the cap.
//!
//! It runs beside the router thread so that Parquet encoding and I/O use the
//! second core; a bounded channel between the two is the back-pressure.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::commit::{CommitOutcome, Commits, PendingFile};
use super::metrics as m;
use super::router::TableBatch;
use super::table;

/// Router -> sink.
pub enum ToSink {
    /// Start (or restart) `partition` at `start`; data of older epochs is dropped.
    Assign {
        partition: i32,
        epoch: u64,
        start: i64,
    },
    /// Rows of `partition`; everything before `next` has been routed.
    Chunk {
        partition: i32,
        epoch: u64,
        next: i64,
        tables: Vec<TableBatch>,
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
    },
    /// Another writer committed the partition first; recover it.
    Fenced {
        partition: i32,
        epoch: u64,
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
    commits_since_prune: u32,
    pub times: SinkTimes,
}

fn properties() -> WriterProperties {
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
    ) -> Self {
        Sink {
            commits,
            source: source.to_owned(),
            limits,
            props: properties(),
            parts: HashMap::new(),
            feedback,
            commits_since_prune: 0,
            times: SinkTimes::default(),
        }
    }

    /// Runs until [`ToSink::Stop`] (or the router is gone), then commits
    /// what is buffered.
    pub fn run(mut self, rx: Receiver<ToSink>) -> SinkTimes {
        let mut next_tick = Instant::now() + self.limits.flush_interval;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
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
                        },
                    );
                }
                Ok(ToSink::Chunk {
                    partition,
                    epoch,
                    next,
                    tables,
                }) => {
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
            let schema = tb.batch.schema();
            let found = part
                .files
                .iter()
                .rposition(|f| f.table == tb.table && f.day == tb.day && f.schema == schema);
            let i = match found {
                Some(i) => i,
                None => {
                    let writer = ArrowWriter::try_new(
                        Vec::with_capacity(1 << 20),
                        schema.clone(),
                        Some(self.props.clone()),
                    )
                    .expect("an Arrow schema of supported types maps to Parquet");
                    part.files.push(OpenFile {
                        table: tb.table.clone(),
                        day: tb.day,
                        schema,
                        writer,
                        rows: 0,
                    });
                    part.files.len() - 1
                }
            };
            let f = &mut part.files[i];
            if let Err(e) = f.writer.write(&tb.batch) {
                // Writing to memory fails only on a bug; say so loudly.
                tracing::error!(table = %tb.table, "cannot encode rows: {e}");
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
            .sum()
    }

    fn flush_all(&mut self) {
        let mut ps: Vec<i32> = self.parts.keys().copied().collect();
        ps.sort_unstable();
        for p in ps {
            self.flush(p);
        }
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
        let t0 = Instant::now();
        let (start, end, epoch) = (part.start, part.next, part.epoch);
        let mut pending = Vec::with_capacity(part.files.len());
        let mut seq: HashMap<(Arc<str>, i32), u32> = HashMap::new();
        for f in part.files.drain(..) {
            let n = seq.entry((f.table.clone(), f.day)).or_default();
            let name = format!(
                "{}/dt={}/{}-{partition}-{start:020}-{n}.parquet",
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
                Err(e) => tracing::error!(table = %f.table, "cannot finish a Parquet file: {e}"),
            }
        }
        part.rows = 0;
        self.times.encode += t0.elapsed();

        let t1 = Instant::now();
        let mut backoff = Duration::from_millis(200);
        let outcome = loop {
            match self.commits.commit(partition, start, end, &pending) {
                Ok((outcome, _)) => break outcome,
                Err(e) => {
                    tracing::warn!(partition, "commit failed (retrying): {e}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let took = t1.elapsed();
        self.times.commit += took;
        match outcome {
            CommitOutcome::Committed => {
                metrics::histogram!(m::COMMIT_SECONDS).record(took.as_secs_f64());
                metrics::counter!(m::COMMITS).increment(1);
                for f in &pending {
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
                });
                self.commits_since_prune += 1;
                if self.commits_since_prune >= 32 {
                    self.commits_since_prune = 0;
                    if let Err(e) = self.commits.prune(partition) {
                        tracing::debug!("pruning commit records: {e}");
                    }
                }
            }
            CommitOutcome::Fenced => {
                tracing::warn!(
                    partition,
                    start,
                    "another writer committed this range first: dropping it and recovering"
                );
                metrics::counter!(m::FENCED).increment(1);
                self.parts.remove(&partition);
                let _ = self.feedback.send(FromSink::Fenced { partition, epoch });
            }
        }
    }
}
