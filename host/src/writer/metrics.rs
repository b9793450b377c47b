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
