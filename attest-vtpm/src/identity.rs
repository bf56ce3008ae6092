//! What a verified Azure vTPM evidence says, in the identity's terms: the
//! PCR registers, the OS boot digest the image registry is keyed on, the
//! `vtpm` claims section, and the app identity replayed into the app PCR.

use attest_core::eventlog::{RegisterSet, ReplayedLog, parse_json_event_log};
use attest_core::{AppIdentity, AttestError, BootMeasurements, HexBytes, Malformed};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tpm::{PCR_COUNT, Pcrs};

/// The `platform_claims` section this crate writes.
pub const SECTION: &str = "vtpm";

/// The boot register names of the 24 SHA-256 PCRs (`boot.pcr00` ..
/// `boot.pcr23`), taken from the quote's signed full selection only.
pub const PCR_NAMES: [&str; PCR_COUNT] = [
    "pcr00", "pcr01", "pcr02", "pcr03", "pcr04", "pcr05", "pcr06", "pcr07", "pcr08", "pcr09",
    "pcr10", "pcr11", "pcr12", "pcr13", "pcr14", "pcr15", "pcr16", "pcr17", "pcr18", "pcr19",
    "pcr20", "pcr21", "pcr22", "pcr23",
];

/// The PCRs that identify the OS image (TCG PC Client / UAPI registry):
/// 4 boot loader and UKI PE images, 5 GPT and boot configuration, 7 Secure
/// Boot policy, 9 the initrd (or grub's files), 11 UKI sections, 12
/// command-line overrides and credentials, 13 system extensions. Left out:
/// 0–3 and 6 (Azure firmware and the VM's platform configuration, which
/// differ between VM sizes of one image), 8 (grub commands, or the app
/// PCR), 10 (IMA, run time), 14 (shim MOK), 15 (systemd machine-id and
/// volumes, per instance), 16 and 23 (resettable), 17–22 (DRTM, unused).
/// The configured app PCR is removed from the set when it is in it.
pub const OS_PCRS: [u32; 7] = [4, 5, 7, 9, 11, 12, 13];

/// Lowest and highest accepted app PCR: 8–15 (never the resettable 16 or
/// 23, the firmware's 0–7, or DRTM's 17–22).
pub const APP_PCR_RANGE: std::ops::RangeInclusive<u32> = 8..=15;

/// The image registry registers for each app PCR 8..=15 (OS PCRs minus the
/// app PCR), so that [`os_pcr_registers`] can hand out `'static` names.
const IMAGE_REGISTERS: [&[&str]; 8] = [
    &[
        "pcr04", "pcr05", "pcr07", "pcr09", "pcr11", "pcr12", "pcr13",
    ],
    &["pcr04", "pcr05", "pcr07", "pcr11", "pcr12", "pcr13"],
    &[
        "pcr04", "pcr05", "pcr07", "pcr09", "pcr11", "pcr12", "pcr13",
    ],
    &["pcr04", "pcr05", "pcr07", "pcr09", "pcr12", "pcr13"],
    &["pcr04", "pcr05", "pcr07", "pcr09", "pcr11", "pcr13"],
    &["pcr04", "pcr05", "pcr07", "pcr09", "pcr11", "pcr12"],
    &[
        "pcr04", "pcr05", "pcr07", "pcr09", "pcr11", "pcr12", "pcr13",
    ],
    &[
        "pcr04", "pcr05", "pcr07", "pcr09", "pcr11", "pcr12", "pcr13",
    ],
];

/// The OS PCRs for `app_pcr` ([`OS_PCRS`] without it), as register names:
/// what an image registry entry of this platform must list. Empty for an
/// app PCR outside [`APP_PCR_RANGE`].
pub fn os_pcr_registers(app_pcr: u32) -> &'static [&'static str] {
    if !APP_PCR_RANGE.contains(&app_pcr) {
        return &[];
    }
    IMAGE_REGISTERS[(app_pcr - APP_PCR_RANGE.start()) as usize]
}

/// Domain separation of [`boot_digest`].
const BOOT_DIGEST_LABEL: &[u8] = b"az-vtpm-os-pcrs/v1";

/// `boot.boot_digest`: SHA-256 over `"az-vtpm-os-pcrs/v1"` and, for each
/// OS PCR `i` except the app PCR in ascending order, the byte `i` then the
/// 32-byte PCR value.
pub fn boot_digest(pcrs: &Pcrs, app_pcr: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(BOOT_DIGEST_LABEL);
    for i in OS_PCRS.iter().filter(|i| **i != app_pcr) {
        if let Some(v) = pcrs.get(*i as usize) {
            h.update([*i as u8]);
            h.update(v);
        }
    }
    h.finalize().into()
}

/// Adds `pcr00`..`pcr23` to `boot` and sets its `boot_digest`.
pub fn add_pcrs(mut boot: BootMeasurements, pcrs: &Pcrs, app_pcr: u32) -> BootMeasurements {
    for (name, value) in PCR_NAMES.iter().zip(pcrs.as_array()) {
        boot = boot.with(name, &value[..]);
    }
    boot.boot_digest = HexBytes(boot_digest(pcrs, app_pcr).to_vec());
    boot
}

/// The `platform_claims.vtpm` section: what the vTPM and the paravisor's
/// runtime claims say besides the registers. Every value is covered by a
/// signature: the AK's (quote fields) or, through the claims digest in the
/// hardware report, AMD's or Intel's (claims and HCL fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VtpmClaims {
    /// Whether the hardware report's launch measurement matched a pinned
    /// paravisor (always true for evidence the KMS accepts; offline
    /// verification without pins reports false).
    #[serde(default)]
    pub paravisor_pinned: bool,
    /// SHA-256 of the AK's RSA modulus (its provenance inside the vTPM is
    /// not attested, reference P7: pin it where that matters).
    pub ak_pub_sha256: HexBytes,
    /// The PCR the dstack runtime events were replayed into.
    pub app_pcr: u32,
    /// The quote's `extraData` (on the key path: SHA-256 of the request's
    /// report data).
    pub nonce: HexBytes,
    /// The TPM's `firmwareVersion`, 16 hex digits.
    pub tpm_firmware_version: String,
    /// `clockInfo.resetCount`: TPM resets (VM boots).
    pub reset_count: u32,
    /// `clockInfo.restartCount`.
    pub restart_count: u32,
    /// HCL report header version.
    pub hcl_header_version: u32,
    /// HCL request-data version.
    pub request_data_version: u32,
    /// Evidence container form (0, 1 or 2).
    pub container_version: u32,
    /// `vm-configuration.secure-boot`.
    pub secure_boot: Option<bool>,
    /// `vm-configuration.tpm-enabled`.
    pub tpm_enabled: Option<bool>,
    /// `vm-configuration.tpm-persisted`.
    pub tpm_persisted: Option<bool>,
    /// `vm-configuration.console-enabled` (the serial console).
    pub console_enabled: Option<bool>,
    /// `vm-configuration.vmUniqueId`.
    pub vm_unique_id: Option<String>,
}

/// The register set the app identity is replayed on: 24 SHA-256 PCRs, the
/// runtime events on `app_pcr`.
pub fn register_set(app_pcr: u32) -> RegisterSet {
    RegisterSet {
        count: PCR_COUNT,
        app_register: app_pcr,
        prefix: "pcr",
    }
}

/// Largest event log accepted (dstack's JSON list of the app PCR's runtime
/// events; a real one is a few KiB).
pub const MAX_EVENT_LOG: usize = 256 * 1024;

/// The app identity: dstack's JSON event log, which must hold only events
/// on `app_pcr`, replayed from zero on the SHA-256 bank (every digest
/// recomputed from name and payload) and matched against the signed PCR;
/// identity from the runtime events before the first `system-ready`, with
/// attest-core's rules (no other event type on the app PCR, no `':'` in a
/// name before `system-ready`, no identity event twice).
pub fn replay_app_pcr(
    event_log: &[u8],
    pcrs: &Pcrs,
    app_pcr: u32,
) -> Result<AppIdentity, AttestError> {
    if event_log.len() > MAX_EVENT_LOG {
        return Err(Malformed::TooLarge {
            what: "event log".into(),
            size: event_log.len(),
            max: MAX_EVENT_LOG,
        }
        .into());
    }
    if !APP_PCR_RANGE.contains(&app_pcr) {
        return Err(Malformed::PcrOutOfRange {
            what: "app PCR".into(),
            pcr: app_pcr,
            allowed: APP_PCR_RANGE,
        }
        .into());
    }
    let events = parse_json_event_log(event_log)?;
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find(|(_, e)| e.register != app_pcr)
    {
        // A vTPM event log carries only the app PCR's runtime events.
        return Err(Malformed::PcrOutOfRange {
            what: format!("event {i}'s PCR"),
            pcr: e.register,
            allowed: app_pcr..=app_pcr,
        }
        .into());
    }
    let set = register_set(app_pcr);
    let mut signed: [Option<&[u8]>; PCR_COUNT] = [None; PCR_COUNT];
    signed[app_pcr as usize] = pcrs.get(app_pcr as usize).map(|v| &v[..]);
    let log = ReplayedLog::check::<Sha256>(events, &set, &signed)?;
    log.app_info()?.app_identity()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_registers_drop_the_app_pcr() {
        for app in APP_PCR_RANGE {
            let regs = os_pcr_registers(app);
            let want: Vec<String> = OS_PCRS
                .iter()
                .filter(|i| **i != app)
                .map(|i| format!("pcr{i:02}"))
                .collect();
            assert_eq!(regs, want, "app PCR {app}");
        }
        assert!(os_pcr_registers(7).is_empty());
        assert!(os_pcr_registers(16).is_empty());
        assert_eq!(PCR_NAMES[9], "pcr09");
        assert_eq!(PCR_NAMES[23], "pcr23");
    }

    #[test]
    fn boot_digest_is_over_the_os_pcrs_only() {
        let mut v = [[0u8; 32]; 24];
        let base = boot_digest(&Pcrs::new(v), 8);
        for i in 0..24u32 {
            let mut w = v;
            w[i as usize][0] = 1;
            let changed = boot_digest(&Pcrs::new(w), 8) != base;
            assert_eq!(changed, OS_PCRS.contains(&i), "PCR {i}");
        }
        // The app PCR is not part of it, even inside the OS set.
        v[9][0] = 7;
        assert_eq!(boot_digest(&Pcrs::new(v), 9), {
            let mut w = v;
            w[9][0] = 8;
            boot_digest(&Pcrs::new(w), 9)
        });
        let mut h = Sha256::new();
        h.update(b"az-vtpm-os-pcrs/v1");
        for i in [4u8, 5, 7, 9, 11, 12, 13] {
            h.update([i]);
            h.update([0u8; 32]);
        }
        assert_eq!(base, <[u8; 32]>::from(h.finalize()));
    }
}
