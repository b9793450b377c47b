//! Kill -9 the real daemon while it acknowledges events on the embedded log,
//! restart it, and check that every acknowledged event reached the tables
//! (through the log and the writer) exactly once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsift::transport::embedded::EmbeddedLog;
use eventsift_test_artifacts as artifacts;

use crate::support::*;

struct Daemon {
    child: Child,
    base: String,
}

fn start(plugins: &std::path::Path, data: &std::path::Path) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventsift"))
        .args(["serve", "--listen", "127.0.0.1:0", "--plugins"])
        .arg(plugins)
        .arg("--data-dir")
        .arg(data)
        .arg("--warehouse")
        .arg(data.join("wh"))
        .args(["--flush-interval", "500ms"])
        .env("EVENTSIFT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("API listening on http://") {
                let _ = tx.send(line[at + "API listening on ".len()..].trim().to_owned());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the daemon did not start within 60 s");
    Daemon { child, base }
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
    let plugins = tempfile::tempdir().unwrap();
    drop_in(plugins.path(), "sword.wasm", artifacts::SWORD, SETTLED);
    let data = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));

    for round in 0..3 {
        let mut daemon = start(plugins.path(), data.path());
        let killer = {
            let pid = daemon.child.id();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500 + 300 * round));
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            })
        };
        load(&daemon.base, acked.clone(), Duration::from_secs(20));
        killer.join().unwrap();
        let _ = daemon.child.wait();
    }

    // A clean run after the crashes: it serves and shuts down gracefully.
    let mut daemon = start(plugins.path(), data.path());
    load(&daemon.base, acked.clone(), Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
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
