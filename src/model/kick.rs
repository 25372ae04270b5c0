//! Why an instance was removed against its will, and by whom (PROTOCOL §3): the reason its client is told, the
//! code that goes with it, and what a later `resume` learns.

use serde::{Deserialize, Serialize};

use super::{Code, Platform};

/// Why an instance was removed against its will; each has the code its client is told (PROTOCOL §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KickReason {
    /// Another login took the slot (6208).
    MultiTerminal,
    /// A newer login from the same device_id (6208).
    SameDevice,
    /// An admin kicked the user without revoking tickets (6208).
    AdminKick,
    /// An admin kick that revoked every ticket issued so far (70052).
    AdminKickRevoked,
    /// The account was deleted (70107).
    AccountDeleted,
    /// The account was disabled (70051).
    AccountDisabled,
    /// The app was removed from the configuration (70020).
    AppRemoved,
}

impl KickReason {
    pub const ALL: [KickReason; 7] = [
        KickReason::MultiTerminal,
        KickReason::SameDevice,
        KickReason::AdminKick,
        KickReason::AdminKickRevoked,
        KickReason::AccountDeleted,
        KickReason::AccountDisabled,
        KickReason::AppRemoved,
    ];

    /// A stable number for storage (the Redis registry's kick records).
    pub fn index(self) -> usize {
        KickReason::ALL
            .iter()
            .position(|r| *r == self)
            .expect("in ALL")
    }

    pub fn from_index(i: usize) -> Option<KickReason> {
        KickReason::ALL.get(i).copied()
    }

    /// The `reason` word of `kicked_offline`.
    pub fn as_str(self) -> &'static str {
        match self {
            KickReason::MultiTerminal => "multi_terminal",
            KickReason::SameDevice => "same_device",
            KickReason::AdminKick | KickReason::AdminKickRevoked => "admin_kick",
            KickReason::AccountDeleted => "account_deleted",
            KickReason::AccountDisabled => "account_disabled",
            KickReason::AppRemoved => "app_removed",
        }
    }

    pub fn code(self) -> Code {
        match self {
            KickReason::MultiTerminal | KickReason::SameDevice | KickReason::AdminKick => {
                Code::KickedByOther
            }
            KickReason::AdminKickRevoked => Code::UserSigRevoked,
            KickReason::AccountDeleted => Code::AccountNotFound,
            KickReason::AccountDisabled => Code::AccountDisabled,
            KickReason::AppRemoved => Code::SdkAppIdNotFound,
        }
    }
}

/// Why an instance was kicked, as remembered for a `resume` that comes after it (see `Registry::kicked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kick {
    pub reason: KickReason,
    /// The platform of the login that displaced it (a policy kick), so a resume can tell "another instance on
    /// the same platform" from "another platform of the class". `None` for a kick by the server, and for a record
    /// written before this was kept.
    pub by: Option<Platform>,
}
