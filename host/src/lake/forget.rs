//! `eventsift forget --user U [--game G]`: deletes one player's rows from
//! every table, `rejected_events` included, each table in one Delta commit
//! (delta-rs's DELETE: files holding the player's rows are rewritten
//! without them; files whose statistics rule the player out are not read).
//! The player is the `user_id` column, or the `host` column for the seed's
//! routes, whose player is the `Host` value. With `--game`, only rows of
//! that game (tables without a `game_id` column: all the player's rows,
//! since their game is not recorded). An audit entry (who, when, what, how
//! many) goes to `_eventsift/audit/`. The bytes stay in removed files until
//! `vacuum` runs past the retention.

use std::collections::BTreeMap;

use datafusion::prelude::{col, lit};
use serde::Serialize;

use super::{LakeError, Result, err};

#[derive(Debug, Default, Clone, Serialize)]
pub struct ForgetReport {
    /// Rows removed per table.
    pub rows: BTreeMap<String, u64>,
    /// Where the audit entry was written (relative to the warehouse).
    pub audit: String,
}

/// Deletes `user`'s rows (of `game`, if given) from every table of `location`.
pub async fn forget(location: &str, user: &str, game: Option<&str>) -> Result<ForgetReport> {
    if user.is_empty() {
        return Err(LakeError("--user must not be empty".into()));
    }
    let mut rows = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for (name, table) in super::tables(location, None).await? {
        let snapshot = table.snapshot().map_err(err)?;
        let schema = snapshot.schema();
        let has = |c: &str| schema.fields().any(|f| f.name() == c);
        let mut player = None;
        for c in ["user_id", "host"] {
            if has(c) {
                let e = col(c).eq(lit(user));
                player = Some(match player {
                    None => e,
                    Some(p) => datafusion::logical_expr::Expr::or(p, e),
                });
            }
        }
        let Some(mut predicate) = player else {
            continue;
        };
        if let Some(g) = game
            && has("game_id")
        {
            predicate = predicate.and(col("game_id").eq(lit(g)));
        }
        let mut attempts = 0;
        let mut table = table;
        let (after, metrics) = loop {
            attempts += 1;
            match table
                .clone()
                .delete()
                .with_predicate(predicate.clone())
                .await
            {
                Ok(done) => break done,
                // Another commit removed files this delete read (a
                // compaction): read the log again and retry.
                Err(e) if attempts < 5 => {
                    tracing::warn!(table = %name, "forget: {e}; retrying");
                    table.update_incremental(None).await.map_err(err)?;
                }
                Err(e) => return Err(LakeError(format!("table {name}: {e}"))),
            }
        };
        let removed = metrics.num_deleted_rows.unwrap_or(0) as u64;
        rows.insert(name.clone(), removed);
        versions.insert(name, after.version());
    }
    let entry = serde_json::json!({
        "action": "forget",
        "who": super::who(),
        "when": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        "user": user,
        "game": game,
        "rows_removed": rows,
        "table_versions": versions,
        "bytes_remain_until": "eventsift vacuum removes the rewritten files once they are older than its --retain",
    });
    let audit = super::audit(location, "forget", &entry).await?;
    Ok(ForgetReport { rows, audit })
}
