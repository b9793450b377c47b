//! `eventsift-chaos [--seed N] [--events N (1000000)] [--rounds N (2)] [--table-format hive|delta]
//! --binary PATH --root DIR`:
//! one chaos run (see the library docs); prints its table and exits 1 when
//! a promise broke. `cargo xtask chaos` builds the binary and runs this.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut seed = None;
    let mut events = 1_000_000u64;
    let mut rounds = 2usize;
    let mut table_format = "hive".to_owned();
    let mut binary = None;
    let mut root = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match a.as_str() {
            "--seed" => seed = value().parse().ok(),
            "--events" => events = value().parse().unwrap_or(events),
            "--rounds" => rounds = value().parse().unwrap_or(rounds),
            "--binary" => binary = Some(PathBuf::from(value())),
            "--root" => root = Some(PathBuf::from(value())),
            "--table-format" => table_format = value(),
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(binary), Some(root)) = (binary, root) else {
        eprintln!(
            "usage: eventsift-chaos [--seed N] [--events N] [--rounds N] [--table-format hive|delta] \
             --binary PATH --root DIR"
        );
        return ExitCode::from(2);
    };
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let params = eventsift_chaos::Params {
        seed,
        events,
        rounds,
        binary,
        root,
        table_format,
        pace: eventsift_chaos::Pace::Full,
    };
    match eventsift_chaos::run(&params) {
        Ok(report) => {
            println!("\n{report}");
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chaos run failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
