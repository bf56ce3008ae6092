//! Resource limits of the listeners: what one client, or many, can make the
//! service hold.
//!
//! The first review found that 400 HTTP/2 streams on one connection, each
//! sending most of a 256 KiB body and then stalling, held about 100 MiB for
//! ever. The defaults below bound every dimension of that:
//! - streams per connection (`max_concurrent_streams`), connections
//!   (`max_connections`, and `max_connections_per_ip` from one address);
//! - time: a whole request must arrive within `request_timeout_secs`, and
//!   be handled within `handler_timeout_secs`; a connection that sends
//!   no request for `idle_timeout_secs` is closed, HTTP/2 keep-alive pings
//!   close dead peers, and no connection lives longer than
//!   `max_connection_age_secs`;
//! - memory: the bytes of requests in flight (received, or decoded and
//!   being handled) share one global budget, `max_buffered_request_bytes`,
//!   and those of one address at most `max_buffered_request_bytes_per_ip`
//!   of it. A request that would exceed either is refused with
//!   RESOURCE_EXHAUSTED.
//!
//! The per-address shares assume clients connect directly; behind a proxy
//! that does not keep client addresses, raise them to the proxy's needs.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `[limits]` in `kms.toml`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Open connections (per listener); more are closed at once.
    pub max_connections: usize,
    /// Open connections from one IP address (per listener).
    pub max_connections_per_ip: usize,
    /// Seconds to receive a whole request.
    pub request_timeout_secs: u64,
    /// Seconds to receive and handle a request.
    pub handler_timeout_secs: u64,
    /// HTTP/2 keep-alive ping interval, seconds.
    pub keepalive_interval_secs: u64,
    /// Seconds to wait for a keep-alive answer before closing.
    pub keepalive_timeout_secs: u64,
    /// Seconds without a request in flight before a connection closes.
    pub idle_timeout_secs: u64,
    /// Longest life of a connection, seconds (then it is asked to go away).
    pub max_connection_age_secs: u64,
    /// Bytes of requests in flight, all connections together.
    pub max_buffered_request_bytes: usize,
    /// Bytes of requests in flight from one IP address.
    pub max_buffered_request_bytes_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_streams: 64,
            max_connections: 1024,
            max_connections_per_ip: 128,
            request_timeout_secs: 10,
            handler_timeout_secs: 30,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 10,
            idle_timeout_secs: 120,
            max_connection_age_secs: 3600,
            max_buffered_request_bytes: 64 * 1024 * 1024,
            max_buffered_request_bytes_per_ip: 16 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Rejects values that would disable a limit.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(&str, u64); 11] = [
            (
                "max_concurrent_streams",
                u64::from(self.max_concurrent_streams),
            ),
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            ("request_timeout_secs", self.request_timeout_secs),
            ("handler_timeout_secs", self.handler_timeout_secs),
            ("keepalive_interval_secs", self.keepalive_interval_secs),
            ("keepalive_timeout_secs", self.keepalive_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("max_connection_age_secs", self.max_connection_age_secs),
            (
                "max_buffered_request_bytes",
                self.max_buffered_request_bytes as u64,
            ),
            (
                "max_buffered_request_bytes_per_ip",
                self.max_buffered_request_bytes_per_ip as u64,
            ),
        ];
        for (name, v) in checks {
            if v == 0 {
                return Err(format!("limits.{name} must be greater than 0"));
            }
        }
        if self.handler_timeout_secs < self.request_timeout_secs {
            return Err(
                "limits.handler_timeout_secs must be at least limits.request_timeout_secs".into(),
            );
        }
        Ok(())
    }

    /// Seconds as a duration.
    pub fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }
}

/// The global budget of request bytes in flight.
#[derive(Clone, Debug)]
pub struct RequestBudget {
    permits: Arc<Semaphore>,
    total: usize,
    request_timeout: Duration,
}

impl RequestBudget {
    /// A budget of `bytes`, and the time a request has to arrive.
    pub fn new(bytes: usize, request_timeout: Duration) -> Self {
        let bytes = bytes.min(Semaphore::MAX_PERMITS);
        RequestBudget {
            permits: Arc::new(Semaphore::new(bytes)),
            total: bytes,
            request_timeout,
        }
    }

    /// Bytes of the budget in use now (for tests and metrics).
    pub fn in_use(&self) -> usize {
        self.total - self.permits.available_permits()
    }
}

/// What one request holds of the global budget and of its address's,
/// until it is handled.
type Held = Arc<Mutex<[Option<OwnedSemaphorePermit>; 2]>>;

fn keep(held: &Held, i: usize, p: OwnedSemaphorePermit) {
    let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
    match held[i].as_mut() {
        Some(h) => h.merge(p),
        None => held[i] = Some(p),
    }
}

/// A request body that draws its bytes from the budget and must arrive
/// before its deadline.
pub struct BudgetBody<B> {
    inner: B,
    budget: Arc<Semaphore>,
    peer_budget: Option<Arc<Semaphore>>,
    held: Held,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl<B> BudgetBody<B> {
    fn new(
        inner: B,
        budget: &RequestBudget,
        peer_budget: Option<Arc<Semaphore>>,
        held: Held,
    ) -> Self {
        BudgetBody {
            inner,
            budget: budget.permits.clone(),
            peer_budget,
            held,
            deadline: Box::pin(tokio::time::sleep(budget.request_timeout)),
            done: false,
        }
    }
}

impl<B> Body for BudgetBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        if !this.done && this.deadline.as_mut().poll(cx).is_ready() {
            this.done = true;
            return Poll::Ready(Some(Err(tonic::Status::deadline_exceeded(
                "the request was not received in time",
            ))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    if let Some(peer) = &this.peer_budget {
                        match peer.clone().try_acquire_many_owned(n) {
                            Ok(p) => keep(&this.held, 1, p),
                            Err(_) => {
                                this.done = true;
                                return Poll::Ready(Some(Err(tonic::Status::resource_exhausted(
                                    "this client holds too many request bytes; try again",
                                ))));
                            }
                        }
                    }
                    match this.budget.clone().try_acquire_many_owned(n) {
                        Ok(p) => keep(&this.held, 0, p),
                        Err(_) => {
                            this.done = true;
                            return Poll::Ready(Some(Err(tonic::Status::resource_exhausted(
                                "the service holds too many request bytes; try again",
                            ))));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(tonic::Status::from_error(e.into()))))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Tower layer: request bodies draw on the budgets (global and their
/// address's) and their deadline; the bytes stay counted until the response
/// is ready. Each request also marks its connection busy while it runs
/// (the idle timeout counts from the last request).
#[derive(Clone)]
pub struct BudgetLayer(pub RequestBudget);

impl<S> tower_layer::Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BudgetService {
            inner,
            budget: self.0.clone(),
        }
    }
}

/// See [`BudgetLayer`].
#[derive(Clone)]
pub struct BudgetService<S> {
    inner: S,
    budget: RequestBudget,
}

impl<S, ResBody> tower_service::Service<http::Request<tonic::body::Body>> for BudgetService<S>
where
    S: tower_service::Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let held: Held = Arc::new(Mutex::new([None, None]));
        let budget = self.budget.clone();
        let body_held = held.clone();
        let peer = super::peers::PeerConn::of(&req);
        let in_flight = peer.map(|p| p.activity.start());
        let peer_budget = peer.and_then(|p| p.bytes.clone());
        let req = req
            .map(|b| tonic::body::Body::new(BudgetBody::new(b, &budget, peer_budget, body_held)));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            // The request's bytes are released once it is handled.
            drop(held);
            drop(in_flight);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn defaults_are_valid_and_zero_is_refused() {
        Limits::default().validate().unwrap();
        let l = Limits {
            max_concurrent_streams: 0,
            ..Default::default()
        };
        assert_eq!(
            l.validate().unwrap_err(),
            "limits.max_concurrent_streams must be greater than 0"
        );
    }

    #[tokio::test]
    async fn bodies_draw_on_the_budget_until_released() {
        let budget = RequestBudget::new(100, Duration::from_secs(5));
        let held: Held = Arc::new(Mutex::new([None, None]));
        let body = BudgetBody::new(
            http_body_util::Full::new(Bytes::from(vec![0u8; 60])),
            &budget,
            None,
            held.clone(),
        );
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected.len(), 60);
        assert_eq!(budget.in_use(), 60);
        // A second body that would exceed the budget is refused.
        let body = BudgetBody::new(
            http_body_util::Full::new(Bytes::from(vec![0u8; 60])),
            &budget,
            None,
            Arc::new(Mutex::new([None, None])),
        );
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        drop(held);
        assert_eq!(budget.in_use(), 0);

        // An address's share runs out before the global budget does.
        let peer = Arc::new(Semaphore::new(50));
        let body = BudgetBody::new(
            http_body_util::Full::new(Bytes::from(vec![0u8; 60])),
            &budget,
            Some(peer.clone()),
            Arc::new(Mutex::new([None, None])),
        );
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            err.message(),
            "this client holds too many request bytes; try again"
        );
        assert_eq!((budget.in_use(), peer.available_permits()), (0, 50));
    }

    #[tokio::test]
    async fn a_stalled_body_misses_its_deadline() {
        let budget = RequestBudget::new(100, Duration::from_millis(50));
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stalled =
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let body = BudgetBody::new(stalled, &budget, None, Arc::new(Mutex::new([None, None])));
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
    }
}
