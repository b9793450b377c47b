//! The plugin kit behind `eventsift plugin new | build | test`: what a game
//! team needs to go from nothing to a live event type without this
//! repository.
//!
//! - [`new`]: scaffolds a plugin project in a new folder, with the SDK
//!   vendored into it (the installed binary carries the SDK's sources and
//!   this workspace's lock file, so the project builds with the versions
//!   this release was tested with, offline once they are cached).
//! - [`build`]: builds a project into a component (adding the Rust target
//!   when missing) and checks the result against the contract.
//! - [`test`]: runs sample events through a component in the daemon's
//!   sandbox and limits, `validate` as the API does and `process` with the
//!   writer's own router, and prints the rows with the table's full schema.

pub mod build;
pub mod new;
pub mod test;
