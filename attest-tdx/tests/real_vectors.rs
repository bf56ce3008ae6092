//! Real Intel TDX quotes and collateral (`../shared/vectors/tdx`), with the
//! verification times pinned to the values in the vectors' README.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use attest_core::{ErrorKind, ReportData, TcbStatus, UnixTime, VerifyContext};
use attest_tdx::collateral::StaticCollateral;
use attest_tdx::{Collateral, TdxVerifier};

fn read(rel: &str) -> Vec<u8> {
    attest_testkit::vectors::read(&format!("tdx/{rel}"))
}

fn verifier(collateral: &str) -> TdxVerifier {
    let c = Collateral::from_json(&read(collateral)).unwrap();
    TdxVerifier::new(Arc::new(StaticCollateral(Arc::new(c)))).unwrap()
}

const TDX_QUOTE_AT: u64 = 1_752_919_234;
const TD15EX_AT: u64 = 1_794_008_710;

/// MRTD read at its documented offset (body at 48 for v4, 54 for v5; MRTD at body + 136).
fn mrtd_at_offset(quote: &[u8]) -> String {
    let body = if quote[0] == 4 { 48 } else { 54 };
    hex::encode(&quote[body + 136..body + 184])
}

#[tokio::test]
async fn v4_quote_verifies_up_to_date() {
    let quote = read("dcap-qvl/tdx_quote");
    let v = verifier("dcap-qvl/tdx_quote_collateral.json");
    let verified = v
        .verify_quote(&quote, UnixTime(TDX_QUOTE_AT))
        .await
        .unwrap();
    let (q, collateral) = (verified.quote(), verified.collateral());
    assert_eq!(q.version, 4);
    assert_eq!(q.body_type(), "td10");
    assert_eq!(hex::encode(q.td10().mr_td), mrtd_at_offset(&quote));
    assert_eq!(
        hex::encode(q.td10().mr_td),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(verified.collateral_key().fmspc_hex(), "B0C06F000000");
    assert_eq!(verified.claims().tcb.status, dcap_qvl::TcbStatus::UpToDate);
    assert!(verified.claims().tcb.advisory_ids.is_empty());
    assert!(collateral.valid_at(UnixTime(TDX_QUOTE_AT)));

    let json = v
        .verify_quote_only(
            &quote,
            &VerifyContext::without_report_data(UnixTime(TDX_QUOTE_AT)),
        )
        .await
        .unwrap()
        .to_json();
    assert_eq!(json["tcb"]["status"], "UpToDate");
    assert_eq!(json["tcb"]["advisory_ids"], serde_json::json!([]));
    assert_eq!(json["boot"]["mrtd"], mrtd_at_offset(&quote));
    assert_eq!(json["app"], serde_json::Value::Null);
    assert_eq!(json["report_data_checked"], false);
    assert_eq!(json["platform_claims"]["tdx"]["fmspc"], "B0C06F000000");
    assert_eq!(json["device_id"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn v5_td15ex_quote_verifies_up_to_date() {
    let quote = read("dcap-qvl/tdx_quote_td15ex");
    let v = verifier("dcap-qvl/tdx_quote_td15ex_collateral.json");
    let json = v
        .verify_quote_only(
            &quote,
            &VerifyContext::without_report_data(UnixTime(TD15EX_AT)),
        )
        .await
        .unwrap()
        .to_json();
    assert_eq!(json["tcb"]["status"], TcbStatus::UpToDate.as_str());
    assert_eq!(json["boot"]["mrtd"], mrtd_at_offset(&quote));
    assert_eq!(json["platform_claims"]["tdx"]["quote_version"], 5);
    assert_eq!(json["platform_claims"]["tdx"]["body_type"], "td15ex");
    assert_ne!(json["boot"]["mr_config_id"], "00".repeat(48));
    assert_ne!(json["boot"]["rtmr3"], "00".repeat(48));
}

#[tokio::test]
async fn outdated_quote_is_rejected() {
    let quote = read("dcap-qvl/tdx_quote_outdated");
    let v = verifier("dcap-qvl/tdx_quote_outdated_collateral.json");
    let err = v
        .verify_quote(&quote, UnixTime(1_774_003_274))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            attest_core::AttestError::Insecure(attest_core::Insecure::NoMatchingTcbLevel { .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn one_second_past_the_window_is_rejected() {
    let quote = read("dcap-qvl/tdx_quote");
    let v = verifier("dcap-qvl/tdx_quote_collateral.json");
    // The PCK CRL's nextUpdate is 1752919235: valid up to the second before.
    assert!(
        v.verify_quote(&quote, UnixTime(1_752_919_234))
            .await
            .is_ok()
    );
    for t in [1_752_919_235, 1_752_919_236] {
        let err = v.verify_quote(&quote, UnixTime(t)).await.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::CollateralExpired, "{err}");
    }
    // Before the collateral was issued.
    let err = v
        .verify_quote(&quote, UnixTime(1_750_329_146))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::CollateralExpired, "{err}");

    let td15 = read("dcap-qvl/tdx_quote_td15ex");
    let v = verifier("dcap-qvl/tdx_quote_td15ex_collateral.json");
    // This set's earliest expiry is a TCB info / QE identity nextUpdate of
    // 1794008711, which dcap-qvl counts as still valid (now > nextUpdate fails).
    assert!(v.verify_quote(&td15, UnixTime(1_794_008_711)).await.is_ok());
    let err = v
        .verify_quote(&td15, UnixTime(1_794_008_712))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::CollateralExpired, "{err}");
}

#[tokio::test]
async fn wrong_collateral_is_rejected() {
    let quote = read("dcap-qvl/tdx_quote");
    let v = verifier("dcap-qvl/tdx_quote_td15ex_collateral.json");
    let err = v
        .verify_quote(&quote, UnixTime(TDX_QUOTE_AT))
        .await
        .err()
        .unwrap();
    assert_ne!(err.kind(), ErrorKind::Malformed, "{err}");
}

// Every byte flip of these quotes: tests/sweeps.rs.

#[tokio::test]
async fn truncated_and_oversized_quotes_are_malformed() {
    let quote = read("dcap-qvl/tdx_quote");
    let v = verifier("dcap-qvl/tdx_quote_collateral.json");
    // The signature data ends at 4936; zero padding follows up to 5006.
    for len in [0, 10, 47, 48, 631, 700, quote.len() / 2, 4935] {
        let Some(err) = v
            .verify_quote(&quote[..len], UnixTime(TDX_QUOTE_AT))
            .await
            .err()
        else {
            panic!("len {len} of {} accepted", quote.len());
        };
        assert!(
            matches!(
                err.kind(),
                ErrorKind::Malformed | ErrorKind::BadSignature | ErrorKind::UntrustedChain
            ),
            "len {len}: {err}"
        );
    }
    // Cutting padding is harmless; non-zero bytes in it are not.
    assert!(
        v.verify_quote(&quote[..4936], UnixTime(TDX_QUOTE_AT))
            .await
            .is_ok()
    );
    let mut smuggled = quote.clone();
    smuggled[5000] = 1;
    let err = v
        .verify_quote(&smuggled, UnixTime(TDX_QUOTE_AT))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.malformed(),
        Some(&attest_core::Malformed::TrailingData {
            context: "TDX quote (non-zero bytes after the signature data)",
            offset: 4936,
            extra: quote.len() - 4936,
        })
    );
    let huge = vec![0u8; attest_tdx::MAX_QUOTE_LEN + 1];
    let err = v
        .verify_quote(&huge, UnixTime(TDX_QUOTE_AT))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.malformed(),
        Some(&attest_core::Malformed::TooLarge {
            what: "quote".into(),
            size: attest_tdx::MAX_QUOTE_LEN + 1,
            max: attest_tdx::MAX_QUOTE_LEN,
        })
    );
}

#[tokio::test]
async fn wrong_report_data_is_a_binding_mismatch() {
    let quote = read("dcap-qvl/tdx_quote");
    let v = verifier("dcap-qvl/tdx_quote_collateral.json");
    let ctx = VerifyContext::new(ReportData([0x42; 64]), UnixTime(TDX_QUOTE_AT));
    let err = v.verify_quote_only(&quote, &ctx).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::BindingMismatch);
    // The right value passes and is recorded as checked.
    let found = {
        let q = attest_tdx::TdQuote::parse(&quote).unwrap();
        ReportData(q.td10().report_data)
    };
    let json = v
        .verify_quote_only(&quote, &VerifyContext::new(found, UnixTime(TDX_QUOTE_AT)))
        .await
        .unwrap()
        .to_json();
    assert_eq!(json["report_data_checked"], true);
}

#[test]
fn go_tdx_guest_ccel_replays_to_the_quote() {
    let quote = read("go-tdx-guest/cos-113-tdx-quote.dat");
    let log = read("go-tdx-guest/ccel_data.dat");
    let insp = attest_tdx::inspect(&quote, Some(&log)).unwrap();
    assert!(insp.replay_matches(), "{:#?}", insp.replay);
    let want = [
        "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6",
        "f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1",
        "4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1",
        &"00".repeat(48),
    ];
    for (r, w) in insp.replay.iter().zip(want) {
        assert_eq!(r.replayed.to_hex(), w, "{}", r.register);
    }
    let events = attest_tdx::parse_event_log(&log).unwrap();
    let per_reg = |i| events.iter().filter(|e| e.register == i).count();
    assert_eq!((per_reg(0), per_reg(1), per_reg(2)), (16, 7, 20));
    // No runtime events: no app identity, said plainly.
    assert!(insp.app.is_none());
    assert!(insp.app_error.unwrap().contains("app-id"));
}

#[test]
fn damaged_ccel_logs_fail_cleanly() {
    let quote = read("go-tdx-guest/cos-113-tdx-quote.dat");
    let log = read("go-tdx-guest/ccel_data.dat");
    // Truncated mid-event: malformed, never a panic.
    for cut in [0, 3, 30, 100, 1000, 5000] {
        let r = attest_tdx::parse_event_log(&log[..cut]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Malformed, "cut {cut}");
    }
    // A flipped digest byte: parses, but no longer replays.
    let mut bad = log.clone();
    let events = attest_tdx::parse_event_log(&log).unwrap();
    let digest = match &events[3].body {
        attest_core::eventlog::EventBody::Boot(b) => &b.digest,
        other => panic!("CCEL events are boot events, found {other:?}"),
    };
    let pos = log
        .windows(48)
        .position(|w| w == digest.as_slice())
        .unwrap();
    bad[pos] ^= 0x80;
    let insp = attest_tdx::inspect(&quote, Some(&bad)).unwrap();
    assert!(!insp.replay_matches());
    // Garbage is malformed.
    assert_eq!(
        attest_tdx::parse_event_log(&[0x55; 64]).unwrap_err().kind(),
        ErrorKind::Malformed
    );
}

#[test]
fn dstack_json_log_replays_through_the_plugin() {
    let text = attest_testkit::vectors::read_string("tdx/dstack/quote-report.json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let quote = hex::decode(v["quote"].as_str().unwrap()).unwrap();
    let log = v["event_log"].as_str().unwrap().as_bytes();
    let insp = attest_tdx::inspect(&quote, Some(log)).unwrap();
    assert!(insp.replay_matches());
    assert_eq!(
        insp.app.unwrap().app_id.to_hex(),
        "3763bc34552cf3a27ff71ad5f7a90471562a1a2d"
    );
}

/// Every prefix of a real quote is a typed `Malformed` error, or (cut only
/// in the zero padding after the signature data) the same quote.
#[test]
fn every_prefix_of_a_quote_is_malformed_or_cuts_only_padding() {
    use attest_tdx::TdQuote;
    for (name, sig_end) in [
        ("dcap-qvl/tdx_quote", Some(4936)),
        ("go-tdx-guest/cos-113-tdx-quote.dat", None),
    ] {
        let quote = read(name);
        let full = TdQuote::parse(&quote).unwrap();
        for len in 0..quote.len() {
            match TdQuote::parse(&quote[..len]) {
                Err(e) => assert_eq!(e.kind(), ErrorKind::Malformed, "{name} cut at {len}: {e}"),
                Ok(q) => {
                    assert!(
                        quote[len..].iter().all(|b| *b == 0),
                        "{name} cut at {len} accepted"
                    );
                    assert!(sig_end.is_none_or(|end| len >= end), "{name} at {len}");
                    assert_eq!((q.version, q.rtmrs()), (full.version, full.rtmrs()));
                }
            }
        }
    }
}

/// Every prefix of a real CCEL log, through the end of its events and into
/// the 0xff fill, is a typed `Malformed` error or, cut at an event boundary
/// (where a log area may end), the events before the cut.
#[test]
fn every_prefix_of_a_ccel_log_is_malformed_or_whole_events() {
    let log = read("go-tdx-guest/ccel_data.dat");
    let full = attest_tdx::parse_event_log(&log).unwrap();
    let end = log
        .iter()
        .rposition(|b| *b != 0xff && *b != 0)
        .map_or(0, |i| i + 1);
    assert!(end > 1000, "the log's events end at {end}");
    let mut accepted = 0;
    for cut in 0..(end + 64).min(log.len()) {
        match attest_tdx::parse_event_log(&log[..cut]) {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Malformed, "cut {cut}: {e}"),
            Ok(events) => {
                assert!(full.starts_with(&events), "cut {cut}: not a prefix");
                accepted += 1;
            }
        }
    }
    assert!(accepted < 200, "{accepted} prefixes accepted");
}
