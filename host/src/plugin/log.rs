//! The `log` import of contract 0.2: what a plugin writes for its
//! developer, bounded and tagged by the host.
//!
//! - **Levels**: lines below [`LogConfig::level`] are counted and dropped
//!   at the import, before anything is kept.
//! - **Rate**: each plugin (all its instances together) has a token bucket
//!   of [`LogConfig::burst`] lines refilled at [`LogConfig::per_second`];
//!   lines past it are counted as dropped, never shown, and the call goes on.
//! - **Size**: a message is cut at [`MAX_MESSAGE_BYTES`]; a call keeps at
//!   most [`MAX_LINES_PER_CALL`] lines (the bucket bounds them anyway).
//! - **Tags**: the host adds the plugin's name and version and, for lines of
//!   `process` that name an event, its index in the batch, which the writer
//!   turns into the event's source position (partition and offset).
//!
//! Lines reach the daemon's log through [`emit`] (target
//! `eventsift::plugin_log`), and `eventsift plugin test` prints them.
//! Counters: `eventsift_plugin_log_lines_total{plugin, level}` for lines
//! kept, `eventsift_plugin_log_dropped_total{plugin, reason}` for the rest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::bindings::WitLevel;

/// Lines kept, by plugin and level.
pub const LINES: &str = "eventsift_plugin_log_lines_total";
/// Lines dropped, by plugin and reason (`level`, `rate`).
pub const DROPPED: &str = "eventsift_plugin_log_dropped_total";

/// A message is cut to this many bytes (at a character boundary).
pub const MAX_MESSAGE_BYTES: usize = 1 << 10;
/// Lines kept per call, at most.
pub const MAX_LINES_PER_CALL: usize = 1024;

/// A plugin log line's level, ordered from the least to the most severe.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Every level, least severe first (the order of the counters).
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return Err(format!("{s:?} is not trace, debug, info, warn or error")),
        })
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<WitLevel> for LogLevel {
    fn from(l: WitLevel) -> Self {
        match l {
            WitLevel::Trace => LogLevel::Trace,
            WitLevel::Debug => LogLevel::Debug,
            WitLevel::Info => LogLevel::Info,
            WitLevel::Warn => LogLevel::Warn,
            WitLevel::Error => LogLevel::Error,
        }
    }
}

/// How plugin lines are kept (`--plugin-log-level`, `plugin_log_rate`).
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// Lines below this level are dropped (default `info`).
    pub level: LogLevel,
    /// Lines per second each plugin may write over time (default 100).
    pub per_second: u32,
    /// Lines a plugin may write at once (default 1000).
    pub burst: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
            per_second: 100,
            burst: 1000,
        }
    }
}

/// One line a plugin wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLine {
    pub level: LogLevel,
    pub message: String,
    /// Within `process`: the index in the batch (as given to
    /// [`super::LoadedPlugin::process`]) of the event it concerns.
    pub event: Option<u32>,
}

/// A plugin's log budget and counters, shared by its instances.
pub struct LogBudget {
    config: LogConfig,
    bucket: Mutex<(f64, Instant)>,
    /// Lines kept, by level.
    kept: [AtomicU64; 5],
    /// Lines dropped below the level, past the rate, past the call's bound.
    below: AtomicU64,
    over_rate: AtomicU64,
    /// The same counts as metrics, once the plugin's name is known.
    metrics: OnceLock<Metrics>,
}

struct Metrics {
    kept: [metrics::Counter; 5],
    below: metrics::Counter,
    over_rate: metrics::Counter,
}

impl LogBudget {
    pub fn new(config: LogConfig) -> Self {
        LogBudget {
            config,
            bucket: Mutex::new((f64::from(config.burst), Instant::now())),
            kept: Default::default(),
            below: AtomicU64::new(0),
            over_rate: AtomicU64::new(0),
            metrics: OnceLock::new(),
        }
    }

    /// Counts this plugin's lines in the process's metrics from now on.
    pub fn export_metrics(&self, plugin: &str) {
        let name = plugin.to_owned();
        let _ = self.metrics.set(Metrics {
            kept: LogLevel::ALL
                .map(|l| metrics::counter!(LINES, "plugin" => name.clone(), "level" => l.as_str())),
            below: metrics::counter!(DROPPED, "plugin" => name.clone(), "reason" => "level"),
            over_rate: metrics::counter!(DROPPED, "plugin" => name.clone(), "reason" => "rate"),
        });
    }

    /// Takes a token; false when the plugin is over its rate.
    fn take(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * f64::from(self.config.per_second);
        b.0 = (b.0 + refill).min(f64::from(self.config.burst));
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// Lines kept so far, by level (trace first).
    pub fn kept(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.kept[i].load(Ordering::Relaxed))
    }

    /// Lines dropped so far: (below the level, over the rate or the call's bound).
    pub fn dropped(&self) -> (u64, u64) {
        (
            self.below.load(Ordering::Relaxed),
            self.over_rate.load(Ordering::Relaxed),
        )
    }
}

/// The lines of the call in progress on one instance.
#[derive(Default)]
pub(crate) struct CallLog {
    pub(crate) lines: Vec<PluginLine>,
}

impl CallLog {
    pub(crate) fn write(
        &mut self,
        budget: &LogBudget,
        level: LogLevel,
        message: String,
        event: Option<u32>,
    ) {
        let metrics = budget.metrics.get();
        if level < budget.config.level {
            budget.below.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = metrics {
                m.below.increment(1);
            }
            return;
        }
        if self.lines.len() >= MAX_LINES_PER_CALL || !budget.take() {
            budget.over_rate.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = metrics {
                m.over_rate.increment(1);
            }
            return;
        }
        if let Some(m) = metrics {
            m.kept[level.index()].increment(1);
        }
        let message = super::instance::cut_to(message, MAX_MESSAGE_BYTES);
        budget.kept[level.index()].fetch_add(1, Ordering::Relaxed);
        self.lines.push(PluginLine {
            level,
            message,
            event,
        });
    }
}

/// Writes a plugin's line to the daemon's log (target
/// `eventsift::plugin_log`), tagged with the plugin and, when known, the
/// event's source position.
pub fn emit(plugin: &str, version: &str, line: &PluginLine, position: Option<(i32, i64)>) {
    macro_rules! at {
        ($level:expr) => {
            match position {
                Some((partition, offset)) => tracing::event!(
                    target: "eventsift::plugin_log",
                    $level,
                    plugin,
                    version,
                    partition,
                    offset,
                    "{}",
                    line.message
                ),
                None => tracing::event!(
                    target: "eventsift::plugin_log",
                    $level,
                    plugin,
                    version,
                    "{}",
                    line.message
                ),
            }
        };
    }
    match line.level {
        LogLevel::Trace => at!(tracing::Level::TRACE),
        LogLevel::Debug => at!(tracing::Level::DEBUG),
        LogLevel::Info => at!(tracing::Level::INFO),
        LogLevel::Warn => at!(tracing::Level::WARN),
        LogLevel::Error => at!(tracing::Level::ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_rate_and_size_are_bounded() {
        let budget = LogBudget::new(LogConfig {
            level: LogLevel::Info,
            per_second: 1,
            burst: 3,
        });
        let mut call = CallLog::default();
        call.write(&budget, LogLevel::Debug, "hidden".into(), None);
        call.write(&budget, LogLevel::Info, "x".repeat(5000), Some(7));
        call.write(&budget, LogLevel::Warn, "é".repeat(700), None);
        call.write(&budget, LogLevel::Error, "third".into(), None);
        call.write(&budget, LogLevel::Error, "over".into(), None);
        assert_eq!(call.lines.len(), 3);
        assert_eq!(call.lines[0].event, Some(7));
        assert!(call.lines[0].message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(call.lines[1].message.ends_with('…'));
        assert_eq!(budget.kept(), [0, 0, 1, 1, 1]);
        assert_eq!(budget.dropped(), (1, 1));
        assert_eq!("WARNING".parse::<LogLevel>(), Ok(LogLevel::Warn));
        assert!("loud".parse::<LogLevel>().is_err());
    }
}
