//! The quote's PCK certificate chain, checked to the pinned root before
//! anything in it is acted on.
//!
//! The FMSPC and CA that select a collateral set come from the PCK leaf.
//! Until the leaf chains to Intel's root, they are whatever the sender
//! wrote, and using them to fetch from a PCS would let an unauthenticated
//! caller drive outbound requests (a quote under a foreign PKI, a new FMSPC
//! per request). So the chain is checked first: leaf ← PCK CA ← the pinned
//! root, names, signatures, validity. Revocation needs the collateral's
//! CRLs and is checked by the full verification that follows.
//!
//! A platform sends the same chain in every quote, so results are cached
//! by the chain's digest (bounded; an entry is only used inside the
//! validity window it was checked for).

use std::collections::HashMap;
use std::sync::Mutex;

use attest_core::{AttestError, Malformed, UnixTime, UntrustedChain};
use dcap_qvl::quote::{AuthData, Quote};
use sha2::{Digest, Sha256};

use crate::collateral::CollateralKey;
use crate::pki::Cert;

/// Most remembered chains before the map is cleared.
const MAX_REMEMBERED_CHAINS: usize = 4096;

/// What a checked PCK chain establishes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CheckedPck {
    /// The collateral the platform needs.
    pub(crate) key: CollateralKey,
    /// The latest notBefore and earliest notAfter of leaf and CA.
    window: (u64, u64),
}

/// Checks PCK chains against one pinned root, remembering results.
pub(crate) struct PckChains {
    root: Cert,
    checked: Mutex<HashMap<[u8; 32], CheckedPck>>,
}

impl PckChains {
    pub(crate) fn new(root_der: &[u8]) -> Result<Self, AttestError> {
        Ok(PckChains {
            root: Cert::parse(root_der, "pinned Intel root")?,
            checked: Mutex::new(HashMap::new()),
        })
    }

    /// Checks the quote's PCK chain at `now` and returns the collateral key
    /// its leaf names.
    pub(crate) fn check(&self, quote: &Quote, now: UnixTime) -> Result<CheckedPck, AttestError> {
        let t = now.as_secs();
        // Remembered by the digest of the certification data exactly as the
        // quote carries it (the PEM text), so a known chain costs a hash,
        // not a PEM decode.
        let cert_data = match &quote.auth_data {
            AuthData::V3(d) => &d.certification_data,
            AuthData::V4(d) => &d.qe_report_data.certification_data,
        };
        let digest: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(cert_data.cert_type.to_le_bytes());
            h.update(&cert_data.body.data);
            h.finalize().into()
        };
        let remembered = self
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
            .copied();
        if let Some(c) = remembered {
            if c.window.0 <= t && t <= c.window.1 {
                return Ok(c);
            }
        }
        let chain = dcap_qvl::intel::extract_cert_chain(quote).map_err(|e| Malformed::Syntax {
            what: "PCK certificate chain".into(),
            detail: format!("{e:#}"),
        })?;
        let checked = self.check_chain(&chain, t)?;
        let mut map = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_REMEMBERED_CHAINS {
            map.clear();
        }
        map.insert(digest, checked);
        Ok(checked)
    }

    fn check_chain(&self, chain: &[Vec<u8>], now: u64) -> Result<CheckedPck, AttestError> {
        // Intel's QE embeds leaf, PCK CA and root (certification data type
        // 5 is defined as those three). The embedded root must be the
        // pinned one byte for byte: verification never uses it, so a
        // different one can only be another PKI or tampering.
        let (leaf, ca) = match chain {
            [leaf, ca, root] if root.as_slice() == self.root.der.as_slice() => (leaf, ca),
            [_, _, _] => {
                return Err(UntrustedChain::UnknownRoot {
                    detail:
                        "the quote's PCK chain ends in a root that is not the pinned Intel root"
                            .into(),
                }
                .into());
            }
            _ => {
                return Err(UntrustedChain::BadCertificate {
                    what: "the quote's PCK chain".into(),
                    detail: format!(
                        "{} certificates, expected leaf, PCK CA and root",
                        chain.len()
                    ),
                }
                .into());
            }
        };
        let leaf_cert = Cert::parse(leaf, "PCK leaf")?;
        let ca_cert = Cert::parse(ca, "PCK CA")?;
        ca_cert.check_issued_by(&self.root, now, "PCK CA")?;
        leaf_cert.check_issued_by(&ca_cert, now, "PCK leaf")?;
        let ext = dcap_qvl::intel::parse_pck_extension(leaf).map_err(|e| Malformed::Syntax {
            what: "PCK certificate extension".into(),
            detail: format!("{e:#}"),
        })?;
        // The CA kind from the CA's own (now verified) name; dcap-qvl's
        // helper would call any unknown issuer a Processor CA.
        let ca = ca_cert.pck_ca_kind("the quote's PCK CA")?;
        let (lnb, lna) = leaf_cert.validity();
        let (cnb, cna) = ca_cert.validity();
        Ok(CheckedPck {
            key: CollateralKey {
                fmspc: ext.fmspc,
                ca,
            },
            window: (lnb.max(cnb), lna.min(cna)),
        })
    }
}
