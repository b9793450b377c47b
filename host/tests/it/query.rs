//! `eventsift query`, `tables`, `ddl`, `demo` and `loadgen` with the real
//! binary, on tables the writer wrote; the DDL executed by DuckDB and by
//! PySpark (from PyPI) must give the answers `eventsift query` gives.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use eventsift_test_artifacts as artifacts;

use crate::support::*;
use crate::writer::{Proc, SEED_PLUGINS, plugin_dir, post_all};

pub const HORSES: &str = "SELECT size AS horse_size, SUM(CAST(quantity AS INTEGER)) AS num_horses FROM horse_purchases GROUP BY 1";
pub const SWORDS: &str = "SELECT year, sum(n) AS num_swords FROM (SELECT YEAR(timestamp) AS year, CAST(quantity AS INTEGER) AS n FROM sword_purchases) GROUP BY year";

/// Runs `eventsift <args>`: exit code, stdout, stderr.
pub fn eventsift(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eventsift"))
        .args(args)
        .env("EVENTSIFT_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A query's CSV output as sorted rows.
fn csv_rows(warehouse: &str, sql: &str) -> Vec<String> {
    let (code, out, err) = eventsift(&["query", "--warehouse", warehouse, "--format", "csv", sql]);
    assert_eq!(code, 0, "{sql}: {err}");
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    let header = lines.remove(0);
    lines.sort();
    lines.insert(0, header);
    lines
}

fn current_year() -> i64 {
    use eventsift::writer::table::{date_string, day_of};
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    date_string(day_of(micros))[..4].parse().unwrap()
}

/// The classic stack's two queries, exactly as written, after the seed's load.
pub fn check_classic_queries(warehouse: &str) {
    assert_eq!(
        csv_rows(warehouse, HORSES),
        [
            "horse_size,num_horses",
            "large,600",
            "medium,1100",
            "small,800"
        ]
    );
    assert_eq!(
        csv_rows(warehouse, SWORDS),
        [
            "year,num_swords".to_owned(),
            format!("{},2130", current_year())
        ]
    );
}

/// A small warehouse written by `serve`: 3 swords (quantity 6), 3 horses.
fn small_warehouse() -> tempfile::TempDir {
    let plugins = plugin_dir(SEED_PLUGINS);
    let data = tempfile::tempdir().unwrap();
    let wh = tempfile::tempdir().unwrap();
    let mut serve = Proc::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plugins",
            plugins.path().to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--warehouse",
            wh.path().to_str().unwrap(),
            "--flush-interval",
            "30s",
        ],
        &[],
    );
    let requests = [
        "/purchase_a_sword/red/2",
        "/purchase_a_sword/red/3",
        "/purchase_a_sword/blue/1",
        "/purchase_a_horse/1/small/1",
        "/purchase_a_horse/2/small/1",
        "/purchase_a_horse/3/large/2",
        "/guild/join",
    ];
    post_all(
        &serve.base,
        requests
            .iter()
            .map(|p| ("user1.comcast.com".to_owned(), (*p).to_owned()))
            .collect(),
    );
    // SIGTERM commits everything.
    assert!(serve.term().success(), "{}", serve.logs());
    wh
}

#[test]
fn query_errors_are_one_clear_line_with_exit_code_1() {
    let wh = small_warehouse();
    let w = wh.path().to_str().unwrap();
    let check = |sql: &str, expect: &str| {
        let (code, out, err) = eventsift(&["query", "--warehouse", w, sql]);
        assert_eq!(code, 1, "{sql}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{sql}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(expect),
            "{sql}: {err}"
        );
    };
    check("SELECT * FROM dragons", "dragons");
    check("SELECT wingspan FROM sword_purchases", "wingspan");
    check("SELEC 1", "SELEC");
    let (code, _, err) = eventsift(&["query", "--warehouse", "/nonexistent/wh", "SELECT 1"]);
    assert_eq!((code, err.lines().count()), (1, 1), "{err}");
    // The good ones, in every format.
    let (code, out, _) = eventsift(&[
        "query",
        "--warehouse",
        w,
        "SELECT color, SUM(quantity) AS q FROM sword_purchases GROUP BY color ORDER BY color",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("| blue  | 1 |") && out.contains("| red   | 5 |"),
        "{out}"
    );
    let (_, out, _) = eventsift(&[
        "query",
        "--warehouse",
        w,
        "--format",
        "json",
        "SELECT COUNT(*) AS n, MIN(dt) = MAX(dt) AS one_day FROM horse_purchases",
    ]);
    assert_eq!(out.trim(), r#"[{"n":3,"one_day":true}]"#);
}

#[test]
fn tables_and_ddl_golden_files_and_duckdb_and_spark_agree_with_query() {
    let wh = small_warehouse();
    let w = wh.path().to_str().unwrap();
    let (code, out, err) = eventsift(&["tables", "--warehouse", w]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "sword_purchases  3 rows, 1 files",
        "horse_purchases  3 rows, 1 files",
        "guild_actions  1 rows, 1 files",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
    assert!(out.contains("  quantity           Int64 not null"), "{out}");
    assert!(
        out.contains("  dt                 Utf8 (partition)"),
        "{out}"
    );

    let canonical = std::fs::canonicalize(wh.path()).unwrap();
    let canonical = canonical.to_str().unwrap();
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/golden");
    let mut ddls = BTreeMap::new();
    for dialect in ["hive", "trino", "spark", "duckdb"] {
        let (code, out, err) = eventsift(&["ddl", "--warehouse", w, "--dialect", dialect]);
        assert_eq!(code, 0, "{err}");
        let today = {
            use eventsift::writer::table::{date_string, day_of};
            let micros = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as i64;
            date_string(day_of(micros))
        };
        let generic = out
            .replace(canonical, "<WAREHOUSE>")
            .replace(&today, "<TODAY>");
        let golden = golden_dir.join(format!("ddl-{dialect}.sql"));
        if std::env::var_os("EVENTSIFT_BLESS").is_some() {
            std::fs::write(&golden, &generic).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (EVENTSIFT_BLESS=1 writes it)", golden.display()));
        assert_eq!(
            generic,
            want,
            "{dialect} DDL differs from {}",
            golden.display()
        );
        ddls.insert(dialect, out);
    }
    let (code, _, err) = eventsift(&[
        "ddl",
        "--warehouse",
        &format!("{}/x", hdfs_url()),
        "--dialect",
        "duckdb",
    ]);
    assert_eq!(code, 1, "{err}");

    // What eventsift query says, then DuckDB and Spark on the same files.
    let small_q = [
        (HORSES, vec!["large,2", "small,2"]),
        (SWORDS, vec![format!("{},6", current_year()).leak() as &str]),
    ];
    for (sql, want) in &small_q {
        let rows = csv_rows(w, sql);
        assert_eq!(&rows[1..], want.as_slice(), "{sql}");
    }
    let python = std::env::var("EVENTSIFT_TEST_PYTHON").expect(
        "EVENTSIFT_TEST_PYTHON is not set: run the tests with `cargo xtask test` (it creates a \
         Python environment with duckdb and pyspark)",
    );
    let script = format!(
        r#"
import sys
ddl, engine = sys.stdin.read(), sys.argv[1]
queries = [{HORSES:?}, {SWORDS:?}]
def show(rows):
    for r in sorted(",".join(str(v) for v in row) for row in rows):
        print(r)
    print("--")
if engine == "duckdb":
    import duckdb
    con = duckdb.connect()
    con.execute(ddl)
    for q in queries:
        show(con.execute(q).fetchall())
else:
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    for stmt in ddl.split(";"):
        lines = [l for l in stmt.splitlines() if l.strip() and not l.strip().startswith("--")]
        if lines:
            spark.sql("\n".join(lines))
    for q in queries:
        show(spark.sql(q).collect())
"#
    );
    let want = format!("large,2\nsmall,2\n--\n{},6\n--\n", current_year());
    for engine in ["duckdb", "spark"] {
        let t0 = Instant::now();
        let stdout = python_with_input(
            &python,
            &format!("import sys; sys.argv.append({engine:?})\n{script}"),
            &ddls[engine],
            None,
            engine,
        );
        assert_eq!(stdout, want, "{engine} answers differ from eventsift query");
        eprintln!("{engine} agreed in {:.1} s", t0.elapsed().as_secs_f64());
    }
}

#[test]
fn demo_replays_the_seed_and_prints_the_classic_answers() {
    let plugins = tempfile::tempdir().unwrap();
    for (name, path) in artifacts::BUNDLED {
        std::fs::copy(path, plugins.path().join(name)).unwrap();
    }
    let t0 = Instant::now();
    let (code, out, err) = eventsift(&["demo", "--plugins", plugins.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    eprintln!("eventsift demo took {:.1} s", t0.elapsed().as_secs_f64());
    let row = |cells: &[&str]| {
        out.lines().any(|l| {
            let got: Vec<&str> = l
                .split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            got == cells
        })
    };
    let year = current_year().to_string();
    for cells in [
        &["small", "800"][..],
        &["medium", "1100"],
        &["large", "600"],
        &[year.as_str(), "2130"],
        &["fire", "10", "10"],
        &["ice", "6", "12"],
        &["arcane", "5", "5"],
        &["nature", "3", "9"],
    ] {
        assert!(row(cells), "{cells:?} in\n{out}");
    }
    assert!(out.contains("sent 4210 in"), "{out}");
}

#[test]
fn loadgen_sends_the_mix_at_a_rate_and_summarizes() {
    let plugins = plugin_dir(SEED_PLUGINS);
    let data = tempfile::tempdir().unwrap();
    let serve = Proc::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plugins",
            plugins.path().to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--warehouse",
            data.path().join("wh").to_str().unwrap(),
        ],
        &[],
    );
    let (code, out, err) = eventsift(&[
        "loadgen",
        "--target",
        &serve.base,
        "--scenario",
        "mix",
        "--rate",
        "200",
        "--duration",
        "2s",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let sent: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        (300..=420).contains(&sent),
        "about 400 requests at 200/s for 2 s: {out}"
    );
    assert!(
        out.contains(&format!("2xx {sent}, 4xx 0, 5xx 0, no reply 0")),
        "{out}"
    );
    assert!(out.contains("latency: p50"), "{out}");
}
