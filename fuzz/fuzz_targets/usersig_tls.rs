#![no_main]

include!("../targets/usersig_tls.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));
