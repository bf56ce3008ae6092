//! The SNP certificate table carried with the evidence (GHCB table, PEM
//! bundle or one DER certificate), for both signers, and what it yields
//! parsed as an endorsement key.
#![no_main]

use attest_snp::{Signer, Vek, certs_from_evidence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for signer in [Signer::Vcek, Signer::Vlek] {
        if let Ok(Some(der)) = certs_from_evidence(data, signer) {
            let _ = Vek::parse(&der);
        }
    }
    let _ = attest_snp::vcek::pem_certificates(data);
});
