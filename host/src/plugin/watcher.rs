//! Watches the plugin folder and keeps the registry in sync with it, on a
//! thread of its own so that compilation stays off the hot path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};

use super::registry::Registry;

/// Re-check interval while a file is settling.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// Re-check interval otherwise (a safety net for missed notifications and
/// for a folder that does not exist yet).
const IDLE_POLL: Duration = Duration::from_secs(2);

/// A running watcher; stops when dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    /// Wakes the thread (a change, or the stop): dropping the watcher must
    /// not wait out an idle poll.
    wake: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Loads the folder now (startup is a reload from an empty set), then
    /// follows its changes.
    pub fn start(registry: Arc<Registry>) -> std::io::Result<Self> {
        let first = registry.sync();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let (wake, rx) = mpsc::channel();
        let tx = wake.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-watcher".into())
            .spawn(move || {
                let mut watcher =
                    notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
                        // Only changes matter: reacting to access events would let
                        // our own directory listing wake us up again, forever.
                        if ev.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                            let _ = tx.send(());
                        }
                    })
                    .map_err(|e| {
                        tracing::warn!(
                            "cannot watch the plugin folder ({e}); polling it every {IDLE_POLL:?}"
                        )
                    })
                    .ok();
                let mut watching = false;
                let mut pending = first.pending;
                while !stopped.load(Ordering::Relaxed) {
                    if !watching && let Some(w) = watcher.as_mut() {
                        watching = w.watch(registry.dir(), RecursiveMode::NonRecursive).is_ok();
                    }
                    let wait = if pending { SETTLE_POLL } else { IDLE_POLL };
                    match rx.recv_timeout(wait) {
                        Ok(()) if stopped.load(Ordering::Relaxed) => break,
                        Ok(()) => {
                            // Let a burst of changes (a copy in progress) settle.
                            std::thread::sleep(SETTLE_POLL / 2);
                            while rx.try_recv().is_ok() {}
                        }
                        // Without a notify watcher this is the poll.
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    pending = registry.sync().pending;
                    if !registry.dir().exists() {
                        watching = false;
                    }
                }
            })?;
        Ok(Watcher {
            stop,
            wake,
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
