//! The HCL runtime claims: the JSON document whose SHA-256 the hardware
//! report carries, and which names the vTPM's attestation key.
//!
//! OpenHCL writes it with `serde_json::to_string(RuntimeClaims)`:
//! `{"keys":[{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":…},…],
//! "vm-configuration":{…},"user-data":"<hex, 64 bytes>"}`.
//!
//! The bytes are hashed exactly as received ([`crate::HclReport`] does
//! it); this module only reads what the verifier needs from them and never
//! re-serializes. Unknown members are ignored: `vm-configuration` keys and
//! the key list change between host versions, and every byte is covered by
//! the hardware report's REPORT_DATA anyway. Duplicate members that are read
//! here (`keys`, `user-data`, the selected `vm-configuration` values) are
//! refused, so no two readers can disagree on them.

use attest_core::{AttestError, Malformed, ReportData};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

/// The `kid` of the vTPM attestation key in the claims.
pub const AK_KID: &str = "HCLAkPub";
/// The AK modulus length: RSA-2048.
pub const AK_MODULUS_LEN: usize = 256;
/// The AK public exponent: 65537.
pub const AK_EXPONENT: u32 = 65537;

/// The vTPM attestation key (AK) as the claims state it: RSA-2048 with
/// e = 65537. Its provenance inside the vTPM is not attested (reference
/// P7); [`AkPublicKey::digest`] identifies it.
#[derive(Clone, PartialEq, Eq)]
pub struct AkPublicKey {
    n: [u8; AK_MODULUS_LEN],
}

impl AkPublicKey {
    /// The modulus, big-endian, 256 bytes, top bit set.
    pub fn modulus(&self) -> &[u8; AK_MODULUS_LEN] {
        &self.n
    }

    /// The public exponent (always 65537).
    pub fn exponent(&self) -> u32 {
        AK_EXPONENT
    }

    /// The exponent as minimal big-endian bytes.
    pub fn exponent_bytes(&self) -> [u8; 3] {
        [0x01, 0x00, 0x01]
    }

    /// SHA-256 of the modulus: the AK's identity (`ak_pub_sha256`).
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.n).into()
    }
}

impl std::fmt::Debug for AkPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AkPublicKey")
            .field("sha256", &hex::encode(self.digest()))
            .finish()
    }
}

/// The `vm-configuration` values a policy may want. Each is `None` when the
/// host did not write it (the set varies by host version).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VmConfiguration {
    /// `secure-boot`.
    pub secure_boot: Option<bool>,
    /// `tpm-enabled`.
    pub tpm_enabled: Option<bool>,
    /// `tpm-persisted` (absent in 2023-era reports).
    pub tpm_persisted: Option<bool>,
    /// `console-enabled`.
    pub console_enabled: Option<bool>,
    /// `vmUniqueId` (Azure's VM GUID, as written).
    pub vm_unique_id: Option<String>,
}

/// What the runtime claims say, read from the exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeClaims {
    ak: AkPublicKey,
    user_data: Option<ReportData>,
    vm_configuration: VmConfiguration,
}

impl RuntimeClaims {
    /// Reads the claims JSON.
    ///
    /// - The AK is the one key whose `kid` is `HCLAkPub` (a second one is
    ///   refused): `kty` `RSA`, `e` base64url of 65537, `n` base64url (no
    ///   padding) of 256 bytes with the top bit set. `key_ops` is not
    ///   checked (2023-era reports say `["encrypt"]`).
    /// - `user-data`, when present, is hex (either case) of exactly 64
    ///   bytes.
    /// - Selected `vm-configuration` values must have their JSON type
    ///   (boolean, or string for `vmUniqueId`) when present.
    pub fn parse(raw: &[u8]) -> Result<Self, AttestError> {
        let bad = |m: Malformed| AttestError::from(m).within("HCL runtime claims");
        let doc: RawClaims = serde_json::from_slice(raw).map_err(|e| {
            bad(Malformed::Syntax {
                what: "invalid JSON".into(),
                detail: e.to_string(),
            })
        })?;
        let mut aks = doc.keys.iter().filter(|k| k.kid.as_deref() == Some(AK_KID));
        let ak = match (aks.next(), aks.next()) {
            (Some(k), None) => k,
            (None, _) => {
                return Err(bad(Malformed::Missing {
                    what: "HCLAkPub key",
                    detail: format!("no key with kid {AK_KID:?}"),
                }));
            }
            (Some(_), Some(_)) => {
                return Err(bad(Malformed::Unexpected {
                    what: "second HCLAkPub key",
                    detail: format!("more than one key with kid {AK_KID:?}"),
                }));
            }
        };
        let ak = parse_ak(ak).map_err(|m| {
            bad(Malformed::Within {
                location: AK_KID.into(),
                inner: Box::new(m),
            })
        })?;
        let user_data = doc
            .user_data
            .as_deref()
            .map(|s| {
                if s.len() != 128 {
                    return Err(bad(Malformed::BadHexLength {
                        what: "user-data".into(),
                        expected: 64,
                        digits: s.len(),
                    }));
                }
                let mut b = [0u8; 64];
                hex::decode_to_slice(s, &mut b).map_err(|e| {
                    bad(Malformed::NotHex {
                        what: Some("user-data".into()),
                        detail: e.to_string(),
                    })
                })?;
                Ok(ReportData(b))
            })
            .transpose()?;
        let vm = doc.vm_configuration.unwrap_or_default();
        Ok(RuntimeClaims {
            ak,
            user_data,
            vm_configuration: VmConfiguration {
                secure_boot: vm.secure_boot,
                tpm_enabled: vm.tpm_enabled,
                tpm_persisted: vm.tpm_persisted,
                console_enabled: vm.console_enabled,
                vm_unique_id: vm.vm_unique_id,
            },
        })
    }

    /// The vTPM attestation key.
    pub fn ak(&self) -> &AkPublicKey {
        &self.ak
    }

    /// `user-data`: the 64 bytes the attester asked the paravisor to bind
    /// (the KMS request's report data), when present.
    pub fn user_data(&self) -> Option<&ReportData> {
        self.user_data.as_ref()
    }

    /// Selected `vm-configuration` values.
    pub fn vm_configuration(&self) -> &VmConfiguration {
        &self.vm_configuration
    }
}

fn parse_ak(k: &RawJwk) -> Result<AkPublicKey, Malformed> {
    match k.kty.as_deref() {
        Some("RSA") => {}
        other => {
            return Err(Malformed::BadValue {
                what: "kty".into(),
                expected: "\"RSA\"".into(),
                found: format!("{other:?}"),
            });
        }
    }
    let base64url = |what: &str, v: &str| {
        URL_SAFE_NO_PAD.decode(v).map_err(|err| Malformed::Syntax {
            what: what.into(),
            detail: format!("not base64url: {err}"),
        })
    };
    let e = k.e.as_deref().ok_or_else(|| Malformed::Missing {
        what: "e",
        detail: "has no e".into(),
    })?;
    let e = base64url("e", e)?;
    if e != [0x01, 0x00, 0x01] {
        return Err(Malformed::BadValue {
            what: "e".into(),
            expected: "65537 (AQAB)".into(),
            found: hex::encode(&e),
        });
    }
    let n = k.n.as_deref().ok_or_else(|| Malformed::Missing {
        what: "n",
        detail: "has no n".into(),
    })?;
    // Bound before decoding: 256 bytes are 342 base64url characters.
    if n.len() > 344 {
        return Err(Malformed::TooLarge {
            what: "n (base64url characters; a 2048-bit modulus is 342)".into(),
            size: n.len(),
            max: 344,
        });
    }
    let n = base64url("n", n)?;
    let n: [u8; AK_MODULUS_LEN] = n.as_slice().try_into().map_err(|_| Malformed::BadLength {
        what: "n (RSA-2048)".into(),
        expected: AK_MODULUS_LEN,
        found: n.len(),
    })?;
    if n[0] & 0x80 == 0 {
        return Err(Malformed::BadValue {
            what: "n".into(),
            expected: "a 2048-bit modulus (top bit set)".into(),
            found: "top bit clear".into(),
        });
    }
    Ok(AkPublicKey { n })
}

#[derive(Deserialize)]
struct RawClaims {
    keys: Vec<RawJwk>,
    #[serde(rename = "vm-configuration", default, deserialize_with = "present")]
    vm_configuration: Option<RawVmConfiguration>,
    #[serde(rename = "user-data", default, deserialize_with = "present")]
    user_data: Option<String>,
}

#[derive(Deserialize)]
struct RawJwk {
    #[serde(default, deserialize_with = "present")]
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    kty: Option<String>,
    #[serde(default, deserialize_with = "present")]
    e: Option<String>,
    #[serde(default, deserialize_with = "present")]
    n: Option<String>,
}

#[derive(Default, Deserialize)]
struct RawVmConfiguration {
    #[serde(rename = "secure-boot", default, deserialize_with = "present")]
    secure_boot: Option<bool>,
    #[serde(rename = "tpm-enabled", default, deserialize_with = "present")]
    tpm_enabled: Option<bool>,
    #[serde(rename = "tpm-persisted", default, deserialize_with = "present")]
    tpm_persisted: Option<bool>,
    #[serde(rename = "console-enabled", default, deserialize_with = "present")]
    console_enabled: Option<bool>,
    #[serde(rename = "vmUniqueId", default, deserialize_with = "present")]
    vm_unique_id: Option<String>,
}

/// A member that, when present, must hold a `T` (not `null`).
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &str = "p4GwhgAAe9-pG25a8eYcQ8T5huPtbylqe-rdO1V4RtZOJqV4SS6Yghiga1bKe0aqbUHKyrAQSMjpuQa9auW09wG7b-sKKPR_SkJDsCoNlm6KF5ELVuxpwk4ZwmTTiALAFHZ-EGQJQej_dimYGyQbbWwZY8wjgEcS78Y49dT7HntL0OoVR7uX5VVVC5lyKC9b3scFTLkPVSAkAmCSokAcIY3LqcZhkK4kcOCS7CnVOeMw5ZOVTp4IizH5iLwx3Jrj4nJv_PE-BLUJZsJf5yCVEc9HRuNMKDEIdRljemng6HYvpBwGVyNSI38MZJ06fHuet47oUnqt3S9orMERnPS99Q";

    fn claims(keys: &str, rest: &str) -> String {
        format!(r#"{{"keys":[{keys}]{rest}}}"#)
    }

    fn ak(fields: &str) -> String {
        format!(r#"{{"kid":"HCLAkPub","kty":"RSA","e":"AQAB","n":"{N}"{fields}}}"#)
    }

    fn err(doc: &str) -> String {
        RuntimeClaims::parse(doc.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_ak_and_user_data() {
        let ud = "AB".repeat(64);
        let doc = claims(
            &ak(r#","key_ops":["encrypt"]"#),
            &format!(r#","user-data":"{ud}","vm-configuration":{{"secure-boot":true,"x":[1]}}"#),
        );
        let c = RuntimeClaims::parse(doc.as_bytes()).unwrap();
        assert_eq!(c.user_data(), Some(&ReportData([0xab; 64])));
        assert_eq!(c.vm_configuration().secure_boot, Some(true));
        assert_eq!(c.vm_configuration().tpm_persisted, None);
        assert_eq!(c.ak().exponent(), 65537);
        // The README gives the AK of milan-v2-2048-hcl-report.bin, whose n this is.
        assert!(hex::encode(c.ak().digest()).starts_with("52f3d84d9483921f"));
    }

    /// The typed detail of a refused document.
    fn malformed(doc: &str) -> Malformed {
        let e = RuntimeClaims::parse(doc.as_bytes()).unwrap_err();
        e.malformed()
            .unwrap_or_else(|| panic!("not malformed: {e}"))
            .clone()
    }

    #[test]
    fn refuses_bad_keys() {
        assert!(matches!(
            malformed(&claims("", "")),
            Malformed::Missing {
                what: "HCLAkPub key",
                ..
            }
        ));
        assert!(matches!(
            malformed(&claims(&format!("{},{}", ak(""), ak("")), "")),
            Malformed::Unexpected {
                what: "second HCLAkPub key",
                ..
            }
        ));
        assert!(matches!(
            malformed(&claims(&ak("").replace("RSA", "EC"), "")),
            Malformed::BadValue { what, .. } if what == "kty"
        ));
        assert!(matches!(
            malformed(&claims(&ak("").replace("AQAB", "Aw"), "")),
            Malformed::BadValue { what, found, .. } if what == "e" && found == "03"
        ));
        let short = ak("").replace(N, &N[..300]);
        assert!(matches!(
            malformed(&claims(&short, "")),
            Malformed::BadLength {
                expected: 256,
                found: 225,
                ..
            }
        ));
        let padded = ak("").replace(N, &format!("{N}=="));
        assert!(matches!(
            malformed(&claims(&padded, "")),
            Malformed::Syntax { what, detail } if what == "n" && detail.starts_with("not base64url")
        ));
        // A leading zero byte: a 2040-bit modulus.
        let low = ak("").replace(&N[..4], "AAGw");
        assert!(matches!(
            malformed(&claims(&low, "")),
            Malformed::BadValue { what, found, .. } if what == "n" && found == "top bit clear"
        ));
        let null_kid = r#"{"kid":null}"#;
        assert!(err(&claims(null_kid, "")).contains("invalid JSON"));
    }

    #[test]
    fn refuses_bad_user_data_and_duplicates() {
        let k = ak("");
        assert!(matches!(
            malformed(&claims(&k, r#","user-data":"00""#)),
            Malformed::BadHexLength {
                expected: 64,
                digits: 2,
                ..
            }
        ));
        let zz = "zz".repeat(64);
        assert!(matches!(
            malformed(&claims(&k, &format!(r#","user-data":"{zz}""#))),
            Malformed::NotHex { what: Some(w), .. } if w == "user-data"
        ));
        assert!(err(&claims(&k, r#","user-data":null"#)).contains("invalid JSON"));
        let ud = "00".repeat(64);
        let dup = format!(r#","user-data":"{ud}","user-data":"{ud}""#);
        assert!(err(&claims(&k, &dup)).contains("duplicate field"));
        let dup = r#","vm-configuration":{"secure-boot":true,"secure-boot":false}"#;
        assert!(err(&claims(&k, dup)).contains("duplicate field"));
        let wrong = r#","vm-configuration":{"secure-boot":"yes"}"#;
        assert!(err(&claims(&k, wrong)).contains("invalid JSON"));
        // Trailing bytes inside variable_data_size are not trimmed.
        let mut nul = claims(&k, "").into_bytes();
        nul.push(0);
        assert!(RuntimeClaims::parse(&nul).is_err());
    }
}
