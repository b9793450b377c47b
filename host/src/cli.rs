//! The command line: `eventsift plugins check|list`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::plugin::sandbox::Limits;
use crate::plugin::{CONTRACT, LoadedPlugin, Registry, Runtime, RuntimeConfig};
use crate::transport::Transport;

#[derive(Debug, Parser)]
#[command(
    name = "eventsift",
    version,
    about = "Game-analytics event pipeline: HTTP API, Wasm plugins, Parquet tables"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API and the writer in one process (embedded log without
    /// --kafka, Kafka with it).
    Serve(DaemonArgs),
    /// Run the HTTP API alone, publishing to Kafka (--kafka is required).
    Api(DaemonArgs),
    /// Run the writer alone: Kafka (--kafka is required) -> plugins -> Parquet
    /// tables in --warehouse; serves /healthz and /metrics on --listen.
    Writer(DaemonArgs),
    /// Inspect event-type plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
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
    /// Listen address [default: 0.0.0.0:5000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Plugin folder, watched for drop-ins [default: target/plugins].
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
    /// Writer commit interval, e.g. 10s [default: 10s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval: Option<String>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
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
    /// [default: 256].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_buffer_mib: Option<usize>,
    /// Writer: rows per source partition after which files are committed
    /// early [default: 1000000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_file_rows: Option<u64>,
}

impl DaemonArgs {
    pub fn load(&self) -> Result<Config> {
        Config::load(self.config.as_deref(), self)
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))
    }
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Load a plugin, check it against the contract and print its metadata.
    Check {
        /// The plugin's .wasm file.
        file: PathBuf,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Load every plugin of a folder as the daemon would and list them.
    List {
        /// Plugin folder.
        #[arg(long, env = "EVENTSIFT_PLUGINS", default_value = "target/plugins")]
        plugins: PathBuf,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EVENTSIFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
            writer_only(config)
        }
        Command::Plugins(PluginsCommand::Check { file, sandbox }) => check(&file, &sandbox),
        Command::Plugins(PluginsCommand::List {
            plugins,
            data_dir,
            sandbox,
        }) => list(&plugins, &data_dir.join("cache"), &sandbox),
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
fn daemon(config: Config, api_only: bool) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let plugins = crate::daemon::Plugins::start(&config)?;
        let transport = crate::daemon::transport(&config)?;
        tracing::info!(
            transport = transport.name(),
            plugins = %config.plugins.display(),
            "eventsift {} starting",
            if api_only { "api" } else { "serve" }
        );
        let writer = if api_only {
            None
        } else {
            // Off the async threads: opening a warehouse blocks.
            let (c, t, r) = (config.clone(), transport.clone(), plugins.registry.clone());
            Some(
                tokio::task::spawn_blocking(move || crate::daemon::start_writer(&c, &t, r))
                    .await??,
            )
        };
        let api =
            crate::daemon::RunningApi::start(&config, plugins.registry.clone(), transport).await?;
        crate::daemon::shutdown_signal().await;
        tracing::info!("shutting down");
        api.stop().await?;
        if let Some(writer) = writer {
            tokio::task::spawn_blocking(move || writer.stop()).await??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the writer alone until SIGTERM/SIGINT, with `/healthz` and `/metrics`.
fn writer_only(config: Config) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let plugins = crate::daemon::Plugins::start(&config)?;
        let (c, r) = (config.clone(), plugins.registry.clone());
        let started =
            tokio::task::spawn_blocking(move || crate::daemon::start_writer_kafka(&c, r)).await??;
        let writer = std::sync::Arc::new(std::sync::Mutex::new(Some(started)));
        let http = crate::daemon::WriterHttp::start(config.listen, writer.clone()).await?;
        crate::daemon::shutdown_signal().await;
        tracing::info!("shutting down");
        let taken = writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = taken {
            tokio::task::spawn_blocking(move || w.stop()).await??;
        }
        http.stop().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn runtime(sandbox: &SandboxArgs, cache_dir: Option<&Path>) -> Result<std::sync::Arc<Runtime>> {
    Runtime::new(RuntimeConfig {
        limits: sandbox.limits(),
        cache_dir: cache_dir.map(Path::to_path_buf),
    })
}

fn check(file: &Path, sandbox: &SandboxArgs) -> Result<ExitCode> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let runtime = runtime(sandbox, None)?;
    let plugin = LoadedPlugin::load(&runtime, file.to_path_buf(), &wasm)
        .with_context(|| format!("{} is not a valid eventsift plugin", file.display()))?;
    print!("{}", describe(&plugin, wasm.len()));
    println!("ok: {} is valid against {CONTRACT}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// The human-readable description `plugins check` prints.
pub fn describe(plugin: &LoadedPlugin, bytes: usize) -> String {
    use std::fmt::Write;
    let m = &plugin.meta;
    let mut s = String::new();
    let _ = writeln!(s, "plugin      {} {}", m.name, m.version);
    let _ = writeln!(s, "contract    {CONTRACT}");
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
    let report = registry.sync();
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
    let refused = report
        .changes
        .iter()
        .filter(|c| matches!(c, crate::plugin::Change::Refused { .. }))
        .count();
    Ok(if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
