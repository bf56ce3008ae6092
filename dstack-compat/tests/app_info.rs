//! The AppInfo a SignCert certificate carries, read back by the decoder
//! dstack uses (rmp-serde into a struct with dstack's field names).
#![allow(clippy::unwrap_used, missing_docs)]

use dstack_compat::AppInfo;
use serde::Deserialize;

#[derive(Deserialize, Debug, PartialEq)]
struct DstackAppInfo {
    #[serde(with = "serde_bytes_compat")]
    app_id: Vec<u8>,
    #[serde(with = "serde_bytes_compat")]
    compose_hash: Vec<u8>,
    #[serde(with = "serde_bytes_compat")]
    instance_id: Vec<u8>,
    #[serde(with = "serde_bytes_compat")]
    device_id: Vec<u8>,
    #[serde(with = "serde_bytes_compat")]
    mr_system: Vec<u8>,
    #[serde(with = "serde_bytes_compat")]
    mr_aggregated: Vec<u8>,
    #[serde(with = "serde_bytes_compat")]
    os_image_hash: Vec<u8>,
    #[serde(with = "serde_bytes_compat")]
    key_provider_info: Vec<u8>,
}

/// `bin` into `Vec<u8>` (what dstack's `serde_human_bytes` does for a
/// binary format).
mod serde_bytes_compat {
    use serde::Deserializer;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(V)
    }
}

#[test]
fn app_info_is_a_msgpack_map_dstacks_decoder_reads() {
    let info = AppInfo {
        app_id: vec![0xa1; 20],
        compose_hash: vec![0xc0; 32],
        instance_id: vec![],
        device_id: vec![0xd1; 32],
        mr_system: vec![1; 32],
        mr_aggregated: vec![2; 32],
        os_image_hash: vec![5; 32],
        key_provider_info: vec![0x7b; 300],
    };
    let bytes = info.to_msgpack();
    assert_eq!(bytes[0], 0x88);
    let back: DstackAppInfo = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back.app_id, info.app_id);
    assert_eq!(back.compose_hash, info.compose_hash);
    assert_eq!(back.instance_id, info.instance_id);
    assert_eq!(back.device_id, info.device_id);
    assert_eq!(back.mr_system, info.mr_system);
    assert_eq!(back.mr_aggregated, info.mr_aggregated);
    assert_eq!(back.os_image_hash, info.os_image_hash);
    assert_eq!(back.key_provider_info, info.key_provider_info);
}
