//! `eventsift loadgen`: HTTP load against the API, the seed's
//! generate_data.sh scenario, a synthetic mix, or the mix in `/v1/batch`
//! requests (optionally gzipped, with a share of them sent twice, as a
//! client retries after a lost reply), at a target rate, with a progress
//! bar and a summary (sent, 2xx, 4xx, 5xx, latency, events).
//!
//! With a recorder ([`Load::on_reply`], `--record FILE`), every request's
//! outcome is kept: acknowledged (with its event id), rejected (a 4xx:
//! nothing was published) or unknown (a 5xx, a timeout, a lost
//! connection: it may or may not land). Recorded requests carry their
//! number in the Host header (`r<n>.<host>`), so a row whose reply was lost
//! can still be told apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The seed's generate_data.sh: `(requests, Host header, path)`, all POST.
pub const SEED_LOAD: &[(usize, &str, &str)] = &[
    (100, "user1.comcast.com", "/purchase_a_sword/red/2"),
    (100, "user2.comcast.com", "/purchase_a_sword/red/3"),
    (500, "user3.comcast.com", "/purchase_a_sword/red/1"),
    (200, "user1.comcast.com", "/purchase_a_sword/blue/1"),
    (200, "user2.comcast.com", "/purchase_a_sword/blue/2"),
    (10, "user3.comcast.com", "/purchase_a_sword/blue/3"),
    (300, "user1.comcast.com", "/purchase_a_sword/green/1"),
    (100, "user2.comcast.com", "/purchase_a_sword/green/1"),
    (100, "user3.comcast.com", "/purchase_a_sword/green/1"),
    (100, "user1.comcast.com", "/purchase_a_horse/1/small/1"),
    (500, "user2.comcast.com", "/purchase_a_horse/1/small/1"),
    (200, "user3.comcast.com", "/purchase_a_horse/1/small/1"),
    (200, "user1.comcast.com", "/purchase_a_horse/1/medium/2"),
    (400, "user2.comcast.com", "/purchase_a_horse/1/medium/1"),
    (300, "user3.comcast.com", "/purchase_a_horse/1/medium/1"),
    (50, "user1.comcast.com", "/purchase_a_horse/1/large/1"),
    (50, "user2.comcast.com", "/purchase_a_horse/1/large/1"),
    (500, "user3.comcast.com", "/purchase_a_horse/1/large/1"),
    (200, "user1.comcast.com", "/guild/join"),
    (100, "user1.comcast.com", "/guild/leave"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// generate_data.sh's 4,210 requests, in order.
    Seed,
    /// Random swords, horses, guild actions and default hits from 1,000 users.
    Mix,
    /// The mix's events in `/v1/batch` requests of `--batch-size`, each
    /// batch from one player, every event with its own client id.
    Batch,
}

/// How the batch scenario sends.
#[derive(Debug, Clone, Copy)]
pub struct BatchLoad {
    pub size: usize,
    pub gzip: bool,
    /// Share of batches sent a second time, unchanged (same event ids).
    pub retry_share: f64,
}

/// The body of batch `i` (deterministic): `size` events of the mix's
/// kinds and proportions (swords 9, horses 8, guild actions 2 in 19) from
/// one of 1,000 players, each with a client id unique to the run (`run`
/// tells runs apart). Written without a formatter per event: the load
/// generator shares the machine with what it measures.
pub fn batch_body(run: u64, i: u64, size: usize) -> Vec<u8> {
    use std::fmt::Write;
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut pick = |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let mut out = String::with_capacity(64 + size * 110);
    let _ = write!(out, "{{\"user_id\":\"user{}\",\"events\":[", pick(1000));
    for n in 0..size {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"event_id\":\"l{run:x}-{i}-{n}\",");
        match pick(19) {
            0..=8 => {
                let color = ["red", "blue", "green", "black"][pick(4) as usize];
                let _ = write!(
                    out,
                    "\"event_type\":\"purchase_sword\",\"color\":\"{color}\",\"quantity\":{}}}",
                    1 + pick(3)
                );
            }
            9..=16 => {
                let size = ["small", "medium", "large"][pick(3) as usize];
                let _ = write!(
                    out,
                    "\"event_type\":\"purchase_horse\",\"speed\":{},\"size\":\"{size}\",\"quantity\":{}}}",
                    1 + pick(9),
                    1 + pick(2)
                );
            }
            _ => {
                let action = ["join", "leave"][pick(2) as usize];
                let _ = write!(out, "\"event_type\":\"guild\",\"action\":\"{action}\"}}");
            }
        }
    }
    out.push_str("]}");
    out.into_bytes()
}

/// Whether batch `i` is sent twice (deterministic, `share` of them).
fn retried(i: u64, share: f64) -> bool {
    let x = i.wrapping_mul(0x2545_F491_4F6C_DD1D).rotate_left(17) >> 11;
    (x as f64 / (1u64 << 53) as f64) < share
}

/// One request: method, Host header, path.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub host: String,
    pub path: String,
}

/// The seed's requests, in order.
pub fn seed_requests() -> Vec<Request> {
    SEED_LOAD
        .iter()
        .flat_map(|&(n, host, path)| {
            std::iter::repeat_n(
                Request {
                    method: "POST",
                    host: host.to_owned(),
                    path: path.to_owned(),
                },
                n,
            )
        })
        .collect()
}

/// The `i`-th request of the synthetic mix (deterministic).
pub fn mix_request(i: u64) -> Request {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    let pick = |n: u64, x: &mut u64| {
        *x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*x >> 33) % n
    };
    let host = format!("user{}.example.com", pick(1000, &mut x));
    let (method, path) = match pick(20, &mut x) {
        0..=8 => {
            let color = ["red", "blue", "green", "black"][pick(4, &mut x) as usize];
            (
                "POST",
                format!("/purchase_a_sword/{color}/{}", 1 + pick(3, &mut x)),
            )
        }
        9..=16 => {
            let size = ["small", "medium", "large"][pick(3, &mut x) as usize];
            (
                "POST",
                format!(
                    "/purchase_a_horse/{}/{size}/{}",
                    1 + pick(9, &mut x),
                    1 + pick(2, &mut x)
                ),
            )
        }
        17..=18 => (
            "POST",
            format!("/guild/{}", ["join", "leave"][pick(2, &mut x) as usize]),
        ),
        _ => ("GET", "/".to_owned()),
    };
    Request { method, host, path }
}

/// What a load run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub sent: u64,
    pub ok: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    /// Requests that got no HTTP reply (connection errors, timeouts).
    pub failed: u64,
    /// Batch scenario: events accepted and rejected (by the replies), and
    /// batches sent a second time.
    pub events_accepted: u64,
    pub events_rejected: u64,
    pub retries: u64,
    pub elapsed: Duration,
    /// Sorted.
    pub latencies: Vec<Duration>,
}

impl Summary {
    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies[((self.latencies.len() - 1) as f64 * q) as usize]
    }

    /// A few lines for the terminal.
    pub fn report(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let events = if self.events_accepted + self.events_rejected > 0 {
            format!(
                "events: {} accepted ({:.0} events/s), {} rejected; {} batches sent twice\n",
                self.events_accepted,
                self.events_accepted as f64 / self.elapsed.as_secs_f64().max(1e-9),
                self.events_rejected,
                self.retries
            )
        } else {
            String::new()
        };
        events
            + &format!(
                "sent {} in {:.1} s ({:.0} req/s): 2xx {}, 4xx {}, 5xx {}, no reply {}\n\
             latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
                self.sent,
                self.elapsed.as_secs_f64(),
                self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9),
                self.ok,
                self.client_errors,
                self.server_errors,
                self.failed,
                ms(self.quantile(0.5)),
                ms(self.quantile(0.9)),
                ms(self.quantile(0.99)),
                ms(self.latencies.last().copied().unwrap_or_default()),
            )
    }
}

/// What became of one recorded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: durable; the event id from `X-Event-Id`.
    Acked(String),
    /// 4xx: refused, nothing published.
    Rejected(u16),
    /// 5xx or no reply: it may or may not land.
    Unknown(String),
}

/// One recorded reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The request's number (also in its Host header: `r<seq>.<host>`).
    pub seq: u64,
    pub outcome: Outcome,
    /// When the reply (or its failure) came.
    pub at: Instant,
}

/// The Host header of recorded request `seq`.
pub fn tagged_host(seq: u64, host: &str) -> String {
    format!("r{seq}.{host}")
}

/// The request number a tagged Host header carries.
pub fn host_seq(host: &str) -> Option<u64> {
    host.strip_prefix('r')?.split('.').next()?.parse().ok()
}

/// How to run a load.
pub struct Load {
    pub target: String,
    /// Requests per second (None: as fast as the clients go).
    pub rate: Option<f64>,
    /// Stop after this long (None: after the scenario's last request).
    pub duration: Option<Duration>,
    pub clients: usize,
    pub progress: bool,
    /// Stop once this many requests were acknowledged.
    pub until_acked: Option<u64>,
    /// Called with every reply; its requests carry their number in Host.
    pub on_reply: Option<Arc<dyn Fn(Reply) + Send + Sync>>,
    /// Send `/v1/batch` requests (the mix's events) instead.
    pub batch: Option<BatchLoad>,
}

impl Load {
    pub fn new(target: impl Into<String>) -> Self {
        Load {
            target: target.into(),
            rate: None,
            duration: None,
            clients: 32,
            progress: false,
            until_acked: None,
            on_reply: None,
            batch: None,
        }
    }
}

/// Counts a batch reply's accepted and rejected events.
fn batch_counts(body: &[u8]) -> (u64, u64) {
    #[derive(serde::Deserialize)]
    struct Counts {
        accepted: u64,
        rejected: u64,
    }
    serde_json::from_slice::<Counts>(body).map_or((0, 0), |c| (c.accepted, c.rejected))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// Sends `requests` (or, when `None`, the synthetic mix until `duration`).
/// `on_progress(done)` is called after each reply.
pub async fn run(
    load: &Load,
    requests: Option<Arc<Vec<Request>>>,
    on_progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> anyhow::Result<Summary> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(load.clients)
        .build()?;
    let total = requests.as_ref().map(|r| r.len() as u64);
    let bar = if load.progress {
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new(
                load.duration.unwrap_or(Duration::from_secs(10)).as_secs(),
            ),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40.cyan/blue} {pos:>7}/{len:7} {per_sec:>12} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let start = Instant::now();
    let until = load.duration.map(|d| start + d);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let counts = Arc::new([
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ]);
    let acked = Arc::new(AtomicU64::new(0));
    // Batch scenario: events accepted, rejected, batches retried.
    let events = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let batch = load.batch;
    let mut tasks = Vec::new();
    for _ in 0..load.clients.max(1) {
        let (http, next, done, counts, requests, on_progress, acked, on_reply) = (
            http.clone(),
            next.clone(),
            done.clone(),
            counts.clone(),
            requests.clone(),
            on_progress.clone(),
            acked.clone(),
            load.on_reply.clone(),
        );
        let events = events.clone();
        let until_acked = load.until_acked;
        let (target, rate, bar) = (
            load.target.trim_end_matches('/').to_owned(),
            load.rate,
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let req = match &requests {
                    Some(r) => match r.get(i) {
                        Some(req) => req.clone(),
                        None => break,
                    },
                    None => mix_request(i as u64),
                };
                if let Some(rate) = rate {
                    let at = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                }
                if until.is_some_and(|u| Instant::now() >= u)
                    || until_acked.is_some_and(|n| acked.load(Ordering::Relaxed) >= n)
                {
                    break;
                }
                let t0 = Instant::now();
                let method = reqwest::Method::from_bytes(req.method.as_bytes())
                    .unwrap_or(reqwest::Method::POST);
                let host = match &on_reply {
                    Some(_) => tagged_host(i as u64, &req.host),
                    None => req.host.clone(),
                };
                let send = |body: Option<(Vec<u8>, bool)>| {
                    let mut rb = match &body {
                        Some(_) => http.post(format!("{target}/v1/batch")),
                        None => http.request(method.clone(), format!("{target}{}", req.path)),
                    };
                    rb = rb
                        .header("Host", &host)
                        .header("User-Agent", "eventsift-loadgen")
                        .header("Accept", "*/*");
                    if let Some((data, gz)) = body {
                        rb = rb.header("Content-Type", "application/json");
                        if gz {
                            rb = rb.header("Content-Encoding", "gzip");
                        }
                        rb = rb.body(data);
                    }
                    rb.send()
                };
                let body = batch.map(|b| {
                    let json = batch_body(run_id, i as u64, b.size);
                    (if b.gzip { gzip(&json) } else { json }, b.gzip)
                });
                let again = batch
                    .filter(|b| retried(i as u64, b.retry_share))
                    .and(body.clone());
                let sent = send(body).await;
                let (slot, outcome) = match sent {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let id = resp
                            .headers()
                            .get("x-event-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let reply = resp.bytes().await.unwrap_or_default();
                        latencies.push(t0.elapsed());
                        if batch.is_some() {
                            let (a, r) = batch_counts(&reply);
                            events[0].fetch_add(a, Ordering::Relaxed);
                            events[1].fetch_add(r, Ordering::Relaxed);
                        }
                        // A 2xx status line is sent only once the event is durable.
                        match status {
                            200..=299 => {
                                acked.fetch_add(1, Ordering::Relaxed);
                                (0, Outcome::Acked(id.unwrap_or_default()))
                            }
                            400..=499 => (1, Outcome::Rejected(status)),
                            _ => (2, Outcome::Unknown(format!("HTTP {status}"))),
                        }
                    }
                    Err(e) => (3, Outcome::Unknown(e.to_string())),
                };
                if let Some(record) = &on_reply {
                    record(Reply {
                        seq: i as u64,
                        outcome,
                        at: Instant::now(),
                    });
                }
                if let Some(again) = again {
                    // The client's retry after a reply it did not see.
                    if let Ok(resp) = send(Some(again)).await {
                        let _ = resp.bytes().await;
                        events[2].fetch_add(1, Ordering::Relaxed);
                    }
                }
                counts[slot].fetch_add(1, Ordering::Relaxed);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                on_progress(n);
                if let Some(bar) = &bar {
                    match total {
                        Some(_) => bar.set_position(n),
                        None => bar.set_position(start.elapsed().as_secs()),
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    latencies.sort();
    let c = |i: usize| counts[i].load(Ordering::Relaxed);
    Ok(Summary {
        sent: done.load(Ordering::Relaxed),
        ok: c(0),
        client_errors: c(1),
        server_errors: c(2),
        failed: c(3),
        events_accepted: events[0].load(Ordering::Relaxed),
        events_rejected: events[1].load(Ordering::Relaxed),
        retries: events[2].load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_4210_requests_and_the_mix_is_deterministic() {
        assert_eq!(seed_requests().len(), 4210);
        let a: Vec<String> = (0..50).map(|i| mix_request(i).path).collect();
        let b: Vec<String> = (0..50).map(|i| mix_request(i).path).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|p| p.starts_with("/purchase_a_sword/")));
        assert!(a.iter().any(|p| p.starts_with("/purchase_a_horse/")));
    }

    #[test]
    fn batches_are_valid_json_with_unique_ids_and_a_share_is_retried() {
        let body = batch_body(7, 3, 50);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let events = v["events"].as_array().unwrap();
        assert_eq!(events.len(), 50);
        let ids: std::collections::HashSet<&str> = events
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 50);
        assert_eq!(body, batch_body(7, 3, 50));
        let share = (0..100_000).filter(|&i| retried(i, 0.05)).count();
        assert!((4_000..6_000).contains(&share), "{share}");
    }
}
