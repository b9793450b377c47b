//! Daemon configuration: defaults, then a TOML file (`--config`), then
//! `EVENTSIFT_*` environment variables, then flags (each overriding the one
//! before). Unknown keys in the file are an error naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every setting of `serve`, `api` and `writer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the public HTTP server (event routes, health) listens on.
    /// For `writer`, which has no public listener, an alias of
    /// `admin_listen` (kept for earlier configurations).
    pub listen: SocketAddr,
    /// Address of the admin listener (metrics, plugins, status page,
    /// health); default `127.0.0.1:5050` for `serve` and `api`,
    /// `127.0.0.1:5051` for `writer`.
    pub admin_listen: Option<SocketAddr>,
    /// Plugin folder, watched for drop-ins (default: the bundled plugins
    /// installed beside the binary, see [`default_plugins`]).
    pub plugins: PathBuf,
    /// Kafka bootstrap servers; without them `serve` uses the embedded log.
    pub kafka: Option<String>,
    /// Kafka topic of the event envelopes.
    pub topic: String,
    /// Data directory: embedded log in `log/`, plugin cache in `cache/`.
    pub data_dir: PathBuf,
    /// Where tables are written: a local path or `hdfs://host:port/path`.
    pub warehouse: String,
    /// Table format of a new warehouse (`hive` or `delta`); an existing
    /// warehouse keeps its own, and a writer told otherwise refuses.
    pub table_format: crate::writer::delta::TableFormat,
    /// How often the writer commits files.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Request bytes the API holds at once (bodies as read and decoded,
    /// and what is built from them), in MiB ([`crate::api::budget`]).
    pub request_budget_mib: usize,
    /// How long a publish may wait for the transport's acknowledgement
    /// before the API answers 503.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Memory cap per plugin instance, in MiB.
    pub plugin_memory_mib: usize,
    /// CPU deadline per plugin call.
    #[serde(with = "humantime_serde")]
    pub plugin_deadline: Duration,
    /// Plugin log lines below this level are dropped (contract 0.2 plugins).
    pub plugin_log_level: crate::plugin::LogLevel,
    /// Log lines per second each plugin may write over time.
    pub plugin_log_rate: u32,
    /// Log lines a plugin may write at once (its bucket's size).
    pub plugin_log_burst: u32,
    /// Kafka consumer group of the writer.
    pub group: String,
    /// How long the writer holds an event whose type has no plugin yet
    /// before it goes to `rejected_events`.
    #[serde(with = "humantime_serde")]
    pub plugin_wait: Duration,
    /// Cap on the writer's buffered (encoded, uncommitted) bytes, in MiB:
    /// reaching it commits early, and consumption pauses while it commits.
    /// Default 64: with the consumer's 64 MiB queue and the measured
    /// overhead a drain peaks below 400 MB (docs/BENCHMARKS.md, issue 19).
    pub max_buffer_mib: usize,
    /// Rows per source partition after which the writer commits early.
    pub max_file_rows: u64,
    /// librdkafka properties for the API's producer (TOML table
    /// `[kafka_producer]`), applied over eventsift's own settings, e.g.
    /// `"linger.ms" = "2"`. `enable.idempotence` and `acks` cannot be
    /// weakened: an acknowledged event must be durable.
    pub kafka_producer: BTreeMap<String, String>,
    /// librdkafka properties for the writer's consumer (TOML table
    /// `[kafka_consumer]`), applied over eventsift's own settings.
    /// `enable.auto.commit`, `enable.auto.offset.store`, `auto.offset.reset`
    /// and `group.id` are eventsift's (the warehouse holds the positions).
    pub kafka_consumer: BTreeMap<String, String>,
    /// Commit records kept per source partition (older ones are pruned
    /// behind a low-water mark).
    pub keep_commit_records: usize,
    /// Start a new commit chain for partitions whose chain belongs to this
    /// source identity but cannot continue (the data dir or topic was
    /// replaced, or the source ends before the chain). The writer prints the
    /// identity when it refuses; nothing is automatic.
    pub new_chain_from: Option<String>,
    /// Skip records the source deleted (retention) before they were
    /// written, logging and counting them, instead of stopping the partition.
    pub accept_retention_gaps: bool,
    /// Bound on each warehouse (HDFS) call.
    #[serde(with = "humantime_serde")]
    pub warehouse_timeout: Duration,
    /// Time a client has to send a request's head, counted from when the
    /// connection is ready for it (so it also ends idle keep-alive
    /// connections).
    #[serde(with = "humantime_serde")]
    pub http_header_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed.
    #[serde(with = "humantime_serde")]
    pub http_idle_timeout: Duration,
    /// Time a request body may take to arrive (408 beyond).
    #[serde(with = "humantime_serde")]
    pub http_body_timeout: Duration,
    /// Connections served at once (0: three quarters of the descriptor
    /// limit left after 64, so a lowered `ulimit -n` lowers it).
    pub max_connections: usize,
    /// Largest request target in bytes (414 beyond).
    pub max_uri_bytes: usize,
    /// Largest sum of request header names and values in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Largest Host, User-Agent or Accept value in bytes (431 beyond): the
    /// envelope keeps them in every row.
    pub max_captured_header_bytes: usize,
    /// Write keys (TOML `[[write_keys]]` with `key`, `game`, `event_types`
    /// and optionally `secret` for body signatures). With any configured,
    /// every event route needs one: 401 without, 403 for a type the key may
    /// not write. Keys and secrets are never logged.
    pub write_keys: Vec<crate::api::ingest::WriteKey>,
    /// Origins browser (WebGL) games may call from, e.g.
    /// `["https://play.example.com"]`, or `["*"]`; preflights are answered.
    /// Empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Events per `/v1/batch` request, at most (413 beyond).
    pub max_batch_events: usize,
    /// Bytes per event of a batch, at most (that event is rejected).
    pub max_event_bytes: usize,
    /// Events whose device time is older than this are rejected.
    #[serde(with = "humantime_serde")]
    pub device_time_horizon: Duration,
    /// Events whose device time is ahead of the server's by more than this
    /// are rejected.
    #[serde(with = "humantime_serde")]
    pub device_time_ahead: Duration,
    /// Writer: how long an event id the client named is remembered per
    /// source partition (a retry within it is stored once).
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Writer: event ids remembered at most, over all the partitions it
    /// consumes, split evenly (the oldest go first; the metrics say when
    /// this, not the time, ends a window).
    pub dedup_max_ids: usize,
    /// Writer: memory for remembered event ids over all the partitions it
    /// consumes, split evenly, in MiB.
    pub dedup_max_mib: usize,
    /// Writer: every this many commits of a partition, its remembered ids
    /// are written whole (a snapshot), so a restart reads a snapshot and
    /// the few commits after it.
    pub dedup_snapshot_every: usize,
    /// Whether `warehouse` was given (by flag, environment or file) rather
    /// than defaulted: `api` checks plugin versions against the warehouse's
    /// table schemas only then.
    #[serde(skip)]
    pub warehouse_given: bool,
    /// Whether `listen` was given (the writer's alias of `admin_listen`).
    #[serde(skip)]
    pub listen_given: bool,
}

/// Where the bundled plugins are looked for when no plugin folder is
/// given, in this order: `<bin>/../share/eventsift/plugins` (an installed
/// layout, e.g. `/usr/local/bin` and `/usr/local/share`, as `cargo xtask
/// dist` packs it), `<bin>/plugins` (beside the binary), `<bin>/../plugins`
/// (a checkout's `target/release/eventsift` and `target/plugins`), then
/// `target/plugins` under the current folder.
pub fn plugin_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok())
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push(bin.join("../share/eventsift/plugins"));
        out.push(bin.join("plugins"));
        out.push(bin.join("../plugins"));
    }
    out.push(PathBuf::from("target/plugins"));
    out
}

/// The first of [`plugin_candidates`] that is a folder holding a `.wasm`
/// file (else the last, `target/plugins`, whose absence the daemon reports).
pub fn default_plugins() -> PathBuf {
    let candidates = plugin_candidates();
    candidates
        .iter()
        .find(|c| {
            std::fs::read_dir(c).is_ok_and(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wasm")))
            })
        })
        .map(|c| c.components().collect::<PathBuf>())
        .unwrap_or_else(|| candidates[candidates.len() - 1].clone())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            admin_listen: None,
            plugins: default_plugins(),
            kafka: None,
            topic: "events".into(),
            data_dir: PathBuf::from("./eventsift-data"),
            warehouse: "./warehouse".into(),
            table_format: Default::default(),
            flush_interval: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            request_budget_mib: 256,
            ack_timeout: Duration::from_secs(5),
            plugin_memory_mib: 64,
            plugin_deadline: Duration::from_millis(100),
            plugin_log_level: crate::plugin::LogLevel::Info,
            plugin_log_rate: 100,
            plugin_log_burst: 1000,
            group: "eventsift-writer".into(),
            plugin_wait: Duration::from_secs(30),
            max_buffer_mib: 64,
            max_file_rows: 1_000_000,
            kafka_producer: BTreeMap::new(),
            kafka_consumer: BTreeMap::new(),
            keep_commit_records: crate::writer::commit::DEFAULT_KEEP_RECORDS,
            new_chain_from: None,
            accept_retention_gaps: false,
            warehouse_timeout: crate::writer::warehouse::DEFAULT_TIMEOUT,
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            http_body_timeout: Duration::from_secs(30),
            max_connections: 0,
            max_uri_bytes: 8 << 10,
            max_header_bytes: 64 << 10,
            max_captured_header_bytes: 1 << 10,
            write_keys: Vec::new(),
            cors_origins: Vec::new(),
            max_batch_events: 1000,
            max_event_bytes: 64 << 10,
            device_time_horizon: Duration::from_secs(30 * 86_400),
            device_time_ahead: Duration::from_secs(86_400),
            dedup_window: Duration::from_secs(86_400),
            dedup_max_ids: 4_000_000,
            dedup_max_mib: 256,
            dedup_snapshot_every: 16,
            warehouse_given: false,
            listen_given: false,
        }
    }
}

/// Keys settable through `EVENTSIFT_<KEY>` (upper case).
const KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "plugins",
    "kafka",
    "topic",
    "data_dir",
    "warehouse",
    "table_format",
    "flush_interval",
    "max_body_bytes",
    "request_budget_mib",
    "ack_timeout",
    "plugin_memory_mib",
    "plugin_deadline",
    "plugin_log_level",
    "plugin_log_rate",
    "plugin_log_burst",
    "group",
    "plugin_wait",
    "max_buffer_mib",
    "max_file_rows",
    "keep_commit_records",
    "new_chain_from",
    "accept_retention_gaps",
    "warehouse_timeout",
    "http_header_timeout",
    "http_idle_timeout",
    "http_body_timeout",
    "max_connections",
    "max_uri_bytes",
    "max_header_bytes",
    "max_captured_header_bytes",
    "max_batch_events",
    "max_event_bytes",
    "device_time_horizon",
    "device_time_ahead",
    "dedup_window",
    "dedup_max_ids",
    "dedup_max_mib",
    "dedup_snapshot_every",
];

impl Config {
    /// Merges the sources. `flags` holds only the settings given on the
    /// command line (serialized without the unset ones).
    pub fn load(file: Option<&Path>, flags: impl Serialize) -> Result<Config, figment::Error> {
        Self::load_with_env(file, flags, Env::prefixed("EVENTSIFT_").only(KEYS))
    }

    fn load_with_env(
        file: Option<&Path>,
        flags: impl Serialize,
        env: Env,
    ) -> Result<Config, figment::Error> {
        let mut given = Figment::new();
        if let Some(file) = file {
            given = given.merge(Toml::file_exact(file));
        }
        let given = given.merge(env).merge(Serialized::defaults(flags));
        let warehouse_given = given.find_value("warehouse").is_ok();
        let listen_given = given.find_value("listen").is_ok();
        let mut config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(given)
            .extract()?;
        config.warehouse_given = warehouse_given;
        config.listen_given = listen_given;
        Ok(config)
    }

    /// Refuses values the daemon cannot run with, naming the setting.
    pub fn check(&self) -> Result<(), String> {
        // A compressed body holds its raw bytes and up to max_body_bytes
        // of output while it is decoded: the budget must fit two bodies.
        if (self.request_budget_mib as u128) << 20 < 2 * self.max_body_bytes as u128 {
            return Err(format!(
                "request_budget_mib {} MiB holds less than two bodies of max_body_bytes {}: \
                 raise it to at least {} MiB",
                self.request_budget_mib,
                self.max_body_bytes,
                (2 * self.max_body_bytes as u128).div_ceil(1 << 20)
            ));
        }
        let positive = [
            ("flush_interval", self.flush_interval),
            ("ack_timeout", self.ack_timeout),
            ("plugin_deadline", self.plugin_deadline),
            ("warehouse_timeout", self.warehouse_timeout),
            ("http_header_timeout", self.http_header_timeout),
            ("http_idle_timeout", self.http_idle_timeout),
            ("http_body_timeout", self.http_body_timeout),
            ("device_time_horizon", self.device_time_horizon),
            ("dedup_window", self.dedup_window),
        ];
        for (name, d) in positive {
            if d < Duration::from_millis(1) {
                return Err(format!("{name} must be at least 1ms, got {d:?}"));
            }
        }
        let at_least_one = [
            ("max_body_bytes", self.max_body_bytes),
            ("request_budget_mib", self.request_budget_mib),
            ("plugin_memory_mib", self.plugin_memory_mib),
            ("max_buffer_mib", self.max_buffer_mib),
            ("max_file_rows", self.max_file_rows as usize),
            ("keep_commit_records", self.keep_commit_records),
            ("max_uri_bytes", self.max_uri_bytes),
            ("max_header_bytes", self.max_header_bytes),
            ("max_captured_header_bytes", self.max_captured_header_bytes),
            ("max_batch_events", self.max_batch_events),
            ("max_event_bytes", self.max_event_bytes),
            ("dedup_max_ids", self.dedup_max_ids),
            ("dedup_max_mib", self.dedup_max_mib),
            ("dedup_snapshot_every", self.dedup_snapshot_every),
            ("plugin_log_burst", self.plugin_log_burst as usize),
        ];
        for (name, v) in at_least_one {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.plugin_memory_mib > 4096 {
            return Err(format!(
                "plugin_memory_mib must be at most 4096 (a 32-bit Wasm memory), got {}",
                self.plugin_memory_mib
            ));
        }
        let mut keys = std::collections::HashSet::new();
        for (i, k) in self.write_keys.iter().enumerate() {
            if k.key.len() < 16 || k.key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "write_keys[{i}] (game {:?}): a key must be at least 16 characters, \
                     without spaces",
                    k.game
                ));
            }
            if k.game.is_empty() || k.game.len() > 128 {
                return Err(format!("write_keys[{i}]: game must be 1 to 128 characters"));
            }
            if k.event_types.is_empty() {
                return Err(format!(
                    "write_keys[{i}] (game {:?}): event_types is empty (use [\"*\"] for any)",
                    k.game
                ));
            }
            if k.secret.as_deref().is_some_and(|s| s.len() < 16) {
                return Err(format!(
                    "write_keys[{i}] (game {:?}): a secret must be at least 16 characters",
                    k.game
                ));
            }
            if !keys.insert(k.key.as_str()) {
                return Err(format!(
                    "write_keys[{i}] (game {:?}): the key is given twice",
                    k.game
                ));
            }
        }
        for o in &self.cors_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(format!(
                    "cors_origins: {o:?} is not an origin (scheme://host[:port]) or \"*\""
                ));
            }
        }
        if self.max_header_bytes > crate::api::server::LIBRARY_MAX_HEADER_BYTES {
            return Err(format!(
                "max_header_bytes must be at most {} (the HTTP library's own cap)",
                crate::api::server::LIBRARY_MAX_HEADER_BYTES
            ));
        }
        Ok(())
    }

    /// The admin listener's address for `role`: `admin_listen`, else (for
    /// the writer) a given `listen`, else the role's default.
    pub fn admin_addr(&self, role: crate::admin::Role) -> SocketAddr {
        use crate::admin::{DEFAULT_ADMIN, DEFAULT_WRITER_ADMIN, Role};
        match (self.admin_listen, role) {
            (Some(a), _) => a,
            (None, Role::Writer) if self.listen_given => self.listen,
            (None, Role::Writer) => DEFAULT_WRITER_ADMIN,
            (None, _) => DEFAULT_ADMIN,
        }
    }

    /// The HTTP server's limits.
    pub fn http_limits(&self) -> crate::api::server::HttpLimits {
        crate::api::server::HttpLimits {
            header_timeout: self.http_header_timeout,
            idle_timeout: self.http_idle_timeout,
            max_connections: {
                let fit = crate::api::server::default_max_connections();
                match self.max_connections {
                    0 => fit,
                    n if n > fit => {
                        tracing::warn!(
                            "max_connections {n} is more than the descriptor limit leaves room \
                             for: serving at most {fit} connections (raise ulimit -n)"
                        );
                        fit
                    }
                    n => n,
                }
            },
        }
    }

    /// The API's per-request limits.
    pub fn request_limits(&self) -> crate::api::RequestLimits {
        crate::api::RequestLimits {
            max_body_bytes: self.max_body_bytes,
            budget_bytes: self.request_budget_mib << 20,
            max_uri_bytes: self.max_uri_bytes,
            max_header_bytes: self.max_header_bytes,
            max_captured_header_bytes: self.max_captured_header_bytes,
            body_timeout: self.http_body_timeout,
        }
    }

    /// The API's ingestion settings.
    pub fn ingest(&self) -> crate::api::ingest::Ingest {
        crate::api::ingest::Ingest::new(
            self.write_keys.clone(),
            self.cors_origins.clone(),
            self.max_batch_events,
            self.max_event_bytes,
            self.device_time_horizon,
            self.device_time_ahead,
        )
    }

    /// The writer's deduplication bounds.
    pub fn dedup(&self) -> crate::writer::dedup::DedupLimits {
        crate::writer::dedup::DedupLimits {
            window: self.dedup_window,
            max_ids: self.dedup_max_ids,
            max_bytes: self.dedup_max_mib << 20,
            snapshot_every: self.dedup_snapshot_every,
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    }

    #[test]
    fn precedence_is_flag_env_file_default() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "topic = \"from-file\"\nwarehouse = \"hdfs://nn:8020/w\"\nflush_interval = \"1s\"",
            )?;
            jail.set_env("EVENTSIFT_TOPIC", "from-env");
            jail.set_env("EVENTSIFT_WAREHOUSE", "from-env-wh");
            let env = || Env::prefixed("EVENTSIFT_").only(KEYS);
            let c = Config::load_with_env(
                Some(Path::new("c.toml")),
                Flags {
                    topic: Some("from-flag".into()),
                },
                env(),
            )?;
            assert_eq!(c.topic, "from-flag");
            assert_eq!(c.warehouse, "from-env-wh");
            assert_eq!(c.flush_interval, Duration::from_secs(1));
            assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 5000)));
            let c = Config::load_with_env(Some(Path::new("c.toml")), Flags::default(), env())?;
            assert_eq!(c.topic, "from-env");
            assert!(c.warehouse_given);
            jail.clear_env();
            let c = Config::load_with_env(None, Flags::default(), env())?;
            assert!(!c.warehouse_given);
            assert_eq!(c.warehouse, "./warehouse");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "topic = \"t\"\nflush_intervall = \"1s\"")?;
            let err = Config::load(Some(Path::new("c.toml")), Flags::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("unknown field: found `flush_intervall`"),
                "{err}"
            );
            Ok(())
        });
    }
}
