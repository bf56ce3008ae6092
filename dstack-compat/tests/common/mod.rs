//! Shared by the integration tests: the vectors, and independent encoders.
//!
//! The encoders are the ones dstack itself uses (parity-scale-codec's derive
//! for V0 and CSRs, rmp-serde's `to_vec_named` for V1), fed with structs that
//! mirror dstack's, so the hand-written decoders are checked against another
//! implementation of each format rather than against themselves.
#![allow(dead_code)]

use std::path::PathBuf;

use attest_core::eventlog::RuntimeEventVersion;
use dstack_compat::{PlatformQuote, StackKind, VersionedAttestation};
use parity_scale_codec::Encode;
use serde::{Serialize, Serializer};

/// `shared/vectors`, next to the repository; a missing directory fails the
/// test (never a silent skip).
pub fn vectors() -> PathBuf {
    attest_testkit::vectors::dir()
}

/// Reads a vector, failing loudly if it is missing.
pub fn vector(rel: &str) -> Vec<u8> {
    attest_testkit::vectors::read(rel)
}

/// The real stripped V0 TDX attestation from dstack's verifier fixtures.
pub fn lite_attestation() -> Vec<u8> {
    vector("dstack/tdx-lite-attestation.bin")
}

// ---------------------------------------------------------------- SCALE (V0)

#[derive(Encode)]
pub struct ScaleTdxEvent {
    pub imr: u32,
    pub event_type: u32,
    pub digest: Vec<u8>,
    pub event: String,
    pub event_payload: Vec<u8>,
}

#[derive(Encode)]
pub enum ScaleQuote {
    #[codec(index = 0)]
    Tdx {
        quote: Vec<u8>,
        event_log: Vec<ScaleTdxEvent>,
    },
    #[codec(index = 3)]
    Snp {
        report: Vec<u8>,
        cert_chain: Vec<Vec<u8>>,
        mr_config: String,
    },
}

#[derive(Encode)]
pub struct ScaleRuntimeEvent {
    pub event: String,
    pub payload: Vec<u8>,
}

#[derive(Encode)]
pub struct ScaleAttestation {
    pub quote: ScaleQuote,
    pub runtime_events: Vec<ScaleRuntimeEvent>,
    pub report_data: [u8; 64],
    pub config: String,
}

#[derive(Encode)]
pub enum ScaleVersioned {
    #[codec(index = 0)]
    V0 { attestation: ScaleAttestation },
}

/// The V0 SCALE encoding of a decoded attestation, by parity-scale-codec.
pub fn scale_of(a: &VersionedAttestation) -> Vec<u8> {
    scale_with_report_data(a, a.report_data().0)
}

/// The same with another report data.
pub fn scale_with_report_data(a: &VersionedAttestation, report_data: [u8; 64]) -> Vec<u8> {
    let quote = match a.quote() {
        PlatformQuote::Tdx(t) => ScaleQuote::Tdx {
            quote: t.quote.clone(),
            event_log: t
                .event_log
                .iter()
                .map(|e| ScaleTdxEvent {
                    imr: e.imr,
                    event_type: e.event_type,
                    digest: e.digest.clone(),
                    event: e.event.clone(),
                    event_payload: e.event_payload.clone(),
                })
                .collect(),
        },
        PlatformQuote::SevSnp(s) => ScaleQuote::Snp {
            report: s.report.to_vec(),
            cert_chain: s.cert_chain.clone(),
            mr_config: s.mr_config.clone(),
        },
    };
    ScaleVersioned::V0 {
        attestation: ScaleAttestation {
            quote,
            runtime_events: a
                .runtime_events()
                .iter()
                .map(|e| ScaleRuntimeEvent {
                    event: e.name.clone(),
                    payload: e.payload.clone(),
                })
                .collect(),
            report_data,
            config: a.config().to_owned(),
        },
    }
    .encode()
}

// ------------------------------------------------------------- msgpack (V1)

/// How byte fields are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteMode {
    /// As dstack writes them: plain `Vec<u8>` (quote, report, report_data,
    /// cert_chain) as arrays of integers; `serde_human_bytes` fields
    /// (digest, event_payload, payload) as bin.
    Dstack,
    /// Every byte field as an array of integers.
    AllArrays,
    /// Every byte field as bin.
    AllBin,
}

/// A byte field, serialized per its mode.
pub struct Bytes {
    pub data: Vec<u8>,
    pub bin: bool,
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.bin {
            s.serialize_bytes(&self.data)
        } else {
            s.collect_seq(self.data.iter())
        }
    }
}

fn bytes(data: &[u8], mode: ByteMode, human: bool) -> Bytes {
    Bytes {
        data: data.to_vec(),
        bin: match mode {
            ByteMode::Dstack => human,
            ByteMode::AllArrays => false,
            ByteMode::AllBin => true,
        },
    }
}

#[derive(Serialize)]
pub struct MpTdxEvent {
    pub imr: u32,
    pub event_type: u32,
    pub digest: Bytes,
    pub event: String,
    pub event_payload: Bytes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u8>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum MpPlatformData {
    Tdx {
        quote: Bytes,
        event_log: Vec<MpTdxEvent>,
    },
    Snp {
        report: Bytes,
        cert_chain: Vec<Bytes>,
        mr_config: String,
    },
}

#[derive(Serialize)]
pub struct MpKind<T> {
    pub kind: String,
    pub data: T,
}

#[derive(Serialize)]
pub struct MpRuntimeEvent {
    pub event: String,
    pub payload: Bytes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u8>,
}

#[derive(Serialize)]
pub struct MpStackData {
    pub report_data: Bytes,
    pub runtime_events: Vec<MpRuntimeEvent>,
    pub config: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_data_payload: Option<Bytes>,
}

#[derive(Serialize)]
pub struct MpAttestation {
    pub version: u8,
    pub platform: MpKind<MpPlatformData>,
    pub stack: MpKind<MpStackData>,
}

fn version_of(v: RuntimeEventVersion) -> Option<u8> {
    match v {
        RuntimeEventVersion::V1 => None,
        RuntimeEventVersion::V2 => Some(2),
    }
}

/// The V1 model of a decoded attestation (to adjust before encoding).
pub fn msgpack_model(a: &VersionedAttestation, mode: ByteMode) -> MpAttestation {
    let (kind, data) = match a.quote() {
        PlatformQuote::Tdx(t) => (
            "tdx",
            MpPlatformData::Tdx {
                quote: bytes(&t.quote, mode, false),
                event_log: t
                    .event_log
                    .iter()
                    .map(|e| MpTdxEvent {
                        imr: e.imr,
                        event_type: e.event_type,
                        digest: bytes(&e.digest, mode, true),
                        event: e.event.clone(),
                        event_payload: bytes(&e.event_payload, mode, true),
                        version: version_of(e.version),
                    })
                    .collect(),
            },
        ),
        PlatformQuote::SevSnp(s) => (
            "sev-snp",
            MpPlatformData::Snp {
                report: bytes(&s.report[..], mode, false),
                cert_chain: s.cert_chain.iter().map(|c| bytes(c, mode, false)).collect(),
                mr_config: s.mr_config.clone(),
            },
        ),
    };
    let (stack_kind, payload) = match a.stack() {
        StackKind::Dstack => ("dstack", None),
        StackKind::DstackPod {
            report_data_payload,
        } => ("dstack-pod", Some(bytes(report_data_payload, mode, false))),
    };
    MpAttestation {
        version: 1,
        platform: MpKind {
            kind: kind.into(),
            data,
        },
        stack: MpKind {
            kind: stack_kind.into(),
            data: MpStackData {
                report_data: bytes(&a.report_data().0, mode, false),
                runtime_events: a
                    .runtime_events()
                    .iter()
                    .map(|e| MpRuntimeEvent {
                        event: e.name.clone(),
                        payload: bytes(&e.payload, mode, true),
                        version: version_of(e.version),
                    })
                    .collect(),
                config: a.config().to_owned(),
                report_data_payload: payload,
            },
        },
    }
}

/// `rmp_serde::to_vec_named`, as dstack writes V1.
pub fn msgpack<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("msgpack encoding")
}

/// The V1 msgpack encoding of a decoded attestation.
pub fn msgpack_of(a: &VersionedAttestation, mode: ByteMode) -> Vec<u8> {
    msgpack(&msgpack_model(a, mode))
}
