//! Measurement event logs and dstack runtime events.
//!
//! A TEE extends hash-chained registers (TDX RTMRs, TPM PCRs) at boot and at
//! run time; the log lists what was extended. Replaying the log must
//! reproduce the registers the hardware signed, and only then do the log's
//! events say anything.
//!
//! The rules this module enforces (the first security review found an app
//! obtaining another app's keys by breaking them):
//! - a register that carries the app identity (TDX RTMR3, a vTPM's app PCR)
//!   is replayed from dstack runtime events only; each digest is recomputed
//!   from (type, name, payload) and never taken from the log, and any other
//!   event on that register is an error;
//! - the app identity comes from the runtime events on that register
//!   strictly before the first `system-ready`, and a second identity event
//!   before it is an error;
//! - identity can only be read from a [`ReplayedLog`], which only
//!   [`ReplayedLog::check`] builds, after the replay matched the signed
//!   registers.
//!
//! Files: [`digest`] (how runtime events are hashed), [`json`] (dstack's
//! JSON list), [`tcg`] (the binary TCG PC Client log, CCEL), [`replay`]
//! (extending registers and checking them), [`identity`] (what the runtime
//! events say). Replay is generic over the hash ([`digest::Digest`]) so a
//! vTPM plug-in replays SHA-256 PCRs with the same code.

pub mod digest;
pub mod identity;
pub mod json;
pub mod replay;
pub mod tcg;

pub use self::digest::{DSTACK_RUNTIME_EVENT_TYPE, RuntimeEventVersion, runtime_event_digest};
pub use identity::{RuntimeAppInfo, claimed_app_info, parse_key_provider};
pub use json::{parse_json_event_log, to_json_event_log};
pub use replay::{
    BOOT_EVENT_ON_APP_REGISTER, COLON_IN_EVENT_NAME, RegisterSet, ReplayedLog, TDX_APP_RTMR,
    TDX_RTMR_COUNT, TDX_RTMRS, replay,
};

/// TCG `EV_NO_ACTION`: informational, never extended.
pub const EV_NO_ACTION: u32 = 3;
/// Most events a log may hold; real TDX boots log about 50.
pub const MAX_EVENTS: usize = 4096;
/// Longest event name accepted.
pub const MAX_EVENT_NAME: usize = 1024;

/// The name of the runtime event that closes the boot-time identity.
pub const SYSTEM_READY: &str = "system-ready";
/// The name of the runtime event that closes the boot-time measurements
/// (dstack's `boot_mr`: RTMR3 up to and including it).
pub const BOOT_MR_DONE: &str = "boot-mr-done";

/// One event of a measurement log: the register it extends and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// Zero-based register index (TDX: 0 = RTMR0 ... 3 = RTMR3; vTPM: the PCR).
    pub register: u32,
    /// The event.
    pub body: EventBody,
}

/// What an event is, which decides how its digest is obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventBody {
    /// A firmware or boot-loader event. Its preimage is often not in the log
    /// (an image's Authenticode hash), so the digest the log states is what
    /// is extended; only the register's replay gives it meaning.
    Boot(BootEvent),
    /// A dstack runtime event, whose digest is always computed from its
    /// name and payload.
    Runtime(RuntimeEvent),
}

/// A boot event as the log states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootEvent {
    /// TCG event type.
    pub event_type: u32,
    /// The digest the log states for the replay's hash.
    pub digest: Vec<u8>,
    /// The event data (not interpreted).
    pub data: Vec<u8>,
}

/// A dstack runtime event (type [`DSTACK_RUNTIME_EVENT_TYPE`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEvent {
    /// Event name (`app-id`, `compose-hash`, ...).
    pub name: String,
    /// Event payload.
    pub payload: Vec<u8>,
    /// Digest form.
    pub version: RuntimeEventVersion,
}

impl LogEvent {
    /// A dstack runtime event (v1 digest form) on `register`.
    pub fn runtime(register: u32, name: &str, payload: &[u8]) -> Self {
        LogEvent {
            register,
            body: EventBody::Runtime(RuntimeEvent {
                name: name.to_owned(),
                payload: payload.to_vec(),
                version: RuntimeEventVersion::V1,
            }),
        }
    }

    /// A boot event with a stated digest.
    pub fn boot(register: u32, event_type: u32, digest: Vec<u8>, data: Vec<u8>) -> Self {
        LogEvent {
            register,
            body: EventBody::Boot(BootEvent {
                event_type,
                digest,
                data,
            }),
        }
    }

    /// The TCG event type.
    pub fn event_type(&self) -> u32 {
        match &self.body {
            EventBody::Boot(b) => b.event_type,
            EventBody::Runtime(_) => DSTACK_RUNTIME_EVENT_TYPE,
        }
    }

    /// The runtime event, if this is one.
    pub fn as_runtime(&self) -> Option<&RuntimeEvent> {
        match &self.body {
            EventBody::Runtime(r) => Some(r),
            EventBody::Boot(_) => None,
        }
    }
}
