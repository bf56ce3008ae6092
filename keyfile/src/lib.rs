//! Secret files at rest (the KMS's root keys, a guest's app keys).
//!
//! The first two security reviews found key files written through a
//! predictable temporary name opened without exclusive create (a
//! pre-existing 0666 file kept its mode and became a 0666 `root-ca.key`),
//! and a guest key file opened with create/truncate (an existing file kept
//! its mode, a symlink at the path was followed, a crash left a partial
//! file). Here:
//! - [`write_secret`]: a new temporary file in the same directory, under a
//!   random name, created exclusively (`O_EXCL`), not through a symlink
//!   (`O_NOFOLLOW`), mode 0600 from the first byte; written, fsynced,
//!   renamed over the target, and the directory fsynced. A target that is
//!   a symlink is refused.
//! - [`read_secret`]: refuses a symlink, a file group or others can
//!   access, and oversized files.
//! - [`create_private_dir`] / [`check_private_dir`]: a directory that
//!   holds secrets is 0700, owned by the user running the service, and
//!   writable by nobody else.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

fn err(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {what}", path.display()))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically, mode 0600 (see the crate docs).
pub fn write_secret(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(err(
                path,
                "is a symbolic link; refusing to write a secret through it",
            ));
        }
        Ok(m) if !m.file_type().is_file() => {
            return Err(err(path, "exists and is not a regular file"));
        }
        _ => {}
    }
    let dir = parent(path);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| err(path, "has no file name"))?;
    let mut random = [0u8; 12];
    OsRng.fill_bytes(&mut random);
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let tmp: PathBuf = dir.join(format!(".{name}.{suffix}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)
        .map_err(|e| err(&tmp, e))?;
    let written = (|| {
        // The umask cannot widen 0600, but make the mode explicit anyway.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    drop(f);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(&tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(path, e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(dir, e))
}

/// Reads a secret file of at most `max` bytes, refusing a symlink and a
/// file that group or others can access.
pub fn read_secret(path: &Path, max: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| err(path, e))?;
    if meta.file_type().is_symlink() {
        return Err(err(
            path,
            "is a symbolic link; refusing to read a secret through it",
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(
            path,
            format!("mode {mode:o} lets group or others read a secret key; chmod 600 it"),
        ));
    }
    if meta.len() > max {
        return Err(err(path, format!("larger than {max} bytes")));
    }
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| err(path, e))
}

/// Creates `dir` (and missing parents) with the final directory 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(dir, e))?;
    }
    Ok(())
}

/// Checks that a directory holding secrets is safe to use: a directory,
/// not writable by group or others, and owned by the user running this
/// process.
pub fn check_private_dir(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| err(dir, e))?;
    if !meta.is_dir() {
        return Err(err(dir, "is not a directory"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(err(
            dir,
            format!(
                "mode {mode:o} lets group or others write where secret keys live; chmod 700 it"
            ),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(err(
            dir,
            format!(
                "is owned by uid {}, not by the user running the service (uid {me})",
                meta.uid()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_0600_atomically_whatever_was_there() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("root-ca.key");
        // The predictable temporary name of the first release, pre-created
        // world-writable: irrelevant now.
        let old_tmp = d.path().join(".root-ca.key.tmp");
        std::fs::write(&old_tmp, b"attacker").unwrap();
        std::fs::set_permissions(&old_tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
        // An existing world-readable target is replaced, not reused.
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_secret(&p, b"secret").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&old_tmp).unwrap(), b"attacker");
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp") && n != ".root-ca.key.tmp")
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(*read_secret(&p, 64).unwrap(), b"secret");
    }

    #[test]
    fn symlinks_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("readable-by-attacker");
        std::fs::write(&target, b"").unwrap();
        let link = d.path().join("keys.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_secret(&link, b"secret").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"");
        assert!(read_secret(&link, 64).is_err());
    }

    #[test]
    fn readable_or_oversized_secrets_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        std::fs::write(&p, b"0123456789").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(
            read_secret(&p, 64)
                .unwrap_err()
                .to_string()
                .contains("mode 640")
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            read_secret(&p, 5)
                .unwrap_err()
                .to_string()
                .contains("larger than 5")
        );
    }

    #[test]
    fn private_dirs() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("a/b/kms-data");
        create_private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        check_private_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = check_private_dir(&data).unwrap_err();
        assert!(e.to_string().contains("mode 770"), "{e}");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_private_dir(&data).unwrap();
        // Owned by another user (only root can arrange that).
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&data, Some(65534), None).unwrap();
            let e = check_private_dir(&data).unwrap_err();
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        }
    }
}
