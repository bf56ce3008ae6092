//! The one normalized identity every platform plug-in produces.
//!
//! # JSON contract
//!
//! [`VerifiedIdentity`] is the policy input and the audit record, and its
//! JSON field names are a public contract that policy files and scripts
//! depend on. Bytes are lowercase hex strings; absent optional values are
//! `null` (every field is always present, so a policy never has to guess
//! whether a key was omitted):
//!
//! ```text
//! {
//!   "platform": "tdx" | "sev-snp" | ...,
//!   "app": {
//!     "app_id": hex20, "compose_hash": hex32, "instance_id": hex20 | null,
//!     "key_provider": {"name": str, "id": hex} | null,
//!     "os_image_hash": hex32 | null
//!   },
//!   "boot": { "<register>": hex | number | {component: number}, ..., "boot_digest": hex },
//!   "tcb": { "status": "UpToDate" | ..., "advisory_ids": [str],
//!            "tcb_date": RFC 3339 | null, "out_of_date_since": RFC 3339 | null },
//!   "debug": bool,
//!   "report_data": hex64, "report_data_checked": bool,
//!   "device_id": hex32 | null,
//!   "platform_claims": { "<section>": {...} }
//! }
//! ```
//!
//! Register names are lowercase as the platforms name them: `mrtd`,
//! `rtmr0`..`rtmr3`, `mr_config_id` on TDX; `measurement`, `host_data`,
//! `vmpl`, `reported_tcb` on SNP.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{AppId, AttestError, ComposeHash, DeviceId, HexBytes, InstanceId, OsImageHash};
use crate::{PlatformId, ReportData};

/// What a platform verifier vouches for, in platform-neutral terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedIdentity {
    /// The platform that produced the evidence.
    pub platform: PlatformId,
    /// The application and OS image.
    pub app: AppIdentity,
    /// The platform's boot measurement registers.
    pub boot: BootMeasurements,
    /// The platform's TCB (firmware/microcode) standing.
    pub tcb: TcbInfo,
    /// Whether the TEE runs with debug enabled (its memory is then readable
    /// by the host). Verifiers reject debug evidence; the field lets a policy
    /// or an inspection tool say so explicitly.
    pub debug: bool,
    /// The report data the evidence carries.
    pub report_data: ReportData,
    /// Whether `report_data` was compared with an expected value. Always
    /// true on the key path; false only from offline inspection.
    pub report_data_checked: bool,
    /// A stable per-machine id (SHA-256 of the TDX PPID or the SNP CHIP_ID),
    /// `None` where the platform has none (e.g. a masked SNP chip id).
    pub device_id: Option<DeviceId>,
    /// Platform-specific claims for the few rules that really are
    /// platform-specific (minimum SVNs, VMPL).
    pub platform_claims: PlatformClaims,
}

impl VerifiedIdentity {
    /// The identity as a JSON value (the policy input form).
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// What evidence proves when its app identity document is absent (a TDX
/// quote without its event log, an SNP report without its app config):
/// the same JSON names as [`VerifiedIdentity`], with `app` always `null`.
/// Offline verification tools print it; keys are never released on it,
/// and no conversion to a [`VerifiedIdentity`] exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuoteOnlyIdentity {
    /// The platform.
    pub platform: PlatformId,
    /// Always `null`.
    pub app: NoApp,
    /// The boot registers.
    pub boot: BootMeasurements,
    /// The TCB standing.
    pub tcb: TcbInfo,
    /// Debug mode.
    pub debug: bool,
    /// The report data.
    pub report_data: ReportData,
    /// Whether it was compared with an expected value.
    pub report_data_checked: bool,
    /// The device id.
    pub device_id: Option<DeviceId>,
    /// Platform-specific claims.
    pub platform_claims: PlatformClaims,
}

impl QuoteOnlyIdentity {
    /// The identity as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The absent app identity of a [`QuoteOnlyIdentity`]: serializes as `null`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoApp;

impl Serialize for NoApp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

/// The application identity, the same on every platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppIdentity {
    /// The application id (20 bytes).
    pub app_id: AppId,
    /// SHA-256 of the app compose file.
    pub compose_hash: ComposeHash,
    /// The instance id, absent when the app runs without one.
    pub instance_id: Option<InstanceId>,
    /// The key provider the CVM was configured with.
    pub key_provider: Option<KeyProvider>,
    /// The OS image, once the boot measurements are resolved against the
    /// image registry (or measured by the guest itself, e.g. dstack's
    /// `os-image-hash` event). `None` means "not known".
    pub os_image_hash: Option<OsImageHash>,
}

/// A dstack key provider: `{"name": "kms" | "local-sgx" | ..., "id": hex}`.
/// For `kms` the id is the DER SubjectPublicKeyInfo of the KMS root CA key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyProvider {
    /// Provider kind.
    pub name: String,
    /// Provider id bytes.
    pub id: HexBytes,
}

/// One boot register's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BootValue {
    /// A measurement register or other byte string, as hex.
    Bytes(HexBytes),
    /// A small integer field (VMPL, guest SVN, policy).
    Number(u64),
    /// A structured version such as an SNP TCB (`{"bootloader": 3, ...}`).
    Components(BTreeMap<String, u64>),
}

impl From<&[u8]> for BootValue {
    fn from(b: &[u8]) -> Self {
        BootValue::Bytes(HexBytes(b.to_vec()))
    }
}

impl From<u64> for BootValue {
    fn from(n: u64) -> Self {
        BootValue::Number(n)
    }
}

/// The platform's boot measurement registers by name, plus the one digest
/// used to look the boot up in the image registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootMeasurements {
    /// Registers by lowercase name (`mrtd`, `rtmr0`, `measurement`, ...).
    #[serde(flatten)]
    pub registers: BTreeMap<String, BootValue>,
    /// The platform's digest over its OS-image-determined registers (TDX:
    /// over MRTD and RTMR0..2; SNP: MEASUREMENT).
    pub boot_digest: HexBytes,
}

impl BootMeasurements {
    /// Measurements with the given boot digest and no registers yet.
    pub fn new(boot_digest: impl Into<HexBytes>) -> Self {
        BootMeasurements {
            registers: BTreeMap::new(),
            boot_digest: boot_digest.into(),
        }
    }

    /// Adds a register. Names are the plug-in's own constants, lowercase.
    pub fn with(mut self, name: &'static str, value: impl Into<BootValue>) -> Self {
        debug_assert!(
            name != "boot_digest"
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "register names are lowercase [a-z0-9_]: {name}"
        );
        self.registers.insert(name.to_owned(), value.into());
        self
    }

    /// A register's value.
    pub fn get(&self, name: &str) -> Option<&BootValue> {
        self.registers.get(name)
    }
}

/// The normalized TCB status, spelled exactly as Intel spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TcbStatus {
    /// The platform is patched to the latest TCB.
    UpToDate,
    /// Up to date, but software mitigations must be applied.
    #[serde(rename = "SWHardeningNeeded")]
    SwHardeningNeeded,
    /// Up to date, but the platform configuration needs changes.
    ConfigurationNeeded,
    /// Both of the above.
    #[serde(rename = "ConfigurationAndSWHardeningNeeded")]
    ConfigurationAndSwHardeningNeeded,
    /// A newer TCB exists; the platform is behind.
    OutOfDate,
    /// Behind, and its configuration needs changes.
    OutOfDateConfigurationNeeded,
    /// The verifier had no reference to compare with.
    Unknown,
}

impl TcbStatus {
    /// Every status, in declaration order.
    pub const ALL: [TcbStatus; 7] = [
        TcbStatus::UpToDate,
        TcbStatus::SwHardeningNeeded,
        TcbStatus::ConfigurationNeeded,
        TcbStatus::ConfigurationAndSwHardeningNeeded,
        TcbStatus::OutOfDate,
        TcbStatus::OutOfDateConfigurationNeeded,
        TcbStatus::Unknown,
    ];

    /// The status as Intel spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SwHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TcbStatus {
    type Err = AttestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TcbStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                crate::Malformed::BadValue {
                    what: "TCB status".into(),
                    expected: "a status Intel defines, or Unknown".into(),
                    found: format!("{:?}", crate::platform::truncate_for_message(s)),
                }
                .into()
            })
    }
}

/// TCB standing of the platform that produced the evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcbInfo {
    /// Normalized status.
    pub status: TcbStatus,
    /// Vendor advisories that apply (`INTEL-SA-00837`, ...).
    pub advisory_ids: Vec<String>,
    /// The TCB date of the level the platform matched (the TCB recovery it
    /// is at), when the vendor publishes one.
    #[serde(with = "time::serde::rfc3339::option")]
    pub tcb_date: Option<OffsetDateTime>,
    /// When the platform's level was superseded: the earliest TCB date of a
    /// level above it (the first recovery it did not take). A policy's grace
    /// period for `OutOfDate` counts from it. `None` when the platform meets
    /// every published level, or the vendor publishes no dates (SEV-SNP).
    /// Identities written before this field existed read as `None`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub out_of_date_since: Option<OffsetDateTime>,
}

impl TcbInfo {
    /// A TCB with the given status, no advisories, no date.
    pub fn new(status: TcbStatus) -> Self {
        TcbInfo {
            status,
            advisory_ids: Vec::new(),
            tcb_date: None,
            out_of_date_since: None,
        }
    }
}

/// Platform-specific claims, one JSON object per section (`tdx`, `sev_snp`).
///
/// Kept as JSON here so that a new platform never edits this crate; each
/// plug-in defines a typed struct for its section and stores it with
/// [`PlatformClaims::insert`], and readers get it back typed with
/// [`PlatformClaims::get`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlatformClaims(pub BTreeMap<String, serde_json::Value>);

impl PlatformClaims {
    /// Stores a section. Claims are plain data structs; one that fails to
    /// serialize (a non-string map key) is a plug-in bug, reported here.
    pub fn insert<T: Serialize>(&mut self, section: &str, claims: &T) -> Result<(), AttestError> {
        let value = serde_json::to_value(claims).map_err(|e| crate::Malformed::Syntax {
            what: format!("platform claims {section} do not serialize"),
            detail: e.to_string(),
        })?;
        self.0.insert(section.to_owned(), value);
        Ok(())
    }

    /// Reads a section back as its typed struct; `None` when absent.
    pub fn get<T: DeserializeOwned>(&self, section: &str) -> Option<Result<T, AttestError>> {
        self.0.get(section).map(|v| {
            T::deserialize(v).map_err(|e| {
                crate::Malformed::Syntax {
                    what: format!("platform claims {section} do not parse"),
                    detail: e.to_string(),
                }
                .into()
            })
        })
    }
}
