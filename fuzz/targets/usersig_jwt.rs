// Shared by the fuzz target (fuzz/fuzz_targets/usersig_jwt.rs) and the replay of the seeds on stable
// (tests/api/fuzz_seeds.rs): `run` must not panic, hang or exhaust memory for any input.
//
// The JWT path. Input: a token as is; or a header and claims separated by a NUL, which the target signs with
// the app's key, so that the checks past the signature are reached.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use imlogin::usersig::jwt::{JwtAlgorithm, JwtVerifier};
use imlogin::usersig::{Keys, Ticket};
use sha2::Sha256;

const SECRET: &str = "a-jwt-secret-of-at-least-32-bytes-long!!";

pub fn run(data: &[u8]) {
    let token = match data.iter().position(|&b| b == 0) {
        None => match std::str::from_utf8(data) {
            Ok(s) => s.to_owned(),
            Err(_) => return,
        },
        Some(nul) => {
            let (header, claims) = (&data[..nul], &data[nul + 1..]);
            let signing = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(signing.as_bytes());
            format!(
                "{signing}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        }
    };
    let verifier =
        JwtVerifier::new(&[JwtAlgorithm::HS256], Some(SECRET), None, Some("imlogin")).unwrap();
    let keys = Keys::new("tls-key", Some(verifier));
    if let Ok(t) = Ticket::decode(&token) {
        for user in ["alice", ""] {
            let _ = t.verify(&keys, 1_400_000_000, user, 1_700_000_100);
        }
    }
}
