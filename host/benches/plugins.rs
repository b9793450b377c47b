//! Plugin throughput: the sword, horse and guild logic over 1 M mixed JSON
//! event envelopes, in batches of 1000, through the Wasm plugins (deadline
//! and memory cap on) and through the same SDK code compiled natively.
//!
//! `cargo bench -p eventsift --bench plugins` (add `-- --events N --runs R`).
//! Prints events/s per mode (median of the runs) and the ratio; then, per
//! language, the horse plugin in Rust and its TypeScript port
//! (`plugins-ts/horse`): load time (compiling, and from the compiled
//! cache), one instance's memory, and events/s through `process`.

use std::time::Instant;

use eventsift::plugin::{Batch, LoadedPlugin, Runtime, RuntimeConfig};
use eventsift_sdk::BatchOutput;
use eventsift_test_artifacts as artifacts;

const BATCH: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let events = arg("--events", 1_000_000);
    let runs = arg("--runs", 5);
    if args.iter().any(|a| a == "--languages") {
        // Horse events only (the TypeScript port is of horse), 100 k of them.
        let n = arg("--events", 100_000);
        let mut batches: Vec<Batch> = Vec::new();
        for i in (0..).map(|k| 10 + (k / 7) * 20 + k % 7).take(n) {
            if batches.last().is_none_or(|b| b.len() == BATCH) {
                batches.push(Batch::with_capacity(BATCH, BATCH * 256));
            }
            batches.last_mut().unwrap().push(event(i).1.as_bytes());
        }
        languages(&batches, runs);
        return;
    }

    // The seed's mix: roughly half swords, a third horses, the rest guild.
    let mut per_type: [Vec<Batch>; 3] = Default::default();
    let mut bytes = 0usize;
    for i in 0..events {
        let (kind, json) = event(i);
        bytes += json.len();
        let batches = &mut per_type[kind];
        if batches.last().is_none_or(|b| b.len() == BATCH) {
            batches.push(Batch::with_capacity(BATCH, BATCH * 256));
        }
        batches.last_mut().unwrap().push(json.as_bytes());
    }
    println!(
        "{events} events ({} B on average), batches of {BATCH}, {runs} runs, median",
        bytes / events
    );

    let native = median(
        runs,
        || {
            let mut rows = 0;
            for b in &per_type[0] {
                rows += native_rows(eventsift_sdk::process_batch::<sword::Sword>(
                    b.data(),
                    b.ends(),
                ));
            }
            for b in &per_type[1] {
                rows += native_rows(eventsift_sdk::process_batch::<horse::Horse>(
                    b.data(),
                    b.ends(),
                ));
            }
            for b in &per_type[2] {
                rows += native_rows(eventsift_sdk::process_batch::<guild::Guild>(
                    b.data(),
                    b.ends(),
                ));
            }
            rows
        },
        events,
    );

    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let limits = runtime.limits();
    let load = |path: &str| {
        LoadedPlugin::load(&runtime, path.into(), &std::fs::read(path).unwrap()).unwrap()
    };
    let plugins = [
        load(artifacts::SWORD),
        load(artifacts::HORSE),
        load(artifacts::GUILD),
    ];
    let wasm = median(
        runs,
        || {
            let mut rows = 0;
            for (plugin, batches) in plugins.iter().zip(&per_type) {
                for b in batches {
                    let out = plugin.process(b);
                    assert!(out.rejected.is_empty());
                    rows += out.rows.len();
                }
            }
            rows
        },
        events,
    );

    println!("native (release):  {:>6.2} M events/s", native / 1e6);
    println!(
        "wasm ({} ms deadline, {} MiB cap): {:>6.2} M events/s",
        limits.deadline.as_millis(),
        limits.memory_bytes >> 20,
        wasm / 1e6
    );
    println!("wasm / native:     {:>6.2}", wasm / native);

    // The API's path: one `validate` call per request (path parameters as
    // a JSON object), the seed's sword route.
    const FIELDS: &str = r#"{"color":"red","quantity":"2"}"#;
    let calls = (events / 10).max(1);
    // Median calls/s of `accepted`, which validates FIELDS once.
    let per_call = |accepted: &dyn Fn() -> bool| {
        median(runs, || (0..calls).filter(|_| accepted()).count(), calls)
    };
    let accepted = |v: eventsift::plugin::Validated| {
        matches!(v, eventsift::plugin::Validated::Accepted { .. })
    };
    let native =
        per_call(&|| std::hint::black_box(eventsift_sdk::validate::<sword::Sword>(FIELDS)).is_ok());
    let wasm = per_call(&|| accepted(std::hint::black_box(plugins[0].validate(FIELDS))));
    let memoized =
        per_call(&|| accepted(std::hint::black_box(plugins[0].validate_memoized(FIELDS))));
    println!(
        "validate, one request: native {:.2} µs, wasm {:.2} µs, memoized {:.2} µs per call ({calls} calls)",
        1e6 / native,
        1e6 / wasm,
        1e6 / memoized
    );
}

/// Rust against TypeScript on the same plugin logic (horse) and events.
fn languages(batches: &[Batch], runs: usize) {
    let events: usize = batches.iter().map(Batch::len).sum();
    let cache = tempfile::tempdir().unwrap();
    let runtime = |cache: Option<&std::path::Path>| {
        Runtime::new(RuntimeConfig {
            cache_dir: cache.map(|p| p.to_path_buf()),
            ..RuntimeConfig::default()
        })
        .unwrap()
    };
    println!(
        "language  load (compile)  load (cached)  instance memory  process, events/s  per call"
    );
    for (lang, path) in [("rust", artifacts::HORSE), ("ts", artifacts::TS_HORSE)] {
        let wasm = std::fs::read(path).unwrap();
        let median_ms = |rt: &std::sync::Arc<Runtime>, n: usize| {
            let mut ms: Vec<f64> = (0..n)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(LoadedPlugin::load(rt, path.into(), &wasm).unwrap());
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(|a, b| a.total_cmp(b));
            ms[ms.len() / 2]
        };
        let compile = median_ms(&runtime(None), 3);
        let cached_rt = runtime(Some(cache.path()));
        LoadedPlugin::load(&cached_rt, path.into(), &wasm).unwrap();
        let cached = median_ms(&cached_rt, 5);
        let plugin = LoadedPlugin::load(&cached_rt, path.into(), &wasm).unwrap();
        let rate = median(
            runs,
            || batches.iter().map(|b| plugin.process(b).rows.len()).sum(),
            events,
        );
        println!(
            "{lang:<8}  {compile:>10.0} ms  {cached:>10.1} ms  {:>11.1} MiB  {:>13.0}  {:>7} events (pace {:.2} µs/event)",
            plugin.instance_memory_bytes() as f64 / (1 << 20) as f64,
            rate,
            plugin.events_per_call(),
            plugin.pace_nanos() as f64 / 1e3
        );
    }
}

/// Event `i` of the mix and its type index (0 sword, 1 horse, 2 guild),
/// as the API publishes it.
fn event(i: usize) -> (usize, String) {
    let head = format!(
        r#"{{"event_id":"0193a3c5-7e1f-7d3a-9c3e-{i:012x}","plugin_version":"0.1.0","timestamp":"2026-11-28T18:00:00.{:06}Z","host":"user{}.comcast.com","user_agent":"ApacheBench/2.3","accept":"*/*""#,
        i % 1_000_000,
        i % 3 + 1
    );
    match i % 20 {
        0..=9 => (
            0,
            format!(
                r#"{head},"event_type":"purchase_sword","color":"{}","quantity":{}}}"#,
                ["red", "blue", "green"][i % 3],
                i % 3 + 1
            ),
        ),
        10..=16 => (
            1,
            format!(
                r#"{head},"event_type":"purchase_horse","speed":1.0,"size":"{}","quantity":{}}}"#,
                ["small", "medium", "large"][i % 3],
                i % 2 + 1
            ),
        ),
        _ => (
            2,
            format!(
                r#"{head},"event_type":"guild","action":"{}"}}"#,
                ["join", "leave"][i % 2]
            ),
        ),
    }
}

fn native_rows(out: BatchOutput) -> usize {
    assert!(out.rejected.is_empty());
    out.rows.len()
}

/// Runs `f` `runs` times after one warm-up and returns the median events/s.
fn median(runs: usize, mut f: impl FnMut() -> usize, events: usize) -> f64 {
    assert_eq!(f(), events, "every event must produce a row");
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            events as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[rates.len() / 2]
}
