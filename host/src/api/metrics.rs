//! Prometheus metrics of the API: requests by route and status, events
//! published by type, rejections by reason, publish latency, plugins loaded.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "eventsift_http_requests_total";
pub const PUBLISHED: &str = "eventsift_events_published_total";
pub const REJECTED: &str = "eventsift_events_rejected_total";
pub const PUBLISH_LATENCY: &str = "eventsift_publish_latency_seconds";
pub const PLUGINS_LOADED: &str = "eventsift_plugins_loaded";
/// Plugin files in the folder that are refused (their reasons are on the
/// status page and in the log).
pub const PLUGINS_REFUSED: &str = "eventsift_plugins_refused";
/// Events of `/v1/batch` requests by outcome (accepted, rejected, unavailable).
pub const BATCH_EVENTS: &str = "eventsift_batch_events_total";
pub const BATCH_SIZE: &str = "eventsift_batch_events";

/// The process-wide recorder (installed once) and its render handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(PUBLISH_LATENCY.into()),
                    &[
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .expect("static bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full(crate::writer::metrics::COMMIT_SECONDS.into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .expect("static bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full(BATCH_SIZE.into()),
                    &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
                )
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // A recorder installed earlier in this process (tests) keeps serving.
            let _ = metrics::set_global_recorder(recorder);
            // Histogram samples wait in a buffer until they are folded into
            // the buckets: fold them every few seconds, so memory stays
            // bounded when nobody scrapes `/metrics`.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

/// The API's per-request metrics as registered handles: the request path
/// increments an atomic, without building a labelled key (two to four
/// allocations and a registry lookup) per request.
pub struct ApiMetrics {
    /// By route label, then status code.
    requests: RwLock<HashMap<Box<str>, Vec<(u16, Counter)>>>,
    /// By event type.
    published: RwLock<HashMap<Box<str>, Counter>>,
    pub publish_latency: Histogram,
    /// Batch events: accepted, rejected, unavailable.
    batch_events: [Counter; 3],
    batch_size: Histogram,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: RwLock::default(),
            published: RwLock::default(),
            publish_latency: metrics::histogram!(PUBLISH_LATENCY),
            batch_events: ["accepted", "rejected", "unavailable"]
                .map(|o| metrics::counter!(BATCH_EVENTS, "outcome" => o)),
            batch_size: metrics::histogram!(BATCH_SIZE),
        }
    }
}

impl ApiMetrics {
    /// Counts one request on `route` answered with `status`.
    pub fn request(&self, route: &str, status: u16) {
        let known = self.requests.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = known
            .get(route)
            .and_then(|by_status| by_status.iter().find(|(s, _)| *s == status))
        {
            c.increment(1);
            return;
        }
        drop(known);
        let counter = metrics::counter!(REQUESTS, "route" => route.to_owned(), "status" => status.to_string());
        counter.increment(1);
        let mut known = self.requests.write().unwrap_or_else(|p| p.into_inner());
        let by_status = known.entry(route.into()).or_default();
        if !by_status.iter().any(|(s, _)| *s == status) {
            by_status.push((status, counter));
        }
    }

    /// Counts the outcomes of one batch.
    pub fn batch(&self, accepted: usize, rejected: usize, unavailable: usize) {
        for (c, n) in self
            .batch_events
            .iter()
            .zip([accepted, rejected, unavailable])
        {
            if n > 0 {
                c.increment(n as u64);
            }
        }
        self.batch_size
            .record((accepted + rejected + unavailable) as f64);
    }

    /// Counts one event of `event_type` published.
    pub fn published(&self, event_type: &str) {
        if let Some(c) = self
            .published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(event_type)
        {
            c.increment(1);
            return;
        }
        let counter = metrics::counter!(PUBLISHED, "event_type" => event_type.to_owned());
        counter.increment(1);
        self.published
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(event_type.into())
            .or_insert(counter);
    }
}

pub const CONNECTIONS_OPEN: &str = "eventsift_http_connections_open";
pub const CONNECTIONS_REFUSED: &str = "eventsift_http_connections_refused_total";
pub const ACCEPT_ERRORS: &str = "eventsift_http_accept_errors_total";

/// The HTTP server's connection metrics (registered once).
pub struct ConnectionMetrics {
    pub open: metrics::Gauge,
    /// Refused because the connection cap was reached.
    pub refused: Counter,
    /// accept(2) failed (descriptors exhausted, ...).
    pub accept_errors: Counter,
}

impl ConnectionMetrics {
    pub fn get() -> &'static ConnectionMetrics {
        static M: OnceLock<ConnectionMetrics> = OnceLock::new();
        M.get_or_init(|| {
            handle();
            ConnectionMetrics {
                open: metrics::gauge!(CONNECTIONS_OPEN),
                refused: metrics::counter!(CONNECTIONS_REFUSED),
                accept_errors: metrics::counter!(ACCEPT_ERRORS),
            }
        })
    }
}
