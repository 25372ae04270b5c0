use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn embedded_default_is_valid() {
    let s = Settings::load_with_env(None, env(&[])).unwrap();
    assert_eq!(s.server.max_frame_bytes, 16384);
    assert_eq!(s.registry.backend, RegistryBackend::Memory);
    assert!(s.database.url.expose().starts_with("sqlite://data/"));
    assert_eq!(s.apps.len(), 1);
    assert_eq!(
        s.public_secrets().len(),
        3,
        "the demo's three public secrets"
    );
    // The limits PROTOCOL §10 names, at its values; the per-address rate of new sockets is opt-in.
    assert_eq!(s.limits.login_failures_per_minute, 20);
    assert_eq!(s.limits.connections_per_ip, 10_000);
    assert_eq!(s.limits.login_timeout_secs, 10);
    assert_eq!(s.limits.frames_per_second, 50);
    assert_eq!(s.limits.new_connections_per_ip_per_second, 0);
    assert_eq!(s.limits.abusive_closes_per_ip_per_second, 5);
}

#[test]
fn env_overrides_keys_and_keeps_strings_strings() {
    let s = Settings::load_with_env(
        None,
        env(&[
            (
                "IMLOGIN__DATABASE__URL",
                "postgres://postgres@127.0.0.1/imlogin",
            ),
            ("IMLOGIN__REGISTRY__BACKEND", "redis"),
            ("IMLOGIN__SERVER__MAX_FRAME_BYTES", "4096"),
            ("IMLOGIN__SESSION__SECRET", "12345678901234567890"),
            ("IMLOGIN__APPS__0__POLICY__MODE", "multi"),
            ("IMLOGIN__APPS__0__ADMINS", r#"["root", "ops"]"#),
            ("OTHER__SERVER__LISTEN", "nonsense"),
        ]),
    )
    .unwrap();
    assert_eq!(
        s.database.url.expose(),
        "postgres://postgres@127.0.0.1/imlogin"
    );
    assert_eq!(s.registry.backend, RegistryBackend::Redis);
    assert_eq!(s.server.max_frame_bytes, 4096);
    assert_eq!(s.session.secret.expose(), "12345678901234567890");
    assert_eq!(s.apps[0].admins, vec!["root", "ops"]);
}

#[test]
fn env_can_append_an_app() {
    let s = Settings::load_with_env(
        None,
        env(&[
            ("IMLOGIN__APPS__1__SDKAPPID", "1400000001"),
            ("IMLOGIN__APPS__1__SECRET_KEY", "another-secret-key"),
            ("IMLOGIN__APPS__1__ADMINS", r#"["admin"]"#),
        ]),
    )
    .unwrap();
    assert_eq!(s.apps.len(), 2);
    assert_eq!(s.apps[1].sdkappid, 1_400_000_001);
}

#[test]
fn errors_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("IMLOGIN__SERVER__LISTEN", "not-an-address", "server.listen"),
        (
            "IMLOGIN__SERVER__MAX_FRAME_BYTES",
            "10",
            "server.max_frame_bytes",
        ),
        ("IMLOGIN__REGISTRY__BACKEND", "etcd", "registry.backend"),
        (
            "IMLOGIN__REGISTRY__REDIS_TIMEOUT_MS",
            "0",
            "registry.redis_timeout_ms",
        ),
        (
            "IMLOGIN__REGISTRY__REDIS_TIMEOUT_MS",
            "3334",
            "a third of registry.node_timeout_secs",
        ),
        ("IMLOGIN__DATABASE__URL", "mysql://x", "database.url"),
        ("IMLOGIN__SESSION__SECRET", "short", "session.secret"),
        (
            "IMLOGIN__APPS__0__POLICY__WEB_INSTANCES",
            "11",
            "apps[0].policy.web_instances",
        ),
        (
            "IMLOGIN__APPS__0__POLICY__MODE",
            "quad",
            "apps[0].policy.mode",
        ),
        (
            "IMLOGIN__APPS__0__ADMINS",
            r#"["@TIM#x"]"#,
            "apps[0].admins[0]",
        ),
        ("IMLOGIN__SERVER__LISTN", "1", "server.listn"),
    ];
    for (k, v, key) in cases {
        let err = Settings::load_with_env(None, env(&[(k, v)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(key),
            "{k}={v}: error {err:?} should name {key}"
        );
    }
}

#[test]
fn a_webhook_needs_a_real_url_and_a_token_that_is_not_empty() {
    let hook = |url: &str, token: Option<&str>| {
        let mut e = vec![("IMLOGIN__APPS__0__WEBHOOK__URL", url)];
        e.extend(token.map(|t| ("IMLOGIN__APPS__0__WEBHOOK__TOKEN", t)));
        Settings::load_with_env(None, env(&e))
    };
    assert!(hook("http://u:p@127.0.0.1:9/hook", Some("t")).is_ok());
    assert!(hook("https://hooks.example.com/im", None).is_ok());
    let err = hook("http://127.0.0.1:9/hook", Some("")).unwrap_err();
    assert!(err.to_string().contains("apps[0].webhook.token"), "{err}");
    for url in ["ftp://h/x", "http://", "http://u:secret-pw@exa mple/x"] {
        let err = hook(url, Some("t")).unwrap_err().to_string();
        assert!(err.contains("apps[0].webhook.url"), "{url}: {err}");
        assert!(!err.contains("secret-pw"), "{err}");
    }
}

#[test]
fn masked_output_hides_every_secret() {
    let s = Settings::load_with_env(
        None,
        env(&[(
            "IMLOGIN__DATABASE__URL",
            "postgres://user:hunter2-password@db/imlogin",
        )]),
    )
    .unwrap();
    let out = s.masked_toml();
    assert!(!out.contains("hunter2"), "{out}");
    assert!(!out.contains(s.apps[0].secret_key.expose()), "{out}");
    assert!(!out.contains(s.session.secret.expose()), "{out}");
    assert!(!format!("{s:?}").contains(s.session.secret.expose()));
}

#[test]
fn redis_cluster_seeds_are_checked_without_showing_them() {
    let with = |seeds: &str| {
        Settings::load_with_env(
            None,
            env(&[
                ("IMLOGIN__REGISTRY__BACKEND", "redis"),
                ("IMLOGIN__REGISTRY__REDIS_CLUSTER_NODES", seeds),
            ]),
        )
    };
    let s = with(r#"["redis://:pw@10.0.0.1:7000","redis://10.0.0.2:7000"]"#).unwrap();
    assert_eq!(s.registry.redis_cluster_nodes.len(), 2);
    for (seeds, message) in [
        (r#"["rediss://h:7000"]"#, "must start with redis://"),
        (
            r#"["redis://h:7000","redis://:secretpw@h:notaport"]"#,
            "not a redis://",
        ),
        (r#"["redis://h:7000/3"]"#, "only database 0"),
    ] {
        let e = with(seeds).unwrap_err().to_string();
        assert!(e.contains("registry.redis_cluster_nodes["), "{e}");
        assert!(e.contains(message), "{e}");
        assert!(!e.contains("secretpw"), "{e}");
    }
}
