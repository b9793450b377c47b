//! Prometheus metric names of the writer (served on `/metrics`).

/// Rows committed, by `table`.
pub const ROWS: &str = "eventsift_writer_rows_total";
/// Files committed, by `table`.
pub const FILES: &str = "eventsift_writer_files_total";
/// Bytes of Parquet committed, by `table`.
pub const BYTES: &str = "eventsift_writer_bytes_total";
/// Records sent to `rejected_events`, by `reason` (decode, route, plugin, fault, filter).
pub const REJECTED: &str = "eventsift_writer_rejected_total";
/// Records not yet committed, by `partition`.
pub const LAG: &str = "eventsift_writer_lag";
/// Seconds per commit (files, record, renames).
pub const COMMIT_SECONDS: &str = "eventsift_writer_commit_seconds";
/// Commits done.
pub const COMMITS: &str = "eventsift_writer_commits_total";
/// Commits lost to another writer (fencing).
pub const FENCED: &str = "eventsift_writer_fenced_total";
/// Commit attempts that failed (the warehouse failed or did not answer);
/// the writer retries them.
pub const COMMIT_FAILURES: &str = "eventsift_writer_commit_failures_total";
/// Seconds since the writer's last successful commit (since it started,
/// before the first one).
pub const LAST_COMMIT_AGE: &str = "eventsift_writer_last_commit_age_seconds";
/// Unix time of the writer's last successful commit.
pub const LAST_COMMIT_TIME: &str = "eventsift_writer_last_commit_timestamp_seconds";
/// Publishes whose outcome was unknown (an error after the request left),
/// resolved by reading the record back.
pub const UNKNOWN_OUTCOMES: &str = "eventsift_writer_unknown_outcomes_total";
/// Published records that did not link into their chain (a zombie's
/// pruned start): they count for nothing.
pub const UNLINKED: &str = "eventsift_writer_unlinked_records_total";
/// Records skipped because the source deleted them before they were
/// written (only with `--accept-retention-gaps`), by `partition`.
pub const GAP_RECORDS: &str = "eventsift_writer_gap_records_total";
/// Partitions assigned to this writer that it refuses to consume (their
/// chain does not fit the source; see the log).
pub const PARTITIONS_STOPPED: &str = "eventsift_writer_partitions_stopped";
/// Records dropped as retries of an event already routed (same
/// client-named id within the partition's window).
pub const DUPLICATES: &str = "eventsift_writer_duplicates_dropped_total";
/// Client-named ids remembered, by `partition`.
pub const DEDUP_IDS: &str = "eventsift_writer_dedup_ids";
/// Event time the deduplication window spans, by `partition`: below
/// `--dedup-window` when the id or memory bound ends it.
pub const DEDUP_SPAN: &str = "eventsift_writer_dedup_window_seconds";
/// Ids that left the window, by `reason`: `time` (older than the window)
/// or `bound` (the id or memory cap, before their time).
pub const DEDUP_EVICTED: &str = "eventsift_writer_dedup_evicted_total";
/// Deduplication files named by commit records but damaged or gone.
pub const DEDUP_STATE_MISSING: &str = "eventsift_writer_dedup_state_missing_total";
/// Orphaned in-flight files removed at recovery.
pub const ORPHANS: &str = "eventsift_writer_orphans_removed_total";
/// Committed files found missing under both names (deleted by hand).
pub const MISSING_FILES: &str = "eventsift_writer_missing_files_total";
/// Ranges whose rows could not be encoded into Parquet (not committed;
/// the partition stops).
pub const ENCODE_FAILURES: &str = "eventsift_writer_encode_failures_total";
/// Attempts at taking a partition that failed (the warehouse or the
/// source did not answer); retried, then given up for a while.
pub const TAKE_FAILURES: &str = "eventsift_writer_take_failures_total";
/// Seeks of the source that failed (retried).
pub const SEEK_FAILURES: &str = "eventsift_writer_seek_failures_total";
/// Plugin versions refused at write time because they change a table's
/// persisted schema incompatibly.
pub const SCHEMA_REFUSED: &str = "eventsift_writer_schema_refusals_total";
/// The writer's commit interval (`--flush-interval`), for alerts that
/// count intervals without a commit.
pub const FLUSH_INTERVAL: &str = "eventsift_writer_flush_interval_seconds";
/// Seconds this writer spent in each stage since it started (`stage`:
/// `poll`, `decode`, `dedup`, `plugins`, `arrow` on the source and router
/// threads, updated every 100 ms; `parquet`, `commit` on the sink thread,
/// after each commit): where a drain's time goes.
pub const STAGE_SECONDS: &str = "eventsift_writer_stage_seconds";

/// Exports the router's and the source's stage times.
pub fn stages(consume: std::time::Duration, route: &super::router::RouteTimes) {
    for (stage, d) in [
        ("poll", consume),
        ("decode", route.decode),
        ("dedup", route.dedup),
        ("plugins", route.plugins),
        ("arrow", route.arrow),
    ] {
        metrics::gauge!(STAGE_SECONDS, "stage" => stage).set(d.as_secs_f64());
    }
}

/// Exports the sink's stage times.
pub fn sink_stages(times: &super::sink::SinkTimes) {
    metrics::gauge!(STAGE_SECONDS, "stage" => "parquet").set(times.encode.as_secs_f64());
    metrics::gauge!(STAGE_SECONDS, "stage" => "commit").set(times.commit.as_secs_f64());
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix ms when this process's writer started (0: no writer).
static STARTED_AT: AtomicU64 = AtomicU64::new(0);
/// Unix ms of this process's last successful commit (0: none yet).
static LAST_COMMIT_AT: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A writer runs in this process (the age of its last commit is exported).
pub fn writer_started() {
    let _ = STARTED_AT.compare_exchange(0, now_ms(), Ordering::SeqCst, Ordering::SeqCst);
    // Exported from the start (at 0), so that alerts and dashboards see
    // the series before the first failure.
    metrics::counter!(COMMIT_FAILURES).increment(0);
    metrics::counter!(COMMITS).increment(0);
    metrics::counter!(FENCED).increment(0);
    metrics::gauge!(PARTITIONS_STOPPED).set(0.0);
    for reason in ["decode", "route", "plugin", "fault", "filter", "schema"] {
        metrics::counter!(REJECTED, "reason" => reason).increment(0);
    }
}

/// Exports the commit interval.
pub fn flush_interval(every: std::time::Duration) {
    metrics::gauge!(FLUSH_INTERVAL).set(every.as_secs_f64());
}

/// A commit succeeded just now.
pub fn committed_now() {
    let now = now_ms();
    LAST_COMMIT_AT.store(now, Ordering::SeqCst);
    metrics::gauge!(LAST_COMMIT_TIME).set(now as f64 / 1000.0);
}

/// Seconds since the last commit (since the writer started before the
/// first one); `None` when no writer runs here.
pub fn last_commit_age() -> Option<f64> {
    let started = STARTED_AT.load(Ordering::SeqCst);
    if started == 0 {
        return None;
    }
    let since = LAST_COMMIT_AT.load(Ordering::SeqCst).max(started);
    Some(now_ms().saturating_sub(since) as f64 / 1000.0)
}

/// Sets the last-commit age gauge (called when metrics are rendered, so it
/// is true even while the writer is stuck in a commit).
pub fn refresh_age() {
    if let Some(age) = last_commit_age() {
        metrics::gauge!(LAST_COMMIT_AGE).set(age);
    }
}
