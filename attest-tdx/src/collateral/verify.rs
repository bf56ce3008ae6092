//! Collateral checked before it is trusted by the cache.
//!
//! dcap-qvl checks every signature of a collateral set again on each
//! quote, so a bad set never verifies a quote. But a cache that stores a
//! bad set (a compromised or spoofed PCCS answering with bad signatures and
//! a far-future `nextUpdate`) would keep it "fresh" for ever and keep good
//! sets out, across restarts. So a set enters the cache, in memory or on
//! disk, only after this check: both CRLs, the TCB info and the QE identity
//! are signed by certificates that chain to the pinned root, none of those
//! certificates is revoked, and the set's window contains the time of the
//! check.

use attest_core::{AttestError, CollateralExpired, Revoked, UntrustedChain};

use super::QuoteCollateralV3;
use crate::pki::{Cert, Crl, check_raw_signature, pem_chain};

/// A signer certificate from an issuer chain (PEM: signer, then the root),
/// checked against the pinned root and its CRL.
fn signer(
    chain_pem: &str,
    what: &str,
    root: &Cert,
    root_crl: &Crl,
    now: u64,
) -> Result<Cert, AttestError> {
    let chain = pem_chain(chain_pem.as_bytes(), what)?;
    if let Some(embedded_root) = chain.get(1) {
        if embedded_root.as_slice() != root.der.as_slice() {
            return Err(UntrustedChain::UnknownRoot {
                detail: format!("{what} ends in a root that is not the pinned Intel root"),
            }
            .into());
        }
    }
    let cert = Cert::parse(&chain[0], what)?;
    cert.check_issued_by(root, now, what)?;
    if root_crl.revokes(&cert) {
        return Err(Revoked::Certificate {
            detail: format!("the {what} signer is on the root CA CRL"),
        }
        .into());
    }
    Ok(cert)
}

fn check_window(what: &str, (from, to): (u64, u64), now: u64) -> Result<(), AttestError> {
    if now < from {
        return Err(CollateralExpired::NotYetValid {
            detail: format!("{what} is valid from {from}, not yet at {now}"),
        }
        .into());
    }
    if now >= to {
        return Err(CollateralExpired::Expired {
            detail: format!("{what} expired at {to} (checked at {now})"),
        }
        .into());
    }
    Ok(())
}

/// Checks every signature of `c` to `root` and that `now` is inside the
/// window of each part (`window` is the set's latest issue and earliest
/// `nextUpdate`, read by [`super::Collateral::new`]).
pub(crate) fn verify_collateral(
    c: &QuoteCollateralV3,
    root: &Cert,
    window: (u64, u64),
    now: u64,
) -> Result<(), AttestError> {
    check_window("the collateral set", window, now)?;
    let root_crl = Crl::verify(&c.root_ca_crl, root, "root CA CRL")?;
    check_window("the root CA CRL", root_crl.window, now)?;

    // PCK CRL: issued by the PCK CA named in its issuer chain.
    let pck_chain = pem_chain(c.pck_crl_issuer_chain.as_bytes(), "PCK CRL issuer chain")?;
    if let Some(embedded_root) = pck_chain.get(1) {
        if embedded_root.as_slice() != root.der.as_slice() {
            return Err(UntrustedChain::UnknownRoot {
                detail: "the PCK CRL issuer chain ends in a root that is not the pinned Intel root"
                    .into(),
            }
            .into());
        }
    }
    let pck_ca = Cert::parse(&pck_chain[0], "PCK CA")?;
    pck_ca.check_issued_by(root, now, "PCK CA")?;
    if root_crl.revokes(&pck_ca) {
        return Err(Revoked::Certificate {
            detail: "the PCK CA is on the root CA CRL".into(),
        }
        .into());
    }
    let pck_crl = Crl::verify(&c.pck_crl, &pck_ca, "PCK CRL")?;
    check_window("the PCK CRL", pck_crl.window, now)?;

    let tcb_signer = signer(
        &c.tcb_info_issuer_chain,
        "TCB info issuer chain",
        root,
        &root_crl,
        now,
    )?;
    check_raw_signature(
        c.tcb_info.as_bytes(),
        &c.tcb_info_signature,
        tcb_signer.public_key(),
        "TCB info",
    )?;
    let qe_signer = signer(
        &c.qe_identity_issuer_chain,
        "QE identity issuer chain",
        root,
        &root_crl,
        now,
    )?;
    check_raw_signature(
        c.qe_identity.as_bytes(),
        &c.qe_identity_signature,
        qe_signer.public_key(),
        "QE identity",
    )?;
    Ok(())
}
