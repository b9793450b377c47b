//! The plugin runtime: one wasmtime engine, plugins compiled once (with an
//! on-disk cache), sandboxed instances pooled per plugin, batches isolated
//! from faults, and a registry that hot-reloads a plugin folder.
//!
//! - [`bindings`]: the only `bindgen!` of the host, for `wit/plugin.wit`.
//! - [`log`]: the `log` import: rate limits, tags, levels and counters.
//! - [`contract`]: contract version and metadata rules a plugin must meet.
//! - [`engine`]: the engine, its epoch ticker and the compilation cache.
//! - [`sandbox`]: per-instance limits (memory cap, CPU deadline) and grants.
//! - [`instance`]: a loaded plugin, its instance pool and fault isolation.
//! - [`registry`]: the set of loaded plugins, reloaded from a folder.
//! - [`watcher`]: watches the folder and drives registry reloads.

pub mod bindings;
pub mod contract;
pub mod engine;
pub mod instance;
pub mod log;
pub mod memo;
pub mod registry;
pub mod sandbox;
pub mod watcher;

pub use contract::{Built, CONTRACT, ColumnSpec, ColumnType, PluginMeta, Route};
pub use engine::{Runtime, RuntimeConfig};
pub use instance::{Batch, BatchOutcome, LoadedPlugin, RejectStage, Rejected, Validated};
pub use log::{LogConfig, LogLevel, PluginLine};
pub use registry::{Change, Registry, Snapshot};
pub use sandbox::MemoryLimitExceeded;

/// Why a plugin file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a WebAssembly component: {0}")]
    NotComponent(String),
    #[error("not an eventsift plugin: it exports no `{expected}` interface (exports: {found})")]
    NotAPlugin { expected: String, found: String },
    #[error(
        "incompatible contract: plugin built against {found}, this host speaks {expected} \
         (same major version needed, and for 0.x the same minor)"
    )]
    Incompatible { found: String, expected: String },
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
    #[error("plugin trapped in describe(): {0}")]
    Describe(String),
    #[error("invalid plugin metadata: {0}")]
    InvalidMeta(String),
}
