//! Platform identifiers.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name of a TEE platform, such as `tdx` or `sev-snp`.
///
/// Deliberately an open, string-like type rather than an enum: a new plug-in
/// crate picks its own identifier (`az-snp-vtpm`, ...) without editing this
/// crate. Identifiers are short lowercase ASCII (`a-z`, `0-9`, `-`, `_`); that
/// is checked when one arrives from outside ([`PlatformId::parse`], serde).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlatformId(Cow<'static, str>);

impl PlatformId {
    /// Intel TDX.
    pub const TDX: PlatformId = PlatformId(Cow::Borrowed("tdx"));
    /// AMD SEV-SNP.
    pub const SEV_SNP: PlatformId = PlatformId(Cow::Borrowed("sev-snp"));

    /// Longest accepted identifier, in bytes.
    pub const MAX_LEN: usize = 32;

    /// A platform id for a plug-in's own constant. The name must follow the
    /// rules above; plug-ins define it once, so a bad name is caught by their
    /// tests (`parse` is the checked constructor for untrusted input).
    pub const fn from_static(name: &'static str) -> Self {
        PlatformId(Cow::Borrowed(name))
    }

    /// Parses an identifier received from outside (a request, a file).
    pub fn parse(name: &str) -> Result<Self, crate::AttestError> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(crate::Malformed::BadValue {
                what: "platform id".into(),
                expected: format!("1..={} chars of [a-z0-9_-]", Self::MAX_LEN),
                found: format!("{:?}", truncate_for_message(name)),
            }
            .into());
        }
        Ok(PlatformId(Cow::Owned(name.to_owned())))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Keeps error messages bounded when the offending input is huge.
pub(crate) fn truncate_for_message(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl fmt::Display for PlatformId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PlatformId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlatformId({})", self.0)
    }
}

impl std::str::FromStr for PlatformId {
    type Err = crate::AttestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PlatformId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PlatformId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PlatformId::parse(&s).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_and_parse_agree() {
        assert_eq!(PlatformId::parse("tdx").unwrap(), PlatformId::TDX);
        assert_eq!(PlatformId::parse("sev-snp").unwrap(), PlatformId::SEV_SNP);
        assert_eq!(PlatformId::SEV_SNP.to_string(), "sev-snp");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "TDX", "tdx ", "a/b", &"x".repeat(33), "é"] {
            let err = PlatformId::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Malformed, "{bad:?}");
        }
        assert!(PlatformId::parse(&"x".repeat(32)).is_ok());
        assert_eq!("tdx".parse::<PlatformId>().unwrap(), PlatformId::TDX);
        assert!("TDX".parse::<PlatformId>().is_err());
    }

    /// A hostile name is quoted in the error, cut to 64 characters.
    #[test]
    fn error_messages_quote_at_most_64_characters() {
        let long = format!("{}{}", "é".repeat(64), "tail");
        let err = PlatformId::parse(&long).unwrap_err();
        match err.malformed() {
            Some(crate::Malformed::BadValue { found, .. }) => {
                assert_eq!(*found, format!("{:?}", "é".repeat(64)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(truncate_for_message("short"), "short");
        assert_eq!(truncate_for_message(""), "");
    }
}
