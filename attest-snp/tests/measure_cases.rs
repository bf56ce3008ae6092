//! Every case of `../shared/vectors/snp/measure/cases.toml`, read in place.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use attest_core::Malformed;
use attest_snp::measure::{
    KernelHashes, LaunchInput, LaunchInputs, MeasureError, SvsmInputs, VmmType, launch_digest,
    svsm_launch_digest, vcpu_signature,
};

fn dir() -> PathBuf {
    attest_testkit::vectors::path("snp/measure")
}

#[test]
fn all_cases() {
    let text = std::fs::read_to_string(dir().join("cases.toml")).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let cases = doc["case"].as_array().unwrap();
    assert!(cases.len() >= 11);
    let (mut checked, mut svsm_cases) = (0, 0);
    for c in cases {
        let c = c.as_table().unwrap();
        let name = c["name"].as_str().unwrap();
        let ovmf = std::fs::read(dir().join(c["ovmf"].as_str().unwrap())).unwrap();
        let vcpus = c.get("vcpus").and_then(|v| v.as_integer()).unwrap_or(1) as u32;
        if c.get("mode").and_then(|m| m.as_str()) == Some("svsm") {
            let svsm = std::fs::read(dir().join(c["svsm"].as_str().unwrap())).unwrap();
            let got = svsm_launch_digest(&SvsmInputs {
                ovmf: &ovmf,
                svsm: &svsm,
                vars_size: c["vars_size"].as_integer().unwrap() as u64,
                vcpus,
                vcpu_sig: vcpu_signature("EPYC-v4").unwrap(),
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(hex::encode(got), c["expected"].as_str().unwrap(), "{name}");
            svsm_cases += 1;
            checked += 1;
            continue;
        }
        let kernel_given = c.get("kernel").and_then(|k| k.as_bool()) != Some(false);
        let append = c.get("append").and_then(|a| a.as_str());
        let kernel = kernel_given
            .then(|| KernelHashes::from_readers(&b""[..], Some(&b""[..]), append).unwrap());
        let inp = LaunchInputs {
            ovmf: &ovmf,
            vcpus,
            vcpu_sig: vcpu_signature("EPYC-v4").unwrap(),
            guest_features: c
                .get("guest_features")
                .and_then(|v| v.as_integer())
                .unwrap_or(1) as u64,
            kernel,
            vmm: c
                .get("vmm_type")
                .and_then(|v| v.as_str())
                .unwrap_or("qemu")
                .parse::<VmmType>()
                .unwrap(),
            ovmf_only: c
                .get("ovmf_only")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        };
        let got = launch_digest(&inp);
        match (c.get("expected"), c.get("expected_error")) {
            (Some(want), _) => assert_eq!(
                hex::encode(got.unwrap_or_else(|e| panic!("{name}: {e}"))),
                want.as_str().unwrap(),
                "{name}"
            ),
            (_, Some(e)) => {
                // The vectors name the refusal in words; each maps to its
                // typed variant here, and the words must still appear.
                let err = got.unwrap_err();
                let want = match e.as_str().unwrap() {
                    "no SNP_KERNEL_HASHES section" => LaunchInput::NoKernelHashesSection,
                    other => panic!("{name}: no typed refusal known for {other:?}"),
                };
                assert_eq!(err, MeasureError::Input(want), "{name}");
                assert!(
                    err.to_string().contains(e.as_str().unwrap()),
                    "{name}: {err}"
                );
            }
            _ => panic!("{name}: no expectation"),
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len(), "every case ran");
    assert!(svsm_cases >= 1, "the Coconut-SVSM case ran");
}

#[test]
fn vcpu_types_and_bad_inputs() {
    assert_eq!(vcpu_signature("EPYC").unwrap(), 0x0080_0F12);
    assert_eq!(vcpu_signature("EPYC-Milan-v2").unwrap(), 0x00A0_0F11);
    assert_eq!(vcpu_signature("EPYC-Genoa").unwrap(), 0x00A1_0F10);
    assert_eq!(vcpu_signature("EPYC-Rome").unwrap(), 0x0083_0F10);
    assert_eq!(vcpu_signature("EPYC-Rome-v2").unwrap(), 0x0083_0F10);
    assert_eq!(vcpu_signature("EPYC-Turin").unwrap(), 0x00B0_0F00);
    assert!(vcpu_signature("Skylake").is_err());
    let ovmf = std::fs::read(dir().join("ovmf_AmdSev_suffix.bin")).unwrap();
    let base = LaunchInputs {
        ovmf: &ovmf,
        vcpus: 1,
        vcpu_sig: 0x0080_0F12,
        guest_features: 1,
        kernel: None,
        vmm: VmmType::Qemu,
        ovmf_only: false,
    };
    assert!(
        launch_digest(&LaunchInputs {
            vcpus: 0,
            ..base.clone()
        })
        .is_err()
    );
    assert!(
        launch_digest(&LaunchInputs {
            ovmf: &ovmf[..4000],
            ..base.clone()
        })
        .is_err()
    );
    assert!(matches!(
        launch_digest(&LaunchInputs {
            ovmf: &[0u8; 8192],
            ..base.clone()
        }),
        Err(MeasureError::Malformed(Malformed::Missing {
            what: "OVMF footer GUID table",
            ..
        }))
    ));
    // More vCPUs, another digest.
    assert_ne!(
        launch_digest(&base).unwrap(),
        launch_digest(&LaunchInputs { vcpus: 2, ..base }).unwrap()
    );
}

#[test]
fn svsm_bad_inputs() {
    let ovmf = std::fs::read(dir().join("svsm_ovmf.fd")).unwrap();
    let svsm = std::fs::read(dir().join("svsm.bin")).unwrap();
    let base = SvsmInputs {
        ovmf: &ovmf,
        svsm: &svsm,
        vars_size: 540672,
        vcpus: 4,
        vcpu_sig: 0x0080_0F12,
    };
    let good = svsm_launch_digest(&base).unwrap();
    let e = |inp: SvsmInputs<'_>| match svsm_launch_digest(&inp) {
        Err(MeasureError::Input(i)) => i,
        other => panic!("expected an input refusal, got {other:?}"),
    };
    // Where the SVSM sits, how many vCPUs and which model are all measured.
    for other in [
        SvsmInputs {
            vars_size: 540672 + 4096,
            ..base.clone()
        },
        SvsmInputs {
            vcpus: 2,
            ..base.clone()
        },
        SvsmInputs {
            vcpu_sig: 0x00A0_0F11,
            ..base.clone()
        },
    ] {
        assert_ne!(svsm_launch_digest(&other).unwrap(), good);
    }
    assert_eq!(
        e(SvsmInputs {
            svsm: &ovmf,
            ..base.clone()
        }),
        LaunchInput::NoSvsmInfo
    );
    let no_table = svsm_launch_digest(&SvsmInputs {
        svsm: &[0u8; 8192],
        ..base.clone()
    });
    assert!(
        matches!(&no_table, Err(MeasureError::Malformed(Malformed::Within { location, inner }))
            if location == "SVSM image" && matches!(**inner, Malformed::Missing { .. })),
        "{no_table:?}"
    );
    assert_eq!(
        e(SvsmInputs {
            svsm: &svsm[..svsm.len() - 100],
            ..base.clone()
        }),
        LaunchInput::NotPageMultiple {
            what: "SVSM image",
            size: svsm.len() as u64 - 100
        }
    );
    assert_eq!(
        e(SvsmInputs {
            vars_size: 1000,
            ..base.clone()
        }),
        LaunchInput::VarsNotPageMultiple { size: 1000 }
    );
    assert_eq!(
        e(SvsmInputs {
            vars_size: 1 << 32,
            ..base.clone()
        }),
        LaunchInput::SvsmDoesNotFit
    );
    assert_eq!(e(SvsmInputs { vcpus: 0, ..base }), LaunchInput::NoVcpu);
}
