//! dstack's JSON event log: a list of
//! `{imr (0-based), event_type, digest (hex), event (name), event_payload (hex), [version]}`.

use serde::{Deserialize, Serialize};

use super::{
    DSTACK_RUNTIME_EVENT_TYPE, EventBody, LogEvent, MAX_EVENT_NAME, MAX_EVENTS, RuntimeEvent,
    RuntimeEventVersion,
};
use crate::{AttestError, Malformed};

#[derive(Deserialize, Serialize)]
struct JsonEvent {
    imr: u32,
    event_type: u32,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    event_payload: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u8>,
}

/// Parses dstack's JSON event log.
///
/// An event typed [`DSTACK_RUNTIME_EVENT_TYPE`] becomes a runtime event and
/// its stated digest is dropped (it is recomputed at replay; dstack's
/// stripped logs leave it empty). Other keys (such as `preimage`) are
/// ignored: nothing in them is trusted.
pub fn parse_json_event_log(bytes: &[u8]) -> Result<Vec<LogEvent>, AttestError> {
    let raw: Vec<JsonEvent> = serde_json::from_slice(bytes).map_err(|e| Malformed::Syntax {
        what: "JSON event log".into(),
        detail: e.to_string(),
    })?;
    if raw.len() > MAX_EVENTS {
        return Err(Malformed::TooMany {
            what: "event log".into(),
            items: "events",
            count: raw.len(),
            max: MAX_EVENTS,
        }
        .into());
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, e)| {
            let bad = |m: Malformed| AttestError::from(m).within(format!("event {i}"));
            let not_hex = |what: &str| {
                bad(Malformed::Syntax {
                    what: what.into(),
                    detail: "not hex".into(),
                })
            };
            if e.event.len() > MAX_EVENT_NAME {
                return Err(bad(Malformed::TooLarge {
                    what: "event name".into(),
                    size: e.event.len(),
                    max: MAX_EVENT_NAME,
                }));
            }
            let payload = hex::decode(&e.event_payload).map_err(|_| not_hex("event_payload"))?;
            let digest = hex::decode(&e.digest).map_err(|_| not_hex("digest"))?;
            let body = if e.event_type == DSTACK_RUNTIME_EVENT_TYPE {
                let version = match e.version {
                    None | Some(1) => RuntimeEventVersion::V1,
                    Some(2) => RuntimeEventVersion::V2,
                    Some(v) => {
                        return Err(bad(Malformed::BadValue {
                            what: "runtime event version".into(),
                            expected: "1 or 2".into(),
                            found: v.to_string(),
                        }));
                    }
                };
                EventBody::Runtime(RuntimeEvent {
                    name: e.event,
                    payload,
                    version,
                })
            } else {
                EventBody::Boot(super::BootEvent {
                    event_type: e.event_type,
                    digest,
                    data: payload,
                })
            };
            Ok(LogEvent {
                register: e.imr,
                body,
            })
        })
        .collect()
}

/// Writes events as dstack's JSON list (runtime events without a digest,
/// as dstack's stripped logs carry them).
pub fn to_json_event_log(events: &[LogEvent]) -> Vec<u8> {
    let list: Vec<JsonEvent> = events
        .iter()
        .map(|e| match &e.body {
            EventBody::Boot(b) => JsonEvent {
                imr: e.register,
                event_type: b.event_type,
                digest: hex::encode(&b.digest),
                event: String::new(),
                event_payload: hex::encode(&b.data),
                version: None,
            },
            EventBody::Runtime(r) => JsonEvent {
                imr: e.register,
                event_type: DSTACK_RUNTIME_EVENT_TYPE,
                digest: String::new(),
                event: r.name.clone(),
                event_payload: hex::encode(&r.payload),
                version: (r.version == RuntimeEventVersion::V2).then_some(2),
            },
        })
        .collect();
    // A list of plain structs always serializes.
    serde_json::to_vec(&list).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_log_errors() {
        assert!(parse_json_event_log(b"{}").is_err());
        assert!(parse_json_event_log(b"[{\"imr\":0}]").is_err());
        let bad_hex = br#"[{"imr":0,"event_type":1,"digest":"zz","event":"","event_payload":""}]"#;
        let e = parse_json_event_log(bad_hex).unwrap_err();
        assert!(
            matches!(e.malformed(), Some(Malformed::Syntax { what, .. }) if what == "digest"),
            "{e}"
        );
        assert_eq!(e.to_string(), "malformed: event 0: digest: not hex");
        let v9 = br#"[{"imr":3,"event_type":134217729,"event":"x","version":9}]"#;
        assert_eq!(
            parse_json_event_log(v9).unwrap_err().malformed(),
            Some(&Malformed::BadValue {
                what: "runtime event version".into(),
                expected: "1 or 2".into(),
                found: "9".into()
            })
        );
        let many = format!(
            "[{}]",
            vec![r#"{"imr":0,"event_type":3}"#; MAX_EVENTS + 1].join(",")
        );
        assert!(matches!(
            parse_json_event_log(many.as_bytes())
                .unwrap_err()
                .malformed(),
            Some(Malformed::TooMany {
                max: MAX_EVENTS,
                ..
            })
        ));
        let long = format!(
            r#"[{{"imr":3,"event_type":134217729,"event":"{}"}}]"#,
            "x".repeat(MAX_EVENT_NAME + 1)
        );
        let e = parse_json_event_log(long.as_bytes()).unwrap_err();
        assert_eq!(
            e.malformed(),
            Some(&Malformed::TooLarge {
                what: "event name".into(),
                size: MAX_EVENT_NAME + 1,
                max: MAX_EVENT_NAME
            })
        );
        assert!(e.to_string().starts_with("malformed: event 0: "), "{e}");
        // Exactly at the limits is accepted.
        let most = format!(
            "[{}]",
            vec![r#"{"imr":0,"event_type":3}"#; MAX_EVENTS].join(",")
        );
        assert_eq!(
            parse_json_event_log(most.as_bytes()).unwrap().len(),
            MAX_EVENTS
        );
        let longest = format!(
            r#"[{{"imr":3,"event_type":134217729,"event":"{}"}}]"#,
            "x".repeat(MAX_EVENT_NAME)
        );
        assert_eq!(parse_json_event_log(longest.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn runtime_events_are_typed_by_event_type_and_round_trip() {
        let text = br#"[{"imr":3,"event_type":134217729,"digest":"abcd","event":"app-id","event_payload":"0102","version":2},
                        {"imr":0,"event_type":10,"digest":"abcd","event":"x","event_payload":"ff"}]"#;
        let events = parse_json_event_log(text).unwrap();
        assert_eq!(
            events[0].body,
            EventBody::Runtime(RuntimeEvent {
                name: "app-id".into(),
                payload: vec![1, 2],
                version: RuntimeEventVersion::V2
            })
        );
        assert_eq!(
            events[1],
            LogEvent::boot(0, 10, vec![0xab, 0xcd], vec![0xff])
        );
        let back = parse_json_event_log(&to_json_event_log(&events)).unwrap();
        assert_eq!(back, events);
    }
}
