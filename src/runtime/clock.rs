//! The one source of wall-clock time. Everything that needs "now" (ticket expiry, login times, grace periods,
//! daily-active days, throttle windows) asks a [`Clock`], so tests can run the server on tokio's paused clock
//! and move time forward in microseconds instead of waiting for it.

use std::sync::Arc;

/// Wall-clock time, in unix milliseconds and seconds. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Clock(Source);

#[derive(Clone, Debug)]
enum Source {
    System,
    /// Follows tokio's clock from a fixed starting point: under `tokio::time::pause()`, time moves only when
    /// the test advances it (or the runtime, idle, jumps to its next timer).
    Tokio(Arc<(i64, tokio::time::Instant)>),
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that reads `start_unix_ms` now and then moves with tokio's clock (for tests that pause it).
    pub fn following_tokio(start_unix_ms: i64) -> Clock {
        Clock(Source::Tokio(Arc::new((
            start_unix_ms,
            tokio::time::Instant::now(),
        ))))
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => system_ms(),
            Source::Tokio(base) => base.0 + base.1.elapsed().as_millis() as i64,
        }
    }

    /// Unix seconds now.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// The tokio instant at which this clock reads `unix_ms` (now, if that is past).
    pub fn instant_at(&self, unix_ms: i64) -> tokio::time::Instant {
        let wait = unix_ms.saturating_sub(self.now_ms()).max(0) as u64;
        tokio::time::Instant::now() + std::time::Duration::from_millis(wait)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix seconds on the system clock, for the command line and tools that have no server [`Clock`].
pub fn unix_now() -> i64 {
    system_ms().div_euclid(1000)
}

/// The UTC calendar date of a unix time, as `YYYY-MM-DD`.
pub fn utc_date(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD` → days since 1970-01-01, if it is a real date.
pub fn days_from_date(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = date[0..4].parse().ok()?;
    let m: u32 = date[5..7].parse().ok()?;
    let d: u32 = date[8..10].parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Reject 2023-02-30 and the like: the day must map back to itself.
    (civil_from_days(days) == (y, m, d)).then_some(days)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01 (the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_798_761_599), "2026-12-31");
        assert_eq!(utc_date(1_798_761_600), "2027-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
        for days in [-1000, 0, 11_016, 19_675, 20_819, 60_000] {
            assert_eq!(days_from_date(&utc_date(days * 86400)), Some(days));
        }
        for bad in [
            "2023-02-30",
            "2023-13-01",
            "2023-1-01",
            "20230101",
            "2023-00-10",
            "x",
        ] {
            assert_eq!(days_from_date(bad), None, "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn following_tokio_moves_only_with_tokio() {
        let c = Clock::following_tokio(1_000_000);
        assert_eq!(c.now_ms(), 1_000_000);
        tokio::time::advance(std::time::Duration::from_millis(2500)).await;
        assert_eq!((c.now_ms(), c.now_secs()), (1_002_500, 1002));
        let at = c.instant_at(1_003_000);
        assert_eq!(
            at - tokio::time::Instant::now(),
            std::time::Duration::from_millis(500)
        );
    }
}
