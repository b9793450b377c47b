//! Storage plumbing shared by the writer, the readers and the lake
//! commands: every request bounded by a timeout ([`timeout`]).

pub mod timeout;

pub use timeout::TimeoutStore;
