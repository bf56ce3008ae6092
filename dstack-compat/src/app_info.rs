//! dstack's `AppInfo`, as the `.1.9` extension of a `SignCert` certificate
//! carries it (msgpack).
//!
//! dstack writes it with `rmp_serde::to_vec`; its serde decoder reads a
//! struct from a msgpack array (field order) or a map (field names). This
//! encoder writes the map form, with every field under the name the
//! reference gives it (`dstack-kms.md` §3.4) as msgpack `bin`, so a reader
//! does not depend on the field order.

/// The app facts an issued certificate states.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppInfo {
    /// 20 bytes.
    pub app_id: Vec<u8>,
    /// 32 bytes.
    pub compose_hash: Vec<u8>,
    /// 20 bytes, or empty.
    pub instance_id: Vec<u8>,
    /// 32 bytes, or empty.
    pub device_id: Vec<u8>,
    /// dstack's `mr_system` (32 bytes, or empty).
    pub mr_system: Vec<u8>,
    /// dstack's `mr_aggregated` (32 bytes, or empty).
    pub mr_aggregated: Vec<u8>,
    /// 32 bytes, or empty.
    pub os_image_hash: Vec<u8>,
    /// The key-provider JSON, or empty.
    pub key_provider_info: Vec<u8>,
}

fn str8(out: &mut Vec<u8>, s: &str) {
    // Field names are short: fixstr.
    out.push(0xa0 | (s.len() as u8 & 0x1f));
    out.extend_from_slice(s.as_bytes());
}

fn bin(out: &mut Vec<u8>, b: &[u8]) {
    match u8::try_from(b.len()) {
        Ok(n) => out.extend_from_slice(&[0xc4, n]),
        Err(_) => {
            let n = u32::try_from(b.len()).unwrap_or(u32::MAX);
            out.push(0xc6);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(b);
}

impl AppInfo {
    /// The msgpack map `{name: bin, ...}`.
    pub fn to_msgpack(&self) -> Vec<u8> {
        let fields: [(&str, &[u8]); 8] = [
            ("app_id", &self.app_id),
            ("compose_hash", &self.compose_hash),
            ("instance_id", &self.instance_id),
            ("device_id", &self.device_id),
            ("mr_system", &self.mr_system),
            ("mr_aggregated", &self.mr_aggregated),
            ("os_image_hash", &self.os_image_hash),
            ("key_provider_info", &self.key_provider_info),
        ];
        let mut out = vec![0x80 | fields.len() as u8];
        for (name, value) in fields {
            str8(&mut out, name);
            bin(&mut out, value);
        }
        out
    }
}
