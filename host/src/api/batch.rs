//! `POST /v1/batch`: many events in one request, as game SDKs send them.
//!
//! JSON (`Content-Type: application/json`, the default):
//!
//! ```json
//! {"sent_at": "2026-12-01T10:00:05Z", "user_id": "p-42",
//!  "events": [{"event_type": "purchase_sword", "event_id": "e-1",
//!              "client_ts": 1764583200000, "color": "red", "quantity": 2}]}
//! ```
//!
//! NDJSON (`Content-Type: application/x-ndjson`): one event object per
//! line, with the batch's `sent_at` and `user_id` in the `X-Sent-At` and
//! `X-User-Id` headers (the headers are also read for a JSON body that has
//! no such keys).
//!
//! In an event object, `event_type` (required), `event_id` (the client's
//! own id, for retries), `client_ts` (device time) and `user_id` (overrides
//! the batch's) belong to the host; every other key goes to the plugin as
//! the event's fields.
//!
//! **Partial success.** Each event is validated on its own; the reply lists
//! a result per event, in order: `accepted` with its `event_id` (durable,
//! like any 2xx), `rejected` with the reason (do not resend: it will be
//! rejected again), or `unavailable` (not stored; resend it). The status is
//! 200 when no event is unavailable, else 503 with the same body. A body
//! that cannot be read as a batch is one 4xx and nothing is stored: 400
//! (malformed, saying where), 401/403 (write key), 413 (too many events,
//! too many bytes), 415 (content type or encoding).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::envelope::EventIdText;
use super::ingest::{self, DeviceTime, EventCtx};
use super::{ApiError, ApiState, body};
use crate::plugin::{LoadedPlugin, Validated};
use crate::transport::Transport;

/// The path of the batch endpoint.
pub const PATH: &str = "/v1/batch";

/// How the body lists its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
}

impl Format {
    fn of(headers: &HeaderMap) -> Result<Format, ApiError> {
        let Some(v) = headers.get(header::CONTENT_TYPE) else {
            return Ok(Format::Json);
        };
        let text = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
        let mime = text.split(';').next().unwrap_or("").trim();
        match mime {
            "application/json" | "text/plain" | "" => Ok(Format::Json),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/jsonlines"
            | "application/x-jsonlines" => Ok(Format::Ndjson),
            other => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_type",
                format!(
                    "Content-Type {:?} is not supported: send application/json or \
                     application/x-ndjson",
                    other.chars().take(64).collect::<String>()
                ),
            )),
        }
    }
}

/// A string that borrows from the body when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// One event object, split into the host's keys and the plugin's fields
/// (also how `eventsift plugin test` reads a samples line).
#[derive(Debug, Default)]
pub struct Item<'a> {
    event_type: Option<&'a RawValue>,
    event_id: Option<&'a RawValue>,
    client_ts: Option<&'a RawValue>,
    user_id: Option<&'a RawValue>,
    /// The other keys, as a JSON object, in the order sent.
    pub fields: String,
}

impl<'a> Item<'a> {
    pub fn parse(event: &'a str) -> Result<Self, String> {
        serde_json::from_str(event).map_err(|e| format!("not an event object: {e}"))
    }

    pub fn event_type(&self) -> Result<Option<Cow<'a, str>>, String> {
        self.event_type
            .map(|raw| as_text("event_type", raw))
            .transpose()
    }

    /// The event's player (checked), else the batch's.
    pub fn user_id(&self, batch: Option<&Cow<'a, str>>) -> Result<Option<Cow<'a, str>>, String> {
        let user = match self.user_id {
            Some(raw) => Some(as_text("user_id", raw)?),
            None => batch.cloned(),
        };
        if let Some(u) = &user {
            ingest::check_user_id(u)?;
        }
        Ok(user)
    }

    /// The client's own id of the event (checked).
    pub fn client_id(&self) -> Result<Option<Cow<'a, str>>, String> {
        self.event_id
            .map(|raw| {
                let id = as_text("event_id", raw)?;
                ingest::check_client_id("event_id", &id)?;
                Ok(id)
            })
            .transpose()
    }

    /// Device time, µs.
    pub fn client_ts(&self) -> Result<Option<i64>, String> {
        self.client_ts
            .map(|raw| time_of("client_ts", raw))
            .transpose()
    }
}

impl<'de> Deserialize<'de> for Item<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut item = Item {
                    fields: String::with_capacity(128),
                    ..Item::default()
                };
                item.fields.push('{');
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    let slot = match key.as_ref() {
                        "event_type" => &mut item.event_type,
                        "event_id" => &mut item.event_id,
                        "client_ts" => &mut item.client_ts,
                        "user_id" => &mut item.user_id,
                        _ => {
                            if item.fields.len() > 1 {
                                item.fields.push(',');
                            }
                            super::envelope::push_str(&mut item.fields, &key);
                            item.fields.push(':');
                            item.fields.push_str(value.get());
                            continue;
                        }
                    };
                    *slot = Some(value);
                }
                item.fields.push('}');
                Ok(item)
            }
        }
        d.deserialize_map(V)
    }
}

/// The JSON body's top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Top<'a> {
    #[serde(borrow, default)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// A batch as read: the batch's own keys and the raw events.
#[derive(Debug)]
struct Parsed<'a> {
    sent_at: Option<Cow<'a, str>>,
    sent_at_raw: Option<&'a RawValue>,
    user_id: Option<Cow<'a, str>>,
    user_id_raw: Option<&'a RawValue>,
    events: Vec<&'a str>,
}

fn bad_body(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_body", message)
}

fn too_many(n: usize, max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_events",
        format!("the batch has {n} events; at most {max} are accepted per request"),
    )
}

/// Splits the body into events (400 when malformed, saying where).
fn parse<'a>(
    format: Format,
    text: &'a str,
    headers: &'a HeaderMap,
    max_events: usize,
) -> Result<Parsed<'a>, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
    };
    let mut parsed = Parsed {
        sent_at: header("x-sent-at"),
        sent_at_raw: None,
        user_id: header("x-user-id"),
        user_id_raw: None,
        events: Vec::new(),
    };
    match format {
        Format::Json => {
            let top: Top<'a> = serde_json::from_str(text)
                .map_err(|e| bad_body(format!("the body is not a valid batch: {e}")))?;
            if top.events.len() > max_events {
                return Err(too_many(top.events.len(), max_events));
            }
            parsed.sent_at_raw = top.sent_at;
            parsed.user_id_raw = top.user_id;
            parsed.events = top.events.into_iter().map(RawValue::get).collect();
        }
        Format::Ndjson => {
            for (i, line) in text.split('\n').enumerate() {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.trim().is_empty() {
                    continue;
                }
                if parsed.events.len() == max_events {
                    let n = text.split('\n').filter(|l| !l.trim().is_empty()).count();
                    return Err(too_many(n, max_events));
                }
                let _: &RawValue = serde_json::from_str(line)
                    .map_err(|e| bad_body(format!("line {}: not valid JSON: {e}", i + 1)))?;
                parsed.events.push(line.trim());
            }
        }
    }
    Ok(parsed)
}

/// The outcome of one event, as the reply lists it.
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Outcome {
    Accepted { event_id: EventIdText },
    Rejected { error: String },
    Unavailable { error: String },
}

#[derive(Serialize)]
struct Reply {
    accepted: usize,
    rejected: usize,
    unavailable: usize,
    results: Vec<Outcome>,
}

/// An event on its way: what the plugin is asked, and about whom.
struct Ready<'a> {
    plugin: Arc<LoadedPlugin>,
    fields: String,
    user_id: Option<Cow<'a, str>>,
    client_id: Option<Cow<'a, str>>,
    time: DeviceTime,
}

/// A value of the host's keys as text: strings as they are, numbers too.
fn as_text<'a>(what: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, String> {
    match serde_json::from_str::<Text<'a>>(raw.get()) {
        Ok(Text(t)) => Ok(t),
        Err(_) => Err(format!("{what} must be a string, got {}", cut(raw.get()))),
    }
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A device time from a raw JSON value (string or epoch ms).
fn time_of(what: &str, raw: &RawValue) -> Result<i64, String> {
    let v: serde_json::Value =
        serde_json::from_str(raw.get()).map_err(|e| format!("{what}: {e}"))?;
    ingest::parse_device_time(what, &v)
}

/// `POST /v1/batch`.
pub async fn post_batch(state: Arc<ApiState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = handle(&state, &parts.headers, body).await;
    super::finish(&state, PATH, result)
}

async fn handle(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let encoding = body::Encoding::of(headers)?;
    let format = Format::of(headers)?;
    // The key before the body: a request without one holds no budget.
    state.ingest.precheck(headers)?;
    let mut held = state.budget.reservation();
    let raw = body::read_raw(&state.limits, body, &mut held).await?;
    let principal = state.ingest.principal(headers, &raw)?;
    let decoded = body::decode(encoding, raw, state.limits.max_body_bytes, &mut held)?;
    let text = std::str::from_utf8(&decoded).map_err(|e| {
        bad_body(format!(
            "the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let parsed = parse(format, text, headers, state.ingest.max_batch_events)?;
    let now = SystemTime::now();

    // The batch's own keys: a bad one rejects the whole batch.
    let sent_at = match (parsed.sent_at_raw, &parsed.sent_at) {
        (Some(raw), _) => Some(time_of("sent_at", raw)),
        (None, Some(text)) => Some(ingest::parse_device_time_text("sent_at", text)),
        (None, None) => None,
    }
    .transpose()
    .map_err(bad_body)?;
    // Headers are checked when present, even where the body overrides them.
    if let Some(u) = &parsed.user_id {
        ingest::check_user_id(u).map_err(bad_body)?;
    }
    if let Some(t) = &parsed.sent_at {
        ingest::parse_device_time_text("X-Sent-At", t).map_err(bad_body)?;
    }
    let batch_user = match (parsed.user_id_raw, parsed.user_id) {
        (Some(raw), _) => Some(as_text("user_id", raw).map_err(bad_body)?),
        (None, user) => user,
    };
    if let Some(u) = &batch_user {
        ingest::check_user_id(u).map_err(bad_body)?;
    }

    // Each event: the host's keys, then the plugin.
    let snapshot = state.registry.snapshot();
    let max_event = state.ingest.max_event_bytes;
    let mut results: Vec<Option<Outcome>> = Vec::with_capacity(parsed.events.len());
    let mut ready: Vec<(usize, Ready<'_>)> = Vec::with_capacity(parsed.events.len());
    for (i, event) in parsed.events.iter().enumerate() {
        let step = (|| -> Result<Ready<'_>, Result<String, ApiError>> {
            if event.len() > max_event {
                return Err(Ok(format!(
                    "the event is {} bytes; at most {max_event} are accepted",
                    event.len()
                )));
            }
            let item = Item::parse(event).map_err(Ok)?;
            let event_type = item
                .event_type()
                .map_err(Ok)?
                .ok_or_else(|| Ok("event_type is missing".to_owned()))?;
            // A type the key may not write refuses the whole batch.
            principal.may_write(&event_type).map_err(Err)?;
            let plugin = snapshot
                .get(&event_type)
                .ok_or_else(|| Ok(format!("no plugin owns event type {event_type:?}")))?
                .clone();
            let user_id = item.user_id(batch_user.as_ref()).map_err(Ok)?;
            let client_id = item.client_id().map_err(Ok)?;
            let client_ts = item.client_ts().map_err(Ok)?;
            let time = state
                .ingest
                .device_time(client_ts, sent_at, now)
                .map_err(Ok)?;
            Ok(Ready {
                plugin,
                fields: item.fields,
                user_id,
                client_id,
                time,
            })
        })();
        match step {
            Ok(r) => {
                results.push(None);
                ready.push((i, r));
            }
            Err(Ok(reason)) => results.push(Some(Outcome::Rejected { error: reason })),
            Err(Err(forbidden)) => return Err(forbidden),
        }
    }

    // What the events' fields hold, besides the body, until the reply.
    held.add(ready.iter().map(|(_, r)| r.fields.len()).sum())?;

    // Validation, a plugin at a time (one gate permit per plugin and batch).
    let mut validated: Vec<Option<Validated>> = Vec::with_capacity(ready.len());
    validated.resize_with(ready.len(), || None);
    let mut order: Vec<usize> = (0..ready.len()).collect();
    order.sort_by_key(|&j| Arc::as_ptr(&ready[j].1.plugin) as usize);
    let mut k = 0;
    while k < order.len() {
        let plugin = ready[order[k]].1.plugin.clone();
        let end = order[k..]
            .iter()
            .position(|&j| !Arc::ptr_eq(&ready[j].1.plugin, &plugin))
            .map_or(order.len(), |n| k + n);
        let inputs: Vec<&str> = order[k..end]
            .iter()
            .map(|&j| ready[j].1.fields.as_str())
            .collect();
        match plugin.validate_many_gated(&inputs).await {
            Some(outs) => {
                for (&j, v) in order[k..end].iter().zip(outs) {
                    validated[j] = Some(v);
                }
            }
            None => {
                for &j in &order[k..end] {
                    results[ready[j].0] = Some(Outcome::Unavailable {
                        error: format!("plugin {} is busy; retry later", plugin.meta.name),
                    });
                }
            }
        }
        k = end;
    }

    held.add(
        validated
            .iter()
            .flatten()
            .map(|v| match v {
                Validated::Accepted { fields, reply } => fields.len() + reply.len(),
                Validated::Rejected(reason) => reason.len(),
            })
            .sum(),
    )?;

    // Envelopes, published together; the reply waits for every ack.
    let received = SystemTime::now();
    let game = principal.game();
    let captured = super::Captured::of(headers);
    let mut records: Vec<(&[u8], Vec<u8>)> = Vec::with_capacity(ready.len());
    let mut published: Vec<(usize, EventIdText, &Arc<LoadedPlugin>)> =
        Vec::with_capacity(ready.len());
    for ((i, r), v) in ready.iter().zip(validated) {
        let Some(v) = v else { continue };
        let fields = match v {
            Validated::Accepted { fields, .. } => fields,
            Validated::Rejected(reason) => {
                results[*i] = Some(Outcome::Rejected { error: reason });
                continue;
            }
        };
        let ctx = EventCtx {
            principal,
            user_id: r.user_id.as_deref(),
            client_id: r.client_id.as_deref(),
            time: r.time,
        };
        let (event_id, envelope) =
            super::envelope_of(&r.plugin, &fields, &captured, &ctx, game, received);
        records.push((
            super::kafka_key(ctx.user_id, headers),
            envelope.into_bytes(),
        ));
        published.push((*i, event_id, &r.plugin));
    }
    held.add(records.iter().map(|(_, e)| e.len()).sum())?;
    let started = std::time::Instant::now();
    let acks = state.transport.publish_many(&records).await;
    state
        .counters
        .publish_latency
        .record(started.elapsed().as_secs_f64());
    for ((i, event_id, plugin), ack) in published.into_iter().zip(acks) {
        results[i] = Some(match super::acknowledged(state, plugin, ack) {
            Ok(()) => Outcome::Accepted { event_id },
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
                Outcome::Unavailable { error: e.message }
            }
            Err(e) => Outcome::Rejected { error: e.message },
        });
    }

    let results: Vec<Outcome> = results
        .into_iter()
        .map(|r| {
            r.unwrap_or(Outcome::Unavailable {
                error: "not processed".into(),
            })
        })
        .collect();
    let count = |f: fn(&Outcome) -> bool| results.iter().filter(|o| f(o)).count();
    let reply = Reply {
        accepted: count(|o| matches!(o, Outcome::Accepted { .. })),
        rejected: count(|o| matches!(o, Outcome::Rejected { .. })),
        unavailable: count(|o| matches!(o, Outcome::Unavailable { .. })),
        results,
    };
    state
        .counters
        .batch(reply.accepted, reply.rejected, reply.unavailable);
    let status = if reply.unavailable > 0 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = serde_json::to_string(&reply).unwrap_or_default();
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_split_host_keys_from_fields() {
        let item: Item<'_> = serde_json::from_str(
            r#"{"event_type":"purchase_sword","event_id":"e-1","client_ts":17,"color":"r\"ed","quantity":2,"user_id":"p"}"#,
        )
        .unwrap();
        assert_eq!(item.event_type.unwrap().get(), "\"purchase_sword\"");
        assert_eq!(item.event_id.unwrap().get(), "\"e-1\"");
        assert_eq!(item.client_ts.unwrap().get(), "17");
        assert_eq!(item.user_id.unwrap().get(), "\"p\"");
        assert_eq!(item.fields, r#"{"color":"r\"ed","quantity":2}"#);
        assert!(serde_json::from_str::<Item<'_>>("[1]").is_err());
    }

    #[test]
    fn bodies_parse_or_say_where() {
        let h = HeaderMap::new();
        let p = parse(
            Format::Json,
            r#"{"sent_at":5,"user_id":"u","events":[{"event_type":"a"},{"event_type":"b"}]}"#,
            &h,
            10,
        )
        .unwrap();
        assert_eq!(p.events.len(), 2);
        let e = parse(Format::Json, "{\"events\":[{\"a\":1}\n,]}", &h, 10).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("line 2"), "{}", e.message);
        let e = parse(Format::Json, r#"{"event":[]}"#, &h, 10).unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
        let e = parse(Format::Json, r#"{"events":[1,2,3]}"#, &h, 2).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let mut h = HeaderMap::new();
        h.insert("x-user-id", "p7".parse().unwrap());
        let p = parse(
            Format::Ndjson,
            "{\"event_type\":\"a\"}\r\n\n{\"event_type\":\"b\"}\n",
            &h,
            10,
        )
        .unwrap();
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.user_id.as_deref(), Some("p7"));
        let e = parse(Format::Ndjson, "{}\n{oops\n", &h, 10).unwrap_err();
        assert!(e.message.starts_with("line 2:"), "{}", e.message);
        let e = parse(Format::Ndjson, "{}\n{}\n{}\n", &h, 2).unwrap_err();
        assert!(e.message.contains("3 events"), "{}", e.message);
    }
}
