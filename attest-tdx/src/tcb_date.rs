//! When a platform's TCB level was superseded: the date a policy's grace
//! period for an out-of-date platform counts from.
//!
//! Intel's TCB info lists levels, each with the `tcbDate` of the TCB
//! recovery that introduced it. A platform has been out of date since the
//! first level it does not meet was published: the earliest `tcbDate` among
//! the levels above it. Counting from the newest level instead (what the
//! first release did) gives a platform that has been behind for years a
//! fresh grace period at every recovery. The same rule applies to each
//! component Intel dates separately (the platform TCB levels, the TDX
//! module's levels, the QE's levels); the earliest supersession wins.

use attest_core::AttestError;
use dcap_qvl::{QeIdentity, TcbInfo};

use crate::collateral::rfc3339;

/// The platform's SVNs, as the PCK certificate and the quote state them.
pub(crate) struct PlatformSvns<'a> {
    /// CPU SVN (PCK certificate).
    pub cpu_svn: &'a [u8; 16],
    /// PCE SVN (PCK certificate).
    pub pce_svn: u16,
    /// TEE_TCB_SVN of the TD report (the launch TCB).
    pub tee_tcb_svn: &'a [u8; 16],
    /// The QE's ISVSVN (QE report).
    pub qe_isvsvn: u16,
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The earliest `tcbDate` of a level the platform does not meet, in any
/// component; `None` when it meets every level.
pub(crate) fn out_of_date_since(
    tcb: &TcbInfo,
    qe: &QeIdentity,
    s: &PlatformSvns<'_>,
) -> Result<Option<u64>, AttestError> {
    let bad = |e: anyhow::Error| {
        AttestError::from(attest_core::Malformed::Syntax {
            what: "TCB info levels".into(),
            detail: format!("{e:#}"),
        })
    };
    let mut since = None;
    for level in &tcb.tcb_levels {
        if !level
            .shortfalls(s.cpu_svn, s.pce_svn, Some(s.tee_tcb_svn))
            .map_err(bad)?
            .is_empty()
        {
            since = earliest(since, Some(rfc3339("tcbDate", &level.tcb_date)?));
        }
    }
    if let Some(module) = tcb.tdx_module_identity(s.tee_tcb_svn).map_err(bad)? {
        for level in &module.tcb_levels {
            if level.shortfall(s.tee_tcb_svn).is_some() {
                since = earliest(since, Some(rfc3339("tcbDate", &level.tcb_date)?));
            }
        }
    }
    for level in &qe.tcb_levels {
        if level.tcb.isvsvn > s.qe_isvsvn {
            since = earliest(since, Some(rfc3339("tcbDate", &level.tcb_date)?));
        }
    }
    Ok(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real levels of `tdx/dcap-qvl/tdx_quote_outdated_collateral.json`:
    /// 2024-11-13 UpToDate, 2024-03-13 OutOfDate, 2018-01-04 OutOfDate; the
    /// TDX_01 module levels 6 (2024-11-13), 4 (2024-03-13), 2 (2023-08-09).
    fn real() -> (TcbInfo, QeIdentity) {
        let text = attest_testkit::vectors::read("tdx/dcap-qvl/tdx_quote_outdated_collateral.json");
        let c: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(&text).unwrap();
        (
            serde_json::from_str(&c.tcb_info).unwrap(),
            serde_json::from_str(&c.qe_identity).unwrap(),
        )
    }

    fn svns(level: &dcap_qvl::TcbLevel) -> ([u8; 16], u16, [u8; 16]) {
        let cpu: Vec<u8> = level.tcb.sgx_components.iter().map(|c| c.svn).collect();
        let tee: Vec<u8> = level.tcb.tdx_components.iter().map(|c| c.svn).collect();
        (
            cpu.try_into().unwrap(),
            level.tcb.pce_svn,
            tee.try_into().unwrap(),
        )
    }

    fn day(s: &str) -> Option<u64> {
        Some(rfc3339("test", s).unwrap())
    }

    #[test]
    fn superseded_by_the_lowest_level_above_not_the_newest() {
        let (tcb, qe) = real();
        let qe_top = qe.tcb_levels.iter().map(|l| l.tcb.isvsvn).max().unwrap();
        let at_qe = |i: usize, module_svn: u8, qe_isvsvn: u16| {
            let (cpu, pce, mut tee) = svns(&tcb.tcb_levels[i]);
            // TEE_TCB_SVN[1] = 1 selects the TDX_01 module identity, [0] is
            // the module's ISVSVN.
            tee[1] = 1;
            tee[0] = module_svn;
            out_of_date_since(
                &tcb,
                &qe,
                &PlatformSvns {
                    cpu_svn: &cpu,
                    pce_svn: pce,
                    tee_tcb_svn: &tee,
                    qe_isvsvn,
                },
            )
            .unwrap()
        };
        let at = |i: usize, module_svn: u8| at_qe(i, module_svn, qe_top);
        assert_eq!(tcb.tcb_levels[0].tcb_date, "2024-11-13T00:00:00Z");
        // At the newest level with the newest module: never superseded.
        assert_eq!(at(0, 6), None);
        // The 2024-03-13 level: superseded by the 2024-11-13 recovery.
        assert_eq!(at(1, 6), day("2024-11-13T00:00:00Z"));
        // The 2018-01-04 level: superseded on 2024-03-13, not 2024-11-13
        // (the newest date, which the first release counted from).
        assert_eq!(at(2, 6), day("2024-03-13T00:00:00Z"));
        // A current platform running an old module (ISVSVN 2): the module
        // levels date it, from the module recovery of 2024-03-13.
        assert_eq!(at(0, 2), day("2024-03-13T00:00:00Z"));
        assert_eq!(at(0, 4), day("2024-11-13T00:00:00Z"));
        // The QE identity has one level, ISVSVN 4 (2024-11-13): a QE below
        // it is superseded then; at or above it, never.
        assert_eq!(qe_top, 4);
        assert_eq!(at_qe(0, 6, 3), day("2024-11-13T00:00:00Z"));
        assert_eq!(at_qe(0, 6, 5), None);
        // The earliest supersession counts: an old module and an old QE.
        assert_eq!(at_qe(0, 2, 3), day("2024-03-13T00:00:00Z"));
    }
}
