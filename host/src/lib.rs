//! eventsift: a game-analytics event pipeline in one daemon.
//!
//! - [`plugin`]: the WebAssembly plugin runtime (contract, sandbox, pool,
//!   hot-reloading registry).
//! - [`cli`]: the `eventsift` command line.

pub mod cli;
pub mod plugin;
