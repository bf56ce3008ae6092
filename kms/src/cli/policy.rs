//! `kms policy`: test a policy offline before deploying it.

use std::path::Path;
use std::process::ExitCode;

use attest_core::{UnixTime, VerifiedIdentity};
use policy::{PolicyInput, RequestContext};

use super::error::CliError;

/// `kms policy check`: 0 allow, 1 deny, 2 when the inputs cannot be used.
/// With a configuration, the identity's `os_image_hash` is resolved by the
/// configured image registry first, as the server does.
pub fn check(
    policy_path: Option<&Path>,
    config: Option<&Path>,
    identity_path: &Path,
    at: Option<u64>,
) -> Result<ExitCode, CliError> {
    let usage = |m: String| CliError::new(m).with_code(2);
    let text = std::fs::read_to_string(identity_path).map_err(|e| {
        usage(format!(
            "cannot read identity {}: {e}",
            identity_path.display()
        ))
    })?;
    let mut identity: VerifiedIdentity = serde_json::from_str(&text)
        .map_err(|e| usage(format!("invalid identity {}: {e}", identity_path.display())))?;
    let policy = match (policy_path, config) {
        (Some(p), _) => policy::load_file(p).map_err(|e| usage(e.to_string()))?,
        (None, Some(c)) => {
            let (cfg, base) = kms::config::Config::load(c).map_err(usage)?;
            if let Some(reg) = &cfg.image_registry {
                let path = base.join(reg);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| usage(format!("{}: {e}", path.display())))?;
                let registry = attest_core::image_registry::ImageRegistry::parse(
                    &text,
                    &kms::platforms::registry_rules(&cfg),
                )
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
                identity.app.os_image_hash = registry.resolve(&identity);
            }
            policy::load(&cfg.policy, &base).map_err(|e| usage(e.to_string()))?
        }
        (None, None) => return Err(usage("give --policy or --config".into())),
    };
    let time = at.map(UnixTime).unwrap_or_else(UnixTime::now);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| usage(format!("runtime: {e}")))?;
    let decision =
        rt.block_on(policy.evaluate(&PolicyInput::new(&identity, RequestContext::app_keys(time))));
    let out = serde_json::json!({
        "allow": decision.allow,
        "reasons": decision.reasons.iter().map(|r| serde_json::json!({
            "rule": r.rule, "expected": r.expected, "found": r.found, "message": r.to_string(),
        })).collect::<Vec<_>>(),
        "warnings": decision.warnings,
        "policy": {"backend": policy.backend(), "digest": hex::encode(policy.digest())},
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(if decision.allow {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The policy input schema, for `kms policy explain`.
pub const EXPLAIN: &str = r#"Policy input (the same for every platform; Rego sees it as `input`)

field                          type                    meaning
platform                       string                  "tdx", "sev-snp", "az-snp-vtpm", "az-tdx-vtpm"
app.app_id                     hex (20 bytes)          application id
app.compose_hash               hex (32 bytes)          SHA-256 of the app compose file
app.instance_id                hex (20 bytes) | null   instance id
app.key_provider               {name, id} | null       key provider (name string, id hex)
app.os_image_hash              hex (32 bytes) | null   OS image, resolved from the boot measurements
boot.<register>                hex | number | object   boot registers by platform name:
                                                         tdx: mrtd, rtmr0..rtmr3, mr_config_id, mr_owner,
                                                              mr_owner_config, xfam, td_attributes,
                                                              tee_tcb_svn, mr_seam
                                                         sev-snp: measurement, host_data, family_id, image_id,
                                                              guest_svn, policy, vmpl, reported_tcb,
                                                              committed_tcb, launch_tcb, current_tcb,
                                                              platform_info, chip_id
                                                         az-snp-vtpm / az-tdx-vtpm: pcr00..pcr23 (the signed
                                                              SHA-256 PCRs) plus the sev-snp / tdx registers
                                                         (TCBs are objects: bootloader, tee, snp, microcode, fmc)
boot.boot_digest               hex                     digest over the OS-identifying registers (vTPM: SHA-256
                                                       over "az-vtpm-os-pcrs/v1" and PCRs 4,5,7,9,11,12,13
                                                       without the app PCR, each as index byte and value)
tcb.status                     string                  UpToDate | SWHardeningNeeded | ConfigurationNeeded |
                                                       ConfigurationAndSWHardeningNeeded | OutOfDate |
                                                       OutOfDateConfigurationNeeded | Unknown
tcb.advisory_ids               [string]                vendor advisories (INTEL-SA-...)
tcb.tcb_date                   RFC 3339 | null         TCB date of the level the platform matched
tcb.out_of_date_since          RFC 3339 | null         when that level was superseded (the earliest date of a
                                                       level above it); the grace period counts from it
debug                          bool                    debug TEE (memory readable by the host)
report_data                    hex (64 bytes)          the report data the evidence carries
report_data_checked            bool                    whether it was checked against the request binding
device_id                      hex (32 bytes) | null   SHA-256 of the TDX PPID / SNP CHIP_ID
platform_claims.<section>      object                  platform-specific claims (tdx, sev_snp, dstack, vtpm)
platform_claims.vtpm           object                  ak_pub_sha256, app_pcr, nonce, tpm_firmware_version,
                                                       reset_count, restart_count, hcl_header_version,
                                                       request_data_version, container_version, secure_boot,
                                                       tpm_enabled, tpm_persisted, console_enabled, vm_unique_id
request.time                   number                  decision time, Unix seconds
request.keys                   [string]                requested keys ("app_keys", ...)

TOML policy keys: platforms, debug, os_images, tcb.allow, tcb.grace_days, [[apps]] app_id /
compose_hashes / device_ids, [platform.<id>] (any platform `platforms` allows) min_tee_tcb_svn /
mr_seams / min_tcb / vmpls / family_ids / image_ids / require_revocation_check /
registers = { <register> = [hex, ...] } / claims = { "<section>.<claim>" = value or [values] }.
Rego: `package kms`; `data.kms.allow` decides, `data.kms.deny_reasons` (set of strings) explains.
"#;
