// Shared by the fuzz target (fuzz/fuzz_targets/usersig_tls.rs) and the replay of the seeds on stable
// (tests/api/fuzz_seeds.rs): `run` must not panic, hang or exhaust memory for any input.
//
// The TLS sig v2 decoder and verifier. Input: a ticket as is; or `W` then the inner JSON (or anything), which
// the target wraps as a real ticket is (zlib, base64 with `* - _`), so that the fields are reached past the
// compression.

use base64::Engine;
use imlogin::usersig::{tls::TlsTicket, Keys, Ticket};
use std::io::Write;

const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";

fn wrap(inner: &[u8]) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(inner).unwrap();
    base64::engine::general_purpose::STANDARD
        .encode(z.finish().unwrap())
        .replace('+', "*")
        .replace('/', "-")
        .replace('=', "_")
}

pub fn run(data: &[u8]) {
    let sig = match data.split_first() {
        Some((b'W', inner)) => wrap(inner),
        _ => match std::str::from_utf8(data) {
            Ok(s) => s.to_owned(),
            Err(_) => return,
        },
    };
    let keys = Keys::new(KEY, None);
    if let Ok(t) = TlsTicket::decode(&sig) {
        for user in ["xiaojun", ""] {
            let _ = Ticket::Tls(t.clone()).verify(&keys, 1_400_000_000, user, 1_700_000_100);
        }
    }
    if let Ok(t) = Ticket::decode(&sig) {
        let _ = t.verify(&keys, 1_400_000_000, "xiaojun", i64::MAX);
    }
}
