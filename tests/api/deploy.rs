//! Docker cannot run here, so the deployment files are checked by what the binary would do with them.

use std::collections::BTreeMap;
use std::process::Command;

use serde_yaml::Value;

fn root(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Resolves compose's `${NAME:-default}` the way compose does when NAME is unset.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map(|(_, d)| d).unwrap_or(""));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn compose() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(root("docker-compose.yml")).unwrap()).unwrap()
}

#[test]
fn compose_environment_passes_check_config() {
    let c = compose();
    let env: BTreeMap<String, String> = c["services"]["imlogin"]["environment"]
        .as_mapping()
        .expect("environment as a map")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                interpolate(v.as_str().expect("quoted string values")),
            )
        })
        .collect();
    assert!(env["IMLOGIN__DATABASE__URL"].starts_with("postgres://"));
    let out = Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .arg("check-config")
        .env_clear()
        .envs(&env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "compose env rejected: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("listen = \"0.0.0.0:8080\""), "{printed}");
}

#[test]
fn compose_waits_for_a_healthy_postgres_and_keeps_data_in_named_volumes() {
    let c = compose();
    let pg = &c["services"]["postgres"];
    let test = serde_yaml::to_string(&pg["healthcheck"]["test"]).unwrap();
    assert!(test.contains("pg_isready"), "{test}");
    assert_eq!(
        c["services"]["imlogin"]["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    for (service, volume) in [("postgres", "pgdata"), ("imlogin", "imlogin-data")] {
        let mounts = serde_yaml::to_string(&c["services"][service]["volumes"]).unwrap();
        assert!(mounts.contains(volume), "{service}: {mounts}");
        assert!(c["volumes"].get(volume).is_some(), "named volume {volume}");
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_healthcheck() {
    let d = std::fs::read_to_string(root("Dockerfile")).unwrap();
    assert_eq!(
        d.lines().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "build and runtime stages"
    );
    assert!(
        d.contains("Cargo.lock ./") && d.contains("--locked"),
        "cached, locked dependency build"
    );
    let user = d
        .lines()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(d.contains("STOPSIGNAL SIGTERM"));
    assert!(d.contains("HEALTHCHECK") && d.contains("/healthz"));
    // Every binary the manifest declares exists in the dependency layer, or cargo refuses to build it.
    let manifest = std::fs::read_to_string(root("Cargo.toml")).unwrap();
    for line in manifest.lines().filter(|l| l.starts_with("path = \"src/")) {
        let path = line.trim_start_matches("path = \"").trim_end_matches('"');
        let stub = if path == "src/lib.rs" {
            "touch src/lib.rs"
        } else {
            path
        };
        assert!(d.contains(stub), "the dependency layer stubs {path}");
    }
    for dir in ["config", "migrations", "src"] {
        assert!(
            d.contains(&format!("COPY {dir} {dir}")),
            "the build copies {dir}/"
        );
    }
}
