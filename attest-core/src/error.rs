//! Verification errors: distinct kinds a caller can act on, each with typed
//! detail a test can match.
//!
//! Modelled on rustls's `Error` over `InvalidMessage`, `PeerMisbehaved` and
//! `CertificateError`: [`AttestError`] names the kind (what a caller does
//! about it: retry later, fix the request, page the operator, deny), and
//! each kind holds a small enum of *what* went wrong ([`Malformed`],
//! [`Insecure`], [`UntrustedChain`], ...). The variant is the fact: tests
//! and code match it, never the text. Fields carry what a reader of a log
//! needs (offsets, sizes, the expected and the found value); a `detail`
//! field holds words for people, often a vendor library's own message
//! (dcap-qvl reports its verdicts as text, see `attest-tdx/src/errors.rs`),
//! and is never parsed.
//!
//! `Display` prints `<kind>: <message>`, the form the CLI and gRPC status
//! messages use; [`AttestError::message`] is the part after the kind.
//! Messages never carry secrets.

use std::fmt;
use std::ops::{Range, RangeInclusive};

use crate::{PlatformId, ReportData};

/// Why evidence was not turned into a [`crate::VerifiedIdentity`].
///
/// Each variant is a kind a caller can act on; [`AttestError::kind`] names
/// it without its detail (metrics labels, gRPC and HTTP status codes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttestError {
    /// The evidence (or a document in it) cannot be parsed, is truncated,
    /// oversized, or has a field of the wrong size or type.
    Malformed(Malformed),
    /// A signature over the evidence or over collateral does not verify.
    BadSignature(BadSignature),
    /// A certificate chain does not lead to the pinned vendor root, or a
    /// certificate is outside its validity window.
    UntrustedChain(UntrustedChain),
    /// Collateral needed for the verdict (TCB info, CRL, VCEK) is not known.
    CollateralMissing(CollateralMissing),
    /// Collateral exists but is outside its validity window at the
    /// verification time.
    CollateralExpired(CollateralExpired),
    /// A certificate in the chain, or the platform's TCB, is revoked.
    Revoked(Revoked),
    /// The report data is not the value the request binding demands
    /// (replayed or foreign evidence).
    BindingMismatch {
        /// What the verifier required (boxed to keep the error small).
        expected: Box<ReportData>,
        /// What the evidence carries.
        found: Box<ReportData>,
    },
    /// A measured value does not match the document that claims to describe
    /// it: an event-log replay that does not reproduce a register, or an app
    /// config whose digest is not HOST_DATA.
    IdentityMismatch {
        /// The register or field that did not match (`rtmr3`, `host_data`, ...).
        what: String,
        /// The value the evidence's measurement holds.
        expected: String,
        /// The value recomputed from the supplied document.
        found: String,
    },
    /// Genuine evidence describing a configuration that is never acceptable
    /// (debug enabled, migration agent, wrong privilege level, ...).
    Insecure(Insecure),
    /// A collateral source (PCS/PCCS, AMD KDS) could not be reached in time.
    Unavailable(Unavailable),
    /// No verifier is registered for this platform.
    UnsupportedPlatform(PlatformId),
}

/// What is wrong with bytes or a document that does not parse
/// ([`AttestError::Malformed`]).
///
/// The binary variants come from the one [`crate::reader::Reader`] and the
/// parsers built on it, so every parser reports running out of bytes, or
/// having bytes left over, the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// The input ends before a field it must hold.
    Truncated {
        /// The structure being read (`"TDX quote"`, `"CCEL log"`).
        context: &'static str,
        /// The field that did not fit.
        field: String,
        /// Where the field starts, from the start of the reader's buffer.
        offset: usize,
        /// The bytes the field needs.
        needed: usize,
        /// The bytes that were left.
        available: usize,
    },
    /// Bytes follow the end of a structure that must be read whole.
    TrailingData {
        /// The structure being read.
        context: &'static str,
        /// Where its end is.
        offset: usize,
        /// How many bytes follow it.
        extra: usize,
    },
    /// A byte range the format reserves (must be zero) is not zero.
    ReservedNonZero {
        /// The structure (`"report"`).
        context: &'static str,
        /// The reserved field's name.
        field: String,
        /// The byte range, from the start of the structure.
        range: Range<usize>,
    },
    /// Bits the format reserves in a field are not as it defines them.
    ReservedBits {
        /// The field (`"guest policy"`, `"KEY_INFO"`).
        field: &'static str,
        /// The field's value.
        value: u64,
    },
    /// Hex text for a fixed-length value has the wrong number of digits.
    BadHexLength {
        /// The value.
        what: String,
        /// The bytes it must have.
        expected: usize,
        /// The hex digits found.
        digits: usize,
    },
    /// Text that must be hex is not.
    NotHex {
        /// The value, when the caller names it.
        what: Option<String>,
        /// The hex decoder's message.
        detail: String,
    },
    /// A field or document of a fixed length has another length.
    BadLength {
        /// What was measured.
        what: String,
        /// The length it must have, in bytes.
        expected: usize,
        /// The length it has.
        found: usize,
    },
    /// Larger than the verifier accepts (a bound against resource use).
    TooLarge {
        /// What is too large.
        what: String,
        /// Its size (bytes, or elements where the message says so).
        size: usize,
        /// The largest accepted.
        max: usize,
    },
    /// More elements than the verifier accepts (events, entries, keys).
    TooMany {
        /// The container.
        what: String,
        /// What it holds (`"events"`).
        items: &'static str,
        /// How many it holds.
        count: usize,
        /// The most accepted.
        max: usize,
    },
    /// A field holds a value the format does not define or this verifier
    /// does not support (a version, a type, an algorithm, a range).
    BadValue {
        /// The field.
        what: String,
        /// What is accepted.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A version, type or vendor this verifier does not support, in a
    /// vendor library's words.
    Unsupported {
        /// The library's message.
        detail: String,
    },
    /// A field, at an offset, that does not decode: a problem a decoder
    /// (SCALE, msgpack) names in words.
    BadField {
        /// The structure being decoded.
        context: &'static str,
        /// The field.
        field: String,
        /// Its offset.
        offset: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A part the evidence must carry is absent.
    Missing {
        /// The absent part (`"event log"`, `"app_config"`, `"user-data"`).
        what: &'static str,
        /// Why it is needed, for people.
        detail: String,
    },
    /// A part is present that this form of evidence must not carry, or
    /// parts that exclude each other are both present.
    Unexpected {
        /// The part.
        what: &'static str,
        /// Why it may not be there, for people.
        detail: String,
    },
    /// A text or DER document that does not decode (JSON, PEM, DER, hex,
    /// dates): the decoder's own message.
    Syntax {
        /// The document or field.
        what: String,
        /// The decoder's message.
        detail: String,
    },
    /// An error inside an enclosing structure (a certificate extension, a
    /// field of a document); [`Malformed::innermost`] unwraps it.
    Within {
        /// Where: the enclosing structure or field.
        location: String,
        /// The error found there.
        inner: Box<Malformed>,
    },
    /// A service request around the evidence (an RPC body, its framing or
    /// encoding) that cannot be read: the service's message.
    BadRequest {
        /// What is wrong with the request, for people.
        detail: String,
    },
    /// A PCR index outside the registers its use allows (an app PCR
    /// outside 8..=15, an event for a PCR other than the app PCR).
    PcrOutOfRange {
        /// What names the PCR (`"app_pcr"`, `"event 3's PCR"`).
        what: String,
        /// The PCR index found.
        pcr: u32,
        /// The PCRs allowed there.
        allowed: RangeInclusive<u32>,
    },
    /// A TPM PCR selection bitmap (`TPMS_PCR_SELECTION.pcrSelect`, bit `i`
    /// of byte `i / 8` selecting PCR `i`) other than the one required.
    PcrSelection {
        /// The field (`"TPMS_ATTEST pcrSelect.pcrSelect"`).
        field: &'static str,
        /// The bitmap required.
        expected: Vec<u8>,
        /// The bitmap found.
        found: Vec<u8>,
    },
    /// A field of a TPM structure (`TPMS_ATTEST`, a `TPM2B_*`) holding a
    /// value TPM 2.0, or the profile this verifier accepts, does not allow.
    TpmField {
        /// The structure (`"TPMS_ATTEST"`).
        structure: &'static str,
        /// The field (`"magic"`, `"pcrSelect.count"`).
        field: &'static str,
        /// What is accepted.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A length or element count, at an offset, claiming more than the
    /// bytes left can hold: refused before anything is allocated.
    CountPastEnd {
        /// The structure being decoded.
        context: &'static str,
        /// The counted field.
        field: String,
        /// Where the count starts.
        offset: usize,
        /// The count it declares.
        count: usize,
        /// The bytes left after it.
        available: usize,
    },
    /// A length field, at an offset, that runs past the end of the
    /// structure holding what it measures.
    LengthPastEnd {
        /// The structure being decoded.
        context: &'static str,
        /// The length field.
        field: String,
        /// Where the length field is.
        offset: usize,
        /// The length it declares.
        length: u64,
        /// What it runs past the end of (`"the report"`).
        container: &'static str,
        /// The bytes left there.
        available: usize,
    },
    /// A container (array or map), at an offset, being skipped whose
    /// elements still to read outnumber the bytes left.
    ContainerPastEnd {
        /// The structure being decoded.
        context: &'static str,
        /// The field being skipped.
        field: String,
        /// Where the container starts.
        offset: usize,
        /// The bytes left after its header.
        available: usize,
    },
    /// A field, at an offset, larger than the verifier accepts (a bound
    /// against resource use), in `unit`s (`"bytes"`, `"elements"`).
    FieldTooLarge {
        /// The structure being decoded.
        context: &'static str,
        /// The field.
        field: String,
        /// Where it starts.
        offset: usize,
        /// Its size.
        size: usize,
        /// What `size` and `max` count.
        unit: &'static str,
        /// The largest accepted.
        max: usize,
    },
    /// An integer, at an offset, in a wider encoding than its value needs
    /// (a SCALE compact integer): refused so each value has one encoding.
    NonCanonicalInteger {
        /// The structure being decoded.
        context: &'static str,
        /// The field.
        field: String,
        /// Where the integer starts.
        offset: usize,
    },
    /// A field, at an offset, whose length the format fixes (a
    /// `name` is `expected` bytes) holding another length.
    FieldLength {
        /// The structure being decoded.
        context: &'static str,
        /// The field.
        field: String,
        /// Where it starts.
        offset: usize,
        /// What a value of the field is (`"an SNP report"`).
        name: &'static str,
        /// The length it must have, in bytes.
        expected: usize,
        /// The length it has.
        found: usize,
    },
    /// A field, at an offset, that decodes but holds another value than
    /// the one the format requires there (a version, a fixed text).
    WrongValueAt {
        /// The structure being decoded.
        context: &'static str,
        /// The field.
        field: String,
        /// Where the field starts.
        offset: usize,
        /// The value required.
        expected: String,
        /// The value found.
        found: String,
    },
    /// An enum tag, at an offset, naming no variant the format defines.
    UnknownVariant {
        /// The structure being decoded.
        context: &'static str,
        /// The tagged field.
        field: String,
        /// Where the tag is.
        offset: usize,
        /// The tag.
        tag: u64,
    },
    /// A value, at an offset, of another type than the field requires (a
    /// string where a map must be).
    WrongType {
        /// The structure being decoded.
        context: &'static str,
        /// The field.
        field: String,
        /// Where the value starts.
        offset: usize,
        /// The type required (`"a map"`).
        expected: &'static str,
        /// The type found (`"a string"`).
        found: &'static str,
    },
    /// A map, at an offset, without a key it must have.
    MissingKey {
        /// The structure being decoded.
        context: &'static str,
        /// The map.
        field: String,
        /// Where the map starts.
        offset: usize,
        /// The absent key.
        key: String,
    },
    /// A map, at an offset, with a key twice: which value counts would be
    /// up to the decoder.
    DuplicateKey {
        /// The structure being decoded.
        context: &'static str,
        /// The map.
        field: String,
        /// Where the second key starts.
        offset: usize,
        /// The repeated key.
        key: String,
    },
    /// An element of a byte string written as an array of integers, at an
    /// offset, above 255.
    ByteOutOfRange {
        /// The structure being decoded.
        context: &'static str,
        /// The byte string.
        field: String,
        /// Where the element starts.
        offset: usize,
        /// The element's value.
        value: u64,
    },
    /// Text, at an offset, that must be UTF-8 and is not.
    NotUtf8 {
        /// The structure being decoded.
        context: &'static str,
        /// The field.
        field: String,
        /// Where the field starts.
        offset: usize,
        /// The UTF-8 decoder's message.
        detail: String,
    },
    /// A PEM block whose label is not the one required (a `PRIVATE KEY`
    /// where a `CERTIFICATE` must be).
    PemLabel {
        /// The label required.
        expected: &'static str,
        /// The label found.
        found: String,
    },
    /// Anything else, in words.
    Other(String),
}

/// The PCRs a TPM selection bitmap selects (`"PCRs 0,1,14"`, `"no PCRs"`).
pub fn describe_pcr_selection(bitmap: &[u8]) -> String {
    let set: Vec<String> = (0..bitmap.len() * 8)
        .filter(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
        .map(|i| i.to_string())
        .collect();
    if set.is_empty() {
        "no PCRs".into()
    } else {
        format!("PCRs {}", set.join(","))
    }
}

impl Malformed {
    /// The error under any [`Malformed::Within`] locations: the one to
    /// match in a test.
    pub fn innermost(&self) -> &Malformed {
        match self {
            Malformed::Within { inner, .. } => inner.innermost(),
            m => m,
        }
    }

    /// Whether this is a [`Malformed::Truncated`] (under any location).
    pub fn is_truncated(&self) -> bool {
        matches!(self.innermost(), Malformed::Truncated { .. })
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Truncated {
                context,
                field,
                offset,
                needed,
                available,
            } => write!(
                f,
                "{context} truncated: {field} needs {needed} bytes at offset {offset}, {available} left"
            ),
            Malformed::TrailingData {
                context,
                offset,
                extra,
            } => write!(
                f,
                "{context}: {extra} unexpected trailing bytes at offset {offset}"
            ),
            Malformed::ReservedNonZero {
                context,
                field,
                range,
            } => write!(
                f,
                "{context} bytes {:#x}..{:#x} ({field}) must be zero",
                range.start, range.end
            ),
            Malformed::ReservedBits { field, value } => {
                write!(f, "{field} {value:#x} has reserved bits wrong")
            }
            Malformed::BadHexLength {
                what,
                expected,
                digits,
            } => write!(
                f,
                "{what} must be {expected} bytes ({} hex digits), found {digits} hex digits",
                2 * expected
            ),
            Malformed::NotHex {
                what: Some(what),
                detail,
            } => write!(f, "{what} is not valid hex: {detail}"),
            Malformed::NotHex { what: None, detail } => write!(f, "not valid hex: {detail}"),
            Malformed::BadLength {
                what,
                expected,
                found,
            } => write!(f, "{what} must be {expected} bytes, found {found}"),
            Malformed::TooLarge { what, size, max } => {
                write!(f, "{what} is {size} bytes, at most {max} accepted")
            }
            Malformed::TooMany {
                what,
                items,
                count,
                max,
            } => write!(f, "{what} has {count} {items}, at most {max} accepted"),
            Malformed::BadValue {
                what,
                expected,
                found,
            } => write!(f, "{what}: expected {expected}, found {found}"),
            Malformed::BadField {
                context,
                field,
                offset,
                problem,
            } => write!(f, "{context}: {field} at offset {offset}: {problem}"),
            Malformed::Missing { detail, .. }
            | Malformed::Unexpected { detail, .. }
            | Malformed::Unsupported { detail }
            | Malformed::BadRequest { detail } => f.write_str(detail),
            Malformed::Syntax { what, detail } => write!(f, "{what}: {detail}"),
            Malformed::Within { location, inner } => write!(f, "{location}: {inner}"),
            Malformed::PcrOutOfRange { what, pcr, allowed } => write!(
                f,
                "{what} must be in {}..={}, found {pcr}",
                allowed.start(),
                allowed.end()
            ),
            Malformed::PcrSelection {
                field,
                expected,
                found,
            } => write!(
                f,
                "{field}: expected {} ({}), found {} ({})",
                hex::encode(expected),
                describe_pcr_selection(expected),
                hex::encode(found),
                describe_pcr_selection(found)
            ),
            Malformed::TpmField {
                structure,
                field,
                expected,
                found,
            } => write!(f, "{structure} {field}: expected {expected}, found {found}"),
            Malformed::CountPastEnd {
                context,
                field,
                offset,
                count,
                available,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: {count} elements cannot fit in the {available} bytes left"
            ),
            Malformed::LengthPastEnd {
                context,
                field,
                offset,
                length,
                container,
                available,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: {length} runs past the end of {container} ({available} bytes left)"
            ),
            Malformed::ContainerPastEnd {
                context,
                field,
                offset,
                available,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: container cannot fit in the {available} bytes left"
            ),
            Malformed::FieldTooLarge {
                context,
                field,
                offset,
                size,
                unit,
                max,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: {size} {unit}, at most {max} accepted"
            ),
            Malformed::NonCanonicalInteger {
                context,
                field,
                offset,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: non-canonical compact integer"
            ),
            Malformed::FieldLength {
                context,
                field,
                offset,
                name,
                expected,
                found,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: {found} bytes, {name} is {expected}"
            ),
            Malformed::WrongValueAt {
                context,
                field,
                offset,
                expected,
                found,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: {found} is not {expected}"
            ),
            Malformed::UnknownVariant {
                context,
                field,
                offset,
                tag,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: unknown variant {tag}"
            ),
            Malformed::WrongType {
                context,
                field,
                offset,
                expected,
                found,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: expected {expected}, found {found}"
            ),
            Malformed::MissingKey {
                context,
                field,
                offset,
                key,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: required key {key:?} is missing"
            ),
            Malformed::DuplicateKey {
                context,
                field,
                offset,
                key,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: key {key:?} appears twice"
            ),
            Malformed::ByteOutOfRange {
                context,
                field,
                offset,
                value,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: byte value {value} exceeds 255"
            ),
            Malformed::NotUtf8 {
                context,
                field,
                offset,
                detail,
            } => write!(
                f,
                "{context}: {field} at offset {offset}: not UTF-8: {detail}"
            ),
            Malformed::PemLabel { expected, found } => {
                write!(f, "PEM: PEM block {found:?}, expected {expected}")
            }
            Malformed::Other(m) => f.write_str(m),
        }
    }
}

/// Which signature failed ([`AttestError::BadSignature`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadSignature {
    /// A well-formed signature that does not verify under its key.
    DoesNotVerify {
        /// What was signed (`"the report"`, `"the PCK CRL"`).
        signed: String,
        /// Whose key, when the message names it (`"SEV-VCEK"`).
        signer: Option<String>,
    },
    /// Bytes that are not a signature of the algorithm (not DER, wrong size).
    BadEncoding {
        /// What the signature is over.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The evidence says it is not signed at all (SNP's MASK_CHIP_KEY, a
    /// SIGNING_KEY of 7).
    Unsigned {
        /// The field that says so.
        detail: String,
    },
    /// A hash one signed structure holds over another does not match (the
    /// QE report's hash over the attestation key).
    DigestMismatch {
        /// Which hash, for people.
        detail: String,
    },
    /// A signature a vendor library rejected, in its words.
    Other(String),
}

impl fmt::Display for BadSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadSignature::DoesNotVerify {
                signed,
                signer: Some(signer),
            } => write!(f, "the {signer} signature over {signed} does not verify"),
            BadSignature::DoesNotVerify {
                signed,
                signer: None,
            } => write!(f, "the signature over {signed} does not verify"),
            BadSignature::BadEncoding { what, detail } => write!(f, "{what}: {detail}"),
            BadSignature::Unsigned { detail } => write!(f, "{detail}: the report is unsigned"),
            BadSignature::DigestMismatch { detail } | BadSignature::Other(detail) => {
                f.write_str(detail)
            }
        }
    }
}

/// Why a certificate chain is not trusted ([`AttestError::UntrustedChain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UntrustedChain {
    /// The chain ends in a root other than the pinned vendor root, or there
    /// is no pinned root for what the evidence names.
    UnknownRoot {
        /// Which chain, for people.
        detail: String,
    },
    /// A certificate or CRL is not issued, or not signed, by the CA the
    /// chain says.
    NotIssuedBy {
        /// Which certificate, for people.
        detail: String,
    },
    /// A certificate is outside its validity window at the verification
    /// time.
    OutsideValidity {
        /// The certificate.
        what: String,
        /// notBefore (Unix seconds).
        not_before: u64,
        /// notAfter (Unix seconds).
        not_after: u64,
        /// The verification time (Unix seconds).
        now: u64,
    },
    /// A genuine certificate for something else: another chip, product or
    /// TCB, or not the key that signed the evidence.
    WrongKey {
        /// What does not match, for people.
        detail: String,
    },
    /// A certificate in the chain that does not parse, or uses an
    /// algorithm or extension the vendor's chain never uses.
    BadCertificate {
        /// The certificate.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Anything else (a vendor library's verdict, in its words).
    Other(String),
}

impl fmt::Display for UntrustedChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UntrustedChain::UnknownRoot { detail }
            | UntrustedChain::NotIssuedBy { detail }
            | UntrustedChain::WrongKey { detail }
            | UntrustedChain::Other(detail) => f.write_str(detail),
            UntrustedChain::OutsideValidity {
                what,
                not_before,
                not_after,
                now,
            } => write!(f, "{what} is valid {not_before}..{not_after}, not at {now}"),
            UntrustedChain::BadCertificate { what, detail } => write!(f, "{what}: {detail}"),
        }
    }
}

/// Which collateral is missing ([`AttestError::CollateralMissing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CollateralMissing {
    /// The source has none for this platform (HTTP 404, no file, AMD KDS
    /// knows no VCEK for the chip and TCB).
    NotFound {
        /// What was asked for and where, for people.
        detail: String,
    },
    /// No source could supply it: none is configured, or this collateral
    /// is never public (a VLEK, a VCEK of a masked CHIP_ID) and had to come
    /// with the evidence.
    NoSource {
        /// Why, for people.
        detail: String,
    },
    /// Collateral was found, but for another platform or of another kind
    /// (a TCB info for another FMSPC, an SGX TCB info for a TDX quote).
    WrongSet {
        /// What does not match, for people.
        detail: String,
    },
}

impl fmt::Display for CollateralMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollateralMissing::NotFound { detail }
            | CollateralMissing::NoSource { detail }
            | CollateralMissing::WrongSet { detail } => f.write_str(detail),
        }
    }
}

/// Which window the collateral is outside ([`AttestError::CollateralExpired`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CollateralExpired {
    /// The verification time is at or after the collateral's end
    /// (`nextUpdate`, a certificate's notAfter).
    Expired {
        /// Which collateral and when, for people.
        detail: String,
    },
    /// The verification time is before the collateral was issued.
    NotYetValid {
        /// Which collateral and when, for people.
        detail: String,
    },
}

impl fmt::Display for CollateralExpired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollateralExpired::Expired { detail } | CollateralExpired::NotYetValid { detail } => {
                f.write_str(detail)
            }
        }
    }
}

/// What is revoked ([`AttestError::Revoked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// A certificate of the chain is on its issuer's CRL.
    Certificate {
        /// Which certificate and which CRL, for people.
        detail: String,
    },
    /// The platform's TCB level is revoked.
    Tcb {
        /// The verdict, for people.
        detail: String,
    },
}

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revoked::Certificate { detail } | Revoked::Tcb { detail } => f.write_str(detail),
        }
    }
}

/// Which configuration is never acceptable ([`AttestError::Insecure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Insecure {
    /// The guest may be debugged (SNP POLICY.DEBUG, TDX TDATTRIBUTES.DEBUG):
    /// its memory is open to the host.
    Debug {
        /// Which field says so, for people.
        detail: String,
    },
    /// The guest may be migrated by an agent the verifier cannot judge
    /// (SNP POLICY.MIGRATE_MA, a migratable TD).
    Migration {
        /// Which field says so, for people.
        detail: String,
    },
    /// The evidence comes from a VM privilege level other than the one
    /// required (SNP VMPL).
    Vmpl {
        /// The required level.
        expected: u32,
        /// The report's level.
        found: u32,
    },
    /// The TDX module is not Intel's (MRSIGNERSEAM non-zero, or a module
    /// identity the TCB info does not list).
    ForeignTdxModule {
        /// The module's signer or the check, for people.
        detail: String,
    },
    /// A TD attribute the vendor's rules refuse besides debug and migration
    /// (profiling, SEPT_VE_DISABLE off, reserved bits, service TD binding).
    TdAttributes {
        /// Which attribute, for people.
        detail: String,
    },
    /// The platform's SVNs match no TCB level the vendor lists.
    NoMatchingTcbLevel {
        /// The vendor library's verdict.
        detail: String,
    },
    /// A verifier composed on another is configured too weakly for what it
    /// verifies (a vTPM's paravisor must be judged at VMPL 0).
    WeakVerifier {
        /// What is configured, for people.
        detail: String,
    },
    /// A composed platform's hardware evidence does not come from the
    /// firmware layer the operator pinned (a vTPM's paravisor): any other
    /// guest of that TEE could frame the upper layer's claims. The
    /// register identifying the layer holds a value no pin lists.
    UnpinnedLayer {
        /// The composed platform (`"az-snp-vtpm"`).
        platform: String,
        /// The hardware register identifying the layer (`"measurement"`,
        /// `"mrtd"`).
        register: &'static str,
        /// Its value, hex.
        found: String,
    },
    /// A composed platform that requires a pinned firmware layer has none
    /// configured: any guest of the TEE could frame the upper layer.
    NoLayerPinned {
        /// The composed platform (its configuration section).
        platform: String,
        /// The TEE whose guests could frame it (`"SEV-SNP"`, `"TD"`).
        tee: &'static str,
    },
    /// A hardware register the pinned firmware layer never extends is
    /// extended (an RTMR of an Azure paravisor TD): the TD runs other code.
    LayerRegisterExtended {
        /// The composed platform.
        platform: String,
        /// The extended register (`"rtmr3"`).
        register: &'static str,
    },
    /// Boot-time keys were asked for with evidence made after boot (an
    /// app's certificate, or a log past the events a guest measures once
    /// it holds its keys).
    NotBooting {
        /// What shows it, for people.
        detail: String,
    },
}

impl fmt::Display for Insecure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Insecure::Vmpl { expected, found } => {
                write!(f, "report from VMPL {found}, expected VMPL {expected}")
            }
            Insecure::UnpinnedLayer {
                platform,
                register,
                found,
            } => write!(
                f,
                "{platform}: {register} {found} is not a pinned paravisor's"
            ),
            Insecure::NoLayerPinned { platform, tee } => write!(
                f,
                "{platform}: no paravisor is pinned ([platform.{platform}] paravisors): without one, any {tee} guest could frame vTPM evidence"
            ),
            Insecure::LayerRegisterExtended { platform, register } => write!(
                f,
                "{platform}: {register} of the TD quote is extended, so the TD is not Azure's paravisor (which extends no RTMR)"
            ),
            Insecure::Debug { detail }
            | Insecure::Migration { detail }
            | Insecure::ForeignTdxModule { detail }
            | Insecure::TdAttributes { detail }
            | Insecure::NoMatchingTcbLevel { detail }
            | Insecure::WeakVerifier { detail }
            | Insecure::NotBooting { detail } => f.write_str(detail),
        }
    }
}

/// Why a collateral source did not answer ([`AttestError::Unavailable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// A request failed: refused, timed out, an unexpected HTTP status, a
    /// body that is not what the endpoint serves.
    Source {
        /// The URL or path asked.
        source: String,
        /// What happened.
        detail: String,
    },
    /// The source asked us to wait (HTTP 429), or the fetch budget for
    /// unknown platforms is spent: retry later.
    Throttled {
        /// For how long, or which budget, for people.
        detail: String,
    },
    /// The HTTP client could not be built, or a local file could not be
    /// read.
    Local {
        /// What failed.
        detail: String,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Source { source, detail } => write!(f, "{source}: {detail}"),
            Unavailable::Throttled { detail } | Unavailable::Local { detail } => {
                f.write_str(detail)
            }
        }
    }
}

/// The kind of an [`AttestError`], without its context; stable names for
/// logs, metrics labels and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`AttestError::Malformed`].
    Malformed,
    /// See [`AttestError::BadSignature`].
    BadSignature,
    /// See [`AttestError::UntrustedChain`].
    UntrustedChain,
    /// See [`AttestError::CollateralMissing`].
    CollateralMissing,
    /// See [`AttestError::CollateralExpired`].
    CollateralExpired,
    /// See [`AttestError::Revoked`].
    Revoked,
    /// See [`AttestError::BindingMismatch`].
    BindingMismatch,
    /// See [`AttestError::IdentityMismatch`].
    IdentityMismatch,
    /// See [`AttestError::Insecure`].
    Insecure,
    /// See [`AttestError::Unavailable`].
    Unavailable,
    /// See [`AttestError::UnsupportedPlatform`].
    UnsupportedPlatform,
}

impl ErrorKind {
    /// The kind's stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::BadSignature => "bad_signature",
            ErrorKind::UntrustedChain => "untrusted_chain",
            ErrorKind::CollateralMissing => "collateral_missing",
            ErrorKind::CollateralExpired => "collateral_expired",
            ErrorKind::Revoked => "revoked",
            ErrorKind::BindingMismatch => "binding_mismatch",
            ErrorKind::IdentityMismatch => "identity_mismatch",
            ErrorKind::Insecure => "insecure",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::UnsupportedPlatform => "unsupported_platform",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AttestError {
    /// This error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AttestError::Malformed(_) => ErrorKind::Malformed,
            AttestError::BadSignature(_) => ErrorKind::BadSignature,
            AttestError::UntrustedChain(_) => ErrorKind::UntrustedChain,
            AttestError::CollateralMissing(_) => ErrorKind::CollateralMissing,
            AttestError::CollateralExpired(_) => ErrorKind::CollateralExpired,
            AttestError::Revoked(_) => ErrorKind::Revoked,
            AttestError::BindingMismatch { .. } => ErrorKind::BindingMismatch,
            AttestError::IdentityMismatch { .. } => ErrorKind::IdentityMismatch,
            AttestError::Insecure(_) => ErrorKind::Insecure,
            AttestError::Unavailable(_) => ErrorKind::Unavailable,
            AttestError::UnsupportedPlatform(_) => ErrorKind::UnsupportedPlatform,
        }
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> String {
        match self {
            AttestError::Malformed(m) => m.to_string(),
            AttestError::BadSignature(m) => m.to_string(),
            AttestError::UntrustedChain(m) => m.to_string(),
            AttestError::CollateralMissing(m) => m.to_string(),
            AttestError::CollateralExpired(m) => m.to_string(),
            AttestError::Revoked(m) => m.to_string(),
            AttestError::Insecure(m) => m.to_string(),
            AttestError::Unavailable(m) => m.to_string(),
            AttestError::BindingMismatch { expected, found } => {
                format!("report data: expected {expected}, found {found}")
            }
            AttestError::IdentityMismatch {
                what,
                expected,
                found,
            } => format!("{what}: evidence has {expected}, recomputed {found}"),
            AttestError::UnsupportedPlatform(p) => {
                format!("no verifier registered for platform {p:?}", p = p.as_str())
            }
        }
    }

    /// The [`Malformed`] detail under any locations, if this is one (what
    /// a test matches).
    pub fn malformed(&self) -> Option<&Malformed> {
        match self {
            AttestError::Malformed(m) => Some(m.innermost()),
            _ => None,
        }
    }

    /// Shorthand for an [`AttestError::IdentityMismatch`] over byte values.
    pub fn identity_mismatch(what: &str, expected: &[u8], found: &[u8]) -> Self {
        AttestError::IdentityMismatch {
            what: what.to_owned(),
            expected: hex::encode(expected),
            found: hex::encode(found),
        }
    }

    /// Places a [`Malformed`] error inside an enclosing structure or field
    /// (`location`), keeping its kind and detail; other kinds pass through
    /// unchanged.
    pub fn within(self, location: impl Into<String>) -> Self {
        match self {
            AttestError::Malformed(inner) => AttestError::Malformed(Malformed::Within {
                location: location.into(),
                inner: Box::new(inner),
            }),
            other => other,
        }
    }
}

macro_rules! from_detail {
    ($($detail:ident),*) => {$(
        impl From<$detail> for AttestError {
            fn from(d: $detail) -> Self {
                AttestError::$detail(d)
            }
        }
    )*};
}

from_detail!(
    Malformed,
    BadSignature,
    UntrustedChain,
    CollateralMissing,
    CollateralExpired,
    Revoked,
    Insecure,
    Unavailable
);

impl fmt::Display for AttestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for AttestError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_selections_are_described_by_number() {
        assert_eq!(
            describe_pcr_selection(&[0xff, 0xff, 0xff]),
            "PCRs 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23"
        );
        assert_eq!(describe_pcr_selection(&[0x01, 0x40, 0x80]), "PCRs 0,14,23");
        assert_eq!(describe_pcr_selection(&[0x06]), "PCRs 1,2");
        assert_eq!(describe_pcr_selection(&[0, 0, 0]), "no PCRs");
        assert_eq!(describe_pcr_selection(&[]), "no PCRs");
    }

    #[test]
    fn display_is_kind_then_message() {
        let e = AttestError::identity_mismatch("rtmr3", &[0xaa], &[0xbb]);
        assert_eq!(
            e.to_string(),
            "identity_mismatch: rtmr3: evidence has aa, recomputed bb"
        );
        assert_eq!(e.kind(), ErrorKind::IdentityMismatch);
        let e = AttestError::UnsupportedPlatform(PlatformId::from_static("nitro"));
        assert_eq!(
            e.to_string(),
            "unsupported_platform: no verifier registered for platform \"nitro\""
        );
        let e: AttestError = Insecure::Vmpl {
            expected: 0,
            found: 2,
        }
        .into();
        assert_eq!(
            e.to_string(),
            "insecure: report from VMPL 2, expected VMPL 0"
        );
        assert_eq!(e.kind(), ErrorKind::Insecure);
    }

    #[test]
    fn within_keeps_the_detail_matchable() {
        let inner = Malformed::TooLarge {
            what: "event log".into(),
            size: 9,
            max: 8,
        };
        let e = AttestError::from(inner.clone())
            .within("a field")
            .within("an extension");
        assert_eq!(
            e.message(),
            "an extension: a field: event log is 9 bytes, at most 8 accepted"
        );
        assert_eq!(e.malformed(), Some(&inner));
        assert!(!inner.is_truncated());
        // Other kinds pass through.
        let e = AttestError::from(Revoked::Tcb {
            detail: "revoked".into(),
        });
        assert_eq!(e.clone().within("x"), e);
        assert_eq!(e.malformed(), None);
    }

    #[test]
    fn every_detail_prints_its_facts() {
        let cases: Vec<(AttestError, &str)> = vec![
            (
                Malformed::ReservedNonZero {
                    context: "report",
                    field: "reserved".into(),
                    range: 0x1f8..0x200,
                }
                .into(),
                "malformed: report bytes 0x1f8..0x200 (reserved) must be zero",
            ),
            (
                Malformed::BadLength {
                    what: "app id".into(),
                    expected: 20,
                    found: 3,
                }
                .into(),
                "malformed: app id must be 20 bytes, found 3",
            ),
            (
                Malformed::BadValue {
                    what: "version".into(),
                    expected: "3".into(),
                    found: "4".into(),
                }
                .into(),
                "malformed: version: expected 3, found 4",
            ),
            (
                BadSignature::DoesNotVerify {
                    signed: "the report".into(),
                    signer: Some("SEV-VCEK".into()),
                }
                .into(),
                "bad_signature: the SEV-VCEK signature over the report does not verify",
            ),
            (
                UntrustedChain::OutsideValidity {
                    what: "VCEK".into(),
                    not_before: 1,
                    not_after: 2,
                    now: 3,
                }
                .into(),
                "untrusted_chain: VCEK is valid 1..2, not at 3",
            ),
            (
                Unavailable::Source {
                    source: "https://kds".into(),
                    detail: "timed out".into(),
                }
                .into(),
                "unavailable: https://kds: timed out",
            ),
            (
                CollateralMissing::NotFound {
                    detail: "no TCB info for fmspc 00906ed50000".into(),
                }
                .into(),
                "collateral_missing: no TCB info for fmspc 00906ed50000",
            ),
            (
                CollateralMissing::WrongSet {
                    detail: "an SGX TCB info".into(),
                }
                .into(),
                "collateral_missing: an SGX TCB info",
            ),
            (
                CollateralExpired::Expired {
                    detail: "the PCK CRL ended 2025-01-01".into(),
                }
                .into(),
                "collateral_expired: the PCK CRL ended 2025-01-01",
            ),
            (
                CollateralExpired::NotYetValid {
                    detail: "the TCB info starts 2030-01-01".into(),
                }
                .into(),
                "collateral_expired: the TCB info starts 2030-01-01",
            ),
            (
                Revoked::Certificate {
                    detail: "the ASK is on the ARK's CRL".into(),
                }
                .into(),
                "revoked: the ASK is on the ARK's CRL",
            ),
            (
                Revoked::Tcb {
                    detail: "TCB level revoked".into(),
                }
                .into(),
                "revoked: TCB level revoked",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }

    /// The paravisor pinning details print what their former free text
    /// said (operators and the workspace tests read it).
    #[test]
    fn layer_pinning_details_print_the_former_texts() {
        let cases: Vec<(Insecure, &str)> = vec![
            (
                Insecure::UnpinnedLayer {
                    platform: "az-snp-vtpm".into(),
                    register: "measurement",
                    found: "a7a7".into(),
                },
                "az-snp-vtpm: measurement a7a7 is not a pinned paravisor's",
            ),
            (
                Insecure::NoLayerPinned {
                    platform: "az-tdx-vtpm".into(),
                    tee: "TD",
                },
                "az-tdx-vtpm: no paravisor is pinned ([platform.az-tdx-vtpm] paravisors): without one, any TD guest could frame vTPM evidence",
            ),
            (
                Insecure::LayerRegisterExtended {
                    platform: "az-tdx-vtpm".into(),
                    register: "rtmr3",
                },
                "az-tdx-vtpm: rtmr3 of the TD quote is extended, so the TD is not Azure's paravisor (which extends no RTMR)",
            ),
        ];
        for (i, text) in cases {
            assert_eq!(i.to_string(), text);
        }
    }

    /// The decoder details print what the free-text `BadField` they
    /// replaced printed: dstack guests see these messages.
    #[test]
    fn decoder_details_print_the_former_texts() {
        let (context, field, offset) = ("ctx", || String::from("f"), 7);
        let cases: Vec<(Malformed, &str)> = vec![
            (
                Malformed::CountPastEnd {
                    context,
                    field: field(),
                    offset,
                    count: 9,
                    available: 3,
                },
                "ctx: f at offset 7: 9 elements cannot fit in the 3 bytes left",
            ),
            (
                Malformed::LengthPastEnd {
                    context,
                    field: field(),
                    offset,
                    length: 9,
                    container: "the report",
                    available: 3,
                },
                "ctx: f at offset 7: 9 runs past the end of the report (3 bytes left)",
            ),
            (
                Malformed::ContainerPastEnd {
                    context,
                    field: field(),
                    offset,
                    available: 3,
                },
                "ctx: f at offset 7: container cannot fit in the 3 bytes left",
            ),
            (
                Malformed::FieldTooLarge {
                    context,
                    field: field(),
                    offset,
                    size: 9,
                    unit: "elements",
                    max: 8,
                },
                "ctx: f at offset 7: 9 elements, at most 8 accepted",
            ),
            (
                Malformed::UnknownVariant {
                    context,
                    field: field(),
                    offset,
                    tag: 9,
                },
                "ctx: f at offset 7: unknown variant 9",
            ),
            (
                Malformed::NonCanonicalInteger {
                    context,
                    field: field(),
                    offset,
                },
                "ctx: f at offset 7: non-canonical compact integer",
            ),
            (
                Malformed::FieldLength {
                    context,
                    field: field(),
                    offset,
                    name: "an SNP report",
                    expected: 1184,
                    found: 1183,
                },
                "ctx: f at offset 7: 1183 bytes, an SNP report is 1184",
            ),
            (
                Malformed::WrongValueAt {
                    context,
                    field: field(),
                    offset,
                    expected: "1".into(),
                    found: "2".into(),
                },
                "ctx: f at offset 7: 2 is not 1",
            ),
            (
                Malformed::WrongType {
                    context,
                    field: field(),
                    offset,
                    expected: "a map",
                    found: "a string",
                },
                "ctx: f at offset 7: expected a map, found a string",
            ),
            (
                Malformed::MissingKey {
                    context,
                    field: field(),
                    offset,
                    key: "k".into(),
                },
                "ctx: f at offset 7: required key \"k\" is missing",
            ),
            (
                Malformed::DuplicateKey {
                    context,
                    field: field(),
                    offset,
                    key: "k".into(),
                },
                "ctx: f at offset 7: key \"k\" appears twice",
            ),
            (
                Malformed::ByteOutOfRange {
                    context,
                    field: field(),
                    offset,
                    value: 256,
                },
                "ctx: f at offset 7: byte value 256 exceeds 255",
            ),
            (
                Malformed::NotUtf8 {
                    context,
                    field: field(),
                    offset,
                    detail: "bad".into(),
                },
                "ctx: f at offset 7: not UTF-8: bad",
            ),
            (
                Malformed::PemLabel {
                    expected: "CERTIFICATE",
                    found: "PRIVATE KEY".into(),
                },
                "PEM: PEM block \"PRIVATE KEY\", expected CERTIFICATE",
            ),
        ];
        for (m, text) in cases {
            assert_eq!(m.to_string(), text);
        }
    }
}
