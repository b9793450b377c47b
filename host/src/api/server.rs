//! The HTTP/1 accept loop (hyper), with the limits a daemon on the internet
//! needs: a cap on connections (by default derived from the descriptor
//! limit, so a lowered `ulimit -n` lowers it), a header-read timeout, an
//! idle timeout (no bytes either way), and hyper's own caps on header size
//! set above the API's (which answer with the JSON error body). When
//! descriptors run out anyway, accepting pauses for a moment and resumes.
//! Graceful shutdown: stop accepting, let requests in flight finish.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// hyper's own cap on a request's head (start line and headers): above the
/// API's `max_header_bytes`, so that one answers first, with its JSON body;
/// beyond this hyper answers 431 with an empty body.
pub const LIBRARY_MAX_HEADER_BYTES: usize = 128 << 10;

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a client has to send a request's head, counted from when the
    /// connection is ready for it (so it also ends idle keep-alive
    /// connections).
    pub header_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed
    /// (a client that stopped reading its response, a stalled upload).
    pub idle_timeout: Duration,
    /// Connections served at once; more are refused (accepted and closed).
    pub max_connections: usize,
}

/// The default connection cap: three quarters of the descriptors left
/// after 64 kept for the daemon's own files, sockets and plugins.
pub fn default_max_connections() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    };
    let soft = usize::try_from(soft).unwrap_or(usize::MAX).min(1 << 20);
    (soft.saturating_sub(64) * 3 / 4).clamp(8, 65_536)
}

/// A stream that fails once no byte moved either way for `limit` (to
/// within a quarter of it). Bytes moving only set a flag: the deadline is
/// a timer ticking every quarter of `limit`, so a busy connection reads
/// no clock and moves no timer per read or write (both were measurable
/// per request); four ticks in a row without a byte close it.
struct Idle {
    inner: TcpStream,
    tick: Duration,
    deadline: Pin<Box<Sleep>>,
    moved: bool,
    idle_ticks: u8,
}

/// Ticks without a byte that make a connection idle.
const IDLE_TICKS: u8 = 4;

impl Idle {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        let tick = limit / u32::from(IDLE_TICKS);
        Idle {
            inner,
            tick,
            deadline: Box::pin(tokio::time::sleep(tick)),
            moved: false,
            idle_ticks: 0,
        }
    }

    fn moved(&mut self) {
        self.moved = true;
    }

    /// Polls the ticks (registering the waker); true once idle for
    /// `IDLE_TICKS` of them.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.deadline.as_mut().poll(cx).is_ready() {
            if std::mem::take(&mut self.moved) {
                self.idle_ticks = 0;
            } else {
                self.idle_ticks += 1;
                if self.idle_ticks >= IDLE_TICKS {
                    return true;
                }
            }
            let next = Instant::now() + self.tick;
            self.deadline.as_mut().reset(next);
        }
        false
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "idle connection closed")
}

impl AsyncRead for Idle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Idle {
    /// The outcome of a write: progress resets the deadline; a write that
    /// cannot go on fails once the deadline passed.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Idle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then lets the
/// connections in flight finish their requests (at most `drain`).
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> io::Result<()>
where
    S: tower_service::Service<
            Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(LIBRARY_MAX_HEADER_BYTES)
        .max_buf_size(LIBRARY_MAX_HEADER_BYTES + (16 << 10))
        .keep_alive(true);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = crate::api::metrics::ConnectionMetrics::get();
    tokio::pin!(shutdown);
    let mut accept_errors_logged = tokio::time::Instant::now() - Duration::from_secs(60);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let accepted = match accepted {
            Ok(_) if crate::faults::fires("accept_error") => {
                Err(io::Error::from_raw_os_error(libc::EMFILE))
            }
            other => other,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: pause accepting for a moment;
                // the connections wait in the backlog.
                metrics.accept_errors.increment(1);
                if accept_errors_logged.elapsed() >= Duration::from_secs(10) {
                    accept_errors_logged = tokio::time::Instant::now();
                    tracing::warn!("cannot accept connections ({e}): pausing 100 ms");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // At the cap: refused (closed at once).
            metrics.refused.increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (service, builder, mut stop) = (service.clone(), builder.clone(), stop_rx.clone());
        metrics.open.increment(1.0);
        tokio::spawn(async move {
            let io = TokioIo::new(Idle::new(stream, limits.idle_timeout));
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut service = service.clone();
                    async move { service.call(req.map(axum::body::Body::new)).await }
                });
            let conn = builder.serve_connection(io, svc);
            tokio::pin!(conn);
            let stopping = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopping => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            crate::api::metrics::ConnectionMetrics::get()
                .open
                .decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection gives its slot back when it is done.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(drain, slots.acquire_many(all)).await;
    Ok(())
}
