//! The `platform_claims.dstack` section: dstack's aggregate measurements
//! over a TD's registers, as dstack's KMS computes them.

use attest_core::HexBytes;
use attest_core::dstack::{BootTimeAggregates, DstackClaims};
use attest_core::eventlog::{self, ReplayedLog, RuntimeAppInfo};
use sha2::{Digest, Sha256, Sha384};

use crate::quote::TdQuote;

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_vec()
}

/// dstack's `mr_aggregated` and `mr_system` for a quote whose log
/// replayed, now and at boot time (RTMR3 up to `boot-mr-done`).
pub(super) fn dstack_claims(
    quote: &TdQuote,
    info: &RuntimeAppInfo,
    log: &ReplayedLog,
) -> DstackClaims {
    let r = quote.td10();
    // dstack's mr_system covers the exact key-provider payload bytes.
    let mr_key_provider = info
        .key_provider_payload
        .as_deref()
        .map(|p| sha256(&[p]))
        .unwrap_or_else(|| vec![0; 32]);
    let mr_system = |kp: &[u8]| sha256(&[&r.mr_td, &r.rt_mr0, &r.rt_mr1, &r.rt_mr2, kp]);
    let extra_nonzero = [&r.mr_config_id, &r.mr_owner, &r.mr_owner_config]
        .iter()
        .any(|m| m.iter().any(|b| *b != 0));
    let mr_aggregated = |rtmr3: &[u8]| {
        let mut parts: Vec<&[u8]> = vec![&r.mr_td, &r.rt_mr0, &r.rt_mr1, &r.rt_mr2, rtmr3];
        if extra_nonzero {
            parts.extend([&r.mr_config_id[..], &r.mr_owner, &r.mr_owner_config]);
        }
        sha256(&parts)
    };
    // dstack's SignCert view: RTMR3 up to `boot-mr-done`, no key provider.
    let boot_time = log
        .app_register_until::<Sha384>(eventlog::BOOT_MR_DONE)
        .map(|rtmr3| BootTimeAggregates {
            mr_aggregated: HexBytes(mr_aggregated(&rtmr3)),
            mr_system: HexBytes(mr_system(&[0; 32])),
        });
    DstackClaims {
        tee_variant: "dstack-tdx".into(),
        mr_aggregated: HexBytes(mr_aggregated(&r.rt_mr3)),
        mr_system: HexBytes(mr_system(&mr_key_provider)),
        boot_time,
    }
}
