//! Guest side of the KMS: the `kms.v1` wire protocol, evidence from Linux
//! configfs-tsm, and a client that asks for app keys, checks the KMS's
//! signature against a pinned key provider id and opens the sealed answer.
#![forbid(unsafe_code)]

mod client;
pub mod seal;
pub mod tsm;

pub use client::{AppKeys, ClientError, KmsClient, app_id_of, open_with_app_id};

/// The generated `kms.v1` protocol.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("kms.v1");
    /// The encoded descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kms_descriptor");

    impl From<&attest_core::Evidence> for Evidence {
        fn from(e: &attest_core::Evidence) -> Self {
            Evidence {
                platform: e.platform.to_string(),
                quote: e.quote.clone(),
                certificates: e.certificates.clone(),
                event_log: e.event_log.clone(),
                app_config: e.app_config.clone(),
            }
        }
    }
}
