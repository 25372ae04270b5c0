//! The command line: gen-usersig prints the official generators' bytes, verify-usersig explains, check-config.

use std::process::{Command, Output};

use crate::helpers::{APP, KEY};

const PY_TICKET: &str = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpYJkTE1NjRDiJZm5YFFzNPXFmekgG3zKHM1T9D3LzdODi-OKs8vCqpxcAvydnV2SSv2cy03cPcpDnA2SMgu0nUxslWoBHdYzUg__";
const CPP_TICKET: &str = "eAGrVgrxCdYrSy1SslIy0jNQ0gHzi1OyEwsKMlOUrAxNDKAAIpOZkppXkpmWCdZQkZmYn1WaB9VUkpmbCtRgjqohtaIgswgkbmpqagSUglqQmQ600KfM0TxF37PcPD24OK84uyysysklwN-Z2SWp1M*53MTdozzE2SAps0DbycRWqRYAcDcx8g__";

fn imlogin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .args(args)
        .env_remove("IMLOGIN_SECRET_KEY")
        .output()
        .unwrap()
}

/// `imlogin verify-usersig` for the demo app, as of `now` if given.
fn verify(key: &str, user: &str, usersig: &str, now: Option<&str>) -> Output {
    let app = APP.to_string();
    let mut args = vec![
        "verify-usersig",
        "--sdkappid",
        &app,
        "--key",
        key,
        "--user",
        user,
        "--usersig",
        usersig,
    ];
    if let Some(now) = now {
        args.extend(["--now", now]);
    }
    imlogin(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn gen_usersig_prints_the_official_bytes() {
    let app = APP.to_string();
    let o = imlogin(&[
        "gen-usersig",
        "--sdkappid",
        &app,
        "--key",
        KEY,
        "--user",
        "xiaojun",
        "--time",
        "1700000000",
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim_end(), PY_TICKET);
    let o = imlogin(&[
        "gen-usersig",
        "--sdkappid",
        &app,
        "--key",
        KEY,
        "--user",
        "xiaojun",
        "--expire",
        "60",
    ]);
    assert!(o.status.success());
    let fresh = stdout(&o).trim_end().to_owned();
    let v = verify(KEY, "xiaojun", &fresh, None);
    assert!(v.status.success(), "{}", stdout(&v));
}

#[test]
fn verify_usersig_explains_and_exits_by_result() {
    for ticket in [PY_TICKET, CPP_TICKET] {
        let o = verify(KEY, "xiaojun", ticket, Some("1700000000"));
        let out = stdout(&o);
        assert!(o.status.success(), "{out}");
        assert!(
            out.contains("TLS sig v2")
                && out.contains("identifier: xiaojun")
                && out.contains("1715552000"),
            "{out}"
        );
        assert!(out.contains("valid"), "{out}");
    }
    let cases = [
        (KEY, "xiaojun", PY_TICKET, Some("1715552001"), "70001"),
        (KEY, "someone", PY_TICKET, Some("1700000000"), "70013"),
        ("wrong", "xiaojun", PY_TICKET, Some("1700000000"), "70009"),
        (KEY, "xiaojun", "%%%", None, "70003"),
        // Not a UserID: refused as a login refuses it, whatever the ticket.
        (KEY, "@TLS#xiaojun", PY_TICKET, Some("1700000000"), "7003"),
    ];
    for (key, user, ticket, now, code) in cases {
        let o = verify(key, user, ticket, now);
        assert_eq!(o.status.code(), Some(1));
        assert!(stdout(&o).contains(code), "{}", stdout(&o));
    }
}

#[test]
fn check_config_masks_secrets_and_names_bad_keys() {
    let o = Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .args(["check-config"])
        .env(
            "IMLOGIN__DATABASE__URL",
            "postgres://imlogin:pa55word-xyz@db/imlogin",
        )
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(
        out.contains("[server]") && out.contains("sdkappid = 1400000000"),
        "{out}"
    );
    for secret in [
        "pa55word-xyz",
        KEY,
        "demo-session-secret",
        "demo-admin-api-key",
    ] {
        assert!(
            !out.contains(secret),
            "check-config printed a secret: {out}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[apps]]\nsdkappid = 1\nsecret_key = \"k\"\nadmins = []\n",
    )
    .unwrap();
    let o = imlogin(&["check-config", "--config", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("apps[0].admins"));
}

#[test]
fn help_lists_every_subcommand() {
    let out = stdout(&imlogin(&["--help"]));
    for sub in ["serve", "gen-usersig", "verify-usersig", "check-config"] {
        assert!(out.contains(sub), "{out}");
    }
}

/// `imlogin check-config` with only these `IMLOGIN__…` variables (and the embedded defaults).
fn check_config(env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imlogin"))
        .arg("check-config")
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Keys of our own for every secret the embedded defaults fill with a public one.
const OWN_SECRETS: [(&str, &str); 3] = [
    ("IMLOGIN__SESSION__SECRET", "our-own-session-secret-value"),
    ("IMLOGIN__APPS__0__SECRET_KEY", "our-own-secret-key-value"),
    (
        "IMLOGIN__APPS__0__ADMIN_API_KEY",
        "our-own-admin-api-key-value",
    ),
];

/// The lines of stderr that warn.
fn warnings(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("warning"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn check_config_warns_about_each_public_example_secret_by_its_key() {
    let all = warnings(&check_config(&[]));
    for key in [
        "session.secret",
        "apps[0].secret_key",
        "apps[0].admin_api_key",
    ] {
        assert!(
            all.iter().any(|w| w.contains(&format!("`{key}`"))),
            "{key}: {all:?}"
        );
    }
    assert!(!all.iter().any(|w| w.contains(KEY)), "never the value");
    // Only the admin API key left at the demo's, or at the compose example's: that key is named, alone.
    for public in [
        "demo-admin-api-key-FOR-TRYING-ONLY",
        "compose-admin-api-key-for-trying-only",
    ] {
        let mut env = OWN_SECRETS.to_vec();
        env[2].1 = public;
        let o = check_config(&env);
        assert!(o.status.success());
        let w = warnings(&o);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("`apps[0].admin_api_key`"), "{w:?}");
        assert!(!w[0].contains(public), "never the value: {w:?}");
    }
    // The demo's secret key under another SDKAppID is as public.
    let mut env = OWN_SECRETS.to_vec();
    env[1].1 = KEY;
    env.push(("IMLOGIN__APPS__0__SDKAPPID", "1400000042"));
    let w = warnings(&check_config(&env));
    assert!(
        w.len() == 1 && w[0].contains("`apps[0].secret_key`"),
        "{w:?}"
    );
    assert_eq!(warnings(&check_config(&OWN_SECRETS)), Vec::<String>::new());
}

#[test]
fn check_config_refuses_two_apps_with_one_admin_api_key_naming_both() {
    let mut env = OWN_SECRETS.to_vec();
    env.extend([
        ("IMLOGIN__APPS__1__SDKAPPID", "1400000001"),
        ("IMLOGIN__APPS__1__SECRET_KEY", "the-second-apps-secret-key"),
        ("IMLOGIN__APPS__1__ADMINS", r#"["administrator"]"#),
        (
            "IMLOGIN__APPS__1__ADMIN_API_KEY",
            "our-own-admin-api-key-value",
        ),
    ]);
    let o = check_config(&env);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`apps[1].admin_api_key`: the same key as apps[0] (1400000000)"),
        "{err}"
    );
    assert!(!err.contains("our-own-admin-api-key-value"), "{err}");
    // Each its own: accepted.
    env.last_mut().unwrap().1 = "the-second-apps-admin-api-key";
    assert!(check_config(&env).status.success());
}
