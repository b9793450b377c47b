//! Kafka transport: an idempotent rdkafka producer with `acks=all`. The
//! future of a publish resolves with the broker's acknowledgement; the
//! librdkafka queue is bounded, so a full queue fails fast instead of
//! growing, and a broker that does not answer makes publishes time out
//! after [`KafkaConfig::ack_timeout`].
//!
//! **Two producers, chosen by what is in flight.** librdkafka's `linger.ms`
//! is fixed per producer: 5 ms batches halve the broker's and the API's CPU
//! per event under heavy load, but every reply waits for its batch, so 64
//! closed-loop clients cannot pass ~10 k req/s. A publish that finds fewer
//! than [`PROMPT_BELOW`] publishes in flight goes through a second producer
//! with `linger.ms=0` (sent at once; batches still form behind the in-flight
//! requests); one that finds more goes through the 5 ms one. Each producer
//! is idempotent with `acks=all`; concurrent publishes were never ordered
//! against each other, and a client's next request starts after its reply.
//! A user who sets `linger.ms` in `[kafka_producer]` gets one producer with
//! that linger. The queue bound (256 MiB) is split between the two.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::{Position, PublishError, Transport};

/// Producer settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`
    pub brokers: String,
    pub topic: String,
    /// How long a publish may wait for the broker's acknowledgement.
    pub ack_timeout: Duration,
    /// librdkafka properties applied over eventsift's (config `[kafka_producer]`).
    pub options: BTreeMap<String, String>,
}

/// A Kafka client that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A user option that eventsift must own.
    #[error("{table} option `{key} = {value}` is not allowed: {why}")]
    Forbidden {
        table: &'static str,
        key: String,
        value: String,
        why: &'static str,
    },
}

/// Applies the user's librdkafka `options` (config table `table`) over
/// `client`, refusing those `forbidden` returns a reason for.
pub fn apply_options(
    client: &mut ClientConfig,
    table: &'static str,
    options: &BTreeMap<String, String>,
    forbidden: fn(&str, &str) -> Option<&'static str>,
) -> Result<(), SetupError> {
    for (key, value) in options {
        if let Some(why) = forbidden(key, value.trim()) {
            return Err(SetupError::Forbidden {
                table,
                key: key.clone(),
                value: value.clone(),
                why,
            });
        }
        client.set(key, value);
    }
    Ok(())
}

/// Producer options a user may not override: they would break "an
/// acknowledged event is durable" or duplicate a setting of our own.
fn forbidden_producer_option(key: &str, value: &str) -> Option<&'static str> {
    match (key, value) {
        ("enable.idempotence", v) if v != "true" => {
            Some("idempotence keeps retried records from landing twice")
        }
        ("acks" | "request.required.acks", v) if v != "all" && v != "-1" => {
            Some("a reply waits for every in-sync replica (acks=all)")
        }
        ("bootstrap.servers" | "metadata.broker.list", _) => Some("set the brokers with `kafka`"),
        ("message.timeout.ms" | "delivery.timeout.ms", _) => Some("set it with `ack_timeout`"),
        _ => None,
    }
}

/// Publishes in flight below which a publish takes the prompt producer
/// (`linger.ms=0`). Measured in docs/BENCHMARKS.md ("Against the classic
/// stack", HTTP at moderate concurrency): 64 connections stay below it,
/// 512 stay above.
pub const PROMPT_BELOW: usize = 128;

/// Counts one publish (or one `publish_many` call's records) in flight
/// until dropped.
struct InFlight<'a>(&'a AtomicUsize, usize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}

pub struct KafkaTransport {
    /// `linger.ms=5`: batches under load.
    producer: FutureProducer,
    /// `linger.ms=0`, while fewer than [`PROMPT_BELOW`] publishes are in
    /// flight; None when the user set `linger.ms`.
    prompt: Option<FutureProducer>,
    in_flight: AtomicUsize,
    topic: String,
    ack_timeout: Duration,
    /// Whether the last metadata request (every 2 s, on a thread of its
    /// own) reached a broker; set to false by a failed delivery too.
    reachable: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Drop for KafkaTransport {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl KafkaTransport {
    pub fn new(config: &KafkaConfig) -> Result<Self, SetupError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // librdkafka's and Kafka 4's default, stated: batches of 5 ms
            // halve the broker's and the API's CPU per event against
            // 0.5-1 ms (docs/BENCHMARKS.md); every reply waits for its
            // batch, so an idle API answers in about 5 ms.
            .set("linger.ms", "5")
            // Produce requests go out when a batch is ready, not after
            // Nagle's wait for the previous one's ACK.
            .set("socket.nagle.disable", "true")
            .set("batch.num.messages", "10000")
            .set("compression.type", "lz4")
            // Bounded: at most this many records wait in librdkafka.
            .set("queue.buffering.max.messages", "200000")
            .set("queue.buffering.max.kbytes", "262144")
            .set("message.max.bytes", "16777216")
            .set(
                "message.timeout.ms",
                &config.ack_timeout.as_millis().max(1).to_string(),
            )
            .set("socket.connection.setup.timeout.ms", "3000");
        apply_options(
            &mut client,
            "kafka_producer",
            &config.options,
            forbidden_producer_option,
        )?;
        let prompt = if config.options.contains_key("linger.ms") {
            None
        } else {
            let mut prompt = client.clone();
            prompt
                .set("linger.ms", "0")
                .set("queue.buffering.max.kbytes", "65536");
            client.set("queue.buffering.max.kbytes", "196608");
            Some(prompt.create::<FutureProducer>()?)
        };
        let producer: FutureProducer = client.create()?;
        let reachable = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (producer, reachable, stop) = (producer.clone(), reachable.clone(), stop.clone());
            let _ = std::thread::Builder::new()
                .name("kafka-health".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let up = producer
                            .client()
                            .fetch_metadata(None, Timeout::After(Duration::from_secs(2)))
                            .is_ok_and(|m| !m.brokers().is_empty());
                        reachable.store(up, Ordering::Relaxed);
                        for _ in 0..20 {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                });
        }
        Ok(KafkaTransport {
            producer,
            prompt,
            in_flight: AtomicUsize::new(0),
            topic: config.topic.clone(),
            ack_timeout: config.ack_timeout,
            reachable,
            stop,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Counts `n` records in flight and picks their producer.
    fn enter(&self, n: usize) -> (&FutureProducer, InFlight<'_>) {
        let before = self.in_flight.fetch_add(n, Ordering::Relaxed);
        let producer = match &self.prompt {
            Some(prompt) if before + n <= PROMPT_BELOW => prompt,
            _ => &self.producer,
        };
        (producer, InFlight(&self.in_flight, n))
    }
}

impl Transport for KafkaTransport {
    async fn publish(&self, key: &[u8], payload: Vec<u8>) -> Result<Position, PublishError> {
        let record = FutureRecord::to(&self.topic).key(key).payload(&payload);
        let (producer, _in_flight) = self.enter(1);
        // Timeout::Never on enqueue would wait for room; zero fails fast.
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| classify(e, payload.len(), self.ack_timeout))?;
        // Our own bound too: `message.timeout.ms` does not cover a record
        // already in flight to a broker that died (the idempotent producer
        // waits for that request's socket timeout, up to a minute).
        match tokio::time::timeout(self.ack_timeout + Duration::from_millis(500), delivery).await {
            Err(_) => {
                self.reachable.store(false, Ordering::Relaxed);
                Err(PublishError::Timeout(self.ack_timeout))
            }
            Ok(Err(_canceled)) => Err(PublishError::Failed("the producer was dropped".into())),
            Ok(Ok(Err((e, _)))) => Err(classify(e, payload.len(), self.ack_timeout)),
            Ok(Ok(Ok(delivery))) => Ok(Position {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
        }
    }

    /// Every record enqueued at once, then one bound for all their
    /// acknowledgements (no timer per record).
    async fn publish_many(
        &self,
        records: &[(&[u8], Vec<u8>)],
    ) -> Vec<Result<Position, PublishError>> {
        use futures::StreamExt;
        let mut out: Vec<Option<Result<Position, PublishError>>> =
            (0..records.len()).map(|_| None).collect();
        let waiting = futures::stream::FuturesUnordered::new();
        let (producer, _in_flight) = self.enter(records.len());
        for (i, (key, payload)) in records.iter().enumerate() {
            let record = FutureRecord::to(&self.topic).key(*key).payload(payload);
            match producer.send_result(record) {
                Ok(delivery) => waiting.push(async move { (i, delivery.await) }),
                Err((e, _)) => out[i] = Some(Err(classify(e, payload.len(), self.ack_timeout))),
            }
        }
        let mut waiting = waiting;
        let bound = tokio::time::sleep(self.ack_timeout + Duration::from_millis(500));
        tokio::pin!(bound);
        loop {
            tokio::select! {
                next = waiting.next() => match next {
                    Some((i, delivered)) => {
                        out[i] = Some(match delivered {
                            Err(_canceled) => Err(PublishError::Failed("the producer was dropped".into())),
                            Ok(Err((e, _))) => Err(classify(e, records[i].1.len(), self.ack_timeout)),
                            Ok(Ok(d)) => Ok(Position { partition: d.partition, offset: d.offset }),
                        });
                    }
                    None => break,
                },
                _ = &mut bound => {
                    self.reachable.store(false, Ordering::Relaxed);
                    break;
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(PublishError::Timeout(self.ack_timeout))))
            .collect()
    }

    fn writable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    async fn flush(&self, timeout: Duration) {
        let producers: Vec<FutureProducer> = std::iter::once(&self.producer)
            .chain(&self.prompt)
            .cloned()
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + timeout;
            for p in producers {
                let _ = p.flush(Timeout::After(
                    deadline.saturating_duration_since(std::time::Instant::now()),
                ));
            }
        })
        .await;
    }

    fn name(&self) -> &'static str {
        "kafka"
    }
}

fn classify(e: KafkaError, size: usize, ack_timeout: Duration) -> PublishError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => PublishError::QueueFull,
        Some(RDKafkaErrorCode::MessageTimedOut) => PublishError::Timeout(ack_timeout),
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => PublishError::TooLarge(size),
        _ => PublishError::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a producer (no connection is made) with one user option.
    fn check(key: &str, value: &str, expect: Result<(), &str>) {
        let config = KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            topic: "t".into(),
            ack_timeout: Duration::from_secs(1),
            options: [(key.to_owned(), value.to_owned())].into(),
        };
        match (KafkaTransport::new(&config), expect) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(want)) => assert_eq!(e.to_string(), want),
            (got, want) => panic!("{key}={value}: got {:?}, want {want:?}", got.err()),
        }
    }

    fn transport(options: &[(&str, &str)]) -> KafkaTransport {
        KafkaTransport::new(&KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            topic: "t".into(),
            ack_timeout: Duration::from_secs(1),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .unwrap()
    }

    #[test]
    fn few_publishes_in_flight_take_the_prompt_producer() {
        let t = transport(&[]);
        let prompt = t.prompt.as_ref().unwrap();
        let (p, first) = t.enter(1);
        assert!(std::ptr::eq(p, prompt));
        let held: Vec<_> = (1..PROMPT_BELOW).map(|_| t.enter(1).1).collect();
        assert_eq!(t.in_flight.load(Ordering::Relaxed), PROMPT_BELOW);
        // The 129th in flight batches.
        let (p, _) = t.enter(1);
        assert!(std::ptr::eq(p, &t.producer));
        drop((first, held));
        assert_eq!(t.in_flight.load(Ordering::Relaxed), 0);
        // A batch larger than the threshold batches even when alone.
        let (p, _batch) = t.enter(PROMPT_BELOW + 1);
        assert!(std::ptr::eq(p, &t.producer));
        let (p, _) = t.enter(1);
        assert!(
            std::ptr::eq(p, &t.producer),
            "the batch above is still in flight"
        );
    }

    #[test]
    fn a_user_linger_means_one_producer() {
        let t = transport(&[("linger.ms", "2")]);
        assert!(t.prompt.is_none());
        let (p, _) = t.enter(1);
        assert!(std::ptr::eq(p, &t.producer));
    }

    #[test]
    fn producer_options_cannot_weaken_durability() {
        check("linger.ms", "2", Ok(()));
        check("batch.size", "1000000", Ok(()));
        check("acks", "all", Ok(()));
        check("acks", "-1", Ok(()));
        check(
            "acks",
            "1",
            Err(
                "kafka_producer option `acks = 1` is not allowed: a reply waits for every in-sync replica (acks=all)",
            ),
        );
        check(
            "enable.idempotence",
            "false",
            Err(
                "kafka_producer option `enable.idempotence = false` is not allowed: idempotence keeps retried records from landing twice",
            ),
        );
        check(
            "message.timeout.ms",
            "1000",
            Err(
                "kafka_producer option `message.timeout.ms = 1000` is not allowed: set it with `ack_timeout`",
            ),
        );
    }
}
