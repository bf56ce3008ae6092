//! The default backend: a typed TOML policy, validated at load.
//!
//! ```toml
//! platforms = ["tdx", "sev-snp"]     # platforms allowed (default: none)
//! debug = false                      # allow debug TEEs (default: false)
//! os_images = ["<hex32>", ...]       # allowed os_image_hash values (default: none)
//!
//! [tcb]
//! allow = ["UpToDate"]               # accepted TCB statuses (default: UpToDate)
//! grace_days = 30                    # accept OutOfDate for N days after tcb.out_of_date_since (default: 0)
//! allowed_advisories = ["INTEL-SA-00837"]  # advisories accepted (default: none; "*" = any)
//! denied_advisories = ["INTEL-SA-01036"]   # advisories always refused
//!
//! [[apps]]
//! app_id = "<hex20>"
//! compose_hashes = ["<hex32>", ...]
//! device_ids = ["<hex32>", ...]      # optional: only these machines
//!
//! [platform.tdx]                     # optional, applies to TDX identities only
//! min_tee_tcb_svn = "<hex16>"        # boot.tee_tcb_svn, compared byte by byte
//! mr_seams = ["<hex48>", ...]        # allowed boot.mr_seam (TDX module)
//!
//! [kms]                              # optional: replica KMSs that may hold the root keys
//! os_images = ["<hex32>", ...]       # the KMS OS images (instead of the top-level list)
//! [[kms.apps]]                       # the KMS deployments (instead of [[apps]])
//! app_id = "<hex20>"
//! compose_hashes = ["<hex32>", ...]
//!
//! [platform.sev-snp]                 # optional, applies to SNP identities only
//! min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }   # lowest of boot.{reported,committed,launch,current}_tcb
//! vmpls = [0]                        # allowed boot.vmpl
//! family_ids = ["<hex16>"]           # allowed boot.family_id
//! image_ids = ["<hex16>"]            # allowed boot.image_id
//!
//! [platform.az-snp-vtpm]             # any platform id the policy allows
//! min_tcb = { snp = 8 }              # every rule above works on any platform whose
//! require_revocation_check = true    # identity has the registers it reads
//! registers = { pcr07 = ["<hex>"], measurement = ["<hex48>"] }   # boot register pins
//! claims = { "vtpm.secure_boot" = true, "vtpm.ak_pub_sha256" = ["<hex32>"] }  # platform_claims pins
//! ```
//!
//! A `[platform.<id>]` section applies to identities of that platform only,
//! and must name a platform `platforms` allows (a misspelt section would
//! otherwise never apply). Its rules read registers and claims by name, so
//! a platform composed on another (Azure's vTPM on SEV-SNP or TDX) takes
//! the same hardware rules; a rule whose register or claim the identity
//! lacks denies.
//!
//! Every key is optional, and every default denies: an empty file denies
//! everything. A `GetRootKeys` request (a replica KMS, `request.keys =
//! ["root_keys"]`) is judged by the `[kms]` role's images and deployments
//! and never by the app lists, so no app can obtain the root keys and no KMS
//! image app keys; without a `[kms]` section no replica is allowed. The
//! platform, debug, TCB, advisory and per-platform rules apply to both.
//! In particular an identity with any advisory id (Intel's
//! `INTEL-SA-*` on `SWHardeningNeeded` platforms, `SNP-RELAUNCH-ADVISED`) is
//! denied unless `tcb.allowed_advisories` lists it, as dstack's default
//! webhook denies any advisory. Unknown keys, bad hex and wrong lengths are load errors that
//! name the line. All rules are evaluated, so a denial lists every failing
//! rule. The common rules speak only normalized names, so the same text
//! decides a TDX and an SNP identity of one app identically.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use attest_core::names::{claim, reg, section};
use attest_core::{
    AppId, BootValue, ComposeHash, DeviceId, OsImageHash, PlatformId, TcbStatus, VerifiedIdentity,
};
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use time::OffsetDateTime;

use crate::decision::sha256;
use crate::{Decision, Policy, PolicyError, PolicyInput, Reason};

/// Exactly `N` bytes of hex in a policy file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Hex<const N: usize>([u8; N]);

impl<'de, const N: usize> Deserialize<'de> for Hex<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; N];
        if s.len() != 2 * N {
            return Err(D::Error::custom(format!(
                "expected {N} bytes ({} hex digits), found {} characters",
                2 * N,
                s.len()
            )));
        }
        hex::decode_to_slice(&s, &mut out)
            .map_err(|e| D::Error::custom(format!("bad hex: {e}")))?;
        Ok(Hex(out))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    platforms: Vec<PlatformId>,
    #[serde(default)]
    debug: bool,
    #[serde(default)]
    os_images: Vec<OsImageHash>,
    #[serde(default)]
    tcb: TcbRules,
    #[serde(default)]
    apps: Vec<AppRule>,
    #[serde(default)]
    kms: Option<KmsRole>,
    #[serde(default)]
    platform: PlatformSections,
}

/// Who may hold the root keys.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KmsRole {
    #[serde(default)]
    os_images: Vec<OsImageHash>,
    #[serde(default)]
    apps: Vec<AppRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TcbRules {
    #[serde(default = "default_tcb_allow")]
    allow: Vec<TcbStatus>,
    #[serde(default)]
    grace_days: u32,
    #[serde(default)]
    allowed_advisories: Vec<String>,
    #[serde(default)]
    denied_advisories: Vec<String>,
}

fn default_tcb_allow() -> Vec<TcbStatus> {
    vec![TcbStatus::UpToDate]
}

impl Default for TcbRules {
    fn default() -> Self {
        TcbRules {
            allow: default_tcb_allow(),
            grace_days: 0,
            allowed_advisories: Vec::new(),
            denied_advisories: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppRule {
    app_id: toml::Spanned<AppId>,
    #[serde(default)]
    compose_hashes: Vec<ComposeHash>,
    #[serde(default)]
    device_ids: Option<Vec<DeviceId>>,
}

type PlatformSections = BTreeMap<PlatformId, PlatformRules>;

/// A section with its TCB minimum's components listed.
type CompiledSection = (Vec<(&'static str, u8)>, PlatformRules);

/// One `[platform.<id>]` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformRules {
    #[serde(default)]
    min_tee_tcb_svn: Option<Hex<16>>,
    #[serde(default)]
    mr_seams: Option<Vec<Hex<48>>>,
    #[serde(default)]
    min_tcb: Option<SnpTcb>,
    #[serde(default)]
    vmpls: Option<Vec<u8>>,
    #[serde(default)]
    family_ids: Option<Vec<Hex<16>>>,
    #[serde(default)]
    image_ids: Option<Vec<Hex<16>>>,
    #[serde(default)]
    require_revocation_check: bool,
    #[serde(default)]
    registers: BTreeMap<String, Vec<HexValue>>,
    #[serde(default)]
    claims: BTreeMap<String, OneOrMany>,
}

/// Hex of any non-zero length (a register pin), kept lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HexValue(String);

impl<'de> Deserialize<'de> for HexValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() % 2 != 0 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(D::Error::custom(format!(
                "expected a register value in hex, found {s:?}"
            )));
        }
        Ok(HexValue(s.to_ascii_lowercase()))
    }
}

/// A claim pin: one allowed value, or a list of them (scalars only).
#[derive(Clone, Debug)]
struct OneOrMany(Vec<serde_json::Value>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = toml::Value::deserialize(d)?;
        let scalar = |v: toml::Value| -> Result<serde_json::Value, D::Error> {
            match v {
                toml::Value::String(s) => Ok(serde_json::Value::String(s)),
                toml::Value::Integer(i) => Ok(serde_json::Value::from(i)),
                toml::Value::Boolean(b) => Ok(serde_json::Value::Bool(b)),
                other => Err(D::Error::custom(format!(
                    "a claim pin is a string, an integer or a boolean (or a list of them), found {}",
                    other.type_str()
                ))),
            }
        };
        let values = match v {
            toml::Value::Array(a) => a.into_iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
            other => vec![scalar(other)?],
        };
        if values.is_empty() {
            return Err(D::Error::custom("a claim pin lists no value"));
        }
        Ok(OneOrMany(values))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnpTcb {
    bootloader: Option<u8>,
    tee: Option<u8>,
    snp: Option<u8>,
    microcode: Option<u8>,
    fmc: Option<u8>,
}

struct CompiledApp {
    compose_hashes: HashSet<ComposeHash>,
    device_ids: Option<HashSet<DeviceId>>,
}

/// A loaded TOML policy.
pub struct TomlPolicy {
    platforms: Vec<PlatformId>,
    debug: bool,
    os_images: HashSet<OsImageHash>,
    tcb_allow: Vec<TcbStatus>,
    grace_days: u32,
    allowed_advisories: HashSet<String>,
    any_advisory: bool,
    denied_advisories: HashSet<String>,
    apps: HashMap<AppId, CompiledApp>,
    /// The `kms` role: its images and deployments (`None`: no replica).
    kms: Option<(HashSet<OsImageHash>, HashMap<AppId, CompiledApp>)>,
    /// Per platform: the TCB minimum's components, and the section.
    platform_rules: HashMap<PlatformId, CompiledSection>,
    digest: [u8; 32],
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl TomlPolicy {
    /// Parses and validates policy text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            backend: "toml",
            path: None,
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let msg = match e.span() {
                Some(span) => format!("line {}: {}", line_of(text, span.start), e.message()),
                None => e.message().to_owned(),
            };
            invalid(msg)
        })?;

        let compile_apps = |rules: Vec<AppRule>| {
            let mut apps = HashMap::new();
            for app in rules {
                let line = line_of(text, app.app_id.span().start);
                let id = *app.app_id.get_ref();
                let compiled = CompiledApp {
                    compose_hashes: app.compose_hashes.into_iter().collect(),
                    device_ids: app.device_ids.map(|d| d.into_iter().collect()),
                };
                if apps.insert(id, compiled).is_some() {
                    return Err(invalid(format!("line {line}: app_id {id} is listed twice")));
                }
            }
            Ok(apps)
        };
        let apps = compile_apps(file.apps)?;
        let kms = match file.kms {
            Some(role) => Some((
                role.os_images.into_iter().collect(),
                compile_apps(role.apps)?,
            )),
            None => None,
        };
        if file.tcb.grace_days > 3650 {
            return Err(invalid(format!(
                "tcb.grace_days must be at most 3650, found {}",
                file.tcb.grace_days
            )));
        }
        let mut platform_rules = HashMap::new();
        for (id, rules) in file.platform {
            if !file.platforms.contains(&id) {
                let needle = format!("platform.{id}");
                let line = text.find(&needle).map(|o| line_of(text, o)).unwrap_or(1);
                return Err(invalid(format!(
                    "line {line}: [platform.{id}] is for a platform `platforms` does not allow ({}); it would never apply",
                    one_of(&file.platforms)
                )));
            }
            for claim in rules.claims.keys() {
                if claim.split('.').count() != 2 || claim.split('.').any(str::is_empty) {
                    return Err(invalid(format!(
                        "[platform.{id}] claims: {claim:?} must be <section>.<claim>, as in \"vtpm.secure_boot\""
                    )));
                }
            }
            if let Some((name, _)) = rules.registers.iter().find(|(_, v)| v.is_empty()) {
                return Err(invalid(format!(
                    "[platform.{id}] registers.{name} lists no value"
                )));
            }
            let mins = rules
                .min_tcb
                .as_ref()
                .map(|t| {
                    [
                        ("bootloader", t.bootloader),
                        ("tee", t.tee),
                        ("snp", t.snp),
                        ("microcode", t.microcode),
                        ("fmc", t.fmc),
                    ]
                    .into_iter()
                    .filter_map(|(n, v)| v.map(|v| (n, v)))
                    .collect()
                })
                .unwrap_or_default();
            platform_rules.insert(id, (mins, rules));
        }
        Ok(TomlPolicy {
            platforms: file.platforms,
            debug: file.debug,
            os_images: file.os_images.into_iter().collect(),
            any_advisory: file.tcb.allowed_advisories.iter().any(|a| a == "*"),
            allowed_advisories: file
                .tcb
                .allowed_advisories
                .into_iter()
                .filter(|a| a != "*")
                .collect(),
            denied_advisories: file.tcb.denied_advisories.into_iter().collect(),
            tcb_allow: file.tcb.allow,
            grace_days: file.tcb.grace_days,
            apps,
            kms,
            platform_rules,
            digest: sha256(&[b"toml", text.as_bytes()]),
        })
    }

    /// Decides synchronously (the TOML backend never waits on anything).
    pub fn decide(&self, input: &PolicyInput<'_>) -> Decision {
        let id = input.identity;
        let mut reasons = Vec::new();
        let mut warnings = Vec::new();

        if !self.platforms.contains(&id.platform) {
            reasons.push(Reason::new(
                "platforms",
                one_of(&self.platforms),
                id.platform.as_str(),
            ));
        }
        if id.debug && !self.debug {
            reasons.push(Reason::new("debug", "false", "true"));
        }
        self.check_tcb(input, &mut reasons, &mut warnings);
        self.check_advisories(id, &mut reasons);
        // The role decides which images and deployments are allowed.
        let empty = (HashSet::new(), HashMap::new());
        let (role, os_images, apps) = if input.request.wants_root_keys() {
            match &self.kms {
                Some((images, apps)) => ("kms.", images, apps),
                None => {
                    reasons.push(Reason::new(
                        "kms",
                        "a [kms] section (replicas allowed to hold the root keys)",
                        "none",
                    ));
                    ("kms.", &empty.0, &empty.1)
                }
            }
        } else {
            ("", &self.os_images, &self.apps)
        };
        let rule = |name: &str| format!("{role}{name}");
        match &id.app.os_image_hash {
            None => reasons.push(Reason::new(
                rule("os_images"),
                "a listed os_image_hash",
                "none (the boot measurements match no registered image)",
            )),
            Some(h) if !os_images.contains(h) => reasons.push(Reason::new(
                rule("os_images"),
                "a listed os_image_hash",
                h.to_hex(),
            )),
            Some(_) => {}
        }
        match apps.get(&id.app.app_id) {
            None => reasons.push(Reason::new(
                rule("apps"),
                "a listed app_id",
                id.app.app_id.to_hex(),
            )),
            Some(app) => {
                if !app.compose_hashes.contains(&id.app.compose_hash) {
                    reasons.push(Reason::new(
                        rule("apps.compose_hashes"),
                        format!("a compose hash listed for app {}", id.app.app_id),
                        id.app.compose_hash.to_hex(),
                    ));
                }
                if let Some(devices) = &app.device_ids {
                    let found = id.device_id.filter(|d| devices.contains(d));
                    if found.is_none() {
                        reasons.push(Reason::new(
                            rule("apps.device_ids"),
                            format!("a device listed for app {}", id.app.app_id),
                            id.device_id
                                .map(|d| d.to_hex())
                                .unwrap_or_else(|| "none".into()),
                        ));
                    }
                }
            }
        }
        if let Some((mins, rules)) = self.platform_rules.get(&id.platform) {
            let prefix = format!("platform.{}", id.platform);
            check_tdx(&prefix, rules, id, &mut reasons);
            check_snp(&prefix, mins, rules, id, &mut reasons);
            check_pins(&prefix, rules, id, &mut reasons);
        }
        Decision::from_reasons(reasons, warnings)
    }

    fn check_advisories(&self, id: &VerifiedIdentity, reasons: &mut Vec<Reason>) {
        for a in &id.tcb.advisory_ids {
            if self.denied_advisories.contains(a) {
                reasons.push(Reason::new(
                    "tcb.denied_advisories",
                    "no advisory on the deny list",
                    a.clone(),
                ));
            } else if !self.any_advisory && !self.allowed_advisories.contains(a) {
                reasons.push(Reason::new(
                    "tcb.allowed_advisories",
                    "only advisories the policy lists as accepted",
                    a.clone(),
                ));
            }
        }
    }

    fn check_tcb(
        &self,
        input: &PolicyInput<'_>,
        reasons: &mut Vec<Reason>,
        warnings: &mut Vec<String>,
    ) {
        let tcb = &input.identity.tcb;
        if self.tcb_allow.contains(&tcb.status) {
            return;
        }
        // Within the grace period an OutOfDate platform counts as if it had
        // the status it had before the TCB recovery.
        let under_grace = match tcb.status {
            TcbStatus::OutOfDate => Some(TcbStatus::UpToDate),
            TcbStatus::OutOfDateConfigurationNeeded => Some(TcbStatus::ConfigurationNeeded),
            _ => None,
        };
        let Some(as_if) = under_grace.filter(|s| self.grace_days > 0 && self.tcb_allow.contains(s))
        else {
            reasons.push(Reason::new(
                "tcb.allow",
                one_of(&self.tcb_allow),
                tcb.status.as_str(),
            ));
            return;
        };
        // The grace period counts from when the platform's level was
        // superseded, never from the newest recovery (which would renew it
        // for platforms that have been behind for years).
        let Some(since) = tcb.out_of_date_since else {
            reasons.push(Reason::new(
                "tcb.grace_days",
                "an out_of_date_since date to count the grace period from",
                format!("{} without an out_of_date_since date", tcb.status),
            ));
            return;
        };
        let deadline = since + time::Duration::days(i64::from(self.grace_days));
        let now = i64::try_from(input.request.time.as_secs())
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
        match now {
            Some(now) if now < deadline => warnings.push(format!(
                "tcb.grace_days: {} accepted as {} until {} ({} days after out_of_date_since {})",
                tcb.status,
                as_if,
                rfc3339(deadline),
                self.grace_days,
                rfc3339(since)
            )),
            _ => reasons.push(Reason::new(
                "tcb.grace_days",
                format!(
                    "{} before {} (out_of_date_since + {} days)",
                    tcb.status,
                    rfc3339(deadline),
                    self.grace_days
                ),
                format!("request at {}", input.request.time.as_secs()),
            )),
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn one_of<T: ToString>(items: &[T]) -> String {
    match items.len() {
        0 => "nothing (the list is empty)".into(),
        1..=4 => format!(
            "one of [{}]",
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        n => format!("one of {n} listed values"),
    }
}

fn boot_bytes<'a>(id: &'a VerifiedIdentity, name: &str) -> Option<&'a [u8]> {
    match id.boot.get(name) {
        Some(BootValue::Bytes(b)) => Some(b.as_slice()),
        _ => None,
    }
}

fn check_list<const N: usize>(
    rule: &str,
    register: &str,
    allowed: &Option<Vec<Hex<N>>>,
    id: &VerifiedIdentity,
    reasons: &mut Vec<Reason>,
) {
    let Some(allowed) = allowed else { return };
    let found = boot_bytes(id, register);
    if !found.is_some_and(|f| allowed.iter().any(|a| a.0.as_slice() == f)) {
        reasons.push(Reason::new(
            rule,
            format!(
                "boot.{register} {}",
                one_of(&allowed.iter().map(|a| hex::encode(a.0)).collect::<Vec<_>>())
            ),
            found.map(hex::encode).unwrap_or_else(|| "none".into()),
        ));
    }
}

fn check_tdx(
    prefix: &str,
    rules: &PlatformRules,
    id: &VerifiedIdentity,
    reasons: &mut Vec<Reason>,
) {
    if let Some(min) = &rules.min_tee_tcb_svn {
        let found = boot_bytes(id, reg::TEE_TCB_SVN);
        let ok =
            found.is_some_and(|f| f.len() == 16 && f.iter().zip(min.0.iter()).all(|(f, m)| f >= m));
        if !ok {
            reasons.push(Reason::new(
                format!("{prefix}.min_tee_tcb_svn"),
                format!(
                    "every byte of boot.tee_tcb_svn at least {}",
                    hex::encode(min.0)
                ),
                found.map(hex::encode).unwrap_or_else(|| "none".into()),
            ));
        }
    }
    check_list(
        &format!("{prefix}.mr_seams"),
        reg::MR_SEAM,
        &rules.mr_seams,
        id,
        reasons,
    );
}

/// The SEV-SNP TCB registers a TCB minimum judges.
const SNP_TCB_REGISTERS: [&str; 4] = [
    reg::REPORTED_TCB,
    reg::COMMITTED_TCB,
    reg::LAUNCH_TCB,
    reg::CURRENT_TCB,
];

fn check_snp(
    prefix: &str,
    mins: &[(&'static str, u8)],
    rules: &PlatformRules,
    id: &VerifiedIdentity,
    reasons: &mut Vec<Reason>,
) {
    if !mins.is_empty() {
        // A platform is only as current as the oldest of the TCBs it
        // reports: the lowest of each component across them is judged.
        let tcbs: Vec<&BTreeMap<String, u64>> = SNP_TCB_REGISTERS
            .iter()
            .filter_map(|r| match id.boot.get(r) {
                Some(BootValue::Components(c)) => Some(c),
                _ => None,
            })
            .collect();
        for (name, min) in mins {
            let found = if tcbs.is_empty() {
                None
            } else {
                tcbs.iter()
                    .map(|t| t.get(*name).copied())
                    .collect::<Option<Vec<u64>>>()
                    .and_then(|v| v.into_iter().min())
            };
            if found.is_none_or(|f| f < u64::from(*min)) {
                reasons.push(Reason::new(
                    format!("{prefix}.min_tcb.{name}"),
                    format!(
                        "the lowest {name} of boot.{{reported,committed,launch,current}}_tcb >= {min}"
                    ),
                    found
                        .map(|f| f.to_string())
                        .unwrap_or_else(|| "none".into()),
                ));
            }
        }
    }
    if let Some(vmpls) = &rules.vmpls {
        let found = match id.boot.get(reg::VMPL) {
            Some(BootValue::Number(n)) => Some(*n),
            _ => None,
        };
        if !found.is_some_and(|v| vmpls.iter().any(|a| u64::from(*a) == v)) {
            reasons.push(Reason::new(
                format!("{prefix}.vmpls"),
                format!("boot.vmpl {}", one_of(vmpls)),
                found
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "none".into()),
            ));
        }
    }
    check_list(
        &format!("{prefix}.family_ids"),
        reg::FAMILY_ID,
        &rules.family_ids,
        id,
        reasons,
    );
    check_list(
        &format!("{prefix}.image_ids"),
        reg::IMAGE_ID,
        &rules.image_ids,
        id,
        reasons,
    );
    if rules.require_revocation_check {
        let checked = id
            .platform_claims
            .0
            .get(section::SEV_SNP)
            .and_then(|c| c.get(claim::REVOCATION_CHECKED))
            .and_then(serde_json::Value::as_bool);
        if checked != Some(true) {
            reasons.push(Reason::new(
                format!("{prefix}.require_revocation_check"),
                "platform_claims.sev_snp.revocation_checked = true (an AMD CRL was checked)",
                checked
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".into()),
            ));
        }
    }
}

/// `registers` and `claims` pins: the identity's value must be one of the
/// listed ones.
fn check_pins(
    prefix: &str,
    rules: &PlatformRules,
    id: &VerifiedIdentity,
    reasons: &mut Vec<Reason>,
) {
    for (name, allowed) in &rules.registers {
        let found = boot_bytes(id, name).map(hex::encode);
        if !found
            .as_ref()
            .is_some_and(|f| allowed.iter().any(|a| a.0 == *f))
        {
            reasons.push(Reason::new(
                format!("{prefix}.registers.{name}"),
                format!(
                    "boot.{name} {}",
                    one_of(&allowed.iter().map(|a| a.0.clone()).collect::<Vec<_>>())
                ),
                found.unwrap_or_else(|| "none".into()),
            ));
        }
    }
    for (path, allowed) in &rules.claims {
        let (section, claim) = path.split_once('.').unwrap_or((path, ""));
        let found = id
            .platform_claims
            .0
            .get(section)
            .and_then(|s| s.get(claim))
            .filter(|v| !v.is_null());
        if !found.is_some_and(|f| allowed.0.contains(f)) {
            reasons.push(Reason::new(
                format!("{prefix}.claims.{path}"),
                format!("platform_claims.{path} {}", one_of(&allowed.0)),
                found
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "none".into()),
            ));
        }
    }
}

#[async_trait]
impl Policy for TomlPolicy {
    async fn evaluate(&self, input: &PolicyInput<'_>) -> Decision {
        self.decide(input)
    }
    fn digest(&self) -> [u8; 32] {
        self.digest
    }
    fn backend(&self) -> &'static str {
        "toml"
    }
}
