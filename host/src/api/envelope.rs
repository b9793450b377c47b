//! The event envelope the API publishes: one JSON object per event with the
//! request's metadata and the plugin-normalized fields.
//!
//! `{"event_id":"<uuid v7>","event_type":"purchase_sword","plugin_version":"0.1.0",
//!   "timestamp":"2026-11-28T18:00:00.123456Z","host":"user1.comcast.com",
//!   "user_agent":"ApacheBench/2.3","accept":"*/*","color":"red","quantity":2}`
//!
//! After `accept`, when the request gave them, come `user_id`, `game_id`,
//! `client_ts` and `event_ts` (device time, and the server time corrected
//! by the device's clock skew), each absent when unknown. An event the
//! client named (a batch item's `event_id`, an `Idempotency-Key`) gets an
//! id derived from game, player and that name ([`derived_event_id`], a
//! UUIDv8): a retry carries the same id, which the writer deduplicates.

use std::cell::RefCell;
use std::fmt::Write;
use std::time::SystemTime;

/// The request metadata stored with every event (absent headers are null).
#[derive(Debug, Clone, Default)]
pub struct RequestMeta<'a> {
    pub host: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub accept: Option<&'a str>,
    /// The player (a batch's or event's `user_id`).
    pub user_id: Option<&'a str>,
    /// The game of the write key the request used.
    pub game_id: Option<&'a str>,
    /// Device time, µs since the epoch.
    pub client_ts: Option<i64>,
    /// Server time corrected by the device's clock skew, µs.
    pub event_ts: Option<i64>,
}

/// The id of an event the client named `client_id`: a UUIDv8 from
/// SHA-256 of game, player and that name, so the same event sent again
/// (a retry, to any API node) has the same id.
pub fn derived_event_id(game: Option<&str>, user: Option<&str>, client_id: &str) -> uuid::Uuid {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"eventsift/event-id/1\0");
    h.update(game.unwrap_or("").as_bytes());
    h.update(b"\0");
    h.update(user.unwrap_or("").as_bytes());
    h.update(b"\0");
    h.update(client_id.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Whether `id` (hyphenated text) was derived from a client's own id.
pub fn is_derived(id: &str) -> bool {
    // The version digit of a hyphenated UUID is its 15th character.
    id.as_bytes().get(14) == Some(&b'8')
}

/// A new event id: a UUIDv7 carrying `received`'s millisecond, so the id
/// and the envelope's `timestamp` agree. The 74 random bits come from the
/// OS generator, fetched 4 KiB at a time per thread (one `getrandom` call
/// per 409 ids instead of one per id).
pub fn new_event_id(received: SystemTime) -> uuid::Uuid {
    const POOL: usize = 4096;
    const TAKE: usize = 10;
    struct Pool {
        bytes: [u8; POOL],
        used: usize,
    }
    thread_local! {
        static RANDOM: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL], used: POOL }) };
    }
    let mut random = [0u8; TAKE];
    RANDOM.with_borrow_mut(|pool| {
        if pool.used + TAKE > POOL {
            if getrandom::fill(&mut pool.bytes).is_err() {
                // No OS randomness (never seen on Linux): std's randomly
                // keyed hasher over a counter.
                use std::hash::{BuildHasher, Hasher};
                let keys = std::hash::RandomState::new();
                for (i, chunk) in pool.bytes.chunks_mut(8).enumerate() {
                    let mut h = keys.build_hasher();
                    h.write_usize(i);
                    chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
                }
            }
            pool.used = 0;
        }
        random.copy_from_slice(&pool.bytes[pool.used..pool.used + TAKE]);
        pool.used += TAKE;
    });
    let millis = received
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// An event id as text (36 bytes, hyphenated, lower case), without a
/// formatter or an allocation.
pub struct EventIdText([u8; uuid::fmt::Hyphenated::LENGTH]);

impl EventIdText {
    pub fn new(id: &uuid::Uuid) -> Self {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        id.hyphenated().encode_lower(&mut buf);
        EventIdText(buf)
    }

    pub fn as_str(&self) -> &str {
        // encode_lower writes ASCII hex digits and hyphens only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl serde::Serialize for EventIdText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Builds the envelope. `fields` is the JSON object a plugin's `validate`
/// returned (checked by the host to be an object).
pub fn build(
    event_id: &EventIdText,
    event_type: &str,
    plugin_version: &str,
    received: SystemTime,
    meta: &RequestMeta<'_>,
    fields: &str,
) -> String {
    let mut out = String::with_capacity(192 + fields.len());
    out.push_str("{\"event_id\":\"");
    out.push_str(event_id.as_str());
    out.push_str("\",\"event_type\":");
    push_str(&mut out, event_type);
    out.push_str(",\"plugin_version\":");
    push_str(&mut out, plugin_version);
    out.push_str(",\"timestamp\":\"");
    push_timestamp(&mut out, received);
    out.push_str("\",\"host\":");
    push_opt(&mut out, meta.host);
    out.push_str(",\"user_agent\":");
    push_opt(&mut out, meta.user_agent);
    out.push_str(",\"accept\":");
    push_opt(&mut out, meta.accept);
    if let Some(u) = meta.user_id {
        out.push_str(",\"user_id\":");
        push_str(&mut out, u);
    }
    if let Some(g) = meta.game_id {
        out.push_str(",\"game_id\":");
        push_str(&mut out, g);
    }
    for (key, micros) in [("client_ts", meta.client_ts), ("event_ts", meta.event_ts)] {
        if let Some(m) = micros {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":\"");
            push_timestamp(
                &mut out,
                SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(m.max(0) as u64),
            );
            out.push('"');
        }
    }
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

/// Appends `t` as RFC 3339 UTC with microseconds, as
/// `humantime::format_rfc3339_micros` writes it. The text up to the second
/// is formatted once per second and thread; a request appends the last
/// seven characters.
fn push_timestamp(out: &mut String, t: SystemTime) {
    thread_local! {
        /// (second since the epoch, `YYYY-MM-DDTHH:MM:SS.`)
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let Ok(since) = t.duration_since(SystemTime::UNIX_EPOCH) else {
        let _ = write!(out, "{}", humantime::format_rfc3339_micros(t));
        return;
    };
    let (secs, micros) = (since.as_secs(), since.subsec_micros());
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != secs {
            let whole = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            prefix.clear();
            let _ = write!(prefix, "{}", humantime::format_rfc3339_seconds(whole));
            prefix.pop(); // the `Z`
            prefix.push('.');
            *second = secs;
        }
        out.push_str(prefix);
    });
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
    out.push('Z');
}

fn push_opt(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) => push_str(out, v),
        None => out.push_str("null"),
    }
}

/// Appends `s` as a JSON string.
pub use eventsift_sdk::json::push_str;

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
            ..Default::default()
        };
        let env = build(
            &EventIdText::new(&id),
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
        let empty = build(&EventIdText::new(&id), "default", "0.1.0", t, &meta, "{}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&empty).is_ok(),
            "{empty}"
        );
        let mut s = String::new();
        push_str(&mut s, "\u{1}é");
        assert_eq!(s, "\"\\u0001é\"");
    }

    #[test]
    fn player_and_device_time_and_derived_ids() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_764_352_800_000_000);
        let meta = RequestMeta {
            user_id: Some("p1"),
            game_id: Some("g1"),
            client_ts: Some(1_764_352_790_000_000),
            event_ts: Some(1_764_352_795_000_000),
            ..Default::default()
        };
        let id = derived_event_id(Some("g1"), Some("p1"), "e-1");
        assert_eq!(id, derived_event_id(Some("g1"), Some("p1"), "e-1"));
        assert_ne!(id, derived_event_id(Some("g2"), Some("p1"), "e-1"));
        assert_ne!(id, derived_event_id(Some("g1"), Some("p2"), "e-1"));
        assert_eq!(id.get_version_num(), 8);
        let text = EventIdText::new(&id);
        assert!(is_derived(text.as_str()));
        assert!(!is_derived(EventIdText::new(&new_event_id(t)).as_str()));
        let env = build(&text, "t", "0.1.0", t, &meta, r#"{"a":1}"#);
        let v: serde_json::Value = serde_json::from_str(&env).unwrap();
        assert_eq!(v["user_id"], "p1");
        assert_eq!(v["game_id"], "g1");
        assert_eq!(v["client_ts"], "2025-11-28T17:59:50.000000Z");
        assert_eq!(v["event_ts"], "2025-11-28T17:59:55.000000Z");
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn timestamps_match_humantime() {
        let mut t =
            SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_764_352_799_999_998);
        for step in [
            1u64,
            1,
            1,
            7,
            999_999,
            86_400_000_000,
            1,
            31_536_000_123_456,
        ] {
            let mut s = String::new();
            push_timestamp(&mut s, t);
            assert_eq!(s, humantime::format_rfc3339_micros(t).to_string());
            t += std::time::Duration::from_micros(step);
        }
    }

    #[test]
    fn event_ids_are_v7_distinct_and_carry_the_millisecond() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_764_352_800_123);
        let ids: std::collections::HashSet<uuid::Uuid> =
            (0..2000).map(|_| new_event_id(t)).collect();
        assert_eq!(ids.len(), 2000);
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
            assert_eq!((secs, nanos), (1_764_352_800, 123_000_000));
            assert_eq!(EventIdText::new(id).as_str(), id.hyphenated().to_string());
        }
    }
}
