//! The warehouse: where tables and commit records live, on local disk or on
//! HDFS (hdfs-native). Paths are relative, `/`-separated.
//!
//! The operations are the few the commit protocol needs, each durable when it
//! returns: `write` (a new file, replacing any), `publish` (a rename that fails
//! when the target exists: the atomic, exclusive step of a commit), `rename`
//! (which never replaces a file either), `read`, `list` and `remove`. They
//! block: the writer calls them from its own threads, never from an async
//! task.
//!
//! Every HDFS call is bounded by the warehouse timeout (default
//! [`DEFAULT_TIMEOUT`]): a namenode that stops answering makes calls fail,
//! never hang. Local calls are plain system calls.
//!
//! A [`Warehouse`] is a [`Store`] behind one handle: the local and HDFS
//! stores here, or a wrapper a test puts around one (the model check of
//! the commit protocol schedules and fails every call through one).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Bound on one HDFS call, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A warehouse operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("warehouse {op} {path}: {message}")]
pub struct WarehouseError {
    pub op: &'static str,
    pub path: String,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, WarehouseError>;

/// One entry of a listed folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub len: u64,
    /// Last modification, when the store reports it.
    pub modified: Option<SystemTime>,
}

/// What [`Warehouse::rename`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// `from` is now at `to`.
    Moved,
    /// `to` exists (nothing was replaced); `from`, if it was there, is removed
    /// when `from` and `to` are the same file (a local move interrupted
    /// between its link and its unlink), otherwise left alone.
    TargetExists,
    /// Neither exists.
    Missing,
}

/// The operations the commit protocol needs, each durable when it returns
/// (see the module docs). Paths are relative to the store's root.
pub trait Store: Send + Sync {
    /// The location as a user writes it (for logs and catalogs).
    fn location(&self) -> String;
    /// Writes a new file at `rel` (replacing any), durably.
    fn write(&self, rel: &str, data: Bytes) -> Result<()>;
    /// Renames `from` to `to` unless `to` exists: `Ok(true)` when renamed,
    /// `Ok(false)` when `to` was there already (nothing changed).
    fn publish(&self, from: &str, to: &str) -> Result<bool>;
    /// Moves `from` to `to`, durably, never replacing a file.
    fn rename(&self, from: &str, to: &str) -> Result<Moved>;
    fn exists(&self, rel: &str) -> Result<bool>;
    /// The whole content of `rel`, or `None` when it does not exist.
    fn read_opt(&self, rel: &str) -> Result<Option<Vec<u8>>>;
    /// The entries of folder `rel`, in any order; empty when it does not exist.
    fn list(&self, rel: &str) -> Result<Vec<Entry>>;
    /// Removes file `rel`; `Ok(true)` when it was there.
    fn remove(&self, rel: &str) -> Result<bool>;
}

/// The warehouse: one [`Store`].
pub struct Warehouse {
    store: Box<dyn Store>,
}

/// The local disk: files under a folder, every change fsynced.
pub struct Local(PathBuf);

pub struct Hdfs {
    url: String,
    root: String,
    /// Both `Some` until dropped (see the `Drop` impl).
    client: Option<hdfs_native::Client>,
    rt: Option<tokio::runtime::Runtime>,
    timeout: Duration,
}

impl Drop for Hdfs {
    /// The last holder of a warehouse may be a task of the daemon's own
    /// runtime (the admin listener's state holds the registry, which holds
    /// the table schemas and so the warehouse): dropping a runtime there
    /// panics, so it is shut down without waiting for its threads.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // The client first, in its runtime's context, as before.
            let guard = rt.enter();
            drop(self.client.take());
            drop(guard);
            rt.shutdown_background();
        }
    }
}

impl Hdfs {
    fn client(&self) -> &hdfs_native::Client {
        self.client
            .as_ref()
            .expect("the client lives until the drop")
    }
}

impl Hdfs {
    /// Runs one HDFS call to completion, bounded by the warehouse's timeout.
    fn call<T>(
        &self,
        op: &'static str,
        rel: &str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let timeout = self.timeout;
        let rt = self.rt.as_ref().expect("the runtime lives until the drop");
        rt.block_on(async {
            match tokio::time::timeout(timeout, f).await {
                Ok(r) => r,
                Err(_) => Err(WarehouseError {
                    op,
                    path: rel.to_owned(),
                    message: format!("no answer from the namenode within {timeout:?}"),
                }),
            }
        })
    }
}

impl Warehouse {
    /// Opens `location`: `hdfs://host:port/path` or a local folder (created),
    /// with HDFS calls bounded by [`DEFAULT_TIMEOUT`].
    pub fn open(location: &str) -> Result<Warehouse> {
        Self::open_with_timeout(location, DEFAULT_TIMEOUT)
    }

    /// Opens `location` with HDFS calls bounded by `timeout`.
    pub fn open_with_timeout(location: &str, timeout: Duration) -> Result<Warehouse> {
        let err = |op, message: String| WarehouseError {
            op,
            path: location.to_owned(),
            message,
        };
        if let Some(rest) = location.strip_prefix("hdfs://") {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let url = format!("hdfs://{authority}");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("hdfs-io")
                .enable_all()
                .build()
                .map_err(|e| err("open", e.to_string()))?;
            let client = {
                let _guard = rt.enter();
                hdfs_native::ClientBuilder::new()
                    .with_url(url.clone())
                    .build()
                    .map_err(|e| err("open", e.to_string()))?
            };
            let root = format!("/{}", path.trim_matches('/'));
            let hdfs = Hdfs {
                url,
                root,
                client: Some(client),
                rt: Some(rt),
                timeout,
            };
            hdfs.call("open", location, async {
                hdfs.client()
                    .mkdirs(&hdfs.root, 0o755, true)
                    .await
                    .map_err(|e| err("open", e.to_string()))
            })?;
            Ok(Warehouse::with_store(hdfs))
        } else {
            let path = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
            std::fs::create_dir_all(&path).map_err(|e| err("open", e.to_string()))?;
            Ok(Warehouse::with_store(Local(path)))
        }
    }

    /// A warehouse over `store` (a wrapper of another store, in tests).
    pub fn with_store(store: impl Store + 'static) -> Warehouse {
        Warehouse {
            store: Box::new(store),
        }
    }

    /// The location as a user writes it (for logs and catalogs).
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Writes a new file at `rel` (replacing any), durably.
    pub fn write(&self, rel: &str, data: Bytes) -> Result<()> {
        self.store.write(rel, data)
    }

    /// Renames `from` to `to` unless `to` exists: `Ok(true)` when renamed,
    /// `Ok(false)` when `to` was there already (nothing changed). Atomic on
    /// both stores (a hard link then unlink locally; a rename without
    /// overwrite on HDFS).
    pub fn publish(&self, from: &str, to: &str) -> Result<bool> {
        self.store.publish(from, to)
    }

    /// Moves `from` to `to` (creating `to`'s folder), durably, never
    /// replacing a file: locally a hard link then an unlink (a crash between
    /// the two leaves both names of one file, which a retry resolves); on
    /// HDFS a rename without overwrite.
    pub fn rename(&self, from: &str, to: &str) -> Result<Moved> {
        self.store.rename(from, to)
    }

    /// Whether `rel` exists.
    pub fn exists(&self, rel: &str) -> Result<bool> {
        self.store.exists(rel)
    }

    /// The whole content of `rel`.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>> {
        self.read_opt(rel)?
            .ok_or_else(|| error("read", rel, &"no such file"))
    }

    /// The whole content of `rel`, or `None` when it does not exist.
    pub fn read_opt(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        self.store.read_opt(rel)
    }

    /// The entries of folder `rel`, sorted by name; empty when it does not exist.
    pub fn list(&self, rel: &str) -> Result<Vec<Entry>> {
        let mut out = self.store.list(rel)?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every file under `rel`, as paths relative to the warehouse.
    pub fn walk(&self, rel: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut stack = vec![rel.trim_end_matches('/').to_owned()];
        while let Some(dir) = stack.pop() {
            for e in self.list(&dir)? {
                let path = if dir.is_empty() {
                    e.name.clone()
                } else {
                    format!("{dir}/{}", e.name)
                };
                if e.is_dir {
                    stack.push(path);
                } else {
                    out.push((path, e.len));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes file `rel`; a missing file is not an error. `Ok(true)` when
    /// it was there.
    pub fn remove(&self, rel: &str) -> Result<bool> {
        self.store.remove(rel)
    }
}

impl Store for Local {
    fn location(&self) -> String {
        self.0.display().to_string()
    }

    fn write(&self, rel: &str, data: Bytes) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| error("write", rel, e);
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(&e))?;
        }
        let mut f = std::fs::File::create(&path).map_err(|e| fail(&e))?;
        std::io::Write::write_all(&mut f, &data).map_err(|e| fail(&e))?;
        f.sync_all().map_err(|e| fail(&e))
    }

    fn publish(&self, from: &str, to: &str) -> Result<bool> {
        let fail = |e: &dyn std::fmt::Display| error("publish", to, e);
        let (src, dst) = (self.0.join(from), self.0.join(to));
        mkdir_parent(&dst).map_err(|e| fail(&e))?;
        match std::fs::hard_link(&src, &dst) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(fail(&e)),
        }
        sync_parent(&dst).map_err(|e| fail(&e))?;
        std::fs::remove_file(&src).map_err(|e| fail(&e))?;
        Ok(true)
    }

    fn rename(&self, from: &str, to: &str) -> Result<Moved> {
        let fail = |e: &dyn std::fmt::Display| error("rename", from, e);
        let (src, dst) = (self.0.join(from), self.0.join(to));
        mkdir_parent(&dst).map_err(|e| fail(&e))?;
        match std::fs::hard_link(&src, &dst) {
            Ok(()) => {
                sync_parent(&dst).map_err(|e| fail(&e))?;
                std::fs::remove_file(&src).map_err(|e| fail(&e))?;
                sync_parent(&src).map_err(|e| fail(&e))?;
                Ok(Moved::Moved)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if same_file(&src, &dst) {
                    std::fs::remove_file(&src).map_err(|e| fail(&e))?;
                }
                Ok(Moved::TargetExists)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dst.exists() {
                    Ok(Moved::TargetExists)
                } else {
                    Ok(Moved::Missing)
                }
            }
            Err(e) => Err(fail(&e)),
        }
    }

    fn exists(&self, rel: &str) -> Result<bool> {
        Ok(self.0.join(rel).exists())
    }

    fn read_opt(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.0.join(rel)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error("read", rel, &e)),
        }
    }

    fn list(&self, rel: &str) -> Result<Vec<Entry>> {
        let fail = |e: &dyn std::fmt::Display| error("list", rel, e);
        let dir = match std::fs::read_dir(self.0.join(rel)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(fail(&e)),
        };
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| fail(&e))?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed since the folder was read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(fail(&e)),
            };
            out.push(Entry {
                name: entry.file_name().to_string_lossy().into_owned(),
                is_dir: meta.is_dir(),
                len: meta.len(),
                modified: meta.modified().ok(),
            });
        }
        Ok(out)
    }

    fn remove(&self, rel: &str) -> Result<bool> {
        match std::fs::remove_file(self.0.join(rel)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(error("remove", rel, &e)),
        }
    }
}

impl Store for Hdfs {
    fn location(&self) -> String {
        format!("{}{}", self.url, self.root)
    }

    fn write(&self, rel: &str, data: Bytes) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| error("write", rel, e);
        self.call("write", rel, async {
            let path = self.abs(rel);
            let options = hdfs_native::WriteOptions {
                overwrite: true,
                ..Default::default()
            };
            let mut w = self
                .client()
                .create(&path, options)
                .await
                .map_err(|e| fail(&e))?;
            w.write(data).await.map_err(|e| fail(&e))?;
            w.close().await.map_err(|e| fail(&e))
        })
    }

    fn publish(&self, from: &str, to: &str) -> Result<bool> {
        let fail = |e: &dyn std::fmt::Display| error("publish", to, e);
        self.call("publish", to, async {
            let dst = self.abs(to);
            if let Some((parent, _)) = dst.rsplit_once('/') {
                self.client()
                    .mkdirs(parent, 0o755, true)
                    .await
                    .map_err(|e| fail(&e))?;
            }
            match self.client().rename(&self.abs(from), &dst, false).await {
                Ok(()) => Ok(true),
                Err(e) if already_exists(&e) => Ok(false),
                Err(e) => Err(fail(&e)),
            }
        })
    }

    fn rename(&self, from: &str, to: &str) -> Result<Moved> {
        let fail = |e: &dyn std::fmt::Display| error("rename", from, e);
        self.call("rename", from, async {
            let dst = self.abs(to);
            if let Some((parent, _)) = dst.rsplit_once('/') {
                self.client()
                    .mkdirs(parent, 0o755, true)
                    .await
                    .map_err(|e| fail(&e))?;
            }
            match self.client().rename(&self.abs(from), &dst, false).await {
                Ok(()) => Ok(Moved::Moved),
                Err(e) if already_exists(&e) => Ok(Moved::TargetExists),
                Err(e) => {
                    // A missing source is reported in several ways; ask.
                    let exists = |p: String| async move {
                        match self.client().get_file_info(&p).await {
                            Ok(_) => Ok(true),
                            Err(e) if not_found(&e) => Ok(false),
                            Err(e) => Err(e),
                        }
                    };
                    match (exists(self.abs(from)).await, exists(dst.clone()).await) {
                        (Ok(false), Ok(true)) => Ok(Moved::TargetExists),
                        (Ok(false), Ok(false)) => Ok(Moved::Missing),
                        _ => Err(fail(&e)),
                    }
                }
            }
        })
    }

    fn exists(&self, rel: &str) -> Result<bool> {
        self.call("stat", rel, async {
            match self.client().get_file_info(&self.abs(rel)).await {
                Ok(_) => Ok(true),
                Err(e) if not_found(&e) => Ok(false),
                Err(e) => Err(error("stat", rel, &e)),
            }
        })
    }

    fn read_opt(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let fail = |e: &dyn std::fmt::Display| error("read", rel, e);
        self.call("read", rel, async {
            let r = match self.client().read(&self.abs(rel)).await {
                Ok(r) => r,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(fail(&e)),
            };
            let bytes = r
                .read_range(0, r.file_length())
                .await
                .map_err(|e| fail(&e))?;
            Ok(Some(bytes.to_vec()))
        })
    }

    fn list(&self, rel: &str) -> Result<Vec<Entry>> {
        let fail = |e: &dyn std::fmt::Display| error("list", rel, e);
        self.call("list", rel, async {
            match self.client().list_status(&self.abs(rel), false).await {
                Ok(list) => Ok(list
                    .into_iter()
                    .map(|s| Entry {
                        name: s.path.rsplit('/').next().unwrap_or("").to_owned(),
                        is_dir: s.isdir,
                        len: s.length as u64,
                        modified: Some(
                            SystemTime::UNIX_EPOCH + Duration::from_millis(s.modification_time),
                        ),
                    })
                    .collect()),
                Err(e) if not_found(&e) => Ok(Vec::new()),
                Err(e) => Err(fail(&e)),
            }
        })
    }

    fn remove(&self, rel: &str) -> Result<bool> {
        self.call("remove", rel, async {
            match self.client().delete(&self.abs(rel), false).await {
                Ok(existed) => Ok(existed),
                Err(e) if not_found(&e) => Ok(false),
                Err(e) => Err(error("remove", rel, &e)),
            }
        })
    }
}

impl Hdfs {
    fn abs(&self, rel: &str) -> String {
        if self.root == "/" {
            format!("/{rel}")
        } else {
            format!("{}/{rel}", self.root)
        }
    }
}

fn error(op: &'static str, path: &str, e: &dyn std::fmt::Display) -> WarehouseError {
    // HDFS errors carry the namenode's Java stack trace: the first line says it.
    let message = e.to_string();
    WarehouseError {
        op,
        path: path.to_owned(),
        message: message.lines().next().unwrap_or_default().to_owned(),
    }
}

/// Whether an HDFS error means "no such file" (the client reports it as
/// its own error or as the namenode's exception).
fn not_found(e: &hdfs_native::HdfsError) -> bool {
    match e {
        hdfs_native::HdfsError::FileNotFound(_) => true,
        hdfs_native::HdfsError::RPCError(class, _) => class.contains("FileNotFoundException"),
        _ => false,
    }
}

fn already_exists(e: &hdfs_native::HdfsError) -> bool {
    match e {
        hdfs_native::HdfsError::AlreadyExists(_) => true,
        hdfs_native::HdfsError::RPCError(class, _) => class.contains("FileAlreadyExists"),
        _ => false,
    }
}

fn mkdir_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent),
        None => Ok(()),
    }
}

/// Whether two paths name one file (same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// fsyncs the folder holding `path`, so a rename or link in it is durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_is_exclusive_and_list_is_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let wh = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
        wh.write("a/.tmp1", Bytes::from_static(b"one")).unwrap();
        wh.write("a/.tmp2", Bytes::from_static(b"two")).unwrap();
        assert!(wh.publish("a/.tmp1", "a/b/rec").unwrap());
        assert!(!wh.publish("a/.tmp2", "a/b/rec").unwrap());
        assert_eq!(wh.read("a/b/rec").unwrap(), b"one");
        assert!(!wh.exists("a/.tmp1").unwrap());
        let names: Vec<_> = wh.list("a").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, [".tmp2", "b"]);
        assert_eq!(
            wh.walk("").unwrap(),
            [("a/.tmp2".into(), 3), ("a/b/rec".into(), 3)]
        );
        assert!(wh.list("missing").unwrap().is_empty());
        assert!(wh.remove("a/.tmp2").unwrap());
        assert!(!wh.remove("a/.tmp2").unwrap());
        assert_eq!(wh.read_opt("a/.tmp2").unwrap(), None);
    }

    #[test]
    fn rename_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let wh = Warehouse::open(dir.path().to_str().unwrap()).unwrap();
        wh.write("x", Bytes::from_static(b"x")).unwrap();
        wh.write("y", Bytes::from_static(b"y")).unwrap();
        assert_eq!(wh.rename("x", "t/f").unwrap(), Moved::Moved);
        assert_eq!(wh.rename("y", "t/f").unwrap(), Moved::TargetExists);
        assert_eq!(wh.read("t/f").unwrap(), b"x");
        assert_eq!(wh.read("y").unwrap(), b"y");
        // Interrupted between link and unlink: both names, one file.
        std::fs::hard_link(dir.path().join("t/f"), dir.path().join("z")).unwrap();
        assert_eq!(wh.rename("z", "t/f").unwrap(), Moved::TargetExists);
        assert!(!wh.exists("z").unwrap());
        assert_eq!(wh.rename("gone", "t/g").unwrap(), Moved::Missing);
        assert_eq!(wh.rename("gone", "t/f").unwrap(), Moved::TargetExists);
    }
}
