//! The command line: `eventsift serve|api|writer|query|tables|ddl|demo|loadgen|plugin`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::plugin::sandbox::Limits;
use crate::plugin::{CONTRACT, LoadedPlugin, Registry, Runtime, RuntimeConfig};

#[derive(Debug, Parser)]
#[command(
    name = "eventsift",
    about = "Game-analytics event pipeline: HTTP API, Wasm plugins, Parquet tables"
)]
pub struct Cli {
    /// Log lines as text (coloured only on a terminal) or as JSON objects,
    /// one per line.
    #[arg(
        long,
        global = true,
        env = "EVENTSIFT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API and the writer in one process (embedded log without
    /// --kafka, Kafka with it).
    Serve(DaemonArgs),
    /// Run the HTTP API alone, publishing to Kafka (--kafka is required).
    Api(DaemonArgs),
    /// Run the writer alone: Kafka (--kafka is required) -> plugins -> Parquet
    /// tables in --warehouse; serves health, /metrics and the status page on
    /// --admin-listen (127.0.0.1:5051).
    Writer(DaemonArgs),
    /// Ask a running daemon's admin listener whether it is ready (or, with
    /// --live, alive): exit 0 if so, 1 if not; serves container health
    /// checks (the image has no curl).
    Health {
        /// The admin listener's URL [default: EVENTSIFT_ADMIN_LISTEN's
        /// address, else http://127.0.0.1:5050, then :5051].
        #[arg(long)]
        url: Option<String>,
        /// Liveness (`/healthz`) instead of readiness (`/readyz`).
        #[arg(long)]
        live: bool,
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s")]
        timeout: humantime::Duration,
    },
    /// Write, build, test and inspect event-type plugins (`plugins` is an
    /// alias).
    #[command(subcommand, alias = "plugins")]
    Plugin(PluginsCommand),
    /// Run SQL over every table of the warehouse (DataFusion); without SQL,
    /// an interactive prompt with history.
    Query {
        #[command(flatten)]
        wh: WarehouseArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: crate::query::output::Format,
        /// The statement; e.g. "SELECT size, SUM(quantity) FROM horse_purchases GROUP BY 1".
        sql: Option<String>,
    },
    /// List the warehouse's tables: columns, rows, files, bytes, partitions,
    /// last commit; rejected_events by reason.
    Tables {
        #[command(flatten)]
        wh: WarehouseArg,
    },
    /// Print statements registering the tables in another engine as external,
    /// partitioned Parquet tables.
    Ddl {
        #[command(flatten)]
        wh: WarehouseArg,
        #[arg(long, value_enum)]
        dialect: crate::query::ddl::Dialect,
    },
    /// Delta warehouses: rewrite small files into large ones while writers
    /// run (each swap one atomic commit), and report files and bytes.
    Compact {
        #[command(flatten)]
        wh: WarehouseArg,
        /// Only this table [default: all].
        #[arg(long)]
        table: Option<String>,
        /// Only files committed longer ago than this.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        /// Size of the files to make; bigger files are left alone (e.g. 128MiB).
        #[arg(long, default_value = "128MiB", value_parser = parse_size)]
        target_size: u64,
    },
    /// Delta warehouses: delete files that compact or forget removed longer
    /// ago than the retention.
    Vacuum {
        #[command(flatten)]
        wh: WarehouseArg,
        #[arg(long)]
        table: Option<String>,
        /// Keep removed files this long (readers of older versions need them).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        retain: std::time::Duration,
    },
    /// Delta warehouses: delete one player's rows from every table
    /// (rejected_events included) and append an audit entry.
    Forget {
        #[command(flatten)]
        wh: WarehouseArg,
        /// The player: user_id, or for the seed's routes the Host value
        /// (e.g. user1.comcast.com).
        #[arg(long)]
        user: String,
        /// Only this game's rows.
        #[arg(long)]
        game: Option<String>,
    },
    /// The whole pipeline on this machine (no Kafka, no HDFS): serve, the
    /// seed's load, a plugin dropped in, and the classic queries.
    Demo {
        /// Folder of the bundled plugins [default: installed beside the
        /// binary, or the checkout's target/plugins (`cargo xtask plugins`)].
        #[arg(long, env = "EVENTSIFT_PLUGINS")]
        plugins: Option<PathBuf>,
        /// Keep the demo's data in this folder (default: a new temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Send HTTP load to an API: the seed scenario or a synthetic mix.
    Loadgen {
        /// Base URL of the API, e.g. http://127.0.0.1:5000.
        #[arg(long)]
        target: String,
        #[arg(long, value_enum, default_value = "seed")]
        scenario: crate::loadgen::Scenario,
        /// Requests per second [default: as fast as the clients go].
        #[arg(long)]
        rate: Option<f64>,
        /// How long to run, e.g. 30s [default: the seed scenario once; 10s for the mix].
        #[arg(long)]
        duration: Option<humantime::Duration>,
        /// Concurrent clients.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Stop once this many requests were acknowledged.
        #[arg(long, value_name = "N")]
        acked: Option<u64>,
        /// Record every request's outcome in FILE, a line each: `<n> acked
        /// <event id>`, `<n> rejected <status>` or `<n> unknown <why>`
        /// (a 5xx or no reply: it may or may not land). Request n then
        /// sends Host `r<n>.<host>`, so its row can be told apart.
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
        /// Batch scenario: events per /v1/batch request.
        #[arg(long, default_value_t = 50)]
        batch_size: usize,
        /// Batch scenario: gzip the bodies (Content-Encoding: gzip).
        #[arg(long)]
        gzip: bool,
        /// Batch scenario: share of batches sent a second time with the same
        /// event ids, as a client retrying after a lost reply, e.g. 0.05.
        #[arg(long, default_value_t = 0.0)]
        retry_share: f64,
    },
}

/// Where the tables are.
#[derive(Debug, Clone, Args)]
pub struct WarehouseArg {
    /// A local folder or hdfs://host:port/path.
    #[arg(long, env = "EVENTSIFT_WAREHOUSE", default_value = "./warehouse")]
    pub warehouse: String,
}

/// Settings of the daemon commands. Each may also come from `--config FILE`
/// (TOML, same names with `_`) or `EVENTSIFT_<NAME>`; precedence is
/// flag > environment > file > default.
#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct DaemonArgs {
    /// TOML configuration file.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Writer: read every partition of the topic up to its end as the
    /// writer starts, commit, and exit 0 (a drain, like Spark's
    /// `trigger(availableNow)`). A drain takes all partitions itself, without
    /// joining the consumer group: run it while no group writer runs (one that
    /// does races it for the same ranges and is fenced by the warehouse commit).
    #[arg(long)]
    #[serde(skip)]
    pub exit_at_end: bool,
    /// Public listen address: event routes and health [default:
    /// 0.0.0.0:5000]. For `writer`, the old name of --admin-listen.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Admin listen address: /metrics, /plugins, the status page, health
    /// [default: 127.0.0.1:5050 for serve and api, 127.0.0.1:5051 for writer].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// Plugin folder, watched for drop-ins [default: the bundled plugins
    /// beside the binary (<bin>/../share/eventsift/plugins, <bin>/plugins,
    /// <bin>/../plugins), else target/plugins].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins: Option<PathBuf>,
    /// Kafka bootstrap servers, e.g. 127.0.0.1:9092.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<String>,
    /// Kafka topic [default: events].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Data directory: embedded log in log/, plugin cache in cache/ [default: ./eventsift-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Warehouse: a local path or hdfs://host:port/path [default: ./warehouse].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<String>,
    /// Writer: table format of a new warehouse, hive (Parquet in dt=
    /// folders, read by the seed's Hive and Presto) or delta (Delta Lake
    /// tables, compactable, with per-player deletes); a warehouse keeps the
    /// format it was created with [default: hive].
    #[arg(long, value_name = "hive|delta")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_format: Option<String>,
    /// Writer commit interval, e.g. 10s [default: 10s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval: Option<String>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Request bytes the API holds at once, in MiB: bodies as read and
    /// decoded, and what is built from them; beyond it a 503 with
    /// Retry-After [default: 256].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_budget_mib: Option<usize>,
    /// How long a publish may wait for an acknowledgement before the API answers 503 [default: 5s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_timeout: Option<String>,
    /// Memory cap per plugin instance in MiB [default: 64].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_memory_mib: Option<usize>,
    /// CPU deadline per plugin call, e.g. 100ms [default: 100ms].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_deadline: Option<String>,
    /// Plugin log lines below this level are dropped: trace, debug, info, warn or error [default: info].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_log_level: Option<String>,
    /// Log lines per second each plugin may write over time [default: 100].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_log_rate: Option<u32>,
    /// Log lines a plugin may write at once, past the rate [default: 1000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_log_burst: Option<u32>,
    /// Writer: Kafka consumer group [default: eventsift-writer].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Writer: how long an event whose type has no plugin waits for one before
    /// it goes to rejected_events [default: 30s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_wait: Option<String>,
    /// Writer: cap on buffered, uncommitted Parquet bytes in MiB; reaching it
    /// commits early and pauses consumption meanwhile, so memory stays bounded
    /// [default: 64].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_buffer_mib: Option<usize>,
    /// Writer: rows per source partition after which files are committed
    /// early [default: 1000000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_file_rows: Option<u64>,
    /// Writer: commit records kept per source partition; older ones are
    /// pruned [default: 64].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_commit_records: Option<usize>,
    /// Writer: start a new commit chain for partitions whose chain belongs
    /// to this source identity but cannot continue (its data dir or topic
    /// was replaced, or it ends before the chain); the writer prints the
    /// identity when it refuses. Nothing happens without it.
    #[arg(long, value_name = "SOURCE_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_chain_from: Option<String>,
    /// Writer: skip records the source deleted (retention) before they were
    /// written, logging and counting them, instead of stopping the partition.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub accept_retention_gaps: bool,
    /// Bound on each warehouse (HDFS) call, e.g. 10s [default: 10s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warehouse_timeout: Option<String>,
    /// HTTP: time a client has to send a request's head, counted from when
    /// the connection is ready for it (so it also closes idle keep-alive
    /// connections) [default: 10s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_header_timeout: Option<String>,
    /// HTTP: a connection with no bytes moving either way for this long is
    /// closed (checked every quarter of it) [default: 60s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_idle_timeout: Option<String>,
    /// HTTP: time a request body may take to arrive; 408 beyond [default: 30s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_body_timeout: Option<String>,
    /// HTTP: connections served at once; more are refused [default: three
    /// quarters of the descriptor limit (ulimit -n) left after 64].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// HTTP: largest request target in bytes; 414 beyond [default: 8192].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_uri_bytes: Option<usize>,
    /// HTTP: largest sum of request header names and values in bytes; 431
    /// beyond [default: 65536; above 131072 the HTTP library answers 431
    /// itself, with an empty body].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<usize>,
    /// HTTP: largest Host, User-Agent or Accept value in bytes (the envelope
    /// keeps them in every row); 431 beyond [default: 1024].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_captured_header_bytes: Option<usize>,
    /// Batches: events per /v1/batch request; 413 beyond [default: 1000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_events: Option<usize>,
    /// Batches: bytes per event; a larger event is rejected [default: 65536].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_event_bytes: Option<usize>,
    /// Events whose device time (client_ts) is older than this are rejected
    /// [default: 30days].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_time_horizon: Option<String>,
    /// Events whose device time is ahead of the server's by more than this
    /// are rejected [default: 1day].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_time_ahead: Option<String>,
    /// Origin a browser game may call from (repeat it; "*" for any); the
    /// config file's cors_origins otherwise [default: none].
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    #[serde(rename = "cors_origins", skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<String>,
    /// Writer: how long client-named event ids are remembered per source
    /// partition for deduplication [default: 1day].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_window: Option<String>,
    /// Writer: client-named event ids remembered at most, over all the
    /// partitions it consumes (split evenly) [default: 4000000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_max_ids: Option<usize>,
    /// Writer: memory for remembered ids in MiB, over all the partitions it
    /// consumes (split evenly) [default: 256].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_max_mib: Option<usize>,
    /// Writer: a snapshot of the remembered ids every this many commits of a
    /// partition [default: 16].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_snapshot_every: Option<usize>,
}

impl DaemonArgs {
    pub fn load(&self) -> Result<Config> {
        let config = Config::load(self.config.as_deref(), self)
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        config
            .check()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        Ok(config)
    }
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Create a plugin project in a new folder NAME (the SDK vendored into
    /// it, a native unit test and samples.jsonl).
    New {
        /// The plugin's name (and folder).
        name: String,
        /// The project's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// The event type it owns [default: NAME].
        #[arg(long)]
        event_type: Option<String>,
        /// The table its rows go to [default: NAME_events].
        #[arg(long)]
        table: Option<String>,
        /// Its HTTP route; each {param} becomes a column
        /// [default: "POST /<event type>/{value}"].
        #[arg(long)]
        route: Option<String>,
        /// Where to create the folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build the project in DIR into a component (adding the Rust target
    /// when missing) and check it.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Run sample events through a component, in the daemon's sandbox and
    /// limits: validate as the API does, process as the writer does; print
    /// the rows with the table's full schema, the rejections, faults and
    /// the time per event.
    Test {
        /// The plugin's .wasm file.
        file: PathBuf,
        /// Samples, one `/v1/batch` item per line (`-`: standard input)
        /// [default: samples.jsonl next to the project, when there].
        #[arg(long)]
        events: Option<PathBuf>,
        /// Request lines such as `POST /purchase_a_horse/1/small/1`.
        #[arg(long)]
        routes: Option<PathBuf>,
        /// Exit non-zero on any rejection or fault.
        #[arg(long)]
        strict: bool,
        /// Widest value printed; longer ones are cut.
        #[arg(long, default_value_t = 40)]
        max_cell: usize,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Load a plugin, check it against the contract and print its metadata.
    Check {
        /// The plugin's .wasm file.
        file: PathBuf,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Load every plugin of a folder as the daemon would and list them.
    List {
        /// Plugin folder [default: as for the daemon].
        #[arg(long, env = "EVENTSIFT_PLUGINS")]
        plugins: Option<PathBuf>,
        /// Data directory; compiled plugins are cached in its `cache/`.
        #[arg(long, env = "EVENTSIFT_DATA_DIR", default_value = "./eventsift-data")]
        data_dir: PathBuf,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
}

/// Sandbox limits of every plugin instance.
#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Memory cap per plugin instance, in MiB.
    #[arg(long, env = "EVENTSIFT_PLUGIN_MEMORY_MIB", default_value_t = 64)]
    pub plugin_memory_mib: usize,
    /// CPU deadline per plugin call (a batch), e.g. 100ms.
    #[arg(long, env = "EVENTSIFT_PLUGIN_DEADLINE", default_value = "100ms")]
    pub plugin_deadline: humantime::Duration,
    /// Plugin log lines below this level are not shown (contract 0.2 plugins).
    #[arg(long, env = "EVENTSIFT_PLUGIN_LOG_LEVEL", default_value = "trace")]
    pub plugin_log_level: crate::plugin::LogLevel,
}

impl SandboxArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.plugin_memory_mib << 20,
            deadline: *self.plugin_deadline,
        }
    }
}

pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let version = crate::long_version();
    // Built once per process; clap keeps a `&'static str`.
    let version: &'static str = Box::leak(version.into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The plugin kit's commands print their own report: the daemon's
    // INFO lines (a temporary registry loading, schemas recorded) are noise
    // there unless asked for.
    let default_level = match cli.command {
        Command::Plugin(_) => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVENTSIFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // Colour codes only on a terminal, never in files or pipes.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // One JSON object per line: timestamp, level, target, fields
        // (message, table, partition, position...) and the spans.
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => daemon(args.load()?, false),
        Command::Api(args) => {
            let config = args.load()?;
            if config.kafka.is_none() {
                eprintln!(
                    "error: `eventsift api` needs --kafka (or EVENTSIFT_KAFKA, or `kafka` in the config \
                     file): the API alone has no embedded log; use `eventsift serve` to run without Kafka"
                );
                return Ok(ExitCode::from(2));
            }
            daemon(config, true)
        }
        Command::Writer(args) => {
            let config = args.load()?;
            if config.kafka.is_none() {
                eprintln!(
                    "error: `eventsift writer` needs --kafka (or EVENTSIFT_KAFKA, or `kafka` in the config \
                     file); `eventsift serve` runs the writer on the embedded log"
                );
                return Ok(ExitCode::from(2));
            }
            writer_only(config, args.exit_at_end)
        }
        Command::Query { wh, format, sql } => query(&wh.warehouse, format, sql.as_deref()),
        Command::Tables { wh } => tables(&wh.warehouse),
        Command::Ddl { wh, dialect } => ddl(&wh.warehouse, dialect),
        Command::Compact {
            wh,
            table,
            older_than,
            target_size,
        } => crate::lake::cli::compact(
            &wh.warehouse,
            crate::lake::CompactOptions {
                table,
                older_than,
                target_size,
            },
        ),
        Command::Vacuum { wh, table, retain } => {
            crate::lake::cli::vacuum(&wh.warehouse, table.as_deref(), retain)
        }
        Command::Forget { wh, user, game } => {
            crate::lake::cli::forget(&wh.warehouse, &user, game.as_deref())
        }
        Command::Demo { plugins, dir } => {
            let plugins = match plugins {
                Some(p) if !p.is_dir() => {
                    anyhow::bail!("the plugin folder {} does not exist", p.display())
                }
                Some(p) => p,
                None => crate::config::default_plugins(),
            };
            crate::demo::run(&plugins, dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { url, live, timeout } => health(url, live, *timeout),
        Command::Loadgen {
            target,
            scenario,
            rate,
            duration,
            clients,
            acked,
            record,
            batch_size,
            gzip,
            retry_share,
        } => {
            if !(0.0..=1.0).contains(&retry_share) {
                eprintln!("error: --retry-share must be between 0 and 1, got {retry_share}");
                return Ok(ExitCode::from(2));
            }
            if batch_size == 0 {
                eprintln!("error: --batch-size must be at least 1");
                return Ok(ExitCode::from(2));
            }
            if let Some(r) = rate
                && !(r.is_finite() && r > 0.0)
            {
                eprintln!("error: --rate must be a number of requests per second above 0, got {r}");
                return Ok(ExitCode::from(2));
            }
            if clients == 0 {
                eprintln!("error: --clients must be at least 1");
                return Ok(ExitCode::from(2));
            }
            loadgen(
                target,
                scenario,
                rate,
                duration.map(Into::into),
                clients,
                acked,
                record,
                crate::loadgen::BatchLoad {
                    size: batch_size,
                    gzip,
                    retry_share,
                },
            )
        }
        Command::Plugin(PluginsCommand::New {
            name,
            lang,
            event_type,
            table,
            route,
            dir,
        }) => plugin_new(
            &dir,
            crate::kit::new::NewOptions {
                name,
                lang: match lang {
                    Lang::Rust => crate::kit::new::Lang::Rust,
                    Lang::Ts => crate::kit::new::Lang::Ts,
                },
                event_type,
                table,
                route,
            },
        ),
        Command::Plugin(PluginsCommand::Build { dir, sandbox }) => {
            let wasm = crate::kit::build::build(&dir)?;
            check(&wasm, &sandbox)
        }
        Command::Plugin(PluginsCommand::Test {
            file,
            events,
            routes,
            strict,
            max_cell,
            sandbox,
        }) => plugin_test(file, events, routes, strict, max_cell, &sandbox),
        Command::Plugin(PluginsCommand::Check { file, sandbox }) => check(&file, &sandbox),
        Command::Plugin(PluginsCommand::List {
            plugins,
            data_dir,
            sandbox,
        }) => {
            let plugins = plugins.unwrap_or_else(crate::config::default_plugins);
            list(&plugins, &data_dir.join("cache"), &sandbox)
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT (or, for `serve`, until it can no
/// longer keep its promise: then it exits non-zero).
fn daemon(config: Config, api_only: bool) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        tracing::info!(
            kafka = config.kafka.as_deref().unwrap_or("(embedded log)"),
            plugins = %config.plugins.display(),
            "eventsift {} starting",
            if api_only { "api" } else { "serve" }
        );
        if api_only {
            // With a warehouse, plugin versions must fit its table schemas.
            let (c, w) = (
                config.clone(),
                config.warehouse_given.then(|| config.warehouse.clone()),
            );
            let plugins = tokio::task::spawn_blocking(move || {
                crate::daemon::Plugins::start(&c, w.as_deref())
            })
            .await??;
            let transport = crate::daemon::transport(&config)?;
            let api = crate::daemon::RunningApi::start(
                &config,
                plugins.registry.clone(),
                transport,
                None,
            )
            .await?;
            let admin = crate::daemon::start_admin(
                &config,
                crate::admin::Role::Api,
                plugins.registry.clone(),
                Some(api.state.clone()),
                None,
            )
            .await?;
            admin.notify_when_ready();
            crate::daemon::shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = crate::admin::notify::send("STOPPING=1");
            let stopped = api.stop().await;
            admin.stop().await;
            stopped.map(|()| ExitCode::SUCCESS)
        } else {
            let serve = crate::daemon::Serve::start(&config).await?;
            let admin = crate::daemon::start_admin(
                &config,
                crate::admin::Role::Serve,
                serve.plugins.registry.clone(),
                Some(serve.api.state.clone()),
                Some(serve.writer.status.clone()),
            )
            .await?;
            admin.notify_when_ready();
            let code = tokio::select! {
                () = crate::daemon::shutdown_signal() => {
                    tracing::info!("shutting down");
                    let _ = crate::admin::notify::send("STOPPING=1");
                    serve.stop().await.map(|()| ExitCode::SUCCESS)
                }
                why = serve.failed() => {
                    tracing::error!("{why}: stopping, so that nothing more is acknowledged");
                    let _ = crate::admin::notify::send("STOPPING=1");
                    let _ = serve.stop().await;
                    eprintln!("error: {why}");
                    Ok(ExitCode::FAILURE)
                }
            };
            admin.stop().await;
            code
        }
    })
}

/// Runs the writer alone until SIGTERM/SIGINT, with its admin listener.
fn writer_only(config: Config, exit_at_end: bool) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // A drain's ends are read first: what arrives later waits for the next run.
        let ends = if exit_at_end {
            let source = crate::daemon::kafka_source(&config, None)?;
            let ends =
                tokio::task::spawn_blocking(move || crate::writer::source::end_offsets(&source))
                    .await?
                    .context("reading the topic's end offsets (--exit-at-end)")?;
            tracing::info!("draining up to the end offsets {ends:?}, then exiting");
            Some(ends)
        } else {
            None
        };
        let c = config.clone();
        // The writer admits versions against the warehouse before writing
        // (their events go to rejected_events); at load it checks only who
        // owns an event type, so that file names cannot decide it.
        let plugins = tokio::task::spawn_blocking(move || {
            crate::daemon::Plugins::start_with(&c, Some(&c.warehouse), crate::daemon::Check::Owner)
        })
        .await??;
        let (c, r) = (config.clone(), plugins.registry.clone());
        // A drain takes every partition itself: no group join to wait for.
        let assign = ends.as_ref().map(|e| {
            let mut ps: Vec<i32> = e.keys().copied().collect();
            ps.sort_unstable();
            ps
        });
        let started =
            tokio::task::spawn_blocking(move || crate::daemon::start_writer_kafka(&c, r, assign))
                .await??;
        let http = crate::daemon::start_admin(
            &config,
            crate::admin::Role::Writer,
            plugins.registry.clone(),
            None,
            Some(started.status.clone()),
        )
        .await?;
        http.notify_when_ready();
        let status = started.status.clone();
        let died = async {
            while status.running.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        };
        let drained = async {
            let Some(ends) = &ends else {
                return std::future::pending().await;
            };
            while !crate::writer::drained(&started.status, ends)? {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Ok::<(), String>(())
        };
        let code = tokio::select! {
            () = crate::daemon::shutdown_signal() => {
                tracing::info!("shutting down");
                ExitCode::SUCCESS
            }
            d = drained => match d {
                Ok(()) => {
                    tracing::info!("every partition routed up to its end: committing and exiting");
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    tracing::error!("{why}");
                    eprintln!("error: {why}");
                    ExitCode::FAILURE
                }
            },
            () = died => {
                tracing::error!("the writer stopped: exiting, so that a supervisor restarts it");
                eprintln!("error: the writer stopped");
                ExitCode::FAILURE
            }
        };
        let _ = crate::admin::notify::send("STOPPING=1");
        let status = started.status.clone();
        let stopped = tokio::task::spawn_blocking(move || started.stop()).await?;
        http.stop().await;
        // A drain succeeds only when its final commit reached every end.
        let code = match (&ends, code == ExitCode::SUCCESS) {
            (Some(ends), true) => match crate::writer::drain_complete(&status, ends) {
                Ok(()) => code,
                Err(why) => {
                    tracing::error!("{why}");
                    eprintln!("error: {why}");
                    ExitCode::FAILURE
                }
            },
            _ => code,
        };
        match stopped {
            Ok(()) => Ok::<_, anyhow::Error>(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

/// `eventsift health`: GET the admin listener's `/readyz` (or `/healthz`),
/// print the answer, exit 0 on 200 and 1 otherwise.
fn health(url: Option<String>, live: bool, timeout: std::time::Duration) -> Result<ExitCode> {
    let path = if live { "/healthz" } else { "/readyz" };
    let bases: Vec<String> = match url {
        Some(u) => vec![u.trim_end_matches('/').to_owned()],
        None => match std::env::var("EVENTSIFT_ADMIN_LISTEN") {
            Ok(a) => {
                let a: std::net::SocketAddr = a
                    .parse()
                    .with_context(|| format!("EVENTSIFT_ADMIN_LISTEN={a:?} is not an address"))?;
                // A wildcard bind is reached on loopback.
                let ip = if a.ip().is_unspecified() {
                    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
                } else {
                    a.ip()
                };
                vec![format!(
                    "http://{}",
                    std::net::SocketAddr::new(ip, a.port())
                )]
            }
            Err(_) => [
                crate::admin::DEFAULT_ADMIN,
                crate::admin::DEFAULT_WRITER_ADMIN,
            ]
            .iter()
            .map(|a| format!("http://{a}"))
            .collect(),
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let mut last = String::new();
        for base in &bases {
            match client.get(format!("{base}{path}")).send().await {
                Ok(resp) => {
                    let code = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    println!("{base}{path}: {} {body}", code.as_u16());
                    return Ok(if code.is_success() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    });
                }
                // Nothing listens there: try the next default.
                Err(e) if e.is_connect() => last = format!("{base}{path}: {e}"),
                Err(e) => {
                    println!("{base}{path}: no answer: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        println!("no daemon answers: {last}");
        Ok(ExitCode::FAILURE)
    })
}

/// A one-line error and exit code 1 (query commands).
fn query_failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

fn query(
    warehouse: &str,
    format: crate::query::output::Format,
    sql: Option<&str>,
) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let wh = match crate::query::Warehouse::open(warehouse).await {
            Ok(wh) => wh,
            Err(e) => return Ok(query_failed(e)),
        };
        let Some(sql) = sql else {
            return prompt(&wh, format).await;
        };
        match wh.sql(sql).await {
            Ok(batches) => {
                print!("{}", crate::query::output::render(&batches, format)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(query_failed(e)),
        }
    })
}

/// The interactive prompt: statements end with `;`, history in
/// `~/.eventsift_history`, `quit` or Ctrl-D to leave.
async fn prompt(
    wh: &crate::query::Warehouse,
    format: crate::query::output::Format,
) -> Result<ExitCode> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".eventsift_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "eventsift query on {} ({} tables: {}). End statements with ';', leave with quit or Ctrl-D.",
        wh.root,
        wh.tables.len(),
        wh.tables
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut statement = String::new();
    loop {
        let line = match editor.readline(if statement.is_empty() {
            "eventsift> "
        } else {
            "        -> "
        }) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if statement.is_empty() && matches!(trimmed, "quit" | "exit" | "\\q") {
            break;
        }
        statement.push_str(&line);
        statement.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut statement);
        let _ = editor.add_history_entry(sql.trim());
        match wh.sql(sql.trim().trim_end_matches(';')).await {
            Ok(batches) => print!("{}", crate::query::output::render(&batches, format)?),
            Err(e) => eprintln!("error: {e}"),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(ExitCode::SUCCESS)
}

fn tables(warehouse: &str) -> Result<ExitCode> {
    use std::fmt::Write;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let wh = match crate::query::Warehouse::open(warehouse).await {
            Ok(wh) => wh,
            Err(e) => return Ok(query_failed(e)),
        };
        let last_commits = wh.last_commits().await;
        let mut out = String::new();
        if wh.tables.is_empty() && wh.damaged.is_empty() {
            let _ = writeln!(out, "no tables in {}", wh.root);
        }
        for (name, why) in &wh.damaged {
            let _ = writeln!(out, "{name}  DAMAGED, not served: {why}");
        }
        for t in &wh.tables {
            let rows = match wh.row_count(&t.name).await {
                Ok(n) => n,
                Err(e) => return Ok(query_failed(e)),
            };
            let _ = writeln!(
                out,
                "{}  {} rows, {} files, {} bytes, partitions dt={}, last commit {}",
                t.name,
                rows,
                t.files,
                t.bytes,
                t.partitions.iter().cloned().collect::<Vec<_>>().join(","),
                last_commits.get(&t.name).map_or("unknown", String::as_str)
            );
            let _ = writeln!(out, "  location {}", t.location);
            for f in t.schema.fields() {
                let _ = writeln!(
                    out,
                    "  {:<18} {}{}",
                    f.name(),
                    f.data_type(),
                    if f.is_nullable() { "" } else { " not null" }
                );
            }
            let _ = writeln!(out, "  {:<18} Utf8 (partition)", "dt");
        }
        if wh
            .tables
            .iter()
            .any(|t| t.name == crate::writer::table::REJECTED_TABLE)
        {
            match wh
                .sql(
                    "SELECT stage, reason, COUNT(*) AS records FROM rejected_events \
                     GROUP BY stage, reason ORDER BY records DESC, stage, reason",
                )
                .await
            {
                Ok(b) => {
                    let _ = writeln!(out, "\nrejected_events by reason:");
                    out.push_str(&crate::query::output::render(
                        &b,
                        crate::query::output::Format::Table,
                    )?);
                }
                Err(e) => return Ok(query_failed(e)),
            }
        }
        print!("{out}");
        Ok(ExitCode::SUCCESS)
    })
}

fn ddl(warehouse: &str, dialect: crate::query::ddl::Dialect) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let wh = match crate::query::Warehouse::open(warehouse).await {
            Ok(wh) => wh,
            Err(e) => return Ok(query_failed(e)),
        };
        match crate::query::ddl::ddl(&wh.root, &wh.tables, dialect) {
            Ok(s) => {
                print!("{s}");
                for (name, why) in &wh.damaged {
                    println!("-- {name}: not registered, the table cannot be read: {why}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(query_failed(e)),
        }
    })
}

fn loadgen(
    target: String,
    scenario: crate::loadgen::Scenario,
    rate: Option<f64>,
    duration: Option<std::time::Duration>,
    clients: usize,
    acked: Option<u64>,
    record: Option<PathBuf>,
    batch: crate::loadgen::BatchLoad,
) -> Result<ExitCode> {
    use crate::loadgen::{Load, Scenario};
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let requests = match scenario {
            Scenario::Seed => Some(std::sync::Arc::new(crate::loadgen::seed_requests())),
            Scenario::Mix | Scenario::Batch => None,
        };
        let load = Load {
            target,
            rate,
            duration: duration.or(match scenario {
                Scenario::Mix | Scenario::Batch if acked.is_none() => {
                    Some(std::time::Duration::from_secs(10))
                }
                _ => None,
            }),
            clients,
            progress: true,
            until_acked: acked,
            on_reply: None,
            batch: (scenario == Scenario::Batch).then_some(batch),
        };
        let mut load = load;
        let writer = match &record {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                let w = std::sync::Arc::new(std::sync::Mutex::new(std::io::BufWriter::new(file)));
                let out = w.clone();
                load.on_reply = Some(std::sync::Arc::new(move |r: crate::loadgen::Reply| {
                    use crate::loadgen::Outcome;
                    use std::io::Write;
                    let line = match &r.outcome {
                        Outcome::Acked(id) => format!("{} acked {id}", r.seq),
                        Outcome::Rejected(s) => format!("{} rejected {s}", r.seq),
                        Outcome::Unknown(why) => {
                            format!("{} unknown {}", r.seq, why.replace('\n', " "))
                        }
                    };
                    let _ = writeln!(out.lock().unwrap_or_else(|p| p.into_inner()), "{line}");
                }));
                Some(w)
            }
            None => None,
        };
        let summary = crate::loadgen::run(&load, requests, std::sync::Arc::new(|_| {})).await?;
        if let Some(w) = writer {
            use std::io::Write;
            w.lock().unwrap_or_else(|p| p.into_inner()).flush()?;
        }
        print!("{}", summary.report());
        Ok(if summary.ok == summary.sent {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

fn runtime(sandbox: &SandboxArgs, cache_dir: Option<&Path>) -> Result<std::sync::Arc<Runtime>> {
    Runtime::new(RuntimeConfig {
        limits: sandbox.limits(),
        cache_dir: cache_dir.map(Path::to_path_buf),
        log: crate::plugin::LogConfig {
            level: sandbox.plugin_log_level,
            ..Default::default()
        },
    })
}

/// Languages `plugin new` scaffolds.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Lang {
    Rust,
    /// TypeScript (esbuild and componentize-js from npm; Node.js 20+)
    Ts,
}

fn plugin_new(dir: &Path, options: crate::kit::new::NewOptions) -> Result<ExitCode> {
    let made = crate::kit::new::create(dir, &options)?;
    let ident = options.name.replace('-', "_");
    println!("created {}", made.display());
    match options.lang {
        crate::kit::new::Lang::Rust => println!(
            "next: cd {} && cargo test && eventsift plugin build && eventsift plugin test \
  target/wasm32-wasip2/release/{ident}.wasm --events samples.jsonl",
            made.display(),
        ),
        crate::kit::new::Lang::Ts => println!(
            "next: cd {} && npm install && npm test && eventsift plugin build && eventsift plugin test \
  target/{ident}.wasm --events samples.jsonl",
            made.display(),
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn plugin_test(
    file: PathBuf,
    events: Option<PathBuf>,
    routes: Option<PathBuf>,
    strict: bool,
    max_cell: usize,
    sandbox: &SandboxArgs,
) -> Result<ExitCode> {
    use crate::kit::test::{Input, TestOptions};
    let mut inputs = Vec::new();
    match events {
        Some(e) => inputs.push(Input::Samples(e)),
        None if routes.is_none() => {
            // The project's samples: `samples.jsonl` in the current
            // folder, or above the component (`<project>/target/...`).
            let found = std::iter::once(PathBuf::from("samples.jsonl"))
                .chain(file.ancestors().skip(1).map(|d| d.join("samples.jsonl")))
                .find(|p| p.is_file());
            match found {
                Some(p) => inputs.push(Input::Samples(p)),
                None => {
                    anyhow::bail!("no events to test: pass --events FILE (or -) or --routes FILE")
                }
            }
        }
        None => {}
    }
    if let Some(r) = routes {
        inputs.push(Input::Routes(r));
    }
    let report = crate::kit::test::run(&TestOptions {
        wasm: file,
        inputs,
        limits: sandbox.limits(),
        max_cell,
        log_level: sandbox.plugin_log_level,
    })?;
    print!("{}", report.text);
    if strict && (report.rejected > 0 || report.faults > 0) {
        eprintln!(
            "error: --strict: {} rejected, {} faults",
            report.rejected, report.faults
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn check(file: &Path, sandbox: &SandboxArgs) -> Result<ExitCode> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let runtime = runtime(sandbox, None)?;
    let plugin = LoadedPlugin::load(&runtime, file.to_path_buf(), &wasm)
        .with_context(|| format!("{} is not a valid eventsift plugin", file.display()))?;
    print!("{}", describe(&plugin, wasm.len()));
    println!(
        "ok: {} is valid against {}@{} (this host serves {})",
        file.display(),
        CONTRACT.package,
        plugin.contract.version,
        CONTRACT.served().collect::<Vec<_>>().join(" and ")
    );
    Ok(ExitCode::SUCCESS)
}

/// The human-readable description `plugins check` prints.
pub fn describe(plugin: &LoadedPlugin, bytes: usize) -> String {
    use std::fmt::Write;
    let m = &plugin.meta;
    let mut s = String::new();
    let _ = writeln!(s, "plugin      {} {}", m.name, m.version);
    let _ = writeln!(
        s,
        "contract    {}@{}{}",
        CONTRACT.package,
        plugin.contract.version,
        if plugin.contract.logs() {
            ""
        } else {
            " (no log import)"
        }
    );
    let _ = writeln!(s, "event type  {}", m.event_type);
    let _ = writeln!(s, "table       {}", m.table);
    let _ = writeln!(
        s,
        "route       {}",
        m.route
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "(none)".into())
    );
    if m.columns.is_empty() {
        let _ = writeln!(s, "columns     (none besides the common ones)");
    }
    for (i, c) in m.columns.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:<12}{:<12}{:<10}{:<9}{}",
            if i == 0 { "columns" } else { "" },
            c.name,
            c.kind.as_str(),
            if c.nullable { "null" } else { "not null" },
            c.description
        );
    }
    let _ = writeln!(
        s,
        "file        {} ({bytes} bytes, sha256 {})",
        plugin.source.display(),
        plugin.sha256
    );
    s
}

fn list(dir: &Path, cache: &Path, sandbox: &SandboxArgs) -> Result<ExitCode> {
    let registry = Registry::new(runtime(sandbox, Some(cache))?, dir);
    // Files written less than `STABLE_AFTER` ago are pending (maybe half
    // written): wait for them to settle, as the daemon would, for 10 s at
    // most, so that a plugin copied in just now is listed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut refused = 0;
    loop {
        let report = registry.sync();
        refused += report
            .changes
            .iter()
            .filter(|c| matches!(c, crate::plugin::Change::Refused { .. }))
            .count();
        if !report.pending {
            break;
        }
        if std::time::Instant::now() >= deadline {
            eprintln!("warning: some plugin files are still being written; not listed");
            refused += 1;
            break;
        }
        std::thread::sleep(crate::plugin::registry::STABLE_AFTER / 4);
    }
    let snapshot = registry.snapshot();
    for p in snapshot.plugins() {
        let route = p
            .meta
            .route
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
        println!(
            "{:<12} {:<8} {:<20} {:<22} {}",
            p.meta.name, p.meta.version, p.meta.event_type, p.meta.table, route
        );
    }
    Ok(if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `128MiB`, `1GiB`, `500kB`, or plain bytes.
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s}: not a size"))?;
    let k = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        _ => return Err(format!("{s}: unknown unit (use B, KiB, MiB or GiB)")),
    };
    n.checked_mul(k).ok_or_else(|| format!("{s}: too large"))
}
