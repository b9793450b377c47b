//! `eventsift plugin test`: sample events through a component, as the
//! daemon would run them.
//!
//! Each input is validated as the API validates it (`validate`, in the
//! sandbox), turned into the envelope the API would publish, and the
//! envelopes go through the writer's own [`Router`] (`process` in batches,
//! Arrow rows with every common column, `rejected_events` for what the
//! plugin rejects or faults on). Inputs are lines of a samples file, each
//! a `/v1/batch` item (`event_type`, optional `event_id`, `user_id`,
//! `client_ts`, then the plugin's fields), or of a routes file, each a
//! request line such as `POST /purchase_a_horse/1/small/1`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};

use std::borrow::Cow;

use axum::http::Method;

use crate::api::batch::Item;
use crate::api::envelope::{self, EventIdText, RequestMeta};
use crate::api::routes::Routes;
use crate::plugin::sandbox::Limits;
use crate::plugin::{Change, LoadedPlugin, Registry, Runtime, RuntimeConfig, Validated};
use crate::writer::router::Router;
use crate::writer::schemas::Schemas;
use crate::writer::source::Chunk;
use crate::writer::warehouse::Warehouse;

/// Where the inputs come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A samples file (`-`: standard input).
    Samples(PathBuf),
    /// A file of request lines.
    Routes(PathBuf),
}

#[derive(Debug, Clone)]
pub struct TestOptions {
    pub wasm: PathBuf,
    pub inputs: Vec<Input>,
    pub limits: Limits,
    /// Widest cell printed (longer values are cut with `…`).
    pub max_cell: usize,
    /// Plugin log lines below this level are not shown.
    pub log_level: crate::plugin::LogLevel,
}

/// What `plugin test` saw.
#[derive(Debug, Default)]
pub struct Report {
    pub text: String,
    pub events: usize,
    pub rows: usize,
    /// Rejections by `validate` or `process`, and unusable inputs.
    pub rejected: usize,
    pub faults: u64,
    /// Log lines the plugin wrote (shown in `text`).
    pub log_lines: usize,
}

struct Sample {
    origin: String,
    fields: Result<String, String>,
    event_type: Option<String>,
    client_id: Option<String>,
    user_id: Option<String>,
    client_ts: Option<i64>,
}

fn read_input(input: &Input) -> anyhow::Result<(String, String)> {
    let (path, what) = match input {
        Input::Samples(p) | Input::Routes(p) => (p, p.display().to_string()),
    };
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(("stdin".into(), s));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {what}: {e}"))?;
    Ok((what, text))
}

/// One samples line, read as the batch endpoint reads an event: host keys
/// apart, the rest the plugin's fields (in the order written).
fn sample_line(origin: String, line: &str) -> Sample {
    let mut s = Sample {
        origin,
        fields: Err(String::new()),
        event_type: None,
        client_id: None,
        user_id: None,
        client_ts: None,
    };
    let read = |s: &mut Sample| -> Result<String, String> {
        let item = Item::parse(line)?;
        s.event_type = item.event_type()?.map(Cow::into_owned);
        s.user_id = item.user_id(None)?.map(Cow::into_owned);
        s.client_id = item.client_id()?.map(Cow::into_owned);
        s.client_ts = item.client_ts()?;
        Ok(item.fields)
    };
    s.fields = read(&mut s);
    s
}

/// One routes line, matched as the API matches it: the route's
/// parameters as strings (percent-decoded).
fn route_line(origin: String, line: &str, plugin: &LoadedPlugin, routes: &Routes) -> Sample {
    let (method, path) = line.split_once(' ').unwrap_or(("", line));
    let fields = match (&plugin.meta.route, Method::from_bytes(method.as_bytes())) {
        (None, _) => Err("the plugin declares no route".to_owned()),
        (Some(route), Ok(method)) => match routes.find(&method, path.trim()) {
            Some(found) => found.fields(),
            None => Err(format!("does not match the plugin's route {route}")),
        },
        (Some(route), Err(_)) => Err(format!("does not match the plugin's route {route}")),
    };
    Sample {
        origin,
        fields,
        event_type: Some(plugin.meta.event_type.clone()),
        client_id: None,
        user_id: None,
        client_ts: None,
    }
}

/// Values of text columns cut to `max` characters, for display.
fn cut(batch: &RecordBatch, max: usize) -> anyhow::Result<RecordBatch> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| -> ArrayRef {
            match c.as_any().downcast_ref::<StringArray>() {
                Some(text) => Arc::new(
                    text.iter()
                        .map(|v| {
                            v.map(|v| {
                                if v.chars().count() > max {
                                    let mut s: String = v.chars().take(max).collect();
                                    s.push('…');
                                    s
                                } else {
                                    v.to_owned()
                                }
                            })
                        })
                        .collect::<StringArray>(),
                ),
                None => c.clone(),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Runs the inputs through the component and renders what happened.
pub fn run(options: &TestOptions) -> anyhow::Result<Report> {
    let wasm = std::fs::read(&options.wasm)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", options.wasm.display()))?;
    let runtime = Runtime::new(RuntimeConfig {
        limits: options.limits.clone(),
        cache_dir: None,
        log: crate::plugin::LogConfig {
            level: options.log_level,
            ..Default::default()
        },
    })?;
    // The daemon's registry over a folder holding this one file.
    let folder = tempfile::tempdir()?;
    let file = folder.path().join(
        options
            .wasm
            .file_name()
            .unwrap_or_else(|| std::ffi::OsStr::new("plugin.wasm")),
    );
    std::fs::write(&file, &wasm)?;
    // Old enough for the registry's stability window.
    std::fs::File::options()
        .write(true)
        .open(&file)?
        .set_modified(SystemTime::now() - Duration::from_secs(60))?;
    let registry = Registry::new(runtime.clone(), folder.path());
    let t0 = Instant::now();
    let report = registry.sync();
    let load = t0.elapsed();
    if let Some(Change::Refused { reason, .. }) = report
        .changes
        .iter()
        .find(|c| matches!(c, Change::Refused { .. }))
    {
        anyhow::bail!(
            "{} is not a valid eventsift plugin: {reason}",
            options.wasm.display()
        );
    }
    let plugin = registry
        .snapshot()
        .plugins()
        .next()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{} did not load", options.wasm.display()))?;
    let m = &plugin.meta;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plugin    {} {}: {} -> {} (loaded in {} ms)",
        m.name,
        m.version,
        m.event_type,
        m.table,
        load.as_millis()
    );

    let routes = Routes::build(&registry.snapshot());
    let mut samples = Vec::new();
    for input in &options.inputs {
        let (what, text) = read_input(input)?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let origin = format!("{what}:{}", n + 1);
            samples.push(match input {
                Input::Samples(_) => sample_line(origin, line),
                Input::Routes(_) => route_line(origin, line, &plugin, &routes),
            });
        }
    }
    let mut result = Report {
        events: samples.len(),
        ..Report::default()
    };

    // validate, as the API does; accepted events become envelopes.
    let received = SystemTime::now();
    let mut chunk = Chunk::default();
    let mut lines = Vec::new();
    let mut validate_time = Duration::ZERO;
    let mut validated = 0u32;
    let mut api_rejections = String::new();
    let mut logs = String::new();
    for s in &samples {
        let fields = match (&s.fields, &s.event_type) {
            (Err(e), _) => Err(e.clone()),
            (Ok(_), Some(t)) if *t != m.event_type => Err(format!(
                "event_type {t:?} is not this plugin's ({})",
                m.event_type
            )),
            (Ok(f), _) => {
                let t = Instant::now();
                let (v, lines) = plugin.validate_with_logs(f);
                validate_time += t.elapsed();
                for l in lines {
                    let _ = writeln!(logs, "  {} validate {:<5} {}", s.origin, l.level, l.message);
                }
                validated += 1;
                match v {
                    Validated::Accepted { fields, .. } => Ok(fields),
                    Validated::Rejected(reason) => Err(reason),
                }
            }
        };
        match fields {
            Ok(fields) => {
                let meta = RequestMeta {
                    host: Some("localhost"),
                    user_agent: Some(concat!("eventsift-plugin-test/", env!("CARGO_PKG_VERSION"))),
                    accept: None,
                    user_id: s.user_id.as_deref(),
                    game_id: None,
                    client_ts: s.client_ts,
                    event_ts: None,
                };
                let id = match &s.client_id {
                    Some(c) => envelope::derived_event_id(None, s.user_id.as_deref(), c),
                    None => envelope::new_event_id(received),
                };
                let env = envelope::build(
                    &EventIdText::new(&id),
                    &m.event_type,
                    &m.version,
                    received,
                    &meta,
                    &fields,
                );
                chunk.offsets.push(chunk.offsets.len() as i64);
                chunk.data.extend_from_slice(env.as_bytes());
                chunk.ends.push(chunk.data.len());
                lines.push(s.origin.clone());
            }
            Err(reason) => {
                result.rejected += 1;
                let _ = writeln!(api_rejections, "  {}: {reason}", s.origin);
            }
        }
    }
    let _ = writeln!(
        out,
        "validate  {} events: {} accepted, {} rejected{}",
        samples.len(),
        chunk.offsets.len(),
        result.rejected,
        if validated > 0 {
            format!(
                " ({:.1} µs per event)",
                validate_time.as_secs_f64() * 1e6 / f64::from(validated)
            )
        } else {
            String::new()
        }
    );
    out.push_str(&api_rejections);

    // process, through the writer's router, into the table's rows.
    let warehouse = tempfile::tempdir()?;
    let wh = Arc::new(Warehouse::open(&warehouse.path().display().to_string())?);
    let mut router = Router::new(
        registry.clone(),
        Arc::new(Schemas::new(wh)),
        Duration::ZERO,
        crate::writer::WriterConfig::default().max_record_bytes,
    )
    .keep_logs();
    let faults_before = plugin.faults();
    let t = Instant::now();
    let routed = if chunk.offsets.is_empty() {
        None
    } else {
        router.route(&chunk, 0, &AtomicBool::new(false))
    };
    let process_time = t.elapsed();
    result.faults = plugin.faults() - faults_before;
    for l in router.take_logs() {
        let origin = match l.position {
            Some((_, offset)) => lines
                .get(offset as usize)
                .map_or("?", String::as_str)
                .to_owned(),
            None => "batch".to_owned(),
        };
        let _ = writeln!(
            logs,
            "  {origin} process  {:<5} {}",
            l.line.level, l.line.message
        );
    }
    result.log_lines = logs.lines().count();
    let mut tables = String::new();
    let mut rows = 0usize;
    let mut process_rejected = 0usize;
    for tb in routed.map(|r| r.tables).unwrap_or_default() {
        let n = tb.batch.num_rows();
        if tb.table.as_ref() == crate::writer::table::REJECTED_TABLE {
            process_rejected += n;
        } else {
            rows += n;
        }
        let _ = writeln!(
            tables,
            "\n{} ({n} rows, dt={})",
            tb.table,
            crate::writer::table::date_string(tb.day)
        );
        for f in tb.batch.schema().fields() {
            let _ = writeln!(
                tables,
                "  {:<18} {:<28} {}",
                f.name(),
                f.data_type().to_string(),
                if f.is_nullable() { "null" } else { "not null" }
            );
        }
        let shown = cut(&tb.batch, options.max_cell)?;
        let _ = writeln!(
            tables,
            "{}",
            crate::query::output::render(&[shown], crate::query::output::Format::Table)
                .map_err(|e| anyhow::anyhow!("{e}"))?
        );
    }
    result.rows = rows;
    result.rejected += process_rejected;
    let _ = writeln!(
        out,
        "process   {} events: {rows} rows, {process_rejected} to rejected_events, {} faults ({:.1} µs per event)",
        chunk.offsets.len(),
        result.faults,
        if chunk.offsets.is_empty() {
            0.0
        } else {
            process_time.as_secs_f64() * 1e6 / chunk.offsets.len() as f64
        }
    );
    out.push_str(&tables);
    let budget = plugin.log_budget();
    let (below, over) = budget.dropped();
    if plugin.contract.logs() {
        let _ = writeln!(
            out,
            "\nlog       {} lines{}{}",
            result.log_lines,
            if below > 0 {
                format!(", {below} below {}", options.log_level)
            } else {
                String::new()
            },
            if over > 0 {
                format!(", {over} over the rate limit")
            } else {
                String::new()
            },
        );
        out.push_str(&logs);
    } else {
        let _ = writeln!(
            out,
            "\nlog       none: built against {}, which has no log import",
            plugin.contract.export
        );
    }
    result.text = out;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_split_host_keys_from_fields() {
        let s = sample_line(
            "x:1".into(),
            r#"{"event_type":"purchase_sword","event_id":"a-1","user_id":"p1","client_ts":1700000000000,"color":"red","quantity":2}"#,
        );
        assert_eq!(s.fields.as_deref(), Ok(r#"{"color":"red","quantity":2}"#));
        assert_eq!(s.event_type.as_deref(), Some("purchase_sword"));
        assert_eq!(s.client_id.as_deref(), Some("a-1"));
        assert_eq!(s.user_id.as_deref(), Some("p1"));
        assert_eq!(s.client_ts, Some(1_700_000_000_000_000));
        let bad = sample_line("x:2".into(), "[1]");
        assert!(
            bad.fields
                .as_ref()
                .is_err_and(|e| e.starts_with("not an event object: ")),
            "{:?}",
            bad.fields
        );
    }
}
