//! The `kms.v1` wire protocol between a confidential VM and the KMS, the
//! one thing both sides must agree on byte for byte:
//! - [`proto`]: the protobuf messages and the gRPC service (generated from
//!   `proto/kms.proto` with protox: no system `protoc`);
//! - [`binding`]: the report data a `GetAppKey` request's evidence carries;
//! - [`seal`]: the HPKE sealing of the answer, its opening, and the
//!   message the KMS's response signature covers.
//!
//! Neither side's logic lives here: no verifier, no key derivation, no I/O.

pub mod seal;

/// The request binding as the wire uses it: the evidence's report data is
/// `SHA-512("kms-app-key/v1" ‖ u32be(len) ‖ client_public_key ‖ u32be(len) ‖ challenge)`.
pub mod binding {
    pub use attest_core::binding::{
        APP_KEY_LABEL, ATTEST_LABEL, ROOT_KEYS_LABEL, app_key_report_data, attest_report_data,
        root_keys_report_data,
    };
}

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
