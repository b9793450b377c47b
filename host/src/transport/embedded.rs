//! The embedded log: a durable, ordered, single-partition log in
//! `<data-dir>/log/` for running without Kafka. Built on fjall (an LSM store
//! with a write-ahead journal): measured against redb and SQLite (WAL) for
//! durable group commits, it was the fastest (bench/log-stores, figures in
//! docs/BENCHMARKS.md). Appends go through one committer thread that takes
//! everything queued, writes it as one batch and fsyncs the journal once
//! (group commit); each append's future resolves after the sync that covers
//! it. Offsets start at 0 and never repeat; [`EmbeddedLog::truncate_below`]
//! drops what the writer has committed.
//!
//! Readers see only what is durable: reads stop at the end of the last
//! synced group. A failed sync is fail-stop: that group and every later
//! append fail with the error, and the log accepts nothing more until the
//! process restarts (so offsets are never reused, and nothing a reader saw
//! can vanish). Each log has an id, made when it is created, which the
//! writer's commit chains record: a log replaced by a new one (a data dir
//! removed) is noticed, not taken for the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use tokio::sync::oneshot;

use super::{Position, PublishError, Transport};

/// Partition of the records: offset (u64 big-endian) -> [key length: u32
/// LE][key][payload].
const RECORDS: &str = "records";
/// Partition of the log's own facts (its id).
const META: &str = "meta";

/// Appends waiting for the committer, at most; beyond it publishes fail
/// fast with [`PublishError::QueueFull`].
pub const QUEUE_CAPACITY: usize = 65_536;

/// Most records written in one transaction.
const MAX_GROUP: usize = 8_192;

/// Largest record accepted (the same bound as the Kafka broker's).
pub const MAX_RECORD_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("embedded log at {path}: {message}")]
    Storage { path: PathBuf, message: String },
}

impl LogError {
    fn storage(path: &Path, e: &dyn std::fmt::Display) -> Self {
        LogError::Storage {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

struct Append {
    record: Vec<u8>,
    done: oneshot::Sender<Result<u64, String>>,
}

pub struct EmbeddedLog {
    path: PathBuf,
    id: String,
    keyspace: Keyspace,
    records: PartitionHandle,
    queue: mpsc::SyncSender<Append>,
    /// One past the last durable record: readers see nothing beyond it.
    end: Arc<AtomicU64>,
    /// Set for good by a failed commit (fail-stop), with its reason.
    failed: Arc<std::sync::OnceLock<String>>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir` and starts its committer thread.
    pub fn open(dir: &Path) -> Result<Arc<Self>, LogError> {
        let path = dir.to_path_buf();
        let storage = |e: &dyn std::fmt::Display| LogError::storage(&path, e);
        std::fs::create_dir_all(dir).map_err(|e| storage(&e))?;
        let keyspace = Config::new(dir).open().map_err(|e| storage(&e))?;
        let records = keyspace
            .open_partition(RECORDS, PartitionCreateOptions::default())
            .map_err(|e| storage(&e))?;
        let end = match records.last_key_value().map_err(|e| storage(&e))? {
            Some((k, _)) => offset_of(&k) + 1,
            None => 0,
        };
        let meta = keyspace
            .open_partition(META, PartitionCreateOptions::default())
            .map_err(|e| storage(&e))?;
        let id = match meta.get("id").map_err(|e| storage(&e))? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => {
                let id = uuid::Uuid::now_v7().simple().to_string();
                meta.insert("id", id.as_bytes()).map_err(|e| storage(&e))?;
                keyspace
                    .persist(PersistMode::SyncAll)
                    .map_err(|e| storage(&e))?;
                if end > 0 {
                    tracing::info!(log = %dir.display(), "the embedded log has no id (made before ids): it is log:{id} now");
                }
                id
            }
        };
        let (queue, pending) = mpsc::sync_channel(QUEUE_CAPACITY);
        let end = Arc::new(AtomicU64::new(end));
        let failed = Arc::new(std::sync::OnceLock::new());
        let committer = Committer {
            keyspace: keyspace.clone(),
            records: records.clone(),
            end: end.clone(),
            failed: failed.clone(),
        };
        std::thread::Builder::new()
            .name("log-committer".into())
            .spawn(move || committer.run(pending))
            .map_err(|e| storage(&e))?;
        Ok(Arc::new(EmbeddedLog {
            path,
            id,
            keyspace,
            records,
            queue,
            end,
            failed,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's identity for commit chains: `log:<uuid>`, made when the log
    /// was created.
    pub fn id(&self) -> String {
        format!("log:{}", self.id)
    }

    /// One past the last durable offset.
    pub fn end_offset(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// The first offset still in the log (the end when it is empty).
    pub fn start_offset(&self) -> Result<u64, LogError> {
        match self
            .records
            .first_key_value()
            .map_err(|e| LogError::storage(&self.path, &e))?
        {
            Some((k, _)) => Ok(offset_of(&k).min(self.end_offset())),
            None => Ok(self.end_offset()),
        }
    }

    /// Why the log stopped accepting appends, if it did (a failed sync).
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// Appends one record; resolves with its offset once committed.
    pub async fn append(&self, key: &[u8], payload: &[u8]) -> Result<u64, PublishError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(PublishError::TooLarge(payload.len()));
        }
        if let Some(why) = self.failure() {
            return Err(PublishError::Failed(why.to_owned()));
        }
        let mut record = Vec::with_capacity(4 + key.len() + payload.len());
        record.extend_from_slice(&(key.len() as u32).to_le_bytes());
        record.extend_from_slice(key);
        record.extend_from_slice(payload);
        let (done, committed) = oneshot::channel();
        self.queue
            .try_send(Append { record, done })
            .map_err(|e| match e {
                mpsc::TrySendError::Full(_) => PublishError::QueueFull,
                mpsc::TrySendError::Disconnected(_) => {
                    PublishError::Failed("the log committer stopped".into())
                }
            })?;
        match committed.await {
            Ok(Ok(offset)) => Ok(offset),
            Ok(Err(e)) => Err(PublishError::Failed(e)),
            Err(_) => Err(PublishError::Failed("the log committer stopped".into())),
        }
    }

    /// Up to `max` durable records from `from` on, in offset order.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<Record>, LogError> {
        self.read_bounded(from, max, usize::MAX)
    }

    /// Like [`EmbeddedLog::read`], stopping once `max_bytes` of payload are
    /// read (a larger record comes alone).
    pub fn read_bounded(
        &self,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, LogError> {
        // Only what a sync covered: a group being committed is invisible.
        let end = self.end_offset();
        if from >= end {
            return Ok(Vec::new());
        }
        // Offsets are contiguous, so a bounded range names exactly the
        // records wanted and the tree need not look past them.
        let until = from.saturating_add(max as u64).min(end);
        let out = self.collect(
            self.records.range(from.to_be_bytes()..until.to_be_bytes()),
            max,
            max_bytes,
        )?;
        if out.is_empty() {
            // `from` lies below what truncation kept: read on past the hole.
            return self.collect(
                self.records.range(from.to_be_bytes()..end.to_be_bytes()),
                max,
                max_bytes,
            );
        }
        Ok(out)
    }

    fn collect(
        &self,
        entries: impl Iterator<Item = fjall::Result<fjall::KvPair>>,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, LogError> {
        let mut out = Vec::with_capacity(max.min(4096));
        let mut total = 0usize;
        for entry in entries.take(max) {
            if total >= max_bytes {
                break;
            }
            let (k, v) = entry.map_err(|e| LogError::storage(&self.path, &e))?;
            let value: &[u8] = &v;
            let key_len = value
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .unwrap_or(0);
            let key_end = (4 + key_len).min(value.len());
            total += value.len() - key_end;
            out.push(Record {
                offset: offset_of(&k),
                key: value[4.min(value.len())..key_end].to_vec(),
                payload: value[key_end..].to_vec(),
            });
        }
        Ok(out)
    }

    /// Drops every record below `offset` (the writer committed them). The
    /// last record is always kept, so offsets continue after a restart.
    pub fn truncate_below(&self, offset: u64) -> Result<(), LogError> {
        let storage = |e: &dyn std::fmt::Display| LogError::storage(&self.path, e);
        let keep_from = offset.min(self.end_offset().saturating_sub(1));
        let mut batch = self.keyspace.batch();
        for entry in self.records.range(..keep_from.to_be_bytes()) {
            let (key, _) = entry.map_err(|e| storage(&e))?;
            batch.remove(&self.records, key);
        }
        batch.commit().map_err(|e| storage(&e))?;
        self.keyspace
            .persist(PersistMode::SyncAll)
            .map_err(|e| storage(&e))
    }
}

fn offset_of(key: &[u8]) -> u64 {
    let mut be = [0u8; 8];
    let n = key.len().min(8);
    be[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(be)
}

impl Transport for Arc<EmbeddedLog> {
    async fn publish(&self, key: &[u8], payload: Vec<u8>) -> Result<Position, PublishError> {
        let offset = self.append(key, &payload).await?;
        Ok(Position {
            partition: 0,
            offset: offset as i64,
        })
    }

    async fn publish_many(
        &self,
        records: &[(&[u8], Vec<u8>)],
    ) -> Vec<Result<Position, PublishError>> {
        // Every record queued before the first wait: one group commit.
        futures::future::join_all(records.iter().map(|(key, payload)| async move {
            let offset = self.append(key, payload).await?;
            Ok(Position {
                partition: 0,
                offset: offset as i64,
            })
        }))
        .await
    }

    fn writable(&self) -> bool {
        self.failure().is_none()
    }

    async fn flush(&self, _timeout: Duration) {
        // Every acknowledged append is already committed.
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}

struct Committer {
    keyspace: Keyspace,
    records: PartitionHandle,
    end: Arc<AtomicU64>,
    failed: Arc<std::sync::OnceLock<String>>,
}

impl Committer {
    fn run(self, pending: mpsc::Receiver<Append>) {
        let mut group: Vec<Append> = Vec::with_capacity(MAX_GROUP);
        while let Ok(first) = pending.recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match pending.try_recv() {
                    Ok(a) => group.push(a),
                    Err(_) => break,
                }
            }
            if let Some(why) = self.failed.get() {
                for a in group.drain(..) {
                    let _ = a.done.send(Err(why.clone()));
                }
                continue;
            }
            let first_offset = self.end.load(Ordering::Acquire);
            match self.commit(first_offset, &group) {
                Ok(()) => {
                    self.end
                        .store(first_offset + group.len() as u64, Ordering::Release);
                    for (i, a) in group.drain(..).enumerate() {
                        let _ = a.done.send(Ok(first_offset + i as u64));
                    }
                }
                Err(e) => {
                    let why = format!(
                        "the embedded log failed to sync offsets {first_offset}..{} ({e}); it \
                         acknowledges nothing more until eventsift restarts",
                        first_offset + group.len() as u64
                    );
                    tracing::error!("{why}");
                    let _ = self.failed.set(why.clone());
                    for a in group.drain(..) {
                        let _ = a.done.send(Err(why.clone()));
                    }
                }
            }
        }
    }

    /// Writes the group as one batch and syncs the journal to disk.
    fn commit(&self, first: u64, group: &[Append]) -> Result<(), fjall::Error> {
        let mut batch = self.keyspace.batch();
        for (i, a) in group.iter().enumerate() {
            batch.insert(
                &self.records,
                (first + i as u64).to_be_bytes(),
                a.record.as_slice(),
            );
        }
        batch.commit()?;
        if crate::faults::fires("log_sync") {
            return Err(fjall::Error::Io(std::io::Error::other(
                "failpoint log_sync: injected error",
            )));
        }
        self.keyspace.persist(PersistMode::SyncAll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_truncation_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        {
            let log = EmbeddedLog::open(dir.path()).unwrap();
            for i in 0..10u64 {
                let offset = rt
                    .block_on(log.append(b"user1", format!("event {i}").as_bytes()))
                    .unwrap();
                assert_eq!(offset, i);
            }
            log.truncate_below(5).unwrap();
            let offsets: Vec<u64> = log.read(0, 100).unwrap().iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![5, 6, 7, 8, 9]);
            let r = &log.read(7, 1).unwrap()[0];
            assert_eq!(
                (r.key.as_slice(), r.payload.as_slice()),
                (&b"user1"[..], &b"event 7"[..])
            );
            // A reader below what truncation kept reads on past the hole.
            let offsets: Vec<u64> = log.read(1, 2).unwrap().iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![5, 6]);
            let offsets: Vec<u64> = log.read(6, 2).unwrap().iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![6, 7]);
            assert!(log.read(10, 2).unwrap().is_empty());
            // Truncating past the end keeps the last record: offsets go on.
            log.truncate_below(100).unwrap();
            assert_eq!(log.read(0, 100).unwrap().len(), 1);
        }
        let id = {
            let log = EmbeddedLog::open(dir.path()).unwrap();
            assert_eq!(log.end_offset(), 10);
            assert_eq!(log.start_offset().unwrap(), 9);
            assert_eq!(rt.block_on(log.append(b"k", b"v")).unwrap(), 10);
            log.id()
        };
        // The id stays with the log; a new log gets a new one.
        assert_eq!(EmbeddedLog::open(dir.path()).unwrap().id(), id);
        let other = tempfile::tempdir().unwrap();
        let fresh = EmbeddedLog::open(other.path()).unwrap();
        assert_ne!(fresh.id(), id);
        assert!(fresh.id().starts_with("log:"));
        assert_eq!(fresh.start_offset().unwrap(), 0);
    }

    #[test]
    fn oversized_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let big = vec![0u8; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            rt.block_on(log.append(b"", &big)),
            Err(PublishError::TooLarge(_))
        ));
    }
}
