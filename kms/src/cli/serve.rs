//! `kms serve` and `kms config check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kms::config::{Config, LogFormat};
use kms::service::keys::RootKeys;

use super::error::CliError;

pub(super) fn load(config: Option<&Path>) -> Result<(Config, PathBuf), CliError> {
    match config {
        Some(p) => Config::load(p).map_err(CliError::new),
        None => Ok((Config::default(), PathBuf::new())),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// `kms serve`.
pub fn serve(config: Option<&Path>) -> Result<ExitCode, CliError> {
    let (cfg, base) = load(config)?;
    init_logging(cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("runtime: {e}")))?;
    rt.block_on(async move {
        let data = base.join(&cfg.data_dir);
        if let Some(o) = &cfg.onboard {
            super::keys::onboard_with_tsm(&data, &data.join(&cfg.audit_log), o, &base).await?;
        }
        let (keys, created) =
            RootKeys::load_or_generate(&data).map_err(|e| CliError::new(e.to_string()))?;
        if created {
            tracing::info!(dir = %data.display(), "generated new root keys");
        }
        let key_provider_id = keys.key_provider_id();
        let platforms = kms::platforms::build(&cfg, &base).map_err(CliError::new)?;
        let state = kms::service::KmsState::from_config(&cfg, &base, keys, platforms)
            .map_err(CliError::new)?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| CliError::new(format!("cannot listen on {}: {e}", cfg.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::new(e.to_string()))?;
        let scheme = if cfg.tls.enabled { "https" } else { "http" };
        println!("kms listening on {scheme}://{addr}");
        println!("key provider id: {key_provider_id}");
        println!(
            "policy: {} ({})",
            state.policy.backend(),
            hex::encode(state.policy.digest())
        );
        if let Some(m) = cfg.metrics_listen {
            let s = state.clone();
            let limits = cfg.limits.clone();
            tokio::spawn(async move {
                if let Err(e) = kms::service::listener::serve_metrics(m, s, &limits).await {
                    tracing::error!("metrics: {e}");
                }
            });
            println!("metrics on http://{m}/metrics");
        }
        if let Some(d) = &cfg.dstack_compat {
            let mut own = d.server_names.clone();
            own.extend(cfg.tls_names().unwrap_or_default());
            let front = kms::service::dstack::DstackFront::new(
                state.clone(),
                d,
                &data,
                own,
                cfg.limits.clone(),
                cfg.max_request_bytes,
            )
            .map_err(|e| CliError::new(format!("dstack_compat: {e}")))?;
            let (addr, join) = std::sync::Arc::new(front)
                .start(d, kms::service::listener::shutdown_signal())
                .await
                .map_err(CliError::new)?;
            println!("dstack-compatible prpc on https://{addr}/prpc");
            tokio::spawn(async move {
                if let Ok(Err(e)) = join.await {
                    tracing::error!("dstack_compat: {e}");
                }
            });
        }
        let listener_cfg = kms::service::listener::ListenerConfig {
            max_request_bytes: cfg.max_request_bytes,
            limits: cfg.limits.clone(),
            tls_names: cfg.tls_names(),
        };
        kms::service::listener::serve_with(
            listener,
            state,
            &listener_cfg,
            kms::service::listener::shutdown_signal(),
        )
        .await
        .map_err(CliError::new)?;
        tracing::info!("shut down");
        Ok(ExitCode::SUCCESS)
    })
}

/// `kms config check`.
pub fn check(config: Option<&Path>) -> Result<ExitCode, CliError> {
    let (cfg, base) = load(config)?;
    policy::load(&cfg.policy, &base).map_err(|e| CliError::new(e.to_string()))?;
    if let Some(reg) = &cfg.image_registry {
        let path = base.join(reg);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
        attest_core::image_registry::ImageRegistry::parse(
            &text,
            &kms::platforms::registry_rules(&cfg),
        )
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    }
    print!("{}", cfg.to_toml());
    Ok(ExitCode::SUCCESS)
}
