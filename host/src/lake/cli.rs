//! The `compact`, `vacuum` and `forget` commands: argument parsing lives in
//! `cli.rs`; this prints what each did.

use std::process::ExitCode;
use std::time::Duration;

use super::{CompactOptions, require_delta};

fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(1)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

pub fn compact(warehouse: &str, opts: CompactOptions) -> anyhow::Result<ExitCode> {
    if let Err(e) = require_delta(warehouse, "compact") {
        return Ok(failed(e));
    }
    let rt = tokio::runtime::Runtime::new()?;
    let reports = match rt.block_on(super::compact(warehouse, &opts)) {
        Ok(r) => r,
        Err(e) => return Ok(failed(e)),
    };
    for r in &reports {
        println!(
            "{}: {} files ({}) -> {} files ({}); {} files rewritten into {} ({} rows){}",
            r.table,
            r.files_before,
            mib(r.bytes_before),
            r.files_after,
            mib(r.bytes_after),
            r.files_removed,
            r.files_added,
            r.rows_rewritten,
            if r.bins_conflicted > 0 {
                format!(
                    ", {} bins left for a later run (a concurrent rewrite)",
                    r.bins_conflicted
                )
            } else {
                String::new()
            }
        );
    }
    if reports.is_empty() {
        println!("no Delta tables in {warehouse}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn vacuum(warehouse: &str, table: Option<&str>, retain: Duration) -> anyhow::Result<ExitCode> {
    if let Err(e) = require_delta(warehouse, "vacuum") {
        return Ok(failed(e));
    }
    let rt = tokio::runtime::Runtime::new()?;
    let reports = match rt.block_on(super::vacuum(warehouse, table, retain)) {
        Ok(r) => r,
        Err(e) => return Ok(failed(e)),
    };
    for r in &reports {
        println!(
            "{}: {} files ({}) stored -> {} files ({}); {} deleted",
            r.table,
            r.files_before,
            mib(r.bytes_before),
            r.files_after,
            mib(r.bytes_after),
            r.files_deleted
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn forget(warehouse: &str, user: &str, game: Option<&str>) -> anyhow::Result<ExitCode> {
    if let Err(e) = require_delta(warehouse, "forget") {
        return Ok(failed(e));
    }
    let rt = tokio::runtime::Runtime::new()?;
    let report = match rt.block_on(super::forget(warehouse, user, game)) {
        Ok(r) => r,
        Err(e) => return Ok(failed(e)),
    };
    let total: u64 = report.rows.values().sum();
    for (table, n) in &report.rows {
        println!("{table}: {n} rows removed");
    }
    println!(
        "{total} rows removed for user {user}{}; audit entry {}. The bytes stay in removed files \
         until `eventsift vacuum` runs past its retention.",
        game.map(|g| format!(" in game {g}")).unwrap_or_default(),
        report.audit
    );
    Ok(ExitCode::SUCCESS)
}
