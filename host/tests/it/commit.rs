//! The commit protocol driven step by step through its hooks: two writers
//! in one process, one of them paused at a chosen point (the process-wide
//! `EVENTSIFT_FAILPOINT` cannot pause one of two).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use eventsift::writer::commit::hooks::{Hooks, Point};
use eventsift::writer::commit::{CommitOutcome, Commits, PendingFile, SourceView, TakeOptions};
use eventsift::writer::delta::{self, DeltaTables, TableFormat};
use eventsift::writer::warehouse::Warehouse;

use crate::support::{hdfs_url, unique};

/// Pauses the commit that reaches `Published` (of the range starting at
/// `start`, when given) until told to go on.
#[derive(Default)]
struct PauseAfterPublish {
    start: Option<i64>,
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl PauseAfterPublish {
    fn wait_paused(&self) {
        let mut s = self.state.lock().unwrap();
        while !s.0 {
            let (g, t) = self.cv.wait_timeout(s, Duration::from_secs(30)).unwrap();
            assert!(!t.timed_out(), "the commit never reached its publish");
            s = g;
        }
    }

    fn go_on(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

impl Hooks for PauseAfterPublish {
    fn at(&self, point: Point) {
        match point {
            Point::Published { start, .. } if self.start.is_none_or(|s| s == start) => {
                let mut s = self.state.lock().unwrap();
                s.0 = true;
                self.cv.notify_all();
                while !s.1 {
                    s = self.cv.wait(s).unwrap();
                }
            }
            _ => {}
        }
    }
}

/// A Parquet file holding positions `from..to` of column `n`.
fn positions(from: i64, to: i64) -> Bytes {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from_iter_values(from..to))],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, None).unwrap();
    w.write(&batch).unwrap();
    Bytes::from(w.into_inner().unwrap())
}

fn file(from: i64, to: i64) -> PendingFile {
    PendingFile {
        table: "t".into(),
        path: format!("t/dt=2026-12-07/events-0-{from:020}-0.parquet"),
        rows: (to - from) as u64,
        data: positions(from, to),
    }
}

/// Every position in the table's live files, sorted.
fn table_positions(wh: &Warehouse) -> Vec<i64> {
    let live = delta::live_files(wh, "t").unwrap();
    let mut out = Vec::new();
    for (path, _) in wh.walk("t").unwrap() {
        if path.contains("_delta_log") {
            continue;
        }
        let rel = path.strip_prefix("t/").unwrap();
        if live.as_ref().is_some_and(|l| !l.contains(rel)) {
            continue;
        }
        let data = Bytes::from(wh.read(&path).unwrap());
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let n = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            out.extend(n.values().iter().copied());
        }
    }
    out.sort_unstable();
    out
}

/// Writer A publishes the record of 0..10 and pauses before its link
/// check; writer B takes the partition (finishing A's record); A's
/// partition is released (a revoke) while it is paused; A goes on; B
/// commits 10..20. A fresh writer then finds the chain at 20 and the table
/// holds 0..20 exactly once. (Before the fix, A found its partition gone
/// from its own map, judged the record unlinked and deleted it, although B
/// had adopted it: B's next record no longer linked.)
fn paused_publish_while_the_partition_moves(location: &str, format: TableFormat) {
    let wh = Arc::new(Warehouse::open(location).unwrap());
    delta::settle_format(&wh, format).unwrap();
    let with_delta = |c: Commits| match format {
        TableFormat::Delta => c.with_delta(Arc::new(
            DeltaTables::open(location, Duration::from_secs(30)).unwrap(),
        )),
        TableFormat::Hive => c,
    };
    let hook = Arc::new(PauseAfterPublish::default());
    let a = Arc::new(with_delta(
        Commits::new(wh.clone(), "events", "a", 64).with_hooks(hook.clone()),
    ));
    let b = with_delta(Commits::new(wh.clone(), "events", "b", 64));
    let view = SourceView {
        id: "kafka:test/t".into(),
        earliest: 0,
        end: 1000,
    };
    let opts = TakeOptions::default();
    assert_eq!(a.take(0, &view, &opts).unwrap().chain, 0);

    let committing = {
        let a = a.clone();
        std::thread::spawn(move || a.commit(0, 0, 10, &[file(0, 10)], &|| false))
    };
    hook.wait_paused();
    assert_eq!(
        b.take(0, &view, &opts).unwrap().chain,
        10,
        "B finds A's published record linked and resumes after it"
    );
    let releasing = {
        let a = a.clone();
        std::thread::spawn(move || a.release(0))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !releasing.is_finished(),
        "the release waits for the commit in progress of its partition"
    );
    hook.go_on();
    let (outcome, _) = committing.join().unwrap().unwrap();
    assert_eq!(
        outcome,
        CommitOutcome::Committed,
        "the warehouse shows A's record linked: A's commit counts"
    );
    releasing.join().unwrap();

    let (outcome, _) = b.commit(0, 10, 20, &[file(10, 20)], &|| false).unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);
    let fresh = with_delta(Commits::new(wh.clone(), "events", "c", 64));
    assert_eq!(fresh.take(0, &view, &opts).unwrap().chain, 20);
    assert_eq!(table_positions(&wh), (0..20).collect::<Vec<i64>>());
}

#[test]
fn a_paused_publish_while_the_partition_moves_loses_and_doubles_nothing_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    paused_publish_while_the_partition_moves(dir.path().to_str().unwrap(), TableFormat::Hive);
}

#[test]
fn a_paused_publish_while_the_partition_moves_loses_and_doubles_nothing_on_hdfs() {
    let location = format!("{}/{}", hdfs_url(), unique("paused-publish"));
    paused_publish_while_the_partition_moves(&location, TableFormat::Hive);
}

#[test]
fn a_paused_publish_while_the_partition_moves_loses_and_doubles_nothing_on_delta() {
    let dir = tempfile::tempdir().unwrap();
    paused_publish_while_the_partition_moves(dir.path().to_str().unwrap(), TableFormat::Delta);
    let location = format!("{}/{}", hdfs_url(), unique("paused-publish-delta"));
    paused_publish_while_the_partition_moves(&location, TableFormat::Delta);
}

/// Pruning never passes, nor sweeps the files of, another writer's record
/// its writer has not finished: writer A publishes 2..3 and pauses; C takes
/// (finishing A's record), publishes 3..4 and pauses before its moves; A
/// goes on and its commit prunes (2 records kept) through C's record. C
/// then finds its files where it left them, and the table holds 0..4 once.
fn pruning_past_a_paused_writers_record(location: &str) {
    let wh = Arc::new(Warehouse::open(location).unwrap());
    let view = SourceView {
        id: "kafka:test/t".into(),
        earliest: 0,
        end: 1000,
    };
    let opts = TakeOptions::default();
    let pause = |start| {
        Arc::new(PauseAfterPublish {
            start: Some(start),
            ..Default::default()
        })
    };
    let (pause_a, pause_c) = (pause(2), pause(3));
    let a = Arc::new(Commits::new(wh.clone(), "events", "a", 2).with_hooks(pause_a.clone()));
    let c = Arc::new(Commits::new(wh.clone(), "events", "c", 2).with_hooks(pause_c.clone()));
    a.take(0, &view, &opts).unwrap();
    for s in 0..2 {
        let (o, _) = a.commit(0, s, s + 1, &[file(s, s + 1)], &|| false).unwrap();
        assert_eq!(o, CommitOutcome::Committed);
    }
    let ta = {
        let a = a.clone();
        std::thread::spawn(move || a.commit(0, 2, 3, &[file(2, 3)], &|| false))
    };
    pause_a.wait_paused();
    assert_eq!(c.take(0, &view, &opts).unwrap().chain, 3);
    let tc = {
        let c = c.clone();
        std::thread::spawn(move || c.commit(0, 3, 4, &[file(3, 4)], &|| false))
    };
    pause_c.wait_paused();
    pause_a.go_on();
    let (o, _) = ta.join().unwrap().unwrap();
    assert_eq!(o, CommitOutcome::Committed);
    pause_c.go_on();
    let (o, _) = tc.join().unwrap().unwrap();
    assert_eq!(o, CommitOutcome::Committed);
    let fresh = Commits::new(wh.clone(), "events", "f", 2);
    assert_eq!(fresh.take(0, &view, &opts).unwrap().chain, 4);
    assert_eq!(table_positions(&wh), (0..4).collect::<Vec<i64>>());
}

#[test]
fn pruning_past_a_paused_writers_record_loses_nothing_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    pruning_past_a_paused_writers_record(dir.path().to_str().unwrap());
}

#[test]
fn pruning_past_a_paused_writers_record_loses_nothing_on_hdfs() {
    let location = format!("{}/{}", hdfs_url(), unique("paused-prune"));
    pruning_past_a_paused_writers_record(&location);
}
