//! Messages the bus published that no node heard: Redis answered that the channel had no subscriber (the node
//! addressed was subscribing again: its connection to Redis was cut, or its channel's slot moved to another
//! master in a failover; or it is gone), or the publishing failed (our own connection to Redis was being made
//! again). They are published again, at growing intervals, for as long as a kicking login waits for its kick to
//! be written ([`RETRY_FOR`]); a node that comes back within that time receives them, in order. Past it, the
//! node's check against the registry when its subscription is back finds what they said. A message that failed
//! may have been received all the same, and then is received twice: every message is safe to repeat (a kick or
//! a close of a connection that no longer holds the instance is ignored; an acknowledgement, a cache drop, a
//! policy reload or a check done twice changes nothing more).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How long a message that no node heard is tried again: as long as a login waits for its kicks.
pub const RETRY_FOR: Duration = Duration::from_secs(2);
/// The first pause before a message is tried again; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_millis(200);
/// Messages kept to try again at most (a node that is gone while many logins kick its instances).
const MAX_KEPT: usize = 16 * 1024;

/// A channel and a payload.
pub type Outgoing = (String, String);

struct Waiting {
    message: Outgoing,
    since: Instant,
}

#[derive(Default)]
pub struct Unheard {
    queue: VecDeque<Waiting>,
    /// When to publish them again; `None` while none waits.
    next: Option<Instant>,
    pause: Duration,
}

impl Unheard {
    /// Whether a message for `channel` waits (a later one for it must wait behind it).
    pub fn holds(&self, channel: &str) -> bool {
        self.queue.iter().any(|w| w.message.0 == channel)
    }

    /// Keeps `message`, unheard or waiting behind one, to be published again.
    pub fn push(&mut self, message: Outgoing) {
        self.keep(Waiting {
            message,
            since: Instant::now(),
        });
    }

    /// When to publish the waiting messages again, if any wait.
    pub fn due(&self) -> Option<Instant> {
        self.next
    }

    /// Takes the waiting messages still worth publishing, and drops the ones kept past [`RETRY_FOR`].
    pub fn take(&mut self) -> Vec<(Outgoing, Instant)> {
        let now = Instant::now();
        let all = std::mem::take(&mut self.queue);
        let before = all.len();
        let live: Vec<_> = all
            .into_iter()
            .filter(|w| now.duration_since(w.since) < RETRY_FOR)
            .map(|w| (w.message, w.since))
            .collect();
        if live.len() < before {
            tracing::warn!(
                messages = before - live.len(),
                "bus: messages were not heard in 2 s; their nodes' checks against the registry will find what they said"
            );
        }
        self.next = None;
        live
    }

    /// Keeps again the messages of a [`Unheard::take`] that were still not heard, in their order.
    pub fn put_back(&mut self, unheard: Vec<(Outgoing, Instant)>) {
        let was = self.pause;
        for (message, since) in unheard {
            self.keep(Waiting { message, since });
        }
        if !self.queue.is_empty() {
            self.pause = (was * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
            self.next = Some(Instant::now() + self.pause);
        }
    }

    fn keep(&mut self, w: Waiting) {
        if self.queue.len() >= MAX_KEPT {
            tracing::warn!("bus: too many messages wait for a subscriber; one was dropped");
            return;
        }
        self.queue.push_back(w);
        if self.next.is_none() {
            self.pause = FIRST_PAUSE;
            self.next = Some(Instant::now() + self.pause);
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
    async fn messages_are_tried_again_in_order_at_growing_intervals_until_their_time_is_up() {
        let mut u = Unheard::default();
        assert_eq!(u.due(), None);
        let start = Instant::now();
        u.push(m("a", "1"));
        u.push(m("b", "2"));
        assert!(u.holds("a") && u.holds("b") && !u.holds("c"));
        assert_eq!(u.due(), Some(start + FIRST_PAUSE));

        let mut pauses = Vec::new();
        while let Some(at) = u.due() {
            tokio::time::sleep_until(at).await;
            let taken = u.take();
            if taken.is_empty() {
                break;
            }
            let order: Vec<_> = taken.iter().map(|(m, _)| m.1.clone()).collect();
            assert_eq!(order, ["1", "2"], "kept in order");
            pauses.push(u.pause);
            u.put_back(taken);
            assert_eq!(u.due(), Some(Instant::now() + u.pause));
        }
        assert_eq!(
            pauses[..4],
            [
                FIRST_PAUSE,
                FIRST_PAUSE * 2,
                FIRST_PAUSE * 4,
                FIRST_PAUSE * 8
            ]
        );
        assert!(pauses.iter().all(|p| *p <= MAX_PAUSE));
        assert!(
            Instant::now() >= start + RETRY_FOR,
            "tried for {RETRY_FOR:?}"
        );
        assert!(Instant::now() < start + RETRY_FOR + MAX_PAUSE * 2);
        assert!(!u.holds("a"));
        assert_eq!(u.due(), None, "nothing waits once their time is up");
    }

    #[tokio::test(start_paused = true)]
    async fn heard_messages_leave_and_the_next_unheard_one_starts_again_quickly() {
        let mut u = Unheard::default();
        u.push(m("a", "1"));
        tokio::time::sleep(FIRST_PAUSE).await;
        let taken = u.take();
        u.put_back(Vec::new());
        assert_eq!((taken.len(), u.due()), (1, None));
        u.push(m("a", "2"));
        assert_eq!(u.due(), Some(Instant::now() + FIRST_PAUSE));
    }
}
