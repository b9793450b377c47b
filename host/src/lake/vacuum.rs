//! `eventsift vacuum [--retain 7d]`: deletes the data files that the
//! tables' versions no longer reference and that were removed (by
//! `compact` or `forget`) longer ago than the retention (delta-rs's
//! VACUUM, lite mode: only files the log names as removed, so files a live
//! writer has moved but not yet committed are never touched). Readers of
//! versions older than the retention can no longer read them.

use std::time::Duration;

use serde::Serialize;

use super::{Result, err};

/// What vacuum did to one table.
#[derive(Debug, Default, Clone, Serialize)]
pub struct VacuumReport {
    pub table: String,
    /// Data files stored under the table's folder, before and after.
    pub files_before: usize,
    pub bytes_before: u64,
    pub files_after: usize,
    pub bytes_after: u64,
    pub files_deleted: usize,
}

/// Vacuums the Delta tables of `location` (only `table` if given).
pub async fn vacuum(
    location: &str,
    table: Option<&str>,
    retain: Duration,
) -> Result<Vec<VacuumReport>> {
    let retention = chrono::Duration::from_std(retain).map_err(err)?;
    let mut reports = Vec::new();
    for (name, t) in super::tables(location, table).await? {
        let (files_before, bytes_before) = super::stored_files(&t).await?;
        let (t, metrics) = t
            .vacuum()
            .with_retention_period(retention)
            // The retention is the operator's choice, stated on the command
            // line; delta-rs's check would refuse anything under 7 days.
            .with_enforce_retention_duration(false)
            .await
            .map_err(|e| super::LakeError(format!("table {name}: {e}")))?;
        let (files_after, bytes_after) = super::stored_files(&t).await?;
        reports.push(VacuumReport {
            table: name,
            files_before,
            bytes_before,
            files_after,
            bytes_after,
            files_deleted: metrics.files_deleted.len(),
        });
    }
    Ok(reports)
}
