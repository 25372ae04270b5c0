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
        "a locked build"
    );
    assert!(
        d.contains("--mount=type=cache,target=/usr/local/cargo/registry")
            && d.contains("--mount=type=cache,target=/src/target"),
        "dependencies cached between builds"
    );
    let user = d
        .lines()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(d.contains("STOPSIGNAL SIGTERM"));
    assert!(d.contains("HEALTHCHECK") && d.contains("/healthz"));
    // Cargo reads every workspace member's manifest: each must be in the build context.
    let manifest = std::fs::read_to_string(root("Cargo.toml")).unwrap();
    let members: toml::Value = toml::from_str(&manifest).unwrap();
    for member in members["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        assert!(
            d.contains(&format!("COPY {member} {member}")),
            "the build copies the workspace member {member}/"
        );
    }
    assert!(
        !d.contains("fn main() {}"),
        "no stub binaries: the build compiles the real sources"
    );
    for dir in ["config", "migrations", "src"] {
        assert!(
            d.contains(&format!("COPY {dir} {dir}")),
            "the build copies {dir}/"
        );
    }
}
