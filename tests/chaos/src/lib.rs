//! The chaos run (`cargo xtask chaos [--seed N] [--events N]`, and a short
//! variant in the test suite): a private Kafka broker and a private
//! MiniDFSCluster, one `eventsift api` and three `eventsift writer`s in one
//! consumer group, a load of acknowledged events from the load generator
//! (which records every acknowledged id and every request whose outcome is
//! unknown), and faults at moments drawn from the seed: a writer killed
//! with SIGKILL, a writer frozen past its group session, HDFS stopped for
//! 30 s, HDFS hung (SIGSTOP) for 30 s, the broker restarted, and a
//! rebalance storm (writers joining and leaving every few seconds while
//! the namenode freezes for a second now and then). The same seed replays
//! the same schedule. The suite's short variant ([`Pace::Short`]) keeps
//! every fault, shorter.
//!
//! At the end every acknowledged event must be in the tables exactly once,
//! every row must be an acknowledged event or one whose outcome was
//! unknown, every partition's chain must have no gap, and every writer must
//! exit within 30 s of SIGTERM.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use eventsift::loadgen::{self, Load, Outcome, Reply};
use eventsift::writer::commit::{CommitRecord, read_chains};
use eventsift::writer::warehouse::Warehouse;
use eventsift_services::{PrivateHdfs, PrivateKafka};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Partitions of the run's topic (two per writer).
const PARTITIONS: i32 = 6;
const WRITERS: usize = 3;
/// A writer must exit within this of SIGTERM.
const EXIT_BOUND: Duration = Duration::from_secs(30);
/// Writers a storm adds at most (joining and leaving).
const STORM_WRITERS: usize = 2;

/// How long the faults last: the full run's, or the suite's shorter ones
/// (still past the group session of 6 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Full,
    Short,
}

impl Pace {
    /// What a writer frozen "past its session" is frozen for.
    fn freeze(self) -> Duration {
        match self {
            Pace::Full => Duration::from_secs(15),
            Pace::Short => Duration::from_secs(8),
        }
    }
    /// HDFS stopped, or hung, for this long.
    fn hdfs_outage(self) -> Duration {
        match self {
            Pace::Full => Duration::from_secs(30),
            Pace::Short => Duration::from_secs(10),
        }
    }
    /// A rebalance storm lasts this long.
    fn storm(self) -> Duration {
        match self {
            Pace::Full => Duration::from_secs(40),
            Pace::Short => Duration::from_secs(20),
        }
    }
    /// Time between two faults: from `gap.0` to `gap.1` seconds.
    fn gap(self) -> (u64, u64) {
        match self {
            Pace::Full => (5, 15),
            Pace::Short => (3, 6),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Params {
    pub seed: u64,
    /// Acknowledged events to reach.
    pub events: u64,
    /// How many times each kind of fault happens.
    pub rounds: usize,
    /// The `eventsift` binary.
    pub binary: PathBuf,
    /// The workspace root (the services' poms and jar cache).
    pub root: PathBuf,
    /// The writers' `--table-format` (`hive` or `delta`).
    pub table_format: String,
    pub pace: Pace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    KillWriter,
    FreezeWriter,
    StopHdfs,
    HangHdfs,
    RestartBroker,
    Storm,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::KillWriter,
        Fault::FreezeWriter,
        Fault::StopHdfs,
        Fault::HangHdfs,
        Fault::RestartBroker,
        Fault::Storm,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::KillWriter => "writer killed (SIGKILL), restarted",
            Fault::FreezeWriter => "writer frozen past its session (SIGSTOP), thawed",
            Fault::StopHdfs => "HDFS stopped, restarted",
            Fault::HangHdfs => "HDFS hung (SIGSTOP), thawed",
            Fault::RestartBroker => "Kafka broker restarted",
            Fault::Storm => "rebalance storm: writers join, leave or die, the namenode freezes 1 s",
        }
    }

    /// About how long it lasts (for spacing the schedule).
    fn span(self, pace: Pace) -> Duration {
        match self {
            Fault::KillWriter => Duration::from_secs(5),
            Fault::FreezeWriter => pace.freeze(),
            Fault::StopHdfs => pace.hdfs_outage() + Duration::from_secs(20),
            Fault::HangHdfs => pace.hdfs_outage(),
            Fault::RestartBroker => Duration::from_secs(20),
            Fault::Storm => pace.storm(),
        }
    }
}

/// A fault and when (after the load started) it begins.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub at: Duration,
    pub fault: Fault,
    /// Which writer (for writer faults).
    pub writer: usize,
}

/// A tiny deterministic random source (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The schedule the seed draws: every kind `rounds` times, in a shuffled
/// order, 5 to 15 s apart (3 to 6 s at the short pace), the first 15 to
/// 25 s into the load.
pub fn schedule(seed: u64, rounds: usize, pace: Pace) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let mut faults: Vec<Fault> = (0..rounds).flat_map(|_| Fault::ALL).collect();
    for i in (1..faults.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        faults.swap(i, j);
    }
    let mut at = Duration::from_secs(15 + rng.below(11));
    let mut out = Vec::new();
    for fault in faults {
        out.push(Planned {
            at,
            fault,
            writer: rng.below(WRITERS as u64) as usize,
        });
        let (lo, hi) = pace.gap();
        at += fault.span(pace) + Duration::from_secs(lo + rng.below(hi - lo + 1));
    }
    out
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub duration: Duration,
    /// Faults done: kind -> (count, total time).
    pub faults: BTreeMap<Fault, (u32, Duration)>,
    pub acked: u64,
    pub unknown: u64,
    pub unknown_landed: u64,
    pub rejected_requests: u64,
    pub rows: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Rows of no request that was acknowledged or of unknown outcome.
    pub unexpected: u64,
    pub rejected_rows: u64,
    /// Partitions whose chain has a gap or an unlinked record, with why.
    pub chain_problems: Vec<String>,
    pub partitions: usize,
    /// Longest time from the API accepting an event to the commit holding it.
    pub max_wait: Duration,
    /// Rows whose commit record the run did not see before it was pruned.
    pub wait_unobserved: u64,
    /// Longest time a writer took to exit after SIGTERM.
    pub max_exit: Duration,
    pub slow_exits: Vec<String>,
}

impl Report {
    /// Whether the run kept every promise.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.unexpected == 0
            && self.rejected_rows == 0
            && self.chain_problems.is_empty()
            && self.slow_exits.is_empty()
            && self.acked > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        writeln!(
            f,
            "chaos run, seed {}: {} acknowledged events, {}",
            self.seed,
            self.acked,
            secs(self.duration)
        )?;
        writeln!(f)?;
        writeln!(f, "| fault | times | total |")?;
        writeln!(f, "|---|---|---|")?;
        for (fault, (n, total)) in &self.faults {
            writeln!(f, "| {} | {n} | {} |", fault.name(), secs(*total))?;
        }
        writeln!(f)?;
        writeln!(f, "| | |")?;
        writeln!(f, "|---|---|")?;
        writeln!(f, "| events acknowledged | {} |", self.acked)?;
        writeln!(
            f,
            "| requests of unknown outcome | {} ({} landed) |",
            self.unknown, self.unknown_landed
        )?;
        writeln!(f, "| requests refused (4xx) | {} |", self.rejected_requests)?;
        writeln!(f, "| rows | {} |", self.rows)?;
        writeln!(f, "| lost | {} |", self.lost)?;
        writeln!(f, "| duplicated | {} |", self.duplicated)?;
        writeln!(f, "| rows of no such request | {} |", self.unexpected)?;
        writeln!(f, "| rows in rejected_events | {} |", self.rejected_rows)?;
        writeln!(
            f,
            "| chains | {} partitions, {} |",
            self.partitions,
            if self.chain_problems.is_empty() {
                "no gap".to_owned()
            } else {
                self.chain_problems.join("; ")
            }
        )?;
        writeln!(
            f,
            "| longest wait from acceptance to commit | {} ({} rows' commits unobserved) |",
            secs(self.max_wait),
            self.wait_unobserved
        )?;
        writeln!(
            f,
            "| slowest exit after SIGTERM | {} |",
            secs(self.max_exit)
        )?;
        writeln!(
            f,
            "| result | {} |",
            if self.ok() { "PASS" } else { "FAIL" }
        )
    }
}

/// A daemon of the run, logging to a file.
struct Daemon {
    name: String,
    args: Vec<String>,
    binary: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    base: String,
}

impl Daemon {
    fn start(binary: &Path, name: &str, args: Vec<String>, logs: &Path) -> Result<Daemon> {
        let mut d = Daemon {
            name: name.to_owned(),
            args,
            binary: binary.to_owned(),
            log: logs.join(format!("{name}.log")),
            child: None,
            base: String::new(),
        };
        d.spawn()?;
        Ok(d)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let offset = log.metadata()?.len();
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env("EVENTSIFT_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("EVENTSIFT_FAILPOINT")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut text = String::new();
            let mut f = std::fs::File::open(&self.log)?;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))?;
            f.read_to_string(&mut text)?;
            if let Some(at) = text.find("listening on http://") {
                let rest = &text[at + "listening on ".len()..];
                self.base = rest.lines().next().unwrap_or("").trim().to_owned();
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{} exited ({status}) while starting; see {}",
                    self.name,
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not start within 120 s; see {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status();
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and the time to exit (None: not within `bound`, then killed).
    fn term(&mut self, bound: Duration) -> Option<Duration> {
        let mut child = self.child.take()?;
        let t0 = Instant::now();
        self.signal_pid(child.id(), "-TERM");
        while t0.elapsed() < bound {
            if child.try_wait().ok().flatten().is_some() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn signal_pid(&self, pid: u32, sig: &str) {
        let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            self.signal_pid(c.id(), "-CONT");
        }
        self.kill9();
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// A row as the checks need it.
struct Row {
    seq: Option<u64>,
    event_id: String,
    micros: i64,
    partition: i32,
    offset: i64,
}

/// Every row of the plugin tables (projected), and the count of rejected rows.
fn read_rows(wh: &Warehouse) -> Result<(Vec<Row>, u64)> {
    let mut rows = Vec::new();
    let mut rejected = 0u64;
    // Delta tables: only the files of the latest version count.
    let mut live: std::collections::HashMap<String, Option<std::collections::HashSet<String>>> =
        Default::default();
    for (path, _) in wh.walk("")? {
        if path
            .split('/')
            .any(|c| c.starts_with('_') || c.starts_with('.'))
            || !path.ends_with(".parquet")
        {
            continue;
        }
        let table = path.split('/').next().unwrap_or("").to_owned();
        let files = match live.get(&table) {
            Some(f) => f,
            None => {
                let f = eventsift::writer::delta::live_files(wh, &table)
                    .map_err(|e| anyhow::anyhow!(e))?;
                live.entry(table.clone()).or_insert(f)
            }
        };
        if let Some(files) = files
            && !files.contains(&path[table.len() + 1..])
        {
            continue;
        }
        let data = bytes::Bytes::from(wh.read(&path)?);
        let builder = ParquetRecordBatchReaderBuilder::try_new(data)?;
        if path.starts_with("rejected_events/") {
            rejected += builder.metadata().file_metadata().num_rows() as u64;
            continue;
        }
        let wanted = [
            "event_id",
            "host",
            "timestamp",
            "source_partition",
            "source_offset",
        ];
        let schema = builder.parquet_schema();
        let indices: Vec<usize> = (0..schema.num_columns())
            .filter(|&i| wanted.contains(&schema.column(i).name()))
            .collect();
        let mask = ProjectionMask::leaves(schema, indices);
        for batch in builder.with_projection(mask).build()? {
            let b = batch?;
            let col = |n: &str| {
                b.column_by_name(n)
                    .with_context(|| format!("{path}: no {n}"))
            };
            let ids = col("event_id")?.as_string::<i32>().clone();
            let hosts = col("host")?.as_string::<i32>().clone();
            let ts = col("timestamp")?
                .as_primitive::<TimestampMicrosecondType>()
                .clone();
            let ps = col("source_partition")?.as_primitive::<Int32Type>().clone();
            let os = col("source_offset")?.as_primitive::<Int64Type>().clone();
            for i in 0..b.num_rows() {
                rows.push(Row {
                    seq: if hosts.is_null(i) {
                        None
                    } else {
                        loadgen::host_seq(hosts.value(i))
                    },
                    event_id: ids.value(i).to_owned(),
                    micros: ts.value(i),
                    partition: ps.value(i),
                    offset: os.value(i),
                });
            }
        }
    }
    Ok((rows, rejected))
}

/// Commit records seen by the poller: (partition, start) -> (end, committed_at µs).
type Seen = Arc<Mutex<BTreeMap<(i32, i64), (i64, i64)>>>;

/// Reads new commit records every second (they live about `keep` commits
/// before pruning takes them), for the freshness figure.
fn poll_commits(wh: Arc<Warehouse>, seen: Seen, stop: Arc<AtomicBool>) {
    let mut names: std::collections::HashSet<String> = Default::default();
    while !stop.load(Ordering::Relaxed) {
        for p in 0..PARTITIONS {
            let dir = format!("_eventsift/commits/events/{p}");
            let Ok(entries) = wh.list(&dir) else { continue };
            for e in entries {
                if !e.name.ends_with(".json") || e.name.starts_with('.') || names.contains(&e.name)
                {
                    continue;
                }
                let Ok(bytes) = wh.read(&format!("{dir}/{}", e.name)) else {
                    continue;
                };
                let Ok(r) = serde_json::from_slice::<CommitRecord>(&bytes) else {
                    continue;
                };
                let at = humantime::parse_rfc3339(&r.committed_at)
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_micros() as i64);
                seen.lock()
                    .unwrap()
                    .insert((r.partition, r.start), (r.end, at));
                names.insert(e.name);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Runs the whole thing; `Err` only when the harness itself fails.
pub fn run(params: &Params) -> Result<Report> {
    let started = Instant::now();
    let plan = schedule(params.seed, params.rounds, params.pace);
    let pace = params.pace;
    let plan_end = plan
        .last()
        .map_or(Duration::ZERO, |p| p.at + p.fault.span(pace));
    // The load outlasts the schedule by a margin.
    let load_secs = plan_end.as_secs_f64() + 20.0;
    let rate = (params.events as f64 / load_secs).max(50.0);
    println!(
        "chaos: seed {}, {} events at {:.0} req/s (about {:.0} s of load)",
        params.seed, params.events, rate, load_secs
    );
    for p in &plan {
        println!(
            "chaos: at {:>5.1} s: {}{}",
            p.at.as_secs_f64(),
            p.fault.name(),
            if matches!(p.fault, Fault::KillWriter | Fault::FreezeWriter) {
                format!(" (writer {})", p.writer)
            } else {
                String::new()
            }
        );
    }

    let work = tempfile::Builder::new()
        .prefix("eventsift-chaos-")
        .tempdir()?;
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut kafka = PrivateKafka::start(&params.root, &work.path().join("kafka"))?;
    let mut hdfs = PrivateHdfs::start(&params.root, &work.path().join("hdfs"))?;
    let bootstrap = kafka.bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let created = block(admin.create_topics(
        &[NewTopic::new(
            "events",
            PARTITIONS,
            TopicReplication::Fixed(1),
        )],
        &AdminOptions::new(),
    ))?;
    for r in created {
        r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    let plugins = work.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for (name, path) in eventsift_test_artifacts::BUNDLED {
        if *name != "spellbook.wasm" {
            let to = plugins.join(name);
            std::fs::copy(path, &to)?;
            // Settled: the daemons load them at once.
            std::fs::File::options()
                .write(true)
                .open(&to)?
                .set_modified(SystemTime::now() - Duration::from_secs(60))?;
        }
    }
    let warehouse = format!("{}/warehouse", hdfs.url());
    let s = |p: &Path| p.display().to_string();
    let api = Daemon::start(
        &params.binary,
        "api",
        [
            "api",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--kafka",
            &bootstrap,
            "--plugins",
            &s(&plugins),
            "--data-dir",
            &s(&work.path().join("api")),
            "--ack-timeout",
            "5s",
        ]
        .map(str::to_owned)
        .to_vec(),
        &logs,
    )?;
    let writer_args = |i: usize| -> Vec<String> {
        [
            "writer",
            "--listen",
            "127.0.0.1:0",
            "--kafka",
            &bootstrap,
            "--group",
            "chaos",
            "--warehouse",
            &warehouse,
            "--plugins",
            &s(&plugins),
            "--data-dir",
            &s(&work.path().join(format!("writer{i}"))),
            "--flush-interval",
            "1s",
            "--keep-commit-records",
            "16",
            "--warehouse-timeout",
            "5s",
            "--table-format",
            &params.table_format,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let mut writers: Vec<Daemon> = (0..WRITERS)
        .map(|i| Daemon::start(&params.binary, &format!("writer{i}"), writer_args(i), &logs))
        .collect::<Result<_>>()?;

    let wh = Arc::new(Warehouse::open_with_timeout(
        &warehouse,
        Duration::from_secs(5),
    )?);
    let seen: Seen = Default::default();
    let poll_stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (wh, seen, stop) = (wh.clone(), seen.clone(), poll_stop.clone());
        std::thread::spawn(move || poll_commits(wh, seen, stop))
    };

    // The load, recording every outcome.
    let replies: Arc<Mutex<HashMap<u64, Outcome>>> = Default::default();
    let load_thread = {
        let replies = replies.clone();
        let target = api.base.clone();
        let events = params.events;
        std::thread::spawn(move || -> Result<loadgen::Summary> {
            let mut load = Load::new(target);
            load.rate = Some(rate);
            load.clients = 64;
            load.until_acked = Some(events);
            load.on_reply = Some(Arc::new(move |r: Reply| {
                replies.lock().unwrap().insert(r.seq, r.outcome);
            }));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(loadgen::run(&load, None, Arc::new(|_| {})))
        })
    };

    // The faults, in order.
    let load_start = Instant::now();
    let mut report = Report {
        seed: params.seed,
        ..Report::default()
    };
    let mut storm_joins = 0usize;
    for p in &plan {
        let wait = p.at.saturating_sub(load_start.elapsed());
        std::thread::sleep(wait);
        let t0 = Instant::now();
        println!(
            "chaos: {:>6.1} s: {}",
            load_start.elapsed().as_secs_f64(),
            p.fault.name()
        );
        match p.fault {
            Fault::KillWriter => {
                let w = &mut writers[p.writer];
                w.kill9();
                std::thread::sleep(Duration::from_secs(3));
                w.spawn()?;
            }
            Fault::FreezeWriter => {
                let w = &writers[p.writer];
                w.signal("-STOP");
                std::thread::sleep(pace.freeze());
                w.signal("-CONT");
            }
            Fault::StopHdfs => {
                hdfs.stop();
                std::thread::sleep(pace.hdfs_outage());
                hdfs.restart()?;
            }
            Fault::HangHdfs => {
                hdfs.freeze();
                std::thread::sleep(pace.hdfs_outage());
                hdfs.thaw();
            }
            Fault::RestartBroker => kafka.restart()?,
            Fault::Storm => {
                let mut rng = Rng::new(params.seed ^ p.at.as_millis() as u64);
                let until = Instant::now() + pace.storm();
                let mut extra: Vec<Daemon> = Vec::new();
                let mut next_freeze = Instant::now() + Duration::from_secs(2 + rng.below(4));
                while Instant::now() < until {
                    // A writer joins, or one of the storm's leaves (SIGTERM:
                    // it leaves the group at once).
                    let join =
                        extra.is_empty() || (extra.len() < STORM_WRITERS && rng.below(2) == 0);
                    if join {
                        let i = WRITERS + storm_joins;
                        storm_joins += 1;
                        let name = format!("writer{i}");
                        println!("chaos: storm: {name} joins");
                        extra.push(Daemon::start(&params.binary, &name, writer_args(i), &logs)?);
                    } else if rng.below(3) == 0 {
                        // Or dies (SIGKILL): its partitions move once its
                        // session expires, whatever it was doing.
                        let mut w = extra.remove(rng.below(extra.len() as u64) as usize);
                        println!("chaos: storm: {} is killed", w.name);
                        w.kill9();
                    } else {
                        let mut w = extra.remove(rng.below(extra.len() as u64) as usize);
                        println!("chaos: storm: {} leaves", w.name);
                        match w.term(EXIT_BOUND) {
                            Some(t) => report.max_exit = report.max_exit.max(t),
                            None => report
                                .slow_exits
                                .push(format!("{} did not exit within 30 s of SIGTERM", w.name)),
                        }
                    }
                    let pause = Instant::now() + Duration::from_millis(1500 + rng.below(2500));
                    while Instant::now() < pause {
                        if Instant::now() >= next_freeze {
                            println!("chaos: storm: the namenode freezes for 1 s");
                            hdfs.freeze();
                            std::thread::sleep(Duration::from_secs(1));
                            hdfs.thaw();
                            next_freeze = Instant::now() + Duration::from_secs(3 + rng.below(5));
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                for mut w in extra {
                    match w.term(EXIT_BOUND) {
                        Some(t) => report.max_exit = report.max_exit.max(t),
                        None => report
                            .slow_exits
                            .push(format!("{} did not exit within 30 s of SIGTERM", w.name)),
                    }
                }
            }
        }
        let e = report.faults.entry(p.fault).or_default();
        e.0 += 1;
        e.1 += t0.elapsed();
    }
    let summary = load_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;
    println!("chaos: load done: {}", summary.report().trim_end());

    // Drained: every partition's chain reaches the topic's end.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "chaos-check")
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let chains = read_chains(&wh, "events").unwrap_or_default();
        let ends: HashMap<i32, i64> = chains
            .iter()
            .map(|(p, rs)| (*p, rs.last().map_or(0, |r| r.end)))
            .collect();
        let mut behind = Vec::new();
        for p in 0..PARTITIONS {
            let high = consumer
                .fetch_watermarks("events", p, Duration::from_secs(10))
                .map(|(_, h)| h)
                .unwrap_or(i64::MAX);
            let end = ends.get(&p).copied().unwrap_or(0);
            if end < high {
                behind.push(format!("{p}: {end}/{high}"));
            }
        }
        if behind.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the writers did not drain within 300 s: {behind:?}; logs in {}",
                logs.display()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // One more round of the poller, then stop everything.
    std::thread::sleep(Duration::from_millis(1500));
    poll_stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    for w in &mut writers {
        match w.term(EXIT_BOUND) {
            Some(t) => report.max_exit = report.max_exit.max(t),
            None => report
                .slow_exits
                .push(format!("{} did not exit within 30 s of SIGTERM", w.name)),
        }
    }
    let mut api = api;
    let _ = api.term(EXIT_BOUND);

    // The checks.
    let replies = replies.lock().unwrap();
    let (rows, rejected_rows) = read_rows(&wh)?;
    let mut landed: HashMap<u64, Vec<&Row>> = HashMap::new();
    for r in &rows {
        match r.seq {
            Some(seq) => landed.entry(seq).or_default().push(r),
            None => report.unexpected += 1,
        }
    }
    for (seq, outcome) in replies.iter() {
        let n = landed.get(seq).map_or(0, Vec::len);
        match outcome {
            Outcome::Acked(id) => {
                report.acked += 1;
                if n == 0 {
                    report.lost += 1;
                } else if n > 1 {
                    report.duplicated += 1;
                } else if landed[seq][0].event_id != *id {
                    report.unexpected += 1;
                }
            }
            Outcome::Unknown(_) => {
                report.unknown += 1;
                if n == 1 {
                    report.unknown_landed += 1;
                } else if n > 1 {
                    report.duplicated += 1;
                }
            }
            Outcome::Rejected(_) => {
                report.rejected_requests += 1;
                report.unexpected += n as u64;
            }
        }
    }
    for (seq, rs) in &landed {
        if !replies.contains_key(seq) {
            report.unexpected += rs.len() as u64;
        }
    }
    report.rows = rows.len() as u64;
    report.rejected_rows = rejected_rows;

    // Chains: linked from their low-water mark to their end, nothing else.
    let chains = read_chains(&wh, "events")?;
    report.partitions = chains.len();
    for (p, records) in &chains {
        for w in records.windows(2) {
            if w[0].end != w[1].start {
                report.chain_problems.push(format!(
                    "partition {p}: {}..{} then {}",
                    w[0].start, w[0].end, w[1].start
                ));
            }
        }
        let listed = wh
            .list(&format!("_eventsift/commits/events/{p}"))?
            .into_iter()
            .filter(|e| e.name.ends_with(".json") && !e.name.starts_with('.'))
            .count();
        if listed != records.len() {
            report.chain_problems.push(format!(
                "partition {p}: {listed} records listed, {} linked",
                records.len()
            ));
        }
    }
    // Freshness.
    let seen = seen.lock().unwrap();
    for r in &rows {
        let holder =
            seen.range(..=(r.partition, r.offset))
                .next_back()
                .filter(|((p, start), (end, _))| {
                    *p == r.partition && *start <= r.offset && r.offset < *end
                });
        match holder {
            Some((_, (_, at))) => {
                let wait = Duration::from_micros((at - r.micros).max(0) as u64);
                report.max_wait = report.max_wait.max(wait);
            }
            None => report.wait_unobserved += 1,
        }
    }
    report.duration = started.elapsed();
    println!("chaos: logs in {} (kept only on failure)", logs.display());
    if !report.ok() {
        let kept = std::env::temp_dir().join(format!("eventsift-chaos-logs-{}", params.seed));
        let _ = std::fs::remove_dir_all(&kept);
        let _ = copy_dir(&logs, &kept);
        println!("chaos: FAILED; logs copied to {}", kept.display());
        for w in &writers {
            if let Ok(f) = std::fs::File::open(&w.log) {
                let errors: Vec<String> = BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| l.contains("ERROR"))
                    .take(5)
                    .collect();
                for e in errors {
                    println!("chaos: {}: {e}", w.name);
                }
            }
        }
    }
    drop(kafka);
    drop(hdfs);
    Ok(report)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_replays_the_same_schedule() {
        let a = schedule(7, 2, Pace::Full);
        let b = schedule(7, 2, Pace::Full);
        assert_eq!(a.len(), 12);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.at, x.fault, x.writer), (y.at, y.fault, y.writer));
        }
        for kind in Fault::ALL {
            assert_eq!(a.iter().filter(|p| p.fault == kind).count(), 2);
        }
        let c = schedule(8, 2, Pace::Full);
        assert!(
            a.iter()
                .zip(&c)
                .any(|(x, y)| x.at != y.at || x.fault != y.fault)
        );
    }
}
