//! What a plugin instance may use: memory up to a cap, CPU up to a deadline
//! per call, the contract's `log` import (0.2; bounded, see [`super::log`])
//! and nothing else. The linker grants no WASI capability at all: every
//! other import (file system, sockets, environment, clocks, stdio) is
//! defined as a function that traps when called.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::ResourceLimiter;

use super::bindings::{LogHost, WitLevel};
use super::log::{CallLog, LogBudget};

/// The typed error a plugin gets when it asks for more memory than its cap;
/// it traps the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "memory limit exceeded: current {current} bytes, requested {requested} bytes, max {max} bytes"
)]
pub struct MemoryLimitExceeded {
    pub current: usize,
    pub requested: usize,
    pub max: usize,
}

/// Per-instance limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes: usize,
    /// CPU deadline per call (a batch, or one validation).
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_millis(100),
        }
    }
}

/// Store data of a plugin instance: its limiter and the lines of the call
/// in progress (with the plugin's shared log budget).
pub struct HostState {
    pub(crate) limiter: Limiter,
    pub(crate) log: CallLog,
    pub(crate) budget: Arc<LogBudget>,
}

impl LogHost for HostState {
    fn write(&mut self, level: WitLevel, message: String, event: Option<u32>) {
        self.log.write(&self.budget, level.into(), message, event);
    }
}

/// Counts every linear memory and table of an instance against one cap.
pub(crate) struct Limiter {
    pub(crate) max_memory: usize,
    /// Bytes of all memories and tables so far.
    pub(crate) used: usize,
}

impl Limiter {
    pub(crate) fn new(max_memory: usize) -> Self {
        Limiter {
            max_memory,
            used: 0,
        }
    }

    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.max_memory {
            return Err(MemoryLimitExceeded {
                current: self.used,
                requested: total,
                max: self.max_memory,
            }
            .into());
        }
        self.used = total;
        Ok(true)
    }
}

/// At most this many table elements (function references) per instance.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// What one table element is counted as against the memory cap.
const TABLE_ELEMENT_BYTES: usize = 16;
/// Core instances, memories and tables of a component instance, at most.
const MAX_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 16;
const MAX_TABLES: usize = 64;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.grow(current * TABLE_ELEMENT_BYTES, desired * TABLE_ELEMENT_BYTES)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}
