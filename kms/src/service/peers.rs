//! What each client address may hold, and whether a connection is in use.
//!
//! The global limits ([`super::limits`]) bound the service; these bound one
//! client's share of it, so a single unauthenticated host cannot take every
//! connection slot or the whole request-byte budget and lock everyone else
//! out:
//! - [`PeerTable`]: connections and buffered request bytes per IP address.
//!   An address's entry lives while it has a connection open.
//! - [`Activity`]: requests in flight on a connection and when the last one
//!   ended. A connection is idle when no request has been in flight for the
//!   idle timeout, whatever else its peer sends: HTTP/2 PING answers and
//!   SETTINGS frames do not keep a slot.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Entry {
    connections: usize,
    bytes: Arc<Semaphore>,
}

/// Connections and request bytes per client address.
pub struct PeerTable {
    max_connections: usize,
    max_bytes: usize,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl PeerTable {
    /// At most `max_connections` open connections and `max_bytes` request
    /// bytes in flight per address.
    pub fn new(max_connections: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(PeerTable {
            max_connections,
            max_bytes: max_bytes.min(Semaphore::MAX_PERMITS),
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// Admits one more connection from `ip`, or `None` when it holds its
    /// share already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let mut entries = lock(&self.entries);
        let e = entries.entry(ip).or_insert_with(|| Entry {
            connections: 0,
            bytes: Arc::new(Semaphore::new(self.max_bytes)),
        });
        if e.connections >= self.max_connections {
            return None;
        }
        e.connections += 1;
        Some(PeerSlot {
            table: self.clone(),
            ip,
            bytes: e.bytes.clone(),
        })
    }

    /// Addresses with a connection open (for tests and metrics).
    pub fn addresses(&self) -> usize {
        lock(&self.entries).len()
    }
}

/// One connection's place in its address's share; released on drop.
pub struct PeerSlot {
    table: Arc<PeerTable>,
    ip: IpAddr,
    bytes: Arc<Semaphore>,
}

impl PeerSlot {
    /// The address's request-byte budget.
    pub fn bytes(&self) -> Arc<Semaphore> {
        self.bytes.clone()
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut entries = lock(&self.table.entries);
        if let Some(e) = entries.get_mut(&self.ip) {
            e.connections = e.connections.saturating_sub(1);
            if e.connections == 0 {
                entries.remove(&self.ip);
            }
        }
    }
}

/// Requests in flight on one connection, and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }
}

impl Activity {
    /// Marks a request as started; the guard marks it ended.
    pub fn start(self: &Arc<Self>) -> RequestInFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        RequestInFlight(self.clone())
    }

    /// When the connection becomes idle given `timeout`: `None` while a
    /// request is in flight.
    pub fn idle_at(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(*lock(&self.last) + timeout)
    }
}

/// A request in flight; dropping it ends the request.
pub struct RequestInFlight(Arc<Activity>);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        *lock(&self.0.last) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the listener knows about a connection, handed to each of its
/// requests (tonic puts it in the request's extensions).
#[derive(Clone, Debug)]
pub struct PeerConn {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The connection's requests.
    pub activity: Arc<Activity>,
    /// The client address's request-byte budget, when limited.
    pub bytes: Option<Arc<Semaphore>>,
}

impl PeerConn {
    /// The connection info of a request, in the clear or over TLS.
    pub fn of<B>(req: &http::Request<B>) -> Option<&PeerConn> {
        let ext = req.extensions();
        ext.get::<PeerConn>().or_else(|| {
            ext.get::<tonic::transport::server::TlsConnectInfo<PeerConn>>()
                .map(|t| t.get_ref())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_share_and_is_forgotten_when_gone() {
        let t = PeerTable::new(2, 100);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = t.admit(a).unwrap();
        let a2 = t.admit(a).unwrap();
        assert!(t.admit(a).is_none());
        let b1 = t.admit(b).unwrap();
        assert_eq!(t.addresses(), 2);
        // Connections of one address share its byte budget.
        assert!(Arc::ptr_eq(&a1.bytes(), &a2.bytes()));
        assert!(!Arc::ptr_eq(&a1.bytes(), &b1.bytes()));
        drop(a1);
        assert!(t.admit(a).is_some());
        drop((a2, b1));
        assert_eq!(t.addresses(), 0);
    }

    #[test]
    fn a_connection_is_idle_only_without_requests() {
        let act = Arc::new(Activity::default());
        let t = Duration::from_secs(10);
        let opened = act.idle_at(t).unwrap();
        let r = act.start();
        let r2 = act.start();
        assert_eq!(act.idle_at(t), None);
        drop(r);
        assert_eq!(act.idle_at(t), None, "one request is still in flight");
        drop(r2);
        let ended = act.idle_at(t).unwrap();
        assert!(ended >= opened);
        assert!(ended <= Instant::now() + t);
    }
}
