//! A token bucket: `per_second` tokens a second, at most twice that saved up (the burst). Frames per socket, and
//! new sockets per client address.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    per_second: u32,
    /// In thousandths of a token.
    tokens: u32,
    last: Instant,
}

impl TokenBucket {
    /// Full: a burst is allowed at once.
    pub fn new(per_second: u32) -> TokenBucket {
        TokenBucket {
            per_second,
            tokens: Self::capacity(per_second),
            last: Instant::now(),
        }
    }

    fn capacity(per_second: u32) -> u32 {
        per_second.saturating_mul(2000)
    }

    fn refill(&mut self, now: Instant) {
        let ms = now.saturating_duration_since(self.last).as_millis();
        if ms > 0 {
            let ms = u32::try_from(ms).unwrap_or(u32::MAX);
            self.tokens = self
                .tokens
                .saturating_add(ms.saturating_mul(self.per_second))
                .min(Self::capacity(self.per_second));
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
        self.tokens >= Self::capacity(self.per_second)
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
