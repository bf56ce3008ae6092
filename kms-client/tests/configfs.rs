//! `kms-client get-app-key` against a real KMS on 127.0.0.1, reading its
//! evidence from a fake configfs-tsm directory that a testkit-backed helper
//! answers (it reads `inblob` and writes a signed quote or report to
//! `outblob`), for both platforms.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use attest_core::ReportData;
use attest_testkit::dstack::App;
use attest_testkit::snp::ReportFields;
use kms::demo::{Pkis, Server};

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Plays the kernel: attributes on mkdir, a signed report on inblob. Each
/// entry is populated and answered once, as configfs does: the client's
/// clean-up of a plain directory removes the files before the directory,
/// and the helper must not put them back in between. Writes into an entry
/// the client has just removed are ignored.
/// Writes a whole attribute at once (a temporary file renamed over it), as
/// the kernel presents one: the client never sees a half-written file.
fn put(path: PathBuf, bytes: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, bytes).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

fn fake_tsm(
    dir: PathBuf,
    provider: &'static str,
    pkis: Arc<Pkis>,
    app: App,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut populated = std::collections::HashSet::new();
        let mut answered = std::collections::HashSet::new();
        while !stop.load(Ordering::Relaxed) {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let e = entry.path();
                if populated.insert(e.clone()) {
                    put(e.join("generation"), "0");
                    put(e.join("provider"), provider);
                }
                if answered.contains(&e) {
                    continue;
                }
                let Ok(rd) = std::fs::read(e.join("inblob")) else {
                    continue;
                };
                let Ok(rd) = <[u8; 64]>::try_from(rd.as_slice()) else {
                    continue;
                };
                answered.insert(e.clone());
                let ev = match provider {
                    "tdx_guest" => pkis.tdx_evidence(&app, ReportData(rd), false),
                    _ => pkis.snp_evidence(&app, ReportData(rd), ReportFields::default()),
                };
                put(e.join("outblob"), &ev.quote);
                put(e.join("auxblob"), &ev.certificates);
                put(e.join("generation"), "1");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

fn run_client(server: &Server, tsm: &Path, work: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kms-client"))
        .args([
            "get-app-key",
            "--kms",
            &server.url,
            "--key-provider-id",
            &server.key_provider_id,
        ])
        .args([
            "--out",
            work.join("keys.json").to_str().unwrap(),
            "--tsm-dir",
            tsm.to_str().unwrap(),
        ])
        .args(["--ccel", work.join("no-ccel").to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_platforms_through_configfs_tsm() {
    let dir = tempfile::tempdir().unwrap();
    let pkis = Arc::new(Pkis::new());
    let app = App::example();
    let server = Server::start(&dir.path().join("kms"), &pkis, &app)
        .await
        .unwrap();

    let mut disk_keys = Vec::new();
    for provider in ["tdx_guest", "sev_guest"] {
        let work = dir.path().join(provider);
        let tsm = work.join("tsm");
        std::fs::create_dir_all(&tsm).unwrap();
        // dstack's runtime event log (TDX) and app config document (SNP).
        let lines: Vec<String> = app
            .runtime_events()
            .iter()
            .filter_map(|e| e.as_runtime())
            .map(|e| {
                format!(
                    "{{\"event\":\"{}\",\"payload\":\"{}\"}}",
                    e.name,
                    b64(&e.payload)
                )
            })
            .collect();
        std::fs::write(work.join("runtime_events.log"), lines.join("\n")).unwrap();
        std::fs::write(work.join("app-config.json"), app.app_config_v3()).unwrap();
        // A world-readable file already at the output path: the first
        // release kept its 0666 mode and wrote the keys into it.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(work.join("keys.json"), b"old").unwrap();
            std::fs::set_permissions(
                work.join("keys.json"),
                std::fs::Permissions::from_mode(0o666),
            )
            .unwrap();
        }

        let stop = Arc::new(AtomicBool::new(false));
        let helper = fake_tsm(
            tsm.clone(),
            provider,
            pkis.clone(),
            app.clone(),
            stop.clone(),
        );
        let out = {
            let srv = &server;
            let tsm = tsm.clone();
            let work = work.clone();
            let extra = [
                "--runtime-events".to_owned(),
                work.join("runtime_events.log").display().to_string(),
                "--app-config".to_owned(),
                work.join("app-config.json").display().to_string(),
            ];
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            tokio::task::block_in_place(|| run_client(srv, &tsm, &work, &extra))
        };
        stop.store(true, Ordering::Relaxed);
        helper.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{provider}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The keys are in the file (0600), never on the terminal.
        let keys: serde_json::Value =
            serde_json::from_slice(&std::fs::read(work.join("keys.json")).unwrap()).unwrap();
        let disk = keys["disk_crypt_key"].as_str().unwrap().to_owned();
        assert_eq!(disk.len(), 64);
        assert!(!stdout.contains(&disk));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(work.join("keys.json"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // The report entry is gone.
        assert_eq!(std::fs::read_dir(&tsm).unwrap().count(), 0);
        disk_keys.push(disk);
    }
    assert_eq!(
        disk_keys[0], disk_keys[1],
        "one app, one instance: the same keys on TDX and SNP"
    );

    // A wrong pinned key provider id: refused, no file written.
    let work = dir.path().join("wrong-pin");
    let tsm = work.join("tsm");
    std::fs::create_dir_all(&tsm).unwrap();
    std::fs::write(work.join("app-config.json"), app.app_config_v3()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let helper = fake_tsm(
        tsm.clone(),
        "sev_guest",
        pkis.clone(),
        app.clone(),
        stop.clone(),
    );
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_kms-client"))
            .args([
                "get-app-key",
                "--kms",
                &server.url,
                "--key-provider-id",
                "3059aa",
            ])
            .args([
                "--out",
                work.join("keys.json").to_str().unwrap(),
                "--tsm-dir",
                tsm.to_str().unwrap(),
            ])
            .args([
                "--app-config",
                work.join("app-config.json").to_str().unwrap(),
            ])
            .output()
            .unwrap()
    });
    stop.store(true, Ordering::Relaxed);
    helper.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: untrusted answer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!work.join("keys.json").exists());

    // A symlink at the output path (pointing where an attacker can read):
    // refused, nothing written through it.
    let work = dir.path().join("symlink");
    let tsm = work.join("tsm");
    std::fs::create_dir_all(&tsm).unwrap();
    std::fs::write(work.join("app-config.json"), app.app_config_v3()).unwrap();
    let exposed = work.join("readable-by-attacker");
    std::fs::write(&exposed, b"").unwrap();
    std::os::unix::fs::symlink(&exposed, work.join("keys.json")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let helper = fake_tsm(
        tsm.clone(),
        "sev_guest",
        pkis.clone(),
        app.clone(),
        stop.clone(),
    );
    let extra = [
        "--app-config".to_owned(),
        work.join("app-config.json").display().to_string(),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let out = tokio::task::block_in_place(|| run_client(&server, &tsm, &work, &extra));
    stop.store(true, Ordering::Relaxed);
    helper.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&exposed).unwrap(), b"");
    server.stop().await;
}
