//! Delta Lake warehouses (`--table-format delta`) with the real binary: the
//! seed's load across a crash between two tables' Delta commits, read by
//! `eventsift query`, the Python `deltalake` package and the DDL; a
//! warehouse keeping its format; compaction while a writer appends and a
//! reader counts; `forget` (rejected_events included) and `vacuum`, on
//! local disk and on MiniDFS. The crash suite's Delta variants live with
//! the Hive ones (`writer.rs`, `crash.rs`, `chaos.rs`).

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsift::writer::warehouse::Warehouse;
use rdkafka::producer::BaseRecord;

use crate::query::eventsift;
use crate::support::*;
use crate::writer::*;

const DELTA: (&str, &str) = ("EVENTSIFT_TABLE_FORMAT", "delta");
const TABLES: [&str; 3] = ["sword_purchases", "horse_purchases", "guild_actions"];

fn serve_args<'a>(plugins: &'a str, data: &'a str, wh: &'a str, flush: &'a str) -> Vec<&'a str> {
    vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--plugins",
        plugins,
        "--data-dir",
        data,
        "--warehouse",
        wh,
        "--flush-interval",
        flush,
    ]
}

fn python() -> String {
    std::env::var("EVENTSIFT_TEST_PYTHON")
        .expect("EVENTSIFT_TEST_PYTHON is not set: run the tests with `cargo xtask test`")
}

/// Rows per table as the Python `deltalake` package (delta-rs from PyPI)
/// reads them. The script leaves through `os._exit` once its counts are
/// out: delta-rs' Python binding can abort at interpreter shutdown
/// ("terminate called without an active exception", delta-rs #2184), after
/// the read has finished.
fn python_counts(warehouse: &str, tables: &[&str]) -> HashMap<String, usize> {
    let script = format!(
        "import os, sys\nfrom deltalake import DeltaTable\nfor t in {tables:?}:\n    \
         print(t, DeltaTable(sys.argv[1].rstrip('/') + '/' + t).to_pyarrow_table().num_rows)\n\
         sys.stdout.flush()\nos._exit(0)\n"
    );
    let out = Command::new(python())
        .args(["-c", &script, warehouse])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python deltalake: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (t, n) = l.split_once(' ').unwrap();
            (t.to_owned(), n.parse().unwrap())
        })
        .collect()
}

/// One number from `eventsift query` (CSV, one row, one column).
fn count(warehouse: &str, sql: &str) -> i64 {
    let (code, out, err) = eventsift(&["query", "--warehouse", warehouse, "--format", "csv", sql]);
    assert_eq!(code, 0, "{sql}: {err}");
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// `(table, before, after)` file counts from `eventsift compact` or
/// `vacuum` output lines `table: N files (...) ... -> M files (...)`.
fn file_counts(out: &str) -> Vec<(String, usize, usize)> {
    out.lines()
        .filter_map(|l| {
            let (table, rest) = l.split_once(": ")?;
            let before = rest.split(' ').next()?.parse().ok()?;
            let after = rest.split("-> ").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((table.to_owned(), before, after))
        })
        .collect()
}

/// Rows removed per table from `eventsift forget` output.
fn removed(out: &str) -> HashMap<String, u64> {
    out.lines()
        .filter_map(|l| {
            let (table, rest) = l.split_once(": ")?;
            let n = rest.strip_suffix(" rows removed")?.parse().ok()?;
            Some((table.to_owned(), n))
        })
        .collect()
}

#[test]
fn the_seed_load_lands_once_across_a_crash_between_two_tables_commits_and_every_reader_agrees() {
    let plugins = plugin_dir(SEED_PLUGINS);
    let data = tempfile::tempdir().unwrap();
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path());
    // The load is in before the first commit (5 s), whose record spans
    // every table; the process dies after the first table's Delta commit.
    let mut serve = Proc::start(
        &serve_args(s(plugins.path()), s(data.path()), warehouse, "5s"),
        &[DELTA, ("EVENTSIFT_FAILPOINT", "after_delta_table@1")],
    );
    let acked = post_all(&serve.base, seed_requests());
    assert_eq!(acked.len(), 4210);
    let status = serve
        .wait(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the failpoint did not fire:\n{}", serve.logs()));
    assert!(!status.success());
    assert!(
        serve
            .logs()
            .contains("failpoint after_delta_table: aborting"),
        "{}",
        serve.logs()
    );
    let wh = Warehouse::open(warehouse).unwrap();
    // Exactly one table has the range: the crash fell between two tables.
    let t = Tables::read(&wh);
    let with_rows: Vec<_> = TABLES.iter().filter(|n| t.rows(n) > 0).collect();
    assert_eq!(
        with_rows.len(),
        1,
        "tables with rows after the crash: {with_rows:?}"
    );

    let mut serve = Proc::start(
        &serve_args(s(plugins.path()), s(data.path()), warehouse, "500ms"),
        &[DELTA],
    );
    let t = wait_tables_of(
        &wh,
        "the seed load",
        Duration::from_secs(60),
        &serve,
        seed_landed,
    );
    check_seed_sums(&t);
    check_exactly_once(&t, &acked);

    // Each table's commits carry the range's transaction (the embedded
    // log's partition 0, chain 1) next to their files.
    for table in TABLES {
        let log = wh.list(&format!("{table}/_delta_log")).unwrap();
        let txns: Vec<serde_json::Value> = log
            .iter()
            .filter(|e| e.name.ends_with(".json"))
            .flat_map(|e| {
                let text =
                    String::from_utf8(wh.read(&format!("{table}/_delta_log/{}", e.name)).unwrap())
                        .unwrap();
                text.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                    .filter(|v| v.get("txn").is_some())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(!txns.is_empty(), "{table}: no txn action");
        // Created with the short log retention that keeps commits cheap.
        let first = String::from_utf8(
            wh.read(&format!("{table}/_delta_log/00000000000000000000.json"))
                .unwrap(),
        )
        .unwrap();
        assert!(
            first.contains(r#""delta.logRetentionDuration":"interval 7200 seconds""#),
            "{table}: {first}"
        );
        assert!(
            txns.iter()
                .all(|v| v["txn"]["appId"] == "eventsift-log-0-c1"
                    && v["txn"]["version"].as_i64().unwrap() > 0),
            "{table}: {txns:?}"
        );
    }

    // Readers: eventsift query (DataFusion over delta-rs), the classic
    // queries, Python's deltalake, tables and ddl.
    crate::query::check_classic_queries(warehouse);
    let py = python_counts(warehouse, &TABLES);
    for table in TABLES {
        assert_eq!(py[table], t.rows(table), "{table}");
        assert_eq!(
            count(warehouse, &format!("SELECT COUNT(*) FROM {table}")),
            t.rows(table) as i64
        );
    }
    let (code, out, err) = eventsift(&["tables", "--warehouse", warehouse]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sword_purchases  1610 rows"), "{out}");
    let (code, spark, err) = eventsift(&["ddl", "--warehouse", warehouse, "--dialect", "spark"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        spark.contains("`sword_purchases` USING DELTA LOCATION 'file:///"),
        "{spark}"
    );
    spark_agrees(&spark);
    let (code, duck, err) = eventsift(&["ddl", "--warehouse", warehouse, "--dialect", "duckdb"]);
    assert_eq!(code, 0, "{err}");
    duckdb_agrees(&duck);
    let (code, _, err) = eventsift(&["ddl", "--warehouse", warehouse, "--dialect", "hive"]);
    assert_eq!(code, 1);
    assert!(err.contains("--dialect trino"), "{err}");

    // The warehouse keeps its format.
    assert!(serve.term().success(), "{}", serve.logs());
    let (status, log) = run_to_exit(
        &serve_args(s(plugins.path()), s(data.path()), warehouse, "500ms"),
        &[("EVENTSIFT_TABLE_FORMAT", "hive")],
        Duration::from_secs(60),
    );
    assert!(!status.success());
    assert!(
        log.contains("it was created with --table-format delta")
            && log.contains("start it with --table-format delta"),
        "{log}"
    );
}

/// PySpark 3.5 with delta-spark 3.3.2 (Maven Central, through Ivy) runs
/// the printed Spark DDL and answers the seed's queries as `eventsift query`
/// does.
fn spark_agrees(ddl: &str) {
    use crate::query::{HORSES, SWORDS};
    let script = format!(
        r#"
import sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.session.timeZone", "UTC")
    .config("spark.jars.packages", "io.delta:delta-spark_2.12:3.3.2")
    .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
    .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
    .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
for stmt in sys.stdin.read().split(";"):
    lines = [l for l in stmt.splitlines() if l.strip() and not l.strip().startswith("--")]
    if lines:
        spark.sql("\n".join(lines))
for q in [{HORSES:?}, {SWORDS:?}]:
    for r in sorted(",".join(str(v) for v in row) for row in spark.sql(q).collect()):
        print(r)
    print("--")
"#
    );
    let spark_home = tempfile::tempdir().unwrap();
    // Ivy prints where its settings come from.
    let stdout: String =
        python_with_input(&python(), &script, ddl, Some(spark_home.path()), "spark")
            .lines()
            .filter(|l| !l.starts_with(":: "))
            .map(|l| format!("{l}\n"))
            .collect();
    let year = &humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..4];
    assert_eq!(
        stdout,
        format!("large,600\nmedium,1100\nsmall,800\n--\n{year},2130\n--\n"),
        "spark with delta-spark"
    );
}

/// DuckDB 1.4.4 with its delta extension from PyPI (`duckdb-ext-delta`,
/// an unofficial repackaging: no download at run time) runs the printed
/// DuckDB DDL and answers the seed's queries.
fn duckdb_agrees(ddl: &str) {
    use crate::query::{HORSES, SWORDS};
    let script = format!(
        r#"
import sys, os, duckdb, duckdb_ext
con = duckdb.connect(config={{"extension_directory": os.path.join(duckdb_ext.__path__[0], "extensions")}})
con.execute(sys.stdin.read())
for q in [{HORSES:?}, {SWORDS:?}]:
    for r in sorted(",".join(str(v) for v in row) for row in con.execute(q).fetchall()):
        print(r)
    print("--")
"#
    );
    let stdout = python_with_input(&python(), &script, ddl, None, "duckdb");
    let year = &humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..4];
    assert_eq!(
        stdout,
        format!("large,600\nmedium,1100\nsmall,800\n--\n{year},2130\n--\n"),
        "duckdb with the delta extension"
    );
}

#[test]
fn maintenance_refuses_hive_warehouses_and_points_to_delta() {
    let wh = tempfile::tempdir().unwrap();
    for args in [
        vec!["compact"],
        vec!["vacuum"],
        vec!["forget", "--user", "user1.comcast.com"],
    ] {
        let mut args = args;
        args.extend(["--warehouse", s(wh.path())]);
        let (code, _, err) = eventsift(&args);
        assert_eq!(code, 1, "{args:?}");
        assert!(
            err.contains("needs a Delta warehouse") && err.contains("--table-format delta"),
            "{args:?}: {err}"
        );
    }
}

/// Reads `SELECT COUNT(*), COUNT(DISTINCT event_id)` of every table in a
/// loop until `stop`, through the same reader `eventsift query` uses.
fn counting_reader(
    warehouse: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<HashMap<String, (i64, i64)>>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let reading = rt.block_on(async {
                let wh = eventsift::query::Warehouse::open(&warehouse).await.unwrap();
                let mut out = HashMap::new();
                for table in TABLES {
                    let batches = wh
                        .sql(&format!(
                            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM {table}"
                        ))
                        .await
                        .unwrap();
                    let col = |i: usize| {
                        use arrow_array::cast::AsArray;
                        batches[0]
                            .column(i)
                            .as_primitive::<arrow_array::types::Int64Type>()
                            .value(0)
                    };
                    out.insert(table.to_owned(), (col(0), col(1)));
                }
                out
            });
            seen.push(reading);
        }
        seen
    })
}

#[test]
fn compaction_while_a_writer_appends_never_changes_what_a_reader_counts_then_forget_and_vacuum() {
    let plugins = plugin_dir(SEED_PLUGINS);
    let data = tempfile::tempdir().unwrap();
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let mut serve = Proc::start(
        &serve_args(s(plugins.path()), s(data.path()), &warehouse, "200ms"),
        &[DELTA],
    );
    let wh = Warehouse::open(&warehouse).unwrap();
    // Two seed loads in small pieces, a commit or more each: many small
    // files per table.
    let mut acked = Vec::new();
    for _ in 0..2 {
        for piece in seed_requests().chunks(500) {
            acked.extend(post_all(&serve.base, piece.to_vec()));
            std::thread::sleep(Duration::from_millis(400));
        }
    }
    let t = wait_tables_of(
        &wh,
        "two seed loads",
        Duration::from_secs(60),
        &serve,
        |t| t.ids().len() >= acked.len(),
    );
    check_exactly_once(&t, &acked);
    let expected: HashMap<String, i64> = TABLES
        .iter()
        .map(|n| (n.to_string(), t.rows(n) as i64))
        .collect();

    // Nothing arriving: every reading during compaction is exactly the
    // committed rows, each once.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = counting_reader(warehouse.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, err) = eventsift(&["compact", "--warehouse", &warehouse, "--older-than", "0s"]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    assert_eq!(code, 0, "{err}");
    let readings = reader.join().unwrap();
    assert!(readings.len() >= 2, "{} readings", readings.len());
    for r in &readings {
        for table in TABLES {
            assert_eq!(
                r[table],
                (expected[table], expected[table]),
                "{table}: {r:?}"
            );
        }
    }
    let counts = file_counts(&out);
    for table in TABLES {
        let (_, before, after) = counts.iter().find(|(t, _, _)| t == table).unwrap();
        assert!(*before >= 2 && *after < *before, "{table}: {out}");
    }
    eprintln!("compact (static):\n{out}");

    // A writer appending during compaction: a reader never sees a row
    // twice, and counts never go down.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = counting_reader(warehouse.clone(), stop.clone());
    let more = {
        let base = serve.base.clone();
        std::thread::spawn(move || post_all(&base, seed_requests()))
    };
    let mut compactions = Vec::new();
    for _ in 0..3 {
        let (code, out, err) =
            eventsift(&["compact", "--warehouse", &warehouse, "--older-than", "0s"]);
        assert_eq!(code, 0, "{err}");
        compactions.push(out);
    }
    acked.extend(more.join().unwrap());
    let t = wait_tables_of(
        &wh,
        "the third load",
        Duration::from_secs(60),
        &serve,
        |t| t.ids().len() >= acked.len(),
    );
    check_exactly_once(&t, &acked);
    stop.store(true, Ordering::SeqCst);
    let readings = reader.join().unwrap();
    let mut last: HashMap<&str, i64> = HashMap::new();
    for r in &readings {
        for table in TABLES {
            let (rows, distinct) = r[table];
            assert_eq!(rows, distinct, "{table}: a row seen twice");
            assert!(
                rows >= *last.get(table).unwrap_or(&0),
                "{table}: rows went down"
            );
            last.insert(table, rows);
        }
    }
    eprintln!("compact (appending):\n{}", compactions.join("\n"));

    // Forget a player of the seed (the Host value): exactly their rows go.
    let player = "user1.comcast.com";
    let before: HashMap<String, i64> = TABLES
        .iter()
        .map(|n| {
            (
                n.to_string(),
                count(
                    &warehouse,
                    &format!("SELECT COUNT(*) FROM {n} WHERE host = '{player}'"),
                ),
            )
        })
        .collect();
    // Three seed loads: 600 swords, 350 horses and 300 guild actions each.
    assert_eq!(before["sword_purchases"], 1800);
    assert_eq!(before["horse_purchases"], 1050);
    assert_eq!(before["guild_actions"], 900);
    let totals: HashMap<String, i64> = TABLES
        .iter()
        .map(|n| {
            (
                n.to_string(),
                count(&warehouse, &format!("SELECT COUNT(*) FROM {n}")),
            )
        })
        .collect();
    let (code, out, err) = eventsift(&["forget", "--warehouse", &warehouse, "--user", player]);
    assert_eq!(code, 0, "{err}");
    let gone = removed(&out);
    for table in TABLES {
        assert_eq!(gone[table] as i64, before[table], "{table}: {out}");
        assert_eq!(
            count(
                &warehouse,
                &format!("SELECT COUNT(*) FROM {table} WHERE host = '{player}'")
            ),
            0
        );
        assert_eq!(
            count(&warehouse, &format!("SELECT COUNT(*) FROM {table}")),
            totals[table] - before[table]
        );
    }
    let audit = wh.list("_eventsift/audit").unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    let entry: serde_json::Value = serde_json::from_slice(
        &wh.read(&format!("_eventsift/audit/{}", audit[0].name))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(entry["action"], "forget");
    assert_eq!(entry["user"], player);
    assert_eq!(entry["rows_removed"]["sword_purchases"], 1800);
    assert!(entry["who"].as_str().unwrap().contains('@'));
    assert!(entry["when"].as_str().unwrap().starts_with("20"));

    // Vacuum: the removed files go, the rows stay.
    let (code, out, err) = eventsift(&["vacuum", "--warehouse", &warehouse, "--retain", "0s"]);
    assert_eq!(code, 0, "{err}");
    eprintln!("vacuum:\n{out}");
    for (table, before, after) in file_counts(&out) {
        if TABLES.contains(&table.as_str()) {
            assert!(after < before, "{table}: {out}");
        }
    }
    let py = python_counts(&warehouse, &TABLES);
    for table in TABLES {
        assert_eq!(py[table] as i64, totals[table] - before[table], "{table}");
    }
    assert!(serve.term().success(), "{}", serve.logs());
}

#[test]
fn on_hdfs_a_player_is_forgotten_in_every_table_rejected_events_included() {
    let topic = create_topic(2);
    let group = unique("g");
    let warehouse = hdfs_warehouse();
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let mut args = writer_args(&topic, &group, &warehouse, plugins.path(), data.path());
    args.extend(["--plugin-wait", "1s"]);
    let mut w = Proc::start(&args, &[DELTA]);
    let p = producer();
    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..3 {
        for i in 0..200 {
            let host = if i % 2 == 0 {
                "alice.example"
            } else {
                "bob.example"
            };
            let id = uuid::Uuid::now_v7().to_string();
            let payload = sword_envelope(&id, host, "red", 1);
            p.send(BaseRecord::to(&topic).key(host).payload(&payload))
                .unwrap();
            acked.lock().unwrap().push(id);
        }
        // An event type nobody owns: rejected_events, with its player.
        let dragon = sword_envelope(&format!("dragon-{round}"), "alice.example", "red", 1)
            .replace("purchase_sword", "purchase_dragon");
        p.send(BaseRecord::to(&topic).key("alice.example").payload(&dragon))
            .unwrap();
        rdkafka::producer::Producer::flush(&p, Duration::from_secs(30)).unwrap();
        std::thread::sleep(Duration::from_millis(1200));
    }
    let wh = Warehouse::open(&warehouse).unwrap();
    let t = wait_tables_of(
        &wh,
        "600 swords, 3 rejections",
        Duration::from_secs(90),
        &w,
        |t| t.rows("sword_purchases") >= 600 && t.rows("rejected_events") >= 3,
    );
    check_exactly_once(&t, &acked.lock().unwrap());
    assert_eq!(t.rows("rejected_events"), 3);

    let (code, out, err) = eventsift(&["compact", "--warehouse", &warehouse, "--older-than", "0s"]);
    assert_eq!(code, 0, "{err}");
    let counts = file_counts(&out);
    let (_, before, after) = counts
        .iter()
        .find(|(t, _, _)| t == "sword_purchases")
        .unwrap();
    assert!(after < before, "{out}");

    let (code, out, err) = eventsift(&[
        "forget",
        "--warehouse",
        &warehouse,
        "--user",
        "alice.example",
    ]);
    assert_eq!(code, 0, "{err}");
    let gone = removed(&out);
    assert_eq!(gone["sword_purchases"], 300, "{out}");
    assert_eq!(gone["rejected_events"], 3, "{out}");
    let t = Tables::read(&wh);
    assert_eq!(t.rows("sword_purchases"), 300);
    assert!(
        t.strings("sword_purchases", "host")
            .iter()
            .all(|h| h == "bob.example")
    );
    assert_eq!(t.rows("rejected_events"), 0);

    let (code, out, err) = eventsift(&["vacuum", "--warehouse", &warehouse, "--retain", "0s"]);
    assert_eq!(code, 0, "{err}");
    let deleted: usize = out
        .lines()
        .filter_map(|l| {
            l.strip_suffix(" deleted")?
                .rsplit(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert!(deleted > 0, "{out}");
    assert_eq!(Tables::read(&wh).rows("sword_purchases"), 300);
    assert!(w.term().success(), "{}", w.logs());
}

/// A Delta table whose log replay outgrows `--warehouse-timeout` (1 s,
/// over 200,000 live files from a commit added by hand) does not stall its
/// partition: each storage call is bounded by the timeout, the commit as a
/// whole is not, so commits go on by themselves. (Before, the whole commit
/// was bounded, and each retry replayed the log again, for good.)
#[test]
fn a_delta_commit_that_outgrows_the_warehouse_timeout_goes_on_by_itself() {
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let mut args = serve_args(s(plugins.path()), s(data.path()), &warehouse, "300ms");
    let swords = |from: usize| -> Vec<(String, String)> {
        (from..from + 10)
            .map(|i| {
                (
                    format!("p{i}.example"),
                    "/purchase_a_sword/red/1".to_owned(),
                )
            })
            .collect()
    };
    let wh = Warehouse::open(&warehouse).unwrap();
    let mut serve = Proc::start(&args, &[DELTA]);
    let mut acked = post_all(&serve.base, swords(0));
    wait_until("the first rows", || {
        Tables::read(&wh).rows("sword_purchases") == 10
    });
    assert!(serve.term().success(), "{}", serve.logs());

    // 200,000 files more in the table's live set (files nobody reads: the
    // writer only replays the log).
    let log = wh_dir.path().join("sword_purchases/_delta_log");
    let next = std::fs::read_dir(&log)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()
        .unwrap()
        + 1;
    let mut commit = String::with_capacity(40 << 20);
    for i in 0..200_000 {
        commit.push_str(&format!(
            "{{\"add\":{{\"path\":\"dt=2000-01-01/filler-{i}.parquet\",\"partitionValues\":\
             {{\"dt\":\"2000-01-01\"}},\"size\":100,\"modificationTime\":0,\"dataChange\":true,\
             \"stats\":\"{{\\\"numRecords\\\":0}}\"}}}}\n"
        ));
    }
    commit.push_str(
        "{\"commitInfo\":{\"timestamp\":0,\"operation\":\"WRITE\",\"operationParameters\":\
         {\"mode\":\"Append\"}}}\n",
    );
    std::fs::write(log.join(format!("{next:020}.json")), commit).unwrap();

    args.extend(["--warehouse-timeout", "1s"]);
    let serve = Proc::start(&args, &[DELTA]);
    acked.extend(post_all(&serve.base, swords(100)));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while Tables::read(&wh).rows("sword_purchases") < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "no commit within 120 s:\n{}",
            serve.logs()
        );
        // A long commit that progresses is not a stuck writer.
        let (code, health) = serve.admin_get("/healthz");
        assert_eq!(code, 200, "{health}");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(serve);
    check_exactly_once(&Tables::read(&wh), &acked);
}
