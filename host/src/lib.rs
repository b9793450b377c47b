//! eventsift: a game-analytics event pipeline in one daemon.
//!
//! - [`plugin`]: the WebAssembly plugin runtime (contract, sandbox, pool,
//!   hot-reloading registry).
//! - [`api`]: the HTTP event API.
//! - [`transport`]: Kafka or the embedded log, behind one trait.
//! - [`writer`]: the stream writer: plugins -> Arrow -> Parquet, exactly once.
//! - [`config`]: configuration from flags, environment and file.
//! - [`daemon`]: wiring and graceful shutdown.
//! - [`cli`]: the `eventsift` command line.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod plugin;
pub mod transport;
pub mod writer;
