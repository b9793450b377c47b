//! The latest rejections by reason, each with a sample record, for the
//! status page. Bounded: at most [`MAX_REASONS`] reasons (the least recent
//! goes first), reasons cut at [`MAX_REASON_BYTES`], event types at
//! [`MAX_EVENT_TYPE_BYTES`], samples at
//! [`MAX_SAMPLE_BYTES`]. The router hands over a chunk's worth at once (at
//! most [`PER_CHUNK`] distinct reasons), so the lock is taken once per
//! chunk that has rejections, never per event.

use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

pub const MAX_REASONS: usize = 32;
pub const MAX_REASON_BYTES: usize = 256;
pub const MAX_SAMPLE_BYTES: usize = 512;
/// An event type a refused request named (`/events/{type}`) is cut here.
pub const MAX_EVENT_TYPE_BYTES: usize = 64;
/// Distinct reasons one chunk reports; further ones are counted in
/// `eventsift_writer_rejected_total` only.
pub const PER_CHUNK: usize = 8;

/// One reason's latest sample.
#[derive(Debug, Clone)]
pub struct Entry {
    pub stage: &'static str,
    pub reason: String,
    /// Rejections with this reason since the daemon started (as far as
    /// the entry was kept).
    pub count: u64,
    pub last_at: SystemTime,
    pub event_type: Option<String>,
    /// Where the record is in the source (none for the API's refusals).
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// The record (the envelope as it came), cut to [`MAX_SAMPLE_BYTES`].
    pub sample: String,
}

/// A chunk's rejections, gathered by the router.
#[derive(Debug, Default)]
pub struct ChunkSamples {
    entries: Vec<Entry>,
}

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl ChunkSamples {
    /// Counts one rejection, keeping its record when its reason is new to
    /// this chunk.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        stage: &'static str,
        reason: &str,
        event_type: Option<&str>,
        raw: &[u8],
        partition: i32,
        offset: i64,
    ) {
        let reason = if reason.len() > MAX_REASON_BYTES {
            std::borrow::Cow::Owned(cut(reason, MAX_REASON_BYTES))
        } else {
            std::borrow::Cow::Borrowed(reason)
        };
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.stage == stage && e.reason == *reason)
        {
            e.count += 1;
            return;
        }
        if self.entries.len() >= PER_CHUNK {
            return;
        }
        let raw = &raw[..raw.len().min(MAX_SAMPLE_BYTES + 4)];
        self.entries.push(Entry {
            stage,
            reason: reason.into_owned(),
            count: 1,
            last_at: SystemTime::now(),
            event_type: event_type.map(str::to_owned),
            partition: Some(partition),
            offset: Some(offset),
            sample: cut(&String::from_utf8_lossy(raw), MAX_SAMPLE_BYTES),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The process's latest rejections.
#[derive(Debug, Default)]
pub struct Recent {
    entries: Mutex<Vec<Entry>>,
}

/// The process-wide store the router fills and the status page reads.
pub fn global() -> &'static Recent {
    static RECENT: OnceLock<Recent> = OnceLock::new();
    RECENT.get_or_init(Recent::default)
}

impl Recent {
    /// Notes one request the API refused (`stage` is the refusal's metric
    /// reason, `sample` makes the request's line, called only for a reason
    /// not listed yet). Skipped when another thread holds the lock: a flood
    /// of bad requests never queues on it.
    pub fn note_refusal(
        &self,
        stage: &'static str,
        reason: &str,
        event_type: Option<&str>,
        sample: impl FnOnce() -> String,
    ) {
        let Ok(mut entries) = self.entries.try_lock() else {
            return;
        };
        let reason = if reason.len() > MAX_REASON_BYTES {
            std::borrow::Cow::Owned(cut(reason, MAX_REASON_BYTES))
        } else {
            std::borrow::Cow::Borrowed(reason)
        };
        let entry = match entries
            .iter()
            .position(|e| e.stage == stage && e.reason == *reason)
        {
            Some(i) => {
                let mut e = entries.remove(i);
                e.count += 1;
                e.last_at = SystemTime::now();
                e
            }
            None => {
                if entries.len() >= MAX_REASONS {
                    entries.remove(0);
                }
                Entry {
                    stage,
                    reason: reason.into_owned(),
                    count: 1,
                    last_at: SystemTime::now(),
                    // Named by the caller on `/events/{type}`: cut.
                    event_type: event_type.map(|t| cut(t, MAX_EVENT_TYPE_BYTES)),
                    partition: None,
                    offset: None,
                    sample: cut(&sample(), MAX_SAMPLE_BYTES),
                }
            }
        };
        entries.push(entry);
    }

    /// Merges a chunk's rejections.
    pub fn record(&self, chunk: ChunkSamples) {
        if chunk.entries.is_empty() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for new in chunk.entries {
            match entries
                .iter()
                .position(|e| e.stage == new.stage && e.reason == new.reason)
            {
                Some(i) => {
                    let mut e = entries.remove(i);
                    e.count += new.count;
                    e.last_at = new.last_at;
                    e.event_type = new.event_type;
                    e.partition = new.partition;
                    e.offset = new.offset;
                    e.sample = new.sample;
                    entries.push(e);
                }
                None => {
                    if entries.len() >= MAX_REASONS {
                        entries.remove(0);
                    }
                    entries.push(new);
                }
            }
        }
    }

    /// The entries, most recent first.
    pub fn list(&self) -> Vec<Entry> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_counted_and_kept_newest_first() {
        let recent = Recent::default();
        for round in 0..3 {
            let mut chunk = ChunkSamples::default();
            for i in 0..20 {
                chunk.add(
                    "plugin",
                    &format!("reason {round}-{i}"),
                    Some("t"),
                    b"{}",
                    0,
                    i,
                );
                chunk.add(
                    "plugin",
                    &format!("reason {round}-{i}"),
                    Some("t"),
                    b"{}",
                    0,
                    i,
                );
            }
            recent.record(chunk);
        }
        let list = recent.list();
        assert_eq!(list.len(), 3 * PER_CHUNK);
        assert_eq!(list[0].reason, format!("reason 2-{}", PER_CHUNK - 1));
        assert!(list.iter().all(|e| e.count == 2));
        let mut chunk = ChunkSamples::default();
        for i in 0..40 {
            let mut c = ChunkSamples::default();
            c.add("decode", &format!("r{i}"), None, &[b'x'; 4096], 1, i);
            recent.record(c);
        }
        chunk.add("decode", &"é".repeat(400), None, b"", 0, 0);
        recent.record(chunk);
        let list = recent.list();
        assert_eq!(list.len(), MAX_REASONS);
        assert!(list[0].reason.len() <= MAX_REASON_BYTES + '…'.len_utf8());
        assert!(list[1].sample.len() <= MAX_SAMPLE_BYTES + '…'.len_utf8());
    }

    #[test]
    fn api_refusals_are_counted_by_reason_with_the_first_request_as_sample() {
        let recent = Recent::default();
        recent.note_refusal("validation", "bad quantity", Some("a"), || {
            "POST /a/x".into()
        });
        recent.note_refusal("validation", "bad quantity", Some("a"), || {
            unreachable!("a listed reason does not build its sample again")
        });
        let long = "r".repeat(MAX_REASON_BYTES + 10);
        recent.note_refusal("validation", &long, Some(&long), || "y".repeat(4096));
        recent.note_refusal("validation", &long, None, || unreachable!());
        let list = recent.list();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].count, list[1].count), (2, 2));
        assert_eq!(list[1].sample, "POST /a/x");
        assert_eq!(list[1].partition, None);
        assert_eq!(list[1].event_type.as_deref(), Some("a"));
        assert!(
            list[0].event_type.as_ref().unwrap().len() <= MAX_EVENT_TYPE_BYTES + '…'.len_utf8()
        );
        assert!(list[0].reason.len() <= MAX_REASON_BYTES + '…'.len_utf8());
        assert!(list[0].sample.len() <= MAX_SAMPLE_BYTES + '…'.len_utf8());
        for i in 0..100 {
            recent.note_refusal("no_route", &format!("r{i}"), None, || "GET /".into());
        }
        assert_eq!(recent.list().len(), MAX_REASONS);
    }
}
