//! Running the service: gRPC (with health and reflection), metrics,
//! graceful shutdown, and the limits of each listener ([`super::limits`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use kms_proto::proto;

use super::KmsState;
use super::cork::CorkedStream;
use super::grpc::KmsService;
use super::limits::{BudgetLayer, Limits, RequestBudget};
use super::peers::PeerTable;

/// How a listener is run.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// Largest gRPC request message.
    pub max_request_bytes: usize,
    /// Connection, stream, time and memory limits.
    pub limits: Limits,
    /// Serve TLS with a certificate issued by the root CA for these names.
    pub tls_names: Option<Vec<String>>,
}

impl ListenerConfig {
    /// Plaintext with the default limits.
    pub fn plaintext(max_request_bytes: usize) -> Self {
        ListenerConfig {
            max_request_bytes,
            limits: Limits::default(),
            tls_names: None,
        }
    }
}

/// Serves gRPC on `listener` until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<KmsState>,
    max_request_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    serve_with(
        listener,
        state,
        &ListenerConfig::plaintext(max_request_bytes),
        shutdown,
    )
    .await
}

/// [`serve`], optionally over TLS with a certificate issued by the root CA
/// for `tls_names`.
pub async fn serve_with_tls(
    listener: TcpListener,
    state: Arc<KmsState>,
    max_request_bytes: usize,
    tls_names: Option<Vec<String>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let cfg = ListenerConfig {
        tls_names,
        ..ListenerConfig::plaintext(max_request_bytes)
    };
    serve_with(listener, state, &cfg, shutdown).await
}

/// Accepted connections, each holding one of the listener's slots and one
/// of its address's share, and closed once no request has been in flight
/// for `limits.idle_timeout_secs`; past either limit, new connections are
/// closed at once.
fn limited_incoming(
    listener: TcpListener,
    limits: &Limits,
    state: Arc<KmsState>,
) -> impl tokio_stream::Stream<Item = std::io::Result<CorkedStream>> {
    let max = limits.max_connections;
    let idle = Limits::secs(limits.idle_timeout_secs);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let peers = PeerTable::new(
        limits.max_connections_per_ip,
        limits.max_buffered_request_bytes_per_ip,
    );
    TcpListenerStream::new(listener).filter_map(move |s| {
        let s = match s {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let ip = s.peer_addr().ok()?.ip();
        let Some(peer) = peers.admit(ip) else {
            if state.refusal_log.allow() {
                tracing::warn!(%ip, "per-address connection limit reached: closing a new connection");
            }
            return None;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if state.refusal_log.allow() {
                tracing::warn!("connection limit ({max}) reached: closing a new connection");
            }
            return None;
        };
        // Small request/response pairs: without TCP_NODELAY, Nagle and
        // delayed ACKs add ~40 ms stalls under load.
        let _ = s.set_nodelay(true);
        Some(Ok(CorkedStream::new(s)
            .with_idle_timeout(idle)
            .holding(slot)
            .of_peer(peer)))
    })
}

/// Serves gRPC (kms.v1, health, reflection v1 and v1alpha) with `cfg`'s
/// limits until `shutdown` resolves.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<KmsState>,
    cfg: &ListenerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let limits = &cfg.limits;
    limits.validate()?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<proto::kms_server::KmsServer<KmsService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| e.to_string())?;
    // Older clients (grpcio's reflection client, older grpcurl, GUI
    // clients) speak only v1alpha.
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| e.to_string())?;
    let tls_cert = match &cfg.tls_names {
        Some(names) => Some(
            state
                .keys
                .tls_server_cert(names)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let svc = proto::kms_server::KmsServer::new(KmsService::new(state.clone()))
        .max_decoding_message_size(cfg.max_request_bytes)
        .max_encoding_message_size(1024 * 1024);
    let incoming = limited_incoming(listener, limits, state);
    let budget = RequestBudget::new(
        limits.max_buffered_request_bytes,
        Limits::secs(limits.request_timeout_secs),
    );
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(Limits::secs(limits.keepalive_interval_secs)))
        .http2_keepalive_timeout(Some(Limits::secs(limits.keepalive_timeout_secs)))
        .max_connection_age(Limits::secs(limits.max_connection_age_secs))
        .timeout(Limits::secs(limits.handler_timeout_secs));
    if let Some((cert, key)) = tls_cert {
        let identity = tonic::transport::Identity::from_pem(cert, key.as_bytes());
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| format!("TLS: {e}"))?;
    }
    builder
        .layer(BudgetLayer(budget))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// Serves Prometheus metrics on `addr` (HTTP/1.1), with the connection,
/// header and time limits of `limits`.
pub async fn serve_metrics(
    addr: SocketAddr,
    state: Arc<KmsState>,
    limits: &Limits,
) -> Result<(), String> {
    use axum::routing::get;
    let s = state.clone();
    // The key attestation results (EAR) are signed with, as a JWK set, for
    // relying parties that fetch it rather than read it from GetMeta.
    let jwks = state.ear.jwks().to_string();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let s = s.clone();
                async move { s.render_metrics() }
            }),
        )
        .route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { ([(http::header::CONTENT_TYPE, "application/json")], jwks) }
            }),
        );
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    serve_http1(l, app, limits, state).await
}

/// A plain HTTP/1.1 server for small operator endpoints, with limits: a
/// slot per connection, a deadline for each request's headers, and a
/// bound on each connection's life.
pub async fn serve_http1(
    listener: TcpListener,
    app: axum::Router,
    limits: &Limits,
    state: Arc<KmsState>,
) -> Result<(), String> {
    limits.validate()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let peers = PeerTable::new(limits.max_connections_per_ip, 1);
    let header_timeout = Limits::secs(limits.request_timeout_secs);
    let life = Limits::secs(limits.max_connection_age_secs);
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                if state.refusal_log.allow() {
                    tracing::warn!("accept: {e}");
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(peer) = peers.admit(addr.ip()) else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(life, conn).await;
            drop((slot, peer));
        });
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
