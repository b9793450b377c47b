//! The HTTP event API (axum), the public listener. Each loaded plugin's
//! route (hot-reloaded), `POST /events/{event_type}`, `POST /v1/batch`
//! ([`batch`]), `GET /healthz` (liveness), `GET /readyz` (readiness) and
//! `GET /openapi.json` ([`openapi`]); `/metrics`, `/plugins` and the status
//! page are the admin listener's ([`crate::admin`]). An event is validated by
//! its plugin, wrapped in an [`envelope`] and published; the reply waits for
//! the transport's acknowledgement, so every 2xx is durable. Bad input gets
//! a 4xx with a JSON `{"error": ...}`; nothing that got a 4xx is published.
//! Requests beyond the [`RequestLimits`] get a 4xx before any plugin runs;
//! the [`server`] bounds connections and their timeouts. Write keys, the
//! player, device time and client ids are [`ingest`]'s; bodies may be
//! compressed ([`body`]).

pub mod batch;
pub mod body;
pub mod budget;
pub mod envelope;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub(crate) mod routes;
pub mod server;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::plugin::{LoadedPlugin, Registry, Validated};
use crate::transport::{AnyTransport, PublishError, Transport};
use envelope::{EventIdText, RequestMeta};
use ingest::{EventCtx, Ingest};

pub use routes::RouteTable;

/// Bytes an envelope adds to its event's fields, at most about (the
/// request's budget counts it).
pub const ENVELOPE_OVERHEAD: usize = 4 << 10;

/// `X-Event-Id`, on every 2xx reply.
pub const EVENT_ID_HEADER: HeaderName = HeaderName::from_static("x-event-id");

/// Bounds on one request, checked before any plugin runs (each answers
/// with the JSON error body; hyper's own, higher, caps are in [`server`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest body, after decompression (413).
    pub max_body_bytes: usize,
    /// Request bytes held at once over all requests ([`budget`]; 503).
    pub budget_bytes: usize,
    /// Largest request target (414).
    pub max_uri_bytes: usize,
    /// Largest sum of header names and values (431).
    pub max_header_bytes: usize,
    /// Largest value of a header the envelope keeps: Host, User-Agent,
    /// Accept (431).
    pub max_captured_header_bytes: usize,
    /// Time a body may take to arrive (408).
    pub body_timeout: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: 1 << 20,
            budget_bytes: budget::DEFAULT_BUDGET,
            max_uri_bytes: 8 << 10,
            max_header_bytes: 64 << 10,
            max_captured_header_bytes: 1 << 10,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Request headers a browser game may send (for CORS preflights).
const CORS_HEADERS: [&str; 9] = [
    "content-type",
    "content-encoding",
    "authorization",
    "x-game-key",
    "x-user-id",
    "x-sent-at",
    "x-client-ts",
    "idempotency-key",
    "accept",
];

/// The CORS layer for `origins` (`*` for any), or `None` without origins.
/// Preflights are answered by the layer; replies expose `X-Event-Id`.
pub fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers(CORS_HEADERS.map(HeaderName::from_static))
            .expose_headers([EVENT_ID_HEADER, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

/// What readiness and liveness depend on besides the API itself: the
/// writer running in the same process (`serve`).
pub type WriterHealth = Arc<crate::writer::Status>;

/// What the handlers share.
pub struct ApiState {
    pub registry: Arc<Registry>,
    pub transport: Arc<AnyTransport>,
    pub limits: RequestLimits,
    /// Write keys, batch and device-time limits, CORS origins.
    pub ingest: Ingest,
    /// The writer of `serve`, and how long its threads may be silent.
    pub writer: Option<(WriterHealth, Duration)>,
    /// Request bytes held at once.
    pub budget: Arc<budget::Budget>,
    routes: RouteTable,
    openapi: openapi::Cache,
    counters: metrics::ApiMetrics,
}

impl ApiState {
    pub fn new(
        registry: Arc<Registry>,
        transport: Arc<AnyTransport>,
        limits: RequestLimits,
        ingest: Ingest,
        writer: Option<(WriterHealth, Duration)>,
    ) -> Arc<Self> {
        // Install the recorder before the first request is counted.
        metrics::handle();
        Arc::new(ApiState {
            registry,
            transport,
            limits,
            ingest,
            writer,
            budget: budget::Budget::new(limits.budget_bytes),
            routes: RouteTable::default(),
            openapi: openapi::Cache::default(),
            counters: metrics::ApiMetrics::default(),
        })
    }

    /// The first limit `request` breaks, as its error reply.
    fn over_limits(&self, request: &Request) -> Option<ApiError> {
        let l = &self.limits;
        let target = request
            .uri()
            .path_and_query()
            .map_or(0, |p| p.as_str().len());
        if target > l.max_uri_bytes {
            return Some(ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                format!(
                    "the request target is {target} bytes; at most {} are accepted",
                    l.max_uri_bytes
                ),
            ));
        }
        let headers = request.headers();
        let mut total = 0usize;
        for (name, value) in headers {
            total += name.as_str().len() + value.len();
        }
        if total > l.max_header_bytes {
            return Some(ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                format!(
                    "the headers are {total} bytes; at most {} are accepted",
                    l.max_header_bytes
                ),
            ));
        }
        for name in [header::HOST, header::USER_AGENT, header::ACCEPT] {
            if let Some(v) = headers.get(&name)
                && v.len() > l.max_captured_header_bytes
            {
                return Some(ApiError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "headers_too_large",
                    format!(
                        "header {name} is {} bytes; at most {} are accepted",
                        v.len(),
                        l.max_captured_header_bytes
                    ),
                ));
            }
        }
        None
    }

    /// Liveness: the API answers, and the writer of `serve` (if any) runs
    /// with no thread stuck.
    pub fn liveness(&self) -> Result<(), String> {
        match &self.writer {
            Some((status, bound)) => status.liveness(*bound),
            None => Ok(()),
        }
    }

    /// Readiness: alive, plugins loaded with none pending, the transport
    /// writable, and the writer of `serve` committing.
    pub fn readiness(&self) -> Result<(), String> {
        self.liveness()?;
        if !self.registry.settled() {
            return Err("plugins are still loading".into());
        }
        if !self.transport.writable() {
            return Err(format!(
                "the {} transport is not writable",
                self.transport.name()
            ));
        }
        if let Some((status, bound)) = &self.writer {
            status.readiness(*bound)?;
        }
        Ok(())
    }
}

/// The fixed routes' exact paths; [`ApiService`] sends these, and every
/// path under `/events/`, to [`router`].
const FIXED_PATHS: [&str; 4] = ["/healthz", "/readyz", openapi::PATH, batch::PATH];

/// The axum router of the fixed routes (plugin routes as its fallback).
pub fn router(state: Arc<ApiState>) -> Router {
    let [healthz_path, readyz_path, openapi_path, batch_path] = FIXED_PATHS;
    Router::new()
        .route(healthz_path, get(healthz))
        .route(readyz_path, get(readyz))
        .route(openapi_path, get(openapi::serve))
        .route(
            batch_path,
            post(|State(state): State<Arc<ApiState>>, request: Request| {
                batch::post_batch(state, request)
            }),
        )
        .route("/events/{event_type}", post(post_event))
        .fallback(|State(state): State<Arc<ApiState>>, request: Request| {
            plugin_route(state, request)
        })
        .with_state(state)
}

/// The API as one service: plugin routes, the per-event hot path, are
/// matched first-hand against the [`RouteTable`] (no axum routing,
/// extension map or extractor clones per event); the fixed routes, which
/// take precedence over plugin routes, go through [`router`].
#[derive(Clone)]
pub struct ApiService {
    state: Arc<ApiState>,
    fixed: Router,
}

impl ApiService {
    pub fn new(state: Arc<ApiState>) -> Self {
        ApiService {
            fixed: router(state.clone()),
            state,
        }
    }

    /// Paths of the fixed routes (and what lies under `/events/`).
    fn is_fixed(path: &str) -> bool {
        FIXED_PATHS.contains(&path) || path.starts_with("/events/")
    }
}

impl tower_service::Service<Request> for ApiService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::Either<
        <Router as tower_service::Service<Request>>::Future,
        futures::future::BoxFuture<'static, Result<Response, std::convert::Infallible>>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Both halves are always ready (axum's router is).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        use futures::FutureExt;
        if let Some(e) = self.state.over_limits(&request) {
            let state = self.state.clone();
            return futures::future::Either::Right(
                async move { Ok(finish(&state, "limits", Err(e))) }.boxed(),
            );
        }
        if Self::is_fixed(request.uri().path()) {
            futures::future::Either::Left(self.fixed.call(request))
        } else {
            let state = self.state.clone();
            futures::future::Either::Right(
                async move { Ok(plugin_route(state, request).await) }.boxed(),
            )
        }
    }
}

/// An error reply: status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Label for the rejections metric.
    pub reason: &'static str,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            reason,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = String::with_capacity(self.message.len() + 16);
        body.push_str("{\"error\":");
        envelope::push_str(&mut body, &self.message);
        body.push('}');
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 is worth a retry, soon.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

fn finish(state: &ApiState, route: &str, result: Result<Response, ApiError>) -> Response {
    finish_with(state, route, None, || route.to_owned(), result)
}

/// [`finish`], with the event type (when the request names one) and the
/// request a refusal is listed with on the status page (built only for a
/// 4xx).
fn finish_with(
    state: &ApiState,
    route: &str,
    event_type: Option<&str>,
    sample: impl FnOnce() -> String,
    result: Result<Response, ApiError>,
) -> Response {
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            ::metrics::counter!(metrics::REJECTED, "reason" => e.reason).increment(1);
            if e.status.is_client_error() {
                crate::writer::recent::global()
                    .note_refusal(e.reason, &e.message, event_type, sample);
            }
            e.into_response()
        }
    };
    state.counters.request(route, response.status().as_u16());
    response
}

/// `{"status": ...}` with 200, or 503 and the reason.
fn health_reply(result: Result<(), String>, extra: Option<serde_json::Value>) -> Response {
    let (code, mut body) = match result {
        Ok(()) => (StatusCode::OK, serde_json::json!({"status": "ok"})),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "unavailable", "reason": why}),
        ),
    };
    if let (Some(extra), Some(map)) = (extra, body.as_object_mut()) {
        map.insert("writer".into(), extra);
    }
    (code, axum::Json(body)).into_response()
}

/// Liveness (a supervisor may restart on it).
async fn healthz(State(state): State<Arc<ApiState>>) -> Response {
    let reply = health_reply(state.liveness(), None);
    state.counters.request("/healthz", reply.status().as_u16());
    reply
}

/// Readiness (a load balancer routes on it).
async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    let writer = state.writer.as_ref().map(|(s, _)| s.report());
    let reply = health_reply(state.readiness(), writer);
    state.counters.request("/readyz", reply.status().as_u16());
    reply
}

/// `POST /events/{event_type}` with a JSON object body (gzip or zstd
/// encoded, possibly).
async fn post_event(
    State(state): State<Arc<ApiState>>,
    Path(event_type): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    const ROUTE: &str = "/events/{event_type}";
    let result = async {
        let encoding = body::Encoding::of(headers)?;
        // The key before the body: a request without one holds no budget.
        state.ingest.precheck(headers)?;
        let mut held = state.budget.reservation();
        let raw = body::read_raw(&state.limits, body, &mut held).await?;
        let principal = state.ingest.principal(headers, &raw)?;
        principal.may_write(&event_type)?;
        let plugin = state.registry.get(&event_type).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_event_type",
                format!("no plugin owns event type {event_type:?}"),
            )
        })?;
        let received = SystemTime::now();
        let single = state.ingest.single_headers(headers, received)?;
        let body = body::decode(encoding, raw, state.limits.max_body_bytes, &mut held)?;
        let text = std::str::from_utf8(&body).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the body is not valid UTF-8",
            )
        })?;
        let validated = plugin
            .validate_gated(text, false)
            .await
            .ok_or_else(|| busy(&plugin))?;
        if let Validated::Accepted { fields, .. } = &validated {
            // The validated fields, and the envelope about as large.
            held.add(2 * fields.len() + ENVELOPE_OVERHEAD)?;
        }
        let ctx = single.ctx(principal);
        let (event_id, _reply) =
            accept(&state, &plugin, validated, headers, &ctx, received).await?;
        let mut body = String::with_capacity(52);
        body.push_str("{\"event_id\":\"");
        body.push_str(event_id.as_str());
        body.push_str("\"}");
        Ok(ok_response(&event_id, JSON, body))
    }
    .await;
    finish_with(
        &state,
        ROUTE,
        Some(&event_type),
        || format!("POST /events/{event_type}"),
        result,
    )
}

/// The request line of a refused request and its `Host` (the seed's
/// player), for the status page; no other header (keys travel in them).
fn request_sample(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> String {
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("{method} {target} (Host: {host})"),
        None => format!("{method} {target}"),
    }
}

/// Every other request: a plugin's route, or 404.
async fn plugin_route(state: Arc<ApiState>, request: Request) -> Response {
    // By reference: axum's `HeaderMap` and `Uri` extractors would clone them.
    let (method, uri, headers) = (request.method(), request.uri(), request.headers());
    let sample = || request_sample(method, uri, headers);
    let snapshot = state.registry.snapshot();
    let table = state.routes.current(&snapshot);
    let Some(found) = table.find(method, uri.path()) else {
        let allowed = table.allowed(uri.path());
        if !allowed.is_empty() {
            let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            let e = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} takes {}", uri.path(), allow.join(", ")),
            );
            let mut response = finish_with(&state, "unmatched", None, sample, Err(e));
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, v);
            }
            return response;
        }
        let e = ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no route for {method} {}", uri.path()),
        );
        return finish_with(&state, "unmatched", None, sample, Err(e));
    };
    let label = found.label.clone();
    let result = async {
        // A plugin route takes no body: a signature covers the empty one.
        let principal = state.ingest.principal(headers, b"")?;
        principal.may_write(&found.plugin.meta.event_type)?;
        let received = SystemTime::now();
        let single = state.ingest.single_headers(headers, received)?;
        let fields = found
            .fields()
            .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "validation", why))?;
        // Route parameters repeat: memoized (a body, with its ids, rarely does).
        let validated = found
            .plugin
            .validate_gated(&fields, true)
            .await
            .ok_or_else(|| busy(&found.plugin))?;
        let ctx = single.ctx(principal);
        let (event_id, reply) =
            accept(&state, &found.plugin, validated, headers, &ctx, received).await?;
        Ok(ok_response(&event_id, TEXT, reply))
    }
    .await;
    let event_type = Some(found.plugin.meta.event_type.as_str());
    finish_with(&state, &label, event_type, sample, result)
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// `200` with `X-Event-Id`, built directly (no `IntoResponse` layers).
fn ok_response(event_id: &EventIdText, content_type: HeaderValue, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.reserve(2);
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Ok(v) = HeaderValue::from_str(event_id.as_str()) {
        headers.insert(EVENT_ID_HEADER, v);
    }
    response
}

/// 503: too many requests wait for this plugin's `validate` already.
fn busy(plugin: &LoadedPlugin) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "plugin_busy",
        format!("plugin {} is busy; retry later", plugin.meta.name),
    )
}

/// The Kafka key of an event: its player, else (the seed's routes) the
/// Host header, so one player's events stay in one partition, in order.
fn kafka_key<'a>(user_id: Option<&'a str>, headers: &'a HeaderMap) -> &'a [u8] {
    match user_id {
        Some(u) => u.as_bytes(),
        None => headers.get(header::HOST).map_or(&b""[..], |h| h.as_bytes()),
    }
}

/// The request headers every envelope of a request keeps (read once per
/// request, invalid bytes replaced).
struct Captured<'h> {
    host: Option<std::borrow::Cow<'h, str>>,
    user_agent: Option<std::borrow::Cow<'h, str>>,
    accept: Option<std::borrow::Cow<'h, str>>,
}

impl<'h> Captured<'h> {
    fn of(headers: &'h HeaderMap) -> Self {
        let header = |name: header::HeaderName| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
        };
        Captured {
            host: header(header::HOST),
            user_agent: header(header::USER_AGENT),
            accept: header(header::ACCEPT),
        }
    }
}

/// The id and envelope of an accepted event. The id is derived from game,
/// player and the client's id when the client named the event (a retry
/// gets the same id), else new.
fn envelope_of(
    plugin: &LoadedPlugin,
    fields: &str,
    captured: &Captured<'_>,
    ctx: &EventCtx<'_>,
    game: Option<&str>,
    received: SystemTime,
) -> (EventIdText, String) {
    let meta = RequestMeta {
        host: captured.host.as_deref(),
        user_agent: captured.user_agent.as_deref(),
        accept: captured.accept.as_deref(),
        user_id: ctx.user_id,
        game_id: game,
        client_ts: ctx.time.client_ts,
        event_ts: ctx.time.event_ts(
            received
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64),
        ),
    };
    let id = match ctx.client_id {
        Some(client) => envelope::derived_event_id(game, ctx.user_id, client),
        None => envelope::new_event_id(received),
    };
    let event_id = EventIdText::new(&id);
    let envelope = envelope::build(
        &event_id,
        &plugin.meta.event_type,
        &plugin.meta.version,
        received,
        &meta,
        fields,
    );
    (event_id, envelope)
}

/// Publishes an envelope and waits for the acknowledgement.
async fn publish(
    state: &ApiState,
    plugin: &LoadedPlugin,
    key: &[u8],
    envelope: String,
) -> Result<(), ApiError> {
    let started = Instant::now();
    let published = state.transport.publish(key, envelope.into_bytes()).await;
    state
        .counters
        .publish_latency
        .record(started.elapsed().as_secs_f64());
    acknowledged(state, plugin, published)
}

/// What a publish's outcome means for the client: durable, too large
/// (413), or not acknowledged (503, retry).
fn acknowledged(
    state: &ApiState,
    plugin: &LoadedPlugin,
    published: Result<crate::transport::Position, PublishError>,
) -> Result<(), ApiError> {
    match published {
        Ok(_) => {
            state.counters.published(&plugin.meta.event_type);
            Ok(())
        }
        Err(PublishError::TooLarge(n)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the event is too large to publish ({n} bytes)"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_acknowledged",
            format!("the event was not acknowledged ({e}); retry later"),
        )),
    }
}

/// Takes the plugin's validation, builds the envelope, publishes and waits
/// for the acknowledgement. Returns the event id and the reply text.
async fn accept(
    state: &ApiState,
    plugin: &LoadedPlugin,
    validated: Validated,
    headers: &HeaderMap,
    ctx: &EventCtx<'_>,
    received: SystemTime,
) -> Result<(EventIdText, String), ApiError> {
    let (fields, reply) = match validated {
        Validated::Accepted { fields, reply } => (fields, reply),
        Validated::Rejected(reason) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "validation", reason));
        }
    };
    let game = ctx.principal.game();
    let (event_id, envelope) =
        envelope_of(plugin, &fields, &Captured::of(headers), ctx, game, received);
    publish(state, plugin, kafka_key(ctx.user_id, headers), envelope).await?;
    Ok((event_id, reply))
}
