//! Per-app, per-command rate limits of the REST API: a [`TokenBucket`] each, refilled at the limit per second and
//! holding at most one second's worth (so a burst of a full second's calls is allowed).

use std::sync::Mutex;

use dashmap::DashMap;
use tokio::time::Instant;

use super::bucket::TokenBucket;

#[derive(Default)]
pub struct RateLimiter {
    buckets: DashMap<(u32, &'static str), Mutex<TokenBucket>>,
}

impl RateLimiter {
    /// Takes one call from the bucket of (app, command) if it holds one; the limit is read at each call, so a
    /// reload applies at once.
    pub fn allow(
        &self,
        sdkappid: u32,
        command: &'static str,
        per_second: u32,
        now: std::time::Instant,
    ) -> bool {
        let now = Instant::from_std(now);
        let rate = per_second.max(1);
        let bucket = self
            .buckets
            .entry((sdkappid, command))
            .or_insert_with(|| Mutex::new(TokenBucket::with_burst(rate, 1, now)));
        let mut b = bucket.lock().expect("not poisoned");
        if b.per_second() != rate {
            b.set_rate(rate, now);
        }
        b.admit(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_second_of_calls_then_the_rate() {
        let r = RateLimiter::default();
        let t0 = std::time::Instant::now();
        assert_eq!((0..15).filter(|_| r.allow(1, "kick", 10, t0)).count(), 10);
        assert!(r.allow(2, "kick", 10, t0), "apps are separate");
        assert!(r.allow(1, "account_check", 10, t0), "commands are separate");
        assert!(!r.allow(1, "kick", 10, t0 + Duration::from_millis(50)));
        assert!(r.allow(1, "kick", 10, t0 + Duration::from_millis(110)));
    }
}
