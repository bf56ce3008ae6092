//! The dstack-compatible front end: unmodified dstack guests boot against
//! this KMS (`shared/reference/dstack-wire.md`).
//!
//! dstack's prpc over HTTPS (HTTP/1.1, as its guests speak it, and h2):
//! `GetTempCaCert`, `GetAppKey` and `SignCert` for guests,
//! `GetAppEnvEncryptPubKey` and `GetMeta` for hosts and tools, in dstack's
//! message shapes ([`wire`]). A guest proves itself with an RA-TLS client
//! certificate whose attestation is bound to the certificate's key
//! (`SHA-512("ratls-cert:" ‖ SPKI)`), or, for `SignCert`, with a signed
//! certificate request whose attestation is bound to the requested key.
//! Either way the front end only decodes and binds ([`dstack_compat`]);
//! verification, the image registry, the policy, derivation, audit and
//! metrics are the key-release core's ([`super::release`]), the same
//! function `kms.v1` calls. Keys leave in the clear inside the TLS channel,
//! as dstack's guests expect: `kms.v1` (sealed, signed answers bound to a
//! fresh challenge) is the protocol for new guests.
//!
//! Files: [`wire`] (messages), [`prpc`] (routes, encodings, errors),
//! [`tls`] (rustls and the client-certificate rule), [`certs`] (temp CA,
//! server certificate, app CA and leaves), [`server`] (connections and
//! their limits).

pub mod certs;
pub mod prpc;
pub mod server;
pub mod tls;
pub mod wire;

use std::sync::Arc;

use attest_core::{AttestError, Insecure, Malformed, PlatformId, UnixTime};
use dstack_compat::{GuestAttestation, RaTlsCert, SignedCsr, ratls_report_data};
use tokio::sync::Semaphore;

use super::KmsState;
use super::audit::bounded;
use super::keys::KeyError;
use super::limits::Limits;
use super::release::{FrontEnd, Purpose, Refusal, Release, refuse_unverified, release_for};
use crate::config::DstackCompatConfig;
use certs::TempCa;
use wire::*;

/// Longest error message sent back.
const MAX_ERROR: usize = 2048;

/// What a handler knows about its connection.
#[derive(Clone, Debug, Default)]
pub struct Conn {
    /// The client certificate (DER) the TLS handshake proved possession
    /// of, if the client sent one.
    pub client_cert: Option<Arc<Vec<u8>>>,
}

/// The front end: the shared state plus what only dstack's protocol needs.
pub struct DstackFront {
    state: Arc<KmsState>,
    temp_ca: TempCa,
    /// Names this KMS answers to (its own certificates' names): SignCert
    /// never certifies them for an app.
    own_names: Vec<String>,
    gateway_app_id: String,
    limits: Limits,
    max_request_bytes: usize,
    /// Bytes of request bodies in flight, all connections together.
    budget: Arc<Semaphore>,
}

impl std::fmt::Debug for DstackFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DstackFront")
            .field("own_names", &self.own_names)
            .finish_non_exhaustive()
    }
}

/// An error answered to the client (HTTP 400): its text, already bounded,
/// never holding a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError(pub String);

impl RpcError {
    fn new(msg: impl AsRef<str>) -> Self {
        RpcError(bounded(msg.as_ref(), MAX_ERROR))
    }
}

/// The client's text for a refusal: which rules failed and what the guest
/// presented, never what the policy expects (the audit log keeps that).
pub fn refusal_message(r: &Refusal) -> String {
    match r {
        Refusal::Policy(reasons) => format!(
            "policy denied: {}",
            reasons
                .iter()
                .map(|r| format!("{}: found {}", r.rule, r.found))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => other.to_string(),
    }
}

impl From<Refusal> for RpcError {
    fn from(r: Refusal) -> Self {
        RpcError::new(refusal_message(&r))
    }
}

impl DstackFront {
    /// The front end over `state`: loads (or creates) the temp CA in
    /// `data_dir`. `own_names` are every name this KMS's certificates carry.
    pub fn new(
        state: Arc<KmsState>,
        config: &DstackCompatConfig,
        data_dir: &std::path::Path,
        own_names: Vec<String>,
        limits: Limits,
        max_request_bytes: usize,
    ) -> Result<Self, KeyError> {
        let temp_ca = TempCa::load_or_generate(data_dir)?;
        Ok(DstackFront {
            state,
            temp_ca,
            own_names: own_names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            gateway_app_id: config.gateway_app_id.clone(),
            budget: Arc::new(Semaphore::new(
                limits
                    .max_buffered_request_bytes
                    .min(Semaphore::MAX_PERMITS),
            )),
            limits,
            max_request_bytes,
        })
    }

    /// Binds `config.listen` and serves until `shutdown` resolves, with a
    /// server certificate issued now by the root CA for
    /// `config.server_names`. Returns the bound address and the serving
    /// task.
    pub async fn start(
        self: Arc<Self>,
        config: &DstackCompatConfig,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<
        (
            std::net::SocketAddr,
            tokio::task::JoinHandle<Result<(), String>>,
        ),
        String,
    > {
        let (cert, key) = certs::rpc_server_cert(&self.state.keys, &config.server_names)
            .map_err(|e| format!("dstack_compat: {e}"))?;
        let tls = tls::server_config(cert, &key)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("dstack_compat: cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let join = tokio::spawn(server::serve(listener, self, tls, shutdown));
        Ok((addr, join))
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<KmsState> {
        &self.state
    }

    /// The temp CA.
    pub fn temp_ca(&self) -> &TempCa {
        &self.temp_ca
    }

    /// A refusal before verification: audited (rate-limited) and counted.
    fn unverified(&self, purpose: Purpose, platform: &str, e: AttestError) -> RpcError {
        let r = refuse_unverified(&self.state, FrontEnd::DSTACK, purpose, platform, e);
        if self.state.refusal_log.allow() {
            tracing::info!(
                front_end = "dstack",
                request = purpose.as_str(),
                "refused: {}",
                bounded(&r.to_string(), 256)
            );
        }
        r.into()
    }

    /// Verifies, decides, derives: the one key-release function.
    async fn release(
        &self,
        purpose: Purpose,
        att: &GuestAttestation,
        spki_der: &[u8],
    ) -> Result<Release, RpcError> {
        let platform = att.platform();
        // The attestation's own report data must be the binding too (the
        // quote's is checked against it by the plug-in).
        let expected = ratls_report_data(spki_der);
        if let Err(e) = att.check_ratls_binding(spki_der) {
            return Err(self.unverified(purpose, platform.as_str(), e));
        }
        let evidence = att
            .to_evidence()
            .map_err(|e| self.unverified(purpose, platform.as_str(), e))?;
        release_for(&self.state, FrontEnd::DSTACK, purpose, &evidence, expected)
            .await
            .map_err(|r| {
                if self.state.refusal_log.allow() {
                    tracing::info!(
                        front_end = "dstack",
                        request = purpose.as_str(),
                        "refused: {}",
                        bounded(&r.to_string(), 256)
                    );
                }
                r.into()
            })
    }

    /// The gateway app id for a release: the policy's, else the setting.
    fn gateway_app_id(&self, release: &Release) -> String {
        release
            .decision
            .gateway_app_id
            .clone()
            .unwrap_or_else(|| self.gateway_app_id.clone())
    }

    /// `GetTempCaCert`: the temp CA (key included) and the root CA.
    pub fn get_temp_ca_cert(&self) -> GetTempCaCertResponse {
        GetTempCaCertResponse {
            temp_ca_cert: self.temp_ca.cert_pem().to_owned(),
            temp_ca_key: self.temp_ca.key_pem().to_owned(),
            ca_cert: self.state.keys.ca_cert_pem().to_owned(),
        }
    }

    /// `GetAppKey`: the attestation of the client certificate, bound to its
    /// key, through the key-release core; the keys in dstack's shape.
    pub async fn get_app_key(
        &self,
        conn: &Conn,
        req: GetAppKeyRequest,
    ) -> Result<AppKeyResponse, RpcError> {
        let purpose = Purpose::AppKeys;
        if req.api_version > 1 {
            return Err(self.unverified(
                purpose,
                "none",
                Malformed::Unsupported {
                    detail: format!(
                        "unsupported api_version {} (0 and 1 are supported)",
                        req.api_version
                    ),
                }
                .into(),
            ));
        }
        let Some(der) = &conn.client_cert else {
            return Err(self.unverified(
                purpose,
                "none",
                Malformed::Missing {
                    what: "client certificate",
                    detail: "no client certificate: GetAppKey needs an RA-TLS client certificate carrying the guest's attestation".into(),
                }
                .into(),
            ));
        };
        let cert = RaTlsCert::from_der(der).map_err(|e| self.unverified(purpose, "none", e))?;
        let att = match cert.attestation() {
            Ok(Some(a)) => a,
            Ok(None) => {
                return Err(self.unverified(
                    purpose,
                    "none",
                    Malformed::Missing {
                        what: "dstack attestation",
                        detail: "the client certificate carries no dstack attestation (extension 1.3.6.1.4.1.62397.1.8, or 1.1 and 1.2)".into(),
                    }
                    .into(),
                ));
            }
            Err(e) => {
                let platform = match &e {
                    AttestError::UnsupportedPlatform(p) => p.clone(),
                    _ => PlatformId::from_static("none"),
                };
                return Err(self.unverified(purpose, platform.as_str(), e));
            }
        };
        // Keys go to a booting guest only. A certificate this KMS issued to
        // an app (SignCert: `.1.3` app id, `.1.4` usage) is held by the
        // app's containers, not the guest OS; and a guest asks for its keys
        // right after `boot-mr-done`, before it measures `key-provider` or
        // `system-ready`, so an attestation past those was made after boot
        // (the replay proves the list complete: none can be left out).
        let ext = cert.extensions();
        if ext.app_id.is_some() || ext.special_usage.is_some() {
            return Err(self.unverified(
                purpose,
                att.platform().as_str(),
                AttestError::Insecure(Insecure::NotBooting {
                    detail: "the client certificate was issued to an app by SignCert (extensions 1.3/1.4): keys go only to a booting guest's own RA-TLS certificate".into(),
                }),
            ));
        }
        if let Some(late) = att
            .runtime_events()
            .iter()
            .find(|e| e.name == "key-provider" || e.name == attest_core::eventlog::SYSTEM_READY)
        {
            return Err(self.unverified(
                purpose,
                att.platform().as_str(),
                AttestError::Insecure(Insecure::NotBooting {
                    detail: format!(
                        "the attestation's runtime events include {:?}, which a guest measures only after it has its keys: keys go only to a booting guest",
                        late.name
                    ),
                }),
            ));
        }
        let release = self.release(purpose, &att, cert.spki_der()).await?;
        let gateway = self.gateway_app_id(&release);
        let k = &release.keys;
        let mut out = AppKeyResponse::default();
        out.ca_cert = self.state.keys.ca_cert_pem().to_owned();
        out.disk_crypt_key = k.disk_crypt_key.to_vec();
        out.env_crypt_key = k.env_crypt_key.to_vec();
        out.k256_key = k.k256_key.to_vec();
        out.k256_signature = k.k256_signature.clone();
        out.tproxy_app_id = gateway.clone();
        out.gateway_app_id = gateway;
        out.os_image_hash = release
            .identity
            .app
            .os_image_hash
            .map(|h| h.0.to_vec())
            .unwrap_or_default();
        Ok(out)
    }

    /// Whether `name` (a subject or SAN a CSR asks for) is, or as a
    /// wildcard covers, one of this KMS's own names.
    fn is_own_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        // IPs compare as addresses (`::ffff:127.0.0.1` is `127.0.0.1`).
        let as_ip = |s: &str| s.parse::<std::net::IpAddr>().ok().map(|i| i.to_canonical());
        let ip = as_ip(&name);
        self.own_names.iter().any(|own| {
            let own = own.trim_end_matches('.');
            let same_ip = ip.is_some() && as_ip(own) == ip;
            same_ip
                || own == name
                || name.strip_prefix("*.").is_some_and(|suffix| {
                    own.split_once('.').is_some_and(|(_, rest)| rest == suffix)
                })
        })
    }

    /// `SignCert`: a CSR (V1 or V2) signed by its own key, its attestation
    /// bound to that key, through the key-release core; a leaf under the
    /// app's CA. Returns `[leaf, app CA, root CA]`.
    pub async fn sign_cert(&self, req: SignCertRequest) -> Result<SignCertResponse, RpcError> {
        let purpose = Purpose::AppCertificate;
        let signed = SignedCsr::verify(req.api_version, &req.csr, &req.signature)
            .map_err(|e| self.unverified(purpose, "none", e))?;
        let csr = signed.csr();
        let platform = csr.attestation().platform();
        let config = csr.config();
        if let Some(n) = std::iter::once(&config.subject)
            .chain(&config.subject_alt_names)
            .find(|n| self.is_own_name(n))
        {
            return Err(self.unverified(
                purpose,
                platform.as_str(),
                Malformed::Unexpected {
                    what: "KMS name in the CSR",
                    detail: format!(
                        "the CSR asks for {n:?}, a name of this KMS, which apps are never certified for"
                    ),
                }
                .into(),
            ));
        }
        let release = self
            .release(purpose, csr.attestation(), csr.pubkey())
            .await?;
        let app_id = release.identity.app.app_id;
        let mut extra = Vec::new();
        if config.ext_quote {
            match csr.attestation() {
                GuestAttestation::Versioned(_) => {
                    if let Some(bytes) = csr.attestation_bytes() {
                        extra.push(certs::dstack_extension(certs::OID_ATTESTATION, bytes));
                    }
                }
                GuestAttestation::Legacy(l) => {
                    extra.push(certs::dstack_extension(certs::OID_TDX_QUOTE, l.quote()));
                    extra.push(certs::dstack_extension(certs::OID_EVENT_LOG, l.event_log()));
                }
            }
        }
        if config.ext_app_info {
            let info = app_info(&release);
            extra.push(certs::dstack_extension(
                certs::OID_APP_INFO,
                &info.to_msgpack(),
            ));
        }
        let keys = &self.state.keys;
        let (ca_key, ca_params, ca_pem) = certs::app_ca(keys, &app_id)
            .map_err(|e| RpcError::new(format!("internal error: {e}")))?;
        let leaf = certs::issue_leaf(
            &ca_key,
            &ca_params,
            certs::LeafRequest {
                spki_der: csr.pubkey(),
                config,
                app_id: &app_id,
                extra,
                now: UnixTime::now().as_secs(),
            },
        )
        .map_err(|m| RpcError::new(format!("cannot issue the certificate: {m}")))?;
        Ok(SignCertResponse {
            certificate_chain: vec![leaf, ca_pem, keys.ca_cert_pem().to_owned()],
        })
    }

    /// `GetAppEnvEncryptPubKey`: the app's env public key, signed by the
    /// root k256 key (unauthenticated, as in dstack).
    pub fn get_app_env_encrypt_pub_key(&self, req: AppId) -> Result<PublicKeyResponse, RpcError> {
        let app_id =
            attest_core::AppId::from_slice(&req.app_id).map_err(|e| RpcError::new(e.message()))?;
        let k = self
            .state
            .env_encrypt_pub_key(&app_id)
            .map_err(|e| RpcError::new(e.to_string()))?;
        Ok(PublicKeyResponse {
            public_key: k.public_key.to_vec(),
            signature: k.signature,
            timestamp: k.timestamp,
            signature_v1: k.signature_v1,
        })
    }

    /// `GetMeta`, in dstack's shape.
    pub fn get_meta(&self) -> GetMetaResponse {
        let keys = &self.state.keys;
        let k256 = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &keys.k256().public_key(),
            true,
        );
        GetMetaResponse {
            ca_cert: keys.ca_cert_pem().to_owned(),
            allow_any_upgrade: false,
            k256_pubkey: k256.as_bytes().to_vec(),
            bootstrap_info: None,
            is_dev: false,
            gateway_app_id: Some(self.gateway_app_id.clone()).filter(|g| !g.is_empty()),
            kms_contract_address: None,
            chain_id: None,
            app_auth_implementation: None,
        }
    }
}

/// The AppInfo a `SignCert` leaf carries (`.1.9`), from the release:
/// dstack's boot-time aggregates (as its SignCert computes them), no key
/// provider.
fn app_info(release: &Release) -> dstack_compat::AppInfo {
    let id = &release.identity;
    let claims: Option<attest_core::dstack::DstackClaims> = id
        .platform_claims
        .get(attest_core::dstack::SECTION)
        .and_then(Result::ok);
    let (mr_system, mr_aggregated) = claims
        .map(|c| match c.boot_time {
            Some(b) => (b.mr_system.0, b.mr_aggregated.0),
            None => (c.mr_system.0, c.mr_aggregated.0),
        })
        .unwrap_or_default();
    dstack_compat::AppInfo {
        app_id: id.app.app_id.0.to_vec(),
        compose_hash: id.app.compose_hash.0.to_vec(),
        instance_id: id.app.instance_id.map(|i| i.0.to_vec()).unwrap_or_default(),
        device_id: id.device_id.map(|d| d.0.to_vec()).unwrap_or_default(),
        mr_system,
        mr_aggregated,
        os_image_hash: id
            .app
            .os_image_hash
            .map(|h| h.0.to_vec())
            .unwrap_or_default(),
        key_provider_info: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_messages_name_the_rule_and_what_was_found_only() {
        let r = Refusal::Policy(vec![policy::Reason::new(
            "apps.compose_hashes",
            "one of [secret]",
            "abcd",
        )]);
        assert_eq!(
            refusal_message(&r),
            "policy denied: apps.compose_hashes: found abcd"
        );
    }
}
