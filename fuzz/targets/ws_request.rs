// Shared by the fuzz target (fuzz/fuzz_targets/ws_request.rs) and the replay of the seeds on stable
// (tests/api/fuzz_seeds.rs): `run` must not panic, hang or exhaust memory for any input.
//
// The WebSocket request parsers: the native protocol's frames (typed at the edge) and the Web SDK gateway's.

use imlogin::gateway::native::protocol::{self, Op};
use imlogin::gateway::websdk::frames;

pub fn run(data: &[u8]) {
    match protocol::parse(data) {
        Ok(req) => {
            if let Op::Login(login) = req.op {
                let _ = login.throttle_key();
                let _ = login.sdkappid();
                let _ = login.into_fields();
            }
        }
        Err(protocol::BadFrame::WithId(id, failure)) => {
            let _ = protocol::error(Some(id), &failure);
        }
        Err(protocol::BadFrame::NoId(_)) => {}
    }
    let _ = frames::parse(data);
}
