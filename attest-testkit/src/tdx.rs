//! A fake Intel PKI that signs TDX quotes and their collateral.
//!
//! Mirrors Intel's structure: a root CA; a "PCK Platform CA" under it; a PCK
//! leaf with the SGX extension (PPID, TCB, PCE-ID, FMSPC, SGX type, platform
//! instance, configuration); a TCB signing certificate that signs TCB info
//! and QE identity; a root CA CRL and a PCK CRL. Quotes are v4 with a TD 1.0
//! body, signed by an attestation key whose binding is certified by a QE
//! report signed with the PCK key.

use dcap_qvl::QuoteCollateralV3;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevokedCertParams, SerialNumber,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::der;

/// The FMSPC of the fake platform.
pub const FMSPC: [u8; 6] = [0x00, 0x90, 0x6E, 0xD5, 0x00, 0x00];
/// The PPID in the fake PCK certificate.
pub const PPID: [u8; 16] = [0x99; 16];
/// Intel's QE vendor id.
const QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// The platform's CPU SVN components and PCE SVN.
const CPU_SVN: [u8; 16] = [5; 16];
const PCE_SVN: u16 = 13;
const QE_MRSIGNER: [u8; 32] = [0xdc; 32];
const QE_ISVPRODID: u16 = 2;
const QE_ISVSVN: u16 = 4;

fn secs(t: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn rfc3339(t: i64) -> String {
    secs(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

struct Ca {
    key: KeyPair,
    params: CertificateParams,
    der: Vec<u8>,
    pem: String,
}

impl Ca {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(
        DnType::OrganizationName,
        "Fake Intel Corporation (TEST ONLY)",
    );
    dn.push(DnType::CountryName, "US");
    dn
}

fn params(cn: &str, serial: u8, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn);
    p.serial_number = Some(SerialNumber::from(vec![0x10, serial]));
    // 2020-01-01 .. 2049-12-31, like Intel's long-lived certificates.
    p.not_before = secs(1_577_836_800);
    p.not_after = secs(2_524_521_600);
    p.key_identifier_method = KeyIdMethod::Sha256;
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
    }
    p
}

fn new_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("P-256 key generation")
}

fn ring_key(k: &KeyPair) -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &k.serialize_der(),
        &SystemRandom::new(),
    )
    .expect("rcgen P-256 key is valid PKCS#8")
}

fn sign(k: &EcdsaKeyPair, msg: &[u8]) -> Vec<u8> {
    k.sign(&SystemRandom::new(), msg)
        .expect("ECDSA signing")
        .as_ref()
        .to_vec()
}

/// Intel's SGX certificate extension (OID 1.2.840.113741.1.13.1).
fn sgx_extension() -> Vec<u8> {
    let base = [1u64, 2, 840, 113741, 1, 13, 1];
    let o = |tail: &[u64]| der::oid(&[&base[..], tail].concat());
    let mut tcb: Vec<Vec<u8>> = (1..=16u64)
        .map(|i| der::seq(&[o(&[2, i]), der::int(u64::from(CPU_SVN[(i - 1) as usize]))]))
        .collect();
    tcb.push(der::seq(&[o(&[2, 17]), der::int(u64::from(PCE_SVN))]));
    tcb.push(der::seq(&[o(&[2, 18]), der::octets(&CPU_SVN)]));
    der::seq(&[
        der::seq(&[o(&[1]), der::octets(&PPID)]),
        der::seq(&[o(&[2]), der::seq(&tcb)]),
        der::seq(&[o(&[3]), der::octets(&[0, 0])]),
        der::seq(&[o(&[4]), der::octets(&FMSPC)]),
        der::seq(&[o(&[5]), der::enumerated(0)]),
        der::seq(&[o(&[6]), der::octets(&[0x77; 16])]),
        der::seq(&[
            o(&[7]),
            der::seq(&[
                der::seq(&[o(&[7, 1]), der::boolean(false)]),
                der::seq(&[o(&[7, 2]), der::boolean(true)]),
                der::seq(&[o(&[7, 3]), der::boolean(true)]),
            ]),
        ]),
    ])
}

/// The TCB standing the fake collateral gives the fake platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformTcb {
    /// The platform matches the newest level.
    UpToDate,
    /// A newer level exists; the platform matches an OutOfDate one.
    OutOfDate,
    /// The platform's level is Revoked.
    Revoked,
}

/// What the collateral says and when it is valid.
#[derive(Clone, Debug)]
pub struct CollateralOptions {
    /// TCB info / QE identity issueDate and CRL thisUpdate (Unix seconds).
    pub issued: i64,
    /// nextUpdate of all four parts.
    pub next_update: i64,
    /// The platform's standing.
    pub tcb: PlatformTcb,
    /// Put the PCK leaf on the PCK CRL.
    pub revoke_pck: bool,
    /// Serial numbers the root CA CRL lists ([`PCK_CA_SERIAL`] revokes the
    /// PCK Platform CA; any other revokes nothing of this PKI).
    pub root_crl_serials: Vec<Vec<u8>>,
    /// Advisories on the platform's level.
    pub advisory_ids: Vec<String>,
}

/// The serial number of the fake PCK Platform CA.
pub const PCK_CA_SERIAL: [u8; 2] = [0x10, 2];

impl CollateralOptions {
    /// Collateral valid for 30 days from `issued`, platform up to date.
    pub fn valid_from(issued: i64) -> Self {
        CollateralOptions {
            issued,
            next_update: issued + 30 * 86_400,
            tcb: PlatformTcb::UpToDate,
            revoke_pck: false,
            root_crl_serials: Vec::new(),
            advisory_ids: Vec::new(),
        }
    }
}

/// The TD fields a test chooses. Defaults are a production Linux TD
/// (SEPT_VE_DISABLE only) on an Intel-signed TDX module.
#[derive(Clone, Debug)]
pub struct TdFields {
    /// TEE_TCB_SVN.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM.
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM (zero for Intel's module).
    pub mr_signer_seam: [u8; 48],
    /// TDATTRIBUTES.
    pub td_attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// MRTD.
    pub mrtd: [u8; 48],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// RTMR0..3.
    pub rtmrs: [[u8; 48]; 4],
    /// REPORTDATA.
    pub report_data: [u8; 64],
}

impl Default for TdFields {
    fn default() -> Self {
        TdFields {
            tee_tcb_svn: [3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            mr_seam: [0x5e; 48],
            mr_signer_seam: [0; 48],
            td_attributes: [0, 0, 0, 0x10, 0, 0, 0, 0],
            xfam: [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0],
            mrtd: [0x4d; 48],
            mr_config_id: [0; 48],
            rtmrs: [[0x01; 48], [0x02; 48], [0x03; 48], [0; 48]],
            report_data: [0; 64],
        }
    }
}

impl TdFields {
    /// Sets the debug bit of TDATTRIBUTES.
    pub fn debug(mut self) -> Self {
        self.td_attributes[0] |= 0x01;
        self
    }
}

/// The fake Intel PKI.
pub struct FakeIntelPki {
    root: Ca,
    platform_ca: Ca,
    tcb_signer: Ca,
    pck_key: KeyPair,
    pck_pem: String,
    pck_serial: Vec<u8>,
    attestation_key: EcdsaKeyPair,
    /// The QE report certifying the attestation key and the PCK key's
    /// signature over it: made once, as a real QE does when it certifies
    /// its key, so every quote of this platform carries the same bytes.
    qe_certification: std::sync::OnceLock<Vec<u8>>,
}

impl Default for FakeIntelPki {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeIntelPki {
    /// Generates a fresh PKI (new keys every time).
    pub fn new() -> Self {
        let root_key = new_key();
        let root_params = params("Fake Intel SGX Root CA", 1, true);
        let root_cert = root_params.self_signed(&root_key).expect("root CA");
        let root = Ca {
            der: root_cert.der().to_vec(),
            pem: root_cert.pem(),
            key: root_key,
            params: root_params,
        };
        let sign_ca = |cn: &str, serial: u8, ca: bool| -> Ca {
            let key = new_key();
            let p = params(cn, serial, ca);
            let cert = p.signed_by(&key, &root.issuer()).expect("certificate");
            Ca {
                der: cert.der().to_vec(),
                pem: cert.pem(),
                key,
                params: p,
            }
        };
        // The verifier tells the PCK CA kind from the CA's exact common
        // name, as Intel writes it; the organization marks it fake.
        let platform_ca = sign_ca("Intel SGX PCK Platform CA", PCK_CA_SERIAL[1], true);
        let tcb_signer = sign_ca("Fake Intel SGX TCB Signing", 3, false);

        let pck_key = new_key();
        let mut pck_params = params("Fake Intel SGX PCK Certificate", 4, false);
        pck_params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 2, 840, 113741, 1, 13, 1],
            sgx_extension(),
        )];
        let pck_serial = vec![0x10, 4];
        let pck = pck_params
            .signed_by(&pck_key, &platform_ca.issuer())
            .expect("PCK leaf");

        let attestation_key = ring_key(&new_key());
        FakeIntelPki {
            root,
            platform_ca,
            tcb_signer,
            pck_key,
            pck_pem: pck.pem(),
            pck_serial,
            attestation_key,
            qe_certification: std::sync::OnceLock::new(),
        }
    }

    /// The fake root CA certificate (DER): what a test-only verifier trusts.
    pub fn root_der(&self) -> Vec<u8> {
        self.root.der.clone()
    }

    fn tcb_info(&self, o: &CollateralOptions, tee_tcb_svn: &[u8; 16]) -> String {
        let comps = |svns: &[u8]| -> serde_json::Value {
            serde_json::Value::Array(svns.iter().map(|s| serde_json::json!({"svn": s})).collect())
        };
        let level = |sgx: u8, status: &str, date: i64, advisories: &[String]| {
            serde_json::json!({
                "tcb": {
                    "sgxtcbcomponents": comps(&[sgx; 16]),
                    "pcesvn": PCE_SVN,
                    "tdxtcbcomponents": comps(tee_tcb_svn),
                },
                "tcbDate": rfc3339(date),
                "tcbStatus": status,
                "advisoryIDs": advisories,
            })
        };
        let platform_status = match o.tcb {
            PlatformTcb::UpToDate => "UpToDate",
            PlatformTcb::OutOfDate => "OutOfDate",
            PlatformTcb::Revoked => "Revoked",
        };
        let mut levels = Vec::new();
        if o.tcb != PlatformTcb::UpToDate {
            // A newer level the platform does not reach (its CPU SVNs are 5).
            levels.push(level(6, "UpToDate", o.issued - 10 * 86_400, &[]));
        }
        levels.push(level(
            CPU_SVN[0],
            platform_status,
            o.issued - 400 * 86_400,
            &o.advisory_ids,
        ));
        serde_json::json!({
            "id": "TDX",
            "version": 3,
            "issueDate": rfc3339(o.issued),
            "nextUpdate": rfc3339(o.next_update),
            "fmspc": hex::encode_upper(FMSPC),
            "pceId": "0000",
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
            "tdxModule": {
                "mrsigner": hex::encode_upper([0u8; 48]),
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF"
            },
            "tcbLevels": levels,
        })
        .to_string()
    }

    fn qe_identity(&self, o: &CollateralOptions) -> String {
        serde_json::json!({
            "id": "TD_QE",
            "version": 2,
            "issueDate": rfc3339(o.issued),
            "nextUpdate": rfc3339(o.next_update),
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": hex::encode_upper(QE_MRSIGNER),
            "isvprodid": QE_ISVPRODID,
            "tcbLevels": [{"tcb": {"isvsvn": QE_ISVSVN}, "tcbDate": rfc3339(o.issued - 400 * 86_400), "tcbStatus": "UpToDate"}]
        })
        .to_string()
    }

    fn crl(&self, issuer: &Ca, o: &CollateralOptions, revoked: &[Vec<u8>]) -> Vec<u8> {
        let params = CertificateRevocationListParams {
            this_update: secs(o.issued),
            next_update: secs(o.next_update),
            crl_number: SerialNumber::from(vec![1]),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial.clone()),
                    revocation_time: secs(o.issued - 86_400),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&issuer.issuer())
            .expect("CRL")
            .der()
            .to_vec()
    }

    /// Collateral for the fake platform, for quotes made with `td`'s TEE TCB SVN.
    pub fn collateral(&self, o: &CollateralOptions) -> QuoteCollateralV3 {
        self.collateral_for(o, &TdFields::default().tee_tcb_svn)
    }

    /// Collateral whose TDX TCB components are `tee_tcb_svn`.
    pub fn collateral_for(
        &self,
        o: &CollateralOptions,
        tee_tcb_svn: &[u8; 16],
    ) -> QuoteCollateralV3 {
        let signer = ring_key(&self.tcb_signer.key);
        let tcb_info = self.tcb_info(o, tee_tcb_svn);
        let qe_identity = self.qe_identity(o);
        let signer_chain = format!("{}{}", self.tcb_signer.pem, self.root.pem);
        QuoteCollateralV3 {
            pck_crl_issuer_chain: format!("{}{}", self.platform_ca.pem, self.root.pem),
            root_ca_crl: self.crl(&self.root, o, &o.root_crl_serials),
            pck_crl: self.crl(
                &self.platform_ca,
                o,
                &o.revoke_pck
                    .then(|| self.pck_serial.clone())
                    .into_iter()
                    .collect::<Vec<_>>(),
            ),
            tcb_info_issuer_chain: signer_chain.clone(),
            tcb_info_signature: sign(&signer, tcb_info.as_bytes()),
            tcb_info,
            qe_identity_issuer_chain: signer_chain,
            qe_identity_signature: sign(&signer, qe_identity.as_bytes()),
            qe_identity,
            pck_certificate_chain: None,
        }
    }

    fn qe_report(&self, auth_data: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; 384];
        r[0..16].copy_from_slice(&CPU_SVN);
        // miscselect 0 at 16; attributes at 48: INIT | MODE64BIT.
        r[48] = 0x11;
        r[128..160].copy_from_slice(&QE_MRSIGNER);
        r[256..258].copy_from_slice(&QE_ISVPRODID.to_le_bytes());
        r[258..260].copy_from_slice(&QE_ISVSVN.to_le_bytes());
        let pubkey = &self.attestation_key.public_key().as_ref()[1..];
        let binding = Sha256::digest([pubkey, auth_data].concat());
        r[320..352].copy_from_slice(&binding);
        r
    }

    /// A v4 TDX quote with a TD 1.0 body holding `td`.
    pub fn quote(&self, td: &TdFields) -> Vec<u8> {
        let mut q = Vec::with_capacity(5000);
        q.extend_from_slice(&4u16.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&0x81u32.to_le_bytes());
        q.extend_from_slice(&[0u8; 4]);
        q.extend_from_slice(&QE_VENDOR_ID);
        q.extend_from_slice(&[0u8; 20]);
        q.extend_from_slice(&td.tee_tcb_svn);
        q.extend_from_slice(&td.mr_seam);
        q.extend_from_slice(&td.mr_signer_seam);
        q.extend_from_slice(&[0u8; 8]); // SEAMATTRIBUTES
        q.extend_from_slice(&td.td_attributes);
        q.extend_from_slice(&td.xfam);
        q.extend_from_slice(&td.mrtd);
        q.extend_from_slice(&td.mr_config_id);
        q.extend_from_slice(&[0u8; 48]); // MROWNER
        q.extend_from_slice(&[0u8; 48]); // MROWNERCONFIG
        for r in &td.rtmrs {
            q.extend_from_slice(r);
        }
        q.extend_from_slice(&td.report_data);
        debug_assert_eq!(q.len(), 48 + 584);

        let signature = sign(&self.attestation_key, &q);
        let auth_data = [0x5a; 32];
        let qe_certification = self.qe_certification.get_or_init(|| {
            let qe_report = self.qe_report(&auth_data);
            let sig = sign(&ring_key(&self.pck_key), &qe_report);
            [qe_report.as_slice(), sig.as_slice()].concat()
        });
        let chain = format!("{}{}{}", self.pck_pem, self.platform_ca.pem, self.root.pem);

        let mut inner = Vec::new();
        inner.extend_from_slice(qe_certification);
        inner.extend_from_slice(&(auth_data.len() as u16).to_le_bytes());
        inner.extend_from_slice(&auth_data);
        inner.extend_from_slice(&5u16.to_le_bytes());
        inner.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        inner.extend_from_slice(chain.as_bytes());

        let mut sig_data = Vec::new();
        sig_data.extend_from_slice(&signature);
        sig_data.extend_from_slice(&self.attestation_key.public_key().as_ref()[1..]);
        sig_data.extend_from_slice(&6u16.to_le_bytes());
        sig_data.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        sig_data.extend_from_slice(&inner);

        q.extend_from_slice(&(sig_data.len() as u32).to_le_bytes());
        q.extend_from_slice(&sig_data);
        q
    }
}
