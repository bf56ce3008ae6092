//! Measurement event logs and dstack runtime events.
//!
//! A TEE extends hash-chained registers (TDX RTMRs, TPM PCRs) at boot and at
//! run time; the log lists what was extended. Replaying the log must
//! reproduce the registers the hardware signed, and only then do the log's
//! events say anything. dstack puts the app identity in runtime events
//! (type `0x08000001`) extended into RTMR3; their digests are always
//! recomputed from name and payload here, never taken from the log.
//!
//! Replay is generic over the hash ([`digest::Digest`]) so a vTPM plug-in can
//! replay SHA-256 PCRs with the same code.

use digest::{Digest, Output};
use serde::Deserialize;

use crate::OsImageHash;
use crate::{AppId, AppIdentity, AttestError, ComposeHash, HexBytes, InstanceId, KeyProvider};

/// Event type of dstack runtime events (the same for v1 and v2 digests).
pub const DSTACK_RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;
/// TCG `EV_NO_ACTION`: informational, never extended.
pub const EV_NO_ACTION: u32 = 3;
/// Most events a log may hold; real TDX boots log about 50.
pub const MAX_EVENTS: usize = 4096;
/// Longest event name accepted.
pub const MAX_EVENT_NAME: usize = 1024;

/// The name of the runtime event that closes the boot-time identity.
pub const SYSTEM_READY: &str = "system-ready";

/// How a runtime event's digest is formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeEventVersion {
    /// `H(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)`.
    V1,
    /// `H(JCS({"name": name, "payload": hex(payload), "type": 134217729}))`.
    V2,
}

/// One event of a measurement log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// Zero-based register index (TDX: 0 = RTMR0 ... 3 = RTMR3).
    pub register: u32,
    /// TCG event type.
    pub event_type: u32,
    /// The digest the log states. Used for boot events, whose preimage is
    /// often not in the log; ignored for runtime events.
    pub digest: Vec<u8>,
    /// Event name (runtime events) or empty.
    pub name: String,
    /// Event data.
    pub payload: Vec<u8>,
    /// Digest form of a runtime event.
    pub version: RuntimeEventVersion,
}

impl LogEvent {
    /// A dstack runtime event (v1 digest form).
    pub fn runtime(register: u32, name: &str, payload: &[u8]) -> Self {
        LogEvent {
            register,
            event_type: DSTACK_RUNTIME_EVENT_TYPE,
            digest: Vec::new(),
            name: name.to_owned(),
            payload: payload.to_vec(),
            version: RuntimeEventVersion::V1,
        }
    }

    /// Whether this is a dstack runtime event.
    pub fn is_runtime(&self) -> bool {
        self.event_type == DSTACK_RUNTIME_EVENT_TYPE
    }

    /// The digest this event extends into its register: recomputed for
    /// runtime events, the stated one (which must have the hash's size) for
    /// the others.
    pub fn measured_digest<D: Digest>(&self) -> Result<Output<D>, AttestError> {
        if self.is_runtime() {
            return Ok(runtime_event_digest::<D>(
                &self.name,
                &self.payload,
                self.version,
            ));
        }
        let mut out = Output::<D>::default();
        if self.digest.len() != out.len() {
            return Err(AttestError::Malformed(format!(
                "event of type {:#x} in register {} has a {}-byte digest, expected {}",
                self.event_type,
                self.register,
                self.digest.len(),
                out.len()
            )));
        }
        out.copy_from_slice(&self.digest);
        Ok(out)
    }
}

/// The digest of a dstack runtime event.
pub fn runtime_event_digest<D: Digest>(
    name: &str,
    payload: &[u8],
    version: RuntimeEventVersion,
) -> Output<D> {
    let mut h = D::new();
    match version {
        RuntimeEventVersion::V1 => {
            h.update(DSTACK_RUNTIME_EVENT_TYPE.to_le_bytes());
            h.update(b":");
            h.update(name.as_bytes());
            h.update(b":");
            h.update(payload);
        }
        RuntimeEventVersion::V2 => {
            // RFC 8785 canonical form: keys sorted, no whitespace. serde_json
            // escapes strings exactly as JCS does (short escapes for \b \t \n
            // \f \r, lowercase \u00xx for other control characters, UTF-8
            // otherwise), and a &str always serializes.
            let name_json = serde_json::to_string(name).unwrap_or_default();
            h.update(b"{\"name\":");
            h.update(name_json.as_bytes());
            h.update(b",\"payload\":\"");
            h.update(hex::encode(payload).as_bytes());
            h.update(format!("\",\"type\":{DSTACK_RUNTIME_EVENT_TYPE}}}").as_bytes());
        }
    }
    h.finalize()
}

#[derive(Deserialize)]
struct JsonEvent {
    imr: u32,
    event_type: u32,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    event_payload: String,
    #[serde(default)]
    version: Option<u8>,
}

/// Parses dstack's JSON event log: a list of
/// `{imr (0-based), event_type, digest (hex), event (name), event_payload (hex), [version]}`.
/// Other keys (such as `preimage`) are ignored: nothing in them is trusted.
pub fn parse_json_event_log(bytes: &[u8]) -> Result<Vec<LogEvent>, AttestError> {
    let raw: Vec<JsonEvent> = serde_json::from_slice(bytes)
        .map_err(|e| AttestError::Malformed(format!("JSON event log: {e}")))?;
    if raw.len() > MAX_EVENTS {
        return Err(AttestError::Malformed(format!(
            "event log has {} events, at most {MAX_EVENTS} accepted",
            raw.len()
        )));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, e)| {
            let bad = |what: &str| AttestError::Malformed(format!("event {i}: {what}"));
            if e.event.len() > MAX_EVENT_NAME {
                return Err(bad("event name too long"));
            }
            let version = match e.version {
                None | Some(1) => RuntimeEventVersion::V1,
                Some(2) => RuntimeEventVersion::V2,
                Some(v) => return Err(bad(&format!("unknown runtime event version {v}"))),
            };
            Ok(LogEvent {
                register: e.imr,
                event_type: e.event_type,
                digest: hex::decode(&e.digest).map_err(|_| bad("digest is not hex"))?,
                name: e.event,
                payload: hex::decode(&e.event_payload)
                    .map_err(|_| bad("event_payload is not hex"))?,
                version,
            })
        })
        .collect()
}

/// Replays `events` into `registers` registers that start at zero:
/// `R[i] = H(R[i] ‖ digest)` for every event except `EV_NO_ACTION`.
pub fn replay<D: Digest>(
    events: &[LogEvent],
    registers: usize,
) -> Result<Vec<Output<D>>, AttestError> {
    let mut regs = vec![Output::<D>::default(); registers];
    for ev in events {
        if ev.event_type == EV_NO_ACTION {
            continue;
        }
        let reg = usize::try_from(ev.register)
            .ok()
            .and_then(|i| regs.get_mut(i))
            .ok_or_else(|| {
                AttestError::Malformed(format!(
                    "event {:?} targets register {}, only {registers} exist",
                    ev.name, ev.register
                ))
            })?;
        let digest = ev.measured_digest::<D>()?;
        let mut h = D::new();
        h.update(&*reg);
        h.update(&digest);
        *reg = h.finalize();
    }
    Ok(regs)
}

/// The app identity carried by dstack runtime events, each part optional
/// until [`RuntimeAppInfo::app_identity`] requires the mandatory ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeAppInfo {
    /// `app-id` (20 bytes).
    pub app_id: Option<AppId>,
    /// `compose-hash` (32 bytes).
    pub compose_hash: Option<ComposeHash>,
    /// `instance-id` (20 bytes; an empty payload means "no instance id").
    pub instance_id: Option<InstanceId>,
    /// `os-image-hash` (32 bytes), emitted by newer dstack guests.
    pub os_image_hash: Option<OsImageHash>,
    /// `key-provider` (JSON `{"name", "id"}`).
    pub key_provider: Option<KeyProvider>,
    /// Whether a `system-ready` event closed the boot-time identity.
    pub system_ready: bool,
}

impl RuntimeAppInfo {
    /// The app identity; `app-id` and `compose-hash` events are mandatory.
    pub fn app_identity(&self) -> Result<AppIdentity, AttestError> {
        let missing = |name: &str| {
            AttestError::Malformed(format!(
                "event log has no {name:?} runtime event before {SYSTEM_READY:?}"
            ))
        };
        Ok(AppIdentity {
            app_id: self.app_id.ok_or_else(|| missing("app-id"))?,
            compose_hash: self.compose_hash.ok_or_else(|| missing("compose-hash"))?,
            instance_id: self.instance_id,
            key_provider: self.key_provider.clone(),
            os_image_hash: self.os_image_hash,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyProviderJson {
    name: String,
    id: String,
}

/// Parses a dstack `key-provider` payload: `{"name": "kms", "id": "<hex>"}`.
pub fn parse_key_provider(payload: &[u8]) -> Result<KeyProvider, AttestError> {
    let kp: KeyProviderJson = serde_json::from_slice(payload)
        .map_err(|e| AttestError::Malformed(format!("key-provider event: {e}")))?;
    if kp.name.is_empty() || kp.name.len() > 64 {
        return Err(AttestError::Malformed(
            "key-provider name must be 1..=64 bytes".into(),
        ));
    }
    let id = HexBytes::from_hex(kp.id.strip_prefix("0x").unwrap_or(&kp.id))
        .map_err(|e| AttestError::Malformed(format!("key-provider id: {}", e.message())))?;
    Ok(KeyProvider { name: kp.name, id })
}

/// Extracts the app identity from the runtime events in `register`.
///
/// Only events before the first `system-ready` count: whatever the app
/// extends afterwards cannot shadow the system identity. An identity event
/// that appears twice before `system-ready` is ambiguous and rejected.
/// Call this only on events whose replay matched the signed register.
pub fn runtime_app_info(events: &[LogEvent], register: u32) -> Result<RuntimeAppInfo, AttestError> {
    fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), AttestError> {
        if slot.is_some() {
            return Err(AttestError::Malformed(format!(
                "runtime event {name:?} appears twice before {SYSTEM_READY:?}"
            )));
        }
        *slot = Some(value);
        Ok(())
    }
    let mut info = RuntimeAppInfo::default();
    let mut seen_instance = false;
    for ev in events
        .iter()
        .filter(|e| e.is_runtime() && e.register == register)
    {
        let p = ev.payload.as_slice();
        match ev.name.as_str() {
            SYSTEM_READY => {
                info.system_ready = true;
                break;
            }
            "app-id" => set_once(&mut info.app_id, "app-id", AppId::from_slice(p)?)?,
            "compose-hash" => set_once(
                &mut info.compose_hash,
                "compose-hash",
                ComposeHash::from_slice(p)?,
            )?,
            "instance-id" => {
                if seen_instance {
                    return Err(AttestError::Malformed(
                        "runtime event \"instance-id\" appears twice before \"system-ready\""
                            .into(),
                    ));
                }
                seen_instance = true;
                if !p.is_empty() {
                    info.instance_id = Some(InstanceId::from_slice(p)?);
                }
            }
            "os-image-hash" => set_once(
                &mut info.os_image_hash,
                "os-image-hash",
                OsImageHash::from_slice(p)?,
            )?,
            "key-provider" => set_once(
                &mut info.key_provider,
                "key-provider",
                parse_key_provider(p)?,
            )?,
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Sha256, Sha384};

    #[test]
    fn v1_digest_matches_definition() {
        let mut pre = vec![0x01, 0x00, 0x00, 0x08];
        pre.extend_from_slice(b":app-id:");
        pre.extend_from_slice(&[7u8; 20]);
        let want = Sha384::digest(&pre);
        assert_eq!(
            runtime_event_digest::<Sha384>("app-id", &[7u8; 20], RuntimeEventVersion::V1),
            want
        );
    }

    #[test]
    fn v2_digest_is_jcs() {
        let want = Sha384::digest(br#"{"name":"a\"b\n","payload":"0aff","type":134217729}"#);
        assert_eq!(
            runtime_event_digest::<Sha384>("a\"b\n", &[0x0a, 0xff], RuntimeEventVersion::V2),
            want
        );
    }

    #[test]
    fn replay_is_generic_over_the_hash() {
        let events = vec![
            LogEvent::runtime(0, "x", b"1"),
            LogEvent::runtime(1, "y", b""),
        ];
        let regs = replay::<Sha256>(&events, 2).unwrap();
        let d = runtime_event_digest::<Sha256>("x", b"1", RuntimeEventVersion::V1);
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(d);
        assert_eq!(regs[0], h.finalize());
        assert_eq!(regs[0].len(), 32);
    }

    #[test]
    fn replay_rejects_out_of_range_register_and_bad_digest_size() {
        let err = replay::<Sha384>(&[LogEvent::runtime(4, "x", b"")], 4).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Malformed);
        let ev = LogEvent {
            register: 0,
            event_type: 0x8000_0001,
            digest: vec![0; 32],
            name: String::new(),
            payload: vec![],
            version: RuntimeEventVersion::V1,
        };
        let err = replay::<Sha384>(std::slice::from_ref(&ev), 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed: event of type 0x80000001 in register 0 has a 32-byte digest, expected 48"
        );
        // EV_NO_ACTION is skipped whatever its digest.
        let noop = LogEvent {
            event_type: EV_NO_ACTION,
            ..ev
        };
        assert_eq!(
            replay::<Sha384>(&[noop], 1).unwrap(),
            vec![Output::<Sha384>::default()]
        );
    }

    #[test]
    fn identity_stops_at_system_ready_and_rejects_duplicates() {
        let events = vec![
            LogEvent::runtime(3, "app-id", &[1; 20]),
            LogEvent::runtime(3, "compose-hash", &[2; 32]),
            LogEvent::runtime(2, "app-id", &[9; 20]), // other register: ignored
            LogEvent::runtime(3, "instance-id", &[]),
            LogEvent::runtime(3, SYSTEM_READY, &[]),
            LogEvent::runtime(3, "app-id", &[3; 20]), // after system-ready: ignored
        ];
        let info = runtime_app_info(&events, 3).unwrap();
        assert!(info.system_ready);
        let app = info.app_identity().unwrap();
        assert_eq!(app.app_id, AppId([1; 20]));
        assert_eq!(app.compose_hash, ComposeHash([2; 32]));
        assert_eq!(app.instance_id, None);

        let dup = vec![
            LogEvent::runtime(3, "app-id", &[1; 20]),
            LogEvent::runtime(3, "app-id", &[1; 20]),
        ];
        assert_eq!(
            runtime_app_info(&dup, 3).unwrap_err().to_string(),
            "malformed: runtime event \"app-id\" appears twice before \"system-ready\""
        );
        let short = vec![LogEvent::runtime(3, "compose-hash", &[1; 31])];
        assert_eq!(
            runtime_app_info(&short, 3).unwrap_err().to_string(),
            "malformed: compose_hash must be 32 bytes, found 31"
        );
        let none = runtime_app_info(&[], 3).unwrap();
        assert_eq!(
            none.app_identity().unwrap_err().to_string(),
            "malformed: event log has no \"app-id\" runtime event before \"system-ready\""
        );
    }

    #[test]
    fn json_log_errors() {
        assert!(parse_json_event_log(b"{}").is_err());
        assert!(parse_json_event_log(b"[{\"imr\":0}]").is_err());
        let bad_hex = br#"[{"imr":0,"event_type":1,"digest":"zz","event":"","event_payload":""}]"#;
        assert_eq!(
            parse_json_event_log(bad_hex).unwrap_err().to_string(),
            "malformed: event 0: digest is not hex"
        );
        let v9 = br#"[{"imr":3,"event_type":134217729,"event":"x","version":9}]"#;
        assert!(parse_json_event_log(v9).is_err());
        let many = format!(
            "[{}]",
            vec![r#"{"imr":0,"event_type":3}"#; MAX_EVENTS + 1].join(",")
        );
        assert!(parse_json_event_log(many.as_bytes()).is_err());
    }

    #[test]
    fn key_provider_payload() {
        let kp = parse_key_provider(br#"{"name":"kms","id":"30aa"}"#).unwrap();
        assert_eq!(kp.name, "kms");
        assert_eq!(kp.id.0, vec![0x30, 0xaa]);
        assert!(parse_key_provider(br#"{"name":"kms","id":"3"}"#).is_err());
        assert!(parse_key_provider(br#"{"name":"kms","id":"30","x":1}"#).is_err());
        assert!(parse_key_provider(br#"{"type":"kms","id":"30"}"#).is_err());
    }
}
