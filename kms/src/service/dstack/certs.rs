//! The certificates of the dstack-compatible front end
//! (`shared/reference/dstack-wire.md` §1.3, §2.1, §7):
//! - the **temp CA** guests sign their RA-TLS client certificates with: a
//!   persistent P-256 key and a simple self-signed CA certificate, handed
//!   out by `GetTempCaCert` (its key is public by design: the attestation
//!   bound to the client certificate's key is what authenticates);
//! - the **RPC server certificate**: a P-256 leaf signed by the root CA for
//!   the configured names, with dstack's usage extension `kms:rpc`;
//! - the **app CA** of each app, derived from the root CA key as dstack
//!   derives it, and the leaves `SignCert` issues under it.
//!
//! Every certificate signed by the root CA takes its issuer name from the
//! root CA certificate the service hands out, so a guest builds the chain
//! whatever that name is (an imported dstack root keeps its own).

use std::path::Path;

use attest_core::AppId;
use p256::pkcs8::EncodePrivateKey;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::service::kdf;
use crate::service::keys::{KeyError, RootKeys, write_secret_file};

/// dstack's OID arc `1.3.6.1.4.1.62397.1`.
const DSTACK_ARC: [u64; 8] = [1, 3, 6, 1, 4, 1, 62397, 1];

/// `.1.3`: app id.
pub const OID_APP_ID: u64 = 3;
/// `.1.4`: special usage.
pub const OID_SPECIAL_USAGE: u64 = 4;
/// `.1.8`: attestation.
pub const OID_ATTESTATION: u64 = 8;
/// `.1.9`: app info.
pub const OID_APP_INFO: u64 = 9;
/// `.1.1`: raw TDX quote (legacy).
pub const OID_TDX_QUOTE: u64 = 1;
/// `.1.2`: JSON event log (legacy).
pub const OID_EVENT_LOG: u64 = 2;

/// The usage of the RPC server certificate, which guests require.
pub const USAGE_KMS_RPC: &str = "kms:rpc";

const TEMP_CA_KEY: &str = "dstack-tmp-ca.key";
const TEMP_CA_CERT: &str = "dstack-tmp-ca.crt";

/// Lifetime of certificates issued here (dstack's: ten years).
const TEN_YEARS: time::Duration = time::Duration::days(3650);

fn invalid(what: &str, e: impl std::fmt::Display) -> KeyError {
    KeyError::Invalid(format!("{what}: {e}"))
}

/// DER `OCTET STRING { bytes }`: the payload of a dstack extension.
pub fn octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    let n = bytes.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = n.to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(bytes);
    out
}

/// A non-critical dstack extension `.1.<n>` holding `payload`.
pub fn dstack_extension(n: u64, payload: &[u8]) -> rcgen::CustomExtension {
    let mut oid = DSTACK_ARC.to_vec();
    oid.push(n);
    rcgen::CustomExtension::from_oid_content(&oid, octet_string(payload))
}

/// A random positive 16-byte serial number.
fn random_serial() -> rcgen::SerialNumber {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01;
    rcgen::SerialNumber::from_slice(&b)
}

fn rcgen_key(key: &p256::SecretKey, what: &str) -> Result<rcgen::KeyPair, KeyError> {
    let der = key.to_pkcs8_der().map_err(|e| invalid(what, e))?;
    rcgen::KeyPair::try_from(der.as_bytes()).map_err(|e| invalid(what, e))
}

/// The root CA as an issuer: its key, and the subject name of the root CA
/// certificate the service serves.
fn root_issuer(root: &RootKeys) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>, KeyError> {
    let key = rcgen_key(root.ca_key(), "root CA key")?;
    rcgen::Issuer::from_ca_cert_pem(root.ca_cert_pem(), key)
        .map_err(|e| invalid("root CA certificate", e))
}

fn validity(p: &mut rcgen::CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + TEN_YEARS;
}

/// The temp CA: a persistent P-256 key and its self-signed certificate.
pub struct TempCa {
    cert_pem: String,
    key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for TempCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TempCa(..)")
    }
}

impl TempCa {
    /// Loads `dstack-tmp-ca.{key,crt}` from `dir`, generating them on first
    /// use. A certificate whose key is not the stored key is refused.
    pub fn load_or_generate(dir: &Path) -> Result<Self, KeyError> {
        let (key_path, cert_path) = (dir.join(TEMP_CA_KEY), dir.join(TEMP_CA_CERT));
        match (key_path.exists(), cert_path.exists()) {
            (false, false) => {
                let ca = Self::generate()?;
                write_secret_file(&cert_path, ca.cert_pem.as_bytes())?;
                write_secret_file(&key_path, ca.key_pem.as_bytes())?;
                Ok(ca)
            }
            (true, true) => {
                let key = keyfile::read_secret(&key_path, 64 * 1024)
                    .map_err(|e| invalid(&key_path.display().to_string(), e))?;
                let key_pem = Zeroizing::new(
                    String::from_utf8(key.to_vec())
                        .map_err(|_| invalid(&key_path.display().to_string(), "not PEM"))?,
                );
                let cert_pem = std::fs::read_to_string(&cert_path)
                    .map_err(|e| invalid(&cert_path.display().to_string(), e))?;
                let ca = TempCa { cert_pem, key_pem };
                ca.check()?;
                Ok(ca)
            }
            _ => Err(KeyError::Invalid(format!(
                "{} holds only one of {TEMP_CA_KEY} and {TEMP_CA_CERT}; refusing to start",
                dir.display()
            ))),
        }
    }

    /// A fresh temp CA (not written anywhere).
    pub fn generate() -> Result<Self, KeyError> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| invalid("temp CA key", e))?;
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "confidential-kms");
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "KMS Client Temp CA");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        p.serial_number = Some(random_serial());
        validity(&mut p);
        let cert = p
            .self_signed(&kp)
            .map_err(|e| invalid("temp CA certificate", e))?;
        Ok(TempCa {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(kp.serialize_pem()),
        })
    }

    /// The certificate's key must be the stored key (a guest checks the same).
    fn check(&self) -> Result<(), KeyError> {
        let kp = rcgen::KeyPair::from_pem(&self.key_pem).map_err(|e| invalid("temp CA key", e))?;
        let der = pem::parse(&self.cert_pem).map_err(|e| invalid("temp CA certificate", e))?;
        let cert = dstack_compat::RaTlsCert::from_der(der.contents())
            .map_err(|e| invalid("temp CA certificate", e))?;
        if cert.spki_der() != rcgen::PublicKeyData::subject_public_key_info(&kp) {
            return Err(KeyError::Invalid(
                "the temp CA certificate is not for the temp CA key".into(),
            ));
        }
        Ok(())
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The key, PKCS#8 PEM (`PRIVATE KEY`).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// The RPC server certificate for `names` (DNS names or IP addresses), with
/// a fresh key: (DER chain `[leaf]`, PKCS#8 DER key). Subject CN is the
/// first name; SAN every name; keyUsage digitalSignature; EKU serverAuth;
/// `.1.4 = "kms:rpc"`; no `.1.8` (no attestation of this service is made).
pub fn rpc_server_cert(
    root: &RootKeys,
    names: &[String],
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), KeyError> {
    let issuer = root_issuer(root)?;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| invalid("RPC key", e))?;
    let mut p =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| invalid("server_names", e))?;
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("kms"),
    );
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.custom_extensions = vec![dstack_extension(
        OID_SPECIAL_USAGE,
        USAGE_KMS_RPC.as_bytes(),
    )];
    p.serial_number = Some(random_serial());
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(365);
    let cert = p
        .signed_by(&kp, &issuer)
        .map_err(|e| invalid("RPC certificate", e))?;
    Ok((cert.der().to_vec(), Zeroizing::new(kp.serialize_der())))
}

/// The app CA key, as dstack derives it:
/// `derive_p256_key_pair(root_ca_key, [app_id, "app-ca"])`.
pub fn app_ca_key(root: &RootKeys, app_id: &AppId) -> Result<p256::SecretKey, KeyError> {
    let scalar = Zeroizing::new(root.ca_key().to_bytes());
    let derived = kdf::dstack_derive_key(&scalar[..], &[&app_id.0, b"app-ca"]);
    p256::SecretKey::from_slice(&derived[..])
        .map_err(|_| KeyError::Invalid("derived app CA scalar out of range".into()))
}

/// The app CA certificate of `app_id`: `O=Dstack, CN=Dstack App CA`,
/// pathlen 0, `.1.3 = app_id`, `.1.4 = "app:ca"`, signed by the root CA.
pub fn app_ca(
    root: &RootKeys,
    app_id: &AppId,
) -> Result<(rcgen::KeyPair, rcgen::CertificateParams, String), KeyError> {
    let kp = rcgen_key(&app_ca_key(root, app_id)?, "app CA key")?;
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "Dstack");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Dstack App CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p.custom_extensions = vec![
        dstack_extension(OID_APP_ID, &app_id.0),
        dstack_extension(OID_SPECIAL_USAGE, b"app:ca"),
    ];
    p.serial_number = Some(random_serial());
    validity(&mut p);
    let cert = p
        .signed_by(&kp, &root_issuer(root)?)
        .map_err(|e| invalid("app CA certificate", e))?;
    Ok((kp, p, cert.pem()))
}

/// What an issued leaf says, beyond its key.
pub struct LeafRequest<'a> {
    /// The key to certify (SubjectPublicKeyInfo DER, from the CSR).
    pub spki_der: &'a [u8],
    /// The CSR's config.
    pub config: &'a dstack_compat::CertConfig,
    /// The verified app.
    pub app_id: &'a AppId,
    /// Extensions to add (`.1.8`, `.1.9`, legacy `.1.1`/`.1.2`).
    pub extra: Vec<rcgen::CustomExtension>,
    /// Now, Unix seconds.
    pub now: u64,
}

fn unix_time(secs: u64, what: &str) -> Result<time::OffsetDateTime, String> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| format!("{what} {secs} is not a representable time"))
}

/// Issues the leaf `SignCert` asks for, under the app CA: subject from
/// the config, SANs (DNS names or IP addresses), EKUs from the usage
/// flags, `.1.3 = app_id`, `.1.4 = "app:custom"`, plus `extra`. Errors are
/// the request's fault (a bad name, bad times, a key that is not P-256).
pub fn issue_leaf(
    ca_key: &rcgen::KeyPair,
    ca_params: &rcgen::CertificateParams,
    req: LeafRequest<'_>,
) -> Result<String, String> {
    let c = req.config;
    let key = rcgen::SubjectPublicKeyInfo::from_der(req.spki_der)
        .map_err(|e| format!("CSR pubkey: {e}"))?;
    let mut p = rcgen::CertificateParams::new(c.subject_alt_names.clone())
        .map_err(|e| format!("subject_alt_names: {e}"))?;
    if let Some(o) = &c.org_name {
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, o.as_str());
    }
    if !c.subject.is_empty() {
        p.distinguished_name
            .push(rcgen::DnType::CommonName, c.subject.as_str());
    }
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    if c.usage_server_auth {
        p.extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    }
    if c.usage_client_auth {
        p.extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    }
    let mut ext = vec![
        dstack_extension(OID_APP_ID, &req.app_id.0),
        dstack_extension(OID_SPECIAL_USAGE, b"app:custom"),
    ];
    ext.extend(req.extra);
    p.custom_extensions = ext;
    p.serial_number = Some(random_serial());
    let not_before = c.not_before.unwrap_or(req.now);
    let not_after = match c.not_after {
        Some(t) => t,
        None => not_before.saturating_add(TEN_YEARS.whole_seconds().unsigned_abs()),
    };
    if not_after <= not_before {
        return Err(format!(
            "not_after ({not_after}) must be later than not_before ({not_before})"
        ));
    }
    p.not_before = unix_time(not_before, "not_before")?;
    p.not_after = unix_time(not_after, "not_after")?;
    let issuer = rcgen::Issuer::from_params(ca_params, ca_key);
    p.signed_by(&key, &issuer)
        .map(|c| c.pem())
        .map_err(|e| format!("certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_strings_use_definite_lengths() {
        assert_eq!(octet_string(b"kms:rpc")[..2], [0x04, 7]);
        let long = octet_string(&[0; 300]);
        assert_eq!(long[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
        assert_eq!(octet_string(&[0; 200])[..3], [0x04, 0x81, 200]);
    }

    #[test]
    fn temp_ca_persists_and_a_mismatched_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = TempCa::load_or_generate(dir.path()).unwrap();
        let b = TempCa::load_or_generate(dir.path()).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        assert_eq!(a.key_pem(), b.key_pem());
        assert!(a.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        let other = TempCa::generate().unwrap();
        std::fs::remove_file(dir.path().join(TEMP_CA_CERT)).unwrap();
        assert!(TempCa::load_or_generate(dir.path()).is_err());
        write_secret_file(&dir.path().join(TEMP_CA_CERT), other.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            TempCa::load_or_generate(dir.path())
                .unwrap_err()
                .to_string(),
            "the temp CA certificate is not for the temp CA key"
        );
    }
}
