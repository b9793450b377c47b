//! `GET /status.json`: what the status page shows. Plugins (loaded and
//! refused files), tables (rows, files, bytes, last commit, freshness),
//! writer partitions (position, lag, age of the last commit), the latest
//! rejections by reason with a sample each, and ingest and write rates.
//!
//! Everything but the tables is read from memory on each request. The
//! tables are read from the warehouse in the background, at most every
//! [`TABLES_EVERY`] and within [`TABLES_TIMEOUT`]; a request never waits for
//! them (it gets the last reading, with its age).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use super::AdminState;
use crate::plugin::Registry;

pub const PATH: &str = "/status.json";
/// How often the tables are read from the warehouse, at most.
pub const TABLES_EVERY: Duration = Duration::from_secs(5);
/// Bound on one reading of the tables.
pub const TABLES_TIMEOUT: Duration = Duration::from_secs(30);

/// A loaded plugin, as `/plugins` and the page list it.
#[derive(Debug, Serialize)]
pub struct PluginView {
    pub name: String,
    pub version: String,
    pub event_type: String,
    pub table: String,
    pub route: Option<String>,
    /// The file's name only: the host's paths are not the caller's business.
    pub source: String,
    pub contract: String,
    pub loaded_at: String,
}

/// The loaded plugins, by event type.
pub fn plugins(registry: &Registry) -> Vec<PluginView> {
    registry
        .snapshot()
        .plugins()
        .map(|p| PluginView {
            name: p.meta.name.clone(),
            version: p.meta.version.clone(),
            event_type: p.meta.event_type.clone(),
            table: p.meta.table.clone(),
            route: p.meta.route.as_ref().map(|r| r.to_string()),
            source: file_name(&p.source),
            contract: p.contract.version.to_string(),
            loaded_at: humantime::format_rfc3339_millis(p.loaded_at).to_string(),
        })
        .collect()
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The status page's slow and stateful parts: the last reading of the
/// tables and the counters the rates are computed from.
#[derive(Default)]
pub struct StatusCache {
    tables: Mutex<TablesReading>,
    rates: Mutex<Rates>,
}

#[derive(Default)]
struct TablesReading {
    /// When the last reading finished, and what it found.
    last: Option<(Instant, SystemTime, Value)>,
    /// A reading is under way.
    busy: bool,
}

#[derive(Default)]
struct Rates {
    /// The previous sample: when, events accepted, rows written.
    sample: Option<(Instant, f64, f64)>,
    ingest: f64,
    write: f64,
}

/// The sum of every sample of counter `name` in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

impl Rates {
    /// Updates the rates with a new sample (at most once a second, so
    /// several viewers do not shorten the window).
    fn update(&mut self, accepted: f64, rows: f64) {
        let now = Instant::now();
        match self.sample {
            Some((at, a, r)) => {
                let dt = now.duration_since(at).as_secs_f64();
                if dt >= 1.0 {
                    self.ingest = ((accepted - a) / dt).max(0.0);
                    self.write = ((rows - r) / dt).max(0.0);
                    self.sample = Some((now, accepted, rows));
                }
            }
            None => self.sample = Some((now, accepted, rows)),
        }
    }
}

/// The whole status document.
pub async fn collect(state: &std::sync::Arc<AdminState>) -> Value {
    let metrics = {
        crate::writer::metrics::refresh_age();
        crate::api::metrics::handle().render()
    };
    let accepted = metric_sum(&metrics, crate::api::metrics::PUBLISHED);
    let rows = metric_sum(&metrics, crate::writer::metrics::ROWS);
    let (ingest, write) = {
        let mut r = state.status.rates.lock().unwrap_or_else(|p| p.into_inner());
        r.update(accepted, rows);
        (r.ingest, r.write)
    };
    let refused: Vec<Value> = state
        .registry
        .refused()
        .into_iter()
        .map(|(file, reason)| json!({"file": file_name(&file), "reason": reason}))
        .collect();
    let partitions = match &state.writer {
        Some((w, _)) => partitions(w),
        None => Vec::new(),
    };
    let rejections: Vec<Value> = crate::writer::recent::global()
        .list()
        .into_iter()
        .map(|e| {
            json!({
                "stage": e.stage,
                "reason": e.reason,
                "count": e.count,
                "last_at": humantime::format_rfc3339_millis(e.last_at).to_string(),
                "event_type": e.event_type,
                "partition": e.partition,
                "offset": e.offset,
                "sample": e.sample,
            })
        })
        .collect();
    json!({
        "role": state.role,
        "build": crate::build_info(),
        "now": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "health": {
            "live": state.liveness().err(),
            "ready": state.readiness().err(),
        },
        "plugins": plugins(&state.registry),
        "refused": refused,
        "tables": tables(state),
        "partitions": partitions,
        "rejections": rejections,
        "rates": {
            "accepted_per_second": ingest,
            "rows_per_second": write,
        },
        "totals": {
            "accepted": accepted,
            "rejected_by_api": metric_sum(&metrics, crate::api::metrics::REJECTED),
            "rows_written": rows,
            "rejected_by_writer": metric_sum(&metrics, crate::writer::metrics::REJECTED),
        },
    })
}

fn partitions(w: &crate::writer::Status) -> Vec<Value> {
    let committed = w
        .committed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let lag = w.lag.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let stopped = w.stopped.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let at = w
        .commit_times
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut ids: Vec<i32> = committed
        .keys()
        .chain(lag.keys())
        .chain(stopped.keys())
        .copied()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let now = SystemTime::now();
    ids.into_iter()
        .map(|p| {
            json!({
                "partition": p,
                "position": committed.get(&p),
                "lag": lag.get(&p),
                "last_commit_age_seconds": at
                    .get(&p)
                    .map(|t| now.duration_since(*t).unwrap_or_default().as_secs_f64()),
                "stopped": stopped.get(&p),
            })
        })
        .collect()
}

/// The last reading of the tables (starting a new one when it is older
/// than [`TABLES_EVERY`]).
fn tables(state: &std::sync::Arc<AdminState>) -> Value {
    let Some(warehouse) = state.warehouse.clone() else {
        return json!({"note": "this daemon writes no tables; the writer's status page lists them"});
    };
    let mut reading = state
        .status
        .tables
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let stale = reading
        .last
        .as_ref()
        .is_none_or(|(at, _, _)| at.elapsed() >= TABLES_EVERY);
    if stale && !reading.busy {
        reading.busy = true;
        let state = state.clone();
        tokio::spawn(async move {
            let value = match tokio::time::timeout(TABLES_TIMEOUT, read_tables(&warehouse)).await {
                Ok(v) => v,
                Err(_) => json!({"error": format!(
                    "reading the warehouse took more than {} s",
                    TABLES_TIMEOUT.as_secs()
                )}),
            };
            let mut reading = state
                .status
                .tables
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            reading.last = Some((Instant::now(), SystemTime::now(), value));
            reading.busy = false;
        });
    }
    match &reading.last {
        Some((_, at, value)) => {
            let mut v = value.clone();
            v["read_at"] = humantime::format_rfc3339_millis(*at).to_string().into();
            v
        }
        None => json!({"loading": true}),
    }
}

async fn read_tables(location: &str) -> Value {
    let wh = match crate::query::Warehouse::open(location).await {
        Ok(wh) => wh,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let last = wh.last_commits().await;
    let now = SystemTime::now();
    let mut list = Vec::new();
    for t in &wh.tables {
        let rows = wh.row_count(&t.name).await.ok();
        let last_commit = last.get(&t.name).cloned();
        let freshness = last_commit
            .as_deref()
            .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
            .map(|at| now.duration_since(at).unwrap_or_default().as_secs_f64());
        list.push(json!({
            "name": t.name,
            "rows": rows,
            "files": t.files,
            "bytes": t.bytes,
            "partitions": t.partitions.len(),
            "last_commit": last_commit,
            "freshness_seconds": freshness,
        }));
    }
    let damaged: Vec<Value> = wh
        .damaged
        .iter()
        .map(|(name, why)| json!({"name": name, "reason": why}))
        .collect();
    json!({"list": list, "damaged": damaged})
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_sums_add_every_labelled_sample_of_one_name_only() {
        let text = "# TYPE a_total counter\na_total{t=\"x\"} 2\na_total{t=\"y\"} 3\na_total_more 7\na_total 1\n";
        assert_eq!(super::metric_sum(text, "a_total"), 6.0);
        assert_eq!(super::metric_sum(text, "b_total"), 0.0);
    }
}
