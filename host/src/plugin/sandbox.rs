//! What a plugin instance may use: memory up to a cap, CPU up to a deadline
//! per call, and nothing else. The linker grants no WASI capability at all:
//! every import (file system, sockets, environment, clocks, stdio) is
//! defined as a function that traps when called.

use std::time::Duration;

use wasmtime::ResourceLimiter;

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

/// Store data of a plugin instance: only its limiter.
pub struct HostState {
    pub(crate) limiter: Limiter,
}

pub(crate) struct Limiter {
    pub(crate) max_memory: usize,
}

/// At most this many table elements (function references) per instance.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            return Err(MemoryLimitExceeded {
                current,
                requested: desired,
                max: self.max_memory,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
