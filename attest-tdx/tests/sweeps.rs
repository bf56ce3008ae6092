//! Bit-flip sweeps over real TDX evidence (issue 13): every byte of every
//! real quote with collateral, and of every real event log, is flipped
//! (XOR 0x01) and verified at the vector's pinned time. Each flip must be
//! rejected or yield exactly the identity of the unmodified evidence; a
//! flip accepted with another identity fails the test.
//!
//! The quote's embedded copy of Intel's root certificate must equal the
//! pinned root byte for byte (`pck.rs`, `check_chain`), so flips in it are
//! rejected too (`UntrustedChain`) instead of being ignored.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use attest_core::eventlog::{self, ReplayedLog};
use attest_core::{
    AttestError, Attestation, ErrorKind, Evidence, PlatformId, UnixTime, UntrustedChain,
    VerifyContext,
};
use attest_tdx::collateral::StaticCollateral;
use attest_tdx::{Collateral, RTMRS, TdQuote, TdxVerifier};
use attest_testkit::tdx::{CollateralOptions, FakeIntelPki, TdFields};
use attest_testkit::vectors;
use sha2::Sha384;

/// What a sweep saw.
#[derive(Debug, Default)]
struct Counts {
    flips: usize,
    rejected: usize,
    /// Accepted with exactly the unmodified evidence's identity.
    same_identity: usize,
    /// Rejections per error kind.
    kinds: std::collections::BTreeMap<&'static str, usize>,
    /// The offsets of the flips accepted with the same identity.
    accepted_at: Vec<usize>,
}

impl Counts {
    fn summary(&self) -> String {
        format!(
            "{} flips: {} rejected {:?}, {} accepted with the same identity",
            self.flips, self.rejected, self.kinds, self.same_identity
        )
    }

    fn record<T: PartialEq + std::fmt::Debug>(
        &mut self,
        what: &str,
        i: usize,
        got: Result<T, attest_core::AttestError>,
        base: &Result<T, ErrorKind>,
    ) {
        self.flips += 1;
        match got {
            Err(e) => {
                self.rejected += 1;
                *self.kinds.entry(e.kind().as_str()).or_default() += 1;
            }
            Ok(id) => {
                match base {
                    Ok(b) => assert_eq!(
                        &id, b,
                        "{what}: flipping byte {i} was accepted with another identity"
                    ),
                    Err(k) => panic!(
                        "{what}: flipping byte {i} was accepted ({id:?}) where the unmodified evidence is refused ({k:?})"
                    ),
                }
                self.same_identity += 1;
                self.accepted_at.push(i);
            }
        }
    }
}

fn real_verifier(collateral: &str) -> TdxVerifier {
    let c = Collateral::from_json(&vectors::read(&format!("tdx/dcap-qvl/{collateral}"))).unwrap();
    TdxVerifier::new(Arc::new(StaticCollateral(Arc::new(c)))).unwrap()
}

async fn sweep_quote(name: &str, collateral: &str, at: u64) -> (Counts, bool) {
    let quote = vectors::read(&format!("tdx/dcap-qvl/{name}"));
    let v = real_verifier(collateral);
    let ctx = VerifyContext::without_report_data(UnixTime(at));
    let base = v
        .verify_quote_only(&quote, &ctx)
        .await
        .map(|i| i.to_json())
        .map_err(|e| e.kind());
    let mut counts = Counts::default();
    for i in 0..quote.len() {
        let mut q = quote.clone();
        q[i] ^= 0x01;
        let got = v.verify_quote_only(&q, &ctx).await.map(|i| i.to_json());
        counts.record(name, i, got, &base);
    }
    eprintln!("{name}: {}", counts.summary());
    for &i in &counts.accepted_at {
        assert!(
            is_pem_layout(&quote, i),
            "{name}: byte {i} ({:#04x}) flipped and accepted",
            quote[i]
        );
    }
    (counts, base.is_ok())
}

/// Whether byte `i` of a quote is PEM layout in its PCK chain: a line break,
/// or a character of a `-----BEGIN/END CERTIFICATE-----` line. Flipping one
/// leaves the DER certificates, and so the chain, unchanged (the chain is
/// not signed: its certificates' signatures protect it).
fn is_pem_layout(quote: &[u8], i: usize) -> bool {
    let begin = b"-----BEGIN CERTIFICATE-----";
    let Some(first) = quote.windows(begin.len()).position(|w| w == begin) else {
        return false;
    };
    let end = b"-----END CERTIFICATE-----";
    let last_end = quote
        .windows(end.len())
        .rposition(|w| w == end)
        .map_or(quote.len(), |p| p + end.len());
    if i < first || quote[i] == b'\n' || i >= last_end {
        // Before the chain: not PEM. After its last END line: the bytes
        // the chain's size still covers (a line break, a NUL), which the
        // PEM reader skips.
        return i >= first;
    }
    let line_start = quote[..i]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    quote[line_start..].starts_with(b"-----")
}

/// Where the quote's PEM chain keeps Intel's root: the last certificate.
fn embedded_root_range(quote: &[u8]) -> std::ops::Range<usize> {
    let marker = b"-----BEGIN CERTIFICATE-----";
    let starts: Vec<usize> = quote
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .map(|(i, _)| i)
        .collect();
    let start = *starts.last().unwrap();
    let end_marker = b"-----END CERTIFICATE-----";
    let end = start
        + quote[start..]
            .windows(end_marker.len())
            .position(|w| w == end_marker)
            .unwrap()
        + end_marker.len();
    start..end
}

#[tokio::test]
async fn v4_quote_every_byte_flip_is_rejected_or_the_same_identity() {
    let (c, ok) = sweep_quote("tdx_quote", "tdx_quote_collateral.json", 1_752_919_234).await;
    assert!(ok);
    assert_eq!(c.flips, 5006);
    // Only PEM line breaks and armor of the chain (4 certificates' armor
    // lines less the letters of CERTIFICATE, and the line breaks) survive.
    assert!(c.same_identity < 100, "{}", c.summary());
}

#[tokio::test]
async fn v5_quote_every_byte_flip_is_rejected_or_the_same_identity() {
    let (c, ok) = sweep_quote(
        "tdx_quote_td15ex",
        "tdx_quote_td15ex_collateral.json",
        1_794_008_710,
    )
    .await;
    assert!(ok);
    assert!(c.same_identity < 100, "{}", c.summary());
}

#[tokio::test]
async fn outdated_quote_every_byte_flip_is_rejected() {
    let (c, ok) = sweep_quote(
        "tdx_quote_outdated",
        "tdx_quote_outdated_collateral.json",
        1_774_003_274,
    )
    .await;
    assert!(!ok);
    assert_eq!(c.rejected, c.flips);
}

#[tokio::test]
async fn a_flip_in_the_embedded_root_is_an_untrusted_chain() {
    let quote = vectors::read("tdx/dcap-qvl/tdx_quote");
    let v = real_verifier("tdx_quote_collateral.json");
    let root = embedded_root_range(&quote);
    // A base64 character of the root's signature that stays one when
    // flipped: the DER changes, and the chain to the pinned root does not.
    let i = (root.start..root.end - 100)
        .rev()
        .find(|&i| (quote[i] ^ 1).is_ascii_alphanumeric() && quote[i].is_ascii_alphanumeric())
        .unwrap();
    let mut q = quote.clone();
    q[i] ^= 0x01;
    let err = v
        .verify_quote(&q, UnixTime(1_752_919_234))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            &err,
            AttestError::UntrustedChain(UntrustedChain::UnknownRoot { .. })
        ),
        "{err:?}"
    );
}

/// A quote of the testkit's fake PKI carrying the registers of a real
/// quote, with a verifier pinned to that PKI: the real event log then goes
/// through the plug-in's whole identity path.
struct LogCase {
    verifier: TdxVerifier,
    quote: Vec<u8>,
    log: Vec<u8>,
}

const KIT_NOW: u64 = 1_751_000_000;

fn log_case(real_quote: &[u8], log: Vec<u8>) -> LogCase {
    let real = TdQuote::parse(real_quote).unwrap();
    let r = real.td10();
    let pki = FakeIntelPki::new();
    let td = TdFields {
        mrtd: r.mr_td,
        rtmrs: real.rtmrs(),
        mr_config_id: r.mr_config_id,
        report_data: r.report_data,
        ..Default::default()
    };
    let c = Collateral::new(pki.collateral(&CollateralOptions::valid_from(1_750_000_000))).unwrap();
    let verifier =
        TdxVerifier::with_root(pki.root_der(), Arc::new(StaticCollateral(Arc::new(c)))).unwrap();
    LogCase {
        verifier,
        quote: pki.quote(&td),
        log,
    }
}

async fn sweep_log(what: &str, case: &LogCase) -> Counts {
    let ctx = VerifyContext::without_report_data(UnixTime(KIT_NOW));
    let evidence = |log: Vec<u8>| {
        let mut e = Evidence::new(PlatformId::TDX, case.quote.clone());
        e.event_log = log;
        e
    };
    let base = case
        .verifier
        .verify(&evidence(case.log.clone()), &ctx)
        .await
        .map_err(|e| e.kind());
    assert!(base.is_ok(), "{what}: {base:?}");
    let mut counts = Counts::default();
    for i in 0..case.log.len() {
        let mut log = case.log.clone();
        log[i] ^= 0x01;
        let got = case.verifier.verify(&evidence(log), &ctx).await;
        counts.record(what, i, got, &base);
    }
    eprintln!("{what}: {}", counts.summary());
    counts
}

fn dstack_fixture(name: &str) -> (Vec<u8>, Vec<u8>) {
    let v: serde_json::Value =
        serde_json::from_str(&vectors::read_string(&format!("tdx/dstack/{name}"))).unwrap();
    (
        hex::decode(v["quote"].as_str().unwrap()).unwrap(),
        v["event_log"].as_str().unwrap().as_bytes().to_vec(),
    )
}

#[tokio::test]
async fn dstack_json_logs_every_byte_flip_is_rejected_or_the_same_identity() {
    for name in ["quote-report.json", "tdx-lite-getquote.json"] {
        let (quote, log) = dstack_fixture(name);
        let c = sweep_log(name, &log_case(&quote, log)).await;
        // Flips that survive are in what the replay never reads: a
        // runtime event's written digest (recomputed), a boot event's
        // name or payload (its digest is what is extended).
        assert!(c.rejected > c.flips / 2, "{name}: {}", c.summary());
    }
}

/// The CCEL log carries no runtime events (no app identity): a flip is
/// accepted only if the log still replays to the quote's RTMR0..3 and says
/// the same about the app (nothing).
#[test]
fn ccel_log_every_byte_flip_is_rejected_or_the_same_replay() {
    let quote = vectors::read("tdx/go-tdx-guest/cos-113-tdx-quote.dat");
    let area = vectors::read("tdx/go-tdx-guest/ccel_data.dat");
    let q = TdQuote::parse(&quote).unwrap();
    let rtmrs = q.rtmrs();
    let signed = rtmrs.each_ref().map(|r| Some(&r[..]));
    let outcome = |log: &[u8]| -> Result<String, attest_core::AttestError> {
        let events = attest_tdx::parse_event_log(log)?;
        let replayed = ReplayedLog::check::<Sha384>(events.clone(), &RTMRS, &signed)?;
        let app = replayed
            .app_info()
            .and_then(|i| i.app_identity())
            .map_err(|e| e.kind());
        let claimed = eventlog::claimed_app_info(&events, &RTMRS)
            .and_then(|i| i.app_identity())
            .map_err(|e| e.kind());
        Ok(format!("{app:?} {claimed:?}"))
    };
    let base = outcome(&area).map_err(|e| e.kind());
    assert!(base.is_ok(), "{base:?}");
    // The log itself and the first bytes of the 0xFF padding after it (a
    // flip deeper in the padding reads the same as one at its start).
    let used = area.iter().rposition(|b| *b != 0xff).unwrap() + 1;
    let mut c = Counts::default();
    for i in (0..(used + 64).min(area.len())).chain([area.len() - 1]) {
        let mut log = area.clone();
        log[i] ^= 0x01;
        c.record("ccel", i, outcome(&log), &base);
    }
    eprintln!("ccel: {}", c.summary());
    assert!(c.rejected > 0);
}
