//! The command tree. Each subcommand's work lives in its own module; commands
//! that are not built yet say so in one line and exit non-zero.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "demo")]
mod bench;
#[cfg(feature = "demo")]
mod demo;
mod dstack;
mod error;
mod evidence;
mod image;
mod keys;
mod policy;
mod serve;

pub use error::CliError;
use image::{ImageAddPlatform, SnpLaunchArgs};

/// Key management service for confidential VMs (Intel TDX, AMD SEV-SNP,
/// Azure vTPM on either):
/// one attestation path, one policy and one key derivation for every platform.
#[derive(Debug, Parser)]
#[command(name = "kms", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the end-to-end demo: a KMS with FAKE vendor roots, a TDX and an
    /// SNP CVM of one app, and two refusals.
    #[cfg(feature = "demo")]
    Demo,
    /// Load benchmark: GetAppKey at a concurrency against a loopback KMS
    /// with FAKE vendor roots; prints throughput, latency and the
    /// verification ceiling measured in the same run.
    #[cfg(feature = "demo")]
    Bench {
        /// Requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Requests per scenario (tdx, tdx-uncached, sev-snp, mixed).
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Run one scenario only: tdx, tdx-uncached, sev-snp or mixed.
        #[arg(long)]
        only: Option<String>,
        /// HTTP/2 connections the load is spread over.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Run the load generator on a thread of its own and print the KMS's
        /// share of the CPU time (costs throughput: cross-thread wake-ups).
        #[arg(long)]
        attribute_cpu: bool,
    },
    /// Run the gRPC key service (no config: 127.0.0.1:7000, ./kms-data, deny-all policy).
    Serve {
        /// kms.toml
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print the effective one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Root key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Get the root keys from a running KMS into this replica's data
    /// directory, with this CVM's evidence (configfs-tsm); the answer must
    /// come from the expected key provider.
    Onboard {
        /// The running KMS.
        #[arg(long)]
        from: String,
        /// The key provider id (hex SPKI) the keys must come from.
        #[arg(long)]
        key_provider_id: String,
        /// For https: the root CA certificate (PEM) of the source.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// kms.toml whose data_dir receives the keys (default ./kms-data).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Verify evidence offline and print the verified identity as JSON (or
    /// as a signed attestation result with `--format ear --data-dir D`).
    Verify {
        /// `json` (the identity) or `ear` (an EAT attestation result, a
        /// JWT signed with the EAR key of `--data-dir`).
        #[arg(long, global = true, value_enum, default_value_t = evidence::Format::Json)]
        format: evidence::Format,
        /// The data directory whose keys sign `--format ear` results.
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        which: VerifyCommand,
    },
    /// Parse evidence without checking signatures; replay its event log.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Compute reference measurements (launch digests) of an OS image.
    #[command(subcommand)]
    Measure(MeasureCommand),
    /// Manage the image registry (measurement -> os_image_hash).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Check and explain policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum MeasureCommand {
    /// The SEV-SNP launch digest (MEASUREMENT) of an image, 96 hex digits.
    SevSnp {
        #[command(flatten)]
        launch: SnpLaunchArgs,
        /// vCPU count.
        #[arg(long)]
        vcpus: u32,
        /// Only the firmware pages (the "OVMF hash").
        #[arg(long, conflicts_with = "svsm")]
        ovmf_only: bool,
    },
}

// Parsed once per process; the size difference between variants is irrelevant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Record an image's boot measurements in the registry.
    Add {
        /// The image's os_image_hash (SHA-256 of its sha256sum.txt).
        #[arg(long)]
        os_image_hash: String,
        /// The registry file (created if missing).
        #[arg(long)]
        registry: PathBuf,
        #[command(subcommand)]
        platform: ImageAddPlatform,
    },
    /// List the registry.
    List {
        /// The registry file.
        #[arg(long)]
        registry: PathBuf,
    },
    /// os_image_hash of an image directory: SHA-256 of its sha256sum.txt.
    Hash {
        /// The image directory.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate a kms.toml (policy included) and print the effective configuration.
    Check {
        /// kms.toml (default: the built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a data directory with fresh root keys without serving (or
    /// report the keys it already holds).
    Init {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print the public half of a data directory's keys as JSON: key
    /// provider id, root CA certificate, k256 public key, and `ear_jwk`
    /// (the key attestation results are signed with).
    Show {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Import a dstack KMS's root keys (root-ca.key PEM, root-k256.key raw) into the data directory.
    ImportDstack {
        /// dstack's root-ca.key (PKCS#8 PEM).
        #[arg(long)]
        root_ca_key: PathBuf,
        /// dstack's root-k256.key (32 raw bytes).
        #[arg(long)]
        root_k256_key: PathBuf,
        /// dstack's root-ca.crt, kept instead of a new certificate (its
        /// name stays the issuer of every certificate this KMS signs).
        #[arg(long)]
        root_ca_cert: Option<PathBuf>,
        /// kms.toml whose data_dir receives the keys (default ./kms-data).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// An Intel TDX quote: prints the VerifiedIdentity JSON (with `app`
    /// null when no event log is given), or `error: <kind>: <message>`.
    Tdx {
        /// The quote (binary, or hex text).
        #[arg(long)]
        quote: PathBuf,
        /// dcap-qvl QuoteCollateralV3 JSON.
        #[arg(long)]
        collateral: PathBuf,
        /// Verification time, Unix seconds.
        #[arg(long)]
        at: u64,
        /// The event log: dstack's JSON list or a raw CCEL log area.
        #[arg(long)]
        event_log: Option<PathBuf>,
        /// Expected report data, 128 hex digits.
        #[arg(long)]
        report_data: Option<String>,
    },
    /// An AMD SEV-SNP report: prints the VerifiedIdentity JSON (with `app`
    /// null when no app config is given), or `error: <kind>: <message>`.
    SevSnp {
        /// The 1184-byte report (binary, or hex text).
        #[arg(long)]
        report: PathBuf,
        /// The VCEK or VLEK certificate (DER or PEM), or a certificate table.
        #[arg(long)]
        vcek: Option<PathBuf>,
        /// An ASK/ASVK + ARK chain (PEM) to check against the pinned ARK.
        #[arg(long)]
        cert_chain: Option<PathBuf>,
        /// The dstack app config v3 document HOST_DATA binds.
        #[arg(long)]
        app_config: Option<PathBuf>,
        /// Verification time, Unix seconds.
        #[arg(long)]
        at: u64,
        /// Expected report data, 128 hex digits.
        #[arg(long)]
        report_data: Option<String>,
        /// The VMPL the report must come from.
        #[arg(long, default_value_t = 0)]
        vmpl: u32,
    },
    /// A dstack attestation (V0/V1, an RA-TLS certificate, or a quote and
    /// its event log), verified with the production plug-ins: prints the
    /// VerifiedIdentity JSON, or `error: <kind>: <message>`. Expected
    /// report data: --report-data, else the certificate's RA-TLS binding,
    /// else what the attestation states.
    Dstack {
        /// The attestation (binary, hex, PEM/DER certificate, or JSON).
        #[arg(long)]
        attestation: PathBuf,
        /// dcap-qvl QuoteCollateralV3 JSON (TDX).
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// The VCEK (DER or PEM) or a certificate table, replacing the
        /// attestation's own cert_chain (SEV-SNP).
        #[arg(long)]
        vcek: Option<PathBuf>,
        /// Verification time, Unix seconds.
        #[arg(long)]
        at: u64,
        /// Expected report data, 128 hex digits.
        #[arg(long)]
        report_data: Option<String>,
    },
    /// Azure vTPM evidence on SEV-SNP (the JSON container; the SNP report
    /// in its HCL report must come from VMPL 0): prints the identity JSON
    /// (`app` null without an event log), or `error: <kind>: <message>`.
    AzSnpVtpm {
        #[command(flatten)]
        common: VtpmVerifyArgs,
        /// A VCEK (DER or PEM) to use before the container's.
        #[arg(long)]
        vcek: Option<PathBuf>,
    },
    /// Azure vTPM evidence on TDX (the JSON container with its TD quote):
    /// prints the identity JSON, or `error: <kind>: <message>`.
    AzTdxVtpm {
        #[command(flatten)]
        common: VtpmVerifyArgs,
        /// dcap-qvl QuoteCollateralV3 JSON for the TD quote.
        #[arg(long)]
        collateral: PathBuf,
    },
}

/// What `kms verify az-snp-vtpm` and `az-tdx-vtpm` share.
#[derive(Debug, clap::Args)]
pub struct VtpmVerifyArgs {
    /// The evidence container (JSON, v0/v1/v2).
    #[arg(long)]
    evidence: PathBuf,
    /// Verification time, Unix seconds.
    #[arg(long)]
    at: u64,
    /// The quote's nonce (extraData), hex, compared in full; `kms` requires
    /// the KMS binding (extraData = SHA-256(user-data)). Without it any
    /// nonce is accepted and reported in `platform_claims.vtpm.nonce`.
    #[arg(long)]
    nonce: Option<String>,
    /// Expected report data (the claims' user-data), 128 hex digits.
    #[arg(long)]
    report_data: Option<String>,
    /// dstack's JSON event log of the app PCR's runtime events.
    #[arg(long)]
    event_log: Option<PathBuf>,
    /// The app PCR (8..=15).
    #[arg(long, default_value_t = 8)]
    app_pcr: u32,
    /// A trusted paravisor's launch measurement (SNP MEASUREMENT or TD
    /// MRTD, 96 hex digits; repeatable). Required with `--nonce kms`;
    /// without one, `platform_claims.vtpm.paravisor_pinned` is false.
    #[arg(long = "paravisor")]
    paravisors: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// Parse a TDX quote without verifying it, replay its event log and
    /// print registers, the replay result per register and the app identity;
    /// exits 1 if the replay does not match.
    Tdx {
        /// The quote (binary, or hex text).
        #[arg(long)]
        quote: PathBuf,
        /// The event log: dstack's JSON list or a raw CCEL log area.
        #[arg(long)]
        event_log: Option<PathBuf>,
    },
    /// Decode a dstack attestation (V0/V1, an RA-TLS certificate, or a
    /// quote and its event log) without verifying it: prints platform, the
    /// claimed app, the runtime events and, on TDX, the RTMR3 replay
    /// (`replay.computed`, `replay.quoted`, `replay.matches`); on SNP the
    /// HOST_DATA check. Exits 1 if they do not match.
    Dstack {
        /// The attestation (binary, hex, PEM/DER certificate, or JSON).
        #[arg(long)]
        attestation: PathBuf,
    },
    /// Parse Azure vTPM evidence (the JSON container) without verifying
    /// anything: HCL report, runtime claims, quote, PCRs; exits 1 when a
    /// part does not parse or the PCRs do not match the quote's digest.
    Vtpm {
        /// The evidence container.
        #[arg(long)]
        evidence: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Decide a verified identity (JSON) with a policy file (.toml or .rego),
    /// or with the policy a configuration loads (every backend, data file
    /// and `all_of`, and its image registry resolving `os_image_hash`): the
    /// decision the server would make. Prints the decision as JSON, exits 0
    /// on allow and 1 on deny.
    Check {
        /// The policy file (.toml or .rego).
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        policy: Option<PathBuf>,
        /// A kms.toml: decide with its configured policy and image registry.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A VerifiedIdentity JSON file (as `kms verify` prints it).
        #[arg(long)]
        identity: PathBuf,
        /// Decision time, Unix seconds (default: now).
        #[arg(long)]
        at: Option<u64>,
    },
    /// Print every input field a policy can use, with its type.
    Explain,
}

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Policy(PolicyCommand::Check {
            policy,
            config,
            identity,
            at,
        }) => policy::check(policy.as_deref(), config.as_deref(), &identity, at),
        Command::Verify {
            format,
            data_dir,
            which,
        } => {
            let output = evidence::Output { format, data_dir };
            match which {
                VerifyCommand::Tdx {
                    quote,
                    collateral,
                    at,
                    event_log,
                    report_data,
                } => evidence::verify_tdx(
                    &quote,
                    &collateral,
                    at,
                    event_log.as_deref(),
                    report_data.as_deref(),
                    &output,
                ),
                VerifyCommand::SevSnp {
                    report,
                    vcek,
                    cert_chain,
                    app_config,
                    at,
                    report_data,
                    vmpl,
                } => evidence::verify_snp(
                    &evidence::SnpArgs {
                        report,
                        vcek,
                        cert_chain,
                        app_config,
                        at,
                        report_data,
                        vmpl,
                    },
                    &output,
                ),
                VerifyCommand::Dstack {
                    attestation,
                    collateral,
                    vcek,
                    at,
                    report_data,
                } => dstack::verify(
                    &dstack::VerifyArgs {
                        attestation: &attestation,
                        collateral: collateral.as_deref(),
                        vcek: vcek.as_deref(),
                        at,
                        report_data: report_data.as_deref(),
                    },
                    &output,
                ),
                VerifyCommand::AzSnpVtpm { common, vcek } => evidence::verify_vtpm(
                    &common.into_args(attest_vtpm::AZ_SNP_VTPM, vcek, None),
                    &output,
                ),
                VerifyCommand::AzTdxVtpm { common, collateral } => evidence::verify_vtpm(
                    &common.into_args(attest_vtpm::AZ_TDX_VTPM, None, Some(collateral)),
                    &output,
                ),
            }
        }
        Command::Inspect(InspectCommand::Tdx { quote, event_log }) => {
            evidence::inspect_tdx(&quote, event_log.as_deref())
        }
        Command::Inspect(InspectCommand::Dstack { attestation }) => dstack::inspect(&attestation),
        Command::Inspect(InspectCommand::Vtpm { evidence }) => evidence::inspect_vtpm(&evidence),
        Command::Measure(MeasureCommand::SevSnp {
            launch,
            vcpus,
            ovmf_only,
        }) => image::measure(&launch, vcpus, ovmf_only),
        Command::Image(ImageCommand::Add {
            os_image_hash,
            registry,
            platform,
        }) => image::add(&os_image_hash, &registry, &platform),
        Command::Image(ImageCommand::List { registry }) => image::list(&registry),
        Command::Image(ImageCommand::Hash { dir }) => image::hash(&dir),
        Command::Policy(PolicyCommand::Explain) => {
            print!("{}", policy::EXPLAIN);
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Command::Demo => demo::demo(),
        #[cfg(feature = "demo")]
        Command::Bench {
            concurrency,
            requests,
            only,
            connections,
            attribute_cpu,
        } => bench::bench(concurrency, requests, only, connections, attribute_cpu),
        Command::Serve { config } => serve::serve(config.as_deref()),
        Command::Config(ConfigCommand::Check { config }) => serve::check(config.as_deref()),
        Command::Keys(KeysCommand::Init { data_dir }) => keys::init(&data_dir),
        Command::Keys(KeysCommand::Show { data_dir }) => keys::show(&data_dir),
        Command::Onboard {
            from,
            key_provider_id,
            ca_cert,
            config,
        } => keys::onboard(
            &kms::config::OnboardConfig {
                from,
                key_provider_id,
                ca_cert: ca_cert.map(|p| std::path::absolute(&p).unwrap_or(p)),
            },
            config.as_deref(),
        ),
        Command::Keys(KeysCommand::ImportDstack {
            root_ca_key,
            root_k256_key,
            root_ca_cert,
            config,
        }) => keys::import_dstack(
            &root_ca_key,
            &root_k256_key,
            root_ca_cert.as_deref(),
            config.as_deref(),
        ),
    }
}

impl VtpmVerifyArgs {
    fn into_args(
        self,
        platform: attest_core::PlatformId,
        vcek: Option<PathBuf>,
        collateral: Option<PathBuf>,
    ) -> evidence::VtpmArgs {
        evidence::VtpmArgs {
            platform,
            evidence: self.evidence,
            vcek,
            collateral,
            event_log: self.event_log,
            at: self.at,
            nonce: self.nonce,
            report_data: self.report_data,
            app_pcr: self.app_pcr,
            paravisors: self.paravisors,
        }
    }
}
