//! Where the registry's keys live. On one Redis every key is under the namespace (`NS:u:APP:USER`, `NS:due`,
//! `NS:nodes`), as it always was. On a Redis Cluster a script may only touch keys of one hash slot, so users are
//! spread over [`SHARDS`] groups, each a hash-tagged prefix `NS:{T}` whose keys share one slot: a user's key
//! `NS:{T}:u:APP:USER` and its group's reaping index `NS:{T}:due`. The keys of the whole cluster (node liveness,
//! node numbers, sweep locks) are in the first group's slot. The scripts are the same in both modes: they are
//! given the prefix of the group they work in.

use crate::registry::RegistryError;

/// Groups of users on a cluster. Each is one slot, so a cluster can usefully have up to this many masters; each
/// node's reaper visits every group each tick (a cheap read of an index that is usually empty).
pub const SHARDS: usize = 256;

/// The slots of a Redis Cluster.
const SLOTS: u16 = 16384;

#[derive(Debug, Clone)]
pub struct Layout {
    ns: String,
    /// The group prefixes: one (the namespace) on one Redis, [`SHARDS`] on a cluster.
    prefixes: Vec<String>,
}

impl Layout {
    /// One Redis: every key under `ns`.
    pub fn single(ns: &str) -> Layout {
        Layout {
            ns: ns.to_owned(),
            prefixes: vec![ns.to_owned()],
        }
    }

    /// A Redis Cluster: users spread over [`SHARDS`] hash-tagged groups, whose tags are chosen so the groups'
    /// slots are evenly spaced (a cluster's masters own contiguous ranges of slots, so each gets its share).
    pub fn cluster(ns: &str) -> Result<Layout, RegistryError> {
        if ns.contains(['{', '}']) {
            return Err(RegistryError(
                "registry.namespace must not contain { or } on a Redis Cluster (they make hash tags)".into(),
            ));
        }
        let mut prefixes = Vec::with_capacity(SHARDS);
        let mut n = 0u32;
        for group in 0..SHARDS {
            let lo = (group * SLOTS as usize / SHARDS) as u16;
            let hi = ((group + 1) * SLOTS as usize / SHARDS) as u16;
            // The first tag (a number) whose slot is in the group's range: a few dozen tries each.
            let tag = loop {
                let t = n.to_string();
                n += 1;
                if (lo..hi).contains(&slot(t.as_bytes())) {
                    break t;
                }
            };
            n = 0;
            prefixes.push(format!("{ns}:{{{tag}}}"));
        }
        Ok(Layout {
            ns: ns.to_owned(),
            prefixes,
        })
    }

    pub fn is_cluster(&self) -> bool {
        self.prefixes.len() > 1
    }

    /// The prefix of the group holding a user's keys.
    pub fn prefix(&self, sdkappid: u32, user_id: &str) -> &str {
        if self.prefixes.len() == 1 {
            return &self.prefixes[0];
        }
        let h = fnv1a(
            user_id.as_bytes(),
            fnv1a(&sdkappid.to_be_bytes(), FNV_OFFSET),
        );
        &self.prefixes[(h % self.prefixes.len() as u64) as usize]
    }

    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// A key of the whole cluster (`nodes`, `node-ids`, `sweep:N`), in the first group's slot.
    pub fn global(&self, name: &str) -> String {
        format!("{}:{name}", self.prefixes[0])
    }

    /// The pattern of every user key, for `SCAN`; `app` narrows it to one app's.
    pub fn user_pattern(&self, app: Option<u32>) -> String {
        let groups = if self.is_cluster() {
            format!("{}:{{*}}", self.ns)
        } else {
            self.ns.clone()
        };
        match app {
            Some(app) => format!("{groups}:u:{app}:*"),
            None => format!("{groups}:u:*"),
        }
    }

    /// A key `SCAN` found, as its group's prefix and `APP:USER`; `None` for keys that are not the registry's.
    pub fn split_user_key<'k>(&self, key: &'k str) -> Option<(&str, &'k str)> {
        let prefix = if self.is_cluster() {
            let tagged = key.strip_prefix(self.ns.as_str())?.strip_prefix(":{")?;
            let end = tagged.find('}')?;
            let len = self.ns.len() + 2 + end + 1;
            let p = &key[..len];
            self.prefixes.iter().find(|x| x.as_str() == p)?
        } else {
            &self.prefixes[0]
        };
        let member = key.get(prefix.len()..)?.strip_prefix(":u:")?;
        let (app, user) = member.split_once(':')?;
        (app.parse::<u32>().is_ok() && !user.is_empty()).then_some((prefix.as_str(), member))
    }
}

/// The hash slot of a key (Redis Cluster: CRC16-XMODEM of the hash tag, or of the whole key).
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: stable across builds and platforms (every node must put a user in the same group), unlike std's
/// hasher.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(
            slot(b"foo{}{bar}"),
            crc16::State::<crc16::XMODEM>::calculate(b"foo{}{bar}") % SLOTS
        );
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn groups_are_evenly_spaced_and_every_key_of_a_group_shares_its_slot() {
        let l = Layout::cluster("imlogin").unwrap();
        assert_eq!(l.prefixes().len(), SHARDS);
        for (g, p) in l.prefixes().iter().enumerate() {
            let s = slot(p.as_bytes()) as usize;
            assert_eq!(s * SHARDS / SLOTS as usize, g, "{p}");
            let user = format!("{p}:u:1400000000:a{{b}}c");
            assert_eq!(slot(user.as_bytes()), slot(format!("{p}:due").as_bytes()));
        }
        assert_eq!(
            slot(l.global("nodes").as_bytes()),
            slot(l.global("sweep:3").as_bytes())
        );
    }

    #[test]
    fn users_spread_over_the_groups_the_same_way_every_time() {
        let l = Layout::cluster("ns").unwrap();
        let mut seen = vec![0u32; SHARDS];
        for i in 0..25_600 {
            let p = l.prefix(1400000000, &format!("user{i}"));
            seen[l.prefixes().iter().position(|x| x == p).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| (50..=150).contains(&n)), "{seen:?}");
        assert_eq!(l.prefix(7, "alice"), l.prefix(7, "alice"));
        assert_eq!(
            Layout::cluster("ns").unwrap().prefix(7, "alice"),
            l.prefix(7, "alice")
        );
    }

    #[test]
    fn scanned_keys_split_into_group_and_member() {
        let one = Layout::single("ns");
        assert_eq!(
            one.split_user_key("ns:u:7:al:ice"),
            Some(("ns", "7:al:ice"))
        );
        assert_eq!(one.split_user_key("ns:u:x:alice"), None);
        assert_eq!(one.user_pattern(Some(7)), "ns:u:7:*");
        let c = Layout::cluster("ns").unwrap();
        let p = c.prefix(7, "alice").to_owned();
        assert_eq!(
            c.split_user_key(&format!("{p}:u:7:alice")),
            Some((p.as_str(), "7:alice"))
        );
        assert_eq!(c.split_user_key("ns:{nope}:u:7:alice"), None);
        assert_eq!(c.user_pattern(None), "ns:{*}:u:*");
        assert!(Layout::cluster("a{b").is_err());
    }
}
