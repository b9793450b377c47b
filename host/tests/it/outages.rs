//! Outages a deployment lives through, each during load, with the real
//! binary on a private Kafka broker and a private MiniDFSCluster: HDFS
//! stopped for 30 s (the writer resumes by itself, its failed commits
//! counted and the age of its last commit exported), HDFS hung for 30 s
//! (SIGSTOP: connections accepted, nothing answered) with a SIGTERM in the
//! middle (it exits within 30 s; what was not committed is read again after
//! the restart), and the broker restarted. Nothing lost, nothing doubled.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsift::writer::warehouse::Warehouse;
use eventsift_services::{PrivateHdfs, PrivateKafka};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::writer::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Produces `n` swords in batches of 500 every `pace`; records the ids the
/// broker acknowledged (a batch whose delivery failed is sent again).
fn produce(
    bootstrap: String,
    topic: String,
    n: usize,
    pace: Duration,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    let mut sent = 0;
    while sent < n {
        let batch: Vec<(String, String, String)> = (sent..(sent + 500).min(n))
            .map(|i| {
                let id = uuid::Uuid::now_v7().to_string();
                let host = format!("user{}", i % 97);
                let env = sword_envelope(&id, &host, "red", (i % 5) as i64);
                (id, host, env)
            })
            .collect();
        let ok = block(async {
            let sends = batch.iter().map(|(_, host, env)| {
                p.send(
                    FutureRecord::to(&topic).key(host).payload(env),
                    Duration::from_secs(60),
                )
            });
            futures::future::join_all(sends).await
        });
        let mut a = acked.lock().unwrap();
        for ((id, _, _), r) in batch.iter().zip(ok) {
            if r.is_ok() {
                a.push(id.clone());
            }
        }
        sent += batch.len();
        drop(a);
        std::thread::sleep(pace);
    }
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn hdfs_stopped_hdfs_hung_and_the_broker_restarted_during_load_lose_and_double_nothing() {
    let state = tempfile::tempdir().unwrap();
    let mut kafka = PrivateKafka::start(root(), &state.path().join("kafka")).unwrap();
    let mut hdfs = PrivateHdfs::start(root(), &state.path().join("hdfs")).unwrap();
    let bootstrap = kafka.bootstrap();
    let topic = "events".to_owned();
    create_topic_on(&bootstrap, &topic, 2);
    let warehouse = format!("{}/wh", hdfs.url());
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "writer",
        "--listen",
        "127.0.0.1:0",
        "--kafka",
        &bootstrap,
        "--topic",
        &topic,
        "--group",
        "outages",
        "--warehouse",
        &warehouse,
        "--plugins",
        s(plugins.path()),
        "--data-dir",
        s(data.path()),
        "--flush-interval",
        "500ms",
        "--warehouse-timeout",
        "5s",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let producer = {
        let (b, t, a) = (bootstrap.clone(), topic.clone(), acked.clone());
        std::thread::spawn(move || produce(b, t, 60_000, Duration::from_millis(500), a))
    };
    let mut w = Proc::start(&args, &[]);
    let wh = Warehouse::open(&warehouse).unwrap();
    wait_for("the first commits", Duration::from_secs(60), || {
        w.metric("eventsift_writer_commits_total") >= 2.0
    });

    // 1. HDFS stopped for 30 s: commits fail and are counted, the age of
    //    the last commit grows, and the writer resumes by itself.
    hdfs.stop();
    wait_for(
        "failed commits to be counted",
        Duration::from_secs(30),
        || w.metric("eventsift_writer_commit_failures_total") >= 1.0,
    );
    std::thread::sleep(Duration::from_secs(25));
    let age = w.metric("eventsift_writer_last_commit_age_seconds");
    assert!(age >= 20.0, "age of the last commit {age}");
    hdfs.restart().unwrap();
    wait_for(
        "the writer to resume after HDFS came back",
        Duration::from_secs(120),
        || w.metric("eventsift_writer_last_commit_age_seconds") < 5.0,
    );
    assert!(w.wait(Duration::ZERO).is_none(), "the writer kept running");

    // 2. HDFS hung for 30 s, and SIGTERM meanwhile: out within 30 s.
    hdfs.freeze();
    std::thread::sleep(Duration::from_secs(5));
    let t0 = Instant::now();
    let status = w.term();
    let took = t0.elapsed();
    eprintln!("SIGTERM while HDFS hung: exit after {took:?}");
    assert!(
        took <= Duration::from_secs(30),
        "exit took {took:?}:\n{}",
        w.logs()
    );
    assert!(status.success(), "{status}:\n{}", w.logs());
    std::thread::sleep(Duration::from_secs(25));
    hdfs.thaw();
    let mut w = Proc::start(&args, &[]);

    // 3. The broker restarted under the producer and the writer.
    std::thread::sleep(Duration::from_secs(5));
    kafka.restart().unwrap();

    producer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 59_000,
        "the producer got {} acks",
        acked.len()
    );
    let t = wait_tables_of(
        &wh,
        "every acknowledged event",
        Duration::from_secs(180),
        &w,
        |t| t.rows("sword_purchases") >= acked.len(),
    );
    // Rows beyond the acknowledged ones may be records whose ack was lost.
    let ids = t.ids();
    let dup: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dup.is_empty(), "duplicated: {dup:?}");
    let missing = acked.iter().filter(|id| !ids.contains_key(*id)).count();
    assert_eq!(missing, 0, "acknowledged events missing");
    assert!(w.term().success(), "{}", w.logs());
}
