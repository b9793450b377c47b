//! The plugin runtime against the real bundled plugins and hostile fixtures.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventsift::plugin::bindings::ColumnValues;
use eventsift::plugin::registry::STABLE_AFTER;
use eventsift::plugin::sandbox::Limits;
use eventsift::plugin::watcher::Watcher;
use eventsift::plugin::{Batch, Change, RejectStage, Validated};
use eventsift_test_artifacts as artifacts;

use crate::support::*;

#[test]
fn bundled_plugins_describe_themselves() {
    let (dir, registry) = registry();
    for (name, path) in artifacts::BUNDLED {
        drop_in(dir.path(), name, path, SETTLED);
    }
    let report = registry.sync();
    assert_eq!(report.changes.len(), 5, "{:?}", report.changes);
    let got: Vec<String> = registry
        .snapshot()
        .plugins()
        .map(|p| {
            let route = p
                .meta
                .route
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default();
            let cols: Vec<String> = p
                .meta
                .columns
                .iter()
                .map(|c| format!("{}:{}", c.name, c.kind.as_str()))
                .collect();
            format!(
                "{} {} {} [{}] {route}",
                p.meta.name,
                p.meta.event_type,
                p.meta.table,
                cols.join(",")
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            "default default default_events [] GET /",
            "guild guild guild_actions [action:string] POST /guild/{action}",
            "horse purchase_horse horse_purchases [speed:float64,size:string,quantity:int64] POST /purchase_a_horse/{speed}/{size}/{quantity}",
            "spellbook purchase_spellbook spellbook_purchases [school:string,quantity:int64] POST /purchase_a_spellbook/{school}/{quantity}",
            "sword purchase_sword sword_purchases [color:string,quantity:int64] POST /purchase_a_sword/{color}/{quantity}",
        ]
    );
}

/// The Wasm plugins answer exactly as the same code compiled natively.
#[test]
fn wasm_validate_matches_native() {
    let rt = runtime();
    let horse = load(&rt, artifacts::HORSE).unwrap();
    let guild = load(&rt, artifacts::GUILD).unwrap();
    let cases = [
        r#"{"speed":"1","size":"LARGE","quantity":"3"}"#,
        r#"{"speed":"1","size":"pony","quantity":"3"}"#,
        r#"{"speed":"-2","size":"small","quantity":"3"}"#,
        r#"{"speed":"1","size":"small","quantity":"two"}"#,
        r#"{"speed":"1e400","size":"small","quantity":"1"}"#,
        r#"not json"#,
        r#"[]"#,
    ];
    for case in cases {
        let native = match eventsift_sdk::validate::<horse::Horse>(case) {
            Ok((fields, reply)) => Validated::Accepted { fields, reply },
            Err(e) => Validated::Rejected(e),
        };
        assert_eq!(horse.validate(case), native, "{case}");
    }
    assert_eq!(
        guild.validate(r#"{"action":"Leave"}"#),
        Validated::Accepted {
            fields: r#"{"action":"leave"}"#.into(),
            reply: "You left the guild!\n".into()
        }
    );
}

#[test]
fn wasm_process_matches_native() {
    let rt = runtime();
    let horse = load(&rt, artifacts::HORSE).unwrap();
    let events = [
        r#"{"event_type":"purchase_horse","speed":1.5,"size":"large","quantity":2}"#,
        r#"{"event_type":"purchase_sword","color":"red","quantity":1}"#,
        r#"{"event_type":"purchase_horse","speed":1,"size":"huge","quantity":2}"#,
        r#"{"event_type":"purchase_horse","speed":0,"size":"small","quantity":7}"#,
    ];
    let mut batch = Batch::default();
    events.iter().for_each(|e| batch.push(e.as_bytes()));
    let out = horse.process(&batch);
    let native = eventsift_sdk::testing::process::<horse::Horse>(&events);
    assert_eq!(out.rows, native.rows);
    assert_eq!(out.rows, vec![0, 3]);
    let Some(ColumnValues::Float64(speed)) = out.columns.first().map(|c| &c.values) else {
        panic!()
    };
    assert_eq!(speed, &vec![1.5, 0.0]);
    let Some(ColumnValues::Text(size)) = out.columns.get(1).map(|c| &c.values) else {
        panic!()
    };
    assert_eq!(
        (size.data.as_slice(), size.ends.as_slice()),
        (&b"largesmall"[..], &[5u32, 10][..])
    );
    let Some(ColumnValues::Int64(qty)) = out.columns.get(2).map(|c| &c.values) else {
        panic!()
    };
    assert_eq!(qty, &vec![2, 7]);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].index, 2);
    assert_eq!(
        out.rejected[0].reason,
        r#"size must be one of small, medium, large, got "huge""#
    );
    assert_eq!(out.rejected[0].stage, RejectStage::Plugin);
    assert_eq!(out.faults, 0);
}

#[test]
fn plugins_check_prints_metadata_and_refuses_garbage() {
    let bin = env!("CARGO_BIN_EXE_eventsift");
    let out = Command::new(bin)
        .args(["plugins", "check", artifacts::HORSE])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "plugin      horse 0.1.0",
        "contract    eventsift:plugin@0.2.0",
        "event type  purchase_horse",
        "table       horse_purchases",
        "route       POST /purchase_a_horse/{speed}/{size}/{quantity}",
        "columns     speed       float64   not null speed of the horse, >= 0",
        "            size        string    not null small, medium or large",
        "            quantity    int64     not null number of horses bought",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?} in\n{stdout}"
        );
    }
    assert!(stdout.contains("is valid against eventsift:plugin@0.2.0"));

    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "random.wasm",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect::<Vec<u8>>(),
            "not a WebAssembly component: the file has no WebAssembly header (\\0asm)",
        ),
        (
            "module.wasm",
            b"\0asm\x01\0\0\0".to_vec(),
            "not a WebAssembly component: this is a core WebAssembly module; plugins are components",
        ),
        (
            "truncated.wasm",
            std::fs::read(artifacts::HORSE).unwrap()[..5000].to_vec(),
            "not a WebAssembly component: ",
        ),
    ];
    for (name, bytes, expect) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = Command::new(bin)
            .args(["plugins", "check"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expect),
            "{name}: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "{name}: one clear line expected: {stderr}"
        );
    }
}

#[test]
fn incompatible_contract_is_refused_naming_both_versions() {
    let err = load(&runtime(), artifacts::INCOMPATIBLE).unwrap_err();
    assert_eq!(
        err,
        "incompatible contract: plugin built against eventsift:plugin@1.0.0, this host speaks \
         eventsift:plugin@0.2.0 and eventsift:plugin@0.1.0 (same major version needed, and for \
         0.x the same minor)"
    );
}

#[test]
fn infinite_loop_hits_the_deadline_and_others_keep_running() {
    let rt = runtime_with(Limits {
        deadline: Duration::from_millis(50),
        ..Limits::default()
    });
    let looping = load(&rt, artifacts::LOOP).unwrap();
    let sword_plugin = load(&rt, artifacts::SWORD).unwrap();
    let mut batch = Batch::default();
    for _ in 0..3 {
        batch.push(br#"{"event_type":"loop_forever"}"#);
    }
    let started = std::time::Instant::now();
    let out = looping.process(&batch);
    assert!(started.elapsed().as_secs() < 30);
    assert!(out.rows.is_empty());
    let reasons: Vec<(u32, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect();
    let reason = "plugin loop 0.1.0 faulted: CPU deadline exceeded";
    assert_eq!(reasons, vec![(0, reason), (1, reason), (2, reason)]);
    assert!(out.rejected.iter().all(|r| r.stage == RejectStage::Fault));

    let mut ok = Batch::default();
    ok.push(sword("red", 1).as_bytes());
    assert_eq!(sword_plugin.process(&ok).rows, vec![0]);
}

#[test]
fn memory_bomb_gets_a_typed_error() {
    let rt = runtime();
    let bomb = load(&rt, artifacts::BOMB).unwrap();
    let mut batch = Batch::default();
    batch.push(br#"{"event_type":"memory_bomb"}"#);
    let out = bomb.process(&batch);
    assert_eq!(out.rejected.len(), 1);
    let reason = &out.rejected[0].reason;
    let max = 64 << 20;
    assert!(
        reason.starts_with("plugin bomb 0.1.0 faulted: memory limit exceeded: current ")
            && reason.ends_with(&format!(" bytes, max {max} bytes")),
        "{reason}"
    );
    // The numbers are the real ones: requested beyond the cap, current below it.
    let nums: Vec<usize> = reason.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert_eq!(nums.len(), 3, "{reason}");
    assert!(
        nums[0] <= max && nums[1] > max && nums[2] == max,
        "{reason}"
    );
}

#[test]
fn one_poison_event_in_a_thousand_yields_exactly_one_rejection() {
    let rt = runtime();
    let plugin = load(&rt, artifacts::PANIC).unwrap();
    let mut batch = Batch::default();
    for i in 0..1000 {
        let color = if i == 537 {
            "poison".to_owned()
        } else {
            format!("c{i}")
        };
        batch.push(format!(r#"{{"event_type":"panic_sometimes","color":"{color}"}}"#).as_bytes());
    }
    let created = plugin.instances_created();
    let out = plugin.process(&batch);
    assert_eq!(out.rejected.len(), 1, "{:?}", out.rejected);
    assert_eq!(out.rejected[0].index, 537);
    assert_eq!(
        out.rejected[0].reason,
        "plugin panic 0.1.0 faulted: wasm trap: unreachable (the plugin panicked)"
    );
    assert_eq!(out.rejected[0].stage, RejectStage::Fault);
    let expected_rows: Vec<u32> = (0..1000).filter(|&i| i != 537).collect();
    assert_eq!(out.rows, expected_rows);
    let Some(ColumnValues::Text(colors)) = out.columns.first().map(|c| &c.values) else {
        panic!()
    };
    assert_eq!(colors.ends.len(), 999);
    assert_eq!(
        &colors.data[colors.ends[536] as usize..colors.ends[537] as usize],
        b"c538"
    );
    // Each fault poisoned one instance, which was replaced.
    assert!(
        out.faults >= 2 && out.faults <= 21,
        "faults: {}",
        out.faults
    );
    assert!(plugin.instances_created() >= created + u64::from(out.faults));
}

#[test]
fn plugins_cannot_read_files() {
    let rt = runtime();
    let fs = load(&rt, artifacts::FS).unwrap();
    let mut batch = Batch::default();
    batch.push(br#"{"event_type":"read_file","path":"/etc/hostname"}"#);
    let out = fs.process(&batch);
    assert!(out.rows.is_empty(), "a plugin read a host file");
    assert_eq!(out.rejected.len(), 1);
    let reason = &out.rejected[0].reason;
    assert!(reason.starts_with("plugin fs 0.1.0 faulted: "), "{reason}");
    assert!(
        reason.starts_with("plugin fs 0.1.0 faulted: denied capability: the plugin called wasi:filesystem/preopens@")
            && reason.ends_with("#get-directories, which the sandbox does not grant"),
        "the denied capability is named: {reason}"
    );
}

#[test]
fn two_plugins_claiming_one_event_type() {
    let (dir, registry) = registry();
    drop_in(dir.path(), "a_sword.wasm", artifacts::SWORD, SETTLED);
    drop_in(dir.path(), "b_sword.wasm", artifacts::SWORD_V2, SETTLED);
    let report = registry.sync();
    let refused: Vec<&String> = report
        .changes
        .iter()
        .filter_map(|c| {
            if let Change::Refused { reason, .. } = c {
                Some(reason)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", report.changes);
    let a = dir.path().join("a_sword.wasm");
    let b = dir.path().join("b_sword.wasm");
    assert_eq!(
        refused[0],
        &format!(
            "event type \"purchase_sword\" is already owned by {} (sword 0.1.0); {} (sword 0.2.0) is refused",
            a.display(),
            b.display()
        )
    );
    assert_eq!(
        registry.get("purchase_sword").unwrap().meta.version,
        "0.1.0"
    );
    // Removing the owner lets the other claim it.
    std::fs::remove_file(&a).unwrap();
    registry.sync();
    registry.sync();
    assert_eq!(
        registry.get("purchase_sword").unwrap().meta.version,
        "0.2.0"
    );
}

#[test]
fn a_file_still_being_copied_is_not_loaded() {
    let (dir, registry) = registry();
    let path = dir.path().join("horse.wasm");
    let wasm = std::fs::read(artifacts::HORSE).unwrap();
    std::fs::write(&path, &wasm[..wasm.len() / 2]).unwrap();
    let report = registry.sync();
    assert!(
        report.pending && report.changes.is_empty(),
        "{:?}",
        report.changes
    );
    std::fs::write(&path, &wasm).unwrap();
    std::thread::sleep(STABLE_AFTER);
    let report = registry.sync();
    assert!(
        matches!(report.changes.as_slice(), [Change::Loaded { .. }]),
        "{:?}",
        report.changes
    );
}

#[test]
fn hot_reload_add_replace_break_remove() {
    let (dir, registry) = registry();
    let _watcher = Watcher::start(registry.clone()).unwrap();
    let version = |t: &str| registry.get(t).map(|p| p.meta.version.clone());

    drop_in(
        dir.path(),
        "sword.wasm",
        artifacts::SWORD,
        std::time::Duration::ZERO,
    );
    wait_until("sword to load", || {
        version("purchase_sword").as_deref() == Some("0.1.0")
    });

    drop_in(
        dir.path(),
        "sword.wasm",
        artifacts::SWORD_V2,
        std::time::Duration::ZERO,
    );
    wait_until("sword 0.2.0 to replace 0.1.0", || {
        version("purchase_sword").as_deref() == Some("0.2.0")
    });

    // A broken file is refused and the previous version keeps serving.
    let generation = registry.snapshot().generation;
    std::fs::write(dir.path().join("sword.wasm"), b"\0asm garbage").unwrap();
    std::thread::sleep(STABLE_AFTER * 3);
    assert_eq!(version("purchase_sword").as_deref(), Some("0.2.0"));
    assert_eq!(registry.snapshot().generation, generation);

    drop_in(
        dir.path(),
        "spellbook.wasm",
        artifacts::SPELLBOOK,
        std::time::Duration::ZERO,
    );
    wait_until("spellbook to load", || {
        version("purchase_spellbook").is_some()
    });

    std::fs::remove_file(dir.path().join("sword.wasm")).unwrap();
    wait_until("sword to unload", || version("purchase_sword").is_none());
    assert!(version("purchase_spellbook").is_some());
}

/// Swapping versions while batches flow loses and duplicates nothing: each
/// batch is processed by exactly one version.
#[test]
fn swaps_take_effect_between_batches() {
    let (dir, registry) = registry();
    drop_in(dir.path(), "sword.wasm", artifacts::SWORD, SETTLED);
    registry.sync();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (registry, stop) = (registry.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut batch = Batch::default();
            for i in 0..100 {
                batch.push(sword("red", i).as_bytes());
            }
            let (mut events, mut rows, mut versions) =
                (0usize, 0usize, std::collections::BTreeSet::new());
            while !stop.load(Ordering::Relaxed) || versions.len() < 2 {
                let plugin = registry.get("purchase_sword").unwrap();
                let out = plugin.process(&batch);
                events += batch.len();
                rows += out.rows.len();
                assert!(out.rejected.is_empty());
                versions.insert(plugin.meta.version.clone());
            }
            (events, rows, versions)
        })
    };
    for i in 0..6 {
        let src = if i % 2 == 0 {
            artifacts::SWORD_V2
        } else {
            artifacts::SWORD
        };
        drop_in(
            dir.path(),
            "sword.wasm",
            src,
            SETTLED + std::time::Duration::from_secs(i),
        );
        let report = registry.sync();
        assert!(
            matches!(report.changes.as_slice(), [Change::Replaced { .. }]),
            "{:?}",
            report.changes
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (events, rows, versions) = worker.join().unwrap();
    assert_eq!(events, rows);
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        vec!["0.1.0", "0.2.0"]
    );
}

#[test]
fn compiled_plugins_are_cached() {
    let cache = tempfile::tempdir().unwrap();
    let config = || eventsift::plugin::RuntimeConfig {
        limits: Default::default(),
        cache_dir: Some(cache.path().to_path_buf()),
        log: Default::default(),
    };
    let rt = eventsift::plugin::Runtime::new(config()).unwrap();
    load(&rt, artifacts::GUILD).unwrap();
    let key = rt.cache_key(&std::fs::read(artifacts::GUILD).unwrap());
    let entry = cache.path().join(format!("{key}.cwasm"));
    assert!(entry.exists());
    // A second runtime with the same configuration loads from the entry; a
    // corrupt entry is ignored and rewritten.
    let rt2 = eventsift::plugin::Runtime::new(config()).unwrap();
    assert_eq!(
        rt2.cache_key(&std::fs::read(artifacts::GUILD).unwrap()),
        key
    );
    std::fs::write(&entry, b"corrupt").unwrap();
    let guild = load(&rt2, artifacts::GUILD).unwrap();
    assert_eq!(guild.meta.name, "guild");
    assert!(std::fs::metadata(&entry).unwrap().len() > 1000);
}

fn envelopes(events: &[&str]) -> Batch {
    let mut batch = Batch::default();
    for e in events {
        batch.push(e.as_bytes());
    }
    batch
}

#[test]
fn contract_0_1_plugins_load_and_work_beside_0_2_ones() {
    let rt = runtime();
    let old = load(&rt, artifacts::CONTRACT_0_1).unwrap();
    let new = load(&rt, artifacts::SWORD).unwrap();
    assert_eq!(old.contract.export, "eventsift:plugin/plugin@0.1.0");
    assert!(!old.contract.logs());
    assert_eq!(new.contract.export, "eventsift:plugin/plugin@0.2.0");
    assert!(new.contract.logs());
    assert_eq!(
        old.validate(r#"{"quantity":"3"}"#),
        Validated::Accepted {
            fields: r#"{"quantity":3}"#.into(),
            reply: "Old!\n".into()
        }
    );
    let out = old.process(&envelopes(&[
        r#"{"event_type":"old_event","quantity":2}"#,
        r#"{"event_type":"purchase_sword","quantity":2}"#,
        r#"{"event_type":"old_event","quantity":"x"}"#,
    ]));
    assert_eq!(out.rows, vec![0]);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].index, 2);
    assert!(out.logs.is_empty());
    assert!(matches!(&out.columns[0].values, ColumnValues::Int64(v) if v == &[2]));
}

#[test]
fn plugin_logs_are_tagged_by_event_bounded_and_counted() {
    use eventsift::plugin::{LogConfig, LogLevel, PluginLine, Runtime, RuntimeConfig};
    let rt = Runtime::new(RuntimeConfig {
        limits: Limits::default(),
        cache_dir: None,
        log: LogConfig {
            level: LogLevel::Info,
            per_second: 1,
            burst: 50,
        },
    })
    .unwrap();
    let chatty = load(&rt, artifacts::CHATTY).unwrap();
    let line = |level, message: &str, event| PluginLine {
        level,
        message: message.into(),
        event,
    };
    // Within process: each line names its event's index in the batch,
    // including across the sub-batches a large batch is sent in.
    let out = chatty.process(&envelopes(&[
        r#"{"event_type":"chatty_event","quantity":1}"#,
        r#"{"event_type":"other"}"#,
        r#"{"event_type":"chatty_event","quantity":"x"}"#,
        r#"{"event_type":"chatty_event","quantity":2}"#,
    ]));
    assert_eq!(out.rows, vec![0, 3]);
    assert_eq!(
        out.logs,
        vec![
            line(LogLevel::Info, "quantity 1", Some(0)),
            line(
                LogLevel::Warn,
                r#"rejecting: quantity must be a whole number >= 0, got "x""#,
                Some(2)
            ),
            line(LogLevel::Info, "quantity 2", Some(3)),
        ]
    );
    // validate: no event index.
    let (v, logs) = chatty.validate_with_logs(r#"{"quantity":"5"}"#);
    assert!(matches!(v, Validated::Accepted { .. }));
    assert_eq!(logs, vec![line(LogLevel::Info, "quantity 5", None)]);
    // A burst of 5,000 debug and 5,000 info lines: debug is below the
    // level, info is cut by the bucket (50 lines, 4 used above), and the
    // event is still mapped.
    let out = chatty.process(&envelopes(&[
        r#"{"event_type":"chatty_event","quantity":999}"#,
    ]));
    assert_eq!(out.rows, vec![0]);
    assert!(
        out.logs.len() <= 47 && out.logs.len() >= 45,
        "{}",
        out.logs.len()
    );
    let (below, over) = chatty.log_budget().dropped();
    assert_eq!(below, 5000);
    assert!(over >= 4950, "{over}");
    let kept = chatty.log_budget().kept();
    assert_eq!(kept[LogLevel::Warn as usize], 1);
    assert_eq!(kept.iter().sum::<u64>(), 4 + out.logs.len() as u64);
}
