//! Hooks into one [`Commits`](super::Commits) instance, for tests and the
//! model check: where it may be paused or scheduled, and where its names
//! and waits come from. The process-wide `EVENTSIFT_FAILPOINT` cannot pause
//! one of two writers in one process; these can. Production code uses
//! [`NoHooks`]: real UUIDs, real sleeps, blocking locks.

use std::time::Duration;

/// A named point of the protocol a hook sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// A commit's record is published (ours), before the link check.
    Published { partition: i32, start: i64 },
    /// A commit's record links, before its files move.
    Linked { partition: i32, start: i64 },
}

pub trait Hooks: Send + Sync {
    /// Called at each [`Point`] (it may block: the caller waits).
    fn at(&self, _point: Point) {}

    /// A name unique to one attempt (nonces, temporary names); `None`: a
    /// UUIDv7.
    fn nonce(&self) -> Option<String> {
        None
    }

    /// Waits `d` before a retry.
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    /// A partition's lock is held by another thread of this instance:
    /// `true` after letting others run (the caller tries again), `false`
    /// to block on the lock (no scheduler).
    fn contended(&self) -> bool {
        false
    }
}

/// The production hooks: none.
pub struct NoHooks;

impl Hooks for NoHooks {}
