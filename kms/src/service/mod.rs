//! The key service, by role: the shared [`KmsState`], the key-release core
//! ([`release`]) every front end calls, the `kms.v1` gRPC front end
//! ([`grpc`]), the dstack-compatible front end ([`dstack`]), challenges, root keys, derivation, sealing, audit, metrics,
//! and the listener with its resource limits.

pub mod audit;
pub mod challenge;
pub mod cork;
pub mod dstack;
pub mod ear;
pub mod grpc;
pub mod kdf;
pub mod kem;
pub mod keys;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod peers;
pub mod release;
mod state;

pub use state::{EnvKeyCache, EnvPubKey, KeyCache, KmsState, LogLimiter};
