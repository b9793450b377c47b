//! Writer throughput and freshness.
//!
//! `cargo bench -p eventsift --bench writer -- throughput [--events N] [--runs R] [--hdfs URL] [--with-delta]`
//! pre-fills a 4-partition topic with the seed's mix of event envelopes
//! (reused when it already holds them), then runs the writer (bundled Wasm
//! plugins) from start to last commit, to a local folder and, with `--hdfs`,
//! to HDFS. Prints events/s, MB/s and where the time went.
//!
//! With `--with-delta`, each local run is followed by one into a Delta
//! warehouse (`--table-format delta`), interleaved.
//!
//! With `--with-dedup`, each run is followed by one on a second topic whose
//! events carry client-named (derived, UUIDv8) ids, as `/v1/batch` events
//! with an `event_id` do, one in 20 of them a retry of the one before: the
//! writer's deduplication at work, interleaved with the plain runs, and
//! one on the same topic with the window off (what the mechanism costs,
//! apart from what random client ids cost Parquet).
//!
//! `cargo bench -p eventsift --bench writer -- dedup [--ids N]` fills one
//! partition's deduplication window with N ids and reports its memory
//! (allocated capacity and this process's RSS growth) and insert cost.
//!
//! `cargo bench -p eventsift --bench writer -- freshness [--trigger 10s] [--seconds S]`
//! runs `serve` on the embedded default, sends one event every 100 ms and
//! measures the time from each HTTP 200 to the row being readable from the
//! warehouse (a reader listing and reading committed files every 20 ms).
//!
//! `cargo bench -p eventsift --bench writer -- memory [--gib 2] [--record-kib 100] [--buffer-mib 256]`
//! fills an embedded log with a backlog of large sword events (hex
//! padding, so they compress about as badly as real text), then runs the
//! writer on it and reports this process's peak RSS (VmHWM, reset before
//! the writer starts) against the configured buffer.
//!
//! `cargo bench -p eventsift --bench writer -- lake [--files 8640] [--rows 200] [--log-retention-secs S]`
//! commits `--files` ranges of one source partition, one small sword file
//! each (what a day of 10 s commits makes per partition and table), with
//! the commit protocol on a Hive and on a Delta warehouse (local disk),
//! and reports each commit's latency; then compacts the Delta table and
//! reports files, bytes and time before and after, the rows a reader
//! counts, and the latency of a tenth as many commits after compaction.
//! The bench makes a day's commits in minutes: `--log-retention-secs`
//! (the Delta tables' log retention, default two hours) lets it see what a
//! retention shorter than the run does to commit latency.
//!
//! `cargo bench -p eventsift --bench writer -- prefill [--events N] [--topic T]`
//! fills a 4-partition topic with N of the seed's envelopes (kept when it
//! already holds N): bench/classic/run.sh drains it with both stacks.
//!
//! Needs a broker for `throughput` and `prefill` (`cargo xtask kafka start`;
//! `EVENTSIFT_BENCH_KAFKA`, default 127.0.0.1:9092).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use eventsift::config::Config;
use eventsift::plugin::{Registry, Runtime, RuntimeConfig};
use eventsift::writer::sink::SinkLimits;
use eventsift::writer::source::KafkaSourceConfig;
use eventsift::writer::warehouse::Warehouse;
use eventsift::writer::{Input, Writer, WriterConfig};
use eventsift_test_artifacts as artifacts;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.iter().any(|a| a == "freshness") {
        let trigger = arg("--trigger")
            .map(|t| humantime::parse_duration(&t).unwrap())
            .unwrap_or(Duration::from_secs(10));
        let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(30);
        freshness(trigger, Duration::from_secs(seconds));
    } else if args.iter().any(|a| a == "memory") {
        let gib: f64 = arg("--gib").and_then(|s| s.parse().ok()).unwrap_or(2.0);
        let kib: usize = arg("--record-kib")
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        let buffer: usize = arg("--buffer-mib")
            .and_then(|s| s.parse().ok())
            .unwrap_or(256);
        memory(gib, kib, buffer);
    } else if args.iter().any(|a| a == "lake") {
        let files: usize = arg("--files").and_then(|s| s.parse().ok()).unwrap_or(8640);
        let rows: usize = arg("--rows").and_then(|s| s.parse().ok()).unwrap_or(200);
        let retention = arg("--log-retention-secs")
            .and_then(|s| s.parse().ok())
            .map_or(
                eventsift::writer::delta::DEFAULT_LOG_RETENTION,
                Duration::from_secs,
            );
        lake(files, rows, retention);
    } else if args.iter().any(|a| a == "dedup") {
        let ids: usize = arg("--ids")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000_000);
        dedup_memory(ids);
    } else if args.iter().any(|a| a == "throughput") {
        let with_dedup = args.iter().any(|a| a == "--with-dedup");
        let events: usize = arg("--events")
            .and_then(|s| s.parse().ok())
            .unwrap_or(2_000_000);
        let runs: usize = arg("--runs").and_then(|s| s.parse().ok()).unwrap_or(3);
        let with_delta = args.iter().any(|a| a == "--with-delta");
        throughput(events, runs, arg("--hdfs"), with_dedup, with_delta);
    } else if args.iter().any(|a| a == "prefill") {
        let brokers = std::env::var("EVENTSIFT_BENCH_KAFKA").unwrap_or("127.0.0.1:9092".into());
        let events: usize = arg("--events")
            .and_then(|s| s.parse().ok())
            .unwrap_or(500_000);
        let topic = arg("--topic").unwrap_or_else(|| format!("eventsift-bench-seedmix-{events}"));
        prefill(&brokers, &topic, events, false);
    } else {
        eprintln!(
            "usage: writer -- throughput|freshness|memory|lake|dedup|prefill [options] (see the file's docs)"
        );
    }
}

fn plugins() -> (tempfile::TempDir, Arc<Registry>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, path) in artifacts::BUNDLED {
        std::fs::copy(path, dir.path().join(name)).unwrap();
    }
    let past = SystemTime::now() - Duration::from_secs(5);
    for (name, _) in artifacts::BUNDLED {
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join(name))
            .unwrap();
        f.set_modified(past).unwrap();
    }
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let registry = Registry::new(runtime, dir.path());
    registry.sync();
    (dir, registry)
}

/// The `i`-th event of the seed's mix (generate_data.sh's proportions).
/// With `derived`, its id is client-named (a UUIDv8 from game, player and
/// a client id), and every 20th event repeats the one before's (a retry).
fn seed_event(i: usize, derived: bool) -> (String, String) {
    let k = i % 4210;
    let ts = humantime::format_rfc3339_micros(SystemTime::now());
    let id = if derived {
        let n = if i % 20 == 19 { i - 1 } else { i };
        eventsift::api::envelope::derived_event_id(
            Some("bench"),
            Some(&format!("user{}", n % 3 + 1)),
            &format!("e{n}"),
        )
    } else {
        uuid::Uuid::now_v7()
    };
    let (host, fields) = if k < 1610 {
        let (color, q) = [
            ("red", 2),
            ("red", 3),
            ("red", 1),
            ("blue", 1),
            ("blue", 2),
            ("green", 1),
        ][k % 6];
        (
            format!("user{}.comcast.com", k % 3 + 1),
            format!(
                r#""event_type":"purchase_sword","plugin_version":"0.1.0","timestamp":"{ts}","host":"user{}.comcast.com","user_agent":"ApacheBench/2.3","accept":"*/*","color":"{color}","quantity":{q}"#,
                k % 3 + 1
            ),
        )
    } else if k < 3910 {
        let size = ["small", "medium", "large"][k % 3];
        (
            format!("user{}.comcast.com", k % 3 + 1),
            format!(
                r#""event_type":"purchase_horse","plugin_version":"0.1.0","timestamp":"{ts}","host":"user{}.comcast.com","user_agent":"ApacheBench/2.3","accept":"*/*","speed":1.0,"size":"{size}","quantity":1"#,
                k % 3 + 1
            ),
        )
    } else {
        let action = if k % 3 == 0 { "leave" } else { "join" };
        (
            "user1.comcast.com".to_owned(),
            format!(
                r#""event_type":"guild","plugin_version":"0.1.0","timestamp":"{ts}","host":"user1.comcast.com","user_agent":"ApacheBench/2.3","accept":"*/*","action":"{action}""#
            ),
        )
    };
    (host, format!(r#"{{"event_id":"{id}",{fields}}}"#))
}

/// Records in `topic` (sum of high watermarks), 0 when it does not exist.
fn topic_size(brokers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return 0;
    };
    let Some(t) = md.topics().first() else {
        return 0;
    };
    if t.error().is_some() {
        return 0;
    }
    t.partitions()
        .iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .map(|(lo, hi)| hi - lo)
                .unwrap_or(0)
        })
        .sum()
}

fn prefill(brokers: &str, topic: &str, events: usize, derived: bool) -> u64 {
    if topic_size(brokers, topic) == events as i64 {
        println!("topic {topic} already holds {events} events");
        return 0;
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = rt.block_on(admin.delete_topics(&[topic], &AdminOptions::new()));
    std::thread::sleep(Duration::from_secs(2));
    for r in rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, 4, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap()
    {
        r.unwrap();
    }
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let t0 = Instant::now();
    let mut bytes = 0u64;
    for i in 0..events {
        let (key, payload) = seed_event(i, derived);
        // A retry keeps its original's key (player): same partition.
        let key = if derived && i % 20 == 19 {
            seed_event(i - 1, true).0
        } else {
            key
        };
        bytes += payload.len() as u64;
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    println!(
        "pre-filled {topic} with {events} events ({:.0} MB) in {:.1} s",
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    bytes
}

/// Rows in a warehouse's tables (rejected_events included), from the
/// Parquet footers.
fn count_rows(warehouse: &str) -> usize {
    let wh = Warehouse::open(warehouse).unwrap();
    let mut rows = 0usize;
    for (path, _) in wh.walk("").unwrap() {
        if path
            .split('/')
            .any(|c| c.starts_with('_') || c.starts_with('.'))
        {
            continue;
        }
        let data = bytes::Bytes::from(wh.read(&path).unwrap());
        use parquet::file::reader::FileReader;
        let reader = parquet::file::reader::SerializedFileReader::new(data).unwrap();
        rows += reader.metadata().file_metadata().num_rows() as usize;
    }
    rows
}

/// One partition's window filled with `ids` ids: memory and insert cost.
fn dedup_memory(ids: usize) {
    use eventsift::writer::dedup::{DedupLimits, Window};
    let limits = DedupLimits {
        max_ids: ids,
        max_bytes: usize::MAX,
        ..DedupLimits::default()
    };
    let rss0 = proc_mib("VmRSS:");
    let t0 = Instant::now();
    let mut w = Window::new(&limits);
    let start = 1_800_000_000_000_000i64;
    for i in 0..ids {
        let id = eventsift::api::envelope::derived_event_id(Some("g"), Some("u"), &i.to_string());
        w.seen(id.as_u128(), start + i as i64, i as i64);
    }
    let fill = t0.elapsed();
    let rss1 = proc_mib("VmRSS:");
    // Lookups of ids it holds (the duplicate path) and of new ones.
    let probe: Vec<u128> = (0..100_000)
        .map(|i| {
            eventsift::api::envelope::derived_event_id(Some("g"), Some("u"), &(i * 7).to_string())
                .as_u128()
        })
        .collect();
    let t1 = Instant::now();
    let hits = probe
        .iter()
        .filter(|id| w.seen(**id, start + ids as i64, ids as i64))
        .count();
    let probe_ns = t1.elapsed().as_nanos() as f64 / probe.len() as f64;
    // Steady state: the window full, each new id evicts the oldest (ids
    // made beforehand, so that only the window is timed).
    let fresh: Vec<u128> = (0..ids)
        .map(|i| {
            eventsift::api::envelope::derived_event_id(Some("g"), Some("v"), &i.to_string())
                .as_u128()
        })
        .collect();
    let t2 = Instant::now();
    for (i, id) in fresh.iter().enumerate() {
        w.seen(*id, start + (ids + i) as i64, (ids + i) as i64);
    }
    let steady_ns = t2.elapsed().as_nanos() as f64 / fresh.len() as f64;
    let snap_t = Instant::now();
    let snapshot = w.snapshot(i64::MAX);
    let snap = snap_t.elapsed();
    println!(
        "dedup window: {} ids: {:.1} MiB allocated ({:.1} bytes/id), RSS +{:.1} MiB; \
         filled in {:.2} s ({:.0} ns/id incl. SHA-256 of the id), {:.0} ns per lookup ({hits} hits); \
         full: {:.0} ns per new id (insert and evict); snapshot {:.1} MiB in {:.0} ms",
        w.len(),
        w.memory_bytes() as f64 / (1 << 20) as f64,
        w.memory_bytes() as f64 / w.len() as f64,
        rss1 - rss0,
        fill.as_secs_f64(),
        fill.as_nanos() as f64 / ids as f64,
        probe_ns,
        steady_ns,
        snapshot.len() as f64 / (1 << 20) as f64,
        snap.as_secs_f64() * 1000.0
    );
}

fn throughput(
    events: usize,
    runs: usize,
    hdfs: Option<String>,
    with_dedup: bool,
    with_delta: bool,
) {
    let brokers =
        std::env::var("EVENTSIFT_BENCH_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let plain_topic = format!("eventsift-bench-seedmix-{events}");
    let dedup_topic = format!("eventsift-bench-seedmix-derived-{events}");
    prefill(&brokers, &plain_topic, events, false);
    if with_dedup {
        prefill(&brokers, &dedup_topic, events, true);
    }
    // Bytes of the events, for MB/s (the generator is deterministic in size).
    let bytes: usize = (0..4210)
        .map(|i| seed_event(i, false).1.len())
        .sum::<usize>()
        * events
        / 4210;
    let (_dir, registry) = plugins();

    // (warehouse, derived ids, deduplication on, Delta, its temporary folder)
    let mut targets: Vec<(String, bool, bool, bool, Option<tempfile::TempDir>)> = Vec::new();
    for _ in 0..runs {
        for (derived, dedup, delta) in [
            (false, true, false),
            (false, true, true),
            (true, true, false),
            (true, false, false),
        ] {
            if derived && !with_dedup || delta && !with_delta {
                continue;
            }
            let d = tempfile::tempdir().unwrap();
            targets.push((
                d.path().to_str().unwrap().to_owned(),
                derived,
                dedup,
                delta,
                Some(d),
            ));
        }
    }
    if let Some(url) = &hdfs {
        for r in 0..runs {
            targets.push((
                format!("{url}/bench-{}-{r}", std::process::id()),
                false,
                true,
                false,
                None,
            ));
        }
    }
    let mut results: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut halves: HashMap<&str, Vec<f64>> = HashMap::new();
    for (i, (warehouse, derived, dedup, delta, _keep)) in targets.iter().enumerate() {
        let kind = match (warehouse.starts_with("hdfs://"), derived, dedup) {
            (true, ..) => "hdfs",
            (false, false, _) if *delta => "local delta",
            (false, false, _) => "local",
            (false, true, true) => "local+dedup",
            (false, true, false) => "local, client ids, dedup off",
        };
        let topic = if *derived { &dedup_topic } else { &plain_topic };
        let group = format!("bench-{}-{i}", std::process::id());
        let t0 = Instant::now();
        let writer = Writer::start(
            WriterConfig {
                warehouse: warehouse.clone(),
                table_format: if *delta {
                    eventsift::writer::delta::TableFormat::Delta
                } else {
                    eventsift::writer::delta::TableFormat::Hive
                },
                limits: SinkLimits {
                    flush_interval: Duration::from_secs(10),
                    max_file_rows: 1_000_000,
                    max_buffer_bytes: 256 << 20,
                },
                plugin_wait: Duration::from_secs(30),
                max_record_bytes: 1 << 21,
                // Off: the same events without the window, for its cost.
                dedup: if *dedup {
                    Default::default()
                } else {
                    eventsift::writer::dedup::DedupLimits {
                        window: Duration::ZERO,
                        ..Default::default()
                    }
                },
                ..WriterConfig::default()
            },
            Input::Kafka(KafkaSourceConfig {
                brokers: brokers.clone(),
                topic: topic.to_string(),
                group,
                options: Default::default(),
                assign: None,
            }),
            registry.clone(),
        )
        .unwrap();
        let status = writer.status.clone();
        // The second half's rate too: by then every window is warm (its
        // table's pages touched), as in a writer that has run for a while.
        let mut half_at = None;
        loop {
            let routed: i64 = status.routed.lock().unwrap().values().sum();
            if half_at.is_none() && routed >= events as i64 / 2 {
                half_at = Some((t0.elapsed().as_secs_f64(), routed));
            }
            if routed >= events as i64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let routed_at = t0.elapsed().as_secs_f64();
        let (h_at, h_routed) = half_at.unwrap_or((0.0, 0));
        let second_half = (events as i64 - h_routed) as f64 / (routed_at - h_at).max(1e-9);
        halves.entry(kind).or_default().push(second_half);
        writer.stop().unwrap();
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "  (all routed after {routed_at:.2} s; final commit and close took {:.2} s)",
            secs - routed_at
        );
        let committed: i64 = status.committed.lock().unwrap().values().sum();
        assert_eq!(committed, events as i64);
        if *derived {
            let rows = count_rows(warehouse);
            let expect = if *dedup { events - events / 20 } else { events };
            assert_eq!(rows, expect, "a retry was stored, or an event dropped");
        }
        let t = *status.times.lock().unwrap();
        println!(
            "{kind:5} run {i}: {events} events in {secs:.2} s = {:.0} events/s, {:.1} MB/s \
             | source thread: poll {:.2} s | router thread: decode+route {:.2} s, dedup {:.2} s, plugins {:.2} s, arrow {:.2} s \
             | sink thread: parquet encode {:.2} s, files+commit I/O {:.2} s",
            events as f64 / secs,
            bytes as f64 / 1e6 / secs,
            t.consume.as_secs_f64(),
            t.route.decode.as_secs_f64(),
            t.route.dedup.as_secs_f64(),
            t.route.plugins.as_secs_f64(),
            t.route.arrow.as_secs_f64(),
            t.sink.encode.as_secs_f64(),
            t.sink.commit.as_secs_f64(),
        );
        results.entry(kind).or_default().push(events as f64 / secs);
    }
    for (kind, mut v) in halves {
        v.sort_by(f64::total_cmp);
        println!(
            "{kind}: routing rate of the second half, median {:.0} events/s (min {:.0}, max {:.0})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
    for (kind, mut v) in results {
        v.sort_by(f64::total_cmp);
        println!(
            "{kind}: median {:.0} events/s over {} runs (min {:.0}, max {:.0})",
            v[v.len() / 2],
            v.len(),
            v[0],
            v[v.len() - 1]
        );
    }
}

fn freshness(trigger: Duration, duration: Duration) {
    let (plugins, _registry) = plugins();
    let data = tempfile::tempdir().unwrap();
    let wh_dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        plugins: plugins.path().to_path_buf(),
        data_dir: data.path().to_path_buf(),
        warehouse: wh_dir.path().to_str().unwrap().to_owned(),
        flush_interval: trigger,
        ..Config::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let serve = rt
        .block_on(eventsift::daemon::Serve::start(&config))
        .unwrap();
    let base = format!("http://{}", serve.api.addr);
    let wh = Warehouse::open(&config.warehouse).unwrap();

    // The reader: records when each event id first becomes visible.
    let seen: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut read: HashSet<String> = HashSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (path, _) in wh.walk("sword_purchases").unwrap() {
                    if path
                        .split('/')
                        .any(|c| c.starts_with('_') || c.starts_with('.'))
                        || !read.insert(path.clone())
                    {
                        continue;
                    }
                    let now = Instant::now();
                    let data = bytes::Bytes::from(wh.read(&path).unwrap());
                    let reader =
                        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                            data,
                        )
                        .unwrap()
                        .build()
                        .unwrap();
                    let mut seen = seen.lock().unwrap();
                    for b in reader {
                        let b = b.unwrap();
                        let ids = b.column_by_name("event_id").unwrap().as_string::<i32>();
                        for i in 0..ids.len() {
                            seen.entry(ids.value(i).to_owned()).or_insert(now);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let http = reqwest::Client::new();
    let mut sent: Vec<(String, Instant)> = Vec::new();
    rt.block_on(async {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            let resp = http
                .post(format!("{base}/purchase_a_sword/red/1"))
                .header("Host", "user1.comcast.com")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let id = resp.headers()["x-event-id"].to_str().unwrap().to_owned();
            sent.push((id, Instant::now()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let deadline = Instant::now() + trigger * 3;
    while Instant::now() < deadline && seen.lock().unwrap().len() < sent.len() {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
    let seen = seen.lock().unwrap();
    let mut lat: Vec<f64> = sent
        .iter()
        .map(|(id, at)| {
            seen.get(id)
                .map(|v| v.duration_since(*at).as_secs_f64())
                .unwrap_or(f64::INFINITY)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    println!(
        "freshness with a {} trigger: {} events, 200 -> readable: median {:.2} s, p95 {:.2} s, max {:.2} s",
        humantime::format_duration(trigger),
        lat.len(),
        q(0.5),
        q(0.95),
        lat[lat.len() - 1]
    );
    rt.block_on(serve.stop()).unwrap();
}

/// A `VmHWM`/`VmRSS` line of /proc/self/status, in MiB.
fn proc_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn memory(gib: f64, record_kib: usize, buffer_mib: usize) {
    use eventsift::transport::embedded::EmbeddedLog;
    let (_plugins, registry) = plugins();
    let data = tempfile::tempdir().unwrap();
    let wh = tempfile::tempdir().unwrap();
    let records = ((gib * (1u64 << 30) as f64) / (record_kib << 10) as f64) as usize;
    let log_dir = data.path().join("log");
    {
        let log = EmbeddedLog::open(&log_dir).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let t0 = Instant::now();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut made = 0;
        while made < records {
            let batch: Vec<Vec<u8>> = (made..(made + 64).min(records))
                .map(|_| {
                    let mut pad = String::with_capacity(record_kib << 10);
                    while pad.len() < record_kib << 10 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        pad.push_str(&format!("{x:016x}"));
                    }
                    let ts = humantime::format_rfc3339_micros(SystemTime::now());
                    format!(
                        r#"{{"event_id":"{}","event_type":"purchase_sword","plugin_version":"0.1.0","timestamp":"{ts}","host":"h","user_agent":null,"accept":null,"color":"red","quantity":1,"padding":"{pad}"}}"#,
                        uuid::Uuid::now_v7()
                    )
                    .into_bytes()
                })
                .collect();
            made += batch.len();
            rt.block_on(futures::future::join_all(
                batch.iter().map(|r| log.append(b"h", r)),
            ))
            .into_iter()
            .for_each(|r| {
                r.unwrap();
            });
        }
        println!(
            "backlog: {records} records of {record_kib} KiB ({:.2} GiB) in the embedded log, written in {:.0} s",
            (records * (record_kib << 10)) as f64 / (1u64 << 30) as f64,
            t0.elapsed().as_secs_f64()
        );
    }
    let log = EmbeddedLog::open(&log_dir).unwrap();
    let end = log.end_offset() as i64;
    // Peak RSS from here on.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = proc_mib("VmRSS:");
    let t0 = Instant::now();
    let writer = Writer::start(
        WriterConfig {
            warehouse: wh.path().to_str().unwrap().to_owned(),
            limits: SinkLimits {
                flush_interval: Duration::from_secs(10),
                max_file_rows: 1_000_000,
                max_buffer_bytes: buffer_mib << 20,
            },
            ..WriterConfig::default()
        },
        Input::Embedded(log),
        registry,
    )
    .unwrap();
    let status = writer.status.clone();
    let mut peak_seen: f64 = 0.0;
    loop {
        peak_seen = peak_seen.max(proc_mib("VmRSS:"));
        if status
            .committed
            .lock()
            .unwrap()
            .get(&0)
            .copied()
            .unwrap_or(0)
            >= end
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = t0.elapsed().as_secs_f64();
    writer.stop().unwrap();
    let peak = proc_mib("VmHWM:");
    println!(
        "drained in {secs:.1} s ({:.0} MB/s); RSS before the writer {before:.0} MiB, peak {peak:.0} MiB \
         (sampled {peak_seen:.0} MiB): {:.0} MiB above the start, with a {buffer_mib} MiB buffer \
         cap = buffer + {:.0} MiB",
        (records * (record_kib << 10)) as f64 / 1e6 / secs,
        peak - before,
        peak - before - buffer_mib as f64
    );
}

/// One sword file of `rows` rows (the table's real schema), as the sink
/// makes it.
fn sword_file(schema: &arrow_schema::SchemaRef, rows: usize, offset: i64) -> bytes::Bytes {
    use arrow_array::{
        ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    let schema = schema.clone();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match (f.name().as_str(), f.data_type()) {
                ("event_id", _) => Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|_| uuid::Uuid::now_v7().to_string()),
                )),
                ("source_offset", _) => Arc::new(Int64Array::from_iter_values(
                    (0..rows as i64).map(|i| offset + i),
                )),
                ("source_partition", _) => Arc::new(Int32Array::from(vec![0; rows])),
                (_, arrow_schema::DataType::Timestamp(..)) => {
                    Arc::new(TimestampMicrosecondArray::from(vec![now; rows]).with_timezone("UTC"))
                }
                (_, arrow_schema::DataType::Int64) => Arc::new(Int64Array::from_iter_values(
                    (0..rows as i64).map(|i| i % 5),
                )),
                (n, _) => Arc::new(StringArray::from_iter_values((0..rows).map(|i| match n {
                    "event_type" => "purchase_sword".to_owned(),
                    "host" => format!("user{}.comcast.com", i % 3 + 1),
                    "color" => ["red", "blue", "green"][i % 3].to_owned(),
                    "raw_event" => format!("{{\"event_type\":\"purchase_sword\",\"n\":{i}}}"),
                    _ => "x".to_owned(),
                }))),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, None).unwrap();
    w.write(&batch).unwrap();
    bytes::Bytes::from(w.into_inner().unwrap())
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn lake(files: usize, rows: usize, retention: Duration) {
    use eventsift::writer::commit::{Commits, PendingFile, SourceView, TakeOptions};
    use eventsift::writer::delta::{DeltaTables, TableFormat, settle_format};
    let day = eventsift::writer::table::date_string(eventsift::writer::table::day_of(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64,
    ));
    let (_plugins, registry) = plugins();
    let schema =
        eventsift::writer::table::table_schema(&registry.get("purchase_sword").unwrap().meta);
    let data = sword_file(&schema, rows, 0);
    println!(
        "{files} commits of one {rows}-row sword file ({} bytes) each, one source partition",
        data.len()
    );
    for format in [TableFormat::Hive, TableFormat::Delta] {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().to_str().unwrap().to_owned();
        let wh = Arc::new(Warehouse::open(&location).unwrap());
        settle_format(&wh, format).unwrap();
        let mut commits = Commits::new(wh.clone(), "bench", "bench-writer", 64);
        if format == TableFormat::Delta {
            commits = commits.with_delta(Arc::new(
                DeltaTables::open(&location, Duration::from_secs(30))
                    .unwrap()
                    .with_log_retention(retention),
            ));
        }
        let view = SourceView {
            id: "log:bench".into(),
            earliest: 0,
            end: ((files + files / 10 + 1) * rows) as i64,
        };
        commits.take(0, &view, &TakeOptions::default()).unwrap();
        // Commits the `i`th range; its latency in ms.
        let commit_range = |i: usize| {
            let start = (i * rows) as i64;
            let file = PendingFile {
                table: "sword_purchases".into(),
                path: format!("sword_purchases/dt={day}/bench-0-{start:020}-0.parquet"),
                rows: rows as u64,
                data: sword_file(&schema, rows, start),
            };
            let t = Instant::now();
            commits
                .commit(0, start, start + rows as i64, &[file], &|| false)
                .unwrap();
            t.elapsed().as_secs_f64() * 1e3
        };
        let t0 = Instant::now();
        let mut latencies: Vec<f64> = (0..files).map(commit_range).collect();
        let total = t0.elapsed().as_secs_f64();
        // The latency of the day's first and last tenth of commits: a
        // Delta commit reads the table's live files (delta-rs materialises
        // them on every snapshot update), so it grows with them.
        let tenth = (files / 10).max(1);
        let (first, last) = (
            median(&latencies[..tenth.min(files)]),
            median(&latencies[files.saturating_sub(tenth)..]),
        );
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
        println!(
            "{:5}: {files} commits in {total:.1} s; latency median {:.2} ms, p95 {:.2} ms, max {:.2} ms; \
             median of the first {tenth} {first:.2} ms, of the last {tenth} {last:.2} ms",
            format.as_str(),
            pct(0.5),
            pct(0.95),
            pct(1.0)
        );
        if format == TableFormat::Delta {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let count = |label: &str| {
                let t = Instant::now();
                let (n, opened, counted) = rt.block_on(async {
                    let q = eventsift::query::Warehouse::open(&location).await.unwrap();
                    let opened = t.elapsed().as_secs_f64();
                    let n = q.row_count("sword_purchases").await.unwrap();
                    let counted = t.elapsed().as_secs_f64();
                    q.sql(
                        "SELECT color, COUNT(DISTINCT event_id), SUM(quantity) \
                         FROM sword_purchases GROUP BY 1",
                    )
                    .await
                    .unwrap();
                    (n, opened, counted)
                });
                println!(
                    "  {label}: open {opened:.2} s, COUNT(*) of {n} rows {:.2} s, a scan \
                     (distinct ids and sums by color) {:.2} s",
                    counted - opened,
                    t.elapsed().as_secs_f64() - counted
                );
                assert_eq!(n as usize, files * rows);
            };
            count("before compaction");
            let t = Instant::now();
            let reports = rt
                .block_on(eventsift::lake::compact(
                    &location,
                    &eventsift::lake::CompactOptions {
                        table: None,
                        older_than: Duration::ZERO,
                        target_size: 128 << 20,
                    },
                ))
                .unwrap();
            let took = t.elapsed().as_secs_f64();
            for r in &reports {
                println!(
                    "compact {}: {} files ({:.1} MiB) -> {} files ({:.1} MiB) in {took:.1} s",
                    r.table,
                    r.files_before,
                    r.bytes_before as f64 / 1048576.0,
                    r.files_after,
                    r.bytes_after as f64 / 1048576.0
                );
            }
            count("after compaction");
            // Commits after compaction: what an hourly `eventsift compact`
            // keeps them at.
            let more = tenth;
            let after: Vec<f64> = (files..files + more).map(commit_range).collect();
            println!(
                "  {more} commits after compaction: latency median {:.2} ms",
                median(&after)
            );
        }
    }
}
