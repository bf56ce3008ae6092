//! AMD's certificate chain: pinned roots, the endorsement key certificate
//! (VCEK or VLEK) and its AMD extensions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use attest_core::{AttestError, UnixTime, UntrustedChain};
use der::Decode;
use sev::certs::snp::{Certificate, Verifiable};
use sha2::{Digest, Sha256};

use crate::Product;
use crate::report::{Signer, Tcb};

const AMD_OID: [u64; 7] = [1, 3, 6, 1, 4, 1, 3704];

/// The pinned roots of one product: ARK, ASK (signs VCEKs), ASVK (signs VLEKs).
#[derive(Clone)]
pub struct ProductRoots {
    ark: Certificate,
    ask: Certificate,
    asvk: Certificate,
    validity: [(u64, u64); 3],
    /// ARK subject (a CRL's issuer must equal it) and RSA public key
    /// (PKCS#1, what CRL signatures are checked with).
    ark_subject: x509_cert::name::Name,
    ark_public_key: Vec<u8>,
    /// Serial numbers of ASK and ASVK (what AMD's CRLs list).
    serials: [Vec<u8>; 2],
}

fn validity_of(der: &[u8], what: &str) -> Result<(u64, u64), AttestError> {
    let c = x509_cert::Certificate::from_der(der).map_err(|e| bad_certificate(what, e))?;
    let v = c.tbs_certificate().validity();
    Ok((
        v.not_before.to_unix_duration().as_secs(),
        v.not_after.to_unix_duration().as_secs(),
    ))
}

fn bad_certificate(what: &str, e: impl std::fmt::Display) -> AttestError {
    UntrustedChain::BadCertificate {
        what: what.into(),
        detail: e.to_string(),
    }
    .into()
}

/// A `sev` crate failure to read a certificate.
fn sev_err(what: &str) -> impl Fn(std::io::Error) -> AttestError + '_ {
    move |e| bad_certificate(what, e)
}

/// A `sev` crate signature check that failed: `what` says which.
fn not_signed(what: &str) -> impl Fn(std::io::Error) -> AttestError + '_ {
    move |e| {
        UntrustedChain::NotIssuedBy {
            detail: format!("{what}: {e}"),
        }
        .into()
    }
}

impl ProductRoots {
    /// Roots from PEM certificates; checks ARK self-signature, ARK→ASK and
    /// ARK→ASVK once, here.
    pub fn from_pem(ark: &[u8], ask: &[u8], asvk: &[u8]) -> Result<Self, AttestError> {
        let ark = Certificate::from_pem(ark).map_err(sev_err("ARK"))?;
        let ask = Certificate::from_pem(ask).map_err(sev_err("ASK"))?;
        let asvk = Certificate::from_pem(asvk).map_err(sev_err("ASVK"))?;
        (&ark, &ark)
            .verify()
            .map_err(not_signed("ARK is not self-signed"))?;
        (&ark, &ask)
            .verify()
            .map_err(not_signed("ARK does not sign the ASK"))?;
        (&ark, &asvk)
            .verify()
            .map_err(not_signed("ARK does not sign the ASVK"))?;
        let der = |c: &Certificate, w: &str| c.to_der().map_err(sev_err(w));
        let validity = [
            validity_of(&der(&ark, "ARK")?, "ARK")?,
            validity_of(&der(&ask, "ASK")?, "ASK")?,
            validity_of(&der(&asvk, "ASVK")?, "ASVK")?,
        ];
        let parse = |c: &Certificate, w: &str| -> Result<x509_cert::Certificate, AttestError> {
            x509_cert::Certificate::from_der(&der(c, w)?).map_err(|e| bad_certificate(w, e))
        };
        let ark_x = parse(&ark, "ARK")?;
        let serial = |c: &Certificate, w: &str| -> Result<Vec<u8>, AttestError> {
            Ok(parse(c, w)?
                .tbs_certificate()
                .serial_number()
                .as_bytes()
                .to_vec())
        };
        Ok(ProductRoots {
            ark_subject: ark_x.tbs_certificate().subject().clone(),
            ark_public_key: ark_x
                .tbs_certificate()
                .subject_public_key_info()
                .subject_public_key
                .raw_bytes()
                .to_vec(),
            serials: [serial(&ask, "ASK")?, serial(&asvk, "ASVK")?],
            ark,
            ask,
            asvk,
            validity,
        })
    }

    fn check_validity(&self, now: UnixTime, signer: Signer) -> Result<(), AttestError> {
        let (names, idx) = match signer {
            Signer::Vcek => (["ARK", "ASK"], [0, 1]),
            Signer::Vlek => (["ARK", "ASVK"], [0, 2]),
        };
        for (name, i) in names.iter().zip(idx) {
            let (nb, na) = self.validity[i];
            if now.as_secs() < nb || now.as_secs() > na {
                return Err(UntrustedChain::OutsideValidity {
                    what: (*name).into(),
                    not_before: nb,
                    not_after: na,
                    now: now.as_secs(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// The ARK's subject name.
    pub fn ark_subject(&self) -> &x509_cert::name::Name {
        &self.ark_subject
    }

    /// The ARK's RSA public key (PKCS#1 DER).
    pub fn ark_public_key(&self) -> &[u8] {
        &self.ark_public_key
    }

    /// The serial number of the intermediate that signs `signer`'s keys
    /// (ASK for VCEKs, ASVK for VLEKs).
    pub fn intermediate_serial(&self, signer: Signer) -> &[u8] {
        match signer {
            Signer::Vcek => &self.serials[0],
            Signer::Vlek => &self.serials[1],
        }
    }

    /// The ARK (for tests comparing chains).
    pub fn ark_der(&self) -> Vec<u8> {
        self.ark.to_der().unwrap_or_default()
    }
}

/// The pinned roots of every product.
#[derive(Clone)]
pub struct Roots {
    by_product: HashMap<Product, ProductRoots>,
}

fn pem_blocks(pem: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END") {
            out.push(std::mem::take(&mut cur).into_bytes());
        }
    }
    out
}

impl Roots {
    /// AMD's production roots: ARK and ASK as built into the `sev` crate,
    /// ASVK as AMD KDS serves it (embedded; the `sev` crate has none).
    pub fn amd() -> Result<Self, AttestError> {
        use sev::certs::snp::builtin::{genoa, milan, turin};
        let asvk = |chain: &[u8]| -> Result<Vec<u8>, AttestError> {
            pem_blocks(chain).into_iter().next().ok_or_else(|| {
                UntrustedChain::UnknownRoot {
                    detail: "embedded ASVK missing".into(),
                }
                .into()
            })
        };
        let mut by_product = HashMap::new();
        by_product.insert(
            Product::Milan,
            ProductRoots::from_pem(
                milan::ARK,
                milan::ASK,
                &asvk(include_bytes!("../roots/milan-vlek-chain.pem"))?,
            )?,
        );
        by_product.insert(
            Product::Genoa,
            ProductRoots::from_pem(
                genoa::ARK,
                genoa::ASK,
                &asvk(include_bytes!("../roots/genoa-vlek-chain.pem"))?,
            )?,
        );
        by_product.insert(
            Product::Turin,
            ProductRoots::from_pem(
                turin::ARK,
                turin::ASK,
                &asvk(include_bytes!("../roots/turin-vlek-chain.pem"))?,
            )?,
        );
        Ok(Roots { by_product })
    }

    /// Roots given explicitly (tests with a fake AMD PKI).
    pub fn custom(by_product: HashMap<Product, ProductRoots>) -> Self {
        Roots { by_product }
    }

    /// The roots of `product`.
    pub fn get(&self, product: Product) -> Result<&ProductRoots, AttestError> {
        self.by_product.get(&product).ok_or_else(|| {
            UntrustedChain::UnknownRoot {
                detail: format!("no pinned roots for {product:?}"),
            }
            .into()
        })
    }
}

/// A parsed endorsement key certificate (VCEK or VLEK).
#[derive(Clone, Debug)]
pub struct Vek {
    /// SHA-256 of the DER.
    pub digest: [u8; 32],
    /// Serial number (what a CRL lists).
    pub serial: Vec<u8>,
    /// SEC1 P-384 public key.
    pub public_key: Vec<u8>,
    /// Validity window.
    pub not_before: u64,
    /// Validity window.
    pub not_after: u64,
    /// Subject CN (`SEV-VCEK`, `SEV-VLEK`).
    pub common_name: String,
    /// productName extension ("Milan-B0", "Genoa", "Turin").
    pub product_name: Option<String>,
    /// hwID extension (VCEK only), raw bytes (an OCTET STRING wrapper removed).
    pub hwid: Option<Vec<u8>>,
    /// The TCB the key was derived for.
    pub tcb: Tcb,
}

fn parse_small_int(v: &[u8]) -> Option<u8> {
    // DER INTEGER: 02 len value; values >= 0x80 carry a leading zero.
    match v {
        [0x02, 1, x] if *x < 0x80 => Some(*x),
        [0x02, 2, 0, x] if *x >= 0x80 => Some(*x),
        _ => None,
    }
}

/// Strips a DER OCTET STRING wrapper when `v` is exactly one.
fn unwrap_octets(v: &[u8]) -> &[u8] {
    match v {
        [0x04, len, rest @ ..] if (*len as usize) == rest.len() && *len < 0x80 => rest,
        [0x04, 0x81, len, rest @ ..] if (*len as usize) == rest.len() => rest,
        _ => v,
    }
}

fn ia5(v: &[u8]) -> Option<String> {
    match v {
        [0x16, len, rest @ ..] if (*len as usize) == rest.len() => {
            String::from_utf8(rest.to_vec()).ok()
        }
        _ => None,
    }
}

impl Vek {
    /// Parses a VCEK/VLEK certificate (no signature check).
    pub fn parse(der_bytes: &[u8]) -> Result<Self, AttestError> {
        let bad = |m: String| bad_certificate("endorsement key certificate", m);
        let cert = x509_cert::Certificate::from_der(der_bytes).map_err(|e| bad(e.to_string()))?;
        let tbs = cert.tbs_certificate();
        // RFC 5280 4.1.1.2: the unsigned copy of the signature algorithm
        // must be the signed one. The signature check uses AMD's fixed
        // RSASSA-PSS parameters, so a changed copy would go unnoticed.
        if cert.signature_algorithm() != tbs.signature() {
            return Err(bad(
                "its signatureAlgorithm differs from the signed TBSCertificate.signature".into(),
            ));
        }
        // An RSA signature is whole bytes; a declared unused bit would be
        // ignored by the check.
        if cert.signature().unused_bits() != 0 {
            return Err(bad("its signature BIT STRING declares unused bits".into()));
        }
        let v = tbs.validity();
        let public_key = tbs
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes()
            .to_vec();
        let common_name = tbs
            .subject()
            .to_string()
            .split(',')
            .find_map(|p| p.trim().strip_prefix("CN=").map(str::to_owned))
            .unwrap_or_default();
        let mut product_name = None;
        let mut hwid = None;
        let mut comps: HashMap<u64, u8> = HashMap::new();
        for ext in tbs.extensions().map(|e| e.as_slice()).unwrap_or(&[]) {
            let arcs: Vec<u64> = ext.extn_id.arcs().map(u64::from).collect();
            if arcs.len() < 9 || arcs[..7] != AMD_OID || arcs[7] != 1 {
                continue;
            }
            let value = ext.extn_value.as_bytes();
            match &arcs[8..] {
                [2] => product_name = ia5(value),
                [3, c] => {
                    let n = parse_small_int(value).ok_or_else(|| {
                        bad(format!("TCB extension .3.{c} is not a small INTEGER"))
                    })?;
                    comps.insert(*c, n);
                }
                [4] => hwid = Some(unwrap_octets(value).to_vec()),
                _ => {}
            }
        }
        let comp = |c: u64, name: &str| {
            comps
                .get(&c)
                .copied()
                .ok_or_else(|| bad(format!("no {name} SPL extension")))
        };
        let tcb = Tcb {
            bootloader: comp(1, "blSPL")?,
            tee: comp(2, "teeSPL")?,
            snp: comp(3, "snpSPL")?,
            microcode: comp(8, "ucodeSPL")?,
            fmc: comps.get(&9).copied(),
        };
        Ok(Vek {
            serial: tbs.serial_number().as_bytes().to_vec(),
            digest: Sha256::digest(der_bytes).into(),
            public_key,
            not_before: v.not_before.to_unix_duration().as_secs(),
            not_after: v.not_after.to_unix_duration().as_secs(),
            common_name,
            product_name,
            hwid,
            tcb,
        })
    }

    /// The product the productName extension names.
    pub fn product(&self) -> Option<Product> {
        let name = self.product_name.as_deref()?;
        [Product::Milan, Product::Genoa, Product::Turin]
            .into_iter()
            .find(|p| name.starts_with(p.kds_name()))
    }
}

/// Checks that the pinned intermediate for `signer` (ASK for a VCEK, ASVK
/// for a VLEK) signed `vek_der`, parsed as `vek`, and that it is the kind
/// of certificate `signer` names.
fn check_signed(
    roots: &ProductRoots,
    product: Product,
    signer: Signer,
    vek_der: &[u8],
    vek: &Vek,
) -> Result<(), AttestError> {
    let cert = Certificate::from_der(vek_der).map_err(sev_err("endorsement key certificate"))?;
    let (issuer, name, cn) = match signer {
        Signer::Vcek => (&roots.ask, "ASK", "SEV-VCEK"),
        Signer::Vlek => (&roots.asvk, "ASVK", "SEV-VLEK"),
    };
    (issuer, &cert)
        .verify()
        .map_err(|e| UntrustedChain::NotIssuedBy {
            detail: format!(
                "the pinned {product:?} {name} did not sign this {cn} certificate: {e}"
            ),
        })?;
    if vek.common_name != cn {
        return Err(UntrustedChain::WrongKey {
            detail: format!(
                "KEY_INFO says {cn} but the certificate is {:?}",
                vek.common_name
            ),
        }
        .into());
    }
    Ok(())
}

/// Checks that `der` is the VCEK AMD derived for `req` on `product`: signed
/// by the pinned ASK, for this product, this chip's hwID and exactly the
/// requested TCB. What a KDS client requires before it keeps an answer
/// (a wrong one, kept, would lock the chip out).
pub fn check_vcek_for(
    roots: &Roots,
    product: Product,
    req: &crate::VekRequest,
    der: &[u8],
) -> Result<Vek, AttestError> {
    let vek = Vek::parse(der)?;
    check_signed(roots.get(product)?, product, Signer::Vcek, der, &vek)?;
    if vek.product().is_some_and(|p| p != product) {
        return Err(UntrustedChain::WrongKey {
            detail: format!(
                "a VCEK for {:?} answered a {product:?} request",
                vek.product_name
            ),
        }
        .into());
    }
    if vek.hwid.as_deref() != Some(req.hwid(product)) {
        return Err(UntrustedChain::WrongKey {
            detail: "the VCEK is for another chip (hwID)".into(),
        }
        .into());
    }
    let tcb = Tcb::decode(product, &req.reported_tcb);
    if vek.tcb != tcb {
        return Err(UntrustedChain::WrongKey {
            detail: format!("the VCEK is for TCB {:?}, the request for {tcb:?}", vek.tcb),
        }
        .into());
    }
    Ok(vek)
}

/// Verified endorsement keys by certificate digest: the RSA chain check
/// costs milliseconds, so each VEK is checked once per (product, signer).
#[derive(Default)]
pub struct ChainCache {
    verified: Mutex<HashMap<ChainKey, Arc<Vek>>>,
}

/// Certificate digest, product and signer.
type ChainKey = ([u8; 32], Product, Signer);

/// Most cached endorsement keys before the cache is cleared.
const MAX_CACHED: usize = 16_384;

impl ChainCache {
    /// A certificate already verified for `signer` under some product, if
    /// any: its public key may be used before the chain is checked again.
    pub fn peek(&self, vek_der: &[u8], signer: Signer) -> Option<Arc<Vek>> {
        let digest: [u8; 32] = Sha256::digest(vek_der).into();
        let map = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        [Product::Milan, Product::Genoa, Product::Turin]
            .into_iter()
            .find_map(|p| map.get(&(digest, p, signer)).cloned())
    }

    /// Verifies `vek_der` under the pinned roots (ASK for a VCEK, ASVK for a
    /// VLEK), once per certificate; validity is checked at `now` every time.
    pub fn verify(
        &self,
        roots: &ProductRoots,
        product: Product,
        signer: Signer,
        vek_der: &[u8],
        now: UnixTime,
    ) -> Result<Arc<Vek>, AttestError> {
        let digest: [u8; 32] = Sha256::digest(vek_der).into();
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(digest, product, signer))
            .cloned();
        let vek = match cached {
            Some(v) => v,
            None => {
                let vek = Arc::new(Vek::parse(vek_der)?);
                check_signed(roots, product, signer, vek_der, &vek)?;
                let mut map = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() >= MAX_CACHED {
                    map.clear();
                }
                map.insert((digest, product, signer), vek.clone());
                vek
            }
        };
        roots.check_validity(now, signer)?;
        if now.as_secs() < vek.not_before || now.as_secs() > vek.not_after {
            return Err(UntrustedChain::OutsideValidity {
                what: format!("{} certificate", vek.common_name),
                not_before: vek.not_before,
                not_after: vek.not_after,
                now: now.as_secs(),
            }
            .into());
        }
        Ok(vek)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TCB SPL extensions are DER INTEGERs 0..=255: minimal, non-negative.
    #[test]
    fn spl_integers_are_minimal_and_non_negative() {
        assert_eq!(parse_small_int(&[0x02, 1, 0x00]), Some(0));
        assert_eq!(parse_small_int(&[0x02, 1, 0x7f]), Some(0x7f));
        assert_eq!(parse_small_int(&[0x02, 2, 0x00, 0x80]), Some(0x80));
        assert_eq!(parse_small_int(&[0x02, 2, 0x00, 0xff]), Some(0xff));
        for bad in [
            &[0x02, 1, 0x80][..],       // negative
            &[0x02, 2, 0x00, 0x7f][..], // a needless leading zero
            &[0x02, 2, 0x01, 0x80][..], // above 255
            &[0x04, 1, 0x05][..],       // not an INTEGER
            &[0x02, 1][..],
            &[][..],
        ] {
            assert_eq!(parse_small_int(bad), None, "{bad:02x?}");
        }
    }

    /// hwID: the OCTET STRING wrapper is removed only when it spans the
    /// whole value, in the short or the one-byte long form.
    #[test]
    fn octet_string_wrappers_are_removed_only_whole() {
        assert_eq!(unwrap_octets(&[0x04, 2, 0xaa, 0xbb]), &[0xaa, 0xbb]);
        assert_eq!(unwrap_octets(&[0x04, 0x81, 2, 0xaa, 0xbb]), &[0xaa, 0xbb]);
        let long: Vec<u8> = [&[0x04, 0x81, 0x80][..], &[0x11; 0x80]].concat();
        assert_eq!(unwrap_octets(&long), &[0x11; 0x80][..]);
        for whole in [
            &[0x04, 3, 0xaa, 0xbb][..],
            &[0x04, 1, 0xaa, 0xbb][..],
            &[0x03, 2, 0xaa, 0xbb][..],
            &[0x04, 0x81, 3, 0xaa, 0xbb][..],
            &[0xaa; 64][..],
        ] {
            assert_eq!(unwrap_octets(whole), whole, "{whole:02x?}");
        }
        // 0x80 is not a short-form length.
        let indefinite: Vec<u8> = [&[0x04, 0x80][..], &[0x11; 0x80]].concat();
        assert_eq!(unwrap_octets(&indefinite), &indefinite[..]);
    }

    /// productName: an IA5String spanning the whole value, else nothing.
    #[test]
    fn product_names_are_whole_ia5_strings() {
        assert_eq!(ia5(b"\x16\x05Genoa").as_deref(), Some("Genoa"));
        assert_eq!(ia5(b"\x16\x04Genoa"), None);
        assert_eq!(ia5(b"\x0c\x05Genoa"), None);
        assert_eq!(ia5(b"\x16\x02\xff\xfe"), None);
    }
}
