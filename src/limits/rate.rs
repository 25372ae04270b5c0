//! Per-app, per-command rate limits of the REST API: a token bucket each, refilled at the limit per second and
//! holding at most one second's worth (so a burst of a full second's calls is allowed).

use std::sync::Mutex;
use std::time::Instant;

use dashmap::DashMap;

#[derive(Default)]
pub struct RateLimiter {
    buckets: DashMap<(u32, &'static str), Mutex<(f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one call from the bucket of (app, command) if it holds one.
    pub fn allow(
        &self,
        sdkappid: u32,
        command: &'static str,
        per_second: u32,
        now: Instant,
    ) -> bool {
        let rate = f64::from(per_second.max(1));
        let bucket = self
            .buckets
            .entry((sdkappid, command))
            .or_insert_with(|| Mutex::new((rate, now)));
        let mut b = bucket.lock().expect("not poisoned");
        let refill = now.saturating_duration_since(b.1).as_secs_f64() * rate;
        b.0 = (b.0 + refill).min(rate);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_second_of_calls_then_the_rate() {
        let r = RateLimiter::default();
        let t0 = Instant::now();
        assert_eq!((0..15).filter(|_| r.allow(1, "kick", 10, t0)).count(), 10);
        assert!(r.allow(2, "kick", 10, t0), "apps are separate");
        assert!(r.allow(1, "account_check", 10, t0), "commands are separate");
        assert!(!r.allow(1, "kick", 10, t0 + Duration::from_millis(50)));
        assert!(r.allow(1, "kick", 10, t0 + Duration::from_millis(110)));
    }
}
