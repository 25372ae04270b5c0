//! Daily active users (PROTOCOL §8): a successful `login` marks (app, UTC day, user) once. The first login of a
//! user on a day writes one row; later logins that day find the mark in memory and write nothing.

use std::sync::Arc;

use dashmap::DashMap;

use crate::accounts::AccountStore;

/// The UTC calendar date of a unix time, as `YYYY-MM-DD`.
pub fn utc_date(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86400));
    format!("{y:04}-{m:02}-{d:02}")
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

/// Marks users active, once per user and day.
pub struct Dau {
    store: Arc<dyn AccountStore>,
    /// (app, user) → the last day written for them (days since the epoch).
    marked: DashMap<(u32, String), i64>,
}

impl Dau {
    pub fn new(store: Arc<dyn AccountStore>) -> Self {
        Dau {
            store,
            marked: DashMap::new(),
        }
    }

    /// Counts the user active on the day of `now` (unix s). The write runs in the background so a slow or
    /// unreachable database never delays a login; if it fails, the next login of the day tries again.
    pub fn mark(self: &Arc<Self>, sdkappid: u32, user_id: &str, now: i64) {
        let day = now.div_euclid(86400);
        if self
            .marked
            .get(&(sdkappid, user_id.to_owned()))
            .is_some_and(|d| *d == day)
        {
            return;
        }
        let this = self.clone();
        let user_id = user_id.to_owned();
        tokio::spawn(async move {
            match this
                .store
                .mark_active(sdkappid, &utc_date(now), &user_id)
                .await
            {
                Ok(()) => {
                    this.marked.insert((sdkappid, user_id), day);
                }
                Err(e) => {
                    tracing::warn!(error = %e, sdkappid, "could not record the daily active user; will retry")
                }
            }
        });
    }
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
    }
}
