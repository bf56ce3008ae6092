//! The guest side against a real TPM 2.0 simulator (swtpm): the test
//! provisions the AK at 0x81000003 and the NV indices, plays the paravisor
//! (it renews the HCL report at 0x01400001 from the user-data at
//! 0x01400002, at most once per period, signing the hardware report through
//! the fake AMD or Intel PKI) and Azure's IMDS; the client collects the
//! evidence with raw TPM commands, and the KMS's plug-ins verify it.
//!
//! swtpm is required: `scripts/test` installs it. Without it these tests
//! fail, loudly.
#![allow(clippy::unwrap_used, missing_docs)]

use std::cell::Cell;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use attest_core::eventlog::{RuntimeEventVersion, runtime_event_digest};
use attest_core::{ErrorKind, PlatformId, ReportData, UnixTime, VerifyContext};
use attest_testkit::dstack::App;
use attest_testkit::snp::ReportFields;
use attest_testkit::tdx::TdFields;
use attest_testkit::vtpm::claims_report_data;
use base64::Engine;
use kms::demo::Pkis;
use kms_client::ClientError;
use kms_client::imds::Imds;
use kms_client::tpm::{self, RH_ENDORSEMENT, RH_OWNER, Stream, Tpm, Transport, cc, tpm2b};
use kms_client::vtpm::{AK_HANDLE, HCL_REPORT_INDEX, USER_DATA_INDEX, VtpmConfig, collect_with};
use sha2::{Digest, Sha256};

const APP_PCR: u32 = 8;
const HCL_SIZE: u16 = 2048;

/// A running swtpm, killed on drop.
struct Swtpm {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn swtpm() -> (Swtpm, Tpm<Stream<UnixStream>>) {
    let found = Command::new("swtpm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "swtpm is not installed: the vTPM guest tests need it. Run scripts/test (it installs swtpm and swtpm-tools with apt-get), or apt-get install swtpm swtpm-tools"
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("data.sock");
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", dir.path().display()))
        .arg("--server")
        .arg(format!("type=unixio,path={}", sock.display()))
        .arg("--ctrl")
        .arg(format!(
            "type=unixio,path={}",
            dir.path().join("ctrl.sock").display()
        ))
        .args(["--flags", "not-need-init,startup-clear"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sw = Swtpm { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("swtpm did not start: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    (sw, Tpm::new(Stream(stream)))
}

/// The AK template OpenHCL uses: RSA-2048, RSASSA/SHA-256,
/// fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|restricted|sign.
fn ak_template() -> Vec<u8> {
    let attrs: u32 = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 10) | (1 << 16) | (1 << 18);
    [
        &tpm::ALG_RSA.to_be_bytes()[..],
        &tpm::ALG_SHA256.to_be_bytes(),
        &attrs.to_be_bytes(),
        &tpm2b(&[]),
        &tpm::ALG_NULL.to_be_bytes(),
        &tpm::ALG_RSASSA.to_be_bytes(),
        &tpm::ALG_SHA256.to_be_bytes(),
        &2048u16.to_be_bytes(),
        &0u32.to_be_bytes(),
        &tpm2b(&[]),
    ]
    .concat()
}

/// Provisions what Azure's host provides: the AK, the HCL report index
/// (with a stale report), PCRs extended by a boot and by the app's runtime
/// events. Returns the AK modulus.
fn provision<T: Transport>(tpm: &mut Tpm<T>, app: &App) -> Vec<u8> {
    let params = [
        &[0u8, 4, 0, 0, 0, 0][..],
        &tpm2b(&ak_template()),
        &tpm2b(&[]),
        &0u32.to_be_bytes(),
    ]
    .concat();
    let (handles, _) = tpm
        .command(cc::CREATE_PRIMARY, &[RH_ENDORSEMENT], 1, &params, 1)
        .unwrap();
    tpm.command(
        cc::EVICT_CONTROL,
        &[RH_OWNER, handles[0]],
        1,
        &AK_HANDLE.to_be_bytes(),
        0,
    )
    .unwrap();
    tpm.command(cc::FLUSH_CONTEXT, &[], 0, &handles[0].to_be_bytes(), 0)
        .unwrap();
    tpm.nv_define_owner(HCL_REPORT_INDEX, HCL_SIZE).unwrap();
    // A boot: firmware and OS PCRs.
    for pcr in [0u32, 4, 7, 9, 11] {
        tpm.pcr_extend(pcr, &Sha256::digest(format!("boot {pcr}")).into())
            .unwrap();
    }
    // The measured OS extends the app's runtime events into the app PCR.
    for e in app.runtime_events() {
        let r = e.as_runtime().unwrap();
        let d = runtime_event_digest::<Sha256>(&r.name, &r.payload, RuntimeEventVersion::V1);
        tpm.pcr_extend(APP_PCR, &d.into()).unwrap();
    }
    tpm.rsa_modulus(AK_HANDLE).unwrap()
}

/// dstack's runtime event log file for `app`.
fn write_runtime_events(dir: &Path, app: &App) -> std::path::PathBuf {
    let mut text = String::new();
    for e in app.runtime_events() {
        let r = e.as_runtime().unwrap();
        text += &serde_json::json!({
            "event": r.name,
            "payload": base64::engine::general_purpose::STANDARD.encode(&r.payload),
        })
        .to_string();
        text.push('\n');
    }
    let p = dir.join("runtime_events.log");
    std::fs::write(&p, text).unwrap();
    p
}

#[derive(Clone, Copy, PartialEq)]
enum Tee {
    Snp,
    Tdx,
}

/// The paravisor, between the guest and its vTPM: a read of the HCL report
/// at offset 0 renews it from the user-data index, at most once per
/// `period` (OpenHCL's REPORT_TIMER_PERIOD).
struct Paravisor<'a> {
    tpm: Tpm<Stream<UnixStream>>,
    pkis: &'a Pkis,
    tee: Tee,
    ak_n: Vec<u8>,
    period: Duration,
    last: Instant,
    renewals: Rc<Cell<u32>>,
}

impl Paravisor<'_> {
    fn renew(&mut self) {
        let chunk = 1024;
        let user_data = self
            .tpm
            .nv_read(USER_DATA_INDEX, chunk)
            .unwrap_or_else(|_| vec![0; 64]);
        let claims = format!(
            r#"{{"keys":[{{"kid":"HCLAkPub","key_ops":["sign"],"kty":"RSA","e":"AQAB","n":"{}"}}],"vm-configuration":{{"console-enabled":false,"secure-boot":true,"tpm-enabled":true,"tpm-persisted":true,"vmUniqueId":"5357544D-0000-4000-8000-000000000001"}},"user-data":"{}"}}"#,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.ak_n),
            hex::encode_upper(&user_data)
        );
        let rd = claims_report_data(claims.as_bytes());
        let tee_report = match self.tee {
            Tee::Snp => self.pkis.amd.report(&ReportFields {
                report_data: rd,
                ..attest_testkit::vtpm::paravisor_report()
            }),
            Tee::Tdx => {
                // A stand-in TDREPORT: REPORTDATA at +128, as in the real one.
                let mut t = vec![0x7d; 1024];
                t[128..192].copy_from_slice(&rd);
                t
            }
        };
        let report_type = if self.tee == Tee::Snp { 2 } else { 4 };
        let mut hcl = self
            .pkis
            .vtpm
            .hcl_report(report_type, &tee_report, claims.as_bytes());
        hcl.truncate(HCL_SIZE as usize);
        assert!(hcl[0x4D4 + claims.len()..].iter().all(|b| *b == 0));
        self.tpm
            .nv_write_owner(HCL_REPORT_INDEX, &hcl, chunk)
            .unwrap();
        self.renewals.set(self.renewals.get() + 1);
        self.last = Instant::now();
    }
}

impl Transport for Paravisor<'_> {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, ClientError> {
        let code = u32::from_be_bytes(command[6..10].try_into().unwrap());
        let index = command
            .get(14..18)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()));
        let offset = u16::from_be_bytes(command[command.len() - 2..].try_into().unwrap());
        if code == cc::NV_READ
            && index == Some(HCL_REPORT_INDEX)
            && offset == 0
            && self.last.elapsed() >= self.period
        {
            self.renew();
        }
        self.tpm.transport().transact(command)
    }
}

/// Azure's IMDS, played by the fake PKIs.
struct FakeImds<'a> {
    pkis: &'a Pkis,
    vcek: bool,
}

impl Imds for FakeImds<'_> {
    fn vcek(&self) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self
            .vcek
            .then(|| self.pkis.amd.vek_der(&ReportFields::default())))
    }

    fn td_quote(&self, tdreport: &[u8]) -> Result<Vec<u8>, ClientError> {
        let report_data: [u8; 64] = tdreport[128..192].try_into().unwrap();
        Ok(self.pkis.intel.quote(&TdFields {
            report_data,
            ..attest_testkit::vtpm::paravisor_td()
        }))
    }
}

fn setup(tee: Tee) -> (Swtpm, Paravisor<'static>, VtpmConfig, Vec<u8>) {
    static PKIS: std::sync::OnceLock<Pkis> = std::sync::OnceLock::new();
    let pkis = PKIS.get_or_init(Pkis::new);
    let (sw, mut tpm) = swtpm();
    let app = App::example();
    let ak_n = provision(&mut tpm, &app);
    let cfg = VtpmConfig {
        app_pcr: APP_PCR,
        runtime_events: write_runtime_events(sw.dir.path(), &app),
        refresh_wait: Duration::from_millis(450),
        attempts: 3,
        ..Default::default()
    };
    let mut para = Paravisor {
        tpm,
        pkis,
        tee,
        ak_n: ak_n.clone(),
        period: Duration::from_millis(400),
        last: Instant::now(),
        renewals: Rc::new(Cell::new(0)),
    };
    // The report the host wrote at boot (user-data all zero).
    para.renew();
    para.renewals.set(0);
    (sw, para, cfg, ak_n)
}

fn now() -> UnixTime {
    UnixTime::now()
}

#[test]
fn snp_evidence_from_the_vtpm_verifies() {
    let (_sw, para, cfg, ak_n) = setup(Tee::Snp);
    let pkis = para.pkis;
    let renewals = para.renewals.clone();
    let mut tpm = Tpm::new(para);
    let rd = ReportData([0x42; 64]);
    let imds = FakeImds { pkis, vcek: true };
    let t0 = Instant::now();
    let e = collect_with(&mut tpm, &imds, &cfg, &rd).unwrap();
    // The first read found the boot-time report (stale): one wait, one
    // renewal.
    assert_eq!(renewals.get(), 1);
    assert!(t0.elapsed() >= cfg.refresh_wait);
    assert_eq!(e.platform.as_str(), "az-snp-vtpm");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let verifiers = pkis.verifiers();
    let id = rt
        .block_on(verifiers.verify(&e, &VerifyContext::new(rd, now())))
        .unwrap();
    let app = App::example();
    assert_eq!(id.app.app_id.0, app.app_id);
    assert_eq!(id.app.compose_hash.0, app.compose_hash);
    assert_eq!(id.report_data, rd);
    assert!(id.report_data_checked);
    let claims: attest_vtpm_claims::Claims = id.platform_claims.get("vtpm").unwrap().unwrap();
    assert_eq!(claims.ak_pub_sha256, hex::encode(Sha256::digest(&ak_n)));
    assert_eq!(claims.nonce, hex::encode(Sha256::digest(rd.0)));
    assert_eq!(
        claims.vm_unique_id.as_deref(),
        Some("5357544D-0000-4000-8000-000000000001")
    );
    // swtpm's PCRs: the boot's and the app's, the resettable ones zero.
    let pcrs = tpm.pcrs().unwrap();
    for (i, v) in pcrs.iter().enumerate() {
        assert_eq!(
            id.boot.get(&format!("pcr{i:02}")),
            Some(&attest_core::BootValue::Bytes(attest_core::HexBytes(
                v.to_vec()
            )))
        );
    }
    assert_ne!(pcrs[APP_PCR as usize], [0; 32]);
    // Another request's report data does not verify.
    let other = VerifyContext::new(ReportData([0x43; 64]), now());
    assert_eq!(
        rt.block_on(verifiers.verify(&e, &other))
            .unwrap_err()
            .kind(),
        ErrorKind::BindingMismatch
    );

    // Without a VCEK from IMDS the container leaves it out (the KMS would
    // ask AMD; this one has no source, so the endorsement is missing).
    let imds = FakeImds { pkis, vcek: false };
    let rd2 = ReportData([0x44; 64]);
    let e = collect_with(&mut tpm, &imds, &cfg, &rd2).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&e.quote).unwrap();
    assert!(doc.get("vcek").is_none());
    assert_eq!(
        rt.block_on(verifiers.verify(&e, &VerifyContext::new(rd2, now())))
            .unwrap_err()
            .kind(),
        ErrorKind::CollateralMissing
    );
}

#[test]
fn tdx_evidence_from_the_vtpm_verifies() {
    let (_sw, para, cfg, _) = setup(Tee::Tdx);
    let pkis = para.pkis;
    let mut tpm = Tpm::new(para);
    let rd = ReportData([0x17; 64]);
    let e = collect_with(&mut tpm, &FakeImds { pkis, vcek: false }, &cfg, &rd).unwrap();
    assert_eq!(e.platform, PlatformId::parse("az-tdx-vtpm").unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = rt
        .block_on(pkis.verifiers().verify(&e, &VerifyContext::new(rd, now())))
        .unwrap();
    assert_eq!(id.app.app_id.0, App::example().app_id);
    assert!(id.boot.get("mrtd").is_some());
}

#[test]
fn a_report_that_is_never_renewed_is_refused_by_the_guest() {
    let (_sw, mut para, mut cfg, _) = setup(Tee::Snp);
    let pkis = para.pkis;
    para.period = Duration::from_secs(3600);
    cfg.attempts = 2;
    cfg.refresh_wait = Duration::from_millis(50);
    let mut tpm = Tpm::new(para);
    let e = collect_with(
        &mut tpm,
        &FakeImds { pkis, vcek: true },
        &cfg,
        &ReportData([1; 64]),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("never carried this request's user-data"),
        "{e}"
    );
    // No AK: the quote fails with the TPM's error, not a panic.
    let (_sw2, mut bare) = swtpm();
    let e = bare.quote(AK_HANDLE, &[0; 32], [0xff; 3]).unwrap_err();
    assert!(e.to_string().contains("TPM command 0x158 failed"), "{e}");
    assert_eq!(bare.nv_size(HCL_REPORT_INDEX).unwrap(), None);
}

/// The identity's `vtpm` section as this test reads it.
mod attest_vtpm_claims {
    #[derive(serde::Deserialize)]
    pub struct Claims {
        pub ak_pub_sha256: String,
        pub nonce: String,
        pub vm_unique_id: Option<String>,
    }
}

#[test]
fn the_imds_client_speaks_http_to_a_local_server() {
    use kms_client::imds::HttpImds;
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let pem = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
    let server = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for answer in [
            format!("{{\"vcekCert\":{pem:?},\"certificateChain\":\"\"}}"),
            "{\"quote\":\"AAEC\"}".to_owned(),
            String::new(),
        ] {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request: headers, then Content-Length bytes.
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if body.len() >= len {
                        break;
                    }
                }
                assert!(n > 0, "client closed early");
            }
            seen.push(String::from_utf8_lossy(&req).into_owned());
            let resp = if answer.is_empty() {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                )
            };
            s.write_all(resp.as_bytes()).unwrap();
        }
        seen
    });
    let imds = HttpImds {
        addr,
        timeout: Duration::from_secs(5),
    };
    assert_eq!(
        imds.vcek().unwrap(),
        Some(vec![0x30, 0x03, 0x02, 0x01, 0x01])
    );
    assert_eq!(imds.td_quote(&[9; 1024]).unwrap(), vec![0, 1, 2]);
    assert_eq!(imds.vcek().unwrap(), None);
    let seen = server.join().unwrap();
    assert!(seen[0].starts_with("GET /metadata/THIM/amd/certification HTTP/1.1\r\n"));
    assert!(seen[0].contains("Metadata: true\r\n"));
    assert!(seen[1].starts_with("POST /acc/tdquote HTTP/1.1\r\n"));
    let body = seen[1].split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        v["report"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([9u8; 1024])
    );
}
