//! Cost of one policy decision on a realistic policy: 100 apps (3 compose
//! hashes each) and 50 OS images, for the TOML and the Rego backend.
//! Targets: TOML under 5 µs, Rego under 50 µs.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use attest_core::{
    AppId, AppIdentity, BootMeasurements, ComposeHash, DeviceId, OsImageHash, PlatformClaims,
    PlatformId, ReportData, TcbInfo, TcbStatus, UnixTime, VerifiedIdentity,
};
use criterion::{Criterion, criterion_group, criterion_main};
use policy::{PolicyInput, RegoPolicy, RequestContext, TomlPolicy};

fn h(tag: u8, i: usize, n: usize) -> String {
    let mut v = vec![tag; n];
    v[0] = i as u8;
    v[1] = (i >> 8) as u8;
    hex::encode(v)
}

fn identity() -> VerifiedIdentity {
    // The last listed app and image: the worst case for list scans.
    VerifiedIdentity {
        platform: PlatformId::TDX,
        app: AppIdentity {
            app_id: AppId::from_hex(&h(1, 99, 20)).unwrap(),
            compose_hash: ComposeHash::from_hex(&h(2, 99 * 3 + 2, 32)).unwrap(),
            instance_id: None,
            key_provider: None,
            os_image_hash: Some(OsImageHash::from_hex(&h(3, 49, 32)).unwrap()),
        },
        boot: BootMeasurements::new(vec![0; 48])
            .with("mrtd", &[0u8; 48][..])
            .with("rtmr0", &[0u8; 48][..])
            .with("tee_tcb_svn", &[3u8; 16][..]),
        tcb: TcbInfo::new(TcbStatus::UpToDate),
        debug: false,
        report_data: ReportData([0; 64]),
        report_data_checked: true,
        device_id: Some(DeviceId([7; 32])),
        platform_claims: PlatformClaims::default(),
    }
}

fn toml_text() -> String {
    let mut s = String::from("platforms = [\"tdx\", \"sev-snp\"]\nos_images = [\n");
    for i in 0..50 {
        s += &format!("  \"{}\",\n", h(3, i, 32));
    }
    s += "]\n[tcb]\nallow = [\"UpToDate\", \"SWHardeningNeeded\"]\ngrace_days = 30\n";
    for a in 0..100 {
        s += &format!("[[apps]]\napp_id = \"{}\"\ncompose_hashes = [", h(1, a, 20));
        for c in 0..3 {
            s += &format!("\"{}\", ", h(2, a * 3 + c, 32));
        }
        s += "]\n";
    }
    s += "[platform.tdx]\nmin_tee_tcb_svn = \"02020202020202020202020202020202\"\n";
    s
}

fn rego_text() -> String {
    let mut s = String::from(
        "package kms\n\ndefault allow := false\nallow if count(deny_reasons) == 0\n\nos_images := {\n",
    );
    for i in 0..50 {
        s += &format!("  \"{}\",\n", h(3, i, 32));
    }
    s += "}\n\napps := {\n";
    for a in 0..100 {
        s += &format!("  \"{}\": {{", h(1, a, 20));
        for c in 0..3 {
            s += &format!("\"{}\", ", h(2, a * 3 + c, 32));
        }
        s += "},\n";
    }
    s += r#"}

deny_reasons contains "debug" if input.debug
deny_reasons contains "platform" if not input.platform in {"tdx", "sev-snp"}
deny_reasons contains "tcb" if not input.tcb.status in {"UpToDate", "SWHardeningNeeded"}
deny_reasons contains "os image" if not input.app.os_image_hash in os_images
deny_reasons contains "app" if not apps[input.app.app_id]
deny_reasons contains "compose" if {
    hashes := apps[input.app.app_id]
    not input.app.compose_hash in hashes
}
"#;
    s
}

/// The same policy in OPA's usual split: rules in the module, allowlists in
/// the data document (loaded once, not rebuilt by rules per evaluation).
fn rego_split() -> (String, String) {
    let images: Vec<String> = (0..50).map(|i| h(3, i, 32)).collect();
    let apps: serde_json::Map<String, serde_json::Value> = (0..100)
        .map(|a| {
            (
                h(1, a, 20),
                serde_json::json!((0..3).map(|c| h(2, a * 3 + c, 32)).collect::<Vec<_>>()),
            )
        })
        .collect();
    let data = serde_json::json!({"allow_lists": {"os_images": images, "apps": apps}}).to_string();
    let module = r#"package kms

default allow := false
allow if count(deny_reasons) == 0

deny_reasons contains "debug" if input.debug
deny_reasons contains "platform" if not input.platform in {"tdx", "sev-snp"}
deny_reasons contains "tcb" if not input.tcb.status in {"UpToDate", "SWHardeningNeeded"}
deny_reasons contains "os image" if not input.app.os_image_hash in data.allow_lists.os_images
deny_reasons contains "app" if not data.allow_lists.apps[input.app.app_id]
deny_reasons contains "compose" if {
    hashes := data.allow_lists.apps[input.app.app_id]
    not input.app.compose_hash in hashes
}
"#;
    (module.to_owned(), data)
}

fn bench(c: &mut Criterion) {
    let id = identity();
    let input = PolicyInput::new(&id, RequestContext::app_keys(UnixTime(1_750_000_000)));
    let toml = TomlPolicy::parse(&toml_text()).unwrap();
    assert!(toml.decide(&input).allow, "{:?}", toml.decide(&input));
    let rego = RegoPolicy::parse(&rego_text()).unwrap();
    assert!(rego.decide(&input).allow, "{:?}", rego.decide(&input));

    let (module, data) = rego_split();
    let rego_data =
        RegoPolicy::with_data(&module, Some(&data), std::time::Duration::from_millis(50)).unwrap();
    assert!(
        rego_data.decide(&input).allow,
        "{:?}",
        rego_data.decide(&input)
    );

    let trivial = RegoPolicy::parse("package kms\nallow := true\n").unwrap();

    let mut g = c.benchmark_group("policy_decision");
    // Fixed cost of any Rego decision: input conversion, engine clone, one rule.
    g.bench_function("rego_trivial_allow", |b| {
        b.iter(|| black_box(trivial.decide(black_box(&input))))
    });
    g.bench_function("rego_data_100_apps_50_images", |b| {
        b.iter(|| black_box(rego_data.decide(black_box(&input))))
    });
    g.bench_function("toml_100_apps_50_images", |b| {
        b.iter(|| black_box(toml.decide(black_box(&input))))
    });
    g.bench_function("rego_100_apps_50_images", |b| {
        b.iter(|| black_box(rego.decide(black_box(&input))))
    });
    let mut denied = id.clone();
    denied.app.compose_hash.0[5] ^= 1;
    let deny_input = PolicyInput::new(&denied, RequestContext::app_keys(UnixTime(1_750_000_000)));
    assert!(!rego.decide(&deny_input).allow);
    assert!(!rego_data.decide(&deny_input).allow);
    g.bench_function("rego_data_deny", |b| {
        b.iter(|| black_box(rego_data.decide(black_box(&deny_input))))
    });
    g.bench_function("toml_deny", |b| {
        b.iter(|| black_box(toml.decide(black_box(&deny_input))))
    });
    g.bench_function("rego_deny", |b| {
        b.iter(|| black_box(rego.decide(black_box(&deny_input))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
