//! eventsift: a game-analytics event pipeline in one daemon.
//!
//! - [`plugin`]: the WebAssembly plugin runtime (contract, sandbox, pool,
//!   hot-reloading registry).
//! - [`api`]: the HTTP event API.
//! - [`transport`]: Kafka or the embedded log, behind one trait.
//! - [`writer`]: the stream writer: plugins -> Arrow -> Parquet, exactly once.
//! - [`query`]: SQL over the warehouse (DataFusion), catalogs and DDL.
//! - [`loadgen`], [`demo`]: HTTP load and the one-command demo.
//! - [`config`]: configuration from flags, environment and file.
//! - [`daemon`]: wiring and graceful shutdown.
//! - [`cli`]: the `eventsift` command line.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod faults;
pub mod kit;
pub mod loadgen;
pub mod plugin;
pub mod query;
pub mod transport;
pub mod writer;
