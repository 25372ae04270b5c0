//! A count per key with an upper bound, each unit held by a guard that gives it back when dropped: open sockets
//! per client address, logins in progress per app. An entry lives only while something is held under its key, so
//! the map is bounded by what is held.

use std::hash::Hash;
use std::sync::Arc;

use dashmap::DashMap;

pub struct Counted<K: Eq + Hash> {
    /// 0: no bound.
    limit: u32,
    counts: DashMap<K, u32>,
}

/// One unit held under a key, given back when dropped.
pub struct Held<K: Eq + Hash> {
    owner: Arc<Counted<K>>,
    key: K,
}

impl<K: Eq + Hash + Copy> Counted<K> {
    pub fn new(limit: u32) -> Arc<Counted<K>> {
        Arc::new(Counted {
            limit,
            counts: DashMap::new(),
        })
    }

    /// One more unit under `key`, or `None` if `limit` are held already.
    pub fn take(self: &Arc<Self>, key: K) -> Option<Held<K>> {
        let mut n = self.counts.entry(key).or_insert(0);
        if self.limit != 0 && *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Held {
            owner: self.clone(),
            key,
        })
    }

    /// Units held under `key`.
    pub fn count(&self, key: K) -> u32 {
        self.counts.get(&key).map_or(0, |n| *n)
    }

    /// Keys with something held.
    pub fn keys(&self) -> usize {
        self.counts.len()
    }
}

impl<K: Eq + Hash> Drop for Held<K> {
    fn drop(&mut self) {
        if let Some(mut n) = self.owner.counts.get_mut(&self.key) {
            *n -= 1;
            if *n > 0 {
                return;
            }
        }
        // Removed only if still at zero: another unit may have been taken meanwhile.
        self.owner.counts.remove_if(&self.key, |_, n| *n == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_bound_and_entries_go_with_what_is_held() {
        let c = Counted::new(2);
        let a = (c.take(1u32).unwrap(), c.take(1).unwrap());
        assert!(c.take(1).is_none());
        let b = c.take(2).unwrap();
        assert_eq!((c.count(1), c.count(2)), (2, 1));
        drop(a.0);
        let again = c.take(1).unwrap();
        drop((a.1, b, again));
        assert_eq!((c.count(1), c.count(2), c.keys()), (0, 0, 0));
        let unbounded = Counted::new(0);
        let held: Vec<_> = (0..100).map(|_| unbounded.take(7u32).unwrap()).collect();
        assert_eq!(unbounded.count(7), 100);
        drop(held);
        assert_eq!(unbounded.keys(), 0);
    }
}
