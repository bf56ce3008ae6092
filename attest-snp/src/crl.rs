//! AMD's certificate revocation lists.
//!
//! AMD KDS publishes, per product, a CRL signed by the ARK that lists
//! revoked ASKs (`/vcek/v1/{product}/crl`) and ASVKs (`/vlek/v1/{product}/crl`),
//! and may list endorsement keys too. A CRL is taken from a source (AMD
//! KDS, or an operator's offline directory), checked (issuer and
//! RSASSA-PSS/SHA-384 signature by the pinned ARK, over the exact received
//! bytes; its window at the time of use), kept in memory and on disk, and
//! refreshed a day before its `nextUpdate`. Fetching happens in
//! [`crate::SnpVerifier`]'s endorsement step (never under a verification
//! permit) and is bounded: one fetch per product and signer at a time, no
//! retry sooner than five minutes after a failure.
//!
//! Without a usable CRL the report still verifies, with
//! `revocation_checked: false` in its claims; a policy can require it.

use std::collections::HashMap;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use attest_core::fetch::SingleFlight;
use attest_core::{AttestError, BadSignature, Malformed, UnixTime, UntrustedChain};
use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA384, UnparsedPublicKey};
use der::Decode;
use x509_cert::crl::CertificateList;

use crate::Product;
use crate::certs::ProductRoots;
use crate::report::Signer;

/// DER of the OID id-RSASSA-PSS (1.2.840.113549.1.1.10).
const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
/// DER of the OID id-sha384 (2.16.840.1.101.3.4.2.2).
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
/// Largest CRL accepted.
pub const MAX_CRL: usize = 256 * 1024;
/// A CRL is refreshed this long before its `nextUpdate`.
const REFRESH_MARGIN: u64 = 86_400;
/// After a failed refresh, the next one waits this long.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(300);

/// Which CRL: the VCEK one (revokes ASKs) or the VLEK one (revokes ASVKs).
pub fn crl_name(product: Product, signer: Signer) -> String {
    let kind = match signer {
        Signer::Vcek => "vcek",
        Signer::Vlek => "vlek",
    };
    format!("{}-{kind}.crl", product.kds_name())
}

/// A CRL whose signature the pinned ARK verified.
#[derive(Debug)]
pub struct AmdCrl {
    revoked: HashSet<Vec<u8>>,
    /// thisUpdate (Unix seconds).
    pub this_update: u64,
    /// nextUpdate (Unix seconds).
    pub next_update: u64,
    der: Vec<u8>,
}

fn serial_key(bytes: &[u8]) -> Vec<u8> {
    // DER INTEGERs may carry a leading zero; compare by value.
    let mut b = bytes;
    while b.len() > 1 && b[0] == 0 {
        b = &b[1..];
    }
    b.to_vec()
}

impl AmdCrl {
    /// Parses `der` and checks it is the ARK's: issuer name and signature.
    pub fn verify(der_bytes: &[u8], roots: &ProductRoots) -> Result<Self, AttestError> {
        if der_bytes.len() > MAX_CRL {
            return Err(Malformed::TooLarge {
                what: "AMD CRL".into(),
                size: der_bytes.len(),
                max: MAX_CRL,
            }
            .into());
        }
        let signed = attest_core::der::split_signed(der_bytes)?;
        if signed.algorithm != RSASSA_PSS
            || !signed.parameters.windows(SHA384.len()).any(|w| w == SHA384)
        {
            return Err(UntrustedChain::BadCertificate {
                what: "the CRL".into(),
                detail: "not signed with RSASSA-PSS/SHA-384 (AMD's ARK uses nothing else)".into(),
            }
            .into());
        }
        let crl = CertificateList::<x509_cert::certificate::Rfc5280>::from_der(der_bytes).map_err(
            |e| Malformed::Syntax {
                what: "AMD CRL".into(),
                detail: e.to_string(),
            },
        )?;
        if crl.tbs_cert_list.issuer != *roots.ark_subject() {
            return Err(UntrustedChain::NotIssuedBy {
                detail: "the CRL is not issued by the pinned ARK".into(),
            }
            .into());
        }
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, roots.ark_public_key())
            .verify(signed.tbs, signed.signature)
            .map_err(|_| BadSignature::DoesNotVerify {
                signed: "the CRL".into(),
                signer: Some("ARK's".into()),
            })?;
        let this_update = crl.tbs_cert_list.this_update.to_unix_duration().as_secs();
        let next_update = crl
            .tbs_cert_list
            .next_update
            .ok_or_else(|| Malformed::Missing {
                what: "nextUpdate",
                detail: "AMD CRL has no nextUpdate".into(),
            })?
            .to_unix_duration()
            .as_secs();
        let revoked = crl
            .tbs_cert_list
            .revoked_certificates
            .iter()
            .flatten()
            .map(|r| serial_key(r.serial_number.as_bytes()))
            .collect();
        Ok(AmdCrl {
            revoked,
            this_update,
            next_update,
            der: der_bytes.to_vec(),
        })
    }

    /// Whether the certificate with this serial number is revoked.
    pub fn revokes(&self, serial: &[u8]) -> bool {
        self.revoked.contains(&serial_key(serial))
    }

    /// Whether the CRL can be used at `now`.
    pub fn valid_at(&self, now: UnixTime) -> bool {
        self.this_update <= now.as_secs() && now.as_secs() < self.next_update
    }
}

/// A source of AMD CRLs (DER).
#[async_trait]
pub trait CrlSource: Send + Sync {
    /// The CRL of `product` for `signer`'s chain; `None` when the source
    /// has none.
    async fn fetch_crl(
        &self,
        product: Product,
        signer: Signer,
    ) -> Result<Option<Vec<u8>>, AttestError>;

    /// Whether fetching waits on the network (such sources are asked only
    /// from the endorsement step, never during verification).
    fn is_network(&self) -> bool;
}

struct Entry {
    crl: Option<Arc<AmdCrl>>,
    /// When local sources (disk, offline directory) were last read.
    tried_local: Option<Instant>,
    /// When network sources were last asked.
    tried_network: Option<Instant>,
}

/// The CRLs in use, by product and signer.
pub struct Crls {
    sources: Vec<Arc<dyn CrlSource>>,
    dir: Option<PathBuf>,
    held: Mutex<HashMap<(Product, Signer), Entry>>,
    flights: SingleFlight<(Product, Signer)>,
}

impl Default for Crls {
    fn default() -> Self {
        Crls::new(Vec::new(), None)
    }
}

impl Crls {
    /// CRLs from `sources` (in order), persisted in `dir`.
    pub fn new(sources: Vec<Arc<dyn CrlSource>>, dir: Option<PathBuf>) -> Self {
        Crls {
            sources,
            dir,
            held: Mutex::new(HashMap::new()),
            flights: SingleFlight::default(),
        }
    }

    /// The CRL to use at `now`, if one is held and valid.
    pub fn current(&self, product: Product, signer: Signer, now: UnixTime) -> Option<Arc<AmdCrl>> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&(product, signer))
            .and_then(|e| e.crl.clone())
            .filter(|c| c.valid_at(now))
    }

    fn fresh(&self, product: Product, signer: Signer, now: UnixTime) -> bool {
        self.current(product, signer, now)
            .is_some_and(|c| now.as_secs().saturating_add(REFRESH_MARGIN) < c.next_update)
    }

    fn recently_tried(&self, product: Product, signer: Signer, network: bool) -> bool {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&(product, signer))
            .and_then(|e| {
                if network {
                    e.tried_network
                } else {
                    e.tried_local
                }
            })
            .is_some_and(|t| t.elapsed() < RETRY_AFTER_FAILURE)
    }

    fn keep(&self, product: Product, signer: Signer, crl: Option<Arc<AmdCrl>>, network: bool) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let e = held.entry((product, signer)).or_insert(Entry {
            crl: None,
            tried_local: None,
            tried_network: None,
        });
        let now = Some(Instant::now());
        e.tried_local = now;
        if network {
            e.tried_network = now;
        }
        if let Some(new) = crl {
            // Never replace a CRL with an older one.
            if e.crl
                .as_ref()
                .is_none_or(|old| new.this_update >= old.this_update)
            {
                e.crl = Some(new);
            }
        }
    }

    fn persist(&self, product: Product, signer: Signer, crl: &AmdCrl) {
        let Some(dir) = &self.dir else { return };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let name = crl_name(product, signer);
            let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, &crl.der)?;
            std::fs::rename(&tmp, dir.join(name))
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot persist the AMD CRL");
        }
    }

    fn load(&self, product: Product, signer: Signer, roots: &ProductRoots) -> Option<AmdCrl> {
        let path = self.dir.as_ref()?.join(crl_name(product, signer));
        let bytes = std::fs::read(&path).ok()?;
        match AmdCrl::verify(&bytes, roots) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a stored AMD CRL that does not verify");
                None
            }
        }
    }

    /// Makes sure a fresh CRL is held for `product` and `signer` if any
    /// source has one. `network` allows asking network sources (the
    /// endorsement step); verification passes `false`.
    pub async fn refresh(
        &self,
        roots: &ProductRoots,
        product: Product,
        signer: Signer,
        now: UnixTime,
        network: bool,
    ) {
        if self.fresh(product, signer, now) || self.recently_tried(product, signer, network) {
            return;
        }
        // Verification (no network) never waits for another request's
        // network refresh: if one runs, it goes on with what is held.
        let _flight = if network {
            self.flights.enter(&(product, signer)).await
        } else {
            match self.flights.try_enter(&(product, signer)) {
                Some(f) => f,
                None => return,
            }
        };
        if self.fresh(product, signer, now) || self.recently_tried(product, signer, network) {
            return;
        }
        let mut best = self.load(product, signer, roots).map(Arc::new);
        let good = |c: &Option<Arc<AmdCrl>>| {
            c.as_ref()
                .is_some_and(|c| c.valid_at(now) && now.as_secs() + REFRESH_MARGIN < c.next_update)
        };
        if !good(&best) {
            for s in &self.sources {
                if s.is_network() && !network {
                    continue;
                }
                match s.fetch_crl(product, signer).await {
                    Ok(Some(der)) => match AmdCrl::verify(&der, roots) {
                        Ok(c) if c.valid_at(now) => {
                            self.persist(product, signer, &c);
                            best = Some(Arc::new(c));
                            break;
                        }
                        Ok(_) => tracing::warn!(
                            product = ?product,
                            "an AMD CRL source served a CRL outside its window"
                        ),
                        Err(e) => tracing::warn!(
                            product = ?product,
                            error = %e,
                            "an AMD CRL source served a CRL that does not verify"
                        ),
                    },
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(product = ?product, error = %e, "AMD CRL fetch failed")
                    }
                }
            }
        }
        self.keep(product, signer, best, network);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_by_value() {
        assert_eq!(serial_key(&[0, 0x80]), vec![0x80]);
        assert_eq!(serial_key(&[0]), vec![0]);
        assert_eq!(crl_name(Product::Genoa, Signer::Vlek), "Genoa-vlek.crl");
    }

    fn crl(this_update: u64, revoked: &[u8]) -> Arc<AmdCrl> {
        Arc::new(AmdCrl {
            revoked: HashSet::from([revoked.to_vec()]),
            this_update,
            next_update: this_update + 30 * 86_400,
            der: vec![],
        })
    }

    /// A CRL is never replaced by an older one (a source serving an old
    /// CRL cannot un-revoke a key); a newer or equally new one replaces it.
    #[test]
    fn a_held_crl_is_never_replaced_by_an_older_one() {
        let crls = Crls::new(vec![], None);
        let (p, s) = (Product::Genoa, Signer::Vcek);
        let at = |t: u64| UnixTime(t + 1);
        crls.keep(p, s, Some(crl(2_000, b"\x02")), true);
        crls.keep(p, s, Some(crl(1_000, b"\x01")), true);
        let held = crls.current(p, s, at(2_000)).unwrap();
        assert_eq!(held.this_update, 2_000);
        assert!(held.revokes(b"\x02"));
        crls.keep(p, s, Some(crl(2_000, b"\x03")), true);
        assert!(crls.current(p, s, at(2_000)).unwrap().revokes(b"\x03"));
        crls.keep(p, s, Some(crl(3_000, b"\x04")), false);
        assert_eq!(crls.current(p, s, at(3_000)).unwrap().this_update, 3_000);
        // A failed fetch keeps what is held.
        crls.keep(p, s, None, true);
        assert_eq!(crls.current(p, s, at(3_000)).unwrap().this_update, 3_000);
        // Other products and signers are held apart.
        assert!(
            crls.current(Product::Genoa, Signer::Vlek, at(3_000))
                .is_none()
        );
        assert!(
            crls.current(Product::Milan, Signer::Vcek, at(3_000))
                .is_none()
        );
    }

    /// After a try, the same sources are not asked again for five minutes
    /// (a failing KDS is not hammered by every request); network and local
    /// tries are remembered apart.
    #[test]
    fn sources_are_retried_only_after_the_retry_interval() {
        let crls = Crls::new(vec![], None);
        let (p, s) = (Product::Milan, Signer::Vcek);
        assert!(!crls.recently_tried(p, s, true));
        assert!(!crls.recently_tried(p, s, false));
        crls.keep(p, s, None, false);
        assert!(crls.recently_tried(p, s, false));
        assert!(!crls.recently_tried(p, s, true));
        crls.keep(p, s, None, true);
        assert!(crls.recently_tried(p, s, true));
        // Five minutes and a second later, both may be tried again.
        {
            let mut held = crls.held.lock().unwrap();
            let e = held.get_mut(&(p, s)).unwrap();
            let long_ago = Instant::now().checked_sub(RETRY_AFTER_FAILURE + Duration::from_secs(1));
            e.tried_network = long_ago;
            e.tried_local = long_ago;
        }
        if Instant::now().checked_sub(RETRY_AFTER_FAILURE).is_some() {
            assert!(!crls.recently_tried(p, s, true));
            assert!(!crls.recently_tried(p, s, false));
        }
    }
}
