//! The command line: `eventsift plugins check|list`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::plugin::sandbox::Limits;
use crate::plugin::{CONTRACT, LoadedPlugin, Registry, Runtime, RuntimeConfig};

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
    /// Inspect event-type plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
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
    /// CPU deadline per plugin call (a batch), in milliseconds.
    #[arg(long, env = "EVENTSIFT_PLUGIN_DEADLINE_MS", default_value_t = 100)]
    pub plugin_deadline_ms: u64,
}

impl SandboxArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.plugin_memory_mib << 20,
            deadline: Duration::from_millis(self.plugin_deadline_ms),
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
        Command::Plugins(PluginsCommand::Check { file, sandbox }) => check(&file, &sandbox),
        Command::Plugins(PluginsCommand::List { plugins, sandbox }) => list(&plugins, &sandbox),
    }
}

fn runtime(sandbox: &SandboxArgs) -> Result<std::sync::Arc<Runtime>> {
    Runtime::new(RuntimeConfig {
        limits: sandbox.limits(),
        cache_dir: None,
    })
}

fn check(file: &Path, sandbox: &SandboxArgs) -> Result<ExitCode> {
    let wasm = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let runtime = runtime(sandbox)?;
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

fn list(dir: &Path, sandbox: &SandboxArgs) -> Result<ExitCode> {
    let registry = Registry::new(runtime(sandbox)?, dir);
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
