//! Open WebSockets per client (`limits.connections_per_ip`): one address cannot hold the server's sockets and
//! memory. A client is an IPv4 address or an IPv6 /64, as for the login throttle; an entry lives only while the
//! client has a socket open, so the map is bounded by the open sockets.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use super::bucket::TokenBucket;
use crate::limits::counted::{Counted, Held};
use crate::limits::throttle::Client;

pub struct PerIp(Arc<Counted<Client>>);

/// One open socket counted against its client; dropped when the socket ends.
pub type Slot = Held<Client>;

impl PerIp {
    /// At most `limit` sockets per client; 0 is no limit.
    pub fn new(limit: u32) -> PerIp {
        PerIp(Counted::new(limit))
    }

    /// A slot for one more socket of `ip`'s client, or `None` if it holds the limit already.
    pub fn acquire(&self, ip: IpAddr) -> Option<Slot> {
        self.0.take(Client::from(ip))
    }

    /// Sockets open by `ip`'s client.
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.0.count(Client::from(ip))
    }

    /// Clients with a socket open.
    pub fn clients(&self) -> usize {
        self.0.keys()
    }
}

/// A rate per client, bursts of twice that (a token bucket each), counted before the WebSocket handshake, the
/// cheapest point to refuse a flood of sockets: new WebSockets (`limits.new_connections_per_ip_per_second`,
/// [`RatePerIp::admit`] for each), and WebSockets closed for abuse (`limits.abusive_closes_per_ip_per_second`:
/// each such close is [`RatePerIp::admit`]ted; a client that finds nothing left is *tripped* for 2 s,
/// renewed by each such close, and while tripped each of its new sockets takes one too,
/// [`RatePerIp::admit_tripped`]). A client that floods now and then never trips.
pub struct RatePerIp {
    /// 0: no limit.
    per_second: u32,
    clients: DashMap<Client, Allowance>,
    calls: AtomicU32,
}

/// How long a client stays tripped after its allowance ran out (the time a burst takes to refill).
const TRIPPED: Duration = Duration::from_secs(2);

struct Allowance {
    bucket: TokenBucket,
    tripped_until: Option<Instant>,
}

impl Allowance {
    fn tripped(&self, now: Instant) -> bool {
        self.tripped_until.is_some_and(|t| now < t)
    }
}

impl RatePerIp {
    pub fn new(per_second: u32) -> RatePerIp {
        RatePerIp {
            per_second,
            clients: DashMap::new(),
            calls: AtomicU32::new(0),
        }
    }

    /// Takes one from `ip`'s client's allowance; `false` if none was left (which trips the client).
    pub fn admit(&self, ip: IpAddr) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let now = Instant::now();
        let ok = {
            let mut a = self
                .clients
                .entry(Client::from(ip))
                .or_insert_with(|| Allowance {
                    bucket: TokenBucket::new(self.per_second),
                    tripped_until: None,
                });
            let ok = a.bucket.admit(now);
            if !ok {
                a.tripped_until = Some(now + TRIPPED);
            }
            ok
        };
        // Now and then forget the clients whose bucket is full again: the map holds only recent clients.
        if self.calls.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.clients
                .retain(|_, a| a.tripped(now) || !a.bucket.is_full(now));
        }
        ok
    }

    /// For a tripped client, takes one from its allowance (`false` if none was left); any other passes.
    pub fn admit_tripped(&self, ip: IpAddr) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let now = Instant::now();
        match self.clients.get_mut(&Client::from(ip)) {
            Some(mut a) if a.tripped(now) => a.bucket.admit(now),
            _ => true,
        }
    }

    /// Whether `ip`'s client is tripped and has nothing left now (nothing is taken).
    pub fn exhausted(&self, ip: IpAddr) -> bool {
        if self.per_second == 0 {
            return false;
        }
        let now = Instant::now();
        self.clients
            .get_mut(&Client::from(ip))
            .is_some_and(|mut a| a.tripped(now) && !a.bucket.has_token(now))
    }

    pub fn clients(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_the_limit_and_entries_go_with_the_sockets() {
        let p = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let (s1, s2) = (p.acquire(a).unwrap(), p.acquire(a).unwrap());
        assert!(p.acquire(a).is_none());
        // Another address, and another /64, are other clients; one /64 is one client.
        assert!(p.acquire("192.0.2.2".parse().unwrap()).is_some());
        let v6a = p.acquire("2001:db8::1".parse().unwrap()).unwrap();
        let v6b = p.acquire("2001:db8::2".parse().unwrap()).unwrap();
        assert!(p.acquire("2001:db8::3".parse().unwrap()).is_none());
        drop(v6a);
        assert!(p.acquire("2001:db8::3".parse().unwrap()).is_some());
        drop(v6b);
        drop(s1);
        assert_eq!(p.open(a), 1);
        let s3 = p.acquire(a).unwrap();
        drop((s2, s3));
        assert_eq!(p.open(a), 0);
        assert_eq!(p.clients(), 0, "no entry is left behind");
        let unlimited = PerIp::new(0);
        let held: Vec<_> = (0..100).map(|_| unlimited.acquire(a).unwrap()).collect();
        assert_eq!(unlimited.open(a), 100);
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn only_tripped_clients_pay_for_new_sockets_and_only_for_a_while() {
        let r = RatePerIp::new(1);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert!((0..100).all(|_| r.admit_tripped(a)), "never charged: free");
        // Charged within its burst of two: not tripped, its new sockets are free.
        assert!(r.admit(a) && r.admit(a));
        assert!((0..100).all(|_| r.admit_tripped(a)));
        assert!(!r.exhausted(a));
        // One more finds nothing: tripped, and out.
        assert!(!r.admit(a));
        assert!(r.exhausted(a) && !r.admit_tripped(a));
        assert!(r.admit_tripped(b) && !r.exhausted(b));
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(!r.exhausted(a));
        assert!(
            r.admit_tripped(a) && !r.admit_tripped(a),
            "one a second while tripped"
        );
        tokio::time::advance(TRIPPED).await;
        assert!(
            (0..100).all(|_| r.admit_tripped(a)),
            "free again once the trip ends"
        );
        assert!(RatePerIp::new(0).admit_tripped(a) && !RatePerIp::new(0).exhausted(a));
    }

    #[tokio::test(start_paused = true)]
    async fn new_sockets_per_client_are_rate_limited_and_idle_clients_forgotten() {
        let r = RatePerIp::new(5);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..10).all(|_| r.admit(a)), "a burst of twice the rate");
        assert!(!r.admit(a));
        assert!(r.admit("192.0.2.2".parse().unwrap()), "another client");
        tokio::time::advance(std::time::Duration::from_millis(200)).await;
        assert!(r.admit(a));
        for i in 0..4096u32 {
            r.admit(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]));
        }
        assert!(r.clients() > 4000);
        // Idle long enough to be full again, they are forgotten at the next sweep.
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        for _ in 0..4096 {
            r.admit(a);
        }
        assert!(
            r.clients() <= 2,
            "full buckets are forgotten: {}",
            r.clients()
        );
        assert!(RatePerIp::new(0).admit(a));
    }
}
