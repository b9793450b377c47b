//! Kill -9 the real daemon while it acknowledges events on the embedded log,
//! restart it, and check that every acknowledged event reached the tables
//! (through the log and the writer) exactly once.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsift::transport::embedded::EmbeddedLog;
use eventsift_test_artifacts as artifacts;

use crate::support::*;
use crate::writer::{Format, Proc};

fn start(plugins: &std::path::Path, data: &std::path::Path, format: Format) -> Proc {
    let wh = data.join("wh");
    Proc::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plugins",
            plugins.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--flush-interval",
            "500ms",
        ],
        &format.env(),
    )
}

/// Sends sword purchases from several clients until `stop`, recording the
/// ids of acknowledged events.
fn load(base: &str, acked: Arc<Mutex<Vec<String>>>, run_for: Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let until = Instant::now() + run_for;
        let mut tasks = Vec::new();
        for c in 0..16 {
            let (http, base, acked) = (http.clone(), base.to_owned(), acked.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let url = format!("{base}/purchase_a_sword/red/{c}");
                    let Ok(resp) = http
                        .post(&url)
                        .header("Host", format!("user{c}"))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if resp.status() == 200
                        && let Some(id) = resp.headers().get("x-event-id")
                    {
                        acked.lock().unwrap().push(id.to_str().unwrap().to_owned());
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn kill_9_loses_no_acknowledged_event() {
    kill_9(Format::Hive);
}

#[test]
fn kill_9_loses_no_acknowledged_event_on_delta() {
    kill_9(Format::Delta);
}

fn kill_9(format: Format) {
    let _heavy = crate::support::heavy();
    let plugins = tempfile::tempdir().unwrap();
    drop_in(plugins.path(), "sword.wasm", artifacts::SWORD, SETTLED);
    let data = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));

    for round in 0..3 {
        let mut daemon = start(plugins.path(), data.path(), format);
        let killer = {
            let pid = daemon.pid();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500 + 300 * round));
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            })
        };
        load(&daemon.base, acked.clone(), Duration::from_secs(20));
        killer.join().unwrap();
        daemon.wait(Duration::from_secs(30));
    }

    // A clean run after the crashes: it serves and shuts down gracefully.
    let mut daemon = start(plugins.path(), data.path(), format);
    load(&daemon.base, acked.clone(), Duration::from_millis(300));
    let status = daemon.term();
    assert!(status.success(), "SIGTERM exits 0, got {status}");

    // The writer inside `serve` committed everything to the warehouse and
    // truncated the log below it: each acknowledged event is in the tables
    // exactly once (events whose reply the kill cut off may be there too).
    let log = EmbeddedLog::open(&data.path().join("log")).unwrap();
    assert!(
        log.read(0, usize::MAX).unwrap().len() <= 1,
        "the log is truncated"
    );
    let wh =
        eventsift::writer::warehouse::Warehouse::open(data.path().join("wh").to_str().unwrap())
            .unwrap();
    let seen = crate::writer::Tables::read(&wh).ids();
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 100,
        "the load acknowledged only {} events",
        acked.len()
    );
    for id in acked.iter() {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "acknowledged event {id} must be in the tables exactly once"
        );
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "no event is in the tables twice"
    );
}
