//! Unit tests of the commit protocol (the model check is in `sim`).

use super::*;

fn file(table: &str, path: &str) -> PendingFile {
    PendingFile {
        table: table.into(),
        path: path.into(),
        rows: 1,
        data: Bytes::from_static(b"PAR1"),
    }
}

fn view(id: &str, earliest: i64, end: i64) -> SourceView {
    SourceView {
        id: id.into(),
        earliest,
        end,
    }
}

fn never() -> bool {
    false
}

fn warehouse() -> (tempfile::TempDir, Arc<Warehouse>) {
    let dir = tempfile::tempdir().unwrap();
    let wh = Arc::new(Warehouse::open(dir.path().to_str().unwrap()).unwrap());
    (dir, wh)
}

fn resume(chain: i64) -> Resume {
    Resume {
        chain,
        source: chain,
    }
}

#[test]
fn names() {
    assert_eq!(parse_name("00000000000000004096.json"), Name::Legacy(4096));
    assert_eq!(
        parse_name("c000002-00000000000000004096.json"),
        Name::Record(2, 4096)
    );
    assert_eq!(parse_name("c000002.chain"), Name::Head(2));
    assert_eq!(
        parse_name("c000002-00000000000000000007.low"),
        Name::Low(2, 7)
    );
    for other in [
        ".c000002-00000000000000004096.abc",
        "x.json",
        "c2-5.json",
        "c000002.low",
    ] {
        assert_eq!(parse_name(other), Name::Other, "{other}");
    }
}

#[test]
fn chain_fences_and_recovers() {
    let (_dir, wh) = warehouse();
    let opts = TakeOptions::default();
    let src = view("log:a", 0, 100);
    let a = Commits::new(wh.clone(), "events", "a", 64);
    let b = Commits::new(wh.clone(), "events", "b", 64);
    assert_eq!(a.take(3, &src, &opts).unwrap(), resume(0));
    assert_eq!(b.take(3, &src, &opts).unwrap(), resume(0));
    let (o, _) = a
        .commit(3, 0, 10, &[file("t", "t/dt=x/f0.parquet")], &never)
        .unwrap();
    assert_eq!(o, CommitOutcome::Committed);
    // b still believes the partition starts at 0: fenced, nothing visible.
    let (o, rec) = b
        .commit(3, 0, 7, &[file("t", "t/dt=x/g0.parquet")], &never)
        .unwrap();
    assert_eq!(o, CommitOutcome::Fenced);
    assert!(!wh.exists(&rec.files[0].tmp).unwrap());
    assert!(!wh.exists("t/dt=x/g0.parquet").unwrap());
    assert_eq!(b.take(3, &src, &opts).unwrap(), resume(10));
    assert!(wh.exists("t/dt=x/f0.parquet").unwrap());
    // An interrupted commit: the record exists, the move did not happen.
    let (o, rec) = b
        .commit(3, 10, 20, &[file("t", "t/dt=x/g1.parquet")], &never)
        .unwrap();
    assert_eq!(o, CommitOutcome::Committed);
    wh.rename(&rec.files[0].path, &rec.files[0].tmp).unwrap();
    let c = Commits::new(wh.clone(), "events", "c", 64);
    assert_eq!(c.take(3, &src, &opts).unwrap(), resume(20));
    assert!(wh.exists("t/dt=x/g1.parquet").unwrap());
    assert_eq!(c.linked(3).len(), 2);
    assert_eq!(c.take(4, &src, &opts).unwrap(), resume(0));
}

#[test]
fn pruning_keeps_a_bounded_chain_per_partition_and_a_pruned_start_never_counts() {
    let (_dir, wh) = warehouse();
    let opts = TakeOptions::default();
    let src = view("kafka:c/t", 0, 1_000_000);
    let a = Commits::new(wh.clone(), "events", "a", 4);
    let zombie = Commits::new(wh.clone(), "events", "z", 4);
    for p in 0..4 {
        a.take(p, &src, &opts).unwrap();
    }
    assert_eq!(zombie.take(2, &src, &opts).unwrap(), resume(0));
    for i in 0..40i64 {
        for p in 0..4 {
            let f = file("t", &format!("t/dt=x/{p}-{i}.parquet"));
            let (o, _) = a.commit(p, i * 10, i * 10 + 10, &[f], &never).unwrap();
            assert_eq!(o, CommitOutcome::Committed);
        }
    }
    for p in 0..4 {
        let records = wh
            .list(&format!("{META_DIR}/commits/events/{p}"))
            .unwrap()
            .into_iter()
            .filter(|e| e.name.ends_with(".json"))
            .count();
        assert!(
            (4..=5).contains(&records),
            "partition {p}: {records} records"
        );
    }
    // The zombie still believes partition 2 starts at 0, whose record is
    // pruned: its publish succeeds but does not link.
    let (o, rec) = zombie
        .commit(2, 0, 10, &[file("t", "t/dt=x/2-0.parquet")], &never)
        .unwrap();
    assert_eq!(o, CommitOutcome::Fenced);
    assert!(
        !wh.exists(&format!(
            "{META_DIR}/commits/events/2/c000001-{:020}.json",
            0
        ))
        .unwrap()
    );
    assert!(!wh.exists(&rec.files[0].tmp).unwrap());
    // The committed file of that range was not replaced.
    assert_eq!(wh.read("t/dt=x/2-0.parquet").unwrap(), b"PAR1");
    let fresh = Commits::new(wh.clone(), "events", "f", 4);
    assert_eq!(fresh.take(2, &src, &opts).unwrap(), resume(400));
}

#[test]
fn identity_end_and_gaps_refuse_unless_asked() {
    let (_dir, wh) = warehouse();
    let opts = TakeOptions::default();
    let a = Commits::new(wh.clone(), "log", "a", 64);
    a.take(0, &view("log:old", 0, 100), &opts).unwrap();
    a.commit(0, 0, 100, &[file("t", "t/dt=x/a.parquet")], &never)
        .unwrap();
    let refused = |r: Result<Resume, CommitError>| match r {
        Err(CommitError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let why = refused(a.take(0, &view("log:new", 0, 0), &opts));
    assert!(why.contains("log:old") && why.contains("log:new"), "{why}");
    assert!(why.contains("--new-chain-from log:old"), "{why}");
    let why = refused(a.take(0, &view("log:old", 0, 50), &opts));
    assert!(why.contains("beyond the end"), "{why}");
    let why = refused(a.take(0, &view("log:old", 130, 200), &opts));
    assert!(why.contains("records 100..130 are gone"), "{why}");
    let gaps = TakeOptions {
        accept_gaps: true,
        ..Default::default()
    };
    assert_eq!(
        a.take(0, &view("log:old", 130, 200), &gaps).unwrap(),
        Resume {
            chain: 100,
            source: 130
        }
    );
    // A new chain, deliberately: the new source from its start, names
    // that cannot collide with the old chain's.
    let new = TakeOptions {
        new_chain_from: Some("log:old".into()),
        ..Default::default()
    };
    assert_eq!(a.take(0, &view("log:new", 0, 5), &new).unwrap(), resume(0));
    a.commit(0, 0, 5, &[file("t", "t/dt=x/b.parquet")], &never)
        .unwrap();
    // The old identity no longer matches anything.
    assert_eq!(a.take(0, &view("log:new", 0, 5), &new).unwrap(), resume(5));
}

#[test]
fn legacy_chains_are_adopted_once() {
    let (_dir, wh) = warehouse();
    for (s, e) in [(0, 10), (10, 25)] {
        let r = CommitRecord {
            source: "events".into(),
            partition: 1,
            chain: 0,
            source_id: None,
            start: s,
            end: e,
            writer: "old".into(),
            nonce: String::new(),
            committed_at: now_rfc3339(),
            files: vec![],
            dedup: None,
        };
        wh.write(
            &format!("{META_DIR}/commits/events/1/{s:020}.json"),
            Bytes::from(serde_json::to_vec(&r).unwrap()),
        )
        .unwrap();
    }
    let a = Commits::new(wh.clone(), "events", "a", 64);
    let src = view("kafka:c/t", 0, 100);
    assert_eq!(
        a.take(1, &src, &TakeOptions::default()).unwrap(),
        resume(25)
    );
    let head: ChainHead = a
        .read_json(&format!("{META_DIR}/commits/events/1/c000001.chain"))
        .unwrap();
    assert_eq!((head.start, head.source_id.as_str()), (25, "kafka:c/t"));
    assert!(head.reason.contains("adopted"));
}

#[test]
fn unknown_publish_outcomes_are_resolved_by_reading_back() {
    let (_dir, wh) = warehouse();
    let a = Commits::new(wh.clone(), "events", "a", 64);
    let src = view("kafka:c/t", 0, 100);
    a.take(0, &src, &TakeOptions::default()).unwrap();
    let (o, rec) = a
        .commit(0, 0, 10, &[file("t", "t/dt=x/a.parquet")], &never)
        .unwrap();
    assert_eq!(o, CommitOutcome::Committed);
    let target = a.record_path(0, 1, 0);
    let tmp = format!("{}/.tmp", a.dir(0));
    // Ours already (a retried publish that found its own record).
    wh.write(&tmp, Bytes::from_static(b"{}")).unwrap();
    assert!(matches!(
        a.resolve(&target, &tmp, &rec.nonce, &never).unwrap(),
        Published::Ours
    ));
    // Another writer's: our temporary is removed, so ours never lands.
    assert!(matches!(
        a.resolve(&target, &tmp, "other", &never).unwrap(),
        Published::Theirs
    ));
    assert!(!wh.exists(&tmp).unwrap());
    // Not there at all.
    wh.write(&tmp, Bytes::from_static(b"{}")).unwrap();
    assert!(matches!(
        a.resolve(&a.record_path(0, 1, 10), &tmp, "x", &never)
            .unwrap(),
        Published::No
    ));
    assert!(!wh.exists(&tmp).unwrap());
}

#[test]
fn orphans_below_the_chain_end_are_collected_others_stay() {
    let (_dir, wh) = warehouse();
    let a = Commits::new(wh.clone(), "events", "a", 64);
    let src = view("kafka:c/t", 0, 100);
    a.take(0, &src, &TakeOptions::default()).unwrap();
    a.commit(0, 0, 10, &[file("t", "t/dt=x/a.parquet")], &never)
        .unwrap();
    let dir = format!("{META_DIR}/inflight/events/0");
    let crashed = format!("{dir}/c000001-{:020}-n1-0.parquet", 0);
    let live = format!("{dir}/c000001-{:020}-n2-0.parquet", 10);
    let legacy_young = format!("{META_DIR}/inflight/n3-0.parquet");
    for f in [&crashed, &live, &legacy_young] {
        wh.write(f, Bytes::from_static(b"PAR1")).unwrap();
    }
    let b = Commits::new(wh.clone(), "events", "b", 64);
    assert_eq!(
        b.take(0, &src, &TakeOptions::default()).unwrap(),
        resume(10)
    );
    assert!(!wh.exists(&crashed).unwrap());
    assert!(wh.exists(&live).unwrap());
    assert!(wh.exists(&legacy_young).unwrap());
}
