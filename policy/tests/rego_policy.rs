//! The Rego backend: the same decisions as the TOML policy on both
//! platforms, deny reasons, load errors, and the evaluation time limit.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use attest_core::TcbStatus;
use common::*;
use policy::{Policy, RegoPolicy, TomlPolicy};

fn rego_source() -> String {
    format!(
        r#"
package kms

default allow := false

allow if count(deny_reasons) == 0

apps := {{"{APP_ID}": {{"{COMPOSE}"}}}}

deny_reasons contains "debug TEE" if input.debug

deny_reasons contains msg if {{
    not input.platform in {{"tdx", "sev-snp"}}
    msg := sprintf("platform %s not allowed", [input.platform])
}}

deny_reasons contains msg if {{
    input.tcb.status != "UpToDate"
    msg := sprintf("tcb.status %s not allowed", [input.tcb.status])
}}

deny_reasons contains "os_image_hash not allowed" if not input.app.os_image_hash in {{"{OS_IMAGE}"}}

deny_reasons contains msg if {{
    not apps[input.app.app_id]
    msg := sprintf("app %s not listed", [input.app.app_id])
}}

deny_reasons contains msg if {{
    hashes := apps[input.app.app_id]
    not input.app.compose_hash in hashes
    msg := sprintf("compose hash %s not allowed", [input.app.compose_hash])
}}
"#
    )
}

fn messages(d: &policy::Decision) -> Vec<String> {
    d.reasons.iter().map(|r| r.found.clone()).collect()
}

#[test]
fn rego_and_toml_agree_on_both_platforms() {
    let rego = RegoPolicy::parse(&rego_source()).unwrap();
    let toml = TomlPolicy::parse(&base_toml()).unwrap();
    type Mutation = fn(&mut attest_core::VerifiedIdentity);
    let mutations: [(&str, Mutation); 6] = [
        ("none", |_| {}),
        ("debug", |id| id.debug = true),
        ("tcb", |id| id.tcb.status = TcbStatus::OutOfDate),
        ("image", |id| id.app.os_image_hash = None),
        ("app", |id| id.app.app_id.0[0] ^= 1),
        ("compose", |id| id.app.compose_hash.0[0] ^= 1),
    ];
    for (name, mutate) in mutations {
        let mut decisions = Vec::new();
        for mut id in [tdx_identity(), snp_identity()] {
            mutate(&mut id);
            let r = rego.decide(&input(&id));
            let t = toml.decide(&input(&id));
            assert_eq!(r.allow, t.allow, "{name} on {}", id.platform);
            decisions.push(r);
        }
        assert_eq!(
            decisions[0], decisions[1],
            "{name}: TDX and SNP decided differently"
        );
        assert_eq!(decisions[0].allow, name == "none", "{name}");
    }
}

#[test]
fn deny_reasons_explain() {
    let rego = RegoPolicy::parse(&rego_source()).unwrap();
    let mut id = snp_identity();
    id.debug = true;
    id.tcb.status = TcbStatus::SwHardeningNeeded;
    let d = rego.decide(&input(&id));
    assert!(!d.allow);
    let mut got = messages(&d);
    got.sort();
    assert_eq!(
        got,
        ["debug TEE", "tcb.status SWHardeningNeeded not allowed"]
    );
    assert!(d.reasons.iter().all(|r| r.rule == "rego.deny_reasons"));
}

#[test]
fn request_context_is_in_the_input() {
    let src = format!(
        "package kms\nallow if input.request.time < {}\nallow if false\n",
        NOW + 1
    );
    let rego = RegoPolicy::parse(&src).unwrap();
    let id = tdx_identity();
    assert!(rego.decide(&input_at(&id, NOW)).allow);
    let late = rego.decide(&input_at(&id, NOW + 1));
    assert!(!late.allow);
    assert_eq!(
        late.reasons[0].to_string(),
        "rego: expected data.kms.allow == true, found undefined"
    );
}

#[test]
fn bad_modules_are_load_errors() {
    let err = |src: &str| match RegoPolicy::parse(src) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loaded: {src}"),
    };
    assert!(err("package kms\nallow if {").starts_with("invalid rego policy: "));
    assert_eq!(
        err("package other\nallow := true\n"),
        "invalid rego policy: the module must be `package kms`, found data.other"
    );
    assert_eq!(
        err("package kms\ndeny_reasons contains \"x\"\n"),
        "invalid rego policy: the module declares no `allow` rule"
    );
    let huge = format!(
        "package kms\nallow := true\n#{}\n",
        "x".repeat(2 * 1024 * 1024)
    );
    assert!(err(&huge).starts_with("invalid rego policy: "));
}

#[test]
fn a_runaway_policy_is_stopped_and_denies() {
    let src = r#"
package kms
default allow := false
r := numbers.range(1, 5000)
allow if {
    input.request.time > 0
    some a in r
    some b in r
    a * b == -1
}
"#;
    // The loop only runs on a real request (loading evaluates once on an
    // empty input), 25 million iterations: far past the limit.
    let rego = RegoPolicy::with_limit(src, Duration::from_millis(20)).unwrap();
    let id = tdx_identity();
    let start = Instant::now();
    let d = rego.decide(&input(&id));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert!(!d.allow);
    assert!(
        d.reasons[0].found.starts_with("evaluation error:"),
        "{:?}",
        d.reasons
    );
}

#[tokio::test]
async fn trait_object_and_digest() {
    let a: Box<dyn Policy> = Box::new(RegoPolicy::parse(&rego_source()).unwrap());
    assert_eq!(a.backend(), "rego");
    assert!(a.evaluate(&input(&tdx_identity())).await.allow);
    let b = RegoPolicy::parse(&format!("{}\n", rego_source())).unwrap();
    assert_ne!(a.digest(), b.digest());
}

/// The second review: a data document with `{"kms": {"allow": true}}` (the
/// file meant for allowlists) overrode the module's `allow` rule and
/// allowed every request. Such a document is refused at load.
#[test]
fn data_cannot_override_the_module() {
    use std::time::Duration;
    let deny_all = "package kms\n\ndefault allow := false\n";
    for data in [
        r#"{"kms":{"allow":true}}"#,
        r#"{"kms":{"deny_reasons":[]}}"#,
        r#"{"kms":{}}"#,
        r#"[1]"#,
    ] {
        let err = match RegoPolicy::with_data(deny_all, Some(data), Duration::from_millis(50)) {
            Ok(p) => {
                // Even if it loaded, it must not allow.
                assert!(!p.decide(&input(&tdx_identity())).allow, "{data}");
                panic!("{data} loaded")
            }
            Err(e) => e.to_string(),
        };
        assert!(err.contains("data document"), "{data}: {err}");
    }
    // Data under its own key works, and decides through the module only.
    let module = "package kms\n\ndefault allow := false\nallow if { input.app.app_id in data.allowlist.apps }\n";
    let app = tdx_identity().app.app_id.to_hex();
    let good = format!(r#"{{"allowlist":{{"apps":["{app}"]}}}}"#);
    let p = RegoPolicy::with_data(module, Some(&good), Duration::from_millis(50)).unwrap();
    assert!(p.decide(&input(&tdx_identity())).allow);
    // The digest covers the data: two replicas with different data files
    // publish different digests.
    let other = RegoPolicy::with_data(
        module,
        Some(r#"{"allowlist":{"apps":[]}}"#),
        Duration::from_millis(50),
    )
    .unwrap();
    assert!(!other.decide(&input(&tdx_identity())).allow);
    assert_ne!(p.digest(), other.digest());
}

/// A replica asking for the root keys is decided by `allow_root_keys`,
/// never by `allow`: the app allowlist above allows this app's keys but, as
/// the module declares no `allow_root_keys`, no root keys; a module that
/// declares it decides them, and its `allow` still decides app keys.
#[test]
fn root_keys_are_decided_by_their_own_rule() {
    let id = tdx_identity();
    let root_keys = |id| {
        policy::PolicyInput::new(
            id,
            policy::RequestContext::root_keys(attest_core::UnixTime(common::NOW)),
        )
    };
    let apps_only = RegoPolicy::parse(&rego_source()).unwrap();
    assert!(apps_only.decide(&input(&id)).allow);
    let d = apps_only.decide(&root_keys(&id));
    assert!(!d.allow);
    assert_eq!(d.reasons.len(), 1);
    assert_eq!(d.reasons[0].rule, "rego");
    assert_eq!(d.reasons[0].expected, "data.kms.allow_root_keys == true");
    assert!(
        d.reasons[0]
            .found
            .contains("declares no `allow_root_keys` rule: no replica may hold the root keys"),
        "{:?}",
        d.reasons
    );

    let with_role = format!(
        "{}\nkms_deployments := {{\"{COMPOSE}\"}}\nallow_root_keys if input.app.compose_hash in kms_deployments\n",
        rego_source()
    );
    let p = RegoPolicy::parse(&with_role).unwrap();
    assert!(p.decide(&root_keys(&id)).allow);
    assert!(p.decide(&input(&id)).allow);
    let mut other = id.clone();
    other.app.compose_hash.0[0] ^= 1;
    let d = p.decide(&root_keys(&other));
    assert!(!d.allow);
    assert_eq!(d.reasons[0].found, "undefined");
}

/// A module may be up to 1 MiB (long comments count); a larger one is
/// refused before the engine parses it.
#[test]
fn modules_up_to_one_mebibyte_load() {
    let src = rego_source();
    // Lines of 1000 bytes: the engine also bounds line length and count.
    let line = format!("# {}\n", "x".repeat(997));
    let fill = |total: usize| {
        let mut s = src.clone();
        while s.len() + line.len() <= total {
            s.push_str(&line);
        }
        s
    };
    let big = fill(1024 * 1024);
    assert!(big.len() > 1024 * 1024 - 1000 && big.len() <= 1024 * 1024);
    RegoPolicy::parse(&big).unwrap();
    let over = format!("{big}{line}");
    let err = RegoPolicy::parse(&over).err().unwrap().to_string();
    assert!(err.contains("1048576"), "{err}");
}
