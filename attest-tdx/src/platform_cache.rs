//! The verified-platform cache: what a full dcap-qvl verification of one
//! platform established, reused for that platform's next quotes.
//!
//! dcap-qvl checks about ten signatures per quote (TCB info, QE identity,
//! both CRLs, the PCK chain, the QE report, the quote), yet all but the last
//! are the same for every quote of a platform until its collateral changes.
//! dcap-qvl's verdict is a function of:
//! - the collateral set and the verification time;
//! - the quote header;
//! - everything after the signed part except the quote signature: the
//!   attestation key, the QE report, its signature, the QE authentication
//!   data and the PCK chain;
//! - the body fields its checks read: TEE_TCB_SVN (and TEE_TCB_SVN2),
//!   MRSEAM, MRSIGNERSEAM, SEAMATTRIBUTES, TDATTRIBUTES, XFAM and everything
//!   after REPORTDATA (TD 1.5 and 1.5-ex fields: MRSERVICETD, ...);
//! - the quote signature over header ‖ body.
//!
//! The key is a digest of all of these but the signature, plus the identity
//! of the collateral set. The fields a TD varies quote by quote (MRTD,
//! MRCONFIGID, MROWNER, MROWNERCONFIG, RTMR0..3, REPORTDATA) are not in it:
//! no dcap-qvl check reads them, they are only copied into the result. So
//! on a hit, inside the interval where every certificate, CRL and
//! collateral item of the entry is valid, the verdict is the cached one,
//! once the quote signature verifies with the (keyed) attestation key; the
//! cached claims get the new quote's body. Anything else (a miss, a time
//! outside the interval, a new collateral set) is a full verification,
//! which fills the cache. The differential test (`tests/platform_cache.rs`)
//! checks that both paths agree on real and testkit quotes, every byte
//! flip of them, and times around every validity edge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use attest_core::AttestError;
use dcap_qvl::QuoteClaims;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::collateral::{Collateral, CollateralKey};
use crate::quote::TdQuote;

/// Header bytes.
const HEADER_LEN: usize = 48;
/// The v5 body descriptor (type u16, size u32).
const V5_DESCRIPTOR_LEN: usize = 6;
/// Offsets in a TD body of the bytes no dcap-qvl check reads: MRTD,
/// MRCONFIGID, MROWNER, MROWNERCONFIG, RTMR0..3, REPORTDATA (TD 1.0 layout,
/// the prefix of every TD body).
const PAYLOAD: std::ops::Range<usize> = 136..584;
/// Quote signature (r ‖ s) and attestation key (x ‖ y), after the 4-byte
/// signature data length.
const SIG_LEN: usize = 64;
const KEY_LEN: usize = 64;

/// Most entries held (one per platform, QE and TD configuration); the
/// cache is emptied when full.
pub const MAX_ENTRIES: usize = 4096;

/// What the full verification established for one key.
struct Entry {
    claims: QuoteClaims,
    /// Every part is valid strictly inside this interval (Unix seconds).
    valid: (u64, u64),
}

/// The entries of one platform family (collateral key), all made with the
/// same collateral set: a new set drops them.
struct Group {
    collateral: [u8; 32],
    entries: HashMap<[u8; 32], Arc<Entry>>,
}

/// Verified platforms, by quote key.
#[derive(Default)]
pub(crate) struct PlatformCache {
    groups: Mutex<HashMap<CollateralKey, Group>>,
    /// Quotes answered from the cache (signature checked, no dcap-qvl run).
    hits: std::sync::atomic::AtomicU64,
}

/// Where a quote's parts lie.
pub(crate) struct Parts<'a> {
    /// Header ‖ (v5 descriptor) ‖ body: what the quote signature covers.
    signed: &'a [u8],
    /// The quote signature, r ‖ s.
    signature: &'a [u8],
    /// The attestation key, x ‖ y.
    attestation_key: &'a [u8],
    /// The key's digest.
    key: [u8; 32],
}

/// A quote [`TdQuote::parse`] accepted is never this short; kept as an
/// error rather than a panic all the same.
fn malformed(m: &str) -> AttestError {
    attest_core::Malformed::Other(format!("TDX quote: {m}")).into()
}

impl<'a> Parts<'a> {
    /// Splits a quote [`TdQuote::parse`] accepted and computes its key.
    pub(crate) fn of(
        raw: &'a [u8],
        quote: &TdQuote,
        collateral: &Collateral,
    ) -> Result<Self, AttestError> {
        let signed_len = quote.quote.signed_length();
        let body_start = if quote.version == 5 {
            HEADER_LEN + V5_DESCRIPTOR_LEN
        } else {
            HEADER_LEN
        };
        let signed = raw.get(..signed_len).ok_or_else(|| malformed("short"))?;
        let body = signed
            .get(body_start..)
            .ok_or_else(|| malformed("short body"))?;
        let checked_body = (
            body.get(..PAYLOAD.start)
                .ok_or_else(|| malformed("short body"))?,
            body.get(PAYLOAD.end..)
                .ok_or_else(|| malformed("short body"))?,
        );
        let sig_data = raw
            .get(signed_len + 4..)
            .ok_or_else(|| malformed("no signature data"))?;
        let signature = sig_data
            .get(..SIG_LEN)
            .ok_or_else(|| malformed("short signature"))?;
        let after_signature = &sig_data[SIG_LEN..];
        let attestation_key = after_signature
            .get(..KEY_LEN)
            .ok_or_else(|| malformed("short attestation key"))?;

        let mut h = Sha256::new();
        let mut part = |p: &[u8]| {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        };
        part(&signed[..body_start]); // header and v5 descriptor
        part(checked_body.0);
        part(checked_body.1);
        part(&raw[signed_len..signed_len + 4]); // signature data length
        part(after_signature); // key, QE report and signature, QE auth data, PCK chain, padding
        part(&collateral.digest);
        Ok(Parts {
            signed,
            signature,
            attestation_key,
            key: h.finalize().into(),
        })
    }

    /// Checks the quote signature with the attestation key.
    fn check_signature(&self) -> Result<(), AttestError> {
        let mut point = [0x04u8; 1 + KEY_LEN];
        point[1..].copy_from_slice(self.attestation_key);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(self.signed, self.signature)
            .map_err(|_| crate::errors::quote_signature_invalid())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PlatformCache {
    /// The verdict for a quote whose key is held and valid at `now`: the
    /// cached claims with this quote's body, once its signature verifies.
    /// `None` on a miss (the caller verifies in full).
    pub(crate) fn lookup(
        &self,
        ckey: &CollateralKey,
        collateral: &Collateral,
        parts: &Parts<'_>,
        quote: &TdQuote,
        now: u64,
    ) -> Option<Result<QuoteClaims, AttestError>> {
        let entry = {
            let groups = lock(&self.groups);
            let group = groups.get(ckey)?;
            if group.collateral != collateral.digest {
                return None;
            }
            group.entries.get(&parts.key)?.clone()
        };
        if !(entry.valid.0 < now && now < entry.valid.1) {
            return None;
        }
        if let Err(e) = parts.check_signature() {
            return Some(Err(e));
        }
        let mut claims = entry.claims.clone();
        claims.report = quote.quote.report.clone();
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(Ok(claims))
    }

    /// Quotes answered from the cache so far.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remembers what a full verification of `parts`' quote established.
    pub(crate) fn insert(
        &self,
        ckey: CollateralKey,
        collateral: &Collateral,
        parts: &Parts<'_>,
        claims: &QuoteClaims,
    ) {
        let valid = (claims.latest_issue_date, claims.earliest_expiration_date);
        let mut groups = lock(&self.groups);
        let total: usize = groups.values().map(|g| g.entries.len()).sum();
        if total >= MAX_ENTRIES {
            groups.clear();
        }
        let group = groups.entry(ckey).or_insert_with(|| Group {
            collateral: collateral.digest,
            entries: HashMap::new(),
        });
        if group.collateral != collateral.digest {
            // A new collateral set: what the old one established is gone.
            group.collateral = collateral.digest;
            group.entries.clear();
        }
        group.entries.insert(
            parts.key,
            Arc::new(Entry {
                claims: claims.clone(),
                valid,
            }),
        );
    }

    /// Entries held (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        lock(&self.groups).values().map(|g| g.entries.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key, written out from its definition for the real v4 and v5
    /// quotes: the header (and the v5 descriptor, 6 bytes after the
    /// 48-byte header), the body without the TD's own 136..584, the
    /// signature data length, everything after the signature, the
    /// collateral digest, each length-framed.
    #[test]
    fn the_key_covers_the_header_and_the_body_around_the_payload() {
        for (name, body_start) in [("tdx_quote", 48usize), ("tdx_quote_td15ex", 54)] {
            let raw = attest_testkit::vectors::read(&format!("tdx/dcap-qvl/{name}"));
            let collateral = Collateral::from_json(&attest_testkit::vectors::read(&format!(
                "tdx/dcap-qvl/{name}_collateral.json"
            )))
            .unwrap();
            let quote = TdQuote::parse(&raw).unwrap();
            let parts = Parts::of(&raw, &quote, &collateral).unwrap();
            let signed_len = quote.quote.signed_length();
            let body = &raw[body_start..signed_len];
            let mut h = Sha256::new();
            for p in [
                &raw[..body_start],
                &body[..136],
                &body[584..],
                &raw[signed_len..signed_len + 4],
                &raw[signed_len + 4 + 64..],
                &collateral.digest[..],
            ] {
                h.update((p.len() as u64).to_le_bytes());
                h.update(p);
            }
            let want: [u8; 32] = h.finalize().into();
            assert_eq!(parts.key, want, "{name}");
            assert_eq!(parts.signed, &raw[..signed_len], "{name}");
        }
    }
}
