//! The key management service: one `GetAppKey` path for every TEE platform.
#![forbid(unsafe_code)]

pub mod kdf;
pub mod kem;
pub mod keys;

pub use kms_client::{proto, seal};

pub mod audit;
pub mod challenge;
pub mod config;
pub mod cork;
#[cfg(feature = "demo")]
pub mod demo;
pub mod metrics;
pub mod platforms;
pub mod server;
pub mod service;
