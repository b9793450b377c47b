//! The set of loaded plugins, reloaded from a folder. Readers take an
//! immutable [`Snapshot`] (one `Arc` clone) and keep it for a whole batch,
//! so a swap takes effect between batches: no event in flight is lost or
//! processed twice. Startup is a reload from an empty set.
//!
//! Rules of a reload ([`Registry::sync`]):
//! - only `*.wasm` files not starting with `.` count (symbolic links to
//!   files too: ConfigMap mounts, `ln -sf` swaps); a file is read once
//!   its modification time is at least [`STABLE_AFTER`] old, so a file still
//!   being copied is never loaded;
//! - a folder that cannot be listed (descriptors exhausted, replaced for a
//!   moment) changes nothing: the loaded set keeps serving, and the error is
//!   logged;
//! - a broken or incompatible file is refused with a logged reason, and the
//!   version it replaces (if any) keeps serving;
//! - a plugin claiming an event type, table or route that another file's
//!   plugin owns is refused, naming both files; files are visited in name
//!   order, so the first claim wins at startup too;
//! - a removed file unloads its plugin;
//! - a new version of a table's plugin may add nullable columns; a type
//!   change or a dropped or added non-null column is refused (old files
//!   and new ones must stay readable together). The registry remembers each
//!   table's last columns for the life of the process; a [`Guard`] (the
//!   warehouse's persisted schemas, for `api` with a warehouse and `serve`)
//!   checks the same across restarts and processes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use super::contract::{ColumnSpec, PluginMeta};
use super::engine::Runtime;
use super::instance::LoadedPlugin;

/// An outside check a plugin version must pass to load (the reason when
/// it must not).
pub type Guard = Box<dyn Fn(&PluginMeta) -> Result<(), String> + Send + Sync>;

/// How long a file must stay unchanged before it is loaded.
pub const STABLE_AFTER: Duration = Duration::from_millis(500);

/// The plugins loaded at one moment, by event type.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every change.
    pub generation: u64,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
}

impl Snapshot {
    /// The plugin owning `event_type`.
    pub fn get(&self, event_type: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(event_type)
    }

    /// Every loaded plugin, by event type.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.values()
    }

    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Loaded {
        file: PathBuf,
        name: String,
        version: String,
    },
    Replaced {
        file: PathBuf,
        name: String,
        from: String,
        to: String,
    },
    Removed {
        file: PathBuf,
        name: String,
    },
    Refused {
        file: PathBuf,
        reason: String,
    },
}

/// The outcome of one [`Registry::sync`].
#[derive(Debug, Default)]
pub struct SyncReport {
    pub changes: Vec<Change>,
    /// Some file changed too recently to load; sync again soon.
    pub pending: bool,
}

type Stamp = (u64, SystemTime);

struct FileState {
    stamp: Stamp,
    sha256: Option<String>,
    loaded: Option<Arc<LoadedPlugin>>,
    refused: bool,
    /// Why the file was last refused (shown on the status page).
    reason: Option<String>,
}

pub struct Registry {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    /// Set once a reload listed the folder and left nothing pending (the
    /// daemon is ready for traffic only then).
    settled: std::sync::atomic::AtomicBool,
    /// Whether the last reload left files pending, and when the loaded set
    /// last changed (the writer waits for a missing plugin only while the
    /// set is settling).
    pending: std::sync::atomic::AtomicBool,
    /// When the loaded set last changed after it first settled.
    last_change: Mutex<Option<std::time::Instant>>,
    files: Mutex<BTreeMap<PathBuf, FileState>>,
    /// Last loaded columns of each table.
    tables: Mutex<HashMap<String, Vec<ColumnSpec>>>,
    guard: RwLock<Option<Guard>>,
    snapshot: RwLock<Arc<Snapshot>>,
}

impl Registry {
    /// Files of the folder that are refused, with the reason.
    pub fn refused(&self) -> Vec<(PathBuf, String)> {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, f)| f.refused)
            .filter_map(|(p, f)| Some((p.clone(), f.reason.clone()?)))
            .collect()
    }

    /// An empty registry over `dir`; call [`Registry::sync`] (or start a
    /// [`super::watcher::Watcher`]) to load it.
    pub fn new(runtime: Arc<Runtime>, dir: impl Into<PathBuf>) -> Arc<Self> {
        Arc::new(Registry {
            runtime,
            dir: dir.into(),
            settled: std::sync::atomic::AtomicBool::new(false),
            pending: std::sync::atomic::AtomicBool::new(false),
            last_change: Mutex::new(None),
            files: Mutex::new(BTreeMap::new()),
            tables: Mutex::new(HashMap::new()),
            guard: RwLock::new(None),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
        })
    }

    /// Adds a check every plugin version must pass to load (set it before
    /// the first [`Registry::sync`]).
    pub fn set_guard(&self, guard: Guard) {
        *self.guard.write().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The current set of plugins.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a reload has listed the folder with nothing left pending.
    pub fn settled(&self) -> bool {
        self.settled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether plugin files are waiting to load, or the loaded set changed
    /// less than `window` ago.
    pub fn settling(&self, window: Duration) -> bool {
        self.pending.load(std::sync::atomic::Ordering::SeqCst)
            || !self.settled()
            || self
                .last_change
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|t| t.elapsed() < window)
    }

    /// The plugin owning `event_type` now.
    pub fn get(&self, event_type: &str) -> Option<Arc<LoadedPlugin>> {
        self.snapshot().get(event_type).cloned()
    }

    /// Brings the loaded set in line with the folder (see the module docs).
    pub fn sync(&self) -> SyncReport {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = SyncReport::default();
        let listed = match list_wasm(&self.dir) {
            Ok(listed) => listed,
            Err(e) => {
                // Not an empty folder: keep what is loaded, try again later.
                tracing::warn!(
                    dir = %self.dir.display(),
                    "cannot list the plugin folder ({e}): keeping the {} loaded plugins",
                    self.snapshot().len()
                );
                report.pending = true;
                self.pending
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return report;
            }
        };
        let mut plugins = self.snapshot().plugins.clone();

        // Removed files.
        let gone: Vec<PathBuf> = files
            .keys()
            .filter(|p| !listed.iter().any(|(l, _)| l == *p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(FileState {
                loaded: Some(p), ..
            }) = files.remove(&path)
            {
                plugins.remove(&p.meta.event_type);
                report.changes.push(Change::Removed {
                    file: path,
                    name: p.meta.name.clone(),
                });
            }
        }

        let now = SystemTime::now();
        for (path, stamp) in listed {
            if files.get(&path).is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            if now.duration_since(stamp.1).unwrap_or_default() < STABLE_AFTER {
                report.pending = true;
                continue;
            }
            let wasm = match std::fs::read(&path) {
                Ok(w) if w.len() as u64 == stamp.0 => w,
                Ok(_) => {
                    report.pending = true; // changed while we read it
                    continue;
                }
                Err(e) => {
                    tracing::debug!(file = %path.display(), "cannot read plugin: {e}");
                    continue;
                }
            };
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
            let state = files.entry(path.clone()).or_insert(FileState {
                stamp,
                sha256: None,
                loaded: None,
                refused: false,
                reason: None,
            });
            state.stamp = stamp;
            if state.sha256.as_deref() == Some(sha.as_str()) {
                continue;
            }
            state.sha256 = Some(sha);
            let previous = state.loaded.clone();
            let result = LoadedPlugin::load(&self.runtime, path.clone(), &wasm)
                .map_err(|e| e.to_string())
                .and_then(|p| conflict(&plugins, previous.as_deref(), &p).map(|()| p))
                .and_then(|p| {
                    let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
                    match tables.get(&p.meta.table) {
                        Some(old) => super::contract::check_schema_change(old, &p.meta.columns)
                            .map_err(|why| {
                                format!(
                                    "{} {} changes table {:?} incompatibly: {why}",
                                    p.meta.name, p.meta.version, p.meta.table
                                )
                            })
                            .map(|()| p),
                        None => Ok(p),
                    }
                })
                .and_then(|p| {
                    let guard = self.guard.read().unwrap_or_else(|e| e.into_inner());
                    match guard.as_ref() {
                        Some(check) => check(&p.meta).map(|()| p),
                        None => Ok(p),
                    }
                });
            match result {
                Ok(plugin) => {
                    let plugin = Arc::new(plugin);
                    self.tables
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(plugin.meta.table.clone(), plugin.meta.columns.clone());
                    if let Some(prev) = &previous {
                        plugins.remove(&prev.meta.event_type);
                    }
                    plugins.insert(plugin.meta.event_type.clone(), plugin.clone());
                    report.changes.push(match &previous {
                        Some(prev) => Change::Replaced {
                            file: path.clone(),
                            name: plugin.meta.name.clone(),
                            from: prev.meta.version.clone(),
                            to: plugin.meta.version.clone(),
                        },
                        None => Change::Loaded {
                            file: path.clone(),
                            name: plugin.meta.name.clone(),
                            version: plugin.meta.version.clone(),
                        },
                    });
                    state.loaded = Some(plugin);
                    state.refused = false;
                    state.reason = None;
                }
                Err(reason) => {
                    state.refused = true;
                    state.reason = Some(reason.clone());
                    report.changes.push(Change::Refused {
                        file: path.clone(),
                        reason,
                    });
                }
            }
        }

        // A removal or replacement may free a claim: retry refused files.
        if report
            .changes
            .iter()
            .any(|c| matches!(c, Change::Removed { .. } | Change::Replaced { .. }))
        {
            for f in files.values_mut().filter(|f| f.refused) {
                f.sha256 = None;
                f.stamp.0 = u64::MAX;
                report.pending = true;
            }
        }

        if report
            .changes
            .iter()
            .any(|c| !matches!(c, Change::Refused { .. }))
        {
            let mut snapshot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
            *snapshot = Arc::new(Snapshot {
                generation: snapshot.generation + 1,
                plugins,
            });
        }
        for change in &report.changes {
            log_change(change);
        }
        if self.settled()
            && report
                .changes
                .iter()
                .any(|c| !matches!(c, Change::Refused { .. }))
        {
            *self.last_change.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now());
        }
        self.pending
            .store(report.pending, std::sync::atomic::Ordering::SeqCst);
        if !report.pending {
            self.settled
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        report
    }
}

/// Refuses `new` if a plugin of another file owns its event type, table or
/// route (`previous` is the version `new` replaces, which does not count).
fn conflict(
    plugins: &BTreeMap<String, Arc<LoadedPlugin>>,
    previous: Option<&LoadedPlugin>,
    new: &LoadedPlugin,
) -> Result<(), String> {
    let is_previous = |p: &LoadedPlugin| previous.is_some_and(|prev| prev.source == p.source);
    for other in plugins.values().filter(|p| !is_previous(p)) {
        let what = if other.meta.event_type == new.meta.event_type {
            format!("event type {:?}", new.meta.event_type)
        } else if other.meta.table == new.meta.table {
            format!("table {:?}", new.meta.table)
        } else if let (Some(a), Some(b)) = (&other.meta.route, &new.meta.route)
            && a.shape() == b.shape()
        {
            format!("route {b}")
        } else {
            continue;
        };
        return Err(format!(
            "{what} is already owned by {} ({} {}); {} ({} {}) is refused",
            other.source.display(),
            other.meta.name,
            other.meta.version,
            new.source.display(),
            new.meta.name,
            new.meta.version
        ));
    }
    Ok(())
}

fn list_wasm(dir: &Path) -> std::io::Result<Vec<(PathBuf, Stamp)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".wasm") {
            continue;
        }
        // Follows symbolic links: the stamp is the target's.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() {
            out.push((entry.path(), (meta.len(), meta.modified()?)));
        }
    }
    out.sort();
    Ok(out)
}

fn log_change(change: &Change) {
    match change {
        Change::Loaded {
            file,
            name,
            version,
        } => {
            tracing::info!(file = %file.display(), "plugin {name} {version} loaded")
        }
        Change::Replaced {
            file,
            name,
            from,
            to,
        } => {
            tracing::info!(file = %file.display(), "plugin {name} {from} replaced by {to}")
        }
        Change::Removed { file, name } => {
            tracing::info!(file = %file.display(), "plugin {name} removed")
        }
        Change::Refused { file, reason } => {
            tracing::warn!(file = %file.display(), "plugin refused: {reason}")
        }
    }
}
