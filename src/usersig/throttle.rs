//! Throttling of repeated login failures (PROTOCOL §2): more than `limit` failures from one IP, or for one
//! (app, UserID), within a minute answer 70050 for the rest of that minute.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::error::{Code, Failure};

const WINDOW: Duration = Duration::from_secs(60);
/// Expired windows are swept when a map grows past this, at most once a second.
const SWEEP_ABOVE: usize = 4096;

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Failure counters per IP and per (SDKAppID, UserID), in fixed one-minute windows opened by the first failure.
pub struct Throttle {
    limit: u32,
    by_ip: DashMap<IpAddr, Window>,
    by_user: DashMap<(u32, String), Window>,
    origin: Instant,
    last_sweep_ms: AtomicU64,
}

impl Throttle {
    pub fn new(limit_per_minute: u32) -> Self {
        Throttle {
            limit: limit_per_minute,
            by_ip: DashMap::new(),
            by_user: DashMap::new(),
            origin: Instant::now(),
            last_sweep_ms: AtomicU64::new(0),
        }
    }

    /// 70050 (with the seconds to wait) if the IP or the user is throttled at `now`.
    pub fn check(
        &self,
        ip: IpAddr,
        user: Option<(u32, &str)>,
        now: Instant,
    ) -> Result<(), Failure> {
        let mut wait = self.remaining(&self.by_ip, &ip, now);
        if let Some((app, uid)) = user {
            // Look up without allocating a key on the (common) empty path.
            if !self.by_user.is_empty() {
                wait = wait.max(self.remaining(&self.by_user, &(app, uid.to_owned()), now));
            }
        }
        match wait {
            None => Ok(()),
            Some(d) => {
                let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                Err(Failure::with_message(
                    Code::FrequencyLimit,
                    format!("too many failed logins; retry after {secs} seconds"),
                ))
            }
        }
    }

    /// Counts one failed login against the IP and, when known, the user.
    pub fn record_failure(&self, ip: IpAddr, user: Option<(u32, &str)>, now: Instant) {
        bump(&self.by_ip, ip, now);
        if let Some((app, uid)) = user {
            bump(&self.by_user, (app, uid.to_owned()), now);
        }
        self.maybe_sweep(now);
    }

    fn remaining<K: Eq + Hash>(
        &self,
        map: &DashMap<K, Window>,
        key: &K,
        now: Instant,
    ) -> Option<Duration> {
        let w = *map.get(key)?;
        let end = w.start + WINDOW;
        (w.failures > self.limit && now < end).then(|| end - now)
    }

    fn maybe_sweep(&self, now: Instant) {
        if self.by_ip.len() + self.by_user.len() < SWEEP_ABOVE {
            return;
        }
        let now_ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms < last + 1000
            || self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.by_ip.retain(|_, w| now < w.start + WINDOW);
        self.by_user.retain(|_, w| now < w.start + WINDOW);
    }
}

fn bump<K: Eq + Hash>(map: &DashMap<K, Window>, key: K, now: Instant) {
    let mut w = map.entry(key).or_insert(Window {
        start: now,
        failures: 0,
    });
    if now >= w.start + WINDOW {
        *w = Window {
            start: now,
            failures: 0,
        };
    }
    w.failures = w.failures.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const OTHER_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn more_than_limit_failures_throttle_the_ip_for_the_rest_of_the_minute() {
        let t = Throttle::new(3);
        let t0 = Instant::now();
        for i in 0..3 {
            t.record_failure(IP, None, t0 + Duration::from_secs(i));
            assert!(
                t.check(IP, None, t0 + Duration::from_secs(i)).is_ok(),
                "{i} failures are allowed"
            );
        }
        t.record_failure(IP, None, t0 + Duration::from_secs(10));
        let err = t.check(IP, None, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(err.code, Code::FrequencyLimit);
        assert!(
            err.message.contains("retry after 50 seconds"),
            "{}",
            err.message
        );
        assert!(t
            .check(OTHER_IP, None, t0 + Duration::from_secs(10))
            .is_ok());
        assert!(
            t.check(IP, None, t0 + Duration::from_secs(60)).is_ok(),
            "the window ends after a minute"
        );
    }

    #[test]
    fn per_user_counts_across_ips() {
        let t = Throttle::new(2);
        let t0 = Instant::now();
        for i in 0..3u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, i));
            t.record_failure(ip, Some((1, "alice")), t0);
        }
        assert_eq!(
            t.check(OTHER_IP, Some((1, "alice")), t0).unwrap_err().code,
            Code::FrequencyLimit
        );
        assert!(t.check(OTHER_IP, Some((1, "bob")), t0).is_ok());
        assert!(
            t.check(OTHER_IP, Some((2, "alice")), t0).is_ok(),
            "apps are separate"
        );
    }

    #[test]
    fn sweep_drops_expired_windows() {
        let t = Throttle::new(1);
        let t0 = Instant::now();
        for i in 0..SWEEP_ABOVE as u32 {
            t.record_failure(IpAddr::V4(std::net::Ipv4Addr::from(i)), None, t0);
        }
        t.record_failure(IP, None, t0 + Duration::from_secs(61));
        assert_eq!(t.by_ip.len(), 1);
    }
}
