//! Real services for development and tests, started from jars fetched from
//! Maven Central into a cache outside the repository:
//!
//! - `kafka`: a single-node Apache Kafka broker (KRaft) on 127.0.0.1:9092,
//!   controller on 127.0.0.1:9093, topic `events` with 4 partitions;
//! - `hdfs`: Hadoop's MiniDFSCluster (one namenode, one datanode), namenode
//!   on hdfs://127.0.0.1:9000;
//! - `trino`: a Trino 476 coordinator (Java 25) on http://127.0.0.1:8086 with
//!   only the Hive and Delta Lake plugins, and catalogs `hive` and `delta`
//!   configured as `eventsift ddl --dialect trino` says (a file metastore,
//!   local and HDFS file systems).
//!
//! `start` is idempotent (a running service is left alone) and recovers from
//! a killed run (a stale process is killed and its state wiped). State and
//! logs live in `target/services/<name>/`; the jar cache in
//! `$EVENTSIFT_CACHE` or `~/.cache/eventsift`.
//!
//! Used by `cargo xtask kafka|hdfs|test`, and by tests that need a broker of
//! their own to stop and restart ([`PrivateKafka`]).

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub const KAFKA_BOOTSTRAP: &str = "127.0.0.1:9092";
pub const HDFS_URL: &str = "hdfs://127.0.0.1:9000";
pub const TRINO_URL: &str = "http://127.0.0.1:8086";

const KAFKA_PORT: u16 = 9092;
const KAFKA_CONTROLLER_PORT: u16 = 9093;
const HDFS_PORT: u16 = 9000;
const TRINO_PORT: u16 = 8086;
/// The JDK Trino needs (24 or newer).
const TRINO_JAVA_HOME: &str = "/usr/lib/jvm/temurin-25-jdk-amd64";
const TRINO_VERSION: &str = "476";
/// Plugins kept from the server tarball: the fewer, the faster it starts.
const TRINO_PLUGINS: &[&str] = &["hive", "delta-lake"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Kafka,
    Hdfs,
    Trino,
}

impl Service {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "kafka" => Some(Service::Kafka),
            "hdfs" => Some(Service::Hdfs),
            "trino" => Some(Service::Trino),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::Kafka => "kafka",
            Service::Hdfs => "hdfs",
            Service::Trino => "trino",
        }
    }

    /// A string only this service's command line contains.
    fn marker(self) -> &'static str {
        match self {
            Service::Kafka => "kafka.Kafka",
            Service::Hdfs => "MiniHdfs",
            Service::Trino => "io.trino.server.TrinoServer",
        }
    }

    fn ports(self) -> &'static [u16] {
        match self {
            Service::Kafka => &[KAFKA_PORT, KAFKA_CONTROLLER_PORT],
            Service::Hdfs => &[HDFS_PORT],
            Service::Trino => &[TRINO_PORT],
        }
    }

    fn port(self) -> u16 {
        match self {
            Service::Kafka => KAFKA_PORT,
            Service::Hdfs => HDFS_PORT,
            Service::Trino => TRINO_PORT,
        }
    }
}

struct Paths {
    /// `tests/services/<name>`: pom and sources.
    source: PathBuf,
    /// Cached jars for this pom.
    libs: PathBuf,
    /// `target/services/<name>`: pid, log, data.
    state: PathBuf,
}

impl Paths {
    fn new(root: &Path, service: Service) -> Result<Self> {
        let source = root.join("tests/services").join(service.name());
        let pom = fs::read(source.join("pom.xml"))?;
        let libs = cache_dir()?
            .join(format!("{}-{:016x}", service.name(), fnv1a(&pom)))
            .join("libs");
        let state = root.join("target/services").join(service.name());
        Ok(Paths {
            source,
            libs,
            state,
        })
    }
    fn pid_file(&self) -> PathBuf {
        self.state.join("pid")
    }
    fn log(&self) -> PathBuf {
        self.state.join("service.log")
    }
}

/// A Python virtual environment with the clients the tests compare
/// against (DuckDB and PySpark from PyPI) and schemathesis (which fuzzes
/// the API from its OpenAPI document; its `st` is next to the
/// interpreter), created once under the cache folder; returns its
/// interpreter.
pub fn python_env() -> Result<PathBuf> {
    let dir = cache_dir()?.join("pyenv");
    let python = dir.join("bin").join("python");
    let ready = |python: &Path| {
        Command::new(python)
            .args([
                "-c",
                "import duckdb, duckdb_ext, pyspark, pyarrow, schemathesis, deltalake; \
                 assert duckdb.__version__ == '1.4.4'",
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && ready(&python) {
        return Ok(python);
    }
    eprintln!(
        "python: creating {} with duckdb (and its delta extension), pyspark, schemathesis and deltalake from PyPI",
        dir.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .context("running python3 -m venv")?;
    anyhow::ensure!(status.success(), "python3 -m venv {} failed", dir.display());
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            // DuckDB reads Delta offline through this unofficial PyPI
            // repackaging of its delta extension, made for 1.4.4.
            "duckdb==1.4.4",
            "duckdb-ext-delta==1.4.4.20260205",
            "pyspark>=3.5,<3.6",
            "schemathesis==4.32.5",
            "deltalake==1.6.6",
            "pyarrow==26.0.1",
        ])
        .status()
        .context("running pip")?;
    anyhow::ensure!(
        status.success() && ready(&python),
        "pip install duckdb pyspark schemathesis deltalake failed"
    );
    Ok(python)
}

fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("EVENTSIFT_CACHE") {
        return Ok(dir.into());
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("eventsift"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set EVENTSIFT_CACHE")?;
    Ok(PathBuf::from(home).join(".cache/eventsift"))
}

/// A stable 64-bit hash (FNV-1a) to key the jar cache on the pom's content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

pub fn start(root: &Path, service: Service) -> Result<()> {
    let paths = Paths::new(root, service)?;
    if let Some(pid) = running_pid(&paths, service) {
        // It may still be starting: give it a minute before calling it stale.
        let answered = wait_for("the running service", Duration::from_secs(60), || {
            Ok(port_open(service.port()) || running_pid(&paths, service).is_none())
        });
        if answered.is_ok() && running_pid(&paths, service).is_some() {
            println!(
                "{} already running (pid {pid}); log: {}",
                service.name(),
                paths.log().display()
            );
            return Ok(());
        }
        println!(
            "{}: process {pid} does not answer; restarting it",
            service.name()
        );
    }
    stop_quietly(&paths, service);
    // A killed run's sockets may linger for a moment.
    let _ = wait_for("the ports to be released", Duration::from_secs(10), || {
        Ok(service.ports().iter().all(|p| !port_open(*p)))
    });
    if port_open(service.port()) {
        bail!(
            "port {} is taken by a process this checkout did not start; stop it first",
            service.port()
        );
    }
    fetch(&paths)?;
    let _ = fs::remove_dir_all(&paths.state);
    fs::create_dir_all(&paths.state)?;
    let started = Instant::now();
    match service {
        Service::Kafka => start_kafka(&paths)?,
        Service::Hdfs => start_hdfs(&paths)?,
        Service::Trino => start_trino(&paths)?,
    }
    println!(
        "{} ready in {:.1} s; log: {}",
        service.name(),
        started.elapsed().as_secs_f64(),
        paths.log().display()
    );
    Ok(())
}

pub fn stop(root: &Path, service: Service) -> Result<()> {
    let paths = Paths::new(root, service)?;
    match running_pid(&paths, service) {
        Some(pid) => {
            stop_quietly(&paths, service);
            println!("{} stopped (pid {pid})", service.name());
        }
        None => println!("{} is not running", service.name()),
    }
    Ok(())
}

pub fn status(root: &Path, service: Service) -> Result<bool> {
    let paths = Paths::new(root, service)?;
    let up = match running_pid(&paths, service) {
        Some(pid) if port_open(service.port()) => {
            println!(
                "{}: running (pid {pid}) on port {}; log: {}",
                service.name(),
                service.port(),
                paths.log().display()
            );
            true
        }
        Some(pid) => {
            println!(
                "{}: process {pid} alive but port {} closed; log: {}",
                service.name(),
                service.port(),
                paths.log().display()
            );
            false
        }
        None => {
            println!("{}: stopped", service.name());
            false
        }
    };
    Ok(up)
}

/// The pid of this checkout's running service, if its process is alive.
fn running_pid(paths: &Paths, service: Service) -> Option<u32> {
    let pid: u32 = fs::read_to_string(paths.pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains(service.marker())
        .then_some(pid)
}

/// Stops the service if it runs (TERM, then KILL after 15 s) and forgets its pid.
fn stop_quietly(paths: &Paths, service: Service) {
    if let Some(pid) = running_pid(paths, service) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while running_pid(paths, service).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if running_pid(paths, service).is_some() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let _ = fs::remove_file(paths.pid_file());
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Fetches Trino's server tarball once and unpacks it into the cache,
/// keeping only [`TRINO_PLUGINS`]; returns the server's folder.
fn fetch_trino(paths: &Paths) -> Result<PathBuf> {
    let server = paths.libs.join(format!("trino-server-{TRINO_VERSION}"));
    let done = server.join(".unpacked");
    if done.exists() {
        return Ok(server);
    }
    fetch(paths)?;
    let tarball = paths
        .libs
        .join(format!("trino-server-{TRINO_VERSION}.tar.gz"));
    println!("unpacking {}", tarball.display());
    let _ = fs::remove_dir_all(&server);
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&paths.libs)
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("unpacking {} failed", tarball.display());
    }
    for e in fs::read_dir(server.join("plugin"))? {
        let e = e?;
        if !TRINO_PLUGINS.contains(&e.file_name().to_string_lossy().as_ref()) {
            fs::remove_dir_all(e.path())?;
        }
    }
    // The tarball is not needed any more (820 MB).
    let _ = fs::remove_file(&tarball);
    fs::write(done, "")?;
    Ok(server)
}

/// Writes Trino's configuration: one coordinator that also works, and the
/// catalogs `hive` and `delta` as the generated DDL expects them.
fn trino_etc(paths: &Paths, port: u16) -> Result<PathBuf> {
    let etc = paths.state.join("etc");
    let catalog = etc.join("catalog");
    fs::create_dir_all(&catalog)?;
    let data = paths.state.join("data");
    let metastore = paths.state.join("metastore");
    fs::create_dir_all(&metastore)?;
    fs::write(
        etc.join("node.properties"),
        format!(
            "node.environment=eventsift\nnode.id=eventsift-test\nnode.data-dir={}\n",
            data.display()
        ),
    )?;
    fs::write(
        etc.join("jvm.config"),
        "-server\n-Xmx2G\n-XX:+UseG1GC\n-XX:+ExitOnOutOfMemoryError\n-XX:TieredStopAtLevel=1\n\
         -Djdk.attach.allowAttachSelf=true\n-Dfile.encoding=UTF-8\n",
    )?;
    fs::write(
        etc.join("config.properties"),
        format!(
            "coordinator=true\nnode-scheduler.include-coordinator=true\n\
             http-server.http.port={port}\ndiscovery.uri=http://127.0.0.1:{port}\n\
             query.max-memory=1GB\nquery.max-memory-per-node=1GB\n"
        ),
    )?;
    fs::write(etc.join("log.properties"), "io.trino=WARN\n")?;
    let file_systems = "fs.native-local.enabled=true\nlocal.location=/\nfs.hadoop.enabled=true\n";
    fs::write(
        catalog.join("hive.properties"),
        format!(
            "connector.name=hive\nhive.metastore=file\nhive.metastore.catalog.dir=local://{}\n\
             {file_systems}{}",
            metastore.join("hive").display(),
            TRINO_HIVE_CATALOG_PROPERTIES
        ),
    )?;
    fs::write(
        catalog.join("delta.properties"),
        format!(
            "connector.name=delta_lake\ndelta.register-table-procedure.enabled=true\n\
             hive.metastore=file\nhive.metastore.catalog.dir=local://{}\n\
             {file_systems}",
            metastore.join("delta").display()
        ),
    )?;
    Ok(etc)
}

/// The Hive catalog properties `eventsift ddl --dialect trino` states.
pub const TRINO_HIVE_CATALOG_PROPERTIES: &str = "hive.timestamp-precision=MICROSECONDS\nhive.partition-projection-enabled=true\n\
     hive.ignore-absent-partitions=true\n";

fn start_trino(paths: &Paths) -> Result<()> {
    let server = fetch_trino(paths)?;
    let etc = trino_etc(paths, TRINO_PORT)?;
    let mut cmd = Command::new(server.join("bin/launcher"));
    cmd.current_dir(&paths.state)
        .arg("run")
        .arg(format!("--etc-dir={}", etc.display()))
        .arg(format!("--data-dir={}", paths.state.join("data").display()))
        .env("JAVA_HOME", TRINO_JAVA_HOME)
        .env(
            "PATH",
            format!(
                "{TRINO_JAVA_HOME}/bin:{}",
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    let mut child = spawn_detached(paths, cmd)?;
    wait_for("Trino to answer a query", Duration::from_secs(180), || {
        check_alive(&mut child, paths)?;
        Ok(port_open(TRINO_PORT)
            && trino_query(
                TRINO_URL,
                "SELECT count(*) FROM system.runtime.nodes WHERE state = 'active'",
            )
            .is_ok_and(|rows| {
                rows.first()
                    .and_then(|r| r.first())
                    .is_some_and(|v| v != "0")
            }))
    })
}

/// Runs one statement through Trino's REST protocol (user `eventsift`,
/// catalog `hive`, schema `default`) and returns its rows, every value as
/// text (JSON strings unquoted, null as `NULL`).
pub fn trino_query(base: &str, sql: &str) -> Result<Vec<Vec<String>>> {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let mut response = http(
        authority,
        "POST",
        "/v1/statement",
        &[
            ("X-Trino-User", "eventsift"),
            ("X-Trino-Catalog", "hive"),
            ("X-Trino-Schema", "default"),
        ],
        sql.as_bytes(),
    )?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "NULL".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rows = Vec::new();
    loop {
        let doc: serde_json::Value = serde_json::from_str(&response)
            .with_context(|| format!("Trino answered {response}"))?;
        if let Some(err) = doc.get("error") {
            let message = err.get("message").map_or_else(|| err.to_string(), text);
            bail!("Trino: {message}");
        }
        if let Some(data) = doc.get("data").and_then(|d| d.as_array()) {
            for row in data {
                rows.push(
                    row.as_array()
                        .map_or_else(Vec::new, |r| r.iter().map(text).collect()),
                );
            }
        }
        let Some(next) = doc.get("nextUri").and_then(|n| n.as_str()) else {
            return Ok(rows);
        };
        let next = next.to_owned();
        let path = next.split_once(authority).map_or(next.as_str(), |(_, p)| p);
        response = http(
            authority,
            "GET",
            path,
            &[("X-Trino-User", "eventsift")],
            b"",
        )?;
    }
}

/// One HTTP/1.1 request on a fresh connection; the body of a 200.
fn http(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<String> {
    use std::io::Write;
    let mut c = TcpStream::connect(authority)?;
    c.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes())?;
    c.write_all(body)?;
    let mut out = Vec::new();
    c.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").context("no HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("HTTP {}", head.lines().next().unwrap_or(""));
    }
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(rest.to_owned());
    }
    let mut body = String::new();
    let mut rest = rest;
    loop {
        let (size, after) = rest.split_once("\r\n").context("a chunk size")?;
        let size = usize::from_str_radix(size.trim(), 16).context("a chunk size")?;
        if size == 0 {
            return Ok(body);
        }
        body.push_str(after.get(..size).context("a chunk")?);
        rest = after.get(size + 2..).context("a chunk's end")?;
    }
}

/// Fetches the pom's runtime jars once into the cache.
fn fetch(paths: &Paths) -> Result<()> {
    let done = paths.libs.join(".complete");
    if done.exists() {
        return Ok(());
    }
    println!(
        "fetching jars for {} from Maven Central into {}",
        paths.source.display(),
        paths.libs.display()
    );
    let tmp = paths.libs.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    let status = Command::new("mvn")
        .current_dir(&paths.source)
        .args([
            "-q",
            "-B",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
        ])
        .arg(format!("-DoutputDirectory={}", tmp.display()))
        .status()
        .context("running mvn (is Maven installed?)")?;
    if !status.success() {
        bail!("mvn could not fetch the jars of {}", paths.source.display());
    }
    let _ = fs::remove_dir_all(&paths.libs);
    fs::rename(&tmp, &paths.libs)?;
    fs::write(done, "")?;
    Ok(())
}

fn classpath(dirs: &[&Path]) -> String {
    dirs.iter()
        .map(|d| format!("{}/*", d.display()))
        .collect::<Vec<_>>()
        .join(":")
}

fn java(paths: &Paths, classpath: &str) -> Command {
    let mut cmd = Command::new("java");
    cmd.current_dir(&paths.state).arg("-cp").arg(classpath);
    cmd
}

/// Starts `cmd` in a process group of its own (it outlives xtask and
/// ignores a Ctrl-C meant for it), logging to the service log, and records
/// its pid.
fn spawn_detached(paths: &Paths, mut cmd: Command) -> Result<Child> {
    // Appended to: a private service restarted keeps one log.
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.log())?;
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = cmd.spawn().context("starting java")?;
    fs::write(paths.pid_file(), child.id().to_string())?;
    Ok(child)
}

/// Fails if the service we just started has exited.
fn check_alive(child: &mut Child, paths: &Paths) -> Result<()> {
    if let Some(status) = child.try_wait()? {
        bail!(
            "the service exited ({status}); see {}",
            paths.log().display()
        );
    }
    Ok(())
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {} s waiting for {what}", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_kafka(paths: &Paths) -> Result<()> {
    let props = kafka_props(paths, KAFKA_PORT, KAFKA_CONTROLLER_PORT)?;
    kafka_format(paths, &props)?;
    let mut child = kafka_launch(paths, &props)?;
    kafka_wait(paths, &mut child, KAFKA_PORT, true)
}

fn log4j_arg(paths: &Paths) -> String {
    format!(
        "-Dlog4j2.configurationFile={}",
        paths.source.join("log4j2.properties").display()
    )
}

/// Writes `server.properties` of a single-node KRaft broker.
fn kafka_props(paths: &Paths, port: u16, controller_port: u16) -> Result<PathBuf> {
    let data = paths.state.join("data");
    let props = paths.state.join("server.properties");
    fs::write(
        &props,
        format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller_port}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={}\n\
             num.partitions=4\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             group.min.session.timeout.ms=500\n\
             message.max.bytes=16777216\n\
             replica.fetch.max.bytes=16777216\n\
             auto.create.topics.enable=true\n",
            data.display()
        ),
    )?;
    Ok(props)
}

/// Formats the KRaft log directory of a new cluster.
fn kafka_format(paths: &Paths, props: &Path) -> Result<()> {
    let cp = classpath(&[&paths.libs]);
    let log4j = log4j_arg(paths);
    let cluster_id = {
        let out = java(paths, &cp)
            .args([&log4j, "kafka.tools.StorageTool", "random-uuid"])
            .output()?;
        // The tool may log before it prints the id: the id is the last line.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_owned()
    };
    let out = java(paths, &cp)
        .args([
            &log4j,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            &cluster_id,
            "-c",
        ])
        .arg(props)
        .output()?;
    if !out.status.success() {
        bail!(
            "formatting the KRaft log dir failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn kafka_launch(paths: &Paths, props: &Path) -> Result<Child> {
    let mut broker = java(paths, &classpath(&[&paths.libs]));
    broker
        .args(["-Xms256m", "-Xmx1g", &log4j_arg(paths), "kafka.Kafka"])
        .arg(props);
    spawn_detached(paths, broker)
}

/// Waits until the broker listens and answers metadata requests (by
/// creating topic `events` when `create_events`).
fn kafka_wait(paths: &Paths, child: &mut Child, port: u16, create_events: bool) -> Result<()> {
    wait_for(
        &format!("the broker to listen on {port}"),
        Duration::from_secs(90),
        || {
            check_alive(child, paths)?;
            Ok(port_open(port))
        },
    )?;
    if !create_events {
        return Ok(());
    }
    let cp = classpath(&[&paths.libs]);
    let log4j = log4j_arg(paths);
    let bootstrap = format!("127.0.0.1:{port}");
    // Creating the topic proves the broker answers metadata requests.
    wait_for(
        "the broker to create topic `events`",
        Duration::from_secs(90),
        || {
            check_alive(child, paths)?;
            let out = java(paths, &cp)
                .args([
                    &log4j,
                    "org.apache.kafka.tools.TopicCommand",
                    "--bootstrap-server",
                    &bootstrap,
                ])
                .args([
                    "--create",
                    "--if-not-exists",
                    "--topic",
                    "events",
                    "--partitions",
                    "4",
                ])
                .args(["--replication-factor", "1"])
                .output()?;
            Ok(out.status.success())
        },
    )
}

/// A broker of a test's own, on free ports, that the test may kill and
/// restart (same ports, same data) to see how eventsift copes.
pub struct PrivateKafka {
    paths: Paths,
    props: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateKafka {
    /// Starts a fresh single-node cluster with its state in `state`.
    /// `root` is the workspace root (for the pom and the jar cache).
    pub fn start(root: &Path, state: &Path) -> Result<Self> {
        let mut paths = Paths::new(root, Service::Kafka)?;
        paths.state = state.to_path_buf();
        fetch(&paths)?;
        fs::create_dir_all(&paths.state)?;
        let (port, controller_port) = (free_port()?, free_port()?);
        let props = kafka_props(&paths, port, controller_port)?;
        kafka_format(&paths, &props)?;
        let mut broker = PrivateKafka {
            paths,
            props,
            port,
            child: None,
        };
        broker.restart()?;
        Ok(broker)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same ports and data.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let mut child = kafka_launch(&self.paths, &self.props)?;
        let ready = kafka_wait(&self.paths, &mut child, self.port, false);
        self.child = Some(child);
        ready
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_hdfs(paths: &Paths) -> Result<()> {
    let mut child = hdfs_launch(paths, HDFS_PORT, false)?;
    hdfs_wait(paths, &mut child, HDFS_PORT, 0)
}

/// Compiles `MiniHdfs.java` when needed and starts it on `port`, reusing
/// its storage when `keep`.
fn hdfs_launch(paths: &Paths, port: u16, keep: bool) -> Result<Child> {
    let classes = paths.libs.with_file_name("classes");
    let source = paths.source.join("MiniHdfs.java");
    let class = classes.join("MiniHdfs.class");
    let stale = match (fs::metadata(&source), fs::metadata(&class)) {
        (Ok(s), Ok(c)) => s.modified()? > c.modified()?,
        _ => true,
    };
    if stale {
        fs::create_dir_all(&classes)?;
        let status = Command::new("javac")
            .arg("-d")
            .arg(&classes)
            .arg("-cp")
            .arg(classpath(&[&paths.libs]))
            .arg(&source)
            .status()
            .context("running javac")?;
        if !status.success() {
            bail!("compiling {} failed", source.display());
        }
    }
    let cp = format!("{}:{}", classes.display(), classpath(&[&paths.libs]));
    let mut cmd = java(paths, &cp);
    cmd.args(["-Xms256m", "-Xmx1g", "MiniHdfs"])
        .arg(paths.state.join("data"))
        .arg(port.to_string());
    if keep {
        cmd.arg("keep");
    }
    spawn_detached(paths, cmd)
}

/// Waits for the `ready`-th "READY" line of the service log (counting from
/// 0 for a fresh log) and the namenode's port.
fn hdfs_wait(paths: &Paths, child: &mut Child, port: u16, ready: usize) -> Result<()> {
    wait_for(
        "MiniDFSCluster to report READY",
        Duration::from_secs(120),
        || {
            check_alive(child, paths)?;
            let mut log = String::new();
            fs::File::open(paths.log())?.read_to_string(&mut log)?;
            Ok(log.matches("READY hdfs://").count() > ready && port_open(port))
        },
    )
}

/// A MiniDFSCluster of a test's own, on a free port, that the test may
/// stop and start again (its files kept), or freeze (SIGSTOP: connections
/// are accepted, nothing answers) and thaw.
pub struct PrivateHdfs {
    paths: Paths,
    port: u16,
    child: Option<Child>,
    starts: usize,
}

impl PrivateHdfs {
    /// Starts a fresh cluster with its state in `state`.
    pub fn start(root: &Path, state: &Path) -> Result<Self> {
        let mut paths = Paths::new(root, Service::Hdfs)?;
        paths.state = state.to_path_buf();
        fetch(&paths)?;
        fs::create_dir_all(&paths.state)?;
        let port = free_port()?;
        let mut hdfs = PrivateHdfs {
            paths,
            port,
            child: None,
            starts: 0,
        };
        hdfs.launch(false)?;
        Ok(hdfs)
    }

    fn launch(&mut self, keep: bool) -> Result<()> {
        // One log across restarts: append.
        let mut child = hdfs_launch(&self.paths, self.port, keep)?;
        let ready = hdfs_wait(&self.paths, &mut child, self.port, self.starts);
        self.child = Some(child);
        self.starts += 1;
        ready
    }

    pub fn url(&self) -> String {
        format!("hdfs://127.0.0.1:{}", self.port)
    }

    /// Kills the cluster (SIGKILL) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped cluster again on the same port, files kept.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        // The killed JVM's port may linger for a moment.
        let port = self.port;
        let _ = wait_for("the port to be released", Duration::from_secs(10), || {
            Ok(!port_open(port))
        });
        self.launch(true)
    }

    /// SIGSTOPs the cluster's JVM: it accepts connections, answers nothing.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONTs a frozen cluster.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status();
        }
    }
}

impl Drop for PrivateHdfs {
    fn drop(&mut self) {
        self.thaw();
        self.stop();
    }
}
