//! Asking a KMS for app keys.

use std::future::Future;

use attest_core::binding::app_key_report_data;
use attest_core::{AppId, Evidence, ReportData};
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use prost::Message;
use serde::Serialize;
use tonic::transport::Channel;
use zeroize::Zeroizing;

use crate::proto;
use crate::seal;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The KMS could not be reached.
    #[error("cannot reach the KMS: {0}")]
    Transport(String),
    /// The KMS refused (its gRPC status).
    #[error("the KMS refused: {code:?}: {message}")]
    Refused {
        /// gRPC status code.
        code: tonic::Code,
        /// The KMS's reason.
        message: String,
    },
    /// The answer is not from the pinned KMS, or not for this request.
    #[error("untrusted answer: {0}")]
    Untrusted(String),
    /// Evidence could not be produced.
    #[error("evidence: {0}")]
    Evidence(String),
}

/// The keys a KMS released. Secrets are zeroized on drop and redacted from `Debug`.
#[derive(Serialize)]
pub struct AppKeys {
    /// Disk encryption key (hex in JSON).
    #[serde(serialize_with = "hex_ser")]
    pub disk_crypt_key: Zeroizing<Vec<u8>>,
    /// Env decryption key (X25519 secret).
    #[serde(serialize_with = "hex_ser")]
    pub env_crypt_key: Zeroizing<Vec<u8>>,
    /// secp256k1 app key.
    #[serde(serialize_with = "hex_ser")]
    pub k256_key: Zeroizing<Vec<u8>>,
    /// The KMS root's signature over the k256 app key.
    #[serde(serialize_with = "hex_ser_plain")]
    pub k256_signature: Vec<u8>,
    /// The KMS root CA certificate (PEM).
    pub ca_cert: String,
    /// The OS image hash the KMS resolved, if any.
    #[serde(serialize_with = "hex_ser_plain")]
    pub os_image_hash: Vec<u8>,
    /// The app id the keys are for.
    #[serde(serialize_with = "hex_ser_plain")]
    pub app_id: Vec<u8>,
    /// The key provider id (hex SPKI of the KMS root CA).
    pub key_provider_id: String,
}

fn hex_ser<S: serde::Serializer>(v: &Zeroizing<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v.as_slice()))
}

fn hex_ser_plain<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

impl std::fmt::Debug for AppKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKeys")
            .field("app_id", &hex::encode(&self.app_id))
            .field("key_provider_id", &self.key_provider_id)
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// A connection to one KMS.
#[derive(Clone)]
pub struct KmsClient {
    inner: proto::kms_client::KmsClient<Channel>,
}

fn refused(s: tonic::Status) -> ClientError {
    ClientError::Refused {
        code: s.code(),
        message: s.message().to_owned(),
    }
}

impl KmsClient {
    /// Connects to `url` (`http://host:port`).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with_ca(url, None).await
    }

    /// Connects to `url`; for `https://` URLs the server certificate must
    /// chain to `ca_pem` (the KMS root CA certificate).
    /// A CA with a plain `http://` URL is an error: the caller asked for a
    /// verified TLS connection and would silently get plaintext.
    pub async fn connect_with_ca(url: &str, ca_pem: Option<&str>) -> Result<Self, ClientError> {
        let https = url
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"));
        if ca_pem.is_some() && !https {
            return Err(ClientError::Transport(format!(
                "a CA certificate was given but {url:?} is not an https:// URL: refusing to connect in plaintext"
            )));
        }
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if let Some(ca) = ca_pem {
            endpoint = endpoint
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                )
                .map_err(|e| ClientError::Transport(format!("TLS: {e}")))?;
        }
        let endpoint = endpoint
            .connect_timeout(std::time::Duration::from_secs(10))
            .tcp_nodelay(true)
            .timeout(std::time::Duration::from_secs(60));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ClientError::Transport(format!("{url}: {e}")))?;
        Ok(KmsClient {
            inner: proto::kms_client::KmsClient::new(channel)
                .max_decoding_message_size(4 * 1024 * 1024),
        })
    }

    /// The raw gRPC client.
    pub fn raw(&mut self) -> &mut proto::kms_client::KmsClient<Channel> {
        &mut self.inner
    }

    /// Who the KMS says it is.
    pub async fn meta(&mut self) -> Result<proto::GetMetaResponse, ClientError> {
        Ok(self
            .inner
            .get_meta(proto::GetMetaRequest {})
            .await
            .map_err(refused)?
            .into_inner())
    }

    /// Asks for app keys. `evidence_for` gets the report data the evidence
    /// must carry (the binding of a fresh X25519 key and the KMS's
    /// challenge) and returns the evidence. The answer must be signed by
    /// the KMS whose key provider id is `pinned_key_provider_id`.
    pub async fn get_app_key<F, Fut>(
        &mut self,
        pinned_key_provider_id: &str,
        evidence_for: F,
    ) -> Result<AppKeys, ClientError>
    where
        F: FnOnce(ReportData) -> Fut,
        Fut: Future<Output = Result<Evidence, ClientError>>,
    {
        let challenge = self
            .inner
            .get_challenge(proto::GetChallengeRequest {})
            .await
            .map_err(refused)?
            .into_inner()
            .challenge;
        let (secret, public) = seal::client_keypair();
        let secret = Zeroizing::new(secret);
        let report_data = app_key_report_data(&public, &challenge)
            .map_err(|e| ClientError::Evidence(e.to_string()))?;
        let evidence = evidence_for(report_data).await?;
        let app_id = app_id_of(&evidence)?;
        let aad = seal::request_aad(&evidence, &public);
        let resp = self
            .inner
            .get_app_key(proto::GetAppKeyRequest {
                evidence: Some(proto::Evidence::from(&evidence)),
                client_public_key: public.to_vec(),
                challenge,
            })
            .await
            .map_err(refused)?
            .into_inner();
        let pinned = pinned_key_provider_id.trim().to_ascii_lowercase();
        if resp.key_provider_id.to_ascii_lowercase() != pinned {
            return Err(ClientError::Untrusted(format!(
                "the answer names key provider {}, not the pinned one",
                resp.key_provider_id
            )));
        }
        seal::verify_response(
            &pinned,
            &aad,
            &resp.encapsulated_key,
            &resp.sealed,
            &resp.signature,
        )
        .map_err(|e| ClientError::Untrusted(e.to_string()))?;
        let opened = open_with_app_id(&secret, &app_id, &aad, &resp)?;
        let keys = proto::AppKeys::decode(opened.as_slice())
            .map_err(|e| ClientError::Untrusted(format!("sealed keys: {e}")))?;
        Ok(AppKeys {
            disk_crypt_key: Zeroizing::new(keys.disk_crypt_key),
            env_crypt_key: Zeroizing::new(keys.env_crypt_key),
            k256_key: Zeroizing::new(keys.k256_key),
            k256_signature: keys.k256_signature,
            ca_cert: keys.ca_cert,
            os_image_hash: keys.os_image_hash,
            app_id: keys.app_id,
            key_provider_id: keys.key_provider_id,
        })
    }
}

/// The root keys a replica received (`GetRootKeys`). Secrets are zeroized
/// on drop and redacted from `Debug`.
pub struct RootKeySet {
    /// The root CA key, PKCS#8 DER.
    pub ca_key: Zeroizing<Vec<u8>>,
    /// The root CA certificate, PEM.
    pub ca_cert: String,
    /// The secp256k1 root key, 32 bytes.
    pub k256_key: Zeroizing<Vec<u8>>,
    /// The 32-byte root secret.
    pub root_secret: Zeroizing<Vec<u8>>,
    /// The key provider id the answer was checked against.
    pub key_provider_id: String,
}

impl std::fmt::Debug for RootKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootKeySet")
            .field("key_provider_id", &self.key_provider_id)
            .field("secrets", &"<redacted>")
            .finish()
    }
}

impl KmsClient {
    /// Asks a running KMS for its root keys, as a replica: `evidence_for`
    /// gets the report data (the `kms-root-keys/v1` binding of a fresh
    /// X25519 key and the KMS's challenge) and returns the replica's
    /// evidence. The answer must be signed by the KMS whose key provider id
    /// is `expected_key_provider_id`, and the sealed keys must be that
    /// KMS's: whoever answers in between cannot hand the replica other keys.
    pub async fn get_root_keys<F, Fut>(
        &mut self,
        expected_key_provider_id: &str,
        evidence_for: F,
    ) -> Result<RootKeySet, ClientError>
    where
        F: FnOnce(ReportData) -> Fut,
        Fut: Future<Output = Result<Evidence, ClientError>>,
    {
        let challenge = self
            .inner
            .get_challenge(proto::GetChallengeRequest {})
            .await
            .map_err(refused)?
            .into_inner()
            .challenge;
        let (secret, public) = seal::client_keypair();
        let secret = Zeroizing::new(secret);
        let report_data = attest_core::binding::root_keys_report_data(&public, &challenge)
            .map_err(|e| ClientError::Evidence(e.to_string()))?;
        let evidence = evidence_for(report_data).await?;
        let aad = seal::root_keys_request_aad(&evidence, &public);
        let resp = self
            .inner
            .get_root_keys(proto::GetRootKeysRequest {
                evidence: Some(proto::Evidence::from(&evidence)),
                client_public_key: public.to_vec(),
                challenge,
            })
            .await
            .map_err(refused)?
            .into_inner();
        let expected = expected_key_provider_id.trim().to_ascii_lowercase();
        if resp.key_provider_id.to_ascii_lowercase() != expected {
            return Err(ClientError::Untrusted(format!(
                "the answer names key provider {}, not the expected one",
                resp.key_provider_id
            )));
        }
        seal::verify_response(
            &expected,
            &aad,
            &resp.encapsulated_key,
            &resp.sealed,
            &resp.signature,
        )
        .map_err(|e| ClientError::Untrusted(e.to_string()))?;
        let opened = Zeroizing::new(
            seal::open_root_keys(&secret, &aad, &resp.encapsulated_key, &resp.sealed)
                .map_err(|e| ClientError::Untrusted(e.to_string()))?,
        );
        let set = proto::RootKeySet::decode(opened.as_slice())
            .map_err(|e| ClientError::Untrusted(format!("sealed root keys: {e}")))?;
        let set = RootKeySet {
            ca_key: Zeroizing::new(set.ca_key),
            ca_cert: set.ca_cert,
            k256_key: Zeroizing::new(set.k256_key),
            root_secret: Zeroizing::new(set.root_secret),
            key_provider_id: expected.clone(),
        };
        // The keys inside must be the signer's own: its CA key's public half
        // is the expected key provider id.
        let ca = p256::SecretKey::from_pkcs8_der(&set.ca_key)
            .map_err(|e| ClientError::Untrusted(format!("sealed root CA key: {e}")))?;
        let spki = ca
            .public_key()
            .to_public_key_der()
            .map_err(|e| ClientError::Untrusted(format!("sealed root CA key: {e}")))?;
        if hex::encode(spki.as_bytes()) != expected {
            return Err(ClientError::Untrusted(
                "the sealed root CA key is not the expected key provider's".into(),
            ));
        }
        Ok(set)
    }

    /// Asks the KMS for a signed attestation result (an EAR JWT) about the
    /// evidence `evidence_for` returns for the report data (the
    /// `kms-attest/v1` binding of a fresh key and the challenge: evidence
    /// made for a result never releases keys). The result is checked
    /// by whoever relies on it, with the key `GetMeta` publishes.
    pub async fn attest<F, Fut>(&mut self, evidence_for: F) -> Result<String, ClientError>
    where
        F: FnOnce(ReportData) -> Fut,
        Fut: Future<Output = Result<Evidence, ClientError>>,
    {
        let challenge = self
            .inner
            .get_challenge(proto::GetChallengeRequest {})
            .await
            .map_err(refused)?
            .into_inner()
            .challenge;
        let (_, public) = seal::client_keypair();
        let report_data = attest_core::binding::attest_report_data(&public, &challenge)
            .map_err(|e| ClientError::Evidence(e.to_string()))?;
        let evidence = evidence_for(report_data).await?;
        Ok(self
            .inner
            .attest(proto::AttestRequest {
                evidence: Some(proto::Evidence::from(&evidence)),
                client_public_key: public.to_vec(),
                challenge,
            })
            .await
            .map_err(refused)?
            .into_inner()
            .ear)
    }
}

/// The app id the evidence declares (the HPKE `info` of the answer binds
/// it): from the launch-bound app config document, or from the dstack
/// runtime events of a JSON event log.
pub fn app_id_of(evidence: &Evidence) -> Result<AppId, ClientError> {
    if !evidence.app_config.is_empty() {
        return attest_core::app_config::AppConfigV3::parse(&evidence.app_config)
            .map(|c| c.app_id)
            .map_err(|e| ClientError::Evidence(e.to_string()));
    }
    let events = attest_core::eventlog::parse_json_event_log(&evidence.event_log).map_err(|e| {
        ClientError::Evidence(format!(
            "no app config, and the event log is not dstack's JSON list: {e}"
        ))
    })?;
    let register = events
        .iter()
        .find(|e| e.as_runtime().is_some_and(|r| r.name == "app-id"))
        .map(|e| e.register)
        .ok_or_else(|| ClientError::Evidence("the evidence declares no app id".into()))?;
    // The guest reads what its own log claims; the KMS verifies it.
    let set = attest_core::eventlog::RegisterSet {
        count: register as usize + 1,
        app_register: register,
        prefix: "register",
    };
    attest_core::eventlog::claimed_app_info(&events, &set)
        .and_then(|i| i.app_identity())
        .map(|a| a.app_id)
        .map_err(|e| ClientError::Evidence(e.to_string()))
}

/// Opens a sealed answer for a known app id.
pub fn open_with_app_id(
    secret: &[u8; 32],
    app_id: &AppId,
    aad: &[u8; 32],
    resp: &proto::GetAppKeyResponse,
) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    seal::open(secret, app_id, aad, &resp.encapsulated_key, &resp.sealed)
        .map(Zeroizing::new)
        .map_err(|e| ClientError::Untrusted(e.to_string()))
}
