//! V1: dstack's msgpack encoding of an attestation (`rmp_serde::to_vec_named`).
//!
//! ```text
//! {version: 1,
//!  platform: {kind: "tdx",     data: {quote, event_log: [{imr, event_type, digest, event, event_payload[, version]}]}}
//!          | {kind: "sev-snp", data: {report, cert_chain: [bytes], mr_config}}
//!          | {kind: "gcp-tdx" | "nitro-enclave" | "aws-nitro-tpm", ...}   (refused: unsupported)
//!  stack:    {kind: "dstack" | "dstack-pod",
//!             data: {report_data, runtime_events: [{event, payload[, version]}], config[, report_data_payload]}}}
//! ```
//!
//! Every byte field is accepted both as `bin` and as an array of integers,
//! since dstack writes plain `Vec<u8>` fields one way and its
//! `serde_human_bytes` fields the other. Map keys may come in any order; a key
//! this decoder does not know is skipped (dstack's own serde decoder ignores
//! it too), a key seen twice is refused. Every field the reference lists
//! without brackets is required. Trailing bytes after the map are refused, as
//! V0 refuses them.

use attest_core::eventlog::{MAX_EVENT_NAME, MAX_EVENTS, RuntimeEvent, RuntimeEventVersion};
use attest_core::{AttestError, PlatformId, ReportData};

use crate::attestation::{
    AttestationVersion, MAX_CERT_CHAIN, PlatformQuote, SNP_REPORT_LEN, SnpQuote, StackKind,
    TdxEvent, TdxQuote, VersionedAttestation,
};
use crate::binding::app_data_report_data;
use crate::msgpack::{Msgpack, fields};

/// Longest `kind` string accepted.
const MAX_KIND: usize = 64;

/// A required field's value, or an error naming it.
fn required<T>(m: &Msgpack<'_>, what: &str, field: &str, v: Option<T>) -> Result<T, AttestError> {
    v.ok_or_else(|| m.missing_key(what, field))
}

/// Decodes a whole V1 attestation.
pub(crate) fn decode(bytes: &[u8]) -> Result<VersionedAttestation, AttestError> {
    let mut m = Msgpack::new(bytes);
    let start = m.clone();
    let mut version = None;
    let mut quote = None;
    let mut stack = None;
    fields(&mut m, "attestation", |key, m| {
        match key {
            "version" => version = Some(m.uint("version")?),
            "platform" => quote = Some(platform(m)?),
            "stack" => stack = Some(stack_part(m)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let version = required(&start, "attestation", "version", version)?;
    if version != 1 {
        return Err(start.wrong_value("version", 1, version));
    }
    let quote = required(&start, "attestation", "platform", quote)?;
    let (stack, runtime_events, report_data, config) =
        required(&start, "attestation", "stack", stack)?;
    m.finish()?;
    Ok(VersionedAttestation {
        version: AttestationVersion::V1,
        quote,
        stack,
        runtime_events,
        report_data,
        config,
    })
}

/// Reads a `{kind, data}` map; the data's position is kept and decoded once
/// the kind is known, whichever order the keys come in.
fn kind_and_data<'a>(
    m: &mut Msgpack<'a>,
    what: &str,
) -> Result<(String, Msgpack<'a>), AttestError> {
    let start = m.clone();
    let mut kind = None;
    let mut data = None;
    fields(m, what, |key, m| {
        match key {
            "kind" => kind = Some(m.str("kind", MAX_KIND)?.to_owned()),
            "data" => {
                data = Some(m.clone());
                m.skip("data")?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok((
        required(&start, what, "kind", kind)?,
        required(&start, what, "data", data)?,
    ))
}

fn platform(m: &mut Msgpack<'_>) -> Result<PlatformQuote, AttestError> {
    let (kind, mut data) = kind_and_data(m, "platform")?;
    match kind.as_str() {
        "tdx" => tdx_data(&mut data).map(PlatformQuote::Tdx),
        "sev-snp" => snp_data(&mut data).map(PlatformQuote::SevSnp),
        // dstack's other platforms, and any future one: no verifier here.
        other => match PlatformId::parse(other) {
            Ok(id) => Err(AttestError::UnsupportedPlatform(id)),
            Err(_) => Err(data.error(
                "platform.kind",
                format_args!("{other:?} is not a platform name"),
            )),
        },
    }
}

fn version_field(m: &mut Msgpack<'_>, what: &str) -> Result<RuntimeEventVersion, AttestError> {
    if m.nil() {
        return Ok(RuntimeEventVersion::V1);
    }
    let at = m.clone();
    match m.uint(what)? {
        1 => Ok(RuntimeEventVersion::V1),
        2 => Ok(RuntimeEventVersion::V2),
        v => Err(at.error(what, format_args!("unknown runtime event version {v}"))),
    }
}

fn tdx_data(m: &mut Msgpack<'_>) -> Result<TdxQuote, AttestError> {
    let start = m.clone();
    let mut quote = None;
    let mut event_log = None;
    fields(m, "platform.data", |key, m| {
        match key {
            "quote" => quote = Some(m.bytes("quote")?.into_owned()),
            "event_log" => {
                let n = m.array("event_log", MAX_EVENTS)?;
                let mut events = Vec::with_capacity(n);
                for i in 0..n {
                    events.push(tdx_event(m, i)?);
                }
                event_log = Some(events);
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(TdxQuote {
        quote: required(&start, "platform.data", "quote", quote)?,
        event_log: required(&start, "platform.data", "event_log", event_log)?,
    })
}

fn tdx_event(m: &mut Msgpack<'_>, i: usize) -> Result<TdxEvent, AttestError> {
    let what = format!("event_log[{i}]");
    let start = m.clone();
    let (mut imr, mut event_type, mut digest, mut event, mut payload) =
        (None, None, None, None, None);
    let mut version = RuntimeEventVersion::V1;
    fields(m, &what, |key, m| {
        match key {
            "imr" => imr = Some(m.u32("imr")?),
            "event_type" => event_type = Some(m.u32("event_type")?),
            "digest" => digest = Some(m.bytes("digest")?.into_owned()),
            "event" => event = Some(m.str("event", MAX_EVENT_NAME)?.to_owned()),
            "event_payload" => payload = Some(m.bytes("event_payload")?.into_owned()),
            "version" => version = version_field(m, "version")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(TdxEvent {
        imr: required(&start, &what, "imr", imr)?,
        event_type: required(&start, &what, "event_type", event_type)?,
        digest: required(&start, &what, "digest", digest)?,
        event: required(&start, &what, "event", event)?,
        event_payload: required(&start, &what, "event_payload", payload)?,
        version,
    })
}

fn snp_data(m: &mut Msgpack<'_>) -> Result<SnpQuote, AttestError> {
    let start = m.clone();
    let mut report = None;
    let mut cert_chain = None;
    let mut mr_config = None;
    fields(m, "platform.data", |key, m| {
        match key {
            "report" => {
                let at = m.clone();
                let b = m.bytes("report")?;
                let arr = <[u8; SNP_REPORT_LEN]>::try_from(&*b).map_err(|_| {
                    at.field_length("report", "an SNP report", SNP_REPORT_LEN, b.len())
                })?;
                report = Some(Box::new(arr));
            }
            "cert_chain" => {
                let n = m.array("cert_chain", MAX_CERT_CHAIN)?;
                let mut certs = Vec::with_capacity(n);
                for i in 0..n {
                    certs.push(m.bytes(&format!("cert_chain[{i}]"))?.into_owned());
                }
                cert_chain = Some(certs);
            }
            "mr_config" => mr_config = Some(m.str("mr_config", usize::MAX)?.to_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(SnpQuote {
        report: required(&start, "platform.data", "report", report)?,
        cert_chain: required(&start, "platform.data", "cert_chain", cert_chain)?,
        mr_config: required(&start, "platform.data", "mr_config", mr_config)?,
    })
}

type Stack = (StackKind, Vec<RuntimeEvent>, ReportData, String);

fn stack_part(m: &mut Msgpack<'_>) -> Result<Stack, AttestError> {
    let (kind, mut data) = kind_and_data(m, "stack")?;
    let pod = match kind.as_str() {
        "dstack" => false,
        "dstack-pod" => true,
        other => {
            return Err(data.error(
                "stack.kind",
                format_args!("unknown stack {other:?} (expected \"dstack\" or \"dstack-pod\")"),
            ));
        }
    };
    let start = data.clone();
    let mut report_data = None;
    let mut runtime_events = None;
    let mut config = None;
    let mut payload = None;
    fields(&mut data, "stack.data", |key, m| {
        match key {
            "report_data" => {
                let at = m.clone();
                let b = m.bytes("report_data")?;
                let arr = <[u8; 64]>::try_from(&*b).map_err(|_| {
                    at.error(
                        "report_data",
                        format_args!("{} bytes, expected 64", b.len()),
                    )
                })?;
                report_data = Some(ReportData(arr));
            }
            "runtime_events" => {
                let n = m.array("runtime_events", MAX_EVENTS)?;
                let mut events = Vec::with_capacity(n);
                for i in 0..n {
                    events.push(runtime_event(m, i)?);
                }
                runtime_events = Some(events);
            }
            "config" => config = Some(m.str("config", usize::MAX)?.to_owned()),
            // Read for both stacks; only a pod's report data is defined by it.
            "report_data_payload" => {
                if !m.nil() {
                    payload = Some(m.bytes("report_data_payload")?.into_owned());
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let report_data = required(&start, "stack.data", "report_data", report_data)?;
    let runtime_events = required(&start, "stack.data", "runtime_events", runtime_events)?;
    let config = required(&start, "stack.data", "config", config)?;
    let stack = if pod {
        let payload = required(&start, "stack.data", "report_data_payload", payload)?;
        // A pod's report data is defined by its payload: an attestation
        // where they disagree describes nothing.
        let expected = app_data_report_data(&payload);
        if expected != report_data {
            return Err(AttestError::BindingMismatch {
                expected: Box::new(expected),
                found: Box::new(report_data),
            });
        }
        StackKind::DstackPod {
            report_data_payload: payload,
        }
    } else {
        StackKind::Dstack
    };
    Ok((stack, runtime_events, report_data, config))
}

fn runtime_event(m: &mut Msgpack<'_>, i: usize) -> Result<RuntimeEvent, AttestError> {
    let what = format!("runtime_events[{i}]");
    let start = m.clone();
    let (mut name, mut payload) = (None, None);
    let mut version = RuntimeEventVersion::V1;
    fields(m, &what, |key, m| {
        match key {
            "event" => name = Some(m.str("event", MAX_EVENT_NAME)?.to_owned()),
            "payload" => payload = Some(m.bytes("payload")?.into_owned()),
            "version" => version = version_field(m, "version")?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(RuntimeEvent {
        name: required(&start, &what, "event", name)?,
        payload: required(&start, &what, "payload", payload)?,
        version,
    })
}
