//! The columns each table has ever had, kept in the warehouse so that the
//! rule "a new plugin version may add nullable columns, nothing else"
//! holds across restarts and across processes (an `api` and its `writer`,
//! several writers), not only within one process's memory.
//!
//! Each table has versions `_eventsift/schemas/<table>/<version>.json`,
//! immutable, each published with the warehouse's exclusive rename: a
//! writer that wants to add a column publishes version `n + 1` of what it
//! read; when two race, one wins and the other reads again and checks once
//! more. A version records the event type and plugin that own the table.
//!
//! - [`Schemas::admit`] (the writer, before writing a plugin version's rows):
//!   checks the version against the table's schema and records the columns
//!   it adds; an incompatible version's events go to `rejected_events`.
//! - [`Schemas::check`] (the API and `serve` at plugin load): the same check,
//!   read-only.
//!
//! Which plugin owns an event type, and which table it writes, is kept too
//! (`_eventsift/owners/<event type>.json`, published once): another plugin
//! claiming the type later (a file whose name sorts first after a restart,
//! say) is refused, by [`Schemas::check_owner`] at load and by `admit`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::commit::META_DIR;
use super::warehouse::{Warehouse, WarehouseError};
use crate::plugin::{ColumnSpec, PluginMeta, contract};

/// One version of a table's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub table: String,
    pub version: u32,
    /// The event type whose rows the table holds.
    pub event_type: String,
    /// The plugin that owns that event type.
    pub plugin: String,
    /// Every column the table has had (the plugin's own), in order of
    /// appearance; a column some files lack is nullable.
    pub columns: Vec<ColumnSpec>,
    pub updated_at: String,
    /// `name version` of the plugin that made this version.
    pub updated_by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The plugin version must not write this table.
    #[error("{0}")]
    Incompatible(String),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("schema file {path} is unreadable: {message}")]
    Bad { path: String, message: String },
}

/// The persisted schemas of one warehouse.
pub struct Schemas {
    wh: Arc<Warehouse>,
    /// Latest version read per table.
    cache: Mutex<HashMap<String, TableSchema>>,
    /// Owners read, by event type (they never change).
    owners: Mutex<HashMap<String, Owner>>,
}

fn dir(table: &str) -> String {
    format!("{META_DIR}/schemas/{table}")
}

fn owner_path(event_type: &str) -> String {
    format!("{META_DIR}/owners/{event_type}.json")
}

/// Who owns an event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub event_type: String,
    pub plugin: String,
    pub table: String,
    pub since: String,
}

impl Schemas {
    pub fn new(wh: Arc<Warehouse>) -> Self {
        Schemas {
            wh,
            cache: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
        }
    }

    fn owner(&self, event_type: &str) -> Result<Option<Owner>, SchemaError> {
        if let Some(o) = self
            .owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(event_type)
        {
            return Ok(Some(o.clone()));
        }
        let path = owner_path(event_type);
        let Some(bytes) = self.wh.read_opt(&path)? else {
            return Ok(None);
        };
        let owner: Owner = serde_json::from_slice(&bytes).map_err(|e| SchemaError::Bad {
            path,
            message: e.to_string(),
        })?;
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event_type.to_owned(), owner.clone());
        Ok(Some(owner))
    }

    /// Whether `meta`'s plugin is the one that owns its event type (and
    /// writes the table it names), when the warehouse knows an owner.
    pub fn check_owner(&self, meta: &PluginMeta) -> Result<(), SchemaError> {
        match self.owner(&meta.event_type)? {
            Some(o) if o.plugin != meta.name || o.table != meta.table => {
                Err(SchemaError::Incompatible(format!(
                    "event type {:?} belongs to plugin {} (table {}) since {}; {} {} (table {}) \
                     may not take it over",
                    meta.event_type,
                    o.plugin,
                    o.table,
                    o.since,
                    meta.name,
                    meta.version,
                    meta.table
                )))
            }
            _ => Ok(()),
        }
    }

    /// Records `meta`'s plugin as its event type's owner if it has none.
    fn claim(&self, meta: &PluginMeta) -> Result<(), SchemaError> {
        if self.owner(&meta.event_type)?.is_some() {
            return self.check_owner(meta);
        }
        let owner = Owner {
            event_type: meta.event_type.clone(),
            plugin: meta.name.clone(),
            table: meta.table.clone(),
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        let path = owner_path(&meta.event_type);
        let tmp = format!("{path}.{}", uuid::Uuid::now_v7().simple());
        let tmp = match tmp.rsplit_once('/') {
            Some((d, n)) => format!("{d}/.{n}"),
            None => tmp,
        };
        self.wh.write(
            &tmp,
            Bytes::from(serde_json::to_vec_pretty(&owner).expect("serializes")),
        )?;
        let published = self.wh.publish(&tmp, &path);
        let _ = self.wh.remove(&tmp);
        published?;
        // Ours or a concurrent writer's: either way, check against it.
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&meta.event_type);
        self.check_owner(meta)
    }

    /// The newest version of `table`'s schema, if it has one.
    pub fn latest(&self, table: &str) -> Result<Option<TableSchema>, SchemaError> {
        let versions: Vec<u32> = self
            .wh
            .list(&dir(table))?
            .into_iter()
            .filter_map(|e| e.name.strip_suffix(".json")?.parse().ok())
            .collect();
        let Some(&v) = versions.iter().max() else {
            return Ok(None);
        };
        if let Some(s) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(table)
            && s.version == v
        {
            return Ok(Some(s.clone()));
        }
        let path = format!("{}/{v:06}.json", dir(table));
        let bytes = self.wh.read(&path)?;
        let schema: TableSchema = serde_json::from_slice(&bytes).map_err(|e| SchemaError::Bad {
            path,
            message: e.to_string(),
        })?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(table.to_owned(), schema.clone());
        Ok(Some(schema))
    }

    /// Whether `meta` may write its table, given the table's history
    /// (read-only).
    pub fn check(&self, meta: &PluginMeta) -> Result<(), SchemaError> {
        self.check_owner(meta)?;
        match self.latest(&meta.table)? {
            Some(s) => compatible(&s, meta).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Checks `meta` against its table's schema and records the columns it
    /// adds (publishing a new version).
    pub fn admit(&self, meta: &PluginMeta) -> Result<(), SchemaError> {
        self.claim(meta)?;
        loop {
            let current = self.latest(&meta.table)?;
            let (version, columns) = match &current {
                Some(s) => match compatible(s, meta)? {
                    None => return Ok(()),
                    Some(columns) => (s.version + 1, columns),
                },
                None => (1, meta.columns.clone()),
            };
            let next = TableSchema {
                table: meta.table.clone(),
                version,
                event_type: meta.event_type.clone(),
                plugin: meta.name.clone(),
                columns,
                updated_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                updated_by: format!("{} {}", meta.name, meta.version),
            };
            let json = serde_json::to_vec_pretty(&next).expect("a schema serializes");
            let d = dir(&meta.table);
            let tmp = format!("{d}/.{version:06}.{}", uuid::Uuid::now_v7().simple());
            self.wh.write(&tmp, Bytes::from(json))?;
            let published = self.wh.publish(&tmp, &format!("{d}/{version:06}.json"));
            let _ = self.wh.remove(&tmp);
            if published? {
                tracing::info!(
                    table = %meta.table,
                    "table schema version {version} recorded for {} {}",
                    meta.name,
                    meta.version
                );
                self.cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(meta.table.clone(), next);
                return Ok(());
            }
            // Another writer recorded a version first: check against it.
        }
    }
}

/// `None` when `meta` fits `schema` as it is; the merged columns when it
/// adds some; an error naming the rule it breaks otherwise.
fn compatible(
    schema: &TableSchema,
    meta: &PluginMeta,
) -> Result<Option<Vec<ColumnSpec>>, SchemaError> {
    if schema.event_type != meta.event_type {
        return Err(SchemaError::Incompatible(format!(
            "table {:?} holds event type {:?} (plugin {}), not {:?}",
            schema.table, schema.event_type, schema.plugin, meta.event_type
        )));
    }
    contract::check_schema_change(&schema.columns, &meta.columns).map_err(|why| {
        SchemaError::Incompatible(format!(
            "{} {} changes table {:?} incompatibly with the columns it has had \
             (warehouse schema version {}): {why}",
            meta.name, meta.version, schema.table, schema.version
        ))
    })?;
    let mut merged = schema.columns.clone();
    for c in &mut merged {
        match meta.columns.iter().find(|n| n.name == c.name) {
            Some(n) => c.nullable |= n.nullable,
            // Files of this version lack it.
            None => c.nullable = true,
        }
    }
    for n in &meta.columns {
        if !merged.iter().any(|c| c.name == n.name) {
            merged.push(n.clone());
        }
    }
    let same = merged.len() == schema.columns.len()
        && merged
            .iter()
            .zip(&schema.columns)
            .all(|(a, b)| a.name == b.name && a.kind == b.kind && a.nullable == b.nullable);
    Ok((!same).then_some(merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::ColumnType;

    fn meta(version: &str, columns: &[(&str, ColumnType, bool)]) -> PluginMeta {
        PluginMeta {
            name: "sword".into(),
            version: version.into(),
            event_type: "purchase_sword".into(),
            table: "sword_purchases".into(),
            columns: columns
                .iter()
                .map(|(n, k, nullable)| ColumnSpec {
                    name: (*n).into(),
                    kind: *k,
                    nullable: *nullable,
                    description: String::new(),
                })
                .collect(),
            route: None,
        }
    }

    #[test]
    fn history_is_kept_across_instances() {
        use ColumnType::*;
        let dir = tempfile::tempdir().unwrap();
        let wh = Arc::new(Warehouse::open(dir.path().to_str().unwrap()).unwrap());
        let v1 = meta(
            "0.1.0",
            &[("color", String, false), ("quantity", Int64, false)],
        );
        let v2 = meta(
            "0.2.0",
            &[
                ("color", String, false),
                ("quantity", Int64, false),
                ("engraving", String, true),
            ],
        );
        let v3 = meta(
            "0.3.0",
            &[("color", String, false), ("quantity", String, false)],
        );
        Schemas::new(wh.clone()).admit(&v1).unwrap();
        Schemas::new(wh.clone()).admit(&v2).unwrap();
        // A new process: v1 still fits (engraving is nullable), v3 does not.
        let s = Schemas::new(wh.clone());
        s.admit(&v1).unwrap();
        let err = s.admit(&v3).unwrap_err().to_string();
        assert!(
            err.contains("column \"quantity\" changes type from int64 to string"),
            "{err}"
        );
        assert!(s.check(&v3).is_err());
        let latest = s.latest("sword_purchases").unwrap().unwrap();
        assert_eq!(latest.version, 2);
        assert_eq!(latest.columns.len(), 3);
        // A column dropped and then re-added with another type is refused.
        let v4 = meta(
            "0.4.0",
            &[
                ("color", String, false),
                ("quantity", Int64, false),
                ("engraving", Int64, true),
            ],
        );
        assert!(s.admit(&v4).is_err());
        let mut other = v1.clone();
        other.event_type = "purchase_dagger".into();
        assert!(
            s.check(&other)
                .unwrap_err()
                .to_string()
                .contains("holds event type")
        );
    }
}
