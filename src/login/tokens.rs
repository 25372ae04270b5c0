//! Session tokens: `base64url(sdkappid:instance_id:user_id).base64url(HMAC-SHA256)` under `session.secret`, so
//! any node with the same secret can verify one without a lookup. A token is only a name: the instance must
//! still exist in the registry for it to mean anything.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::InstanceKey;

#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl TokenSigner {
    pub fn new(secret: &str) -> Self {
        TokenSigner {
            key: secret.as_bytes().to_vec(),
        }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"imlogin-session-v1\n");
        mac.update(payload);
        mac
    }

    pub fn sign(&self, key: &InstanceKey) -> String {
        let payload = format!("{}:{}:{}", key.sdkappid, key.instance_id, key.user_id);
        let tag = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!("{}.{}", B64.encode(payload), B64.encode(tag))
    }

    /// The instance a token names, if its signature verifies (compared in constant time).
    pub fn verify(&self, token: &str) -> Option<InstanceKey> {
        let (payload, tag) = token.split_once('.')?;
        let payload = B64.decode(payload).ok()?;
        let tag = B64.decode(tag).ok()?;
        self.mac(&payload).verify_slice(&tag).ok()?;
        let text = String::from_utf8(payload).ok()?;
        let mut parts = text.splitn(3, ':');
        let sdkappid = parts.next()?.parse().ok()?;
        let instance_id = parts.next()?.to_owned();
        let user_id = crate::model::UserId::parse(parts.next()?).ok()?;
        Some(InstanceKey {
            sdkappid,
            user_id,
            instance_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let s = TokenSigner::new("a-session-secret-of-some-length");
        let key = InstanceKey {
            sdkappid: 7,
            user_id: crate::model::UserId::parse("u:with:colons").unwrap(),
            instance_id: "abc123".into(),
        };
        let t = s.sign(&key);
        assert_eq!(s.verify(&t), Some(key.clone()));
        assert_eq!(TokenSigner::new("another-secret-entirely").verify(&t), None);
        let (p, tag) = t.split_once('.').unwrap();
        let other = B64.encode("7:abc123:someone-else");
        assert_eq!(s.verify(&format!("{other}.{tag}")), None);
        assert_eq!(s.verify(p), None);
        assert_eq!(s.verify(""), None);
        assert_eq!(s.verify("!!.??"), None);
    }
}
