//! dstack-shaped app identity documents for test evidence.

use attest_core::eventlog::{self, LogEvent};
use sha2::{Sha256, Sha384};

/// The app a simulated CVM runs.
#[derive(Clone, Debug)]
pub struct App {
    /// 20-byte app id.
    pub app_id: [u8; 20],
    /// SHA-256 of the compose file.
    pub compose_hash: [u8; 32],
    /// 20-byte instance id, or none.
    pub instance_id: Option<[u8; 20]>,
    /// Key provider `(name, id)`.
    pub key_provider: (String, Vec<u8>),
}

impl App {
    /// A fixed example app.
    pub fn example() -> Self {
        App {
            app_id: [0xa1; 20],
            compose_hash: [0xc0; 32],
            instance_id: Some([0x1d; 20]),
            key_provider: ("kms".into(), vec![0x30, 0x59]),
        }
    }

    /// The RTMR3 runtime events a dstack guest emits for this app, through
    /// `system-ready`.
    pub fn runtime_events(&self) -> Vec<LogEvent> {
        let kp = format!(
            "{{\"name\":\"{}\",\"id\":\"{}\"}}",
            self.key_provider.0,
            hex::encode(&self.key_provider.1)
        );
        vec![
            LogEvent::runtime(3, "system-preparing", b""),
            LogEvent::runtime(3, "app-id", &self.app_id),
            LogEvent::runtime(3, "compose-hash", &self.compose_hash),
            LogEvent::runtime(
                3,
                "instance-id",
                self.instance_id.as_ref().map(|i| &i[..]).unwrap_or(b""),
            ),
            LogEvent::runtime(3, "boot-mr-done", b""),
            LogEvent::runtime(3, "key-provider", kp.as_bytes()),
            LogEvent::runtime(3, "system-ready", b""),
        ]
    }

    /// dstack's JSON event log of these events, and the RTMR3 they replay to.
    pub fn tdx_event_log(&self) -> (Vec<u8>, [u8; 48]) {
        events_to_json(&self.runtime_events())
    }

    /// The same runtime events extended into a vTPM's `app_pcr` (SHA-256
    /// bank), as dstack's JSON list, and the PCR value they replay to from
    /// zero.
    pub fn vtpm_event_log(&self, app_pcr: u32) -> (Vec<u8>, [u8; 32]) {
        let events: Vec<LogEvent> = self
            .runtime_events()
            .into_iter()
            .map(|mut e| {
                e.register = app_pcr;
                e
            })
            .collect();
        let set = eventlog::RegisterSet {
            count: 24,
            app_register: app_pcr,
            prefix: "pcr",
        };
        let regs = eventlog::replay::<Sha256>(&events, &set).unwrap_or_default();
        let mut pcr = [0u8; 32];
        if let Some(r) = regs.get(app_pcr as usize) {
            pcr.copy_from_slice(r);
        }
        (eventlog::to_json_event_log(&events), pcr)
    }

    /// The dstack app config v3 document (SNP HOST_DATA binds it).
    pub fn app_config_v3(&self) -> Vec<u8> {
        let mut doc = format!(
            "{{\"version\":3,\"app_id\":\"{}\",\"compose_hash\":\"{}\"",
            hex::encode(self.app_id),
            hex::encode(self.compose_hash)
        );
        if let Some(i) = self.instance_id {
            doc += &format!(",\"instance_id\":\"{}\"", hex::encode(i));
        }
        doc += &format!(
            ",\"key_provider\":\"{}\",\"key_provider_id\":\"{}\"}}",
            self.key_provider.0,
            hex::encode(&self.key_provider.1)
        );
        doc.into_bytes()
    }
}

/// Serializes events as dstack's JSON list and replays them into RTMR3
/// (only register 3 events are expected here).
pub fn events_to_json(events: &[LogEvent]) -> (Vec<u8>, [u8; 48]) {
    let set = eventlog::RegisterSet {
        count: 4,
        app_register: 3,
        prefix: "rtmr",
    };
    let regs = eventlog::replay::<Sha384>(events, &set).unwrap_or_default();
    let mut rtmr3 = [0u8; 48];
    if let Some(r) = regs.get(3) {
        rtmr3.copy_from_slice(r);
    }
    (eventlog::to_json_event_log(events), rtmr3)
}
