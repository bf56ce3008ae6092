//! dstack's `VersionedAttestation` (V0 SCALE, V1 msgpack): decoding, the
//! evidence it maps to, and the offline inspection (RTMR3 replay / HOST_DATA).
#![no_main]

use dstack_compat::VersionedAttestation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(a) = VersionedAttestation::decode(data) else {
        return;
    };
    let _ = a.to_evidence();
    let _ = (a.version(), a.quote().platform());
    if let Ok(i) = a.inspect() {
        let _ = (i.report_data_consistent(), i.measurement.matches());
        if let Ok(c) = &i.claimed {
            let _ = c.app_identity();
        }
    }
});
