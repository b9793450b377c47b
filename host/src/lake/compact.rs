//! `eventsift compact`: per table and day, the live files older than
//! `--older-than` and smaller than `--target-size` are packed into bins of
//! at most the target size; each bin of two files or more is rewritten into
//! one file (the table's current schema, columns a file lacks as nulls) and
//! swapped in by one Delta commit that removes the bin's files and adds the
//! new one (`dataChange: false`, operation `OPTIMIZE`). A reader sees the
//! table before or after a swap, never between: row counts never move.
//!
//! Memory: one input file and the output file's encoded bytes at a time
//! (bounded by the target size), plus Arrow batches of the reader's default
//! size.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow_array::{RecordBatch, new_null_array};
use arrow_schema::{Field, Schema, SchemaRef};
use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove};
use deltalake::protocol::DeltaOperation;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use super::{LakeError, Result, err};
use crate::writer::delta;

#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Only this table (default: all).
    pub table: Option<String>,
    /// Only files committed longer ago than this.
    pub older_than: Duration,
    /// Largest output file; files at least this big are left alone.
    pub target_size: u64,
}

/// What compaction did to one table.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CompactReport {
    pub table: String,
    pub files_before: usize,
    pub bytes_before: u64,
    pub files_after: usize,
    pub bytes_after: u64,
    /// Files rewritten, and the files they became.
    pub files_removed: usize,
    pub files_added: usize,
    pub rows_rewritten: u64,
    /// Bins given up because another process removed one of their files
    /// first (a concurrent compaction or delete): nothing changed for them.
    pub bins_conflicted: usize,
}

struct Candidate {
    /// What removing the file commits (its path included).
    remove: Remove,
    size: u64,
    day: String,
}

/// Compacts the Delta tables of `location`.
pub async fn compact(location: &str, opts: &CompactOptions) -> Result<Vec<CompactReport>> {
    let mut reports = Vec::new();
    for (name, table) in super::tables(location, opts.table.as_deref()).await? {
        reports.push(compact_table(&name, table, opts).await?);
    }
    Ok(reports)
}

async fn compact_table(
    name: &str,
    table: DeltaTable,
    opts: &CompactOptions,
) -> Result<CompactReport> {
    let (files_before, bytes_before) = super::live_files(&table)?;
    let mut report = CompactReport {
        table: name.to_owned(),
        files_before,
        bytes_before,
        ..Default::default()
    };
    let cutoff = SystemTime::now()
        .checked_sub(opts.older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let snapshot = table.snapshot().map_err(err)?;
    let mut by_day: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for f in snapshot.log_data().iter() {
        if f.modification_time() > cutoff || f.size() as u64 >= opts.target_size {
            continue;
        }
        let day = f
            .partition_values_map()
            .get("dt")
            .cloned()
            .flatten()
            .unwrap_or_default();
        by_day.entry(day.clone()).or_default().push(Candidate {
            remove: f.remove_action(false),
            size: f.size().max(0) as u64,
            day,
        });
    }
    let schema = table_schema(&table)?;
    let mut bins: Vec<Vec<Candidate>> = Vec::new();
    for (_, mut files) in by_day {
        files.sort_by(|a, b| a.remove.path.cmp(&b.remove.path));
        let mut bin: Vec<Candidate> = Vec::new();
        let mut size = 0u64;
        for f in files {
            let s = f.size;
            if !bin.is_empty() && size + s > opts.target_size {
                bins.push(std::mem::take(&mut bin));
                size = 0;
            }
            size += s;
            bin.push(f);
        }
        bins.push(bin);
    }
    bins.retain(|b| b.len() >= 2);
    let mut table = table;
    for bin in bins {
        match rewrite(name, &mut table, &schema, bin).await? {
            Some((removed, rows)) => {
                report.files_removed += removed;
                report.files_added += 1;
                report.rows_rewritten += rows;
            }
            None => report.bins_conflicted += 1,
        }
    }
    table.update_incremental(None).await.map_err(err)?;
    let (files_after, bytes_after) = super::live_files(&table)?;
    report.files_after = files_after;
    report.bytes_after = bytes_after;
    Ok(report)
}

/// The table's columns as Arrow (without `dt`), all nullable.
fn table_schema(table: &DeltaTable) -> Result<SchemaRef> {
    let snapshot = table.snapshot().map_err(err)?;
    let arrow: Schema = snapshot.schema().as_ref().try_into_arrow().map_err(err)?;
    Ok(Arc::new(Schema::new(
        arrow
            .fields()
            .iter()
            .filter(|f| f.name() != "dt")
            .map(|f| Field::new(f.name(), writer_type(f.data_type()), true))
            .collect::<Vec<_>>(),
    )))
}

use deltalake::kernel::engine::arrow_conversion::TryIntoArrow as _;

/// The Arrow type the writer uses for a column (the kernel's conversion
/// gives view types for strings and binaries).
fn writer_type(t: &arrow_schema::DataType) -> arrow_schema::DataType {
    use arrow_schema::DataType as T;
    match t {
        T::Utf8View | T::LargeUtf8 => T::Utf8,
        T::BinaryView | T::LargeBinary => T::Binary,
        other => other.clone(),
    }
}

/// `batch` in `schema`: columns by name, missing ones null.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => datafusion::arrow::compute::cast(c, f.data_type()).map_err(err),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(err)
}

/// Rewrites `bin` into one file and swaps it in; `None` when a concurrent
/// commit removed one of the bin's files first.
async fn rewrite(
    name: &str,
    table: &mut DeltaTable,
    schema: &SchemaRef,
    bin: Vec<Candidate>,
) -> Result<Option<(usize, u64)>> {
    let store = table.log_store().object_store(None);
    let day = bin[0].day.clone();
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        schema.clone(),
        Some(crate::writer::sink::properties()),
    )
    .map_err(err)?;
    let mut rows_in = 0u64;
    for c in &bin {
        let path = StorePath::parse(&c.remove.path).map_err(err)?;
        let bytes: Bytes = store
            .get(&path)
            .await
            .map_err(err)?
            .bytes()
            .await
            .map_err(err)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(err)?
            .build()
            .map_err(err)?;
        for batch in reader {
            let batch = batch.map_err(err)?;
            rows_in += batch.num_rows() as u64;
            writer.write(&conform(&batch, schema)?).map_err(err)?;
        }
    }
    let data = Bytes::from(writer.into_inner().map_err(err)?);
    let (stats, _) = delta::describe(&data).map_err(LakeError)?;
    let written: serde_json::Value = serde_json::from_str(&stats).map_err(err)?;
    if written["numRecords"].as_u64() != Some(rows_in) {
        return Err(LakeError(format!(
            "table {name}: a compacted file holds {} rows, its inputs {rows_in}: nothing was changed",
            written["numRecords"]
        )));
    }
    let rel = format!(
        "dt={day}/compacted-{}.parquet",
        uuid::Uuid::now_v7().simple()
    );
    let size = data.len() as i64;
    store
        .put(&StorePath::parse(&rel).map_err(err)?, data.clone().into())
        .await
        .map_err(err)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut actions: Vec<Action> = bin
        .iter()
        .map(|c| {
            let mut r = c.remove.clone();
            r.deletion_timestamp = Some(now);
            Action::Remove(r)
        })
        .collect();
    actions.push(Action::Add(Add {
        path: rel.clone(),
        partition_values: HashMap::from([("dt".to_owned(), Some(day.clone()))]),
        size,
        modification_time: now,
        data_change: false,
        stats: Some(stats),
        ..Default::default()
    }));
    let op = DeltaOperation::Optimize {
        predicate: Some(format!("dt = '{day}'")),
        target_size: size,
    };
    let snapshot = table.snapshot().map_err(err)?;
    let committed = CommitBuilder::from(CommitProperties::default())
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), op)
        .await;
    match committed {
        Ok(_) => {
            table.update_incremental(None).await.map_err(err)?;
            tracing::info!(
                table = name,
                partition = %day,
                "compacted {} files ({rows_in} rows) into {rel}",
                bin.len()
            );
            Ok(Some((bin.len(), rows_in)))
        }
        Err(e) => {
            // The commit may be in the log although the call failed (a lost
            // answer, a failed checkpoint): read the log before deciding.
            table.update_incremental(None).await.map_err(err)?;
            let live = table
                .snapshot()
                .map_err(err)?
                .log_data()
                .iter()
                .any(|f| f.path() == rel.as_str());
            if live {
                return Ok(Some((bin.len(), rows_in)));
            }
            // Not in the log: the new file is an orphan, removed now.
            let _ = store.delete(&StorePath::parse(&rel).map_err(err)?).await;
            tracing::warn!(table = name, partition = %day, "a compaction lost a race: {e}");
            Ok(None)
        }
    }
}
