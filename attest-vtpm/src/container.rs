//! The evidence container: the JSON document an Azure vTPM attester sends
//! (Trustee / az-cvm-vtpm format), and the bincode form of the TPM quote.
//!
//! Accepted forms, and nothing else (unknown members, `null`s and
//! duplicate members are refused):
//!
//! | form | members |
//! |---|---|
//! | SNP v0 | `quote: {signature: [u8], message: [u8], pcrs: [[u8;32];24]}`, `report: [u8]` (HCL), `vcek: "<PEM>"` |
//! | TDX v0 | `tpm_quote` (as v0 `quote`), `hcl_report: [u8]`, `td_quote: [u8]` |
//! | v1, v2 | `version: 1\|2`, `tpm_quote: {signature: hex, message: hex, pcrs: [hex;24]}`, `hcl_report: b64url`, and `vcek: b64url(DER)` (SNP, optional) or `td_quote: b64url` (TDX) |
//!
//! Base64url is accepted with or without padding (the vectors pad it);
//! hex in either case. The document and every field are bounded before
//! anything is decoded (reference P11): arrays stop at their limit while
//! being read, text is measured before it is decoded.

use std::marker::PhantomData;

use attest_core::reader::Reader;
use attest_core::{AttestError, Malformed};
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::claims::present;
use crate::hcl::MAX_HCL_REPORT;
use crate::tpm::{MAX_MESSAGE, PCR_COUNT, Pcrs};

/// Largest accepted container document. The worst legitimate v0 document
/// (every field at its limit, bytes written as decimal arrays) is about
/// 90 KiB.
pub const MAX_DOCUMENT: usize = 128 * 1024;
/// Largest accepted TPM signature (RSA-4096); its exact length is checked
/// against the AK modulus later.
pub const MAX_SIGNATURE: usize = 512;
/// Largest accepted VCEK field: one DER certificate, or a PEM bundle of
/// VCEK, ASK and ARK.
pub const MAX_VCEK: usize = 16 * 1024;
/// Largest accepted TD quote (real v4 quotes with their PCK chain are about
/// 5 KiB).
pub const MAX_TD_QUOTE: usize = 16 * 1024;

const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Which container form carried the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerVersion {
    /// No `version` member: byte arrays.
    V0,
    /// `"version": 1`.
    V1,
    /// `"version": 2` (Trustee: the claims' `user-data` holds the report
    /// data).
    V2,
}

/// The VCEK as the container carries it. Untrusted (reference P9): the
/// SNP verifier chains it to its pinned ARK.
#[derive(Clone, PartialEq, Eq)]
pub enum Vcek {
    /// v0: PEM text, possibly a bundle of VCEK, ASK and ARK.
    Pem(Vec<u8>),
    /// v1/v2: one DER certificate.
    Der(Vec<u8>),
}

impl Vcek {
    /// The bytes as carried (PEM text or DER), in a form attest-snp's
    /// `certs_from_evidence` accepts.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Vcek::Pem(b) | Vcek::Der(b) => b,
        }
    }
}

impl std::fmt::Debug for Vcek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Vcek::Pem(b) => write!(f, "Vcek::Pem({} bytes)", b.len()),
            Vcek::Der(b) => write!(f, "Vcek::Der({} bytes)", b.len()),
        }
    }
}

/// What endorses the HCL report's hardware report.
#[derive(Clone, PartialEq, Eq)]
pub enum Endorsement {
    /// SNP: the VCEK that signs the SNP report.
    Vcek(Vcek),
    /// TDX: the DCAP TD quote whose REPORTDATA binds the claims (the
    /// TDREPORT inside the HCL report is only MAC'd).
    TdQuote(Vec<u8>),
    /// SNP, with no VCEK in the container (a v1/v2 document without
    /// `vcek`): the verifier takes it from `Evidence.certificates` or its
    /// VCEK sources.
    NoVcek,
}

impl std::fmt::Debug for Endorsement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endorsement::Vcek(v) => write!(f, "Endorsement::Vcek({v:?})"),
            Endorsement::TdQuote(q) => write!(f, "Endorsement::TdQuote({} bytes)", q.len()),
            Endorsement::NoVcek => f.write_str("Endorsement::NoVcek"),
        }
    }
}

/// The TPM quote as carried: the raw RSASSA signature, the `TPMS_ATTEST`
/// message, and the 24 PCR values read after the quote (unsigned until
/// checked against the message's `pcrDigest`).
#[derive(Clone, PartialEq, Eq)]
pub struct TpmQuote {
    signature: Vec<u8>,
    message: Vec<u8>,
    pcrs: Pcrs,
}

impl TpmQuote {
    /// A quote from its parts, with the same bounds as the container
    /// (signature at most 512 bytes, message at most 1 KiB).
    pub fn new(signature: Vec<u8>, message: Vec<u8>, pcrs: Pcrs) -> Result<Self, AttestError> {
        if signature.len() > MAX_SIGNATURE {
            return Err(too_big(
                "tpm_quote.signature",
                signature.len(),
                MAX_SIGNATURE,
            ));
        }
        if message.len() > MAX_MESSAGE {
            return Err(too_big("tpm_quote.message", message.len(), MAX_MESSAGE));
        }
        Ok(TpmQuote {
            signature,
            message,
            pcrs,
        })
    }

    /// Decodes the bincode form (`quote.bin`): `{signature: Vec<u8>,
    /// message: Vec<u8>, pcrs: Vec<[u8; 32]>}` with u64 little-endian
    /// lengths, exactly 24 PCRs and no trailing bytes.
    pub fn from_bincode(bytes: &[u8]) -> Result<Self, AttestError> {
        let mut r = Reader::new(bytes, "bincode TPM quote");
        let mut vec = |what: &str, max: usize| -> Result<Vec<u8>, AttestError> {
            let n = r.u64_le(what)?;
            if n > max as u64 {
                return Err(too_big(what, usize::try_from(n).unwrap_or(usize::MAX), max));
            }
            Ok(r.take(n as usize, what)?.to_vec())
        };
        let signature = vec("signature", MAX_SIGNATURE)?;
        let message = vec("message", MAX_MESSAGE)?;
        let count = r.u64_le("pcrs")?;
        if count != PCR_COUNT as u64 {
            return Err(Malformed::BadValue {
                what: "bincode TPM quote pcrs".into(),
                expected: format!("{PCR_COUNT} values"),
                found: count.to_string(),
            }
            .into());
        }
        let mut pcrs = [[0u8; 32]; PCR_COUNT];
        for (i, p) in pcrs.iter_mut().enumerate() {
            *p = r.take_array::<32>(&format!("pcrs[{i}]"))?;
        }
        r.finish()?;
        TpmQuote::new(signature, message, Pcrs::new(pcrs))
    }

    /// Decodes a standalone quote in the v1 JSON form
    /// (`{"signature": hex, "message": hex, "pcrs": [hex; 24]}`, as in
    /// `tpm-quote-v1.json`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestError> {
        check_document(bytes)?;
        let raw: RawQuote =
            serde_json::from_slice(bytes).map_err(|e| syntax("TPM quote JSON", e))?;
        raw.decode_as(Some(Encoding::Hex))
    }

    /// The raw RSASSA-PKCS1-v1_5 signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The `TPMS_ATTEST` bytes the signature covers.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// The 24 supplied PCR values.
    pub fn pcrs(&self) -> &Pcrs {
        &self.pcrs
    }
}

impl std::fmt::Debug for TpmQuote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmQuote")
            .field("signature_len", &self.signature.len())
            .field("message", &hex::encode(&self.message))
            .finish()
    }
}

/// A decoded evidence container. Nothing in it is checked beyond sizes and
/// encodings; [`crate::check_container`] checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    version: ContainerVersion,
    tpm_quote: TpmQuote,
    hcl_report: Vec<u8>,
    endorsement: Endorsement,
}

impl Container {
    /// A container from its parts (for evidence that arrives in another
    /// shape), with the container's bounds.
    pub fn new(
        version: ContainerVersion,
        tpm_quote: TpmQuote,
        hcl_report: Vec<u8>,
        endorsement: Endorsement,
    ) -> Result<Self, AttestError> {
        if hcl_report.len() > MAX_HCL_REPORT {
            return Err(too_big("hcl_report", hcl_report.len(), MAX_HCL_REPORT));
        }
        match &endorsement {
            Endorsement::Vcek(v) if v.as_bytes().len() > MAX_VCEK => {
                return Err(too_big("vcek", v.as_bytes().len(), MAX_VCEK));
            }
            Endorsement::TdQuote(q) if q.len() > MAX_TD_QUOTE => {
                return Err(too_big("td_quote", q.len(), MAX_TD_QUOTE));
            }
            _ => {}
        }
        Ok(Container {
            version,
            tpm_quote,
            hcl_report,
            endorsement,
        })
    }

    /// Decodes a container document (any form in the module table).
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestError> {
        check_document(bytes)?;
        let raw: RawContainer =
            serde_json::from_slice(bytes).map_err(|e| syntax("vTPM evidence JSON", e))?;
        raw.decode()
    }

    /// The form the evidence came in.
    pub fn version(&self) -> ContainerVersion {
        self.version
    }

    /// The TPM quote.
    pub fn tpm_quote(&self) -> &TpmQuote {
        &self.tpm_quote
    }

    /// The HCL report bytes.
    pub fn hcl_report(&self) -> &[u8] {
        &self.hcl_report
    }

    /// The VCEK or the TD quote.
    pub fn endorsement(&self) -> &Endorsement {
        &self.endorsement
    }

    pub(crate) fn into_parts(self) -> (ContainerVersion, TpmQuote, Vec<u8>, Endorsement) {
        (
            self.version,
            self.tpm_quote,
            self.hcl_report,
            self.endorsement,
        )
    }
}

fn check_document(bytes: &[u8]) -> Result<(), AttestError> {
    if bytes.len() > MAX_DOCUMENT {
        return Err(too_big("vTPM evidence document", bytes.len(), MAX_DOCUMENT));
    }
    Ok(())
}

fn too_big(what: &str, size: usize, max: usize) -> AttestError {
    Malformed::TooLarge {
        what: what.into(),
        size,
        max,
    }
    .into()
}

/// A field of the container in the wrong form: `expected`, `found`.
fn bad(what: &str, expected: &str, found: &str) -> AttestError {
    Malformed::BadValue {
        what: format!("vTPM evidence {what}"),
        expected: expected.into(),
        found: found.into(),
    }
    .into()
}

/// A document or text field that does not decode.
fn syntax(what: &str, e: impl std::fmt::Display) -> AttestError {
    Malformed::Syntax {
        what: what.into(),
        detail: e.to_string(),
    }
    .into()
}

/// Members of the container that do not form one of its versions.
fn members(detail: &str) -> AttestError {
    Malformed::Unexpected {
        what: "members",
        detail: format!("vTPM evidence members: {detail}"),
    }
    .into()
}

// ---------------------------------------------------------------------------
// Raw serde forms, bounded while they are read.

/// A field's name and limit (decoded bytes).
trait Field {
    const NAME: &'static str;
    const MAX: usize;
}

macro_rules! field {
    ($ty:ident, $name:expr, $max:expr) => {
        struct $ty;
        impl Field for $ty {
            const NAME: &'static str = $name;
            const MAX: usize = $max;
        }
    };
}

field!(SignatureField, "tpm_quote.signature", MAX_SIGNATURE);
field!(MessageField, "tpm_quote.message", MAX_MESSAGE);
field!(PcrField, "tpm_quote.pcrs[]", 32);
field!(HclField, "hcl_report", MAX_HCL_REPORT);
field!(VcekField, "vcek", MAX_VCEK);
field!(TdQuoteField, "td_quote", MAX_TD_QUOTE);

/// How a v1/v2 text field is encoded.
#[derive(Clone, Copy)]
enum Encoding {
    Hex,
    Base64Url,
}

/// A byte field as JSON holds it: a number array (v0) or text (v1/v2).
enum RawBytes<F> {
    Array(Vec<u8>, PhantomData<F>),
    Text(String),
}

impl<F: Field> RawBytes<F> {
    /// The bytes of a v0 field (must be an array).
    fn array(self) -> Result<Vec<u8>, AttestError> {
        match self {
            RawBytes::Array(b, _) => Ok(b),
            RawBytes::Text(_) => Err(bad(F::NAME, "a byte array in a v0 container", "text")),
        }
    }

    /// The bytes of a v0 field (`None`) or of a v1/v2 field in `text`.
    fn decode(self, text: Option<Encoding>) -> Result<Vec<u8>, AttestError> {
        match text {
            None => self.array(),
            Some(enc) => self.text(enc),
        }
    }

    /// The bytes of a v1/v2 field (must be text in `enc`).
    fn text(self, enc: Encoding) -> Result<Vec<u8>, AttestError> {
        let s = match self {
            RawBytes::Text(s) => s,
            RawBytes::Array(..) => {
                return Err(bad(F::NAME, "text in a v1/v2 container", "a byte array"));
            }
        };
        let b = match enc {
            Encoding::Hex => hex::decode(&s).map_err(|e| {
                syntax(
                    &format!("vTPM evidence {}", F::NAME),
                    format!("not hex: {e}"),
                )
            })?,
            Encoding::Base64Url => B64URL.decode(&s).map_err(|e| {
                syntax(
                    &format!("vTPM evidence {}", F::NAME),
                    format!("not base64url: {e}"),
                )
            })?,
        };
        if b.len() > F::MAX {
            return Err(too_big(F::NAME, b.len(), F::MAX));
        }
        Ok(b)
    }
}

impl<'de, F: Field> Deserialize<'de> for RawBytes<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<F>(PhantomData<F>);
        impl<'de, F: Field> Visitor<'de> for V<F> {
            type Value = RawBytes<F>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}: a byte array or an encoded string", F::NAME)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(F::MAX));
                while let Some(b) = seq.next_element::<u8>()? {
                    if out.len() == F::MAX {
                        return Err(de::Error::custom(format!(
                            "{}: more than {} bytes",
                            F::NAME,
                            F::MAX
                        )));
                    }
                    out.push(b);
                }
                Ok(RawBytes::Array(out, PhantomData))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                // Hex is the longest text encoding: two characters a byte.
                if s.len() > 2 * F::MAX {
                    return Err(E::custom(format!(
                        "{}: {} characters, more than {} bytes can take",
                        F::NAME,
                        s.len(),
                        F::MAX
                    )));
                }
                Ok(RawBytes::Text(s.to_owned()))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// The `pcrs` list, read at most 24 entries deep.
struct RawPcrs(Vec<RawBytes<PcrField>>);

impl<'de> Deserialize<'de> for RawPcrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPcrs;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "tpm_quote.pcrs: a list of {PCR_COUNT} PCR values")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(PCR_COUNT);
                while let Some(p) = seq.next_element::<RawBytes<PcrField>>()? {
                    if out.len() == PCR_COUNT {
                        return Err(de::Error::custom(format!(
                            "tpm_quote.pcrs: more than {PCR_COUNT} values"
                        )));
                    }
                    out.push(p);
                }
                Ok(RawPcrs(out))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuote {
    signature: RawBytes<SignatureField>,
    message: RawBytes<MessageField>,
    pcrs: RawPcrs,
}

impl RawQuote {
    /// `None`: the v0 arrays; `Some(enc)`: v1/v2 text.
    fn decode_as(self, text: Option<Encoding>) -> Result<TpmQuote, AttestError> {
        let signature = self.signature.decode(text)?;
        let message = self.message.decode(text)?;
        if self.pcrs.0.len() != PCR_COUNT {
            return Err(bad(
                "tpm_quote.pcrs",
                &format!("{PCR_COUNT} values (sha256:0-23)"),
                &self.pcrs.0.len().to_string(),
            ));
        }
        let mut pcrs = [[0u8; 32]; PCR_COUNT];
        for (i, (slot, raw)) in pcrs.iter_mut().zip(self.pcrs.0).enumerate() {
            let v = raw.decode(text)?;
            *slot = v.as_slice().try_into().map_err(|_| {
                AttestError::from(Malformed::BadLength {
                    what: format!("vTPM evidence tpm_quote.pcrs[{i}]"),
                    expected: 32,
                    found: v.len(),
                })
            })?;
        }
        TpmQuote::new(signature, message, Pcrs::new(pcrs))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    #[serde(default, deserialize_with = "present")]
    version: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    quote: Option<RawQuote>,
    #[serde(default, deserialize_with = "present")]
    report: Option<RawBytes<HclField>>,
    #[serde(default, deserialize_with = "present")]
    tpm_quote: Option<RawQuote>,
    #[serde(default, deserialize_with = "present")]
    hcl_report: Option<RawBytes<HclField>>,
    #[serde(default, deserialize_with = "present")]
    vcek: Option<RawBytes<VcekField>>,
    #[serde(default, deserialize_with = "present")]
    td_quote: Option<RawBytes<TdQuoteField>>,
}

impl RawContainer {
    fn decode(self) -> Result<Container, AttestError> {
        let RawContainer {
            version,
            quote,
            report,
            tpm_quote,
            hcl_report,
            vcek,
            td_quote,
        } = self;
        match version {
            None => match (quote, report, vcek, tpm_quote, hcl_report, td_quote) {
                // SNP v0.
                (Some(q), Some(r), Some(v), None, None, None) => {
                    let pem = match v {
                        RawBytes::Text(s) => s.into_bytes(),
                        RawBytes::Array(..) => {
                            return Err(bad("vcek", "PEM text in a v0 container", "a byte array"));
                        }
                    };
                    if !pem.starts_with(b"-----BEGIN CERTIFICATE-----") {
                        return Err(bad("vcek", "a PEM certificate", "other text"));
                    }
                    Container::new(
                        ContainerVersion::V0,
                        q.decode_as(None)?,
                        r.array()?,
                        Endorsement::Vcek(Vcek::Pem(pem)),
                    )
                }
                // TDX v0.
                (None, None, None, Some(q), Some(r), Some(t)) => Container::new(
                    ContainerVersion::V0,
                    q.decode_as(None)?,
                    r.array()?,
                    Endorsement::TdQuote(nonempty("td_quote", t.array()?)?),
                ),
                _ => Err(members(
                    "a v0 container has either quote, report and vcek (SNP) or tpm_quote, hcl_report and td_quote (TDX)",
                )),
            },
            Some(v @ (1 | 2)) => {
                let version = if v == 1 {
                    ContainerVersion::V1
                } else {
                    ContainerVersion::V2
                };
                let (q, r) = match (quote, report, tpm_quote, hcl_report) {
                    (None, None, Some(q), Some(r)) => (q, r),
                    _ => {
                        return Err(members(
                            "a v1/v2 container has tpm_quote and hcl_report (not quote or report)",
                        ));
                    }
                };
                let endorsement = match (vcek, td_quote) {
                    (Some(v), None) => {
                        let der = v.text(Encoding::Base64Url)?;
                        check_der_certificate(&der)?;
                        Endorsement::Vcek(Vcek::Der(der))
                    }
                    (None, Some(t)) => {
                        Endorsement::TdQuote(nonempty("td_quote", t.text(Encoding::Base64Url)?)?)
                    }
                    (None, None) => Endorsement::NoVcek,
                    (Some(_), Some(_)) => {
                        return Err(members("vcek (SNP) and td_quote (TDX) exclude each other"));
                    }
                };
                Container::new(
                    version,
                    q.decode_as(Some(Encoding::Hex))?,
                    r.text(Encoding::Base64Url)?,
                    endorsement,
                )
            }
            Some(v) => Err(bad("version", "1 or 2", &v.to_string())),
        }
    }
}

fn nonempty(what: &'static str, b: Vec<u8>) -> Result<Vec<u8>, AttestError> {
    if b.is_empty() {
        Err(Malformed::Missing {
            what,
            detail: format!("vTPM evidence {what}: empty"),
        }
        .into())
    } else {
        Ok(b)
    }
}

/// One DER SEQUENCE and nothing after it (the certificate itself is parsed
/// and chained by the SNP verifier).
fn check_der_certificate(der: &[u8]) -> Result<(), AttestError> {
    let mut r = Reader::new(der, "vcek");
    let tlv = attest_core::der::tlv(&mut r)?;
    r.finish()?;
    if tlv.tag != 0x30 {
        return Err(bad(
            "vcek",
            "a DER certificate (SEQUENCE)",
            &format!("DER tag {:#04x}", tlv.tag),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcrs_hex(n: usize) -> String {
        let v: Vec<String> = (0..n).map(|_| format!("\"{}\"", "00".repeat(32))).collect();
        format!("[{}]", v.join(","))
    }

    fn v1(extra: &str, pcrs: &str) -> String {
        format!(
            r#"{{"version":1,"tpm_quote":{{"signature":"00","message":"ff","pcrs":{pcrs}}},"hcl_report":"SENMQQ","td_quote":"AA=="{extra}}}"#
        )
    }

    /// The typed detail of a refused document.
    fn malformed(doc: &str) -> Malformed {
        let e = Container::parse(doc.as_bytes()).unwrap_err();
        e.malformed()
            .unwrap_or_else(|| panic!("not malformed: {e}"))
            .clone()
    }

    /// A document the JSON decoder refuses: serde's own words (what
    /// `deny_unknown_fields` and the bounded visitors say).
    fn err(doc: &str) -> String {
        match malformed(doc) {
            Malformed::Syntax { what, detail } if what == "vTPM evidence JSON" => detail,
            other => panic!("not a JSON refusal: {other:?}"),
        }
    }

    /// `BadValue`'s field and found value.
    fn bad_value(doc: &str) -> (String, String) {
        match malformed(doc) {
            Malformed::BadValue { what, found, .. } => (what, found),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_v1_tdx() {
        let c = Container::parse(v1("", &pcrs_hex(24)).as_bytes()).unwrap();
        assert_eq!(c.version(), ContainerVersion::V1);
        assert_eq!(c.hcl_report(), b"HCLA");
        assert_eq!(c.endorsement(), &Endorsement::TdQuote(vec![0]));
        assert_eq!(c.tpm_quote().message(), &[0xff]);
    }

    #[test]
    fn strict_members() {
        assert!(err(&v1(r#","extra":1"#, &pcrs_hex(24))).contains("unknown field"));
        assert!(matches!(
            malformed(&v1(r#","vcek":"MAA""#, &pcrs_hex(24))),
            Malformed::Unexpected { what: "members", detail } if detail.contains("exclude each other")
        ));
        assert!(err(&v1(r#","vcek":null"#, &pcrs_hex(24))).contains("invalid type: null"));
        assert!(err(&v1(r#","version":1"#, &pcrs_hex(24))).contains("duplicate field"));
        assert_eq!(
            bad_value(&v1("", &pcrs_hex(23))),
            ("vTPM evidence tpm_quote.pcrs".into(), "23".into())
        );
        assert!(err(&v1("", &pcrs_hex(25))).contains("more than 24 values"));
        let doc = v1("", &pcrs_hex(24)).replace("\"version\":1", "\"version\":3");
        assert_eq!(
            bad_value(&doc),
            ("vTPM evidence version".into(), "3".into())
        );
        let doc = v1("", &pcrs_hex(24)).replace("\"version\":1,", "");
        // Without a version it is a v0 container, whose fields are arrays.
        assert_eq!(
            bad_value(&doc),
            ("vTPM evidence tpm_quote.signature".into(), "text".into())
        );
        let doc = v1("", &pcrs_hex(24)).replace("\"00\",\"message\"", "[0],\"message\"");
        assert_eq!(
            bad_value(&doc),
            (
                "vTPM evidence tpm_quote.signature".into(),
                "a byte array".into()
            )
        );
        let doc = v1("", &pcrs_hex(24)).replace("SENMQQ", "SENMQQ+");
        assert!(matches!(
            malformed(&doc),
            Malformed::Syntax { what, detail }
                if what == "vTPM evidence hcl_report" && detail.starts_with("not base64url")
        ));
    }

    #[test]
    fn bounded_before_decoding() {
        let long = "0".repeat(2 * MAX_MESSAGE + 2);
        let doc = v1("", &pcrs_hex(24)).replace("\"ff\"", &format!("\"{long}\""));
        assert!(err(&doc).contains("characters, more than"));
        let arr = format!("[{}]", vec!["1"; MAX_SIGNATURE + 1].join(","));
        let doc = format!(
            r#"{{"quote":{{"signature":{arr},"message":[],"pcrs":[]}},"report":[],"vcek":"x"}}"#
        );
        assert!(err(&doc).contains("more than 512 bytes"));
        let huge = vec![b' '; MAX_DOCUMENT + 1];
        assert!(
            Container::parse(&huge)
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
        assert!(
            err(r#"{"quote":{"signature":[256],"message":[],"pcrs":[]},"report":[],"vcek":"x"}"#)
                .contains("invalid value")
        );
    }

    #[test]
    fn bincode_is_exact() {
        let mut b = Vec::new();
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(7);
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&[8, 9]);
        b.extend_from_slice(&24u64.to_le_bytes());
        b.extend_from_slice(&[0u8; 24 * 32]);
        let q = TpmQuote::from_bincode(&b).unwrap();
        assert_eq!((q.signature(), q.message()), (&[7u8][..], &[8u8, 9][..]));
        for cut in 0..b.len() {
            assert!(TpmQuote::from_bincode(&b[..cut]).is_err());
        }
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(TpmQuote::from_bincode(&trailing).is_err());
        let mut huge = b.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(TpmQuote::from_bincode(&huge).is_err());
    }
}
