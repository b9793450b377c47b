//! The plugin kit as a game team uses it: the walk of `sdk/README.md`, run
//! command by command in a temporary folder outside the checkout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::limits::serve;
use crate::support::{SETTLED, drop_in};
use crate::writer::{plugin_dir, s};

/// `eventsift <args>` in `dir`, with the kit's cargo target folder.
fn kit(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eventsift"))
        .args(args)
        .current_dir(dir)
        .env("EVENTSIFT_LOG", "warn")
        .env("CARGO_TARGET_DIR", target())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Kept between runs, so that a warm run compiles only the plugin.
fn target() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("kit-test")
}

pub(crate) fn post(base: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "POST {path} HTTP/1.1\r\nHost: player-7.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// A command of the walk that must succeed; returns its stdout.
fn must(cmd: &mut Command) -> String {
    let t = cmd.output().unwrap();
    assert!(
        t.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&t.stdout),
        String::from_utf8_lossy(&t.stderr)
    );
    String::from_utf8_lossy(&t.stdout).into_owned()
}

#[test]
fn rust_walkthrough_new_test_build_drop_in_and_query() {
    walkthrough("rust");
}

#[test]
fn typescript_walkthrough_new_test_build_drop_in_and_query() {
    walkthrough("ts");
}

/// The walk of `sdk/README.md` in `lang`, command by command.
fn walkthrough(lang: &str) {
    let _heavy = crate::support::heavy();
    let work = tempfile::tempdir().unwrap();
    // 1. new
    let (code, out, err) = kit(
        work.path(),
        &[
            "plugin",
            "new",
            "achievement",
            "--lang",
            lang,
            "--event-type",
            "unlock_achievement",
            "--table",
            "achievements",
            "--route",
            "POST /unlock/{badge}/{level}",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let project = work.path().join("achievement");
    let files: &[&str] = if lang == "rust" {
        &["Cargo.toml", "Cargo.lock", "src/lib.rs"]
    } else {
        &["package.json", "package-lock.json", "src/plugin.ts"]
    };
    for f in files
        .iter()
        .chain(&["samples.jsonl", "vendor/wit/plugin.wit"])
    {
        assert!(project.join(f).is_file(), "{f} missing");
    }
    // 2. the native unit tests
    if lang == "rust" {
        let out = must(
            Command::new("cargo")
                .args(["test", "--quiet"])
                .current_dir(&project)
                .env("CARGO_TARGET_DIR", target()),
        );
        assert!(out.contains("2 passed"), "{out}");
    } else {
        must(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&project),
        );
        let out = must(Command::new("npm").args(["test"]).current_dir(&project));
        assert!(out.contains("# pass 2"), "{out}");
    }
    // 3. build (and check)
    let (code, out, err) = kit(&project, &["plugin", "build"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("route       POST /unlock/{badge}/{level}"),
        "{out}"
    );
    let wasm = if lang == "rust" {
        target().join("wasm32-wasip2/release/achievement.wasm")
    } else {
        project.join("target/achievement.wasm")
    };
    assert!(
        out.contains(&format!("ok: {} is valid", wasm.display())),
        "{out}"
    );
    // 4. test with the samples, and a route line
    std::fs::write(
        project.join("routes.txt"),
        "POST /unlock/silver/3\nPOST /unlock/x\n",
    )
    .unwrap();
    let (code, out, err) = kit(
        &project,
        &[
            "plugin",
            "test",
            s(&wasm),
            "--events",
            "samples.jsonl",
            "--routes",
            "routes.txt",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "validate  4 events: 2 accepted, 2 rejected",
        "samples.jsonl:2: badge must be 1 to 64 letters, digits, '-' or '_', got \"a b\"",
        "routes.txt:2: does not match the plugin's route POST /unlock/{badge}/{level}",
        "process   2 events: 2 rows, 0 to rejected_events, 0 faults",
        "achievements (2 rows, dt=",
        // the full schema, common columns included
        "  event_id ",
        "  user_id ",
        "  level              Int64",
        "  source_offset ",
        "| gold ",
        "| silver ",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
    let (code, _, err) = kit(&project, &["plugin", "test", s(&wasm), "--strict"]);
    assert_eq!(code, 1, "--strict with a rejected sample: {err}");
    assert!(err.contains("--strict: 1 rejected, 0 faults"), "{err}");

    // 5. drop it into a running daemon, 6. see the rows.
    let plugins = plugin_dir(&["sword"]);
    let (mut p, dirs) = serve(plugins.path(), &[], &[]);
    drop_in(plugins.path(), "achievement.wasm", s(&wasm), SETTLED);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = post(&p.base, "/unlock/gold/3");
        if status == 200 {
            assert_eq!(body, "ok\n");
            break;
        }
        assert_eq!(status, 404, "{body}");
        assert!(
            Instant::now() < deadline,
            "the dropped-in plugin never routed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(p.term().success(), "{}", p.logs());
    let (code, out, err) = kit(
        work.path(),
        &[
            "query",
            "--warehouse",
            s(&dirs.path().join("wh")),
            "--format",
            "csv",
            "SELECT badge, level, host FROM achievements",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "badge,level,host\ngold,3,player-7.example\n");
}

/// `plugin test` shows a 0.2 plugin's log lines with the input line they
/// came from, and says that a 0.1 plugin cannot log.
#[test]
fn plugin_test_shows_log_lines_by_input_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("routes.txt"),
        "POST /chatty_event/1\nPOST /chatty_event/x\nPOST /chatty_event/2\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("old.txt"), "POST /old_event/4\n").unwrap();
    let run = |wasm: &str, routes: &str, extra: &[&str]| {
        let mut args = vec!["plugin", "test", wasm, "--routes", routes];
        args.extend_from_slice(extra);
        let (code, out, err) = kit(dir.path(), &args);
        assert_eq!(code, 0, "{out}{err}");
        out
    };
    let out = run(eventsift_test_artifacts::CHATTY, "routes.txt", &[]);
    for expect in [
        "routes.txt:1 validate info  quantity 1",
        "routes.txt:2 validate warn  rejecting: quantity must be a whole number >= 0, got \"x\"",
        "routes.txt:1 process  info  quantity 1",
        "routes.txt:3 process  info  quantity 2",
        "log       5 lines",
    ] {
        assert!(out.contains(expect), "missing {expect:?} in:\n{out}");
    }
    let out = run(
        eventsift_test_artifacts::CHATTY,
        "routes.txt",
        &["--plugin-log-level", "warn"],
    );
    assert!(out.contains("log       1 lines, 4 below warn"), "{out}");
    let out = run(
        eventsift_test_artifacts::CONTRACT_0_1,
        "old.txt",
        &["--strict"],
    );
    assert!(out.contains("process   1 events: 1 rows"), "{out}");
    assert!(
        out.contains("log       none: built against eventsift:plugin/plugin@0.1.0"),
        "{out}"
    );
}
