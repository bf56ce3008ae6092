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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use attest_core::{AttestError, UnixTime};

use super::offline::read_bounded;
use super::{Collateral, CollateralKey, CollateralSource};

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
    /// Fetches that failed.
    pub fetch_errors: AtomicU64,
}

/// A cache in front of any [`CollateralSource`].
pub struct CachedCollateral {
    source: Arc<dyn CollateralSource>,
    dir: Option<PathBuf>,
    refresh_margin: u64,
    retry_interval: u64,
    entries: Mutex<HashMap<CollateralKey, Entry>>,
    fetch_locks: Mutex<HashMap<CollateralKey, Arc<tokio::sync::Mutex<()>>>>,
    stats: CacheStats,
}

impl CachedCollateral {
    /// Refresh starts this long before `nextUpdate` (Intel re-issues daily,
    /// sets are valid ~30 days).
    pub const DEFAULT_REFRESH_MARGIN: u64 = 7 * 86_400;
    /// While refreshing inside the margin fails, retry at most this often.
    pub const DEFAULT_RETRY_INTERVAL: u64 = 300;

    /// A memory-only cache.
    pub fn new(source: Arc<dyn CollateralSource>) -> Self {
        CachedCollateral {
            source,
            dir: None,
            refresh_margin: Self::DEFAULT_REFRESH_MARGIN,
            retry_interval: Self::DEFAULT_RETRY_INTERVAL,
            entries: Mutex::new(HashMap::new()),
            fetch_locks: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
        }
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

    fn load_from_disk(&self, key: &CollateralKey) -> Option<Arc<Collateral>> {
        let dir = self.dir.as_ref()?;
        let path = dir.join(format!("{}.json", key.file_stem()));
        match read_bounded(&path) {
            Ok(Some(bytes)) => match Collateral::from_json(&bytes) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable cached collateral");
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

    fn fetch_lock(&self, key: &CollateralKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.fetch_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(*key).or_default().clone()
    }
}

#[async_trait]
impl CollateralSource for CachedCollateral {
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
        let lock = self.fetch_lock(key);
        let _guard = lock.lock().await;

        // Someone else may have fetched while we waited.
        let mut held = self.lookup(key);
        if held.is_none() {
            if let Some(c) = self.load_from_disk(key) {
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

        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        match self.source.fetch(key, now).await {
            Ok(fetched) => {
                // Never replace a set with an older one.
                if let Some((c, _)) = &held {
                    if c.next_update > fetched.next_update && c.valid_at(now) {
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
                    _ => Err(e),
                }
            }
        }
    }
}
