//! Every fuzz seed (`fuzz/seeds/TARGET`: real tickets, the UserSig vectors, real frames and bodies, and every input
//! a fuzz run ever found) through the very code of its fuzz target, on stable, in the README's test command: what
//! fuzzing found once stays fixed. `scripts/fuzz.sh` runs the targets themselves (nightly, cargo-fuzz).

mod usersig_tls {
    include!("../../fuzz/targets/usersig_tls.rs");
}
mod usersig_jwt {
    include!("../../fuzz/targets/usersig_jwt.rs");
}
mod ws_request {
    include!("../../fuzz/targets/ws_request.rs");
}
mod v4_rest {
    include!("../../fuzz/targets/v4_rest.rs");
}
mod config {
    include!("../../fuzz/targets/config.rs");
}

/// Runs `run` on every seed of `target`; returns how many there were.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&input));
        assert!(outcome.is_ok(), "{} panics", path.display());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
    n
}

#[test]
fn every_fuzz_seed_passes_its_target() {
    replay("usersig_tls", usersig_tls::run);
    replay("usersig_jwt", usersig_jwt::run);
    replay("ws_request", ws_request::run);
    replay("v4_rest", v4_rest::run);
    replay("config", config::run);
}
