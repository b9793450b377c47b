//! Deduplication of retried events, per source partition.
//!
//! An event the client named (a batch item's `event_id`, an
//! `Idempotency-Key`) carries an id derived from game, player and that name
//! (a UUIDv8, [`crate::api::envelope::derived_event_id`]), so a retry, on
//! any API node, carries the same id. The player is the Kafka key, so a
//! retry lands in the same source partition as the original: the writer
//! remembers the derived ids it routed per partition (a [`Window`]) and
//! drops a record whose id it has seen. Events without a client id
//! (UUIDv7) are never compared.
//!
//! **Bounds.** The window keeps ids for `window` (a day) of event time.
//! The writer has one budget of `max_ids` ids and `max_bytes` of memory,
//! split evenly over the partitions it consumes ([`DedupLimits::share`]):
//! when it takes a partition, every window is trimmed to the new share
//! (the oldest ids go, counted), and the window it reads for the new
//! partition is cut to it as it loads. When a bound, not the time, pushes
//! ids out, the metrics and the log say how short the window became. A
//! retry is recognised as long as the original is still in its
//! partition's window: within `window`, and within the newest
//! `max_ids / partitions` ids of that partition.
//!
//! **State next to the commits.** Every commit that routed derived ids
//! carries them in a file of its own (`_eventsift/dedup/<source>/<p>/
//! c<chain>-<start>.ids`), written and published with the commit (the
//! record names it; see [`super::commit`]); every `snapshot_every` commits
//! the whole window goes into a snapshot (`.snap`) the same way, and each
//! record names the newest snapshot at or before it (its *base*). A writer
//! that takes a partition reads the base and the files of the few records
//! after it, in the router thread, never inside the rebalance callback and
//! never from the tables. A range that was not committed leaves nothing
//! behind: its files are orphans the sweep removes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The deduplication bounds of a writer (or, once [`DedupLimits::share`]d,
/// of one of its partitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupLimits {
    /// Event time an id is remembered for.
    pub window: Duration,
    pub max_ids: usize,
    pub max_bytes: usize,
    /// Commits between snapshots.
    pub snapshot_every: usize,
}

impl Default for DedupLimits {
    fn default() -> Self {
        DedupLimits {
            window: Duration::from_secs(86_400),
            max_ids: 4_000_000,
            max_bytes: 256 << 20,
            snapshot_every: 16,
        }
    }
}

impl DedupLimits {
    /// One partition's share when the writer consumes `partitions`.
    pub fn share(&self, partitions: usize) -> DedupLimits {
        let n = partitions.max(1);
        DedupLimits {
            max_ids: (self.max_ids / n).max(1),
            max_bytes: self.max_bytes / n,
            ..*self
        }
    }

    /// The ids a window holds at most and the slots of its id table: the
    /// table is a power of two at most two thirds full, and table (16
    /// bytes a slot) and queue (32 bytes an id) together stay within
    /// `max_bytes`. A quarter of the default budget (a writer of four
    /// partitions) gives 1,000,000 ids in 62.5 MiB.
    pub fn capacity(&self) -> (usize, usize) {
        let want = self.max_ids.max(1);
        let mut slots = (want + want / 2).next_power_of_two().max(16);
        let cap = |slots: usize| want.min(slots / 3 * 2);
        while slots > 16 && slots * 16 + cap(slots) * ENTRY_QUEUE_BYTES > self.max_bytes {
            slots /= 2;
        }
        (cap(slots).max(1), slots)
    }
}

/// Bytes of one queue entry (id, event time, position).
const ENTRY_QUEUE_BYTES: usize = 32;

/// The id of a derived (client-named) event id, if `text` is one.
pub fn derived_id(text: &str) -> Option<u128> {
    if !crate::api::envelope::is_derived(text) {
        return None;
    }
    uuid::Uuid::try_parse(text).ok().map(|u| u.as_u128())
}

/// The window's ids: open addressing with linear probing in a table
/// sized once for the bound (at the first id: no rehashing, which would
/// miss the cache once per id each time) and kept at most two thirds full.
/// Ids are SHA-256 output, so their low bits pick the slot. Slot value 0
/// means empty (the id 0 is kept apart); removal shifts the rest of a
/// probe run back, so there are no tombstones (the window removes every id
/// sooner or later). [`IdTable::prefetch`] lets a chunk's lookups overlap
/// their cache misses.
struct IdTable {
    slots: Vec<u128>,
    size: usize,
    zero: bool,
}

impl IdTable {
    fn new(size: usize) -> Self {
        IdTable {
            slots: Vec::new(),
            size,
            zero: false,
        }
    }

    fn home(&self, id: u128) -> usize {
        ((id as u64) ^ ((id >> 64) as u64)) as usize & (self.slots.len() - 1)
    }

    fn allocated(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u128>()
    }

    /// Hints the CPU to fetch `id`'s slot.
    fn prefetch(&self, id: u128) {
        if self.slots.is_empty() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `home` is within `slots`; prefetching reads nothing.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(self.slots.as_ptr().add(self.home(id)).cast::<i8>());
        }
    }

    /// Inserts `id`; false when it was there.
    fn insert(&mut self, id: u128) -> bool {
        if id == 0 {
            return !std::mem::replace(&mut self.zero, true);
        }
        if self.slots.is_empty() {
            // Zeroed pages: the OS provides them as they are first touched.
            self.slots = vec![0u128; self.size];
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(id);
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = id;
                    return true;
                }
                s if s == id => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn remove(&mut self, id: u128) {
        if id == 0 {
            self.zero = false;
            return;
        }
        if self.slots.is_empty() {
            return;
        }
        let mask = self.slots.len() - 1;
        let mut hole = self.home(id);
        loop {
            match self.slots[hole] {
                0 => return,
                s if s == id => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        // Backward shift: move later ids of the run into the hole when
        // their home is not between the hole and them.
        let mut j = (hole + 1) & mask;
        loop {
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = self.home(s);
            let movable = if hole <= j {
                home <= hole || home > j
            } else {
                home <= hole && home > j
            };
            if movable {
                self.slots[hole] = s;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.slots[hole] = 0;
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u128,
    micros: i64,
    /// Source position (committed entries loaded from files: -1).
    offset: i64,
}

/// Why ids left the window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub by_time: u64,
    pub by_bound: u64,
}

/// The ids remembered for one partition, oldest first.
pub struct Window {
    set: IdTable,
    order: VecDeque<Entry>,
    newest: i64,
    window: i64,
    cap: usize,
    pub evicted: Evicted,
    /// When a bound last cut the window short (for the log, at most every
    /// ten minutes).
    warned: Option<Instant>,
}

impl Window {
    pub fn new(limits: &DedupLimits) -> Self {
        let (cap, slots) = limits.capacity();
        Window {
            set: IdTable::new(slots),
            order: VecDeque::new(),
            newest: i64::MIN,
            window: limits.window.as_micros().min(i64::MAX as u128) as i64,
            cap,
            evicted: Evicted::default(),
            warned: None,
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The memory it holds now (allocated capacity).
    pub fn memory_bytes(&self) -> usize {
        self.order.capacity() * std::mem::size_of::<Entry>() + self.set.allocated()
    }

    /// Event time the window spans now, newest minus oldest.
    pub fn span(&self) -> Duration {
        match self.order.front() {
            Some(e) if self.newest > e.micros => {
                Duration::from_micros((self.newest - e.micros) as u64)
            }
            _ => Duration::ZERO,
        }
    }

    /// Hints that `id` is looked up soon (see [`IdTable::prefetch`]).
    pub fn prefetch(&self, id: u128) {
        self.set.prefetch(id);
    }

    /// Whether `id` was seen; if not, remembers it (event time `micros`,
    /// source position `offset`).
    pub fn seen(&mut self, id: u128, micros: i64, offset: i64) -> bool {
        // One probe of the set (a miss in a large set is a cache miss).
        !self.push(Entry { id, micros, offset })
    }

    /// Remembers `e`; false when its id was remembered already.
    fn push(&mut self, e: Entry) -> bool {
        if !self.set.insert(e.id) {
            return false;
        }
        self.newest = self.newest.max(e.micros);
        self.order.push_back(e);
        self.evict();
        true
    }

    fn evict(&mut self) {
        let horizon = self.newest.saturating_sub(self.window);
        while let Some(front) = self.order.front() {
            let old = front.micros < horizon;
            if !old && self.order.len() <= self.cap {
                break;
            }
            if old {
                self.evicted.by_time += 1;
            } else {
                self.evicted.by_bound += 1;
            }
            let id = front.id;
            self.order.pop_front();
            self.set.remove(id);
        }
    }

    /// When the bound cut the window since the last call and no warning
    /// was logged for ten minutes: the span the window has now.
    pub fn cut_short(&mut self, by_bound_before: u64) -> Option<Duration> {
        if self.evicted.by_bound == by_bound_before {
            return None;
        }
        if self
            .warned
            .is_some_and(|t| t.elapsed() < Duration::from_secs(600))
        {
            return None;
        }
        self.warned = Some(Instant::now());
        Some(self.span())
    }

    /// The ids routed before `upto` (all of them loaded from files), as a
    /// snapshot file.
    pub fn snapshot(&self, upto: i64) -> Bytes {
        let entries: Vec<(u128, i64)> = self
            .order
            .iter()
            .filter(|e| e.offset < upto)
            .map(|e| (e.id, e.micros))
            .collect();
        encode(&entries)
    }

    /// Trims and rebuilds the window for new `limits` (a new share): the
    /// oldest ids beyond its capacity go. How many went.
    pub fn resize(&mut self, limits: &DedupLimits) -> u64 {
        let (cap, slots) = limits.capacity();
        let mut gone = 0u64;
        while self.order.len() > cap {
            if let Some(e) = self.order.pop_front() {
                self.set.remove(e.id);
            }
            gone += 1;
        }
        self.cap = cap;
        // The table is rebuilt only when its size changes (a share that
        // halves or doubles), so a take does not rebuild every window.
        if slots != self.set.size {
            let mut set = IdTable::new(slots);
            for e in &self.order {
                set.insert(e.id);
            }
            self.set = set;
            self.order.shrink_to(cap);
        }
        gone
    }

    /// Adds ids loaded from a commit's files (oldest first).
    pub fn load(&mut self, entries: &[(u128, i64)]) {
        for &(id, micros) in entries {
            self.push(Entry {
                id,
                micros,
                offset: -1,
            });
        }
    }
}

/// A partition's window as its commits left it, and how many commits
/// followed the newest snapshot.
pub struct Loaded {
    pub window: Window,
    pub since_snapshot: usize,
    /// Whether the partition has any deduplication state.
    pub any: bool,
    /// Files named by records but missing under both names.
    pub missing: Vec<String>,
}

/// Reads `partition`'s window from the warehouse: the base snapshot of its
/// newest record, then the ids files of the records after it.
pub fn load(
    commits: &super::commit::Commits,
    partition: i32,
    limits: &DedupLimits,
) -> Result<Loaded, super::warehouse::WarehouseError> {
    let records = commits.linked(partition);
    let mut loaded = Loaded {
        window: Window::new(limits),
        since_snapshot: 0,
        any: false,
        missing: Vec::new(),
    };
    let wh = commits.warehouse();
    let read = |path: &str,
                tmp: &str,
                loaded: &mut Loaded|
     -> Result<(), super::warehouse::WarehouseError> {
        let data = match wh.read_opt(path)? {
            Some(d) => Some(d),
            None => wh.read_opt(tmp)?,
        };
        match data.map(|d| decode(&d)) {
            Some(Ok(entries)) => loaded.window.load(&entries),
            Some(Err(why)) => loaded.missing.push(format!("{path}: {why}")),
            None => loaded.missing.push(format!("{path}: missing")),
        }
        Ok(())
    };
    let base = records
        .last()
        .and_then(|r| r.dedup.as_ref())
        .and_then(|d| d.base.clone());
    let from = match &base {
        Some(b) => {
            loaded.any = true;
            read(&b.path, &b.tmp, &mut loaded)?;
            b.upto
        }
        None => i64::MIN,
    };
    for r in records.iter().filter(|r| r.start >= from) {
        if let Some(f) = r.dedup.as_ref().and_then(|d| d.ids.as_ref()) {
            loaded.any = true;
            read(&f.path, &f.tmp, &mut loaded)?;
        }
        if base.is_some() {
            loaded.since_snapshot += 1;
        }
    }
    if base.is_none() && loaded.any {
        loaded.since_snapshot = records.len();
    }
    Ok(loaded)
}

const MAGIC: &[u8; 8] = b"ESIDS001";

/// An ids file: magic, count, then (id, event µs) little-endian, then the
/// CRC-32 of all before it.
pub fn encode(entries: &[(u128, i64)]) -> Bytes {
    let mut out = Vec::with_capacity(20 + entries.len() * 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (id, micros) in entries {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&micros.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Bytes::from(out)
}

/// Reads an ids file, or says why it is damaged.
pub fn decode(data: &[u8]) -> Result<Vec<(u128, i64)>, String> {
    if data.len() < 20 || &data[..8] != MAGIC {
        return Err("not an eventsift ids file".into());
    }
    let (body, crc) = data.split_at(data.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    let mut count = [0u8; 8];
    count.copy_from_slice(&body[8..16]);
    let count = u64::from_le_bytes(count) as usize;
    let rest = &body[16..];
    if rest.len() != count.saturating_mul(24) {
        return Err(format!(
            "{count} ids announced, {} bytes present",
            rest.len()
        ));
    }
    Ok(rest
        .chunks_exact(24)
        .map(|c| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&c[..16]);
            let mut m = [0u8; 8];
            m.copy_from_slice(&c[16..]);
            (u128::from_le_bytes(id), i64::from_le_bytes(m))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ids: usize) -> DedupLimits {
        DedupLimits {
            window: Duration::from_secs(60),
            max_ids: ids,
            max_bytes: 1 << 30,
            snapshot_every: 4,
        }
    }

    #[test]
    fn the_id_table_agrees_with_a_hash_set() {
        // Small table, long probe runs, removals that wrap around.
        let mut t = IdTable::new(64);
        let mut reference = std::collections::HashSet::new();
        let mut order = VecDeque::new();
        let mut x: u128 = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C834;
        for step in 0..20_000u32 {
            x = x
                .wrapping_mul(0x2545_F491_4F6C_DD1D)
                .wrapping_add(u128::from(step));
            // Few distinct ids (many repeats), some of them 0, and small
            // values that share home slots.
            let id = match step % 7 {
                0 => 0,
                1 => u128::from(step % 97),
                _ => (x >> 64) % 300,
            };
            assert_eq!(t.insert(id), reference.insert(id), "insert {id} at {step}");
            if reference.contains(&id) && !order.contains(&id) {
                order.push_back(id);
            }
            while order.len() > 40 {
                let old = order.pop_front().unwrap();
                t.remove(old);
                reference.remove(&old);
            }
            for probe in [id, id + 1, (x >> 32) % 300] {
                let present = reference.contains(&probe);
                // insert-then-remove as a lookup that leaves no trace
                let inserted = t.insert(probe);
                assert_eq!(inserted, !present, "lookup {probe} at {step}");
                if inserted {
                    t.remove(probe);
                }
            }
        }
    }

    #[test]
    fn capacity_stays_within_the_memory_bound() {
        let whole = DedupLimits::default();
        assert_eq!(whole.capacity(), (4_000_000, 1 << 23));
        let d = whole.share(4);
        assert_eq!(d.capacity(), (1_000_000, 1 << 21));
        let (cap, slots) = d.capacity();
        assert!(slots * 16 + cap * ENTRY_QUEUE_BYTES <= d.max_bytes);
        let small = DedupLimits {
            max_bytes: 1 << 20,
            ..d
        };
        let (cap, slots) = small.capacity();
        assert!(
            slots * 16 + cap * ENTRY_QUEUE_BYTES <= 1 << 20,
            "{cap} {slots}"
        );
        assert!(cap > 10_000, "{cap}");
    }

    #[test]
    fn remembers_within_time_and_bounds() {
        let mut w = Window::new(&limits(3));
        let s = 1_000_000i64;
        assert!(!w.seen(1, 0, 0));
        assert!(w.seen(1, 0, 1));
        assert!(!w.seen(2, s, 2));
        assert!(!w.seen(3, 2 * s, 3));
        assert_eq!(w.len(), 3);
        // The bound pushes the oldest out before the time does.
        assert!(!w.seen(4, 3 * s, 4));
        assert_eq!(w.len(), 3);
        assert_eq!(w.evicted.by_bound, 1);
        assert!(!w.seen(1, 3 * s, 5), "evicted: no longer recognized");
        assert_eq!(w.cut_short(0), Some(Duration::from_secs(1)));
        assert_eq!(w.cut_short(0), None, "at most every ten minutes");
        // Time: 61 s later, everything older than 60 s goes.
        let mut w = Window::new(&limits(100));
        for i in 0..10 {
            w.seen(i, i as i64 * s, i as i64);
        }
        w.seen(100, 70 * s, 10);
        assert_eq!(w.len(), 1);
        assert_eq!(w.evicted.by_time, 10);
        assert_eq!(w.evicted.by_bound, 0);
    }

    #[test]
    fn a_window_trimmed_to_a_smaller_share_keeps_its_newest_ids() {
        let mut w = Window::new(&limits(1000));
        for i in 0..1000u128 {
            assert!(!w.seen(i + 1, i as i64, i as i64));
        }
        let gone = w.resize(&limits(1000).share(8));
        assert_eq!(gone, 875);
        assert_eq!(w.len(), 125);
        assert!(w.seen(1000, 0, 0), "the newest ids stay");
        assert!(!w.seen(1, 0, 0), "the oldest went");
        assert_eq!(w.len(), 125, "and the share holds");
        // Growing back keeps what is there and makes room again.
        w.resize(&limits(1000));
        assert_eq!(w.len(), 125);
        for i in 2000..2500u128 {
            assert!(!w.seen(i, 0, 0));
        }
        assert_eq!(w.len(), 625);
    }

    #[test]
    fn snapshots_hold_what_was_routed_before_a_position() {
        let mut w = Window::new(&limits(100));
        for i in 0..10u128 {
            w.seen(i + 1000, i as i64, i as i64 + 50);
        }
        let snap = decode(&w.snapshot(55)).unwrap();
        assert_eq!(snap.len(), 5);
        assert_eq!(snap[0], (1000, 0));
        let mut again = Window::new(&limits(100));
        again.load(&snap);
        assert!(again.seen(1004, 0, 0));
        assert!(!again.seen(1005, 0, 0));
        let mut bad = encode(&snap).to_vec();
        bad[20] ^= 1;
        assert!(decode(&bad).unwrap_err().contains("checksum"));
        assert!(decode(b"short").is_err());
    }

    #[test]
    fn only_derived_ids_are_compared() {
        let d = crate::api::envelope::derived_event_id(Some("g"), Some("u"), "e1");
        assert_eq!(derived_id(&d.to_string()), Some(d.as_u128()));
        assert_eq!(derived_id(&uuid::Uuid::now_v7().to_string()), None);
        assert_eq!(derived_id("not an id"), None);
    }
}
