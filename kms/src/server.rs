//! Running the service: gRPC (with health and reflection), metrics,
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::audit::AuditLog;
use crate::challenge::Challenges;
use crate::config::Config;
use crate::keys::RootKeys;
use crate::metrics::Metrics;
use crate::platforms::Platforms;
use crate::proto;
use crate::service::{KmsService, KmsState};

/// Builds the shared state from a configuration and already-built plug-ins.
pub fn state(
    config: &Config,
    base: &Path,
    keys: RootKeys,
    platforms: Platforms,
) -> Result<Arc<KmsState>, String> {
    let data = base.join(&config.data_dir);
    let policy = policy::load(&config.policy, base).map_err(|e| e.to_string())?;
    let audit =
        AuditLog::open(&data.join(&config.audit_log)).map_err(|e| format!("audit log: {e}"))?;
    let images = match &config.image_registry {
        None => Default::default(),
        Some(p) => {
            let path = base.join(p);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            attest_core::image_registry::ImageRegistry::parse(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    Ok(Arc::new(KmsState {
        challenges: Challenges::new(keys.root_secret(), config.challenge_ttl_secs),
        keys,
        verifiers: platforms.verifiers,
        policy,
        kdf: config.kdf,
        audit: Some(audit),
        metrics: Metrics::default(),
        collateral_cache: platforms.collateral_cache,
        images,
        key_cache: Default::default(),
        verify_permits: tokio::sync::Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        ),
    }))
}

/// Serves gRPC on `listener` until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<KmsState>,
    max_request_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    serve_with_tls(listener, state, max_request_bytes, None, shutdown).await
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
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<proto::kms_server::KmsServer<KmsService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| e.to_string())?;
    let tls_cert = match &tls_names {
        Some(names) => Some(
            state
                .keys
                .tls_server_cert(names)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let svc = proto::kms_server::KmsServer::new(KmsService::new(state))
        .max_decoding_message_size(max_request_bytes)
        .max_encoding_message_size(1024 * 1024);
    // Small request/response pairs: without TCP_NODELAY, Nagle and delayed
    // ACKs add ~40 ms stalls under load.
    let incoming = TcpListenerStream::new(listener).map(|s| {
        s.map(|s| {
            let _ = s.set_nodelay(true);
            crate::cork::CorkedStream::new(s)
        })
    });
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = tls_cert {
        let identity = tonic::transport::Identity::from_pem(cert, key.as_bytes());
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| format!("TLS: {e}"))?;
    }
    builder
        .add_service(health)
        .add_service(reflection)
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// Serves Prometheus metrics on `addr`.
pub async fn serve_metrics(addr: SocketAddr, state: Arc<KmsState>) -> Result<(), String> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let s = state.clone();
            async move { s.render_metrics() }
        }),
    );
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    axum::serve(l, app).await.map_err(|e| e.to_string())
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
