#![no_main]

include!("../targets/v4_rest.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));
