//! The JSON names of `VerifiedIdentity` are a public contract: policy files
//! and scripts use them. This test pins every name and encoding.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;

use attest_core::{
    AppId, AppIdentity, BootMeasurements, BootValue, ComposeHash, DeviceId, HexBytes, InstanceId,
    KeyProvider, NoApp, OsImageHash, PlatformClaims, PlatformId, QuoteOnlyIdentity, ReportData,
    TcbInfo, TcbStatus, VerifiedIdentity,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct TdxClaims {
    tee_tcb_svn: String,
}

fn sample() -> VerifiedIdentity {
    let mut claims = PlatformClaims::default();
    claims
        .insert(
            "tdx",
            &TdxClaims {
                tee_tcb_svn: "0b01".into(),
            },
        )
        .unwrap();
    VerifiedIdentity {
        platform: PlatformId::TDX,
        app: AppIdentity {
            app_id: AppId([0x11; 20]),
            compose_hash: ComposeHash([0x22; 32]),
            instance_id: Some(InstanceId([0x33; 20])),
            key_provider: Some(KeyProvider {
                name: "kms".into(),
                id: HexBytes(vec![0x30, 0x59]),
            }),
            os_image_hash: None,
        },
        boot: BootMeasurements::new(vec![0xbd; 4])
            .with("mrtd", &[0xaa; 2][..])
            .with("vmpl", 0u64)
            .with(
                "reported_tcb",
                BootValue::Components(BTreeMap::from([("snp".to_owned(), 8)])),
            ),
        tcb: TcbInfo {
            status: TcbStatus::SwHardeningNeeded,
            advisory_ids: vec!["INTEL-SA-00837".into()],
            tcb_date: Some(time::macros::datetime!(2024-03-13 0:00 UTC)),
            out_of_date_since: Some(time::macros::datetime!(2024-11-13 0:00 UTC)),
        },
        debug: false,
        report_data: ReportData([0x44; 64]),
        report_data_checked: true,
        device_id: Some(DeviceId([0x55; 32])),
        platform_claims: claims,
    }
}

#[test]
fn json_names_are_pinned() {
    let want = json!({
        "platform": "tdx",
        "app": {
            "app_id": "11".repeat(20),
            "compose_hash": "22".repeat(32),
            "instance_id": "33".repeat(20),
            "key_provider": {"name": "kms", "id": "3059"},
            "os_image_hash": null
        },
        "boot": {
            "mrtd": "aaaa",
            "vmpl": 0,
            "reported_tcb": {"snp": 8},
            "boot_digest": "bdbdbdbd"
        },
        "tcb": {
            "status": "SWHardeningNeeded",
            "advisory_ids": ["INTEL-SA-00837"],
            "tcb_date": "2024-03-13T00:00:00Z",
            "out_of_date_since": "2024-11-13T00:00:00Z"
        },
        "debug": false,
        "report_data": "44".repeat(64),
        "report_data_checked": true,
        "device_id": "55".repeat(32),
        "platform_claims": {"tdx": {"tee_tcb_svn": "0b01"}}
    });
    let id = sample();
    assert_eq!(id.to_json(), want);
    assert_eq!(
        id.boot.get("mrtd"),
        Some(&BootValue::Bytes(HexBytes(vec![0xaa; 2])))
    );
    assert_eq!(id.boot.get("vmpl"), Some(&BootValue::Number(0)));
    assert_eq!(id.boot.get("rtmr0"), None);
    // An identity without an app (offline quote checks) prints `app: null`.
    let quote_only = QuoteOnlyIdentity {
        platform: id.platform.clone(),
        app: NoApp,
        boot: id.boot.clone(),
        tcb: id.tcb.clone(),
        debug: id.debug,
        report_data: id.report_data,
        report_data_checked: id.report_data_checked,
        device_id: id.device_id,
        platform_claims: id.platform_claims.clone(),
    };
    let mut want_quote_only = want.clone();
    want_quote_only["app"] = serde_json::Value::Null;
    assert_eq!(quote_only.to_json(), want_quote_only);
    // And back: the policy CLI reads identities from files.
    let back: VerifiedIdentity = serde_json::from_value(want).unwrap();
    assert_eq!(back, id);
    let claims: TdxClaims = back.platform_claims.get("tdx").unwrap().unwrap();
    assert_eq!(claims.tee_tcb_svn, "0b01");
    assert!(back.platform_claims.get::<TdxClaims>("sev_snp").is_none());
}

#[test]
fn tcb_status_spellings() {
    let names: Vec<String> = TcbStatus::ALL
        .iter()
        .map(|s| {
            serde_json::to_value(s)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "UpToDate",
            "SWHardeningNeeded",
            "ConfigurationNeeded",
            "ConfigurationAndSWHardeningNeeded",
            "OutOfDate",
            "OutOfDateConfigurationNeeded",
            "Unknown"
        ]
    );
    for s in TcbStatus::ALL {
        assert_eq!(s.as_str().parse::<TcbStatus>().unwrap(), s);
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        assert_eq!(s.to_string(), s.as_str());
    }
    assert!("uptodate".parse::<TcbStatus>().is_err());
    assert!(serde_json::from_str::<TcbStatus>("\"SwHardeningNeeded\"").is_err());
}

#[test]
fn reading_identities_is_strict() {
    let mut v = sample().to_json();
    v["app"]["app_idd"] = json!("00");
    assert!(serde_json::from_value::<VerifiedIdentity>(v).is_err());
    let mut v = sample().to_json();
    v["app"]["app_id"] = json!("11".repeat(21));
    assert!(serde_json::from_value::<VerifiedIdentity>(v).is_err());
    let mut v = sample().to_json();
    v["extra"] = json!(1);
    assert!(serde_json::from_value::<VerifiedIdentity>(v).is_err());
    let mut v = sample().to_json();
    v["platform"] = json!("TDX");
    assert!(serde_json::from_value::<VerifiedIdentity>(v).is_err());
    let mut v = sample().to_json();
    v["tcb"]["tcb_date"] = json!("yesterday");
    assert!(serde_json::from_value::<VerifiedIdentity>(v).is_err());
    let mut v = sample().to_json();
    v["app"]["os_image_hash"] = json!("66".repeat(32));
    let back: VerifiedIdentity = serde_json::from_value(v).unwrap();
    assert_eq!(back.app.os_image_hash, Some(OsImageHash([0x66; 32])));
}
