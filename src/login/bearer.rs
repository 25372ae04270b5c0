//! What a session token does over HTTP (PROTOCOL §6): read the session, log it out.

use std::net::IpAddr;

use super::kicks::ended;
use super::service::{Actor, Sessions};
use crate::model::error::{Code, Failure};
use crate::model::{Cause, Instance};
use crate::push::hub::Push;
use crate::registry::RemoveIf;

impl Sessions {
    /// The instance a session token names (HTTP API).
    pub async fn session(&self, token: &str) -> Result<Instance, Failure> {
        let key = self.token_instance(token)?;
        let inst = self
            .registry
            .get(&key)
            .await
            .map_err(|e| self.registry_down(e))?
            .ok_or(Code::NoPreviousLogin)?;
        if self.clock.now_secs() > inst.sig_expires_at {
            return Err(Code::NoPreviousLogin.into());
        }
        // As for a resume: an account ended since the login (its kick lost with Redis) has no session.
        let account = self.account_of(&key).await?;
        if let Some(reason) = ended(&account, Some(inst.login_at_ms)) {
            return Err(self.refuse_ended(&key, reason, None, None).await);
        }
        Ok(inst)
    }

    /// `POST /v1/logout` from `ip`: removes the instance; an attached connection is told `logged_out`.
    pub async fn http_logout(&self, token: &str, ip: IpAddr) -> Result<(), Failure> {
        let key = self.token_instance(token)?;
        let removed = self
            .registry
            .remove(&key, RemoveIf::Always)
            .await
            .map_err(|e| self.registry_down(e))?;
        let (inst, seq) = removed.ok_or(Code::NoPreviousLogin)?;
        self.emit(&inst, seq, Cause::Logout, Actor::Client(ip), Vec::new());
        if let Some(conn) = inst.conn {
            self.hub
                .send(
                    conn,
                    Push::LoggedOut {
                        instance_id: inst.instance_id,
                    },
                )
                .await;
        }
        Ok(())
    }
}
