//! How a dstack runtime event is hashed into its register.

pub use ::digest::Digest;
use ::digest::Output;

/// Event type of dstack runtime events (the same for v1 and v2 digests).
pub const DSTACK_RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;

/// How a runtime event's digest is formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeEventVersion {
    /// `H(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)`.
    V1,
    /// `H(JCS({"name": name, "payload": hex(payload), "type": 134217729}))`.
    V2,
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

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Sha384;

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
}
