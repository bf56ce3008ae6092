//! The key management service: one key-release path for every TEE platform.
//!
//! - [`service`]: the running service, by role (state, the key-release
//!   core, the `kms.v1` front end, root keys, derivation, sealing, audit,
//!   metrics, the listener);
//! - [`config`]: the `kms.toml` configuration;
//! - [`platforms`]: the one place that names platforms (building the
//!   plug-ins from the configuration);
//! - [`demo`] (feature `demo`): a KMS on the testkit's FAKE roots, for the
//!   demo and the load benchmark.

pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod onboard;
pub mod platforms;
pub mod service;

pub use kms_proto::{proto, seal};
