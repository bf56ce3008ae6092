//! The platform-neutral heart of the attestation layer.
//!
//! Every TEE platform (Intel TDX, AMD SEV-SNP, later vTPM-based ones) is a
//! plug-in crate that implements [`Attestation`]: it takes raw [`Evidence`]
//! and, after checking it fail-closed against its vendor's trust anchors,
//! returns one normalized [`VerifiedIdentity`]. The key service, the policy
//! engine and the audit log only ever see that identity, so a rule or a fix
//! is written once for all platforms.
//!
//! This crate holds no platform code and does no I/O. It owns:
//! - the trait, the [`Verifiers`] registry and the error kinds ([`AttestError`]);
//! - the identity types and their JSON names (a public contract, see
//!   [`identity`]);
//! - the request binding ([`binding`]) every platform puts in its report data;
//! - the dstack app-identity documents shared by plug-ins: runtime events
//!   replayed into a measurement register ([`eventlog`]) and the app config v3
//!   document bound through SNP HOST_DATA ([`app_config`]).

pub mod app_config;
mod attestation;
pub mod binding;
mod bytes;
pub mod der;
pub mod dstack;
mod error;
pub mod eventlog;
mod evidence;
pub mod fetch;
pub mod identity;
pub mod image_registry;
pub mod names;
mod platform;
pub mod reader;

pub use attestation::{Attestation, Verifiers};
pub use bytes::{AppId, ComposeHash, DeviceId, HexBytes, InstanceId, OsImageHash, ReportData};
pub use error::{
    AttestError, BadSignature, CollateralExpired, CollateralMissing, ErrorKind, Insecure,
    Malformed, Revoked, Unavailable, UntrustedChain, describe_pcr_selection,
};
pub use evidence::{Evidence, UnixTime, VerifyContext};
pub use identity::{
    AppIdentity, BootMeasurements, BootValue, KeyProvider, NoApp, PlatformClaims,
    QuoteOnlyIdentity, TcbInfo, TcbStatus, VerifiedIdentity,
};
pub use platform::PlatformId;
