//! dstack's `kms` prpc messages (`dstack/kms/rpc/proto/kms_rpc.proto`,
//! `shared/reference/dstack-wire.md` §2.2), with dstack's protobuf field
//! numbers and its JSON form: proto field names, every field optional on
//! input (missing fields default, unknown ones are ignored), `bytes` as
//! lowercase hex (a `0x` prefix accepted on input), `uint64` as a number,
//! proto3 `optional` as `null` or the value.
//!
//! Messages that carry key material do not print it (`Debug` is redacted)
//! and are zeroized when dropped.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// `bytes` fields as lowercase hex in JSON.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Lowercase hex, no prefix.
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    /// Hex, either case, with or without `0x`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let h = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(&s);
        hex::decode(h).map_err(|_| serde::de::Error::custom("bytes must be hex"))
    }
}

/// A `uint32` given as a JSON number or, from a query string, as text.
mod lenient_u32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(*v)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText<'a> {
        Number(u32),
        Text(std::borrow::Cow<'a, str>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) => Ok(n),
            NumberOrText::Text(t) => t
                .parse()
                .map_err(|_| serde::de::Error::custom("expected an unsigned 32-bit integer")),
        }
    }
}

/// `google.protobuf.Empty`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Empty {}

/// `GetAppKeyRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct GetAppKeyRequest {
    /// 0 (v0.4.2, v0.5.0) or 1.
    #[prost(uint32, tag = "1")]
    #[serde(with = "lenient_u32")]
    pub api_version: u32,
    /// The guest's `vm_config` JSON (a hint only: never trusted).
    #[prost(string, tag = "2")]
    pub vm_config: String,
}

/// `AppKeyResponse`: the app's keys, in the clear inside the TLS channel.
/// Only ever encoded here (zeroized on drop, so not deserializable).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[prost(skip_debug)]
pub struct AppKeyResponse {
    /// The root CA certificate, PEM.
    #[prost(string, tag = "1")]
    pub ca_cert: String,
    /// 32 bytes; the guest's LUKS passphrase is its hex.
    #[prost(bytes = "vec", tag = "2")]
    #[serde(with = "hex_bytes")]
    pub disk_crypt_key: Vec<u8>,
    /// 32-byte X25519 secret.
    #[prost(bytes = "vec", tag = "3")]
    #[serde(with = "hex_bytes")]
    pub env_crypt_key: Vec<u8>,
    /// 32-byte secp256k1 scalar.
    #[prost(bytes = "vec", tag = "4")]
    #[serde(with = "hex_bytes")]
    pub k256_key: Vec<u8>,
    /// 65 bytes `r ‖ s ‖ v` by the root k256 key.
    #[prost(bytes = "vec", tag = "5")]
    #[serde(with = "hex_bytes")]
    pub k256_signature: Vec<u8>,
    /// A deprecated copy of `gateway_app_id` (v0.4.2's name).
    #[prost(string, tag = "6")]
    pub tproxy_app_id: String,
    /// `any`, the gateway's hex app id, or empty.
    #[prost(string, tag = "7")]
    pub gateway_app_id: String,
    /// 32 bytes from the image registry, or empty.
    #[prost(bytes = "vec", tag = "8")]
    #[serde(with = "hex_bytes")]
    pub os_image_hash: Vec<u8>,
}

impl std::fmt::Debug for AppKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKeyResponse")
            .field("gateway_app_id", &self.gateway_app_id)
            .field("os_image_hash", &hex::encode(&self.os_image_hash))
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl Drop for AppKeyResponse {
    fn drop(&mut self) {
        self.disk_crypt_key.zeroize();
        self.env_crypt_key.zeroize();
        self.k256_key.zeroize();
    }
}

/// `GetTempCaCertResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[prost(skip_debug)]
#[serde(default)]
pub struct GetTempCaCertResponse {
    /// The temp CA certificate, PEM.
    #[prost(string, tag = "1")]
    pub temp_ca_cert: String,
    /// The temp CA key, PKCS#8 PEM (public by design: guests sign their
    /// RA-TLS certificates with it; only the attestation authenticates).
    #[prost(string, tag = "2")]
    pub temp_ca_key: String,
    /// The root CA certificate, PEM: the guest's only trust anchor next.
    #[prost(string, tag = "3")]
    pub ca_cert: String,
}

impl std::fmt::Debug for GetTempCaCertResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GetTempCaCertResponse(..)")
    }
}

/// `SignCertRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SignCertRequest {
    /// 1 (CSR V1) or 2 (CSR V2).
    #[prost(uint32, tag = "1")]
    #[serde(with = "lenient_u32")]
    pub api_version: u32,
    /// The SCALE-encoded CSR.
    #[prost(bytes = "vec", tag = "2")]
    #[serde(with = "hex_bytes")]
    pub csr: Vec<u8>,
    /// ECDSA-P256-SHA256 (DER) over `csr` by the CSR's key.
    #[prost(bytes = "vec", tag = "3")]
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
    /// The guest's `vm_config` (a hint only).
    #[prost(string, tag = "4")]
    pub vm_config: String,
}

/// `SignCertResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SignCertResponse {
    /// `[leaf, app CA, root CA]`, PEM each.
    #[prost(string, repeated, tag = "1")]
    pub certificate_chain: Vec<String>,
}

/// `AppId`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct AppId {
    /// 20 bytes.
    #[prost(bytes = "vec", tag = "1")]
    #[serde(with = "hex_bytes")]
    pub app_id: Vec<u8>,
}

/// `PublicKeyResponse` (`GetAppEnvEncryptPubKey`): dstack's field numbers
/// (`timestamp = 3`, `signature_v1 = 4`), not `kms.v1`'s.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PublicKeyResponse {
    /// X25519 public key, 32 bytes.
    #[prost(bytes = "vec", tag = "1")]
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
    /// 65 bytes over `"dstack-env-encrypt-pubkey:" ‖ app_id ‖ public_key`.
    #[prost(bytes = "vec", tag = "2")]
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
    /// Unix seconds.
    #[prost(uint64, tag = "3")]
    pub timestamp: u64,
    /// 65 bytes over `... ‖ app_id ‖ u64be(timestamp) ‖ public_key`.
    #[prost(bytes = "vec", tag = "4")]
    #[serde(with = "hex_bytes")]
    pub signature_v1: Vec<u8>,
}

/// `BootstrapResponse` (inside `GetMetaResponse`).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct BootstrapResponse {
    /// Root CA SPKI.
    #[prost(bytes = "vec", tag = "1")]
    #[serde(with = "hex_bytes")]
    pub ca_pubkey: Vec<u8>,
    /// Root k256 public key, SEC1 compressed.
    #[prost(bytes = "vec", tag = "2")]
    #[serde(with = "hex_bytes")]
    pub k256_pubkey: Vec<u8>,
    /// The KMS's own attestation at bootstrap.
    #[prost(bytes = "vec", tag = "3")]
    #[serde(with = "hex_bytes")]
    pub attestation: Vec<u8>,
}

/// `GetMetaResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct GetMetaResponse {
    /// The root CA certificate, PEM.
    #[prost(string, tag = "1")]
    pub ca_cert: String,
    /// Whether any OS upgrade is allowed (never, here: the policy decides).
    #[prost(bool, tag = "2")]
    pub allow_any_upgrade: bool,
    /// Root k256 public key, SEC1 compressed (33 bytes).
    #[prost(bytes = "vec", tag = "3")]
    #[serde(with = "hex_bytes")]
    pub k256_pubkey: Vec<u8>,
    /// dstack's bootstrap record (none here: keys are not bootstrapped in
    /// a TEE by this service).
    #[prost(message, optional, tag = "4")]
    pub bootstrap_info: Option<BootstrapResponse>,
    /// Whether this is a development KMS.
    #[prost(bool, tag = "5")]
    pub is_dev: bool,
    /// The configured gateway app id.
    #[prost(string, optional, tag = "6")]
    pub gateway_app_id: Option<String>,
    /// dstack's on-chain KMS contract (none).
    #[prost(string, optional, tag = "7")]
    pub kms_contract_address: Option<String>,
    /// dstack's chain id (none).
    #[prost(uint64, optional, tag = "8")]
    pub chain_id: Option<u64>,
    /// dstack's app auth contract (none).
    #[prost(string, optional, tag = "9")]
    pub app_auth_implementation: Option<String>,
}

/// prpc's binary-mode error (`ProtoError`).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct ProtoError {
    /// The error text.
    #[prost(string, tag = "1")]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn json_is_dstack_shaped() {
        let r: SignCertRequest =
            serde_json::from_str(r#"{"api_version":2,"csr":"0xAB01","x":1}"#).unwrap();
        assert_eq!(
            (r.api_version, r.csr, r.signature),
            (2, vec![0xab, 1], vec![])
        );
        let r: GetAppKeyRequest = serde_json::from_str(r#"{"api_version":"1"}"#).unwrap();
        assert_eq!(r.api_version, 1);
        assert!(serde_json::from_str::<AppId>(r#"{"app_id":"zz"}"#).is_err());
        let k = PublicKeyResponse {
            public_key: vec![0xab],
            signature: vec![],
            timestamp: 7,
            signature_v1: vec![1],
        };
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            r#"{"public_key":"ab","signature":"","timestamp":7,"signature_v1":"01"}"#
        );
        let m = GetMetaResponse::default();
        let j = serde_json::to_value(&m).unwrap();
        assert!(j["gateway_app_id"].is_null() && j["bootstrap_info"].is_null());
    }

    #[test]
    fn protobuf_uses_dstacks_field_numbers() {
        let k = PublicKeyResponse {
            timestamp: 1,
            signature_v1: vec![9],
            ..Default::default()
        };
        // timestamp is field 3 (varint), signature_v1 field 4 (bytes).
        assert_eq!(k.encode_to_vec(), vec![0x18, 0x01, 0x22, 0x01, 0x09]);
        let mut r = AppKeyResponse::default();
        r.os_image_hash = vec![5];
        r.gateway_app_id = "any".into();
        assert_eq!(
            r.encode_to_vec(),
            vec![0x3a, 3, b'a', b'n', b'y', 0x42, 1, 5]
        );
        assert!(!format!("{r:?}").contains("k256"));
    }
}
