//! The stream writer end to end, with the real binary: the seed's load on
//! the embedded default, on Kafka + MiniDFS and on Kafka + local disk; the
//! commit failpoints and random kill -9s with exactly-once checks; two
//! writers in one group; malformed records; plugin drop-in and hot swap.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use eventsift::writer::commit::CommitRecord;
use eventsift::writer::warehouse::Warehouse;
use eventsift_test_artifacts as artifacts;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::support::*;

pub const SEED_PLUGINS: &[&str] = &["sword.wasm", "horse.wasm", "guild.wasm", "default.wasm"];

/// A daemon process of the real binary.
pub struct Proc {
    child: Child,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
    admin: Arc<Mutex<Option<String>>>,
}

/// Runs `eventsift <args>` to its exit (at most `timeout`): its status and
/// its log.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> (ExitStatus, String) {
    let mut child = command(args, env).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut out);
        out
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "eventsift {args:?} did not exit within {timeout:?}:\n{}",
                reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, reader.join().unwrap())
}

/// `eventsift <args>` with its log on a pipe, `env` set after the defaults.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    program(env!("CARGO_BIN_EXE_eventsift"), args, env)
}

/// `program <args>` as [`command`] sets it up.
fn program(program: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("EVENTSIFT_LOG", "info")
        // Tests run daemons side by side: no fixed admin port.
        .env("EVENTSIFT_ADMIN_LISTEN", "127.0.0.1:0")
        .env_remove("EVENTSIFT_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Proc {
    /// Starts `eventsift <args>` and waits for its HTTP server.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
        Self::spawned(command(args, env), &format!("{args:?}"))
    }

    /// Starts `sh -c <script>` (which execs eventsift, under limits the
    /// script sets) and waits for its HTTP server.
    pub fn start_sh(script: &str, env: &[(&str, &str)]) -> Proc {
        Self::spawned(program("sh", &["-c", script], env), script)
    }

    fn spawned(mut cmd: Command, what: &str) -> Proc {
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let admin = Arc::new(Mutex::new(None));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let (log, admin) = (log.clone(), admin.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(at) = line.find("listening on http://") {
                        // Up to the URL's end (a JSON log line goes on).
                        let url: String = line[at + "listening on ".len()..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || ":/.[]".contains(*c))
                            .collect();
                        if line.contains("admin listening on") {
                            *admin.lock().unwrap() = Some(url.clone());
                        }
                        let _ = tx.send(url);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let base = match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(base) => base,
            Err(_) => panic!(
                "eventsift {what} did not start within 90 s:\n{}",
                log.lock().unwrap().join("\n")
            ),
        };
        Proc {
            child,
            base,
            log,
            admin,
        }
    }

    /// The admin listener's base URL (the writer's only listener; for
    /// `serve` and `api` the second one), waiting for it to be logged.
    pub fn admin(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(a) = self.admin.lock().unwrap().clone() {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no admin listener logged:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the admin listener.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{path}", self.admin()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit.
    pub fn term(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("no exit within 60 s of SIGTERM:\n{}", self.logs()))
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{path}", self.base))
    }

    /// The sum of the samples of metric `name` on `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics");
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small blocking GET (the tests' reqwest has no blocking feature).
pub(crate) fn http_get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::get(url).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

pub fn plugin_dir(bundled: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, path) in artifacts::BUNDLED
        .iter()
        .filter(|(n, _)| bundled.contains(n))
    {
        drop_in(dir.path(), name, path, SETTLED);
    }
    dir
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// POSTs `requests` (Host, path) with 32 clients; returns the acknowledged ids.
pub fn post_all(base: &str, requests: Vec<(String, String)>) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (requests, next, http, base) = (
                requests.clone(),
                next.clone(),
                http.clone(),
                base.to_owned(),
            );
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((host, path)) = requests.get(i) else {
                        break;
                    };
                    let resp = http
                        .post(format!("{base}{path}"))
                        .header("Host", host)
                        .header("User-Agent", "ApacheBench/2.3")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200, "POST {path}");
                    ids.push(resp.headers()["x-event-id"].to_str().unwrap().to_owned());
                }
                ids
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.extend(t.await.unwrap());
        }
        ids
    })
}

/// The seed's generate_data.sh as (Host, path) pairs, all POST.
pub(crate) fn seed_requests() -> Vec<(String, String)> {
    eventsift::loadgen::seed_requests()
        .into_iter()
        .map(|r| (r.host, r.path))
        .collect()
}

/// Every committed table of a warehouse, read with the parquet crate.
#[derive(Default)]
pub struct Tables {
    batches: HashMap<String, Vec<RecordBatch>>,
    files: HashMap<String, Vec<String>>,
}

impl Tables {
    /// Reads the committed files: in a Delta table, those its log's latest
    /// version names; otherwise every file in the `dt=` folders.
    pub fn read(wh: &Warehouse) -> Tables {
        let mut t = Tables::default();
        let mut live: HashMap<String, Option<HashSet<String>>> = HashMap::new();
        for (path, _) in wh.walk("").unwrap() {
            if path
                .split('/')
                .any(|c| c.starts_with('_') || c.starts_with('.'))
            {
                continue;
            }
            assert!(path.ends_with(".parquet"), "unexpected file {path}");
            let table = path.split('/').next().unwrap().to_owned();
            let delta = live
                .entry(table.clone())
                .or_insert_with(|| delta_files(wh, &table));
            if let Some(files) = delta
                && !files.contains(&path[table.len() + 1..])
            {
                continue;
            }
            let data = bytes::Bytes::from(wh.read(&path).unwrap());
            let reader = ParquetRecordBatchReaderBuilder::try_new(data)
                .unwrap()
                .build()
                .unwrap();
            for b in reader {
                t.batches.entry(table.clone()).or_default().push(b.unwrap());
            }
            t.files.entry(table).or_default().push(path);
        }
        t
    }

    pub fn rows(&self, table: &str) -> usize {
        self.batches
            .get(table)
            .map_or(0, |bs| bs.iter().map(|b| b.num_rows()).sum())
    }

    /// Values of a text column (null as "").
    pub fn strings(&self, table: &str, column: &str) -> Vec<String> {
        let mut out = Vec::new();
        for b in self.batches.get(table).into_iter().flatten() {
            let Some(col) = b.column_by_name(column) else {
                out.extend(std::iter::repeat_n(String::new(), b.num_rows()));
                continue;
            };
            // Files delta-rs rewrote (a delete) hold string views.
            let col = datafusion::arrow::compute::cast(col, &arrow_schema::DataType::Utf8).unwrap();
            let col = col.as_string::<i32>();
            for i in 0..col.len() {
                out.push(if col.is_null(i) {
                    String::new()
                } else {
                    col.value(i).to_owned()
                });
            }
        }
        out
    }

    /// Values of a timestamp column in µs (None for null or absent).
    pub fn timestamps(&self, table: &str, column: &str) -> Vec<Option<i64>> {
        let mut out = Vec::new();
        for b in self.batches.get(table).into_iter().flatten() {
            let Some(col) = b.column_by_name(column) else {
                out.extend(std::iter::repeat_n(None, b.num_rows()));
                continue;
            };
            let col = col.as_primitive::<arrow_array::types::TimestampMicrosecondType>();
            for i in 0..col.len() {
                out.push((!col.is_null(i)).then(|| col.value(i)));
            }
        }
        out
    }

    pub fn ints(&self, table: &str, column: &str) -> Vec<i64> {
        let mut out = Vec::new();
        for b in self.batches.get(table).into_iter().flatten() {
            let col = b
                .column_by_name(column)
                .unwrap()
                .as_primitive::<Int64Type>();
            out.extend(col.values().iter().copied());
        }
        out
    }

    /// SUM(value) GROUP BY key.
    fn sum_by(&self, table: &str, key: &str, value: &str) -> HashMap<String, i64> {
        let mut out = HashMap::new();
        for (k, v) in self
            .strings(table, key)
            .into_iter()
            .zip(self.ints(table, value))
        {
            *out.entry(k).or_default() += v;
        }
        out
    }

    /// How many times each event id appears across the plugin tables.
    pub fn ids(&self) -> HashMap<String, usize> {
        let mut out: HashMap<String, usize> = HashMap::new();
        for table in self.batches.keys().filter(|t| *t != "rejected_events") {
            for id in self.strings(table, "event_id") {
                *out.entry(id).or_default() += 1;
            }
        }
        out
    }
}

/// The files of Delta table `table`'s latest version (relative to the
/// table), or `None` when it is not a Delta table.
pub(crate) fn delta_files(wh: &Warehouse, table: &str) -> Option<HashSet<String>> {
    eventsift::writer::delta::live_files(wh, table).unwrap()
}

/// Polls the warehouse until `done` holds (at most `timeout`).
pub(crate) fn wait_tables(
    wh: &Warehouse,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Tables) -> bool,
) -> Tables {
    let deadline = Instant::now() + timeout;
    loop {
        let t = Tables::read(wh);
        if done(&t) {
            return t;
        }
        let counts: Vec<_> = t.batches.keys().map(|k| (k.clone(), t.rows(k))).collect();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; tables: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// [`wait_tables`], printing `p`'s log when it times out.
pub(crate) fn wait_tables_of(
    wh: &Warehouse,
    what: &str,
    timeout: Duration,
    p: &Proc,
    done: impl Fn(&Tables) -> bool,
) -> Tables {
    let deadline = Instant::now() + timeout;
    loop {
        let t = Tables::read(wh);
        if done(&t) {
            return t;
        }
        let counts: Vec<_> = t.batches.keys().map(|k| (k.clone(), t.rows(k))).collect();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; tables: {counts:?}; log:\n{}",
            p.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub(crate) fn check_seed_sums(t: &Tables) {
    let horses = t.sum_by("horse_purchases", "size", "quantity");
    assert_eq!(
        horses,
        HashMap::from([
            ("small".into(), 800),
            ("medium".into(), 1100),
            ("large".into(), 600)
        ])
    );
    assert_eq!(
        t.ints("sword_purchases", "quantity").iter().sum::<i64>(),
        2130
    );
    let mut guild: HashMap<String, usize> = HashMap::new();
    for a in t.strings("guild_actions", "action") {
        *guild.entry(a).or_default() += 1;
    }
    assert_eq!(
        guild,
        HashMap::from([("join".into(), 200), ("leave".into(), 100)])
    );
    assert_eq!(t.rows("rejected_events"), 0);
}

pub(crate) fn seed_landed(t: &Tables) -> bool {
    t.rows("sword_purchases") >= 1610
        && t.rows("horse_purchases") >= 2300
        && t.rows("guild_actions") >= 300
}

/// Each acknowledged id exactly once across the tables, and nothing else.
pub(crate) fn check_exactly_once(t: &Tables, acked: &[String]) {
    let ids = t.ids();
    let dup: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dup.is_empty(), "duplicated ids, e.g. {dup:?}");
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !ids.contains_key(*id))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing ids, e.g. {missing:?}");
    assert_eq!(ids.len(), acked.len());
}

#[test]
fn embedded_serve_lands_the_seed_load_with_exact_sums() {
    let plugins = plugin_dir(SEED_PLUGINS);
    let data = tempfile::tempdir().unwrap();
    let wh_dir = tempfile::tempdir().unwrap();
    let mut serve = Proc::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plugins",
            s(plugins.path()),
            "--data-dir",
            s(data.path()),
            "--warehouse",
            s(wh_dir.path()),
            "--flush-interval",
            "1s",
        ],
        &[],
    );
    let acked = post_all(&serve.base, seed_requests());
    assert_eq!(acked.len(), 4210);
    let wh = Warehouse::open(s(wh_dir.path())).unwrap();
    let t = wait_tables(&wh, "the seed load", Duration::from_secs(60), seed_landed);
    check_seed_sums(&t);
    check_exactly_once(&t, &acked);
    crate::query::check_classic_queries(s(wh_dir.path()));
    // Hive-style partitions by UTC day, zstd Parquet, readers' names only.
    for f in t.files.values().flatten() {
        let parts: Vec<_> = f.split('/').collect();
        assert_eq!(parts.len(), 3, "{f}");
        assert!(parts[1].starts_with("dt=20") && parts[1].len() == 13, "{f}");
    }
    let meta = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
        wh.read(&t.files["sword_purchases"][0]).unwrap(),
    ))
    .unwrap();
    let col = meta.metadata().row_group(0).column(0);
    assert_eq!(
        col.compression(),
        parquet::basic::Compression::ZSTD(Default::default())
    );
    let ts = meta
        .schema()
        .field_with_name("timestamp")
        .unwrap()
        .data_type()
        .clone();
    assert_eq!(
        ts,
        arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert!(serve.term().success(), "{}", serve.logs());
    // The embedded log is truncated below what the writer committed.
    let log = eventsift::transport::embedded::EmbeddedLog::open(&data.path().join("log")).unwrap();
    assert!(log.read(0, 10_000).unwrap().len() <= 1);
}

/// Runs a future to completion on a runtime of its own.
pub(crate) fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Creates topic `topic` with `partitions` partitions on `bootstrap`.
pub(crate) fn create_topic_on(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let res = block(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))
    .unwrap();
    res.into_iter().for_each(|r| {
        r.unwrap();
    });
}

/// Creates a topic with `partitions` partitions on the shared broker.
pub(crate) fn create_topic(partitions: i32) -> String {
    let topic = unique("writer");
    create_topic_on(&kafka_bootstrap(), &topic, partitions);
    topic
}

/// `$local` and `$hdfs` tests running `$run(warehouse)` on local disk and
/// on MiniDFS.
macro_rules! on_local_disk_and_hdfs {
    ($local:ident, $hdfs:ident, $run:path) => {
        #[test]
        fn $local() {
            let wh = tempfile::tempdir().unwrap();
            $run($crate::writer::s(wh.path()));
        }

        #[test]
        fn $hdfs() {
            $run(&$crate::writer::hdfs_warehouse());
        }
    };
}
pub(crate) use on_local_disk_and_hdfs;

/// A sword envelope as the API publishes it.
pub(crate) fn sword_envelope(id: &str, host: &str, color: &str, quantity: i64) -> String {
    let ts = humantime::format_rfc3339_micros(std::time::SystemTime::now());
    format!(
        r#"{{"event_id":"{id}","event_type":"purchase_sword","plugin_version":"0.1.0","timestamp":"{ts}","host":"{host}","user_agent":null,"accept":null,"color":"{color}","quantity":{quantity}}}"#
    )
}

pub(crate) fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.max.bytes", "4000000")
        .create()
        .unwrap()
}

/// Produces `n` sword envelopes (keys spread over the partitions); returns their ids.
pub(crate) fn produce_swords(topic: &str, n: usize, pace: Option<Duration>) -> Vec<String> {
    let p = producer();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = uuid::Uuid::now_v7().to_string();
        let host = format!("user{}", i % 97);
        let payload = sword_envelope(&id, &host, ["red", "blue", "green"][i % 3], (i % 5) as i64);
        loop {
            match p.send(BaseRecord::to(topic).key(&host).payload(&payload)) {
                Ok(()) => break,
                Err((_, _)) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        ids.push(id);
        if let Some(pace) = pace
            && i % 1000 == 999
        {
            std::thread::sleep(pace);
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
    ids
}

pub(crate) fn writer_args<'a>(
    topic: &'a str,
    group: &'a str,
    warehouse: &'a str,
    plugins: &'a Path,
    data: &'a Path,
) -> Vec<&'a str> {
    vec![
        "writer",
        "--listen",
        "127.0.0.1:0",
        "--kafka",
        bootstrap_static(),
        "--topic",
        topic,
        "--group",
        group,
        "--warehouse",
        warehouse,
        "--plugins",
        s(plugins),
        "--data-dir",
        s(data),
        "--flush-interval",
        "500ms",
    ]
}

/// `eventsift api` on the test broker's `topic`.
pub(crate) fn api_args<'a>(topic: &'a str, plugins: &'a Path, data: &'a Path) -> Vec<&'a str> {
    vec![
        "api",
        "--listen",
        "127.0.0.1:0",
        "--kafka",
        bootstrap_static(),
        "--topic",
        topic,
        "--plugins",
        s(plugins),
        "--data-dir",
        s(data),
    ]
}

pub(crate) fn bootstrap_static() -> &'static str {
    static B: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    B.get_or_init(kafka_bootstrap)
}

pub(crate) fn hdfs_warehouse() -> String {
    format!("{}/{}", hdfs_url(), unique("wh"))
}

/// The seed's load through `api` on Kafka into a writer's `warehouse`, then
/// spellbook dropped into the running pair.
fn kafka_seed_load(warehouse: &str) {
    let topic = create_topic(4);
    let group = unique("g");
    let plugins = plugin_dir(SEED_PLUGINS);
    let (api_data, writer_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut api = Proc::start(&api_args(&topic, plugins.path(), api_data.path()), &[]);
    let mut writer = Proc::start(
        &writer_args(
            &topic,
            &group,
            warehouse,
            plugins.path(),
            writer_data.path(),
        ),
        &[],
    );
    let mut acked = post_all(&api.base, seed_requests());
    let wh = Warehouse::open(warehouse).unwrap();
    let t = wait_tables(&wh, "the seed load", Duration::from_secs(90), seed_landed);
    check_seed_sums(&t);
    check_exactly_once(&t, &acked);
    crate::query::check_classic_queries(warehouse);

    // Spellbook dropped into the running pair: its events land in its table.
    drop_in(
        plugins.path(),
        "spellbook.wasm",
        artifacts::SPELLBOOK,
        Duration::ZERO,
    );
    let api_admin = api.admin();
    wait_until("the spellbook route on the API", || {
        http_get(&format!("{api_admin}/plugins"))
            .1
            .contains("purchase_spellbook")
    });
    let books: Vec<(String, String)> = (0..60)
        .map(|i| {
            (
                format!("mage{i}"),
                format!("/purchase_a_spellbook/{}/2", ["fire", "ice"][i % 2]),
            )
        })
        .collect();
    acked.extend(post_all(&api.base, books));
    let t = wait_tables(&wh, "spellbook rows", Duration::from_secs(90), |t| {
        t.rows("spellbook_purchases") >= 60
    });
    assert_eq!(t.rows("spellbook_purchases"), 60);
    assert_eq!(
        t.ints("spellbook_purchases", "quantity")
            .iter()
            .sum::<i64>(),
        120
    );
    assert_eq!(
        t.rows("rejected_events"),
        0,
        "{:?}",
        t.strings("rejected_events", "reason")
    );
    check_exactly_once(&t, &acked);

    let (code, health) = writer.get("/healthz");
    assert_eq!(code, 200, "{health}");
    let (_, metrics) = writer.admin_get("/metrics");
    for m in [
        "eventsift_writer_rows_total{table=\"spellbook_purchases\"} 60",
        "eventsift_writer_commit_seconds",
        "eventsift_writer_lag",
    ] {
        assert!(metrics.contains(m), "{m} in\n{metrics}");
    }
    assert!(writer.term().success(), "{}", writer.logs());
    assert!(api.term().success(), "{}", api.logs());
}

#[test]
fn kafka_hdfs_lands_the_seed_load_and_a_dropped_in_plugin() {
    kafka_seed_load(&hdfs_warehouse());
}

#[test]
fn kafka_local_lands_the_seed_load_and_a_dropped_in_plugin() {
    let wh = tempfile::tempdir().unwrap();
    kafka_seed_load(s(wh.path()));
}

/// The commit records of a warehouse.
pub(crate) fn commit_records(wh: &Warehouse) -> Vec<CommitRecord> {
    wh.walk("_eventsift/commits")
        .unwrap()
        .into_iter()
        .filter(|(p, _)| p.ends_with(".json") && !p.rsplit('/').next().unwrap().starts_with('.'))
        .map(|(p, _)| serde_json::from_slice(&wh.read(&p).unwrap()).unwrap())
        .collect()
}

#[test]
fn each_commit_failpoint_recovers_exactly_once_on_hdfs() {
    failpoints(&hdfs_warehouse(), Format::Hive);
}

#[test]
fn each_commit_failpoint_recovers_exactly_once_on_local_disk() {
    let wh = tempfile::tempdir().unwrap();
    failpoints(s(wh.path()), Format::Hive);
}

#[test]
fn each_commit_failpoint_recovers_exactly_once_on_delta_on_hdfs() {
    failpoints(&hdfs_warehouse(), Format::Delta);
}

#[test]
fn each_commit_failpoint_recovers_exactly_once_on_delta_on_local_disk() {
    let wh = tempfile::tempdir().unwrap();
    failpoints(s(wh.path()), Format::Delta);
}

/// The table format a test's writers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Hive,
    Delta,
}

impl Format {
    /// The environment a daemon of this format gets.
    pub(crate) fn env(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Format::Hive => vec![],
            Format::Delta => vec![("EVENTSIFT_TABLE_FORMAT", "delta")],
        }
    }
}

fn failpoints(warehouse: &str, format: Format) {
    let warehouse = warehouse.to_owned();
    let topic = create_topic(4);
    let group = unique("g");
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    let mut points = vec!["after_tmp", "after_record", "after_rename"];
    if format == Format::Delta {
        points.push("after_delta_table");
    }
    for failpoint in points {
        acked.extend(produce_swords(&topic, 3000, None));
        let mut env = format.env();
        env.push(("EVENTSIFT_FAILPOINT", failpoint));
        let mut w = Proc::start(
            &writer_args(&topic, &group, &warehouse, plugins.path(), data.path()),
            &env,
        );
        let status = w
            .wait(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{failpoint} did not fire:\n{}", w.logs()));
        assert!(!status.success(), "{failpoint}: {status}");
        assert!(
            w.logs()
                .contains(&format!("failpoint {failpoint}: aborting")),
            "{}",
            w.logs()
        );
    }
    let mut w = Proc::start(
        &writer_args(&topic, &group, &warehouse, plugins.path(), data.path()),
        &format.env(),
    );
    let wh = Warehouse::open(&warehouse).unwrap();
    let t = wait_tables(&wh, "every event", Duration::from_secs(90), |t| {
        t.rows("sword_purchases") >= acked.len()
    });
    check_exactly_once(&t, &acked);
    assert!(w.term().success());
    // The chain of ranges per partition has no gap and no overlap.
    let mut by_partition: HashMap<i32, Vec<(i64, i64)>> = HashMap::new();
    for r in commit_records(&wh) {
        by_partition
            .entry(r.partition)
            .or_default()
            .push((r.start, r.end));
    }
    for (p, mut ranges) in by_partition {
        ranges.sort();
        for w in ranges.windows(2) {
            assert_eq!(w[0].1, w[1].0, "partition {p}: {ranges:?}");
        }
    }
}

/// A tiny deterministic random source (xorshift), seeded from the clock.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("random kill seed: {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn kill_9_at_random_moments_while_200k_events_flow_exactly_once_on_hdfs() {
    random_kills(&hdfs_warehouse(), Format::Hive);
}

#[test]
fn kill_9_at_random_moments_while_200k_events_flow_exactly_once_on_local_disk() {
    let wh = tempfile::tempdir().unwrap();
    random_kills(s(wh.path()), Format::Hive);
}

#[test]
fn kill_9_at_random_moments_while_200k_events_flow_exactly_once_on_delta_on_hdfs() {
    random_kills(&hdfs_warehouse(), Format::Delta);
}

#[test]
fn kill_9_at_random_moments_while_200k_events_flow_exactly_once_on_delta_on_local_disk() {
    let wh = tempfile::tempdir().unwrap();
    random_kills(s(wh.path()), Format::Delta);
}

fn random_kills(warehouse: &str, format: Format) {
    let _heavy = crate::support::heavy();
    let warehouse = warehouse.to_owned();
    let topic = create_topic(4);
    let group = unique("g");
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let producer = {
        let topic = topic.clone();
        std::thread::spawn(move || produce_swords(&topic, 200_000, Some(Duration::from_millis(40))))
    };
    let mut rng = Rng::new();
    let args = writer_args(&topic, &group, &warehouse, plugins.path(), data.path());
    for _ in 0..5 {
        let mut w = Proc::start(&args, &format.env());
        std::thread::sleep(Duration::from_millis(1000 + rng.below(4000)));
        w.kill9();
    }
    let acked = producer.join().unwrap();
    let mut w = Proc::start(&args, &format.env());
    let wh = Warehouse::open(&warehouse).unwrap();
    let t = wait_tables(&wh, "200,000 events", Duration::from_secs(240), |t| {
        t.rows("sword_purchases") >= acked.len()
    });
    check_exactly_once(&t, &acked);
    assert!(w.term().success(), "{}", w.logs());
}

#[test]
fn two_writers_in_one_group_one_stopped_mid_run_exactly_once() {
    two_writers(Format::Hive);
}

/// Two writers commit to the same Delta tables at once: their commits race
/// on each table's log (different app ids: both land).
#[test]
fn two_writers_in_one_group_one_stopped_mid_run_exactly_once_on_delta() {
    two_writers(Format::Delta);
}

fn two_writers(format: Format) {
    let topic = create_topic(4);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let plugins = plugin_dir(&["sword.wasm"]);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let producer = {
        let topic = topic.clone();
        std::thread::spawn(move || produce_swords(&topic, 60_000, Some(Duration::from_millis(50))))
    };
    let mut a = Proc::start(
        &writer_args(&topic, &group, &warehouse, plugins.path(), da.path()),
        &format.env(),
    );
    let mut b = Proc::start(
        &writer_args(&topic, &group, &warehouse, plugins.path(), db.path()),
        &format.env(),
    );
    let wh = Warehouse::open(&warehouse).unwrap();
    // Both own partitions and commit before b stops.
    wait_until("both writers to commit", || {
        let writers: HashSet<String> = commit_records(&wh).into_iter().map(|r| r.writer).collect();
        writers.len() >= 2
    });
    assert!(b.term().success(), "{}", b.logs());
    let acked = producer.join().unwrap();
    let t = wait_tables(&wh, "every event", Duration::from_secs(120), |t| {
        t.rows("sword_purchases") >= acked.len()
    });
    check_exactly_once(&t, &acked);
    assert!(a.term().success(), "{}", a.logs());
}

/// `writer --exit-at-end`, a drain: on an empty topic it exits at once; on
/// a filled one it lands every record exactly once and exits 0; a second
/// drain after more records resumes from the warehouse and adds only those.
#[test]
fn a_drain_lands_every_record_once_and_exits_at_the_end() {
    let topic = create_topic(4);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let drain = || {
        let mut args = writer_args(&topic, &group, &warehouse, plugins.path(), data.path());
        args.push("--exit-at-end");
        let (status, log) = run_to_exit(&args, &[], Duration::from_secs(120));
        assert!(status.success(), "{log}");
        assert!(log.contains("routed up to its end"), "{log}");
        log
    };
    drain();
    let wh = Warehouse::open(&warehouse).unwrap();
    assert_eq!(Tables::read(&wh).rows("sword_purchases"), 0);

    let mut acked = produce_swords(&topic, 20_000, None);
    let log = drain();
    for p in 0..4 {
        assert!(
            log.contains(&format!("partition {p} taken at position 0")),
            "{log}"
        );
    }
    let t = Tables::read(&wh);
    assert_eq!(t.rows("sword_purchases"), acked.len());
    check_exactly_once(&t, &acked);

    acked.extend(produce_swords(&topic, 3_000, None));
    let log = drain();
    assert!(
        (0..4).any(|p| !log.contains(&format!("partition {p} taken at position 0"))),
        "resumed from the warehouse: {log}"
    );
    let t = Tables::read(&wh);
    assert_eq!(t.rows("sword_purchases"), acked.len());
    check_exactly_once(&t, &acked);
}

/// A drain fails (non-zero, saying why) when its final commit does not
/// reach the end it read, and when rows cannot be encoded (the range is
/// not committed: its positions must not move past rows not written, and
/// the partition stops); a drain after either lands every record once.
#[test]
fn a_drain_whose_commits_or_encoding_fail_exits_non_zero_and_the_next_lands_everything_once() {
    let topic = create_topic(1);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let acked = produce_swords(&topic, 5_000, None);
    let drain = |failpoint: Option<&str>| {
        let mut args = writer_args(&topic, &group, &warehouse, plugins.path(), data.path());
        args.push("--exit-at-end");
        let env: Vec<(&str, &str)> = failpoint
            .map(|f| vec![("EVENTSIFT_FAILPOINT", f)])
            .unwrap_or_default();
        run_to_exit(&args, &env, Duration::from_secs(120))
    };
    // Every publish is lost: the final commit gives up after its grace.
    let (status, log) = drain(Some("publish_lost@1..1000000"));
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("did not reach the end it read") && log.contains("partition 0"),
        "{log}"
    );
    let wh = Warehouse::open(&warehouse).unwrap();
    assert_eq!(Tables::read(&wh).rows("sword_purchases"), 0);
    // The first chunk's rows cannot be encoded: nothing past them commits.
    let (status, log) = drain(Some("encode_fail@1"));
    assert!(!status.success(), "{log}");
    assert!(log.contains("cannot encode"), "{log}");
    assert!(log.contains("are not committed"), "{log}");
    let committed = Tables::read(&wh).rows("sword_purchases");
    assert!(committed < acked.len(), "{committed} rows");
    let (status, log) = drain(None);
    assert!(status.success(), "{log}");
    let t = Tables::read(&wh);
    assert_eq!(t.rows("sword_purchases"), acked.len());
    check_exactly_once(&t, &acked);
}

/// When stopping interrupts routing a chunk (its table's schema cannot be
/// read: failpoint `admit_fail`), the chunk is read again, never taken for
/// a gap: with `--accept-retention-gaps` the sword events routed after the
/// horses would otherwise have skipped them. After a restart every event
/// lands once.
#[test]
fn a_chunk_not_routed_while_stopping_is_read_again_not_skipped_as_a_gap() {
    let plugins = plugin_dir(&["sword.wasm", "horse.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let wh_dir = tempfile::tempdir().unwrap();
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--plugins",
        s(plugins.path()),
        "--data-dir",
        s(data.path()),
        "--warehouse",
        s(wh_dir.path()),
        "--flush-interval",
        "300ms",
        "--accept-retention-gaps",
    ];
    let swords = |n: usize, from: usize| -> Vec<(String, String)> {
        (from..from + n)
            .map(|i| {
                (
                    format!("p{i}.example"),
                    format!("/purchase_a_sword/red/{}", i % 5),
                )
            })
            .collect()
    };
    let mut serve = Proc::start(&args, &[("EVENTSIFT_FAILPOINT", "admit_fail@2..")]);
    let mut acked = post_all(&serve.base, swords(50, 0));
    let wh = Warehouse::open(s(wh_dir.path())).unwrap();
    wait_until("the first swords committed", || {
        Tables::read(&wh).rows("sword_purchases") == 50
    });
    // The horses' table schema cannot be read: the router waits on them.
    let horses: Vec<(String, String)> = (0..30)
        .map(|i| {
            (
                format!("h{i}.example"),
                "/purchase_a_horse/1/small/1".to_owned(),
            )
        })
        .collect();
    acked.extend(post_all(&serve.base, horses));
    std::thread::sleep(Duration::from_millis(500));
    acked.extend(post_all(&serve.base, swords(50, 100)));
    std::thread::sleep(Duration::from_millis(500));
    serve.term();
    assert!(
        !serve.logs().contains("skipped (--accept-retention-gaps)"),
        "{}",
        serve.logs()
    );
    let serve = Proc::start(&args, &[]);
    wait_until("every event committed", || {
        let t = Tables::read(&wh);
        t.rows("sword_purchases") + t.rows("horse_purchases") >= acked.len()
    });
    drop(serve);
    let t = Tables::read(&wh);
    check_exactly_once(&t, &acked);
}

#[test]
fn malformed_records_go_to_rejected_events_and_the_writer_keeps_running() {
    let topic = create_topic(1);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let mut args = writer_args(
        &topic,
        &group,
        s(wh_dir.path()),
        plugins.path(),
        data.path(),
    );
    args.extend(["--plugin-wait", "1s"]);
    let mut w = Proc::start(&args, &[]);

    let big = format!(
        r#"{{"event_id":"big","event_type":"purchase_sword","timestamp":"2026-11-28T18:00:00.000000Z","color":"{}","quantity":1}}"#,
        "x".repeat(2 << 20)
    );
    let ok_id = uuid::Uuid::now_v7().to_string();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"not json at all".to_vec(), "decode", "not a JSON object"),
        (
            b"{\"event_type\":\"purchase_sword\",\"x\":\"\xff\xfe\"}".to_vec(),
            "decode",
            "not valid UTF-8",
        ),
        (b"[1,2,3]".to_vec(), "decode", "not a JSON object"),
        (
            b"{\"event_type\":\"purchase_sword\"}".to_vec(),
            "decode",
            "missing field `event_id`",
        ),
        (
            sword_envelope("u1", "h", "red", 1)
                .replace("purchase_sword", "purchase_dragon")
                .into_bytes(),
            "route",
            "no plugin owns event type \"purchase_dragon\"",
        ),
        (
            sword_envelope("w1", "h", "red", 1)
                .replace(":1}", ":\"two\"}")
                .into_bytes(),
            "plugin",
            "quantity",
        ),
        (big.clone().into_bytes(), "decode", "exceeds the"),
        (sword_envelope(&ok_id, "h", "red", 7).into_bytes(), "", ""),
    ];
    let p = producer();
    for (payload, _, _) in &cases {
        p.send(BaseRecord::<(), _>::to(&topic).payload(payload))
            .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();

    let wh = Warehouse::open(s(wh_dir.path())).unwrap();
    let t = wait_tables(&wh, "the rejections", Duration::from_secs(60), |t| {
        t.rows("rejected_events") >= 7 && t.rows("sword_purchases") >= 1
    });
    assert_eq!(t.strings("sword_purchases", "event_id"), [ok_id]);
    let stages = t.strings("rejected_events", "stage");
    let reasons = t.strings("rejected_events", "reason");
    let offsets: Vec<i64> = t.batches["rejected_events"]
        .iter()
        .flat_map(|b| {
            b.column_by_name("source_offset")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    let lengths = t.ints("rejected_events", "raw_length");
    let shas = t.strings("rejected_events", "raw_sha256");
    for (i, (payload, stage, reason)) in cases.iter().enumerate().take(7) {
        let row = offsets
            .iter()
            .position(|&o| o == i as i64)
            .unwrap_or_else(|| panic!("case {i} not rejected"));
        assert_eq!(stages[row], *stage, "case {i}: {}", reasons[row]);
        assert!(
            reasons[row].contains(reason),
            "case {i}: {:?} lacks {reason:?}",
            reasons[row]
        );
        assert_eq!(lengths[row], payload.len() as i64);
        assert_eq!(
            shas[row],
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(payload))
        );
    }
    // The 2 MiB record is stored cut at 1 MiB.
    let raws: Vec<usize> = t.batches["rejected_events"]
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name("raw").unwrap().as_binary::<i32>();
            (0..c.len()).map(|i| c.value(i).len()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(raws.iter().max(), Some(&(1 << 20)));
    let (code, _) = w.get("/healthz");
    assert_eq!(code, 200);
    let (_, metrics) = w.admin_get("/metrics");
    assert!(
        metrics.contains("eventsift_writer_rejected_total{reason=\"decode\"} 5"),
        "{metrics}"
    );
    assert!(w.term().success());
}

#[test]
fn hot_swap_while_events_flow_each_event_once_and_schemas_evolve() {
    let topic = create_topic(2);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let mut w = Proc::start(
        &writer_args(
            &topic,
            &group,
            s(wh_dir.path()),
            plugins.path(),
            data.path(),
        ),
        &[],
    );
    let producer = {
        let topic = topic.clone();
        std::thread::spawn(move || produce_swords(&topic, 40_000, Some(Duration::from_millis(100))))
    };
    std::thread::sleep(Duration::from_millis(1500));
    drop_in(
        plugins.path(),
        "sword.wasm",
        artifacts::SWORD_V2,
        Duration::ZERO,
    );
    wait_until("sword 0.2.0 to load", || {
        w.logs().contains("replaced by 0.2.0")
    });
    // An incompatible version is refused and 0.2.0 keeps serving.
    drop_in(
        plugins.path(),
        "sword.wasm",
        artifacts::SWORD_V3_BAD,
        Duration::ZERO,
    );
    wait_until("sword 0.3.0 to be refused", || {
        w.logs()
            .contains("changes table \"sword_purchases\" incompatibly")
    });
    assert!(
        w.logs()
            .contains("column \"quantity\" changes type from int64 to string"),
        "{}",
        w.logs()
    );
    let acked = producer.join().unwrap();
    let wh = Warehouse::open(s(wh_dir.path())).unwrap();
    let t = wait_tables(&wh, "every event", Duration::from_secs(90), |t| {
        t.rows("sword_purchases") >= acked.len()
    });
    check_exactly_once(&t, &acked);
    assert_eq!(t.rows("rejected_events"), 0);
    let with = t.batches["sword_purchases"]
        .iter()
        .filter(|b| b.column_by_name("engraving").is_some())
        .count();
    let without = t.batches["sword_purchases"].len() - with;
    assert!(
        with > 0 && without > 0,
        "files of both versions ({with} with engraving, {without} without)"
    );
    assert!(w.term().success());
}

/// Takes happen outside librdkafka's rebalance callback, on a thread of
/// their own: a warehouse that cannot be read for longer than
/// `max.poll.interval.ms` (8 s here) leaves the member in its group (the
/// poll loop goes on); after a bounded number of attempts the partition is
/// reported stopped with a named error, then taken again by itself. The
/// writer refuses the consumer options that would change the rebalancing.
#[test]
fn a_take_that_keeps_failing_stops_its_partition_by_name_without_leaving_the_group() {
    let topic = create_topic(1);
    let group = unique("g");
    let wh_dir = tempfile::tempdir().unwrap();
    let warehouse = s(wh_dir.path()).to_owned();
    let plugins = plugin_dir(&["sword.wasm"]);
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("eventsift.toml");
    std::fs::write(
        &config,
        "[kafka_consumer]\n\"max.poll.interval.ms\" = \"8000\"\n",
    )
    .unwrap();
    let mut args = writer_args(&topic, &group, &warehouse, plugins.path(), data.path());
    args.extend(["--config", s(&config)]);
    let acked = produce_swords(&topic, 200, None);
    // Every attempt of the first round fails (8 of them, about 16 s).
    let writer = Proc::start(&args, &[("EVENTSIFT_FAILPOINT", "take_fail@1..8")]);
    wait_until_for(
        Duration::from_secs(60),
        "the partition reported stopped",
        || {
            let (_, body) = writer.admin_get("/readyz");
            body.contains("could not be taken (8 attempts)")
        },
    );
    let wh = Warehouse::open(&warehouse).unwrap();
    wait_until_for(
        Duration::from_secs(60),
        "taken again, every record landed",
        || Tables::read(&wh).rows("sword_purchases") == acked.len(),
    );
    check_exactly_once(&Tables::read(&wh), &acked);
    // Still the first assignment: an eviction would have revoked it.
    let logs = writer.logs();
    assert!(
        !logs.contains("revoked partitions") && logs.matches("assigned partitions").count() == 1,
        "the member left its group:\n{logs}"
    );
    drop(writer);

    for option in [
        "\"partition.assignment.strategy\" = \"cooperative-sticky\"",
        "\"group.protocol\" = \"consumer\"",
    ] {
        std::fs::write(&config, format!("[kafka_consumer]\n{option}\n")).unwrap();
        let (status, log) = run_to_exit(&args, &[], Duration::from_secs(60));
        assert!(!status.success(), "{option}: {log}");
        assert!(log.contains("eager rebalancing"), "{option}: {log}");
    }
}
