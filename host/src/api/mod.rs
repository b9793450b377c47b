//! The HTTP event API (axum). Each loaded plugin's route (hot-reloaded),
//! `POST /events/{event_type}`, `GET /healthz` (liveness), `GET /readyz`
//! (readiness), `GET /metrics` and `GET /plugins`. An event is validated by
//! its plugin, wrapped in an [`envelope`] and published; the reply waits for
//! the transport's acknowledgement, so every 2xx is durable. Bad input gets
//! a 4xx with a JSON `{"error": ...}`; nothing that got a 4xx is published.
//! Requests beyond the [`RequestLimits`] get a 4xx before any plugin runs;
//! the [`server`] bounds connections and their timeouts.

pub mod envelope;
pub mod metrics;
mod routes;
pub mod server;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::plugin::{LoadedPlugin, Registry, Validated};
use crate::transport::{AnyTransport, PublishError, Transport};
use envelope::{EventIdText, RequestMeta};

pub use routes::RouteTable;

/// `X-Event-Id`, on every 2xx reply.
pub const EVENT_ID_HEADER: HeaderName = HeaderName::from_static("x-event-id");

/// Bounds on one request, checked before any plugin runs (each answers
/// with the JSON error body; hyper's own, higher, caps are in [`server`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest body, after decompression (413).
    pub max_body_bytes: usize,
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
            max_uri_bytes: 8 << 10,
            max_header_bytes: 64 << 10,
            max_captured_header_bytes: 1 << 10,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// What readiness and liveness depend on besides the API itself: the
/// writer running in the same process (`serve`).
pub type WriterHealth = Arc<crate::writer::Status>;

/// What the handlers share.
pub struct ApiState {
    pub registry: Arc<Registry>,
    pub transport: Arc<AnyTransport>,
    pub limits: RequestLimits,
    /// The writer of `serve`, and how long its threads may be silent.
    pub writer: Option<(WriterHealth, Duration)>,
    routes: RouteTable,
    metrics: ::metrics_exporter_prometheus::PrometheusHandle,
    counters: metrics::ApiMetrics,
}

impl ApiState {
    pub fn new(
        registry: Arc<Registry>,
        transport: Arc<AnyTransport>,
        limits: RequestLimits,
        writer: Option<(WriterHealth, Duration)>,
    ) -> Arc<Self> {
        Arc::new(ApiState {
            registry,
            transport,
            limits,
            writer,
            routes: RouteTable::default(),
            metrics: metrics::handle(),
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
const FIXED_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/plugins"];

/// The axum router of the fixed routes (plugin routes as its fallback).
pub fn router(state: Arc<ApiState>) -> Router {
    let [healthz_path, readyz_path, metrics_path, plugins_path] = FIXED_PATHS;
    Router::new()
        .route(healthz_path, get(healthz))
        .route(readyz_path, get(readyz))
        .route(metrics_path, get(render_metrics))
        .route(plugins_path, get(list_plugins))
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
struct ApiError {
    status: StatusCode,
    message: String,
    /// Label for the rejections metric.
    reason: &'static str,
}

impl ApiError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
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
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

fn finish(state: &ApiState, route: &str, result: Result<Response, ApiError>) -> Response {
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            ::metrics::counter!(metrics::REJECTED, "reason" => e.reason).increment(1);
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

async fn render_metrics(State(state): State<Arc<ApiState>>) -> Response {
    ::metrics::gauge!(metrics::PLUGINS_LOADED).set(state.registry.snapshot().len() as f64);
    crate::writer::metrics::refresh_age();
    state.counters.request("/metrics", 200);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(serde::Serialize)]
struct PluginView<'a> {
    name: &'a str,
    version: &'a str,
    event_type: &'a str,
    table: &'a str,
    route: Option<String>,
    source: String,
    loaded_at: String,
}

async fn list_plugins(State(state): State<Arc<ApiState>>) -> Response {
    let snapshot = state.registry.snapshot();
    let views: Vec<PluginView<'_>> = snapshot
        .plugins()
        .map(|p| PluginView {
            name: &p.meta.name,
            version: &p.meta.version,
            event_type: &p.meta.event_type,
            table: &p.meta.table,
            route: p.meta.route.as_ref().map(|r| r.to_string()),
            // The file's name only: the host's paths are not the caller's business.
            source: p
                .source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            loaded_at: humantime::format_rfc3339_millis(p.loaded_at).to_string(),
        })
        .collect();
    state.counters.request("/plugins", 200);
    axum::Json(views).into_response()
}

/// `POST /events/{event_type}` with a JSON object body.
async fn post_event(
    State(state): State<Arc<ApiState>>,
    Path(event_type): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    const ROUTE: &str = "/events/{event_type}";
    let result = async {
        let plugin = state.registry.get(&event_type).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_event_type",
                format!("no plugin owns event type {event_type:?}"),
            )
        })?;
        let body = read_body(&state, body).await?;
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
        let (event_id, _reply) = accept(&state, &plugin, validated, headers).await?;
        let mut body = String::with_capacity(52);
        body.push_str("{\"event_id\":\"");
        body.push_str(event_id.as_str());
        body.push_str("\"}");
        Ok(ok_response(&event_id, JSON, body))
    }
    .await;
    finish(&state, ROUTE, result)
}

/// Every other request: a plugin's route, or 404.
async fn plugin_route(state: Arc<ApiState>, request: Request) -> Response {
    // By reference: axum's `HeaderMap` and `Uri` extractors would clone them.
    let (method, uri, headers) = (request.method(), request.uri(), request.headers());
    let snapshot = state.registry.snapshot();
    let table = state.routes.current(&snapshot);
    let Some(found) = table.find(method, uri.path()) else {
        let e = ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no route for {method} {}", uri.path()),
        );
        return finish(&state, "unmatched", Err(e));
    };
    let label = found.label.clone();
    let result = async {
        let fields = found
            .fields()
            .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "validation", why))?;
        // Route parameters repeat: memoized (a body, with its ids, rarely does).
        let validated = found
            .plugin
            .validate_gated(&fields, true)
            .await
            .ok_or_else(|| busy(&found.plugin))?;
        let (event_id, reply) = accept(&state, &found.plugin, validated, headers).await?;
        Ok(ok_response(&event_id, TEXT, reply))
    }
    .await;
    finish(&state, &label, result)
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

async fn read_body(state: &ApiState, body: Body) -> Result<Bytes, ApiError> {
    let limits = &state.limits;
    match tokio::time::timeout(
        limits.body_timeout,
        axum::body::to_bytes(body, limits.max_body_bytes),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {} bytes", limits.max_body_bytes),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {}",
                humantime::format_duration(limits.body_timeout)
            ),
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
) -> Result<(EventIdText, String), ApiError> {
    let (fields, reply) = match validated {
        Validated::Accepted { fields, reply } => (fields, reply),
        Validated::Rejected(reason) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "validation", reason));
        }
    };
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
    };
    let (host, user_agent, accept) = (
        header(header::HOST),
        header(header::USER_AGENT),
        header(header::ACCEPT),
    );
    let meta = RequestMeta {
        host: host.as_deref(),
        user_agent: user_agent.as_deref(),
        accept: accept.as_deref(),
    };
    let received = SystemTime::now();
    let event_id = EventIdText::new(&envelope::new_event_id(received));
    let envelope = envelope::build(
        &event_id,
        &plugin.meta.event_type,
        &plugin.meta.version,
        received,
        &meta,
        &fields,
    );
    let started = Instant::now();
    let published = state
        .transport
        .publish(meta.host.unwrap_or("").as_bytes(), envelope.into_bytes())
        .await;
    state
        .counters
        .publish_latency
        .record(started.elapsed().as_secs_f64());
    match published {
        Ok(_) => {
            state.counters.published(&plugin.meta.event_type);
            Ok((event_id, reply))
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
