//! The commit protocol: how files become visible exactly once, and where a
//! writer resumes. See `ARCHITECTURE.md` ("Writer commit protocol") and
//! `docs/RELIABILITY.md`.
//!
//! Per source partition, commits form a **chain** of position ranges
//! `[start, end)`, each `start` the `end` of the one before, from the
//! chain's low-water mark on. A chain belongs to one source identity (the
//! embedded log's id, or Kafka's cluster and topic ids) and has a sequence
//! number; a partition's current chain is its highest. The partition's
//! folder `_eventsift/commits/<source>/<partition>/` holds:
//!
//! - `c<chain>.chain`: the chain's head (identity, first position), created
//!   once by an exclusive publish;
//! - `c<chain>-<start>.json`: commit records (range, files, writer, nonce);
//! - `c<chain>-<pos>.low`: low-water marks written by pruning, before the
//!   records below them are deleted;
//! - `<start>.json`: records of a chain written before identities existed
//!   (adopted once, then pruned).
//!
//! The code map:
//!
//! - [`publish`](self::publish) (the protocol): a commit
//!   ([`Commits::commit`]) writes its files in flight, **publishes** its
//!   record exclusively (the commit point and the fence; an unknown outcome
//!   is resolved by reading back), checks from the warehouse that the
//!   record **links** into the chain, then moves the files to their final
//!   names, never replacing one;
//! - [`take`](self::take) (recovery): taking a partition ([`Commits::take`])
//!   checks the chain against the source (identity, end, earliest
//!   position), finishes the records a crash interrupted, collects
//!   orphaned in-flight files and returns the chain's end;
//! - [`prune`](self::prune): bounds each chain behind a durable low-water
//!   mark;
//! - [`hooks`]: where a test or the model check ([`sim`](self::sim)) pauses
//!   or schedules one instance.
//!
//! Within one process, a partition's take, commits and release run one at
//! a time (each holds the partition's lock). Across processes the
//! warehouse decides: a published record is never removed, nor its files,
//! unless the warehouse shows that no walk can ever reach it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub mod hooks;
mod prune;
mod publish;
#[cfg(test)]
mod sim;
mod take;
#[cfg(test)]
mod tests;

use super::delta::{self, DeltaError, DeltaTables};
use super::metrics as m;
use super::warehouse::{Warehouse, WarehouseError};
use hooks::{Hooks, NoHooks};

/// Folder of the protocol's own files (ignored by query engines: leading `_`).
pub const META_DIR: &str = "_eventsift";
/// Records kept per partition unless configured otherwise.
pub const DEFAULT_KEEP_RECORDS: usize = 64;
/// In-flight files named the pre-chain way (no partition in the name) are
/// collected once they are this old.
const LEGACY_ORPHAN_AGE: Duration = Duration::from_secs(3600);
/// At most this many stale records or markers are deleted per prune.
const PRUNE_BATCH: usize = 256;

/// A committed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedFile {
    pub table: String,
    /// In-progress name (under `_eventsift/inflight/`).
    pub tmp: String,
    /// Final name, relative to the warehouse.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// What a commit record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub source: String,
    pub partition: i32,
    /// The chain it belongs to (0: written before chains had heads).
    #[serde(default)]
    pub chain: u32,
    /// The source identity of the chain.
    #[serde(default)]
    pub source_id: Option<String>,
    /// First position covered.
    pub start: i64,
    /// Position after the last one covered: where the next commit starts.
    pub end: i64,
    pub writer: String,
    /// Unique per commit attempt: tells a writer whether a published
    /// record is its own.
    #[serde(default)]
    pub nonce: String,
    /// RFC 3339.
    pub committed_at: String,
    pub files: Vec<CommittedFile>,
    /// Deduplication state committed with the range ([`super::dedup`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DedupFiles>,
}

/// The deduplication files of a commit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupFiles {
    /// The client-named ids this range routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<CommittedFile>,
    /// A snapshot of the whole window, written with this commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<CommittedFile>,
    /// The newest snapshot at or before this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<SnapshotRef>,
}

/// Where a snapshot is, and the position it is the window of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub tmp: String,
    pub path: String,
    /// The ids routed before this position.
    pub upto: i64,
}

/// Deduplication state to commit with a range.
#[derive(Debug, Default, Clone)]
pub struct PendingDedup {
    /// The range's client-named ids (an ids file).
    pub ids: Option<(u64, Bytes)>,
    /// A snapshot of the window as of `upto`: (upto, count, bytes).
    pub snapshot: Option<(i64, u64, Bytes)>,
}

impl PendingDedup {
    pub fn is_empty(&self) -> bool {
        self.ids.is_none() && self.snapshot.is_none()
    }
}

impl CommitRecord {
    /// Every file of the record: the tables' and the deduplication state's.
    pub fn all_files(&self) -> impl Iterator<Item = &CommittedFile> {
        let dedup = self
            .dedup
            .iter()
            .flat_map(|d| d.ids.iter().chain(d.snapshot.iter()));
        self.files.iter().chain(dedup)
    }
}

/// The head of a chain: which source it belongs to and where it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub chain: u32,
    pub source: String,
    pub partition: i32,
    pub source_id: String,
    /// The chain's first position (its low-water mark until pruned).
    pub start: i64,
    pub created_at: String,
    pub writer: String,
    /// Why it was started.
    pub reason: String,
}

/// A file to commit: its bytes and where it goes.
pub struct PendingFile {
    pub table: String,
    pub path: String,
    pub rows: u64,
    pub data: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Another writer committed from the same start, or the record does not
    /// link into the chain: this one must take the partition again.
    Fenced,
}

/// The identity and extent of a source partition when a writer takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceView {
    /// `log:<uuid>` for the embedded log, `kafka:<cluster id>/<topic id>`.
    pub id: String,
    /// First position still in the source.
    pub earliest: i64,
    /// Position after the last record.
    pub end: i64,
}

/// What a writer does with partitions whose chain does not fit the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TakeOptions {
    /// Start a new chain for partitions whose chain belongs to this source
    /// identity but cannot continue (the source changed, or it ends before
    /// the chain does). Nothing is automatic: the operator names the old
    /// identity, which the refusal printed.
    pub new_chain_from: Option<String>,
    /// Skip records deleted from the source (retention) before they were
    /// written, logging and counting them, instead of stopping the partition.
    pub accept_gaps: bool,
}

/// Where a taken partition resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The chain's end: the next commit's start.
    pub chain: i64,
    /// The first source position to read (past `chain` only after an
    /// accepted gap).
    pub source: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("commit record {path} is unreadable: {message}")]
    BadRecord { path: String, message: String },
    /// The partition must not be started (identity, end or gap); the
    /// message says why and what the operator can do.
    #[error("{0}")]
    Refused(String),
    /// The publish did not happen (definitely): the attempt was cleaned up
    /// and may be retried.
    #[error("the commit record {0} was not published")]
    NotPublished(String),
    /// Stopping while a publish's outcome was still unknown: the attempt's
    /// files stay for the next writer's recovery to resolve.
    #[error("stopped before the outcome of publishing {0} was known")]
    Unresolved(String),
    #[error("partition {0} was not taken by this writer")]
    NotTaken(i32),
    /// A table's Delta commit failed (retried with the record later).
    #[error(transparent)]
    Delta(#[from] DeltaError),
}

impl CommitError {
    /// Whether retrying may help (the warehouse failed or did not answer).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CommitError::Warehouse(_) | CommitError::NotPublished(_) | CommitError::Delta(_)
        )
    }
}

/// The name of a file in a partition's commit folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Legacy(i64),
    Record(u32, i64),
    Head(u32),
    Low(u32, i64),
    Other,
}

fn parse_name(name: &str) -> Name {
    fn digits<T: std::str::FromStr>(s: &str, n: usize) -> Option<T> {
        (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    }
    if let Some(stem) = name.strip_suffix(".json") {
        if let Some(start) = digits(stem, 20) {
            return Name::Legacy(start);
        }
        if let Some((c, start)) = stem.strip_prefix('c').and_then(|s| s.split_once('-'))
            && let (Some(c), Some(start)) = (digits(c, 6), digits(start, 20))
        {
            return Name::Record(c, start);
        }
    } else if let Some(stem) = name.strip_suffix(".chain") {
        if let Some(c) = stem.strip_prefix('c').and_then(|c| digits(c, 6)) {
            return Name::Head(c);
        }
    } else if let Some(stem) = name.strip_suffix(".low")
        && let Some((c, pos)) = stem.strip_prefix('c').and_then(|s| s.split_once('-'))
        && let (Some(c), Some(pos)) = (digits(c, 6), digits(pos, 20))
    {
        return Name::Low(c, pos);
    }
    Name::Other
}

/// What this writer knows of a partition it took.
#[derive(Debug)]
struct Part {
    head: ChainHead,
    low: i64,
    /// Records of the head's chain read so far, by start (they never change).
    records: BTreeMap<i64, CommitRecord>,
    /// The end of the linked chain.
    end: i64,
    /// Linked records whose files are not all moved yet (a move failed).
    unfinished: Vec<CommitRecord>,
    /// Starts of linked records this process knows finished (files at
    /// their final names, Delta commits made): those of the walk at a
    /// take, its own commits, and records pruning finished. Another
    /// writer's record read since may be unfinished (its writer paused
    /// after publishing): pruning finishes it before passing it, and the
    /// sweep keeps its files.
    done: std::collections::BTreeSet<i64>,
}

impl Part {
    /// Starts of the linked records, oldest first, and the chain's end.
    fn walk(&self) -> (Vec<i64>, i64) {
        let mut starts = Vec::new();
        let mut pos = self.low;
        while let Some(r) = self.records.get(&pos) {
            if r.end <= r.start {
                break;
            }
            starts.push(pos);
            pos = r.end;
        }
        (starts, pos)
    }
}

/// The outcome of one publish, once known.
enum Published {
    Ours,
    Theirs,
    No,
}

/// One partition's state behind its own lock: a take, a commit or a
/// release of the partition holds it from start to end, so within one
/// process they never interleave (`None`: not taken). Its chain number is
/// readable without the lock (0: not taken), for naming files (a running
/// writer's take starts a new chain only when the operator asked for one).
#[derive(Default)]
struct Slot(Mutex<Option<Part>>, std::sync::atomic::AtomicU32);

/// The commit records of one source (a Kafka topic, or the embedded log).
pub struct Commits {
    wh: Arc<Warehouse>,
    source: String,
    writer: String,
    keep: usize,
    parts: Mutex<HashMap<i32, Arc<Slot>>>,
    /// With `--table-format delta`: finishing a record also commits its
    /// files to each table's Delta log ([`super::delta`]).
    delta: Option<Arc<DeltaTables>>,
    hooks: Arc<dyn Hooks>,
    /// A planted bug the model check must find (its own test).
    #[cfg(test)]
    mutation: Option<Mutation>,
}

/// Bugs the model check's own test plants, to show it finds them.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// Pruning passes records it has not seen finished, and its sweep
    /// keeps only this process's unfinished files (the code before the
    /// review of issue 28).
    PruneUnfinished,
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

impl Commits {
    /// Commits of `source` in `wh` by `writer`, keeping `keep` records per
    /// partition (at least 1).
    pub fn new(wh: Arc<Warehouse>, source: &str, writer: &str, keep: usize) -> Self {
        Commits {
            wh,
            source: source.to_owned(),
            writer: writer.to_owned(),
            keep: keep.max(1),
            parts: Mutex::new(HashMap::new()),
            delta: None,
            hooks: Arc::new(NoHooks),
            #[cfg(test)]
            mutation: None,
        }
    }

    /// Plants `mutation` (the model check's own test).
    #[cfg(test)]
    pub(crate) fn with_mutation(mut self, mutation: Option<Mutation>) -> Self {
        self.mutation = mutation;
        self
    }

    /// Whether `m` is planted.
    #[cfg(test)]
    fn mutated(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }

    /// Runs with `hooks` (tests and the model check).
    pub fn with_hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// Finishes records into Delta tables too.
    pub fn with_delta(mut self, delta: Arc<DeltaTables>) -> Self {
        self.delta = Some(delta);
        self
    }

    pub fn warehouse(&self) -> &Arc<Warehouse> {
        &self.wh
    }

    /// A name unique to one attempt.
    fn nonce(&self) -> String {
        self.hooks
            .nonce()
            .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string())
    }

    /// The lock of `partition`'s state.
    fn slot(&self, partition: i32) -> Arc<Slot> {
        self.parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(partition)
            .or_default()
            .clone()
    }

    /// Runs `f` on `partition`'s state, holding its lock. A lock that a
    /// panic poisoned holds no state: the partition must be taken again.
    /// The chain number readable without the lock follows the state.
    fn with_part<R>(&self, partition: i32, f: impl FnOnce(&mut Option<Part>) -> R) -> R {
        let slot = self.slot(partition);
        self.with_slot(&slot, f)
    }

    fn with_slot<R>(&self, slot: &Slot, f: impl FnOnce(&mut Option<Part>) -> R) -> R {
        let mut held = loop {
            match slot.0.try_lock() {
                Ok(g) => break g,
                Err(TryLockError::Poisoned(p)) => {
                    let mut g = p.into_inner();
                    *g = None;
                    slot.0.clear_poison();
                    break g;
                }
                Err(TryLockError::WouldBlock) => {
                    if !self.hooks.contended() {
                        break lock_clean(&slot.0);
                    }
                }
            }
        };
        let r = f(&mut held);
        let chain = held.as_ref().map_or(0, |p| p.head.chain);
        slot.1.store(chain, std::sync::atomic::Ordering::Relaxed);
        r
    }

    fn dir(&self, partition: i32) -> String {
        format!("{META_DIR}/commits/{}/{partition}", self.source)
    }

    fn inflight_dir(&self, partition: i32) -> String {
        format!("{META_DIR}/inflight/{}/{partition}", self.source)
    }

    /// Where a partition's deduplication files go.
    pub fn dedup_dir(&self, partition: i32) -> String {
        format!("{META_DIR}/dedup/{}/{partition}", self.source)
    }

    fn record_path(&self, partition: i32, chain: u32, start: i64) -> String {
        format!("{}/c{chain:06}-{start:020}.json", self.dir(partition))
    }

    fn listing(&self, partition: i32) -> Result<Vec<(String, Name)>, CommitError> {
        Ok(self
            .wh
            .list(&self.dir(partition))?
            .into_iter()
            .filter(|e| !e.is_dir)
            .map(|e| {
                let n = parse_name(&e.name);
                (e.name, n)
            })
            .collect())
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, CommitError> {
        let bytes = self.wh.read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| CommitError::BadRecord {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Writes `json` to a hidden name in `dir`, then publishes it as `name`;
    /// whether it was published (false: the name exists). A failed attempt
    /// removes its temporary.
    fn publish_new(&self, dir: &str, name: &str, json: Vec<u8>) -> Result<bool, CommitError> {
        let tmp = format!("{dir}/.{name}.{}", self.nonce());
        self.wh.write(&tmp, Bytes::from(json))?;
        let published = self.wh.publish(&tmp, &format!("{dir}/{name}"));
        if !matches!(published, Ok(true)) {
            let _ = self.wh.remove(&tmp);
        }
        Ok(published?)
    }

    /// The current chain of a taken partition, without waiting for its
    /// lock (a take or commit of the partition may be in progress).
    pub fn chain(&self, partition: i32) -> Option<u32> {
        let c = self
            .slot(partition)
            .1
            .load(std::sync::atomic::Ordering::Relaxed);
        (c > 0).then_some(c)
    }

    /// Forgets a partition (revoked). Waits for a take or commit of the
    /// partition in progress in this process to end.
    pub fn release(&self, partition: i32) {
        self.with_part(partition, |p| *p = None);
    }

    /// The linked records of `partition`'s current chain as this writer
    /// knows them (for tests and tools).
    pub fn linked(&self, partition: i32) -> Vec<CommitRecord> {
        self.with_part(partition, |part| {
            let Some(part) = part else {
                return Vec::new();
            };
            part.walk()
                .0
                .iter()
                .map(|s| part.records[s].clone())
                .collect()
        })
    }
}

fn lock_clean<T>(m: &Mutex<Option<T>>) -> MutexGuard<'_, Option<T>> {
    m.lock().unwrap_or_else(|p| {
        let mut g = p.into_inner();
        *g = None;
        m.clear_poison();
        g
    })
}

fn injected(point: &str, path: &str) -> WarehouseError {
    WarehouseError {
        op: "publish",
        path: path.to_owned(),
        message: format!("failpoint {point}: injected error"),
    }
}

/// Reads the linked records of every partition chain of `source` in `wh`
/// (for `eventsift tables`, tools and tests): `(partition, records)`.
pub fn read_chains(
    wh: &Arc<Warehouse>,
    source: &str,
) -> Result<Vec<(i32, Vec<CommitRecord>)>, CommitError> {
    let mut out = Vec::new();
    for e in wh.list(&format!("{META_DIR}/commits/{source}"))? {
        let Ok(partition) = e.name.parse::<i32>() else {
            continue;
        };
        let commits = Commits::new(wh.clone(), source, "reader", usize::MAX);
        let listing = commits.listing(partition)?;
        let Some(seq) = listing
            .iter()
            .filter_map(|(_, n)| match n {
                Name::Head(c) => Some(*c),
                _ => None,
            })
            .max()
        else {
            continue;
        };
        let head: ChainHead =
            commits.read_json(&format!("{}/c{seq:06}.chain", commits.dir(partition)))?;
        let part = commits.load(partition, head, &listing)?;
        let records = part
            .walk()
            .0
            .iter()
            .map(|s| part.records[s].clone())
            .collect();
        out.push((partition, records));
    }
    out.sort_by_key(|(p, _)| *p);
    Ok(out)
}
