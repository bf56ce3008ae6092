//! dstack app config v3: the document an SEV-SNP guest's HOST_DATA binds.
//!
//! SNP has no runtime-extendable register, so dstack fixes the app identity
//! at launch: the host sets `HOST_DATA = SHA-256("dstack-mr-config-v3:" ‖ 0x00 ‖ document)`
//! and hands the guest the document. The digest is taken over the bytes as
//! received (no re-serialization), so the verifier needs the exact bytes.
//!
//! ```json
//! {"version": 3, "app_id": "<hex20>", "compose_hash": "<hex32>",
//!  "instance_id": "<hex20>", "key_provider": "kms", "key_provider_id": "<hex>"}
//! ```
//!
//! `version`, `app_id`, `compose_hash` and `key_provider` are required;
//! `instance_id` and `key_provider_id` are optional, as are dstack's
//! `gpu_policy_hash` and `init_script_hashes` (parsed and checked, not part of
//! the identity). Any other field, a wrong type or a duplicate key rejects the
//! document.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{
    AppId, AppIdentity, AttestError, ComposeHash, HexBytes, InstanceId, KeyProvider, Malformed,
};

/// Domain prefix of the HOST_DATA digest (followed by one 0x00 byte).
pub const HOST_DATA_PREFIX: &[u8] = b"dstack-mr-config-v3:";
/// Largest document accepted.
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;

/// `SHA-256("dstack-mr-config-v3:" ‖ 0x00 ‖ document)`.
pub fn host_data(document: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(HOST_DATA_PREFIX);
    h.update([0u8]);
    h.update(document);
    h.finalize().into()
}

/// A parsed app config v3 document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppConfigV3 {
    /// The app id.
    pub app_id: AppId,
    /// SHA-256 of the app compose file.
    pub compose_hash: ComposeHash,
    /// The instance id, if the app has one.
    pub instance_id: Option<InstanceId>,
    /// The key provider kind (`kms`, `local-sgx`, `tpm`, `none`).
    pub key_provider: String,
    /// The key provider id (for `kms`: the root CA SPKI DER), may be empty.
    pub key_provider_id: HexBytes,
    /// dstack's GPU policy hash, when present.
    pub gpu_policy_hash: Option<[u8; 32]>,
    /// dstack's init script hashes, when present.
    pub init_script_hashes: Vec<[u8; 32]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawV3 {
    version: u32,
    app_id: String,
    compose_hash: String,
    #[serde(default)]
    instance_id: Option<String>,
    key_provider: String,
    #[serde(default)]
    key_provider_id: Option<String>,
    #[serde(default)]
    gpu_policy_hash: Option<String>,
    #[serde(default)]
    init_script_hashes: Option<Vec<String>>,
}

fn strip(s: &str) -> &str {
    s.strip_prefix("0x").unwrap_or(s)
}

fn hash32(what: &str, s: &str) -> Result<[u8; 32], AttestError> {
    ComposeHash::from_hex(strip(s))
        .map(|h| h.0)
        .map_err(|e| e.within(format!("app config {what}")))
}

impl AppConfigV3 {
    /// Parses and validates a document.
    pub fn parse(document: &[u8]) -> Result<Self, AttestError> {
        if document.len() > MAX_DOCUMENT_LEN {
            return Err(Malformed::TooLarge {
                what: "app config".into(),
                size: document.len(),
                max: MAX_DOCUMENT_LEN,
            }
            .into());
        }
        let raw: RawV3 = serde_json::from_slice(document).map_err(|e| Malformed::Syntax {
            what: "app config".into(),
            detail: e.to_string(),
        })?;
        if raw.version != 3 {
            return Err(Malformed::BadValue {
                what: "app config version".into(),
                expected: "3".into(),
                found: raw.version.to_string(),
            }
            .into());
        }
        let ctx = |what: &'static str| move |e: AttestError| e.within(format!("app config {what}"));
        if raw.key_provider.is_empty() || raw.key_provider.len() > 64 {
            return Err(Malformed::BadValue {
                what: "app config key_provider".into(),
                expected: "1..=64 bytes".into(),
                found: format!("{} bytes", raw.key_provider.len()),
            }
            .into());
        }
        Ok(AppConfigV3 {
            app_id: AppId::from_hex(strip(&raw.app_id)).map_err(ctx("app_id"))?,
            compose_hash: ComposeHash(hash32("compose_hash", &raw.compose_hash)?),
            instance_id: match raw.instance_id.as_deref() {
                None | Some("") => None,
                Some(s) => Some(InstanceId::from_hex(strip(s)).map_err(ctx("instance_id"))?),
            },
            key_provider: raw.key_provider,
            key_provider_id: match raw.key_provider_id.as_deref() {
                None => HexBytes::default(),
                Some(s) => HexBytes::from_hex(strip(s)).map_err(ctx("key_provider_id"))?,
            },
            gpu_policy_hash: raw
                .gpu_policy_hash
                .as_deref()
                .map(|s| hash32("gpu_policy_hash", s))
                .transpose()?,
            init_script_hashes: raw
                .init_script_hashes
                .unwrap_or_default()
                .iter()
                .map(|s| hash32("init_script_hashes", s))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The app identity this document declares. `os_image_hash` is left for
    /// the image registry to resolve from the launch measurement.
    pub fn app_identity(&self) -> AppIdentity {
        AppIdentity {
            app_id: self.app_id,
            compose_hash: self.compose_hash,
            instance_id: self.instance_id,
            key_provider: Some(KeyProvider {
                name: self.key_provider.clone(),
                id: self.key_provider_id.clone(),
            }),
            os_image_hash: None,
        }
    }
}

/// Checks that `document` is what `host_data` binds, then parses it.
/// A digest mismatch is [`AttestError::IdentityMismatch`] on `host_data`.
pub fn verify_app_config(
    document: &[u8],
    host_data_field: &[u8],
) -> Result<AppConfigV3, AttestError> {
    let digest = host_data(document);
    if digest.as_slice() != host_data_field {
        return Err(AttestError::identity_mismatch(
            crate::names::reg::HOST_DATA,
            host_data_field,
            &digest,
        ));
    }
    AppConfigV3::parse(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"version":3,"app_id":"3763bc34552cf3a27ff71ad5f7a90471562a1a2d","compose_hash":"3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7","instance_id":"c3714eb66990eace777b4e664c16e09375dec4c9","key_provider":"kms","key_provider_id":"3059"}"#;

    #[test]
    fn every_prefix_is_malformed() {
        for len in 0..DOC.len() {
            let e = AppConfigV3::parse(&DOC.as_bytes()[..len]).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Malformed, "cut at {len}: {e}");
        }
    }

    #[test]
    fn parses_and_maps_identity() {
        let c = AppConfigV3::parse(DOC.as_bytes()).unwrap();
        let app = c.app_identity();
        assert_eq!(
            app.app_id.to_hex(),
            "3763bc34552cf3a27ff71ad5f7a90471562a1a2d"
        );
        assert_eq!(
            app.compose_hash.to_hex(),
            "3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7"
        );
        assert_eq!(
            app.instance_id.unwrap().to_hex(),
            "c3714eb66990eace777b4e664c16e09375dec4c9"
        );
        let kp = app.key_provider.unwrap();
        assert_eq!((kp.name.as_str(), kp.id.0), ("kms", vec![0x30, 0x59]));
        assert_eq!(app.os_image_hash, None);
    }

    #[test]
    fn host_data_is_over_bytes_as_received() {
        let mut pre = b"dstack-mr-config-v3:\0".to_vec();
        pre.extend_from_slice(DOC.as_bytes());
        let want: [u8; 32] = Sha256::digest(&pre).into();
        assert_eq!(host_data(DOC.as_bytes()), want);
        assert!(verify_app_config(DOC.as_bytes(), &want).is_ok());
        // The same JSON with different whitespace is a different document.
        let spaced = DOC.replace(",", ", ");
        let err = verify_app_config(spaced.as_bytes(), &want).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::IdentityMismatch);
        assert!(
            err.to_string()
                .starts_with("identity_mismatch: host_data: evidence has ")
        );
    }

    #[test]
    fn rejects_bad_documents() {
        // Where the error is (a field's location, or the document for
        // serde's own verdicts) and, for serde's, the words it uses.
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"version":3,"app_id":"00","compose_hash":"00","key_provider":"kms"}"#, "app config app_id", ""),
            (&DOC.replace("\"version\":3", "\"version\":2"), "version", ""),
            (&DOC.replace("\"version\":3", "\"version\":\"3\""), "syntax", "invalid type"),
            (&DOC.replace("\"key_provider\":\"kms\"", "\"key_provider\":7"), "syntax", "invalid type"),
            (&DOC.replace("{", "{\"extra\":1,"), "syntax", "unknown field `extra`"),
            (&DOC.replace("{", "{\"version\":3,"), "syntax", "duplicate field `version`"),
            (&DOC.replace(",\"compose_hash\":\"3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7\"", ""), "syntax", "missing field `compose_hash`"),
            (&DOC.replace("\"key_provider_id\":\"3059\"", "\"key_provider_id\":\"305\""), "app config key_provider_id", ""),
            (&DOC.replace("c3714eb66990eace777b4e664c16e09375dec4c9", "c3714e"), "app config instance_id", ""),
            ("[]", "syntax", ""),
            ("", "syntax", ""),
        ];
        for (doc, place, needle) in cases {
            let err = AppConfigV3::parse(doc.as_bytes()).unwrap_err();
            match (&err, *place) {
                (AttestError::Malformed(Malformed::Syntax { what, detail }), "syntax") => {
                    assert_eq!(what, "app config");
                    assert!(detail.contains(needle), "{doc}: {err}");
                }
                (AttestError::Malformed(Malformed::BadValue { what, .. }), "version") => {
                    assert_eq!(what, "app config version")
                }
                (AttestError::Malformed(Malformed::Within { location, .. }), field) => {
                    assert_eq!(location, field, "{doc}: {err}")
                }
                _ => panic!("{doc}: {err:?}, expected {place}"),
            }
        }
        // Exactly the largest size is accepted (padded with whitespace).
        let mut largest = DOC.as_bytes().to_vec();
        largest.resize(MAX_DOCUMENT_LEN, b' ');
        assert_eq!(MAX_DOCUMENT_LEN, 65536);
        assert!(AppConfigV3::parse(&largest).is_ok());
        // key_provider: 1..=64 bytes.
        let kp = |name: &str| {
            DOC.replace(
                "\"key_provider\":\"kms\"",
                &format!("\"key_provider\":\"{name}\""),
            )
        };
        assert!(AppConfigV3::parse(kp(&"k".repeat(64)).as_bytes()).is_ok());
        for (name, found) in [("", "0 bytes"), (&*"k".repeat(65), "65 bytes")] {
            assert_eq!(
                AppConfigV3::parse(kp(name).as_bytes())
                    .unwrap_err()
                    .malformed(),
                Some(&Malformed::BadValue {
                    what: "app config key_provider".into(),
                    expected: "1..=64 bytes".into(),
                    found: found.into(),
                })
            );
        }
        let huge = vec![b' '; MAX_DOCUMENT_LEN + 1];
        assert_eq!(
            AppConfigV3::parse(&huge).unwrap_err().malformed(),
            Some(&Malformed::TooLarge {
                what: "app config".into(),
                size: MAX_DOCUMENT_LEN + 1,
                max: MAX_DOCUMENT_LEN
            })
        );
    }

    #[test]
    fn optional_dstack_fields() {
        let doc = DOC.replace(
            "}",
            &format!(
                r#","gpu_policy_hash":"{}","init_script_hashes":["{}"]}}"#,
                "11".repeat(32),
                "22".repeat(32)
            ),
        );
        let c = AppConfigV3::parse(doc.as_bytes()).unwrap();
        assert_eq!(c.gpu_policy_hash, Some([0x11; 32]));
        assert_eq!(c.init_script_hashes, vec![[0x22; 32]]);
    }
}
