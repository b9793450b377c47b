//! The HTTP API against a real Kafka broker and against the embedded log:
//! the seed's routes and `/events/{type}` publish the exact envelope,
//! validation errors publish nothing, hot-added plugins get routes, and a
//! crash loses no acknowledged event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use eventsift::config::Config;
use eventsift::daemon::RunningApi;
use eventsift::plugin::watcher::Watcher;
use eventsift::plugin::{Registry, Runtime, RuntimeConfig};
use eventsift::transport::AnyTransport;
use eventsift::transport::embedded::EmbeddedLog;
use eventsift::transport::kafka::{KafkaConfig, KafkaTransport};
use eventsift_test_artifacts as artifacts;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::*;

/// An API server on a random port with its own plugin folder.
struct TestApi {
    api: Option<RunningApi>,
    base: String,
    admin_base: String,
    _admin: eventsift::admin::AdminHttp,
    plugins: tempfile::TempDir,
    _data: tempfile::TempDir,
    _watcher: Watcher,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

enum Kind {
    Kafka { brokers: String, topic: String },
    Embedded,
}

impl TestApi {
    fn start(kind: &Kind, bundled: &[&str]) -> (TestApi, Arc<AnyTransport>) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let plugins = tempfile::tempdir().unwrap();
        for (name, path) in artifacts::BUNDLED
            .iter()
            .filter(|(n, _)| bundled.contains(n))
        {
            drop_in(plugins.path(), name, path, SETTLED);
        }
        let data = tempfile::tempdir().unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            plugins: plugins.path().to_path_buf(),
            data_dir: data.path().to_path_buf(),
            ack_timeout: Duration::from_secs(3),
            ..Config::default()
        };
        let transport = Arc::new(match kind {
            Kind::Kafka { brokers, topic } => AnyTransport::Kafka(
                KafkaTransport::new(&KafkaConfig {
                    brokers: brokers.clone(),
                    topic: topic.clone(),
                    ack_timeout: config.ack_timeout,
                    options: Default::default(),
                })
                .unwrap(),
            ),
            Kind::Embedded => AnyTransport::Embedded(EmbeddedLog::open(&config.log_dir()).unwrap()),
        });
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        let registry = Registry::new(runtime, plugins.path());
        let watcher = Watcher::start(registry.clone()).unwrap();
        let api = rt
            .block_on(RunningApi::start(
                &config,
                registry,
                transport.clone(),
                None,
            ))
            .unwrap();
        let base = format!("http://{}", api.addr);
        let admin = rt
            .block_on(eventsift::admin::AdminHttp::start(
                &config,
                "127.0.0.1:0".parse().unwrap(),
                eventsift::admin::AdminState {
                    role: eventsift::admin::Role::Api,
                    registry: api.state.registry.clone(),
                    api: Some(api.state.clone()),
                    writer: None,
                    warehouse: None,
                    status: Default::default(),
                },
            ))
            .unwrap();
        let admin_base = format!("http://{}", admin.addr);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        (
            TestApi {
                api: Some(api),
                base,
                admin_base,
                _admin: admin,
                plugins,
                _data: data,
                _watcher: watcher,
                rt,
                http,
            },
            transport,
        )
    }

    /// An API on Kafka with the seed's plugins, publishing to a new topic.
    fn kafka(prefix: &str) -> (TestApi, String) {
        let topic = unique(prefix);
        let kind = Kind::Kafka {
            brokers: kafka_bootstrap(),
            topic: topic.clone(),
        };
        let (api, _) = TestApi::start(&kind, SEED_PLUGINS);
        (api, topic)
    }

    /// Sends a request; returns status, `X-Event-Id` and body.
    /// GET on the admin listener.
    fn admin_get(&self, path: &str) -> (u16, String) {
        self.rt.block_on(async {
            let resp = self
                .http
                .get(format!("{}{path}", self.admin_base))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        host: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Option<String>, String) {
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method.parse().unwrap(), format!("{}{path}", self.base));
            req = req
                .header("User-Agent", "ApacheBench/2.3")
                .header("Accept", "*/*");
            if let Some(host) = host {
                req = req.header("Host", host);
            }
            if let Some(body) = body {
                req = req.body(body);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let id = resp
                .headers()
                .get("x-event-id")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, id, resp.text().await.unwrap())
        })
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        if let Some(api) = self.api.take() {
            let _ = self.rt.block_on(api.stop());
        }
    }
}

/// Every record of a topic, by event id.
fn read_topic(topic: &str, expect: usize) -> HashMap<String, (Vec<u8>, serde_json::Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", unique("api-test"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in meta.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = HashMap::new();
    let deadline =
        std::time::Instant::now() + Duration::from_secs(if expect == 0 { 3 } else { 30 });
    while std::time::Instant::now() < deadline && (expect == 0 || out.len() < expect) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            out.insert(
                v["event_id"].as_str().unwrap().to_owned(),
                (m.key().unwrap_or_default().to_vec(), v),
            );
        }
    }
    out
}

/// The seed's requests and what each must publish.
fn seed_cases() -> Vec<(
    &'static str,
    &'static str,
    Option<Vec<u8>>,
    &'static str,
    serde_json::Value,
)> {
    use serde_json::json;
    vec![
        (
            "POST",
            "/purchase_a_sword/red/2",
            None,
            "Sword Purchased!\n",
            json!({"event_type": "purchase_sword", "color": "red", "quantity": 2}),
        ),
        (
            "POST",
            "/purchase_a_horse/1/SMALL/1",
            None,
            "Horse Purchased!\n",
            json!({"event_type": "purchase_horse", "speed": 1.0, "size": "small", "quantity": 1}),
        ),
        (
            "POST",
            "/guild/join",
            None,
            "You joined the guild!\n",
            json!({"event_type": "guild", "action": "join"}),
        ),
        (
            "POST",
            "/guild/Leave",
            None,
            "You left the guild!\n",
            json!({"event_type": "guild", "action": "leave"}),
        ),
        (
            "GET",
            "/",
            None,
            "This is the default response!\n",
            json!({"event_type": "default"}),
        ),
        (
            "POST",
            "/events/purchase_sword",
            Some(br#"{"color":"blue","quantity":"3"}"#.to_vec()),
            "",
            json!({"event_type": "purchase_sword", "color": "blue", "quantity": 3}),
        ),
    ]
}

/// Sends the seed cases and checks replies; returns `(event id, expected fields)`.
fn send_seed(api: &TestApi) -> Vec<(String, serde_json::Value)> {
    let mut sent = Vec::new();
    for (method, path, body, reply, fields) in seed_cases() {
        let (status, id, text) = api.send(method, path, Some("user1.comcast.com"), body);
        assert_eq!(status, 200, "{method} {path}: {text}");
        let id = id.expect("X-Event-Id on every 2xx");
        if path.starts_with("/events/") {
            assert_eq!(text, format!("{{\"event_id\":\"{id}\"}}"));
        } else {
            assert_eq!(text, reply);
        }
        sent.push((id, fields));
    }
    sent
}

fn check_envelope(id: &str, envelope: &serde_json::Value, fields: &serde_json::Value) {
    let obj = envelope.as_object().unwrap();
    assert_eq!(obj["event_id"], id);
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(obj["plugin_version"], "0.1.0");
    assert_eq!(obj["host"], "user1.comcast.com");
    assert_eq!(obj["user_agent"], "ApacheBench/2.3");
    assert_eq!(obj["accept"], "*/*");
    let ts = humantime::parse_rfc3339(obj["timestamp"].as_str().unwrap()).unwrap();
    assert!(ts.elapsed().unwrap_or_default() < Duration::from_secs(120));
    assert!(
        obj["timestamp"].as_str().unwrap().ends_with('Z')
            && obj["timestamp"].as_str().unwrap().len() == 27
    );
    let extra: serde_json::Map<String, serde_json::Value> = obj
        .iter()
        .filter(|(k, _)| {
            ![
                "event_id",
                "plugin_version",
                "host",
                "user_agent",
                "accept",
                "timestamp",
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        serde_json::Value::Object(extra),
        *fields,
        "envelope {envelope}"
    );
}

const SEED_PLUGINS: &[&str] = &["sword.wasm", "horse.wasm", "guild.wasm", "default.wasm"];

#[test]
fn kafka_seed_routes_publish_the_exact_envelope() {
    let (api, topic) = TestApi::kafka("api");
    let sent = send_seed(&api);
    let records = read_topic(&topic, sent.len());
    assert_eq!(records.len(), sent.len());
    for (id, fields) in &sent {
        let (key, envelope) = &records[id];
        assert_eq!(
            key, b"user1.comcast.com",
            "the Kafka key is the Host header"
        );
        check_envelope(id, envelope, fields);
    }
}

#[test]
fn embedded_seed_routes_publish_the_exact_envelope() {
    let (api, transport) = TestApi::start(&Kind::Embedded, SEED_PLUGINS);
    let sent = send_seed(&api);
    let AnyTransport::Embedded(log) = &*transport else {
        unreachable!()
    };
    let records = log.read(0, 100).unwrap();
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..sent.len() as u64).collect::<Vec<_>>()
    );
    for ((id, fields), record) in sent.iter().zip(&records) {
        assert_eq!(record.key, b"user1.comcast.com");
        check_envelope(
            id,
            &serde_json::from_slice(&record.payload).unwrap(),
            fields,
        );
    }
}

/// Bad input of every kind: a clear 4xx, nothing published, no 5xx.
fn bad_requests(api: &TestApi) {
    let big = vec![b'x'; (1 << 20) + 1];
    let cases: Vec<(&str, String, Option<Vec<u8>>, u16, &str)> = vec![
        (
            "POST",
            "/purchase_a_sword/red/two".into(),
            None,
            400,
            r#"{"error":"quantity must be a whole number >= 0, got \"two\""}"#,
        ),
        (
            "POST",
            "/purchase_a_horse/1/pony/1".into(),
            None,
            400,
            r#"{"error":"size must be one of small, medium, large, got \"pony\""}"#,
        ),
        (
            "POST",
            "/purchase_a_horse/NaN/small/1".into(),
            None,
            400,
            r#"{"error":"speed must be a finite number >= 0, got \"NaN\""}"#,
        ),
        (
            "POST",
            "/purchase_a_horse/1e999/small/1".into(),
            None,
            400,
            r#"{"error":"speed must be a finite number >= 0, got \"1e999\""}"#,
        ),
        (
            "POST",
            "/purchase_a_sword/red/99999999999999999999".into(),
            None,
            400,
            r#"{"error":"quantity must be a whole number >= 0, got \"99999999999999999999\""}"#,
        ),
        (
            "POST",
            "/purchase_a_sword/%FF/1".into(),
            None,
            400,
            r#"{"error":"path parameter color is not valid UTF-8"}"#,
        ),
        (
            "POST",
            format!("/purchase_a_sword/{}/1", "a".repeat(5_000)),
            None,
            400,
            "color must be 1 to 64",
        ),
        (
            "POST",
            format!("/purchase_a_sword/{}/1", "a".repeat(10_000)),
            None,
            414,
            "the request target is 10020 bytes; at most 8192 are accepted",
        ),
        (
            "POST",
            "/events/purchase_sword".into(),
            Some(b"not json".to_vec()),
            400,
            "malformed event",
        ),
        (
            "POST",
            "/events/purchase_sword".into(),
            Some(b"[1,2]".to_vec()),
            400,
            "expected a JSON object",
        ),
        (
            "POST",
            "/events/purchase_sword".into(),
            Some(b"{\"color\":\"\xff\",\"quantity\":1}".to_vec()),
            400,
            "the body is not valid UTF-8",
        ),
        (
            "POST",
            "/events/purchase_sword".into(),
            Some(format!("{{\"color\":{}1{}}}", "[".repeat(5000), "]".repeat(5000)).into_bytes()),
            400,
            "color must be a string",
        ),
        (
            "POST",
            "/events/purchase_sword".into(),
            Some(big),
            413,
            "larger than 1048576 bytes",
        ),
        (
            "POST",
            "/events/no_such_type".into(),
            Some(b"{}".to_vec()),
            404,
            "no plugin owns event type",
        ),
        (
            "POST",
            "/no/such/route".into(),
            None,
            404,
            "no route for POST /no/such/route",
        ),
        (
            "GET",
            "/purchase_a_sword/red/1".into(),
            None,
            405,
            "/purchase_a_sword/red/1 takes POST",
        ),
    ];
    for (method, path, body, status, expect) in cases {
        let (got, id, text) = api.send(method, &path, Some("user9"), body);
        assert_eq!(
            got,
            status,
            "{method} {}: {text}",
            &path[..path.len().min(80)]
        );
        assert!(id.is_none());
        assert!(
            text.contains(expect),
            "{method} {}: {text}",
            &path[..path.len().min(80)]
        );
        let json: serde_json::Value = serde_json::from_str(&text).expect("errors are JSON");
        assert!(json["error"].is_string());
    }
}

#[test]
fn kafka_bad_input_is_a_clear_4xx_and_publishes_nothing() {
    let (api, topic) = TestApi::kafka("api-bad");
    bad_requests(&api);
    // One good event afterwards, so the topic exists and holds only it.
    let (status, id, _) = api.send("POST", "/guild/join", Some("user9"), None);
    assert_eq!(status, 200);
    let records = read_topic(&topic, 1);
    assert_eq!(records.keys().collect::<Vec<_>>(), vec![&id.unwrap()]);
}

#[test]
fn embedded_bad_input_is_a_clear_4xx_and_publishes_nothing() {
    let (api, transport) = TestApi::start(&Kind::Embedded, SEED_PLUGINS);
    bad_requests(&api);
    let AnyTransport::Embedded(log) = &*transport else {
        unreachable!()
    };
    assert_eq!(log.end_offset(), 0);
}

/// Drops spellbook into a running API: its route appears, serves, and goes
/// away with the file. Returns the acknowledged spellbook event ids.
fn hot_add_spellbook(api: &TestApi) -> Vec<String> {
    let (status, _, _) = api.send("POST", "/purchase_a_spellbook/fire/2", None, None);
    assert_eq!(status, 404);
    drop_in(
        api.plugins.path(),
        "spellbook.wasm",
        artifacts::SPELLBOOK,
        Duration::ZERO,
    );
    let mut ids = Vec::new();
    wait_until("the spellbook route", || {
        let (status, id, _) = api.send("POST", "/purchase_a_spellbook/fire/2", Some("mage"), None);
        ids.extend(id);
        status == 200
    });
    let (status, id, text) = api.send("POST", "/purchase_a_spellbook/FIRE/1", Some("mage"), None);
    assert_eq!((status, text.as_str()), (200, "Spellbook Purchased!\n"));
    ids.extend(id);
    let (_, plugins) = api.admin_get("/plugins");
    let plugins: serde_json::Value = serde_json::from_str(&plugins).unwrap();
    assert!(
        plugins
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["event_type"] == "purchase_spellbook"
                && p["route"] == "POST /purchase_a_spellbook/{school}/{quantity}")
    );
    // Removing it takes the route away again.
    std::fs::remove_file(api.plugins.path().join("spellbook.wasm")).unwrap();
    wait_until("the spellbook route to go", || {
        let (status, id, _) = api.send("POST", "/purchase_a_spellbook/fire/2", Some("mage"), None);
        ids.extend(id);
        status == 404
    });
    ids
}

#[test]
fn embedded_hot_added_plugin_gets_its_route() {
    let (api, transport) = TestApi::start(&Kind::Embedded, SEED_PLUGINS);
    let ids = hot_add_spellbook(&api);
    let AnyTransport::Embedded(log) = &*transport else {
        unreachable!()
    };
    let published: Vec<serde_json::Value> = log
        .read(0, 100)
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect();
    assert_eq!(published.len(), ids.len());
    assert!(
        published
            .iter()
            .all(|e| e["event_type"] == "purchase_spellbook" && e["school"] == "fire")
    );
}

#[test]
fn kafka_hot_added_plugin_gets_its_route() {
    let (api, topic) = TestApi::kafka("api-hot");
    let ids = hot_add_spellbook(&api);
    let records = read_topic(&topic, ids.len());
    for id in &ids {
        let (_, envelope) = &records[id];
        assert_eq!(envelope["event_type"], "purchase_spellbook");
        assert_eq!(envelope["school"], "fire");
        assert_eq!(envelope["host"], "mage");
    }
}

#[test]
fn health_metrics_and_plugins_endpoints() {
    let (api, _t) = TestApi::start(&Kind::Embedded, SEED_PLUGINS);
    assert_eq!(api.send("GET", "/healthz", None, None).0, 200);
    api.send("POST", "/purchase_a_sword/red/1", Some("u"), None);
    api.send("POST", "/purchase_a_sword/red/x", Some("u"), None);
    let (status, text) = api.admin_get("/metrics");
    assert_eq!(status, 200);
    // The public listener serves neither.
    assert_eq!(api.send("GET", "/metrics", None, None).0, 404);
    assert_eq!(api.send("GET", "/plugins", None, None).0, 404);
    for needle in [
        r#"eventsift_http_requests_total{route="POST /purchase_a_sword/{color}/{quantity}",status="200"}"#,
        r#"eventsift_http_requests_total{route="POST /purchase_a_sword/{color}/{quantity}",status="400"}"#,
        r#"eventsift_events_published_total{event_type="purchase_sword"}"#,
        r#"eventsift_events_rejected_total{reason="validation"}"#,
        "eventsift_publish_latency_seconds_bucket",
        "eventsift_plugins_loaded",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let (_, plugins) = api.admin_get("/plugins");
    let plugins: serde_json::Value = serde_json::from_str(&plugins).unwrap();
    let mut names: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["default", "guild", "horse", "sword"]);
    let first = &plugins[0];
    for key in [
        "name",
        "version",
        "event_type",
        "table",
        "route",
        "source",
        "loaded_at",
    ] {
        assert!(first.get(key).is_some(), "{key} in {first}");
    }
}

/// `eventsift api` refuses to start without Kafka.
#[test]
fn api_alone_needs_kafka() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eventsift"))
        .args(["api", "--listen", "127.0.0.1:0"])
        .env_remove("EVENTSIFT_KAFKA")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`eventsift api` needs --kafka"));
}

/// A broker that goes away gives 503s (nothing is acknowledged that is not
/// durable); the API recovers when the broker returns.
#[test]
fn broker_down_gives_503_and_the_api_recovers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut broker = eventsift_services::PrivateKafka::start(root, state.path()).unwrap();
    let kind = Kind::Kafka {
        brokers: broker.bootstrap(),
        topic: unique("outage"),
    };
    let (api, _) = TestApi::start(&kind, &["guild.wasm"]);
    let send = |path: &str| api.send("POST", path, Some("u1"), None).0;
    let ready = || api.send("GET", "/readyz", None, None).0;
    let alive = || api.send("GET", "/healthz", None, None).0;

    wait_until("a first acknowledged event", || send("/guild/join") == 200);
    wait_until("readiness", || ready() == 200);

    broker.kill();
    let started = std::time::Instant::now();
    assert_eq!(
        send("/guild/join"),
        503,
        "no acknowledgement without a broker"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the 503 comes within a bounded time"
    );
    // Not ready (a load balancer stops sending), never not alive: the API
    // rides the outage out.
    wait_until("readiness to fail", || ready() == 503);
    assert_eq!(alive(), 200);

    broker.restart().unwrap();
    wait_until("the API to recover", || send("/guild/leave") == 200);
    wait_until("readiness again", || ready() == 200);
}
