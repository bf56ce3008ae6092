//! A fake AMD PKI that signs SEV-SNP reports.
//!
//! ARK, ASK and ASVK are RSA keys (2048-bit here; AMD uses 4096) issuing
//! RSASSA-PSS/SHA-384 certificates as AMD's do; VCEKs and VLEKs are P-384
//! keys in certificates carrying AMD's extensions (productName, the TCB SPLs,
//! hwID for VCEKs). Reports of any version and product are signed with
//! chosen fields. The roots are exported as PEM: a verifier accepts these
//! reports only when a test installs them.

use std::sync::OnceLock;

use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::ecdsa::{Signature, SigningKey};
use rand_core::OsRng;
use rsa::RsaPrivateKey;
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use sha2::{Digest, Sha384};

use crate::der;

/// A product, as the fake PKI names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// Milan.
    Milan,
    /// Genoa.
    Genoa,
    /// Turin.
    Turin,
}

impl Product {
    fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }
    fn cpuid(self) -> (u8, u8) {
        match self {
            Product::Milan => (0x19, 0x01),
            Product::Genoa => (0x19, 0x11),
            Product::Turin => (0x1A, 0x00),
        }
    }
}

/// A TCB version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcb {
    /// Bootloader SPL.
    pub bootloader: u8,
    /// TEE SPL.
    pub tee: u8,
    /// SNP SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
    /// FMC SPL (Turin).
    pub fmc: u8,
}

impl Tcb {
    /// Encodes for `product`'s TCB_VERSION layout.
    pub fn encode(&self, product: Product) -> [u8; 8] {
        match product {
            Product::Turin => [
                self.fmc,
                self.bootloader,
                self.tee,
                self.snp,
                0,
                0,
                0,
                self.microcode,
            ],
            _ => [
                self.bootloader,
                self.tee,
                0,
                0,
                0,
                0,
                self.snp,
                self.microcode,
            ],
        }
    }
}

impl Default for Tcb {
    fn default() -> Self {
        Tcb {
            bootloader: 4,
            tee: 0,
            snp: 22,
            microcode: 213,
            fmc: 1,
        }
    }
}

/// A certificate an AMD CRL can list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlEntry {
    /// The ASK (signs VCEKs).
    Ask,
    /// The ASVK (signs VLEKs).
    Asvk,
    /// A VCEK.
    Vcek,
    /// A VLEK.
    Vlek,
}

/// VCEK or VLEK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// Chip key.
    Vcek,
    /// Cloud-provider key.
    Vlek,
}

/// The report fields a test chooses.
#[derive(Clone, Debug)]
pub struct ReportFields {
    /// 2, 3 or 5.
    pub version: u32,
    /// Product (v3+ reports name it in their CPUID fields).
    pub product: Product,
    /// Guest policy (bit 17 must be set).
    pub policy: u64,
    /// VMPL.
    pub vmpl: u32,
    /// MEASUREMENT.
    pub measurement: [u8; 48],
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// REPORT_DATA.
    pub report_data: [u8; 64],
    /// CHIP_ID (zero = masked; Turin uses the first 8 bytes).
    pub chip_id: [u8; 64],
    /// REPORTED_TCB (also current, committed and launch unless set below).
    pub tcb: Tcb,
    /// LAUNCH_TCB, when it differs from `tcb`.
    pub launch_tcb: Option<Tcb>,
    /// CURRENT_TCB, when it differs from `tcb`.
    pub current_tcb: Option<Tcb>,
    /// COMMITTED_TCB, when it differs from `tcb`.
    pub committed_tcb: Option<Tcb>,
    /// Who signs.
    pub signer: Signer,
}

impl Default for ReportFields {
    fn default() -> Self {
        ReportFields {
            version: 3,
            product: Product::Genoa,
            policy: 0x30000,
            vmpl: 0,
            measurement: [0x3e; 48],
            host_data: [0; 32],
            report_data: [0; 64],
            chip_id: [0xc1; 64],
            tcb: Tcb::default(),
            launch_tcb: None,
            current_tcb: None,
            committed_tcb: None,
            signer: Signer::Vcek,
        }
    }
}

impl ReportFields {
    /// Sets POLICY.DEBUG.
    pub fn debug(mut self) -> Self {
        self.policy |= 1 << 19;
        self
    }
}

struct RsaCa {
    key: RsaPrivateKey,
    spki: Vec<u8>,
}

impl RsaCa {
    fn new(key: RsaPrivateKey) -> Self {
        let spki = key
            .to_public_key()
            .to_public_key_der()
            .expect("RSA SPKI")
            .as_bytes()
            .to_vec();
        RsaCa { key, spki }
    }
}

fn generated_rsa_keys() -> std::sync::Arc<[RsaCa; 3]> {
    // RSA key generation is slow; one set per process serves every PKI.
    static KEYS: OnceLock<std::sync::Arc<[RsaCa; 3]>> = OnceLock::new();
    KEYS.get_or_init(|| {
        std::sync::Arc::new(std::array::from_fn(|_| {
            RsaCa::new(RsaPrivateKey::new(&mut OsRng, 2048).expect("RSA key generation"))
        }))
    })
    .clone()
}

const AMD: [u64; 7] = [1, 3, 6, 1, 4, 1, 3704];

fn amd_oid(tail: &[u64]) -> Vec<u8> {
    der::oid(&[&AMD[..], &[1], tail].concat())
}

fn name(cn: &str) -> Vec<u8> {
    let attr = |oid: &[u64], v: &str| {
        der::tlv(
            0x31,
            &der::seq(&[der::oid(oid), der::tlv(0x0c, v.as_bytes())]),
        )
    };
    der::seq(&[
        attr(&[2, 5, 4, 11], "Engineering"),
        attr(&[2, 5, 4, 6], "US"),
        attr(&[2, 5, 4, 10], "Fake Advanced Micro Devices (TEST ONLY)"),
        attr(&[2, 5, 4, 3], cn),
    ])
}

fn pss_alg() -> Vec<u8> {
    let sha384 = der::seq(&[der::oid(&[2, 16, 840, 1, 101, 3, 4, 2, 2])]);
    der::seq(&[
        der::oid(&[1, 2, 840, 113549, 1, 1, 10]),
        der::seq(&[
            der::tlv(0xa0, &sha384),
            der::tlv(
                0xa1,
                &der::seq(&[der::oid(&[1, 2, 840, 113549, 1, 1, 8]), sha384.clone()]),
            ),
            der::tlv(0xa2, &der::int(48)),
        ]),
    ])
}

fn utc(s: &str) -> Vec<u8> {
    der::tlv(0x17, s.as_bytes())
}

fn extension(oid: Vec<u8>, value: Vec<u8>) -> Vec<u8> {
    der::seq(&[oid, der::octets(&value)])
}

/// A certificate signed with RSASSA-PSS/SHA-384 by `issuer`.
fn certificate(
    serial: u64,
    issuer_cn: &str,
    subject_cn: &str,
    validity: (&str, &str),
    spki: &[u8],
    extensions: &[Vec<u8>],
    issuer: &RsaPrivateKey,
) -> Vec<u8> {
    let mut tbs = vec![
        der::tlv(0xa0, &der::int(2)),
        der::int(serial),
        pss_alg(),
        name(issuer_cn),
        der::seq(&[utc(validity.0), utc(validity.1)]),
        name(subject_cn),
        spki.to_vec(),
    ];
    if !extensions.is_empty() {
        tbs.push(der::tlv(0xa3, &der::seq(extensions)));
    }
    let tbs = der::seq(&tbs);
    let signer = rsa::pss::BlindedSigningKey::<Sha384>::new(issuer.clone());
    let sig = signer.sign_with_rng(&mut OsRng, &tbs).to_vec();
    let mut bits = vec![0u8];
    bits.extend(sig);
    der::seq(&[tbs, pss_alg(), der::tlv(0x03, &bits)])
}

fn pem(der_bytes: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der_bytes.to_vec()))
}

fn ec_spki(key: &SigningKey) -> Vec<u8> {
    let point = key.verifying_key().to_encoded_point(false);
    let mut bits = vec![0u8];
    bits.extend_from_slice(point.as_bytes());
    der::seq(&[
        der::seq(&[
            der::oid(&[1, 2, 840, 10045, 2, 1]),
            der::oid(&[1, 3, 132, 0, 34]),
        ]),
        der::tlv(0x03, &bits),
    ])
}

/// 2020-01-01 .. 2049-12-31.
const LONG: (&str, &str) = ("200101000000Z", "491231235959Z");

/// The fake AMD PKI.
pub struct FakeAmdPki {
    /// ARK, ASK and ASVK keys.
    rsa: std::sync::Arc<[RsaCa; 3]>,
    vcek_key: SigningKey,
    vlek_key: SigningKey,
    /// Issued certificates, so that the same request gets the same bytes
    /// (AMD's certificates are stable too; verifiers cache on them).
    issued: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
    /// Validity of the VLEKs it issues.
    pub vlek_validity: (String, String),
}

impl Default for FakeAmdPki {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeAmdPki {
    /// A PKI with fresh endorsement keys (the RSA CA keys are per process).
    pub fn new() -> Self {
        FakeAmdPki {
            rsa: generated_rsa_keys(),
            vcek_key: SigningKey::random(&mut OsRng),
            vlek_key: SigningKey::random(&mut OsRng),
            issued: Default::default(),
            vlek_validity: (LONG.0.into(), LONG.1.into()),
        }
    }

    /// The fake ARK of `product` (PEM): what a test-only verifier pins.
    pub fn ark_pem(&self, product: Product) -> String {
        let k = &self.rsa;
        let cn = format!("ARK-{}", product.name());
        pem(&self.issue(format!("ark-{cn}"), || {
            certificate(1, &cn, &cn, LONG, &k[0].spki, &[], &k[0].key)
        }))
    }

    /// A PKI with given keys (PKCS#8 PEM): RSA ARK, ASK, ASVK and P-384
    /// VCEK, VLEK, such as go-sev-guest's test keys.
    pub fn from_pkcs8_pems(
        ark: &str,
        ask: &str,
        asvk: &str,
        vcek: &str,
        vlek: &str,
    ) -> Result<Self, String> {
        use p384::pkcs8::DecodePrivateKey as _;
        let rsa = |pem: &str| {
            RsaPrivateKey::from_pkcs8_pem(pem)
                .map(RsaCa::new)
                .map_err(|e| e.to_string())
        };
        let ec = |pem: &str| SigningKey::from_pkcs8_pem(pem).map_err(|e| e.to_string());
        Ok(FakeAmdPki {
            rsa: std::sync::Arc::new([rsa(ark)?, rsa(ask)?, rsa(asvk)?]),
            vcek_key: ec(vcek)?,
            vlek_key: ec(vlek)?,
            issued: Default::default(),
            vlek_validity: (LONG.0.into(), LONG.1.into()),
        })
    }

    fn issue(&self, key: String, make: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
        if let Some(c) = self
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return c.clone();
        }
        let c = make();
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, c.clone());
        c
    }

    /// The fake ASK of `product` (PEM).
    pub fn ask_pem(&self, product: Product) -> String {
        let k = &self.rsa;
        pem(&self.issue(format!("ask-{}", product.name()), || {
            certificate(
                2,
                &format!("ARK-{}", product.name()),
                &format!("SEV-{}", product.name()),
                LONG,
                &k[1].spki,
                &[],
                &k[0].key,
            )
        }))
    }

    /// The fake ASVK of `product` (PEM).
    pub fn asvk_pem(&self, product: Product) -> String {
        let k = &self.rsa;
        pem(&self.issue(format!("asvk-{}", product.name()), || {
            certificate(
                3,
                &format!("ARK-{}", product.name()),
                &format!("SEV-VLEK-{}", product.name()),
                LONG,
                &k[2].spki,
                &[],
                &k[0].key,
            )
        }))
    }

    fn tcb_extensions(product: Product, tcb: &Tcb) -> Vec<Vec<u8>> {
        let product_name = match product {
            Product::Milan => "Milan-B0",
            Product::Genoa => "Genoa-B1",
            Product::Turin => "Turin",
        };
        let mut exts = vec![
            extension(
                amd_oid(&[1]),
                der::int(if product == Product::Turin { 1 } else { 0 }),
            ),
            extension(amd_oid(&[2]), der::tlv(0x16, product_name.as_bytes())),
            extension(amd_oid(&[3, 1]), der::int(u64::from(tcb.bootloader))),
            extension(amd_oid(&[3, 2]), der::int(u64::from(tcb.tee))),
            extension(amd_oid(&[3, 3]), der::int(u64::from(tcb.snp))),
            extension(amd_oid(&[3, 8]), der::int(u64::from(tcb.microcode))),
        ];
        if product == Product::Turin {
            exts.push(extension(amd_oid(&[3, 9]), der::int(u64::from(tcb.fmc))));
        }
        exts
    }

    /// A VCEK certificate (DER) for `chip_id` at `tcb` (hwID: all 64 bytes,
    /// or Turin's first 8).
    pub fn vcek_der(&self, product: Product, chip_id: &[u8; 64], tcb: &Tcb) -> Vec<u8> {
        self.issue(
            format!("vcek-{}-{}-{tcb:?}", product.name(), hex::encode(chip_id)),
            || self.vcek_with(product, chip_id, tcb, 0x1000, vec![]),
        )
    }

    /// [`FakeAmdPki::vcek_der`] with three more extensions a verifier must
    /// ignore: a standard one (basicConstraints), one under another
    /// enterprise number laid out like AMD's blSPL (`1.3.6.1.4.1.9999.1.3.1`
    /// = 99), and one under AMD's number but outside its `.1` arc
    /// (`1.3.6.1.4.1.3704.2.3.1` = 98).
    pub fn vcek_der_with_foreign_extensions(
        &self,
        product: Product,
        chip_id: &[u8; 64],
        tcb: &Tcb,
    ) -> Vec<u8> {
        let foreign = vec![
            extension(der::oid(&[2, 5, 29, 19]), der::seq(&[])),
            extension(der::oid(&[1, 3, 6, 1, 4, 1, 9999, 1, 3, 1]), der::int(99)),
            extension(der::oid(&[1, 3, 6, 1, 4, 1, 3704, 2, 3, 1]), der::int(98)),
        ];
        self.vcek_with(product, chip_id, tcb, 0x3000, foreign)
    }

    /// A VCEK with AMD's extensions, then `extra`; serial `serial_base`
    /// plus the SNP SPL.
    fn vcek_with(
        &self,
        product: Product,
        chip_id: &[u8; 64],
        tcb: &Tcb,
        serial_base: u64,
        extra: Vec<Vec<u8>>,
    ) -> Vec<u8> {
        let hwid: &[u8] = if product == Product::Turin {
            &chip_id[..8]
        } else {
            chip_id
        };
        let mut exts = Self::tcb_extensions(product, tcb);
        exts.push(extension(amd_oid(&[4]), hwid.to_vec()));
        exts.extend(extra);
        certificate(
            serial_base + u64::from(tcb.snp),
            &format!("SEV-{}", product.name()),
            "SEV-VCEK",
            LONG,
            &ec_spki(&self.vcek_key),
            &exts,
            &self.rsa[1].key,
        )
    }

    /// A VLEK certificate (DER) at `tcb`.
    pub fn vlek_der(&self, product: Product, tcb: &Tcb) -> Vec<u8> {
        let validity = self.vlek_validity.clone();
        self.issue(
            format!("vlek-{}-{tcb:?}-{validity:?}", product.name()),
            || {
                let mut exts = Self::tcb_extensions(product, tcb);
                exts.push(extension(
                    amd_oid(&[5]),
                    der::tlv(0x16, b"CN=fake-csp.example"),
                ));
                certificate(
                    0x2000,
                    &format!("SEV-VLEK-{}", product.name()),
                    "SEV-VLEK",
                    (&validity.0, &validity.1),
                    &ec_spki(&self.vlek_key),
                    &exts,
                    &self.rsa[2].key,
                )
            },
        )
    }

    /// The endorsement key certificate matching `f`.
    pub fn vek_der(&self, f: &ReportFields) -> Vec<u8> {
        match f.signer {
            Signer::Vcek => self.vcek_der(f.product, &f.chip_id, &f.tcb),
            Signer::Vlek => self.vlek_der(f.product, &f.tcb),
        }
    }

    /// A signed 1184-byte report.
    pub fn report(&self, f: &ReportFields) -> Vec<u8> {
        self.sign_report(f, f.product)
    }

    /// A report whose CPUID fields (v3 and later) name `cpuid_product` while
    /// `f.product`'s key signs it: what a genuine chip never produces, for
    /// tests that the product a report names is the one its key is for.
    pub fn report_claiming(&self, f: &ReportFields, cpuid_product: Product) -> Vec<u8> {
        self.sign_report(f, cpuid_product)
    }

    fn sign_report(&self, f: &ReportFields, cpuid_product: Product) -> Vec<u8> {
        let mut r = vec![0u8; 0x4A0];
        let put32 =
            |r: &mut Vec<u8>, off: usize, v: u32| r[off..off + 4].copy_from_slice(&v.to_le_bytes());
        put32(&mut r, 0, f.version);
        r[0x08..0x10].copy_from_slice(&f.policy.to_le_bytes());
        put32(&mut r, 0x30, f.vmpl);
        put32(&mut r, 0x34, 1);
        let tcb = f.tcb.encode(f.product);
        let or = |t: Option<Tcb>| t.unwrap_or(f.tcb).encode(f.product);
        r[0x38..0x40].copy_from_slice(&or(f.current_tcb));
        let signer_bits = match f.signer {
            Signer::Vcek => 0,
            Signer::Vlek => 1 << 2,
        };
        put32(&mut r, 0x48, signer_bits);
        r[0x50..0x90].copy_from_slice(&f.report_data);
        r[0x90..0xC0].copy_from_slice(&f.measurement);
        r[0xC0..0xE0].copy_from_slice(&f.host_data);
        r[0x140..0x160].copy_from_slice(&[0x77; 32]);
        r[0x160..0x180].copy_from_slice(&[0xff; 32]);
        r[0x180..0x188].copy_from_slice(&tcb);
        if f.version >= 3 {
            let (fam, model) = cpuid_product.cpuid();
            r[0x188] = fam;
            r[0x189] = model;
            r[0x18A] = 1;
        }
        let mut chip = f.chip_id;
        if f.product == Product::Turin {
            chip[8..].fill(0);
        }
        r[0x1A0..0x1E0].copy_from_slice(&chip);
        r[0x1E0..0x1E8].copy_from_slice(&or(f.committed_tcb));
        r[0x1E8..0x1EB].copy_from_slice(&[3, 55, 1]);
        r[0x1EC..0x1EF].copy_from_slice(&[3, 55, 1]);
        r[0x1F0..0x1F8].copy_from_slice(&or(f.launch_tcb));

        let key = match f.signer {
            Signer::Vcek => &self.vcek_key,
            Signer::Vlek => &self.vlek_key,
        };
        let digest = Sha384::digest(&r[..0x2A0]);
        let sig: Signature = key.sign_prehash(&digest).expect("P-384 signing");
        let (rr, ss) = sig.split_bytes();
        for i in 0..48 {
            r[0x2A0 + i] = rr[47 - i];
            r[0x2E8 + i] = ss[47 - i];
        }
        r
    }

    /// The serial numbers the fake PKI gives the certificates a CRL can list.
    pub fn serial_of(&self, what: CrlEntry, tcb: &Tcb) -> u64 {
        match what {
            CrlEntry::Ask => 2,
            CrlEntry::Asvk => 3,
            CrlEntry::Vcek => 0x1000 + u64::from(tcb.snp),
            CrlEntry::Vlek => 0x2000,
        }
    }

    /// An AMD CRL (DER) of `product` for `signer`'s chain, issued by the
    /// fake ARK (RSASSA-PSS/SHA-384, as AMD's), valid `this_update` ..
    /// `next_update` (Unix seconds), listing `revoked` serial numbers.
    pub fn crl_der(
        &self,
        product: Product,
        revoked: &[u64],
        this_update: i64,
        next_update: i64,
    ) -> Vec<u8> {
        self.crl_signed_by(product, revoked, this_update, next_update, 0)
    }

    /// [`FakeAmdPki::crl_der`] signed by another of the fake PKI's RSA keys
    /// (0 ARK, 1 ASK, 2 ASVK): a forged CRL when not 0.
    pub fn crl_signed_by(
        &self,
        product: Product,
        revoked: &[u64],
        this_update: i64,
        next_update: i64,
        key: usize,
    ) -> Vec<u8> {
        let t = |secs: i64| {
            let d = time::OffsetDateTime::from_unix_timestamp(secs)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            utc(&format!(
                "{:02}{:02}{:02}{:02}{:02}{:02}Z",
                d.year() % 100,
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            ))
        };
        let mut tbs = vec![
            der::int(1),
            pss_alg(),
            name(&format!("ARK-{}", product.name())),
            t(this_update),
            t(next_update),
        ];
        if !revoked.is_empty() {
            tbs.push(der::seq(
                &revoked
                    .iter()
                    .map(|s| der::seq(&[der::int(*s), t(this_update - 60)]))
                    .collect::<Vec<_>>(),
            ));
        }
        let tbs = der::seq(&tbs);
        let signer = rsa::pss::BlindedSigningKey::<Sha384>::new(self.rsa[key.min(2)].key.clone());
        let sig = signer.sign_with_rng(&mut OsRng, &tbs).to_vec();
        let mut bits = vec![0u8];
        bits.extend(sig);
        der::seq(&[tbs, pss_alg(), der::tlv(0x03, &bits)])
    }

    /// A GHCB certificate table (what `auxblob` holds) with ARK, ASK and the VEK.
    pub fn cert_table(&self, product: Product, vek_der: &[u8], signer: Signer) -> Vec<u8> {
        let guid = |s: &str| -> [u8; 16] {
            let b = hex::decode(s.replace('-', "")).unwrap_or_default();
            let mut g = [0u8; 16];
            g[..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
            g[4..6].copy_from_slice(&[b[5], b[4]]);
            g[6..8].copy_from_slice(&[b[7], b[6]]);
            g[8..].copy_from_slice(&b[8..16]);
            g
        };
        let ark = self.ark_pem(product).into_bytes();
        let ask = self.ask_pem(product).into_bytes();
        let vek_guid = match signer {
            Signer::Vcek => "63da758d-e664-4564-adc5-f4b93be8accd",
            Signer::Vlek => "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
        };
        let entries: [(&str, &[u8]); 3] = [
            ("c0b406a4-a803-4952-9743-3fb6014cd0ae", &ark),
            ("4ab7b379-bbac-4fe4-a02f-05aef327c782", &ask),
            (vek_guid, vek_der),
        ];
        let header_len = 24 * (entries.len() + 1);
        let mut table = Vec::new();
        let mut body = Vec::new();
        for (g, data) in entries {
            table.extend_from_slice(&guid(g));
            table.extend_from_slice(&((header_len + body.len()) as u32).to_le_bytes());
            table.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
        }
        table.extend_from_slice(&[0u8; 24]);
        table.extend(body);
        table
    }
}
