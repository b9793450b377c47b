//! A loaded plugin: its compiled component, a pool of sandboxed instances
//! reused across calls, and fault isolation. A trap (panic, deadline,
//! memory cap) or an invalid result poisons only the instance that produced
//! it: the instance is dropped, the batch is split in halves and retried on
//! fresh instances until the faulty events are isolated and rejected with
//! the fault as reason.
//!
//! Batches fit the sandbox: [`LoadedPlugin::process`] sends a batch in
//! calls of at most [`LoadedPlugin::batch_bytes`] (a quarter of the memory
//! cap: the plugin holds the input, its columns and its own state), an
//! event larger than that alone. A memory trap on a call of several events
//! is the batch's size, not an event's fault: it is split without counting
//! against the fault budget, so valid events are never rejected for it.
//!
//! Calls also fit the CPU deadline: each plugin's pace (wall time per
//! event through `process`, a moving average over its calls) caps the
//! events of one call at what half the deadline holds, so a slow plugin (an
//! interpreted language: TypeScript runs ~300x slower than Rust here) gets
//! smaller calls instead of missing its deadline on a full chunk and being
//! bisected as faulty. A plugin's first call holds at most
//! [`FIRST_CALL_EVENTS`], before its pace is known.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use wasmtime::Store;
use wasmtime::Trap;
use wasmtime::component::{
    Component, ComponentExportIndex, Func, HasSelf, InstancePre, Linker, TypedFunc,
};

use super::LoadError;
use super::bindings::{
    BatchResult, ColumnData, ColumnValues, PluginInfo, TextValues, WitBatch, WitValidated,
    add_log_to_linker,
};
use super::contract::{Built, CONTRACT, ColumnType, PluginMeta};
use super::engine::Runtime;
use super::log::{CallLog, LogBudget, PluginLine};
use super::memo::ValidateMemo;
use super::sandbox::{HostState, Limiter, MemoryLimitExceeded};

/// At most this many faults are isolated per batch; past it, the events
/// not yet resolved are rejected together (a plugin that faults on every
/// event must not cost a deadline per event).
pub const MAX_FAULTS_PER_BATCH: u32 = 64;
/// Longest reply text a plugin may return from `validate`.
pub const MAX_REPLY_BYTES: usize = 4 << 10;
/// Longest fields object a plugin may return from `validate`.
pub const MAX_FIELDS_BYTES: usize = 1 << 20;
/// Rejection reasons are cut to this many bytes.
pub const MAX_REASON_BYTES: usize = 1 << 10;
/// Events in a plugin's first `process` call, before its pace is known.
pub const FIRST_CALL_EVENTS: usize = 64;
/// Events in a `process` call, at least (however slow the plugin).
pub const MIN_CALL_EVENTS: usize = 16;
/// Requests waiting for a busy plugin's `validate`, at most (beyond: 503).
pub const MAX_WAITING: usize = 1024;

/// Bounds how many API requests run a plugin's `validate` at once (one
/// fewer than the cores, at least one), so that a slow plugin holds at most
/// that many of the API's worker threads: health checks and other plugins'
/// routes keep answering.
///
/// The requests waiting for a permit are counted (at most [`MAX_WAITING`],
/// beyond: 503) through a guard, so a waiter whose request is cancelled
/// (client gone, idle timeout) leaves the count as it found it; the count
/// is exported as [`GATE_WAITING`] per plugin.
pub struct Gate {
    permits: tokio::sync::Semaphore,
    waiting: AtomicU64,
    /// Set once the plugin's name is known ([`Gate::export_metrics`]).
    gauge: std::sync::OnceLock<metrics::Gauge>,
}

/// Requests waiting for a plugin's [`Gate`] (gauge, label `plugin`).
pub const GATE_WAITING: &str = "eventsift_plugin_gate_waiting";

impl Default for Gate {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Gate {
            permits: tokio::sync::Semaphore::new(cores.saturating_sub(1).max(1)),
            waiting: AtomicU64::new(0),
            gauge: std::sync::OnceLock::new(),
        }
    }
}

/// One request counted in [`Gate::waiting`] until dropped.
struct Waiting<'a>(&'a Gate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
        if let Some(g) = self.0.gauge.get() {
            g.decrement(1.0);
        }
    }
}

impl Gate {
    /// A permit to run `validate`, waiting for one; `None` when
    /// [`MAX_WAITING`] requests wait already. Cancel-safe: dropping the
    /// future while it waits un-counts the waiter.
    async fn enter(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if let Ok(p) = self.permits.try_acquire() {
            return Some(p);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING as u64 {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        if let Some(g) = self.gauge.get() {
            g.increment(1.0);
        }
        let waiting = Waiting(self);
        let p = self.permits.acquire().await;
        drop(waiting);
        p.ok()
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Exports the waiting count as [`GATE_WAITING`] for `plugin`.
    fn export_metrics(&self, plugin: &str) {
        let _ = self
            .gauge
            .set(metrics::gauge!(GATE_WAITING, "plugin" => plugin.to_owned()));
    }
}

/// A batch of raw events in one buffer, the contract's batch shape: event
/// `i` is `data[ends[i-1]..ends[i]]`. Passed to the plugin without copying.
#[derive(Debug, Clone)]
pub struct Batch(WitBatch);

impl Default for Batch {
    fn default() -> Self {
        Batch::with_capacity(0, 0)
    }
}

impl Batch {
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        Batch(WitBatch {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(events),
        })
    }

    pub fn push(&mut self, event: &[u8]) {
        self.0.data.extend_from_slice(event);
        self.0.ends.push(self.0.data.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.0.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.ends.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.data.clear();
        self.0.ends.clear();
    }

    /// All events' bytes, back to back.
    pub fn data(&self) -> &[u8] {
        &self.0.data
    }

    /// End offset of each event in [`Batch::data`].
    pub fn ends(&self) -> &[u32] {
        &self.0.ends
    }

    /// The raw bytes of event `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.0.ends[i - 1] as usize
        };
        &self.0.data[start..self.0.ends[i] as usize]
    }

    fn slice(&self, range: std::ops::Range<usize>) -> Batch {
        let mut b = Batch::with_capacity(range.len(), 0);
        for i in range {
            b.push(self.get(i));
        }
        b
    }
}

/// Where a rejection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectStage {
    /// The plugin rejected the event (a value it returned).
    Plugin,
    /// The plugin faulted on it (trap or invalid result).
    Fault,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub index: u32,
    pub reason: String,
    pub stage: RejectStage,
}

/// What a plugin made of a batch: rows (indices, ascending, and one
/// [`ColumnData`] per plugin column) and rejections, ordered by index.
/// Events in neither list are "not mine".
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub rows: Vec<u32>,
    pub columns: Vec<ColumnData>,
    pub rejected: Vec<Rejected>,
    /// Faults (traps or invalid results) met while processing the batch.
    pub faults: u32,
    /// Lines the plugin logged, `event` as an index into the batch.
    pub logs: Vec<PluginLine>,
}

/// One accepted event from [`LoadedPlugin::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validated {
    Accepted { fields: String, reply: String },
    Rejected(String),
}

/// The contract's three exports, found by the version the plugin was
/// built against (every version served shares the `plugin` interface).
#[derive(Clone, Copy)]
struct Exports {
    describe: ComponentExportIndex,
    validate: ComponentExportIndex,
    process: ComponentExportIndex,
}

impl Exports {
    fn find(component: &Component, built: &Built) -> Result<Self, LoadError> {
        let missing =
            |what: &str| LoadError::Instantiate(format!("{} has no export `{what}`", built.export));
        // `check_exports` found the interface among the exports.
        let iface = component
            .get_export_index(None, &built.export)
            .ok_or_else(|| missing(&built.export))?;
        let func = |name: &str| {
            component
                .get_export_index(Some(&iface), name)
                .ok_or_else(|| missing(name))
        };
        Ok(Exports {
            describe: func("describe")?,
            validate: func("validate")?,
            process: func("process")?,
        })
    }
}

type DescribeFn = TypedFunc<(), (PluginInfo,)>;
type ValidateFn<'a> = TypedFunc<(&'a str,), (Result<WitValidated, String>,)>;
type ProcessFn<'a> = TypedFunc<(&'a WitBatch,), (BatchResult,)>;

struct Instance {
    store: Store<HostState>,
    describe: Func,
    validate: Func,
    process: Func,
}

impl Instance {
    /// Looks the exports up and checks their types against the contract's
    /// (done for every instance; cheap next to instantiation).
    fn new(
        mut store: Store<HostState>,
        instance: wasmtime::component::Instance,
        exports: &Exports,
    ) -> wasmtime::Result<Self> {
        let get = |store: &mut Store<HostState>, idx: &ComponentExportIndex| {
            instance
                .get_func(&mut *store, idx)
                .ok_or_else(|| wasmtime::format_err!("a contract function is not exported"))
        };
        let describe = get(&mut store, &exports.describe)?;
        let validate = get(&mut store, &exports.validate)?;
        let process = get(&mut store, &exports.process)?;
        describe.typed::<(), (PluginInfo,)>(&store)?;
        validate.typed::<(&str,), (Result<WitValidated, String>,)>(&store)?;
        process.typed::<(&WitBatch,), (BatchResult,)>(&store)?;
        Ok(Instance {
            store,
            describe,
            validate,
            process,
        })
    }

    fn describe(&mut self) -> wasmtime::Result<PluginInfo> {
        // SAFETY: `Instance::new` checked this function's type against these.
        let f: DescribeFn = unsafe { TypedFunc::new_unchecked(self.describe) };
        Ok(f.call(&mut self.store, ())?.0)
    }

    fn validate(&mut self, fields: &str) -> wasmtime::Result<Result<WitValidated, String>> {
        // SAFETY: `Instance::new` checked this function's type against these.
        let f: ValidateFn<'_> = unsafe { TypedFunc::new_unchecked(self.validate) };
        Ok(f.call(&mut self.store, (fields,))?.0)
    }

    fn process(&mut self, batch: &WitBatch) -> wasmtime::Result<BatchResult> {
        // SAFETY: `Instance::new` checked this function's type against these.
        let f: ProcessFn<'_> = unsafe { TypedFunc::new_unchecked(self.process) };
        Ok(f.call(&mut self.store, (batch,))?.0)
    }

    /// The lines logged by the last call.
    fn take_logs(&mut self) -> Vec<PluginLine> {
        std::mem::take(&mut self.store.data_mut().log.lines)
    }
}

/// A compiled, described and validated plugin.
pub struct LoadedPlugin {
    pub meta: PluginMeta,
    pub source: PathBuf,
    pub sha256: String,
    pub loaded_at: SystemTime,
    /// The contract version it was built against.
    pub contract: Built,
    runtime: Arc<Runtime>,
    pre: InstancePre<HostState>,
    exports: Exports,
    log: Arc<LogBudget>,
    pool: Mutex<Vec<Instance>>,
    instances_created: AtomicU64,
    faults: AtomicU64,
    /// Wall nanoseconds per event through `process` (moving average; 0
    /// until the first call).
    pace: AtomicU64,
    memo: ValidateMemo,
    gate: Gate,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.meta.name,
            self.meta.version,
            self.source.display()
        )
    }
}

/// A trap or an invalid result; `memory` when it was the memory cap.
struct Fault(String, bool);

impl Fault {
    fn new(reason: String) -> Self {
        Fault(reason, false)
    }
}

impl LoadedPlugin {
    /// Compiles (or fetches from the cache), checks the contract version,
    /// instantiates once and validates `describe()`.
    pub fn load(runtime: &Arc<Runtime>, source: PathBuf, wasm: &[u8]) -> Result<Self, LoadError> {
        let component = runtime.compile(wasm)?;
        let engine = runtime.engine();
        let ty = component.component_type();
        let contract = CONTRACT.check_exports(ty.exports(engine).map(|(name, _)| name))?;
        let exports = Exports::find(&component, &contract)?;
        let mut linker: Linker<HostState> = Linker::new(engine);
        let linked = if contract.logs() {
            add_log_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
        } else {
            Ok(())
        };
        // No other capability: every other import (WASI included) traps if called.
        let pre = linked
            .and_then(|()| linker.define_unknown_imports_as_traps(&component))
            .and_then(|()| linker.instantiate_pre(&component))
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(wasm));
        let mut plugin = LoadedPlugin {
            meta: PluginMeta {
                name: String::new(),
                version: String::new(),
                event_type: String::new(),
                table: String::new(),
                columns: Vec::new(),
                route: None,
            },
            source,
            sha256,
            loaded_at: SystemTime::now(),
            contract,
            runtime: runtime.clone(),
            pre,
            exports,
            log: Arc::new(LogBudget::new(runtime.log_config())),
            pool: Mutex::new(Vec::new()),
            instances_created: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            pace: AtomicU64::new(0),
            memo: ValidateMemo::default(),
            gate: Gate::default(),
        };
        let mut instance = plugin
            .instantiate()
            .map_err(|f| LoadError::Instantiate(f.0))?;
        plugin.arm(&mut instance);
        let info = instance
            .describe()
            .map_err(|e| LoadError::Describe(fault_reason(&e)))?;
        plugin.meta = PluginMeta::from_info(info)?;
        plugin.log.export_metrics(&plugin.meta.name);
        plugin.gate.export_metrics(&plugin.meta.name);
        plugin.emit(instance.take_logs());
        plugin
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(instance);
        Ok(plugin)
    }

    fn instantiate(&self) -> Result<Instance, Fault> {
        let limiter = Limiter::new(self.runtime.limits().memory_bytes);
        let state = HostState {
            limiter,
            log: CallLog::default(),
            budget: self.log.clone(),
        };
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.runtime.deadline_ticks());
        let instance = self
            .pre
            .instantiate(&mut store)
            .and_then(|i| Instance::new(store, i, &self.exports))
            .map_err(|e| fault_of(&e))?;
        self.instances_created.fetch_add(1, Ordering::Relaxed);
        Ok(instance)
    }

    /// Writes lines of `describe` or `validate` to the daemon's log.
    fn emit(&self, lines: Vec<PluginLine>) {
        for line in &lines {
            super::log::emit(&self.meta.name, &self.meta.version, line, None);
        }
    }

    /// The plugin's log budget and counters.
    pub fn log_budget(&self) -> &LogBudget {
        &self.log
    }

    /// Starts the CPU deadline for the next call.
    fn arm(&self, instance: &mut Instance) {
        instance
            .store
            .set_epoch_deadline(self.runtime.deadline_ticks());
    }

    fn checkout(&self) -> Result<Instance, Fault> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut instance = match pooled {
            Some(i) => i,
            None => self.instantiate()?,
        };
        self.arm(&mut instance);
        Ok(instance)
    }

    fn checkin(&self, instance: Instance) {
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(instance);
    }

    /// Memory (linear memories and tables) of the largest idle instance,
    /// in bytes: what one instance of this plugin costs.
    pub fn instance_memory_bytes(&self) -> usize {
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|i| i.store.data().limiter.used)
            .max()
            .unwrap_or(0)
    }

    /// Instances created so far (the first one at load included).
    pub fn instances_created(&self) -> u64 {
        self.instances_created.load(Ordering::Relaxed)
    }

    /// Faults (traps or invalid results) so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// [`LoadedPlugin::validate`], answered from the plugin's memo when
    /// `fields` was validated before (see [`super::memo`]): for the API's
    /// route parameters, which repeat.
    pub fn validate_memoized(&self, fields: &str) -> Validated {
        if let Some(known) = self.memo.get(fields) {
            return known;
        }
        let (result, faulted) = self.validate_call(fields);
        if !faulted {
            self.memo.put(fields, &result);
        }
        result
    }

    /// Validates one event for the API; `fields` is a JSON object.
    /// A fault is reported as a rejection naming it.
    pub fn validate(&self, fields: &str) -> Validated {
        self.validate_call(fields).0
    }

    /// [`LoadedPlugin::validate`] (from the memo when `memoize` and it
    /// knows `fields`) for the API: the Wasm call waits for the plugin's
    /// [`Gate`]; `None` when too many requests wait for it already.
    pub async fn validate_gated(&self, fields: &str, memoize: bool) -> Option<Validated> {
        if memoize && let Some(known) = self.memo.get(fields) {
            return Some(known);
        }
        let permit = self.gate.enter().await?;
        let (result, faulted) = self.validate_call(fields);
        drop(permit);
        if memoize && !faulted {
            self.memo.put(fields, &result);
        }
        Some(result)
    }

    /// [`LoadedPlugin::validate_gated`] for the events of one batch: one
    /// wait for the [`Gate`], then each input (memoized); `None` when too
    /// many requests wait for the plugin already.
    pub async fn validate_many_gated(&self, inputs: &[&str]) -> Option<Vec<Validated>> {
        let mut out: Vec<Option<Validated>> = inputs.iter().map(|i| self.memo.get(i)).collect();
        if out.iter().any(Option::is_none) {
            let permit = self.gate.enter().await?;
            for (slot, input) in out.iter_mut().zip(inputs) {
                if slot.is_none() {
                    let (result, faulted) = self.validate_call(input);
                    if !faulted {
                        self.memo.put(input, &result);
                    }
                    *slot = Some(result);
                }
            }
            drop(permit);
        }
        Some(out.into_iter().flatten().collect())
    }

    /// The Wasm call of `validate`, and whether it faulted. The lines it
    /// logged go to the daemon's log.
    fn validate_call(&self, fields: &str) -> (Validated, bool) {
        let (result, logs) = self.validate_logged(fields);
        self.emit(logs);
        result
    }

    /// [`LoadedPlugin::validate`] with the lines the call logged (a fault's
    /// included), for `eventsift plugin test`.
    pub fn validate_with_logs(&self, fields: &str) -> (Validated, Vec<PluginLine>) {
        let ((result, _), logs) = self.validate_logged(fields);
        (result, logs)
    }

    fn validate_logged(&self, fields: &str) -> ((Validated, bool), Vec<PluginLine>) {
        let mut logs = Vec::new();
        let result = self.checkout().and_then(|mut instance| {
            let r = instance.validate(fields);
            logs = instance.take_logs();
            match r {
                Ok(r) => {
                    self.checkin(instance);
                    Ok(r)
                }
                Err(e) => Err(fault_of(&e)),
            }
        });
        (self.judge_validated(result), logs)
    }

    fn judge_validated(
        &self,
        result: Result<Result<WitValidated, String>, Fault>,
    ) -> (Validated, bool) {
        match result {
            Ok(Ok(v)) => match check_validated(&v.fields, &v.reply) {
                Ok(()) => (
                    Validated::Accepted {
                        fields: v.fields,
                        reply: v.reply,
                    },
                    false,
                ),
                Err(why) => (self.fault(Fault::new(why)).into_rejection(), true),
            },
            Ok(Err(reason)) => (Validated::Rejected(cut(reason)), false),
            Err(fault) => (self.fault(fault).into_rejection(), true),
        }
    }

    fn fault(&self, fault: Fault) -> Fault {
        self.faults.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = %self.meta.name, version = %self.meta.version, "plugin fault: {}", fault.0);
        fault
    }

    /// Bytes of events sent to the plugin in one call, at most (a larger
    /// event goes alone).
    pub fn batch_bytes(&self) -> usize {
        (self.runtime.limits().memory_bytes / 4).max(64 << 10)
    }

    /// Events sent to the plugin in one call, at most: what half the CPU
    /// deadline holds at the plugin's pace (see the module docs).
    pub fn events_per_call(&self) -> usize {
        let pace = self.pace.load(Ordering::Relaxed);
        if pace == 0 {
            return FIRST_CALL_EVENTS;
        }
        let half = self.runtime.limits().deadline.as_nanos() as u64 / 2;
        ((half / pace) as usize).max(MIN_CALL_EVENTS)
    }

    /// The plugin's pace so far: wall nanoseconds per event in `process`.
    pub fn pace_nanos(&self) -> u64 {
        self.pace.load(Ordering::Relaxed)
    }

    fn record_pace(&self, elapsed: std::time::Duration, events: usize) {
        if events == 0 {
            return;
        }
        let per = (elapsed.as_nanos() as u64 / events as u64).max(1);
        let old = self.pace.load(Ordering::Relaxed);
        let new = if old == 0 { per } else { (3 * old + per) / 4 };
        self.pace.store(new.max(1), Ordering::Relaxed);
    }

    /// Maps a batch to rows, isolating faults (see the module docs).
    pub fn process(&self, batch: &Batch) -> BatchOutcome {
        let mut out = BatchOutcome {
            columns: self
                .meta
                .columns
                .iter()
                .map(|c| empty_column(c.kind))
                .collect(),
            ..Default::default()
        };
        if batch.is_empty() {
            return out;
        }
        let budget = self.batch_bytes();
        if batch.data().len() <= budget && batch.len() <= self.events_per_call() {
            self.process_part(batch, 0, &mut out);
            return out;
        }
        let mut start = 0;
        while start < batch.len() {
            let base = if start == 0 {
                0
            } else {
                batch.ends()[start - 1] as usize
            };
            // Recomputed per call: the first one teaches the plugin's pace.
            let most = start + self.events_per_call();
            let mut end = start + 1;
            while end < batch.len().min(most) && batch.ends()[end] as usize - base <= budget {
                end += 1;
            }
            let part = batch.slice(start..end);
            self.process_part(&part, start as u32, &mut out);
            start = end;
        }
        out
    }

    /// One sub-batch (events from `offset` on) into `out`.
    fn process_part(&self, batch: &Batch, offset: u32, out: &mut BatchOutcome) {
        match self.call_process(batch, offset, &mut out.logs) {
            Ok(result) if offset == 0 && out.rows.is_empty() && out.rejected.is_empty() => {
                // The common case: the plugin's result becomes the outcome as is.
                out.rows = result.rows;
                out.columns = result.columns;
                out.rejected = plugin_rejections(result.rejected);
            }
            Ok(result) => append(out, result, offset),
            Err(fault) => {
                let mut budget = MAX_FAULTS_PER_BATCH;
                if !(fault.1 && batch.len() > 1) {
                    out.faults += 1;
                    budget -= 1;
                }
                self.isolate(batch, offset, fault, &mut budget, out);
            }
        }
    }

    /// Splits a faulted (sub-)batch starting at `offset` and retries each
    /// half, appending results to `out` in index order. A memory trap on
    /// several events splits them without using the fault budget.
    fn isolate(
        &self,
        batch: &Batch,
        offset: u32,
        fault: Fault,
        budget: &mut u32,
        out: &mut BatchOutcome,
    ) {
        let too_big = fault.1 && batch.len() > 1;
        if batch.len() == 1 || (*budget == 0 && !too_big) {
            let reason = if batch.len() == 1 {
                format!(
                    "plugin {} {} faulted: {}",
                    self.meta.name, self.meta.version, fault.0
                )
            } else {
                format!(
                    "plugin {} {} faulted {MAX_FAULTS_PER_BATCH} times on one batch; last fault: {}",
                    self.meta.name, self.meta.version, fault.0
                )
            };
            for i in 0..batch.len() as u32 {
                out.rejected.push(Rejected {
                    index: offset + i,
                    reason: reason.clone(),
                    stage: RejectStage::Fault,
                });
            }
            return;
        }
        let mid = batch.len() / 2;
        for (range, start) in [(0..mid, 0), (mid..batch.len(), mid)] {
            let half = batch.slice(range);
            let at = offset + start as u32;
            match self.call_process(&half, at, &mut out.logs) {
                Ok(result) => append(out, result, at),
                Err(fault) if fault.1 && half.len() > 1 => {
                    self.isolate(&half, at, fault, budget, out)
                }
                Err(fault) if *budget > 0 => {
                    *budget -= 1;
                    out.faults += 1;
                    self.isolate(&half, at, fault, budget, out);
                }
                Err(fault) => self.isolate(&half, at, fault, budget, out),
            }
        }
    }

    /// One call on a pooled instance; the instance is dropped on a fault.
    /// Lines it logged go to `logs`, event indices moved by `offset` (those
    /// naming no event of the call lose the index).
    fn call_process(
        &self,
        batch: &Batch,
        offset: u32,
        logs: &mut Vec<PluginLine>,
    ) -> Result<BatchResult, Fault> {
        let mut instance = self.checkout().map_err(|f| self.fault(f))?;
        let started = std::time::Instant::now();
        let result = instance.process(&batch.0);
        let elapsed = started.elapsed();
        if result.is_ok() {
            self.record_pace(elapsed, batch.len());
        } else if elapsed >= self.runtime.limits().deadline && batch.len() > 1 {
            // Past the deadline: the pace is at least this slow, so the
            // plugin's next calls are sized at half of this one.
            let floor = (elapsed.as_nanos() as u64 / batch.len() as u64).max(1);
            self.pace.fetch_max(floor, Ordering::Relaxed);
        }
        let events = batch.len() as u32;
        logs.extend(instance.take_logs().into_iter().map(|mut l| {
            l.event = l.event.filter(|&i| i < events).map(|i| i + offset);
            l
        }));
        let result = result.map_err(|e| self.fault(fault_of(&e)))?;
        self.checkin(instance);
        check_result(&self.meta, batch.len(), &result)
            .map_err(|why| self.fault(Fault::new(format!("invalid batch result: {why}"))))?;
        Ok(result)
    }
}

impl Fault {
    fn into_rejection(self) -> Validated {
        Validated::Rejected(format!("plugin fault: {}", self.0))
    }
}

/// A plugin's text cut to [`MAX_REASON_BYTES`] (at a character boundary).
fn cut(reason: String) -> String {
    cut_to(reason, MAX_REASON_BYTES)
}

/// A plugin's text cut to `max` bytes at a character boundary, marked `…`.
pub(crate) fn cut_to(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
    text
}

fn plugin_rejections(rejected: Vec<super::bindings::Rejection>) -> Vec<Rejected> {
    let mut out: Vec<Rejected> = rejected
        .into_iter()
        .map(|r| Rejected {
            index: r.index,
            reason: cut(r.reason),
            stage: RejectStage::Plugin,
        })
        .collect();
    out.sort_by_key(|r| r.index);
    out
}

/// The fault a wasmtime error stands for.
fn fault_of(e: &wasmtime::Error) -> Fault {
    Fault(
        fault_reason(e),
        e.downcast_ref::<MemoryLimitExceeded>().is_some(),
    )
}

/// A human-readable fault: the memory error, the deadline, a capability
/// the sandbox denied, or the trap.
fn fault_reason(e: &wasmtime::Error) -> String {
    if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
        return m.to_string();
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return "CPU deadline exceeded".to_owned(),
        Some(Trap::UnreachableCodeReached) => {
            return "wasm trap: unreachable (the plugin panicked)".to_owned();
        }
        _ => {}
    }
    let root = e.root_cause().to_string();
    if let Some(import) = root
        .strip_prefix("unknown import: `")
        .and_then(|r| r.split('`').next())
    {
        return format!(
            "denied capability: the plugin called {import}, which the sandbox does not grant"
        );
    }
    root.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect()
}

fn empty_column(kind: ColumnType) -> ColumnData {
    let values = match kind {
        ColumnType::String => ColumnValues::Text(TextValues {
            data: Vec::new(),
            ends: Vec::new(),
        }),
        ColumnType::Int64 => ColumnValues::Int64(Vec::new()),
        ColumnType::Float64 => ColumnValues::Float64(Vec::new()),
        ColumnType::Bool => ColumnValues::Boolean(Vec::new()),
        ColumnType::Timestamp => ColumnValues::Timestamp(Vec::new()),
    };
    ColumnData {
        values,
        validity: Vec::new(),
    }
}

fn column_len(c: &ColumnData) -> usize {
    match &c.values {
        ColumnValues::Text(t) => t.ends.len(),
        ColumnValues::Int64(v) | ColumnValues::Timestamp(v) => v.len(),
        ColumnValues::Float64(v) => v.len(),
        ColumnValues::Boolean(v) => v.len(),
    }
}

/// Checks a plugin's batch result before the host trusts it.
fn check_result(meta: &PluginMeta, events: usize, r: &BatchResult) -> Result<(), String> {
    if r.rows.windows(2).any(|w| w[0] >= w[1]) {
        return Err("row indices are not ascending".into());
    }
    if r.rows.last().is_some_and(|&i| i as usize >= events) {
        return Err("a row index is out of range".into());
    }
    for rej in &r.rejected {
        if rej.index as usize >= events || r.rows.binary_search(&rej.index).is_ok() {
            return Err(format!(
                "rejection index {} is out of range or also a row",
                rej.index
            ));
        }
    }
    if r.rejected.len() > 1 {
        let mut seen: Vec<u32> = r.rejected.iter().map(|x| x.index).collect();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err("an event is rejected twice".into());
        }
    }
    if r.columns.len() != meta.columns.len() {
        return Err(format!(
            "{} columns returned, {} declared",
            r.columns.len(),
            meta.columns.len()
        ));
    }
    let rows = r.rows.len();
    for (spec, col) in meta.columns.iter().zip(&r.columns) {
        let kind_ok = matches!(
            (spec.kind, &col.values),
            (ColumnType::String, ColumnValues::Text(_))
                | (ColumnType::Int64, ColumnValues::Int64(_))
                | (ColumnType::Float64, ColumnValues::Float64(_))
                | (ColumnType::Bool, ColumnValues::Boolean(_))
                | (ColumnType::Timestamp, ColumnValues::Timestamp(_))
        );
        if !kind_ok {
            return Err(format!("column {} has the wrong type", spec.name));
        }
        if column_len(col) != rows {
            return Err(format!(
                "column {} has {} values for {rows} rows",
                spec.name,
                column_len(col)
            ));
        }
        if !col.validity.is_empty() {
            if col.validity.len() != rows.div_ceil(8) {
                return Err(format!(
                    "column {} has a validity bitmap of the wrong length",
                    spec.name
                ));
            }
            let nulls = (0..rows).any(|i| col.validity[i / 8] & (1 << (i % 8)) == 0);
            if nulls && !spec.nullable {
                return Err(format!(
                    "column {} is not nullable but has nulls",
                    spec.name
                ));
            }
        }
        if let ColumnValues::Text(t) = &col.values {
            check_text(t).map_err(|why| format!("column {}: {why}", spec.name))?;
        }
    }
    Ok(())
}

fn check_text(t: &TextValues) -> Result<(), String> {
    let text = std::str::from_utf8(&t.data).map_err(|_| "text is not UTF-8".to_owned())?;
    let mut start = 0u32;
    for &end in &t.ends {
        if end < start || !text.is_char_boundary(end as usize) {
            return Err("text offsets are out of order or split a character".into());
        }
        start = end;
    }
    if start as usize != t.data.len() {
        return Err("text offsets do not cover the buffer".into());
    }
    Ok(())
}

/// What `validate` returned, checked before it is published: a JSON object
/// of bounded size whose keys are none of the host's (the envelope's), and
/// a bounded reply.
fn check_validated(fields: &str, reply: &str) -> Result<(), String> {
    use serde::Deserializer as _;
    if reply.len() > MAX_REPLY_BYTES {
        return Err(format!(
            "validate() returned a reply of {} bytes (at most {MAX_REPLY_BYTES})",
            reply.len()
        ));
    }
    if fields.len() > MAX_FIELDS_BYTES {
        return Err(format!(
            "validate() returned {} bytes of fields (at most {MAX_FIELDS_BYTES})",
            fields.len()
        ));
    }
    /// Visits the object's keys without building it.
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut reserved = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if reserved.is_none() && super::contract::COMMON_COLUMNS.contains(&key.as_ref()) {
                    reserved = Some(key.into_owned());
                }
                map.next_value::<serde::de::IgnoredAny>()?;
            }
            Ok(reserved)
        }
    }
    let mut de = serde_json::Deserializer::from_str(fields);
    match de.deserialize_map(Keys).and_then(|r| de.end().map(|()| r)) {
        Ok(None) => Ok(()),
        Ok(Some(key)) => Err(format!(
            "validate() returned field {key:?}, a name the host fills itself"
        )),
        Err(_) => Err("validate() returned fields that are not a JSON object".to_owned()),
    }
}

/// Appends a sub-batch result (indices relative to `offset`) to `out`.
fn append(out: &mut BatchOutcome, result: BatchResult, offset: u32) {
    let base_rows = out.rows.len();
    out.rows.extend(result.rows.iter().map(|i| i + offset));
    for (dst, src) in out.columns.iter_mut().zip(result.columns) {
        append_column(dst, src, base_rows);
    }
    out.rejected
        .extend(plugin_rejections(result.rejected).into_iter().map(|mut r| {
            r.index += offset;
            r
        }));
}

fn append_column(dst: &mut ColumnData, src: ColumnData, dst_rows: usize) {
    let src_rows = column_len(&src);
    match (&mut dst.values, src.values) {
        (ColumnValues::Text(d), ColumnValues::Text(s)) => {
            let base = d.data.len() as u32;
            d.data.extend_from_slice(&s.data);
            d.ends.extend(s.ends.iter().map(|e| e + base));
        }
        (ColumnValues::Int64(d), ColumnValues::Int64(s))
        | (ColumnValues::Timestamp(d), ColumnValues::Timestamp(s)) => d.extend(s),
        (ColumnValues::Float64(d), ColumnValues::Float64(s)) => d.extend(s),
        (ColumnValues::Boolean(d), ColumnValues::Boolean(s)) => d.extend(s),
        _ => unreachable!("column types were checked against the plugin's metadata"),
    }
    if dst.validity.is_empty() && src.validity.is_empty() {
        return;
    }
    let bit = |v: &[u8], i: usize| v.is_empty() || v[i / 8] & (1 << (i % 8)) != 0;
    let total = dst_rows + src_rows;
    let mut bits = vec![0u8; total.div_ceil(8)];
    for i in 0..total {
        let valid = if i < dst_rows {
            bit(&dst.validity, i)
        } else {
            bit(&src.validity, i - dst_rows)
        };
        if valid {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    dst.validity = bits;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few thousand waiters cancelled while they wait (a client gone, an
    /// idle timeout) leave no count behind: a burst afterwards is served,
    /// not refused as if [`MAX_WAITING`] requests were still waiting.
    #[test]
    fn cancelled_waiters_leave_no_count_and_a_burst_then_succeeds() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let gate = Arc::new(Gate::default());
            let held = gate
                .permits
                .acquire_many(gate.permits.available_permits() as u32);
            let held = held.await.unwrap();
            for round in 0..4 {
                let waiters: Vec<_> = (0..MAX_WAITING)
                    .map(|_| {
                        let gate = gate.clone();
                        tokio::spawn(async move { gate.enter().await.is_some() })
                    })
                    .collect();
                tokio::task::yield_now().await;
                while gate.waiting() < MAX_WAITING as u64 {
                    tokio::task::yield_now().await;
                }
                assert!(gate.enter().await.is_none(), "round {round}: the cap holds");
                for w in &waiters {
                    w.abort();
                }
                for w in waiters {
                    assert!(w.await.unwrap_err().is_cancelled());
                }
                assert_eq!(
                    gate.waiting(),
                    0,
                    "round {round}: cancelled waiters un-counted"
                );
            }
            // The burst: every request gets its permit once the holder is done.
            let burst: Vec<_> = (0..MAX_WAITING)
                .map(|_| {
                    let gate = gate.clone();
                    tokio::spawn(async move { gate.enter().await.is_some() })
                })
                .collect();
            while gate.waiting() < MAX_WAITING as u64 {
                tokio::task::yield_now().await;
            }
            drop(held);
            for b in burst {
                assert!(b.await.unwrap(), "a waiter of the burst was refused");
            }
            assert_eq!(gate.waiting(), 0);
        });
    }
}
