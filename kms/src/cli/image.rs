//! `kms measure` and `kms image`: reference values for the image registry.

use std::path::Path;
use std::process::ExitCode;

use attest_core::OsImageHash;
use attest_core::image_registry::{BootEntry, ImageRegistry};
use attest_core::names::reg;
use attest_snp::measure::{
    KernelHashes, LaunchInputs, SvsmInputs, VmmType, launch_digest, svsm_launch_digest,
    vcpu_signature,
};
use sha2::{Digest, Sha256};

use std::path::PathBuf;

use clap::Subcommand;

use super::error::CliError;

fn parse_hex_u64(s: &str, what: &str) -> Result<u64, CliError> {
    u64::from_str_radix(s.trim_start_matches("0x").trim_start_matches("0X"), 16)
        .map_err(|_| CliError::new(format!("{what} must be hex, found {s:?}")))
}

fn open(p: &Path) -> Result<std::fs::File, CliError> {
    std::fs::File::open(p).map_err(|e| CliError::new(format!("{}: {e}", p.display())))
}

/// The launch digests of `a` for each vCPU count.
fn digests(a: &SnpLaunchArgs, vcpus: &[u32], ovmf_only: bool) -> Result<Vec<[u8; 48]>, CliError> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| CliError::new(format!("{}: {e}", p.display())));
    let ovmf = read(&a.ovmf)?;
    let vcpu_sig = match &a.vcpu_sig {
        Some(s) => u32::try_from(parse_hex_u64(s, "--vcpu-sig")?)
            .map_err(|_| CliError::new("--vcpu-sig is 32 bits"))?,
        None => vcpu_signature(&a.vcpu_type).map_err(|e| CliError::new(e.to_string()))?,
    };
    let guest_features = match &a.guest_features {
        Some(g) => Some(parse_hex_u64(g, "--guest-features")?),
        None => None,
    };
    let vmm = match &a.vmm_type {
        Some(v) => Some(
            v.parse()
                .map_err(|e: attest_snp::measure::MeasureError| CliError::new(e.to_string()))?,
        ),
        None => None,
    };
    if let Some(svsm) = &a.svsm {
        // coconut-qemu launches an SVSM only one way; refuse options that
        // would silently not apply instead of printing a digest for them.
        if guest_features.is_some_and(|g| g != 1) {
            return Err(CliError::new(
                "--guest-features: the SVSM launch fixes SEV_FEATURES to 0x1",
            ));
        }
        if vmm.is_some_and(|v| v != VmmType::Qemu) {
            return Err(CliError::new(
                "--vmm-type: only QEMU launches a Coconut-SVSM",
            ));
        }
        let svsm = read(svsm)?;
        let vars_size = a.vars_size.unwrap_or(0);
        return vcpus
            .iter()
            .map(|n| {
                svsm_launch_digest(&SvsmInputs {
                    ovmf: &ovmf,
                    svsm: &svsm,
                    vars_size,
                    vcpus: *n,
                    vcpu_sig,
                })
                .map_err(|e| CliError::new(e.to_string()))
            })
            .collect();
    }
    let kernel = match &a.kernel {
        None => None,
        Some(k) => {
            let initrd = a.initrd.as_deref().map(open).transpose()?;
            Some(
                KernelHashes::from_readers(open(k)?, initrd, a.append.as_deref())
                    .map_err(|e| CliError::new(format!("hashing kernel/initrd: {e}")))?,
            )
        }
    };
    let vmm = vmm.unwrap_or_default();
    let guest_features = guest_features.unwrap_or(1);
    vcpus
        .iter()
        .map(|n| {
            launch_digest(&LaunchInputs {
                ovmf: &ovmf,
                vcpus: *n,
                vcpu_sig,
                guest_features,
                kernel,
                vmm,
                ovmf_only,
            })
            .map_err(|e| CliError::new(e.to_string()))
        })
        .collect()
}

/// `kms measure sev-snp`.
pub fn measure(a: &SnpLaunchArgs, vcpus: u32, ovmf_only: bool) -> Result<ExitCode, CliError> {
    let d = digests(a, &[vcpus], ovmf_only)?;
    println!("{}", hex::encode(d[0]));
    Ok(ExitCode::SUCCESS)
}

fn load(registry: &Path) -> Result<ImageRegistry, CliError> {
    match std::fs::read_to_string(registry) {
        Ok(text) => ImageRegistry::parse(
            &text,
            &kms::platforms::registry_rules(&kms::config::Config::default()),
        )
        .map_err(|e| CliError::new(format!("{}: {e}", registry.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ImageRegistry::parse(
            "",
            &kms::platforms::registry_rules(&kms::config::Config::default()),
        )
        .map_err(CliError::new),
        Err(e) => Err(CliError::new(format!("{}: {e}", registry.display()))),
    }
}

/// `kms image add`.
pub fn add(
    os_image_hash: &str,
    registry: &Path,
    platform: &ImageAddPlatform,
) -> Result<ExitCode, CliError> {
    let hash = OsImageHash::from_hex(os_image_hash)
        .map_err(|e| CliError::new(format!("--os-image-hash: {}", e.message())))?;
    let mut reg = load(registry)?;
    match platform {
        ImageAddPlatform::SevSnp { launch, vcpus } => {
            if vcpus.is_empty() {
                return Err(CliError::new("--vcpus lists no vCPU count"));
            }
            for (n, d) in vcpus.iter().zip(digests(launch, vcpus, false)?) {
                let mut info = std::collections::BTreeMap::new();
                info.insert("vcpus".to_owned(), toml::Value::Integer(i64::from(*n)));
                let vtype = launch
                    .vcpu_sig
                    .clone()
                    .unwrap_or_else(|| launch.vcpu_type.clone());
                info.insert("vcpu_type".to_owned(), toml::Value::String(vtype));
                if let Some(vars_size) = launch.vars_size.filter(|_| launch.svsm.is_some()) {
                    info.insert("launch".to_owned(), toml::Value::String("svsm".to_owned()));
                    info.insert(
                        "vars_size".to_owned(),
                        toml::Value::Integer(i64::try_from(vars_size).unwrap_or(i64::MAX)),
                    );
                }
                let entry = BootEntry {
                    registers: [(reg::MEASUREMENT.to_owned(), hex::encode(d))].into(),
                    info,
                };
                let added = reg.add(hash, "sev-snp", entry).map_err(CliError::new)?;
                println!(
                    "sev-snp vcpus={n} measurement={}{}",
                    hex::encode(d),
                    if added { "" } else { " (already listed)" }
                );
            }
        }
        ImageAddPlatform::Tdx {
            mrtd,
            rtmr0,
            rtmr1,
            rtmr2,
        } => {
            let mut registers = std::collections::BTreeMap::new();
            for (name, v) in [
                (reg::MRTD, mrtd),
                (reg::RTMR0, rtmr0),
                (reg::RTMR1, rtmr1),
                (reg::RTMR2, rtmr2),
            ] {
                let b =
                    hex::decode(v).map_err(|_| CliError::new(format!("--{name} is not hex")))?;
                if b.len() != 48 {
                    return Err(CliError::new(format!(
                        "--{name} must be 48 bytes, found {}",
                        b.len()
                    )));
                }
                registers.insert(name.to_owned(), hex::encode(b));
            }
            let added = reg
                .add(
                    hash,
                    "tdx",
                    BootEntry {
                        registers,
                        info: Default::default(),
                    },
                )
                .map_err(CliError::new)?;
            println!(
                "{}",
                if added {
                    "tdx boot added"
                } else {
                    "tdx boot already listed"
                }
            );
        }
    }
    let tmp = registry.with_extension("toml.tmp");
    std::fs::write(&tmp, reg.to_toml())
        .map_err(|e| CliError::new(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, registry)
        .map_err(|e| CliError::new(format!("{}: {e}", registry.display())))?;
    Ok(ExitCode::SUCCESS)
}

/// `kms image list`.
pub fn list(registry: &Path) -> Result<ExitCode, CliError> {
    let reg = load(registry)?;
    for img in reg.images() {
        println!("{}", img.os_image_hash);
        for (platform, boots) in &img.boots {
            for b in boots {
                let regs: Vec<String> = b
                    .registers
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let info: Vec<String> = b.info.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("  {platform}: {} {}", regs.join(" "), info.join(" "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kms image hash DIR`: SHA-256 of DIR/sha256sum.txt (dstack's definition).
pub fn hash(dir: &Path) -> Result<ExitCode, CliError> {
    let p = dir.join("sha256sum.txt");
    let bytes = std::fs::read(&p).map_err(|e| CliError::new(format!("{}: {e}", p.display())))?;
    println!("{}", hex::encode(Sha256::digest(&bytes)));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct SnpLaunchArgs {
    /// The OVMF firmware image.
    #[arg(long)]
    pub ovmf: PathBuf,
    /// vCPU type (EPYC, EPYC-v1..v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, EPYC-Turin, ...).
    #[arg(long, default_value = "EPYC-v4", conflicts_with = "vcpu_sig")]
    pub vcpu_type: String,
    /// Raw CPUID(1).EAX signature instead of a type, hex.
    #[arg(long)]
    pub vcpu_sig: Option<String>,
    /// VMSA SEV_FEATURES, hex [default: 0x1].
    #[arg(long)]
    pub guest_features: Option<String>,
    /// Directly booted kernel (needs an OVMF with a kernel hashes section).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Initrd of the direct boot.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line of the direct boot.
    #[arg(long, requires = "kernel")]
    pub append: Option<String>,
    /// qemu, ec2 or gce [default: qemu].
    #[arg(long)]
    pub vmm_type: Option<String>,
    /// Coconut-SVSM binary: measure the SVSM launch (QEMU only, no direct
    /// kernel boot; the SVSM starts OVMF).
    #[arg(long, requires = "vars_size", conflicts_with_all = ["kernel", "initrd", "append"])]
    pub svsm: Option<PathBuf>,
    /// Size in bytes of the OVMF variable store below OVMF (SVSM mode).
    #[arg(long, requires = "svsm")]
    pub vars_size: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum ImageAddPlatform {
    /// Compute and add SEV-SNP launch digests, one per vCPU count.
    SevSnp {
        #[command(flatten)]
        launch: SnpLaunchArgs,
        /// vCPU counts, e.g. 1,2,4,8.
        #[arg(long, value_delimiter = ',')]
        vcpus: Vec<u32>,
    },
    /// Add a TDX boot: MRTD and RTMR0..2.
    Tdx {
        /// MRTD, hex.
        #[arg(long)]
        mrtd: String,
        /// RTMR0, hex.
        #[arg(long)]
        rtmr0: String,
        /// RTMR1, hex.
        #[arg(long)]
        rtmr1: String,
        /// RTMR2, hex.
        #[arg(long)]
        rtmr2: String,
    },
}
