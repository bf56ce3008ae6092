//! Guest side of the KMS: the `kms.v1` wire protocol, evidence from Linux
//! configfs-tsm or from an Azure CVM's vTPM (raw TPM commands, no TSS), and
//! a client that asks for app keys, checks the KMS's signature against a
//! pinned key provider id and opens the sealed answer.

mod client;
pub mod imds;
pub mod tpm;
pub mod tsm;
pub mod vtpm;

pub use client::{AppKeys, ClientError, KmsClient, RootKeySet, app_id_of, open_with_app_id};
/// The wire protocol (re-exported from `kms-proto`, which both sides share).
pub use kms_proto::{binding, proto, seal};
