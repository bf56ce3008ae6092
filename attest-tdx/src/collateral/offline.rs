//! An offline directory of collateral files, for air-gapped KMS replicas.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use attest_core::{AttestError, CollateralMissing, Malformed, Unavailable, UnixTime};

use super::{Collateral, CollateralKey, CollateralSource};

/// Largest collateral file read (real ones are about 15 KiB).
pub const MAX_FILE: u64 = 1024 * 1024;

/// A directory of dcap-qvl `QuoteCollateralV3` JSON files named
/// `<FMSPC>-<ca>.json` (`B0C06F000000-platform.json`; the FMSPC in either
/// case), maintained by the operator.
pub struct OfflineCollateral {
    dir: PathBuf,
}

impl OfflineCollateral {
    /// A source reading `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        OfflineCollateral { dir: dir.into() }
    }
}

pub(super) fn read_bounded(path: &std::path::Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE} bytes"
        )));
    }
    Ok(Some(buf))
}

#[async_trait]
impl CollateralSource for OfflineCollateral {
    async fn fetch(
        &self,
        key: &CollateralKey,
        _now: UnixTime,
    ) -> Result<Arc<Collateral>, AttestError> {
        let stem = key.file_stem();
        let candidates = [
            format!("{stem}.json"),
            format!("{}-{}.json", hex::encode(key.fmspc), key.ca_str()),
        ];
        for name in candidates {
            let path = self.dir.join(&name);
            let bytes = read_bounded(&path).map_err(|e| Unavailable::Local {
                detail: format!("reading {}: {e}", path.display()),
            })?;
            if let Some(bytes) = bytes {
                // A file that does not hold a usable set is the operator's
                // to fix, whatever is wrong in it.
                return Collateral::from_json(&bytes).map(Arc::new).map_err(|e| {
                    let inner = match e {
                        AttestError::Malformed(m) => m,
                        other => Malformed::Other(other.message()),
                    };
                    Malformed::Within {
                        location: path.display().to_string(),
                        inner: Box::new(inner),
                    }
                    .into()
                });
            }
        }
        Err(CollateralMissing::NotFound {
            detail: format!("no collateral for {stem} in {}", self.dir.display()),
        }
        .into())
    }
}
