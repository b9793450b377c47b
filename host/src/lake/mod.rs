//! Lake maintenance on Delta warehouses (`--table-format delta`):
//! [`compact`] (small files into large ones, each swap one atomic Delta
//! commit), [`vacuum`] (deleting files no version still needs), and
//! [`forget`] (deleting one player's rows from every table, with an audit
//! entry). Hive warehouses refuse them: swapping files in a `dt=` folder
//! cannot be atomic for a reader listing the folder.
//!
//! Each runs beside live writers: the writers' commits are blind appends
//! (`isBlindAppend`), which delta-rs's conflict checker lets through any
//! compaction or delete; a compaction or delete that loses a race against
//! another one that removed the same files fails its commit and changes
//! nothing (its new files are deleted).

pub mod cli;
mod compact;
mod forget;
mod vacuum;

pub use compact::{CompactOptions, CompactReport, compact};
pub use forget::{ForgetReport, forget};
pub use vacuum::{VacuumReport, vacuum};

use deltalake::DeltaTable;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::writer::commit::META_DIR;
use crate::writer::delta::{self, TableFormat};
use crate::writer::warehouse::Warehouse;

/// A maintenance command failed: one line for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LakeError(pub String);

pub(crate) fn err(e: impl std::fmt::Display) -> LakeError {
    LakeError(e.to_string().lines().next().unwrap_or("").to_owned())
}

pub type Result<T> = std::result::Result<T, LakeError>;

/// Checks that `location` holds Delta tables (`what` names the command).
pub fn require_delta(location: &str, what: &str) -> Result<()> {
    let wh = Warehouse::open(location).map_err(err)?;
    match delta::format_of(&wh).map_err(err)? {
        TableFormat::Delta => Ok(()),
        TableFormat::Hive => Err(LakeError(format!(
            "{what} needs a Delta warehouse, and {location} holds Hive tables: their files are \
             read by listing dt= folders, so swapping or rewriting files cannot be atomic for a \
             reader (it would see duplicates or gaps). Write new data with --table-format delta \
             (into a new warehouse) to compact it and delete players' rows"
        ))),
    }
}

/// The Delta tables of the warehouse at `location` (only `table` if given).
pub(crate) async fn tables(
    location: &str,
    only: Option<&str>,
) -> Result<Vec<(String, DeltaTable)>> {
    let (root, store) = root_store(location).await?;
    let listing = store.list_with_delimiter(None).await.map_err(err)?;
    let mut names = crate::query::table_names(&listing);
    if let Some(t) = only {
        if !names.iter().any(|n| n == t) {
            return Err(LakeError(format!("no table {t} in {location}")));
        }
        names.retain(|n| n == t);
    }
    let mut out = Vec::new();
    for name in names {
        let url = root.join(&format!("{name}/")).map_err(err)?;
        match deltalake::open_table(url).await {
            Ok(t) => out.push((name, t)),
            Err(deltalake::DeltaTableError::NotATable(_)) => {}
            Err(e) => return Err(LakeError(format!("table {name}: {e}"))),
        }
    }
    Ok(out)
}

/// Data files under a table's folder (not its log): count and bytes.
pub(crate) async fn stored_files(table: &DeltaTable) -> Result<(usize, u64)> {
    let store = table.log_store().object_store(None);
    let files: Vec<_> = store.list(None).try_collect().await.map_err(err)?;
    let data = files
        .iter()
        .filter(|m| m.location.as_ref().ends_with(".parquet"))
        .filter(|m| !m.location.as_ref().starts_with("_delta_log"));
    Ok(data.fold((0, 0), |(n, b), m| (n + 1, b + m.size)))
}

/// Files and bytes a table's current version references.
pub(crate) fn live_files(table: &DeltaTable) -> Result<(usize, u64)> {
    let snapshot = table.snapshot().map_err(err)?;
    Ok(snapshot
        .log_data()
        .iter()
        .fold((0, 0), |(n, b), f| (n + 1, b + f.size().max(0) as u64)))
}

/// The warehouse root's URL and an object store rooted there (local or
/// HDFS, as delta-rs resolves it).
async fn root_store(location: &str) -> Result<(url::Url, std::sync::Arc<dyn ObjectStore>)> {
    delta::register_handlers();
    let root = delta::root_url(location).map_err(LakeError)?;
    let probe = DeltaTable::try_from_url(root.clone()).await.map_err(err)?;
    Ok((root, probe.log_store().object_store(None)))
}

/// Writes `entry` under `_eventsift/audit/` (a new file each time).
pub(crate) async fn audit(location: &str, kind: &str, entry: &serde_json::Value) -> Result<String> {
    let (_, store) = root_store(location).await?;
    let name = format!(
        "{META_DIR}/audit/{}-{kind}-{}.json",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(':', ""),
        uuid::Uuid::now_v7().simple()
    );
    let body = serde_json::to_vec_pretty(entry).map_err(err)?;
    store
        .put(&StorePath::from(name.as_str()), body.into())
        .await
        .map_err(err)?;
    Ok(name)
}

/// Who runs a command, for the audit: `user@host`.
pub(crate) fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }));
    format!("{user}@{}", crate::writer::hostname())
}
