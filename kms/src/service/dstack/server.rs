//! Connections of the dstack-compatible listener, with the `[limits]` every
//! listener has: a slot per connection (`max_connections`) and a share per
//! address (`max_connections_per_ip`), the TLS handshake and each request's
//! headers within `request_timeout_secs`, a connection closed once no
//! request has been in flight for `idle_timeout_secs`, none living longer
//! than `max_connection_age_secs`, and HTTP/2 streams per connection
//! bounded (`max_concurrent_streams`).

use std::future::Future;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tonic::transport::server::Connected;

use super::{Conn, DstackFront, prpc};
use crate::service::cork::CorkedStream;
use crate::service::limits::Limits;
use crate::service::peers::PeerTable;

/// Serves dstack's prpc over TLS on `listener` with `tls` until `shutdown`
/// resolves; connections still open are then asked to finish.
pub async fn serve(
    listener: TcpListener,
    front: Arc<DstackFront>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let limits = front.limits.clone();
    limits.validate()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let peers = PeerTable::new(
        limits.max_connections_per_ip,
        limits.max_buffered_request_bytes_per_ip,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    if front.state.refusal_log.allow() {
                        tracing::warn!("dstack listener accept: {e}");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(peer) = peers.admit(addr.ip()) else {
            if front.state.refusal_log.allow() {
                tracing::warn!(ip = %addr.ip(), "dstack listener: per-address connection limit reached");
            }
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if front.state.refusal_log.allow() {
                tracing::warn!("dstack listener: connection limit reached");
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let stream = CorkedStream::new(tcp)
            .with_idle_timeout(Limits::secs(limits.idle_timeout_secs))
            .holding(slot)
            .of_peer(peer);
        let info = stream.connect_info();
        let acceptor = acceptor.clone();
        let front = front.clone();
        let limits = limits.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let handshake = Limits::secs(limits.request_timeout_secs);
            let tls = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                Ok(Ok(t)) => t,
                _ => return,
            };
            let conn = Conn {
                client_cert: tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| Arc::new(c.to_vec())),
            };
            let svc = hyper::service::service_fn(move |req| {
                let front = front.clone();
                let conn = conn.clone();
                let in_flight = info.activity.start();
                let bytes = info.bytes.clone();
                async move {
                    let r = prpc::handle(front, conn, bytes, req).await;
                    drop(in_flight);
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(handshake)
                .max_buf_size(64 * 1024);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(limits.max_concurrent_streams)
                .keep_alive_interval(Limits::secs(limits.keepalive_interval_secs))
                .keep_alive_timeout(Limits::secs(limits.keepalive_timeout_secs));
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            // Asked to finish at the end of its life or at shutdown; cut
            // once its requests have had their handling time.
            let deadline = tokio::time::sleep(Limits::secs(limits.max_connection_age_secs));
            tokio::pin!(deadline);
            let mut closing = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = &mut deadline => {
                        if closing {
                            break;
                        }
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                        deadline.as_mut().reset(
                            tokio::time::Instant::now() + Limits::secs(limits.handler_timeout_secs),
                        );
                    }
                    _ = stop.changed(), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                        deadline.as_mut().reset(
                            tokio::time::Instant::now() + Limits::secs(limits.handler_timeout_secs),
                        );
                    }
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}
