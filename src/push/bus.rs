//! Messages between nodes: a push addressed to the node that holds a connection (a kick, a logout, a resume
//! elsewhere, and the acknowledgement that a kick was written), and notices every node must hear (an account's
//! cached login state is stale, the admins' policies changed). One node needs none of it ([`LocalBus`]); a
//! cluster uses Redis pub/sub ([`crate::push::redis_bus::RedisBus`]), one channel per node, so a login is never fanned out to
//! every node.
//!
//! What crosses nodes is data only: a waiting login learns that its kick was written through an [`Message::Ack`]
//! sent back to its node, never through an in-process handle.

use serde::{Deserialize, Serialize};

use crate::model::KickReason;
use crate::model::Platform;
use crate::model::Seq;

/// What one node tells another (or all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Message {
    /// Send `kicked_offline` on connection `conn` and close it with 4001; acknowledge `ack` once written.
    Kick {
        conn: u64,
        instance_id: String,
        reason: KickReason,
        by_platform: Option<Platform>,
        ack: Option<u64>,
    },
    /// The instance was logged out through HTTP.
    LoggedOut { conn: u64, instance_id: String },
    /// The instance was resumed on another connection, by change `attachment` (absent from an earlier
    /// version): close this one with 4002, unless it attached the instance later.
    ResumedElsewhere {
        conn: u64,
        instance_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachment: Option<Seq>,
    },
    /// The kick numbered `id` was written (or its connection is gone).
    Ack { id: u64 },
    /// To every node: drop the cached login state of this account.
    Account { sdkappid: u32, user_id: String },
    /// To every node: read the admins' policies again.
    Policies,
    /// To every node: a registry write that ran after its node gave up on it (and was undone) may have kicked
    /// instances on any node: check your connections against the registry.
    Recheck,
}

/// A message as received, with the node that sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: u64,
    #[serde(flatten)]
    pub message: Message,
}

/// What the bus hands to the node.
#[derive(Debug)]
pub enum Incoming {
    Message(Envelope),
    /// The bus was cut off and is back: messages may have been lost meanwhile.
    Resynced,
}

/// Sends to other nodes. Sending never waits: messages are queued for the bus's own task, in order.
pub trait Bus: Send + Sync + 'static {
    /// To the node `to`.
    fn send(&self, to: u64, message: Message);
    /// To every other node.
    fn broadcast(&self, message: Message);
}

/// One node: nobody to tell.
pub struct LocalBus;

impl Bus for LocalBus {
    fn send(&self, _to: u64, _message: Message) {}
    fn broadcast(&self, _message: Message) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_as_written() {
        let all = [
            Message::Kick {
                conn: 7,
                instance_id: "abc".into(),
                reason: KickReason::AdminKickRevoked,
                by_platform: Some(Platform::Web),
                ack: Some(9),
            },
            Message::LoggedOut {
                conn: 1,
                instance_id: "x".into(),
            },
            Message::ResumedElsewhere {
                conn: 2,
                instance_id: "y".into(),
                attachment: Some(0x1234_5678_9abc_def0),
            },
            Message::ResumedElsewhere {
                conn: 2,
                instance_id: "y".into(),
                attachment: None,
            },
            Message::Ack { id: 3 },
            Message::Account {
                sdkappid: 1,
                user_id: "u|:x".into(),
            },
            Message::Policies,
        ];
        for message in all {
            let e = Envelope { from: 42, message };
            let text = serde_json::to_string(&e).unwrap();
            assert_eq!(
                serde_json::from_str::<Envelope>(&text).unwrap(),
                e,
                "{text}"
            );
        }
    }
}
