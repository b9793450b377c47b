//! The embedded log: a durable, ordered, single-partition log in
//! `<data-dir>/log/` for running without Kafka. Built on redb (ACID,
//! fsync on commit). Appends go through one committer thread that takes
//! everything queued, writes it in one transaction and commits once (group
//! commit); each append's future resolves after the commit that covers it.
//! Offsets start at 0 and never repeat; [`EmbeddedLog::truncate_below`]
//! drops what the writer has committed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{Position, PublishError, Transport};

/// offset -> [key length: u32 LE][key][payload]
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");

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
    db: Arc<Database>,
    queue: mpsc::SyncSender<Append>,
    /// Next offset to be assigned (one past the last committed record).
    end: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir` and starts its committer thread.
    pub fn open(dir: &Path) -> Result<Arc<Self>, LogError> {
        let path = dir.join("events.redb");
        let storage = |e: &dyn std::fmt::Display| LogError::Storage {
            path: path.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| storage(&e))?;
        let db = Database::create(&path).map_err(|e| storage(&e))?;
        let end = {
            let tx = db.begin_write().map_err(|e| storage(&e))?;
            let last = {
                let table = tx.open_table(RECORDS).map_err(|e| storage(&e))?;
                let last = table.last().map_err(|e| storage(&e))?;
                last.map(|(k, _)| k.value() + 1).unwrap_or(0)
            };
            tx.commit().map_err(|e| storage(&e))?;
            last
        };
        let db = Arc::new(db);
        let (queue, pending) = mpsc::sync_channel(QUEUE_CAPACITY);
        let end = Arc::new(AtomicU64::new(end));
        let failed = Arc::new(AtomicBool::new(false));
        let committer = Committer {
            db: db.clone(),
            end: end.clone(),
            failed: failed.clone(),
        };
        std::thread::Builder::new()
            .name("log-committer".into())
            .spawn(move || committer.run(pending))
            .map_err(|e| storage(&e))?;
        Ok(Arc::new(EmbeddedLog {
            path,
            db,
            queue,
            end,
            failed,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One past the last committed offset.
    pub fn end_offset(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Appends one record; resolves with its offset once committed.
    pub async fn append(&self, key: &[u8], payload: &[u8]) -> Result<u64, PublishError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(PublishError::TooLarge(payload.len()));
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

    /// Up to `max` records from `from` on, in offset order.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<Record>, LogError> {
        let storage = |e: &dyn std::fmt::Display| LogError::Storage {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let tx = self.db.begin_read().map_err(|e| storage(&e))?;
        let table = tx.open_table(RECORDS).map_err(|e| storage(&e))?;
        let mut out = Vec::with_capacity(max.min(4096));
        for entry in table.range(from..).map_err(|e| storage(&e))?.take(max) {
            let (k, v) = entry.map_err(|e| storage(&e))?;
            let bytes = v.value();
            let key_len = bytes
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .unwrap_or(0);
            let key_end = (4 + key_len).min(bytes.len());
            out.push(Record {
                offset: k.value(),
                key: bytes[4.min(bytes.len())..key_end].to_vec(),
                payload: bytes[key_end..].to_vec(),
            });
        }
        Ok(out)
    }

    /// Drops every record below `offset` (the writer committed them). The
    /// last record is always kept, so offsets continue after a restart.
    pub fn truncate_below(&self, offset: u64) -> Result<(), LogError> {
        let storage = |e: &dyn std::fmt::Display| LogError::Storage {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let keep_from = offset.min(self.end_offset().saturating_sub(1));
        let tx = self.db.begin_write().map_err(|e| storage(&e))?;
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| storage(&e))?;
            table
                .retain_in(..keep_from, |_, _| false)
                .map_err(|e| storage(&e))?;
        }
        tx.commit().map_err(|e| storage(&e))
    }
}

impl Transport for Arc<EmbeddedLog> {
    async fn publish(&self, key: &[u8], payload: Vec<u8>) -> Result<Position, PublishError> {
        let offset = self.append(key, &payload).await?;
        Ok(Position {
            partition: 0,
            offset: offset as i64,
        })
    }

    async fn healthy(&self) -> bool {
        !self.failed.load(Ordering::Relaxed)
    }

    async fn flush(&self, _timeout: Duration) {
        // Every acknowledged append is already committed.
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}

struct Committer {
    db: Arc<Database>,
    end: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
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
            let first_offset = self.end.load(Ordering::Acquire);
            match self.commit(first_offset, &group) {
                Ok(()) => {
                    self.end
                        .store(first_offset + group.len() as u64, Ordering::Release);
                    self.failed.store(false, Ordering::Relaxed);
                    for (i, a) in group.drain(..).enumerate() {
                        let _ = a.done.send(Ok(first_offset + i as u64));
                    }
                }
                Err(e) => {
                    tracing::error!("embedded log commit failed: {e}");
                    self.failed.store(true, Ordering::Relaxed);
                    for a in group.drain(..) {
                        let _ = a.done.send(Err(format!("commit failed: {e}")));
                    }
                }
            }
        }
    }

    fn commit(&self, first: u64, group: &[Append]) -> Result<(), redb::Error> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(RECORDS)?;
            for (i, a) in group.iter().enumerate() {
                table.insert(first + i as u64, a.record.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
