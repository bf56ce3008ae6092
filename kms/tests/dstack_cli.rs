//! `kms inspect dstack` and `kms verify dstack` on real dstack evidence
//! (`../shared/vectors`), in every form an attestation travels in.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use attest_testkit::vectors;
use serde_json::Value;

fn kms(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(args)
        .output()
        .expect("run kms");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LITE: &str = "dstack/tdx-lite-attestation.bin";
const LITE_RTMR3: &str = "6f24c170d0fd63fc2b1b53202eea47b013978437fa6982cf5e0438ff95c208994aaa0f4ebab2e3a66824b5b56869137e";
const LITE_APP: &str = "86b0e55f2fa8e4fb69d890f14f54d5612707646e";

fn inspect(path: &std::path::Path) -> (Option<i32>, Value) {
    let (code, v, err) = kms(&["inspect", "dstack", "--attestation", path.to_str().unwrap()]);
    assert!(err.is_empty() || code == Some(1), "{err}");
    (code, v)
}

fn assert_lite(v: &Value) {
    assert_eq!(v["verified"], false);
    assert_eq!(v["platform"], "tdx");
    assert_eq!(v["app"]["app_id"], LITE_APP);
    assert_eq!(
        v["app"]["compose_hash"],
        "86b0e55f2fa8e4fb69d890f14f54d5612707646e2573d54e0d2ddaaade77caa9"
    );
    assert_eq!(
        v["app"]["instance_id"],
        "050bf89570575fe8fab4cb8f0a62a9e64efe8ead"
    );
    assert_eq!(v["app"]["key_provider"]["name"], "kms");
    let names: Vec<&str> = v["runtime_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "system-preparing",
            "app-id",
            "compose-hash",
            "instance-id",
            "boot-mr-done",
            "os-image-hash",
            "key-provider",
            "storage-fs",
            "system-ready"
        ]
    );
    assert_eq!(v["replay"]["register"], "rtmr3");
    assert_eq!(v["replay"]["computed"], LITE_RTMR3);
    assert_eq!(v["replay"]["quoted"], LITE_RTMR3);
    assert_eq!(v["replay"]["matches"], true);
    assert_eq!(v["report_data_consistent"], true);
    // The report data is an app's text, not an RA-TLS binding.
    assert!(
        hex::decode(v["report_data"].as_str().unwrap())
            .unwrap()
            .starts_with(b"dip1::secp256k1c-pk:")
    );
}

#[test]
fn the_real_stripped_tdx_attestation_decodes_replays_rtmr3_and_names_its_app() {
    let (code, v) = inspect(&vectors::path(LITE));
    assert_eq!(code, Some(0));
    assert_eq!(v["encoding"], "v0");
    assert_lite(&v);

    // The same as hex text, `0x` hex, and dstack's fixture JSON.
    let dir = tempfile::tempdir().unwrap();
    let raw = vectors::read(LITE);
    for (name, text) in [
        ("lite.hex", hex::encode(&raw)),
        ("lite.0x", format!("0x{}\n", hex::encode(&raw))),
        (
            "lite.json",
            serde_json::json!({"attestation": hex::encode(&raw)}).to_string(),
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let (code, v) = inspect(&p);
        assert_eq!(code, Some(0), "{name}");
        assert_lite(&v);
    }

    // In an RA-TLS certificate (PEM and DER), as a guest carries it: not
    // bound to that certificate's key (its report data is an app's text).
    let ca = kms::service::dstack::certs::TempCa::generate().unwrap();
    let cert = attest_testkit::dstack::ra_cert(
        attest_testkit::dstack::ra_key(),
        ca.cert_pem(),
        ca.key_pem(),
        &[(8, raw.clone())],
    );
    for (name, bytes) in [("cert.pem", cert.pem.into_bytes()), ("cert.der", cert.der)] {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let (code, v) = inspect(&p);
        assert_eq!(code, Some(0), "{name}");
        assert_lite(&v);
        assert_eq!(v["bound_to_certificate_key"], false);
    }

    // One runtime event's payload changed (the top-level runtime events,
    // which come after the stripped log): the replay no longer matches.
    let compose =
        hex::decode("86b0e55f2fa8e4fb69d890f14f54d5612707646e2573d54e0d2ddaaade77caa9").unwrap();
    let at = raw
        .windows(compose.len())
        .rposition(|w| w == compose)
        .unwrap();
    let mut tampered = raw.clone();
    tampered[at + 31] ^= 1;
    let p = dir.path().join("tampered.bin");
    std::fs::write(&p, &tampered).unwrap();
    let (code, v) = inspect(&p);
    assert_eq!(code, Some(1));
    assert_eq!(v["replay"]["matches"], false);
    assert_eq!(v["replay"]["quoted"], LITE_RTMR3);
    assert_ne!(v["replay"]["computed"], LITE_RTMR3);
}

#[test]
fn a_quote_with_its_full_event_log_replays_rtmr3() {
    let (code, v) = inspect(&vectors::path("tdx/dstack/quote-report.json"));
    assert_eq!(code, Some(0));
    assert_eq!(v["encoding"], "legacy");
    assert_eq!(v["replay"]["matches"], true);
    assert_eq!(
        v["app"]["app_id"],
        "3763bc34552cf3a27ff71ad5f7a90471562a1a2d"
    );
    assert_eq!(v["app"]["key_provider"]["name"], "local-sgx");
    // Eight RTMR3 events: the boot identity and one app event after
    // system-ready.
    assert_eq!(v["runtime_events"].as_array().unwrap().len(), 8);
    let (code, v) = inspect(&vectors::path("tdx/dstack/tdx-lite-getquote.json"));
    assert_eq!(code, Some(0));
    assert_eq!(v["replay"]["computed"], LITE_RTMR3);
    assert_eq!(v["app"]["app_id"], LITE_APP);
}

/// A real SNP report (and its VCEK) in dstack's V0 container: verify runs
/// the production SNP plug-in, which accepts the signature and chain and
/// then finds that HOST_DATA does not bind this `mr_config`.
#[test]
fn snp_attestations_inspect_and_verify_with_the_production_plug_in() {
    let report = vectors::read("snp/reports/milan-v2-a.report.bin");
    let vcek = vectors::read("snp/reports/milan-v2-a.vcek.der");
    let doc = format!(
        "{{\"version\":3,\"app_id\":\"{}\",\"compose_hash\":\"{}\",\"key_provider\":\"kms\"}}",
        "a1".repeat(20),
        "c0".repeat(32)
    );
    let rd: [u8; 64] = report[0x50..0x90].try_into().unwrap();
    let att = attest_testkit::dstack::wire::v0_snp(&report, &[vcek], &doc, &rd, "{}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("snp.bin");
    std::fs::write(&p, att).unwrap();
    let (code, v) = inspect(&p);
    assert_eq!(code, Some(1), "HOST_DATA of this report is zero");
    assert_eq!(v["platform"], "sev-snp");
    assert_eq!(v["host_data"]["reported"], "00".repeat(32));
    assert_eq!(v["host_data"]["matches"], false);
    assert_eq!(v["app"]["app_id"], "a1".repeat(20));
    assert_eq!(v["runtime_events"], serde_json::json!([]));

    let (code, _, err) = kms(&[
        "verify",
        "dstack",
        "--attestation",
        p.to_str().unwrap(),
        "--at",
        "1740000000",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: identity_mismatch: host_data: evidence has 0000"),
        "{err}"
    );
}

#[test]
fn verify_dstack_runs_the_tdx_plug_in() {
    let lite = vectors::path(LITE);
    let (code, _, err) = kms(&[
        "verify",
        "dstack",
        "--attestation",
        lite.to_str().unwrap(),
        "--at",
        "1752919234",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim(),
        "error: TDX evidence needs --collateral (dcap-qvl QuoteCollateralV3 JSON)"
    );
    // No collateral of this quote is public: the plug-in gets as far as
    // the PCK chain in the quote, checked at the given time.
    let coll = vectors::path("tdx/dcap-qvl/tdx_quote_collateral.json");
    let (code, _, err) = kms(&[
        "verify",
        "dstack",
        "--attestation",
        lite.to_str().unwrap(),
        "--collateral",
        coll.to_str().unwrap(),
        "--at",
        "1752919234",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim(),
        "error: untrusted_chain: PCK leaf certificate is valid 1776214258..1997139058, not at 1752919234"
    );
    // Garbage is a decoding error, not a panic.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("garbage");
    std::fs::write(&p, [0x07, 1, 2, 3]).unwrap();
    let (code, _, err) = kms(&["inspect", "dstack", "--attestation", p.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim(),
        "error: malformed: dstack attestation first byte: expected V0 (0x00) or a V1 msgpack map (0x80..=0x8f, 0xde, 0xdf), found 0x07"
    );
}
