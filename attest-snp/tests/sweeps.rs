//! Bit-flip sweeps over real SEV-SNP evidence (issue 13): every byte of
//! every real report and of its endorsement key certificate is flipped
//! (XOR 0x01) and verified at the pinned time; and every byte of a dstack
//! app config v3 document bound by HOST_DATA (on a report of the
//! testkit's fake AMD PKI, since no real one is public). Each flip must be
//! rejected or yield exactly the identity of the unmodified evidence.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};

use attest_core::app_config::host_data;
use attest_core::{
    AttestError, Attestation, ErrorKind, Evidence, PlatformId, ReportData, UnixTime, VerifyContext,
};
use attest_snp::{Product, ProductRoots, Roots, SnpConfig, SnpVerifier};
use attest_testkit::dstack::App;
use attest_testkit::snp::{self as kit, FakeAmdPki, ReportFields};
use attest_testkit::vectors;

#[derive(Debug, Default)]
struct Counts {
    flips: usize,
    rejected: usize,
    same_identity: usize,
    kinds: BTreeMap<&'static str, usize>,
    accepted_at: Vec<usize>,
}

/// Whether byte `i` of a PEM text is layout: a line break, a character of
/// a `-----BEGIN/END` line, or after the last END line.
fn is_pem_layout(pem: &[u8], i: usize) -> bool {
    let end = b"-----END CERTIFICATE-----";
    let last_end = pem
        .windows(end.len())
        .rposition(|w| w == end)
        .map_or(pem.len(), |p| p + end.len());
    if pem[i] == b'\n' || i >= last_end {
        return true;
    }
    let line_start = pem[..i]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    pem[line_start..].starts_with(b"-----")
}

impl Counts {
    fn summary(&self) -> String {
        format!(
            "{} flips: {} rejected {:?}, {} accepted with the same identity",
            self.flips, self.rejected, self.kinds, self.same_identity
        )
    }

    fn record(&mut self, what: &str, i: usize, got: Result<String, AttestError>, base: &str) {
        self.flips += 1;
        match got {
            Err(e) => {
                self.rejected += 1;
                *self.kinds.entry(e.kind().as_str()).or_default() += 1;
            }
            Ok(id) => {
                assert_eq!(
                    id, base,
                    "{what}: flipping byte {i} was accepted with another identity"
                );
                self.same_identity += 1;
                self.accepted_at.push(i);
            }
        }
    }
}

/// Inside every real certificate's validity (the VLEK's included).
const AT: u64 = 1_740_000_000;

/// The identity parts a verified report gives (`report_part`), as text.
async fn identity(v: &SnpVerifier, e: &Evidence) -> Result<String, AttestError> {
    let ctx = VerifyContext::without_report_data(UnixTime(AT));
    let r = v.verify_report(e, &ctx).await?;
    Ok(format!("{:?}", v.report_part(&r, &ctx)?))
}

async fn sweep_real(report: &str, cert: &str, vmpl: u32) -> (Counts, Counts) {
    let v = SnpVerifier::new(
        vec![],
        SnpConfig {
            vmpl,
            ..Default::default()
        },
    )
    .unwrap();
    let mut e = Evidence::new(
        PlatformId::SEV_SNP,
        vectors::read(&format!("snp/reports/{report}")),
    );
    e.certificates = vectors::read(&format!("snp/reports/{cert}"));
    let base = identity(&v, &e).await.unwrap();
    let (mut in_report, mut in_cert) = (Counts::default(), Counts::default());
    for i in 0..e.quote.len() {
        let mut f = e.clone();
        f.quote[i] ^= 0x01;
        in_report.record(report, i, identity(&v, &f).await, &base);
    }
    for i in 0..e.certificates.len() {
        let mut f = e.clone();
        f.certificates[i] ^= 0x01;
        in_cert.record(cert, i, identity(&v, &f).await, &base);
    }
    eprintln!(
        "{report}: {}\n{cert}: {}",
        in_report.summary(),
        in_cert.summary()
    );
    // A DER certificate is all signed or checked; in a PEM one only line
    // breaks and armor survive (the DER is the same).
    for &i in &in_cert.accepted_at {
        assert!(
            cert.ends_with(".pem") && is_pem_layout(&e.certificates, i),
            "{cert}: byte {i} flipped and accepted"
        );
    }
    (in_report, in_cert)
}

#[tokio::test]
async fn real_reports_every_byte_flip_is_rejected_or_the_same_identity() {
    for (report, cert, vmpl) in [
        ("milan-v2-a.report.bin", "milan-v2-a.vcek.der", 0),
        ("milan-v2-b.report.bin", "milan-v2-b.vcek.der", 0),
        ("milan-v3-vlek.report.bin", "milan-v3-vlek.vlek.der", 1),
        ("genoa-v3.report.bin", "genoa-v3.vcek.pem", 0),
    ] {
        let (r, _) = sweep_real(report, cert, vmpl).await;
        // The whole report is signed or checked to be zero: no flip of it
        // is accepted.
        assert_eq!(r.same_identity, 0, "{report}: {r:?}");
    }
}

fn fake_roots(pki: &FakeAmdPki) -> Roots {
    let mut m = HashMap::new();
    for (p, k) in [
        (Product::Milan, kit::Product::Milan),
        (Product::Genoa, kit::Product::Genoa),
        (Product::Turin, kit::Product::Turin),
    ] {
        m.insert(
            p,
            ProductRoots::from_pem(
                pki.ark_pem(k).as_bytes(),
                pki.ask_pem(k).as_bytes(),
                pki.asvk_pem(k).as_bytes(),
            )
            .unwrap(),
        );
    }
    Roots::custom(m)
}

#[tokio::test]
async fn app_config_v3_every_byte_flip_is_rejected() {
    let pki = FakeAmdPki::new();
    let app = App::example();
    let doc = app.app_config_v3();
    let fields = ReportFields {
        host_data: host_data(&doc),
        report_data: [0x24; 64],
        ..Default::default()
    };
    let mut e = Evidence::new(PlatformId::SEV_SNP, pki.report(&fields));
    let vek = pki.vek_der(&fields);
    e.certificates = pki.cert_table(fields.product, &vek, fields.signer);
    e.app_config = doc.clone();
    let v = SnpVerifier::with_roots(fake_roots(&pki), vec![], SnpConfig::default());
    let ctx = VerifyContext::new(ReportData(fields.report_data), UnixTime(1_760_000_000));
    let id = |e: Evidence| {
        let (v, ctx) = (&v, &ctx);
        async move { v.verify(&e, ctx).await.map(|i| i.to_json().to_string()) }
    };
    let base = id(e.clone()).await.unwrap();
    let mut c = Counts::default();
    for i in 0..doc.len() {
        let mut f = e.clone();
        f.app_config[i] ^= 0x01;
        let got = id(f).await;
        if let Err(err) = &got {
            // The document is hashed as received: any change is a
            // HOST_DATA mismatch.
            assert_eq!(err.kind(), ErrorKind::IdentityMismatch, "byte {i}: {err}");
        }
        c.record("app config v3", i, got, &base);
    }
    eprintln!("app config v3: {}", c.summary());
    assert_eq!(c.rejected, doc.len());
}
