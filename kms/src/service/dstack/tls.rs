//! TLS of the dstack-compatible listener (rustls, ring).
//!
//! The server presents the RPC certificate ([`super::certs::rpc_server_cert`])
//! and offers ALPN `h2` and `http/1.1` (dstack's guests speak HTTP/1.1
//! only). It requests a client certificate, optional and from any issuer:
//! guests sign their RA-TLS certificates with a temp CA whose key is public
//! (ours, or a dstack KMS's they still hold), so a chain check would prove
//! nothing. What rustls still checks is the proof of possession: the
//! client's CertificateVerify signature under the certificate's key. The
//! handlers then require the attestation in the certificate to be bound to
//! that very key.

use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Largest client certificate accepted in the handshake (a dstack RA-TLS
/// certificate with a TDX quote and its events is about 10 KiB; rustls
/// itself caps a handshake message at 64 KiB).
pub const MAX_CLIENT_CERT: usize = 64 * 1024;

/// Accepts any client certificate (see the module doc) and checks that the
/// client holds its key.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.len() > MAX_CLIENT_CERT {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        }
        // Neither chain nor validity: the temp CA key is public. The
        // attestation bound to this certificate's key is checked per request.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server configuration: `cert_der` (signed by the root CA) and its
/// PKCS#8 key, TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`, an optional
/// client certificate from any issuer.
pub fn server_config(
    cert_der: Vec<u8>,
    key_pkcs8_der: &[u8],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8_der.to_vec()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(cert_der)], key)
        .map_err(|e| format!("TLS: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
