//! The collateral cache: in memory and on disk, refreshed ahead of expiry.
//!
//! - A hit is a map lookup; verification never waits on the network while
//!   the cached set is fresh (more than `refresh_margin` before its earliest
//!   `nextUpdate`).
//! - Inside the margin (or on a miss) one task fetches; concurrent requests
//!   for the same key wait for that one fetch instead of starting their own.
//! - When the source fails, a cached set that is still valid at the
//!   verification time is served (and the failure counted); an expired one
//!   never is.
//! - Fetched sets are written atomically to `<dir>/<FMSPC>-<ca>.json`, so a
//!   restarted replica verifies without reaching Intel.
//! - A set enters the cache (memory or disk, and again when read back from
//!   disk) only after its signatures verify to the pinned root and its
//!   window contains the current time; a set that fails never replaces a
//!   good one (cache poisoning by a bad PCCS answer).
//! - Fetches for platforms the cache has never held are budgeted per
//!   minute, and "not found" answers are remembered for a while, so quotes
//!   cannot drive an unbounded stream of requests to the PCS.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use attest_core::fetch::{FetchBudget, NegativeCache, SingleFlight};
use attest_core::{AttestError, CollateralMissing, ErrorKind, Unavailable, UnixTime};

use super::offline::read_bounded;
use super::{Collateral, CollateralKey, CollateralSource};
use crate::pki::Cert;

struct Entry {
    collateral: Arc<Collateral>,
    /// When a refresh was last attempted (verification-time seconds).
    last_attempt: u64,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Served from memory without a fetch.
    pub hits: AtomicU64,
    /// Needed a fetch (miss or refresh).
    pub misses: AtomicU64,
    /// Fetches that failed, and fetched sets that did not verify.
    pub fetch_errors: AtomicU64,
    /// Fetched or stored sets refused because they did not verify.
    pub rejected_sets: AtomicU64,
}

/// A cache in front of any [`CollateralSource`].
pub struct CachedCollateral {
    source: Arc<dyn CollateralSource>,
    root: Cert,
    dir: Option<PathBuf>,
    refresh_margin: u64,
    retry_interval: u64,
    entries: Mutex<HashMap<CollateralKey, Entry>>,
    flights: SingleFlight<CollateralKey>,
    budget: FetchBudget,
    not_found: NegativeCache<CollateralKey>,
    stats: CacheStats,
}

impl CachedCollateral {
    /// Refresh starts this long before `nextUpdate` (Intel re-issues daily,
    /// sets are valid ~30 days).
    pub const DEFAULT_REFRESH_MARGIN: u64 = 7 * 86_400;
    /// While refreshing inside the margin fails, retry at most this often.
    pub const DEFAULT_RETRY_INTERVAL: u64 = 300;

    /// Fetches for platforms never held, per minute, by default.
    pub const DEFAULT_FETCH_BUDGET: u32 = 30;
    /// How long a "not found" answer is remembered.
    pub const NOT_FOUND_TTL: Duration = Duration::from_secs(600);
    /// Most platforms the cache holds (Intel has a few hundred FMSPCs).
    pub const MAX_ENTRIES: usize = 4096;

    /// A memory-only cache whose sets must verify to the pinned root
    /// `root_der` (Intel's: [`crate::INTEL_ROOT_CA_DER`]).
    pub fn new(source: Arc<dyn CollateralSource>, root_der: &[u8]) -> Result<Self, AttestError> {
        Ok(CachedCollateral {
            source,
            root: Cert::parse(root_der, "pinned Intel root")?,
            dir: None,
            refresh_margin: Self::DEFAULT_REFRESH_MARGIN,
            retry_interval: Self::DEFAULT_RETRY_INTERVAL,
            entries: Mutex::new(HashMap::new()),
            flights: SingleFlight::default(),
            budget: FetchBudget::per_minute(Self::DEFAULT_FETCH_BUDGET),
            not_found: NegativeCache::new(Self::NOT_FOUND_TTL, Self::MAX_ENTRIES),
            stats: CacheStats::default(),
        })
    }

    /// Sets how many fetches per minute may start for platforms the cache
    /// has never held (refreshes of held sets are not counted).
    pub fn with_fetch_budget(mut self, per_minute: u32) -> Self {
        self.budget = FetchBudget::per_minute(per_minute);
        self
    }

    /// Also persist to (and load from) `dir`, created if missing.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Sets how long before expiry a refresh starts, and how often a failing
    /// refresh is retried (seconds).
    pub fn with_timing(mut self, refresh_margin: u64, retry_interval: u64) -> Self {
        self.refresh_margin = refresh_margin;
        self.retry_interval = retry_interval;
        self
    }

    /// Hit, miss and error counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    fn fresh(&self, c: &Collateral, now: u64) -> bool {
        now.saturating_add(self.refresh_margin) < c.next_update
    }

    fn lookup(&self, key: &CollateralKey) -> Option<(Arc<Collateral>, u64)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .map(|e| (e.collateral.clone(), e.last_attempt))
    }

    fn store(&self, key: CollateralKey, collateral: Arc<Collateral>, attempt: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::MAX_ENTRIES && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                collateral,
                last_attempt: attempt,
            },
        );
    }

    fn mark_attempt(&self, key: &CollateralKey, attempt: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get_mut(key) {
            e.last_attempt = attempt;
        }
    }

    fn load_from_disk(&self, key: &CollateralKey, now: UnixTime) -> Option<Arc<Collateral>> {
        let dir = self.dir.as_ref()?;
        let path = dir.join(format!("{}.json", key.file_stem()));
        match read_bounded(&path) {
            Ok(Some(bytes)) => match Collateral::from_json(&bytes).and_then(|c| {
                c.verify_with(&self.root, now)?;
                c.check_for(key)?;
                Ok(c)
            }) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    if e.kind() != ErrorKind::CollateralExpired {
                        self.stats.rejected_sets.fetch_add(1, Ordering::Relaxed);
                    }
                    // Removed, so the warning (and the check) is not
                    // repeated on every request while the source is down.
                    tracing::warn!(path = %path.display(), error = %e, "removing cached collateral that does not verify now");
                    let _ = std::fs::remove_file(&path);
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read cached collateral");
                None
            }
        }
    }

    fn persist(&self, key: &CollateralKey, c: &Collateral) {
        let Some(dir) = &self.dir else { return };
        let result = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let json = serde_json::to_vec(&c.data).map_err(std::io::Error::other)?;
            let path = dir.join(format!("{}.json", key.file_stem()));
            let tmp = dir.join(format!(".{}.json.tmp", key.file_stem()));
            std::fs::write(&tmp, json)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot persist collateral");
        }
    }

    /// Fetches from the source and checks the answer before it is kept.
    async fn fetch_verified(
        &self,
        key: &CollateralKey,
        now: UnixTime,
    ) -> Result<Arc<Collateral>, AttestError> {
        let fetched = self.source.fetch(key, now).await?;
        if let Err(e) = fetched
            .verify_with(&self.root, now)
            .and_then(|()| fetched.check_for(key))
        {
            self.stats.rejected_sets.fetch_add(1, Ordering::Relaxed);
            return Err(Unavailable::Source {
                source: "the collateral source".into(),
                detail: format!("answered for {key:?} with a set that does not verify: {e}"),
            }
            .into());
        }
        Ok(fetched)
    }

    /// How many platforms have a fetch in flight (bounded by requests).
    pub fn fetches_in_flight(&self) -> usize {
        self.flights.len()
    }
}

#[async_trait]
impl CollateralSource for CachedCollateral {
    fn cached(&self, key: &CollateralKey, now: UnixTime) -> Option<Arc<Collateral>> {
        let (c, _) = self.lookup(key)?;
        if c.valid_at(now) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            Some(c)
        } else {
            None
        }
    }

    async fn fetch(
        &self,
        key: &CollateralKey,
        now: UnixTime,
    ) -> Result<Arc<Collateral>, AttestError> {
        let t = now.as_secs();
        if let Some((c, _)) = self.lookup(key).filter(|(c, _)| self.fresh(c, t)) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(c);
        }
        if let Some(m) = self.not_found.get(key) {
            return Err(CollateralMissing::NotFound { detail: m }.into());
        }
        let _flight = self.flights.enter(key).await;

        // Someone else may have fetched while we waited.
        let mut held = self.lookup(key);
        if held.is_none() {
            if let Some(c) = self.load_from_disk(key, now) {
                self.store(*key, c.clone(), 0);
                held = Some((c, 0));
            }
        }
        if let Some((c, last_attempt)) = &held {
            if self.fresh(c, t) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(c.clone());
            }
            // Inside the refresh margin, a recent failed attempt: keep
            // serving the valid set instead of hammering the source.
            if c.valid_at(now)
                && *last_attempt != 0
                && t < last_attempt.saturating_add(self.retry_interval)
            {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(c.clone());
            }
        }

        if held.is_none() {
            self.budget.take("TDX platforms (FMSPCs)")?;
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        match self.fetch_verified(key, now).await {
            Ok(fetched) => {
                // Never replace a valid set with an older one, nor with one
                // of an earlier TCB evaluation (a rollback to levels Intel
                // has since re-rated).
                if let Some((c, _)) = &held {
                    if c.valid_at(now)
                        && (c.next_update > fetched.next_update
                            || c.tcb_eval_data_number > fetched.tcb_eval_data_number)
                    {
                        self.mark_attempt(key, t);
                        return Ok(c.clone());
                    }
                }
                self.persist(key, &fetched);
                self.store(*key, fetched.clone(), t);
                Ok(fetched)
            }
            Err(e) => {
                self.stats.fetch_errors.fetch_add(1, Ordering::Relaxed);
                match held {
                    Some((c, _)) if c.valid_at(now) => {
                        tracing::warn!(key = ?key, error = %e, "collateral refresh failed; serving the cached set, valid until {}", c.next_update);
                        self.mark_attempt(key, t);
                        Ok(c)
                    }
                    _ => {
                        if e.kind() == ErrorKind::CollateralMissing {
                            self.not_found.insert(*key, e.message());
                        }
                        Err(e)
                    }
                }
            }
        }
    }
}
