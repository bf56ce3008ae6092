//! Where TDX collateral comes from, and the cache in front of it.
//!
//! Collateral (TCB info, QE identity, PCK CRL, root CA CRL, with their
//! issuer chains) is per platform family: keyed by FMSPC and by which Intel
//! CA issued the PCK leaf. It is valid for about 30 days (`nextUpdate`), so a
//! KMS fetches it rarely and caches it ([`CachedCollateral`]).

mod cache;
mod offline;
mod pcs;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use attest_core::{AttestError, UnixTime};
pub use dcap_qvl::QuoteCollateralV3;
pub use dcap_qvl::config::PckCa;
use der::Decode;
use serde::Deserialize;

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

/// A collateral set with the dates the cache needs.
#[derive(Clone, Debug)]
pub struct Collateral {
    /// The collateral as dcap-qvl consumes it.
    pub data: QuoteCollateralV3,
    /// Earliest `nextUpdate` of TCB info, QE identity and both CRLs: after
    /// this instant the set no longer verifies anything.
    pub next_update: u64,
    /// Latest `issueDate`/`thisUpdate` across the set.
    pub issued: u64,
    /// The newest `tcbDate` among the TCB info's levels: the TCB recovery
    /// the verdict is made against (for an OutOfDate platform, the one that
    /// made it so).
    pub latest_tcb_date: Option<u64>,
    /// The lower `tcbEvaluationDataNumber` of TCB info and QE identity.
    pub tcb_eval_data_number: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Dated {
    issue_date: String,
    next_update: String,
    #[serde(default)]
    tcb_levels: Vec<LevelDate>,
    #[serde(default)]
    tcb_evaluation_data_number: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LevelDate {
    tcb_date: String,
}

fn rfc3339(what: &str, s: &str) -> Result<u64, AttestError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| u64::try_from(t.unix_timestamp()).ok())
        .ok_or_else(|| AttestError::Malformed(format!("collateral {what}: bad date {s:?}")))
}

fn crl_dates(what: &str, der_bytes: &[u8]) -> Result<(u64, u64), AttestError> {
    let crl =
        x509_cert::crl::CertificateList::<x509_cert::certificate::Rfc5280>::from_der(der_bytes)
            .map_err(|e| AttestError::Malformed(format!("collateral {what}: {e}")))?;
    let this = crl.tbs_cert_list.this_update.to_unix_duration().as_secs();
    let next = crl
        .tbs_cert_list
        .next_update
        .ok_or_else(|| AttestError::Malformed(format!("collateral {what} has no nextUpdate")))?
        .to_unix_duration()
        .as_secs();
    Ok((this, next))
}

impl Collateral {
    /// Wraps collateral, reading its validity dates.
    pub fn new(data: QuoteCollateralV3) -> Result<Self, AttestError> {
        let tcb: Dated = serde_json::from_str(&data.tcb_info)
            .map_err(|e| AttestError::Malformed(format!("collateral tcb_info: {e}")))?;
        let qe: Dated = serde_json::from_str(&data.qe_identity)
            .map_err(|e| AttestError::Malformed(format!("collateral qe_identity: {e}")))?;
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
        let latest_tcb_date = tcb
            .tcb_levels
            .iter()
            .filter_map(|l| rfc3339("tcbDate", &l.tcb_date).ok())
            .max();
        Ok(Collateral {
            data,
            next_update,
            issued,
            latest_tcb_date,
            tcb_eval_data_number: tcb
                .tcb_evaluation_data_number
                .min(qe.tcb_evaluation_data_number),
        })
    }

    /// Parses dcap-qvl's `QuoteCollateralV3` JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, AttestError> {
        let data: QuoteCollateralV3 = serde_json::from_slice(json)
            .map_err(|e| AttestError::Malformed(format!("collateral JSON: {e}")))?;
        Self::new(data)
    }

    /// Whether the set can still verify at `now` (a CRL is expired at its
    /// `nextUpdate` instant, as webpki counts).
    pub fn valid_at(&self, now: UnixTime) -> bool {
        now.as_secs() < self.next_update
    }
}

/// A source of collateral.
#[async_trait]
pub trait CollateralSource: Send + Sync {
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
