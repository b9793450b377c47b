//! The protocol: one commit of a range. Files in flight, the record
//! published exclusively (the commit point), the link checked from the
//! warehouse, the files moved to their final names.

use std::collections::HashMap;
use std::time::Duration;

use super::hooks::Point;
use super::*;
use crate::faults;

/// Attempts at reading back a publish whose outcome is unknown before the
/// commit gives up ([`CommitError::Unresolved`]): about 10 s with the
/// backoff. A partition's lock is held meanwhile, so a revoke waits at
/// most that long for it.
const RESOLVE_ATTEMPTS: u32 = 8;

/// Whether a published record of ours counts, as the warehouse shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// The walk from the low-water mark reaches it: committed.
    Linked,
    /// No walk can ever reach it (why): it counts for nothing, and its
    /// record and files may go.
    Never(&'static str),
    /// The walk ends before its start: it may link once the chain gets
    /// there, so nothing of it is removed.
    NotYet,
}

impl Commits {
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
    /// Holds the partition's lock throughout.
    pub fn commit_with(
        &self,
        partition: i32,
        start: i64,
        end: i64,
        files: &[PendingFile],
        dedup: &PendingDedup,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(CommitOutcome, CommitRecord), CommitError> {
        self.with_part(partition, |part| {
            let part = part.as_mut().ok_or(CommitError::NotTaken(partition))?;
            self.commit_locked(partition, part, start, end, files, dedup, give_up)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_locked(
        &self,
        partition: i32,
        part: &mut Part,
        start: i64,
        end: i64,
        files: &[PendingFile],
        dedup: &PendingDedup,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(CommitOutcome, CommitRecord), CommitError> {
        // Records whose moves failed earlier are finished first: a table's
        // files (and Delta commits) follow record order.
        while let Some(r) = part.unfinished.first().cloned() {
            self.finish(&r)?;
            part.unfinished.remove(0);
            part.done.insert(r.start);
        }
        let seq = part.head.chain;
        let base = part
            .walk()
            .0
            .last()
            .and_then(|s| part.records[s].dedup.as_ref())
            .and_then(|d| d.base.clone());
        let nonce = self.nonce();
        let mut record = CommitRecord {
            source: self.source.clone(),
            partition,
            chain: seq,
            source_id: Some(part.head.source_id.clone()),
            start,
            end,
            writer: self.writer.clone(),
            nonce: nonce.clone(),
            committed_at: now_rfc3339(),
            files: Vec::with_capacity(files.len()),
            dedup: None,
        };
        if start != part.end {
            // The chain moved (this writer's view is stale): recover.
            return Ok((CommitOutcome::Fenced, record));
        }
        self.write_inflight(&mut record, files, dedup, base)?;
        faults::abort_at("after_tmp");
        faults::stop_at("stop_before_publish");

        let target = self.record_path(partition, seq, start);
        match self.publish_record(&record, &target, give_up)? {
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
        self.hooks.at(Point::Published { partition, start });

        match self.links(partition, part, &record)? {
            Link::Linked => {}
            Link::Never(why) => {
                tracing::warn!(
                    partition,
                    start,
                    "the published record does not link into the chain ({why}): it counts for \
                     nothing and is removed"
                );
                ::metrics::counter!(m::UNLINKED).increment(1);
                // No walk can reach it: nobody counts it or moves its files.
                part.records.remove(&start);
                let _ = self.wh.remove(&target);
                self.remove_files(&record);
                return Ok((CommitOutcome::Fenced, record));
            }
            Link::NotYet => {
                tracing::warn!(
                    partition,
                    start,
                    "the published record lies past the chain's end ({}): it is left for \
                     whoever takes the partition",
                    part.end
                );
                ::metrics::counter!(m::UNLINKED).increment(1);
                return Ok((CommitOutcome::Fenced, record));
            }
        }

        self.hooks.at(Point::Linked { partition, start });

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
        match &finished {
            Ok(()) => {
                part.done.insert(start);
            }
            Err(e) => {
                tracing::warn!(
                    partition,
                    start,
                    "moving committed files (retried later): {e}"
                );
                part.unfinished.push(record.clone());
            }
        }
        if part.walk().0.len() > self.keep.saturating_add(self.keep.div_ceil(4))
            && let Err(e) = self.prune_locked(partition, part)
        {
            tracing::warn!(partition, "pruning commit records (retried later): {e}");
        }
        Ok((CommitOutcome::Committed, record))
    }

    /// Writes `files` and the deduplication state under their in-flight
    /// names, naming them in `record`; a failure removes what was written.
    fn write_inflight(
        &self,
        record: &mut CommitRecord,
        files: &[PendingFile],
        dedup: &PendingDedup,
        base: Option<SnapshotRef>,
    ) -> Result<(), CommitError> {
        let (partition, seq, start) = (record.partition, record.chain, record.start);
        let nonce = record.nonce.clone();
        let inflight = self.inflight_dir(partition);
        for (i, f) in files.iter().enumerate() {
            let tmp = format!("{inflight}/c{seq:06}-{start:020}-{nonce}-{i}.parquet");
            if let Err(e) = self.wh.write(&tmp, f.data.clone()) {
                let _ = self.wh.remove(&tmp);
                self.remove_files(record);
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
        if dedup.is_empty() && base.is_none() {
            return Ok(());
        }
        let dir = self.dedup_dir(partition);
        let mut state = DedupFiles {
            ids: None,
            snapshot: None,
            base,
        };
        let kinds: [(&str, Option<(u64, &Bytes)>); 2] = [
            ("ids", dedup.ids.as_ref().map(|(n, b)| (*n, b))),
            ("snap", dedup.snapshot.as_ref().map(|(_, n, b)| (*n, b))),
        ];
        for (kind, data) in kinds {
            let Some((count, data)) = data else { continue };
            let tmp = format!("{inflight}/c{seq:06}-{start:020}-{nonce}-{kind}.bin");
            if let Err(e) = self.wh.write(&tmp, data.clone()) {
                let _ = self.wh.remove(&tmp);
                record.dedup = Some(state);
                self.remove_files(record);
                return Err(e.into());
            }
            let file = CommittedFile {
                table: String::new(),
                tmp,
                path: format!("{dir}/c{seq:06}-{start:020}.{kind}"),
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
        Ok(())
    }

    /// Writes the record to a hidden name and publishes it at `target`;
    /// an unknown outcome is resolved by reading back.
    fn publish_record(
        &self,
        record: &CommitRecord,
        target: &str,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Published, CommitError> {
        let json = serde_json::to_vec_pretty(record).expect("a commit record serializes");
        let dir = self.dir(record.partition);
        let tmp_record = format!(
            "{dir}/.c{:06}-{:020}.{}",
            record.chain, record.start, record.nonce
        );
        if let Err(e) = self.wh.write(&tmp_record, Bytes::from(json)) {
            let _ = self.wh.remove(&tmp_record);
            self.remove_files(record);
            return Err(e.into());
        }
        let published = if faults::fires("publish_lost") {
            Err(injected("publish_lost", target))
        } else {
            let r = self.wh.publish(&tmp_record, target);
            if faults::fires("publish_ambiguous") {
                Err(injected("publish_ambiguous", target))
            } else {
                r
            }
        };
        match published {
            Ok(true) => Ok(Published::Ours),
            Ok(false) | Err(_) => {
                if let Err(e) = &published {
                    tracing::warn!(
                        partition = record.partition,
                        start = record.start,
                        "the outcome of publishing the commit record is unknown ({e}): \
                         reading it back"
                    );
                }
                let outcome = self.resolve(target, &tmp_record, &record.nonce, give_up)?;
                if published.is_err() {
                    ::metrics::counter!(m::UNKNOWN_OUTCOMES).increment(1);
                    tracing::warn!(
                        partition = record.partition,
                        start = record.start,
                        "unknown publish outcome resolved: {}",
                        match outcome {
                            Published::Ours => "committed",
                            Published::Theirs => "another writer's record",
                            Published::No => "not published",
                        }
                    );
                }
                Ok(outcome)
            }
        }
    }

    /// Resolves a publish whose outcome is unknown: the record at `target`
    /// is ours (same nonce), another's, or absent, and once this returns,
    /// ours can no longer appear (its temporary is gone). Gives up after
    /// [`RESOLVE_ATTEMPTS`] failed reads, or when `give_up` says so: the
    /// attempt is then left to recovery.
    pub(super) fn resolve(
        &self,
        target: &str,
        tmp_record: &str,
        nonce: &str,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Published, CommitError> {
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0;
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
                    failures += 1;
                    if give_up() || failures >= RESOLVE_ATTEMPTS {
                        return Err(CommitError::Unresolved(target.to_owned()));
                    }
                    tracing::warn!("resolving a publish: {e} (retrying)");
                    self.hooks.sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Whether `record` (published, ours) links into its partition's
    /// current chain, decided from a fresh listing of the warehouse (never
    /// from what this process happens to hold). Brings `part` up to date
    /// with the listing, `part.end` included.
    pub(super) fn links(
        &self,
        partition: i32,
        part: &mut Part,
        record: &CommitRecord,
    ) -> Result<Link, CommitError> {
        let listing = self.listing(partition)?;
        let current = listing
            .iter()
            .filter_map(|(_, n)| match n {
                Name::Head(c) => Some(*c),
                _ => None,
            })
            .max();
        match current {
            Some(c) if c == record.chain => {}
            Some(c) if c > record.chain => return Ok(Link::Never("its chain was replaced")),
            _ => return Ok(Link::NotYet),
        }
        // Ours is at its start (the publish was exclusive); the others are
        // read from the warehouse unless known (records never change).
        part.records.insert(record.start, record.clone());
        self.refresh(partition, part, &listing)?;
        if record.start < part.low {
            return Ok(Link::Never("its start was pruned"));
        }
        let (starts, end) = part.walk();
        if starts.contains(&record.start) {
            Ok(Link::Linked)
        } else if record.start < end {
            Ok(Link::Never("its start lies inside a linked range"))
        } else {
            Ok(Link::NotYet)
        }
    }

    /// Removes an attempt's in-flight files (best effort).
    pub(super) fn remove_files(&self, record: &CommitRecord) {
        for f in record.all_files() {
            if let Err(e) = self.wh.remove(&f.tmp) {
                tracing::debug!("removing {}: {e}", f.tmp);
            }
        }
    }
}
