//! Intel PCS / PCCS client (the v4 TDX collateral API).
//!
//! Four requests make one collateral set:
//! - `GET {base}/tdx/certification/v4/tcb?fmspc=..&update=..` → `{"tcbInfo":..,"signature":..}`,
//!   issuer chain in `TCB-Info-Issuer-Chain` (some PCCS: `SGX-TCB-Info-Issuer-Chain`);
//! - `GET {base}/tdx/certification/v4/qe/identity?update=..` → `{"enclaveIdentity":..,"signature":..}`,
//!   chain in `SGX-Enclave-Identity-Issuer-Chain`;
//! - `GET {base}/sgx/certification/v4/pckcrl?ca=platform|processor&encoding=der`,
//!   chain in `SGX-PCK-CRL-Issuer-Chain`;
//! - the root CA CRL: Intel's distribution point for PCS, or
//!   `{base}/sgx/certification/v4/rootcacrl` on a PCCS (hex text of the DER).
//!
//! The signed JSON objects are kept byte for byte (the signature covers the
//! exact text). Every request is bounded in time and size; any failure is
//! [`AttestError::Unavailable`] so the cache can fall back to what it holds.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use attest_core::{AttestError, CollateralMissing, Unavailable, UnixTime};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Collateral, CollateralKey, CollateralSource, QuoteCollateralV3};

/// Intel's PCS.
pub const INTEL_PCS: &str = "https://api.trustedservices.intel.com";

/// The default collateral service (Intel's PCS).
pub fn pcs_default_url() -> &'static str {
    INTEL_PCS
}
/// Intel's root CA CRL distribution point.
pub const INTEL_ROOT_CA_CRL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// Largest response body read.
pub const MAX_BODY: usize = 1024 * 1024;

/// Which TCB evaluation data set to ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdatePolicy {
    /// The set Intel currently enforces.
    #[default]
    Standard,
    /// The newest set, ahead of enforcement.
    Early,
}

impl UpdatePolicy {
    fn as_str(self) -> &'static str {
        match self {
            UpdatePolicy::Standard => "standard",
            UpdatePolicy::Early => "early",
        }
    }
}

/// Where and how to fetch.
#[derive(Clone, Debug)]
pub struct PcsConfig {
    /// `https://api.trustedservices.intel.com` or a PCCS base URL.
    pub base_url: String,
    /// `update=` parameter.
    pub update: UpdatePolicy,
    /// Root CA CRL URL; `None` picks Intel's for the PCS and the PCCS route otherwise.
    pub root_ca_crl_url: Option<String>,
    /// Bound on each request, connection included.
    pub timeout: Duration,
    /// Allow plain HTTP to a host that is not loopback (answers can then
    /// be rewritten on the path; collateral is still verified before use).
    pub insecure_http: bool,
}

impl PcsConfig {
    /// Defaults for a base URL: standard update, 10 s timeout.
    pub fn new(base_url: impl Into<String>) -> Self {
        PcsConfig {
            base_url: base_url.into(),
            update: UpdatePolicy::Standard,
            root_ca_crl_url: None,
            timeout: Duration::from_secs(10),
            insecure_http: false,
        }
    }
}

/// An HTTP collateral source.
pub struct PcsClient {
    base: String,
    update: UpdatePolicy,
    root_ca_crl_url: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedTcbInfo<'a> {
    #[serde(borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedQeIdentity<'a> {
    #[serde(borrow)]
    enclave_identity: &'a RawValue,
    signature: String,
}

struct Response {
    body: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

fn unavailable(url: &str, what: impl std::fmt::Display) -> AttestError {
    Unavailable::Source {
        source: url.to_owned(),
        detail: what.to_string(),
    }
    .into()
}

impl PcsClient {
    /// A client for `config`.
    pub fn new(config: PcsConfig) -> Result<Self, AttestError> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        attest_core::fetch::check_service_url(&base, config.insecure_http)?;
        let root_ca_crl_url = config.root_ca_crl_url.unwrap_or_else(|| {
            if base == INTEL_PCS {
                INTEL_ROOT_CA_CRL.to_owned()
            } else {
                format!("{base}/sgx/certification/v4/rootcacrl")
            }
        });
        attest_core::fetch::check_service_url(&root_ca_crl_url, config.insecure_http)?;
        // No redirects: the transport rule is checked on the configured URL
        // only, and a redirect could lead to plain HTTP or any address.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("confidential-kms/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Unavailable::Local {
                detail: format!("http client: {e}"),
            })?;
        Ok(PcsClient {
            base,
            update: config.update,
            root_ca_crl_url,
            http,
        })
    }

    async fn get(&self, url: &str) -> Result<Response, AttestError> {
        let mut resp = self.http.get(url).send().await.map_err(|e| {
            unavailable(
                url,
                if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    e.to_string()
                },
            )
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            unavailable(
                url,
                if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    e.to_string()
                },
            )
        })? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(unavailable(
                    url,
                    format!("response larger than {MAX_BODY} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(CollateralMissing::NotFound {
                detail: format!("{url}: HTTP 404"),
            }
            .into());
        }
        if !status.is_success() {
            return Err(unavailable(url, format!("HTTP {status}")));
        }
        Ok(Response { body, headers })
    }

    fn chain(url: &str, resp: &Response, names: &[&str]) -> Result<String, AttestError> {
        let value = names
            .iter()
            .find_map(|n| resp.headers.get(*n))
            .ok_or_else(|| unavailable(url, format!("missing {} header", names[0])))?;
        let text = value
            .to_str()
            .map_err(|_| unavailable(url, format!("{} header is not text", names[0])))?;
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| unavailable(url, format!("{} header is not UTF-8", names[0])))
    }

    /// DER, or hex text of DER as a PCCS serves it.
    fn der_or_hex(body: Vec<u8>) -> Vec<u8> {
        let trimmed = body.trim_ascii();
        if !trimmed.is_empty() && trimmed.iter().all(u8::is_ascii_hexdigit) {
            if let Ok(der) = hex::decode(trimmed) {
                return der;
            }
        }
        body
    }

    /// Fetches one collateral set.
    pub async fn fetch_collateral(
        &self,
        key: &CollateralKey,
    ) -> Result<QuoteCollateralV3, AttestError> {
        let tdx = format!("{}/tdx/certification/v4", self.base);
        let update = self.update.as_str();
        let tcb_url = format!("{tdx}/tcb?fmspc={}&update={update}", key.fmspc_hex());
        let qe_url = format!("{tdx}/qe/identity?update={update}");
        let crl_url = format!(
            "{}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
            self.base,
            key.ca_str()
        );
        let (tcb, qe, crl, root) = tokio::join!(
            self.get(&tcb_url),
            self.get(&qe_url),
            self.get(&crl_url),
            self.get(&self.root_ca_crl_url)
        );
        let (tcb, qe, crl, root) = (tcb?, qe?, crl?, root?);

        let bad =
            |url: &str, e: serde_json::Error| unavailable(url, format!("malformed body: {e}"));
        let signed: SignedTcbInfo =
            serde_json::from_slice(&tcb.body).map_err(|e| bad(&tcb_url, e))?;
        let tcb_info_signature = hex::decode(&signed.signature)
            .map_err(|_| unavailable(&tcb_url, "signature is not hex"))?;
        let signed_qe: SignedQeIdentity =
            serde_json::from_slice(&qe.body).map_err(|e| bad(&qe_url, e))?;
        let qe_identity_signature = hex::decode(&signed_qe.signature)
            .map_err(|_| unavailable(&qe_url, "signature is not hex"))?;
        Ok(QuoteCollateralV3 {
            pck_crl_issuer_chain: Self::chain(&crl_url, &crl, &["SGX-PCK-CRL-Issuer-Chain"])?,
            root_ca_crl: Self::der_or_hex(root.body),
            pck_crl: Self::der_or_hex(crl.body),
            tcb_info_issuer_chain: Self::chain(
                &tcb_url,
                &tcb,
                &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
            )?,
            tcb_info: signed.tcb_info.get().to_owned(),
            tcb_info_signature,
            qe_identity_issuer_chain: Self::chain(
                &qe_url,
                &qe,
                &["SGX-Enclave-Identity-Issuer-Chain"],
            )?,
            qe_identity: signed_qe.enclave_identity.get().to_owned(),
            qe_identity_signature,
            pck_certificate_chain: None,
        })
    }
}

#[async_trait]
impl CollateralSource for PcsClient {
    async fn fetch(
        &self,
        key: &CollateralKey,
        _now: UnixTime,
    ) -> Result<Arc<Collateral>, AttestError> {
        let data = self.fetch_collateral(key).await?;
        Collateral::new(data).map(Arc::new).map_err(|e| {
            unavailable(
                &self.base,
                format_args!("unusable collateral: {}", e.message()),
            )
        })
    }
}
