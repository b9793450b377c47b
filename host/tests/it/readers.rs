//! The seed's readers for real: the DDL `eventsift ddl` prints, executed as
//! printed by a real Trino 476 (Hive connector, file metastore; local disk
//! and MiniDFS) and by PySpark with Hive support (its embedded metastore),
//! answering the seed's Presto and PySpark queries exactly as written; and
//! a new `dt=` partition appearing in both without a repair.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use eventsift::transport::embedded::EmbeddedLog;

use crate::query::{HORSES, eventsift};
use crate::writer::*;

fn trino() -> String {
    std::env::var("EVENTSIFT_TEST_TRINO").expect(
        "EVENTSIFT_TEST_TRINO is not set: run the tests with `cargo xtask test`, or start Trino \
         with `cargo xtask trino start` and set EVENTSIFT_TEST_TRINO=http://127.0.0.1:8086",
    )
}

fn q(sql: &str) -> Vec<Vec<String>> {
    eventsift_services::trino_query(&trino(), sql).unwrap_or_else(|e| panic!("{sql}: {e:#}"))
}

/// The statements of a DDL script as printed (comments dropped, `;` ends one).
fn statements(ddl: &str) -> Vec<String> {
    ddl.split(";\n")
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .map(|s| s.trim().trim_end_matches(';').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Appends `n` sword events dated `day` (UTC) to the embedded log at `log`.
fn sword_days(log: &Path, day: &str, n: usize) {
    let log = EmbeddedLog::open(log).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for _ in 0..n {
        let env = format!(
            r#"{{"event_id":"{}","event_type":"purchase_sword","plugin_version":"0.1.0","timestamp":"{day}T12:00:00.000000Z","host":"user1.comcast.com","user_agent":null,"accept":null,"color":"red","quantity":1}}"#,
            uuid::Uuid::now_v7()
        );
        rt.block_on(log.append(b"user1.comcast.com", env.as_bytes()))
            .unwrap();
    }
}

/// `serve` over `data` into `warehouse` until it has committed what the log
/// holds (and, with `seed`, the seed's load sent through the API).
fn serve_once(data: &Path, warehouse: &str, seed: bool, min_rows: f64) {
    serve_once_with(data, warehouse, seed, min_rows, &[]);
}

fn serve_once_with(data: &Path, warehouse: &str, seed: bool, min_rows: f64, env: &[(&str, &str)]) {
    let plugins = plugin_dir(SEED_PLUGINS);
    let mut p = Proc::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plugins",
            s(plugins.path()),
            "--data-dir",
            s(data),
            "--warehouse",
            warehouse,
            "--flush-interval",
            "300ms",
        ],
        env,
    );
    if seed {
        post_all(&p.base, seed_requests());
    }
    // Committed what the log holds (SIGTERM before the plugins settle
    // commits nothing: the next start reads it again).
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(p.metric("eventsift_writer_rows_total") >= min_rows
        && p.get("/readyz").0 == 200
        && p.metric("eventsift_writer_lag") == 0.0)
    {
        assert!(
            Instant::now() < deadline,
            "nothing committed in 90 s:\n{}",
            p.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(p.term().success(), "{}", p.logs());
}

/// A warehouse with the seed's load (today) and 30 swords of 2026-11-20.
fn seeded(warehouse: &str) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    sword_days(&data.path().join("log"), "2026-11-20", 30);
    serve_once(data.path(), warehouse, true, 30.0);
    data
}

fn trino_reads(warehouse: &str) {
    let data = seeded(warehouse);
    let (code, ddl, err) = eventsift(&["ddl", "--warehouse", warehouse, "--dialect", "trino"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        ddl.contains("hive.timestamp-precision=MICROSECONDS"),
        "{ddl}"
    );
    if !warehouse.starts_with("hdfs://") {
        assert!(ddl.contains("external_location = 'local:///"), "{ddl}");
    }
    // Another run's tables of the same names: dropped (external: files stay).
    for t in [
        "guild_actions",
        "horse_purchases",
        "sword_purchases",
        "default_events",
    ] {
        q(&format!("DROP TABLE IF EXISTS hive.default.{t}"));
    }
    let t0 = Instant::now();
    for statement in statements(&ddl) {
        q(&statement);
    }
    eprintln!("Trino ran the DDL in {:.1} s", t0.elapsed().as_secs_f64());
    // The seed's Presto session: `--catalog hive --schema default`.
    let mut tables: Vec<String> = q("show tables").into_iter().map(|r| r[0].clone()).collect();
    tables.sort();
    for t in ["guild_actions", "horse_purchases", "sword_purchases"] {
        assert!(tables.contains(&t.to_owned()), "{tables:?}");
    }
    let five = q("SELECT color, quantity FROM sword_purchases LIMIT 5;".trim_end_matches(';'));
    assert_eq!(five.len(), 5);
    assert!(
        five.iter()
            .all(|r| ["red", "blue", "green"].contains(&r[0].as_str())),
        "{five:?}"
    );
    let seed_horses = "SELECT\n  size AS horse_size,\n  SUM(CAST(quantity as INTEGER)) AS num_horses\nFROM horse_purchases\nGROUP BY 1";
    let mut horses = q(seed_horses);
    horses.sort();
    assert_eq!(
        horses,
        [["large", "600"], ["medium", "1100"], ["small", "800"]]
            .map(|r| r.map(str::to_owned))
            .to_vec()
    );
    assert_eq!(q(HORSES).len(), 3);
    assert_eq!(
        q("SELECT count(*) FROM sword_purchases"),
        [["1640".to_owned()]]
    );
    let years = q("SELECT year(timestamp), sum(quantity) FROM sword_purchases GROUP BY 1");
    assert_eq!(years.len(), 1);
    assert_eq!(years[0][1], "2160");

    // A new day's partition: visible without any statement.
    sword_days(&data.path().join("log"), "2026-11-25", 20);
    serve_once(data.path(), warehouse, false, 20.0);
    assert_eq!(
        q("SELECT count(*) FROM sword_purchases WHERE dt = '2026-11-25'"),
        [["20".to_owned()]]
    );
    assert_eq!(
        q("SELECT count(*) FROM sword_purchases"),
        [["1660".to_owned()]]
    );
}

/// The Delta tables of a warehouse registered in Trino's Delta Lake
/// connector by the statements `ddl --dialect trino` prints, answering the
/// seed's queries; a new day appears without any statement.
fn trino_reads_delta(warehouse: &str) {
    let delta = [("EVENTSIFT_TABLE_FORMAT", "delta")];
    let data = tempfile::tempdir().unwrap();
    sword_days(&data.path().join("log"), "2026-11-20", 30);
    serve_once_with(data.path(), warehouse, true, 30.0, &delta);
    let (code, ddl, err) = eventsift(&["ddl", "--warehouse", warehouse, "--dialect", "trino"]);
    assert_eq!(code, 0, "{err}");
    assert!(ddl.contains("connector.name=delta_lake"), "{ddl}");
    // A schema of its own per run (registered tables keep their names).
    let schema = format!("d{}", uuid::Uuid::now_v7().simple());
    let ddl = ddl
        .replace("delta.default", &format!("delta.{schema}"))
        .replace(
            "schema_name => 'default'",
            &format!("schema_name => '{schema}'"),
        );
    for statement in statements(&ddl) {
        q(&statement);
    }
    let t = |name: &str| format!("delta.{schema}.{name}");
    let mut horses = q(&format!(
        "SELECT\n  size AS horse_size,\n  SUM(CAST(quantity as INTEGER)) AS num_horses\nFROM {}\nGROUP BY 1",
        t("horse_purchases")
    ));
    horses.sort();
    assert_eq!(
        horses,
        [["large", "600"], ["medium", "1100"], ["small", "800"]]
            .map(|r| r.map(str::to_owned))
            .to_vec()
    );
    assert_eq!(
        q(&format!("SELECT count(*) FROM {}", t("sword_purchases"))),
        [["1640".to_owned()]]
    );
    let years = q(&format!(
        "SELECT year(timestamp), sum(quantity) FROM {} GROUP BY 1",
        t("sword_purchases")
    ));
    assert_eq!(years.len(), 1);
    assert_eq!(years[0][1], "2160");
    sword_days(&data.path().join("log"), "2026-11-25", 20);
    serve_once_with(data.path(), warehouse, false, 20.0, &delta);
    assert_eq!(
        q(&format!(
            "SELECT count(*) FROM {} WHERE dt = '2026-11-25'",
            t("sword_purchases")
        )),
        [["20".to_owned()]]
    );
    // Compacted: the same answers from fewer files.
    let (code, out, err) = eventsift(&["compact", "--warehouse", warehouse, "--older-than", "0s"]);
    assert_eq!(code, 0, "{err}: {out}");
    assert_eq!(
        q(&format!("SELECT count(*) FROM {}", t("sword_purchases"))),
        [["1660".to_owned()]]
    );
}

#[test]
fn trino_reads_delta_tables_as_registered_local_then_hdfs() {
    let local = tempfile::tempdir().unwrap();
    trino_reads_delta(s(local.path()));
    trino_reads_delta(&hdfs_warehouse());
}

#[test]
fn trino_reads_the_tables_as_printed_and_sees_new_partitions_local_then_hdfs() {
    // One after the other: both register the same table names.
    let wh = tempfile::tempdir().unwrap();
    trino_reads(s(wh.path()));
    trino_reads(&hdfs_warehouse());
}

#[test]
fn pyspark_with_hive_support_runs_the_spark_and_hive_ddl_and_the_seeds_query() {
    let _heavy = crate::support::heavy();
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let data = seeded(&warehouse);
    let python = std::env::var("EVENTSIFT_TEST_PYTHON").expect(
        "EVENTSIFT_TEST_PYTHON is not set: run the tests with `cargo xtask test` (it creates a \
         Python environment with duckdb and pyspark)",
    );
    let metastore = tempfile::tempdir().unwrap();
    // One PySpark session with Hive support, a Derby metastore on disk (so
    // a second session sees the tables the first one created).
    let spark = |ddl: &str, queries: &[&str], prelude: &str| -> String {
        let script = format!(
            r#"
import sys, json
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.session.timeZone", "UTC")
    .config("spark.sql.warehouse.dir", {wh:?})
    .config("spark.hadoop.javax.jdo.option.ConnectionURL", "jdbc:derby:;databaseName={db}/metastore_db;create=true")
    .enableHiveSupport().getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
ddl = sys.stdin.read()
for stmt in ddl.split(";\n"):
    lines = [l for l in stmt.splitlines() if l.strip() and not l.strip().startswith("--")]
    if lines:
        spark.sql("\n".join(lines).rstrip(";"))
{prelude}
for q in json.loads(sys.argv[1]):
    for r in sorted(",".join(str(v) for v in row) for row in spark.sql(q).collect()):
        print(r)
    print("--")
"#,
            wh = metastore.path().join("spark-warehouse").display(),
            db = metastore.path().display(),
        );
        let mut child = Command::new(&python)
            .args(["-c", &script, &serde_json::to_string(queries).unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .current_dir(metastore.path())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ddl.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let year = humantime::format_rfc3339(SystemTime::now()).to_string()[..4].to_owned();
    let seed_pyspark = "SELECT \
    year, \
    sum(num_swords_purchaed) as num_swords_purchaed \
    FROM( \
        SELECT \
            YEAR(timestamp) as year, \
            CAST(quantity AS INTEGER) AS num_swords_purchaed \
        FROM sword_purchases \
    ) \
GROUP BY year";

    // The seed's PySpark query, exactly as written, on the table folder.
    let folder = wh_dir.path().join("sword_purchases");
    let prelude = format!(
        "sword_purchases = spark.read.parquet({:?})\nsword_purchases.registerTempTable('sword_purchases')",
        folder.display().to_string()
    );
    let t0 = Instant::now();
    let out = spark("", &[seed_pyspark], &prelude);
    assert_eq!(
        out,
        format!("{year},2160\n--\n"),
        "the seed's PySpark query"
    );
    eprintln!(
        "PySpark ran the seed's query in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Each dialect's DDL as printed, in its own database, then the seed's
    // Presto query and the PySpark one on the registered tables.
    for dialect in ["spark", "hive"] {
        let (code, ddl, err) = eventsift(&["ddl", "--warehouse", &warehouse, "--dialect", dialect]);
        assert_eq!(code, 0, "{err}");
        let ddl = format!("CREATE DATABASE IF NOT EXISTS {dialect};\nUSE {dialect};\n{ddl}");
        let out = spark(&ddl, &[HORSES, seed_pyspark], "");
        assert_eq!(
            out,
            format!("large,600\nmedium,1100\nsmall,800\n--\n{year},2160\n--\n"),
            "{dialect}"
        );
    }

    // A new day: the spark tables see it in the next session, no repair.
    sword_days(&data.path().join("log"), "2026-11-25", 20);
    serve_once(data.path(), &warehouse, false, 20.0);
    let out = spark(
        "",
        &["SELECT count(*) FROM spark.sword_purchases WHERE dt = '2026-11-25'"],
        "",
    );
    assert_eq!(out, "20\n--\n");
}
