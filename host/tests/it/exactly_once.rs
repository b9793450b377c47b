//! Exactly once under real operation, with the real binary: a data dir
//! removed between runs, a topic deleted and recreated, a retention gap, a
//! zombie writer publishing a pruned start, a fenced writer whose seeks
//! fail, a failed sync of the embedded log, unknown publish outcomes, an
//! oversized batch of valid events, an incompatible plugin version after a
//! restart (and a damaged table), and orphans of a crashed and of a live
//! writer. `docs/RELIABILITY.md` maps each guarantee to its test here.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsift::writer::commit::{ChainHead, Commits, SourceView, TakeOptions};
use eventsift::writer::warehouse::Warehouse;
use eventsift_test_artifacts as artifacts;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::support::*;
use crate::writer::*;

fn serve_args(plugins: &Path, data: &Path, warehouse: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--plugins",
        s(plugins),
        "--data-dir",
        s(data),
        "--warehouse",
        warehouse,
        "--flush-interval",
        "300ms",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    v.extend(extra.iter().map(|a| a.to_string()));
    v
}

/// Sets flag `flag` of `args` to `value` (appending it when absent).
fn set_arg(args: &mut Vec<String>, flag: &str, value: &str) {
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value.to_owned(),
        None => args.extend([flag.to_owned(), value.to_owned()]),
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `n` sword purchases by players `<tag><i>`.
fn swords(n: usize, tag: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("{tag}{i}.example.com"),
                format!("/purchase_a_sword/red/{}", i % 5),
            )
        })
        .collect()
}

/// The word after `flag` in `log`.
fn word_after<'a>(log: &'a str, flag: &str) -> &'a str {
    let at = log
        .find(flag)
        .unwrap_or_else(|| panic!("{flag:?} not in the log:\n{log}"))
        + flag.len();
    log[at..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\u{1b}')
        .next()
        .unwrap()
}

fn data_dir_removed(warehouse: &str) {
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    let mut serve = Proc::start(
        &strs(&serve_args(plugins.path(), data.path(), warehouse, &[])),
        &[],
    );
    acked.extend(post_all(&serve.base, swords(100, "a")));
    assert!(serve.term().success(), "{}", serve.logs());

    // The container lost its volume: a new, empty embedded log.
    std::fs::remove_dir_all(data.path()).unwrap();
    let args = serve_args(plugins.path(), data.path(), warehouse, &[]);
    let (status, log) = run_to_exit(&strs(&args), &[], Duration::from_secs(90));
    assert!(!status.success(), "serve must refuse to start:\n{log}");
    assert!(
        log.contains("the warehouse's chain belongs to source log:"),
        "{log}"
    );
    assert!(log.contains("but the source is now log:"), "{log}");
    let old = word_after(&log, "--new-chain-from ").to_owned();
    assert!(old.starts_with("log:"), "{old}");

    // Deliberately: a new chain for the new log.
    let args = serve_args(
        plugins.path(),
        data.path(),
        warehouse,
        &["--new-chain-from", &old],
    );
    let mut serve = Proc::start(&strs(&args), &[]);
    acked.extend(post_all(&serve.base, swords(50, "b")));
    assert!(serve.term().success(), "{}", serve.logs());
    assert!(
        serve.logs().contains("new chain: the source changed from"),
        "{}",
        serve.logs()
    );
    // And on as usual.
    let args = serve_args(plugins.path(), data.path(), warehouse, &[]);
    let mut serve = Proc::start(&strs(&args), &[]);
    acked.extend(post_all(&serve.base, swords(70, "c")));
    assert!(serve.term().success(), "{}", serve.logs());

    assert_eq!(acked.len(), 220);
    let t = Tables::read(&Warehouse::open(warehouse).unwrap());
    check_exactly_once(&t, &acked);
}

on_local_disk_and_hdfs!(
    data_dir_removed_is_refused_then_a_new_chain_lands_each_event_once_local,
    data_dir_removed_is_refused_then_a_new_chain_lands_each_event_once_hdfs,
    data_dir_removed
);

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .unwrap()
}

fn wait_log(p: &Proc, what: &str, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.logs().matches(needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({needle:?} x{n}):\n{}",
            p.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_recreated_topic_is_refused_then_a_new_chain_lands_each_event_once() {
    let topic = create_topic(2);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let args = writer_args(&topic, &group, &warehouse, plugins.path(), data.path());
    let wh = Warehouse::open(&warehouse).unwrap();

    let mut acked = produce_swords(&topic, 2000, None);
    let mut w = Proc::start(&args, &[]);
    wait_tables(&wh, "the first 2000", Duration::from_secs(60), |t| {
        t.rows("sword_purchases") >= 2000
    });
    assert!(w.term().success());

    // Deleted and created again: offsets start over in a topic of a new id.
    let a = admin();
    block(a.delete_topics(&[&topic], &AdminOptions::new())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let created = block(a.create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap();
        if created.iter().all(|r| r.is_ok()) {
            break;
        }
        assert!(Instant::now() < deadline, "recreating {topic}: {created:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let later = produce_swords(&topic, 1000, None);

    let mut w = Proc::start(&args, &[]);
    wait_log(
        &w,
        "both partitions refused",
        "but the source is now kafka:",
        2,
    );
    let (code, health) = w.get("/healthz");
    assert_eq!(code, 200, "{health}");
    assert!(
        health.contains("stopped_partitions") && health.contains("--new-chain-from"),
        "{health}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        Tables::read(&wh).rows("sword_purchases"),
        2000,
        "nothing written meanwhile"
    );
    let old = word_after(&w.logs(), "--new-chain-from ").to_owned();
    assert!(old.starts_with("kafka:"), "{old}");
    assert!(w.term().success());

    let mut args = args.clone();
    args.extend(["--new-chain-from", &old]);
    let mut w = Proc::start(&args, &[]);
    acked.extend(later);
    let t = wait_tables(&wh, "all 3000", Duration::from_secs(60), |t| {
        t.rows("sword_purchases") >= 3000
    });
    check_exactly_once(&t, &acked);
    assert!(w.term().success());
}

#[test]
fn a_retention_gap_stops_the_partition_until_accepted_then_is_counted() {
    let topic = create_topic(1);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let args = writer_args(&topic, &group, &warehouse, plugins.path(), data.path());
    let wh = Warehouse::open(&warehouse).unwrap();

    let first = produce_swords(&topic, 1000, None);
    let mut w = Proc::start(&args, &[]);
    wait_tables(&wh, "the first 1000", Duration::from_secs(60), |t| {
        t.rows("sword_purchases") >= 1000
    });
    assert!(w.term().success());

    // Retention deletes records the writer never wrote: 1000..1500.
    let second = produce_swords(&topic, 1000, None);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(1500))
        .unwrap();
    block(admin().delete_records(&tpl, &AdminOptions::new())).unwrap();

    let mut w = Proc::start(&args, &[]);
    wait_log(
        &w,
        "the refusal",
        "records 1000..1500 are gone from source kafka:",
        1,
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(Tables::read(&wh).rows("sword_purchases"), 1000);
    assert!(w.term().success());

    let mut args = args.clone();
    args.push("--accept-retention-gaps");
    let mut w = Proc::start(&args, &[]);
    let t = wait_tables(
        &wh,
        "the rest after the gap",
        Duration::from_secs(60),
        |t| t.rows("sword_purchases") >= 1500,
    );
    let mut expected = first;
    expected.extend(second[500..].iter().cloned());
    check_exactly_once(&t, &expected);
    let (_, metrics) = w.admin_get("/metrics");
    assert!(
        metrics.contains("eventsift_writer_gap_records_total{partition=\"0\"} 500"),
        "{metrics}"
    );
    assert!(
        w.logs().contains("skipping records 1000..1500"),
        "{}",
        w.logs()
    );
    assert!(w.term().success());
}

/// The state letter of a process (`T` when stopped).
fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.trim().chars().next())
        .unwrap_or('?')
}

fn signal(pid: u32, sig: &str) {
    std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
}

fn zombie(warehouse: &str) {
    let topic = create_topic(2);
    let group = unique("g");
    let plugins = plugin_dir(&["sword.wasm"]);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let producer = {
        let topic = topic.clone();
        std::thread::spawn(move || {
            produce_swords(&topic, 40_000, Some(Duration::from_millis(1000)))
        })
    };
    let with_keep = |data: &Path| {
        let mut a: Vec<String> = writer_args(&topic, &group, warehouse, plugins.path(), data)
            .iter()
            .map(|s| s.to_string())
            .collect();
        set_arg(&mut a, "--keep-commit-records", "3");
        set_arg(&mut a, "--flush-interval", "300ms");
        a
    };
    let args_a = with_keep(da.path());
    let mut a = Proc::start(
        &strs(&args_a),
        &[("EVENTSIFT_FAILPOINT", "stop_before_publish@4")],
    );
    let pid = a.pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proc_state(pid) != 'T' {
        assert!(
            Instant::now() < deadline,
            "writer a never froze:\n{}",
            a.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // b takes both partitions once a's session expires, and commits far
    // past a's buffered start (kept records: 3, so it is pruned).
    let args_b = with_keep(db.path());
    let mut b = Proc::start(&strs(&args_b), &[]);
    // Where b took each partition: a's frozen attempt starts there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let taken: Vec<(i32, i64)> = loop {
        let logs = b.logs();
        {
            // "partition P taken at position N (...)": the first of each.
            let mut first = std::collections::BTreeMap::new();
            for (p, n) in logs.lines().filter_map(|l| {
                let rest = &l[l.find("partition ")? + "partition ".len()..];
                let (p, rest) = rest.split_once(" taken at position ")?;
                let n = rest.split_whitespace().next()?;
                Some((p.parse::<i32>().ok()?, n.parse::<i64>().ok()?))
            }) {
                first.entry(p).or_insert(n);
            }
            if first.len() == 2 {
                break first.into_iter().collect();
            }
        }
        assert!(
            Instant::now() < deadline,
            "b was not assigned both partitions:\n{}",
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // ... and prunes its chains past those starts.
    let wh = Warehouse::open(warehouse).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    for (p, pos) in &taken {
        loop {
            let low = wh
                .list(&format!("_eventsift/commits/{topic}/{p}"))
                .unwrap()
                .into_iter()
                .filter_map(|e| {
                    e.name
                        .strip_suffix(".low")?
                        .split_once('-')?
                        .1
                        .parse::<i64>()
                        .ok()
                })
                .max();
            if low.is_some_and(|l| l > *pos) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "b did not prune partition {p} past {pos}:\n{}\na:\n{}",
                b.logs(),
                a.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let listed: Vec<String> = (0..2)
        .flat_map(|p| wh.list(&format!("_eventsift/commits/{topic}/{p}")).unwrap())
        .map(|e| e.name)
        .collect();
    signal(pid, "-CONT");
    // a publishes its pruned start: it does not link (or, when b's pruning
    // raced it, collides): either way a is fenced and takes the partition
    // again. The library test on MiniDFS below pins the unlinked path.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !a.logs().contains("does not link into the chain")
        && !a
            .logs()
            .contains("another writer committed this range first")
    {
        assert!(
            Instant::now() < deadline,
            "the zombie's publish did not come (taken {taken:?}, listed before SIGCONT \
             {listed:?}):\na:\n{}\nb:\n{}",
            a.logs(),
            b.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let acked = producer.join().unwrap();
    let t = wait_tables(&wh, "every event", Duration::from_secs(120), |t| {
        t.rows("sword_purchases") >= acked.len()
    });
    check_exactly_once(&t, &acked);
    // Every partition's chain stays bounded.
    for p in 0..2 {
        let records = wh
            .list(&format!("_eventsift/commits/{topic}/{p}"))
            .unwrap()
            .into_iter()
            .filter(|e| e.name.ends_with(".json") && !e.name.starts_with('.'))
            .count();
        assert!(records <= 5, "partition {p} keeps {records} records");
    }
    assert!(a.term().success(), "{}", a.logs());
    assert!(b.term().success(), "{}", b.logs());
}

on_local_disk_and_hdfs!(
    a_zombie_publishing_a_pruned_start_loses_and_doubles_nothing_local,
    a_zombie_publishing_a_pruned_start_loses_and_doubles_nothing_hdfs,
    zombie
);

/// The protocol on the real MiniDFS: a writer that still believes a pruned
/// start is the chain's end publishes it, and that record counts for
/// nothing (it is removed, its files never reach their final names).
#[test]
fn on_hdfs_a_published_pruned_start_does_not_link() {
    let wh = Arc::new(Warehouse::open(&hdfs_warehouse()).unwrap());
    let view = SourceView {
        id: "kafka:test/topic".into(),
        earliest: 0,
        end: 1_000_000,
    };
    let opts = TakeOptions::default();
    let owner = Commits::new(wh.clone(), "events", "owner", 3);
    let zombie = Commits::new(wh.clone(), "events", "zombie", 3);
    owner.take(0, &view, &opts).unwrap();
    assert_eq!(zombie.take(0, &view, &opts).unwrap().chain, 0);
    let file = |path: &str| eventsift::writer::commit::PendingFile {
        table: "t".into(),
        path: path.into(),
        rows: 1,
        data: bytes::Bytes::from_static(b"PAR1"),
    };
    for i in 0..10i64 {
        let f = file(&format!("t/dt=x/{i}.parquet"));
        owner
            .commit(0, i * 10, i * 10 + 10, &[f], &|| false)
            .unwrap();
    }
    let (outcome, record) = zombie
        .commit(0, 0, 10, &[file("t/dt=x/zombie.parquet")], &|| false)
        .unwrap();
    assert_eq!(outcome, eventsift::writer::commit::CommitOutcome::Fenced);
    assert!(
        !wh.exists("_eventsift/commits/events/0/c000001-00000000000000000000.json")
            .unwrap()
    );
    assert!(!wh.exists(&record.files[0].tmp).unwrap());
    assert!(!wh.exists("t/dt=x/zombie.parquet").unwrap());
    let fresh = Commits::new(wh.clone(), "events", "fresh", 3);
    assert_eq!(fresh.take(0, &view, &opts).unwrap().chain, 100);
    assert!(fresh.linked(0).len() <= 4);
}

#[test]
fn a_fenced_writer_whose_seeks_fail_resumes_exactly_after_the_winner() {
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let args = serve_args(plugins.path(), data.path(), &warehouse, &[]);
    let mut serve = Proc::start(&strs(&args), &[("EVENTSIFT_FAILPOINT", "seek_fail@1..3")]);
    let mut acked = post_all(&serve.base, swords(200, "a"));
    let wh = Arc::new(Warehouse::open(&warehouse).unwrap());
    wait_tables(&wh, "the first 200", Duration::from_secs(30), |t| {
        t.rows("sword_purchases") >= 200
    });

    // Another writer commits the chain's next range first.
    let head: ChainHead =
        serde_json::from_slice(&wh.read("_eventsift/commits/log/0/c000001.chain").unwrap())
            .unwrap();
    let rival = Commits::new(wh.clone(), "log", "rival", 64);
    let view = SourceView {
        id: head.source_id.clone(),
        earliest: 0,
        end: i64::MAX,
    };
    let end = rival.take(0, &view, &TakeOptions::default()).unwrap().chain;
    assert_eq!(end, 200);
    rival.commit(0, end, end + 50, &[], &|| false).unwrap();

    acked.extend(post_all(&serve.base, swords(300, "b")));
    let t = wait_tables(
        &wh,
        "the rest after the rival",
        Duration::from_secs(60),
        |t| t.rows("sword_purchases") >= 450,
    );
    let logs = serve.logs();
    assert!(
        logs.contains("another writer committed this range first"),
        "{logs}"
    );
    assert_eq!(
        logs.matches("seek failed (retrying; the partition waits)")
            .count(),
        3,
        "{logs}"
    );
    // Positions 200..250 are the rival's; everything else once, no gap.
    let mut offsets = t.ints("sword_purchases", "source_offset");
    offsets.sort_unstable();
    let expected: Vec<i64> = (0..200).chain(250..500).collect();
    assert_eq!(offsets, expected);
    let ids = t.ids();
    assert!(ids.values().all(|&n| n == 1));
    assert!(acked.iter().filter(|id| ids.contains_key(*id)).count() == 450);
    assert!(serve.term().success(), "{}", serve.logs());
}

#[test]
fn a_failed_sync_of_the_embedded_log_stops_acknowledging_and_reuses_no_offset() {
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let args = serve_args(plugins.path(), data.path(), &warehouse, &[]);
    let mut serve = Proc::start(&strs(&args), &[("EVENTSIFT_FAILPOINT", "log_sync@40")]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..8)
        .map(|c| {
            let (base, acked, refused, done) = (
                serve.base.clone(),
                acked.clone(),
                refused.clone(),
                done.clone(),
            );
            rt.spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                while !done.load(Ordering::Relaxed) {
                    let Ok(resp) = http
                        .post(format!("{base}/purchase_a_sword/red/{c}"))
                        .header("Host", format!("p{c}"))
                        .send()
                        .await
                    else {
                        break;
                    };
                    let status = resp.status();
                    let id = resp
                        .headers()
                        .get("x-event-id")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let body = resp.text().await.unwrap_or_default();
                    match (status.as_u16(), id) {
                        (200, Some(id)) => acked.lock().unwrap().push(id),
                        (503, _) => refused.lock().unwrap().push(body),
                        (other, _) => panic!("unexpected {other}: {body}"),
                    }
                }
            })
        })
        .collect();
    let status = serve.wait(Duration::from_secs(60)).unwrap_or_else(|| {
        panic!(
            "serve kept running after the failed sync:\n{}",
            serve.logs()
        )
    });
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = rt.block_on(t);
    }
    assert!(!status.success(), "serve exits non-zero");
    let logs = serve.logs();
    assert!(
        logs.contains("the embedded log failed to sync offsets"),
        "{logs}"
    );
    let refused = refused.lock().unwrap().clone();
    assert!(
        refused.iter().any(|b| b.contains("failed to sync")),
        "the 503s say why: {refused:?}"
    );

    let mut serve = Proc::start(&strs(&args), &[]);
    let mut acked = acked.lock().unwrap().clone();
    acked.extend(post_all(&serve.base, swords(100, "after")));
    assert!(serve.term().success(), "{}", serve.logs());
    let t = Tables::read(&Warehouse::open(&warehouse).unwrap());
    let ids = t.ids();
    let missing = acked.iter().filter(|id| ids.get(*id) != Some(&1)).count();
    assert_eq!(missing, 0, "every acknowledged event once");
    let offsets = t.ints("sword_purchases", "source_offset");
    let distinct: HashSet<i64> = offsets.iter().copied().collect();
    assert_eq!(distinct.len(), offsets.len(), "no offset used twice");
}

fn unknown_outcomes(warehouse: &str) {
    let topic = create_topic(2);
    let group = unique("g");
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let args = writer_args(&topic, &group, warehouse, plugins.path(), data.path());
    let mut w = Proc::start(
        &args,
        &[("EVENTSIFT_FAILPOINT", "publish_ambiguous@2,publish_lost@4")],
    );
    wait_log(&w, "the assignment", "taken at position", 1);
    // Paced, so that there are many commits.
    let acked = produce_swords(&topic, 6000, Some(Duration::from_millis(1000)));
    let wh = Warehouse::open(warehouse).unwrap();
    let t = wait_tables_of(&wh, "every event", Duration::from_secs(90), &w, |t| {
        t.rows("sword_purchases") >= acked.len()
    });
    check_exactly_once(&t, &acked);
    let logs = w.logs();
    assert!(
        logs.contains("unknown publish outcome resolved: committed"),
        "{logs}"
    );
    assert!(
        logs.contains("unknown publish outcome resolved: not published"),
        "{logs}"
    );
    assert!(w.term().success());
    let left: Vec<_> = wh.walk("_eventsift/inflight").unwrap();
    assert!(left.is_empty(), "in-flight files left behind: {left:?}");
}

on_local_disk_and_hdfs!(
    unknown_publish_outcomes_are_resolved_by_reading_back_local,
    unknown_publish_outcomes_are_resolved_by_reading_back_hdfs,
    unknown_outcomes
);

#[test]
fn an_oversized_batch_of_valid_events_lands_without_faults() {
    let topic = create_topic(1);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let padding = "x".repeat(100_000);
    let p = producer();
    let mut acked = Vec::new();
    for i in 0..400 {
        let id = uuid::Uuid::now_v7().to_string();
        let env = sword_envelope(&id, &format!("big{i}"), "red", 1);
        let env = format!("{},\"padding\":\"{padding}\"}}", &env[..env.len() - 1]);
        p.send(BaseRecord::<(), _>::to(&topic).payload(&env))
            .unwrap();
        acked.push(id);
    }
    p.flush(Duration::from_secs(30)).unwrap();
    // 40 MB of valid events, a 16 MiB plugin memory cap.
    let mut args = writer_args(
        &topic,
        &group,
        s(wh_dir.path()),
        plugins.path(),
        data.path(),
    );
    args.extend(["--plugin-memory-mib", "16"]);
    let mut w = Proc::start(&args, &[]);
    let wh = Warehouse::open(s(wh_dir.path())).unwrap();
    let t = wait_tables(&wh, "400 big events", Duration::from_secs(90), |t| {
        t.rows("sword_purchases") + t.rows("rejected_events") >= 400
    });
    assert_eq!(
        t.rows("rejected_events"),
        0,
        "{:?}",
        t.strings("rejected_events", "reason").first()
    );
    check_exactly_once(&t, &acked);
    assert!(w.term().success());
}

fn query_out(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eventsift"))
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), crate::support::output_text(&out))
}

#[test]
fn an_incompatible_version_after_a_restart_is_refused_and_a_damaged_table_spares_the_others() {
    let topic = create_topic(1);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let plugins = plugin_dir(&["sword.wasm", "horse.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let args = writer_args(&topic, &group, &warehouse, plugins.path(), data.path());
    let wh = Warehouse::open(&warehouse).unwrap();
    let first = produce_swords(&topic, 500, None);
    let mut w = Proc::start(&args, &[]);
    wait_tables(&wh, "500 swords", Duration::from_secs(60), |t| {
        t.rows("sword_purchases") >= 500
    });
    assert!(w.term().success());

    // A version changing quantity's type, in a new process.
    drop_in(
        plugins.path(),
        "sword.wasm",
        artifacts::SWORD_V3_BAD,
        SETTLED,
    );
    let mut w = Proc::start(&args, &[]);
    let later = produce_swords(&topic, 300, None);
    let t = wait_tables(&wh, "the refused events", Duration::from_secs(60), |t| {
        t.rows("rejected_events") >= 300
    });
    assert_eq!(t.rows("sword_purchases"), 500);
    let stages = t.strings("rejected_events", "stage");
    let reasons = t.strings("rejected_events", "reason");
    assert!(stages.iter().all(|s| s == "schema"), "{stages:?}");
    assert!(
        reasons[0].contains("column \"quantity\" changes type from int64 to string"),
        "{}",
        reasons[0]
    );
    let (_, metrics) = w.admin_get("/metrics");
    assert!(
        metrics.contains("eventsift_writer_rejected_total{reason=\"schema\"} 300"),
        "{metrics}"
    );
    check_exactly_once(&t, &first);
    let _ = later;
    assert!(w.term().success());

    // `api` given the warehouse refuses the version at load: no route.
    let api_data = tempfile::tempdir().unwrap();
    let mut args = api_args(&topic, plugins.path(), api_data.path());
    args.extend(["--warehouse", &warehouse]);
    let mut api = Proc::start(&args, &[]);
    wait_log(
        &api,
        "the refusal",
        "changes table \"sword_purchases\" incompatibly",
        1,
    );
    let resp = block(
        reqwest::Client::new()
            .post(format!("{}/purchase_a_sword/red/1", api.base))
            .send(),
    )
    .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(api.term().success());

    // A damaged table: two files disagreeing on a column's type.
    let dt = "horse_purchases/dt=2026-01-01";
    std::fs::create_dir_all(wh_dir.path().join(dt)).unwrap();
    for (name, ty) in [
        ("a", arrow_schema::DataType::Int64),
        ("b", arrow_schema::DataType::Utf8),
    ] {
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "quantity",
            ty.clone(),
            false,
        )]));
        let col: arrow_array::ArrayRef = match ty {
            arrow_schema::DataType::Int64 => Arc::new(arrow_array::Int64Array::from(vec![1])),
            _ => Arc::new(arrow_array::StringArray::from(vec!["one"])),
        };
        let batch = arrow_array::RecordBatch::try_new(schema.clone(), vec![col]).unwrap();
        let f =
            std::fs::File::create(wh_dir.path().join(dt).join(format!("{name}.parquet"))).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let wh_arg = ["--warehouse", warehouse.as_str()];
    let (ok, out) = query_out(
        &[
            &["query"][..],
            &wh_arg,
            &["SELECT COUNT(*) AS n FROM sword_purchases"],
        ]
        .concat(),
    );
    assert!(ok && out.contains("500"), "{out}");
    let (ok, out) = query_out(
        &[
            &["query"][..],
            &wh_arg,
            &["SELECT COUNT(*) FROM horse_purchases"],
        ]
        .concat(),
    );
    assert!(
        !ok && out.contains("table horse_purchases cannot be read"),
        "{out}"
    );
    let (ok, out) = query_out(&[&["tables"][..], &wh_arg].concat());
    assert!(
        ok && out.contains("horse_purchases  DAMAGED") && out.contains("sword_purchases  500 rows"),
        "{out}"
    );
    let (ok, out) = query_out(&[&["ddl", "--dialect", "hive"][..], &wh_arg].concat());
    assert!(
        ok && out.contains("sword_purchases") && out.contains("-- horse_purchases: not registered"),
        "{out}"
    );
}

#[test]
fn orphans_of_a_crashed_writer_are_collected_and_a_live_writers_stay() {
    let topic = create_topic(1);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let mut args: Vec<String> =
        writer_args(&topic, &group, &warehouse, plugins.path(), data.path())
            .iter()
            .map(|s| s.to_string())
            .collect();
    set_arg(&mut args, "--keep-commit-records", "1");
    set_arg(&mut args, "--flush-interval", "300ms");
    let args = strs(&args);
    let wh = Warehouse::open(&warehouse).unwrap();
    let mut acked = produce_swords(&topic, 2000, None);
    let inflight = format!("_eventsift/inflight/{topic}/0");

    let mut crashed = Proc::start(&args, &[("EVENTSIFT_FAILPOINT", "after_tmp")]);
    crashed
        .wait(Duration::from_secs(60))
        .expect("the failpoint fires");
    let orphans: Vec<String> = wh
        .walk(&inflight)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(!orphans.is_empty(), "the crash left in-flight files");
    // A live writer's attempt at a position the chain has not reached.
    let live = format!("{inflight}/c000001-{:020}-live-0.parquet", 1_000_000_000i64);
    wh.write(&live, bytes::Bytes::from_static(b"PAR1")).unwrap();

    let mut w = Proc::start(&args, &[]);
    // Once consuming, in a trickle: many commits, so the chain prunes.
    wait_log(&w, "the assignment", "taken at position", 1);
    acked.extend(produce_swords(
        &topic,
        4000,
        Some(Duration::from_millis(1000)),
    ));
    let t = wait_tables(&wh, "every event", Duration::from_secs(60), |t| {
        t.rows("sword_purchases") >= acked.len()
    });
    check_exactly_once(&t, &acked);
    let deadline = Instant::now() + Duration::from_secs(30);
    while orphans.iter().any(|o| wh.exists(o).unwrap()) {
        assert!(
            Instant::now() < deadline,
            "the crash's orphans {orphans:?} are still there; in flight: {:?}; log:\n{}",
            wh.walk(&inflight).unwrap(),
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(wh.exists(&live).unwrap(), "a live writer's file is kept");
    assert!(w.metric("eventsift_writer_orphans_removed_total") >= orphans.len() as f64);
    assert!(w.term().success());
}
