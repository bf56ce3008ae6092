//! Root keys: generated on first start into the data directory, or imported
//! from a dstack KMS.
//!
//! | file | content |
//! |---|---|
//! | `root-ca.key` | P-256 root CA key, PKCS#8 PEM (signs responses; its SPKI is the key provider id) |
//! | `root-ca.crt` | the self-signed root CA certificate, PEM |
//! | `root-k256.key` | secp256k1 root key, raw 32 bytes (dstack's format) |
//! | `root-secret` | 32 random bytes: the `v2` derivation root and the challenge MAC root |
//!
//! Key files are written atomically under an unpredictable exclusive
//! temporary name with mode 0600 from the first byte ([`keyfile`]), and
//! refused at load when group or world can read them. The data directory
//! is created 0700, and the service refuses to start when it is group- or
//! world-writable or owned by another user. Secrets are zeroized on drop
//! and never appear in `Debug` output or logs.

use std::fmt;
use std::path::Path;

use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// A key file problem.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// I/O on a key file.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A key that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

fn file_err(path: &Path, message: impl Into<String>) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The KMS root keys.
pub struct RootKeys {
    ca_key: p256::SecretKey,
    /// The same key in aws-lc-rs form: response signing is on the hot path.
    ca_signer: aws_lc_rs::signature::EcdsaKeyPair,
    ca_cert_pem: String,
    ca_spki_der: Vec<u8>,
    k256: k256::SecretKey,
    root_secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for RootKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootKeys")
            .field("key_provider_id", &self.key_provider_id())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

const CA_KEY: &str = "root-ca.key";
const CA_CERT: &str = "root-ca.crt";
const K256_KEY: &str = "root-k256.key";
const ROOT_SECRET: &str = "root-secret";

/// Writes a key file (see [`keyfile::write_secret`]: exclusive random
/// temporary name, 0600 from the first byte, fsync, rename, directory fsync).
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    keyfile::write_secret(path, bytes).map_err(|e| file_err(path, e.to_string()))
}

/// Reads a key file, refusing one that group or world can read.
fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    keyfile::read_secret(path, 64 * 1024).map_err(|e| file_err(path, e.to_string()))
}

/// Creates the data directory 0700 if missing, and refuses one that group
/// or others can write, or that another user owns.
fn private_data_dir(dir: &Path) -> Result<(), KeyError> {
    keyfile::create_private_dir(dir).map_err(|e| file_err(dir, e.to_string()))?;
    keyfile::check_private_dir(dir)
        .map_err(|e| KeyError::Invalid(format!("{e}; refusing to start")))
}

/// The root secret of imported dstack keys:
/// `HKDF-SHA256(salt = "kms-root-secret/v1", ikm = ca scalar ‖ k256 scalar, info = "dstack-import")`.
fn imported_root_secret(ca: &p256::SecretKey, k256: &k256::SecretKey) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(64));
    ikm.extend_from_slice(&ca.to_bytes());
    ikm.extend_from_slice(&k256.to_bytes());
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"kms-root-secret/v1"), &ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hk.expand(b"dstack-import", out.as_mut());
    out
}

/// The root CA's name and constraints (also what issues TLS certificates).
fn ca_params() -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "KMS Root CA");
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "confidential-kms");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn rcgen_key(key: &p256::SecretKey) -> Result<rcgen::KeyPair, KeyError> {
    let der = key
        .to_pkcs8_der()
        .map_err(|e| KeyError::Invalid(format!("root CA key: {e}")))?;
    rcgen::KeyPair::try_from(der.as_bytes())
        .map_err(|e| KeyError::Invalid(format!("root CA key: {e}")))
}

fn ca_cert(key: &p256::SecretKey) -> Result<String, KeyError> {
    let kp = rcgen_key(key)?;
    let mut p = ca_params();
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(3650);
    p.self_signed(&kp)
        .map(|c| c.pem())
        .map_err(|e| KeyError::Invalid(format!("root CA certificate: {e}")))
}

/// dstack's root CA certificate, checked: one PEM certificate, for `key`,
/// valid now; returned as normalized PEM.
fn imported_ca_cert(key: &p256::SecretKey, pem_text: &[u8]) -> Result<String, KeyError> {
    use der::Decode;
    let bad = |m: String| KeyError::Invalid(format!("root CA certificate: {m}"));
    let p = pem::parse(pem_text).map_err(|e| bad(e.to_string()))?;
    if p.tag() != "CERTIFICATE" {
        return Err(bad(format!(
            "PEM block {:?}, expected CERTIFICATE",
            p.tag()
        )));
    }
    let cert = x509_cert::Certificate::from_der(p.contents()).map_err(|e| bad(e.to_string()))?;
    let spki = dstack_compat::RaTlsCert::from_der(p.contents()).map_err(|e| bad(e.to_string()))?;
    let want = key
        .public_key()
        .to_public_key_der()
        .map_err(|e| bad(e.to_string()))?;
    if spki.spki_der() != want.as_bytes() {
        return Err(bad(
            "it is not the certificate of the imported root CA key".into()
        ));
    }
    let v = cert.tbs_certificate().validity();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if v.not_before.to_unix_duration() > now || v.not_after.to_unix_duration() <= now {
        return Err(bad("it is not valid now".into()));
    }
    Ok(pem::encode_config(
        &pem::Pem::new("CERTIFICATE", p.contents().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

impl RootKeys {
    fn from_parts(
        ca_key: p256::SecretKey,
        ca_cert_pem: String,
        k256: k256::SecretKey,
        root_secret: [u8; 32],
    ) -> Result<Self, KeyError> {
        let ca_spki_der = ca_key
            .public_key()
            .to_public_key_der()
            .map_err(|e| KeyError::Invalid(format!("root CA public key: {e}")))?
            .as_bytes()
            .to_vec();
        let der = ca_key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Invalid(format!("root CA key: {e}")))?;
        let ca_signer = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            der.as_bytes(),
        )
        .map_err(|e| KeyError::Invalid(format!("root CA key: {e}")))?;
        Ok(RootKeys {
            ca_key,
            ca_signer,
            ca_cert_pem,
            ca_spki_der,
            k256,
            root_secret: Zeroizing::new(root_secret),
        })
    }

    /// Fresh random keys (not written anywhere).
    pub fn generate() -> Result<Self, KeyError> {
        let ca_key = p256::SecretKey::random(&mut OsRng);
        let cert = ca_cert(&ca_key)?;
        let k256 = k256::SecretKey::random(&mut OsRng);
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Self::from_parts(ca_key, cert, k256, secret)
    }

    /// Loads the keys from `dir`, generating and writing them on first start.
    /// A directory holding only some of the files is refused (never a half
    /// set of keys).
    pub fn load_or_generate(dir: &Path) -> Result<(Self, bool), KeyError> {
        private_data_dir(dir)?;
        let files = [CA_KEY, CA_CERT, K256_KEY, ROOT_SECRET].map(|f| dir.join(f));
        let present = files.iter().filter(|p| p.exists()).count();
        if present == 0 {
            let keys = Self::generate()?;
            keys.write(dir)?;
            return Ok((keys, true));
        }
        if present != files.len() {
            let missing: Vec<String> = files
                .iter()
                .filter(|p| !p.exists())
                .map(|p| p.display().to_string())
                .collect();
            return Err(KeyError::Invalid(format!(
                "{} holds an incomplete key set (missing {}); refusing to start",
                dir.display(),
                missing.join(", ")
            )));
        }
        Ok((Self::load(dir)?, false))
    }

    fn load(dir: &Path) -> Result<Self, KeyError> {
        let pem = read_secret_file(&dir.join(CA_KEY))?;
        let pem = std::str::from_utf8(&pem).map_err(|_| file_err(&dir.join(CA_KEY), "not PEM"))?;
        let ca_key = p256::SecretKey::from_pkcs8_pem(pem)
            .map_err(|e| file_err(&dir.join(CA_KEY), e.to_string()))?;
        let cert = std::fs::read_to_string(dir.join(CA_CERT))
            .map_err(|e| file_err(&dir.join(CA_CERT), e.to_string()))?;
        let k = read_secret_file(&dir.join(K256_KEY))?;
        if k.len() != 32 {
            return Err(file_err(&dir.join(K256_KEY), "must be 32 raw bytes"));
        }
        let k256 = k256::SecretKey::from_slice(&k)
            .map_err(|_| file_err(&dir.join(K256_KEY), "not a 32-byte secp256k1 key"))?;
        let s = read_secret_file(&dir.join(ROOT_SECRET))?;
        let secret: [u8; 32] = s
            .as_slice()
            .try_into()
            .map_err(|_| file_err(&dir.join(ROOT_SECRET), "must be 32 bytes"))?;
        Self::from_parts(ca_key, cert, k256, secret)
    }

    fn write(&self, dir: &Path) -> Result<(), KeyError> {
        let pem = self
            .ca_key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Invalid(format!("root CA key: {e}")))?;
        // Certificate first: a crash leaves no key without its certificate
        // unnoticed (load refuses incomplete sets).
        write_secret_file(&dir.join(CA_CERT), self.ca_cert_pem.as_bytes())?;
        write_secret_file(&dir.join(CA_KEY), pem.as_bytes())?;
        write_secret_file(
            &dir.join(K256_KEY),
            &Zeroizing::new(self.k256.to_bytes().to_vec()),
        )?;
        write_secret_file(&dir.join(ROOT_SECRET), self.root_secret.as_slice())?;
        Ok(())
    }

    /// Imports a dstack KMS's root keys (`root-ca.key` PKCS#8 PEM,
    /// `root-k256.key` raw 32 bytes) into `dir`. The root secret (the `v2`
    /// derivation root and the challenge MAC root, which dstack has no
    /// equivalent of) is derived from the imported keys, so replicas that
    /// import the same keys separately accept each other's challenges and
    /// derive the same `v2` keys. Refuses to overwrite existing keys.
    pub fn import_dstack(dir: &Path, ca_key_pem: &[u8], k256_raw: &[u8]) -> Result<Self, KeyError> {
        Self::import_dstack_with_cert(dir, ca_key_pem, k256_raw, None)
    }

    /// [`RootKeys::import_dstack`], keeping dstack's root CA certificate
    /// (`root-ca.crt`) when given instead of issuing a new one: its subject
    /// (`O=Dstack, CN=Dstack KMS CA`) is then the issuer name of every
    /// certificate this KMS signs, so gateways and clients that kept the
    /// old certificate still build chains. The certificate must be for the
    /// imported key and valid now.
    pub fn import_dstack_with_cert(
        dir: &Path,
        ca_key_pem: &[u8],
        k256_raw: &[u8],
        ca_cert_pem: Option<&[u8]>,
    ) -> Result<Self, KeyError> {
        if dir.join(CA_KEY).exists() || dir.join(K256_KEY).exists() {
            return Err(KeyError::Invalid(format!(
                "{} already holds root keys; refusing to overwrite",
                dir.display()
            )));
        }
        let pem = std::str::from_utf8(ca_key_pem)
            .map_err(|_| KeyError::Invalid("root CA key is not PEM".into()))?;
        let ca_key = p256::SecretKey::from_pkcs8_pem(pem)
            .map_err(|e| KeyError::Invalid(format!("root CA key: {e}")))?;
        if k256_raw.len() != 32 {
            return Err(KeyError::Invalid(format!(
                "root k256 key must be 32 raw bytes, found {}",
                k256_raw.len()
            )));
        }
        let k256 = k256::SecretKey::from_slice(k256_raw)
            .map_err(|_| KeyError::Invalid("root k256 key must be 32 raw bytes".into()))?;
        let secret = imported_root_secret(&ca_key, &k256);
        let cert = match ca_cert_pem {
            None => ca_cert(&ca_key)?,
            Some(pem) => imported_ca_cert(&ca_key, pem)?,
        };
        let keys = Self::from_parts(ca_key.clone(), cert, k256, *secret)?;
        private_data_dir(dir)?;
        keys.write(dir)?;
        Ok(keys)
    }

    /// Installs root keys a replica received from a running KMS
    /// (`GetRootKeys`): the same CA key and certificate, k256 key and root
    /// secret, so the replica serves the same key provider id, keys and
    /// challenges. The certificate must be for the CA key and valid now.
    /// Refuses to overwrite existing keys.
    pub fn install(
        dir: &Path,
        ca_pkcs8_der: &[u8],
        ca_cert_pem: &str,
        k256_raw: &[u8],
        root_secret: &[u8],
    ) -> Result<Self, KeyError> {
        if [CA_KEY, CA_CERT, K256_KEY, ROOT_SECRET]
            .iter()
            .any(|f| dir.join(f).exists())
        {
            return Err(KeyError::Invalid(format!(
                "{} already holds root keys; refusing to overwrite",
                dir.display()
            )));
        }
        let ca_key = p256::SecretKey::from_pkcs8_der(ca_pkcs8_der)
            .map_err(|e| KeyError::Invalid(format!("received root CA key: {e}")))?;
        let cert = imported_ca_cert(&ca_key, ca_cert_pem.as_bytes())?;
        let k256 = k256::SecretKey::from_slice(k256_raw)
            .map_err(|_| KeyError::Invalid("received root k256 key must be 32 bytes".into()))?;
        let secret: [u8; 32] = root_secret
            .try_into()
            .map_err(|_| KeyError::Invalid("received root secret must be 32 bytes".into()))?;
        let keys = Self::from_parts(ca_key, cert, k256, secret)?;
        private_data_dir(dir)?;
        keys.write(dir)?;
        Ok(keys)
    }

    /// Loads the keys in `dir` when it holds a complete set (`None` when it
    /// holds none; an incomplete set is an error).
    pub fn load_existing(dir: &Path) -> Result<Option<Self>, KeyError> {
        let files = [CA_KEY, CA_CERT, K256_KEY, ROOT_SECRET].map(|f| dir.join(f));
        match files.iter().filter(|p| p.exists()).count() {
            0 => Ok(None),
            4 => {
                keyfile::check_private_dir(dir)
                    .map_err(|e| KeyError::Invalid(format!("{e}; refusing to start")))?;
                Self::load(dir).map(Some)
            }
            _ => Err(KeyError::Invalid(format!(
                "{} holds an incomplete key set; refusing to start",
                dir.display()
            ))),
        }
    }

    /// A TLS server certificate for `names`, issued by the root CA (valid
    /// one year): (certificate chain PEM, private key PEM). Clients that
    /// trust the root CA certificate can connect.
    pub fn tls_server_cert(
        &self,
        names: &[String],
    ) -> Result<(String, zeroize::Zeroizing<String>), KeyError> {
        let ca_key = rcgen_key(&self.ca_key)?;
        // The issuer name is the served root certificate's subject (an
        // imported dstack certificate keeps its own).
        let issuer = rcgen::Issuer::from_ca_cert_pem(&self.ca_cert_pem, &ca_key)
            .map_err(|e| KeyError::Invalid(format!("root CA certificate: {e}")))?;
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| KeyError::Invalid(format!("TLS key: {e}")))?;
        let mut p = rcgen::CertificateParams::new(names.to_vec())
            .map_err(|e| KeyError::Invalid(format!("TLS names: {e}")))?;
        p.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("kms"),
        );
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(365);
        let cert = p
            .signed_by(&leaf_key, &issuer)
            .map_err(|e| KeyError::Invalid(format!("TLS certificate: {e}")))?;
        Ok((
            cert.pem(),
            zeroize::Zeroizing::new(leaf_key.serialize_pem()),
        ))
    }

    /// Hex of the root CA SubjectPublicKeyInfo DER, as dstack defines it.
    pub fn key_provider_id(&self) -> String {
        hex::encode(&self.ca_spki_der)
    }

    /// The root CA SubjectPublicKeyInfo DER.
    pub fn ca_spki_der(&self) -> &[u8] {
        &self.ca_spki_der
    }

    /// The root CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The root CA key (signing responses, dstack derivation).
    pub fn ca_key(&self) -> &p256::SecretKey {
        &self.ca_key
    }

    /// Signs `msg` with the root CA key: ECDSA P-256 over SHA-256, DER.
    pub fn sign_with_ca(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.ca_signer
            .sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::Invalid("ECDSA signing failed".into()))
    }

    /// The secp256k1 root key.
    pub fn k256(&self) -> &k256::SecretKey {
        &self.k256
    }

    /// The 32-byte root secret.
    pub fn root_secret(&self) -> &[u8; 32] {
        &self.root_secret
    }

    /// Keys from explicit parts (tests, KDF vectors).
    pub fn from_secrets(
        ca_pkcs8_der: &[u8],
        k256_raw: &[u8],
        root_secret: [u8; 32],
    ) -> Result<Self, KeyError> {
        let ca_key = p256::SecretKey::from_pkcs8_der(ca_pkcs8_der)
            .map_err(|e| KeyError::Invalid(format!("root CA key: {e}")))?;
        let k256 = k256::SecretKey::from_slice(k256_raw)
            .map_err(|_| KeyError::Invalid("root k256 key must be 32 bytes".into()))?;
        let cert = ca_cert(&ca_key)?;
        Self::from_parts(ca_key, cert, k256, root_secret)
    }
}
