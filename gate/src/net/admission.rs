//! How many client connections the server holds, in total and from each
//! source address. A connection is admitted only under both limits, on
//! every transport, and gives its place back when its [`Ticket`] drops.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `[net] max_connections` are open.
    #[error("the server holds its maximum of {0} connections")]
    Full(usize),
    /// `[net] max_connections_per_address` are open from this address.
    #[error("{0} connections are open from this address, the most one may hold")]
    AddressFull(usize),
}

/// The connection counts; cheap to clone, shared by every listener.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    max_total: usize,
    max_per_address: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
    /// Refusals since the last log line, and when that was.
    refused: u64,
    logged: Option<Instant>,
}

/// A connection's place; dropping it frees the place.
pub struct Ticket {
    inner: Arc<Inner>,
    ip: IpAddr,
}

/// Refusals are logged at once, then at most this often (with a count), so
/// a flood of connections cannot flood the log.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Admission {
    /// Limits of `max_total` connections, `max_per_address` from one IP.
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_total,
                max_per_address,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// Admits a connection from `peer` over `transport`, or says why not
    /// (and logs it).
    pub fn admit(&self, peer: SocketAddr, transport: &'static str) -> Result<Ticket, Refused> {
        let ip = peer.ip().to_canonical();
        let mut c = self.inner.lock();
        let from_address = c.by_address.get(&ip).copied().unwrap_or(0);
        let refused = if c.total >= self.inner.max_total {
            Refused::Full(self.inner.max_total)
        } else if from_address >= self.inner.max_per_address {
            Refused::AddressFull(self.inner.max_per_address)
        } else {
            c.total += 1;
            c.by_address.insert(ip, from_address + 1);
            return Ok(Ticket {
                inner: self.inner.clone(),
                ip,
            });
        };
        c.refused += 1;
        if c.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            let setting = match refused {
                Refused::Full(_) => "max_connections",
                Refused::AddressFull(_) => "max_connections_per_address",
            };
            tracing::warn!(
                %peer,
                transport,
                refused_since_last_line = c.refused,
                "connection refused: {refused} (see [net] {setting})"
            );
            c.refused = 0;
            c.logged = Some(Instant::now());
        }
        Err(refused)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.lock().total
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        // Counts stay consistent at every step, so a poisoned lock's data
        // is still good.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.inner.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.by_address.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn limits_hold_per_address_and_in_total_and_places_come_back() {
        let a = Admission::new(3, 2);
        let t1 = a.admit(peer("10.0.0.1:1"), "tcp").expect("first");
        let t2 = a.admit(peer("10.0.0.1:2"), "tcp").expect("second");
        assert_eq!(
            a.admit(peer("10.0.0.1:3"), "tcp").err(),
            Some(Refused::AddressFull(2))
        );
        // The same host over IPv4-mapped IPv6 is the same address.
        assert_eq!(
            a.admit(peer("[::ffff:10.0.0.1]:4"), "kcp").err(),
            Some(Refused::AddressFull(2))
        );
        let t3 = a.admit(peer("10.0.0.2:1"), "tcp").expect("another host");
        assert_eq!(
            a.admit(peer("10.0.0.3:1"), "tcp").err(),
            Some(Refused::Full(3))
        );
        drop(t1);
        assert_eq!(a.open(), 2);
        let t4 = a
            .admit(peer("10.0.0.1:5"), "websocket")
            .expect("a place came back");
        drop((t2, t3, t4));
        assert_eq!(a.open(), 0);
        assert!(a.inner.lock().by_address.is_empty());
    }
}
