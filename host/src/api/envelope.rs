//! The event envelope the API publishes: one JSON object per event with the
//! request's metadata and the plugin-normalized fields.
//!
//! `{"event_id":"<uuid v7>","event_type":"purchase_sword","plugin_version":"0.1.0",
//!   "timestamp":"2026-11-28T18:00:00.123456Z","host":"user1.comcast.com",
//!   "user_agent":"ApacheBench/2.3","accept":"*/*","color":"red","quantity":2}`

use std::fmt::Write;
use std::time::SystemTime;

/// The request metadata stored with every event (absent headers are null).
#[derive(Debug, Clone, Default)]
pub struct RequestMeta<'a> {
    pub host: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub accept: Option<&'a str>,
}

/// Builds the envelope. `fields` is the JSON object a plugin's `validate`
/// returned (checked by the host to be an object).
pub fn build(
    event_id: &uuid::Uuid,
    event_type: &str,
    plugin_version: &str,
    received: SystemTime,
    meta: &RequestMeta<'_>,
    fields: &str,
) -> String {
    let mut out = String::with_capacity(192 + fields.len());
    out.push_str("{\"event_id\":\"");
    let _ = write!(out, "{}", event_id.hyphenated());
    out.push_str("\",\"event_type\":");
    push_str(&mut out, event_type);
    out.push_str(",\"plugin_version\":");
    push_str(&mut out, plugin_version);
    out.push_str(",\"timestamp\":\"");
    let _ = write!(out, "{}", humantime::format_rfc3339_micros(received));
    out.push_str("\",\"host\":");
    push_opt(&mut out, meta.host);
    out.push_str(",\"user_agent\":");
    push_opt(&mut out, meta.user_agent);
    out.push_str(",\"accept\":");
    push_opt(&mut out, meta.accept);
    let inner = fields
        .trim()
        .strip_prefix('{')
        .and_then(|f| f.strip_suffix('}'))
        .unwrap_or("")
        .trim();
    if !inner.is_empty() {
        out.push(',');
        out.push_str(inner);
    }
    out.push('}');
    out
}

fn push_opt(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) => push_str(out, v),
        None => out.push_str("null"),
    }
}

/// Appends `s` as a JSON string.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_valid_json_with_every_field() {
        let id = uuid::Uuid::now_v7();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_764_352_800_123_456);
        let meta = RequestMeta {
            host: Some("user1.comcast.com"),
            user_agent: Some("ab \"2.3\"\n"),
            accept: None,
        };
        let env = build(
            &id,
            "purchase_sword",
            "0.1.0",
            t,
            &meta,
            r#"{"color":"red","quantity":2}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&env).unwrap();
        assert_eq!(v["event_id"], id.to_string());
        assert_eq!(v["timestamp"], "2025-11-28T18:00:00.123456Z");
        assert_eq!(v["host"], "user1.comcast.com");
        assert_eq!(v["user_agent"], "ab \"2.3\"\n");
        assert_eq!(v["accept"], serde_json::Value::Null);
        assert_eq!(v["quantity"], 2);
        let empty = build(&id, "default", "0.1.0", t, &meta, "{}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&empty).is_ok(),
            "{empty}"
        );
        let mut s = String::new();
        push_str(&mut s, "\u{1}é");
        assert_eq!(s, "\"\\u0001é\"");
    }
}
