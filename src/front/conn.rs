//! What one client connection may hold: a slot among `[server]
//! max_connections`, `header_timeout` to send a complete request head, and
//! `idle_timeout` with no request in progress. Without these, connections
//! that open and never finish a request (slow-loris) pile up for ever.
//!
//! A request is "in progress" from the moment hyper hands us its head until
//! its response body is finished or dropped, so a long tool call or an open
//! SSE stream is never cut; only connections doing nothing are closed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The connection limits of `[server]`, shared by the accept loop.
#[derive(Clone)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// One permit per open connection; a connection holds its own until it ends.
    slots: Arc<Semaphore>,
}

impl ConnLimits {
    pub fn new(header_timeout: Duration, idle_timeout: Duration, max_connections: usize) -> Self {
        Self {
            header_timeout,
            idle_timeout,
            max_connections,
            slots: Arc::new(Semaphore::new(max_connections)),
        }
    }

    /// A slot for a new connection, or `None` at the cap.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

/// Answers a connection past the cap with 503 and closes it, without
/// reading its request: the caller learns at once instead of waiting in a
/// queue, and costs us one small write.
pub async fn refuse(mut stream: TcpStream, max_connections: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = format!(
        "{{\"error\":\"the gateway is at its limit of {max_connections} open connections (server.max_connections); retry shortly\"}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent before closing: closing a socket with
        // unread data resets it, and the client might not see our answer.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Why a connection was closed by its watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// It did not send a complete request head within `header_timeout`.
    Header,
    /// It had no request in progress for `idle_timeout`.
    Idle,
}

/// What one connection is doing, shared by its socket wrapper, its service
/// and its watchdog.
pub struct Activity {
    state: Mutex<State>,
    /// Wakes the watchdog when the state changes (one waiter: `notify_one`
    /// keeps a permit, so no change is missed).
    changed: Notify,
}

struct State {
    /// Requests between their head and the end of their response body.
    active: usize,
    /// With nothing in progress: since when a request head has been
    /// expected (bytes arrived, or the connection just opened).
    awaiting_head: Option<Instant>,
    /// With nothing in progress: since when.
    idle_since: Instant,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            state: Mutex::new(State {
                active: 0,
                // A connection that sends nothing at all is as stuck as one
                // that sends half a request line.
                awaiting_head: Some(now),
                idle_since: now,
            }),
            changed: Notify::new(),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_one();
        r
    }

    /// A request head arrived: the request is in progress until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InProgress {
        self.with(|s| {
            s.active += 1;
            s.awaiting_head = None;
        });
        InProgress(self.clone())
    }

    fn bytes_read(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.active == 0 && s.awaiting_head.is_none() {
            s.awaiting_head = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// Resolves when the connection has been stuck or idle too long.
    pub async fn expired(&self, header_timeout: Duration, idle_timeout: Duration) -> Expired {
        loop {
            let deadline = {
                let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                match (s.active, s.awaiting_head) {
                    (0, Some(since)) => Some((since + header_timeout, Expired::Header)),
                    (0, None) => Some((s.idle_since + idle_timeout, Expired::Idle)),
                    _ => None,
                }
            };
            match deadline {
                None => self.changed.notified().await,
                Some((at, why)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {
                            // The state may have changed just as the timer fired.
                            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                            let still = s.active == 0
                                && (why == Expired::Header) == s.awaiting_head.is_some();
                            if still {
                                return why;
                            }
                        }
                        _ = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// A request in progress on a connection; dropped with its response body
/// (or with the request, if it was abandoned before answering).
pub struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.with(|s| {
            s.active = s.active.saturating_sub(1);
            if s.active == 0 {
                s.idle_since = Instant::now();
            }
        });
    }
}

/// A response body that keeps its request counted as in progress until it
/// has been sent (or the client went away).
pub struct TrackedBody<B, G = InProgress> {
    inner: B,
    _in_progress: G,
}

impl<B, G> TrackedBody<B, G> {
    pub fn new(inner: B, in_progress: G) -> Self {
        Self {
            inner,
            _in_progress: in_progress,
        }
    }
}

impl<B: HttpBody + Unpin, G: Unpin> HttpBody for TrackedBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client socket, noting when bytes arrive while nothing is in progress
/// (the start of a request head the header timeout then applies to).
pub struct Watched<IO> {
    inner: IO,
    activity: Arc<Activity>,
}

impl<IO> Watched<IO> {
    pub fn new(inner: IO, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_expires_only_with_nothing_in_progress() {
        let a = Activity::new();
        let header = Duration::from_millis(100);
        let idle = Duration::from_millis(400);
        // Opened and silent: the header timeout.
        assert_eq!(a.expired(header, idle).await, Expired::Header);
        // A request in progress holds it open however long it takes...
        let req = a.begin();
        let waited = tokio::time::timeout(idle * 2, a.expired(header, idle)).await;
        assert!(waited.is_err());
        // ...and once it is answered, the idle timeout runs.
        drop(req);
        let start = Instant::now();
        assert_eq!(a.expired(header, idle).await, Expired::Idle);
        assert!(start.elapsed() >= idle);
        // Bytes of a new head restart the header timeout.
        a.bytes_read();
        let start = Instant::now();
        assert_eq!(a.expired(header, idle).await, Expired::Header);
        assert!(start.elapsed() < idle);
    }
}
