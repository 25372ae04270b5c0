//! Why a user's login state changed (a login, a logout, a lost connection, an admin's act…): the word webhooks
//! carry as `Cause`, and what a connection's end is reported as.

use serde::Serialize;

/// What happened, in imlogin's own words (the `Cause` field); it determines `Action` and `Reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Login,
    Resume,
    Logout,
    Switch,
    UserSigExpired,
    AdminKick,
    AccountDeleted,
    AccountDisabled,
    /// The connection was lost (closed, reset, or the server restarting).
    Disconnect,
    /// The connection went silent past the heartbeat timeout.
    HeartbeatTimeout,
}

impl Cause {
    /// (`Info.Action`, `Info.Reason`) as the compatible system spells them.
    pub fn action_and_reason(self) -> (&'static str, &'static str) {
        match self {
            Cause::Login | Cause::Resume => ("Login", "Register"),
            Cause::Logout
            | Cause::Switch
            | Cause::UserSigExpired
            | Cause::AdminKick
            | Cause::AccountDeleted
            | Cause::AccountDisabled => ("Logout", "Unregister"),
            Cause::Disconnect => ("Disconnect", "LinkClose"),
            Cause::HeartbeatTimeout => ("Disconnect", "TimeOut"),
        }
    }

    /// The `Cause` word; a heartbeat timeout is a `disconnect` too (its `Reason` tells them apart).
    pub fn word(self) -> &'static str {
        match self {
            Cause::Login => "login",
            Cause::Resume => "resume",
            Cause::Logout => "logout",
            Cause::Switch => "switch",
            Cause::UserSigExpired => "user_sig_expired",
            Cause::AdminKick => "admin_kick",
            Cause::AccountDeleted => "account_deleted",
            Cause::AccountDisabled => "account_disabled",
            Cause::Disconnect | Cause::HeartbeatTimeout => "disconnect",
        }
    }
}
