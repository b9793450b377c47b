//! Fault hooks for the crash and fault tests: `EVENTSIFT_FAILPOINT` names
//! one or more points, comma-separated, each `name`, `name@N` (the N-th time
//! it is reached) or `name@N..M` (the N-th to the M-th time). What a point
//! does is decided where it sits:
//!
//! | point | where | what |
//! |---|---|---|
//! | `after_tmp`, `after_record`, `after_rename` | a commit's three steps | abort the process |
//! | `after_delta_table` | a record's Delta commits, after each table's | abort the process |
//! | `stop_before_publish` | a commit, files written, record not published | SIGSTOP itself (a frozen zombie) |
//! | `publish_ambiguous` | a commit's publish | publish, then report an error (a lost reply) |
//! | `publish_lost` | a commit's publish | report an error without publishing |
//! | `seek_fail` | the writer's source | a seek fails |
//! | `take_fail` | the writer's take of a partition | an attempt fails (the source cannot be read) |
//! | `admit_fail` | the router's schema check of a new plugin version | the schema cannot be read (retried until stopping) |
//! | `encode_fail` | the sink's Parquet encoding | rows cannot be encoded |
//! | `log_sync` | the embedded log's group commit | the sync fails |
//! | `writer_panic` | the writer's router thread | panic (a dead thread) |
//!
//! Unset (every production run), each check is one relaxed load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

struct Point {
    name: String,
    from: u32,
    to: u32,
    hits: AtomicU32,
}

fn points() -> &'static [Point] {
    static POINTS: OnceLock<Vec<Point>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let Ok(spec) = std::env::var("EVENTSIFT_FAILPOINT") else {
            return Vec::new();
        };
        let points: Vec<Point> = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (name, range) = s.split_once('@').unwrap_or((s, "1"));
                let (from, to) = match range.split_once("..") {
                    Some((a, b)) => (a.parse().unwrap_or(1), b.parse().unwrap_or(u32::MAX)),
                    None => {
                        let n = range.parse().unwrap_or(1);
                        (n, n)
                    }
                };
                Point {
                    name: name.to_owned(),
                    from,
                    to,
                    hits: AtomicU32::new(0),
                }
            })
            .collect();
        for p in &points {
            tracing::warn!("failpoint {} armed (hits {}..={})", p.name, p.from, p.to);
        }
        points
    })
}

/// Whether failpoint `name` fires at this hit.
pub fn fires(name: &str) -> bool {
    let points = points();
    if points.is_empty() {
        return false;
    }
    points.iter().any(|p| {
        p.name == name && {
            let n = p.hits.fetch_add(1, Ordering::Relaxed) + 1;
            (p.from..=p.to).contains(&n)
        }
    })
}

/// Aborts the process if `name` fires (a crash at that step).
pub fn abort_at(name: &str) {
    if fires(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Stops the process with SIGSTOP if `name` fires; it goes on when it gets
/// SIGCONT (a writer frozen past its group session).
pub fn stop_at(name: &str) {
    if fires(name) {
        eprintln!("failpoint {name}: stopping (SIGSTOP) until SIGCONT");
        // SAFETY: raise(3) with a valid signal number has no preconditions.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
        eprintln!("failpoint {name}: continued");
    }
}
