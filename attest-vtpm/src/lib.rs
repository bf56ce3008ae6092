//! Azure confidential VMs attested through their vTPM: the plug-ins
//! `az-snp-vtpm` and `az-tdx-vtpm` ([`AzVtpm`]), composed on attest-snp and
//! attest-tdx, and the platform-independent core they share.
//!
//! The chain of trust (reference `vtpm.md` §0): the hardware report (an SNP
//! report at VMPL 0, or a TDX TD quote) carries
//! `REPORT_DATA = SHA-256(runtime claims) ‖ 0³²`; the claims name the
//! vTPM's attestation key (`HCLAkPub`); the AK signs the TPM quote, which
//! holds the nonce (`extraData`) and the digest of PCRs 0–23.
//!
//! This crate checks everything below the hardware report:
//! [`check_evidence`] decodes the container ([`container`]), checks the HCL
//! framing ([`hcl`]), reads the claims ([`claims`]), verifies the AK
//! signature over the exact quote bytes, parses the quote strictly and
//! matches the supplied PCRs to its digest ([`tpm`]). The result,
//! [`CheckedVtpm`], is **not yet trusted**: the caller must still
//!
//! 1. verify the hardware report ([`CheckedVtpm::hardware_report`]) with
//!    [`CheckedVtpm::expected_report_data`] as its required report data
//!    (SNP: attest-snp with VMPL 0; TDX: attest-tdx on the TD quote), and
//! 2. check the nonce: [`CheckedVtpm::check_kms_binding`] for a KMS request
//!    (`user-data` = the request's report data, `extraData` = its SHA-256),
//!    or [`CheckedVtpm::check_nonce`] for an offline nonce.
//!
//! [`AzVtpm`] does both with the reused verifier, replays the app PCR
//! ([`identity`]) and builds the identity.
//!
//! Every length is bounded before use and no input can panic.

pub mod claims;
pub mod container;
pub mod hcl;
pub mod identity;
mod plugin;
pub mod tpm;

use attest_core::{AttestError, Malformed, ReportData};

pub use claims::{AkPublicKey, RuntimeClaims, VmConfiguration};
pub use container::{Container, ContainerVersion, Endorsement, TpmQuote, Vcek};
pub use hcl::{HclReport, TeeType};
pub use identity::{PCR_NAMES, VtpmClaims};
pub use plugin::{AZ_SNP_VTPM, AZ_TDX_VTPM, AzVtpm, Nonce, OfflineIdentity, VtpmConfig};
pub use tpm::{ClockInfo, Pcrs, TpmsAttest, verify_quote_signature};

/// The hardware report to verify next, with what endorses it.
#[derive(Clone, Copy, Debug)]
pub enum HardwareReport<'a> {
    /// SEV-SNP: the 1184-byte SNP report from the HCL report, and the VCEK
    /// from the container (untrusted; chain it to the pinned ARK).
    Snp {
        /// The SNP report (HCL bytes 0x20..0x4C0).
        report: &'a [u8],
        /// The VCEK as the container carried it, if it did.
        vcek: Option<&'a Vcek>,
    },
    /// TDX: the DCAP TD quote (the HCL's TDREPORT is only MAC'd and is not
    /// offered).
    Tdx {
        /// The TD quote as received.
        td_quote: &'a [u8],
    },
}

/// vTPM evidence whose HCL framing, AK signature, quote structure and PCR
/// digest were checked by [`check_evidence`] or [`check_container`].
///
/// Every value here follows from the claims, so none counts until the
/// caller has verified the hardware report against
/// [`CheckedVtpm::expected_report_data`] and checked the nonce.
#[derive(Clone, Debug)]
pub struct CheckedVtpm {
    version: ContainerVersion,
    hcl: HclReport,
    claims: RuntimeClaims,
    ak_digest: [u8; 32],
    attest: TpmsAttest,
    quote: TpmQuote,
    endorsement: Endorsement,
}

/// Decodes a container document and checks it as [`check_container`] does.
pub fn check_evidence(document: &[u8], tee: TeeType) -> Result<CheckedVtpm, AttestError> {
    check_container(Container::parse(document)?, tee)
}

/// Checks a decoded container for a plug-in that serves `tee`:
///
/// 1. the HCL framing (P5), whose `report_type` must be `tee`, and the
///    endorsement must be of that platform (VCEK for SNP, TD quote for TDX);
/// 2. the runtime claims and their `HCLAkPub` (RSA-2048, e = 65537);
/// 3. the AK's RSASSA-PKCS1-v1_5 SHA-256 signature over the exact
///    `TPMS_ATTEST` bytes (signature length = modulus length, P11);
/// 4. the quote structure: magic, type (P2), the full `sha256:0-23`
///    selection (P1), no trailing bytes;
/// 5. `pcrDigest == SHA-256(PCR 0 ‖ … ‖ PCR 23)` of the 24 supplied values
///    (P1; a mismatch is an [`AttestError::IdentityMismatch`]).
///
/// The hardware report and the nonce are left to the caller (see the crate
/// documentation).
pub fn check_container(container: Container, tee: TeeType) -> Result<CheckedVtpm, AttestError> {
    let (version, quote, hcl_bytes, endorsement) = container.into_parts();
    let hcl = HclReport::parse(&hcl_bytes)?;
    if hcl.tee() != tee {
        return Err(Malformed::BadValue {
            what: "HCL report report_type".into(),
            expected: format!("{} ({tee})", tee.report_type()),
            found: format!("{} ({})", hcl.tee().report_type(), hcl.tee()),
        }
        .into());
    }
    match (&endorsement, tee) {
        (Endorsement::Vcek(_) | Endorsement::NoVcek, TeeType::Snp)
        | (Endorsement::TdQuote(_), TeeType::Tdx) => {}
        (Endorsement::NoVcek, TeeType::Tdx) => {
            return Err(Malformed::Missing {
                what: "td_quote",
                detail: "vTPM evidence: a TDX HCL report needs td_quote, the container has none"
                    .into(),
            }
            .into());
        }
        (Endorsement::Vcek(_), TeeType::Tdx) => {
            return Err(Malformed::Unexpected {
                what: "vcek",
                detail: "vTPM evidence: a TDX HCL report needs td_quote, the container has a vcek"
                    .into(),
            }
            .into());
        }
        (Endorsement::TdQuote(_), TeeType::Snp) => {
            return Err(Malformed::Unexpected {
                what: "td_quote",
                detail: "vTPM evidence: an SNP HCL report needs a vcek, the container has td_quote"
                    .into(),
            }
            .into());
        }
    }
    let claims = RuntimeClaims::parse(hcl.claims())?;
    verify_quote_signature(claims.ak(), quote.message(), quote.signature())?;
    let attest = TpmsAttest::parse(quote.message())?;
    attest.check_pcrs(quote.pcrs())?;
    Ok(CheckedVtpm {
        version,
        ak_digest: claims.ak().digest(),
        hcl,
        claims,
        attest,
        quote,
        endorsement,
    })
}

impl CheckedVtpm {
    /// The container form.
    pub fn container_version(&self) -> ContainerVersion {
        self.version
    }

    /// SNP or TDX.
    pub fn tee(&self) -> TeeType {
        self.hcl.tee()
    }

    /// The HCL report (framing, claims bytes and their digest).
    pub fn hcl_report(&self) -> &HclReport {
        &self.hcl
    }

    /// The hardware report the caller must verify next.
    pub fn hardware_report(&self) -> HardwareReport<'_> {
        match &self.endorsement {
            Endorsement::Vcek(vcek) => HardwareReport::Snp {
                report: self.hcl.tee_report(),
                vcek: Some(vcek),
            },
            Endorsement::NoVcek => HardwareReport::Snp {
                report: self.hcl.tee_report(),
                vcek: None,
            },
            Endorsement::TdQuote(td_quote) => HardwareReport::Tdx { td_quote },
        }
    }

    /// What the hardware report's report data must be:
    /// `SHA-256(claims) ‖ 0³²`.
    pub fn expected_report_data(&self) -> ReportData {
        self.hcl.expected_report_data()
    }

    /// The VCEK or the TD quote, as the container carried it.
    pub fn endorsement(&self) -> &Endorsement {
        &self.endorsement
    }

    /// The runtime claims.
    pub fn claims(&self) -> &RuntimeClaims {
        &self.claims
    }

    /// SHA-256 of the AK modulus (`ak_pub_sha256`, reference P7).
    pub fn ak_digest(&self) -> &[u8; 32] {
        &self.ak_digest
    }

    /// The signed PCR values, PCR 0 first (the selection is always 0–23).
    pub fn pcrs(&self) -> &Pcrs {
        self.quote.pcrs()
    }

    /// Signed PCR `index`, `None` past 23.
    pub fn pcr(&self, index: usize) -> Option<&[u8; 32]> {
        self.quote.pcrs().get(index)
    }

    /// The quote's `extraData`, not compared to anything yet.
    pub fn nonce(&self) -> &[u8] {
        self.attest.extra_data()
    }

    /// The parsed quote: clock info, firmware version, qualified signer,
    /// PCR digest.
    pub fn attest(&self) -> &TpmsAttest {
        &self.attest
    }

    /// The quote's `clockInfo`.
    pub fn clock_info(&self) -> ClockInfo {
        self.attest.clock_info()
    }

    /// The quote's `firmwareVersion`.
    pub fn firmware_version(&self) -> u64 {
        self.attest.firmware_version()
    }

    /// The exact `TPMS_ATTEST` bytes the AK signed.
    pub fn tpm_message(&self) -> &[u8] {
        self.quote.message()
    }

    /// The AK's signature over [`CheckedVtpm::tpm_message`].
    pub fn tpm_signature(&self) -> &[u8] {
        self.quote.signature()
    }

    /// Offline check: `extraData` must be exactly `expected` (length
    /// included, constant time; P3).
    pub fn check_nonce(&self, expected: &[u8]) -> Result<(), AttestError> {
        self.attest.check_nonce(expected)
    }

    /// The claims' `user-data`, once the quote is bound to it:
    /// `extraData == SHA-256(user-data)` (P4). This is the 64-byte report
    /// data of a KMS request; compare it with the expected value (as
    /// [`CheckedVtpm::check_kms_binding`] does, or through
    /// `VerifyContext::check_report_data`).
    pub fn bound_user_data(&self) -> Result<ReportData, AttestError> {
        let user_data = self.claims.user_data().ok_or_else(|| {
            AttestError::from(Malformed::Missing {
                what: "user-data",
                detail:
                    "HCL runtime claims have no user-data: the evidence carries no request binding"
                        .into(),
            })
        })?;
        self.attest.check_nonce_is_sha256_of(&user_data.0)?;
        Ok(*user_data)
    }

    /// The KMS binding: `user-data == expected` and
    /// `extraData == SHA-256(expected)`, both compared in full and in
    /// constant time. Mismatches are [`AttestError::BindingMismatch`].
    pub fn check_kms_binding(&self, expected: &ReportData) -> Result<(), AttestError> {
        let found = self.bound_user_data()?;
        if tpm::ct_eq(&found.0, &expected.0) {
            Ok(())
        } else {
            Err(AttestError::BindingMismatch {
                expected: Box::new(*expected),
                found: Box::new(found),
            })
        }
    }
}
