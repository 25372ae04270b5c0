//! What a successful `login` or `resume` answers (PROTOCOL §3).

use serde::Serialize;

use crate::model::Seq;
use crate::model::{Instance, Platform};

/// A successful `login` or `resume`.
#[derive(Debug, Clone)]
pub struct LoginOk {
    pub instance: Instance,
    /// The user's change number after this login's write (what the connection knows of the registry).
    pub seq: Seq,
    pub session_token: String,
    pub repeat_login: bool,
    pub resumed: bool,
}

/// The response `data` of a `login` or `resume` (PROTOCOL §3), serialized straight from the instance.
#[derive(Debug, Serialize)]
pub struct LoginData<'a> {
    pub user_id: &'a str,
    pub platform: Platform,
    pub instance_id: &'a str,
    pub session_token: &'a str,
    pub sig_expires_at: i64,
    pub repeat_login: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

impl LoginOk {
    pub fn data(&self) -> LoginData<'_> {
        LoginData {
            user_id: &self.instance.user_id,
            platform: self.instance.platform,
            instance_id: &self.instance.instance_id,
            session_token: &self.session_token,
            sig_expires_at: self.instance.sig_expires_at,
            repeat_login: self.repeat_login,
            resumed: self.resumed,
        }
    }
}
