//! Identities of one app on TDX and on SNP, built from the real vectors:
//! the TDX registers and app identity come from a real dstack quote and its
//! replayed event log, the SNP registers from a real Milan report. The
//! register names are those the plug-ins publish.
#![allow(dead_code)]

use std::collections::BTreeMap;

use attest_core::dstack::{DstackClaims, SECTION};
use attest_core::eventlog;
use attest_core::{
    BootMeasurements, BootValue, DeviceId, HexBytes, OsImageHash, PlatformClaims, PlatformId,
    ReportData, TcbInfo, TcbStatus, UnixTime, VerifiedIdentity,
};
use policy::{PolicyInput, RequestContext};
use sha2::{Digest, Sha256, Sha384};

pub const OS_IMAGE: &str = "14ad42d0270b444eaeb53918a5a94d9b17eec7a817cd336173b17c5327541c67";
pub const APP_ID: &str = "3763bc34552cf3a27ff71ad5f7a90471562a1a2d";
pub const COMPOSE: &str = "3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7";
/// 2024-01-01T00:00:00Z
pub const TCB_DATE: i64 = 1_704_067_200;
pub const NOW: u64 = 1_750_000_000;

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().to_vec()
}

fn claims(variant: &str, agg: Vec<u8>, sys: Vec<u8>) -> PlatformClaims {
    let mut c = PlatformClaims::default();
    c.insert(
        SECTION,
        &DstackClaims {
            tee_variant: variant.into(),
            mr_aggregated: HexBytes(agg),
            mr_system: HexBytes(sys),
            boot_time: None,
        },
    )
    .unwrap();
    c
}

const RTMRS: eventlog::RegisterSet = eventlog::RegisterSet {
    count: 4,
    app_register: 3,
    prefix: "rtmr",
};

pub fn tdx_identity() -> VerifiedIdentity {
    let text = attest_testkit::vectors::read_string("tdx/dstack/quote-report.json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let quote = hex::decode(v["quote"].as_str().unwrap()).unwrap();
    let events =
        eventlog::parse_json_event_log(v["event_log"].as_str().unwrap().as_bytes()).unwrap();
    let body = &quote[48..48 + 584];
    let signed: [Option<&[u8]>; 4] =
        std::array::from_fn(|i| Some(&body[0x148 + 48 * i..0x178 + 48 * i]));
    let log = eventlog::ReplayedLog::check::<Sha384>(events, &RTMRS, &signed).unwrap();
    let mut app = log.app_info().unwrap().app_identity().unwrap();
    app.os_image_hash = Some(OsImageHash::from_hex(OS_IMAGE).unwrap());
    let mrtd = &body[0x88..0xB8];
    let boot_digest = Sha384::digest([mrtd, &body[0x148..0x1D8]].concat()).to_vec();
    let kp = serde_json::json!({"name": "local-sgx", "id": app.key_provider.as_ref().unwrap().id.to_hex()}).to_string();
    let sys = sha256(&[mrtd, &body[0x148..0x1D8], &sha256(&[kp.as_bytes()])]);
    let agg = sha256(&[mrtd, &body[0x148..0x208]]);
    VerifiedIdentity {
        platform: PlatformId::TDX,
        app,
        boot: BootMeasurements::new(boot_digest)
            .with("mrtd", mrtd)
            .with("rtmr0", &body[0x148..0x178])
            .with("rtmr1", &body[0x178..0x1A8])
            .with("rtmr2", &body[0x1A8..0x1D8])
            .with("rtmr3", &body[0x1D8..0x208])
            .with("tee_tcb_svn", &body[0..16])
            .with("mr_seam", &body[16..64]),
        tcb: TcbInfo {
            status: TcbStatus::UpToDate,
            advisory_ids: vec![],
            tcb_date: Some(
                time::OffsetDateTime::from_unix_timestamp(TCB_DATE - 400 * 86_400).unwrap(),
            ),
            out_of_date_since: Some(time::OffsetDateTime::from_unix_timestamp(TCB_DATE).unwrap()),
        },
        debug: false,
        report_data: ReportData::from_slice(&body[0x208..0x248]).unwrap(),
        report_data_checked: true,
        device_id: Some(DeviceId(sha256(&[b"tdx ppid"]).try_into().unwrap())),
        platform_claims: claims("dstack-tdx", agg, sys),
    }
}

pub fn snp_identity() -> VerifiedIdentity {
    let r = attest_testkit::vectors::read("snp/reports/milan-v2-a.report.bin");
    assert_eq!(r.len(), 1184);
    let measurement = &r[0x90..0xC0];
    assert_eq!(
        hex::encode(measurement),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    let tcb = &r[0x180..0x188];
    let components = BTreeMap::from([
        ("bootloader".to_owned(), u64::from(tcb[0])),
        ("tee".to_owned(), u64::from(tcb[1])),
        ("snp".to_owned(), u64::from(tcb[6])),
        ("microcode".to_owned(), u64::from(tcb[7])),
    ]);
    assert_eq!(components["snp"], 8);
    assert_eq!(components["microcode"], 115);
    let tdx = tdx_identity();
    VerifiedIdentity {
        platform: PlatformId::SEV_SNP,
        app: tdx.app.clone(),
        boot: BootMeasurements::new(measurement)
            .with("measurement", measurement)
            .with("host_data", &r[0xC0..0xE0])
            .with("family_id", &r[0x10..0x20])
            .with("image_id", &r[0x20..0x30])
            .with(
                "vmpl",
                u64::from(u32::from_le_bytes(r[0x30..0x34].try_into().unwrap())),
            )
            .with("reported_tcb", BootValue::Components(components)),
        tcb: TcbInfo::new(TcbStatus::UpToDate),
        debug: false,
        report_data: ReportData::from_slice(&r[0x50..0x90]).unwrap(),
        report_data_checked: true,
        device_id: Some(DeviceId(sha256(&[&r[0x1A0..0x1E0]]).try_into().unwrap())),
        platform_claims: claims(
            "dstack-amd-sev-snp",
            sha256(&[measurement, &r[0xC0..0xE0]]),
            sha256(&[measurement]),
        ),
    }
}

pub fn input(id: &VerifiedIdentity) -> PolicyInput<'_> {
    PolicyInput::new(id, RequestContext::app_keys(UnixTime(NOW)))
}

pub fn input_at(id: &VerifiedIdentity, t: u64) -> PolicyInput<'_> {
    PolicyInput::new(id, RequestContext::app_keys(UnixTime(t)))
}

/// A policy allowing the fixture app on both platforms.
pub fn base_toml() -> String {
    format!(
        r#"
platforms = ["tdx", "sev-snp"]
os_images = ["{OS_IMAGE}"]

[tcb]
allow = ["UpToDate"]

[[apps]]
app_id = "{APP_ID}"
compose_hashes = ["{COMPOSE}"]
"#
    )
}
