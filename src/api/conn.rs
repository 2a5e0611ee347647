//! Time bounds on one REST connection, before and between requests.
//!
//! Rules:
//! 1. A connection that has sent no complete request head is closed
//!    `header_timeout` after its first byte, or after it opened if it sent
//!    none: a silent or slow client cannot hold a place of
//!    `--max-connections` for longer.
//! 2. A keep-alive connection with no request in progress and no byte
//!    received is closed `idle_timeout` after its last response.
//! 3. A request in progress (waiting on a reply, say) is never cut by
//!    either bound; its own deadlines are the handler's.
//!
//! hyper's own header timer is not used: it runs from the end of every
//! response, so it would also be the idle bound.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Why a connection was closed by its watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Rule 1.
    Header,
    /// Rule 2.
    Idle,
}

/// What a connection did, as its watcher sees it (shared with the IO and
/// the service; the API runtime is one thread, but tasks must be `Send`).
pub struct ConnState {
    epoch: Instant,
    /// Bytes arrived that are not yet a complete request head, since when.
    partial: AtomicBool,
    partial_since_ns: AtomicU64,
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// When the last response ended (or the connection opened).
    idle_since_ns: AtomicU64,
    /// Has a request been seen? (The first wait is a header wait.)
    served: AtomicBool,
}

impl ConnState {
    pub fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            epoch: Instant::now(),
            partial: AtomicBool::new(false),
            partial_since_ns: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since_ns: AtomicU64::new(0),
            served: AtomicBool::new(false),
        })
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 && !self.partial.swap(true, Ordering::Relaxed) {
            self.partial_since_ns.store(self.now_ns(), Ordering::Relaxed);
        }
    }

    /// A request head was read: the service runs (rule 3).
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.partial.store(false, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the connection expires if nothing happens, and why; `None`
    /// while a request is in progress.
    pub fn deadline(&self, header_timeout: Duration, idle_timeout: Duration) -> Option<(Instant, Expired)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        if self.partial.load(Ordering::Relaxed) {
            return Some((self.at(self.partial_since_ns.load(Ordering::Relaxed)) + header_timeout, Expired::Header));
        }
        let since = self.at(self.idle_since_ns.load(Ordering::Relaxed));
        match self.served.load(Ordering::Relaxed) {
            true => Some((since + idle_timeout, Expired::Idle)),
            false => Some((since + header_timeout, Expired::Header)),
        }
    }
}

/// A request being answered; dropping it ends it (rule 2's clock starts).
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.idle_since_ns.store(self.0.now_ns(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that tells its [`ConnState`] when bytes arrive.
pub struct Watched<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, state: Arc<ConnState>) -> Watched<T> {
        Watched { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Drives `conn` until it ends or its [`ConnState`] expires (rules 1, 2).
pub async fn watch<F: std::future::Future>(conn: F, state: &ConnState, header_timeout: Duration, idle_timeout: Duration) -> Result<F::Output, Expired> {
    tokio::pin!(conn);
    loop {
        let deadline = state.deadline(header_timeout, idle_timeout);
        let wake = deadline.map_or(Instant::now() + idle_timeout, |(at, _)| at);
        tokio::select! {
            out = conn.as_mut() => return Ok(out),
            _ = tokio::time::sleep_until(wake.into()) => {
                // Re-read: the state may have moved on while we slept.
                if let Some((at, why)) = state.deadline(header_timeout, idle_timeout) {
                    if at <= Instant::now() {
                        return Err(why);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_connection() {
        let (h, i) = (Duration::from_secs(10), Duration::from_secs(30));
        let s = ConnState::new();
        let (at, why) = s.deadline(h, i).unwrap();
        assert_eq!(why, Expired::Header, "a new connection waits for a head");
        assert!(at <= Instant::now() + h);
        s.bytes_arrived();
        assert_eq!(s.deadline(h, i).unwrap().1, Expired::Header);
        let request = s.request_started();
        assert!(s.deadline(h, i).is_none(), "rule 3");
        s.bytes_arrived(); // a body: not a new head
        assert!(s.deadline(h, i).is_none());
        drop(request);
        assert_eq!(s.deadline(h, i).unwrap().1, Expired::Idle);
        s.bytes_arrived();
        assert_eq!(s.deadline(h, i).unwrap().1, Expired::Header, "the next request's head");
    }
}
