//! Where accepted events go: one trait, two implementations.
//!
//! - [`kafka`]: an idempotent rdkafka producer (`acks=all`); a publish
//!   resolves when the broker has acknowledged the record.
//! - [`embedded`]: a durable, ordered log in the data directory (fjall) with
//!   group commit; a publish resolves when the commit covering it is on disk.
//!
//! Either way, the API replies 2xx only once [`Transport::publish`] resolved
//! `Ok`: an acknowledged event is durable.

pub mod embedded;
pub mod kafka;

use std::time::Duration;

/// Where a published record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// Why a record was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No acknowledgement within the bound; the record may or may not land.
    #[error("the transport did not acknowledge within {0:?}")]
    Timeout(Duration),
    /// Too many records waiting already (back-pressure, not an unbounded queue).
    #[error("the transport queue is full")]
    QueueFull,
    /// The record is larger than the transport accepts.
    #[error("the record is too large ({0} bytes)")]
    TooLarge(usize),
    #[error("{0}")]
    Failed(String),
}

/// A durable, ordered destination for event envelopes.
pub trait Transport: Send + Sync + 'static {
    /// Publishes one record; resolves once it is durable.
    fn publish(
        &self,
        key: &[u8],
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Position, PublishError>> + Send;

    /// Publishes many records at once (a batch request's); resolves when
    /// each is durable or failed, a result per record in order.
    fn publish_many(
        &self,
        records: &[(&[u8], Vec<u8>)],
    ) -> impl std::future::Future<Output = Vec<Result<Position, PublishError>>> + Send {
        futures::future::join_all(
            records
                .iter()
                .map(|(key, payload)| self.publish(key, payload.clone())),
        )
    }

    /// Whether records can be published right now, from what the transport
    /// already knows (for `/readyz`; no blocking request per call).
    fn writable(&self) -> bool;

    /// Waits (bounded) until everything published so far is acknowledged.
    fn flush(&self, timeout: Duration) -> impl std::future::Future<Output = ()> + Send;

    /// A short name for logs and metrics: `kafka` or `embedded`.
    fn name(&self) -> &'static str;
}

/// The transport chosen at startup.
pub enum AnyTransport {
    Kafka(kafka::KafkaTransport),
    Embedded(std::sync::Arc<embedded::EmbeddedLog>),
}

impl Transport for AnyTransport {
    async fn publish(&self, key: &[u8], payload: Vec<u8>) -> Result<Position, PublishError> {
        match self {
            AnyTransport::Kafka(k) => k.publish(key, payload).await,
            AnyTransport::Embedded(e) => e.publish(key, payload).await,
        }
    }

    async fn publish_many(
        &self,
        records: &[(&[u8], Vec<u8>)],
    ) -> Vec<Result<Position, PublishError>> {
        match self {
            AnyTransport::Kafka(k) => k.publish_many(records).await,
            AnyTransport::Embedded(e) => e.publish_many(records).await,
        }
    }

    fn writable(&self) -> bool {
        match self {
            AnyTransport::Kafka(k) => k.writable(),
            AnyTransport::Embedded(e) => e.writable(),
        }
    }

    async fn flush(&self, timeout: Duration) {
        match self {
            AnyTransport::Kafka(k) => k.flush(timeout).await,
            AnyTransport::Embedded(e) => e.flush(timeout).await,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            AnyTransport::Kafka(k) => k.name(),
            AnyTransport::Embedded(e) => e.name(),
        }
    }
}
