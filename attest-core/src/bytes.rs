//! Byte values that appear in identities, serialized as lowercase hex.
//!
//! Fixed-size values get their own type so a 20-byte app id can never be
//! confused with a 32-byte compose hash or carry the wrong length.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{AttestError, Malformed};

/// Decodes hex text (either case, no `0x`) into exactly `N` bytes.
fn decode_fixed<const N: usize>(what: &str, s: &str) -> Result<[u8; N], AttestError> {
    let mut out = [0u8; N];
    if s.len() != 2 * N {
        return Err(Malformed::BadHexLength {
            what: what.to_owned(),
            expected: N,
            digits: s.len(),
        }
        .into());
    }
    hex::decode_to_slice(s, &mut out).map_err(|e| Malformed::NotHex {
        what: Some(what.to_owned()),
        detail: e.to_string(),
    })?;
    Ok(out)
}

macro_rules! fixed_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Copies from a slice that must be exactly [`Self::LEN`] bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, AttestError> {
                <[u8; $len]>::try_from(bytes).map($name).map_err(|_| {
                    Malformed::BadLength {
                        what: $what.into(),
                        expected: $len,
                        found: bytes.len(),
                    }
                    .into()
                })
            }

            /// Parses lowercase or uppercase hex without a `0x` prefix.
            pub fn from_hex(s: &str) -> Result<Self, AttestError> {
                decode_fixed::<$len>($what, s).map($name)
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(b: [u8; $len]) -> Self {
                $name(b)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl std::str::FromStr for $name {
            type Err = AttestError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&s).map_err(|e| serde::de::Error::custom(e.message()))
            }
        }
    };
}

fixed_bytes!(
    /// A dstack application id: 20 bytes (an Ethereum-style contract address
    /// in KMS mode). Enforced at 20 bytes on every platform because the
    /// dstack key derivation concatenates it without framing.
    AppId,
    20,
    "app_id"
);
fixed_bytes!(
    /// SHA-256 of the app's compose file (`app-compose.json`).
    ComposeHash,
    32,
    "compose_hash"
);
fixed_bytes!(
    /// A dstack instance id: 20 bytes.
    InstanceId,
    20,
    "instance_id"
);
fixed_bytes!(
    /// SHA-256 of an OS image's `sha256sum.txt`, as dstack defines it.
    OsImageHash,
    32,
    "os_image_hash"
);
fixed_bytes!(
    /// A stable per-machine id: SHA-256 of the TDX PPID or of the SNP CHIP_ID.
    DeviceId,
    32,
    "device_id"
);
fixed_bytes!(
    /// The 64 bytes of user data a TEE report carries (TDX REPORTDATA, SNP
    /// REPORT_DATA).
    ReportData,
    64,
    "report_data"
);

/// Variable-length bytes serialized as lowercase hex (register values,
/// digests, provider ids).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HexBytes(pub Vec<u8>);

impl HexBytes {
    /// Parses hex text (either case, no `0x`).
    pub fn from_hex(s: &str) -> Result<Self, AttestError> {
        hex::decode(s).map(HexBytes).map_err(|e| {
            Malformed::NotHex {
                what: None,
                detail: e.to_string(),
            }
            .into()
        })
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// The raw bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for HexBytes {
    fn from(v: Vec<u8>) -> Self {
        HexBytes(v)
    }
}

impl From<&[u8]> for HexBytes {
    fn from(v: &[u8]) -> Self {
        HexBytes(v.to_vec())
    }
}

impl AsRef<[u8]> for HexBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexBytes({})", self.to_hex())
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        HexBytes::from_hex(&s).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_bytes_hold_exactly_the_bytes_given() {
        let raw: &[u8] = &[0x00, 0xAB, 0x7f];
        for h in [HexBytes::from(raw), HexBytes::from(raw.to_vec())] {
            assert_eq!(h.as_slice(), raw);
            assert_eq!(h.as_ref(), raw);
            assert_eq!(h.to_string(), "00ab7f");
            assert_eq!(format!("{h:?}"), "HexBytes(00ab7f)");
            assert_eq!(HexBytes::from_hex("00AB7f").unwrap(), h);
        }
        assert!(HexBytes::from(&[][..]).as_slice().is_empty());
    }

    #[test]
    fn fixed_roundtrip_and_lengths() {
        let id = AppId::from_hex("3763BC34552CF3A27FF71AD5F7A90471562A1A2D").unwrap();
        assert_eq!(id.to_hex(), "3763bc34552cf3a27ff71ad5f7a90471562a1a2d");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"3763bc34552cf3a27ff71ad5f7a90471562a1a2d\""
        );
        let back: AppId =
            serde_json::from_str("\"3763bc34552cf3a27ff71ad5f7a90471562a1a2d\"").unwrap();
        assert_eq!(back, id);

        let short = AppId::from_hex("3763bc34").unwrap_err();
        assert_eq!(
            short.malformed(),
            Some(&Malformed::BadHexLength {
                what: "app_id".into(),
                expected: 20,
                digits: 8
            })
        );
        assert_eq!(
            short.to_string(),
            "malformed: app_id must be 20 bytes (40 hex digits), found 8 hex digits"
        );
        assert_eq!(
            AppId::from_slice(&[0u8; 21]).unwrap_err().malformed(),
            Some(&Malformed::BadLength {
                what: "app_id".into(),
                expected: 20,
                found: 21
            })
        );
        assert!(matches!(
            ComposeHash::from_hex(&"zz".repeat(32))
                .unwrap_err()
                .malformed(),
            Some(Malformed::NotHex { .. })
        ));
        assert!(
            serde_json::from_str::<AppId>("\"0x3763bc34552cf3a27ff71ad5f7a90471562a1a\"").is_err()
        );
    }

    #[test]
    fn hexbytes_roundtrip() {
        let b = HexBytes(vec![0xab, 0x01]);
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"ab01\"");
        assert_eq!(serde_json::from_str::<HexBytes>("\"AB01\"").unwrap(), b);
        assert!(serde_json::from_str::<HexBytes>("\"abc\"").is_err());
    }
}
