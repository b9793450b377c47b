//! From records to table batches: decode each envelope, route it by
//! `event_type` to its plugin's batch call, and build the Arrow batches of
//! each table (split by UTC day) and of `rejected_events`.
//!
//! Every record of a chunk ends up in exactly one place: a row of its
//! plugin's table or a row of `rejected_events` with the reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::SchemaRef;

use super::dedup::{self, DedupLimits, Window};
use super::schemas::{SchemaError, Schemas};
use super::source::Chunk;
use super::table::{self, Decoded, RejectedRows, Rejection, RowSource, Stage};
use crate::plugin::{Batch, LoadedPlugin, Registry, RejectStage};

/// Rows for one table and one day.
#[derive(Debug)]
pub struct TableBatch {
    pub table: Arc<str>,
    pub day: i32,
    pub batch: RecordBatch,
}

/// Time spent per stage (for the benchmark's breakdown).
#[derive(Debug, Default, Clone, Copy)]
pub struct RouteTimes {
    pub decode: Duration,
    /// Looking up and remembering client-named ids.
    pub dedup: Duration,
    pub plugins: Duration,
    pub arrow: Duration,
}

/// What the router keeps per plugin version.
struct Known {
    plugin: Arc<LoadedPlugin>,
    schema: SchemaRef,
    table: Arc<str>,
    /// Whether the warehouse's schema of its table admits it (asked once).
    admitted: Option<Result<(), String>>,
}

/// What the router keeps per partition for deduplication.
struct PartDedup {
    window: Window,
    /// Commits since the newest snapshot.
    since_snapshot: usize,
    /// A snapshot was sent and its commit has not come back yet.
    snapshot_pending: bool,
    /// Whether the partition has deduplication state at all.
    any: bool,
    ids: metrics::Gauge,
    span: metrics::Gauge,
}

impl PartDedup {
    fn new(partition: i32, window: Window) -> Self {
        let p = partition.to_string();
        PartDedup {
            window,
            since_snapshot: 0,
            snapshot_pending: false,
            any: false,
            ids: metrics::gauge!(super::metrics::DEDUP_IDS, "partition" => p.clone()),
            span: metrics::gauge!(super::metrics::DEDUP_SPAN, "partition" => p),
        }
    }
}

/// What routing a chunk produced.
pub struct Routed {
    pub tables: Vec<TableBatch>,
    /// Client-named ids seen for the first time (id, event µs).
    pub ids: Vec<(u128, i64)>,
    /// Rows of the chunk could not be built (a bug): the chunk must not
    /// count, and its partition stops (why).
    pub failed: Option<String>,
}

pub struct Router {
    registry: Arc<Registry>,
    tables: Arc<Schemas>,
    plugin_wait: Duration,
    max_record_bytes: usize,
    /// When each unknown event type was first seen without a plugin.
    unknown_since: HashMap<String, Instant>,
    known: HashMap<usize, Known>,
    rejected_table: Arc<str>,
    dedup: DedupLimits,
    windows: HashMap<i32, PartDedup>,
    pub times: RouteTimes,
    /// Plugin log lines kept for [`Router::take_logs`] instead of logged.
    kept_logs: Option<Vec<SourcedLine>>,
}

/// A plugin's log line with the source position of the event it concerns.
#[derive(Debug, Clone)]
pub struct SourcedLine {
    pub plugin: String,
    pub version: String,
    pub line: crate::plugin::PluginLine,
    /// (partition, offset) of the event, when the line names one.
    pub position: Option<(i32, i64)>,
}

impl Router {
    pub fn new(
        registry: Arc<Registry>,
        tables: Arc<Schemas>,
        plugin_wait: Duration,
        max_record_bytes: usize,
    ) -> Self {
        Router {
            registry,
            tables,
            plugin_wait,
            max_record_bytes,
            unknown_since: HashMap::new(),
            known: HashMap::new(),
            rejected_table: Arc::from(table::REJECTED_TABLE),
            dedup: DedupLimits::default(),
            windows: HashMap::new(),
            times: RouteTimes::default(),
            kept_logs: None,
        }
    }

    /// Keeps plugins' log lines for [`Router::take_logs`] (`eventsift plugin
    /// test`) instead of writing them to the daemon's log.
    pub fn keep_logs(mut self) -> Self {
        self.kept_logs = Some(Vec::new());
        self
    }

    /// The lines kept since the last call (see [`Router::keep_logs`]).
    pub fn take_logs(&mut self) -> Vec<SourcedLine> {
        self.kept_logs
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Sets the deduplication bounds (before any partition is routed).
    pub fn with_dedup(mut self, limits: DedupLimits) -> Self {
        self.dedup = limits;
        self
    }

    /// Reads `partition`'s deduplication window from its commits (retried
    /// while the warehouse fails); false when stopping first.
    pub fn load_window(
        &mut self,
        partition: i32,
        commits: &super::commit::Commits,
        stop: &AtomicBool,
        beat: &dyn Fn(),
    ) -> bool {
        if self.dedup.window.is_zero() {
            return true;
        }
        // One budget over the partitions consumed: the others' windows
        // shrink to the new share first, and this one loads within it.
        self.windows.remove(&partition);
        let share = self.dedup.share(self.windows.len() + 1);
        self.reshare(share);
        let mut backoff = Duration::from_millis(200);
        let loaded = loop {
            beat();
            match dedup::load(commits, partition, &share) {
                Ok(l) => break l,
                Err(e) => {
                    if stop.load(Ordering::SeqCst) {
                        return false;
                    }
                    tracing::warn!(partition, "reading the deduplication state (retrying): {e}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        for m in &loaded.missing {
            ::metrics::counter!(super::metrics::DEDUP_STATE_MISSING).increment(1);
            tracing::error!(
                partition,
                "deduplication state is damaged or gone ({m}): retries of the events it named \
                 are no longer recognized"
            );
        }
        if loaded.any {
            tracing::info!(
                partition,
                ids = loaded.window.len(),
                "deduplication window read ({} commits after its snapshot)",
                loaded.since_snapshot
            );
        }
        let trimmed = loaded.window.evicted.by_bound;
        if trimmed > 0 {
            ::metrics::counter!(super::metrics::DEDUP_EVICTED, "reason" => "share")
                .increment(trimmed);
            tracing::warn!(
                partition,
                "the deduplication window read for this partition was cut by {trimmed} ids to \
                 its share of the budget ({} ids over {} partitions)",
                self.dedup.max_ids,
                self.windows.len() + 1
            );
        }
        let mut part = PartDedup::new(partition, loaded.window);
        part.since_snapshot = loaded.since_snapshot;
        part.any = loaded.any;
        part.ids.set(part.window.len() as f64);
        self.windows.insert(partition, part);
        true
    }

    /// Forgets `partition`'s window (revoked, stopped, or to be read
    /// again); the others get its share back.
    pub fn drop_window(&mut self, partition: i32) {
        if self.windows.remove(&partition).is_some() && !self.windows.is_empty() {
            self.reshare(self.dedup.share(self.windows.len()));
        }
    }

    /// Resizes every window to `share`, counting the ids trimmed.
    fn reshare(&mut self, share: DedupLimits) {
        let mut trimmed = 0;
        for part in self.windows.values_mut() {
            trimmed += part.window.resize(&share);
            part.ids.set(part.window.len() as f64);
        }
        if trimmed > 0 {
            ::metrics::counter!(super::metrics::DEDUP_EVICTED, "reason" => "share")
                .increment(trimmed);
            tracing::warn!(
                "the deduplication windows were cut by {trimmed} ids to their share of the \
                 budget ({} ids over {} partitions)",
                self.dedup.max_ids,
                self.windows.len()
            );
        }
    }

    /// After a commit of `partition` up to `next`: a snapshot of its window
    /// as of `next` when one is due, as (count, bytes).
    pub fn committed(
        &mut self,
        partition: i32,
        next: i64,
        snapshot: bool,
    ) -> Option<(u64, bytes::Bytes)> {
        let every = self.dedup.snapshot_every.max(1);
        let part = self.windows.get_mut(&partition)?;
        if snapshot {
            part.since_snapshot = 0;
            part.snapshot_pending = false;
        } else {
            part.since_snapshot += 1;
        }
        if !part.any || part.snapshot_pending || part.since_snapshot < every {
            return None;
        }
        part.snapshot_pending = true;
        let data = part.window.snapshot(next);
        let count = (data.len().saturating_sub(20) / 24) as u64;
        Some((count, data))
    }

    /// The window's memory over all partitions (for the benchmark).
    pub fn dedup_memory(&self) -> (usize, usize) {
        self.windows.values().fold((0, 0), |(n, b), p| {
            (n + p.window.len(), b + p.window.memory_bytes())
        })
    }

    fn known(&mut self, plugin: &Arc<LoadedPlugin>) -> &mut Known {
        let key = Arc::as_ptr(plugin) as usize;
        self.known.entry(key).or_insert_with(|| Known {
            plugin: plugin.clone(),
            schema: table::table_schema(&plugin.meta),
            table: Arc::from(plugin.meta.table.as_str()),
            admitted: None,
        })
    }

    fn schema(&mut self, plugin: &Arc<LoadedPlugin>) -> (SchemaRef, Arc<str>) {
        let k = self.known(plugin);
        (k.schema.clone(), k.table.clone())
    }

    /// Whether the warehouse admits `plugin`'s version for its table (asked
    /// once per version, retried while the warehouse fails); `None` when
    /// stopping first.
    fn admitted(
        &mut self,
        plugin: &Arc<LoadedPlugin>,
        stop: &AtomicBool,
    ) -> Option<Result<(), String>> {
        if let Some(a) = &self.known(plugin).admitted {
            return Some(a.clone());
        }
        let mut backoff = Duration::from_millis(200);
        let answer = loop {
            match self.tables.admit(&plugin.meta) {
                Ok(()) => break Ok(()),
                Err(SchemaError::Incompatible(why)) => {
                    tracing::error!(
                        table = %plugin.meta.table,
                        plugin = %plugin.meta.name,
                        version = %plugin.meta.version,
                        "not writing this plugin version (its events go to rejected_events): {why}"
                    );
                    metrics::counter!(super::metrics::SCHEMA_REFUSED).increment(1);
                    break Err(why);
                }
                Err(e) => {
                    if stop.load(Ordering::SeqCst) {
                        return None;
                    }
                    tracing::warn!("reading the table schema (retrying): {e}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.known(plugin).admitted = Some(answer.clone());
        Some(answer)
    }

    /// The failpoint `admit_fail`: the schema cannot be read; retried
    /// until stopping (then `None`, as [`Router::admitted`] would).
    fn admitted_or_stop(&mut self, stop: &AtomicBool) -> Option<Result<(), String>> {
        while !stop.load(Ordering::SeqCst) {
            tracing::warn!("reading the table schema (retrying): failpoint admit_fail");
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// Waits for plugins of the unknown event types in `decoded`, bounded:
    /// only while the loaded set is settling (files pending, or a change
    /// less than `plugin_wait` ago: a drop-in the API may have loaded
    /// first), and at most `plugin_wait` from when a type was first seen.
    /// Otherwise (ever-new unknown types, say) they go to `rejected_events`
    /// at once, and the types remembered stay bounded.
    fn wait_for_plugins(&mut self, decoded: &[Result<Decoded<'_>, String>]) {
        const MAX_TYPES: usize = 1024;
        if !self.registry.settling(self.plugin_wait) {
            self.unknown_since.clear();
            return;
        }
        let mut deadline: Option<Instant> = None;
        let snapshot = self.registry.snapshot();
        for d in decoded.iter().flatten() {
            let t = d.head.event_type.as_ref();
            if snapshot.get(t).is_some() {
                continue;
            }
            if !self.unknown_since.contains_key(t) && self.unknown_since.len() >= MAX_TYPES {
                continue;
            }
            let since = *self
                .unknown_since
                .entry(t.to_owned())
                .or_insert_with(Instant::now);
            let until = since + self.plugin_wait;
            deadline = Some(deadline.map_or(until, |d: Instant| d.max(until)));
        }
        let Some(deadline) = deadline else { return };
        if Instant::now() < deadline {
            tracing::info!(
                "events wait for a plugin of their type while plugins load (up to {:?})",
                self.plugin_wait
            );
        }
        while Instant::now() < deadline && self.registry.settling(self.plugin_wait) {
            std::thread::sleep(Duration::from_millis(50));
            let snapshot = self.registry.snapshot();
            let missing = decoded.iter().flatten().any(|d| {
                let t = d.head.event_type.as_ref();
                snapshot.get(t).is_none()
                    && self
                        .unknown_since
                        .get(t)
                        .is_some_and(|s| Instant::now() < *s + self.plugin_wait)
            });
            if !missing {
                break;
            }
        }
        let snapshot = self.registry.snapshot();
        self.unknown_since.retain(|t, _| snapshot.get(t).is_none());
    }

    /// Routes the records of `chunk` at or after `from`; `None` when
    /// stopping before it could: then nothing of the chunk was routed or
    /// remembered (the caller reads it again from `from`). A record
    /// whose client-named id the partition's window has seen is a retry
    /// of one routed before: it is dropped (and counted).
    pub fn route(&mut self, chunk: &Chunk, from: i64, stop: &AtomicBool) -> Option<Routed> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as i64;
        let partition = chunk.partition;
        let t0 = Instant::now();
        let first = chunk.offsets.partition_point(|&o| o < from);
        let decoded: Vec<Result<Decoded<'_>, String>> = (first..chunk.len())
            .map(|i| table::decode(chunk.get(i), self.max_record_bytes))
            .collect();
        let t1 = Instant::now();
        self.times.decode += t1 - t0;
        self.wait_for_plugins(&decoded);
        let snapshot = self.registry.snapshot();

        // Each record's plugin (an index into `plugins`; NONE: a decode
        // error or no plugin), and admission of each plugin first: a chunk
        // that cannot be routed now (stopping while the warehouse does not
        // answer) returns before anything of it is remembered, so the
        // caller can read it again from `from`.
        const NONE: u32 = u32::MAX;
        let mut plugins: Vec<(Arc<LoadedPlugin>, Result<(), String>)> = Vec::new();
        let mut owner: Vec<u32> = Vec::with_capacity(decoded.len());
        for d in &decoded {
            let Some(p) = d
                .as_ref()
                .ok()
                .and_then(|d| snapshot.get(&d.head.event_type))
            else {
                owner.push(NONE);
                continue;
            };
            if let Some(k) = plugins.iter().position(|(q, _)| Arc::ptr_eq(q, p)) {
                owner.push(k as u32);
                continue;
            }
            let cached = self.known(p).admitted.clone();
            let answer = if let Some(a) = cached {
                a
            } else if crate::faults::fires("admit_fail") {
                // A schema read that keeps failing: asked again while the
                // writer runs; when stopping, the chunk is not routed.
                self.admitted_or_stop(stop)?
            } else {
                self.admitted(p, stop)?
            };
            owner.push(plugins.len() as u32);
            plugins.push((p.clone(), answer));
        }

        // Retries: the ids this partition has routed before.
        let t_dedup = Instant::now();
        let mut new_ids: Vec<(u128, i64)> = Vec::new();
        let mut duplicate = vec![false; decoded.len()];
        let partitions = self.windows.len() + usize::from(!self.windows.contains_key(&partition));
        let limits = self.dedup.share(partitions);
        // A zero window (the library's, for the benchmark's comparison; the
        // daemon's configuration refuses it) turns deduplication off.
        let off = limits.window.is_zero();
        let window = self
            .windows
            .entry(partition)
            .or_insert_with(|| PartDedup::new(partition, Window::new(&limits)));
        let bound_before = window.window.evicted;
        // The chunk's ids first, then the lookups, each slot prefetched a
        // few lookups ahead so that their cache misses overlap.
        let ids: Vec<(usize, u128, i64)> = if off {
            Vec::new()
        } else {
            decoded
                .iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    let d = d.as_ref().ok()?;
                    Some((i, dedup::derived_id(&d.head.event_id)?, d.micros))
                })
                .collect()
        };
        const AHEAD: usize = 8;
        for &(_, id, _) in ids.iter().take(AHEAD) {
            window.window.prefetch(id);
        }
        for (n, &(i, id, micros)) in ids.iter().enumerate() {
            if let Some(&(_, next, _)) = ids.get(n + AHEAD) {
                window.window.prefetch(next);
            }
            if window.window.seen(id, micros, chunk.offsets[first + i]) {
                duplicate[i] = true;
            } else {
                new_ids.push((id, micros));
            }
        }
        let dups = duplicate.iter().filter(|d| **d).count();
        if dups > 0 {
            metrics::counter!(super::metrics::DUPLICATES).increment(dups as u64);
        }
        if !new_ids.is_empty() || dups > 0 {
            window.any = true;
            let after = window.window.evicted;
            if after.by_time > bound_before.by_time {
                metrics::counter!(super::metrics::DEDUP_EVICTED, "reason" => "time")
                    .increment(after.by_time - bound_before.by_time);
            }
            if after.by_bound > bound_before.by_bound {
                metrics::counter!(super::metrics::DEDUP_EVICTED, "reason" => "bound")
                    .increment(after.by_bound - bound_before.by_bound);
            }
            if let Some(span) = window.window.cut_short(bound_before.by_bound) {
                tracing::warn!(
                    partition,
                    "the deduplication window is cut to {} by its bound ({} ids, {} MiB): \
                     retries of older events are not recognized; raise --dedup-max-ids or \
                     --dedup-max-mib",
                    humantime::format_duration(Duration::from_secs(span.as_secs())),
                    limits.capacity().0,
                    limits.max_bytes >> 20
                );
            }
            window.ids.set(window.window.len() as f64);
            window.span.set(window.window.span().as_secs_f64());
        }

        self.times.dedup += t_dedup.elapsed();

        let mut rejected = RejectedRows::default();
        let mut counts: HashMap<Stage, u64> = HashMap::new();
        let mut samples = super::recent::ChunkSamples::default();
        let mut reject = |rows: &mut RejectedRows, r: Rejection<'_>| {
            *counts.entry(r.stage).or_default() += 1;
            samples.add(
                r.stage.as_str(),
                r.reason,
                r.event_type,
                r.raw,
                r.partition,
                r.offset,
            );
            rows.push(r);
        };
        // Group record indices (into `decoded`) by plugin.
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); plugins.len()];
        for (i, d) in decoded.iter().enumerate() {
            if duplicate[i] {
                continue;
            }
            if owner[i] != NONE {
                groups[owner[i] as usize].push(i);
                continue;
            }
            let offset = chunk.offsets[first + i];
            let raw = chunk.get(first + i);
            match d {
                Err(reason) => reject(
                    &mut rejected,
                    Rejection {
                        at_micros: now,
                        stage: Stage::Decode,
                        reason,
                        event_type: None,
                        plugin: None,
                        raw,
                        partition,
                        offset,
                        user_id: None,
                        host: None,
                    },
                ),
                Ok(d) => {
                    let reason = format!("no plugin owns event type {:?}", d.head.event_type);
                    reject(
                        &mut rejected,
                        Rejection {
                            at_micros: now,
                            stage: Stage::Route,
                            reason: &reason,
                            event_type: Some(&d.head.event_type),
                            plugin: None,
                            raw,
                            partition,
                            offset,
                            user_id: d.head.user_id.as_deref(),
                            host: d.head.host.as_deref(),
                        },
                    )
                }
            }
        }

        let mut out = Vec::new();
        for ((plugin, admitted), idx) in plugins.into_iter().zip(groups) {
            if idx.is_empty() {
                continue;
            }
            if let Err(why) = admitted {
                let meta = &plugin.meta;
                for &i in &idx {
                    let d = decoded[i].as_ref().ok();
                    reject(
                        &mut rejected,
                        Rejection {
                            at_micros: now,
                            stage: Stage::Schema,
                            reason: &why,
                            event_type: d.map(|d| d.head.event_type.as_ref()),
                            plugin: Some((&meta.name, &meta.version)),
                            raw: chunk.get(first + i),
                            partition,
                            offset: chunk.offsets[first + i],
                            user_id: d.and_then(|d| d.head.user_id.as_deref()),
                            host: d.and_then(|d| d.head.host.as_deref()),
                        },
                    );
                }
                continue;
            }
            let t2 = Instant::now();
            let bytes = idx.iter().map(|&i| chunk.get(first + i).len()).sum();
            let mut batch = Batch::with_capacity(idx.len(), bytes);
            for &i in &idx {
                batch.push(chunk.get(first + i));
            }
            let mut outcome = plugin.process(&batch);
            let t3 = Instant::now();
            self.times.plugins += t3 - t2;

            let meta = &plugin.meta;
            for line in std::mem::take(&mut outcome.logs) {
                let position = line
                    .event
                    .and_then(|j| idx.get(j as usize))
                    .map(|&i| (partition, chunk.offsets[first + i]));
                match &mut self.kept_logs {
                    Some(kept) => kept.push(SourcedLine {
                        plugin: meta.name.clone(),
                        version: meta.version.clone(),
                        line,
                        position,
                    }),
                    None => crate::plugin::log::emit(&meta.name, &meta.version, &line, position),
                }
            }
            let mut claimed = vec![false; idx.len()];
            for r in &outcome.rejected {
                let j = r.index as usize;
                let Some(&i) = idx.get(j) else { continue };
                claimed[j] = true;
                let d = decoded[i].as_ref().ok();
                reject(
                    &mut rejected,
                    Rejection {
                        at_micros: now,
                        stage: match r.stage {
                            RejectStage::Plugin => Stage::Plugin,
                            RejectStage::Fault => Stage::Fault,
                        },
                        reason: &r.reason,
                        event_type: d.map(|d| d.head.event_type.as_ref()),
                        plugin: Some((&meta.name, &meta.version)),
                        raw: chunk.get(first + i),
                        partition,
                        offset: chunk.offsets[first + i],
                        user_id: d.and_then(|d| d.head.user_id.as_deref()),
                        host: d.and_then(|d| d.head.host.as_deref()),
                    },
                );
            }
            let mut rows: Vec<RowSource<'_>> = Vec::with_capacity(outcome.rows.len());
            for &j in &outcome.rows {
                let j = j as usize;
                claimed[j] = true;
                let i = idx[j];
                if let Ok(d) = &decoded[i] {
                    rows.push(RowSource {
                        decoded: d,
                        partition,
                        offset: chunk.offsets[first + i],
                    });
                }
            }
            for (j, _) in claimed.iter().enumerate().filter(|(_, c)| !**c) {
                let i = idx[j];
                let reason = format!("plugin {} did not claim the event", meta.name);
                reject(
                    &mut rejected,
                    Rejection {
                        at_micros: now,
                        stage: Stage::Filter,
                        reason: &reason,
                        event_type: decoded[i].as_ref().ok().map(|d| d.head.event_type.as_ref()),
                        plugin: Some((&meta.name, &meta.version)),
                        raw: chunk.get(first + i),
                        partition,
                        offset: chunk.offsets[first + i],
                        user_id: decoded[i]
                            .as_ref()
                            .ok()
                            .and_then(|d| d.head.user_id.as_deref()),
                        host: decoded[i]
                            .as_ref()
                            .ok()
                            .and_then(|d| d.head.host.as_deref()),
                    },
                );
            }
            if !rows.is_empty() {
                let (schema, table) = self.schema(&plugin);
                let days: Vec<i32> = rows
                    .iter()
                    .map(|r| table::day_of(r.decoded.micros))
                    .collect();
                match table::table_batch(&schema, &rows, outcome.columns) {
                    Ok(batch) => split_by_day(&table, &days, batch, &mut out),
                    Err(e) => {
                        // The host checked the plugin's columns already: this is a bug.
                        let reason = format!("cannot build the table row: {e}");
                        for r in &rows {
                            reject(
                                &mut rejected,
                                Rejection {
                                    at_micros: now,
                                    stage: Stage::Fault,
                                    reason: &reason,
                                    event_type: Some(&r.decoded.head.event_type),
                                    plugin: Some((&meta.name, &meta.version)),
                                    raw: r.decoded.raw.as_bytes(),
                                    partition,
                                    offset: r.offset,
                                    user_id: r.decoded.head.user_id.as_deref(),
                                    host: r.decoded.head.host.as_deref(),
                                },
                            );
                        }
                    }
                }
            }
            self.times.arrow += t3.elapsed();
        }
        let mut failed = None;
        if !rejected.is_empty() {
            match rejected.finish() {
                Ok(batch) => out.push(TableBatch {
                    table: self.rejected_table.clone(),
                    day: table::day_of(now),
                    batch,
                }),
                Err(e) => {
                    failed = Some(format!(
                        "partition {}: cannot build the rejected_events rows of positions \
                         {from}..{}: {e}; they are not committed and the partition is stopped \
                         (a bug: please report it with this message); a restart reads them again",
                        chunk.partition,
                        chunk.offsets.last().map_or(from, |l| l + 1)
                    ));
                }
            }
        }
        for (stage, n) in counts {
            metrics::counter!(super::metrics::REJECTED, "reason" => stage.as_str()).increment(n);
        }
        super::recent::global().record(samples);
        // Plugins that were replaced since are not needed any more.
        if self.known.len() > 64 {
            self.known.retain(|_, k| Arc::strong_count(&k.plugin) > 1);
        }
        Some(Routed {
            tables: out,
            ids: new_ids,
            failed,
        })
    }
}

/// Pushes `batch` as one [`TableBatch`] per distinct day of `days`.
fn split_by_day(table: &Arc<str>, days: &[i32], batch: RecordBatch, out: &mut Vec<TableBatch>) {
    let first = days[0];
    if days.iter().all(|&d| d == first) {
        out.push(TableBatch {
            table: table.clone(),
            day: first,
            batch,
        });
        return;
    }
    let mut distinct: Vec<i32> = days.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    for day in distinct {
        let mask = BooleanArray::from_iter(days.iter().map(|&d| Some(d == day)));
        match arrow_select::filter::filter_record_batch(&batch, &mask) {
            Ok(part) => out.push(TableBatch {
                table: table.clone(),
                day,
                batch: part,
            }),
            Err(e) => tracing::error!(table = %table, day, "cannot split a batch by day: {e}"),
        }
    }
}
