#![no_main]

include!("../targets/usersig_jwt.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));
