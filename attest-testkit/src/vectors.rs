//! Where the shared test vectors are: the one loader every test uses.
//!
//! `KMS_TEST_VECTORS` names the directory when set (cargo-mutants and
//! other tools build a copy of the tree elsewhere); otherwise it is
//! `../shared/vectors` beside the repository. A missing directory fails
//! the test loudly: tests never skip for want of their vectors.
//!
//! The default is resolved from this crate's own manifest directory: every
//! workspace member (and `fuzz/`) sits one level under the repository root,
//! so `../../shared/vectors` names the same directory for each of them, and
//! callers need not pass their `CARGO_MANIFEST_DIR`.

use std::path::{Path, PathBuf};

/// The environment variable that overrides the vectors directory.
pub const ENV: &str = "KMS_TEST_VECTORS";

/// The vectors directory.
///
/// # Panics
/// When the directory does not exist (a test without its vectors must fail).
pub fn dir() -> PathBuf {
    let dir = match std::env::var_os(ENV) {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    };
    assert!(
        dir.is_dir(),
        "test vectors missing: expected {} (check out ../shared beside the repository, or set {ENV})",
        dir.display()
    );
    dir
}

/// The path of a vector, relative to the vectors directory.
pub fn path(relative: &str) -> PathBuf {
    dir().join(relative)
}

/// A vector's bytes.
///
/// # Panics
/// When the file cannot be read.
pub fn read(relative: &str) -> Vec<u8> {
    let p = path(relative);
    std::fs::read(&p).unwrap_or_else(|e| panic!("test vector {}: {e}", p.display()))
}

/// A vector's text.
///
/// # Panics
/// When the file cannot be read or is not UTF-8.
pub fn read_string(relative: &str) -> String {
    let p = path(relative);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("test vector {}: {e}", p.display()))
}
