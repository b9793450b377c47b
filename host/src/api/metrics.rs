//! Prometheus metrics of the API: requests by route and status, events
//! published by type, rejections by reason, publish latency, plugins loaded.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "eventsift_http_requests_total";
pub const PUBLISHED: &str = "eventsift_events_published_total";
pub const REJECTED: &str = "eventsift_events_rejected_total";
pub const PUBLISH_LATENCY: &str = "eventsift_publish_latency_seconds";
pub const PLUGINS_LOADED: &str = "eventsift_plugins_loaded";

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
                .build_recorder();
            let handle = recorder.handle();
            // A recorder installed earlier in this process (tests) keeps serving.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
