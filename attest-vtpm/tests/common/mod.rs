//! Shared helpers: the real vectors (read in place) and a synthetic vTPM
//! (a test AK) for negatives that need a re-signed quote.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use attest_core::reader::Reader;
use attest_core::{AttestError, ReportData};
use attest_vtpm::{
    CheckedVtpm, Container, ContainerVersion, Endorsement, Pcrs, TeeType, TpmQuote, Vcek,
};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// `shared/vectors/azure-vtpm`, which must exist.
pub fn vectors() -> PathBuf {
    attest_testkit::vectors::path("azure-vtpm")
}

/// A vector file's bytes (panics loudly when missing).
pub fn read(name: &str) -> Vec<u8> {
    attest_testkit::vectors::read(&format!("azure-vtpm/{name}"))
}

/// A file of the SNP vectors (`shared/vectors/snp/...`).
pub fn read_snp(name: &str) -> Vec<u8> {
    attest_testkit::vectors::read(&format!("snp/{name}"))
}

/// The containers with their platform.
pub const CONTAINERS: &[(&str, TeeType)] = &[
    ("evidence-v0.json", TeeType::Snp),
    ("evidence-v1.json", TeeType::Snp),
    ("evidence-v2.json", TeeType::Snp),
    ("evidence-genoa.json", TeeType::Snp),
    ("tdx/evidence-v0.json", TeeType::Tdx),
    ("tdx/evidence-v1.json", TeeType::Tdx),
];

pub fn checked(name: &str, tee: TeeType) -> CheckedVtpm {
    attest_vtpm::check_evidence(&read(name), tee)
        .unwrap_or_else(|e| panic!("{name} must pass the vTPM checks: {e}"))
}

pub fn container(name: &str) -> Container {
    Container::parse(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn hex32(s: &str) -> String {
    assert_eq!(s.len(), 64);
    s.to_owned()
}

/// REPORT_DATA of a 1184-byte SNP report (offset 0x50). Read here, in the
/// test, because the crate leaves the hardware report to attest-snp.
pub fn snp_report_data(report: &[u8]) -> ReportData {
    ReportData::from_slice(&report[0x50..0x90]).unwrap()
}

/// REPORTDATA of a v4 TD quote (48-byte header, TD10 body offset 520).
pub fn td_quote_report_data(quote: &[u8]) -> ReportData {
    ReportData::from_slice(&quote[48 + 520..48 + 584]).unwrap()
}

/// The hardware report data the evidence's hardware report carries.
pub fn hardware_report_data(c: &CheckedVtpm) -> ReportData {
    match c.hardware_report() {
        attest_vtpm::HardwareReport::Snp { report, .. } => snp_report_data(report),
        attest_vtpm::HardwareReport::Tdx { td_quote } => td_quote_report_data(td_quote),
    }
}

/// Requires `r` to be a refusal for which `want` holds: the typed check
/// (variant and fields), never the message text.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    r: Result<T, AttestError>,
    want: impl FnOnce(&AttestError) -> bool,
) {
    match r {
        Ok(v) => panic!("expected a refusal, got Ok({v:?})"),
        Err(e) => assert!(want(&e), "another refusal: {e:?}"),
    }
}

/// A report data other than the one the request binds.
pub fn binding_mismatch(e: &AttestError) -> bool {
    matches!(e, AttestError::BindingMismatch { .. })
}

/// The TPM quote's signature does not verify under HCLAkPub.
pub fn hcl_ak_signature(e: &AttestError) -> bool {
    matches!(
        e,
        AttestError::BadSignature(attest_core::BadSignature::DoesNotVerify { signed, signer: Some(s) })
            if signed == "the TPM quote" && s.starts_with("HCLAkPub")
    )
}

/// The PCR values do not hash to the quote's pcrDigest.
pub fn pcr_digest_mismatch(e: &AttestError) -> bool {
    matches!(e, AttestError::IdentityMismatch { what, .. } if what == "TPM quote pcrDigest")
}

/// The container JSON does not decode; `detail` starts as given (serde's
/// own words for where and why).
pub fn json_syntax(e: &AttestError, detail_start: &str) -> bool {
    matches!(
        e.malformed(),
        Some(attest_core::Malformed::Syntax { what, detail })
            if what == "vTPM evidence JSON" && detail.starts_with(detail_start)
    )
}

/// The typed [`attest_core::Malformed`] detail of a refusal (under any
/// locations); panics on success or another kind.
pub fn malformed_detail<T: std::fmt::Debug>(r: Result<T, AttestError>) -> attest_core::Malformed {
    match r {
        Ok(v) => panic!("expected a malformed error, got Ok({v:?})"),
        Err(e) => e
            .malformed()
            .unwrap_or_else(|| panic!("expected a malformed error, got {e}"))
            .clone(),
    }
}

/// Rebuilds a container with replaced parts.
pub fn rebuild(
    c: &Container,
    hcl: Option<Vec<u8>>,
    message: Option<Vec<u8>>,
    signature: Option<Vec<u8>>,
    pcrs: Option<Pcrs>,
) -> Container {
    let q = c.tpm_quote();
    let quote = TpmQuote::new(
        signature.unwrap_or_else(|| q.signature().to_vec()),
        message.unwrap_or_else(|| q.message().to_vec()),
        pcrs.unwrap_or_else(|| q.pcrs().clone()),
    )
    .unwrap();
    Container::new(
        c.version(),
        quote,
        hcl.unwrap_or_else(|| c.hcl_report().to_vec()),
        c.endorsement().clone(),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------
// A synthetic vTPM: a test AK, HCL reports around claims naming it, quotes it
// signs. The hardware report slot is zero: these never reach a hardware
// verifier.

pub struct TestAk {
    key: KeyPair,
    pub n: Vec<u8>,
}

pub fn test_ak() -> &'static TestAk {
    static AK: OnceLock<TestAk> = OnceLock::new();
    AK.get_or_init(|| {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        let der = key.public_key().as_ref().to_vec();
        let mut r = Reader::new(&der, "t");
        let seq = attest_core::der::tlv(&mut r).unwrap();
        let mut r = Reader::new(seq.contents, "t");
        let n = attest_core::der::tlv(&mut r).unwrap().contents;
        let n = n.strip_prefix(&[0u8]).unwrap_or(n).to_vec();
        assert_eq!(n.len(), 256);
        TestAk { key, n }
    })
}

impl TestAk {
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; 256];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
            .unwrap();
        sig
    }
}

/// Runtime claims naming the test AK, with an optional user-data (written
/// in upper case, as Trustee v2 does).
pub fn synth_claims(user_data: Option<&ReportData>) -> Vec<u8> {
    let n = URL_SAFE_NO_PAD.encode(&test_ak().n);
    let mut s = format!(
        r#"{{"keys":[{{"kid":"HCLAkPub","key_ops":["sign"],"kty":"RSA","e":"AQAB","n":"{n}"}}],"vm-configuration":{{"console-enabled":false,"secure-boot":true,"tpm-enabled":true,"tpm-persisted":true,"vmUniqueId":"00000000-0000-0000-0000-000000000001"}}"#
    );
    if let Some(ud) = user_data {
        s.push_str(&format!(
            r#","user-data":"{}""#,
            hex::encode_upper(ud.as_bytes())
        ));
    }
    s.push('}');
    s.into_bytes()
}

/// An HCL report around `claims`: header version 2, request-data version
/// `rd_version`, padded with zeros to 2600 bytes.
pub fn synth_hcl(tee: TeeType, rd_version: u32, claims: &[u8]) -> Vec<u8> {
    let ext = if rd_version >= 2 { 4u32 } else { 0 };
    let data_size = 20 + ext + claims.len() as u32;
    let mut v = Vec::new();
    v.extend_from_slice(b"HCLA");
    v.extend_from_slice(&2u32.to_le_bytes());
    v.extend_from_slice(&(0x20 + 1184 + data_size).to_le_bytes());
    v.extend_from_slice(&2u32.to_le_bytes());
    v.extend_from_slice(&[0; 16]);
    v.extend_from_slice(&[0; 1184]);
    for x in [
        data_size,
        rd_version,
        tee.report_type(),
        1,
        claims.len() as u32,
    ] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&[0, 0, 0, 0][..ext as usize]);
    v.extend_from_slice(claims);
    v.resize(2600, 0);
    v
}

/// Knobs of a synthetic `TPMS_ATTEST`.
pub struct QuoteSpec<'a> {
    pub nonce: &'a [u8],
    /// Everything of `TPML_PCR_SELECTION` after `count`.
    pub count: u32,
    pub selection: Vec<u8>,
    pub pcr_digest: Vec<u8>,
    pub trailing: Vec<u8>,
    pub magic: u32,
    pub st: u16,
}

impl<'a> QuoteSpec<'a> {
    pub fn new(nonce: &'a [u8], pcrs: &Pcrs) -> Self {
        QuoteSpec {
            nonce,
            count: 1,
            selection: vec![0x00, 0x0b, 3, 0xff, 0xff, 0xff],
            pcr_digest: pcrs.digest().to_vec(),
            trailing: Vec::new(),
            magic: 0xFF54_4347,
            st: 0x8018,
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&self.magic.to_be_bytes());
        m.extend_from_slice(&self.st.to_be_bytes());
        m.extend_from_slice(&34u16.to_be_bytes());
        m.extend_from_slice(&[0x00, 0x0b]);
        m.extend_from_slice(&[0x5a; 32]);
        m.extend_from_slice(&(self.nonce.len() as u16).to_be_bytes());
        m.extend_from_slice(self.nonce);
        m.extend_from_slice(&0x1234u64.to_be_bytes());
        m.extend_from_slice(&7u32.to_be_bytes());
        m.extend_from_slice(&0u32.to_be_bytes());
        m.push(1);
        m.extend_from_slice(&0x2020_0312_0012_0003u64.to_be_bytes());
        m.extend_from_slice(&self.count.to_be_bytes());
        m.extend_from_slice(&self.selection);
        m.extend_from_slice(&(self.pcr_digest.len() as u16).to_be_bytes());
        m.extend_from_slice(&self.pcr_digest);
        m.extend_from_slice(&self.trailing);
        m
    }
}

pub fn synth_pcrs() -> Pcrs {
    let mut p = [[0u8; 32]; 24];
    for (i, v) in p.iter_mut().enumerate() {
        *v = Sha256::digest([i as u8]).into();
    }
    Pcrs::new(p)
}

/// A synthetic SNP container: claims with `user_data`, a quote built from
/// `spec` and signed by the test AK.
pub fn synth_container(hcl: Vec<u8>, spec: &QuoteSpec<'_>, pcrs: Pcrs) -> Container {
    let msg = spec.build();
    let sig = test_ak().sign(&msg);
    Container::new(
        ContainerVersion::V1,
        TpmQuote::new(sig, msg, pcrs).unwrap(),
        hcl,
        Endorsement::Vcek(Vcek::Der(vec![0x30, 0x00])),
    )
    .unwrap()
}
