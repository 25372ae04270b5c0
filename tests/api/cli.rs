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
