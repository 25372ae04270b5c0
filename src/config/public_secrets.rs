//! Secrets this repository publishes, hence known to anyone: the embedded demo's (`config/default.toml`), the
//! fallbacks of `docker-compose.yml` and the placeholders of `.env.example`. A server that uses one is warned
//! about, by the key that holds it, at start and by `check-config` (PROTOCOL §10); the value is never printed.

use crate::config::{Settings, DEFAULT_TOML};

/// The examples' values; tests/api/deploy.rs holds this list to the files.
const EXAMPLES: [(&str, &str); 5] = [
    (
        "compose-session-secret-for-trying-only",
        "docker-compose.yml",
    ),
    (
        "compose-admin-api-key-for-trying-only",
        "docker-compose.yml",
    ),
    ("change-me-at-least-16-bytes-session-secret", ".env.example"),
    ("change-me-the-apps-secret-key", ".env.example"),
    ("change-me-at-least-16-bytes-admin-key", ".env.example"),
];

/// A configuration key whose secret is a published one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicSecret {
    /// As errors name keys: `session.secret`, `apps[0].admin_api_key`.
    pub key: String,
    /// The file that publishes it.
    pub from: &'static str,
}

/// Every published value with its file: the embedded demo's secrets, then the examples'.
fn published() -> Vec<(String, &'static str)> {
    let demo = Settings::from_toml_str(DEFAULT_TOML).expect("embedded default config is valid");
    let mut values = vec![demo.session.secret.expose().to_owned()];
    for app in &demo.apps {
        values.push(app.secret_key.expose().to_owned());
        values.extend(app.admin_api_key.as_ref().map(|k| k.expose().to_owned()));
    }
    let mut all: Vec<(String, &'static str)> = values
        .into_iter()
        .map(|v| (v, "config/default.toml"))
        .collect();
    all.extend(EXAMPLES.iter().map(|(v, f)| ((*v).to_owned(), *f)));
    all
}

/// The keys of `settings` that hold a published secret, in the order of the configuration. Whatever the key
/// (the demo's secret key under another SDKAppID signs tickets as well), and whichever file published it.
pub fn find(settings: &Settings) -> Vec<PublicSecret> {
    let published = published();
    let mut secrets = vec![("session.secret".to_owned(), Some(&settings.session.secret))];
    for (i, app) in settings.apps.iter().enumerate() {
        let at = |k: &str| format!("apps[{i}].{k}");
        secrets.push((at("secret_key"), Some(&app.secret_key)));
        secrets.push((at("previous_secret_key"), app.previous_secret_key.as_ref()));
        secrets.push((at("admin_api_key"), app.admin_api_key.as_ref()));
        if let Some(jwt) = &app.jwt {
            secrets.push((at("jwt.secret"), jwt.secret.as_ref()));
            secrets.push((at("jwt.previous_secret"), jwt.previous_secret.as_ref()));
        }
        if let Some(hook) = &app.webhook {
            secrets.push((at("webhook.token"), hook.token.as_ref()));
        }
    }
    secrets
        .into_iter()
        .filter_map(|(key, secret)| {
            let value = secret?.expose();
            let (_, from) = published.iter().find(|(v, _)| v == value)?;
            Some(PublicSecret { key, from })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_hold_three_and_the_examples_are_known() {
        let s = Settings::from_toml_str(DEFAULT_TOML).unwrap();
        let keys: Vec<String> = find(&s).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "session.secret",
                "apps[0].secret_key",
                "apps[0].admin_api_key"
            ]
        );
        let mut s = s;
        s.session.secret = crate::config::Secret::new("compose-session-secret-for-trying-only");
        s.apps[0].secret_key = crate::config::Secret::new("an-own-key");
        assert_eq!(
            find(&s),
            [
                PublicSecret {
                    key: "session.secret".into(),
                    from: "docker-compose.yml"
                },
                PublicSecret {
                    key: "apps[0].admin_api_key".into(),
                    from: "config/default.toml"
                }
            ]
        );
    }
}
