//! `kms-client`: ask a KMS for this CVM's app keys.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kms_client::KmsClient;
use kms_client::tsm::{self, TsmConfig};

/// Guest-side client of the KMS.
#[derive(Parser)]
#[command(name = "kms-client", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attest this CVM and fetch its app keys; writes them as JSON (mode 0600), never prints them.
    GetAppKey {
        /// The KMS, e.g. http://10.0.0.1:7000
        #[arg(long)]
        kms: String,
        /// The pinned key provider id (hex of the KMS root CA SubjectPublicKeyInfo).
        #[arg(long)]
        key_provider_id: String,
        /// Where to write the keys.
        #[arg(long, default_value = "app-keys.json")]
        out: PathBuf,
        /// configfs-tsm report directory.
        #[arg(long, default_value = tsm::DEFAULT_TSM_DIR)]
        tsm_dir: PathBuf,
        /// TDX: the CCEL log area.
        #[arg(long, default_value = tsm::DEFAULT_CCEL)]
        ccel: PathBuf,
        /// TDX: dstack's runtime event log.
        #[arg(long, default_value = tsm::DEFAULT_RUNTIME_EVENTS)]
        runtime_events: PathBuf,
        /// SEV-SNP: the app config document HOST_DATA binds.
        #[arg(long)]
        app_config: Option<PathBuf>,
        /// For an https:// KMS: its root CA certificate (PEM).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Azure confidential VM: attest through the vTPM (raw TPM commands
        /// on --tpm-device, endorsements from IMDS) instead of configfs-tsm.
        #[arg(long)]
        vtpm: bool,
        /// Azure vTPM: the TPM device.
        #[arg(long, default_value = kms_client::tpm::DEFAULT_DEVICE)]
        tpm_device: PathBuf,
        /// Azure vTPM: the PCR the runtime events are extended into (the
        /// KMS's `[platform.az-*-vtpm] app_pcr`).
        #[arg(long, default_value_t = 8)]
        app_pcr: u32,
        /// Azure vTPM: the instance metadata service, host:port.
        #[arg(long, default_value = kms_client::imds::AZURE_IMDS)]
        imds: String,
    },
}

/// The keys are written to a new 0600 file created exclusively beside the
/// target, fsynced and renamed over it: an existing file's mode, a symlink
/// at the path, or a crash mid-write can never expose them.
fn write_keys(path: &std::path::Path, json: &[u8]) -> std::io::Result<()> {
    keyfile::write_secret(path, json)
}

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let Command::GetAppKey {
        kms,
        key_provider_id,
        out,
        tsm_dir,
        ccel,
        runtime_events,
        app_config,
        ca_cert,
        vtpm,
        tpm_device,
        app_pcr,
        imds,
    } = command;
    let vtpm_cfg = vtpm.then(|| kms_client::vtpm::VtpmConfig {
        device: tpm_device,
        app_pcr,
        runtime_events: runtime_events.clone(),
        ..Default::default()
    });
    let imds = kms_client::imds::HttpImds {
        addr: imds,
        ..Default::default()
    };
    let ca = match ca_cert.map(std::fs::read_to_string).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --ca-cert: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = TsmConfig {
        tsm_dir,
        ccel,
        runtime_events,
        app_config,
        ..Default::default()
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let mut client = KmsClient::connect_with_ca(&kms, ca.as_deref()).await?;
        client
            .get_app_key(&key_provider_id, |rd| {
                let cfg = cfg.clone();
                let vtpm_cfg = vtpm_cfg.clone();
                let imds = imds.clone();
                async move {
                    tokio::task::spawn_blocking(move || match vtpm_cfg {
                        Some(v) => kms_client::vtpm::collect(&v, &imds, &rd),
                        None => tsm::collect(&cfg, &rd),
                    })
                    .await
                    .map_err(|e| kms_client::ClientError::Evidence(e.to_string()))?
                }
            })
            .await
    });
    match result {
        Ok(keys) => {
            let json =
                zeroize::Zeroizing::new(serde_json::to_vec_pretty(&keys).unwrap_or_default());
            if let Err(e) = write_keys(&out, &json) {
                eprintln!("error: {}: {e}", out.display());
                return ExitCode::FAILURE;
            }
            println!(
                "app keys for {} written to {}",
                hex::encode(&keys.app_id),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
