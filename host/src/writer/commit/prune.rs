//! Pruning: each partition's chain keeps its newest records behind a
//! durable low-water mark, so it stays bounded for years and a pruned start
//! can never count again.

use super::*;

impl Commits {
    /// Keeps the newest `keep` linked records of `partition`: writes a
    /// low-water mark at the oldest kept one, then deletes what lies below
    /// it (older chains' and pre-chain records included, a batch at a time).
    pub fn prune(&self, partition: i32) -> Result<(), CommitError> {
        self.with_part(partition, |part| match part {
            Some(part) => self.prune_locked(partition, part),
            None => Ok(()),
        })
    }

    /// [`Commits::prune`], the partition's lock held.
    pub(super) fn prune_locked(&self, partition: i32, part: &mut Part) -> Result<(), CommitError> {
        let (seq, starts, end, unfinished, floor) = {
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
        #[cfg(test)]
        let planted = self.mutated(Mutation::PruneUnfinished);
        #[cfg(not(test))]
        let planted = false;
        // Nobody finishes a record below the low-water mark: one this
        // process has not seen finished (another writer's, published while
        // its writer may be paused before its moves) is finished first.
        for s in starts.iter().filter(|s| **s < low && !planted) {
            if !part.done.contains(s) {
                let r = part.records[s].clone();
                self.finish(&r)?;
                part.done.insert(*s);
            }
        }
        let dir = self.dir(partition);
        let marker = serde_json::json!({ "low": low, "at": now_rfc3339(), "writer": self.writer });
        // The mark is durable before anything below it goes.
        self.wh.write(
            &format!("{dir}/c{seq:06}-{low:020}.low"),
            Bytes::from(marker.to_string()),
        )?;
        part.low = part.low.max(low);
        part.records.retain(|s, _| *s >= low);
        part.done.retain(|s| *s >= low);
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
        // The files of linked records not seen finished stay: their
        // writers (or whoever takes the partition) move them.
        let mut keep: Vec<&str> = unfinished.iter().map(String::as_str).collect();
        for s in starts.iter().filter(|s| !part.done.contains(s) && !planted) {
            if let Some(r) = part.records.get(s) {
                keep.extend(r.all_files().map(|f| f.tmp.as_str()));
            }
        }
        self.sweep(partition, seq, end, &keep);
        Ok(())
    }
}
