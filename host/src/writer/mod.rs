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
pub mod metrics;
pub mod router;
pub mod sink;
pub mod source;
pub mod table;
pub mod warehouse;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::plugin::Registry;
use crate::transport::embedded::EmbeddedLog;
use commit::Commits;
use router::{RouteTimes, Router};
use sink::{FromSink, Sink, SinkLimits, SinkTimes, ToSink};
use source::{KafkaSource, KafkaSourceConfig, Source};
use warehouse::Warehouse;

/// Records routed per poll (at most).
const POLL_MAX: usize = 8192;

/// Where the writer reads.
pub enum Input {
    Embedded(Arc<EmbeddedLog>),
    Kafka(KafkaSourceConfig),
}

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub warehouse: String,
    pub limits: SinkLimits,
    pub plugin_wait: Duration,
    pub max_record_bytes: usize,
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
    /// Records not yet committed per partition (when known).
    pub lag: Mutex<HashMap<i32, i64>>,
    /// Time spent per stage.
    pub times: Mutex<Times>,
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
    pub status: Arc<Status>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Writer {
    /// Opens the warehouse and the source and starts the writer threads.
    pub fn start(config: WriterConfig, input: Input, registry: Arc<Registry>) -> Result<Writer> {
        // Install the metrics recorder before the first event is counted.
        crate::api::metrics::handle();
        let wh = Arc::new(
            Warehouse::open(&config.warehouse)
                .with_context(|| format!("opening the warehouse {}", config.warehouse))?,
        );
        let writer_id = format!("{}-{}", hostname(), uuid::Uuid::now_v7().simple());
        let source_name = match &input {
            Input::Embedded(_) => "log".to_owned(),
            Input::Kafka(k) => k.topic.clone(),
        };
        let commits = Arc::new(Commits::new(wh.clone(), &source_name, &writer_id));
        let source = match input {
            Input::Embedded(log) => Source::Embedded(
                source::EmbeddedSource::new(log, &commits)
                    .context("recovering the log's position")?,
            ),
            Input::Kafka(k) => Source::Kafka(
                KafkaSource::new(&k, commits.clone()).context("creating the Kafka consumer")?,
            ),
        };
        tracing::info!(
            warehouse = %wh.location(),
            source = source.name(),
            "writer starting (flush every {:?})",
            config.limits.flush_interval
        );
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Status::default());
        status.running.store(true, Ordering::SeqCst);
        let thread = {
            let (stop, status) = (stop.clone(), status.clone());
            std::thread::Builder::new()
                .name("writer-router".into())
                .spawn(move || {
                    let result = run(config, source, commits, registry, &stop, &status);
                    status.running.store(false, Ordering::SeqCst);
                    if let Err(e) = &result {
                        tracing::error!("writer stopped: {e:#}");
                    }
                    result
                })?
        };
        Ok(Writer {
            stop,
            status,
            thread: Some(thread),
        })
    }

    /// Whether the writer thread is still running.
    pub fn is_running(&self) -> bool {
        self.status.running.load(Ordering::SeqCst)
    }

    /// Commits what is buffered and stops.
    pub fn stop(mut self) -> Result<()> {
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

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "writer".into())
}

/// What the source thread hands the router, in source order.
enum Pumped {
    /// Records polled (and how long the poll took).
    Chunks(Vec<source::Chunk>, Duration),
    /// Partitions gained or lost (after the chunks polled before it).
    Assignment(source::Assignment),
}

/// What the router asks of the source thread.
enum PumpCommand {
    /// Continue a partition from this position.
    Seek(i32, i64),
    /// Everything below the position is committed.
    Committed(i32, i64),
}

/// The source thread: polls, forwards chunks and assignment changes in
/// order, carries out seeks and committed positions, keeps the lag gauge.
/// The first chunk of a partition after an assignment or a seek is marked
/// `reset`: only that one may start past the router's position (records
/// gone from the source); any other gap is a stale chunk the router skips.
fn pump(
    mut source: Source,
    tx: mpsc::SyncSender<Pumped>,
    commands: mpsc::Receiver<PumpCommand>,
    stop: &AtomicBool,
    status: &Status,
) {
    let mut reset: std::collections::HashSet<i32> = Default::default();
    let mut committed: HashMap<i32, i64> = HashMap::new();
    let mut last_lag = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                PumpCommand::Seek(p, pos) => {
                    source.seek(p, pos);
                    reset.insert(p);
                }
                PumpCommand::Committed(p, pos) => {
                    source.committed(p, pos);
                    committed.insert(p, pos);
                }
            }
        }
        let changes = source.take_assignment();
        if !changes.revoked.is_empty() || !changes.assigned.is_empty() {
            for p in &changes.revoked {
                committed.remove(p);
                status.lag.lock().unwrap().remove(p);
            }
            for (p, pos) in &changes.assigned {
                reset.insert(*p);
                committed.insert(*p, *pos);
            }
            if tx.send(Pumped::Assignment(changes)).is_err() {
                break;
            }
        }
        let t0 = Instant::now();
        let mut chunks = source.poll(POLL_MAX, Duration::from_millis(100));
        let took = t0.elapsed();
        for c in &mut chunks {
            c.reset = reset.remove(&c.partition);
        }
        if !chunks.is_empty() && tx.send(Pumped::Chunks(chunks, took)).is_err() {
            break;
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
    if let Source::Kafka(k) = source {
        k.close();
    }
}

/// The router loop (see the module docs).
fn run(
    config: WriterConfig,
    source: Source,
    commits: Arc<Commits>,
    registry: Arc<Registry>,
    stop: &AtomicBool,
    status: &Arc<Status>,
) -> Result<()> {
    let (to_sink, sink_rx) = mpsc::sync_channel::<ToSink>(4);
    let (feedback_tx, feedback) = mpsc::channel::<FromSink>();
    let sink = Sink::new(commits.clone(), source.name(), config.limits, feedback_tx);
    let sink_thread = std::thread::Builder::new()
        .name("writer-sink".into())
        .spawn(move || sink.run(sink_rx))?;
    let (pumped_tx, pumped) = mpsc::sync_channel::<Pumped>(4);
    let (commands, commands_rx) = mpsc::channel::<PumpCommand>();
    let pump_stop = Arc::new(AtomicBool::new(false));
    let pump_thread = {
        let (stop, status) = (pump_stop.clone(), status.clone());
        std::thread::Builder::new()
            .name("writer-source".into())
            .spawn(move || pump(source, pumped_tx, commands_rx, &stop, &status))?
    };
    let mut router = Router::new(registry, config.plugin_wait, config.max_record_bytes);

    // Per assigned partition: the next position to route and its epoch.
    let mut next: HashMap<i32, (i64, u64)> = HashMap::new();
    let mut epochs = 0u64;
    let mut consume = Duration::ZERO;
    let mut last_times = Instant::now();
    let send = |msg: ToSink| {
        to_sink
            .send(msg)
            .map_err(|_| anyhow::anyhow!("the sink thread stopped"))
    };

    let result = (|| -> Result<()> {
        while !stop.load(Ordering::SeqCst) {
            while let Ok(msg) = feedback.try_recv() {
                match msg {
                    FromSink::Committed { partition, next } => {
                        let _ = commands.send(PumpCommand::Committed(partition, next));
                        status.committed.lock().unwrap().insert(partition, next);
                    }
                    FromSink::Fenced { partition, epoch } => {
                        if next.get(&partition).is_some_and(|(_, e)| *e == epoch) {
                            let pos = commits.recover(partition)?;
                            epochs += 1;
                            next.insert(partition, (pos, epochs));
                            let _ = commands.send(PumpCommand::Seek(partition, pos));
                            send(ToSink::Assign {
                                partition,
                                epoch: epochs,
                                start: pos,
                            })?;
                        }
                    }
                }
            }
            let chunks = match pumped.recv_timeout(Duration::from_millis(50)) {
                Ok(Pumped::Chunks(chunks, took)) => {
                    consume += took;
                    chunks
                }
                Ok(Pumped::Assignment(changes)) => {
                    for p in changes.revoked {
                        next.remove(&p);
                        send(ToSink::Drop { partition: p })?;
                    }
                    for (p, pos) in changes.assigned {
                        epochs += 1;
                        next.insert(p, (pos, epochs));
                        status.committed.lock().unwrap().insert(p, pos);
                        send(ToSink::Assign {
                            partition: p,
                            epoch: epochs,
                            start: pos,
                        })?;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the source thread stopped")
                }
            };
            for chunk in chunks {
                let Some(&(mut from, epoch)) = next.get(&chunk.partition) else {
                    continue; // not (or no longer) ours
                };
                let (Some(&first), Some(&last)) = (chunk.offsets.first(), chunk.offsets.last())
                else {
                    continue;
                };
                if last < from {
                    continue;
                }
                if first > from {
                    if !chunk.reset {
                        // Polled before a seek took effect: it will come again.
                        continue;
                    }
                    tracing::warn!(
                        partition = chunk.partition,
                        "records {from}..{first} are gone from the source (retention?); continuing at {first}"
                    );
                    from = first;
                }
                let tables = router.route(&chunk, from);
                next.insert(chunk.partition, (last + 1, epoch));
                status
                    .routed
                    .lock()
                    .unwrap()
                    .insert(chunk.partition, last + 1);
                send(ToSink::Chunk {
                    partition: chunk.partition,
                    epoch,
                    next: last + 1,
                    tables,
                })?;
            }
            if last_times.elapsed() >= Duration::from_secs(1) {
                last_times = Instant::now();
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
    let sink_times = sink_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the sink thread panicked"))?;
    while let Ok(msg) = feedback.try_recv() {
        if let FromSink::Committed { partition, next } = msg {
            let _ = commands.send(PumpCommand::Committed(partition, next));
            status.committed.lock().unwrap().insert(partition, next);
        }
    }
    pump_stop.store(true, Ordering::SeqCst);
    drop(pumped);
    pump_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the source thread panicked"))?;
    let mut times = status.times.lock().unwrap();
    times.consume = consume;
    times.route = router.times;
    times.sink = sink_times;
    drop(times);
    tracing::info!("writer stopped");
    result
}
