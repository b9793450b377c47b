//! Running the daemon: the plugin runtime and registry (with its watcher),
//! the transport, and the HTTP API, with a graceful shutdown: stop
//! accepting, finish in-flight requests, flush the transport.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::oneshot;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::plugin::sandbox::Limits;
use crate::plugin::watcher::Watcher;
use crate::plugin::{Registry, Runtime, RuntimeConfig};
use crate::transport::embedded::EmbeddedLog;
use crate::transport::kafka::{KafkaConfig, KafkaTransport};
use crate::transport::{AnyTransport, Transport};

/// The plugin registry of a daemon, loaded and watched.
pub struct Plugins {
    pub registry: Arc<Registry>,
    _watcher: Watcher,
}

impl Plugins {
    pub fn start(config: &Config) -> Result<Self> {
        let runtime = Runtime::new(RuntimeConfig {
            limits: Limits {
                memory_bytes: config.plugin_memory_mib << 20,
                deadline: config.plugin_deadline,
            },
            cache_dir: Some(config.cache_dir()),
        })?;
        let registry = Registry::new(runtime, &config.plugins);
        let watcher = Watcher::start(registry.clone()).context("starting the plugin watcher")?;
        Ok(Plugins {
            registry,
            _watcher: watcher,
        })
    }
}

/// Opens the transport the configuration names: Kafka with `kafka`, the
/// embedded log otherwise.
pub fn transport(config: &Config) -> Result<Arc<AnyTransport>> {
    Ok(Arc::new(match &config.kafka {
        Some(brokers) => AnyTransport::Kafka(KafkaTransport::new(&KafkaConfig {
            brokers: brokers.clone(),
            topic: config.topic.clone(),
            ack_timeout: config.ack_timeout,
        })?),
        None => AnyTransport::Embedded(EmbeddedLog::open(&config.log_dir())?),
    }))
}

/// A running API server.
pub struct RunningApi {
    pub addr: SocketAddr,
    pub state: Arc<ApiState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningApi {
    /// Serves the API on `config.listen` until [`RunningApi::stop`].
    pub async fn start(
        config: &Config,
        registry: Arc<Registry>,
        transport: Arc<AnyTransport>,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let state = ApiState::new(registry, transport, config.max_body_bytes);
        let (tx, rx) = oneshot::channel::<()>();
        let app = api::router(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        tracing::info!("API listening on http://{addr}");
        Ok(RunningApi {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// Stops accepting, finishes in-flight requests, flushes the transport.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(Duration::from_secs(20), &mut self.task).await {
            Ok(joined) => joined??,
            Err(_) => tracing::warn!("in-flight requests did not finish within 20 s"),
        }
        self.state.transport.flush(Duration::from_secs(8)).await;
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
