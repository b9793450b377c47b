//! eventsift: a game-analytics event pipeline in one daemon.
//!
//! - [`plugin`]: the WebAssembly plugin runtime (contract, sandbox, pool,
//!   hot-reloading registry).
//! - [`api`]: the HTTP event API.
//! - [`transport`]: Kafka or the embedded log, behind one trait.
//! - [`writer`]: the stream writer: plugins -> Arrow -> Parquet, exactly once.
//! - [`query`]: SQL over the warehouse (DataFusion), catalogs and DDL.
//! - [`storage`]: object-store plumbing: every request bounded.
//! - [`loadgen`], [`demo`]: HTTP load and the one-command demo.
//! - [`config`]: configuration from flags, environment and file.
//! - [`daemon`]: wiring and graceful shutdown.
//! - [`admin`]: the admin listener: metrics, plugins, the status page.
//! - [`cli`]: the `eventsift` command line.

pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod faults;
pub mod kit;
pub mod lake;
pub mod loadgen;
pub mod plugin;
pub mod query;
pub mod storage;
pub mod transport;
pub mod writer;

/// The build's git commit (short), or "unknown" (see `build.rs`).
pub const GIT_COMMIT: &str = env!("EVENTSIFT_GIT_COMMIT");

/// The version, the plugin contract versions served and the commit.
pub fn build_info() -> serde_json::Value {
    let c = plugin::CONTRACT;
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "contract": format!("{}@{}", c.package, c.version),
        "contracts_served": std::iter::once(c.version).chain(c.older.iter().copied()).collect::<Vec<_>>(),
        "commit": GIT_COMMIT,
    })
}

/// `eventsift --version`: e.g. `0.1.0 (contract eventsift:plugin@0.2.0,
/// also serves 0.1.0; commit 0123456789ab)`.
pub fn long_version() -> String {
    let c = plugin::CONTRACT;
    let older = if c.older.is_empty() {
        String::new()
    } else {
        format!(", also serves {}", c.older.join(", "))
    };
    format!(
        "{} (contract {}@{}{older}; commit {GIT_COMMIT})",
        env!("CARGO_PKG_VERSION"),
        c.package,
        c.version
    )
}
