//! Throttling of repeated login failures (PROTOCOL §2): more than `limit` failures from one client, or for one
//! (app, UserID), within a minute answer 70050 for the rest of that minute.
//!
//! Its memory is bounded whatever clients send: a client is its IPv4 address or its IPv6 /64 (one subscriber's
//! allocation), a user is a 64-bit keyed hash of (app, valid UserID), windows are dropped one minute after they
//! open (swept at most once a second, however few there are), and each map holds at most [`MAX_KEYS`] keys.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};

use dashmap::DashMap;

use crate::model::error::{Code, Failure};
use crate::runtime::clock::Clock;

const WINDOW_MS: i64 = 60_000;
/// Keys each map holds at most. Past that (after a sweep), a new key's failures are not counted until room
/// frees: a flood of distinct keys cannot grow memory, at the price of not throttling the keys that found no
/// room (each still pays a full ticket check per attempt).
pub const MAX_KEYS: usize = 65_536;

#[derive(Clone, Copy)]
struct Window {
    start_ms: i64,
    failures: u32,
}

/// Who a client is for throttling and per-client limits: an IPv4 address, or the /64 an IPv6 address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for Client {
    fn from(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(v4) => Client::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4.into()),
                None => Client::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Failure counters per client and per user, in fixed one-minute windows opened by the first failure.
pub struct Throttle {
    limit: std::sync::atomic::AtomicU32,
    clock: Clock,
    by_client: DashMap<Client, Window>,
    /// Keyed by a hash of (app, UserID) with this process's random key: no allocation per lookup, and collisions
    /// (which would let one user's failures throttle another) cannot be chosen by an attacker.
    by_user: DashMap<u64, Window>,
    hasher: std::collections::hash_map::RandomState,
    last_sweep_ms: AtomicI64,
}

impl Throttle {
    pub fn new(limit_per_minute: u32, clock: Clock) -> Self {
        Throttle {
            limit: limit_per_minute.into(),
            clock,
            by_client: DashMap::new(),
            by_user: DashMap::new(),
            hasher: Default::default(),
            last_sweep_ms: AtomicI64::new(i64::MIN),
        }
    }

    fn user_key(&self, app: u32, user_id: &str) -> u64 {
        self.hasher.hash_one((app, user_id))
    }

    /// 70050 (with the seconds to wait) if the client or the user is throttled now.
    pub fn check(&self, ip: IpAddr, user: Option<(u32, &str)>) -> Result<(), Failure> {
        match self.wait_secs(ip, user) {
            None => Ok(()),
            Some(secs) => Err(Failure::with_message(
                Code::FrequencyLimit,
                format!("too many failed logins; retry after {secs} seconds"),
            )),
        }
    }

    /// The seconds (rounded up) until neither the client nor the user is throttled; `None` if neither is now.
    pub fn wait_secs(&self, ip: IpAddr, user: Option<(u32, &str)>) -> Option<i64> {
        let now = self.clock.now_ms();
        let mut wait = self.remaining(&self.by_client, &Client::from(ip), now);
        if let Some((app, uid)) = user {
            if !self.by_user.is_empty() {
                wait = wait.max(self.remaining(&self.by_user, &self.user_key(app, uid), now));
            }
        }
        wait.map(|ms| (ms + 999) / 1000)
    }

    /// Counts one failed login against the client and, when known, the user.
    pub fn record_failure(&self, ip: IpAddr, user: Option<(u32, &str)>) {
        let now = self.clock.now_ms();
        self.maybe_sweep(now);
        bump(&self.by_client, Client::from(ip), now);
        if let Some((app, uid)) = user {
            bump(&self.by_user, self.user_key(app, uid), now);
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit (a reload); windows already open keep their counts.
    pub fn set_limit(&self, limit_per_minute: u32) {
        self.limit.store(limit_per_minute, Ordering::Relaxed);
    }

    /// Keys held now (clients, users).
    pub fn len(&self) -> (usize, usize) {
        (self.by_client.len(), self.by_user.len())
    }

    fn remaining<K: Eq + Hash>(&self, map: &DashMap<K, Window>, key: &K, now: i64) -> Option<i64> {
        let w = *map.get(key)?;
        let end = w.start_ms + WINDOW_MS;
        (w.failures > self.limit.load(Ordering::Relaxed) && now < end).then_some(end - now)
    }

    /// Drops windows that have ended, at most once a second.
    fn maybe_sweep(&self, now: i64) {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now < last.saturating_add(1000)
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.by_client.retain(|_, w| now < w.start_ms + WINDOW_MS);
        self.by_user.retain(|_, w| now < w.start_ms + WINDOW_MS);
    }
}

fn bump<K: Eq + Hash>(map: &DashMap<K, Window>, key: K, now: i64) {
    let fresh = Window {
        start_ms: now,
        failures: 0,
    };
    let mut w = match map.get_mut(&key) {
        Some(w) => w,
        None if map.len() >= MAX_KEYS => return,
        None => map.entry(key).or_insert(fresh),
    };
    if now >= w.start_ms + WINDOW_MS {
        *w = fresh;
    }
    w.failures = w.failures.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    async fn advance(secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn more_than_limit_failures_throttle_the_client_for_the_rest_of_the_minute() {
        let t = Throttle::new(3, Clock::following_tokio(1_000_000));
        for i in 0..3 {
            t.record_failure(IP, None);
            assert!(t.check(IP, None).is_ok(), "{i} failures are allowed");
            advance(1).await;
        }
        advance(7).await;
        t.record_failure(IP, None);
        let err = t.check(IP, None).unwrap_err();
        assert_eq!(err.code, Code::FrequencyLimit);
        assert!(
            err.message.contains("retry after 50 seconds"),
            "{}",
            err.message
        );
        assert!(t.check(OTHER_IP, None).is_ok());
        advance(50).await;
        assert!(t.check(IP, None).is_ok(), "the window ends after a minute");
    }

    #[tokio::test(start_paused = true)]
    async fn per_user_counts_across_clients_and_apps_are_separate() {
        let t = Throttle::new(2, Clock::following_tokio(0));
        for i in 0..3u8 {
            t.record_failure(IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)), Some((1, "alice")));
        }
        assert_eq!(
            t.check(OTHER_IP, Some((1, "alice"))).unwrap_err().code,
            Code::FrequencyLimit
        );
        assert!(t.check(OTHER_IP, Some((1, "bob"))).is_ok());
        assert!(t.check(OTHER_IP, Some((2, "alice"))).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_its_address() {
        let t = Throttle::new(1, Clock::following_tokio(0));
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        t.record_failure(a.into(), None);
        t.record_failure(b.into(), None);
        assert!(t.check(a.into(), None).is_err(), "one /64, one client");
        assert!(t.check(other.into(), None).is_ok());
        let mapped: Ipv6Addr = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped();
        t.record_failure(mapped.into(), None);
        t.record_failure(IP, None);
        assert!(t.check(IP, None).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn windows_expire_by_age_whatever_their_number() {
        let t = Throttle::new(1, Clock::following_tokio(0));
        for i in 0..10u8 {
            t.record_failure(IpAddr::V4(Ipv4Addr::new(10, 0, 2, i)), Some((1, "u")));
        }
        assert_eq!(t.len(), (10, 1));
        advance(61).await;
        t.record_failure(IP, None);
        assert_eq!(
            t.len(),
            (1, 0),
            "ten old windows swept, though far below the bound"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_maps_are_bounded() {
        let t = Throttle::new(1, Clock::following_tokio(0));
        for i in 0..(MAX_KEYS as u32 + 100) {
            t.record_failure(IpAddr::V4(Ipv4Addr::from(i)), Some((1, &i.to_string())));
        }
        assert_eq!(t.len(), (MAX_KEYS, MAX_KEYS));
        // Known keys still count.
        t.record_failure(IpAddr::V4(Ipv4Addr::from(5)), None);
        assert!(t.check(IpAddr::V4(Ipv4Addr::from(5)), None).is_err());
    }
}
