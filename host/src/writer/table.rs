//! Table rows in Arrow: the schema of a plugin's table (common columns plus
//! the plugin's own), the `rejected_events` schema, decoding the envelope
//! fields the host fills, and turning a plugin's typed columns into arrays
//! without copying their buffers.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{BinaryBuilder, Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use sha2::Digest;

use crate::plugin::bindings::{ColumnData, ColumnValues};
use crate::plugin::{ColumnType, PluginMeta};

/// The table rejected records go to.
pub const REJECTED_TABLE: &str = "rejected_events";
/// Raw records are stored in `rejected_events` up to this many bytes.
pub const RAW_CUT: usize = 1 << 20;

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Common columns before the plugin's own.
fn head_fields() -> [Field; 11] {
    [
        Field::new("event_id", DataType::Utf8, false),
        Field::new("timestamp", ts_type(), false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("plugin_version", DataType::Utf8, true),
        Field::new("host", DataType::Utf8, true),
        Field::new("user_agent", DataType::Utf8, true),
        Field::new("accept", DataType::Utf8, true),
        // The player: the request's user_id (the Host header on the seed's
        // routes, which carry none, stays in `host`).
        Field::new("user_id", DataType::Utf8, true),
        Field::new("game_id", DataType::Utf8, true),
        // Device time, and server time corrected by the device's skew.
        Field::new("client_ts", ts_type(), true),
        Field::new("event_ts", ts_type(), true),
    ]
}

/// Common columns after the plugin's own.
fn tail_fields() -> [Field; 3] {
    [
        Field::new("raw_event", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
    ]
}

pub fn arrow_type(kind: ColumnType) -> DataType {
    match kind {
        ColumnType::String => DataType::Utf8,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Timestamp => ts_type(),
    }
}

/// The schema of a plugin's table.
pub fn table_schema(meta: &PluginMeta) -> SchemaRef {
    let mut fields: Vec<Field> = head_fields().into();
    fields.extend(
        meta.columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.kind), c.nullable)),
    );
    fields.extend(tail_fields());
    Arc::new(Schema::new(fields))
}

/// The schema of `rejected_events`.
pub fn rejected_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("rejected_at", ts_type(), false),
                Field::new("stage", DataType::Utf8, false),
                Field::new("reason", DataType::Utf8, false),
                Field::new("event_type", DataType::Utf8, true),
                Field::new("plugin", DataType::Utf8, true),
                Field::new("plugin_version", DataType::Utf8, true),
                Field::new("raw", DataType::Binary, false),
                Field::new("raw_length", DataType::Int64, false),
                Field::new("raw_sha256", DataType::Utf8, false),
                Field::new("source_partition", DataType::Int32, false),
                Field::new("source_offset", DataType::Int64, false),
                // The player, when the envelope could be read: deleting a
                // player's data reaches their rejected records too.
                Field::new("user_id", DataType::Utf8, true),
                Field::new("host", DataType::Utf8, true),
            ]))
        })
        .clone()
}

/// The envelope fields the host reads itself.
#[derive(Debug, Deserialize)]
pub struct Head<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    pub plugin_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub host: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub accept: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub game_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub client_ts: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub event_ts: Option<Cow<'a, str>>,
}

/// A decoded record: its envelope head and event time.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub head: Head<'a>,
    /// Event time, µs since the Unix epoch (UTC).
    pub micros: i64,
    /// Device time and skew-corrected time, µs (when the envelope has them).
    pub client_micros: Option<i64>,
    pub event_micros: Option<i64>,
    /// The raw record, checked to be UTF-8.
    pub raw: &'a str,
}

/// Decodes a record's envelope, or says in one line why it cannot.
pub fn decode(payload: &[u8], max_bytes: usize) -> Result<Decoded<'_>, String> {
    if payload.len() > max_bytes {
        return Err(format!(
            "record of {} bytes exceeds the {max_bytes}-byte limit",
            payload.len()
        ));
    }
    let raw = std::str::from_utf8(payload)
        .map_err(|e| format!("record is not valid UTF-8 (at byte {})", e.valid_up_to()))?;
    if !raw.trim_start().starts_with('{') {
        return Err("record is not a JSON object".into());
    }
    let head: Head<'_> = match fast_head(raw) {
        Some(head) => head,
        None => serde_json::from_str(raw).map_err(|e| format!("malformed envelope: {e}"))?,
    };
    let micros = parse_timestamp(&head.timestamp).ok_or_else(|| {
        format!(
            "malformed envelope: timestamp {:?} is not RFC 3339",
            head.timestamp
        )
    })?;
    let optional = |name: &str, v: &Option<Cow<'_, str>>| -> Result<Option<i64>, String> {
        match v {
            None => Ok(None),
            Some(t) => parse_timestamp(t)
                .map(Some)
                .ok_or_else(|| format!("malformed envelope: {name} {t:?} is not RFC 3339")),
        }
    };
    let client_micros = optional("client_ts", &head.client_ts)?;
    let event_micros = optional("event_ts", &head.event_ts)?;
    Ok(Decoded {
        head,
        micros,
        client_micros,
        event_micros,
        raw,
    })
}

/// The envelope head as the API writes it (fields in its order, strings
/// without escapes), read without a JSON parser; `None` sends the record to
/// serde_json. The rest of the record is left to the plugin, whose scanner
/// checks the whole object.
fn fast_head(raw: &str) -> Option<Head<'_>> {
    let s = raw.as_bytes();
    let mut i = 0;
    let lit = |i: &mut usize, l: &[u8]| -> Option<()> {
        s.get(*i..*i + l.len()).filter(|b| *b == l)?;
        *i += l.len();
        Some(())
    };
    let string = |i: &mut usize| -> Option<&str> {
        lit(i, b"\"")?;
        let start = *i;
        loop {
            match *s.get(*i)? {
                b'"' => break,
                b'\\' => return None,
                c if c < 0x20 => return None,
                _ => *i += 1,
            }
        }
        let out = &raw[start..*i];
        *i += 1;
        Some(out)
    };
    let opt_string = |i: &mut usize| -> Option<Option<&str>> {
        if s.get(*i..*i + 4) == Some(b"null") {
            *i += 4;
            Some(None)
        } else {
            string(i).map(Some)
        }
    };
    lit(&mut i, b"{\"event_id\":")?;
    let event_id = string(&mut i)?;
    lit(&mut i, b",\"event_type\":")?;
    let event_type = string(&mut i)?;
    lit(&mut i, b",\"plugin_version\":")?;
    let plugin_version = opt_string(&mut i)?;
    lit(&mut i, b",\"timestamp\":")?;
    let timestamp = string(&mut i)?;
    lit(&mut i, b",\"host\":")?;
    let host = opt_string(&mut i)?;
    lit(&mut i, b",\"user_agent\":")?;
    let user_agent = opt_string(&mut i)?;
    lit(&mut i, b",\"accept\":")?;
    let accept = opt_string(&mut i)?;
    // Then, each when present, in this order.
    let mut extra = |key: &[u8]| -> Option<Option<&str>> {
        if s.get(i..i + key.len()) == Some(key) {
            i += key.len();
            Some(Some(string(&mut i)?))
        } else {
            Some(None)
        }
    };
    let user_id = extra(b",\"user_id\":")?;
    let game_id = extra(b",\"game_id\":")?;
    let client_ts = extra(b",\"client_ts\":")?;
    let event_ts = extra(b",\"event_ts\":")?;
    matches!(s.get(i), Some(b',' | b'}')).then_some(())?;
    Some(Head {
        event_id: Cow::Borrowed(event_id),
        event_type: Cow::Borrowed(event_type),
        timestamp: Cow::Borrowed(timestamp),
        plugin_version: plugin_version.map(Cow::Borrowed),
        host: host.map(Cow::Borrowed),
        user_agent: user_agent.map(Cow::Borrowed),
        accept: accept.map(Cow::Borrowed),
        user_id: user_id.map(Cow::Borrowed),
        game_id: game_id.map(Cow::Borrowed),
        client_ts: client_ts.map(Cow::Borrowed),
        event_ts: event_ts.map(Cow::Borrowed),
    })
}

/// Parses an RFC 3339 UTC timestamp to µs since the epoch (fast path for the
/// API's own `YYYY-MM-DDTHH:MM:SS.ffffffZ`).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let fixed = b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z';
    if fixed {
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let mut v = 0i64;
            for &c in &b[r] {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + i64::from(c - b'0');
            }
            Some(v)
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec, us) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
        if (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && sec < 61 {
            let days = days_from_civil(y, mo, d);
            return Some(((days * 24 + h) * 60 + mi) * 60_000_000 + sec * 1_000_000 + us);
        }
        return None;
    }
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_micros()).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC day (since the epoch) of a µs timestamp.
pub fn day_of(micros: i64) -> i32 {
    micros.div_euclid(86_400_000_000) as i32
}

/// `YYYY-MM-DD` of a day since the epoch.
pub fn date_string(day: i32) -> String {
    let z = i64::from(day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Turns one plugin column into an Arrow array (moving its buffers).
pub fn column_array(col: ColumnData, rows: usize) -> Result<ArrayRef, ArrowError> {
    let nulls = if col.validity.is_empty() {
        None
    } else {
        Some(NullBuffer::new(BooleanBuffer::new(
            Buffer::from_vec(col.validity),
            0,
            rows,
        )))
    };
    Ok(match col.values {
        ColumnValues::Text(t) => {
            let mut offsets = Vec::with_capacity(t.ends.len() + 1);
            offsets.push(0i32);
            for &e in &t.ends {
                offsets.push(
                    i32::try_from(e)
                        .map_err(|_| ArrowError::InvalidArgumentError("text too long".into()))?,
                );
            }
            Arc::new(StringArray::try_new(
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                Buffer::from_vec(t.data),
                nulls,
            )?)
        }
        ColumnValues::Int64(v) => Arc::new(Int64Array::try_new(ScalarBuffer::from(v), nulls)?),
        ColumnValues::Float64(v) => Arc::new(Float64Array::try_new(ScalarBuffer::from(v), nulls)?),
        ColumnValues::Boolean(v) => Arc::new(BooleanArray::new(BooleanBuffer::from(v), nulls)),
        ColumnValues::Timestamp(v) => Arc::new(
            TimestampMicrosecondArray::try_new(ScalarBuffer::from(v), nulls)?.with_timezone("UTC"),
        ),
    })
}

/// One row's host-filled values.
pub struct RowSource<'a> {
    pub decoded: &'a Decoded<'a>,
    pub partition: i32,
    pub offset: i64,
}

/// Builds a table batch: common columns from `rows`, plugin columns from `columns`.
pub fn table_batch(
    schema: &SchemaRef,
    rows: &[RowSource<'_>],
    columns: Vec<ColumnData>,
) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let text = |f: for<'h> fn(&'h Head<'h>) -> Option<&'h str>| text_column(rows, f);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    arrays.push(text(|h| Some(&h.event_id)));
    arrays.push(Arc::new(
        TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.decoded.micros))
            .with_timezone("UTC"),
    ));
    arrays.push(text(|h| Some(&h.event_type)));
    arrays.push(text(|h| h.plugin_version.as_deref()));
    arrays.push(text(|h| h.host.as_deref()));
    arrays.push(text(|h| h.user_agent.as_deref()));
    arrays.push(text(|h| h.accept.as_deref()));
    arrays.push(text(|h| h.user_id.as_deref()));
    arrays.push(text(|h| h.game_id.as_deref()));
    for micros in [
        rows.iter()
            .map(|r| r.decoded.client_micros)
            .collect::<Vec<_>>(),
        rows.iter()
            .map(|r| r.decoded.event_micros)
            .collect::<Vec<_>>(),
    ] {
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(micros).with_timezone("UTC"),
        ));
    }
    for col in columns {
        arrays.push(column_array(col, n)?);
    }
    let raw_bytes = rows.iter().map(|r| r.decoded.raw.len()).sum();
    let mut raw = StringBuilder::with_capacity(n, raw_bytes);
    for r in rows {
        raw.append_value(r.decoded.raw);
    }
    arrays.push(Arc::new(raw.finish()));
    arrays.push(Arc::new(Int32Array::from_iter_values(
        rows.iter().map(|r| r.partition),
    )));
    arrays.push(Arc::new(Int64Array::from_iter_values(
        rows.iter().map(|r| r.offset),
    )));
    RecordBatch::try_new(schema.clone(), arrays)
}

fn text_column(rows: &[RowSource<'_>], f: for<'h> fn(&'h Head<'h>) -> Option<&'h str>) -> ArrayRef {
    let bytes: usize = rows
        .iter()
        .map(|r| f(&r.decoded.head).map_or(0, str::len))
        .sum();
    let mut b = StringBuilder::with_capacity(rows.len(), bytes);
    for r in rows {
        b.append_option(f(&r.decoded.head));
    }
    Arc::new(b.finish())
}

/// Where in the pipeline a record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Not a decodable envelope (not UTF-8, not JSON, fields missing, too large).
    Decode,
    /// No plugin owns its event type (after waiting for one).
    Route,
    /// The plugin rejected it (a field failed validation).
    Plugin,
    /// The plugin trapped or returned an invalid result on it.
    Fault,
    /// The plugin did not claim the event.
    Filter,
    /// The plugin version changes its table's schema incompatibly.
    Schema,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Route => "route",
            Stage::Plugin => "plugin",
            Stage::Fault => "fault",
            Stage::Filter => "filter",
            Stage::Schema => "schema",
        }
    }
}

/// Accumulates `rejected_events` rows.
pub struct RejectedRows {
    at: Vec<i64>,
    stage: StringBuilder,
    reason: StringBuilder,
    event_type: StringBuilder,
    plugin: StringBuilder,
    plugin_version: StringBuilder,
    raw: BinaryBuilder,
    raw_length: Int64Builder,
    raw_sha256: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    user_id: StringBuilder,
    host: StringBuilder,
}

/// One rejected record.
pub struct Rejection<'a> {
    pub at_micros: i64,
    pub stage: Stage,
    pub reason: &'a str,
    pub event_type: Option<&'a str>,
    pub plugin: Option<(&'a str, &'a str)>,
    pub raw: &'a [u8],
    pub partition: i32,
    pub offset: i64,
    /// The player, when the envelope could be read.
    pub user_id: Option<&'a str>,
    pub host: Option<&'a str>,
}

impl Default for RejectedRows {
    fn default() -> Self {
        RejectedRows {
            at: Vec::new(),
            stage: StringBuilder::new(),
            reason: StringBuilder::new(),
            event_type: StringBuilder::new(),
            plugin: StringBuilder::new(),
            plugin_version: StringBuilder::new(),
            raw: BinaryBuilder::new(),
            raw_length: Int64Builder::new(),
            raw_sha256: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            user_id: StringBuilder::new(),
            host: StringBuilder::new(),
        }
    }
}

impl RejectedRows {
    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    pub fn push(&mut self, r: Rejection<'_>) {
        self.at.push(r.at_micros);
        self.stage.append_value(r.stage.as_str());
        self.reason.append_value(r.reason);
        self.event_type.append_option(r.event_type);
        self.plugin.append_option(r.plugin.map(|p| p.0));
        self.plugin_version.append_option(r.plugin.map(|p| p.1));
        self.raw.append_value(&r.raw[..r.raw.len().min(RAW_CUT)]);
        self.raw_length.append_value(r.raw.len() as i64);
        self.raw_sha256
            .append_value(hex::encode(sha2::Sha256::digest(r.raw)));
        self.partition.append_value(r.partition);
        self.offset.append_value(r.offset);
        self.user_id.append_option(r.user_id);
        self.host.append_option(r.host);
    }

    /// The accumulated rows (all rejected at the same time, hence one day).
    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampMicrosecondArray::from(std::mem::take(&mut self.at)).with_timezone("UTC"),
            ),
            Arc::new(self.stage.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.plugin.finish()),
            Arc::new(self.plugin_version.finish()),
            Arc::new(self.raw.finish()),
            Arc::new(self.raw_length.finish()),
            Arc::new(self.raw_sha256.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.host.finish()),
        ];
        RecordBatch::try_new(rejected_schema(), arrays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_dates() {
        let check = |s: &str, micros: i64, date: &str| {
            assert_eq!(parse_timestamp(s), Some(micros), "{s}");
            assert_eq!(date_string(day_of(micros)), date, "{s}");
        };
        check("1970-01-01T00:00:00.000000Z", 0, "1970-01-01");
        check(
            "2026-11-28T18:00:00.123456Z",
            1_795_888_800_123_456,
            "2026-11-28",
        );
        check(
            "2024-02-29T23:59:59.999999Z",
            1_709_251_199_999_999,
            "2024-02-29",
        );
        check("2026-11-28T18:00:00Z", 1_795_888_800_000_000, "2026-11-28");
        check("1969-12-31T23:59:59.000000Z", -1_000_000, "1969-12-31");
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2026-13-28T18:00:00.123456Z"), None);
    }

    #[test]
    fn decode_reasons() {
        let check = |raw: &[u8], want: &str| {
            let got = decode(raw, 64).map(|d| d.head.event_type.into_owned());
            match got {
                Ok(t) => assert_eq!(t, want),
                Err(e) => assert!(e.contains(want), "{e:?} should contain {want:?}"),
            }
        };
        check(
            br#"{"event_id":"a","event_type":"t","timestamp":"2026-11-28T18:00:00Z"}"#,
            "t",
        );
        check(b"not json", "not a JSON object");
        check(b"[1,2]", "not a JSON object");
        check(b"{\"a\":\"\xff\"}", "not valid UTF-8");
        check(br#"{"event_type":"t"}"#, "missing field `event_id`");
        check(
            br#"{"event_id":1,"event_type":"t","timestamp":"x"}"#,
            "invalid type",
        );
        check(
            br#"{"event_id":"a","event_type":"t","timestamp":"x"}"#,
            "not RFC 3339",
        );
        check(&[b' '; 65], "exceeds the 64-byte limit");
    }

    #[test]
    fn the_fast_path_agrees_with_serde_json() {
        let cases = [
            r#"{"event_id":"a","event_type":"t","plugin_version":"0.1.0","timestamp":"2026-11-28T18:00:00.000001Z","host":"h","user_agent":null,"accept":"*/*","color":"red"}"#,
            r#"{"event_id":"a","event_type":"t","plugin_version":null,"timestamp":"2026-11-28T18:00:00.000001Z","host":null,"user_agent":null,"accept":null}"#,
            r#"{"event_id":"a","event_type":"t","plugin_version":"1","timestamp":"2026-11-28T18:00:00.000001Z","host":"h\u00e9","user_agent":null,"accept":null}"#,
            r#"{"event_type":"t","event_id":"a","timestamp":"2026-11-28T18:00:00.000001Z"}"#,
            r#"{"event_id":"a","event_type":"t","plugin_version":"1","timestamp":"2026-11-28T18:00:00.000001Z","host":"h","user_agent":null,"accept":null,"user_id":"p1","game_id":"g","client_ts":"2026-11-28T17:59:00.000000Z","event_ts":"2026-11-28T17:59:30.000000Z","x":1}"#,
            r#"{"event_id":"a","event_type":"t","plugin_version":"1","timestamp":"2026-11-28T18:00:00.000001Z","host":"h","user_agent":null,"accept":null,"client_ts":"2026-11-28T17:59:00.000000Z"}"#,
        ];
        for raw in cases {
            let slow: Head<'_> = serde_json::from_str(raw).unwrap();
            let got = decode(raw.as_bytes(), 1024).unwrap().head;
            let key = |h: &Head<'_>| {
                format!(
                    "{}|{}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                    h.event_id,
                    h.event_type,
                    h.plugin_version,
                    h.timestamp,
                    h.host,
                    h.user_agent,
                    h.accept,
                    h.user_id,
                    h.game_id,
                    h.client_ts,
                    h.event_ts
                )
            };
            assert_eq!(key(&got), key(&slow), "{raw}");
        }
        // Escapes take the slow path.
        assert!(fast_head(cases[2]).is_none());
        assert!(fast_head(cases[0]).is_some());
        let full = fast_head(cases[4]).unwrap();
        assert_eq!(
            (full.user_id.as_deref(), full.game_id.as_deref()),
            (Some("p1"), Some("g"))
        );
        assert!(fast_head(cases[5]).unwrap().client_ts.is_some());
    }
}
