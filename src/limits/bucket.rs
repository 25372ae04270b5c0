//! The one token bucket: `per_second` tokens a second, at most `burst_secs` seconds' worth saved up. Frames per
//! socket and new sockets per client address (a burst of two seconds), and the REST API's calls per app and
//! command (one second).

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    per_second: u32,
    burst_secs: u32,
    /// In thousandths of a token.
    tokens: u32,
    last: Instant,
}

impl TokenBucket {
    /// Full, with a burst of two seconds' worth: a burst is allowed at once.
    pub fn new(per_second: u32) -> TokenBucket {
        Self::with_burst(per_second, 2, Instant::now())
    }

    /// Full at `now`, holding at most `burst_secs` seconds' worth.
    pub fn with_burst(per_second: u32, burst_secs: u32, now: Instant) -> TokenBucket {
        let mut b = TokenBucket {
            per_second,
            burst_secs,
            tokens: 0,
            last: now,
        };
        b.tokens = b.capacity();
        b
    }

    /// The rate it refills at.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Refills at `per_second` from now on (a reload changed the limit); what is saved stays, within the new
    /// capacity.
    pub fn set_rate(&mut self, per_second: u32, now: Instant) {
        self.refill(now);
        self.per_second = per_second;
        self.tokens = self.tokens.min(self.capacity());
    }

    fn capacity(&self) -> u32 {
        self.per_second
            .saturating_mul(self.burst_secs)
            .saturating_mul(1000)
    }

    fn refill(&mut self, now: Instant) {
        let ms = now.saturating_duration_since(self.last).as_millis();
        if ms > 0 {
            let ms = u32::try_from(ms).unwrap_or(u32::MAX);
            self.tokens = self
                .tokens
                .saturating_add(ms.saturating_mul(self.per_second))
                .min(self.capacity());
            self.last += Duration::from_millis(u64::from(ms));
        }
    }

    /// Takes one token; `false` if there is none.
    pub fn admit(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens < 1000 {
            return false;
        }
        self.tokens -= 1000;
        true
    }

    /// Whether a token is there at `now`, without taking it.
    pub fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1000
    }

    /// Full again at `now`: forgetting it changes nothing.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_of_twice_the_rate_then_the_rate() {
        let mut b = TokenBucket::new(5);
        let now = Instant::now();
        assert!((0..10).all(|_| b.admit(now)));
        assert!(!b.admit(now));
        assert!(!b.is_full(now));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(b.admit(Instant::now()));
        assert!(!b.admit(Instant::now()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.is_full(Instant::now()));
    }
}
