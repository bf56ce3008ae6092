//! Loading policies as the KMS configuration names them.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use policy::{PolicyError, PolicySpec, load, load_file};

#[derive(serde::Deserialize)]
struct Config {
    policy: PolicySpec,
}

#[tokio::test]
async fn loads_a_composed_policy_from_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("floor.toml"), base_toml()).unwrap();
    std::fs::write(
        dir.path().join("rules.rego"),
        "package kms\ndefault allow := false\nallow if input.app.app_id in data.allowed_apps\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("data.json"),
        format!("{{\"allowed_apps\": [\"{APP_ID}\"]}}"),
    )
    .unwrap();
    let cfg: Config = toml::from_str(
        r#"
[policy]
type = "all_of"
policies = [
  { type = "toml", file = "floor.toml" },
  { type = "rego", file = "rules.rego", data = "data.json", eval_limit_ms = 100 },
]
"#,
    )
    .unwrap();
    let p = load(&cfg.policy, dir.path()).unwrap();
    assert_eq!(p.backend(), "all_of");
    assert!(p.evaluate(&input(&tdx_identity())).await.allow);
    let mut other = snp_identity();
    other.app.app_id.0[0] ^= 1;
    let d = p.evaluate(&input(&other)).await;
    let rules: Vec<&str> = d.reasons.iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(rules, ["apps", "rego"]);
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = load(
        &PolicySpec::Toml {
            file: "nope.toml".into(),
        },
        dir.path(),
    )
    .err()
    .unwrap();
    assert!(matches!(missing, PolicyError::Io { .. }));
    assert!(missing.to_string().starts_with("cannot read policy "));

    std::fs::write(dir.path().join("bad.toml"), "debug = 1\n").unwrap();
    let e = load_file(&dir.path().join("bad.toml"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "invalid toml policy {}: line 1:",
            dir.path().join("bad.toml").display()
        )),
        "{e}"
    );

    let e = load_file(&dir.path().join("policy.yaml"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.ends_with("the file name must end in .toml or .rego"),
        "{e}"
    );

    assert!(toml::from_str::<Config>("[policy]\ntype = \"magic\"\n").is_err());
    assert!(
        toml::from_str::<Config>("[policy]\ntype = \"toml\"\nfile = \"a\"\nextra = 1\n").is_err()
    );
}

#[tokio::test]
async fn deny_all_is_the_default_spec_and_denies() {
    let cfg: Config = toml::from_str("[policy]\ntype = \"deny_all\"\n").unwrap();
    let p = load(&cfg.policy, std::path::Path::new(".")).unwrap();
    let d = p.evaluate(&input(&tdx_identity())).await;
    assert!(!d.allow);
    assert_eq!(
        d.summary(),
        "deny_all: expected a configured policy, found no policy (everything is denied)"
    );
}

/// A `.rego` file loads as a Rego policy.
#[cfg(feature = "rego")]
#[tokio::test]
async fn a_rego_file_loads_as_rego() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allow.rego");
    std::fs::write(&path, "package kms\n\ndefault allow := true\n").unwrap();
    let p = load_file(&path).unwrap();
    assert_eq!(p.backend(), "rego");
    let id = tdx_identity();
    assert!(p.evaluate(&input(&id)).await.allow);
}
