// Shared by the fuzz target (fuzz/fuzz_targets/config.rs) and the replay of the seeds on stable
// (tests/api/fuzz_seeds.rs): `run` must not panic, hang or exhaust memory for any input.
//
// The configuration loader: a TOML document, and environment overrides (`IMLOGIN__…=…` lines after a NUL).

use imlogin::config::Settings;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = text.split_once('\0').unwrap_or((text, ""));
    if let Ok(s) = Settings::from_toml_str(toml) {
        let _ = s.masked_toml();
    }
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("IMLOGIN__{k}"), v.to_owned()))
        .collect();
    if let Ok(s) = Settings::load_with_env(None, env) {
        let _ = s.masked_toml();
    }
}
