//! What dstack runtime events say about the app.

use serde::Deserialize;

use super::replay::app_events;
use super::{LogEvent, RegisterSet, RuntimeEvent, SYSTEM_READY};
use crate::{
    AppId, AppIdentity, AttestError, ComposeHash, HexBytes, InstanceId, KeyProvider, Malformed,
    OsImageHash,
};

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
    /// The exact `key-provider` payload (dstack's `mr_system` hashes it).
    pub key_provider_payload: Option<Vec<u8>>,
    /// Whether a `system-ready` event closed the boot-time identity.
    pub system_ready: bool,
}

impl RuntimeAppInfo {
    /// The app identity; `app-id` and `compose-hash` events are mandatory.
    pub fn app_identity(&self) -> Result<AppIdentity, AttestError> {
        let missing = |name: &'static str| {
            AttestError::from(Malformed::Missing {
                what: name,
                detail: format!("event log has no {name:?} runtime event before {SYSTEM_READY:?}"),
            })
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
    let kp: KeyProviderJson = serde_json::from_slice(payload).map_err(|e| Malformed::Syntax {
        what: "key-provider event".into(),
        detail: e.to_string(),
    })?;
    if kp.name.is_empty() || kp.name.len() > 64 {
        return Err(Malformed::BadValue {
            what: "key-provider name".into(),
            expected: "1..=64 bytes".into(),
            found: format!("{} bytes", kp.name.len()),
        }
        .into());
    }
    let id = HexBytes::from_hex(kp.id.strip_prefix("0x").unwrap_or(&kp.id))
        .map_err(|e| e.within("key-provider id"))?;
    Ok(KeyProvider { name: kp.name, id })
}

fn set_once<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), AttestError> {
    if slot.is_some() {
        return Err(Malformed::Unexpected {
            what: name,
            detail: format!("runtime event {name:?} appears twice before {SYSTEM_READY:?}"),
        }
        .into());
    }
    *slot = Some(value);
    Ok(())
}

/// Reads the identity from runtime events in log order.
///
/// Only events strictly before the first `system-ready` count: whatever the
/// app extends afterwards cannot shadow the system identity. An identity
/// event that appears twice before `system-ready` is ambiguous and rejected.
pub(super) fn extract<'a>(
    events: impl Iterator<Item = &'a RuntimeEvent>,
) -> Result<RuntimeAppInfo, AttestError> {
    let mut info = RuntimeAppInfo::default();
    let mut instance: Option<Option<InstanceId>> = None;
    for ev in events {
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
                let value = if p.is_empty() {
                    None
                } else {
                    Some(InstanceId::from_slice(p)?)
                };
                set_once(&mut instance, "instance-id", value)?;
            }
            "os-image-hash" => set_once(
                &mut info.os_image_hash,
                "os-image-hash",
                OsImageHash::from_slice(p)?,
            )?,
            "key-provider" => {
                set_once(
                    &mut info.key_provider,
                    "key-provider",
                    parse_key_provider(p)?,
                )?;
                info.key_provider_payload = Some(p.to_vec());
            }
            _ => {}
        }
    }
    info.instance_id = instance.flatten();
    Ok(info)
}

/// What a log *claims* about the app, with no replay check: for inspection
/// tools and for a guest reading its own log. Never an identity to act on;
/// verifiers read identity from [`super::ReplayedLog::app_info`].
pub fn claimed_app_info(
    events: &[LogEvent],
    set: &RegisterSet,
) -> Result<RuntimeAppInfo, AttestError> {
    extract(app_events(events, set))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: RegisterSet = RegisterSet {
        count: 4,
        app_register: 3,
        prefix: "rtmr",
    };

    #[test]
    fn key_provider_names_are_1_to_64_bytes() {
        let doc = |name: &str| format!(r#"{{"name":"{name}","id":"0x3059"}}"#);
        let kp = parse_key_provider(doc("kms").as_bytes()).unwrap();
        assert_eq!((kp.name.as_str(), kp.id.0), ("kms", vec![0x30, 0x59]));
        assert_eq!(
            parse_key_provider(doc(&"k".repeat(64)).as_bytes())
                .unwrap()
                .name
                .len(),
            64
        );
        for (name, found) in [("", "0 bytes"), (&*"k".repeat(65), "65 bytes")] {
            assert_eq!(
                parse_key_provider(doc(name).as_bytes())
                    .unwrap_err()
                    .malformed(),
                Some(&Malformed::BadValue {
                    what: "key-provider name".into(),
                    expected: "1..=64 bytes".into(),
                    found: found.into(),
                })
            );
        }
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
        let info = claimed_app_info(&events, &SET).unwrap();
        assert!(info.system_ready);
        let app = info.app_identity().unwrap();
        assert_eq!(app.app_id, AppId([1; 20]));
        assert_eq!(app.compose_hash, ComposeHash([2; 32]));
        assert_eq!(app.instance_id, None);

        for name in ["app-id", "instance-id", "key-provider", "compose-hash"] {
            let payload: &[u8] = match name {
                "app-id" | "instance-id" => &[1; 20],
                "compose-hash" => &[1; 32],
                _ => br#"{"name":"kms","id":"00"}"#,
            };
            let dup = vec![
                LogEvent::runtime(3, name, payload),
                LogEvent::runtime(3, "other", b""),
                LogEvent::runtime(3, name, payload),
            ];
            let e = claimed_app_info(&dup, &SET).unwrap_err();
            assert!(
                matches!(e.malformed(), Some(Malformed::Unexpected { what, .. }) if *what == name),
                "{e}"
            );
            assert_eq!(
                e.to_string(),
                format!("malformed: runtime event {name:?} appears twice before \"system-ready\"")
            );
        }
        // An empty instance-id, then a real one: still two.
        let dup = vec![
            LogEvent::runtime(3, "instance-id", b""),
            LogEvent::runtime(3, "instance-id", &[1; 20]),
        ];
        assert!(claimed_app_info(&dup, &SET).is_err());
        let short = vec![LogEvent::runtime(3, "compose-hash", &[1; 31])];
        assert_eq!(
            claimed_app_info(&short, &SET).unwrap_err().malformed(),
            Some(&Malformed::BadLength {
                what: "compose_hash".into(),
                expected: 32,
                found: 31
            })
        );
        let none = claimed_app_info(&[], &SET).unwrap();
        assert!(matches!(
            none.app_identity().unwrap_err().malformed(),
            Some(Malformed::Missing { what: "app-id", .. })
        ));
        assert_eq!(
            none.app_identity().unwrap_err().to_string(),
            "malformed: event log has no \"app-id\" runtime event before \"system-ready\""
        );
    }

    #[test]
    fn key_provider_payload() {
        let kp = parse_key_provider(br#"{"name":"kms","id":"30aa"}"#).unwrap();
        assert_eq!(kp.name, "kms");
        assert_eq!(kp.id.0, vec![0x30, 0xaa]);
        assert!(parse_key_provider(br#"{"name":"kms","id":"3"}"#).is_err());
        assert!(parse_key_provider(br#"{"name":"kms","id":"30","x":1}"#).is_err());
        assert!(parse_key_provider(br#"{"type":"kms","id":"30"}"#).is_err());
        assert!(parse_key_provider(br#"{"name":"kms","name":"x","id":"30"}"#).is_err());
        let events = vec![LogEvent::runtime(
            3,
            "key-provider",
            br#"{"name":"kms","id":"30aa"}"#,
        )];
        let info = claimed_app_info(&events, &SET).unwrap();
        assert_eq!(
            info.key_provider_payload.as_deref(),
            Some(&br#"{"name":"kms","id":"30aa"}"#[..])
        );
    }
}
