//! The gateway of the cloud IM's official Web SDK (`tim-js-sdk`): an app sets `proxyServer: "wss://host/tim"` and
//! its SDK logs in here unchanged (docs/websdk.md). `/tim/binfo` speaks binary frames, `/tim/info` (the SDK's
//! `devMode`) text frames; both hold JSON. A login here is an instance like one on `/v1/ws`, platform `web`: the
//! same login service, policy, kicks, resume, webhooks, daily actives and admin views.

pub mod connection;
pub mod frames;

use axum::extract::{Request, State};
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::{serve_upgrade, Gateway, Protocol};
use crate::http::serve::ClientIp;
use crate::model::KickReason;
use crate::model::Platform;

/// How often the SDK says `wshello` once logged in (its own heartbeat, `heartbeat.alive`, follows 10 s of
/// silence from the server).
pub const HELLO_INTERVAL_SECS: u64 = 30;

/// `GET /tim/binfo`: binary frames.
pub async fn binfo(state: State<Gateway>, ip: ClientIp, request: Request) -> Response {
    serve_upgrade(state, ip, request, Protocol::WebSdk { binary: true })
}

/// `GET /tim/info`: text frames (the SDK in `devMode`).
pub async fn info(state: State<Gateway>, ip: ClientIp, request: Request) -> Response {
    serve_upgrade(state, ip, request, Protocol::WebSdk { binary: false })
}

/// A user's `TinyId`: a stable number from the app and UserID, the same on every node and across restarts, and
/// exact in JavaScript (below 2^53).
pub fn tiny_id(sdkappid: u32, user_id: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(sdkappid.to_be_bytes())
        .chain_update(user_id.as_bytes())
        .finalize();
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 11;
    n.max(1)
}

/// An instance's `InstId`: non-zero (the SDK ignores server kicks while it is 0), from its instance id.
pub fn inst_id(instance_id: &str) -> u64 {
    let digest = Sha256::digest(instance_id.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 11;
    n.max(1)
}

/// The SDK's `KickType`: 1 another web login of the user, 2 a login on another platform, 3 the server (an admin
/// kick, disable or delete, the app removed).
pub fn kick_type(reason: KickReason, by_platform: Option<Platform>) -> u8 {
    match reason {
        KickReason::MultiTerminal | KickReason::SameDevice => match by_platform {
            Some(Platform::Web) => 1,
            _ => 2,
        },
        KickReason::AdminKick
        | KickReason::AdminKickRevoked
        | KickReason::AccountDeleted
        | KickReason::AccountDisabled
        | KickReason::AppRemoved => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_non_zero_and_exact_in_javascript() {
        assert_eq!(tiny_id(1400000001, "alice"), tiny_id(1400000001, "alice"));
        assert_ne!(tiny_id(1400000001, "alice"), tiny_id(1400000002, "alice"));
        assert_ne!(tiny_id(1400000001, "alice"), tiny_id(1400000001, "bob"));
        for id in ["", "a", "0123456789abcdef01234567"] {
            assert!((1..1 << 53).contains(&inst_id(id)));
            assert!((1..1 << 53).contains(&tiny_id(7, id)));
        }
    }

    #[test]
    fn kick_types_follow_who_kicked() {
        assert_eq!(kick_type(KickReason::MultiTerminal, Some(Platform::Web)), 1);
        assert_eq!(kick_type(KickReason::SameDevice, Some(Platform::Web)), 1);
        assert_eq!(
            kick_type(KickReason::MultiTerminal, Some(Platform::Android)),
            2
        );
        assert_eq!(kick_type(KickReason::MultiTerminal, None), 2);
        for r in [
            KickReason::AdminKick,
            KickReason::AdminKickRevoked,
            KickReason::AccountDeleted,
            KickReason::AccountDisabled,
            KickReason::AppRemoved,
        ] {
            assert_eq!(kick_type(r, None), 3);
        }
    }
}
