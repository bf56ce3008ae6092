//! Reference values: which boot measurements belong to which OS image.
//!
//! The registry maps a platform's boot registers to an `os_image_hash`
//! (SHA-256 of the image's `sha256sum.txt`, as dstack defines it). It is
//! the only source of `app.os_image_hash` on the key path: a value the guest
//! declares about itself is never trusted.
//!
//! ```toml
//! [[image]]
//! os_image_hash = "<hex32>"
//!
//! [[image.tdx]]                 # one boot of this image on TDX
//! mrtd = "<hex48>"
//! rtmr0 = "<hex48>"
//! rtmr1 = "<hex48>"
//! rtmr2 = "<hex48>"
//!
//! [[image.sev-snp]]             # one launch on SEV-SNP
//! measurement = "<hex48>"
//! vcpus = 4                     # what it was computed for (informational)
//! vcpu_type = "EPYC-v4"
//! ```
//!
//! Keys of a boot table are register names (as in `VerifiedIdentity.boot`)
//! with hex values, plus the informational `vcpus`, `vcpu_type` and `note`.
//! A boot matches when every listed register equals the identity's. The same
//! registers listed under two images is a load error.
//!
//! Every entry must name the registers that identify an OS image on its
//! platform ([`RegistryRules`], declared by each plug-in through
//! [`crate::Attestation::image_registers`]: TDX's MRTD and RTMR0..2, SNP's
//! MEASUREMENT). An entry keyed only on values the host chooses
//! (`mr_config_id`, `host_data`, `family_id`, ...) or on MRTD alone (which
//! resolves any kernel and command line) is refused at load: it would give
//! an image hash to boots the operator never measured.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::{BootValue, OsImageHash, PlatformId, VerifiedIdentity};

/// Informational keys of a boot table (not registers).
const INFO_KEYS: [&str; 5] = ["vcpus", "vcpu_type", "launch", "vars_size", "note"];

/// One registered boot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootEntry {
    /// Register name → lowercase hex.
    pub registers: BTreeMap<String, String>,
    /// Informational fields.
    pub info: BTreeMap<String, toml::Value>,
}

/// One OS image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageEntry {
    /// The image.
    pub os_image_hash: OsImageHash,
    /// Boots by platform.
    pub boots: BTreeMap<String, Vec<BootEntry>>,
}

/// Which registers an entry of each platform must list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryRules {
    required: BTreeMap<String, Vec<&'static str>>,
}

impl RegistryRules {
    /// No platform takes entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// `platform`'s entries must list every one of `registers`.
    pub fn with(mut self, platform: &str, registers: &[&'static str]) -> Self {
        self.required
            .insert(platform.to_owned(), registers.to_vec());
        self
    }

    /// The rules the registered plug-ins declare.
    pub fn from_verifiers(v: &crate::Verifiers) -> Self {
        let mut rules = Self::new();
        for p in v.platforms() {
            if let Some(plugin) = v.get(&p) {
                let regs = plugin.image_registers();
                if !regs.is_empty() {
                    rules = rules.with(p.as_str(), regs);
                }
            }
        }
        rules
    }

    fn check(&self, platform: &str, entry: &BootEntry) -> Result<(), String> {
        let Some(required) = self.required.get(platform) else {
            return Err(format!(
                "no registered platform {platform:?} identifies OS images by boot registers"
            ));
        };
        let missing: Vec<&str> = required
            .iter()
            .filter(|r| !entry.registers.contains_key(**r))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "a {platform} boot must list {} (the registers that identify an OS image); it lacks {}",
                required.join(", "),
                missing.join(", ")
            ));
        }
        Ok(())
    }
}

/// The loaded registry.
#[derive(Clone, Debug, Default)]
pub struct ImageRegistry {
    images: Vec<ImageEntry>,
    /// (platform, registers) → image index.
    index: HashMap<BootKey, usize>,
    rules: RegistryRules,
}

/// A platform and its listed registers (name, bytes), sorted by name.
type BootKey = (String, Vec<(String, Vec<u8>)>);

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl ImageRegistry {
    /// Parses and validates a registry file against `rules`.
    pub fn parse(text: &str, rules: &RegistryRules) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            image: Vec<toml::Spanned<toml::Table>>,
        }
        let file: File = toml::from_str(text).map_err(|e| match e.span() {
            Some(s) => format!("line {}: {}", line_of(text, s.start), e.message()),
            None => e.message().to_owned(),
        })?;
        let mut reg = ImageRegistry {
            rules: rules.clone(),
            ..Default::default()
        };
        for spanned in file.image {
            let line = line_of(text, spanned.span().start);
            let table = spanned.into_inner();
            let at = |m: String| format!("image at line {line}: {m}");
            let hash = table
                .get("os_image_hash")
                .and_then(|v| v.as_str())
                .ok_or_else(|| at("missing os_image_hash".into()))?;
            let os_image_hash = OsImageHash::from_hex(hash).map_err(|e| at(e.message()))?;
            let mut boots = BTreeMap::new();
            for (platform, value) in &table {
                if platform == "os_image_hash" {
                    continue;
                }
                PlatformId::parse(platform).map_err(|e| at(e.message()))?;
                let list = value.as_array().ok_or_else(|| {
                    at(format!(
                        "{platform} must be an array of tables ([[image.{platform}]])"
                    ))
                })?;
                let mut entries = Vec::new();
                for b in list {
                    let t = b
                        .as_table()
                        .ok_or_else(|| at(format!("{platform} entries must be tables")))?;
                    let mut registers = BTreeMap::new();
                    let mut info = BTreeMap::new();
                    for (k, v) in t {
                        if INFO_KEYS.contains(&k.as_str()) {
                            info.insert(k.clone(), v.clone());
                            continue;
                        }
                        let hexv = v
                            .as_str()
                            .filter(|s| {
                                !s.is_empty()
                                    && s.len() % 2 == 0
                                    && s.bytes().all(|c| c.is_ascii_hexdigit())
                            })
                            .ok_or_else(|| at(format!("{platform}.{k} must be a hex string")))?;
                        registers.insert(k.clone(), hexv.to_ascii_lowercase());
                    }
                    if registers.is_empty() {
                        return Err(at(format!("a {platform} boot lists no registers")));
                    }
                    let entry = BootEntry { registers, info };
                    rules.check(platform, &entry).map_err(at)?;
                    entries.push(entry);
                }
                boots.insert(platform.clone(), entries);
            }
            let idx = reg.images.len();
            for (platform, entries) in &boots {
                for e in entries {
                    let key = (
                        platform.clone(),
                        e.registers
                            .iter()
                            .map(|(k, v)| (k.clone(), hex::decode(v).unwrap_or_default()))
                            .collect(),
                    );
                    match reg.index.insert(key, idx) {
                        None => {}
                        Some(other) if other == idx => {
                            return Err(at(format!(
                                "a {platform} boot is listed twice under this image"
                            )));
                        }
                        Some(other) => {
                            let owner = reg
                                .images
                                .get(other)
                                .map(|i| i.os_image_hash.to_hex())
                                .unwrap_or_default();
                            return Err(at(format!(
                                "a {platform} boot is also listed under image {owner} (a measurement must identify one image)"
                            )));
                        }
                    }
                }
            }
            reg.images.push(ImageEntry {
                os_image_hash,
                boots,
            });
        }
        Ok(reg)
    }

    /// The images.
    pub fn images(&self) -> &[ImageEntry] {
        &self.images
    }

    /// The image whose registered boot the identity's registers match, when
    /// exactly one does.
    pub fn resolve(&self, id: &VerifiedIdentity) -> Option<OsImageHash> {
        let mut found: Option<OsImageHash> = None;
        for img in &self.images {
            let Some(entries) = img.boots.get(id.platform.as_str()) else {
                continue;
            };
            let hit = entries.iter().any(|e| {
                e.registers
                    .iter()
                    .all(|(name, want)| match id.boot.get(name) {
                        Some(BootValue::Bytes(b)) => b.to_hex() == *want,
                        _ => false,
                    })
            });
            if hit {
                if found.is_some_and(|f| f != img.os_image_hash) {
                    return None;
                }
                found = Some(img.os_image_hash);
            }
        }
        found
    }

    /// Serializes back to the file format.
    pub fn to_toml(&self) -> String {
        let mut images = Vec::new();
        for img in &self.images {
            let mut t = toml::Table::new();
            t.insert(
                "os_image_hash".into(),
                toml::Value::String(img.os_image_hash.to_hex()),
            );
            for (p, entries) in &img.boots {
                let arr = entries
                    .iter()
                    .map(|e| {
                        let mut bt = toml::Table::new();
                        for (k, v) in &e.registers {
                            bt.insert(k.clone(), toml::Value::String(v.clone()));
                        }
                        for (k, v) in &e.info {
                            bt.insert(k.clone(), v.clone());
                        }
                        toml::Value::Table(bt)
                    })
                    .collect();
                t.insert(p.clone(), toml::Value::Array(arr));
            }
            images.push(toml::Value::Table(t));
        }
        let mut root = toml::Table::new();
        root.insert("image".into(), toml::Value::Array(images));
        toml::to_string_pretty(&root).unwrap_or_default()
    }

    /// Adds a boot to an image (created if new). Adding a boot the image
    /// already lists changes nothing; a boot another image has is refused.
    /// Returns whether the registry changed.
    pub fn add(
        &mut self,
        os_image_hash: OsImageHash,
        platform: &str,
        entry: BootEntry,
    ) -> Result<bool, String> {
        let text = {
            let mut copy = self.clone();
            match copy
                .images
                .iter_mut()
                .find(|i| i.os_image_hash == os_image_hash)
            {
                Some(img) => {
                    let list = img.boots.entry(platform.to_owned()).or_default();
                    if list.iter().any(|e| e.registers == entry.registers) {
                        return Ok(false);
                    }
                    list.push(entry)
                }
                None => copy.images.push(ImageEntry {
                    os_image_hash,
                    boots: BTreeMap::from([(platform.to_owned(), vec![entry])]),
                }),
            }
            copy.to_toml()
        };
        *self = Self::parse(&text, &self.rules)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = r#"
[[image]]
os_image_hash = "1111111111111111111111111111111111111111111111111111111111111111"

[[image.tdx]]
mrtd = "aa"
rtmr0 = "bb"

[[image.sev-snp]]
measurement = "cc"
vcpus = 4
vcpu_type = "EPYC-v4"
"#;

    fn rules() -> RegistryRules {
        RegistryRules::new()
            .with("tdx", &["mrtd", "rtmr0"])
            .with("sev-snp", &["measurement"])
    }

    #[test]
    fn parses_resolves_and_round_trips() {
        let r = ImageRegistry::parse(REG, &rules()).unwrap();
        assert_eq!(r.images().len(), 1);
        let back = ImageRegistry::parse(&r.to_toml(), &rules()).unwrap();
        assert_eq!(back.images(), r.images());
    }

    fn identity(
        platform: crate::PlatformId,
        registers: &[(&'static str, BootValue)],
    ) -> VerifiedIdentity {
        let mut boot = crate::BootMeasurements::new(vec![0; 4]);
        for (name, value) in registers {
            boot = boot.with(name, value.clone());
        }
        VerifiedIdentity {
            platform,
            app: crate::AppIdentity {
                app_id: crate::AppId([1; 20]),
                compose_hash: crate::ComposeHash([2; 32]),
                instance_id: None,
                key_provider: None,
                os_image_hash: None,
            },
            boot,
            tcb: crate::TcbInfo::new(crate::TcbStatus::UpToDate),
            debug: false,
            report_data: crate::ReportData([0; 64]),
            report_data_checked: true,
            device_id: None,
            platform_claims: Default::default(),
        }
    }

    fn bytes(b: &[u8]) -> BootValue {
        BootValue::Bytes(b.into())
    }

    /// An identity names an image when every register of one of the
    /// image's boots for its platform matches, byte for byte.
    #[test]
    fn resolves_only_a_full_match_on_the_identitys_platform() {
        use crate::PlatformId;
        let r = ImageRegistry::parse(REG, &rules()).unwrap();
        let image = r.images()[0].os_image_hash;
        let tdx = |mrtd: &[u8], rtmr0: BootValue| {
            identity(PlatformId::TDX, &[("mrtd", bytes(mrtd)), ("rtmr0", rtmr0)])
        };
        assert_eq!(r.resolve(&tdx(&[0xaa], bytes(&[0xbb]))), Some(image));
        assert_eq!(r.resolve(&tdx(&[0xaa], bytes(&[0xbc]))), None);
        assert_eq!(r.resolve(&tdx(&[0xab], bytes(&[0xbb]))), None);
        // The same value as a number is not the register's bytes.
        assert_eq!(r.resolve(&tdx(&[0xaa], BootValue::Number(0xbb))), None);
        // A register the identity lacks never matches.
        assert_eq!(
            r.resolve(&identity(PlatformId::TDX, &[("mrtd", bytes(&[0xaa]))])),
            None
        );
        let snp = identity(PlatformId::SEV_SNP, &[("measurement", bytes(&[0xcc]))]);
        assert_eq!(r.resolve(&snp), Some(image));
        // The TDX entry's registers on another platform do not count.
        let other = identity(
            PlatformId::SEV_SNP,
            &[("mrtd", bytes(&[0xaa])), ("rtmr0", bytes(&[0xbb]))],
        );
        assert_eq!(r.resolve(&other), None);
    }

    /// Two images whose boots both match one identity: it names neither.
    #[test]
    fn an_identity_two_images_match_resolves_to_none() {
        use crate::PlatformId;
        let two = format!(
            "{REG}\n[[image]]\nos_image_hash = \"{}\"\n[[image.tdx]]\nmrtd = \"aa\"\nrtmr0 = \"bb\"\nrtmr1 = \"ee\"\n",
            "22".repeat(32)
        );
        let r = ImageRegistry::parse(&two, &rules()).unwrap();
        let second = r.images()[1].os_image_hash;
        let regs = |rtmr1: u8| {
            identity(
                PlatformId::TDX,
                &[
                    ("mrtd", bytes(&[0xaa])),
                    ("rtmr0", bytes(&[0xbb])),
                    ("rtmr1", bytes(&[rtmr1])),
                ],
            )
        };
        assert_eq!(r.resolve(&regs(0xee)), None, "both images match");
        // Only the first matches when RTMR1 differs.
        assert_eq!(r.resolve(&regs(0xef)), Some(r.images()[0].os_image_hash));
        assert_ne!(r.images()[0].os_image_hash, second);
    }

    #[test]
    fn an_added_boot_resolves() {
        use crate::PlatformId;
        let mut r = ImageRegistry::parse(REG, &rules()).unwrap();
        let hash = OsImageHash([0x33; 32]);
        let entry = BootEntry {
            registers: [("measurement".to_owned(), "c0".to_owned())].into(),
            info: Default::default(),
        };
        let snp = identity(PlatformId::SEV_SNP, &[("measurement", bytes(&[0xc0]))]);
        assert_eq!(r.resolve(&snp), None);
        assert!(r.add(hash, "sev-snp", entry).unwrap());
        assert_eq!(r.resolve(&snp), Some(hash));
        assert_eq!(r.images().len(), 2);
    }

    #[test]
    fn a_boot_listed_twice_is_an_error_not_a_panic() {
        let twice = format!("{REG}\n[[image.sev-snp]]\nmeasurement = \"cc\"\n");
        let e = ImageRegistry::parse(&twice, &rules()).unwrap_err();
        assert!(e.contains("listed twice under this image"), "{e}");
    }

    #[test]
    fn adding_the_same_boot_twice_changes_nothing() {
        let mut r = ImageRegistry::parse(REG, &rules()).unwrap();
        let entry = BootEntry {
            registers: [("measurement".to_owned(), "cc".to_owned())].into(),
            info: Default::default(),
        };
        let hash = r.images()[0].os_image_hash;
        assert!(!r.add(hash, "sev-snp", entry.clone()).unwrap());
        assert!(!r.add(hash, "sev-snp", entry).unwrap());
        assert_eq!(r.images()[0].boots["sev-snp"].len(), 1);
    }

    /// A registry keeps the rules it was loaded with: what `kms image add`
    /// adds later is held to them too.
    #[test]
    fn added_boots_are_held_to_the_registrys_rules() {
        let mut r = ImageRegistry::parse(REG, &rules()).unwrap();
        let hash = r.images()[0].os_image_hash;
        let host_chosen = BootEntry {
            registers: [("host_data".to_owned(), "dd".to_owned())].into(),
            info: Default::default(),
        };
        let e = r.add(hash, "sev-snp", host_chosen).unwrap_err();
        assert!(e.contains("the registers that identify an OS image"), "{e}");
        let e = r
            .add(
                hash,
                "nitro",
                BootEntry {
                    registers: [("pcr0".to_owned(), "aa".to_owned())].into(),
                    info: Default::default(),
                },
            )
            .unwrap_err();
        assert!(e.contains("no registered platform \"nitro\""), "{e}");
        // The registry is unchanged by a refused addition.
        assert_eq!(r.images()[0].boots["sev-snp"].len(), 1);
    }

    #[test]
    fn entries_must_name_the_identifying_registers() {
        // Only host-chosen values, or MRTD alone: refused.
        for (platform, regs) in [
            ("tdx", "mr_config_id = \"aa\"\nmr_owner = \"bb\""),
            ("tdx", "mrtd = \"aa\""),
            ("sev-snp", "host_data = \"aa\""),
            ("sev-snp", "family_id = \"aa\"\nimage_id = \"bb\""),
        ] {
            let text = format!(
                "[[image]]\nos_image_hash = \"{}\"\n[[image.{platform}]]\n{regs}\n",
                "11".repeat(32)
            );
            let e = ImageRegistry::parse(&text, &rules()).unwrap_err();
            assert!(e.contains("the registers that identify an OS image"), "{e}");
        }
        // A platform no plug-in identifies images for.
        let text = format!(
            "[[image]]\nos_image_hash = \"{}\"\n[[image.nitro]]\npcr0 = \"aa\"\n",
            "11".repeat(32)
        );
        let e = ImageRegistry::parse(&text, &rules()).unwrap_err();
        assert!(e.contains("no registered platform \"nitro\""), "{e}");
    }

    #[test]
    fn load_errors() {
        let dup = format!(
            "{REG}\n[[image]]\nos_image_hash = \"{}\"\n[[image.sev-snp]]\nmeasurement = \"CC\"\n",
            "22".repeat(32)
        );
        let e = ImageRegistry::parse(&dup, &rules()).unwrap_err();
        assert!(e.contains("also listed under image 1111"), "{e}");
        assert!(
            ImageRegistry::parse("[[image]]\nos_image_hash = \"11\"\n", &rules())
                .unwrap_err()
                .contains("os_image_hash must be 32 bytes")
        );
        assert!(
            ImageRegistry::parse(&REG.replace("\"aa\"", "\"zz\""), &rules())
                .unwrap_err()
                .contains("tdx.mrtd must be a hex string")
        );
        assert!(
            ImageRegistry::parse("[[image]\n", &rules())
                .unwrap_err()
                .starts_with("line 1")
        );
        // Errors name the line they are on.
        let e = ImageRegistry::parse("# registry\n\n[[image]\n", &rules()).unwrap_err();
        assert!(e.starts_with("line 3: "), "{e}");
        let e =
            ImageRegistry::parse("\n[[image]]\nos_image_hash = \"11\"\n", &rules()).unwrap_err();
        assert!(e.starts_with("image at line 2: "), "{e}");
        assert!(
            ImageRegistry::parse(&REG.replace("[[image.tdx]]", "[[image.TDX]]"), &rules()).is_err()
        );
    }
}
