//! Write coalescing for accepted connections.
//!
//! hyper writes a gRPC answer as HEADERS+DATA and then, often from another
//! worker's poll, a 10-byte trailers frame; each `writev` on a TCP socket is
//! a segment, a wake-up of the peer and a system call on both sides. This
//! wrapper buffers writes and, on a flush, yields to the scheduler once
//! before sending, so frames queued in the same scheduling round leave in a
//! single write. Nagle's algorithm stays off (no delayed-ACK stalls): the
//! delay is one scheduler turn, not a timer.
//!
//! It also carries the listener's per-connection limits: the connection's
//! slots (global and its address's, released when the connection closes)
//! and the idle timeout: once no request has been in flight for that long
//! (see [`super::peers::Activity`]), reads fail and the connection closes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tonic::transport::server::Connected;

use super::peers::{Activity, PeerConn, PeerSlot};

/// Buffered bytes above which a write goes out without waiting for a flush.
const LIMIT: usize = 64 * 1024;

/// A TCP stream whose writes leave in as few segments as the scheduler allows.
pub struct CorkedStream {
    inner: TcpStream,
    buf: Vec<u8>,
    sent: usize,
    yielded: bool,
    activity: std::sync::Arc<Activity>,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    peer: Option<PeerSlot>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl CorkedStream {
    /// Wraps an accepted stream.
    pub fn new(inner: TcpStream) -> Self {
        CorkedStream {
            inner,
            buf: Vec::new(),
            sent: 0,
            yielded: false,
            activity: Default::default(),
            idle: None,
            peer: None,
            _slot: None,
        }
    }

    /// Closes the connection (reads fail) once no request has been in
    /// flight for `timeout`.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle = Some((timeout, Box::pin(tokio::time::sleep(timeout))));
        self
    }

    /// Holds `slot` (a connection-limit permit) for the connection's life.
    pub fn holding(mut self, slot: OwnedSemaphorePermit) -> Self {
        self._slot = Some(slot);
        self
    }

    /// Holds the connection's place in its address's share.
    pub fn of_peer(mut self, peer: PeerSlot) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Whether the idle timeout has passed with no request in flight. Polls
    /// the timer, so the task wakes when it may have.
    fn idle_over(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((timeout, sleep)) = &mut self.idle else {
            return false;
        };
        while sleep.as_mut().poll(cx).is_ready() {
            let now = tokio::time::Instant::now();
            match self.activity.idle_at(*timeout) {
                Some(at) if at <= now => return true,
                Some(at) => sleep.as_mut().reset(at),
                None => sleep.as_mut().reset(now + *timeout),
            }
        }
        false
    }

    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl Connected for CorkedStream {
    type ConnectInfo = PeerConn;
    fn connect_info(&self) -> PeerConn {
        PeerConn {
            remote: self.inner.peer_addr().ok(),
            activity: self.activity.clone(),
            bytes: self.peer.as_ref().map(PeerSlot::bytes),
        }
    }
}

impl AsyncRead for CorkedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.idle_over(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request for too long",
            )));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CorkedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if me.buf.len() + total > LIMIT {
            // Backpressure: a full buffer goes out before more is taken.
            std::task::ready!(me.poll_drain(cx))?;
            if total > LIMIT {
                // Bulk data gains nothing from buffering.
                return Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            me.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.buf.is_empty() {
            return Pin::new(&mut me.inner).poll_flush(cx);
        }
        if !me.yielded {
            me.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        std::task::ready!(me.poll_drain(cx))?;
        me.yielded = false;
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        std::task::ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (CorkedStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (CorkedStream::new(server), client)
    }

    fn nothing_to_read(peer: &TcpStream) -> bool {
        let mut b = [0u8; 64];
        matches!(peer.try_read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes stay buffered through the first flush poll (one scheduler
    /// turn) and leave, in order, on the second.
    #[tokio::test]
    async fn a_flush_waits_one_turn_then_sends_everything_in_order() {
        let (mut s, peer) = pair().await;
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            Pin::new(&mut s).poll_write(&mut cx, b"HEADERS+DATA,"),
            Poll::Ready(Ok(13))
        ));
        assert!(Pin::new(&mut s).poll_flush(&mut cx).is_pending());
        // Frames queued during that turn join the same write.
        let parts = [io::IoSlice::new(b"trai"), io::IoSlice::new(b"lers")];
        assert!(matches!(
            Pin::new(&mut s).poll_write_vectored(&mut cx, &parts),
            Poll::Ready(Ok(8))
        ));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(nothing_to_read(&peer), "nothing leaves before the flush");
        assert!(matches!(
            Pin::new(&mut s).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        let mut got = vec![0u8; 21];
        let mut peer = peer;
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"HEADERS+DATA,trailers");
        // An empty buffer flushes at once.
        assert!(matches!(
            Pin::new(&mut s).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
    }

    /// A peer that sends nothing is cut off after the idle timeout.
    #[tokio::test]
    async fn an_idle_peer_is_cut_off() {
        let (s, _peer) = pair().await;
        let mut s = s.with_idle_timeout(std::time::Duration::from_millis(50));
        let mut b = [0u8; 8];
        let err = s.read(&mut b).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    /// Bytes that are not requests (HTTP/2 PING answers, SETTINGS) do not
    /// keep a connection; a request in flight does.
    #[tokio::test]
    async fn only_requests_keep_a_connection() {
        let (s, mut peer) = pair().await;
        let mut s = s.with_idle_timeout(std::time::Duration::from_millis(200));
        let chatter = tokio::spawn(async move {
            loop {
                if peer.write_all(b"ping").await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        });
        let t = std::time::Instant::now();
        let mut b = [0u8; 64];
        let err = loop {
            if let Err(e) = s.read(&mut b).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= std::time::Duration::from_millis(200));
        chatter.abort();

        let (s, _peer) = pair().await;
        let mut s = s.with_idle_timeout(std::time::Duration::from_millis(50));
        let request = s.connect_info().activity.start();
        let read =
            tokio::time::timeout(std::time::Duration::from_millis(300), s.read(&mut b)).await;
        assert!(
            read.is_err(),
            "the connection closed with a request in flight"
        );
        drop(request);
        assert_eq!(
            s.read(&mut b).await.unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    }

    /// Large writes, many small ones past the limit, and shutdown all
    /// deliver every byte in order.
    #[tokio::test]
    async fn large_and_many_writes_and_shutdown_deliver_everything() {
        let (mut s, mut peer) = pair().await;
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.unwrap();
            all
        });
        let mut want = Vec::new();
        for chunk in big.chunks(1000) {
            s.write_all(chunk).await.unwrap();
            want.extend_from_slice(chunk);
        }
        s.flush().await.unwrap();
        s.write_all(&big).await.unwrap();
        want.extend_from_slice(&big);
        s.write_all(b"tail").await.unwrap();
        want.extend_from_slice(b"tail");
        s.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), want);
    }
}
