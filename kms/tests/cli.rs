//! The `kms` command tree: help lists it, and no subcommand panics.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

fn kms(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(args)
        .output()
        .expect("run kms")
}

#[test]
fn help_lists_the_command_tree() {
    let out = kms(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "verify", "inspect", "measure", "image", "policy"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(cmd)),
            "`kms --help` does not list {cmd}:\n{text}"
        );
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = kms(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

#[test]
fn incomplete_commands_fail_cleanly() {
    // Without arguments every operator command fails with a one-line
    // message (usage or "not implemented"), never a panic.
    for cmd in [
        "verify", "inspect", "measure", "image", "policy", "config", "keys",
    ] {
        let out = kms(&[cmd]);
        assert!(
            !out.status.success(),
            "kms {cmd} succeeded without arguments"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "kms {cmd}: {err}");
        assert!(
            err.starts_with("error:") || err.contains("Usage:"),
            "kms {cmd}: {err}"
        );
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn identity_json(compose: &str) -> String {
    serde_json::json!({
        "platform": "sev-snp",
        "app": {
            "app_id": "11".repeat(20), "compose_hash": compose, "instance_id": null,
            "key_provider": null, "os_image_hash": "22".repeat(32)
        },
        "boot": {"measurement": "ab".repeat(48), "vmpl": 0, "boot_digest": "ab".repeat(48)},
        "tcb": {"status": "UpToDate", "advisory_ids": [], "tcb_date": null},
        "debug": false,
        "report_data": "00".repeat(64),
        "report_data_checked": false,
        "device_id": null,
        "platform_claims": {}
    })
    .to_string()
}

/// `kms policy check --config` decides with exactly what the server loads:
/// every backend of an `all_of` (TOML, and Rego with its data file), and
/// the image registry resolving `os_image_hash`.
#[test]
fn policy_check_with_a_configuration_decides_as_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let image = "55".repeat(32);
    write(
        dir.path(),
        "p.toml",
        &format!(
            "platforms = [\"sev-snp\"]\nos_images = [\"{image}\"]\n[[apps]]\napp_id = \"{}\"\ncompose_hashes = [\"{}\"]\n",
            "11".repeat(20),
            "33".repeat(32)
        ),
    );
    write(
        dir.path(),
        "p.rego",
        "package kms\n\ndefault allow := false\nallow if { input.app.compose_hash in data.allowlist.composes }\n",
    );
    write(
        dir.path(),
        "data.json",
        &format!(
            "{{\"allowlist\":{{\"composes\":[\"{}\"]}}}}",
            "33".repeat(32)
        ),
    );
    write(
        dir.path(),
        "images.toml",
        &format!(
            "[[image]]\nos_image_hash = \"{image}\"\n[[image.sev-snp]]\nmeasurement = \"{}\"\n",
            "ab".repeat(48)
        ),
    );
    let config = write(
        dir.path(),
        "kms.toml",
        "image_registry = \"images.toml\"\n[policy]\ntype = \"all_of\"\npolicies = [\n  { type = \"toml\", file = \"p.toml\" },\n  { type = \"rego\", file = \"p.rego\", data = \"data.json\" },\n]\n",
    );
    let run = |compose: &str| {
        let id = write(dir.path(), "id.json", &identity_json(compose));
        kms(&[
            "policy",
            "check",
            "--config",
            config.to_str().unwrap(),
            "--identity",
            id.to_str().unwrap(),
            "--at",
            "1750000000",
        ])
    };
    // The identity file names os_image_hash 22..; the registry resolves
    // the measurement to 55.., which the TOML policy lists.
    let out = run(&"33".repeat(32));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["policy"]["backend"], "all_of");
    // Another compose hash: both backends deny.
    let out = run(&"44".repeat(32));
    assert_eq!(out.status.code(), Some(1));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<&str> = d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["apps.compose_hashes", "rego"]);
}

#[test]
fn policy_check_allows_denies_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        &format!(
            "platforms = [\"sev-snp\"]\nos_images = [\"{}\"]\n[[apps]]\napp_id = \"{}\"\ncompose_hashes = [\"{}\"]\n",
            "22".repeat(32),
            "11".repeat(20),
            "33".repeat(32)
        ),
    );
    let good = write(dir.path(), "good.json", &identity_json(&"33".repeat(32)));
    let bad = write(dir.path(), "bad.json", &identity_json(&"44".repeat(32)));
    let run = |id: &std::path::Path| {
        kms(&[
            "policy",
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "--identity",
            id.to_str().unwrap(),
            "--at",
            "1750000000",
        ])
    };
    let out = run(&good);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["allow"], true);
    assert_eq!(d["policy"]["backend"], "toml");

    let out = run(&bad);
    assert_eq!(out.status.code(), Some(1));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["allow"], false);
    assert_eq!(d["reasons"][0]["rule"], "apps.compose_hashes");
    assert_eq!(d["reasons"][0]["found"], "44".repeat(32));

    // Unusable inputs are exit 2 with one line on stderr.
    let broken = write(dir.path(), "broken.toml", "platforms = 3\n");
    let out = kms(&[
        "policy",
        "check",
        "--policy",
        broken.to_str().unwrap(),
        "--identity",
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: invalid toml policy "), "{err}");
    assert!(err.contains("line 1"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let garbage = write(dir.path(), "garbage.json", "{\"platform\": \"tdx\"}");
    let out = kms(&[
        "policy",
        "check",
        "--policy",
        policy.to_str().unwrap(),
        "--identity",
        garbage.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: invalid identity "));
}

#[test]
fn policy_explain_names_every_field() {
    let out = kms(&["policy", "explain"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for field in [
        "platform",
        "app.app_id",
        "app.compose_hash",
        "app.instance_id",
        "app.key_provider",
        "app.os_image_hash",
        "boot.boot_digest",
        "tcb.status",
        "tcb.advisory_ids",
        "tcb.tcb_date",
        "tcb.out_of_date_since",
        "debug",
        "report_data",
        "report_data_checked",
        "device_id",
        "platform_claims",
        "request.time",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(field)),
            "explain lacks {field}"
        );
    }
}

fn vectors() -> std::path::PathBuf {
    attest_testkit::vectors::dir()
}

#[test]
fn verify_tdx_prints_the_identity_or_a_kinded_error() {
    let q = vectors().join("tdx/dcap-qvl");
    let quote = q.join("tdx_quote");
    let coll = q.join("tdx_quote_collateral.json");
    let args = |at: &str| {
        vec![
            "verify".to_owned(),
            "tdx".into(),
            "--quote".into(),
            quote.display().to_string(),
            "--collateral".into(),
            coll.display().to_string(),
            "--at".into(),
            at.into(),
        ]
    };
    let out = Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(args("1752919234"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(id["platform"], "tdx");
    assert_eq!(id["tcb"]["status"], "UpToDate");
    assert_eq!(
        id["boot"]["mrtd"],
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(args("1752919236"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: collateral_expired: "), "{err}");
    assert_eq!(err.lines().count(), 1);

    let mut bad_rd = args("1752919234");
    bad_rd.extend(["--report-data".into(), "00".repeat(64)]);
    let out = Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(bad_rd)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: binding_mismatch: "));
}

#[test]
fn inspect_tdx_replays_and_fails_on_mismatch() {
    let g = vectors().join("tdx/go-tdx-guest");
    let quote = g.join("cos-113-tdx-quote.dat");
    let log = g.join("ccel_data.dat");
    let out = kms(&[
        "inspect",
        "tdx",
        "--quote",
        quote.to_str().unwrap(),
        "--event-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["replay"][0]["register"], "rtmr0");
    assert_eq!(v["replay"][0]["matches"], true);

    // Another boot's log does not replay to this quote.
    let dir = tempfile::tempdir().unwrap();
    let text = attest_testkit::vectors::read_string("tdx/dstack/quote-report.json");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let other = write(dir.path(), "other.json", doc["event_log"].as_str().unwrap());
    let out = kms(&[
        "inspect",
        "tdx",
        "--quote",
        quote.to_str().unwrap(),
        "--event-log",
        other.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["replay"][0]["matches"], false);
}

#[test]
fn verify_sev_snp_prints_the_identity_and_checks_supplied_chains() {
    let v = vectors().join("snp");
    let p = |rel: &str| v.join(rel).display().to_string();
    let base = [
        "verify".to_owned(),
        "sev-snp".into(),
        "--report".into(),
        p("reports/milan-v2-a.report.bin"),
        "--vcek".into(),
        p("reports/milan-v2-a.vcek.der"),
        "--at".into(),
        "1740000000".into(),
    ];
    let run = |extra: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_kms"))
            .args(base.iter().chain(extra))
            .output()
            .unwrap()
    };
    let out = run(&["--cert-chain".into(), p("amd-roots/milan-vcek-chain.pem")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(id["platform"], "sev-snp");
    assert_eq!(
        id["boot"]["measurement"],
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(
        id["boot"]["reported_tcb"],
        serde_json::json!({"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115})
    );
    assert_eq!(id["platform_claims"]["sev_snp"]["product"], "Milan");

    // A chain whose ARK is not the pinned Milan ARK.
    let out = run(&["--cert-chain".into(), p("amd-roots/genoa-vcek-chain.pem")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: untrusted_chain: the supplied chain's ARK is not AMD's pinned Milan ARK\n"
    );
    // A flipped report bit.
    let dir = tempfile::tempdir().unwrap();
    let mut report = std::fs::read(v.join("reports/milan-v2-a.report.bin")).unwrap();
    report[21] ^= 0x80;
    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, report).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kms"))
        .args([
            "verify",
            "sev-snp",
            "--report",
            bad.to_str().unwrap(),
            "--vcek",
            &p("reports/milan-v2-a.vcek.der"),
            "--at",
            "1740000000",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: bad_signature: "));
}

#[test]
fn config_check_prints_the_effective_configuration() {
    let out = kms(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:7000\""), "{text}");
    assert!(text.contains("type = \"deny_all\""), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "kms.toml",
        "listen = \"127.0.0.1:7000\"\nlisen = 1\n",
    );
    let out = kms(&["config", "check", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `lisen`"));
    let missing_policy = write(
        dir.path(),
        "p.toml",
        "[policy]\ntype = \"toml\"\nfile = \"nope.toml\"\n",
    );
    let out = kms(&[
        "config",
        "check",
        "--config",
        missing_policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read policy"));
}

/// The second review: `[sev_snp] min_tcb.<Product>` dropped unknown keys
/// (`fcm = 9` for `fmc`, so Turin's FMC minimum was not enforced), and a
/// huge `challenge_ttl_secs` overflowed into challenges that never expire.
#[test]
fn configuration_typos_and_out_of_range_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        (
            "[sev_snp.min_tcb.Turin]\nbootloader = 1\ntee = 1\nsnp = 1\nmicrocode = 1\nfcm = 9\n",
            "unknown field `fcm`",
        ),
        (
            "challenge_ttl_secs = 18446744073709551615\n",
            "challenge_ttl_secs must be 1..=3600",
        ),
        (
            "challenge_ttl_secs = 0\n",
            "challenge_ttl_secs must be 1..=3600",
        ),
        (
            "[limits]\nmax_concurrent_streams = 0\n",
            "limits.max_concurrent_streams must be greater than 0",
        ),
        ("[limits]\nstreams = 5\n", "unknown field `streams`"),
        ("[tdx]\npccs = \"x\"\n", "unknown field `pccs`"),
        ("max_request_bytes = 1\n", "max_request_bytes must be"),
    ] {
        let p = write(dir.path(), "kms.toml", text);
        let out = kms(&["config", "check", "--config", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
    }
    // The right spelling loads.
    let p = write(
        dir.path(),
        "kms.toml",
        "[sev_snp.min_tcb.Turin]\nbootloader = 1\ntee = 1\nsnp = 1\nmicrocode = 1\nfmc = 9\n",
    );
    let out = kms(&["config", "check", "--config", p.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kms demo` exists only with the `demo` feature (the workspace test run
/// enables it through the end-to-end crates).
#[cfg(feature = "demo")]
#[test]
fn demo_runs_both_platforms_and_both_refusals() {
    let out = kms(&["demo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("TEST ROOTS ONLY"));
    assert!(text.contains("same app keys on both platforms: yes"));
    assert_eq!(
        text.matches("DENIED (PermissionDenied)").count(),
        2,
        "{text}"
    );
    assert!(text.contains("Debug mode"));
    assert!(text.contains("apps.compose_hashes"));
}

#[test]
fn config_check_validates_dstack_compat() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "kms.toml",
        "[dstack_compat]\nlisten = \"0.0.0.0:8000\"\nserver_names = [\"kms.example.com\", \"10.0.0.5\"]\ngateway_app_id = \"any\"\n",
    );
    let out = kms(&["config", "check", "--config", good.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("[dstack_compat]"), "{text}");
    assert!(
        text.contains("server_names = [\n    \"kms.example.com\",\n    \"10.0.0.5\",\n]"),
        "{text}"
    );
    for (body, want) in [
        (
            "[dstack_compat]\nlisten = \"0.0.0.0:8000\"\nserver_names = []\n",
            "dstack_compat.server_names must name at least one host",
        ),
        (
            "[dstack_compat]\nlisten = \"0.0.0.0:8000\"\nserver_names = [\"kms example\"]\n",
            "dstack_compat.server_names: \"kms example\" is neither a DNS name nor an IP address",
        ),
        (
            "[dstack_compat]\nlisten = \"0.0.0.0:8000\"\nserver_names = [\"k\"]\nport = 1\n",
            "unknown field `port`",
        ),
        (
            "[dstack_compat]\nserver_names = [\"k\"]\n",
            "missing field `listen`",
        ),
    ] {
        let p = write(dir.path(), "bad.toml", body);
        let out = kms(&["config", "check", "--config", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{body}: {err}");
        assert!(err.contains(want), "{body}: {err}");
    }
}

#[test]
fn verify_and_inspect_azure_vtpm_evidence() {
    let v = vectors().join("azure-vtpm");
    let p = |rel: &str| v.join(rel).display().to_string();
    let run = |args: &[&str]| kms(args);
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let challenge = hex::encode(b"challenge");
    let out = run(&[
        "verify",
        "az-snp-vtpm",
        "--evidence",
        &p("evidence-v1.json"),
        "--at",
        "1740000000",
        "--nonce",
        &challenge,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(id["platform"], "az-snp-vtpm");
    assert!(id["app"].is_null());
    assert_eq!(id["boot"]["vmpl"], 0);
    assert!(
        id["boot"]["pcr00"]
            .as_str()
            .unwrap()
            .starts_with("e15c4479")
    );
    assert!(
        id["boot"]["measurement"]
            .as_str()
            .unwrap()
            .starts_with("6a063be9")
    );
    assert_eq!(id["platform_claims"]["vtpm"]["nonce"], challenge);
    // Without --nonce any nonce is accepted and reported.
    let out = run(&[
        "verify",
        "az-snp-vtpm",
        "--evidence",
        &p("evidence-genoa.json"),
        "--at",
        "1740000000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        id["platform_claims"]["vtpm"]["nonce"]
            .as_str()
            .unwrap()
            .starts_with("0218488b")
    );
    // A wrong nonce, the KMS binding (Trustee's quotes lack it), a wrong
    // report data.
    for (extra, want) in [
        (&["--nonce", "00"][..], "error: binding_mismatch: "),
        (&["--nonce", "kms"][..], "error: binding_mismatch: "),
        (
            &["--report-data", &"11".repeat(64)][..],
            "error: binding_mismatch: ",
        ),
    ] {
        let v0 = p("evidence-v0.json");
        let mut args = vec![
            "verify",
            "az-snp-vtpm",
            "--evidence",
            &v0,
            "--at",
            "1740000000",
        ];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        assert!(
            stderr(&out).starts_with(want),
            "{extra:?}: {}",
            stderr(&out)
        );
    }
    // The TDX set on the SNP verb, and the TDX verb with another platform's
    // collateral.
    let out = run(&[
        "verify",
        "az-snp-vtpm",
        "--evidence",
        &p("tdx/evidence-v1.json"),
        "--at",
        "1740000000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("report_type: expected 2 (SNP), found 4 (TDX)"));
    let other = vectors().join("tdx/dcap-qvl/tdx_quote_collateral.json");
    let out = run(&[
        "verify",
        "az-tdx-vtpm",
        "--evidence",
        &p("tdx/evidence-v1.json"),
        "--collateral",
        other.to_str().unwrap(),
        "--at",
        "1740000000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));

    // inspect: every part parsed, nothing verified.
    let out = run(&["inspect", "vtpm", "--evidence", &p("tdx/evidence-v0.json")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let i: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(i["verified"], false);
    assert_eq!(i["endorsement"], "td_quote");
    assert_eq!(i["hcl_report"]["tee"], "TDX");
    assert_eq!(
        i["hcl_report"]["claims_sha256"],
        "9734504f161d104c74e3165c15f779b06a9bb40dfa71937817d7eee68e593839"
    );
    assert_eq!(i["quote"]["nonce"], challenge);
    assert_eq!(i["quote"]["listed_pcrs_match_digest"], true);
    // A PCR changed: parsed, but the listed PCRs no longer match (exit 1).
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(v.join("evidence-v1.json")).unwrap()).unwrap();
    doc["tpm_quote"]["pcrs"][3] = "11".repeat(32).into();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("e.json");
    std::fs::write(&f, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = run(&["inspect", "vtpm", "--evidence", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let i: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(i["quote"]["listed_pcrs_match_digest"], false);
    assert_eq!(i["pcrs"]["pcr03"], "11".repeat(32));
}

/// `kms keys init` creates a data directory without serving; `kms keys
/// show` prints its public half with the EAR key; `kms verify ... --format
/// ear --data-dir D` signs an attestation result offline that an
/// independent JWT library verifies with that key.
#[test]
fn keys_init_show_and_offline_attestation_results() {
    use jwt_compact::AlgorithmExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let out = kms(&["keys", "init", "--data-dir", d]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("created "), "{text}");
    let kpi = text
        .lines()
        .find_map(|l| l.strip_prefix("key provider id: "))
        .unwrap()
        .to_owned();
    // Again: the same keys, reported.
    let again = kms(&["keys", "init", "--data-dir", d]);
    assert!(String::from_utf8_lossy(&again.stdout).contains(&kpi));

    let out = kms(&["keys", "show", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(0));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["key_provider_id"], kpi);
    assert_eq!(shown["ear_jwk"]["kty"], "EC");
    assert_eq!(shown["ear_jwk"]["alg"], "ES256");
    assert!(
        shown["ca_cert"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    // No secret is printed.
    let secret = std::fs::read(data.join("root-secret")).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&hex::encode(secret)));
    let empty = dir.path().join("empty");
    let out = kms(&["keys", "show", "--data-dir", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no root keys"));

    let q = vectors().join("tdx/dcap-qvl");
    let (quote, coll) = (q.join("tdx_quote"), q.join("tdx_quote_collateral.json"));
    let out = kms(&[
        "verify",
        "tdx",
        "--quote",
        quote.to_str().unwrap(),
        "--collateral",
        coll.to_str().unwrap(),
        "--at",
        "1752919234",
        "--format",
        "ear",
        "--data-dir",
        d,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ear = String::from_utf8(out.stdout).unwrap();
    let jwk: jwt_compact::jwk::JsonWebKey<'_> =
        serde_json::from_value(shown["ear_jwk"].clone()).unwrap();
    let key = p256::ecdsa::VerifyingKey::try_from(&jwk).unwrap();
    let token = jwt_compact::UntrustedToken::new(ear.trim()).unwrap();
    let claims = jwt_compact::alg::Es256
        .validator::<serde_json::Value>(&key)
        .validate(&token)
        .unwrap()
        .claims()
        .custom
        .clone();
    let s = &claims["submods"]["tdx"];
    assert_eq!(s["ear.status"], "affirming");
    assert_eq!(
        s["ear.veraison.annotated-evidence"]["tcb"]["status"],
        "UpToDate"
    );
    assert!(s.get("ear.appraisal-policy-id").is_none());
    // Without a data directory there is no key to sign with.
    let out = kms(&[
        "verify",
        "--format",
        "ear",
        "tdx",
        "--quote",
        quote.to_str().unwrap(),
        "--collateral",
        coll.to_str().unwrap(),
        "--at",
        "1752919234",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format ear needs --data-dir"));
}

/// `[onboard]` is validated: an http(s) source and a hex key provider id;
/// without configfs-tsm here, `kms onboard` fails cleanly before any key is
/// written.
#[test]
fn onboard_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (body, want) in [
        (
            "[onboard]\nfrom = \"ftp://kms\"\nkey_provider_id = \"3059\"\n",
            "onboard.from must be an http(s) URL",
        ),
        (
            "[onboard]\nfrom = \"https://kms\"\nkey_provider_id = \"not hex\"\n",
            "onboard.key_provider_id must be the source's key provider id (hex)",
        ),
        (
            "[onboard]\nfrom = \"https://kms\"\nkey_provider_id = \"3059\"\nurl = \"x\"\n",
            "unknown field `url`",
        ),
    ] {
        let p = write(dir.path(), "bad.toml", body);
        let out = kms(&["config", "check", "--config", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{body}: {err}");
        assert!(err.contains(want), "{body}: {err}");
    }
    let cfg = write(
        dir.path(),
        "kms.toml",
        &format!("data_dir = \"{}\"\n", dir.path().join("data").display()),
    );
    let out = kms(&[
        "onboard",
        "--from",
        "http://127.0.0.1:9",
        "--key-provider-id",
        "3059",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("onboarding from http://127.0.0.1:9"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("data").join("root-ca.key").exists());
}
