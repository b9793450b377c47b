//! What every event route shares beyond the plugin's fields: who may write
//! (per-game write keys), who the player is, the device's time, the
//! client's own event id, and how an accepted event becomes a published
//! envelope.
//!
//! - **Write keys** (config `[[write_keys]]`): each names a game and the
//!   event types it may write. A request presents one as `Authorization:
//!   Bearer <key>`, or signs its body as sent (compressed bytes included)
//!   the GameAnalytics way: `X-Game-Key: <key>` and `Authorization:
//!   base64(HMAC-SHA256(body, secret))`. With keys configured, every event
//!   route needs one (401), and a type the key may not write is a 403;
//!   without keys everything is open, as before.
//! - **The player**: a batch's or event's `user_id`, or `X-User-Id` on the
//!   single-event routes; the seed's routes, which carry none, keep the
//!   Host header as the player. The player is the Kafka key, so one player's
//!   events stay in order in one partition.
//! - **Device time**: `client_ts` (RFC 3339 or epoch milliseconds); with a
//!   `sent_at` the server's time is corrected by the device's skew:
//!   `event_ts = timestamp - (sent_at - client_ts)`. Outside the horizon
//!   (older than `device_time_horizon`, or ahead of the server by more than
//!   `device_time_ahead`) the event is refused.
//! - **Client event ids** (`event_id` in a batch item, `Idempotency-Key` on
//!   the single-event routes): the stored id is derived from game, player
//!   and that id, so a retry yields the same id; the writer keeps one row.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::ApiError;

/// One write key of the configuration (its `Debug` hides key and secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteKey {
    /// What clients send (`Bearer <key>`, or `X-Game-Key` with a signature).
    pub key: String,
    /// The game its events belong to (the `game_id` column).
    pub game: String,
    /// Event types it may write; `["*"]` for any.
    pub event_types: Vec<String>,
    /// Enables HMAC-SHA256 body signatures with this secret.
    #[serde(default)]
    pub secret: Option<String>,
}

impl std::fmt::Debug for WriteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteKey")
            .field("key", &"<hidden>")
            .field("game", &self.game)
            .field("event_types", &self.event_types)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Who a request writes as.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    /// No keys are configured.
    Open,
    Key(&'a WriteKey),
}

impl Principal<'_> {
    pub fn game(&self) -> Option<&str> {
        match self {
            Principal::Open => None,
            Principal::Key(k) => Some(&k.game),
        }
    }

    /// 403 unless this principal may write `event_type`.
    pub fn may_write(&self, event_type: &str) -> Result<(), ApiError> {
        match self {
            Principal::Open => Ok(()),
            Principal::Key(k) if k.event_types.iter().any(|t| t == "*" || t == event_type) => {
                Ok(())
            }
            Principal::Key(k) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the write key of game {} may not write event type {event_type:?}",
                    k.game
                ),
            )),
        }
    }
}

/// The ingestion settings the handlers share.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// By key.
    keys: HashMap<String, WriteKey>,
    /// Origins browsers may call from (`*` for any); empty: no CORS.
    pub cors_origins: Vec<String>,
    pub max_batch_events: usize,
    pub max_event_bytes: usize,
    pub device_time_horizon: Duration,
    pub device_time_ahead: Duration,
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest::new(
            Vec::new(),
            Vec::new(),
            1000,
            64 << 10,
            Duration::from_secs(30 * 86_400),
            Duration::from_secs(3600),
        )
    }
}

/// A header as text (invalid bytes replaced).
fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<std::borrow::Cow<'h, str>> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

impl Ingest {
    pub fn new(
        keys: Vec<WriteKey>,
        cors_origins: Vec<String>,
        max_batch_events: usize,
        max_event_bytes: usize,
        device_time_horizon: Duration,
        device_time_ahead: Duration,
    ) -> Self {
        Ingest {
            keys: keys.into_iter().map(|k| (k.key.clone(), k)).collect(),
            cors_origins,
            max_batch_events,
            max_event_bytes,
            device_time_horizon,
            device_time_ahead,
        }
    }

    /// Whether write keys are configured.
    pub fn keyed(&self) -> bool {
        !self.keys.is_empty()
    }

    /// What the headers alone tell of a request's key, before its body is
    /// read (and counted in the request budget): a bearer key is checked
    /// whole; a signed request's key must exist and take signatures, its
    /// signature is checked with the body ([`Ingest::principal`]).
    pub fn precheck(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.principal_with(headers, None).map(|_| ())
    }

    /// The principal of a request, from its headers and (for a signature)
    /// its body as sent. 401 when keys are configured and none is valid.
    pub fn principal(&self, headers: &HeaderMap, body: &[u8]) -> Result<Principal<'_>, ApiError> {
        self.principal_with(headers, Some(body))
    }

    /// [`Ingest::principal`]; without a body, a signature is not checked.
    fn principal_with(
        &self,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Result<Principal<'_>, ApiError> {
        if self.keys.is_empty() {
            return Ok(Principal::Open);
        }
        let unauthorized =
            |why: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why.to_owned());
        let auth = header_text(headers, header::AUTHORIZATION.as_str())
            .ok_or_else(|| unauthorized("a write key is needed: Authorization: Bearer <key>, or X-Game-Key with a body signature"))?;
        if let Some(key) = auth.strip_prefix("Bearer ") {
            return self
                .keys
                .get(key.trim())
                .map(Principal::Key)
                .ok_or_else(|| unauthorized("the write key is not valid"));
        }
        let game_key = header_text(headers, "x-game-key")
            .ok_or_else(|| unauthorized("a signed body needs X-Game-Key"))?;
        let key = self
            .keys
            .get(game_key.trim())
            .ok_or_else(|| unauthorized("the game key is not valid"))?;
        let secret = key
            .secret
            .as_deref()
            .ok_or_else(|| unauthorized("this game key takes no signatures (it has no secret)"))?;
        match body {
            None => Ok(Principal::Key(key)),
            Some(body) if verify_signature(secret, body, auth.trim()) => Ok(Principal::Key(key)),
            Some(_) => Err(unauthorized("the body signature does not match")),
        }
    }
}

/// Whether `signature` is base64(HMAC-SHA256(body, secret)), compared in
/// constant time.
pub fn verify_signature(secret: &str, body: &[u8], signature: &str) -> bool {
    use base64::Engine;
    use hmac::Mac;
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// base64(HMAC-SHA256(body, secret)): what a client sends to sign a body.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A player id: 1 to 128 characters, none of them control characters.
pub fn check_user_id(user: &str) -> Result<(), String> {
    if user.is_empty() || user.chars().count() > 128 || user.chars().any(char::is_control) {
        return Err(format!(
            "user_id must be 1 to 128 characters without control characters, got {:?}",
            truncate(user)
        ));
    }
    Ok(())
}

/// A client event id: 1 to 64 of `A-Z a-z 0-9 . _ : -`.
pub fn check_client_id(what: &str, id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} must be 1 to 64 letters, digits, '.', '_', ':' or '-', got {:?}",
            truncate(id)
        ))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A device time: an RFC 3339 string or epoch milliseconds, as µs.
pub fn parse_device_time(what: &str, v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000))
            .ok_or_else(|| format!("{what} must be epoch milliseconds or RFC 3339, got {n}")),
        serde_json::Value::String(s) => crate::writer::table::parse_timestamp(s)
            .ok_or_else(|| format!("{what} must be epoch milliseconds or RFC 3339, got {s:?}")),
        other => Err(format!(
            "{what} must be epoch milliseconds or RFC 3339, got {other}"
        )),
    }
}

/// A device time from text (a header): epoch milliseconds or RFC 3339.
pub fn parse_device_time_text(what: &str, text: &str) -> Result<i64, String> {
    let v = match text.trim().parse::<i64>() {
        Ok(ms) => serde_json::Value::from(ms),
        Err(_) => serde_json::Value::from(text.trim()),
    };
    parse_device_time(what, &v)
}

/// Device time of one event, checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceTime {
    pub client_ts: Option<i64>,
    /// `sent_at - client_ts` (µs): how long before sending the event
    /// happened, by the device's own clock (known with a `sent_at`).
    pub delay: Option<i64>,
}

impl DeviceTime {
    /// The skew-corrected time of an event received at `timestamp` (µs):
    /// `timestamp - (sent_at - client_ts)`.
    pub fn event_ts(&self, timestamp: i64) -> Option<i64> {
        self.delay.map(|d| timestamp.saturating_sub(d))
    }
}

impl Ingest {
    /// `client_ts` and `sent_at` against the server's `now`: the corrected
    /// time (`now - (sent_at - client_ts)`), or why the event is refused.
    pub fn device_time(
        &self,
        client_ts: Option<i64>,
        sent_at: Option<i64>,
        now: SystemTime,
    ) -> Result<DeviceTime, String> {
        let Some(client) = client_ts else {
            return Ok(DeviceTime::default());
        };
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let delay = sent_at.map(|sent| sent.saturating_sub(client));
        let corrected = delay.map(|d| now.saturating_sub(d));
        let judged = corrected.unwrap_or(client);
        let horizon = self.device_time_horizon.as_micros() as i64;
        let ahead = self.device_time_ahead.as_micros() as i64;
        if judged < now - horizon {
            return Err(format!(
                "client_ts is older than the {} horizon",
                humantime::format_duration(self.device_time_horizon)
            ));
        }
        if judged > now + ahead {
            return Err(format!(
                "client_ts is more than {} in the future",
                humantime::format_duration(self.device_time_ahead)
            ));
        }
        Ok(DeviceTime {
            client_ts: Some(client),
            delay,
        })
    }
}

/// What the host adds to one event besides the plugin's fields.
#[derive(Debug, Clone, Copy)]
pub struct EventCtx<'a> {
    pub principal: Principal<'a>,
    /// The player (else the Host header stands for it).
    pub user_id: Option<&'a str>,
    /// The client's own id of the event.
    pub client_id: Option<&'a str>,
    pub time: DeviceTime,
}

/// What a single-event request says of itself in headers: the player
/// (`X-User-Id`), the client's id (`Idempotency-Key`) and device time
/// (`X-Client-Ts`, with `X-Sent-At`).
pub struct SingleHeaders<'h> {
    pub user_id: Option<std::borrow::Cow<'h, str>>,
    pub client_id: Option<std::borrow::Cow<'h, str>>,
    pub time: DeviceTime,
}

impl<'h> SingleHeaders<'h> {
    /// The event's context, written with `principal`.
    pub fn ctx<'a>(&'a self, principal: Principal<'a>) -> EventCtx<'a> {
        EventCtx {
            principal,
            user_id: self.user_id.as_deref(),
            client_id: self.client_id.as_deref(),
            time: self.time,
        }
    }
}

impl Ingest {
    /// Reads and checks [`SingleHeaders`] (400 naming what is wrong).
    pub fn single_headers<'h>(
        &self,
        headers: &'h HeaderMap,
        now: SystemTime,
    ) -> Result<SingleHeaders<'h>, ApiError> {
        let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, "validation", why);
        let user_id = header_text(headers, "x-user-id");
        if let Some(u) = &user_id {
            check_user_id(u).map_err(bad)?;
        }
        let client_id = header_text(headers, "idempotency-key");
        if let Some(k) = &client_id {
            check_client_id("Idempotency-Key", k).map_err(bad)?;
        }
        let time_header = |name: &str| -> Result<Option<i64>, ApiError> {
            header_text(headers, name)
                .map(|t| parse_device_time_text(name, &t).map_err(bad))
                .transpose()
        };
        let (client_ts, sent_at) = (time_header("x-client-ts")?, time_header("x-sent-at")?);
        let time = self.device_time(client_ts, sent_at, now).map_err(bad)?;
        Ok(SingleHeaders {
            user_id,
            client_id,
            time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_bearer_and_signatures() {
        let ingest = Ingest::new(
            vec![WriteKey {
                key: "k1".into(),
                game: "dragons".into(),
                event_types: vec!["purchase_sword".into()],
                secret: Some("s3".into()),
            }],
            vec![],
            1000,
            1 << 16,
            Duration::from_secs(86_400),
            Duration::from_secs(60),
        );
        let mut h = HeaderMap::new();
        assert_eq!(
            ingest.principal(&h, b"").unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        h.insert(header::AUTHORIZATION, "Bearer k1".parse().unwrap());
        let p = ingest.principal(&h, b"").unwrap();
        assert_eq!(p.game(), Some("dragons"));
        assert!(p.may_write("purchase_sword").is_ok());
        assert_eq!(
            p.may_write("guild").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert!(ingest.principal(&h, b"").is_err());
        let body = b"\x1f\x8bcompressed";
        let mut h = HeaderMap::new();
        h.insert("x-game-key", "k1".parse().unwrap());
        h.insert(header::AUTHORIZATION, sign("s3", body).parse().unwrap());
        assert!(ingest.principal(&h, body).is_ok());
        assert!(ingest.principal(&h, b"other").is_err());
        h.insert(header::AUTHORIZATION, sign("wrong", body).parse().unwrap());
        assert!(ingest.principal(&h, body).is_err());
    }

    #[test]
    fn device_time_is_corrected_and_bounded() {
        let ingest = Ingest::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now_us = 1_800_000_000_000_000i64;
        // The device is 10 s behind; it sent 5 s after the event.
        let t = ingest
            .device_time(Some(now_us - 15_000_000), Some(now_us - 10_000_000), now)
            .unwrap();
        assert_eq!(t.event_ts(now_us), Some(now_us - 5_000_000));
        assert_eq!(t.client_ts, Some(now_us - 15_000_000));
        assert!(
            ingest
                .device_time(Some(now_us - 31 * 86_400_000_000), None, now)
                .unwrap_err()
                .contains("horizon")
        );
        assert!(
            ingest
                .device_time(Some(now_us + 7200_000_000), None, now)
                .unwrap_err()
                .contains("future")
        );
        assert_eq!(
            parse_device_time("client_ts", &serde_json::json!(1_800_000_000_000i64)).unwrap(),
            now_us
        );
        assert_eq!(
            parse_device_time("client_ts", &serde_json::json!("2027-01-15T08:00:00Z")).unwrap(),
            crate::writer::table::parse_timestamp("2027-01-15T08:00:00Z").unwrap()
        );
        assert!(parse_device_time("client_ts", &serde_json::json!(true)).is_err());
        assert!(check_client_id("event_id", "ab-1:2.3_x").is_ok());
        assert!(check_client_id("event_id", "no spaces").is_err());
        assert!(check_user_id("player 1").is_ok());
        assert!(check_user_id("bad\nuser").is_err());
    }
}
