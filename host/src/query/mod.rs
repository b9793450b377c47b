//! SQL over the warehouse with DataFusion: every table folder is registered
//! as a partitioned Parquet listing table (partition column `dt`, schemas
//! of all files merged, so columns added by newer plugin versions read as
//! null in older files). HDFS warehouses are read through
//! `hdfs-native-object-store`.

pub mod ddl;
pub mod output;
pub mod udf;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::writer::commit::{CommitRecord, META_DIR};

/// A query failed: one line for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

impl QueryError {
    fn from_any(e: impl std::fmt::Display) -> Self {
        // DataFusion errors can span lines (with backtraces or context): keep the first.
        let s = e.to_string();
        QueryError(s.lines().next().unwrap_or("").trim().to_owned())
    }
}

type Result<T> = std::result::Result<T, QueryError>;

/// A table of the warehouse.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    /// Folder URL (`file:///...` or `hdfs://host:port/...`), ending in `/`.
    pub location: String,
    /// Columns of all files merged, without `dt`.
    pub schema: SchemaRef,
    pub files: usize,
    pub bytes: u64,
    pub partitions: BTreeSet<String>,
    /// A Delta table (read through its log) rather than `dt=` folders.
    pub delta: bool,
}

/// A warehouse opened for queries.
pub struct Warehouse {
    pub ctx: SessionContext,
    pub tables: Vec<TableInfo>,
    /// Tables that cannot be read (e.g. files disagreeing on a column's
    /// type), with the reason; the others are served.
    pub damaged: Vec<(String, String)>,
    /// `file:///abs/path/` or `hdfs://host:port/path/`.
    pub root: String,
    store: Arc<dyn ObjectStore>,
    /// The warehouse's path in `store`.
    base: String,
}

/// `(object store URL, path of the warehouse in that store)`.
fn split_location(location: &str) -> Result<(String, String)> {
    if let Some(rest) = location.strip_prefix("hdfs://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        Ok((
            format!("hdfs://{authority}"),
            path.trim_matches('/').to_owned(),
        ))
    } else {
        let local = location.strip_prefix("file://").unwrap_or(location);
        let abs = std::fs::canonicalize(local)
            .map_err(|e| QueryError(format!("warehouse {local}: {e}")))?;
        let abs = abs
            .to_str()
            .ok_or_else(|| QueryError(format!("warehouse {local}: not UTF-8")))?
            .trim_matches('/')
            .to_owned();
        Ok(("file://".to_owned(), abs))
    }
}

impl Warehouse {
    /// Opens the warehouse at `location` and registers its tables.
    pub async fn open(location: &str) -> Result<Warehouse> {
        let (store_url, base) = split_location(location)?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("eventsift", "default");
        let ctx = SessionContext::new_with_config(config);
        udf::register(&ctx);
        let store: Arc<dyn ObjectStore> = if store_url.starts_with("hdfs://") {
            let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
                .with_url(store_url.as_str())
                .build()
                .map_err(QueryError::from_any)?;
            let store: Arc<dyn ObjectStore> = Arc::new(store);
            let url = url::Url::parse(&store_url).map_err(QueryError::from_any)?;
            ctx.register_object_store(&url, store.clone());
            store
        } else {
            Arc::new(object_store::local::LocalFileSystem::new())
        };
        let root = if store_url == "file://" {
            format!("file:///{base}/")
        } else if base.is_empty() {
            format!("{store_url}/")
        } else {
            format!("{store_url}/{base}/")
        };

        let listing = store
            .list_with_delimiter(Some(&StorePath::from(base.as_str())))
            .await
            .map_err(QueryError::from_any)?;
        let names = table_names(&listing);

        let mut tables = Vec::new();
        let mut damaged = Vec::new();
        for name in names {
            match register(&ctx, &*store, &base, &root, &name).await {
                Ok(Some(info)) => tables.push(info),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(table = %name, "table not served: {e}");
                    damaged.push((name, e.0));
                }
            }
        }
        Ok(Warehouse {
            ctx,
            tables,
            damaged,
            root,
            store,
            base,
        })
    }

    /// Runs one SQL statement and collects its result.
    ///
    /// A statement naming a damaged table fails with the table's reason.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let run = async {
            let df = self.ctx.sql(sql).await.map_err(QueryError::from_any)?;
            df.collect().await.map_err(QueryError::from_any)
        };
        run.await.map_err(|e| {
            let lower = sql.to_ascii_lowercase();
            let named = self.damaged.iter().find(|(name, _)| {
                lower
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|w| w == name)
            });
            match named {
                Some((name, why)) => QueryError(format!("table {name} cannot be read: {why}")),
                None => e,
            }
        })
    }
}

/// The table folders of a listing of the warehouse root, sorted (hidden
/// ones, `_eventsift` and the like, left out).
pub(crate) fn table_names(listing: &object_store::ListResult) -> Vec<String> {
    let mut names: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_owned))
        .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Registers table folder `name` (`None`: it holds no files yet).
async fn register(
    ctx: &SessionContext,
    store: &dyn ObjectStore,
    base: &str,
    root: &str,
    name: &str,
) -> Result<Option<TableInfo>> {
    let prefix = StorePath::from(format!("{base}/{name}").trim_start_matches('/'));
    let location = format!("{root}{name}/");
    let delta_log = StorePath::from(format!("{base}/{name}/_delta_log").trim_start_matches('/'));
    let is_delta = store
        .list_with_delimiter(Some(&delta_log))
        .await
        .is_ok_and(|l| !l.objects.is_empty());
    if is_delta {
        return register_delta(ctx, name, location).await.map(Some);
    }
    let files: Vec<_> = store
        .list(Some(&prefix))
        .try_collect::<Vec<_>>()
        .await
        .map_err(QueryError::from_any)?
        .into_iter()
        .filter(|m| {
            // Only components below the table folder count as hidden.
            let below = m.location.prefix_match(&prefix).into_iter().flatten();
            m.location.as_ref().ends_with(".parquet")
                && !below
                    .into_iter()
                    .any(|p| p.as_ref().starts_with('_') || p.as_ref().starts_with('.'))
        })
        .collect();
    let location = format!("{root}{name}/");
    if files.is_empty() {
        return Ok(None);
    }
    let partitions = files
        .iter()
        .filter_map(|m| {
            m.location
                .parts()
                .find_map(|p| p.as_ref().strip_prefix("dt=").map(str::to_owned))
        })
        .collect();
    let url = ListingTableUrl::parse(&location).map_err(QueryError::from_any)?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("dt".to_owned(), DataType::Utf8)]);
    let schema = options
        .infer_schema(&ctx.state(), &url)
        .await
        .map_err(QueryError::from_any)?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema.clone());
    let table = ListingTable::try_new(config).map_err(QueryError::from_any)?;
    ctx.register_table(name, Arc::new(table))
        .map_err(QueryError::from_any)?;
    Ok(Some(TableInfo {
        name: name.to_owned(),
        location,
        schema,
        files: files.len(),
        bytes: files.iter().map(|m| m.size).sum(),
        partitions,
        delta: false,
    }))
}

/// Registers the Delta table at `location` through delta-rs: readers see
/// its latest version, never uncommitted or removed files.
async fn register_delta(ctx: &SessionContext, name: &str, location: String) -> Result<TableInfo> {
    crate::writer::delta::register_handlers();
    let url = url::Url::parse(&location).map_err(QueryError::from_any)?;
    let table = deltalake::open_table(url)
        .await
        .map_err(QueryError::from_any)?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(QueryError::from_any)?;
    let provider = table.table_provider().await.map_err(QueryError::from_any)?;
    let full = provider.schema();
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
        full.fields()
            .iter()
            .filter(|f| f.name() != "dt")
            .cloned()
            .collect::<Vec<_>>(),
    ));
    ctx.register_table(name, provider)
        .map_err(QueryError::from_any)?;
    let snapshot = table.snapshot().map_err(QueryError::from_any)?;
    let mut files = 0;
    let mut bytes = 0u64;
    let mut partitions = BTreeSet::new();
    for f in snapshot.log_data().iter() {
        files += 1;
        bytes += f.size().max(0) as u64;
        if let Some(Some(dt)) = f.partition_values_map().get("dt") {
            partitions.insert(dt.clone());
        }
    }
    Ok(TableInfo {
        name: name.to_owned(),
        location,
        schema,
        files,
        bytes,
        partitions,
        delta: true,
    })
}

impl Warehouse {
    /// Rows of `table` (`SELECT COUNT(*)`).
    pub async fn row_count(&self, table: &str) -> Result<i64> {
        use datafusion::arrow::array::AsArray;
        let batches = self
            .sql(&format!("SELECT COUNT(*) FROM \"{table}\""))
            .await?;
        Ok(batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0))
    }

    /// The newest `committed_at` of each table, from the commit records
    /// (read on demand: only `eventsift tables` needs them).
    pub async fn last_commits(&self) -> BTreeMap<String, String> {
        last_commits(&*self.store, &self.base).await
    }
}

async fn last_commits(store: &dyn ObjectStore, base: &str) -> BTreeMap<String, String> {
    let prefix = StorePath::from(format!("{base}/{META_DIR}/commits").trim_start_matches('/'));
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let Ok(metas) = store.list(Some(&prefix)).try_collect::<Vec<_>>().await else {
        return out;
    };
    for m in metas {
        let name = m.location.filename().unwrap_or("");
        if !name.ends_with(".json") || name.starts_with('.') {
            continue;
        }
        let Ok(got) = store.get(&m.location).await else {
            continue;
        };
        let Ok(bytes) = got.bytes().await else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<CommitRecord>(&bytes) else {
            continue;
        };
        for f in record.files {
            let e = out.entry(f.table).or_default();
            if record.committed_at > *e {
                *e = record.committed_at.clone();
            }
        }
    }
    out
}
