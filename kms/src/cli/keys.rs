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
