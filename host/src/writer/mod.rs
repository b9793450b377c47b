//! The stream writer: events -> plugins -> Arrow -> Parquet tables, exactly
//! once.
//!
//! Two threads. The **router** thread polls the [`source`] (Kafka or the
//! embedded log), keeps each partition's position, and turns records into
//! table batches ([`router`]). The **sink** thread encodes them into Parquet
//! and commits them ([`sink`], [`commit`]) to the [`warehouse`]. The
//! positions a writer resumes from are the warehouse's commit records.

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

/// The router loop (see the module docs).
fn run(
    config: WriterConfig,
    mut source: Source,
    commits: Arc<Commits>,
    registry: Arc<Registry>,
    stop: &AtomicBool,
    status: &Status,
) -> Result<()> {
    let (to_sink, sink_rx) = mpsc::sync_channel::<ToSink>(4);
    let (feedback_tx, feedback) = mpsc::channel::<FromSink>();
    let sink = Sink::new(commits.clone(), source.name(), config.limits, feedback_tx);
    let sink_thread = std::thread::Builder::new()
        .name("writer-sink".into())
        .spawn(move || sink.run(sink_rx))?;
    let mut router = Router::new(registry, config.plugin_wait, config.max_record_bytes);

    // Per assigned partition: the next position to route and its epoch.
    let mut next: HashMap<i32, (i64, u64)> = HashMap::new();
    let mut epochs = 0u64;
    let mut consume = Duration::ZERO;
    let mut last_lag = Instant::now();
    let send = |msg: ToSink| {
        to_sink
            .send(msg)
            .map_err(|_| anyhow::anyhow!("the sink thread stopped"))
    };

    while !stop.load(Ordering::SeqCst) {
        while let Ok(msg) = feedback.try_recv() {
            match msg {
                FromSink::Committed { partition, next } => {
                    source.committed(partition, next);
                    status.committed.lock().unwrap().insert(partition, next);
                }
                FromSink::Fenced { partition, epoch } => {
                    if next.get(&partition).is_some_and(|(_, e)| *e == epoch) {
                        let pos = commits.recover(partition)?;
                        epochs += 1;
                        next.insert(partition, (pos, epochs));
                        source.seek(partition, pos);
                        send(ToSink::Assign {
                            partition,
                            epoch: epochs,
                            start: pos,
                        })?;
                    }
                }
            }
        }
        let changes = source.take_assignment();
        for p in changes.revoked {
            next.remove(&p);
            status.lag.lock().unwrap().remove(&p);
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

        let t0 = Instant::now();
        let chunks = source.poll(POLL_MAX, Duration::from_millis(100));
        consume += t0.elapsed();
        for chunk in chunks {
            let Some(&(from, epoch)) = next.get(&chunk.partition) else {
                continue; // not (or no longer) ours
            };
            let Some(&last) = chunk.offsets.last() else {
                continue;
            };
            if last < from {
                continue;
            }
            if let Some(&first) = chunk.offsets.first()
                && first > from
            {
                tracing::warn!(
                    partition = chunk.partition,
                    "records {from}..{first} are gone from the source (retention?); continuing at {first}"
                );
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

        if last_lag.elapsed() >= Duration::from_secs(1) {
            last_lag = Instant::now();
            let committed = status.committed.lock().unwrap().clone();
            let mut lag = status.lag.lock().unwrap();
            for (&p, &pos) in &committed {
                if next.contains_key(&p)
                    && let Some(l) = source.lag(p, pos)
                {
                    lag.insert(p, l);
                    ::metrics::gauge!(metrics::LAG, "partition" => p.to_string()).set(l as f64);
                }
            }
            let mut times = status.times.lock().unwrap();
            times.consume = consume;
            times.route = router.times;
        }
    }

    tracing::info!("writer stopping: final commit");
    let _ = to_sink.send(ToSink::Stop);
    drop(to_sink);
    let sink_times = sink_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the sink thread panicked"))?;
    while let Ok(msg) = feedback.try_recv() {
        if let FromSink::Committed { partition, next } = msg {
            source.committed(partition, next);
            status.committed.lock().unwrap().insert(partition, next);
        }
    }
    let mut times = status.times.lock().unwrap();
    times.consume = consume;
    times.route = router.times;
    times.sink = sink_times;
    drop(times);
    if let Source::Kafka(k) = source {
        k.close();
    }
    tracing::info!("writer stopped");
    Ok(())
}
