//! The TypeScript SDK and plugins (`sdk-ts/`, `plugins-ts/`), built with
//! componentize-js by the test artifacts: its unit tests, the parity of a
//! TypeScript port with its Rust original on 10,000 mixed events, and the
//! bundled TypeScript plugin loaded, routed and written like the others.

use std::process::Command;
use std::time::{Duration, Instant};

use eventsift::plugin::bindings::{ColumnData, ColumnValues};
use eventsift::plugin::{Batch, Validated};
use eventsift_test_artifacts as artifacts;

use crate::kit::post;
use crate::limits::serve;
use crate::support::*;
use crate::writer::plugin_dir;

/// The SDK's and the plugins' native unit tests (`npm test` in plugins-ts:
/// node's test runner over esbuild bundles).
#[test]
fn typescript_sdk_and_plugin_unit_tests_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins-ts");
    let out = Command::new("npm")
        .arg("test")
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert!(!stdout.contains("# pass 0"), "{stdout}");
}

/// A deterministic generator (xorshift), so a failure names a case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[(self.next() % of.len() as u64) as usize]
    }
    /// Half the time one of the first three values (valid ones), else any.
    fn value<'a>(&mut self, of: &[&'a str]) -> &'a str {
        if self.next() % 2 == 0 {
            self.pick(&of[..3])
        } else {
            self.pick(of)
        }
    }
}

const SPEEDS: &[&str] = &[
    "1",
    "1.5",
    "0",
    "-0",
    "2e3",
    "5e-5",
    "1e-7",
    "123456789.125",
    "1e300",
    "1e400",
    "-1",
    "0.1",
    "9007199254740993",
    "18446744073709551615",
    "-9223372036854775808",
    "\"1.5\"",
    "\" 1\"",
    "\"1.\"",
    "\".5\"",
    "\"+1\"",
    "\"1e\"",
    "\"inf\"",
    "\"NaN\"",
    "\"-1\"",
    "\"\"",
    "\"1e999\"",
    "\"0x10\"",
    "\"1_000\"",
    "\"٣\"",
    "null",
    "true",
    "[1]",
    "{}",
    "\"\\u0031\"",
];
const SIZES: &[&str] = &[
    "\"small\"",
    "\"LARGE\"",
    "\"Medium\"",
    "\"pony\"",
    "\"\"",
    "3",
    "null",
    "false",
    "[]",
    "{\"a\":[1,\"]\"]}",
    "\"sm\\u0061ll\"",
    "\"SMALL\\n\"",
    "\"ünïcode-size\"",
    "\"\\ud83d\\ude00\"",
    "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxéééé\"",
    "\"tab\\tand \\\"quote\\\" and \\\\\"",
    "\"\\b\\f\\u0001\"",
];
const QUANTITIES: &[&str] = &[
    "2",
    "\"2\"",
    "2.0",
    "\"1.5\"",
    "-1",
    "\"-1\"",
    "1e300",
    "\"+3\"",
    "9007199254740993",
    "\"9223372036854775807\"",
    "9223372036854775808",
    "18446744073709551615",
    "[1]",
    "null",
    "\"two\"",
    "0",
    "1e2",
    "-0",
    "\"007\"",
    "\"\"",
    "8.99e15",
    "9.1e15",
];
const TYPES: &[&str] = &[
    "\"purchase_horse\"",
    "\"purchase_horse\"",
    "\"purchase_horse\"",
    "\"purchase_horse\"",
    "\"purchase_sword\"",
    "\"PURCHASE_HORSE\"",
    "5",
    "null",
    "\"purchase_h\\u006frse\"",
];
/// Whole events that are malformed or odd at the JSON level.
const ODD: &[&[u8]] = &[
    b"not json",
    b"[1]",
    b"",
    b"   ",
    b"{",
    b"{\"event_type\":\"purchase_horse\",\"speed\":1,",
    b"{\"event_type\":\"purchase_horse\"} x",
    b"{\"event_type\":\"purchase_horse\",\"speed\":01}",
    b"{\"event_type\":\"purchase_horse\",\"speed\":1.}",
    b"{\"event_type\":\"purchase_horse\",\"size\":\"\\x\"}",
    b"{\"event_type\":\"purchase_horse\",\"size\":\"\\ud800\"}",
    b"{\"event_type\":\"purchase_horse\",\"size\":\"\\udc00x\"}",
    b"{\"event_type\":\"purchase_horse\",\"size\":\"\\ud800\\u0041\"}",
    b"{\"event_type\":\"purchase_horse\",\"size\":\"\\u12\"}",
    b"{\"event_type\":\"purchase_horse\",\"size\":\"a\\n\tb\"}",
    b"{\"event_type\":\"purchase_horse\",\"size\":\"a\tb\"}",
    b"{\"event_type\":\"purchase_horse\",\"size\":\"\xff\",\"speed\":1,\"quantity\":1}",
    b"{\"event_type\":\"purchase_horse\",\"size\":\"\\n\xff\",\"speed\":1,\"quantity\":1}",
    b"{\"event_type\":\"purchase_horse\",\"s\xffze\":\"small\",\"speed\":1,\"quantity\":1}",
    b"{\"event_type\":\"purchase_horse\",\"size\":\"small\",\"size\":\"large\",\"speed\":1,\"quantity\":1}",
    b"{\"event_type\":\"purchase_horse\",\"si\\u007ae\":\"small\",\"speed\":1,\"quantity\":1}",
    b" {\r\n\t\"event_type\" : \"purchase_horse\" ,\"speed\":2,\"size\":\"small\",\"quantity\":3 } ",
    b"{\"event_type\":\"purchase_horse\",\"speed\":1,\"size\":\"small\",\"quantity\":1,\"x\":[[[[{\"y\":\"}\"}]]]]}",
    b"{\"event_type\":\"purchase_horse\",\"speed\":1,\"size\":\"small\",\"quantity\":1,\"x\":[1,2}",
    b"{\"event_type\":\"purchase_horse\",\"speed\":tru}",
    b"{\"a\" 1}",
    b"{a:1}",
    b"\"str\"",
];

/// 10,000 events: mostly horse purchases with every kind of field value,
/// other event types, and malformed ones.
fn mixed_events(n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|i| {
            if rng.next() % 10 == 0 {
                return ODD[i % ODD.len()].to_vec();
            }
            let mut fields = vec![format!("\"event_type\":{}", rng.pick(TYPES))];
            for (name, values) in [("speed", SPEEDS), ("size", SIZES), ("quantity", QUANTITIES)] {
                if rng.next() % 16 != 0 {
                    fields.push(format!("\"{name}\":{}", rng.value(values)));
                }
            }
            fields.push(format!("\"event_id\":\"e{i}\""));
            if rng.next() % 2 == 0 {
                fields.reverse();
            }
            format!("{{{}}}", fields.join(",")).into_bytes()
        })
        .collect()
}

/// A column's values in a form that compares floats bit for bit.
fn values(c: &ColumnData) -> Vec<String> {
    match &c.values {
        ColumnValues::Float64(v) => v.iter().map(|x| format!("{:#x}", x.to_bits())).collect(),
        ColumnValues::Int64(v) | ColumnValues::Timestamp(v) => {
            v.iter().map(|x| x.to_string()).collect()
        }
        ColumnValues::Boolean(v) => v.iter().map(|x| x.to_string()).collect(),
        ColumnValues::Text(t) => {
            let mut start = 0;
            t.ends
                .iter()
                .map(|&end| {
                    let s = String::from_utf8_lossy(&t.data[start..end as usize]).into_owned();
                    start = end as usize;
                    s
                })
                .collect()
        }
    }
}

/// The TypeScript port of `plugins/horse` gives the same rows, values and
/// rejections (reasons word for word) as its Rust original, through the
/// same host, on the same 10,000 mixed events; and `validate` agrees on
/// route-style inputs.
#[test]
fn typescript_port_matches_its_rust_original_on_10000_mixed_events() {
    let _heavy = crate::support::heavy();
    let rt = runtime();
    let rust = load(&rt, artifacts::HORSE).unwrap();
    let ts = load(&rt, artifacts::TS_HORSE).unwrap();
    assert_eq!(rust.meta.columns, ts.meta.columns);
    assert_eq!(rust.meta.route, ts.meta.route);
    let events = mixed_events(10_000);
    let mut batch = Batch::default();
    events.iter().for_each(|e| batch.push(e));
    let want = rust.process(&batch);
    let got = ts.process(&batch);
    assert_eq!(want.faults, 0);
    assert_eq!(got.faults, 0, "{:?}", got.rejected.first());
    // Enough of each outcome for the comparison to mean something.
    assert!(want.rows.len() > 1_000, "{} rows", want.rows.len());
    assert!(
        want.rejected.len() > 3_000,
        "{} rejected",
        want.rejected.len()
    );
    let show = |i: u32| String::from_utf8_lossy(&events[i as usize]).into_owned();
    for (w, g) in want.rejected.iter().zip(&got.rejected) {
        assert_eq!(
            (w.index, &w.reason, w.stage),
            (g.index, &g.reason, g.stage),
            "event {}: {}",
            w.index,
            show(w.index)
        );
    }
    assert_eq!(want.rejected.len(), got.rejected.len());
    assert_eq!(want.rows, got.rows);
    for (i, (w, g)) in want.columns.iter().zip(&got.columns).enumerate() {
        let (w, g) = (values(w), values(g));
        for (row, (a, b)) in w.iter().zip(&g).enumerate() {
            assert_eq!(a, b, "column {i}, event {}", show(want.rows[row]));
        }
        assert_eq!(w.len(), g.len());
    }

    // validate: the route's fields arrive as strings.
    let mut rng = Rng(7);
    let strip = |v: &str| {
        v.trim_matches('"')
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    for _ in 0..1_000 {
        let input = format!(
            "{{\"speed\":\"{}\",\"size\":\"{}\",\"quantity\":\"{}\"}}",
            strip(rng.pick(SPEEDS)),
            strip(rng.pick(SIZES)),
            strip(rng.pick(QUANTITIES))
        );
        assert_eq!(rust.validate(&input), ts.validate(&input), "{input}");
    }
    for input in [
        "not json",
        "{}",
        r#"{"speed":1,"size":"small","quantity":1}"#,
    ] {
        assert_eq!(rust.validate(input), ts.validate(input), "{input}");
    }
    assert!(matches!(
        ts.validate(r#"{"speed":"2.5","size":"Medium","quantity":"3"}"#),
        Validated::Accepted { fields, .. } if fields == r#"{"speed":2.5,"size":"medium","quantity":3}"#
    ));
}

/// The bundled TypeScript plugin, dropped into a running daemon beside the
/// Rust ones: routed, validated, written and queried like them.
#[test]
fn bundled_typescript_plugin_is_loaded_routed_and_written() {
    let plugins = plugin_dir(&["sword.wasm"]);
    let (mut p, dirs) = serve(plugins.path(), &[], &[]);
    drop_in(
        plugins.path(),
        "achievement.wasm",
        artifacts::TS_ACHIEVEMENT,
        SETTLED,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = post(&p.base, "/unlock_achievement/first-blood/3");
        if status == 200 {
            assert_eq!(body, "Achievement Unlocked!\n");
            break;
        }
        assert_eq!(status, 404, "{body}");
        assert!(
            Instant::now() < deadline,
            "the TypeScript plugin never routed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = post(&p.base, "/unlock_achievement/gold!/3");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains(r#"badge must be 1 to 64 letters, digits, '-' or '_', got \"gold!\""#),
        "{body}"
    );
    assert_eq!(post(&p.base, "/unlock_achievement/%C3%A9t%C3%A9/7").0, 200);
    assert_eq!(post(&p.base, "/purchase_a_sword/red/2").0, 200);
    assert!(p.term().success(), "{}", p.logs());
    let out = Command::new(env!("CARGO_BIN_EXE_eventsift"))
        .args(["query", "--warehouse"])
        .arg(dirs.path().join("wh"))
        .args([
            "--format",
            "csv",
            "SELECT badge, level, host FROM achievements ORDER BY level",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "badge,level,host\nfirst-blood,3,player-7.example\nété,7,player-7.example\n"
    );
}

/// An interpreted plugin on a full chunk (20,000 events, one call's worth
/// of bytes) under the default 100 ms deadline: the host sizes its calls to
/// its measured pace, so every event becomes a row instead of the chunk
/// missing the deadline and being bisected as faulty.
#[test]
fn a_slow_language_plugin_gets_calls_sized_to_its_pace() {
    let _heavy = crate::support::heavy();
    use eventsift::plugin::instance::{FIRST_CALL_EVENTS, MIN_CALL_EVENTS};
    use eventsift::plugin::sandbox::Limits;
    let limits = Limits::default();
    let rt = runtime_with(limits);
    let ts = load(&rt, artifacts::TS_HORSE).unwrap();
    assert_eq!(
        ts.events_per_call(),
        FIRST_CALL_EVENTS,
        "before the first call"
    );
    let mut batch = Batch::default();
    for i in 0..20_000 {
        batch.push(
            format!(
                r#"{{"event_type":"purchase_horse","speed":1.5,"size":"small","quantity":{}}}"#,
                i % 5 + 1
            )
            .as_bytes(),
        );
    }
    assert!(
        batch.data().len() <= ts.batch_bytes(),
        "one call's worth of bytes"
    );
    let out = ts.process(&batch);
    assert_eq!(out.rows.len(), 20_000, "{:?}", out.rejected.first());
    assert!(out.rejected.is_empty());
    let pace = ts.pace_nanos();
    eprintln!(
        "TypeScript horse: {:.1} µs per event, {} events per call, {} faults",
        pace as f64 / 1e3,
        ts.events_per_call(),
        out.faults
    );
    // The chunk in one call would have missed the deadline.
    assert!(
        u128::from(pace) * 20_000 > limits.deadline.as_nanos(),
        "pace {pace} ns"
    );
    let half = limits.deadline.as_nanos() as u64 / 2;
    assert_eq!(
        ts.events_per_call(),
        ((half / pace) as usize).max(MIN_CALL_EVENTS)
    );
    // The same logic in Rust gets larger calls (the pace is per plugin).
    let rust = load(&rt, artifacts::HORSE).unwrap();
    assert_eq!(rust.process(&batch).rows.len(), 20_000);
    assert!(
        rust.events_per_call() > ts.events_per_call(),
        "{} vs {}",
        rust.events_per_call(),
        ts.events_per_call()
    );
}
