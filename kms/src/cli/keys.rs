//! `kms keys`: root key management.

use std::path::Path;
use std::process::ExitCode;

use kms::service::keys::RootKeys;

use super::error::CliError;
use super::serve::load;

/// `kms keys import-dstack`.
pub fn import_dstack(
    ca: &Path,
    k256: &Path,
    ca_cert: Option<&Path>,
    config: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let (cfg, base) = load(config)?;
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| CliError::new(format!("{}: {e}", p.display())));
    let data = base.join(&cfg.data_dir);
    let cert = ca_cert.map(read).transpose()?;
    let keys = RootKeys::import_dstack_with_cert(&data, &read(ca)?, &read(k256)?, cert.as_deref())
        .map_err(|e| CliError::new(e.to_string()))?;
    println!("imported into {}", data.display());
    println!("key provider id: {}", keys.key_provider_id());
    Ok(ExitCode::SUCCESS)
}

/// Onboards `data` from `o` with this CVM's configfs-tsm evidence (what
/// `kms serve` does with `[onboard]`, and `kms onboard`).
pub async fn onboard_with_tsm(
    data: &Path,
    audit_log: &Path,
    o: &kms::config::OnboardConfig,
    base: &Path,
) -> Result<(), CliError> {
    let ca_cert = o
        .ca_cert
        .as_ref()
        .map(|p| {
            let p = base.join(p);
            std::fs::read_to_string(&p).map_err(|e| CliError::new(format!("{}: {e}", p.display())))
        })
        .transpose()?;
    let from = kms::onboard::OnboardFrom {
        url: o.from.clone(),
        key_provider_id: o.key_provider_id.clone(),
        ca_cert,
    };
    let done = kms::onboard::onboard(data, audit_log, &from, |rd| async move {
        tokio::task::spawn_blocking(move || {
            kms_client::tsm::collect(&kms_client::tsm::TsmConfig::default(), &rd)
        })
        .await
        .map_err(|e| kms_client::ClientError::Evidence(e.to_string()))?
    })
    .await
    .map_err(CliError::new)?;
    match done {
        kms::onboard::Onboarded::Received(k) => {
            println!(
                "onboarded from {}: root keys of key provider {} installed in {}",
                o.from,
                k.key_provider_id(),
                data.display()
            );
        }
        kms::onboard::Onboarded::AlreadyHeld(k) => {
            println!(
                "{} already holds the root keys of key provider {}",
                data.display(),
                k.key_provider_id()
            );
        }
    }
    Ok(())
}

/// `kms onboard`.
pub fn onboard(
    o: &kms::config::OnboardConfig,
    config: Option<&Path>,
) -> Result<ExitCode, CliError> {
    o.validate().map_err(CliError::new)?;
    let (cfg, base) = load(config)?;
    let data = base.join(&cfg.data_dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("runtime: {e}")))?;
    rt.block_on(onboard_with_tsm(
        &data,
        &data.join(&cfg.audit_log),
        o,
        &base,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `kms keys init`: creates a data directory with fresh root keys (or
/// reports the keys it holds) without serving.
pub fn init(data_dir: &Path) -> Result<ExitCode, CliError> {
    let (keys, created) =
        RootKeys::load_or_generate(data_dir).map_err(|e| CliError::new(e.to_string()))?;
    println!(
        "{} {}",
        if created {
            "created"
        } else {
            "already holds keys:"
        },
        data_dir.display()
    );
    println!("key provider id: {}", keys.key_provider_id());
    Ok(ExitCode::SUCCESS)
}

/// `kms keys show`: the public half of a data directory's keys, as JSON.
pub fn show(data_dir: &Path) -> Result<ExitCode, CliError> {
    let keys = RootKeys::load_existing(data_dir)
        .map_err(|e| CliError::new(e.to_string()))?
        .ok_or_else(|| CliError::new(format!("{} holds no root keys", data_dir.display())))?;
    let ear = kms::service::ear::EarSigner::derive(keys.root_secret())
        .map_err(|e| CliError::new(e.to_string()))?;
    let k256 = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
        &keys.k256().public_key(),
        true,
    );
    let out = serde_json::json!({
        "key_provider_id": keys.key_provider_id(),
        "ca_cert": keys.ca_cert_pem(),
        "k256_public_key": hex::encode(k256.as_bytes()),
        "ear_jwk": ear.jwk(),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}
