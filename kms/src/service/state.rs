//! What every request shares: root keys, plug-ins, policy, caches, audit,
//! metrics, and the permits that bound CPU-heavy work.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use attest_core::image_registry::ImageRegistry;
use attest_core::{AppId, InstanceId, Verifiers};
use policy::Policy;

use super::audit::AuditLog;
use super::challenge::Challenges;
use super::kdf::{self, AppKeyMaterial, KdfProfile};
use super::keys::RootKeys;
use super::metrics::Metrics;
use crate::config::Config;
use crate::platforms::Platforms;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything a request needs; shared by all requests and front ends.
pub struct KmsState {
    /// Root keys.
    pub keys: RootKeys,
    /// The attestation-result signing key (derived from the root secret).
    pub ear: super::ear::EarSigner,
    /// The platform plug-ins.
    pub verifiers: Verifiers,
    /// The policy.
    pub policy: Arc<dyn Policy>,
    /// Derivation profile.
    pub kdf: KdfProfile,
    /// Challenge issuer/checker.
    pub challenges: Challenges,
    /// Audit log (required for releases: none configured means none written
    /// and releases still allowed only in tests that build state by hand).
    pub audit: Option<AuditLog>,
    /// Metrics.
    pub metrics: Metrics,
    /// The TDX collateral cache, for metrics.
    pub collateral_cache: Option<Arc<attest_tdx::CachedCollateral>>,
    /// Reference values: boot measurements → OS image.
    pub images: ImageRegistry,
    /// Derived keys of attested apps.
    pub key_cache: KeyCache,
    /// Env public keys asked for by app id alone (`GetAppEnvEncryptPubKey`,
    /// unauthenticated): a cache of its own, so those requests can never
    /// evict attested apps' keys.
    pub env_key_cache: EnvKeyCache,
    /// One permit per core for verification. The semaphore is FIFO, so
    /// under load requests are verified in arrival order instead of
    /// whichever task the scheduler favours: the same throughput with a
    /// short latency tail. Never held across a network wait.
    pub verify_permits: tokio::sync::Semaphore,
    /// Bounds refusal log lines (unauthenticated callers cause them).
    pub refusal_log: LogLimiter,
    /// Bounds audit records of refusals before any evidence verified
    /// (unauthenticated callers cause them too); the ones over the rate are
    /// counted and summed up in the next record written.
    pub unverified_audit: LogLimiter,
}

/// A bounded cache of derived app keys (zeroized when dropped). Only
/// attested, policy-allowed apps enter it.
#[derive(Default)]
pub struct KeyCache(Mutex<HashMap<KeyCacheKey, Arc<AppKeyMaterial>>>);

/// An app and, for the disk key, an instance.
type KeyCacheKey = (AppId, Option<InstanceId>);

/// Most cached app key sets before the cache is cleared.
const MAX_CACHED_KEYS: usize = 10_000;

/// An app's env public key and the root k256 key's signatures over it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvPubKey {
    /// X25519 public key.
    pub public_key: [u8; 32],
    /// 65 bytes, without the timestamp.
    pub signature: Vec<u8>,
    /// Unix seconds.
    pub timestamp: u64,
    /// 65 bytes, with the timestamp.
    pub signature_v1: Vec<u8>,
}

/// Env public keys by app id, bounded.
#[derive(Default)]
pub struct EnvKeyCache(Mutex<HashMap<AppId, [u8; 32]>>);

impl KmsState {
    /// The keys of an app instance, derived once.
    pub fn app_keys(
        &self,
        app_id: &AppId,
        instance_id: Option<&InstanceId>,
    ) -> Result<Arc<AppKeyMaterial>, kdf::KdfError> {
        let key = (*app_id, instance_id.copied());
        if let Some(m) = lock(&self.key_cache.0).get(&key) {
            return Ok(m.clone());
        }
        let m = Arc::new(kdf::derive_app_keys(
            self.kdf,
            &self.keys,
            app_id,
            instance_id,
        )?);
        let mut cache = lock(&self.key_cache.0);
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(key, m.clone());
        Ok(m)
    }

    /// The X25519 public key of an app's env secret.
    pub fn env_public_key(&self, app_id: &AppId) -> Result<[u8; 32], kdf::KdfError> {
        if let Some(k) = lock(&self.env_key_cache.0).get(app_id) {
            return Ok(*k);
        }
        let secret = kdf::derive_env_key(self.kdf, &self.keys, app_id)?;
        let public = kdf::x25519_public(&secret);
        let mut cache = lock(&self.env_key_cache.0);
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(*app_id, public);
        Ok(public)
    }

    /// The env public key of an app, signed by the root k256 key as dstack
    /// signs it (`GetAppEnvEncryptPubKey` on both front ends):
    /// `signature` over `"dstack-env-encrypt-pubkey:" ‖ app_id ‖ key`,
    /// `signature_v1` over `... ‖ app_id ‖ u64be(timestamp) ‖ key`.
    pub fn env_encrypt_pub_key(&self, app_id: &AppId) -> Result<EnvPubKey, kdf::KdfError> {
        let public_key = self.env_public_key(app_id)?;
        let timestamp = attest_core::UnixTime::now().as_secs();
        let mut msg = b"dstack-env-encrypt-pubkey:".to_vec();
        msg.extend_from_slice(&app_id.0);
        let mut msg_v1 = msg.clone();
        msg.extend_from_slice(&public_key);
        msg_v1.extend_from_slice(&timestamp.to_be_bytes());
        msg_v1.extend_from_slice(&public_key);
        Ok(EnvPubKey {
            public_key,
            signature: kdf::sign_recoverable(self.keys.k256(), &msg)?,
            timestamp,
            signature_v1: kdf::sign_recoverable(self.keys.k256(), &msg_v1)?,
        })
    }

    /// How many attested apps' key sets are cached (for tests).
    pub fn cached_app_keys(&self) -> usize {
        lock(&self.key_cache.0).len()
    }

    /// Prometheus text for this KMS.
    pub fn render_metrics(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut extra = Vec::new();
        if let Some(c) = &self.collateral_cache {
            let s = c.stats();
            extra.push((
                "kms_collateral_cache_hits_total",
                "counter",
                s.hits.load(Relaxed),
            ));
            extra.push((
                "kms_collateral_cache_misses_total",
                "counter",
                s.misses.load(Relaxed),
            ));
            extra.push((
                "kms_collateral_fetch_errors_total",
                "counter",
                s.fetch_errors.load(Relaxed),
            ));
            extra.push((
                "kms_collateral_rejected_sets_total",
                "counter",
                s.rejected_sets.load(Relaxed),
            ));
        }
        extra.push((
            "kms_refusal_log_lines_suppressed_total",
            "counter",
            self.refusal_log.suppressed(),
        ));
        extra.push((
            "kms_audit_unverified_refusals_unrecorded_total",
            "counter",
            self.unverified_audit.suppressed(),
        ));
        self.metrics.render(&extra)
    }

    /// Builds the shared state from a configuration and already-built
    /// plug-ins; `base` resolves the configuration's relative paths.
    pub fn from_config(
        config: &Config,
        base: &Path,
        keys: RootKeys,
        platforms: Platforms,
    ) -> Result<Arc<KmsState>, String> {
        let data = base.join(&config.data_dir);
        let policy = policy::load(&config.policy, base).map_err(|e| e.to_string())?;
        let audit =
            AuditLog::open(&data.join(&config.audit_log)).map_err(|e| format!("audit log: {e}"))?;
        let images = match &config.image_registry {
            None => Default::default(),
            Some(p) => {
                let path = base.join(p);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let rules = attest_core::image_registry::RegistryRules::from_verifiers(
                    &platforms.verifiers,
                );
                ImageRegistry::parse(&text, &rules)
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        let metrics = Metrics::new(
            platforms
                .verifiers
                .platforms()
                .iter()
                .map(|p| p.to_string()),
        );
        let ear = super::ear::EarSigner::derive(keys.root_secret()).map_err(|e| e.to_string())?;
        Ok(Arc::new(KmsState {
            ear,
            challenges: Challenges::new(keys.root_secret(), config.challenge_ttl_secs),
            keys,
            verifiers: platforms.verifiers,
            policy,
            kdf: config.kdf,
            audit: Some(audit),
            metrics,
            collateral_cache: platforms.collateral_cache,
            images,
            key_cache: Default::default(),
            env_key_cache: Default::default(),
            verify_permits: tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            ),
            refusal_log: LogLimiter::per_second(20),
            unverified_audit: LogLimiter::per_minute(60),
        }))
    }
}

/// A token bucket for log lines and records: a burst of `burst`, refilled
/// at `rate` a second, counting the ones it drops.
pub struct LogLimiter {
    burst: f64,
    rate: f64,
    state: Mutex<(f64, Instant)>,
    suppressed: std::sync::atomic::AtomicU64,
    since_allowed: std::sync::atomic::AtomicU64,
}

impl LogLimiter {
    /// At most `n` lines a second (bursts of `n`).
    pub fn per_second(n: u32) -> Self {
        Self::new(f64::from(n), f64::from(n))
    }

    /// At most `n` lines a minute (bursts of `n`).
    pub fn per_minute(n: u32) -> Self {
        Self::new(f64::from(n), f64::from(n) / 60.0)
    }

    fn new(burst: f64, rate: f64) -> Self {
        LogLimiter {
            burst,
            rate,
            state: Mutex::new((burst, Instant::now())),
            suppressed: Default::default(),
            since_allowed: Default::default(),
        }
    }

    /// Whether a line may be written now.
    pub fn allow(&self) -> bool {
        let mut s = lock(&self.state);
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            self.suppressed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.since_allowed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            false
        }
    }

    /// Lines dropped so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Lines dropped since the last call (for a summary in the next line).
    pub fn take_dropped(&self) -> u64 {
        self.since_allowed
            .swap(0, std::sync::atomic::Ordering::Relaxed)
    }
}
