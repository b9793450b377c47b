//! The warehouse: where tables and commit records live, on local disk or on
//! HDFS (hdfs-native). Paths are relative, `/`-separated.
//!
//! The operations are the few the commit protocol needs, each durable when it
//! returns: `write` (a new file, replacing any), `publish` (a rename that fails
//! when the target exists: the atomic, exclusive step of a commit), `rename`,
//! `read`, `list` and `remove`. They block: the writer calls them from its own
//! threads, never from an async task.

use std::path::{Path, PathBuf};

use bytes::Bytes;

/// A warehouse operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("warehouse {op} {path}: {message}")]
pub struct WarehouseError {
    pub op: &'static str,
    pub path: String,
    pub message: String,
}

type Result<T> = std::result::Result<T, WarehouseError>;

/// One entry of a listed folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub len: u64,
}

pub enum Warehouse {
    Local(PathBuf),
    Hdfs(Hdfs),
}

pub struct Hdfs {
    url: String,
    root: String,
    client: hdfs_native::Client,
    rt: tokio::runtime::Runtime,
}

impl Warehouse {
    /// Opens `location`: `hdfs://host:port/path` or a local folder (created).
    pub fn open(location: &str) -> Result<Warehouse> {
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
                client,
                rt,
            };
            hdfs.rt
                .block_on(hdfs.client.mkdirs(&hdfs.root, 0o755, true))
                .map_err(|e| err("open", e.to_string()))?;
            Ok(Warehouse::Hdfs(hdfs))
        } else {
            let path = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
            std::fs::create_dir_all(&path).map_err(|e| err("open", e.to_string()))?;
            Ok(Warehouse::Local(path))
        }
    }

    /// The location as a user writes it (for logs and catalogs).
    pub fn location(&self) -> String {
        match self {
            Warehouse::Local(p) => p.display().to_string(),
            Warehouse::Hdfs(h) => format!("{}{}", h.url, h.root),
        }
    }

    /// Writes a new file at `rel` (replacing any), durably.
    pub fn write(&self, rel: &str, data: Bytes) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| error("write", rel, e);
        match self {
            Warehouse::Local(root) => {
                let path = root.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| fail(&e))?;
                }
                let mut f = std::fs::File::create(&path).map_err(|e| fail(&e))?;
                std::io::Write::write_all(&mut f, &data).map_err(|e| fail(&e))?;
                f.sync_all().map_err(|e| fail(&e))
            }
            Warehouse::Hdfs(h) => h.rt.block_on(async {
                let path = h.abs(rel);
                let options = hdfs_native::WriteOptions {
                    overwrite: true,
                    ..Default::default()
                };
                let mut w = h
                    .client
                    .create(&path, options)
                    .await
                    .map_err(|e| fail(&e))?;
                w.write(data).await.map_err(|e| fail(&e))?;
                w.close().await.map_err(|e| fail(&e))
            }),
        }
    }

    /// Renames `from` to `to` unless `to` exists: `Ok(true)` when renamed,
    /// `Ok(false)` when `to` was there already (nothing changed). Atomic on
    /// both stores (a hard link then unlink locally; a rename without
    /// overwrite on HDFS).
    pub fn publish(&self, from: &str, to: &str) -> Result<bool> {
        let fail = |e: &dyn std::fmt::Display| error("publish", to, e);
        match self {
            Warehouse::Local(root) => {
                let (src, dst) = (root.join(from), root.join(to));
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
            Warehouse::Hdfs(h) => h.rt.block_on(async {
                let dst = h.abs(to);
                if let Some((parent, _)) = dst.rsplit_once('/') {
                    h.client
                        .mkdirs(parent, 0o755, true)
                        .await
                        .map_err(|e| fail(&e))?;
                }
                match h.client.rename(&h.abs(from), &dst, false).await {
                    Ok(()) => Ok(true),
                    Err(e) if already_exists(&e) => Ok(false),
                    Err(e) => Err(fail(&e)),
                }
            }),
        }
    }

    /// Renames `from` to `to` (creating `to`'s folder), durably.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| error("rename", from, e);
        match self {
            Warehouse::Local(root) => {
                let (src, dst) = (root.join(from), root.join(to));
                mkdir_parent(&dst).map_err(|e| fail(&e))?;
                std::fs::rename(&src, &dst).map_err(|e| fail(&e))?;
                sync_parent(&dst).map_err(|e| fail(&e))
            }
            Warehouse::Hdfs(h) => h.rt.block_on(async {
                let dst = h.abs(to);
                if let Some((parent, _)) = dst.rsplit_once('/') {
                    h.client
                        .mkdirs(parent, 0o755, true)
                        .await
                        .map_err(|e| fail(&e))?;
                }
                h.client
                    .rename(&h.abs(from), &dst, false)
                    .await
                    .map_err(|e| fail(&e))
            }),
        }
    }

    /// Whether `rel` exists.
    pub fn exists(&self, rel: &str) -> Result<bool> {
        match self {
            Warehouse::Local(root) => Ok(root.join(rel).exists()),
            Warehouse::Hdfs(h) => h.rt.block_on(async {
                match h.client.get_file_info(&h.abs(rel)).await {
                    Ok(_) => Ok(true),
                    Err(hdfs_native::HdfsError::FileNotFound(_)) => Ok(false),
                    Err(e) => Err(error("stat", rel, &e)),
                }
            }),
        }
    }

    /// The whole content of `rel`.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>> {
        let fail = |e: &dyn std::fmt::Display| error("read", rel, e);
        match self {
            Warehouse::Local(root) => std::fs::read(root.join(rel)).map_err(|e| fail(&e)),
            Warehouse::Hdfs(h) => h.rt.block_on(async {
                let r = h.client.read(&h.abs(rel)).await.map_err(|e| fail(&e))?;
                let bytes = r
                    .read_range(0, r.file_length())
                    .await
                    .map_err(|e| fail(&e))?;
                Ok(bytes.to_vec())
            }),
        }
    }

    /// The entries of folder `rel`, sorted by name; empty when it does not exist.
    pub fn list(&self, rel: &str) -> Result<Vec<Entry>> {
        let fail = |e: &dyn std::fmt::Display| error("list", rel, e);
        let mut out = match self {
            Warehouse::Local(root) => {
                let dir = match std::fs::read_dir(root.join(rel)) {
                    Ok(d) => d,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(fail(&e)),
                };
                let mut out = Vec::new();
                for entry in dir {
                    let entry = entry.map_err(|e| fail(&e))?;
                    let meta = entry.metadata().map_err(|e| fail(&e))?;
                    out.push(Entry {
                        name: entry.file_name().to_string_lossy().into_owned(),
                        is_dir: meta.is_dir(),
                        len: meta.len(),
                    });
                }
                out
            }
            Warehouse::Hdfs(h) => h.rt.block_on(async {
                match h.client.list_status(&h.abs(rel), false).await {
                    Ok(list) => Ok(list
                        .into_iter()
                        .map(|s| Entry {
                            name: s.path.rsplit('/').next().unwrap_or("").to_owned(),
                            is_dir: s.isdir,
                            len: s.length as u64,
                        })
                        .collect()),
                    Err(hdfs_native::HdfsError::FileNotFound(_)) => Ok(Vec::new()),
                    Err(e) => Err(fail(&e)),
                }
            })?,
        };
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

    /// Removes file `rel`; a missing file is not an error.
    pub fn remove(&self, rel: &str) -> Result<()> {
        match self {
            Warehouse::Local(root) => match std::fs::remove_file(root.join(rel)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(error("remove", rel, &e)),
            },
            Warehouse::Hdfs(h) => h.rt.block_on(async {
                match h.client.delete(&h.abs(rel), false).await {
                    Ok(_) | Err(hdfs_native::HdfsError::FileNotFound(_)) => Ok(()),
                    Err(e) => Err(error("remove", rel, &e)),
                }
            }),
        }
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
    WarehouseError {
        op,
        path: path.to_owned(),
        message: e.to_string(),
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
        wh.remove("a/.tmp2").unwrap();
        wh.remove("a/.tmp2").unwrap();
    }
}
