//! Recovery: taking a partition (at startup, a rebalance, or after being
//! fenced) reads its chain from the warehouse, checks it against the
//! source, finishes the records a crash interrupted and collects orphans.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::*;
use crate::writer::warehouse::Moved;

impl Commits {
    /// Takes over `partition`: checks its chain against the source, finishes
    /// any interrupted commit, collects orphans, and returns where to resume.
    /// [`CommitError::Refused`] means the partition must not be started.
    pub fn take(
        &self,
        partition: i32,
        view: &SourceView,
        options: &TakeOptions,
    ) -> Result<Resume, CommitError> {
        self.with_part(partition, |held| {
            *held = None;
            let (part, resume) = self.take_locked(partition, view, options)?;
            *held = Some(part);
            Ok(resume)
        })
    }

    /// [`Commits::take`], the partition's lock held: its state and where
    /// to resume.
    fn take_locked(
        &self,
        partition: i32,
        view: &SourceView,
        options: &TakeOptions,
    ) -> Result<(Part, Resume), CommitError> {
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
            // Every linked record is finished now.
            part.done = part.walk().0.into_iter().collect();
            return Ok((part, Resume { chain: end, source }));
        }
    }

    /// Publishes the head of chain `seq` (a concurrent writer may win: the
    /// caller lists again either way).
    pub(super) fn new_chain(
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
    pub(super) fn load(
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
            done: Default::default(),
        };
        self.refresh(partition, &mut part, listing)?;
        Ok(part)
    }

    /// Brings `part` in line with a listing of its folder: the low-water
    /// mark, and records added (read) or pruned (forgotten).
    pub(super) fn refresh(
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
        let records = &part.records;
        part.done.retain(|s| records.contains_key(s));
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
    pub(super) fn finish_all(&self, partition: i32, part: &Part) -> Result<(), CommitError> {
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
    pub(super) fn inflight(
        &self,
        partition: i32,
    ) -> Result<Vec<(String, Option<Duration>)>, CommitError> {
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
    pub(super) fn sweep(&self, partition: i32, chain: u32, end: i64, keep: &[&str]) {
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
    pub(super) fn finish(&self, record: &CommitRecord) -> Result<(), CommitError> {
        self.finish_known(record, &HashMap::new())
    }

    /// [`Commits::finish`], with the stats and schemas of files still in
    /// memory.
    pub(super) fn finish_known(
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

    pub(super) fn move_files(&self, record: &CommitRecord) -> Result<(), CommitError> {
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
}
