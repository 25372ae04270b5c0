//! Messages the bus published that no node heard: Redis answered that the channel had no subscriber (the node
//! addressed was subscribing again: its connection to Redis was cut, or its channel's slot moved to another
//! master in a failover; or it is gone), or the publishing failed (our own connection to Redis was being made
//! again). They wait, per channel and in order, and later messages for that channel wait behind them. The first
//! waiting message of a channel is published again at growing intervals (a probe: one command per channel,
//! however many wait); once it is heard the rest follow at once. A message is tried for as long as a kicking
//! login waits for its kick to be written ([`RETRY_FOR`]); a node that comes back within that time receives its
//! messages in order, and past it the node's check against the registry, when its subscription is back, finds
//! what they said.
//!
//! A message that failed may have been received all the same, and is then received twice, and one that waited
//! arrives late. Both are harmless: a kick or a logout names an instance, which is never attached again once
//! removed; a resume elsewhere carries the number of its attachment, and a connection that attached the
//! instance after it ignores it; an acknowledgement, a cache drop, a policy reload or a check done twice changes
//! nothing more.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// How long a message that no node heard is tried again: as long as a login waits for its kicks.
pub const RETRY_FOR: Duration = Duration::from_secs(2);
/// The first pause before a channel's messages are tried again; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_millis(200);
/// Messages kept per channel at most (a node that is gone while many logins kick its instances); past that the
/// oldest go. Other channels are not affected.
const MAX_PER_CHANNEL: usize = 16 * 1024;
/// Messages waiting for a channel past which it is tried again after [`FIRST_PAUSE`], whatever its pause.
const PILING_UP: usize = 1024;

/// At most one warning of dropped messages per this.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A channel and a payload.
pub type Outgoing = (String, String);

struct Channel {
    /// Payloads, oldest first, each with when it was first sent.
    queue: VecDeque<(String, Instant)>,
    pause: Duration,
    /// When to try again.
    at: Instant,
    /// When it was last tried (or began to wait).
    last: Instant,
    /// Whether its probe is being published (it is not probed again until that is answered).
    probing: bool,
}

#[derive(Default)]
pub struct Unheard {
    /// Only channels with messages waiting.
    channels: HashMap<String, Channel>,
    /// Messages dropped and not yet logged, and when that was last logged (at most once a second, as a node
    /// that is gone may have messages dropped at every probe).
    dropped: usize,
    logged: Option<Instant>,
    /// Channels that had messages dropped since [`Unheard::take_given_up`] (see [`super::missed`]).
    given_up: Vec<String>,
}

impl Unheard {
    /// Whether messages for `channel` wait (a later one for it must wait behind them).
    pub fn holds(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// The channels whose messages wait.
    pub fn channels(&self) -> impl Iterator<Item = String> + '_ {
        self.channels.keys().cloned()
    }

    /// Keeps `message`, not heard or waiting behind one, to be published again.
    pub fn push(&mut self, message: Outgoing) {
        self.push_since(message, Instant::now());
    }

    /// Keeps `message`, first sent at `since`.
    pub fn push_since(&mut self, (channel, payload): Outgoing, since: Instant) {
        let now = Instant::now();
        let c = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| Channel {
                queue: VecDeque::new(),
                pause: FIRST_PAUSE,
                at: now + FIRST_PAUSE,
                last: now,
                probing: false,
            });
        // Many messages waiting: the channel is tried again soon (its node may be back), so they do not pile up
        // past the cap; a node that is gone then gets a probe per [`FIRST_PAUSE`] at most, a small share of what
        // is sent to it. Fewer wait for the next try of the doubling pause.
        if c.queue.len() >= PILING_UP {
            c.at = c.at.min(c.last + FIRST_PAUSE);
        }
        let full = c.queue.len() >= MAX_PER_CHANNEL;
        if full {
            c.queue.pop_front();
        }
        c.queue.push_back((payload, since));
        if full {
            self.dropped(channel);
        }
    }

    /// A message for `channel` was dropped before it could be published (too many waited): its node is to be
    /// told.
    pub fn dropped(&mut self, channel: String) {
        self.dropped += 1;
        self.gave_up(channel);
    }

    fn gave_up(&mut self, channel: String) {
        if !self.given_up.contains(&channel) {
            self.given_up.push(channel);
        }
    }

    /// The channels that had messages dropped since the last call.
    pub fn take_given_up(&mut self) -> Vec<String> {
        std::mem::take(&mut self.given_up)
    }

    /// When the next channel is to be tried again, if any waits.
    pub fn due(&self) -> Option<Instant> {
        self.channels
            .values()
            .filter(|c| !c.probing)
            .map(|c| c.at)
            .min()
    }

    /// The first waiting message of each channel whose time to try again has come. Drops the messages kept past
    /// [`RETRY_FOR`] (a channel left with none waits no more).
    pub fn probes(&mut self) -> Vec<Outgoing> {
        let now = Instant::now();
        let mut dropped = 0;
        let mut probes = Vec::new();
        let mut given_up = Vec::new();
        self.channels.retain(|name, c| {
            if c.probing || c.at > now {
                return true;
            }
            let before = c.queue.len();
            while c
                .queue
                .front()
                .is_some_and(|(_, since)| now.duration_since(*since) >= RETRY_FOR)
            {
                c.queue.pop_front();
            }
            if c.queue.len() < before {
                dropped += before - c.queue.len();
                given_up.push(name.clone());
            }
            let Some((first, _)) = c.queue.front() else {
                return false;
            };
            c.last = now;
            c.probing = true;
            probes.push((name.clone(), first.clone()));
            true
        });
        self.dropped += dropped;
        for channel in given_up {
            self.gave_up(channel);
        }
        if self.dropped > 0
            && self
                .logged
                .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            tracing::warn!(
                messages = self.dropped,
                "bus: messages were not heard in time or did not fit; their nodes are told to check against the registry, which holds what they said"
            );
            self.dropped = 0;
            self.logged = Some(now);
        }
        probes
    }

    /// `channel`'s probe, `probe`, was heard: it waits no more. Returns the messages that waited behind the probe,
    /// in order, each with when it was first sent, to publish now.
    pub fn heard(&mut self, channel: &str, probe: &str) -> Vec<(Outgoing, Instant)> {
        let Some(mut c) = self.channels.remove(channel) else {
            return Vec::new();
        };
        // Unless it was dropped meanwhile (too many waited behind it).
        if c.queue.front().is_some_and(|(first, _)| first == probe) {
            c.queue.pop_front();
        }
        c.queue
            .into_iter()
            .map(|(payload, since)| ((channel.to_owned(), payload), since))
            .collect()
    }

    /// `channel`'s probe was not heard: it is tried again after a longer pause.
    pub fn not_heard(&mut self, channel: &str) {
        if let Some(c) = self.channels.get_mut(channel) {
            c.probing = false;
            c.pause = (c.pause * 2).min(MAX_PAUSE);
            c.at = Instant::now() + c.pause;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(channel: &str, payload: &str) -> Outgoing {
        (channel.to_owned(), payload.to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_channel_is_probed_at_growing_intervals_until_its_messages_time_is_up() {
        let mut u = Unheard::default();
        assert_eq!(u.due(), None);
        let start = Instant::now();
        u.push(m("a", "1"));
        u.push(m("a", "2"));
        assert!(u.holds("a") && !u.holds("b"));
        assert_eq!(u.due(), Some(start + FIRST_PAUSE));
        assert!(u.probes().is_empty(), "not yet");

        let mut tries = Vec::new();
        while let Some(at) = u.due() {
            tokio::time::sleep_until(at).await;
            let probes = u.probes();
            if probes.is_empty() {
                break;
            }
            assert_eq!(probes, [m("a", "1")], "one probe, the oldest");
            tries.push(Instant::now() - start);
            u.not_heard("a");
        }
        let ms: Vec<u128> = tries.iter().map(|t| t.as_millis()).collect();
        assert_eq!(ms[..5], [20, 60, 140, 300, 500]);
        assert!(*ms.last().unwrap() < RETRY_FOR.as_millis());
        assert!(Instant::now() - start >= RETRY_FOR);
        assert!(!u.holds("a"), "nothing waits once the time is up");
        assert_eq!(u.due(), None);
        assert_eq!(u.take_given_up(), ["a"], "its node is to be told");
        assert!(u.take_given_up().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_probe_is_heard_the_rest_follow_in_order_with_when_they_were_sent() {
        let mut u = Unheard::default();
        let start = Instant::now();
        u.push(m("a", "1"));
        u.push(m("b", "x"));
        tokio::time::sleep(Duration::from_millis(5)).await;
        u.push(m("a", "2"));
        u.push(m("a", "3"));
        tokio::time::sleep(FIRST_PAUSE).await;
        let mut probes = u.probes();
        probes.sort();
        assert_eq!(probes, [m("a", "1"), m("b", "x")]);
        let rest = u.heard("a", "1");
        let at = start + Duration::from_millis(5);
        assert_eq!(rest, [(m("a", "2"), at), (m("a", "3"), at)]);
        assert!(!u.holds("a") && u.holds("b"));
        // Sent again and still not heard: they wait again, in order, with their first time.
        for (message, since) in rest {
            u.push_since(message, since);
        }
        tokio::time::sleep(FIRST_PAUSE).await;
        u.not_heard("b");
        let probes = u.probes();
        assert_eq!(probes, [m("a", "2")]);
        assert!(u.take_given_up().is_empty(), "nothing was dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_channel_full_of_messages_drops_its_own_oldest_and_no_other_channels() {
        let mut u = Unheard::default();
        u.push(m("live", "0"));
        for i in 0..MAX_PER_CHANNEL + 10 {
            u.push(m("dead", &i.to_string()));
        }
        u.push(m("live", "1"));
        assert_eq!(u.take_given_up(), ["dead"]);
        tokio::time::sleep(FIRST_PAUSE).await;
        let mut probes = u.probes();
        probes.sort();
        assert_eq!(probes, [m("dead", "10"), m("live", "0")]);
        let rest: Vec<_> = u.heard("live", "0").into_iter().map(|(m, _)| m).collect();
        assert_eq!(rest, [m("live", "1")]);
        assert_eq!(u.heard("dead", "10").len(), MAX_PER_CHANNEL - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_channel_is_not_probed_again_while_its_probe_is_out() {
        let mut u = Unheard::default();
        u.push(m("a", "1"));
        u.push(m("a", "2"));
        tokio::time::sleep(FIRST_PAUSE).await;
        assert_eq!(u.probes(), [m("a", "1")]);
        assert_eq!(u.due(), None, "nothing is due while the probe is out");
        tokio::time::sleep(RETRY_FOR).await;
        assert!(u.probes().is_empty());
        // A probe that was dropped while it was out (too many waited behind it) does not take another with it.
        assert_eq!(
            u.heard("a", "0"),
            [
                (m("a", "1"), Instant::now() - RETRY_FOR - FIRST_PAUSE),
                (m("a", "2"), Instant::now() - RETRY_FOR - FIRST_PAUSE)
            ]
        );
    }
}
