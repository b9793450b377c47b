//! Durable group commit with each candidate store: append 250-byte records
//! keyed by offset in groups, each group one transaction made durable
//! (fsync) before the next. Prints records/s and commits/s per group size.

use std::time::{Duration, Instant};

const RECORD: usize = 250;
const RUN: Duration = Duration::from_secs(3);

trait Store {
    fn name(&self) -> &'static str;
    fn commit(&mut self, first: u64, records: &[Vec<u8>]);
}

struct Redb(redb::Database);
const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("records");

impl Store for Redb {
    fn name(&self) -> &'static str {
        "redb 4 (Durability::Immediate)"
    }
    fn commit(&mut self, first: u64, records: &[Vec<u8>]) {
        let tx = self.0.begin_write().unwrap();
        {
            let mut t = tx.open_table(T).unwrap();
            for (i, r) in records.iter().enumerate() {
                t.insert(first + i as u64, r.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

struct Sqlite(rusqlite::Connection);

impl Store for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite WAL, synchronous=FULL"
    }
    fn commit(&mut self, first: u64, records: &[Vec<u8>]) {
        let tx = self.0.transaction().unwrap();
        {
            let mut st = tx.prepare_cached("INSERT INTO records(offset, value) VALUES (?1, ?2)").unwrap();
            for (i, r) in records.iter().enumerate() {
                st.execute(rusqlite::params![(first + i as u64) as i64, r]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

struct Fjall(fjall::Keyspace, fjall::PartitionHandle);

impl Store for Fjall {
    fn name(&self) -> &'static str {
        "fjall 2 (PersistMode::SyncAll)"
    }
    fn commit(&mut self, first: u64, records: &[Vec<u8>]) {
        let mut batch = self.0.batch();
        for (i, r) in records.iter().enumerate() {
            batch.insert(&self.1, (first + i as u64).to_be_bytes(), r.as_slice());
        }
        batch.commit().unwrap();
        self.0.persist(fjall::PersistMode::SyncAll).unwrap();
    }
}

fn main() {
    let record = vec![b'x'; RECORD];
    println!("{:<34} {:>6} {:>12} {:>10}", "store", "group", "records/s", "commits/s");
    for group in [1usize, 64, 512] {
        let records = vec![record.clone(); group];
        for make in [make_redb as fn(&std::path::Path) -> Box<dyn Store>, make_sqlite, make_fjall] {
            let dir = tempfile::tempdir().unwrap();
            let mut store = make(dir.path());
            let (mut offset, mut commits) = (0u64, 0u64);
            let started = Instant::now();
            while started.elapsed() < RUN {
                store.commit(offset, &records);
                offset += group as u64;
                commits += 1;
            }
            let secs = started.elapsed().as_secs_f64();
            println!("{:<34} {:>6} {:>12.0} {:>10.0}", store.name(), group, offset as f64 / secs, commits as f64 / secs);
        }
    }
}

fn make_redb(dir: &std::path::Path) -> Box<dyn Store> {
    Box::new(Redb(redb::Database::create(dir.join("log.redb")).unwrap()))
}

fn make_sqlite(dir: &std::path::Path) -> Box<dyn Store> {
    let c = rusqlite::Connection::open(dir.join("log.sqlite")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
         CREATE TABLE records(offset INTEGER PRIMARY KEY, value BLOB NOT NULL);",
    )
    .unwrap();
    Box::new(Sqlite(c))
}

fn make_fjall(dir: &std::path::Path) -> Box<dyn Store> {
    let ks = fjall::Config::new(dir.join("fjall")).open().unwrap();
    let p = ks.open_partition("records", fjall::PartitionCreateOptions::default()).unwrap();
    Box::new(Fjall(ks, p))
}
