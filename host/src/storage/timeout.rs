//! An [`ObjectStore`] whose every request is bounded by a timeout: a call,
//! each page of a listing, each chunk of a streamed read and each part of
//! a multipart upload must answer within it, or fail (never hang); a read
//! of several ranges gets the timeout once per range. A whole operation
//! made of many calls (replaying a Delta log of thousands of files) has no
//! bound of its own: it progresses as long as each call does. Each call
//! that answers reports progress (the writer's heartbeat). A local file
//! read (`GetResultPayload::File`) is plain file I/O, not bounded here.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Called after each call that answered.
pub type Progress = Arc<dyn Fn() + Send + Sync>;

/// `inner`, with every request bounded by `timeout`.
pub struct TimeoutStore {
    inner: Arc<dyn ObjectStore>,
    timeout: Duration,
    progress: Option<Progress>,
}

impl TimeoutStore {
    pub fn new(inner: Arc<dyn ObjectStore>, timeout: Duration) -> Self {
        TimeoutStore {
            inner,
            timeout,
            progress: None,
        }
    }

    /// Calls `progress` after each call that answered.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    fn error(&self, op: &'static str, location: impl fmt::Display) -> object_store::Error {
        object_store::Error::Generic {
            store: "timeout",
            source: format!(
                "{op} {location}: no answer within {}",
                humantime::format_duration(self.timeout)
            )
            .into(),
        }
    }

    async fn bound<T>(
        &self,
        op: &'static str,
        location: impl fmt::Display,
        f: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => {
                if let Some(p) = &self.progress {
                    p();
                }
                r
            }
            Err(_) => Err(self.error(op, location)),
        }
    }

    /// Each item of `stream` within the timeout; a late one ends it with an
    /// error.
    fn bound_stream<T: Send + 'static>(
        &self,
        op: &'static str,
        location: String,
        stream: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        let timeout = self.timeout;
        let progress = self.progress.clone();
        let late = self.error(op, &location);
        futures::stream::unfold(Some((stream, Some(late))), move |state| {
            let progress = progress.clone();
            async move {
                let (mut stream, mut late) = state?;
                match tokio::time::timeout(timeout, stream.next()).await {
                    Ok(Some(item)) => {
                        if let Some(p) = &progress {
                            p();
                        }
                        Some((item, Some((stream, late))))
                    }
                    Ok(None) => None,
                    Err(_) => late.take().map(|e| (Err(e), None)),
                }
            }
        })
        // A consumer may poll again after the end (delta-rs's kernel does).
        .fuse()
        .boxed()
    }
}

/// A multipart upload whose parts, completion and abort are each bounded.
#[derive(Debug)]
struct BoundedUpload {
    inner: Box<dyn MultipartUpload>,
    timeout: Duration,
    location: String,
}

impl BoundedUpload {
    fn late(timeout: Duration, op: &str, location: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "timeout",
            source: format!(
                "{op} {location}: no answer within {}",
                humantime::format_duration(timeout)
            )
            .into(),
        }
    }
}

#[async_trait]
impl MultipartUpload for BoundedUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        let part = self.inner.put_part(data);
        let (timeout, location) = (self.timeout, self.location.clone());
        Box::pin(async move {
            tokio::time::timeout(timeout, part)
                .await
                .unwrap_or_else(|_| Err(Self::late(timeout, "upload part", &location)))
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let (timeout, location) = (self.timeout, self.location.clone());
        tokio::time::timeout(timeout, self.inner.complete())
            .await
            .unwrap_or_else(|_| Err(Self::late(timeout, "complete upload", &location)))
    }

    async fn abort(&mut self) -> Result<()> {
        let (timeout, location) = (self.timeout, self.location.clone());
        tokio::time::timeout(timeout, self.inner.abort())
            .await
            .unwrap_or_else(|_| Err(Self::late(timeout, "abort upload", &location)))
    }
}

impl fmt::Debug for TimeoutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeoutStore({}, {:?})", self.inner, self.timeout)
    }
}

impl fmt::Display for TimeoutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (each call within {:?})", self.inner, self.timeout)
    }
}

#[async_trait]
impl ObjectStore for TimeoutStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.bound(
            "put",
            location,
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self
            .bound(
                "multipart upload",
                location,
                self.inner.put_multipart_opts(location, opts),
            )
            .await?;
        Ok(Box::new(BoundedUpload {
            inner: upload,
            timeout: self.timeout,
            location: location.to_string(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let mut got = self
            .bound("get", location, self.inner.get_opts(location, options))
            .await?;
        if let GetResultPayload::Stream(s) = got.payload {
            got.payload =
                GetResultPayload::Stream(self.bound_stream("read", location.to_string(), s));
        }
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // One request per range at worst: the timeout once per range.
        let bound = self.timeout * ranges.len().max(1) as u32;
        match tokio::time::timeout(bound, self.inner.get_ranges(location, ranges)).await {
            Ok(r) => {
                if let Some(p) = &self.progress {
                    p();
                }
                r
            }
            Err(_) => Err(self.error("get ranges", location)),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let deleted = self.inner.delete_stream(locations);
        self.bound_stream("delete", String::new(), deleted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let at = prefix.map(|p| p.to_string()).unwrap_or_default();
        let listed = self.inner.list(prefix);
        self.bound_stream("list", at, listed)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let at = prefix.map(|p| p.to_string()).unwrap_or_default();
        let listed = self.inner.list_with_offset(prefix, offset);
        self.bound_stream("list", at, listed)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let at = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.bound("list", at, self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.bound("copy", from, self.inner.copy_opts(from, to, options))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.bound("rename", from, self.inner.rename_opts(from, to, options))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    /// A store whose calls never answer.
    #[derive(Debug)]
    struct Hung;

    impl fmt::Display for Hung {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("hung")
        }
    }

    #[async_trait]
    impl ObjectStore for Hung {
        async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> Result<PutResult> {
            std::future::pending().await
        }
        async fn put_multipart_opts(
            &self,
            _: &Path,
            _: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            std::future::pending().await
        }
        async fn get_opts(&self, _: &Path, _: GetOptions) -> Result<GetResult> {
            std::future::pending().await
        }
        fn delete_stream(
            &self,
            _: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            futures::stream::pending().boxed()
        }
        fn list(&self, _: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            futures::stream::pending().boxed()
        }
        async fn list_with_delimiter(&self, _: Option<&Path>) -> Result<ListResult> {
            std::future::pending().await
        }
        async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> Result<()> {
            std::future::pending().await
        }
    }

    #[test]
    fn every_call_of_a_hung_store_fails_within_the_timeout() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = TimeoutStore::new(Arc::new(Hung), Duration::from_millis(50));
            let p = Path::from("a/b");
            let e = store.get(&p).await.unwrap_err();
            assert!(e.to_string().contains("no answer within 50ms"), "{e}");
            assert!(store.put(&p, Bytes::new().into()).await.is_err());
            assert!(store.list_with_delimiter(None).await.is_err());
            let mut listed = store.list(Some(&p));
            assert!(listed.next().await.unwrap().is_err());
            assert!(listed.next().await.is_none());
            assert!(
                listed.next().await.is_none(),
                "polled after its end, it stays ended"
            );
        });
    }
}
