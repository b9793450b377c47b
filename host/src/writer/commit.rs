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
//! A commit ([`Commits::commit`]):
//!
//! 1. writes every file under `_eventsift/inflight/<source>/<partition>/`
//!    with a name carrying chain, start and a per-attempt nonce;
//! 2. writes the record to a hidden temporary name, then **publishes** it as
//!    `c<chain>-<start>.json` with a rename that fails if the name exists:
//!    the commit point and the fence. An unknown outcome (an error after the
//!    request left) is resolved by reading the record back and comparing
//!    nonces, never by guessing;
//! 3. checks that the record **links**: its chain is still current and the
//!    walk from the low-water mark reaches it. A record that does not link
//!    (a zombie publishing a pruned start) counts for nothing: its writer
//!    removes it and recovers;
//! 4. moves each file to its final name under `<table>/dt=<date>/`, never
//!    replacing a file.
//!
//! Taking a partition ([`Commits::take`]) checks the chain against the
//! source (identity, end, earliest position), finishes the moves of records
//! a crash interrupted, collects orphaned in-flight files and returns the
//! chain's end.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::delta::{self, DeltaError, DeltaTables};
use super::metrics as m;
use super::warehouse::{Moved, Warehouse, WarehouseError};
use crate::faults;

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

/// The commit records of one source (a Kafka topic, or the embedded log).
pub struct Commits {
    wh: Arc<Warehouse>,
    source: String,
    writer: String,
    keep: usize,
    parts: Mutex<HashMap<i32, Part>>,
    /// With `--table-format delta`: finishing a record also commits its
    /// files to each table's Delta log ([`super::delta`]).
    delta: Option<Arc<DeltaTables>>,
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
        }
    }

    /// Finishes records into Delta tables too.
    pub fn with_delta(mut self, delta: Arc<DeltaTables>) -> Self {
        self.delta = Some(delta);
        self
    }

    pub fn warehouse(&self) -> &Arc<Warehouse> {
        &self.wh
    }

    fn parts(&self) -> MutexGuard<'_, HashMap<i32, Part>> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
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
        let tmp = format!("{dir}/.{name}.{}", uuid::Uuid::now_v7().simple());
        self.wh.write(&tmp, Bytes::from(json))?;
        let published = self.wh.publish(&tmp, &format!("{dir}/{name}"));
        if !matches!(published, Ok(true)) {
            let _ = self.wh.remove(&tmp);
        }
        Ok(published?)
    }

    /// Takes over `partition`: checks its chain against the source, finishes
    /// any interrupted commit, collects orphans, and returns where to resume.
    /// [`CommitError::Refused`] means the partition must not be started.
    pub fn take(
        &self,
        partition: i32,
        view: &SourceView,
        options: &TakeOptions,
    ) -> Result<Resume, CommitError> {
        self.parts().remove(&partition);
        loop {
            let listing = self.listing(partition)?;
            let head_seq = listing
                .iter()
                .filter_map(|(_, n)| match n {
                    Name::Head(c) => Some(*c),
                    _ => None,
                })
                .max();
            let Some(seq) = head_seq else {
                // No chain yet: start one, adopting a chain written before
                // chains had identities.
                let legacy: Vec<i64> = listing
                    .iter()
                    .filter_map(|(_, n)| match n {
                        Name::Legacy(s) => Some(*s),
                        _ => None,
                    })
                    .collect();
                let (start, reason) = if legacy.is_empty() {
                    (view.earliest, "new chain".to_owned())
                } else {
                    let mut end = 0;
                    for s in &legacy {
                        let r: CommitRecord =
                            self.read_json(&format!("{}/{s:020}.json", self.dir(partition)))?;
                        self.finish(&r)?;
                        end = end.max(r.end);
                    }
                    tracing::warn!(
                        source = %self.source,
                        partition,
                        "adopting the chain written before source identities ({} records, \
                         positions below {end}) for source {}",
                        legacy.len(),
                        view.id
                    );
                    (
                        end,
                        format!(
                            "adopted a chain without identity ({} records, end {end})",
                            legacy.len()
                        ),
                    )
                };
                self.new_chain(partition, 1, view, start, reason)?;
                continue;
            };
            let head: ChainHead =
                self.read_json(&format!("{}/c{seq:06}.chain", self.dir(partition)))?;
            let part = self.load(partition, head, &listing)?;
            let new_chain_ok = options.new_chain_from.as_deref() == Some(&part.head.source_id);
            let (_, end) = part.walk();
            if part.head.source_id != view.id {
                if new_chain_ok {
                    self.finish_all(partition, &part)?;
                    let reason = format!(
                        "new chain: the source changed from {} to {} (requested)",
                        part.head.source_id, view.id
                    );
                    self.new_chain(partition, seq + 1, view, view.earliest, reason)?;
                    continue;
                }
                return Err(CommitError::Refused(format!(
                    "{} partition {partition}: the warehouse's chain belongs to source {} \
                     (committed up to position {end}), but the source is now {} (positions \
                     {}..{}): its data dir or topic was replaced. Nothing was written for this \
                     partition. To start a new chain for the new source deliberately, run again \
                     with --new-chain-from {}",
                    self.source,
                    part.head.source_id,
                    view.id,
                    view.earliest,
                    view.end,
                    part.head.source_id
                )));
            }
            if end > view.end {
                if new_chain_ok {
                    // The same source lost its tail: positions from its end
                    // on are new records; those below were committed.
                    self.finish_all(partition, &part)?;
                    let reason = format!(
                        "new chain: source {} ends at {} before the chain's end {end} (requested)",
                        view.id, view.end
                    );
                    self.new_chain(partition, seq + 1, view, view.end, reason)?;
                    continue;
                }
                return Err(CommitError::Refused(format!(
                    "{} partition {partition}: the warehouse's chain ends at position {end}, \
                     beyond the end of source {} (position {}): the source lost records the \
                     warehouse holds. Nothing was written for this partition. To start a new \
                     chain at the source's end deliberately, run again with --new-chain-from {}",
                    self.source, view.id, view.end, part.head.source_id
                )));
            }
            let source = if end < view.earliest {
                if !options.accept_gaps {
                    return Err(CommitError::Refused(format!(
                        "{} partition {partition}: records {end}..{} are gone from source {} \
                         (deleted by retention before they were written). Nothing was written \
                         for this partition. To skip them deliberately, run again with \
                         --accept-retention-gaps",
                        self.source, view.earliest, view.id
                    )));
                }
                tracing::warn!(
                    source = %self.source,
                    partition,
                    "skipping records {end}..{} deleted from the source before they were \
                     written (--accept-retention-gaps)",
                    view.earliest
                );
                ::metrics::counter!(m::GAP_RECORDS, "partition" => partition.to_string())
                    .increment((view.earliest - end) as u64);
                view.earliest
            } else {
                end
            };
            self.finish_all(partition, &part)?;
            let mut part = part;
            part.end = end;
            self.parts().insert(partition, part);
            return Ok(Resume { chain: end, source });
        }
    }

    /// Publishes the head of chain `seq` (a concurrent writer may win: the
    /// caller lists again either way).
    fn new_chain(
        &self,
        partition: i32,
        seq: u32,
        view: &SourceView,
        start: i64,
        reason: String,
    ) -> Result<(), CommitError> {
        let head = ChainHead {
            chain: seq,
            source: self.source.clone(),
            partition,
            source_id: view.id.clone(),
            start,
            created_at: now_rfc3339(),
            writer: self.writer.clone(),
            reason: reason.clone(),
        };
        let json = serde_json::to_vec_pretty(&head).expect("a chain head serializes");
        if self.publish_new(&self.dir(partition), &format!("c{seq:06}.chain"), json)? {
            tracing::info!(
                source = %self.source,
                partition,
                "chain {seq} for source {} starts at position {start}: {reason}",
                view.id
            );
        }
        Ok(())
    }

    /// The state of `partition`'s current chain from a listing (reading the
    /// records not cached yet).
    fn load(
        &self,
        partition: i32,
        head: ChainHead,
        listing: &[(String, Name)],
    ) -> Result<Part, CommitError> {
        let mut part = Part {
            low: head.start,
            head,
            records: BTreeMap::new(),
            end: 0,
            unfinished: Vec::new(),
        };
        self.refresh(partition, &mut part, listing)?;
        Ok(part)
    }

    /// Brings `part` in line with a listing of its folder: the low-water
    /// mark, and records added (read) or pruned (forgotten).
    fn refresh(
        &self,
        partition: i32,
        part: &mut Part,
        listing: &[(String, Name)],
    ) -> Result<(), CommitError> {
        let seq = part.head.chain;
        for (_, n) in listing {
            if let Name::Low(c, pos) = n
                && *c == seq
            {
                part.low = part.low.max(*pos);
            }
        }
        let listed: Vec<i64> = listing
            .iter()
            .filter_map(|(_, n)| match n {
                Name::Record(c, s) if *c == seq && *s >= part.low => Some(*s),
                _ => None,
            })
            .collect();
        part.records.retain(|s, _| listed.contains(s));
        for start in listed {
            if part.records.contains_key(&start) {
                continue;
            }
            let path = self.record_path(partition, seq, start);
            let r: CommitRecord = match self.read_json(&path) {
                Ok(r) => r,
                // Pruned (or removed by its writer) since the listing.
                Err(CommitError::Warehouse(_)) if !self.wh.exists(&path)? => continue,
                Err(e) => return Err(e),
            };
            if r.start != start || r.chain != seq || r.partition != partition {
                tracing::warn!(
                    file = %path,
                    partition,
                    position = start,
                    "a commit record names another range: ignored"
                );
                continue;
            }
            part.records.insert(start, r);
        }
        part.end = part.walk().1;
        Ok(())
    }

    /// Finishes the linked records of `part` whose files are still in
    /// flight (one listing of the partition's in-flight folder tells which),
    /// then sweeps the orphans ([`Commits::sweep`]).
    fn finish_all(&self, partition: i32, part: &Part) -> Result<(), CommitError> {
        let inflight = self.inflight(partition)?;
        let (starts, end) = part.walk();
        // With Delta: how far each table has each chain's ranges.
        let mut upto: HashMap<(String, u32), Option<i64>> = HashMap::new();
        for s in &starts {
            let r = &part.records[s];
            let mut pending = r
                .all_files()
                .any(|f| inflight.iter().any(|(p, _)| *p == f.tmp));
            if let Some(d) = &self.delta
                && !pending
            {
                let app = delta::app_id(&r.source, r.partition, r.chain);
                for f in &r.files {
                    let key = (f.table.clone(), r.chain);
                    let v = match upto.get(&key) {
                        Some(v) => *v,
                        None => {
                            let v = d.committed(&f.table, &app)?;
                            upto.insert(key, v);
                            v
                        }
                    };
                    if v.is_none_or(|v| v < r.end) {
                        pending = true;
                        break;
                    }
                }
            }
            if pending {
                self.finish(r)?;
            }
        }
        self.sweep(partition, part.head.chain, end, &[]);
        Ok(())
    }

    /// The in-flight files of `partition`: path and age.
    fn inflight(&self, partition: i32) -> Result<Vec<(String, Option<Duration>)>, CommitError> {
        let dir = self.inflight_dir(partition);
        Ok(self
            .wh
            .list(&dir)?
            .into_iter()
            .filter(|e| !e.is_dir)
            .map(|e| {
                let age = e.modified.and_then(|m| m.elapsed().ok());
                (format!("{dir}/{}", e.name), age)
            })
            .collect())
    }

    /// Removes in-flight files of `partition` that no record can ever name:
    /// those of chains older than `chain`, and those whose start lies below
    /// the chain's `end` (a writer publishing them would be fenced or
    /// unlinked). Files at or past the end may belong to a live writer and
    /// stay, as do the `keep` names (files of records still being moved).
    /// Files named before names carried their partition go once they are
    /// [`LEGACY_ORPHAN_AGE`] old. Best effort.
    fn sweep(&self, partition: i32, chain: u32, end: i64, keep: &[&str]) {
        let inflight = match self.inflight(partition) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!("listing in-flight files: {e}");
                return;
            }
        };
        let mut removed = 0u64;
        for (path, _) in &inflight {
            let name = path.rsplit('/').next().unwrap_or("");
            let Some((c, start)) = name
                .strip_prefix('c')
                .and_then(|s| s.split_once('-'))
                .and_then(|(c, rest)| {
                    let (start, _) = rest.split_once('-')?;
                    Some((c.parse::<u32>().ok()?, start.parse::<i64>().ok()?))
                })
            else {
                continue;
            };
            let stale = c < chain || (c == chain && start < end);
            if stale && !keep.contains(&path.as_str()) && self.wh.remove(path).unwrap_or(false) {
                removed += 1;
            }
        }
        if let Ok(entries) = self.wh.list(&format!("{META_DIR}/inflight")) {
            for e in entries.iter().filter(|e| !e.is_dir) {
                let old = e
                    .modified
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age >= LEGACY_ORPHAN_AGE);
                if old
                    && self
                        .wh
                        .remove(&format!("{META_DIR}/inflight/{}", e.name))
                        .unwrap_or(false)
                {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            ::metrics::counter!(m::ORPHANS).increment(removed);
            tracing::info!(
                source = %self.source,
                partition,
                "removed {removed} orphaned in-flight files"
            );
        }
    }

    /// Moves the files of `record` that are still in progress (a file that
    /// is gone from both names is reported, not retried), then, with Delta,
    /// commits them to their tables' logs.
    fn finish(&self, record: &CommitRecord) -> Result<(), CommitError> {
        self.finish_known(record, &HashMap::new())
    }

    /// [`Commits::finish`], with the stats and schemas of files still in
    /// memory.
    fn finish_known(
        &self,
        record: &CommitRecord,
        known: &HashMap<String, (String, arrow_schema::SchemaRef)>,
    ) -> Result<(), CommitError> {
        self.move_files(record)?;
        if let Some(d) = &self.delta {
            delta::finish_record(d, &self.wh, record, known)?;
        }
        Ok(())
    }

    fn move_files(&self, record: &CommitRecord) -> Result<(), CommitError> {
        for f in record.all_files() {
            match self.wh.rename(&f.tmp, &f.path)? {
                Moved::Moved => {
                    tracing::debug!(file = %f.path, "moved to its final name");
                }
                Moved::TargetExists => {}
                Moved::Missing => {
                    ::metrics::counter!(m::MISSING_FILES).increment(1);
                    tracing::error!(
                        file = %f.path,
                        table = %f.table,
                        partition = record.partition,
                        position = record.start,
                        "a committed file is missing under both its names (deleted by hand?): \
                         its {} rows are not in the table",
                        f.rows
                    );
                }
            }
        }
        Ok(())
    }

    /// The current chain of a taken partition.
    pub fn chain(&self, partition: i32) -> Option<u32> {
        self.parts().get(&partition).map(|p| p.head.chain)
    }

    /// Forgets a partition (revoked).
    pub fn release(&self, partition: i32) {
        self.parts().remove(&partition);
    }

    /// Commits `files` as the range `[start, end)` of `partition`, which this
    /// writer took. `give_up` is asked while a publish's outcome is unknown
    /// and the warehouse does not answer: true leaves the attempt for
    /// recovery ([`CommitError::Unresolved`]).
    pub fn commit(
        &self,
        partition: i32,
        start: i64,
        end: i64,
        files: &[PendingFile],
        give_up: &dyn Fn() -> bool,
    ) -> Result<(CommitOutcome, CommitRecord), CommitError> {
        self.commit_with(
            partition,
            start,
            end,
            files,
            &PendingDedup::default(),
            give_up,
        )
    }

    /// [`Commits::commit`] with deduplication state, published with the
    /// range (the record names the files; they move with the tables').
    pub fn commit_with(
        &self,
        partition: i32,
        start: i64,
        end: i64,
        files: &[PendingFile],
        dedup: &PendingDedup,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(CommitOutcome, CommitRecord), CommitError> {
        let (seq, source_id, chain_end, unfinished, base) = {
            let mut parts = self.parts();
            let part = parts
                .get_mut(&partition)
                .ok_or(CommitError::NotTaken(partition))?;
            let base = part
                .walk()
                .0
                .last()
                .and_then(|s| part.records[s].dedup.as_ref())
                .and_then(|d| d.base.clone());
            (
                part.head.chain,
                part.head.source_id.clone(),
                part.end,
                std::mem::take(&mut part.unfinished),
                base,
            )
        };
        for r in &unfinished {
            if let Err(e) = self.finish(r) {
                self.parts()
                    .get_mut(&partition)
                    .map(|p| p.unfinished.extend(unfinished.iter().cloned()));
                return Err(e);
            }
        }
        let nonce = uuid::Uuid::now_v7().simple().to_string();
        let record = CommitRecord {
            source: self.source.clone(),
            partition,
            chain: seq,
            source_id: Some(source_id),
            start,
            end,
            writer: self.writer.clone(),
            nonce: nonce.clone(),
            committed_at: now_rfc3339(),
            files: Vec::with_capacity(files.len()),
            dedup: None,
        };
        if start != chain_end {
            // The chain moved (this writer's view is stale): recover.
            return Ok((CommitOutcome::Fenced, record));
        }
        let mut record = record;
        let inflight = self.inflight_dir(partition);
        for (i, f) in files.iter().enumerate() {
            let tmp = format!("{inflight}/c{seq:06}-{start:020}-{nonce}-{i}.parquet");
            if let Err(e) = self.wh.write(&tmp, f.data.clone()) {
                let _ = self.wh.remove(&tmp);
                self.remove_files(&record);
                return Err(e.into());
            }
            record.files.push(CommittedFile {
                table: f.table.clone(),
                tmp,
                path: f.path.clone(),
                rows: f.rows,
                bytes: f.data.len() as u64,
            });
        }
        if !dedup.is_empty() || base.is_some() {
            let dir = self.dedup_dir(partition);
            let mut state = DedupFiles {
                ids: None,
                snapshot: None,
                base,
            };
            let parts: [(&str, &str, Option<(u64, &Bytes)>); 2] = [
                ("ids", "ids", dedup.ids.as_ref().map(|(n, b)| (*n, b))),
                (
                    "snap",
                    "snap",
                    dedup.snapshot.as_ref().map(|(_, n, b)| (*n, b)),
                ),
            ];
            for (kind, ext, data) in parts {
                let Some((count, data)) = data else { continue };
                let tmp = format!("{inflight}/c{seq:06}-{start:020}-{nonce}-{kind}.bin");
                if let Err(e) = self.wh.write(&tmp, data.clone()) {
                    let _ = self.wh.remove(&tmp);
                    record.dedup = Some(state);
                    self.remove_files(&record);
                    return Err(e.into());
                }
                let file = CommittedFile {
                    table: String::new(),
                    tmp,
                    path: format!("{dir}/c{seq:06}-{start:020}.{ext}"),
                    rows: count,
                    bytes: data.len() as u64,
                };
                if kind == "ids" {
                    state.ids = Some(file);
                } else {
                    state.base = Some(SnapshotRef {
                        tmp: file.tmp.clone(),
                        path: file.path.clone(),
                        upto: dedup.snapshot.as_ref().map_or(start, |(u, _, _)| *u),
                    });
                    state.snapshot = Some(file);
                }
            }
            record.dedup = Some(state);
        }
        faults::abort_at("after_tmp");
        faults::stop_at("stop_before_publish");

        let json = serde_json::to_vec_pretty(&record).expect("a commit record serializes");
        let dir = self.dir(partition);
        let tmp_record = format!("{dir}/.c{seq:06}-{start:020}.{nonce}");
        let target = self.record_path(partition, seq, start);
        if let Err(e) = self.wh.write(&tmp_record, Bytes::from(json)) {
            let _ = self.wh.remove(&tmp_record);
            self.remove_files(&record);
            return Err(e.into());
        }
        let published = if faults::fires("publish_lost") {
            Err(injected("publish_lost", &target))
        } else {
            let r = self.wh.publish(&tmp_record, &target);
            if faults::fires("publish_ambiguous") {
                Err(injected("publish_ambiguous", &target))
            } else {
                r
            }
        };
        let outcome = match published {
            Ok(true) => Published::Ours,
            Ok(false) | Err(_) => {
                if let Err(e) = &published {
                    tracing::warn!(
                        partition,
                        start,
                        "the outcome of publishing the commit record is unknown ({e}): \
                         reading it back"
                    );
                }
                let outcome = self.resolve(&target, &tmp_record, &nonce, give_up)?;
                if published.is_err() {
                    ::metrics::counter!(m::UNKNOWN_OUTCOMES).increment(1);
                    tracing::warn!(
                        partition,
                        start,
                        "unknown publish outcome resolved: {}",
                        match outcome {
                            Published::Ours => "committed",
                            Published::Theirs => "another writer's record",
                            Published::No => "not published",
                        }
                    );
                }
                outcome
            }
        };
        match outcome {
            Published::Ours => {}
            Published::Theirs => {
                self.remove_files(&record);
                return Ok((CommitOutcome::Fenced, record));
            }
            Published::No => {
                self.remove_files(&record);
                return Err(CommitError::NotPublished(target));
            }
        }
        faults::abort_at("after_record");

        if !self.links(partition, &record)? {
            tracing::warn!(
                partition,
                start,
                "the published record does not link into the chain (its start was pruned, or \
                 the chain was replaced): it counts for nothing and is removed"
            );
            ::metrics::counter!(m::UNLINKED).increment(1);
            // Nobody can count it (no walk reaches it): safe to remove.
            let _ = self.wh.remove(&target);
            self.remove_files(&record);
            return Ok((CommitOutcome::Fenced, record));
        }

        let known: HashMap<String, (String, arrow_schema::SchemaRef)> = match &self.delta {
            None => HashMap::new(),
            Some(_) => files
                .iter()
                .filter_map(|f| {
                    let described = delta::describe(&f.data)
                        .map_err(|e| tracing::warn!(file = %f.path, "{e}"))
                        .ok()?;
                    Some((f.path.clone(), described))
                })
                .collect(),
        };
        let finished = self.finish_known(&record, &known);
        faults::abort_at("after_rename");
        let prune = {
            let mut parts = self.parts();
            let part = parts
                .get_mut(&partition)
                .ok_or(CommitError::NotTaken(partition))?;
            part.records.insert(start, record.clone());
            part.end = end;
            if let Err(e) = &finished {
                tracing::warn!(
                    partition,
                    start,
                    "moving committed files (retried later): {e}"
                );
                part.unfinished.push(record.clone());
            }
            part.walk().0.len() > self.keep.saturating_add(self.keep.div_ceil(4))
        };
        if prune && let Err(e) = self.prune(partition) {
            tracing::warn!(partition, "pruning commit records (retried later): {e}");
        }
        Ok((CommitOutcome::Committed, record))
    }

    /// Resolves a publish whose outcome is unknown: the record at `target`
    /// is ours (same nonce), another's, or absent, and once this returns,
    /// ours can no longer appear (its temporary is gone).
    fn resolve(
        &self,
        target: &str,
        tmp_record: &str,
        nonce: &str,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Published, CommitError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let answer = (|| -> Result<Option<Published>, WarehouseError> {
                match self.wh.read_opt(target)? {
                    Some(bytes) => {
                        let theirs: Option<CommitRecord> = serde_json::from_slice(&bytes).ok();
                        if theirs.is_some_and(|r| r.nonce == nonce) {
                            return Ok(Some(Published::Ours));
                        }
                        self.wh.remove(tmp_record)?;
                        Ok(Some(Published::Theirs))
                    }
                    None => {
                        self.wh.remove(tmp_record)?;
                        // Ours can no longer be renamed; it may have been just before.
                        Ok(match self.wh.read_opt(target)? {
                            None => Some(Published::No),
                            Some(_) => None,
                        })
                    }
                }
            })();
            match answer {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => continue,
                Err(e) => {
                    if give_up() {
                        return Err(CommitError::Unresolved(target.to_owned()));
                    }
                    tracing::warn!("resolving a publish: {e} (retrying)");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Whether `record` (published, ours) links into its partition's
    /// current chain.
    fn links(&self, partition: i32, record: &CommitRecord) -> Result<bool, CommitError> {
        let listing = self.listing(partition)?;
        let current = listing
            .iter()
            .filter_map(|(_, n)| match n {
                Name::Head(c) => Some(*c),
                _ => None,
            })
            .max();
        if current != Some(record.chain) {
            return Ok(false);
        }
        let mut part = {
            let mut parts = self.parts();
            let Some(p) = parts.get_mut(&partition) else {
                return Ok(false);
            };
            Part {
                head: p.head.clone(),
                low: p.low,
                records: std::mem::take(&mut p.records),
                end: p.end,
                unfinished: Vec::new(),
            }
        };
        part.records.insert(record.start, record.clone());
        let refreshed = self.refresh(partition, &mut part, &listing);
        let linked = refreshed.is_ok()
            && record.start >= part.low
            && part.walk().0.contains(&record.start)
            && part
                .records
                .get(&record.start)
                .is_some_and(|r| r.nonce == record.nonce);
        part.records.remove(&record.start);
        if let Some(p) = self.parts().get_mut(&partition) {
            p.records = part.records;
            p.low = part.low;
        }
        refreshed?;
        Ok(linked)
    }

    /// Removes an attempt's in-flight files (best effort).
    fn remove_files(&self, record: &CommitRecord) {
        for f in record.all_files() {
            if let Err(e) = self.wh.remove(&f.tmp) {
                tracing::debug!("removing {}: {e}", f.tmp);
            }
        }
    }

    /// Keeps the newest `keep` linked records of `partition`: writes a
    /// low-water mark at the oldest kept one, then deletes what lies below
    /// it (older chains' and pre-chain records included, a batch at a time).
    pub fn prune(&self, partition: i32) -> Result<(), CommitError> {
        let (seq, starts, end, unfinished, floor) = {
            let parts = self.parts();
            let Some(part) = parts.get(&partition) else {
                return Ok(());
            };
            let (starts, end) = part.walk();
            let unfinished: Vec<String> = part
                .unfinished
                .iter()
                .flat_map(|r| r.all_files().map(|f| f.tmp.clone()))
                .collect();
            // Deduplication state: the newest base snapshot and every ids
            // file after it stay (without a base: every ids file).
            let base = starts
                .last()
                .and_then(|s| part.records[s].dedup.as_ref())
                .and_then(|d| d.base.as_ref())
                .map(|b| b.upto);
            let floor = base.or_else(|| {
                starts
                    .iter()
                    .find(|s| {
                        part.records[*s]
                            .dedup
                            .as_ref()
                            .is_some_and(|d| d.ids.is_some())
                    })
                    .copied()
            });
            (part.head.chain, starts, end, unfinished, floor)
        };
        if starts.len() <= self.keep {
            return Ok(());
        }
        let mut low = starts[starts.len() - self.keep];
        if let Some(floor) = floor {
            // The first record at or after the floor.
            let kept = starts.iter().find(|s| **s >= floor).copied().unwrap_or(end);
            low = low.min(kept);
        }
        if low <= starts[0] {
            return Ok(());
        }
        let dir = self.dir(partition);
        let marker = serde_json::json!({ "low": low, "at": now_rfc3339(), "writer": self.writer });
        // The mark is durable before anything below it goes.
        self.wh.write(
            &format!("{dir}/c{seq:06}-{low:020}.low"),
            Bytes::from(marker.to_string()),
        )?;
        if let Some(p) = self.parts().get_mut(&partition) {
            p.low = p.low.max(low);
            p.records.retain(|s, _| *s >= low);
        }
        let listing = self.listing(partition)?;
        let mut deleted = 0;
        for (name, n) in &listing {
            let stale = match *n {
                Name::Record(c, s) => c < seq || s < low,
                Name::Low(c, pos) => c < seq || pos < low,
                Name::Legacy(_) => true,
                Name::Head(_) | Name::Other => false,
            };
            if stale {
                self.wh.remove(&format!("{dir}/{name}"))?;
                deleted += 1;
                if deleted >= PRUNE_BATCH {
                    break;
                }
            }
        }
        // Deduplication files of pruned records, and of older chains.
        let dedup_dir = self.dedup_dir(partition);
        if deleted < PRUNE_BATCH
            && let Ok(entries) = self.wh.list(&dedup_dir)
        {
            for e in entries.iter().filter(|e| !e.is_dir) {
                let Some((c, start)) = e
                    .name
                    .strip_prefix('c')
                    .and_then(|n| n.split_once('-'))
                    .and_then(|(c, rest)| {
                        let (start, _) = rest.split_once('.')?;
                        Some((c.parse::<u32>().ok()?, start.parse::<i64>().ok()?))
                    })
                else {
                    continue;
                };
                if c < seq || (c == seq && start < low) {
                    self.wh.remove(&format!("{dedup_dir}/{}", e.name))?;
                    deleted += 1;
                    if deleted >= PRUNE_BATCH {
                        break;
                    }
                }
            }
        }
        tracing::debug!(partition, low, deleted, "pruned commit records");
        let keep: Vec<&str> = unfinished.iter().map(String::as_str).collect();
        self.sweep(partition, seq, end, &keep);
        Ok(())
    }

    /// The linked records of `partition`'s current chain as this writer
    /// knows them (for tests and tools).
    pub fn linked(&self, partition: i32) -> Vec<CommitRecord> {
        let parts = self.parts();
        let Some(part) = parts.get(&partition) else {
            return Vec::new();
        };
        part.walk()
            .0
            .iter()
            .map(|s| part.records[s].clone())
            .collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(table: &str, path: &str) -> PendingFile {
        PendingFile {
            table: table.into(),
            path: path.into(),
            rows: 1,
            data: Bytes::from_static(b"PAR1"),
        }
    }

    fn view(id: &str, earliest: i64, end: i64) -> SourceView {
        SourceView {
            id: id.into(),
            earliest,
            end,
        }
    }

    fn never() -> bool {
        false
    }

    fn warehouse() -> (tempfile::TempDir, Arc<Warehouse>) {
        let dir = tempfile::tempdir().unwrap();
        let wh = Arc::new(Warehouse::open(dir.path().to_str().unwrap()).unwrap());
        (dir, wh)
    }

    fn resume(chain: i64) -> Resume {
        Resume {
            chain,
            source: chain,
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("00000000000000004096.json"), Name::Legacy(4096));
        assert_eq!(
            parse_name("c000002-00000000000000004096.json"),
            Name::Record(2, 4096)
        );
        assert_eq!(parse_name("c000002.chain"), Name::Head(2));
        assert_eq!(
            parse_name("c000002-00000000000000000007.low"),
            Name::Low(2, 7)
        );
        for other in [
            ".c000002-00000000000000004096.abc",
            "x.json",
            "c2-5.json",
            "c000002.low",
        ] {
            assert_eq!(parse_name(other), Name::Other, "{other}");
        }
    }

    #[test]
    fn chain_fences_and_recovers() {
        let (_dir, wh) = warehouse();
        let opts = TakeOptions::default();
        let src = view("log:a", 0, 100);
        let a = Commits::new(wh.clone(), "events", "a", 64);
        let b = Commits::new(wh.clone(), "events", "b", 64);
        assert_eq!(a.take(3, &src, &opts).unwrap(), resume(0));
        assert_eq!(b.take(3, &src, &opts).unwrap(), resume(0));
        let (o, _) = a
            .commit(3, 0, 10, &[file("t", "t/dt=x/f0.parquet")], &never)
            .unwrap();
        assert_eq!(o, CommitOutcome::Committed);
        // b still believes the partition starts at 0: fenced, nothing visible.
        let (o, rec) = b
            .commit(3, 0, 7, &[file("t", "t/dt=x/g0.parquet")], &never)
            .unwrap();
        assert_eq!(o, CommitOutcome::Fenced);
        assert!(!wh.exists(&rec.files[0].tmp).unwrap());
        assert!(!wh.exists("t/dt=x/g0.parquet").unwrap());
        assert_eq!(b.take(3, &src, &opts).unwrap(), resume(10));
        assert!(wh.exists("t/dt=x/f0.parquet").unwrap());
        // An interrupted commit: the record exists, the move did not happen.
        let (o, rec) = b
            .commit(3, 10, 20, &[file("t", "t/dt=x/g1.parquet")], &never)
            .unwrap();
        assert_eq!(o, CommitOutcome::Committed);
        wh.rename(&rec.files[0].path, &rec.files[0].tmp).unwrap();
        let c = Commits::new(wh.clone(), "events", "c", 64);
        assert_eq!(c.take(3, &src, &opts).unwrap(), resume(20));
        assert!(wh.exists("t/dt=x/g1.parquet").unwrap());
        assert_eq!(c.linked(3).len(), 2);
        assert_eq!(c.take(4, &src, &opts).unwrap(), resume(0));
    }

    #[test]
    fn pruning_keeps_a_bounded_chain_per_partition_and_a_pruned_start_never_counts() {
        let (_dir, wh) = warehouse();
        let opts = TakeOptions::default();
        let src = view("kafka:c/t", 0, 1_000_000);
        let a = Commits::new(wh.clone(), "events", "a", 4);
        let zombie = Commits::new(wh.clone(), "events", "z", 4);
        for p in 0..4 {
            a.take(p, &src, &opts).unwrap();
        }
        assert_eq!(zombie.take(2, &src, &opts).unwrap(), resume(0));
        for i in 0..40i64 {
            for p in 0..4 {
                let f = file("t", &format!("t/dt=x/{p}-{i}.parquet"));
                let (o, _) = a.commit(p, i * 10, i * 10 + 10, &[f], &never).unwrap();
                assert_eq!(o, CommitOutcome::Committed);
            }
        }
        for p in 0..4 {
            let records = wh
                .list(&format!("{META_DIR}/commits/events/{p}"))
                .unwrap()
                .into_iter()
                .filter(|e| e.name.ends_with(".json"))
                .count();
            assert!(
                (4..=5).contains(&records),
                "partition {p}: {records} records"
            );
        }
        // The zombie still believes partition 2 starts at 0, whose record is
        // pruned: its publish succeeds but does not link.
        let (o, rec) = zombie
            .commit(2, 0, 10, &[file("t", "t/dt=x/2-0.parquet")], &never)
            .unwrap();
        assert_eq!(o, CommitOutcome::Fenced);
        assert!(
            !wh.exists(&format!(
                "{META_DIR}/commits/events/2/c000001-{:020}.json",
                0
            ))
            .unwrap()
        );
        assert!(!wh.exists(&rec.files[0].tmp).unwrap());
        // The committed file of that range was not replaced.
        assert_eq!(wh.read("t/dt=x/2-0.parquet").unwrap(), b"PAR1");
        let fresh = Commits::new(wh.clone(), "events", "f", 4);
        assert_eq!(fresh.take(2, &src, &opts).unwrap(), resume(400));
    }

    #[test]
    fn identity_end_and_gaps_refuse_unless_asked() {
        let (_dir, wh) = warehouse();
        let opts = TakeOptions::default();
        let a = Commits::new(wh.clone(), "log", "a", 64);
        a.take(0, &view("log:old", 0, 100), &opts).unwrap();
        a.commit(0, 0, 100, &[file("t", "t/dt=x/a.parquet")], &never)
            .unwrap();
        let refused = |r: Result<Resume, CommitError>| match r {
            Err(CommitError::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let why = refused(a.take(0, &view("log:new", 0, 0), &opts));
        assert!(why.contains("log:old") && why.contains("log:new"), "{why}");
        assert!(why.contains("--new-chain-from log:old"), "{why}");
        let why = refused(a.take(0, &view("log:old", 0, 50), &opts));
        assert!(why.contains("beyond the end"), "{why}");
        let why = refused(a.take(0, &view("log:old", 130, 200), &opts));
        assert!(why.contains("records 100..130 are gone"), "{why}");
        let gaps = TakeOptions {
            accept_gaps: true,
            ..Default::default()
        };
        assert_eq!(
            a.take(0, &view("log:old", 130, 200), &gaps).unwrap(),
            Resume {
                chain: 100,
                source: 130
            }
        );
        // A new chain, deliberately: the new source from its start, names
        // that cannot collide with the old chain's.
        let new = TakeOptions {
            new_chain_from: Some("log:old".into()),
            ..Default::default()
        };
        assert_eq!(a.take(0, &view("log:new", 0, 5), &new).unwrap(), resume(0));
        a.commit(0, 0, 5, &[file("t", "t/dt=x/b.parquet")], &never)
            .unwrap();
        // The old identity no longer matches anything.
        assert_eq!(a.take(0, &view("log:new", 0, 5), &new).unwrap(), resume(5));
    }

    #[test]
    fn legacy_chains_are_adopted_once() {
        let (_dir, wh) = warehouse();
        for (s, e) in [(0, 10), (10, 25)] {
            let r = CommitRecord {
                source: "events".into(),
                partition: 1,
                chain: 0,
                source_id: None,
                start: s,
                end: e,
                writer: "old".into(),
                nonce: String::new(),
                committed_at: now_rfc3339(),
                files: vec![],
                dedup: None,
            };
            wh.write(
                &format!("{META_DIR}/commits/events/1/{s:020}.json"),
                Bytes::from(serde_json::to_vec(&r).unwrap()),
            )
            .unwrap();
        }
        let a = Commits::new(wh.clone(), "events", "a", 64);
        let src = view("kafka:c/t", 0, 100);
        assert_eq!(
            a.take(1, &src, &TakeOptions::default()).unwrap(),
            resume(25)
        );
        let head: ChainHead = a
            .read_json(&format!("{META_DIR}/commits/events/1/c000001.chain"))
            .unwrap();
        assert_eq!((head.start, head.source_id.as_str()), (25, "kafka:c/t"));
        assert!(head.reason.contains("adopted"));
    }

    #[test]
    fn unknown_publish_outcomes_are_resolved_by_reading_back() {
        let (_dir, wh) = warehouse();
        let a = Commits::new(wh.clone(), "events", "a", 64);
        let src = view("kafka:c/t", 0, 100);
        a.take(0, &src, &TakeOptions::default()).unwrap();
        let (o, rec) = a
            .commit(0, 0, 10, &[file("t", "t/dt=x/a.parquet")], &never)
            .unwrap();
        assert_eq!(o, CommitOutcome::Committed);
        let target = a.record_path(0, 1, 0);
        let tmp = format!("{}/.tmp", a.dir(0));
        // Ours already (a retried publish that found its own record).
        wh.write(&tmp, Bytes::from_static(b"{}")).unwrap();
        assert!(matches!(
            a.resolve(&target, &tmp, &rec.nonce, &never).unwrap(),
            Published::Ours
        ));
        // Another writer's: our temporary is removed, so ours never lands.
        assert!(matches!(
            a.resolve(&target, &tmp, "other", &never).unwrap(),
            Published::Theirs
        ));
        assert!(!wh.exists(&tmp).unwrap());
        // Not there at all.
        wh.write(&tmp, Bytes::from_static(b"{}")).unwrap();
        assert!(matches!(
            a.resolve(&a.record_path(0, 1, 10), &tmp, "x", &never)
                .unwrap(),
            Published::No
        ));
        assert!(!wh.exists(&tmp).unwrap());
    }

    #[test]
    fn orphans_below_the_chain_end_are_collected_others_stay() {
        let (_dir, wh) = warehouse();
        let a = Commits::new(wh.clone(), "events", "a", 64);
        let src = view("kafka:c/t", 0, 100);
        a.take(0, &src, &TakeOptions::default()).unwrap();
        a.commit(0, 0, 10, &[file("t", "t/dt=x/a.parquet")], &never)
            .unwrap();
        let dir = format!("{META_DIR}/inflight/events/0");
        let crashed = format!("{dir}/c000001-{:020}-n1-0.parquet", 0);
        let live = format!("{dir}/c000001-{:020}-n2-0.parquet", 10);
        let legacy_young = format!("{META_DIR}/inflight/n3-0.parquet");
        for f in [&crashed, &live, &legacy_young] {
            wh.write(f, Bytes::from_static(b"PAR1")).unwrap();
        }
        let b = Commits::new(wh.clone(), "events", "b", 64);
        assert_eq!(
            b.take(0, &src, &TakeOptions::default()).unwrap(),
            resume(10)
        );
        assert!(!wh.exists(&crashed).unwrap());
        assert!(wh.exists(&live).unwrap());
        assert!(wh.exists(&legacy_young).unwrap());
    }
}
