//! Where TDX collateral comes from, and the cache in front of it.
//!
//! Collateral (TCB info, QE identity, PCK CRL, root CA CRL, with their
//! issuer chains) is per platform family: keyed by FMSPC and by which Intel
//! CA issued the PCK leaf. It is valid for about 30 days (`nextUpdate`), so a
//! KMS fetches it rarely and caches it ([`CachedCollateral`]).

mod cache;
mod offline;
mod pcs;
mod verify;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use attest_core::{AttestError, CollateralMissing, Malformed, UnixTime};
pub use dcap_qvl::QuoteCollateralV3;
pub use dcap_qvl::config::PckCa;
use der::Decode;

pub use cache::CachedCollateral;
pub use offline::OfflineCollateral;
pub use pcs::{PcsClient, PcsConfig, UpdatePolicy, pcs_default_url};

/// Identifies one collateral set.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CollateralKey {
    /// The platform family (from the PCK certificate).
    pub fmspc: [u8; 6],
    /// The CA that issued the PCK leaf.
    pub ca: PckCa,
}

impl CollateralKey {
    /// FMSPC as Intel's APIs write it: 12 uppercase hex digits.
    pub fn fmspc_hex(&self) -> String {
        hex::encode_upper(self.fmspc)
    }

    /// `platform` or `processor`.
    pub fn ca_str(&self) -> &'static str {
        self.ca.as_id_str()
    }

    /// The file stem used by the offline directory and the disk cache:
    /// `B0C06F000000-platform`.
    pub fn file_stem(&self) -> String {
        format!("{}-{}", self.fmspc_hex(), self.ca_str())
    }
}

impl fmt::Debug for CollateralKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file_stem())
    }
}

/// A collateral set with the dates the cache needs and its parsed TCB
/// levels.
#[derive(Clone, Debug)]
pub struct Collateral {
    /// The collateral as dcap-qvl consumes it.
    pub data: QuoteCollateralV3,
    /// Earliest `nextUpdate` of TCB info, QE identity and both CRLs: after
    /// this instant the set no longer verifies anything.
    pub next_update: u64,
    /// Latest `issueDate`/`thisUpdate` across the set.
    pub issued: u64,
    /// The lower `tcbEvaluationDataNumber` of TCB info and QE identity.
    pub tcb_eval_data_number: u32,
    /// SHA-256 over every part of the set: its identity (a replaced set
    /// has another).
    pub digest: [u8; 32],
    /// The TCB info, parsed (the levels date a platform's standing).
    pub tcb_info: Arc<dcap_qvl::TcbInfo>,
    /// The QE identity, parsed.
    pub qe_identity: Arc<dcap_qvl::QeIdentity>,
    /// The FMSPC the TCB info is for.
    pub fmspc: [u8; 6],
    /// The PCK CA whose CRL the set carries.
    pub pck_crl_ca: PckCa,
}

pub(crate) fn rfc3339(what: &str, s: &str) -> Result<u64, AttestError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| u64::try_from(t.unix_timestamp()).ok())
        .ok_or_else(|| {
            Malformed::Syntax {
                what: format!("collateral {what}"),
                detail: format!("bad date {s:?}"),
            }
            .into()
        })
}

fn crl_dates(what: &str, der_bytes: &[u8]) -> Result<(u64, u64), AttestError> {
    let crl =
        x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(der_bytes)
            .map_err(|e| Malformed::Syntax {
                what: format!("collateral {what}"),
                detail: e.to_string(),
            })?;
    let this = crl.tbs_cert_list.this_update.to_unix_duration().as_secs();
    let next = crl
        .tbs_cert_list
        .next_update
        .ok_or_else(|| Malformed::Missing {
            what: "nextUpdate",
            detail: format!("collateral {what} has no nextUpdate"),
        })?
        .to_unix_duration()
        .as_secs();
    Ok((this, next))
}

impl Collateral {
    /// Wraps collateral, reading its validity dates.
    pub fn new(data: QuoteCollateralV3) -> Result<Self, AttestError> {
        let tcb: dcap_qvl::TcbInfo =
            serde_json::from_str(&data.tcb_info).map_err(|e| Malformed::Syntax {
                what: "collateral tcb_info".into(),
                detail: e.to_string(),
            })?;
        let qe: dcap_qvl::QeIdentity =
            serde_json::from_str(&data.qe_identity).map_err(|e| Malformed::Syntax {
                what: "collateral qe_identity".into(),
                detail: e.to_string(),
            })?;
        let (root_this, root_next) = crl_dates("root_ca_crl", &data.root_ca_crl)?;
        let (pck_this, pck_next) = crl_dates("pck_crl", &data.pck_crl)?;
        let next_update = [
            rfc3339("tcb_info nextUpdate", &tcb.next_update)?,
            rfc3339("qe_identity nextUpdate", &qe.next_update)?,
            root_next,
            pck_next,
        ]
        .into_iter()
        .min()
        .unwrap_or(0);
        let issued = [
            rfc3339("tcb_info issueDate", &tcb.issue_date)?,
            rfc3339("qe_identity issueDate", &qe.issue_date)?,
            root_this,
            pck_this,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        for l in &tcb.tcb_levels {
            rfc3339("tcbDate", &l.tcb_date)?;
        }
        let mut fmspc = [0u8; 6];
        hex::decode_to_slice(&tcb.fmspc, &mut fmspc).map_err(|_| Malformed::BadValue {
            what: "collateral tcb_info fmspc".into(),
            expected: "12 hex digits".into(),
            found: format!("{:?}", tcb.fmspc),
        })?;
        let crl_chain =
            crate::pki::pem_chain(data.pck_crl_issuer_chain.as_bytes(), "PCK CRL issuer chain")?;
        let pck_crl_ca = crate::pki::Cert::parse(&crl_chain[0], "PCK CRL issuer")?
            .pck_ca_kind("the PCK CRL issuer")?;
        Ok(Collateral {
            fmspc,
            pck_crl_ca,
            digest: set_digest(&data),
            tcb_eval_data_number: tcb
                .tcb_evaluation_data_number
                .min(qe.tcb_evaluation_data_number),
            data,
            next_update,
            issued,
            tcb_info: Arc::new(tcb),
            qe_identity: Arc::new(qe),
        })
    }

    /// Checks every signature of the set to the pinned root `root_der` and
    /// that `now` is inside its window: what the cache requires before it
    /// keeps a set.
    pub fn verify(&self, root_der: &[u8], now: UnixTime) -> Result<(), AttestError> {
        let root = crate::pki::Cert::parse(root_der, "pinned Intel root")?;
        self.verify_with(&root, now)
    }

    pub(crate) fn verify_with(
        &self,
        root: &crate::pki::Cert,
        now: UnixTime,
    ) -> Result<(), AttestError> {
        verify::verify_collateral(
            &self.data,
            root,
            (self.issued, self.next_update),
            now.as_secs(),
        )
    }

    /// Checks that this is the set for `key`: TDX TCB info (id `TDX`,
    /// version 3 or later) for the key's FMSPC, the TDX QE identity
    /// (`TD_QE`), and the CRL of the CA that issued the PCK leaf. A genuine
    /// set of another platform or CA verifies to Intel's root like the
    /// right one, so signatures alone do not show this.
    pub fn check_for(&self, key: &CollateralKey) -> Result<(), AttestError> {
        let wrong = |m: String| {
            AttestError::from(CollateralMissing::WrongSet {
                detail: format!("collateral for {key:?}: {m}"),
            })
        };
        if self.tcb_info.id != "TDX" || self.tcb_info.version < 3 {
            return Err(wrong(format!(
                "TCB info is {:?} version {}, expected TDX version 3 or later",
                self.tcb_info.id, self.tcb_info.version
            )));
        }
        if self.fmspc != key.fmspc {
            return Err(wrong(format!(
                "TCB info is for FMSPC {}",
                hex::encode_upper(self.fmspc)
            )));
        }
        if self.qe_identity.id != "TD_QE" {
            return Err(wrong(format!(
                "QE identity is {:?}, expected TD_QE",
                self.qe_identity.id
            )));
        }
        if self.pck_crl_ca != key.ca {
            return Err(wrong(format!(
                "the PCK CRL is the {} CA's",
                self.pck_crl_ca.as_id_str()
            )));
        }
        Ok(())
    }

    /// Parses dcap-qvl's `QuoteCollateralV3` JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, AttestError> {
        let data: QuoteCollateralV3 =
            serde_json::from_slice(json).map_err(|e| Malformed::Syntax {
                what: "collateral JSON".into(),
                detail: e.to_string(),
            })?;
        Self::new(data)
    }

    /// Whether the set can verify at `now`: issued, and not expired (a CRL
    /// is expired at its `nextUpdate` instant, as webpki counts).
    pub fn valid_at(&self, now: UnixTime) -> bool {
        self.issued <= now.as_secs() && now.as_secs() < self.next_update
    }
}

fn set_digest(d: &QuoteCollateralV3) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [
        d.pck_crl_issuer_chain.as_bytes(),
        &d.root_ca_crl,
        &d.pck_crl,
        d.tcb_info_issuer_chain.as_bytes(),
        d.tcb_info.as_bytes(),
        &d.tcb_info_signature,
        d.qe_identity_issuer_chain.as_bytes(),
        d.qe_identity.as_bytes(),
        &d.qe_identity_signature,
        d.pck_certificate_chain.as_deref().unwrap_or("").as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// A source of collateral.
#[async_trait]
pub trait CollateralSource: Send + Sync {
    /// A set already held for `key` that is valid at `now`, without
    /// waiting on anything: what verification uses, so a request that
    /// holds a verification permit never waits for another request's
    /// network refresh. Sources that hold nothing answer `None`.
    fn cached(&self, _key: &CollateralKey, _now: UnixTime) -> Option<Arc<Collateral>> {
        None
    }

    /// The collateral for `key`. `now` is the verification time, for caches
    /// that must decide whether what they hold is still usable.
    async fn fetch(
        &self,
        key: &CollateralKey,
        now: UnixTime,
    ) -> Result<Arc<Collateral>, AttestError>;
}

/// One collateral set for every key (the `kms verify --collateral FILE`
/// case, and tests). dcap-qvl still checks that its FMSPC matches the quote.
pub struct StaticCollateral(pub Arc<Collateral>);

#[async_trait]
impl CollateralSource for StaticCollateral {
    async fn fetch(
        &self,
        _key: &CollateralKey,
        _now: UnixTime,
    ) -> Result<Arc<Collateral>, AttestError> {
        Ok(self.0.clone())
    }
}
