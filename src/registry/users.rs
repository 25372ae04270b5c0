//! The record a node keeps of each user it has seen, in one map keyed by (app, user): the user's instances and
//! kick records (the in-memory registry), the cached login state (the accounts service) and the daily-active
//! mark. One record rather than a map for each: every online user is in all three, and each map would hold the
//! key again, its own slot and its own bookkeeping (docs/benchmarks.md, memory per idle session).
//!
//! A record is dropped once nothing in it is needed: no registry part, no login state younger than
//! [`LOGIN_TTL`], no mark of today. [`Users::sweep`] runs every [`SWEEP_EVERY`]; the memory registry's reaper
//! drops spent records as it passes them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::registry::memory::UserEntry;
use crate::runtime::clock::Clock;
use crate::store::accounts::LoginState;

/// A cached login state is believed this long: the bound on how stale this node's view of a disable or a
/// revocation made elsewhere can be if its invalidation is lost.
pub const LOGIN_TTL: Duration = Duration::from_secs(300);
/// Login states cached at most; past this, logins read the store until sweeps make room.
pub const LOGIN_CAPACITY: usize = 1_000_000;
/// How often records are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

type Key = (u32, Box<str>);

fn key(sdkappid: u32, user_id: &str) -> Key {
    (sdkappid, user_id.into())
}

/// One user's record. Small on purpose (each slot of the map has its size, online or not): the registry part is
/// boxed, as users seen only by the cache or the daily-active mark have none.
#[derive(Default)]
pub struct User {
    /// The in-memory registry's part; `None` on the Redis registry, and once the registry has nothing to keep.
    pub sessions: Option<Box<UserEntry>>,
    login: Option<CachedLogin>,
    active: Option<ActiveMark>,
}

#[derive(Clone, Copy)]
struct CachedLogin {
    revoked_at: i64,
    /// Unix seconds when it was cached.
    at: i64,
    disabled: bool,
}

/// The daily-active mark: of which UTC day (days since the epoch), and whether its row is written.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ActiveMark {
    day: i32,
    written: bool,
}

pub struct Users {
    map: DashMap<Key, User>,
    clock: Clock,
    /// Records holding a login state (bounded by [`LOGIN_CAPACITY`]).
    logins: AtomicUsize,
}

fn day_of(unix_secs: i64) -> i32 {
    unix_secs.div_euclid(86_400) as i32
}

impl Users {
    pub fn new(clock: Clock) -> Arc<Users> {
        Arc::new(Users {
            map: DashMap::new(),
            clock,
            logins: AtomicUsize::new(0),
        })
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Runs `f` on the user's record, made if there is none.
    pub fn with<R>(&self, sdkappid: u32, user_id: &str, f: impl FnOnce(&mut User) -> R) -> R {
        f(&mut self.map.entry(key(sdkappid, user_id)).or_default())
    }

    /// Runs `f` on the user's record if there is one.
    pub fn with_existing<R>(
        &self,
        sdkappid: u32,
        user_id: &str,
        f: impl FnOnce(&mut User) -> R,
    ) -> Option<R> {
        let mut user = self.map.get_mut(&key(sdkappid, user_id))?;
        Some(f(&mut user))
    }

    /// Reads the user's record if there is one.
    pub fn read<R>(&self, sdkappid: u32, user_id: &str, f: impl FnOnce(&User) -> R) -> Option<R> {
        let user = self.map.get(&key(sdkappid, user_id))?;
        Some(f(&user))
    }

    /// Visits every record with its app.
    pub fn for_each(&self, mut f: impl FnMut(u32, &User)) {
        for r in self.map.iter() {
            f(r.key().0, r.value());
        }
    }

    /// Visits every registry part (dropping those `keep` says are spent), then drops what is stale and every
    /// record left with nothing.
    pub fn retain_sessions(&self, mut keep: impl FnMut(&mut UserEntry) -> bool) {
        let now = self.clock.now_secs();
        self.map.retain(|_, u| {
            if u.sessions.as_deref_mut().is_some_and(|s| !keep(s)) {
                u.sessions = None;
            }
            self.tidy(u, now)
        });
    }

    /// Drops stale login states, marks of past days, and records left with nothing.
    pub fn sweep(&self) {
        let now = self.clock.now_secs();
        self.map.retain(|_, u| self.tidy(u, now));
    }

    /// Drops every cached login state: after this node may have missed the messages that announce changes to
    /// accounts (its subscription to the bus was cut, or moved in a failover).
    pub fn forget_logins(&self) {
        let now = self.clock.now_secs();
        self.map.retain(|_, u| {
            if u.login.take().is_some() {
                self.logins.fetch_sub(1, Ordering::Relaxed);
            }
            self.tidy(u, now)
        });
    }

    /// Sweeps every [`SWEEP_EVERY`] until `stop`.
    pub async fn sweep_until(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sweep(),
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Whether the record is still needed, after dropping what in it is stale.
    fn tidy(&self, u: &mut User, now: i64) -> bool {
        if u.login.is_some_and(|l| !fresh(l, now)) {
            u.login = None;
            self.logins.fetch_sub(1, Ordering::Relaxed);
        }
        if u.active.is_some_and(|m| m.day < day_of(now)) {
            u.active = None;
        }
        u.sessions.is_some() || u.login.is_some() || u.active.is_some()
    }

    /// Records held (users this node keeps anything of).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    // The login-state cache (the accounts service).

    /// The user's cached login state, if this node holds a fresh one.
    pub fn login_state(&self, sdkappid: u32, user_id: &str) -> Option<LoginState> {
        let now = self.clock.now_secs();
        self.read(sdkappid, user_id, |u| u.login)
            .flatten()
            .filter(|l| fresh(*l, now))
            .map(|l| LoginState {
                disabled: l.disabled,
                revoked_at: l.revoked_at,
            })
    }

    /// Caches the user's login state (unless the cache is full and the user has none cached).
    pub fn remember_login(&self, sdkappid: u32, user_id: &str, state: LoginState) {
        let cached = CachedLogin {
            revoked_at: state.revoked_at,
            at: self.clock.now_secs(),
            disabled: state.disabled,
        };
        let full = self.logins.load(Ordering::Relaxed) >= LOGIN_CAPACITY;
        let remember = |u: &mut User| {
            if u.login.is_none() {
                self.logins.fetch_add(1, Ordering::Relaxed);
            }
            u.login = Some(cached);
        };
        if full {
            // Only refresh what is cached already: no record is made for it.
            self.with_existing(sdkappid, user_id, |u| {
                if u.login.is_some() {
                    remember(u);
                }
            });
        } else {
            self.with(sdkappid, user_id, remember);
        }
    }

    /// Drops the user's cached login state (after a change here, or one announced by another node).
    pub fn forget_login(&self, sdkappid: u32, user_id: &str) {
        self.with_existing(sdkappid, user_id, |u| {
            if u.login.take().is_some() {
                self.logins.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    // The daily-active mark.

    /// Marks the user active on the UTC day of `now` (unix seconds) unless already marked that day; `queue`
    /// queues the row and says whether it could (if not, the user stays unmarked, to be queued at the next
    /// login). Runs under the record's lock: two logins of a user queue one row.
    pub fn mark_active(
        &self,
        sdkappid: u32,
        user_id: &str,
        now: i64,
        queue: impl FnOnce() -> bool,
    ) {
        let day = day_of(now);
        self.with(sdkappid, user_id, |u| {
            if u.active.is_some_and(|m| m.day >= day) {
                return;
            }
            if queue() {
                u.active = Some(ActiveMark {
                    day,
                    written: false,
                });
            }
        });
    }

    /// The row of the user's mark of `now`'s day was written (`ok`), or could not be (the mark is dropped, so
    /// that the user's next login queues it again).
    pub fn mark_written(&self, sdkappid: u32, user_id: &str, now: i64, ok: bool) {
        let day = day_of(now);
        self.with_existing(sdkappid, user_id, |u| match u.active {
            Some(m) if m.day == day && ok => u.active = Some(ActiveMark { day, written: true }),
            Some(m) if m.day == day && !m.written => u.active = None,
            _ => {}
        });
    }

    /// Whether this node holds the user's mark of today (queued or written).
    pub fn is_marked(&self, sdkappid: u32, user_id: &str) -> bool {
        let today = day_of(self.clock.now_secs());
        self.read(sdkappid, user_id, |u| {
            u.active.is_some_and(|m| m.day == today)
        })
        .unwrap_or(false)
    }

    /// Users marked on some day still held.
    pub fn marks(&self) -> usize {
        self.map.iter().filter(|r| r.active.is_some()).count()
    }
}

fn fresh(l: CachedLogin, now: i64) -> bool {
    now - l.at < LOGIN_TTL.as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(disabled: bool) -> LoginState {
        LoginState {
            disabled,
            revoked_at: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_login_state_is_believed_for_its_ttl_and_swept_after() {
        let users = Users::new(Clock::following_tokio(1_700_000_000_000));
        users.remember_login(1, "a", state(true));
        assert_eq!(users.login_state(1, "a"), Some(state(true)));
        assert_eq!(users.login_state(2, "a"), None, "another app's user");
        tokio::time::advance(LOGIN_TTL).await;
        assert_eq!(users.login_state(1, "a"), None, "stale");
        assert_eq!(users.len(), 1);
        users.sweep();
        assert_eq!(users.len(), 0, "nothing left in the record");
        assert_eq!(users.logins.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn forgetting_a_login_state_keeps_the_rest_of_the_record() {
        let users = Users::new(Clock::following_tokio(1_700_000_000_000));
        users.remember_login(1, "a", state(false));
        users.mark_active(1, "a", users.clock().now_secs(), || true);
        users.forget_login(1, "a");
        assert_eq!(users.login_state(1, "a"), None);
        users.sweep();
        assert!(users.is_marked(1, "a"), "the mark of today stays");
        assert_eq!(users.logins.load(Ordering::Relaxed), 0);
    }
}
