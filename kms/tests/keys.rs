//! Root key files: generated once with mode 0600, reloaded identically,
//! refused when readable by others or incomplete, imported from dstack.
#![allow(clippy::unwrap_used, missing_docs)]

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
    let v: serde_json::Value = serde_json::from_str(&attest_testkit::vectors::read_string(
        "kdf/dstack-legacy.json",
    ))
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

/// The first release created keys through the predictable temporary name
/// `.root-ca.key.tmp` without exclusive create: a pre-existing 0666 file
/// there kept its owner and mode, and became a 0666 `root-ca.key`.
#[test]
fn a_planted_temporary_file_cannot_widen_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    for name in ["root-ca.key", "root-k256.key", "root-secret"] {
        let planted = data.join(format!(".{name}.tmp"));
        std::fs::write(&planted, b"").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    RootKeys::load_or_generate(&data).unwrap();
    for name in ["root-ca.key", "root-k256.key", "root-secret"] {
        let mode = std::fs::metadata(data.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
}

/// The data directory is created 0700, and a directory others can write
/// (or another user owns) is refused at start.
#[test]
fn the_data_directory_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new/data");
    RootKeys::load_or_generate(&data).unwrap();
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    for bad in [0o777, 0o770, 0o702] {
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(bad)).unwrap();
        let err = RootKeys::load_or_generate(&data).unwrap_err().to_string();
        assert!(err.contains("refusing to start"), "{bad:o}: {err}");
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    RootKeys::load_or_generate(&data).unwrap();
    if rustix_is_root() {
        std::os::unix::fs::chown(&data, Some(65534), None).unwrap();
        let err = RootKeys::load_or_generate(&data).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// Replicas that import the same dstack keys separately must agree: the
/// root secret (challenge MAC root, `v2` derivation root) is derived from
/// the imported keys, not drawn at random on each import.
#[test]
fn separate_imports_of_the_same_keys_agree() {
    use p256::pkcs8::EncodePrivateKey;
    let ca = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let pem = ca.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
    let k256 = [9u8; 32];
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = RootKeys::import_dstack(&a_dir.path().join("d"), pem.as_bytes(), &k256).unwrap();
    let b = RootKeys::import_dstack(&b_dir.path().join("d"), pem.as_bytes(), &k256).unwrap();
    assert_eq!(a.root_secret(), b.root_secret());
    // One replica's challenge is accepted by the other.
    let ca_a = kms::service::challenge::Challenges::new(a.root_secret(), 60);
    let ca_b = kms::service::challenge::Challenges::new(b.root_secret(), 60);
    let (ch, _) = ca_a.issue(1000);
    ca_b.check(&ch, 1001).unwrap();
    // Other keys, another secret.
    let c = RootKeys::import_dstack(
        &tempfile::tempdir().unwrap().path().join("d"),
        pem.as_bytes(),
        &[8u8; 32],
    )
    .unwrap();
    assert_ne!(a.root_secret(), c.root_secret());
    // The imported directory is private.
    let mode = std::fs::metadata(a_dir.path().join("d"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}

/// `--root-ca-cert`: dstack's own root CA certificate is kept, and every
/// certificate this KMS signs then names it as issuer, so clients that
/// hold the old certificate still build chains to it.
#[test]
fn an_imported_dstack_root_certificate_stays_the_issuer() {
    use p256::pkcs8::EncodePrivateKey;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let key = p256::SecretKey::random(&mut rand_core::OsRng);
    let pem = key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
    let kp = rcgen::KeyPair::from_pem(&pem).unwrap();
    let dstack_cert = |not_after: time::OffsetDateTime| {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Dstack");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Dstack KMS CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        p.not_after = not_after;
        p.self_signed(&kp).unwrap().pem()
    };
    let now = time::OffsetDateTime::now_utc();
    let cert = dstack_cert(now + time::Duration::days(365));
    let k256 = [7u8; 32];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys =
        RootKeys::import_dstack_with_cert(&data, pem.as_bytes(), &k256, Some(cert.as_bytes()))
            .unwrap();
    assert_eq!(keys.ca_cert_pem(), cert);
    let (loaded, _) = RootKeys::load_or_generate(&data).unwrap();
    assert_eq!(loaded.ca_cert_pem(), cert);

    // The kms.v1 TLS certificate and the dstack RPC certificate chain to it.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            pem::parse(&cert).unwrap().into_contents(),
        ))
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    )
    .build()
    .unwrap();
    let names = vec!["kms.example".to_owned()];
    let (tls_pem, _) = loaded.tls_server_cert(&names).unwrap();
    let (rpc_der, _) = kms::service::dstack::certs::rpc_server_cert(&loaded, &names).unwrap();
    for leaf in [pem::parse(&tls_pem).unwrap().into_contents(), rpc_der] {
        verifier
            .verify_server_cert(
                &CertificateDer::from(leaf),
                &[],
                &ServerName::try_from("kms.example").unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap();
    }

    // Another key's certificate, or an expired one, is refused.
    let other = dstack_cert(now - time::Duration::days(1));
    let e = RootKeys::import_dstack_with_cert(
        &dir.path().join("e"),
        pem.as_bytes(),
        &k256,
        Some(other.as_bytes()),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "root CA certificate: it is not valid now");
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
    let foreign = p.self_signed(&stranger).unwrap().pem();
    let e = RootKeys::import_dstack_with_cert(
        &dir.path().join("f"),
        pem.as_bytes(),
        &k256,
        Some(foreign.as_bytes()),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "root CA certificate: it is not the certificate of the imported root CA key"
    );
}
