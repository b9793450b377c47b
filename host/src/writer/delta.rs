//! Delta Lake tables (`--table-format delta`), written through delta-rs.
//!
//! The commit protocol ([`super::commit`]) stays the source of truth for
//! positions: a range is committed when its record is published, and the
//! record names every file of every table. With Delta, *finishing* a
//! record (after moving its files to their final names) also commits each
//! table's files to that table's Delta log, in one Delta commit per table
//! carrying, next to the `add` actions, a `txn` action whose app id names
//! the source, partition and chain and whose version is the record's end.
//!
//! So data and positions commit atomically in every table, and the per-table
//! step is idempotent: a table whose `txn` version for the app id already
//! reaches the record's end has it (a crash between two tables' commits is
//! finished on resume, the committed table skipped); two processes finishing
//! the same record race on the Delta log, and delta-rs's conflict checker
//! fails the loser (`ConcurrentTransaction` on the same app id), who reads
//! the log again and finds the range there. A table that got no rows in a
//! range gets no commit and holds nothing back: the writer resumes from the
//! chain's end, never from a minimum over tables.
//!
//! Per table, Delta commits follow record order (an unfinished record is
//! retried before the next one is published), so a `txn` version at or past
//! a record's end means every earlier record is in the table too.
//!
//! Files keep the Hive layout (`<table>/dt=<day>/<name>.parquet`, no `dt`
//! column inside), which is the Delta convention for a table partitioned by
//! `dt`. Every column of the Delta schema is nullable (a column added by a
//! newer plugin version is absent from older files); a file bringing a new
//! column commits the widened schema with its `add`. Each `add` carries
//! statistics (`numRecords`, `nullCount`, and exact `minValues`/`maxValues`
//! for numbers and strings) read from the file's own footer, so readers and
//! `forget` can skip files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arrow_schema::{DataType as ArrowType, SchemaRef, TimeUnit};
use bytes::Bytes;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{
    Action, Add, DataType, MetadataExt as _, PrimitiveType, StructField, StructType, Transaction,
};
use deltalake::logstore::LogStore as _;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::TableProperty;
use deltalake::{DeltaTable, DeltaTableError};
use object_store::ObjectStore;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::Url;

use super::commit::{CommitRecord, CommittedFile, META_DIR};
use super::warehouse::{Warehouse, WarehouseError};
use crate::storage::TimeoutStore;

/// How the tables of a warehouse are laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// Parquet files in `dt=` folders, committed by eventsift's records
    /// (what the seed's readers, Hive and Presto, read).
    #[default]
    Hive,
    /// Delta Lake tables at the same places (`_delta_log/` per table).
    Delta,
}

impl TableFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TableFormat::Hive => "hive",
            TableFormat::Delta => "delta",
        }
    }
}

/// The marker naming a warehouse's format, published once.
pub const FORMAT_FILE: &str = "format.json";

#[derive(Debug, Serialize, Deserialize)]
struct FormatMarker {
    table_format: TableFormat,
    created_at: String,
}

/// The format `wh` was created with, recording `wanted` if it is new. A
/// warehouse written before the marker existed (it has commit records) is
/// Hive. Another format than `wanted` is an error saying so.
pub fn settle_format(wh: &Warehouse, wanted: TableFormat) -> Result<TableFormat, String> {
    let marker = format!("{META_DIR}/{FORMAT_FILE}");
    let read = |wh: &Warehouse| -> Result<Option<TableFormat>, String> {
        match wh.read_opt(&marker).map_err(|e| e.to_string())? {
            None => Ok(None),
            Some(b) => serde_json::from_slice::<FormatMarker>(&b)
                .map(|m| Some(m.table_format))
                .map_err(|e| format!("{}/{marker} is unreadable: {e}", wh.location())),
        }
    };
    let found = match read(wh)? {
        Some(f) => f,
        None => {
            let legacy = wh
                .exists(&format!("{META_DIR}/commits"))
                .map_err(|e| e.to_string())?;
            let format = if legacy { TableFormat::Hive } else { wanted };
            let json = serde_json::to_vec_pretty(&FormatMarker {
                table_format: format,
                created_at: super::commit::now_rfc3339(),
            })
            .expect("a format marker serializes");
            let tmp = format!(
                "{META_DIR}/.{FORMAT_FILE}.{}",
                uuid::Uuid::now_v7().simple()
            );
            wh.write(&tmp, Bytes::from(json))
                .map_err(|e| e.to_string())?;
            let published = wh.publish(&tmp, &marker);
            let _ = wh.remove(&tmp);
            published.map_err(|e| e.to_string())?;
            // Another process may have published first: its word counts.
            read(wh)?.unwrap_or(format)
        }
    };
    if found != wanted {
        return Err(format!(
            "the warehouse {} holds {} tables (it was created with --table-format {}), but this \
             process was started with --table-format {}: start it with --table-format {} (a \
             warehouse keeps the format it was created with)",
            wh.location(),
            found.as_str(),
            found.as_str(),
            wanted.as_str(),
            found.as_str()
        ));
    }
    Ok(found)
}

/// The format of an existing warehouse, for readers and maintenance
/// commands (no marker: Hive).
pub fn format_of(wh: &Warehouse) -> Result<TableFormat, WarehouseError> {
    let marker = format!("{META_DIR}/{FORMAT_FILE}");
    Ok(wh
        .read_opt(&marker)?
        .and_then(|b| serde_json::from_slice::<FormatMarker>(&b).ok())
        .map_or(TableFormat::Hive, |m| m.table_format))
}

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("delta table {table}: {message}")]
    Table { table: String, message: String },
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

fn table_err(table: &str, e: impl std::fmt::Display) -> DeltaError {
    DeltaError::Table {
        table: table.to_owned(),
        message: e.to_string(),
    }
}

/// The URL of the warehouse root (`file:///abs/` or `hdfs://nn:port/path/`).
pub fn root_url(location: &str) -> Result<Url, String> {
    if location.starts_with("hdfs://") || location.starts_with("viewfs://") {
        let mut s = location.trim_end_matches('/').to_owned();
        s.push('/');
        Url::parse(&s).map_err(|e| format!("warehouse {location}: {e}"))
    } else {
        let local = location.strip_prefix("file://").unwrap_or(location);
        let abs = std::fs::canonicalize(local).map_err(|e| format!("warehouse {local}: {e}"))?;
        Url::from_directory_path(&abs).map_err(|()| format!("warehouse {local}: not absolute"))
    }
}

/// Registers delta-rs's HDFS handlers (once; harmless again).
pub fn register_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| deltalake::hdfs::register_handlers(None));
}

/// The app id of a partition's chain in `txn` actions.
pub fn app_id(source: &str, partition: i32, chain: u32) -> String {
    format!("eventsift-{source}-{partition}-c{chain}")
}

/// The Delta tables of one warehouse, for the writer: commits run on a
/// private runtime, every storage call of delta-rs bounded by the
/// warehouse timeout ([`TimeoutStore`]). A whole commit has no bound of its
/// own: replaying a long log (tens of thousands of live files) may take
/// longer than one call may, and goes on as long as each call answers, so
/// a commit that outgrew the timeout does not stall its partition.
pub struct DeltaTables {
    root: Url,
    /// `Some` until dropped (see the `Drop` impl).
    rt: Option<tokio::runtime::Runtime>,
    /// The warehouse's root store, each call bounded.
    store: Arc<dyn ObjectStore>,
    /// Each call's bound.
    timeout: Duration,
    /// Called while an operation runs (the writer's heartbeat).
    progress: Option<crate::storage::timeout::Progress>,
    /// `delta.logRetentionDuration` of the tables this creates.
    log_retention: Duration,
    /// Loaded tables, kept between commits and refreshed incrementally.
    tables: Mutex<HashMap<String, DeltaTable>>,
}

/// The longest a Delta operation of the writer may take in all (each of
/// its storage calls is bounded by the warehouse timeout): a backstop, not
/// a budget: a replay of a log of hundreds of thousands of files takes
/// seconds. At least 60 times the warehouse timeout.
pub const OPERATION_CAP: Duration = Duration::from_secs(600);

/// How long a new table keeps its log entries (its time travel).
///
/// Every commit lists the table's `_delta_log` folder (local disk and HDFS
/// cannot list from an offset) and replays the live files: measured with
/// `cargo bench --bench writer -- lake`, a commit costs ~8 µs more per log
/// entry kept and ~10 µs more per live file (compaction bounds those). A
/// 10 s flush makes 8,640 entries a day per source partition: with the
/// 7 days of Delta's usual retention a commit would take seconds within a
/// week. Two hours cost ~25 ms with four partitions; a checkpoint (every
/// 100 commits) keeps the `txn` entries the writer resumes from, whatever
/// the retention.
pub const DEFAULT_LOG_RETENTION: Duration = Duration::from_secs(2 * 3600);

/// A file to add to a table, with what its `add` action needs.
#[derive(Debug, Clone)]
pub struct FileAdd {
    /// Relative to the table root: `dt=<day>/<name>.parquet`.
    pub path: String,
    pub day: String,
    pub size: i64,
    pub stats: String,
    pub schema: SchemaRef,
}

/// Statistics and schema of a Parquet file, from its footer.
pub fn describe(data: &Bytes) -> Result<(String, SchemaRef), String> {
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(data)
        .map_err(|e| format!("reading a Parquet footer: {e}"))?;
    describe_meta(&meta)
}

fn describe_meta(meta: &ParquetMetaData) -> Result<(String, SchemaRef), String> {
    let file = meta.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(|e| format!("the Parquet schema: {e}"))?;
    let mut nulls = Map::new();
    let mut mins = Map::new();
    let mut maxs = Map::new();
    let descr = file.schema_descr();
    for (i, col) in descr.columns().iter().enumerate() {
        let name = col.name().to_owned();
        let field = schema.field_with_name(&name).ok();
        let mut null_count = Some(0u64);
        let mut min: Option<Value> = None;
        let mut max: Option<Value> = None;
        let mut exact = true;
        for rg in meta.row_groups() {
            let Some(stats) = rg.column(i).statistics() else {
                null_count = None;
                exact = false;
                continue;
            };
            null_count = null_count.and_then(|n| stats.null_count_opt().map(|m| n + m));
            if !(stats.min_is_exact() && stats.max_is_exact()) {
                exact = false;
            }
            let (lo, hi) = match (stats, field.map(|f| f.data_type())) {
                (Statistics::Int32(s), Some(ArrowType::Int32)) => {
                    (s.min_opt().map(|v| json!(v)), s.max_opt().map(|v| json!(v)))
                }
                (Statistics::Int64(s), Some(ArrowType::Int64)) => {
                    (s.min_opt().map(|v| json!(v)), s.max_opt().map(|v| json!(v)))
                }
                (Statistics::Double(s), Some(ArrowType::Float64)) => (
                    s.min_opt().filter(|v| v.is_finite()).map(|v| json!(v)),
                    s.max_opt().filter(|v| v.is_finite()).map(|v| json!(v)),
                ),
                (Statistics::ByteArray(s), Some(ArrowType::Utf8)) => (
                    s.min_opt().and_then(|v| v.as_utf8().ok()).map(|v| json!(v)),
                    s.max_opt().and_then(|v| v.as_utf8().ok()).map(|v| json!(v)),
                ),
                _ => (None, None),
            };
            match (lo, hi) {
                (Some(lo), Some(hi)) => {
                    min = Some(match min {
                        None => lo,
                        Some(m) => pick(m, lo, true),
                    });
                    max = Some(match max {
                        None => hi,
                        Some(m) => pick(m, hi, false),
                    });
                }
                _ => exact = false,
            }
        }
        if let Some(n) = null_count {
            nulls.insert(name.clone(), json!(n));
        }
        if exact && let (Some(lo), Some(hi)) = (min, max) {
            mins.insert(name.clone(), lo);
            maxs.insert(name, hi);
        }
    }
    let stats = json!({
        "numRecords": file.num_rows(),
        "minValues": mins,
        "maxValues": maxs,
        "nullCount": nulls,
    });
    Ok((stats.to_string(), Arc::new(schema)))
}

/// The smaller (`low`) or larger of two JSON scalars of the same kind.
fn pick(a: Value, b: Value, low: bool) -> Value {
    let less = match (&a, &b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x < y,
            _ => x.as_f64() < y.as_f64(),
        },
        (Value::String(x), Value::String(y)) => x < y,
        _ => false,
    };
    if less == low { a } else { b }
}

/// The Delta type of an Arrow column eventsift writes.
fn delta_type(t: &ArrowType) -> Option<DataType> {
    Some(DataType::Primitive(match t {
        ArrowType::Utf8 => PrimitiveType::String,
        ArrowType::Int64 => PrimitiveType::Long,
        ArrowType::Int32 => PrimitiveType::Integer,
        ArrowType::Float64 => PrimitiveType::Double,
        ArrowType::Boolean => PrimitiveType::Boolean,
        ArrowType::Binary => PrimitiveType::Binary,
        ArrowType::Timestamp(TimeUnit::Microsecond, Some(_)) => PrimitiveType::Timestamp,
        _ => return None,
    }))
}

/// `current` widened with the columns of `files` it lacks (`None`: nothing
/// new). The partition column `dt` stays last.
fn widened(
    table: &str,
    current: Option<&StructType>,
    files: &[FileAdd],
) -> Result<Option<StructType>, DeltaError> {
    let mut fields: Vec<StructField> = current
        .map(|s| s.fields().filter(|f| f.name() != "dt").cloned().collect())
        .unwrap_or_default();
    let mut added = current.is_none();
    for f in files {
        for col in f.schema.fields() {
            let Some(t) = delta_type(col.data_type()) else {
                return Err(table_err(
                    table,
                    format!(
                        "column {} has type {}, which Delta tables here do not take",
                        col.name(),
                        col.data_type()
                    ),
                ));
            };
            match fields.iter().find(|x| x.name() == col.name()) {
                Some(existing) if *existing.data_type() != t => {
                    return Err(table_err(
                        table,
                        format!(
                            "column {} is {} in the table but {} in file {}",
                            col.name(),
                            existing.data_type(),
                            t,
                            f.path
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    fields.push(StructField::new(col.name().clone(), t, true));
                    added = true;
                }
            }
        }
    }
    if !added {
        return Ok(None);
    }
    fields.push(StructField::new(
        "dt",
        DataType::Primitive(PrimitiveType::String),
        true,
    ));
    StructType::try_new(fields)
        .map(Some)
        .map_err(|e| table_err(table, e))
}

impl DeltaTables {
    pub fn open(location: &str, timeout: Duration) -> Result<DeltaTables, String> {
        Self::open_with_progress(location, timeout, None)
    }

    /// [`DeltaTables::open`], calling `progress` after each storage call
    /// that answered (the writer's heartbeat).
    pub fn open_with_progress(
        location: &str,
        timeout: Duration,
        progress: Option<crate::storage::timeout::Progress>,
    ) -> Result<DeltaTables, String> {
        register_handlers();
        // One worker, so that the HDFS client's connection tasks keep
        // running between commits.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("delta-io")
            .enable_all()
            .build()
            .map_err(|e| format!("a runtime for Delta commits: {e}"))?;
        let root = root_url(location)?;
        let store = {
            // The store delta-rs would make for the warehouse (HDFS clients
            // connect from the runtime), each call bounded.
            let _guard = rt.enter();
            let inner = deltalake::DeltaTableBuilder::from_url(root.clone())
                .and_then(|b| b.build_storage())
                .map_err(|e| format!("the warehouse {location}: {e}"))?
                .root_object_store(None);
            let bounded = TimeoutStore::new(inner, timeout);
            Arc::new(match &progress {
                Some(p) => bounded.with_progress(p.clone()),
                None => bounded,
            }) as Arc<dyn ObjectStore>
        };
        Ok(DeltaTables {
            root,
            rt: Some(rt),
            store,
            timeout,
            progress,
            log_retention: DEFAULT_LOG_RETENTION,
            tables: Mutex::new(HashMap::new()),
        })
    }

    /// The log retention of tables created from now on (default
    /// [`DEFAULT_LOG_RETENTION`]).
    pub fn with_log_retention(mut self, retention: Duration) -> Self {
        self.log_retention = retention;
        self
    }

    fn table_url(&self, table: &str) -> Result<Url, DeltaError> {
        self.root
            .join(&format!("{table}/"))
            .map_err(|e| table_err(table, e))
    }

    /// Runs `f` on the private runtime. Each storage call in it is bounded
    /// by the timeout; the whole only by [`OPERATION_CAP`] (a backstop
    /// against a bug, far above any log replay), and it reports progress
    /// every second meanwhile (the writer's heartbeat: a long replay is
    /// not a stuck thread).
    fn block<T>(
        &self,
        table: &str,
        f: impl std::future::Future<Output = Result<T, DeltaError>>,
    ) -> Result<T, DeltaError> {
        let rt = self.rt.as_ref().expect("the runtime lives until drop");
        let cap = OPERATION_CAP.max(self.timeout * 60);
        rt.block_on(async {
            let ticking = async {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if let Some(p) = &self.progress {
                        p();
                    }
                }
            };
            tokio::select! {
                r = tokio::time::timeout(cap, f) => r.unwrap_or_else(|_| {
                    Err(table_err(table, format!(
                        "the operation did not end within {}",
                        humantime::format_duration(cap)
                    )))
                }),
                () = ticking => unreachable!("the ticker never ends"),
            }
        })
    }

    /// `table`, not loaded, over the warehouse's bounded store.
    fn unloaded(&self, table: &str) -> Result<DeltaTable, DeltaError> {
        let url = self.table_url(table)?;
        deltalake::DeltaTableBuilder::from_url(url.clone())
            .map(|b| b.with_storage_backend(self.store.clone(), url))
            .and_then(|b| b.build())
            .map_err(|e| table_err(table, e))
    }

    /// The table, loaded (or refreshed) to its latest version; `None` when
    /// it has no Delta log yet.
    async fn latest(&self, table: &str) -> Result<Option<DeltaTable>, DeltaError> {
        let cached = self.tables.lock().unwrap().remove(table);
        let mut t = match cached {
            Some(t) => t,
            None => self.unloaded(table)?,
        };
        if t.version().is_some() {
            t.update_incremental(None)
                .await
                .map_err(|e| table_err(table, e))?;
        } else {
            match t.load().await {
                Ok(()) => {}
                Err(DeltaTableError::NotATable(_)) => return Ok(None),
                Err(e) => return Err(table_err(table, e)),
            }
        }
        Ok(Some(t))
    }

    async fn txn_of(t: &DeltaTable, table: &str, app: &str) -> Result<Option<i64>, DeltaError> {
        t.snapshot()
            .map_err(|e| table_err(table, e))?
            .transaction_version(t.log_store().as_ref(), app)
            .await
            .map_err(|e| table_err(table, e))
    }

    /// The `txn` version of `app` in `table` (`None`: no such table or
    /// transaction).
    pub fn committed(&self, table: &str, app: &str) -> Result<Option<i64>, DeltaError> {
        self.block(table, async {
            let Some(t) = self.latest(table).await? else {
                return Ok(None);
            };
            let v = Self::txn_of(&t, table, app).await;
            self.tables.lock().unwrap().insert(table.to_owned(), t);
            v
        })
    }

    /// Commits `files` to `table` as the range ending at `end` of `app`,
    /// unless the table has it already. Returns whether this call committed.
    pub fn commit(
        &self,
        table: &str,
        app: &str,
        end: i64,
        files: &[FileAdd],
    ) -> Result<bool, DeltaError> {
        let mut backoff = Duration::from_millis(50);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.block(table, self.try_commit(table, app, end, files)) {
                Ok(done) => return Ok(done),
                Err(e) if attempts < 8 => {
                    tracing::debug!(
                        table,
                        "delta commit (attempt {attempts}): {e}; reading the log again"
                    );
                    self.tables.lock().unwrap().remove(table);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_commit(
        &self,
        table: &str,
        app: &str,
        end: i64,
        files: &[FileAdd],
    ) -> Result<bool, DeltaError> {
        let t = match self.latest(table).await? {
            Some(t) => t,
            None => {
                let schema = widened(table, None, files)?
                    .ok_or_else(|| table_err(table, "a new table needs columns"))?;
                let created = self
                    .unloaded(table)?
                    .create()
                    .with_columns(schema.fields().cloned())
                    .with_partition_columns(["dt"])
                    .with_table_name(table)
                    // A commit per partition and flush makes ~8,640 log
                    // entries a day per partition, and each commit pays
                    // for every entry kept (see DEFAULT_LOG_RETENTION).
                    .with_configuration_property(
                        TableProperty::LogRetentionDuration,
                        Some(format!(
                            "interval {} seconds",
                            self.log_retention.as_secs().max(1)
                        )),
                    )
                    .with_save_mode(SaveMode::Ignore)
                    .await;
                match created {
                    Ok(t) => t,
                    // Created by another writer meanwhile: read it.
                    Err(_) => self
                        .latest(table)
                        .await?
                        .ok_or_else(|| table_err(table, "the table could not be created"))?,
                }
            }
        };
        if Self::txn_of(&t, table, app)
            .await?
            .is_some_and(|v| v >= end)
        {
            self.tables.lock().unwrap().insert(table.to_owned(), t);
            return Ok(false);
        }
        let snapshot = t.snapshot().map_err(|e| table_err(table, e))?;
        let mut actions = Vec::with_capacity(files.len() + 1);
        if let Some(schema) = widened(table, Some(snapshot.schema().as_ref()), files)? {
            let meta = snapshot
                .metadata()
                .clone()
                .with_schema(&schema)
                .map_err(|e| table_err(table, e))?;
            actions.push(Action::Metadata(meta));
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for f in files {
            actions.push(Action::Add(Add {
                path: f.path.clone(),
                partition_values: HashMap::from([("dt".to_owned(), Some(f.day.clone()))]),
                size: f.size,
                modification_time: now,
                data_change: true,
                stats: Some(f.stats.clone()),
                ..Default::default()
            }));
        }
        let props = CommitProperties::default()
            .with_application_transaction(Transaction::new_with_last_update(app, end, Some(now)))
            .with_metadata([("isBlindAppend".to_owned(), json!(true))]);
        let op = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(vec!["dt".to_owned()]),
            predicate: None,
        };
        let result = CommitBuilder::from(props)
            .with_actions(actions)
            .build(Some(snapshot), t.log_store(), op)
            .await;
        match result {
            Ok(_) => {
                // Kept one version behind: the next `latest` reads the log
                // incrementally anyway.
                self.tables.lock().unwrap().insert(table.to_owned(), t);
                Ok(true)
            }
            Err(e) => {
                // The commit may be in the log although the call failed (a
                // lost answer, a failed checkpoint): the caller reads again.
                let conflict = matches!(
                    &e,
                    DeltaTableError::Transaction {
                        source: TransactionError::CommitConflict(_)
                    }
                );
                Err(table_err(
                    table,
                    if conflict {
                        format!("a concurrent commit: {e}")
                    } else {
                        e.to_string()
                    },
                ))
            }
        }
    }
}

/// The files (relative to the table) of Delta table `table`'s latest
/// version in `wh`; `None` when `wh` is a Hive warehouse (every file in the
/// `dt=` folders counts). A Delta table without a log yet has none. Blocking
/// (a runtime of its own): for checks and tests, not for async contexts.
pub fn live_files(
    wh: &Warehouse,
    table: &str,
) -> Result<Option<std::collections::HashSet<String>>, String> {
    if format_of(wh).map_err(|e| e.to_string())? == TableFormat::Hive {
        return Ok(None);
    }
    if !wh
        .exists(&format!("{table}/_delta_log"))
        .map_err(|e| e.to_string())?
    {
        return Ok(Some(Default::default()));
    }
    register_handlers();
    let url = root_url(&wh.location())?
        .join(&format!("{table}/"))
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        match deltalake::open_table(url).await {
            Ok(t) => Ok(Some(
                t.snapshot()
                    .map_err(|e| e.to_string())?
                    .log_data()
                    .iter()
                    .map(|f| f.path().to_string())
                    .collect(),
            )),
            // The log exists but holds no version yet.
            Err(DeltaTableError::NotATable(_)) => Ok(Some(Default::default())),
            Err(e) => Err(format!("reading the Delta table {table}: {e}")),
        }
    })
}

impl Drop for DeltaTables {
    /// The tables (and their stores' clients) go inside the runtime; the
    /// runtime is shut down without waiting, so that dropping works from any
    /// context, an async task's included.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            let guard = rt.enter();
            self.tables
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            drop(guard);
            rt.shutdown_background();
        }
    }
}

/// The Delta side of finishing `record`: each table's files committed with
/// the record's `txn`, skipping tables that have it. `known` holds stats and
/// schemas of files still in memory; other files' footers are read from the
/// warehouse.
pub fn finish_record(
    delta: &DeltaTables,
    wh: &Warehouse,
    record: &CommitRecord,
    known: &HashMap<String, (String, SchemaRef)>,
) -> Result<(), DeltaError> {
    let app = app_id(&record.source, record.partition, record.chain);
    let mut by_table: Vec<(&str, Vec<&CommittedFile>)> = Vec::new();
    for f in &record.files {
        match by_table.iter_mut().find(|(t, _)| *t == f.table) {
            Some((_, v)) => v.push(f),
            None => by_table.push((&f.table, vec![f])),
        }
    }
    for (table, files) in by_table {
        // Recovery (files read back from the warehouse): skip a table that
        // has the range without reading its files. On the commit path
        // `commit` checks in the same read of the log as its commit.
        if files.iter().any(|f| !known.contains_key(&f.path))
            && delta
                .committed(table, &app)?
                .is_some_and(|v| v >= record.end)
        {
            continue;
        }
        let mut adds = Vec::with_capacity(files.len());
        for f in files {
            let (stats, schema) = match known.get(&f.path) {
                Some(k) => k.clone(),
                None => {
                    describe(&Bytes::from(wh.read(&f.path)?)).map_err(|e| table_err(table, e))?
                }
            };
            let rel = f
                .path
                .strip_prefix(&format!("{table}/"))
                .unwrap_or(&f.path)
                .to_owned();
            let day = rel
                .strip_prefix("dt=")
                .and_then(|r| r.split('/').next())
                .unwrap_or("")
                .to_owned();
            adds.push(FileAdd {
                path: rel,
                day,
                size: f.bytes as i64,
                stats,
                schema,
            });
        }
        if delta.commit(table, &app, record.end, &adds)? {
            crate::faults::abort_at("after_delta_table");
            tracing::debug!(
                table,
                partition = record.partition,
                position = record.start,
                "committed {} files to the Delta log (txn {app} = {})",
                adds.len(),
                record.end
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_schema::{Field, Schema};

    #[test]
    fn stats_come_from_the_footer_and_are_exact() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", ArrowType::Utf8, true),
            Field::new("n", ArrowType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("bob"), None, Some("alice")])),
                Arc::new(Int64Array::from(vec![5, -2, 9])),
            ],
        )
        .unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, None).unwrap();
        w.write(&batch).unwrap();
        let data = Bytes::from(w.into_inner().unwrap());
        let (stats, s) = describe(&data).unwrap();
        let v: Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(v["numRecords"], 3);
        assert_eq!(v["nullCount"]["user_id"], 1);
        assert_eq!(v["minValues"]["user_id"], "alice");
        assert_eq!(v["maxValues"]["user_id"], "bob");
        assert_eq!(v["minValues"]["n"], -2);
        assert_eq!(v["maxValues"]["n"], 9);
        assert_eq!(s.fields().len(), 2);
    }

    #[test]
    fn schemas_widen_and_keep_dt_last() {
        let file = |cols: &[(&str, ArrowType)]| FileAdd {
            path: "dt=2024-01-01/a.parquet".into(),
            day: "2024-01-01".into(),
            size: 1,
            stats: "{}".into(),
            schema: Arc::new(Schema::new(
                cols.iter()
                    .map(|(n, t)| Field::new(*n, t.clone(), false))
                    .collect::<Vec<_>>(),
            )),
        };
        let first = widened("t", None, &[file(&[("a", ArrowType::Utf8)])])
            .unwrap()
            .unwrap();
        let names: Vec<_> = first.fields().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["a", "dt"]);
        assert!(first.fields().all(|f| f.is_nullable()));
        assert!(
            widened("t", Some(&first), &[file(&[("a", ArrowType::Utf8)])])
                .unwrap()
                .is_none()
        );
        let second = widened(
            "t",
            Some(&first),
            &[file(&[("a", ArrowType::Utf8), ("b", ArrowType::Int64)])],
        )
        .unwrap()
        .unwrap();
        let names: Vec<_> = second.fields().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["a", "b", "dt"]);
        assert!(widened("t", Some(&second), &[file(&[("b", ArrowType::Utf8)])]).is_err());
    }
}
