//! The TCG crypto-agile log parser (`eventlog::tcg`): a real CCEL log, read
//! record by record (the facts below were read from the file by an
//! independent Python parser written from the TCG PC Client spec), and
//! built logs for each rule the parser enforces.
#![allow(clippy::unwrap_used, missing_docs)]

use attest_core::Malformed;
use attest_core::eventlog::MAX_EVENTS;
use attest_core::eventlog::tcg::{
    TPM_ALG_SHA256, TPM_ALG_SHA384, TcgRecord, parse_ccel, parse_tcg_log,
};

fn ccel() -> Vec<u8> {
    attest_testkit::vectors::read("tdx/go-tdx-guest/ccel_data.dat")
}

#[test]
fn the_real_ccel_log_reads_record_by_record() {
    let log = ccel();
    let records = parse_tcg_log(&log, TPM_ALG_SHA384).unwrap();
    assert_eq!(records.len(), 43);
    let on = |i: u32| records.iter().filter(|r| r.index == i).count();
    assert_eq!((on(1), on(2), on(3)), (16, 7, 20));
    assert_eq!(
        (
            records[0].index,
            records[0].event_type,
            records[0].data.len()
        ),
        (1, 0x8000_000b, 42)
    );
    assert_eq!(
        hex::encode(&records[0].digest),
        "458994daa60deac8dea19dba79748f6ff93fd0aebb8e3e0be5a65eb12309d342c3ce31cc67af7bbd22af1a44e7d9fe21"
    );
    assert_eq!(
        (records[1].event_type, records[1].data.len()),
        (0x8000_000a, 58)
    );
    let last = records.last().unwrap();
    assert_eq!(
        (last.index, last.event_type, last.data.len()),
        (2, 0x8000_0007, 40)
    );
    assert_eq!(
        hex::encode(&last.digest),
        "0a2e01c85deae718a530ad8c6d20a84009babe6c8989269e950d8cf440c6e997695e64d455c4174a652cd080f6230b74"
    );
    // The log declares SHA-384 only.
    let err = parse_tcg_log(&log, TPM_ALG_SHA256).unwrap_err();
    assert!(
        matches!(
            err.malformed(),
            Some(Malformed::Missing {
                what: "digest algorithm",
                ..
            })
        ),
        "{err}"
    );
    // As CCEL events: MR index 1..=3 is RTMR0..2.
    let events = parse_ccel(&log).unwrap();
    assert_eq!(events.len(), 43);
    assert_eq!(events[0].register, 0);
    assert_eq!(events.last().unwrap().register, 1);
}

/// One built record: MR index, event type, (algorithm, digest)s, data.
type Record = (u32, u32, Vec<(u16, Vec<u8>)>, Vec<u8>);

/// A log built by hand: a spec id event declaring `algs`, then `records`,
/// the end marker and `tail`.
struct Log {
    header_type: u32,
    signature: [u8; 16],
    algs: Vec<(u16, u16)>,
    records: Vec<Record>,
    tail: Vec<u8>,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            header_type: 3,
            signature: *b"Spec ID Event03\0",
            algs: vec![(TPM_ALG_SHA256, 32), (TPM_ALG_SHA384, 48)],
            records: vec![record(1, 0xd, 0x11)],
            tail: vec![0xff; 8],
        }
    }
}

fn record(index: u32, ty: u32, fill: u8) -> Record {
    (
        index,
        ty,
        vec![
            (TPM_ALG_SHA256, vec![fill; 32]),
            (TPM_ALG_SHA384, vec![fill ^ 0xf0; 48]),
        ],
        vec![fill; 3],
    )
}

impl Log {
    fn bytes(&self) -> Vec<u8> {
        let mut spec = self.signature.to_vec();
        spec.extend_from_slice(&[0; 8]); // platform class, versions, uintn size
        spec.extend_from_slice(&(self.algs.len() as u32).to_le_bytes());
        for (alg, size) in &self.algs {
            spec.extend_from_slice(&alg.to_le_bytes());
            spec.extend_from_slice(&size.to_le_bytes());
        }
        spec.push(0); // vendor info size
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&self.header_type.to_le_bytes());
        b.extend_from_slice(&[0; 20]);
        b.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        b.extend_from_slice(&spec);
        for (index, ty, digests, data) in &self.records {
            b.extend_from_slice(&index.to_le_bytes());
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&(digests.len() as u32).to_le_bytes());
            for (alg, d) in digests {
                b.extend_from_slice(&alg.to_le_bytes());
                b.extend_from_slice(d);
            }
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
        }
        b.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
        b.extend_from_slice(&self.tail);
        b
    }
}

fn bad_value(log: &Log, algorithm: u16) -> String {
    match parse_tcg_log(&log.bytes(), algorithm)
        .unwrap_err()
        .malformed()
    {
        Some(Malformed::BadValue { what, .. }) => what.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_record_keeps_the_digest_of_the_asked_algorithm() {
    let log = Log {
        records: vec![record(1, 0xd, 0x11), record(4, 0x8000_0001, 0x22)],
        ..Default::default()
    };
    let want = |alg, first: Vec<u8>, second: Vec<u8>| {
        assert_eq!(
            parse_tcg_log(&log.bytes(), alg).unwrap(),
            vec![
                TcgRecord {
                    index: 1,
                    event_type: 0xd,
                    digest: first,
                    data: vec![0x11; 3],
                },
                TcgRecord {
                    index: 4,
                    event_type: 0x8000_0001,
                    digest: second,
                    data: vec![0x22; 3],
                },
            ]
        );
    };
    want(TPM_ALG_SHA256, vec![0x11; 32], vec![0x22; 32]);
    want(TPM_ALG_SHA384, vec![0xe1; 48], vec![0xd2; 48]);
    // As CCEL events: MR index 0 (MRTD) is never extended at run time and
    // is skipped; index 4 is RTMR3.
    let mrtd_too = Log {
        records: vec![record(0, 0xd, 0x33), record(4, 0x8000_0001, 0x22)],
        ..Default::default()
    };
    let events = parse_ccel(&mrtd_too.bytes()).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].register, 3);
    assert_eq!(events[0].event_type(), 0x8000_0001);
    // No records at all is an empty log, not an error.
    let empty = Log {
        records: vec![],
        ..Default::default()
    };
    assert!(
        parse_tcg_log(&empty.bytes(), TPM_ALG_SHA384)
            .unwrap()
            .is_empty()
    );
    // Padding may be absent.
    let bare = Log {
        tail: vec![],
        ..Default::default()
    };
    assert_eq!(
        parse_tcg_log(&bare.bytes(), TPM_ALG_SHA384).unwrap().len(),
        1
    );
}

#[test]
fn the_header_must_be_a_spec_id_event() {
    let log = Log {
        header_type: 4,
        ..Default::default()
    };
    assert_eq!(
        bad_value(&log, TPM_ALG_SHA384),
        "TCG event log's first event type"
    );
    let log = Log {
        signature: *b"Spec ID Event02\0",
        ..Default::default()
    };
    assert_eq!(bad_value(&log, TPM_ALG_SHA384), "TCG spec id signature");
    for algs in [vec![], vec![(TPM_ALG_SHA384, 48); 17]] {
        let log = Log {
            algs,
            records: vec![],
            ..Default::default()
        };
        assert_eq!(
            bad_value(&log, TPM_ALG_SHA384),
            "TCG spec id algorithm count"
        );
    }
    // Sixteen declared algorithms are allowed.
    let mut algs = vec![(TPM_ALG_SHA384, 48)];
    algs.extend((0..15).map(|i| (0x100 + i, 4)));
    let log = Log {
        algs,
        records: vec![],
        ..Default::default()
    };
    assert!(
        parse_tcg_log(&log.bytes(), TPM_ALG_SHA384)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn digests_must_be_of_declared_algorithms() {
    // More digests than declared algorithms.
    let mut r = record(1, 0xd, 0x11);
    r.2.push((TPM_ALG_SHA256, vec![0; 32]));
    let log = Log {
        records: vec![r],
        ..Default::default()
    };
    assert_eq!(bad_value(&log, TPM_ALG_SHA384), "TCG event 0 digest count");
    // An undeclared algorithm.
    let log = Log {
        records: vec![(1, 0xd, vec![(0x0012, vec![0; 32])], vec![])],
        ..Default::default()
    };
    assert_eq!(
        bad_value(&log, TPM_ALG_SHA384),
        "TCG event 0 digest algorithm"
    );
    // A record without the asked digest.
    let log = Log {
        records: vec![(1, 0xd, vec![(TPM_ALG_SHA256, vec![0; 32])], vec![])],
        ..Default::default()
    };
    let err = parse_tcg_log(&log.bytes(), TPM_ALG_SHA384).unwrap_err();
    assert!(
        matches!(
            err.malformed(),
            Some(Malformed::Missing { what: "digest", .. })
        ),
        "{err}"
    );
    assert_eq!(
        parse_tcg_log(&log.bytes(), TPM_ALG_SHA256).unwrap().len(),
        1
    );
}

#[test]
fn only_padding_may_follow_the_end_marker() {
    let log = Log {
        tail: vec![0xff, 0xff, 0x00, 0xff],
        ..Default::default()
    };
    let len = log.bytes().len();
    let err = parse_tcg_log(&log.bytes(), TPM_ALG_SHA384).unwrap_err();
    assert_eq!(
        err.malformed(),
        Some(&Malformed::TrailingData {
            context: "TCG event log (after its end marker)",
            offset: len - 8,
            extra: 8,
        })
    );
}

#[test]
fn at_most_max_events_records() {
    let log = Log {
        records: vec![(1, 0xd, vec![(TPM_ALG_SHA384, vec![0; 48])], vec![]); MAX_EVENTS],
        ..Default::default()
    };
    assert_eq!(
        parse_tcg_log(&log.bytes(), TPM_ALG_SHA384).unwrap().len(),
        MAX_EVENTS
    );
    let log = Log {
        records: vec![(1, 0xd, vec![(TPM_ALG_SHA384, vec![0; 48])], vec![]); MAX_EVENTS + 1],
        ..Default::default()
    };
    assert_eq!(
        parse_tcg_log(&log.bytes(), TPM_ALG_SHA384)
            .unwrap_err()
            .malformed(),
        Some(&Malformed::TooMany {
            what: "TCG event log".into(),
            items: "events or more",
            count: MAX_EVENTS + 1,
            max: MAX_EVENTS,
        })
    );
}
