//! `cargo xtask <command>`: project automation.
//!
//! - `plugins [--ts]`: builds every bundled plugin (`plugins/<name>`) for
//!   wasm32-wasip2 into `target/plugins/<name>.wasm`; with `--ts`, also the
//!   TypeScript plugins (`plugins-ts/<name>`, Node.js and npm needed) into
//!   `target/plugins-ts/<name>.wasm`, outside the default bundle.
//! - `test`: builds the plugins and the tests, starts Kafka, MiniDFS and Trino,
//!   runs `cargo test --workspace` against them and stops them, even when
//!   tests fail.
//! - `chaos [--seed N] [--events N] [--rounds N] [--table-format hive|delta]`: the seeded chaos run
//!   (`tests/chaos`): a private Kafka and MiniDFS, one api and three
//!   writers, faults from the seed; prints its table, fails if a promise
//!   broke.
//! - `chaos --model [--schedules N] [--seed S]`: the model check of the
//!   commit protocol, N schedules (default a million) from seed S; a
//!   failing seed is printed with its shortest failing schedule.
//! - `dist`: the installable tree: the daemon built with the `dist` profile
//!   (stripped) and the bundled plugins, laid out as `bin/eventsift` and
//!   `share/eventsift/plugins/` (where an installed binary looks for them)
//!   with the deployment files in `share/eventsift/deploy/`, in
//!   `target/eventsift-dist/` and packed as
//!   `target/eventsift-<version>-<arch>-linux.tar.gz` (unpack under
//!   `/usr/local`); prints the sizes.
//! - `kafka|hdfs|trino start|stop|status`: the real services (see
//!   [`services`]).

use eventsift_services as services;
#[path = "../../tests/artifacts/ts_build.rs"]
mod ts_build;
#[path = "../../tests/artifacts/wasm_build.rs"]
mod wasm_build;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("plugins") => {
            plugins(&root)?;
            if args.iter().any(|a| a == "--ts") {
                for (_, path) in ts_build::build(&root).map_err(anyhow::Error::msg)? {
                    println!("built {}", path.display());
                }
            }
            Ok(())
        }
        Some("test") => test(&root, &args[1..]),
        Some("chaos") => chaos(&root, &args[1..]),
        Some("dist") => dist(&root),
        Some(name @ ("kafka" | "hdfs" | "trino")) => {
            let service = services::Service::parse(name).unwrap();
            match args.get(1).map(String::as_str) {
                Some("start") => services::start(&root, service),
                Some("stop") => services::stop(&root, service),
                Some("status") => {
                    let up = services::status(&root, service)?;
                    std::process::exit(if up { 0 } else { 1 });
                }
                _ => {
                    eprintln!("usage: cargo xtask {name} <start | stop | status>");
                    std::process::exit(2);
                }
            }
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <plugins [--ts] | test [cargo test args] | chaos [--seed N] [--events N] \
                 | dist | kafka ... | hdfs ... | trino ...>"
            );
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A cargo command with the environment of the shell that ran `cargo
/// xtask`, not the one `cargo run` gave xtask: cargo compares a build
/// script's `rerun-if-env-changed` variables with its own environment, so
/// the `CARGO_PKG_*` of xtask would make ring's build script (and
/// everything above it: datafusion, delta-rs) stale between a developer's
/// `cargo test` and `cargo xtask test` on one target folder.
fn cargo_command() -> Command {
    let mut cmd = Command::new(cargo());
    wasm_build::clean_cargo_env(&mut cmd);
    cmd
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into())
}

/// The bundled plugins: every crate folder under `plugins/`.
fn bundled(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("plugins")).context("reading plugins/")? {
        let entry = entry?;
        if entry.path().join("Cargo.toml").exists() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn plugins(root: &Path) -> Result<Vec<PathBuf>> {
    let names = bundled(root)?;
    let packages: Vec<&str> = names.iter().map(String::as_str).collect();
    let built = wasm_build::build(&cargo(), root, &packages).map_err(anyhow::Error::msg)?;
    let dest = root.join("target").join("plugins");
    std::fs::create_dir_all(&dest)?;
    let mut out = Vec::new();
    for (name, path) in built {
        let to = dest.join(format!("{name}.wasm"));
        // Copy to a hidden name, then rename: a running daemon watching this
        // folder never sees a half-written plugin.
        let tmp = dest.join(format!(".{name}.wasm.tmp"));
        std::fs::copy(&path, &tmp).with_context(|| format!("copying {}", path.display()))?;
        std::fs::rename(&tmp, &to)?;
        println!("built {}", to.display());
        out.push(to);
    }
    Ok(out)
}

/// Tests run at once by `cargo xtask test` (see `test`).
const TEST_THREADS: usize = 5;

fn test(root: &Path, extra: &[String]) -> Result<()> {
    plugins(root)?;
    // Build first, so the services do not idle (and compete for the two
    // cores) while the test binaries compile.
    let build = cargo_test(root, &["--no-run"], extra)
        .status()
        .context("building the tests")?;
    if !build.success() {
        bail!("building the tests failed");
    }
    // The bench binaries too (the tests' profile, so they link the same
    // library build), so they cannot rot between benchmark runs; they are
    // not run here.
    let benches = cargo_command()
        .current_dir(root)
        .args(["test", "--workspace", "--benches", "--no-run", "--quiet"])
        .status()
        .context("building the benches")?;
    if !benches.success() {
        bail!("building the benches failed");
    }
    let python = services::python_env()?;
    let services = [
        services::Service::Kafka,
        services::Service::Hdfs,
        services::Service::Trino,
    ];
    let started = services.iter().try_for_each(|s| services::start(root, *s));
    let result = started.and_then(|()| {
        let mut run = cargo_test(root, &[], extra);
        // Most tests wait on services, timers and child processes: they run
        // five at a time (the heavy ones take a permit of two,
        // `support::heavy`). RUST_TEST_THREADS overrides it.
        if std::env::var_os("RUST_TEST_THREADS").is_none() {
            run.env("RUST_TEST_THREADS", TEST_THREADS.to_string());
        }
        let status = run
            .env("EVENTSIFT_TEST_KAFKA", services::KAFKA_BOOTSTRAP)
            .env("EVENTSIFT_TEST_HDFS", services::HDFS_URL)
            .env("EVENTSIFT_TEST_TRINO", services::TRINO_URL)
            .env("EVENTSIFT_TEST_PYTHON", &python)
            .status()
            .context("running cargo test")?;
        if status.success() {
            Ok(())
        } else {
            bail!("tests failed")
        }
    });
    for s in services {
        if let Err(e) = services::stop(root, s) {
            eprintln!("warning: stopping {s:?}: {e:#}");
        }
    }
    result
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// `cargo xtask dist`: see the module docs.
fn dist(root: &Path) -> Result<()> {
    let plugins = plugins(root)?;
    let build = cargo_command()
        .current_dir(root)
        .args([
            "build",
            "--profile",
            "dist",
            "-p",
            "eventsift",
            "--bin",
            "eventsift",
        ])
        .status()
        .context("building eventsift")?;
    if !build.success() {
        bail!("building eventsift (profile dist) failed");
    }
    let bin = target_dir(root).join("dist").join("eventsift");
    let out = root.join("target").join("eventsift-dist");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    let share = out.join("share").join("eventsift");
    std::fs::create_dir_all(out.join("bin"))?;
    std::fs::create_dir_all(share.join("plugins"))?;
    std::fs::copy(&bin, out.join("bin").join("eventsift"))
        .with_context(|| format!("copying {}", bin.display()))?;
    for p in &plugins {
        std::fs::copy(p, share.join("plugins").join(p.file_name().unwrap()))?;
    }
    for dir in ["systemd", "grafana", "prometheus"] {
        let to = share.join("deploy").join(dir);
        std::fs::create_dir_all(&to)?;
        for entry in std::fs::read_dir(root.join("deploy").join(dir))? {
            let entry = entry?;
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    std::fs::copy(root.join("README.md"), share.join("README.md"))?;
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .context("running the built binary")?;
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let number = version.split_whitespace().nth(1).unwrap_or("0").to_owned();
    let tarball = root.join("target").join(format!(
        "eventsift-{number}-{}-linux.tar.gz",
        std::env::consts::ARCH
    ));
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&out)
        .arg("-czf")
        .arg(&tarball)
        .args(["bin", "share"])
        .status()
        .context("running tar")?;
    if !tar.success() {
        bail!("tar failed");
    }
    let mib = |p: &Path| -> Result<String> {
        Ok(format!(
            "{:.1} MiB",
            std::fs::metadata(p)?.len() as f64 / (1 << 20) as f64
        ))
    };
    print!("{version}");
    println!(
        "binary   {} ({})",
        out.join("bin/eventsift").display(),
        mib(&bin)?
    );
    println!(
        "plugins  {} ({} files)",
        share.join("plugins").display(),
        plugins.len()
    );
    println!(
        "tarball  {} ({}); unpack under /usr/local",
        tarball.display(),
        mib(&tarball)?
    );
    Ok(())
}

/// `chaos --model [--schedules N] [--seed S]`: the model check of the
/// commit protocol (`host/src/writer/commit/sim.rs`), run as the library
/// test it is in the suite, with more schedules.
fn model(root: &Path, extra: &[String]) -> Result<()> {
    let mut schedules = "1000000".to_owned();
    let mut seed = "1".to_owned();
    let mut args = extra.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => {}
            "--schedules" => schedules = args.next().context("--schedules N")?.clone(),
            "--seed" => seed = args.next().context("--seed S")?.clone(),
            other => bail!("chaos --model: unknown argument {other}"),
        }
    }
    let status = cargo_command()
        .current_dir(root)
        .args([
            "test",
            "-p",
            "eventsift",
            "--lib",
            "writer::commit::sim::tests::the_commit_protocol_keeps_its_promises_in_every_schedule",
            "--",
            "--nocapture",
        ])
        .env("EVENTSIFT_MODEL_SCHEDULES", &schedules)
        .env("EVENTSIFT_MODEL_SEED", &seed)
        .status()
        .context("running the model check")?;
    if !status.success() {
        bail!("the model check failed (the failing seed and its steps are printed above)");
    }
    Ok(())
}

/// Builds the daemon, then runs the chaos harness against it.
fn chaos(root: &Path, extra: &[String]) -> Result<()> {
    if extra.iter().any(|a| a == "--model") {
        return model(root, extra);
    }
    let build = cargo_command()
        .current_dir(root)
        .args(["build", "-p", "eventsift", "--bin", "eventsift"])
        .status()
        .context("building eventsift")?;
    if !build.success() {
        bail!("building eventsift failed");
    }
    let target = target_dir(root);
    let status = cargo_command()
        .current_dir(root)
        .args(["run", "-q", "-p", "eventsift-chaos", "--bin", "chaos", "--"])
        .args(extra)
        .arg("--binary")
        .arg(target.join("debug").join("eventsift"))
        .arg("--root")
        .arg(root)
        .status()
        .context("running the chaos harness")?;
    if !status.success() {
        bail!("the chaos run failed");
    }
    Ok(())
}

fn cargo_test(root: &Path, args: &[&str], extra: &[String]) -> Command {
    let mut cmd = cargo_command();
    cmd.current_dir(root)
        .args(["test", "--workspace"])
        .args(args)
        .args(extra);
    cmd
}
