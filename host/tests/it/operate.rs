//! Operating eventsift: the admin listener and its status page (checked
//! in Debian's headless Chromium), systemd units and readiness, alert
//! rules (promtool) and the dashboard against a real scrape, `eventsift
//! health`, `--version`, JSON logs, and an installed binary that finds
//! its bundled plugins.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventsift_test_artifacts as artifacts;

use crate::limits::serve;
use crate::support::{SETTLED, drop_in, output_text, wait_until};
use crate::writer::{Proc, http_get, plugin_dir, s};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// POST `path` with Host `host`: the status.
fn post(base: &str, path: &str, host: &str) -> u16 {
    crate::ingest::request(
        "POST",
        &format!("{base}{path}"),
        &[("Host", host)],
        Vec::new(),
    )
    .status
}

/// A GET that does not follow redirects: status and Location.
fn get_no_redirect(url: &str) -> (u16, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    })
}

/// The `eventsift_*` names an expression text uses.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("eventsift_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        out.push(text[start..end].to_owned());
        i = end;
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn admin_listener_serves_operators_the_public_one_serves_games_and_every_alerted_metric_is_exported()
 {
    let plugins = plugin_dir(&["sword.wasm", "default.wasm"]);
    drop_in(plugins.path(), "chatty.wasm", artifacts::CHATTY, SETTLED);
    std::fs::write(plugins.path().join("broken.wasm"), b"not a component").unwrap();
    let (p, _dirs) = serve(plugins.path(), &[], &[]);
    let admin = p.admin();
    assert_ne!(admin, p.base);

    // The public listener: events and the health load balancers use.
    assert_eq!(
        post(&p.base, "/purchase_a_sword/red/2", "u1.example.com"),
        200
    );
    assert_eq!(
        post(&p.base, "/purchase_a_sword/red/x", "u1.example.com"),
        400
    );
    assert_eq!(post(&p.base, "/chatty_event/3", "u2.example.com"), 200);
    assert_eq!(p.get("/healthz").0, 200);
    wait_until("readiness", || p.get("/readyz").0 == 200);
    for path in ["/metrics", "/plugins", "/status", "/status.json"] {
        assert_eq!(p.get(path).0, 404, "{path} is not public");
    }

    // The admin listener.
    assert_eq!(p.admin_get("/healthz").0, 200);
    assert_eq!(p.admin_get("/readyz").0, 200);
    assert_eq!(
        get_no_redirect(&format!("{admin}/")),
        (302, Some("/status".into()))
    );
    let (code, html) = p.admin_get("/status");
    assert_eq!(code, 200);
    assert!(html.contains("<script src=\"/status.js\">"), "{html}");
    assert!(!html.contains("http"), "nothing external on the page");
    let (code, js) = p.admin_get("/status.js");
    assert_eq!(code, 200);
    assert!(js.contains("fetch(\"/status.json\"") && !js.contains("http"));
    let (code, body) = p.admin_get("/nowhere");
    assert_eq!(code, 404);
    assert!(body.contains("/status"), "{body}");
    let (_, plugins_json) = p.admin_get("/plugins");
    let list: serde_json::Value = serde_json::from_str(&plugins_json).unwrap();
    let mut types: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["event_type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["chatty_event", "default", "purchase_sword"]);

    let status = |p: &Proc| -> serde_json::Value {
        serde_json::from_str(&p.admin_get("/status.json").1).unwrap()
    };
    wait_until("the tables on the status document", || {
        let s = status(&p);
        s["tables"]["list"].as_array().is_some_and(|l| {
            l.iter()
                .any(|t| t["name"] == "sword_purchases" && t["rows"] == 1)
        })
    });
    let s = status(&p);
    assert_eq!(s["role"], "serve");
    assert_eq!(s["build"]["commit"], eventsift::GIT_COMMIT);
    assert_eq!(s["refused"][0]["file"], "broken.wasm");
    assert!(!s["refused"][0]["reason"].as_str().unwrap().is_empty());
    let rejection = s["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stage"] == "validation")
        .unwrap_or_else(|| panic!("the API's refusal is listed: {s:#}"));
    assert!(rejection["reason"].as_str().unwrap().contains("quantity"));
    assert_eq!(
        rejection["sample"],
        "POST /purchase_a_sword/red/x (Host: u1.example.com)"
    );
    assert_eq!(rejection["event_type"], "purchase_sword");
    let part = &s["partitions"][0];
    assert_eq!(part["partition"], 0);
    assert!(part["position"].as_i64().unwrap() >= 2, "{part}");
    assert!(s["totals"]["accepted"].as_f64().unwrap() >= 2.0);
    let sword = s["tables"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "sword_purchases")
        .unwrap();
    assert!(sword["files"].as_u64().unwrap() >= 1 && sword["bytes"].as_u64().unwrap() > 0);
    assert!(sword["freshness_seconds"].as_f64().unwrap() < 120.0);

    // Every metric the alert rules and the dashboard use is exported.
    wait_until("the chatty plugin's log lines", || {
        p.metric("eventsift_plugin_log_lines_total") > 0.0
    });
    let (_, scrape) = p.admin_get("/metrics");
    let mut used = Vec::new();
    for f in [
        "deploy/prometheus/eventsift.rules.yml",
        "deploy/grafana/eventsift.json",
    ] {
        used.extend(metric_names(
            &std::fs::read_to_string(root().join(f)).unwrap(),
        ));
    }
    used.sort();
    used.dedup();
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| {
            !scrape.lines().any(|l| {
                l.strip_prefix(name.as_str())
                    .is_some_and(|r| r.starts_with(['{', ' ']))
            })
        })
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{scrape}");
}

#[test]
fn status_page_shows_the_daemon_under_load_in_a_real_browser() {
    let browser = root().join("tests/browser");
    if !browser.join("node_modules/playwright-core").is_dir() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&browser)
            .status()
            .expect("npm (installed by .ci/run) must be on PATH");
        assert!(ok.success(), "npm ci in tests/browser");
    }
    let plugins = plugin_dir(&["sword.wasm", "horse.wasm", "guild.wasm", "default.wasm"]);
    std::fs::write(plugins.path().join("broken.wasm"), b"\0asm but not really").unwrap();
    let (p, _dirs) = serve(plugins.path(), &[], &[]);
    wait_until("readiness", || p.get("/readyz").0 == 200);
    for q in ["x", "-1"] {
        assert_eq!(
            post(
                &p.base,
                &format!("/purchase_a_sword/red/{q}"),
                "bad.example.com"
            ),
            400
        );
    }
    // Load for the page to show: the seed's mix, paced, for a minute at most.
    let mut load = Command::new(env!("CARGO_BIN_EXE_eventsift"))
        .args([
            "loadgen",
            "--target",
            &p.base,
            "--scenario",
            "seed",
            "--rate",
            "200",
        ])
        .args(["--duration", "90s", "--clients", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .arg(browser.join("status.mjs"))
        .arg(p.admin())
        .arg(plugins.path())
        .arg(artifacts::SPELLBOOK)
        .arg(&shot)
        .current_dir(&browser)
        .output()
        .unwrap();
    let _ = load.kill();
    let _ = load.wait();
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        p.logs()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(seen["role"], "serve");
    assert_eq!(seen["health"], "ready");
    let before: Vec<&str> = seen["before"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(before.contains(&"purchase_sword") && !before.contains(&"purchase_spellbook"));
    assert!(
        seen["after"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "purchase_spellbook"),
        "the dropped-in plugin appeared without a reload: {seen}"
    );
    assert!(
        seen["refreshes"].as_i64().unwrap() >= 1,
        "the page refreshed itself"
    );
    let tables: Vec<&str> = seen["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(tables.contains(&"sword_purchases"), "{seen}");
    assert!(
        seen["rejections"]
            .to_string()
            .contains("quantity must be a whole number"),
        "{seen}"
    );
    assert!(
        seen["refused"].to_string().contains("broken.wasm"),
        "{seen}"
    );
    assert_ne!(seen["rate"], "0");
    let requests = seen["requests"].as_array().unwrap();
    assert!(
        requests
            .iter()
            .all(|u| u.as_str().unwrap().starts_with(&p.admin())),
        "everything comes from the daemon: {requests:?}"
    );
    assert!(
        !seen["console"].to_string().contains("error"),
        "no script errors: {seen}"
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    // EVENTSIFT_BLESS=1 refreshes the screenshot the README shows.
    if std::env::var_os("EVENTSIFT_BLESS").is_some() {
        std::fs::copy(&shot, root().join("docs/images/status-page.png")).unwrap();
    }
    assert!(root().join("docs/images/status-page.png").is_file());
}

#[test]
fn systemd_units_verify_and_the_daemon_notifies_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_eventsift");
    for role in ["serve", "api", "writer"] {
        let name = format!("eventsift-{role}.service");
        let unit = std::fs::read_to_string(root().join("deploy/systemd").join(&name)).unwrap();
        for needed in [
            "Type=notify",
            "Restart=on-failure",
            "LimitNOFILE=",
            "User=eventsift",
            "ProtectSystem=strict",
            "ReadWritePaths=",
            "NoNewPrivileges=yes",
        ] {
            assert!(unit.contains(needed), "{name} lacks {needed}");
        }
        assert!(
            !unit
                .lines()
                .any(|l| l.starts_with("MemoryDenyWriteExecute")),
            "{name}"
        );
        let exec = format!("ExecStart=/usr/local/bin/eventsift {role} ");
        assert!(unit.contains(&exec), "{name}: {exec}");
        let unit = unit.replace("/usr/local/bin/eventsift", bin);
        std::fs::write(dir.path().join(&name), unit).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join(&name))
            .output()
            .expect("systemd-analyze (Debian's systemd, installed by .ci/run) must be on PATH");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{name}: {stderr}"
        );
    }

    // Readiness: READY=1 arrives on our NOTIFY_SOCKET once /readyz says 200.
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let plugins = plugin_dir(&["sword.wasm"]);
    let started = Instant::now();
    let (mut p, _dirs) = serve(plugins.path(), &[], &[("NOTIFY_SOCKET", s(&socket_path))]);
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 within 90 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1\n"), "{msg}");
    assert!(msg.contains("STATUS=eventsift serve ready"), "{msg}");
    assert_eq!(p.get("/readyz").0, 200, "ready when it said so");
    assert!(started.elapsed() < Duration::from_secs(90));
    // STOPPING=1 on SIGTERM.
    assert!(p.term().success());
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

#[test]
fn alert_rules_pass_promtool_with_firing_and_quiet_cases() {
    let dir = root().join("deploy/prometheus");
    for args in [
        &["check", "rules", "eventsift.rules.yml"][..],
        &["test", "rules", "eventsift.test.yml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian's prometheus, installed by .ci/run) must be on PATH");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert has a test case.
    let rules = std::fs::read_to_string(dir.join("eventsift.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("eventsift.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    for a in alerts {
        assert!(
            tests.contains(&format!("alertname: {a}")),
            "{a} has no test"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/eventsift.json")).unwrap(),
    )
    .unwrap();
    assert!(dashboard["panels"].as_array().unwrap().len() >= 10);
}

#[test]
fn health_command_version_and_log_formats() {
    let bin = env!("CARGO_BIN_EXE_eventsift");
    let out = Command::new(bin).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.contains(env!("CARGO_PKG_VERSION"))
            && version.contains("eventsift:plugin@0.2.0")
            && version.contains(&format!("commit {}", eventsift::GIT_COMMIT)),
        "{version}"
    );
    assert_ne!(eventsift::GIT_COMMIT, "unknown", "built in a git checkout");

    let plugins = plugin_dir(&["sword.wasm"]);
    let (p, _dirs) = serve(plugins.path(), &["--log-format", "json"], &[]);
    wait_until("readiness", || p.get("/readyz").0 == 200);
    let health = |args: &[&str]| {
        let out = Command::new(bin)
            .arg("health")
            .args(args)
            .env_remove("EVENTSIFT_ADMIN_LISTEN")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = health(&["--url", &p.admin()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("\"status\":\"ok\""), "{text}");
    assert_eq!(health(&["--url", &p.admin(), "--live"]).0, Some(0));
    let (code, text) = health(&["--url", "http://127.0.0.1:9"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no daemon answers"), "{text}");
    // The address the daemon was given through the environment.
    let admin = p.admin();
    let out = Command::new(bin)
        .arg("health")
        .env(
            "EVENTSIFT_ADMIN_LISTEN",
            admin.trim_start_matches("http://"),
        )
        .output()
        .unwrap();
    assert!(out.status.success());

    assert_eq!(post(&p.base, "/purchase_a_sword/red/1", "u1"), 200);
    wait_until("a commit", || {
        p.logs().contains("committed") || p.metric("eventsift_writer_commits_total") > 0.0
    });
    let logs = p.logs();
    let mut lines = 0;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        assert!(v["fields"]["message"].is_string(), "{line}");
        lines += 1;
    }
    assert!(lines >= 3, "{logs}");
    assert!(logs.contains("admin listening on http://"));
    // Text on a pipe: no colour codes.
    let (t, _d) = serve(plugins.path(), &[], &[]);
    wait_until("readiness", || t.get("/readyz").0 == 200);
    assert!(!t.logs().contains('\u{1b}'), "{}", t.logs());
}

#[test]
fn an_installed_binary_finds_its_bundled_plugins_from_any_folder() {
    let prefix = tempfile::tempdir().unwrap();
    let bin_dir = prefix.path().join("bin");
    let share = prefix.path().join("share/eventsift/plugins");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&share).unwrap();
    let bin = bin_dir.join("eventsift");
    std::fs::copy(env!("CARGO_BIN_EXE_eventsift"), &bin).unwrap();
    for (name, path) in artifacts::BUNDLED {
        std::fs::copy(path, share.join(name)).unwrap();
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(args)
            .current_dir(elsewhere.path())
            .env_remove("EVENTSIFT_PLUGINS")
            .env("EVENTSIFT_ADMIN_LISTEN", "127.0.0.1:0")
            .output()
            .unwrap();
        (out.status.success(), output_text(&out))
    };
    let (ok, text) = run(&["plugins", "list"]);
    assert!(ok, "{text}");
    for name in ["sword", "horse", "guild", "default", "spellbook"] {
        assert!(text.contains(name), "{name} in {text}");
    }
    let (ok, text) = run(&["demo", "--dir", s(&elsewhere.path().join("demo"))]);
    assert!(ok, "{text}");
    assert!(text.contains("Sword"), "{text}");
    let (ok, text) = run(&["serve", "--plugins", "/no/such/plugins"]);
    assert!(!ok);
    assert!(
        text.contains("the plugin folder /no/such/plugins does not exist"),
        "{text}"
    );
    // Nothing installed anywhere: the error names where it looked.
    std::fs::remove_dir_all(&share).unwrap();
    let (ok, text) = run(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(text.contains("share/eventsift/plugins"), "{text}");
    let _ = http_get;
}
