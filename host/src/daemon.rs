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
use crate::writer::commit::TakeOptions;
use crate::writer::schemas::{SchemaError, Schemas};
use crate::writer::sink::SinkLimits;
use crate::writer::source::KafkaSourceConfig;
use crate::writer::warehouse::Warehouse;
use crate::writer::{Input, Writer, WriterConfig};

/// The plugin registry of a daemon, loaded and watched.
pub struct Plugins {
    pub registry: Arc<Registry>,
    _watcher: Watcher,
}

/// What a plugin version is checked against in the warehouse at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Its event type's owner and its table's schema history.
    All,
    /// Its event type's owner only (the writer admits schemas before writing).
    Owner,
}

impl Plugins {
    /// Loads and watches the plugin folder; with `warehouse`, a plugin
    /// version must also fit the warehouse's owners and table schemas.
    pub fn start(config: &Config, warehouse: Option<&str>) -> Result<Self> {
        Self::start_with(config, warehouse, Check::All)
    }

    /// [`Plugins::start`], choosing what the warehouse checks.
    pub fn start_with(config: &Config, warehouse: Option<&str>, check: Check) -> Result<Self> {
        // The metrics recorder first: a plugin registers its counters (log
        // lines) when it loads, and a handle taken before the recorder is
        // installed counts nothing, ever.
        api::metrics::handle();
        if !config.plugins.is_dir() {
            anyhow::bail!(
                "the plugin folder {} does not exist (set --plugins, EVENTSIFT_PLUGINS or \
                 `plugins` in the config file; without them eventsift looks for the bundled \
                 plugins in {})",
                config.plugins.display(),
                crate::config::plugin_candidates()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let runtime = Runtime::new(RuntimeConfig {
            limits: Limits {
                memory_bytes: config.plugin_memory_mib << 20,
                deadline: config.plugin_deadline,
            },
            cache_dir: Some(config.cache_dir()),
            log: crate::plugin::LogConfig {
                level: config.plugin_log_level,
                per_second: config.plugin_log_rate,
                burst: config.plugin_log_burst,
            },
        })?;
        let registry = Registry::new(runtime, &config.plugins);
        if let Some(location) = warehouse {
            let wh = Warehouse::open_with_timeout(location, config.warehouse_timeout)
                .with_context(|| format!("opening the warehouse {location}"))?;
            let schemas = Schemas::new(Arc::new(wh));
            registry.set_guard(Box::new(move |meta| {
                match match check {
                    Check::All => schemas.check(meta),
                    Check::Owner => schemas.check_owner(meta),
                } {
                    Ok(()) => Ok(()),
                    Err(SchemaError::Incompatible(why)) => Err(why),
                    Err(e) => {
                        tracing::warn!(
                            plugin = %meta.name,
                            "cannot read the table's schema ({e}): loaded without that check \
                             (the writer checks again before writing)"
                        );
                        Ok(())
                    }
                }
            }));
        }
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
            options: config.kafka_producer.clone(),
        })?),
        None => AnyTransport::Embedded(EmbeddedLog::open(&config.log_dir())?),
    }))
}

/// `eventsift serve` running: plugins, transport, the writer on it and the API.
pub struct Serve {
    pub plugins: Plugins,
    pub transport: Arc<AnyTransport>,
    pub writer: Writer,
    pub api: RunningApi,
}

impl Serve {
    pub async fn start(config: &Config) -> Result<Serve> {
        let (c, w) = (config.clone(), config.warehouse.clone());
        let plugins = tokio::task::spawn_blocking(move || Plugins::start(&c, Some(&w))).await??;
        let transport = transport(config)?;
        // Off the async threads: opening a warehouse blocks.
        let (c, t, r) = (config.clone(), transport.clone(), plugins.registry.clone());
        let writer = tokio::task::spawn_blocking(move || start_writer(&c, &t, r)).await??;
        let api = RunningApi::start(
            config,
            plugins.registry.clone(),
            transport.clone(),
            Some(writer.status.clone()),
        )
        .await?;
        Ok(Serve {
            plugins,
            transport,
            writer,
            api,
        })
    }

    /// Resolves with the reason when the daemon can no longer keep its
    /// promise: the writer stopped (nothing drains what the API accepts) or
    /// the embedded log failed.
    pub async fn failed(&self) -> String {
        loop {
            if !self.writer.is_running() {
                return "the writer stopped".into();
            }
            if let AnyTransport::Embedded(log) = &*self.transport
                && let Some(why) = log.failure()
            {
                return why.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the API (in-flight requests finish), then the writer (final commit).
    pub async fn stop(self) -> Result<()> {
        self.api.stop().await?;
        let writer = self.writer;
        tokio::task::spawn_blocking(move || writer.stop()).await??;
        Ok(())
    }
}

/// The writer's settings from the daemon configuration.
pub fn writer_config(config: &Config) -> WriterConfig {
    WriterConfig {
        warehouse: config.warehouse.clone(),
        table_format: config.table_format,
        limits: SinkLimits {
            flush_interval: config.flush_interval,
            max_file_rows: config.max_file_rows,
            max_buffer_bytes: config.max_buffer_mib << 20,
        },
        plugin_wait: config.plugin_wait,
        // The API accepts bodies up to max_body_bytes; leave room for the envelope.
        max_record_bytes: config.max_body_bytes + (64 << 10),
        keep_records: config.keep_commit_records,
        take: TakeOptions {
            new_chain_from: config.new_chain_from.clone(),
            accept_gaps: config.accept_retention_gaps,
        },
        warehouse_timeout: config.warehouse_timeout,
        dedup: config.dedup(),
    }
}

/// Starts the writer of `serve`: on the embedded log the API appends to, or
/// on Kafka.
pub fn start_writer(
    config: &Config,
    transport: &AnyTransport,
    registry: Arc<Registry>,
) -> Result<Writer> {
    match transport {
        AnyTransport::Embedded(log) => Writer::start(
            writer_config(config),
            Input::Embedded(log.clone()),
            registry,
        ),
        AnyTransport::Kafka(_) => start_writer_kafka(config, registry, None),
    }
}

/// The writer's Kafka source (`config.kafka` must be set): in the consumer
/// group, or on the partitions `assign` names.
pub fn kafka_source(config: &Config, assign: Option<Vec<i32>>) -> Result<KafkaSourceConfig> {
    Ok(KafkaSourceConfig {
        brokers: config
            .kafka
            .clone()
            .context("the writer needs Kafka brokers")?,
        topic: config.topic.clone(),
        group: config.group.clone(),
        options: config.kafka_consumer.clone(),
        assign,
    })
}

/// Starts a writer on Kafka (see [`kafka_source`]).
pub fn start_writer_kafka(
    config: &Config,
    registry: Arc<Registry>,
    assign: Option<Vec<i32>>,
) -> Result<Writer> {
    Writer::start(
        writer_config(config),
        Input::Kafka(kafka_source(config, assign)?),
        registry,
    )
}

/// Starts the admin listener of a daemon (`role`) on its configured
/// address; `api` and `writer` are what its health answers for.
pub async fn start_admin(
    config: &Config,
    role: crate::admin::Role,
    registry: Arc<Registry>,
    api: Option<Arc<ApiState>>,
    writer: Option<Arc<crate::writer::Status>>,
) -> Result<crate::admin::AdminHttp> {
    if role == crate::admin::Role::Writer && config.listen_given && config.admin_listen.is_some() {
        tracing::warn!(
            "--listen is the writer's old name for --admin-listen: both are set, --admin-listen wins"
        );
    }
    let bound = crate::writer::wedged_after(config.warehouse_timeout, config.plugin_wait);
    let state = crate::admin::AdminState {
        role,
        registry,
        api,
        writer: writer.map(|w| (w, bound)),
        warehouse: (role != crate::admin::Role::Api).then(|| config.warehouse.clone()),
        status: Default::default(),
    };
    crate::admin::AdminHttp::start(config, config.admin_addr(role), state).await
}

/// A running API server.
pub struct RunningApi {
    pub addr: SocketAddr,
    pub state: Arc<ApiState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningApi {
    /// Serves the API on `config.listen` until [`RunningApi::stop`]; with
    /// `writer` (`serve`), its health is the API's too.
    pub async fn start(
        config: &Config,
        registry: Arc<Registry>,
        transport: Arc<AnyTransport>,
        writer: Option<Arc<crate::writer::Status>>,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let bound = crate::writer::wedged_after(config.warehouse_timeout, config.plugin_wait);
        let state = ApiState::new(
            registry,
            transport,
            config.request_limits(),
            config.ingest(),
            writer.map(|w| (w, bound)),
        );
        let (tx, rx) = oneshot::channel::<()>();
        let service = api::ApiService::new(state.clone());
        let limits = config.http_limits();
        tracing::info!(
            "HTTP limits: {} connections, head within {}, idle {}, body within {}",
            limits.max_connections,
            humantime::format_duration(limits.header_timeout),
            humantime::format_duration(limits.idle_timeout),
            humantime::format_duration(config.http_body_timeout)
        );
        let keyed = state.ingest.keyed();
        if keyed {
            tracing::info!(
                "write keys: {} configured; every event route needs one",
                config.write_keys.len()
            );
        }
        let shutdown = async {
            let _ = rx.await;
        };
        let drain = Duration::from_secs(20);
        let task = match api::cors_layer(&config.cors_origins) {
            Some(cors) => {
                tracing::info!("CORS: answering origins {:?}", config.cors_origins);
                let service = tower_layer::Layer::layer(&cors, service);
                tokio::spawn(api::server::serve(
                    listener, service, limits, shutdown, drain,
                ))
            }
            None => tokio::spawn(api::server::serve(
                listener, service, limits, shutdown, drain,
            )),
        };
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
