//! The typed TOML policy: one rule text for both platforms, every deny path
//! with its exact reason, grace-period boundaries, malformed files.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use attest_core::{BootValue, OsImageHash, TcbStatus};
use common::*;
use policy::{Decision, Policy, PolicyError, Reason, TomlPolicy};

fn decide(policy: &str, id: &attest_core::VerifiedIdentity) -> Decision {
    TomlPolicy::parse(policy).unwrap().decide(&input(id))
}

fn reasons(d: &Decision) -> Vec<String> {
    d.reasons.iter().map(ToString::to_string).collect()
}

#[test]
fn same_text_decides_both_platforms_identically() {
    let policy = TomlPolicy::parse(&base_toml()).unwrap();
    let (tdx, snp) = (tdx_identity(), snp_identity());
    assert!(policy.decide(&input(&tdx)).allow);
    assert!(policy.decide(&input(&snp)).allow);

    // Change the compose hash on both: both denied, for the same reason.
    let (mut tdx2, mut snp2) = (tdx.clone(), snp.clone());
    tdx2.app.compose_hash.0[0] ^= 1;
    snp2.app.compose_hash.0[0] ^= 1;
    let (a, b) = (policy.decide(&input(&tdx2)), policy.decide(&input(&snp2)));
    assert!(!a.allow);
    assert_eq!(a, b);
    assert_eq!(
        reasons(&a),
        [format!(
            "apps.compose_hashes: expected a compose hash listed for app {APP_ID}, found {}",
            tdx2.app.compose_hash
        )]
    );
}

#[test]
fn empty_and_missing_policies_deny_everything() {
    let d = decide("", &tdx_identity());
    assert!(!d.allow);
    assert_eq!(
        reasons(&d),
        [
            "platforms: expected nothing (the list is empty), found tdx".to_owned(),
            format!("os_images: expected a listed os_image_hash, found {OS_IMAGE}"),
            format!("apps: expected a listed app_id, found {APP_ID}"),
        ]
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let d = rt.block_on(policy::DenyAll.evaluate(&input(&snp_identity())));
    assert!(!d.allow);
    assert_eq!(d.reasons[0].rule, "deny_all");
}

#[test]
fn each_common_rule_denies_with_its_reason() {
    let p = TomlPolicy::parse(&base_toml()).unwrap();
    let check = |f: &dyn Fn(&mut attest_core::VerifiedIdentity), want: &str| {
        for mut id in [tdx_identity(), snp_identity()] {
            f(&mut id);
            let d = p.decide(&input(&id));
            assert!(!d.allow, "{want}");
            assert_eq!(reasons(&d), [want.to_owned()], "{}", id.platform);
        }
    };
    check(&|id| id.debug = true, "debug: expected false, found true");
    check(
        &|id| id.tcb.status = TcbStatus::SwHardeningNeeded,
        "tcb.allow: expected one of [UpToDate], found SWHardeningNeeded",
    );
    check(
        &|id| id.app.os_image_hash = None,
        "os_images: expected a listed os_image_hash, found none (the boot measurements match no registered image)",
    );
    check(
        &|id| id.app.os_image_hash = Some(OsImageHash([9; 32])),
        &format!(
            "os_images: expected a listed os_image_hash, found {}",
            "09".repeat(32)
        ),
    );
    check(
        &|id| id.app.app_id.0[19] = 0,
        "apps: expected a listed app_id, found 3763bc34552cf3a27ff71ad5f7a90471562a1a00",
    );

    let only_tdx = base_toml().replace(
        r#"platforms = ["tdx", "sev-snp"]"#,
        r#"platforms = ["tdx"]"#,
    );
    let d = decide(&only_tdx, &snp_identity());
    assert_eq!(
        reasons(&d),
        ["platforms: expected one of [tdx], found sev-snp"]
    );
    assert!(decide(&only_tdx, &tdx_identity()).allow);

    let debug_ok = format!("debug = true\n{}", base_toml());
    let mut id = tdx_identity();
    id.debug = true;
    assert!(decide(&debug_ok, &id).allow);
}

#[test]
fn device_allowlist() {
    let tdx = tdx_identity();
    let listed = tdx.device_id.unwrap();
    let policy = format!("{}device_ids = [\"{listed}\"]\n", base_toml());
    assert!(decide(&policy, &tdx).allow);
    let snp = snp_identity();
    assert_eq!(
        reasons(&decide(&policy, &snp)),
        [format!(
            "apps.device_ids: expected a device listed for app {APP_ID}, found {}",
            snp.device_id.unwrap()
        )]
    );
    let mut masked = snp.clone();
    masked.device_id = None;
    assert_eq!(
        reasons(&decide(&policy, &masked)),
        [format!(
            "apps.device_ids: expected a device listed for app {APP_ID}, found none"
        )]
    );
}

#[test]
fn all_failing_rules_are_reported() {
    let mut id = snp_identity();
    id.debug = true;
    id.tcb.status = TcbStatus::OutOfDate;
    id.app.compose_hash.0[0] ^= 1;
    let d = decide(&base_toml(), &id);
    let rules: Vec<&str> = d.reasons.iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(rules, ["debug", "tcb.allow", "apps.compose_hashes"]);
}

/// The backend name GetMeta and the metrics publish.
#[test]
fn the_backend_is_named_toml() {
    assert_eq!(TomlPolicy::parse(&base_toml()).unwrap().backend(), "toml");
}

#[test]
fn tcb_grace_period_boundaries() {
    let policy = base_toml().replace(
        "allow = [\"UpToDate\"]",
        "allow = [\"UpToDate\"]\ngrace_days = 30",
    );
    let p = TomlPolicy::parse(&policy).unwrap();
    let mut id = tdx_identity();
    id.tcb.status = TcbStatus::OutOfDate;
    let deadline = TCB_DATE as u64 + 30 * 86_400;

    let inside = p.decide(&input_at(&id, deadline - 1));
    assert!(inside.allow);
    assert_eq!(
        inside.warnings,
        [
            "tcb.grace_days: OutOfDate accepted as UpToDate until 2024-01-31T00:00:00Z (30 days after out_of_date_since 2024-01-01T00:00:00Z)"
        ]
    );
    let at = p.decide(&input_at(&id, deadline));
    assert!(!at.allow);
    assert_eq!(
        reasons(&at),
        [format!(
            "tcb.grace_days: expected OutOfDate before 2024-01-31T00:00:00Z (out_of_date_since + 30 days), found request at {deadline}"
        )]
    );
    assert!(at.warnings.is_empty());

    // No date: no grace.
    id.tcb.out_of_date_since = None;
    assert_eq!(
        reasons(&p.decide(&input_at(&id, deadline - 1))),
        [
            "tcb.grace_days: expected an out_of_date_since date to count the grace period from, found OutOfDate without an out_of_date_since date"
        ]
    );
    // The matched level's own (old) date plays no part: only when it was
    // superseded counts.
    id.tcb.out_of_date_since = Some(time::OffsetDateTime::from_unix_timestamp(TCB_DATE).unwrap());
    assert!(id.tcb.tcb_date.unwrap().unix_timestamp() < TCB_DATE - 300 * 86_400);
    assert!(p.decide(&input_at(&id, deadline - 1)).allow);
    // Grace only stretches OutOfDate, never e.g. Unknown or SWHardeningNeeded.
    id.tcb.status = TcbStatus::SwHardeningNeeded;
    assert_eq!(
        reasons(&p.decide(&input_at(&id, TCB_DATE as u64))),
        ["tcb.allow: expected one of [UpToDate], found SWHardeningNeeded"]
    );
    // OutOfDateConfigurationNeeded counts as ConfigurationNeeded, which is not allowed here.
    let mut id = tdx_identity();
    id.tcb.status = TcbStatus::OutOfDateConfigurationNeeded;
    assert!(!p.decide(&input_at(&id, TCB_DATE as u64)).allow);
    // Where ConfigurationNeeded is allowed, it is accepted inside the grace period.
    let cn = TomlPolicy::parse(&base_toml().replace(
        "allow = [\"UpToDate\"]",
        "allow = [\"UpToDate\", \"ConfigurationNeeded\"]\ngrace_days = 30",
    ))
    .unwrap();
    let d = cn.decide(&input_at(&id, deadline - 1));
    assert!(d.allow, "{:?}", reasons(&d));
    assert!(!cn.decide(&input_at(&id, deadline)).allow);
    // grace_days is at most ten years.
    for (days, ok) in [(3650, true), (3651, false)] {
        let text = base_toml().replace(
            "allow = [\"UpToDate\"]",
            &format!("allow = [\"UpToDate\"]\ngrace_days = {days}"),
        );
        assert_eq!(TomlPolicy::parse(&text).is_ok(), ok, "{days}");
    }
    // Without grace_days, OutOfDate is denied at once.
    let mut id = tdx_identity();
    id.tcb.status = TcbStatus::OutOfDate;
    assert_eq!(
        reasons(&decide(&base_toml(), &id)),
        ["tcb.allow: expected one of [UpToDate], found OutOfDate"]
    );
}

#[test]
fn platform_sections_apply_to_their_platform_only() {
    let tdx = tdx_identity();
    let svn = match tdx.boot.get("tee_tcb_svn") {
        Some(BootValue::Bytes(b)) => b.to_hex(),
        other => panic!("{other:?}"),
    };
    let mut higher = hex::decode(&svn).unwrap();
    higher[0] += 1;
    let policy = format!(
        "{}\n[platform.tdx]\nmin_tee_tcb_svn = \"{}\"\nmr_seams = [\"{}\"]\n\n[platform.sev-snp]\nmin_tcb = {{ bootloader = 3, snp = 9 }}\nvmpls = [1]\nfamily_ids = [\"{}\"]\n",
        base_toml(),
        hex::encode(&higher),
        "ab".repeat(48),
        "cd".repeat(16)
    );
    let d = decide(&policy, &tdx);
    assert_eq!(
        reasons(&d),
        [
            format!(
                "platform.tdx.min_tee_tcb_svn: expected every byte of boot.tee_tcb_svn at least {}, found {svn}",
                hex::encode(&higher)
            ),
            format!(
                "platform.tdx.mr_seams: expected boot.mr_seam one of [{}], found {}",
                "ab".repeat(48),
                match tdx.boot.get("mr_seam") {
                    Some(BootValue::Bytes(b)) => b.to_hex(),
                    _ => unreachable!(),
                }
            ),
        ]
    );
    let d = decide(&policy, &snp_identity());
    assert_eq!(
        reasons(&d),
        [
            "platform.sev-snp.min_tcb.snp: expected the lowest snp of boot.{reported,committed,launch,current}_tcb >= 9, found 8".to_owned(),
            "platform.sev-snp.vmpls: expected boot.vmpl one of [1], found 0".to_owned(),
            format!(
                "platform.sev-snp.family_ids: expected boot.family_id one of [{}], found {}",
                "cd".repeat(16),
                "00".repeat(16)
            ),
        ]
    );
    // Satisfiable limits allow.
    let ok = format!(
        "{}\n[platform.tdx]\nmin_tee_tcb_svn = \"{svn}\"\n\n[platform.sev-snp]\nmin_tcb = {{ bootloader = 3, tee = 0, snp = 8, microcode = 115 }}\nvmpls = [0]\n",
        base_toml()
    );
    assert!(decide(&ok, &tdx).allow);
    assert!(decide(&ok, &snp_identity()).allow);
    // A limit on a component the identity lacks (fmc on Milan) denies.
    let fmc = format!(
        "{}\n[platform.sev-snp]\nmin_tcb = {{ fmc = 1 }}\n",
        base_toml()
    );
    assert_eq!(
        reasons(&decide(&fmc, &snp_identity())),
        [
            "platform.sev-snp.min_tcb.fmc: expected the lowest fmc of boot.{reported,committed,launch,current}_tcb >= 1, found none"
        ]
    );
}

fn load_error(text: &str) -> String {
    match TomlPolicy::parse(text) {
        Err(e @ PolicyError::Invalid { .. }) => e.to_string(),
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("policy loaded:\n{text}"),
    }
}

#[test]
fn malformed_policies_are_load_errors_with_lines() {
    assert_eq!(
        load_error("platforms = [\"tdx\"]\nplatfroms = []\n"),
        "invalid toml policy: line 2: unknown field `platfroms`, expected one of `platforms`, `debug`, `os_images`, `tcb`, `apps`, `kms`, `platform`"
    );
    let e = load_error(&base_toml().replace(COMPOSE, &COMPOSE[..62]));
    assert!(
        e.starts_with(
            "invalid toml policy: line 10: compose_hash must be 32 bytes (64 hex digits), found 62"
        ),
        "{e}"
    );
    let e = load_error(&base_toml().replace(APP_ID, &APP_ID.replace('3', "g")));
    assert!(
        e.starts_with("invalid toml policy: line 9: app_id is not valid hex"),
        "{e}"
    );
    let e = load_error("[tcb]\nallow = [\"UpToDat\"]\n");
    assert!(
        e.starts_with("invalid toml policy: line 2: unknown variant `UpToDat`"),
        "{e}"
    );
    let e = load_error("debug = \"no\"\n");
    assert!(
        e.starts_with(
            "invalid toml policy: line 1: invalid type: string \"no\", expected a boolean"
        ),
        "{e}"
    );
    let e = load_error("platforms = [\"TDX\"]\n");
    assert!(
        e.contains("line 1") && e.contains("platform id: expected 1..=32 chars"),
        "{e}"
    );
    let e = load_error("platforms = [\"tdx\"]\n[platform.nitro]\n");
    assert_eq!(
        e,
        "invalid toml policy: line 2: [platform.nitro] is for a platform `platforms` does not allow (one of [tdx]); it would never apply"
    );
    let e = load_error("platforms = [\"az-snp-vtpm\"]\n[platform.az-snp-vptm]\n");
    assert!(
        e.contains("[platform.az-snp-vptm] is for a platform"),
        "{e}"
    );
    let e = load_error("[platform.TDX]\n");
    assert!(e.contains("platform id: expected 1..=32 chars"), "{e}");
    let e = load_error(
        "platforms = [\"az-snp-vtpm\"]\n[platform.az-snp-vtpm]\nregisters = { pcr07 = [\"0g\"] }\n",
    );
    assert!(e.contains("expected a register value in hex"), "{e}");
    // An empty pin would match nothing or, worse, be read as "any".
    for bad in ["\"\"", "\"abc\""] {
        let e = load_error(&format!(
            "platforms = [\"az-snp-vtpm\"]\n[platform.az-snp-vtpm]\nregisters = {{ pcr07 = [{bad}] }}\n"
        ));
        assert!(e.contains("expected a register value in hex"), "{bad}: {e}");
    }
    let e = load_error(
        "platforms = [\"az-snp-vtpm\"]\n[platform.az-snp-vtpm]\nregisters = { pcr07 = [] }\n",
    );
    assert!(e.contains("registers.pcr07 lists no value"), "{e}");
    let e = load_error(
        "platforms = [\"az-snp-vtpm\"]\n[platform.az-snp-vtpm]\nclaims = { secure_boot = true }\n",
    );
    assert!(e.contains("must be <section>.<claim>"), "{e}");
    let e = load_error(
        "platforms = [\"az-snp-vtpm\"]\n[platform.az-snp-vtpm]\nclaims = { \"vtpm.x\" = 1.5 }\n",
    );
    assert!(
        e.contains("a claim pin is a string, an integer or a boolean"),
        "{e}"
    );
    let e = load_error("platforms = [\"az-snp-vtpm\"]\n[platform.az-snp-vtpm]\nmin_pcrs = 1\n");
    assert!(e.contains("unknown field `min_pcrs`"), "{e}");
    let e = load_error("[platform.tdx]\nmr_seams = [\"abcd\"]\n");
    assert!(
        e.starts_with(
            "invalid toml policy: line 2: expected 48 bytes (96 hex digits), found 4 characters"
        ),
        "{e}"
    );
    let dup = format!(
        "{}{}",
        base_toml(),
        base_toml()
            .split("[[apps]]")
            .nth(1)
            .map(|s| format!("[[apps]]{s}"))
            .unwrap()
    );
    assert_eq!(
        load_error(&dup),
        format!("invalid toml policy: line 12: app_id {APP_ID} is listed twice")
    );
    let e = load_error("[tcb]\ngrace_days = 100000\n");
    assert_eq!(
        e,
        "invalid toml policy: tcb.grace_days must be at most 3650, found 100000"
    );
    let e = load_error("platforms = [\n");
    assert!(e.starts_with("invalid toml policy: line "), "{e}");
}

#[test]
fn reason_display_and_digest() {
    let r = Reason::new("debug", "false", "true");
    assert_eq!(r.to_string(), "debug: expected false, found true");
    let a = TomlPolicy::parse(&base_toml()).unwrap();
    let b = TomlPolicy::parse(&format!("{}\n", base_toml())).unwrap();
    assert_ne!(a.digest(), b.digest(), "the digest covers the exact text");
    assert_eq!(
        a.digest(),
        TomlPolicy::parse(&base_toml()).unwrap().digest()
    );
}

#[test]
fn snp_revocation_check_can_be_required() {
    let policy = format!(
        "{}\n[platform.sev-snp]\nrequire_revocation_check = true\n",
        base_toml()
    );
    let mut snp = snp_identity();
    assert_eq!(
        reasons(&decide(&policy, &snp)),
        [
            "platform.sev-snp.require_revocation_check: expected platform_claims.sev_snp.revocation_checked = true (an AMD CRL was checked), found none"
        ]
    );
    snp.platform_claims.0.insert(
        "sev_snp".into(),
        serde_json::json!({"revocation_checked": false}),
    );
    assert!(!decide(&policy, &snp).allow);
    snp.platform_claims.0.insert(
        "sev_snp".into(),
        serde_json::json!({"revocation_checked": true}),
    );
    assert!(decide(&policy, &snp).allow);
    // TDX identities are not affected by the SNP section.
    assert!(decide(&policy, &tdx_identity()).allow);
}

/// The minimum judges the lowest component across the four SNP TCBs: a
/// launch TCB below it denies even when the reported one is current.
#[test]
fn snp_min_tcb_judges_the_lowest_of_the_four() {
    let policy = format!(
        "{}\n[platform.sev-snp]\nmin_tcb = {{ snp = 8 }}\n",
        base_toml()
    );
    let mut snp = snp_identity();
    assert!(decide(&policy, &snp).allow);
    let old = attest_core::BootValue::Components(std::collections::BTreeMap::from([
        ("bootloader".to_owned(), 3),
        ("tee".to_owned(), 0),
        ("snp".to_owned(), 7),
        ("microcode".to_owned(), 115),
    ]));
    snp.boot.registers.insert("launch_tcb".into(), old);
    assert_eq!(
        reasons(&decide(&policy, &snp)),
        [
            "platform.sev-snp.min_tcb.snp: expected the lowest snp of boot.{reported,committed,launch,current}_tcb >= 8, found 7"
        ]
    );
}

/// Advisories: denied unless the policy lists them (dstack's default
/// webhook denies any advisory); `*` accepts any; a deny list always wins.
#[test]
fn advisories_are_denied_unless_allowed() {
    let mut id = tdx_identity();
    id.tcb.status = TcbStatus::SwHardeningNeeded;
    id.tcb.advisory_ids = vec!["INTEL-SA-00837".into(), "INTEL-SA-00615".into()];
    let with = |tcb: &str| base_toml().replace("allow = [\"UpToDate\"]", tcb);
    // The status is allowed, the advisories are not (the default).
    let p = with("allow = [\"UpToDate\", \"SWHardeningNeeded\"]");
    assert_eq!(
        reasons(&decide(&p, &id)),
        [
            "tcb.allowed_advisories: expected only advisories the policy lists as accepted, found INTEL-SA-00837",
            "tcb.allowed_advisories: expected only advisories the policy lists as accepted, found INTEL-SA-00615",
        ]
    );
    // Listing one is not enough.
    let p = with(
        "allow = [\"UpToDate\", \"SWHardeningNeeded\"]\nallowed_advisories = [\"INTEL-SA-00837\"]",
    );
    assert_eq!(
        reasons(&decide(&p, &id)),
        [
            "tcb.allowed_advisories: expected only advisories the policy lists as accepted, found INTEL-SA-00615"
        ]
    );
    let p = with(
        "allow = [\"UpToDate\", \"SWHardeningNeeded\"]\nallowed_advisories = [\"INTEL-SA-00837\", \"INTEL-SA-00615\"]",
    );
    assert!(decide(&p, &id).allow);
    // "*" accepts any; the deny list still wins.
    let p = with(
        "allow = [\"UpToDate\", \"SWHardeningNeeded\"]\nallowed_advisories = [\"*\"]\ndenied_advisories = [\"INTEL-SA-00615\"]",
    );
    assert_eq!(
        reasons(&decide(&p, &id)),
        ["tcb.denied_advisories: expected no advisory on the deny list, found INTEL-SA-00615"]
    );
    // No advisories: nothing to decide.
    id.tcb.advisory_ids.clear();
    let p = with("allow = [\"UpToDate\", \"SWHardeningNeeded\"]");
    assert!(decide(&p, &id).allow);
}

/// An Azure vTPM identity on SEV-SNP: the SNP registers and claims of the
/// reused verifier, the PCRs, the `vtpm` section.
fn vtpm_identity() -> attest_core::VerifiedIdentity {
    let mut id = snp_identity();
    id.platform = attest_core::PlatformId::parse("az-snp-vtpm").unwrap();
    for i in 0..24u8 {
        id.boot.registers.insert(
            format!("pcr{i:02}"),
            BootValue::Bytes(attest_core::HexBytes(vec![i; 32])),
        );
    }
    id.platform_claims.0.insert(
        "vtpm".into(),
        serde_json::json!({"secure_boot": true, "console_enabled": false, "ak_pub_sha256": "ab".repeat(32), "vm_unique_id": null}),
    );
    id
}

#[test]
fn vtpm_sections_pin_pcrs_claims_and_hardware() {
    let base = base_toml().replace("platforms = [", "platforms = [\"az-snp-vtpm\", ");
    let id = vtpm_identity();
    assert!(
        decide(&base, &id).allow,
        "{:?}",
        reasons(&decide(&base, &id))
    );
    let pcr07 = "07".repeat(32);
    let ok = format!(
        "{base}\n[platform.az-snp-vtpm]\nregisters = {{ pcr07 = [\"{}\", \"{}\"], pcr04 = [\"{}\"] }}\nclaims = {{ \"vtpm.secure_boot\" = true, \"vtpm.console_enabled\" = [false], \"vtpm.ak_pub_sha256\" = [\"{}\", \"{}\"] }}\nmin_tcb = {{ snp = 8 }}\nvmpls = [0]\n",
        "ff".repeat(32),
        pcr07.to_uppercase(),
        "04".repeat(32),
        "cd".repeat(32),
        "ab".repeat(32),
    );
    assert!(decide(&ok, &id).allow, "{:?}", reasons(&decide(&ok, &id)));
    // The section applies to az-snp-vtpm only: the plain SNP identity of
    // the same machine is not judged by it.
    let mut snp = vtpm_identity();
    snp.platform = attest_core::PlatformId::SEV_SNP;
    let deny_all = format!(
        "{base}\n[platform.az-snp-vtpm]\nregisters = {{ pcr07 = [\"{}\"] }}\n",
        "ee".repeat(32)
    );
    assert!(decide(&deny_all, &snp_identity()).allow);
    assert_eq!(
        reasons(&decide(&deny_all, &id)),
        [format!(
            "platform.az-snp-vtpm.registers.pcr07: expected boot.pcr07 one of [{}], found {pcr07}",
            "ee".repeat(32)
        )]
    );
    // Every pin fails on its own line; a missing claim or register is none.
    let strict = format!(
        "{base}\n[platform.az-snp-vtpm]\nregisters = {{ pcr99 = [\"00\"] }}\nclaims = {{ \"vtpm.secure_boot\" = false, \"vtpm.vm_unique_id\" = \"x\", \"tdx.fmspc\" = \"00806f050000\" }}\nmin_tcb = {{ snp = 9 }}\nvmpls = [1]\nmin_tee_tcb_svn = \"{}\"\n",
        "00".repeat(16)
    );
    assert_eq!(
        reasons(&decide(&strict, &id)),
        [
            "platform.az-snp-vtpm.min_tee_tcb_svn: expected every byte of boot.tee_tcb_svn at least 00000000000000000000000000000000, found none".to_owned(),
            "platform.az-snp-vtpm.min_tcb.snp: expected the lowest snp of boot.{reported,committed,launch,current}_tcb >= 9, found 8".to_owned(),
            "platform.az-snp-vtpm.vmpls: expected boot.vmpl one of [1], found 0".to_owned(),
            "platform.az-snp-vtpm.registers.pcr99: expected boot.pcr99 one of [00], found none".to_owned(),
            "platform.az-snp-vtpm.claims.tdx.fmspc: expected platform_claims.tdx.fmspc one of [\"00806f050000\"], found none".to_owned(),
            "platform.az-snp-vtpm.claims.vtpm.secure_boot: expected platform_claims.vtpm.secure_boot one of [false], found true".to_owned(),
            "platform.az-snp-vtpm.claims.vtpm.vm_unique_id: expected platform_claims.vtpm.vm_unique_id one of [\"x\"], found none".to_owned(),
        ]
    );
}

/// GetRootKeys role separation (issue 13's negative matrix): an app listed
/// under `[[apps]]` never obtains the root keys, and a KMS deployment listed
/// under `[kms]` never obtains app keys; without `[kms]` no replica is
/// allowed. The same identity, the same policy text, only the request
/// differs.
#[test]
fn root_keys_and_app_keys_are_judged_by_separate_roles() {
    use attest_core::UnixTime;
    use policy::{PolicyInput, RequestContext};
    let id = tdx_identity();
    let root = |p: &TomlPolicy| {
        p.decide(&PolicyInput::new(
            &id,
            RequestContext::root_keys(UnixTime(NOW)),
        ))
    };
    let app = |p: &TomlPolicy| p.decide(&input(&id));

    // The app's policy: app keys yes, root keys no.
    let p = TomlPolicy::parse(&base_toml()).unwrap();
    assert!(app(&p).allow);
    let d = root(&p);
    assert!(!d.allow);
    assert_eq!(
        reasons(&d),
        [
            "kms: expected a [kms] section (replicas allowed to hold the root keys), found none"
                .to_owned(),
            format!("kms.os_images: expected a listed os_image_hash, found {OS_IMAGE}"),
            format!("kms.apps: expected a listed app_id, found {APP_ID}"),
        ]
    );

    // The same deployment as a KMS replica only: root keys yes, app keys no.
    let kms_only = format!(
        r#"
platforms = ["tdx", "sev-snp"]
[tcb]
allow = ["UpToDate"]
[kms]
os_images = ["{OS_IMAGE}"]
[[kms.apps]]
app_id = "{APP_ID}"
compose_hashes = ["{COMPOSE}"]
"#
    );
    let p = TomlPolicy::parse(&kms_only).unwrap();
    assert!(root(&p).allow, "{:?}", reasons(&root(&p)));
    let d = app(&p);
    assert!(!d.allow);
    assert_eq!(
        reasons(&d),
        [
            format!("os_images: expected a listed os_image_hash, found {OS_IMAGE}"),
            format!("apps: expected a listed app_id, found {APP_ID}"),
        ]
    );

    // A [kms] section for another deployment: this app gets no root keys.
    let other = base_toml()
        + &format!(
            "[kms]\nos_images = [\"{OS_IMAGE}\"]\n[[kms.apps]]\napp_id = \"{}\"\ncompose_hashes = [\"{COMPOSE}\"]\n",
            "11".repeat(20)
        );
    let p = TomlPolicy::parse(&other).unwrap();
    assert!(app(&p).allow);
    assert_eq!(
        reasons(&root(&p)),
        [format!(
            "kms.apps: expected a listed app_id, found {APP_ID}"
        )]
    );
}

/// The built-in policies name themselves, and their digests (the EAR's
/// `policy_id`, the audit trail) are SHA-256 over length-framed parts:
/// `"deny_all"`, and `"all_of"` then each inner policy's digest in order.
#[test]
fn built_in_policies_have_fixed_names_and_framed_digests() {
    use policy::{AllOf, DenyAll};
    use std::sync::Arc;
    let framed = |parts: &[&[u8]]| -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        h.finalize().into()
    };
    assert_eq!(DenyAll.backend(), "deny_all");
    assert_eq!(DenyAll.digest(), framed(&[b"deny_all"]));
    let toml = Arc::new(TomlPolicy::parse(&base_toml()).unwrap());
    let all = AllOf::new(vec![toml.clone(), Arc::new(DenyAll)]);
    assert_eq!(all.backend(), "all_of");
    assert_eq!(
        all.digest(),
        framed(&[b"all_of", &toml.digest(), &DenyAll.digest()])
    );
    let swapped = AllOf::new(vec![Arc::new(DenyAll), toml.clone()]);
    assert_ne!(swapped.digest(), all.digest());
}
