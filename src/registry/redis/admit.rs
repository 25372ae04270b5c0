//! Admission under the policy in one script (`lua/admit.lua`), and putting back an instance Redis lost.

use super::codec::*;
use super::RedisRegistry;
use crate::model::{Instance, KickReason, Platform, Policy, Seq};
use crate::registry::memory::MAX_KICKS_REMEMBERED;
use crate::registry::policy;
use crate::registry::{Admitted, RegResult};

impl RedisRegistry {
    /// Admits `new` under the policy; with `known`, puts back an instance Redis lost instead (see
    /// [`crate::registry::Registry::reassert`]), `None` if it was not put back.
    pub(super) async fn admit_with(
        &self,
        new: Instance,
        pol: &Policy,
        remember_ms: i64,
        known: Option<Seq>,
    ) -> RegResult<Option<Admitted>> {
        let (sdkappid, user_id) = (new.sdkappid, new.user_id.as_str());
        let (head, tail) = encode_parts(&new);
        let now = self.clock.now_ms();
        let due = match new.conn {
            Some(_) => String::new(),
            None => {
                let t = new.disconnected_at_ms.unwrap_or(now);
                (t + self.grace_ms)
                    .min((new.sig_expires_at + 1) * 1000)
                    .to_string()
            }
        };
        let classes = Platform::ALL.map(|p| b'0' + policy::class_of(pol.mode, p));
        let reply = self
            .eval(&self.scripts.admit, 2, |c| {
                c.arg(self.user_key(sdkappid, user_id))
                    .arg(self.due_key(sdkappid, user_id))
                    .arg(self.group(sdkappid, user_id))
                    .arg(floor_arg(now))
                    .arg(MAX_KICKS_REMEMBERED)
                    .arg(sdkappid)
                    .arg(user_id)
                    .arg(&new.instance_id)
                    .arg(new.platform.index())
                    .arg(new.device_id.as_deref().unwrap_or(""))
                    .arg(&head)
                    .arg(&tail)
                    .arg(due)
                    .arg(pol.limit(new.platform))
                    .arg(&classes[..])
                    .arg(self.keep_until(new.sig_expires_at, now, remember_ms))
                    .arg(hex_arg(now + remember_ms))
                    .arg(known.map(|k| format!("{k:x}")).unwrap_or_default());
            })
            .await?;
        let r = items(&reply);
        if known.is_some() && r.first().and_then(text).as_deref() == Some("") {
            return Ok(None);
        }
        let seq = r.first().and_then(hex_int).ok_or_else(malformed)?;
        let mut kicked = Vec::new();
        for k in r.get(1).map(items).unwrap_or_default().chunks(3) {
            let parsed = (|| {
                let id = text(k.first()?)?;
                let reason = KickReason::from_index(int(k.get(1)?)? as usize)?;
                Some((decode(sdkappid, user_id, &id, &text(k.get(2)?)?)?, reason))
            })();
            kicked.push(parsed.ok_or_else(malformed)?);
        }
        Ok(Some(Admitted { kicked, seq }))
    }
}
