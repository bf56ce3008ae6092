//! RA-TLS certificates: where a dstack guest puts its attestation.
//!
//! A guest's TLS client certificate carries its evidence in private
//! extensions under `1.3.6.1.4.1.62397.1` (`dstack-wire.md` §1.2). Each
//! `extnValue` holds a DER OCTET STRING wrapping the payload, so the payload
//! is an OCTET STRING inside the extension's OCTET STRING:
//!
//! | OID | payload |
//! |---|---|
//! | `.1.1` | raw TDX quote (legacy, guests ≤ v0.5.8) |
//! | `.1.2` | JSON event log (legacy, with `.1.1`) |
//! | `.1.3` | app id, raw bytes (KMS-issued certificates) |
//! | `.1.4` | "special usage" text: `kms:rpc`, `app:ca`, `app:custom` |
//! | `.1.8` | `VersionedAttestation` (V0 SCALE or V1 msgpack) |
//! | `.1.9` | AppInfo, msgpack (SignCert-issued certificates) |
//!
//! [`RaTlsCert::attestation`] prefers `.1.8` and falls back to the legacy
//! `.1.1` + `.1.2` pair, as dstack's KMS does. The certificate's own
//! signature and chain are not checked: the issuing temp CA's key is public
//! (dstack hands it out), so only the report-data binding to the
//! certificate's key, plus the TLS handshake's proof of possession of that
//! key, say anything.

use attest_core::der::tlv;
use attest_core::eventlog::{LogEvent, parse_json_event_log};
use attest_core::reader::Reader;
use attest_core::{AttestError, Malformed, PlatformId, ReportData};
use der::Decode;
use der::oid::ObjectIdentifier;
use x509_cert::Certificate;

use crate::attestation::{MAX_ATTESTATION_LEN, VersionedAttestation};
use crate::binding::check_ratls_binding;
use crate::quote::TdxQuoteFields;
use crate::within;

/// dstack's OIDs (`dstack/ra-tls/src/oids.rs`).
pub mod oids {
    use der::oid::ObjectIdentifier;

    /// `.1.1`: raw TDX quote (legacy).
    pub const TDX_QUOTE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.62397.1.1");
    /// `.1.2`: JSON event log (legacy, paired with `.1.1`).
    pub const EVENT_LOG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.62397.1.2");
    /// `.1.3`: app id (raw bytes).
    pub const APP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.62397.1.3");
    /// `.1.4`: special usage (UTF-8 text).
    pub const SPECIAL_USAGE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.62397.1.4");
    /// `.1.8`: `VersionedAttestation`.
    pub const ATTESTATION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.62397.1.8");
    /// `.1.9`: AppInfo (msgpack).
    pub const APP_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.62397.1.9");
}

/// Largest certificate accepted: an attestation plus ample room for the rest.
pub const MAX_CERT_LEN: usize = MAX_ATTESTATION_LEN + 64 * 1024;

/// The dstack extensions of a certificate, payloads unwrapped, each present
/// at most once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaTlsExtensions {
    /// `.1.1`: raw TDX quote.
    pub tdx_quote: Option<Vec<u8>>,
    /// `.1.2`: JSON event log.
    pub event_log: Option<Vec<u8>>,
    /// `.1.3`: app id.
    pub app_id: Option<Vec<u8>>,
    /// `.1.4`: special usage.
    pub special_usage: Option<String>,
    /// `.1.8`: encoded `VersionedAttestation`.
    pub attestation: Option<Vec<u8>>,
    /// `.1.9`: msgpack AppInfo (not decoded here).
    pub app_info: Option<Vec<u8>>,
}

/// An X.509 certificate's dstack-relevant parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaTlsCert {
    spki_der: Vec<u8>,
    extensions: RaTlsExtensions,
}

/// The payload inside an extension value: `OCTET STRING { payload }`.
fn unwrap_octets<'a>(oid: &ObjectIdentifier, value: &'a [u8]) -> Result<&'a [u8], AttestError> {
    let mut r = Reader::new(value, "RA-TLS extension");
    let inner = tlv(&mut r).map_err(|e| within(&format!("extension {oid}"), e))?;
    r.finish()
        .map_err(|e| within(&format!("extension {oid}"), e))?;
    if inner.tag != 0x04 {
        return Err(AttestError::from(Malformed::BadValue {
            what: "payload DER tag".into(),
            expected: "an OCTET STRING (0x04)".into(),
            found: format!("{:#04x}", inner.tag),
        })
        .within(format!("extension {oid}")));
    }
    Ok(inner.contents)
}

/// The SubjectPublicKeyInfo exactly as it appears in the certificate (the
/// binding hashes these bytes, never a re-encoding):
/// `Certificate ::= SEQUENCE { tbs SEQUENCE { [0] version OPTIONAL, serial,
/// signature, issuer, validity, subject, spki, ... }, ... }`.
fn spki_bytes(der: &[u8]) -> Result<&[u8], AttestError> {
    let bad = |expected: &str| {
        AttestError::from(Malformed::BadValue {
            what: "certificate DER layout".into(),
            expected: expected.into(),
            found: "another layout".into(),
        })
    };
    let mut r = Reader::new(der, "certificate");
    let cert = tlv(&mut r)?;
    let mut r = Reader::new(cert.contents, "certificate");
    let tbs = tlv(&mut r)?;
    if cert.tag != 0x30 || tbs.tag != 0x30 {
        return Err(bad("a SEQUENCE holding a TBSCertificate SEQUENCE"));
    }
    let mut r = Reader::new(tbs.contents, "TBSCertificate");
    let mut el = tlv(&mut r)?;
    if el.tag == 0xa0 {
        el = tlv(&mut r)?;
    }
    // serial (el), then signature, issuer, validity, subject.
    for _ in 0..4 {
        tlv(&mut r)?;
    }
    let spki = tlv(&mut r)?;
    if el.tag != 0x02 || spki.tag != 0x30 {
        return Err(bad(
            "a TBSCertificate of [0] version, serial INTEGER, four fields, SPKI SEQUENCE",
        ));
    }
    Ok(spki.whole)
}

impl RaTlsCert {
    /// Parses a DER certificate and extracts the dstack extensions and the
    /// SubjectPublicKeyInfo. A dstack extension that appears twice, or whose
    /// value is not an OCTET STRING in an OCTET STRING, is an error; other
    /// extensions are ignored.
    pub fn from_der(der: &[u8]) -> Result<Self, AttestError> {
        if der.len() > MAX_CERT_LEN {
            return Err(Malformed::TooLarge {
                what: "certificate".into(),
                size: der.len(),
                max: MAX_CERT_LEN,
            }
            .into());
        }
        let cert = Certificate::from_der(der).map_err(|e| {
            AttestError::from(Malformed::Syntax {
                what: "certificate".into(),
                detail: e.to_string(),
            })
        })?;
        let spki_der = spki_bytes(der)?.to_vec();
        let mut ext = RaTlsExtensions::default();
        for e in cert.tbs_certificate().extensions().into_iter().flatten() {
            let oid = e.extn_id;
            let slot = if oid == oids::SPECIAL_USAGE {
                if ext.special_usage.is_some() {
                    return Err(duplicate(&oid));
                }
                let payload = unwrap_octets(&oid, e.extn_value.as_bytes())?;
                let text = std::str::from_utf8(payload).map_err(|_| {
                    AttestError::from(Malformed::Syntax {
                        what: "usage".into(),
                        detail: "not UTF-8".into(),
                    })
                    .within(format!("extension {oid}"))
                })?;
                ext.special_usage = Some(text.to_owned());
                continue;
            } else if oid == oids::TDX_QUOTE {
                &mut ext.tdx_quote
            } else if oid == oids::EVENT_LOG {
                &mut ext.event_log
            } else if oid == oids::APP_ID {
                &mut ext.app_id
            } else if oid == oids::ATTESTATION {
                &mut ext.attestation
            } else if oid == oids::APP_INFO {
                &mut ext.app_info
            } else {
                continue;
            };
            if slot.is_some() {
                return Err(duplicate(&oid));
            }
            *slot = Some(unwrap_octets(&oid, e.extn_value.as_bytes())?.to_vec());
        }
        Ok(RaTlsCert {
            spki_der,
            extensions: ext,
        })
    }

    /// The certificate's SubjectPublicKeyInfo, DER, as received.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The dstack extensions.
    pub fn extensions(&self) -> &RaTlsExtensions {
        &self.extensions
    }

    /// The attestation the certificate carries: `.1.8` when present (its
    /// decoding errors are final, there is no fall-back), else the legacy
    /// `.1.1` + `.1.2` pair (both needed), else `None`.
    pub fn attestation(&self) -> Result<Option<GuestAttestation>, AttestError> {
        let ext = &self.extensions;
        if let Some(bytes) = &ext.attestation {
            return VersionedAttestation::decode(bytes)
                .map(|a| Some(GuestAttestation::Versioned(a)))
                .map_err(|e| within(&format!("extension {}", oids::ATTESTATION), e));
        }
        match (&ext.tdx_quote, &ext.event_log) {
            (Some(quote), Some(log)) => LegacyTdxAttestation::new(quote.clone(), log.clone())
                .map(|l| Some(GuestAttestation::Legacy(l))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(Malformed::Missing {
                what: "legacy event log",
                detail: format!(
                    "certificate has a legacy TDX quote ({}) but no event log ({})",
                    oids::TDX_QUOTE,
                    oids::EVENT_LOG
                ),
            }
            .into()),
            (None, Some(_)) => Err(Malformed::Missing {
                what: "legacy TDX quote",
                detail: format!(
                    "certificate has a legacy event log ({}) but no TDX quote ({})",
                    oids::EVENT_LOG,
                    oids::TDX_QUOTE
                ),
            }
            .into()),
        }
    }

    /// The attestation, required, whose report data is the RA-TLS binding of
    /// this certificate's key: what the dstack-compatible front end accepts
    /// from a client certificate. The caller must still have the platform
    /// verifier check the quote against [`crate::ratls_report_data`] of
    /// [`Self::spki_der`].
    pub fn bound_attestation(&self) -> Result<GuestAttestation, AttestError> {
        let att = self.attestation()?.ok_or_else(|| {
            AttestError::from(Malformed::Missing {
                what: "dstack attestation",
                detail: "certificate carries no dstack attestation".into(),
            })
        })?;
        att.check_ratls_binding(&self.spki_der)?;
        Ok(att)
    }
}

fn duplicate(oid: &ObjectIdentifier) -> AttestError {
    Malformed::Unexpected {
        what: "duplicate extension",
        detail: format!("certificate has extension {oid} twice"),
    }
    .into()
}

/// The legacy RA-TLS evidence: a raw TDX quote and the full JSON event log
/// (boot events and runtime events), from guests ≤ v0.5.8.
///
/// There is no separate report-data field: dstack takes it from the quote's
/// REPORTDATA, and so does this type (read when it is built, so a value in
/// hand always has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyTdxAttestation {
    quote: Vec<u8>,
    event_log: Vec<u8>,
    events: Vec<LogEvent>,
    report_data: ReportData,
}

impl LegacyTdxAttestation {
    /// Checks the pair: the quote must be a v4/v5 TDX quote long enough to
    /// hold REPORTDATA, and the event log dstack's JSON list.
    pub fn new(quote: Vec<u8>, event_log: Vec<u8>) -> Result<Self, AttestError> {
        if quote.len().saturating_add(event_log.len()) > MAX_ATTESTATION_LEN {
            return Err(Malformed::TooLarge {
                what: "legacy TDX quote and event log".into(),
                size: quote.len().saturating_add(event_log.len()),
                max: MAX_ATTESTATION_LEN,
            }
            .into());
        }
        let fields = TdxQuoteFields::read(&quote)?;
        let events = parse_json_event_log(&event_log).map_err(|e| within("legacy event log", e))?;
        Ok(LegacyTdxAttestation {
            quote,
            event_log,
            events,
            report_data: ReportData(fields.report_data),
        })
    }

    /// The raw quote.
    pub fn quote(&self) -> &[u8] {
        &self.quote
    }

    /// The JSON event log, as received.
    pub fn event_log(&self) -> &[u8] {
        &self.event_log
    }

    /// The event log, parsed (nothing in it is trusted before a replay).
    pub fn events(&self) -> &[LogEvent] {
        &self.events
    }

    /// The quote's REPORTDATA.
    pub fn report_data(&self) -> &ReportData {
        &self.report_data
    }
}

/// What a guest presents: a versioned attestation or the legacy pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestAttestation {
    /// `.1.8` (or a V2 CSR's attestation).
    Versioned(VersionedAttestation),
    /// `.1.1` + `.1.2` (or a V1 CSR's quote and event log).
    Legacy(LegacyTdxAttestation),
}

impl GuestAttestation {
    /// The runtime events it states, in order (trusted only once the
    /// verifier replays them to the quoted register, which also proves the
    /// list complete).
    pub fn runtime_events(&self) -> Vec<&attest_core::eventlog::RuntimeEvent> {
        match self {
            GuestAttestation::Versioned(a) => a.runtime_events().iter().collect(),
            GuestAttestation::Legacy(l) => {
                l.events().iter().filter_map(LogEvent::as_runtime).collect()
            }
        }
    }

    /// The plug-in that verifies it.
    pub fn platform(&self) -> PlatformId {
        match self {
            GuestAttestation::Versioned(a) => a.platform(),
            GuestAttestation::Legacy(_) => PlatformId::TDX,
        }
    }

    /// The report data it claims (legacy: the quote's REPORTDATA).
    pub fn report_data(&self) -> &ReportData {
        match self {
            GuestAttestation::Versioned(a) => a.report_data(),
            GuestAttestation::Legacy(l) => l.report_data(),
        }
    }

    /// Requires its report data to be the RA-TLS binding of `spki_der`;
    /// [`AttestError::BindingMismatch`] otherwise.
    pub fn check_ratls_binding(&self, spki_der: &[u8]) -> Result<(), AttestError> {
        check_ratls_binding(self.report_data(), spki_der)
    }
}

impl VersionedAttestation {
    /// Requires its report data to be the RA-TLS binding of `spki_der`;
    /// [`AttestError::BindingMismatch`] otherwise.
    pub fn check_ratls_binding(&self, spki_der: &[u8]) -> Result<(), AttestError> {
        check_ratls_binding(self.report_data(), spki_der)
    }
}
