//! Test-only fake vendor PKIs.
//!
//! Real hardware evidence cannot carry our own report data, app ids or
//! expired-versus-fresh cases, so tests make their own: this crate plays
//! Intel (root CA, PCK platform CA, PCK leaf, TCB signer, CRLs, TCB info, QE
//! identity, quotes signed through a QE report), AMD, and an Azure vTPM (an
//! RSA AK, HCL reports signed through the fake AMD and Intel PKIs). Everything it signs
//! chains to roots generated here, which production verifiers never trust:
//! a verifier accepts them only when a test installs [`tdx::FakeIntelPki::root_der`].
//!
//! Never a dependency of production code paths.

mod der;
pub mod dstack;
pub mod snp;
pub mod tdx;
pub mod vectors;
pub mod vtpm;
