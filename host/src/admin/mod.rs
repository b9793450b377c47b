//! The admin listener (`--admin-listen`): what operators look at, kept off
//! the public game-traffic port. `GET /metrics` (Prometheus), `/plugins`
//! (JSON), `/status` (an HTML page with its script, [`page`], no external
//! resources), `/status.json` (what the page shows, [`status`]),
//! `/healthz` and `/readyz` (the same answers as the public ones, which
//! load balancers use). `/` redirects to `/status`.
//!
//! Defaults bind loopback only: `127.0.0.1:5050` for `serve` and `api`,
//! `127.0.0.1:5051` for `writer` (so both run on one machine).

pub mod notify;
pub mod page;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::oneshot;

use crate::api::ApiState;
use crate::config::Config;
use crate::plugin::Registry;

/// Default admin address of `serve` and `api`.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5050);
/// Default admin address of `writer`.
pub const DEFAULT_WRITER_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5051);

/// Paths the admin listener serves.
pub const PATHS: [&str; 7] = [
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/plugins",
    page::PATH,
    status::PATH,
];

/// Which daemon this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Serve,
    Api,
    Writer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Api => "api",
            Role::Writer => "writer",
        }
    }
}

/// What the admin handlers read.
pub struct AdminState {
    pub role: Role,
    pub registry: Arc<Registry>,
    /// The API of `serve` and `api` (health is the API's).
    pub api: Option<Arc<ApiState>>,
    /// The writer of `serve` and `writer`, and how long its threads may be
    /// silent before it is wedged.
    pub writer: Option<(Arc<crate::writer::Status>, Duration)>,
    /// The warehouse the tables section reads (`serve`, `writer`).
    pub warehouse: Option<String>,
    pub status: status::StatusCache,
}

impl AdminState {
    /// Liveness: the API's (with the writer of `serve`), or the writer's.
    pub fn liveness(&self) -> Result<(), String> {
        match (&self.api, &self.writer) {
            (Some(api), _) => api.liveness(),
            (None, Some((w, bound))) => w.liveness(*bound),
            (None, None) => Ok(()),
        }
    }

    /// Readiness: the API's (with the writer of `serve`), or the writer's
    /// with its plugins settled.
    pub fn readiness(&self) -> Result<(), String> {
        match (&self.api, &self.writer) {
            (Some(api), _) => api.readiness(),
            (None, Some((w, bound))) => {
                if !self.registry.settled() {
                    return Err("plugins are still loading".into());
                }
                w.readiness(*bound)
            }
            (None, None) => Ok(()),
        }
    }

    fn health_body(
        &self,
        result: Result<(), String>,
    ) -> (StatusCode, axum::Json<serde_json::Value>) {
        let mut body = match &self.writer {
            Some((w, _)) => w.report(),
            None => serde_json::json!({}),
        };
        let code = match result {
            Ok(()) => {
                body["status"] = "ok".into();
                StatusCode::OK
            }
            Err(why) => {
                body["status"] = "unavailable".into();
                body["reason"] = why.into();
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        body["role"] = self.role.as_str().into();
        (code, axum::Json(body))
    }
}

/// The admin router.
pub fn router(state: Arc<AdminState>) -> axum::Router {
    async fn healthz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
        s.health_body(s.liveness())
    }
    async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
        s.health_body(s.readiness())
    }
    async fn metrics_text(State(s): State<Arc<AdminState>>) -> Response {
        use crate::api::metrics::{PLUGINS_LOADED, PLUGINS_REFUSED};
        ::metrics::gauge!(PLUGINS_LOADED).set(s.registry.snapshot().len() as f64);
        ::metrics::gauge!(PLUGINS_REFUSED).set(s.registry.refused().len() as f64);
        crate::writer::metrics::refresh_age();
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            crate::api::metrics::handle().render(),
        )
            .into_response()
    }
    async fn plugins(State(s): State<Arc<AdminState>>) -> Response {
        axum::Json(status::plugins(&s.registry)).into_response()
    }
    async fn status_json(State(s): State<Arc<AdminState>>) -> Response {
        axum::Json(status::collect(&s).await).into_response()
    }
    async fn root() -> Response {
        (StatusCode::FOUND, [(header::LOCATION, page::PATH)]).into_response()
    }
    let [
        root_path,
        healthz_path,
        readyz_path,
        metrics_path,
        plugins_path,
        page_path,
        json_path,
    ] = PATHS;
    axum::Router::new()
        .route(root_path, get(root))
        .route(healthz_path, get(healthz))
        .route(readyz_path, get(readyz))
        .route(metrics_path, get(metrics_text))
        .route(plugins_path, get(plugins))
        .route(page_path, get(page::html))
        .route(page::SCRIPT_PATH, get(page::script))
        .route(json_path, get(status_json))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({
                    "error": format!("no such admin path; try {}", PATHS[1..].join(", "))
                })),
            )
        })
        .with_state(state)
}

/// A running admin listener.
pub struct AdminHttp {
    pub addr: SocketAddr,
    pub state: Arc<AdminState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AdminHttp {
    /// Binds `addr` and serves the admin routes until [`AdminHttp::stop`].
    pub async fn start(config: &Config, addr: SocketAddr, state: AdminState) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on {addr} for the admin listener (set --admin-listen, \
                 EVENTSIFT_ADMIN_LISTEN or `admin_listen` in the config file)"
            )
        })?;
        let addr = listener.local_addr()?;
        let state = Arc::new(state);
        let app = router(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let mut limits = config.http_limits();
        // Operators and scrapers only: a small, fixed connection cap.
        limits.max_connections = limits.max_connections.min(256);
        let task = tokio::spawn(async move {
            crate::api::server::serve(
                listener,
                app,
                limits,
                async {
                    let _ = rx.await;
                },
                Duration::from_secs(5),
            )
            .await
        });
        tracing::info!("admin listening on http://{addr}");
        tracing::info!("status page: http://{addr}{}", page::PATH);
        Ok(AdminHttp {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }

    /// Sends systemd's readiness notification once the daemon is ready
    /// (and keeps polling until then); a no-op without `NOTIFY_SOCKET`.
    pub fn notify_when_ready(&self) {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        let state = self.state.clone();
        tokio::spawn(async move {
            loop {
                if state.readiness().is_ok() {
                    let msg = format!("READY=1\nSTATUS=eventsift {} ready", state.role.as_str());
                    match notify::send(&msg) {
                        Ok(_) => tracing::info!("told systemd the daemon is ready"),
                        Err(e) => tracing::warn!("cannot notify systemd: {e}"),
                    }
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}
