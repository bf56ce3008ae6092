//! A fake Azure vTPM: an RSA-2048 attestation key (AK), runtime claims
//! naming it, HCL reports around an SNP report or a TDREPORT, and
//! `TPMS_ATTEST` quotes the AK signs (RSASSA-PKCS1-v1_5 / SHA-256), packed
//! in the JSON container Azure attesters send (v2 form).
//!
//! The hardware report is signed through the fake AMD or Intel PKI with
//! `REPORT_DATA = SHA-256(claims) ‖ 0³²`, as the paravisor asks for it, so
//! a verifier that trusts those fake roots accepts the whole chain.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::OsRng;
use rsa::RsaPrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::snp::{FakeAmdPki, ReportFields};
use crate::tdx::{FakeIntelPki, TdFields};

/// `report_type` of an SNP HCL report.
pub const REPORT_TYPE_SNP: u32 = 2;
/// `report_type` of a TDX HCL report.
pub const REPORT_TYPE_TDX: u32 = 4;

fn ak() -> &'static RsaPrivateKey {
    // RSA key generation is slow; one AK per process serves every vTPM.
    static AK: OnceLock<RsaPrivateKey> = OnceLock::new();
    AK.get_or_init(|| RsaPrivateKey::new(&mut OsRng, 2048).expect("RSA key generation"))
}

/// What a fake vTPM puts in its evidence. The defaults are a well-formed
/// Azure CVM whose quote is bound the KMS way.
#[derive(Clone, Debug)]
pub struct VtpmFields {
    /// The claims' `user-data` (the KMS request's report data); `None`
    /// leaves it out, as 2023-era hosts did.
    pub user_data: Option<[u8; 64]>,
    /// The quote's `extraData`; `None` means `SHA-256(user-data)` (the KMS
    /// binding), or empty without user-data.
    pub nonce: Option<Vec<u8>>,
    /// The 24 SHA-256 PCRs at quote time (what the quote's digest covers
    /// and the container lists).
    pub pcrs: [[u8; 32]; 24],
    /// The PCR values the container lists, when they should differ from
    /// the quoted ones.
    pub listed_pcrs: Option<[[u8; 32]; 24]>,
    /// `TPML_PCR_SELECTION` after its count: `hash ‖ sizeofSelect ‖ bitmap`.
    pub selection: Vec<u8>,
    /// `TPML_PCR_SELECTION.count`.
    pub selection_count: u32,
    /// The `vm-configuration` object, as JSON text.
    pub vm_configuration: String,
    /// The claims, when a test writes them itself (they are then used as
    /// they are, AK included).
    pub claims: Option<Vec<u8>>,
}

impl Default for VtpmFields {
    fn default() -> Self {
        VtpmFields {
            user_data: Some([0; 64]),
            nonce: None,
            pcrs: default_pcrs(),
            listed_pcrs: None,
            selection: vec![0x00, 0x0b, 3, 0xff, 0xff, 0xff],
            selection_count: 1,
            vm_configuration: r#"{"console-enabled":false,"secure-boot":true,"tpm-enabled":true,"tpm-persisted":true,"vmUniqueId":"0EC0F7E5-0000-4000-8000-00000000C0DE"}"#.into(),
            claims: None,
        }
    }
}

/// PCR values of a booted Azure CVM: 0–15 measured (distinct values), 16
/// and 23 zero, 17–22 all ones (never extended), PCR 8 zero (the default
/// app PCR, extended only by the runtime events).
pub fn default_pcrs() -> [[u8; 32]; 24] {
    let mut p = [[0u8; 32]; 24];
    for (i, v) in p.iter_mut().enumerate() {
        *v = match i {
            0..=7 | 9..=15 => Sha256::digest(format!("fake azure pcr {i}")).into(),
            17..=22 => [0xff; 32],
            _ => [0; 32],
        };
    }
    p
}

/// The fake vTPM.
#[derive(Clone, Debug)]
pub struct FakeVtpm {
    key: RsaPrivateKey,
}

impl Default for FakeVtpm {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeVtpm {
    /// The vTPM with this process's AK.
    pub fn new() -> Self {
        FakeVtpm { key: ak().clone() }
    }

    /// The AK's modulus (256 bytes, big-endian).
    pub fn ak_modulus(&self) -> Vec<u8> {
        let n = self.key.n().to_bytes_be();
        let mut out = vec![0u8; 256 - n.len().min(256)];
        out.extend_from_slice(&n);
        out
    }

    /// SHA-256 of the AK modulus (`vtpm.ak_pub_sha256`).
    pub fn ak_digest(&self) -> [u8; 32] {
        Sha256::digest(self.ak_modulus()).into()
    }

    /// The runtime claims naming this AK, as OpenHCL writes them.
    pub fn claims(&self, f: &VtpmFields) -> Vec<u8> {
        if let Some(c) = &f.claims {
            return c.clone();
        }
        self.claims_with_modulus(&self.ak_modulus(), f)
    }

    /// Runtime claims naming the RSA key with modulus `n` as the AK.
    pub fn claims_with_modulus(&self, n: &[u8], f: &VtpmFields) -> Vec<u8> {
        let mut s = format!(
            r#"{{"keys":[{{"kid":"HCLAkPub","key_ops":["sign"],"kty":"RSA","e":"AQAB","n":"{}"}},{{"kid":"HCLEkPub","key_ops":["encrypt"],"kty":"RSA","e":"AQAB","n":"{}"}}],"vm-configuration":{}"#,
            URL_SAFE_NO_PAD.encode(n),
            URL_SAFE_NO_PAD.encode([0xe5u8; 256]),
            f.vm_configuration
        );
        if let Some(ud) = f.user_data {
            s.push_str(&format!(r#","user-data":"{}""#, hex::encode(ud)));
        }
        s.push('}');
        s.into_bytes()
    }

    /// An HCL report (header version 2, request-data version 1) around the
    /// TEE report `tee` (an SNP report, or a TDREPORT: the slot is
    /// zero-padded to 1184 bytes) and `claims`, padded to 2600 bytes.
    pub fn hcl_report(&self, report_type: u32, tee: &[u8], claims: &[u8]) -> Vec<u8> {
        let data_size = 20 + claims.len() as u32;
        let mut v = Vec::with_capacity(2600);
        v.extend_from_slice(b"HCLA");
        v.extend_from_slice(&2u32.to_le_bytes());
        v.extend_from_slice(&(0x20 + 1184 + data_size).to_le_bytes());
        v.extend_from_slice(&2u32.to_le_bytes()); // AK_CERT
        v.extend_from_slice(&[0; 16]);
        let mut slot = tee.to_vec();
        slot.resize(1184, 0);
        v.extend_from_slice(&slot);
        for x in [data_size, 1, report_type, 1, claims.len() as u32] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(claims);
        if v.len() < 2600 {
            v.resize(2600, 0);
        }
        v
    }

    /// A `TPMS_ATTEST` of type QUOTE over `f`'s PCRs, and the AK's
    /// signature over it.
    pub fn quote(&self, f: &VtpmFields) -> (Vec<u8>, Vec<u8>) {
        let nonce = match (&f.nonce, &f.user_data) {
            (Some(n), _) => n.clone(),
            (None, Some(ud)) => Sha256::digest(ud).to_vec(),
            (None, None) => Vec::new(),
        };
        let mut digest = Sha256::new();
        for p in &f.pcrs {
            digest.update(p);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&0xFF54_4347u32.to_be_bytes());
        m.extend_from_slice(&0x8018u16.to_be_bytes());
        // qualifiedSigner: a SHA-256 name.
        m.extend_from_slice(&34u16.to_be_bytes());
        m.extend_from_slice(&[0x00, 0x0b]);
        m.extend_from_slice(&Sha256::digest(self.ak_modulus()));
        m.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
        m.extend_from_slice(&nonce);
        m.extend_from_slice(&0x0123_4567u64.to_be_bytes()); // clock
        m.extend_from_slice(&3u32.to_be_bytes()); // resetCount
        m.extend_from_slice(&0u32.to_be_bytes()); // restartCount
        m.push(1); // safe
        m.extend_from_slice(&0x2020_0312_0012_0003u64.to_be_bytes());
        m.extend_from_slice(&f.selection_count.to_be_bytes());
        m.extend_from_slice(&f.selection);
        m.extend_from_slice(&32u16.to_be_bytes());
        m.extend_from_slice(&digest.finalize());
        let sig = self.sign(&m);
        (m, sig)
    }

    /// The AK's RSASSA-PKCS1-v1_5 SHA-256 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        rsa::pkcs1v15::SigningKey::<Sha256>::new(self.key.clone())
            .sign(msg)
            .to_vec()
    }

    /// The v2 JSON container around `hcl` and a quote of `f`, with
    /// `endorsement` = `("vcek", DER)` or `("td_quote", bytes)`.
    pub fn container(&self, f: &VtpmFields, hcl: &[u8], endorsement: (&str, &[u8])) -> Vec<u8> {
        let (msg, sig) = self.quote(f);
        let listed = f.listed_pcrs.unwrap_or(f.pcrs);
        let pcrs: Vec<String> = listed.iter().map(hex::encode).collect();
        let mut doc = serde_json::json!({
            "version": 2,
            "tpm_quote": {
                "signature": hex::encode(sig),
                "message": hex::encode(msg),
                "pcrs": pcrs,
            },
            "hcl_report": URL_SAFE_NO_PAD.encode(hcl),
        });
        doc[endorsement.0] = URL_SAFE_NO_PAD.encode(endorsement.1).into();
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    /// Azure SNP evidence: an SNP report from `report` (its report data
    /// replaced by `SHA-256(claims) ‖ 0³²`) signed by `amd`, in an HCL
    /// report with the claims of `f`, the quote, and the VCEK.
    pub fn snp_container(
        &self,
        amd: &FakeAmdPki,
        report: &ReportFields,
        f: &VtpmFields,
    ) -> Vec<u8> {
        let claims = self.claims(f);
        let mut rf = report.clone();
        rf.report_data = claims_report_data(&claims);
        let hcl = self.hcl_report(REPORT_TYPE_SNP, &amd.report(&rf), &claims);
        self.container(f, &hcl, ("vcek", &amd.vek_der(&rf)))
    }

    /// Azure TDX evidence: a TD quote from `td` (its report data replaced
    /// by `SHA-256(claims) ‖ 0³²`) signed through `intel`, an HCL report
    /// with a (fake, unauthenticated) TDREPORT and the claims of `f`, and
    /// the quote.
    pub fn tdx_container(&self, intel: &FakeIntelPki, td: &TdFields, f: &VtpmFields) -> Vec<u8> {
        let claims = self.claims(f);
        let mut t = td.clone();
        t.report_data = claims_report_data(&claims);
        let td_quote = intel.quote(&t);
        let tdreport = [0x7du8; 1024];
        let hcl = self.hcl_report(REPORT_TYPE_TDX, &tdreport, &claims);
        self.container(f, &hcl, ("td_quote", &td_quote))
    }
}

/// The fake paravisor's SNP launch measurement: what a KMS pins for
/// `az-snp-vtpm` (any other SNP guest has its own).
pub const PARAVISOR_MEASUREMENT: [u8; 48] = [0x5a; 48];
/// The fake paravisor's TD MRTD: what a KMS pins for `az-tdx-vtpm`.
pub const PARAVISOR_MRTD: [u8; 48] = [0x5b; 48];

/// The SNP report fields of the fake paravisor (its measurement).
pub fn paravisor_report() -> ReportFields {
    ReportFields {
        measurement: PARAVISOR_MEASUREMENT,
        ..Default::default()
    }
}

/// The TD fields of the fake paravisor (its MRTD, no RTMR extended).
pub fn paravisor_td() -> TdFields {
    TdFields {
        mrtd: PARAVISOR_MRTD,
        rtmrs: [[0; 48]; 4],
        ..Default::default()
    }
}

/// `SHA-256(claims) ‖ 0³²`: the report data the paravisor requests.
pub fn claims_report_data(claims: &[u8]) -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&Sha256::digest(claims));
    rd
}
