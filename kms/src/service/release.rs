//! The key-release core: the one function every front end calls.
//!
//! (evidence, expected report data, request context) → verified identity →
//! image registry → policy → derived keys, or a typed [`Refusal`]. Audit and
//! metrics happen inside, so no front end can release without them:
//! - endorsements (collateral, VCEKs) are fetched before a CPU permit is
//!   taken, so a network wait never holds one;
//! - the OS image comes from the reference values only, never from what
//!   the guest says about itself;
//! - a release is audited before the keys are handed back; one that cannot
//!   be recorded is refused as [`Refusal::Unavailable`];
//! - every label and record is bounded (see [`super::audit`],
//!   [`super::metrics`]).
//!
//! Front ends own only what differs between protocols: decoding, how the
//! expected report data is bound (a challenge and a client key for
//! `kms.v1`, an RA-TLS certificate key for dstack's), and how the keys are
//! wrapped on the way out.

use std::sync::Arc;
use std::time::Instant;

use attest_core::{
    AttestError, ErrorKind, Evidence, ReportData, UnixTime, VerifiedIdentity, VerifyContext,
};
use policy::{PolicyInput, Reason, RequestContext};

use super::KmsState;
use super::audit::{AuditRecord, bounded_reasons};
use super::kdf::AppKeyMaterial;

/// Which front end took the request (audit and metrics name it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontEnd(pub &'static str);

impl FrontEnd {
    /// The `kms.v1` gRPC service.
    pub const KMS_V1: FrontEnd = FrontEnd("kms.v1");
    /// The dstack-compatible prpc listener.
    pub const DSTACK: FrontEnd = FrontEnd("dstack");
}

/// What the caller asks the release for: the policy sees it (`request.keys`)
/// and the audit log records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The app's keys (`GetAppKey` on every front end).
    AppKeys,
    /// A certificate from the app's CA (dstack's `SignCert`). The keys are
    /// derived as for [`Purpose::AppKeys`] (the app CA comes from the same
    /// root), and dstack webhooks get dstack's boot-time aggregates.
    AppCertificate,
    /// The root keys, for a replica KMS (`GetRootKeys`): the policy's `kms`
    /// role decides.
    RootKeys,
    /// An attestation result (`Attest`): no keys.
    Attestation,
}

impl Purpose {
    /// The name the audit log and the policy input use.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::AppKeys => RequestContext::APP_KEYS,
            Purpose::AppCertificate => RequestContext::APP_CERTIFICATE,
            Purpose::RootKeys => policy::ROOT_KEYS,
            Purpose::Attestation => "attestation",
        }
    }

    fn request_context(self, time: UnixTime) -> RequestContext {
        match self {
            Purpose::AppKeys => RequestContext::app_keys(time),
            Purpose::AppCertificate => RequestContext::app_certificate(time),
            Purpose::RootKeys => RequestContext::root_keys(time),
            Purpose::Attestation => RequestContext::attestation(time),
        }
    }
}

/// What a release hands back to the front end.
pub struct Release {
    /// The verified identity, with `os_image_hash` resolved from the
    /// image registry.
    pub identity: VerifiedIdentity,
    /// The app's keys.
    pub keys: Arc<AppKeyMaterial>,
    /// The policy's extra answers (dstack webhooks' `gatewayAppId`).
    pub decision: policy::Decision,
}

/// Why keys were not released.
#[derive(Debug)]
pub enum Refusal {
    /// The evidence did not verify.
    Attestation(AttestError),
    /// The policy denied the verified identity.
    Policy(Vec<Reason>),
    /// The release could not be recorded, or a dependency is down.
    Unavailable(String),
    /// An unexpected failure (key derivation).
    Internal(String),
}

impl Refusal {
    /// The outcome label metrics count it under.
    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::Attestation(e) => match e.kind() {
                ErrorKind::Malformed => "invalid",
                ErrorKind::Unavailable => "unavailable",
                ErrorKind::UnsupportedPlatform => "unsupported",
                _ => "deny",
            },
            Refusal::Policy(_) => "deny",
            Refusal::Unavailable(_) => "unavailable",
            Refusal::Internal(_) => "error",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Attestation(e) => write!(f, "attestation failed: {e}"),
            Refusal::Policy(reasons) => write!(
                f,
                "policy denied: {}",
                reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Refusal::Unavailable(m) => write!(f, "unavailable: {m}"),
            Refusal::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

fn now() -> u64 {
    UnixTime::now().as_secs()
}

/// Where a request comes from and what it asks for.
#[derive(Clone, Copy, Debug)]
struct Asked {
    front_end: FrontEnd,
    purpose: Purpose,
}

fn audit(
    state: &KmsState,
    asked: Asked,
    platform: &str,
    decision: &str,
    identity: Option<&VerifiedIdentity>,
    reasons: Vec<String>,
) -> std::io::Result<()> {
    let Some(log) = &state.audit else {
        return Ok(());
    };
    let id = identity;
    log.record(&AuditRecord {
        time: now(),
        front_end: asked.front_end.0,
        purpose: asked.purpose.as_str(),
        platform,
        decision,
        app_id: id.map(|i| i.app.app_id.to_hex()),
        compose_hash: id.map(|i| i.app.compose_hash.to_hex()),
        instance_id: id.and_then(|i| i.app.instance_id.map(|x| x.to_hex())),
        os_image_hash: id.and_then(|i| i.app.os_image_hash.map(|h| h.to_hex())),
        device_id: id.and_then(|i| i.device_id.map(|d| d.to_hex())),
        tcb_status: id.map(|i| i.tcb.status.as_str()),
        reasons: bounded_reasons(reasons),
    })
}

/// A refusal: audited (best effort: a refusal releases nothing), counted.
fn refuse(
    state: &KmsState,
    asked: Asked,
    platform: &str,
    identity: Option<&VerifiedIdentity>,
    refusal: Refusal,
) -> Refusal {
    let decision = match &refusal {
        Refusal::Policy(_) => "deny",
        _ => "error",
    };
    let mut reasons: Vec<String> = match &refusal {
        Refusal::Policy(r) => r.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    };
    // Refusals of evidence that never verified come from anyone: a few a
    // minute are recorded, the rest counted into the next record, so they
    // cannot fill the disk the release records (and root keys) live on.
    if identity.is_none() {
        if !state.unverified_audit.allow() {
            state.metrics.request(platform, refusal.outcome());
            return refusal;
        }
        let dropped = state.unverified_audit.take_dropped();
        if dropped > 0 {
            reasons.push(format!(
                "{dropped} earlier refusals of unverified evidence were not recorded one by one (rate limit)"
            ));
        }
    }
    if let Err(e) = audit(state, asked, platform, decision, identity, reasons) {
        if state.refusal_log.allow() {
            tracing::error!(error = %e, "cannot write a refusal to the audit log");
        }
    }
    state.metrics.request(platform, refusal.outcome());
    refusal
}

/// Verifies `evidence` against `expected` and resolves its OS image: the
/// first steps of every path. Returns the identity and the platform label.
async fn verified_identity(
    state: &KmsState,
    asked: Asked,
    evidence: &Evidence,
    ctx: &VerifyContext,
) -> Result<(VerifiedIdentity, String), Refusal> {
    let label = state.metrics.platform_label(evidence.platform.as_str());
    // Network first, outside the CPU permits (bounded by the plug-ins'
    // budgets and timeouts), then verification under a permit.
    let fetched = state.verifiers.fetch_endorsements(evidence, ctx).await;
    let t0 = Instant::now();
    let verified = match fetched {
        Err(e) => Err(e),
        Ok(()) => {
            let _permit = state.verify_permits.acquire().await;
            state.verifiers.verify(evidence, ctx).await
        }
    };
    state.metrics.verify_latency(&label, t0.elapsed());
    let mut identity = match verified {
        Ok(id) => id,
        Err(e) => {
            return Err(refuse(state, asked, &label, None, Refusal::Attestation(e)));
        }
    };
    // The OS image comes from the reference values only, never from what
    // the guest declares about itself.
    identity.app.os_image_hash = state.images.resolve(&identity);
    Ok((identity, label))
}

/// The policy's decision on `identity` for `purpose`, its warnings logged
/// and its denials counted.
async fn decide(
    state: &KmsState,
    identity: &VerifiedIdentity,
    purpose: Purpose,
    time: UnixTime,
) -> policy::Decision {
    let decision = state
        .policy
        .evaluate(&PolicyInput::new(identity, purpose.request_context(time)))
        .await;
    for w in &decision.warnings {
        tracing::warn!(app_id = %identity.app.app_id, purpose = purpose.as_str(), "{w}");
    }
    if !decision.allow {
        for r in &decision.reasons {
            state.metrics.deny(&r.rule);
        }
    }
    decision
}

/// Records an allowed release before it happens; one that cannot be
/// recorded does not happen.
fn record_release(
    state: &KmsState,
    asked: Asked,
    label: &str,
    identity: &VerifiedIdentity,
) -> Result<(), Refusal> {
    if let Err(e) = audit(state, asked, label, "allow", Some(identity), vec![]) {
        tracing::error!(error = %e, "cannot write the audit log: refusing the release");
        state.metrics.request(label, "unavailable");
        return Err(Refusal::Unavailable(
            "the release cannot be recorded in the audit log".into(),
        ));
    }
    Ok(())
}

/// Verifies a replica KMS's evidence and decides, under the policy's
/// `kms` role, whether it may hold the root keys. The caller seals them;
/// the release is audited (and refused when it cannot be) before this
/// returns.
pub async fn release_root_keys(
    state: &KmsState,
    front_end: FrontEnd,
    evidence: &Evidence,
    expected: ReportData,
) -> Result<VerifiedIdentity, Refusal> {
    let asked = Asked {
        front_end,
        purpose: Purpose::RootKeys,
    };
    let ctx = VerifyContext::new(expected, UnixTime::now());
    let (identity, label) = verified_identity(state, asked, evidence, &ctx).await?;
    let decision = decide(state, &identity, Purpose::RootKeys, ctx.time).await;
    if !decision.allow {
        return Err(refuse(
            state,
            asked,
            &label,
            Some(&identity),
            Refusal::Policy(decision.reasons),
        ));
    }
    record_release(state, asked, &label, &identity)?;
    state.metrics.request(&label, "allow");
    tracing::info!(front_end = front_end.0, platform = %label, app_id = %identity.app.app_id, "root keys released to a replica");
    Ok(identity)
}

/// Verifies `evidence` and asks the policy about it, releasing nothing:
/// the appraisal an attestation result reports. Evidence that does not
/// verify is a refusal; a policy denial is a result (`contraindicated`).
/// Audited like a release.
pub async fn appraise(
    state: &KmsState,
    front_end: FrontEnd,
    evidence: &Evidence,
    expected: ReportData,
) -> Result<(VerifiedIdentity, policy::Decision), Refusal> {
    let asked = Asked {
        front_end,
        purpose: Purpose::Attestation,
    };
    let ctx = VerifyContext::new(expected, UnixTime::now());
    let (identity, label) = verified_identity(state, asked, evidence, &ctx).await?;
    let decision = decide(state, &identity, Purpose::Attestation, ctx.time).await;
    let (verdict, reasons) = if decision.allow {
        ("allow", vec![])
    } else {
        (
            "deny",
            decision.reasons.iter().map(ToString::to_string).collect(),
        )
    };
    if let Err(e) = audit(state, asked, &label, verdict, Some(&identity), reasons) {
        tracing::error!(error = %e, "cannot write the audit log: refusing the attestation result");
        state.metrics.request(&label, "unavailable");
        return Err(Refusal::Unavailable(
            "the attestation result cannot be recorded in the audit log".into(),
        ));
    }
    state
        .metrics
        .request(&label, if decision.allow { "allow" } else { "deny" });
    Ok((identity, decision))
}

/// A refusal of a request whose evidence never reached verification (no
/// client certificate, an attestation bound to another key, a body too
/// large): audited like a refusal of unverified evidence (rate-limited),
/// counted under `platform` (a registered platform or `other`).
pub fn refuse_unverified(
    state: &KmsState,
    front_end: FrontEnd,
    purpose: Purpose,
    platform: &str,
    error: AttestError,
) -> Refusal {
    let label = state.metrics.platform_label(platform);
    refuse(
        state,
        Asked { front_end, purpose },
        &label,
        None,
        Refusal::Attestation(error),
    )
}

/// Verifies `evidence` against `expected` report data, decides, derives:
/// the one path from evidence to keys.
pub async fn release_app_keys(
    state: &KmsState,
    front_end: FrontEnd,
    evidence: &Evidence,
    expected: ReportData,
) -> Result<Release, Refusal> {
    release_for(state, front_end, Purpose::AppKeys, evidence, expected).await
}

/// [`release_app_keys`] for a stated [`Purpose`]: the same verification,
/// image registry, policy, derivation, audit and metrics.
pub async fn release_for(
    state: &KmsState,
    front_end: FrontEnd,
    purpose: Purpose,
    evidence: &Evidence,
    expected: ReportData,
) -> Result<Release, Refusal> {
    let started = Instant::now();
    let asked = Asked { front_end, purpose };
    let ctx = VerifyContext::new(expected, UnixTime::now());
    let (identity, label) = verified_identity(state, asked, evidence, &ctx).await?;
    let decision = decide(state, &identity, purpose, ctx.time).await;
    if !decision.allow {
        let reasons = decision.reasons.clone();
        return Err(refuse(
            state,
            asked,
            &label,
            Some(&identity),
            Refusal::Policy(reasons),
        ));
    }

    let keys = match state.app_keys(&identity.app.app_id, identity.app.instance_id.as_ref()) {
        Ok(k) => k,
        Err(e) => {
            return Err(refuse(
                state,
                asked,
                &label,
                Some(&identity),
                Refusal::Internal(e.to_string()),
            ));
        }
    };
    // Recorded before the keys leave; a release that cannot be recorded
    // does not happen.
    record_release(state, asked, &label, &identity)?;
    state.metrics.request(&label, "allow");
    state.metrics.total_latency(&label, started.elapsed());
    tracing::info!(front_end = front_end.0, platform = %label, app_id = %identity.app.app_id, "app keys released");
    Ok(Release {
        identity,
        keys,
        decision,
    })
}
