//! The two calls of the contract in plain Rust, shared by the Wasm export
//! and by native tests and benchmarks: [`validate`] one event for the API
//! and [`process_batch`] a batch of raw events for the writer.

use std::fmt::Write;

use crate::Plugin;
use crate::columns::{ColumnData, ColumnValues, Columns};
use crate::event::{Event, Reject, Value};

/// One rejected event of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub index: u32,
    pub reason: String,
}

/// What a plugin made of a batch; events in neither `rows` nor `rejected`
/// belong to another event type.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchOutput {
    /// Indices of the events that produced a row, ascending.
    pub rows: Vec<u32>,
    /// One entry per column, each with `rows.len()` values.
    pub columns: Vec<ColumnData>,
    pub rejected: Vec<Rejection>,
}

/// Maps a batch of raw JSON events (`data[ends[i-1]..ends[i]]`) to rows.
/// Events whose `event_type` is not the plugin's are skipped ("not mine").
pub fn process_batch<P: Plugin>(data: &[u8], ends: &[u32]) -> BatchOutput {
    let mut columns = Columns::new(P::INFO.columns, ends.len());
    let mut rows = Vec::with_capacity(ends.len());
    let mut rejected = Vec::new();
    let mut start = 0usize;
    let mut event = Event::default();
    for (index, &end) in ends.iter().enumerate() {
        let end = (end as usize).clamp(start, data.len());
        let raw = &data[start..end];
        start = end;
        if let Err(e) = event.parse_into(raw) {
            rejected.push(Rejection {
                index: index as u32,
                reason: e.0,
            });
            continue;
        }
        match event.get("event_type") {
            Some(Value::Str(t)) if *t == *P::INFO.event_type => {}
            _ => continue,
        }
        let mut row = columns.row();
        crate::log::set_current(Some(index as u32));
        let result = P::map(&event, &mut row);
        crate::log::set_current(None);
        let written = row.written();
        match result {
            Ok(_) => {
                columns.commit(written);
                rows.push(index as u32);
            }
            Err(Reject(reason)) => {
                columns.rollback();
                rejected.push(Rejection {
                    index: index as u32,
                    reason,
                });
            }
        }
    }
    BatchOutput {
        rows,
        columns: columns.data,
        rejected,
    }
}

/// Validates one event for the API: `fields` is a JSON object (path
/// parameters as strings, or a request body). Returns the normalized fields
/// as a JSON object text and the reply, or the reason for rejecting it.
pub fn validate<P: Plugin>(fields: &str) -> Result<(String, String), String> {
    let event = Event::parse(fields.as_bytes()).map_err(|e| e.0)?;
    let mut columns = Columns::new(P::INFO.columns, 1);
    let mut row = columns.row();
    let reply = P::map(&event, &mut row).map_err(|e| e.0)?;
    let written = row.written();
    columns.commit(written);
    let mut json = String::with_capacity(64);
    json.push('{');
    for (i, (spec, col)) in P::INFO.columns.iter().zip(&columns.data).enumerate() {
        if i > 0 {
            json.push(',');
        }
        crate::json::push_str(&mut json, spec.name);
        json.push(':');
        if col.is_null(0) {
            json.push_str("null");
            continue;
        }
        match &col.values {
            ColumnValues::Text { .. } => {
                crate::json::push_str(&mut json, col.text(0).unwrap_or_default())
            }
            ColumnValues::Int64(v) | ColumnValues::Timestamp(v) => {
                let _ = write!(json, "{}", v[0]);
            }
            ColumnValues::Float64(v) => {
                // serde_json writes the shortest exact form and keeps `.0`.
                json.push_str(&serde_json::to_string(&v[0]).unwrap_or_else(|_| "null".into()));
            }
            ColumnValues::Boolean(v) => json.push_str(if v[0] { "true" } else { "false" }),
        }
    }
    json.push('}');
    Ok((json, reply.into_owned()))
}
