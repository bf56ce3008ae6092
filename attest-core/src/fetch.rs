//! Guards for the outbound fetches plug-ins make (collateral, endorsement
//! keys, CRLs): evidence from an unauthenticated caller must not be able to
//! drive unbounded requests, unbounded state or long waits.
//!
//! - [`FetchBudget`]: how many fetches for things never seen before may
//!   start per minute. Over it, such requests are refused at once (the
//!   caller maps that to UNAVAILABLE) while known platforms keep verifying
//!   from their caches.
//! - [`SingleFlight`]: one fetch per key at a time, the others wait for it;
//!   the per-key lock lives only while someone holds or waits for it, so
//!   the map is bounded by the number of requests in flight.
//! - [`NegativeCache`]: "this does not exist" answers, remembered for a
//!   while (bounded), so the same unknown key is not asked for again.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::AttestError;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A token bucket: `per_minute` fetches, refilled continuously.
#[derive(Debug)]
pub struct FetchBudget {
    per_minute: u32,
    state: Mutex<(f64, Instant)>,
}

impl FetchBudget {
    /// A budget of `per_minute` fetches per minute (0 forbids fetching).
    pub fn per_minute(per_minute: u32) -> Self {
        FetchBudget {
            per_minute,
            state: Mutex::new((f64::from(per_minute), Instant::now())),
        }
    }

    /// Takes one fetch from the budget, or says why not.
    pub fn take(&self, what: &str) -> Result<(), AttestError> {
        let mut s = lock(&self.state);
        let now = Instant::now();
        let cap = f64::from(self.per_minute);
        let refill = now.duration_since(s.1).as_secs_f64() * cap / 60.0;
        s.0 = (s.0 + refill).min(cap);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            Err(crate::Unavailable::Throttled {
                detail: format!(
                    "the budget of {} fetches per minute for {what} not seen before is spent; try again shortly",
                    self.per_minute
                ),
            }
            .into())
        }
    }
}

/// One in-flight operation per key.
#[derive(Debug)]
pub struct SingleFlight<K: Eq + Hash + Clone> {
    slots: Mutex<HashMap<K, Slot>>,
}

/// A key's lock and how many callers hold or wait for it.
#[derive(Debug)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    users: usize,
}

impl<K: Eq + Hash + Clone> Default for SingleFlight<K> {
    fn default() -> Self {
        SingleFlight {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

/// A caller's claim on a key's slot, taken before it waits: dropping it
/// (the operation finished, or the waiting future was cancelled at any
/// point) releases the claim, and the last claim removes the key.
struct Ticket<'a, K: Eq + Hash + Clone> {
    owner: &'a SingleFlight<K>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for Ticket<'_, K> {
    fn drop(&mut self) {
        let mut slots = lock(&self.owner.slots);
        if let Some(slot) = slots.get_mut(&self.key) {
            slot.users = slot.users.saturating_sub(1);
            if slot.users == 0 {
                slots.remove(&self.key);
            }
        }
    }
}

/// Held while a keyed operation runs; dropping it lets the next waiter in
/// and forgets the key when nobody else holds or waits for it.
pub struct FlightGuard<'a, K: Eq + Hash + Clone> {
    // Declaration order is drop order: the lock is released before the
    // claim, so the last claim always finds the lock free.
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _ticket: Ticket<'a, K>,
}

impl<K: Eq + Hash + Clone> SingleFlight<K> {
    fn claim(&self, key: &K) -> (Arc<tokio::sync::Mutex<()>>, Ticket<'_, K>) {
        let mut slots = lock(&self.slots);
        let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
            lock: Arc::default(),
            users: 0,
        });
        slot.users += 1;
        (
            slot.lock.clone(),
            Ticket {
                owner: self,
                key: key.clone(),
            },
        )
    }

    /// Waits until no one else runs an operation for `key`.
    pub async fn enter(&self, key: &K) -> FlightGuard<'_, K> {
        let (lock, ticket) = self.claim(key);
        let guard = lock.lock_owned().await;
        FlightGuard {
            _guard: guard,
            _ticket: ticket,
        }
    }

    /// Enters at once, or `None` when an operation for `key` is running:
    /// for callers that must never wait (those holding a verification
    /// permit).
    pub fn try_enter(&self, key: &K) -> Option<FlightGuard<'_, K>> {
        let (lock, ticket) = self.claim(key);
        let guard = lock.try_lock_owned().ok()?;
        Some(FlightGuard {
            _guard: guard,
            _ticket: ticket,
        })
    }

    /// How many keys have an operation in flight or waiting (for tests).
    pub fn len(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Whether no operation is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keys known not to exist, each remembered for `ttl`.
#[derive(Debug)]
pub struct NegativeCache<K: Eq + Hash> {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<K, (Instant, String)>>,
}

impl<K: Eq + Hash> NegativeCache<K> {
    /// At most `max` keys, each for `ttl`.
    pub fn new(ttl: Duration, max: usize) -> Self {
        NegativeCache {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The remembered "not found" message for `key`, if still fresh.
    pub fn get(&self, key: &K) -> Option<String> {
        let mut map = lock(&self.entries);
        match map.get(key) {
            Some((at, msg)) if at.elapsed() < self.ttl => Some(msg.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers that `key` does not exist.
    pub fn insert(&self, key: K, message: String) {
        let mut map = lock(&self.entries);
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), message));
    }
}

/// Checks the transport of a service URL the KMS will call (PCS/PCCS, AMD
/// KDS, a policy webhook): `https://` always; `http://` only to a loopback
/// host, or when the operator set `insecure_http` (answers over plain HTTP
/// can be rewritten by anyone on the path).
pub fn check_service_url(url: &str, insecure_http: bool) -> Result<(), AttestError> {
    let bad = |expected: &str| {
        AttestError::from(crate::Malformed::BadValue {
            what: "service URL".into(),
            expected: expected.into(),
            found: format!("{url:?}"),
        })
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("an http(s) URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("a URL that names a host (and no user information)"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" => {
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback || insecure_http {
                Ok(())
            } else {
                Err(bad(
                    "https, or plain HTTP to a loopback host only (set insecure_http = true to allow any)",
                ))
            }
        }
        _ => Err(bad("the scheme http or https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_need_tls_off_loopback() {
        for ok in [
            "https://api.trustedservices.intel.com",
            "http://127.0.0.1:8081/x",
            "http://[::1]:80",
            "http://localhost",
            "HTTPS://kds",
        ] {
            check_service_url(ok, false).unwrap();
        }
        for bad in [
            "http://pccs.example.com",
            "http://10.0.0.1:8081",
            "http://127.0.0.1.evil.com",
            "ftp://x",
            "http://user@127.0.0.1",
            "https://user@kds.example",
            "127.0.0.1",
            "http://",
            "https://",
            "https:///path",
        ] {
            assert!(
                matches!(
                    check_service_url(bad, false).unwrap_err().malformed(),
                    Some(crate::Malformed::BadValue { what, .. }) if what == "service URL"
                ),
                "{bad}"
            );
        }
        check_service_url("http://pccs.example.com", true).unwrap();
    }

    #[test]
    fn budget_allows_its_size_then_refuses() {
        let b = FetchBudget::per_minute(3);
        for _ in 0..3 {
            b.take("x").unwrap();
        }
        let err = b.take("chips").unwrap_err();
        assert!(
            matches!(
                err,
                AttestError::Unavailable(crate::Unavailable::Throttled { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("3 fetches per minute for chips"));
        assert!(FetchBudget::per_minute(0).take("x").is_err());
    }

    /// The budget refills at `per_minute / 60` a second, up to its size.
    #[test]
    fn budget_refills_in_proportion_to_the_time_passed() {
        let b = FetchBudget::per_minute(60);
        for _ in 0..60 {
            b.take("x").unwrap();
        }
        assert!(b.take("x").is_err());
        // Three seconds pass: three fetches come back (one a second).
        lock(&b.state).1 -= Duration::from_secs(3);
        for i in 0..3 {
            b.take("x").unwrap_or_else(|e| panic!("fetch {i}: {e}"));
        }
        assert!(b.take("x").is_err());
        // A minute and more passes: the budget is full again, not fuller.
        lock(&b.state).1 -= Duration::from_secs(61);
        for _ in 0..60 {
            b.take("x").unwrap();
        }
        assert!(b.take("x").is_err());
    }

    #[tokio::test]
    async fn single_flight_forgets_idle_keys() {
        let s = SingleFlight::<u32>::default();
        {
            let _a = s.enter(&1).await;
            assert_eq!(s.len(), 1);
            let _b = s.enter(&2).await;
            assert_eq!(s.len(), 2);
            assert!(!s.is_empty());
        }
        assert!(s.is_empty());
        // A waiter keeps the key until it is done.
        let s = Arc::new(s);
        let g = s.enter(&7).await;
        let s2 = s.clone();
        let waiter = tokio::spawn(async move {
            let _g = s2.enter(&7).await;
        });
        tokio::task::yield_now().await;
        drop(g);
        waiter.await.unwrap();
        assert!(s.is_empty());
    }

    /// The holder finishes and the lock is handed to a queued waiter whose
    /// request is then cancelled before it runs: no key may stay behind
    /// (keys are request-derived, so leftovers would grow without bound).
    #[tokio::test]
    async fn a_waiter_cancelled_after_the_handoff_leaves_no_key_behind() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let s = SingleFlight::<u32>::default();
        let holder = s.enter(&7).await;
        let mut waiter = Box::pin(s.enter(&7));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(waiter.as_mut().poll(&mut cx), Poll::Pending));
        drop(holder);
        drop(waiter);
        assert!(s.is_empty(), "{} key(s) left", s.len());
        // ...and one cancelled before the handoff.
        let holder = s.enter(&8).await;
        let mut waiter = Box::pin(s.enter(&8));
        assert!(matches!(waiter.as_mut().poll(&mut cx), Poll::Pending));
        drop(waiter);
        assert_eq!(s.len(), 1);
        drop(holder);
        assert!(s.is_empty());
    }

    #[tokio::test]
    async fn try_enter_never_waits() {
        let s = SingleFlight::<u32>::default();
        let held = s.enter(&1).await;
        assert!(s.try_enter(&1).is_none());
        assert_eq!(s.len(), 1);
        let other = s.try_enter(&2).unwrap();
        drop(held);
        drop(other);
        assert!(s.is_empty());
        assert!(s.try_enter(&1).is_some());
        assert!(s.is_empty());
    }

    #[test]
    fn negative_cache_is_bounded_and_expires() {
        let c = NegativeCache::new(Duration::from_secs(60), 2);
        c.insert(1, "no".into());
        c.insert(2, "no".into());
        c.insert(3, "no".into());
        assert!(lock(&c.entries).len() <= 2);
        assert_eq!(c.get(&3).as_deref(), Some("no"));
        let c = NegativeCache::new(Duration::ZERO, 2);
        c.insert(1, "no".into());
        assert_eq!(c.get(&1), None);
    }

    /// A full cache first drops the expired keys; the fresh ones stay.
    #[test]
    fn a_full_negative_cache_drops_expired_keys_first() {
        let c = NegativeCache::new(Duration::from_secs(60), 2);
        c.insert(1, "gone".into());
        c.insert(2, "fresh".into());
        lock(&c.entries).get_mut(&1).unwrap().0 -= Duration::from_secs(61);
        c.insert(3, "new".into());
        assert_eq!(c.get(&2).as_deref(), Some("fresh"));
        assert_eq!(c.get(&3).as_deref(), Some("new"));
        assert_eq!(c.get(&1), None);
        // All fresh and full: the cache starts over rather than grow.
        c.insert(4, "newer".into());
        assert_eq!(lock(&c.entries).len(), 1);
        assert_eq!(c.get(&4).as_deref(), Some("newer"));
    }
}
