//! The chaos run's short variant (the full one is `cargo xtask chaos`):
//! about 60,000 acknowledged events through a private Kafka and MiniDFS,
//! one api and three writers, every kind of fault once (the rebalance
//! storm included), shorter than the full run's, at moments drawn from a
//! printed seed (`EVENTSIFT_CHAOS_SEED` replays one).

use std::path::Path;

#[test]
fn a_short_chaos_run_with_every_fault_loses_and_doubles_nothing() {
    short_run("hive");
}

#[test]
fn a_short_chaos_run_with_every_fault_loses_and_doubles_nothing_on_delta() {
    short_run("delta");
}

fn short_run(table_format: &str) {
    let seed = std::env::var("EVENTSIFT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    eprintln!("chaos seed {seed} (EVENTSIFT_CHAOS_SEED={seed} replays it)");
    let params = eventsift_chaos::Params {
        seed,
        events: 60_000,
        rounds: 1,
        binary: env!("CARGO_BIN_EXE_eventsift").into(),
        root: Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .into(),
        table_format: table_format.to_owned(),
        pace: eventsift_chaos::Pace::Short,
    };
    let report = eventsift_chaos::run(&params).unwrap();
    eprintln!("{report}");
    assert!(report.ok(), "seed {seed}:\n{report}");
    assert_eq!(
        report.faults.len(),
        6,
        "every kind of fault happened:\n{report}"
    );
    assert!(report.acked >= 60_000);
}
