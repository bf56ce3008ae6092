//! Intel's SGX/TDX PKI, checked directly where dcap-qvl's one-shot
//! verification cannot be used: before a fetch (the PCK chain of a quote
//! must lead to the pinned root before its FMSPC may trigger a PCS request)
//! and when collateral enters the cache (its signatures must verify).
//!
//! Every certificate and CRL in Intel's PKI is ECDSA P-256 with SHA-256.
//! Signatures are checked over the exact received `tbs` bytes (the DER
//! element as it appears in the input, never a re-encoding).

use attest_core::{AttestError, BadSignature, Malformed, UntrustedChain};
use der::Decode;
use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;

/// DER of the OID ecdsa-with-SHA256 (1.2.840.10045.4.3.2).
const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// The OID ecdsa-with-SHA256, as x509-cert names it.
const ECDSA_WITH_SHA256_OID: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// Checks that `der` (a certificate or a CRL) is signed by the holder of
/// `issuer_key` (an uncompressed SEC1 P-256 point).
pub(crate) fn check_signed(der: &[u8], issuer_key: &[u8], what: &str) -> Result<(), AttestError> {
    let signed = attest_core::der::split_signed(der)?;
    if signed.algorithm != ECDSA_WITH_SHA256 || !signed.parameters.is_empty() {
        return Err(UntrustedChain::BadCertificate {
            what: format!("the {what}"),
            detail: "not signed with ecdsa-with-SHA256 (Intel's PKI uses nothing else)".into(),
        }
        .into());
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, issuer_key)
        .verify(signed.tbs, signed.signature)
        .map_err(|_| {
            BadSignature::DoesNotVerify {
                signed: format!("the {what}"),
                signer: None,
            }
            .into()
        })
}

/// Checks a raw `r ‖ s` signature over `msg` (the form of collateral
/// signatures and quote signatures).
pub(crate) fn check_raw_signature(
    msg: &[u8],
    sig: &[u8],
    key: &[u8],
    what: &str,
) -> Result<(), AttestError> {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(msg, sig)
        .map_err(|_| {
            BadSignature::DoesNotVerify {
                signed: format!("the {what}"),
                signer: None,
            }
            .into()
        })
}

/// A parsed certificate with its exact bytes.
pub(crate) struct Cert {
    pub(crate) der: Vec<u8>,
    pub(crate) parsed: Certificate,
}

impl Cert {
    pub(crate) fn parse(der: &[u8], what: &str) -> Result<Self, AttestError> {
        let parsed = Certificate::from_der(der).map_err(|e| Malformed::Syntax {
            what: format!("{what} certificate"),
            detail: e.to_string(),
        })?;
        if parsed.signature_algorithm().oid != ECDSA_WITH_SHA256_OID
            || parsed.tbs_certificate().signature().oid != ECDSA_WITH_SHA256_OID
        {
            return Err(UntrustedChain::BadCertificate {
                what: format!("{what} certificate"),
                detail: "not signed with ecdsa-with-SHA256".into(),
            }
            .into());
        }
        Ok(Cert {
            der: der.to_vec(),
            parsed,
        })
    }

    /// The subject public key (uncompressed SEC1 point).
    pub(crate) fn public_key(&self) -> &[u8] {
        self.parsed
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes()
    }

    /// Which Intel PCK CA this certificate is, by its subject common name
    /// (`Intel SGX PCK Platform CA` or `Intel SGX PCK Processor CA`);
    /// anything else is not a PCK CA.
    pub(crate) fn pck_ca_kind(&self, what: &str) -> Result<dcap_qvl::config::PckCa, AttestError> {
        let cn = self
            .parsed
            .tbs_certificate()
            .subject()
            .common_name()
            .ok()
            .flatten()
            .map(|n| n.value().into_owned());
        match cn.as_deref() {
            Some("Intel SGX PCK Platform CA") => Ok(dcap_qvl::config::PckCa::Platform),
            Some("Intel SGX PCK Processor CA") => Ok(dcap_qvl::config::PckCa::Processor),
            other => Err(UntrustedChain::BadCertificate {
                what: what.into(),
                detail: format!("not an Intel PCK CA (subject common name {other:?})"),
            }
            .into()),
        }
    }

    /// notBefore and notAfter, Unix seconds.
    pub(crate) fn validity(&self) -> (u64, u64) {
        let v = self.parsed.tbs_certificate().validity();
        (
            v.not_before.to_unix_duration().as_secs(),
            v.not_after.to_unix_duration().as_secs(),
        )
    }

    /// Checks that `issuer` signed this certificate, that the names chain,
    /// and that both are valid at `now`.
    pub(crate) fn check_issued_by(
        &self,
        issuer: &Cert,
        now: u64,
        what: &str,
    ) -> Result<(), AttestError> {
        if self.parsed.tbs_certificate().issuer() != issuer.parsed.tbs_certificate().subject() {
            return Err(UntrustedChain::NotIssuedBy {
                detail: format!("{what} certificate's issuer is not the expected CA"),
            }
            .into());
        }
        check_signed(
            &self.der,
            issuer.public_key(),
            &format!("{what} certificate"),
        )?;
        for (c, name) in [(self, what), (issuer, "issuing CA")] {
            let (nb, na) = c.validity();
            if now < nb || now > na {
                return Err(UntrustedChain::OutsideValidity {
                    what: format!("{name} certificate"),
                    not_before: nb,
                    not_after: na,
                    now,
                }
                .into());
            }
        }
        Ok(())
    }

    /// The serial number's bytes.
    pub(crate) fn serial(&self) -> &[u8] {
        self.parsed.tbs_certificate().serial_number().as_bytes()
    }
}

/// A CRL whose signature was checked against its issuer.
pub(crate) struct Crl {
    parsed: CertificateList,
    /// thisUpdate, nextUpdate (Unix seconds).
    pub(crate) window: (u64, u64),
}

impl Crl {
    /// Parses `der` and checks that `issuer` signed it.
    pub(crate) fn verify(der: &[u8], issuer: &Cert, what: &str) -> Result<Self, AttestError> {
        let parsed = CertificateList::from_der(der).map_err(|e| Malformed::Syntax {
            what: what.into(),
            detail: e.to_string(),
        })?;
        if parsed.tbs_cert_list.issuer != *issuer.parsed.tbs_certificate().subject() {
            return Err(UntrustedChain::NotIssuedBy {
                detail: format!("{what} is not issued by the expected CA"),
            }
            .into());
        }
        check_signed(der, issuer.public_key(), what)?;
        let this = parsed
            .tbs_cert_list
            .this_update
            .to_unix_duration()
            .as_secs();
        let next = parsed
            .tbs_cert_list
            .next_update
            .ok_or_else(|| Malformed::Missing {
                what: "nextUpdate",
                detail: format!("{what} has no nextUpdate"),
            })?
            .to_unix_duration()
            .as_secs();
        Ok(Crl {
            parsed,
            window: (this, next),
        })
    }

    /// Whether the CRL lists `cert` (by serial; the CRL is its issuer's).
    pub(crate) fn revokes(&self, cert: &Cert) -> bool {
        self.parsed
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .any(|r| r.serial_number.as_bytes() == cert.serial())
    }
}

/// The DER certificates of a PEM chain, in order.
pub(crate) fn pem_chain(pem: &[u8], what: &str) -> Result<Vec<Vec<u8>>, AttestError> {
    let blocks = ::pem::parse_many(pem).map_err(|e| Malformed::Syntax {
        what: what.into(),
        detail: e.to_string(),
    })?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect();
    if certs.is_empty() || certs.len() > 4 {
        return Err(Malformed::BadValue {
            what: format!("{what} certificate count"),
            expected: "1 to 4".into(),
            found: certs.len().to_string(),
        }
        .into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_root_is_self_signed() {
        let root = Cert::parse(crate::INTEL_ROOT_CA_DER, "root").unwrap();
        root.check_issued_by(&root, 1_750_000_000, "root").unwrap();
        let mut bad = crate::INTEL_ROOT_CA_DER.to_vec();
        let n = bad.len();
        bad[n - 10] ^= 1;
        let err = check_signed(&bad, root.public_key(), "root").unwrap_err();
        assert_eq!(err.kind(), attest_core::ErrorKind::BadSignature);
    }

    /// A PEM chain holds one to four certificates; other PEM blocks are
    /// not certificates.
    #[test]
    fn pem_chains_hold_one_to_four_certificates() {
        let cert = ::pem::encode(&::pem::Pem::new("CERTIFICATE", crate::INTEL_ROOT_CA_DER));
        let key = ::pem::encode(&::pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        for n in 1..=4 {
            let chain = cert.repeat(n);
            assert_eq!(pem_chain(chain.as_bytes(), "chain").unwrap().len(), n);
        }
        let with_key = format!("{key}{cert}");
        assert_eq!(pem_chain(with_key.as_bytes(), "chain").unwrap().len(), 1);
        for bad in [cert.repeat(5), key, String::new()] {
            assert!(
                matches!(
                    pem_chain(bad.as_bytes(), "chain").unwrap_err().malformed(),
                    Some(attest_core::Malformed::BadValue { what, .. }) if what == "chain certificate count"
                ),
                "{bad}"
            );
        }
    }

    /// The serial number a CRL lists (the Intel root's, read with
    /// `openssl x509 -serial`).
    #[test]
    fn serials_are_the_certificates() {
        let root = Cert::parse(crate::INTEL_ROOT_CA_DER, "root").unwrap();
        assert_eq!(
            hex::encode(root.serial()),
            "22650cd65a9d3489f383b49552bf501b392706ac"
        );
    }

    /// A certificate counts from its notBefore to its notAfter, both
    /// seconds included.
    #[test]
    fn validity_includes_both_ends() {
        let root = Cert::parse(crate::INTEL_ROOT_CA_DER, "root").unwrap();
        let (nb, na) = root.validity();
        root.check_issued_by(&root, nb, "root").unwrap();
        root.check_issued_by(&root, na, "root").unwrap();
        for t in [nb - 1, na + 1] {
            assert!(
                matches!(
                    root.check_issued_by(&root, t, "root"),
                    Err(AttestError::UntrustedChain(
                        UntrustedChain::OutsideValidity { .. }
                    ))
                ),
                "at {t}"
            );
        }
    }

    /// Only ecdsa-with-SHA256 is Intel's: the (unsigned) outer algorithm
    /// naming ecdsa-with-SHA384 is refused by name, before any signature
    /// check.
    #[test]
    fn another_signature_algorithm_is_refused() {
        let root = Cert::parse(crate::INTEL_ROOT_CA_DER, "root").unwrap();
        let mut other = crate::INTEL_ROOT_CA_DER.to_vec();
        let at = other
            .windows(ECDSA_WITH_SHA256.len())
            .rposition(|w| w == ECDSA_WITH_SHA256)
            .unwrap();
        other[at + ECDSA_WITH_SHA256.len() - 1] = 0x03;
        // The parsed certificate is refused too: its two algorithm fields
        // must both name it.
        assert!(matches!(
            Cert::parse(&other, "root"),
            Err(AttestError::UntrustedChain(
                UntrustedChain::BadCertificate { .. }
            ))
        ));
        let err = check_signed(&other, root.public_key(), "root").unwrap_err();
        assert!(
            matches!(
                &err,
                AttestError::UntrustedChain(UntrustedChain::BadCertificate { detail, .. })
                    if detail.starts_with("not signed with ecdsa-with-SHA256")
            ),
            "{err}"
        );
    }
}
