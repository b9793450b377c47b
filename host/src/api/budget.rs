//! One budget on the request bytes the API holds at once.
//!
//! A request's bytes count from when they arrive until its reply is sent:
//! the body as read (reserved chunk by chunk, so a slow upload holds only
//! what it sent), then, before a compressed body is decoded, the whole
//! `max_body_bytes` its output may reach (the decoded size is unknown
//! until then; once decoded, the reservation is set to what the output
//! takes), and the fields, validated fields and envelopes built from it.
//! A request that would go beyond the budget gets a 503 with
//! `Retry-After`, nothing of it published; waiting for a plugin or for the
//! transport's acknowledgement holds the reservation.
//!
//! The API's memory is then bounded by (see `docs/RELIABILITY.md`):
//! `budget + max_connections x (max_header_bytes + 64 KiB) + ~200 MiB`
//! (the per-connection term is hyper's head and read buffers and the
//! task; the constant is the runtime, plugins and their instances).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;

use super::ApiError;

/// Bytes the API holds for requests, by default.
pub const DEFAULT_BUDGET: usize = 256 << 20;
/// Requests refused because the budget was spent (counter).
pub const REFUSED: &str = "eventsift_api_budget_refusals_total";
/// Request bytes held now (gauge).
pub const IN_FLIGHT: &str = "eventsift_api_request_bytes";

/// The API's budget of request bytes.
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
    gauge: metrics::Gauge,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit,
            gauge: metrics::gauge!(IN_FLIGHT),
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// An empty reservation, grown as the request's bytes arrive.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// What one request holds of the [`Budget`]; given back when dropped.
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Reservation {
    /// Holds `bytes` in all: fewer always succeeds; more is refused with a
    /// 503 when the budget has not that much left.
    pub fn hold(&mut self, bytes: usize) -> Result<(), ApiError> {
        if bytes <= self.bytes {
            let less = self.bytes - bytes;
            self.budget.used.fetch_sub(less, Ordering::Relaxed);
            self.budget.gauge.decrement(less as f64);
            self.bytes = bytes;
            return Ok(());
        }
        let more = bytes - self.bytes;
        let limit = self.budget.limit;
        let grown = self
            .budget
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(more).filter(|&n| n <= limit)
            });
        if grown.is_err() {
            ::metrics::counter!(REFUSED).increment(1);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "the API holds as many request bytes as it may ({} MiB); retry later",
                    limit >> 20
                ),
            ));
        }
        self.budget.gauge.increment(more as f64);
        self.bytes = bytes;
        Ok(())
    }

    /// Holds `more` bytes besides what it holds.
    pub fn add(&mut self, more: usize) -> Result<(), ApiError> {
        self.hold(self.bytes.saturating_add(more))
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = self.hold(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_budget_and_give_back_when_dropped() {
        let budget = Budget::new(1000);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        a.hold(600).unwrap();
        let refused = b.hold(500).unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(b.bytes(), 0, "a refused hold holds nothing more");
        b.hold(400).unwrap();
        assert_eq!(budget.used(), 1000);
        a.hold(100).unwrap();
        assert_eq!(budget.used(), 500);
        b.add(500).unwrap();
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
