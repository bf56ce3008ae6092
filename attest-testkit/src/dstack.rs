//! dstack-shaped app identity documents for test evidence.

use attest_core::eventlog::{self, LogEvent};
use sha2::{Sha256, Sha384};

/// The app a simulated CVM runs.
#[derive(Clone, Debug)]
pub struct App {
    /// 20-byte app id.
    pub app_id: [u8; 20],
    /// SHA-256 of the compose file.
    pub compose_hash: [u8; 32],
    /// 20-byte instance id, or none.
    pub instance_id: Option<[u8; 20]>,
    /// Key provider `(name, id)`.
    pub key_provider: (String, Vec<u8>),
}

impl App {
    /// A fixed example app.
    pub fn example() -> Self {
        App {
            app_id: [0xa1; 20],
            compose_hash: [0xc0; 32],
            instance_id: Some([0x1d; 20]),
            key_provider: ("kms".into(), vec![0x30, 0x59]),
        }
    }

    /// The RTMR3 runtime events a dstack guest emits for this app, through
    /// `system-ready`.
    pub fn runtime_events(&self) -> Vec<LogEvent> {
        let kp = format!(
            "{{\"name\":\"{}\",\"id\":\"{}\"}}",
            self.key_provider.0,
            hex::encode(&self.key_provider.1)
        );
        vec![
            LogEvent::runtime(3, "system-preparing", b""),
            LogEvent::runtime(3, "app-id", &self.app_id),
            LogEvent::runtime(3, "compose-hash", &self.compose_hash),
            LogEvent::runtime(
                3,
                "instance-id",
                self.instance_id.as_ref().map(|i| &i[..]).unwrap_or(b""),
            ),
            LogEvent::runtime(3, "boot-mr-done", b""),
            LogEvent::runtime(3, "key-provider", kp.as_bytes()),
            LogEvent::runtime(3, "system-ready", b""),
        ]
    }

    /// dstack's JSON event log of these events, and the RTMR3 they replay to.
    pub fn tdx_event_log(&self) -> (Vec<u8>, [u8; 48]) {
        events_to_json(&self.runtime_events())
    }

    /// The same runtime events extended into a vTPM's `app_pcr` (SHA-256
    /// bank), as dstack's JSON list, and the PCR value they replay to from
    /// zero.
    pub fn vtpm_event_log(&self, app_pcr: u32) -> (Vec<u8>, [u8; 32]) {
        let events: Vec<LogEvent> = self
            .runtime_events()
            .into_iter()
            .map(|mut e| {
                e.register = app_pcr;
                e
            })
            .collect();
        let set = eventlog::RegisterSet {
            count: 24,
            app_register: app_pcr,
            prefix: "pcr",
        };
        let regs = eventlog::replay::<Sha256>(&events, &set).unwrap_or_default();
        let mut pcr = [0u8; 32];
        if let Some(r) = regs.get(app_pcr as usize) {
            pcr.copy_from_slice(r);
        }
        (eventlog::to_json_event_log(&events), pcr)
    }

    /// The dstack app config v3 document (SNP HOST_DATA binds it).
    pub fn app_config_v3(&self) -> Vec<u8> {
        let mut doc = format!(
            "{{\"version\":3,\"app_id\":\"{}\",\"compose_hash\":\"{}\"",
            hex::encode(self.app_id),
            hex::encode(self.compose_hash)
        );
        if let Some(i) = self.instance_id {
            doc += &format!(",\"instance_id\":\"{}\"", hex::encode(i));
        }
        doc += &format!(
            ",\"key_provider\":\"{}\",\"key_provider_id\":\"{}\"}}",
            self.key_provider.0,
            hex::encode(&self.key_provider.1)
        );
        doc.into_bytes()
    }
}

/// Serializes events as dstack's JSON list and replays them into RTMR3
/// (only register 3 events are expected here).
pub fn events_to_json(events: &[LogEvent]) -> (Vec<u8>, [u8; 48]) {
    let set = eventlog::RegisterSet {
        count: 4,
        app_register: 3,
        prefix: "rtmr",
    };
    let regs = eventlog::replay::<Sha384>(events, &set).unwrap_or_default();
    let mut rtmr3 = [0u8; 48];
    if let Some(r) = regs.get(3) {
        rtmr3.copy_from_slice(r);
    }
    (eventlog::to_json_event_log(events), rtmr3)
}

/// dstack's wire encodings, written the way a dstack guest writes them
/// (`shared/reference/dstack-wire.md` §2.1, §3), for tests that play the
/// guest.
pub mod wire {
    use attest_core::eventlog::{RuntimeEvent, RuntimeEventVersion};

    /// SCALE compact integer.
    pub fn compact(out: &mut Vec<u8>, n: usize) {
        let n = n as u64;
        if n < 1 << 6 {
            out.push((n as u8) << 2);
        } else if n < 1 << 14 {
            out.extend_from_slice(&(((n as u16) << 2) | 1).to_le_bytes());
        } else if n < 1 << 30 {
            out.extend_from_slice(&(((n as u32) << 2) | 2).to_le_bytes());
        } else {
            let bytes = n.to_le_bytes();
            let len = 8 - bytes.iter().rev().take_while(|b| **b == 0).count();
            out.push((((len - 4) as u8) << 2) | 3);
            out.extend_from_slice(&bytes[..len]);
        }
    }

    /// SCALE `Vec<u8>` (also `String`).
    pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        compact(out, b.len());
        out.extend_from_slice(b);
    }

    fn runtime_events(out: &mut Vec<u8>, events: &[RuntimeEvent]) {
        compact(out, events.len());
        for e in events {
            bytes(out, e.name.as_bytes());
            bytes(out, &e.payload);
        }
    }

    /// The stripped TDX event log a guest carries next to its quote: its
    /// runtime events on IMR 3, digests cleared (`TdxEvent` list).
    fn stripped_tdx_log(out: &mut Vec<u8>, events: &[RuntimeEvent]) {
        compact(out, events.len());
        for e in events {
            out.extend_from_slice(&3u32.to_le_bytes());
            out.extend_from_slice(&0x0800_0001u32.to_le_bytes());
            bytes(out, b"");
            bytes(out, e.name.as_bytes());
            bytes(out, &e.payload);
        }
    }

    fn tail(out: &mut Vec<u8>, events: &[RuntimeEvent], report_data: &[u8; 64], config: &str) {
        runtime_events(out, events);
        out.extend_from_slice(report_data);
        bytes(out, config.as_bytes());
    }

    /// V0 SCALE `VersionedAttestation` of a TDX guest (stripped form).
    pub fn v0_tdx(
        quote: &[u8],
        events: &[RuntimeEvent],
        report_data: &[u8; 64],
        config: &str,
    ) -> Vec<u8> {
        let mut out = vec![0, 0];
        bytes(&mut out, quote);
        stripped_tdx_log(&mut out, events);
        tail(&mut out, events, report_data, config);
        out
    }

    /// V0 SCALE `VersionedAttestation` of an SEV-SNP guest (dstack's SNP
    /// guests send no runtime events).
    pub fn v0_snp(
        report: &[u8],
        cert_chain: &[Vec<u8>],
        mr_config: &str,
        report_data: &[u8; 64],
        config: &str,
    ) -> Vec<u8> {
        let mut out = vec![0, 3];
        bytes(&mut out, report);
        compact(&mut out, cert_chain.len());
        for c in cert_chain {
            bytes(&mut out, c);
        }
        bytes(&mut out, mr_config.as_bytes());
        tail(&mut out, &[], report_data, config);
        out
    }

    /// A V0 attestation of a platform dstack has and no plug-in verifies
    /// (`1` GCP TDX, `2` Nitro Enclave, `4` AWS Nitro TPM): the tag and
    /// some bytes.
    pub fn v0_other(variant: u8) -> Vec<u8> {
        vec![0, variant, 0, 0, 0, 0]
    }

    // msgpack, the subset V1 uses.
    fn mp_str(out: &mut Vec<u8>, s: &str) {
        let n = s.len();
        if n < 32 {
            out.push(0xa0 | n as u8);
        } else {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        out.extend_from_slice(s.as_bytes());
    }
    fn mp_bin(out: &mut Vec<u8>, b: &[u8]) {
        out.push(0xc6);
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    /// A plain `Vec<u8>` as rmp-serde writes it: an array of integers.
    fn mp_int_array(out: &mut Vec<u8>, b: &[u8]) {
        out.push(0xdd);
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        for x in b {
            if *x < 0x80 {
                out.push(*x);
            } else {
                out.extend_from_slice(&[0xcc, *x]);
            }
        }
    }
    fn mp_map(out: &mut Vec<u8>, n: usize) {
        out.push(0x80 | n as u8);
    }
    fn mp_array(out: &mut Vec<u8>, n: usize) {
        out.push(0xdd);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    fn mp_uint(out: &mut Vec<u8>, n: u32) {
        out.push(0xce);
        out.extend_from_slice(&n.to_be_bytes());
    }

    /// V1 msgpack `VersionedAttestation` of a TDX guest
    /// (`rmp_serde::to_vec_named`: `quote` and `report_data` as integer
    /// arrays, event payloads as `bin`; V2 events say `version: 2`).
    pub fn v1_tdx(
        quote: &[u8],
        events: &[RuntimeEvent],
        report_data: &[u8; 64],
        config: &str,
    ) -> Vec<u8> {
        let mut o = Vec::new();
        mp_map(&mut o, 3);
        mp_str(&mut o, "version");
        mp_uint(&mut o, 1);
        mp_str(&mut o, "platform");
        mp_map(&mut o, 2);
        mp_str(&mut o, "kind");
        mp_str(&mut o, "tdx");
        mp_str(&mut o, "data");
        mp_map(&mut o, 2);
        mp_str(&mut o, "quote");
        mp_int_array(&mut o, quote);
        mp_str(&mut o, "event_log");
        mp_array(&mut o, events.len());
        for e in events {
            let v2 = e.version == RuntimeEventVersion::V2;
            mp_map(&mut o, if v2 { 6 } else { 5 });
            mp_str(&mut o, "imr");
            mp_uint(&mut o, 3);
            mp_str(&mut o, "event_type");
            mp_uint(&mut o, 0x0800_0001);
            mp_str(&mut o, "digest");
            mp_bin(&mut o, b"");
            mp_str(&mut o, "event");
            mp_str(&mut o, &e.name);
            mp_str(&mut o, "event_payload");
            mp_bin(&mut o, &e.payload);
            if v2 {
                mp_str(&mut o, "version");
                mp_uint(&mut o, 2);
            }
        }
        mp_str(&mut o, "stack");
        mp_map(&mut o, 2);
        mp_str(&mut o, "kind");
        mp_str(&mut o, "dstack");
        mp_str(&mut o, "data");
        mp_map(&mut o, 3);
        mp_str(&mut o, "report_data");
        mp_int_array(&mut o, report_data);
        mp_str(&mut o, "runtime_events");
        mp_array(&mut o, events.len());
        for e in events {
            let v2 = e.version == RuntimeEventVersion::V2;
            mp_map(&mut o, if v2 { 3 } else { 2 });
            mp_str(&mut o, "event");
            mp_str(&mut o, &e.name);
            mp_str(&mut o, "payload");
            mp_bin(&mut o, &e.payload);
            if v2 {
                mp_str(&mut o, "version");
                mp_uint(&mut o, 2);
            }
        }
        mp_str(&mut o, "config");
        mp_str(&mut o, config);
        o
    }

    /// What a `SignCert` request asks the certificate to say
    /// (`CertConfigV2`).
    #[derive(Clone, Debug, Default)]
    pub struct CertConfig {
        /// Subject O.
        pub org_name: Option<String>,
        /// Subject CN.
        pub subject: String,
        /// SANs.
        pub subject_alt_names: Vec<String>,
        /// EKU serverAuth.
        pub usage_server_auth: bool,
        /// EKU clientAuth.
        pub usage_client_auth: bool,
        /// Embed the attestation.
        pub ext_quote: bool,
        /// Embed the app info.
        pub ext_app_info: bool,
        /// notBefore.
        pub not_before: Option<u64>,
        /// notAfter.
        pub not_after: Option<u64>,
    }

    fn option<T>(out: &mut Vec<u8>, v: &Option<T>, f: impl FnOnce(&mut Vec<u8>, &T)) {
        match v {
            None => out.push(0),
            Some(x) => {
                out.push(1);
                f(out, x);
            }
        }
    }

    /// A V1 CSR (`api_version` 1, guests v0.5.1 ... v0.5.5): `confirm`,
    /// `pubkey`, the first six config fields, the raw TDX `quote` and the
    /// JSON `event_log`.
    pub fn csr_v1(
        confirm: &str,
        spki_der: &[u8],
        c: &CertConfig,
        quote: &[u8],
        event_log: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        bytes(&mut out, confirm.as_bytes());
        bytes(&mut out, spki_der);
        option(&mut out, &c.org_name, |o, s| bytes(o, s.as_bytes()));
        bytes(&mut out, c.subject.as_bytes());
        compact(&mut out, c.subject_alt_names.len());
        for n in &c.subject_alt_names {
            bytes(&mut out, n.as_bytes());
        }
        for b in [c.usage_server_auth, c.usage_client_auth, c.ext_quote] {
            out.push(u8::from(b));
        }
        bytes(&mut out, quote);
        bytes(&mut out, event_log);
        out
    }

    /// A V2 CSR (`api_version` 2): `confirm`, `pubkey` (SPKI DER), config,
    /// then the attestation to the end.
    pub fn csr_v2(confirm: &str, spki_der: &[u8], c: &CertConfig, attestation: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        bytes(&mut out, confirm.as_bytes());
        bytes(&mut out, spki_der);
        option(&mut out, &c.org_name, |o, s| bytes(o, s.as_bytes()));
        bytes(&mut out, c.subject.as_bytes());
        compact(&mut out, c.subject_alt_names.len());
        for n in &c.subject_alt_names {
            bytes(&mut out, n.as_bytes());
        }
        for b in [
            c.usage_server_auth,
            c.usage_client_auth,
            c.ext_quote,
            c.ext_app_info,
        ] {
            out.push(u8::from(b));
        }
        option(&mut out, &c.not_before, |o, t| {
            o.extend_from_slice(&t.to_le_bytes())
        });
        option(&mut out, &c.not_after, |o, t| {
            o.extend_from_slice(&t.to_le_bytes())
        });
        out.extend_from_slice(attestation);
        out
    }
}

/// An RA-TLS client certificate as a dstack guest makes it
/// (`generate_ra_cert`): a fresh P-256 key, `CN=RA-TLS TEMP Cert`, signed
/// by the temp CA the KMS handed out, the attestation in `.1.8` (an
/// OCTET STRING in the extension's OCTET STRING).
pub struct RaCert {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The certificate, PEM.
    pub pem: String,
    /// Its key, PKCS#8 PEM.
    pub key_pem: String,
    /// Its key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

/// The certificate's key, made first: its SPKI is what the attestation
/// must bind (`SHA-512("ratls-cert:" ‖ SPKI DER)`).
pub fn ra_key() -> rcgen::KeyPair {
    // P-256 key generation cannot fail with ring.
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key")
}

/// `SHA-512("ratls-cert:" ‖ spki_der)`.
pub fn ratls_report_data(spki_der: &[u8]) -> [u8; 64] {
    use sha2::{Digest, Sha512};
    Sha512::new()
        .chain_update(b"ratls-cert:")
        .chain_update(spki_der)
        .finalize()
        .into()
}

/// DER `OCTET STRING { b }`.
pub fn octet_string(b: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    let n = b.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = n.to_be_bytes();
        let skip = len.iter().take_while(|x| **x == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(b);
    out
}

/// Signs `key`'s RA-TLS certificate with the temp CA (`temp_ca_cert_pem`,
/// `temp_ca_key_pem`), carrying `extensions` (`(n, payload)` for
/// `1.3.6.1.4.1.62397.1.n`).
pub fn ra_cert(
    key: rcgen::KeyPair,
    temp_ca_cert_pem: &str,
    temp_ca_key_pem: &str,
    extensions: &[(u64, Vec<u8>)],
) -> RaCert {
    let ca_key = rcgen::KeyPair::from_pem(temp_ca_key_pem).expect("temp CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(temp_ca_cert_pem, ca_key).expect("temp CA cert");
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "RA-TLS TEMP Cert");
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    p.custom_extensions = extensions
        .iter()
        .map(|(n, payload)| {
            rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 62397, 1, *n],
                octet_string(payload),
            )
        })
        .collect();
    let cert = p.signed_by(&key, &issuer).expect("RA-TLS certificate");
    RaCert {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    }
}
