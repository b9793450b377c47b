//! The commit protocol: how files become visible exactly once, and where a
//! writer resumes. See `ARCHITECTURE.md` ("Writer commit protocol").
//!
//! Per source partition, commits form a chain of position ranges
//! `[start, end)`, each `start` the `end` of the one before. A commit:
//!
//! 1. writes every file under `_eventsift/inflight/` (a name readers ignore);
//! 2. writes the record (JSON: range, files, writer) to a hidden temporary
//!    name, then **publishes** it to `_eventsift/commits/<source>/<partition>/<start>.json`
//!    with a rename that fails if the name exists. This is the commit point;
//!    the exclusive name is also the fence: two writers that both believe they
//!    own a partition race for the same name and exactly one wins;
//! 3. renames each file to its final name under `<table>/dt=<date>/`.
//!
//! A writer taking a partition ([`Commits::recover`]) reads its records,
//! finishes the renames of any record a crash interrupted, and resumes at
//! the highest `end`. The loser of a fence drops its buffered rows and
//! recovers, so it resumes after the winner's range.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::warehouse::{Warehouse, WarehouseError};

/// Folder of the protocol's own files (ignored by query engines: leading `_`).
pub const META_DIR: &str = "_eventsift";
/// How many records are kept per partition; older ones are pruned.
const KEEP_RECORDS: usize = 64;

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
    /// First position covered.
    pub start: i64,
    /// Position after the last one covered: where the next commit starts.
    pub end: i64,
    pub writer: String,
    /// RFC 3339.
    pub committed_at: String,
    pub files: Vec<CommittedFile>,
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
    /// Another writer committed from the same start: this one is fenced
    /// and must recover the partition.
    Fenced,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("commit record {path} is unreadable: {message}")]
    BadRecord { path: String, message: String },
}

/// Crash-testing hooks: `EVENTSIFT_FAILPOINT=after_tmp|after_record|after_rename`
/// (optionally `name@N` for the N-th time) aborts the process at that step.
#[derive(Debug)]
struct Failpoint {
    name: String,
    countdown: Mutex<u32>,
}

impl Failpoint {
    fn from_env() -> Option<Failpoint> {
        let spec = std::env::var("EVENTSIFT_FAILPOINT").ok()?;
        let (name, n) = match spec.split_once('@') {
            Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        tracing::warn!("failpoint {name} armed (the process aborts there, time {n})");
        Some(Failpoint {
            name,
            countdown: Mutex::new(n),
        })
    }

    fn hit(fp: &Option<Failpoint>, at: &str) {
        let Some(fp) = fp else { return };
        if fp.name != at {
            return;
        }
        let mut left = fp.countdown.lock().unwrap_or_else(|p| p.into_inner());
        *left = left.saturating_sub(1);
        if *left == 0 {
            eprintln!("failpoint {at}: aborting");
            std::process::abort();
        }
    }
}

/// The commit records of one source (a Kafka topic, or the embedded log).
pub struct Commits {
    wh: Arc<Warehouse>,
    source: String,
    writer: String,
    failpoint: Option<Failpoint>,
    /// Records known to have all their files renamed.
    complete: Mutex<HashSet<(i32, i64)>>,
}

impl Commits {
    pub fn new(wh: Arc<Warehouse>, source: &str, writer: &str) -> Self {
        Commits {
            wh,
            source: source.to_owned(),
            writer: writer.to_owned(),
            failpoint: Failpoint::from_env(),
            complete: Mutex::new(HashSet::new()),
        }
    }

    fn dir(&self, partition: i32) -> String {
        format!("{META_DIR}/commits/{}/{partition}", self.source)
    }

    fn record_path(&self, partition: i32, start: i64) -> String {
        format!("{}/{start:020}.json", self.dir(partition))
    }

    /// The records of `partition`, oldest first.
    pub fn records(&self, partition: i32) -> Result<Vec<CommitRecord>, CommitError> {
        let dir = self.dir(partition);
        let mut out = Vec::new();
        for e in self.wh.list(&dir)? {
            if e.is_dir || !e.name.ends_with(".json") || e.name.starts_with('.') {
                continue;
            }
            let path = format!("{dir}/{}", e.name);
            let bytes = self.wh.read(&path)?;
            let record: CommitRecord =
                serde_json::from_slice(&bytes).map_err(|e| CommitError::BadRecord {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            out.push(record);
        }
        out.sort_by_key(|r| r.start);
        Ok(out)
    }

    /// Takes over `partition`: finishes any interrupted commit and returns
    /// the position to resume from (0 when nothing was committed).
    pub fn recover(&self, partition: i32) -> Result<i64, CommitError> {
        let records = self.records(partition)?;
        for r in &records {
            self.finish(r)?;
        }
        Ok(records.iter().map(|r| r.end).max().unwrap_or(0))
    }

    /// Renames the files of `record` that are still in progress.
    fn finish(&self, record: &CommitRecord) -> Result<(), CommitError> {
        let key = (record.partition, record.start);
        if self
            .complete
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        for f in &record.files {
            if self.wh.exists(&f.tmp)? {
                tracing::info!(file = %f.path, "finishing an interrupted commit");
                self.wh.rename(&f.tmp, &f.path)?;
            } else if !self.wh.exists(&f.path)? {
                tracing::error!(
                    file = %f.path,
                    "a committed file is missing (deleted by hand?)"
                );
            }
        }
        self.complete
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        Ok(())
    }

    /// Commits `files` as the range `[start, end)` of `partition`.
    pub fn commit(
        &self,
        partition: i32,
        start: i64,
        end: i64,
        files: &[PendingFile],
    ) -> Result<(CommitOutcome, CommitRecord), CommitError> {
        let nonce = uuid::Uuid::now_v7().simple().to_string();
        let mut committed = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let tmp = format!("{META_DIR}/inflight/{nonce}-{i}.parquet");
            let bytes = f.data.len() as u64;
            self.wh.write(&tmp, f.data.clone())?;
            committed.push(CommittedFile {
                table: f.table.clone(),
                tmp,
                path: f.path.clone(),
                rows: f.rows,
                bytes,
            });
        }
        Failpoint::hit(&self.failpoint, "after_tmp");

        let record = CommitRecord {
            source: self.source.clone(),
            partition,
            start,
            end,
            writer: self.writer.clone(),
            committed_at: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            files: committed,
        };
        let json = serde_json::to_vec_pretty(&record).expect("a commit record serializes");
        let tmp_record = format!("{}/.{start:020}.{nonce}", self.dir(partition));
        self.wh.write(&tmp_record, Bytes::from(json))?;
        if !self
            .wh
            .publish(&tmp_record, &self.record_path(partition, start))?
        {
            self.wh.remove(&tmp_record)?;
            for f in &record.files {
                self.wh.remove(&f.tmp)?;
            }
            return Ok((CommitOutcome::Fenced, record));
        }
        Failpoint::hit(&self.failpoint, "after_record");

        for f in &record.files {
            self.wh.rename(&f.tmp, &f.path)?;
        }
        self.complete
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((partition, start));
        Failpoint::hit(&self.failpoint, "after_rename");
        Ok((CommitOutcome::Committed, record))
    }

    /// Deletes all but the newest records of `partition` (they are complete:
    /// every record older than this writer's own commit was finished by
    /// [`Commits::recover`] or by its writer).
    pub fn prune(&self, partition: i32) -> Result<(), CommitError> {
        let dir = self.dir(partition);
        let names: Vec<String> = self
            .wh
            .list(&dir)?
            .into_iter()
            .filter(|e| !e.is_dir && e.name.ends_with(".json") && !e.name.starts_with('.'))
            .map(|e| e.name)
            .collect();
        if names.len() > KEEP_RECORDS {
            for name in &names[..names.len() - KEEP_RECORDS] {
                self.wh.remove(&format!("{dir}/{name}"))?;
            }
        }
        Ok(())
    }
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

    #[test]
    fn chain_fences_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let wh = Arc::new(Warehouse::open(dir.path().to_str().unwrap()).unwrap());
        let a = Commits::new(wh.clone(), "events", "a");
        let b = Commits::new(wh.clone(), "events", "b");
        assert_eq!(a.recover(3).unwrap(), 0);
        let (o, _) = a
            .commit(3, 0, 10, &[file("t", "t/dt=x/f0.parquet")])
            .unwrap();
        assert_eq!(o, CommitOutcome::Committed);
        // b still believes the partition starts at 0: fenced, nothing visible.
        let (o, rec) = b
            .commit(3, 0, 7, &[file("t", "t/dt=x/g0.parquet")])
            .unwrap();
        assert_eq!(o, CommitOutcome::Fenced);
        assert!(!wh.exists(&rec.files[0].tmp).unwrap());
        assert!(!wh.exists("t/dt=x/g0.parquet").unwrap());
        assert_eq!(b.recover(3).unwrap(), 10);
        assert!(wh.exists("t/dt=x/f0.parquet").unwrap());
        // An interrupted commit: the record exists, the rename did not happen.
        let (o, rec) = b
            .commit(3, 10, 20, &[file("t", "t/dt=x/g1.parquet")])
            .unwrap();
        assert_eq!(o, CommitOutcome::Committed);
        wh.rename(&rec.files[0].path, &rec.files[0].tmp).unwrap();
        let c = Commits::new(wh.clone(), "events", "c");
        assert_eq!(c.recover(3).unwrap(), 20);
        assert!(wh.exists("t/dt=x/g1.parquet").unwrap());
        assert_eq!(c.records(3).unwrap().len(), 2);
        assert_eq!(c.recover(4).unwrap(), 0);
    }
}
