//! dstack's SignCert CSRs (V1 and V2 SCALE): decoding and the signature
//! check (the last 64 bytes of the input are the signature).
#![no_main]

use dstack_compat::CertSigningRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&version, rest)) = data.split_first() else {
        return;
    };
    let api = u32::from(version % 3);
    let (csr, sig) = rest.split_at(rest.len().saturating_sub(64));
    if let Ok(c) = CertSigningRequest::decode(api, csr) {
        let _ = c.verify_signature(sig);
    }
    let _ = dstack_compat::SignedCsr::verify(api, rest, sig);
});
