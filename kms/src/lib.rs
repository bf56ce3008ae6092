//! The key management service: one `GetAppKey` path for every TEE platform.
#![forbid(unsafe_code)]

pub mod kdf;
pub mod keys;

/// The generated `kms.v1` protocol.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("kms.v1");
    /// The encoded descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kms_descriptor");
}
