//! Root key files: generated once with mode 0600, reloaded identically,
//! refused when readable by others or incomplete, imported from dstack.

use std::os::unix::fs::PermissionsExt;

use kms::service::keys::RootKeys;

#[test]
fn generated_once_then_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (a, created) = RootKeys::load_or_generate(&data).unwrap();
    assert!(created);
    for f in ["root-ca.key", "root-k256.key", "root-secret"] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert!(
        !std::fs::read_dir(&data).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
    let (b, created) = RootKeys::load_or_generate(&data).unwrap();
    assert!(!created);
    assert_eq!(a.key_provider_id(), b.key_provider_id());
    assert_eq!(a.root_secret(), b.root_secret());
    // Debug never shows secrets.
    let dbg = format!("{a:?}");
    assert!(dbg.contains("redacted"));
    assert!(!dbg.contains(&hex::encode(a.root_secret())));
}

#[test]
fn readable_key_files_and_half_sets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    RootKeys::load_or_generate(&data).unwrap();
    std::fs::set_permissions(
        data.join("root-secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = RootKeys::load_or_generate(&data).unwrap_err().to_string();
    assert!(
        err.contains("mode 644 lets group or others read a secret key"),
        "{err}"
    );
    std::fs::set_permissions(
        data.join("root-secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_file(data.join("root-k256.key")).unwrap();
    let err = RootKeys::load_or_generate(&data).unwrap_err().to_string();
    assert!(err.contains("incomplete key set"), "{err}");
}

#[test]
fn dstack_keys_import_with_their_key_provider_id() {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/vectors/kdf/dstack-legacy.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let der = hex::decode(v["app_keys"]["root_ca_pkcs8_der_hex"].as_str().unwrap()).unwrap();
    let k256 = hex::decode(v["app_keys"]["root_k256_secret_hex"].as_str().unwrap()).unwrap();
    use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let pem = p256::SecretKey::from_pkcs8_der(&der)
        .unwrap()
        .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let imported = RootKeys::import_dstack(&data, pem.as_bytes(), &k256).unwrap();
    // The key provider id is the SPKI of the imported key, as dstack computes it.
    let spki = p256::SecretKey::from_pkcs8_der(&der).unwrap().public_key();
    use p256::pkcs8::EncodePublicKey;
    assert_eq!(
        imported.key_provider_id(),
        hex::encode(spki.to_public_key_der().unwrap().as_bytes())
    );
    let (loaded, created) = RootKeys::load_or_generate(&data).unwrap();
    assert!(!created);
    assert_eq!(loaded.key_provider_id(), imported.key_provider_id());
    // Never over existing keys.
    assert!(RootKeys::import_dstack(&data, pem.as_bytes(), &k256).is_err());
    assert!(RootKeys::import_dstack(&dir.path().join("x"), b"not pem", &k256).is_err());
    assert!(RootKeys::import_dstack(&dir.path().join("y"), pem.as_bytes(), &k256[..31]).is_err());
}
