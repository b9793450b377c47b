//! Shared test helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsift::plugin::sandbox::Limits;
use eventsift::plugin::{LoadedPlugin, Registry, Runtime, RuntimeConfig};

/// A runtime with the default memory cap and a generous deadline: tests
/// share two cores, so a timing-sensitive limit would make them flaky.
pub fn runtime() -> Arc<Runtime> {
    runtime_with(Limits {
        deadline: Duration::from_secs(2),
        ..Limits::default()
    })
}

pub fn runtime_with(limits: Limits) -> Arc<Runtime> {
    Runtime::new(RuntimeConfig {
        limits,
        cache_dir: None,
        log: Default::default(),
    })
    .unwrap()
}

/// Loads one plugin file.
pub fn load(runtime: &Arc<Runtime>, path: &str) -> Result<LoadedPlugin, String> {
    let wasm = std::fs::read(path).unwrap();
    LoadedPlugin::load(runtime, PathBuf::from(path), &wasm).map_err(|e| e.to_string())
}

/// Copies `src` into `dir` as `name` the way a careful user would
/// (hidden temporary name, then rename), dated `age` in the past.
pub fn drop_in(dir: &Path, name: &str, src: &str, age: Duration) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::copy(src, &tmp).unwrap();
    set_age(&tmp, age);
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

pub fn set_age(path: &Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - age).unwrap();
}

/// Old enough to be considered stable by the registry.
pub const SETTLED: Duration = Duration::from_secs(5);

/// Waits (generously) until `cond` holds.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_for(Duration::from_secs(30), what, cond)
}

/// Waits at most `bound` until `cond` holds.
pub fn wait_until_for(bound: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A registry over a fresh temporary folder.
pub fn registry() -> (tempfile::TempDir, Arc<Registry>) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(runtime(), dir.path());
    (dir, registry)
}

/// A sword event envelope.
pub fn sword(color: &str, quantity: i64) -> String {
    format!(r#"{{"event_type":"purchase_sword","color":"{color}","quantity":{quantity}}}"#)
}

/// The Kafka broker `cargo xtask test` started (or `cargo xtask kafka start`).
pub fn kafka_bootstrap() -> String {
    std::env::var("EVENTSIFT_TEST_KAFKA").expect(
        "EVENTSIFT_TEST_KAFKA is not set: run the tests with `cargo xtask test`, or start \
         the broker with `cargo xtask kafka start` and set EVENTSIFT_TEST_KAFKA=127.0.0.1:9092",
    )
}

/// The MiniDFSCluster `cargo xtask test` started (or `cargo xtask hdfs start`).
pub fn hdfs_url() -> String {
    std::env::var("EVENTSIFT_TEST_HDFS").expect(
        "EVENTSIFT_TEST_HDFS is not set: run the tests with `cargo xtask test`, or start \
         MiniDFS with `cargo xtask hdfs start` and set EVENTSIFT_TEST_HDFS=hdfs://127.0.0.1:9000",
    )
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// A finished command's stdout and stderr, one after the other.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `python -c script` with `input` on its stdin (in `dir`, if given);
/// its stdout, after asserting it succeeded (`what` names it).
pub fn python_with_input(
    python: &str,
    script: &str,
    input: &str,
    dir: Option<&Path>,
    what: &str,
) -> String {
    use std::io::Write;
    let mut cmd = std::process::Command::new(python);
    cmd.args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Tests that load the two cores (a load of hundreds of thousands of
/// events, builds, a JVM job) hold one of these while they run: the suite
/// runs its tests concurrently (most of them wait on services and
/// timers), and two heavy ones at a time keep the machine responsive
/// enough for the others' timeouts.
pub fn heavy() -> Heavy {
    const PERMITS: usize = 2;
    let (lock, cv) = &*heavy_state();
    let mut held = lock.lock().unwrap_or_else(|p| p.into_inner());
    while *held >= PERMITS {
        held = cv.wait(held).unwrap_or_else(|p| p.into_inner());
    }
    *held += 1;
    Heavy(())
}

fn heavy_state() -> &'static (std::sync::Mutex<usize>, std::sync::Condvar) {
    static STATE: std::sync::OnceLock<(std::sync::Mutex<usize>, std::sync::Condvar)> =
        std::sync::OnceLock::new();
    STATE.get_or_init(Default::default)
}

/// A permit of [`heavy`], given back when dropped.
pub struct Heavy(());

impl Drop for Heavy {
    fn drop(&mut self) {
        let (lock, cv) = &*heavy_state();
        *lock.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        cv.notify_one();
    }
}
