//! The policy spec (`[policy]` of kms.toml): parsing, then loading it
//! against a sandbox directory holding one TOML policy, one Rego module and
//! one data document (file names other than those are not loaded, so the
//! fuzzer never reads the machine's files).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use policy::PolicySpec;

const FILES: [&str; 3] = ["p.toml", "p.rego", "d.json"];

fn sandbox() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            d.path().join("p.toml"),
            "platforms = [\"tdx\"]\n[[apps]]\napp_id = \"0101010101010101010101010101010101010101\"\ncompose_hashes = [\"*\"]\n",
        )
        .expect("write");
        std::fs::write(
            d.path().join("p.rego"),
            "package kms\ndefault allow := false\nallow if { input.identity.platform == \"tdx\" }\n",
        )
        .expect("write");
        std::fs::write(d.path().join("d.json"), "{\"apps\": []}").expect("write");
        let p = d.path().to_path_buf();
        (d, p)
    })
    .1
}

fn sandboxed(spec: &PolicySpec) -> bool {
    match spec {
        PolicySpec::DenyAll | PolicySpec::Webhook { .. } => true,
        PolicySpec::Toml { file } => FILES.contains(&file.as_str()),
        PolicySpec::Rego { file, data, .. } => {
            FILES.contains(&file.as_str())
                && data.as_deref().is_none_or(|d| FILES.contains(&d))
        }
        PolicySpec::AllOf { policies } => policies.iter().all(sandboxed),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    #[derive(serde::Deserialize)]
    struct Wrapper {
        policy: PolicySpec,
    }
    let spec = match toml::from_str::<Wrapper>(text) {
        Ok(w) => w.policy,
        Err(_) => match serde_json::from_str::<PolicySpec>(text) {
            Ok(s) => s,
            Err(_) => return,
        },
    };
    if sandboxed(&spec) {
        let _ = policy::load(&spec, sandbox());
    }
});
