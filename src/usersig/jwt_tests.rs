use super::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "jwt-test-secret-at-least-16-bytes";
const APP: u32 = 1_400_000_000;
const NOW: i64 = 1_700_000_000;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn hs_verifier(algs: Vec<JwtAlgorithm>, audience: Option<&str>) -> JwtVerifier {
    JwtVerifier::new(&algs, Some(SECRET), None, audience).unwrap()
}

fn hs256(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn check(v: &JwtVerifier, token: &str, user: &str) -> Result<Verified, Code> {
    let t = JwtTicket::decode(token).map_err(|f| f.code)?;
    v.verify(&t, APP, user, NOW).map_err(|f| f.code)
}

#[test]
fn hs256_valid_with_leeway_and_claims() {
    let v = hs_verifier(vec![JwtAlgorithm::HS256], Some("imlogin"));
    let token = hs256(
        json!({"sub": "alice", "exp": NOW + 60, "iat": NOW + 30, "nbf": NOW + 59,
        "aud": ["other", "imlogin"], "sdkappid": APP.to_string()}),
    );
    assert_eq!(
        check(&v, &token, "alice"),
        Ok(Verified {
            issued_at: NOW + 30,
            expires_at: NOW + 60
        })
    );
    let numeric_app = hs256(json!({"sub": "alice", "exp": NOW, "sdkappid": APP, "aud": "imlogin"}));
    assert_eq!(
        check(&v, &numeric_app, "alice").unwrap().issued_at,
        0,
        "no iat: issued at 0"
    );
}

#[test]
fn every_jwt_failure_has_its_code() {
    let v = hs_verifier(vec![JwtAlgorithm::HS256], Some("imlogin"));
    let base = json!({"sub": "alice", "exp": NOW + 60, "aud": "imlogin"});
    let with = |k: &str, val: Value| {
        let mut c = base.clone();
        c[k] = val;
        hs256(c)
    };
    let mut no_exp = base.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let cases: Vec<(String, &str, Code)> = vec![
        (hs256(no_exp), "alice", Code::UserSigCheckFailed),
        (
            with("sdkappid", json!(APP + 1)),
            "alice",
            Code::UserSigMismatchSdkAppId,
        ),
        (
            with("sdkappid", json!("nope")),
            "alice",
            Code::UserSigMismatchSdkAppId,
        ),
        (hs256(base.clone()), "bob", Code::UserSigMismatchId),
        (with("exp", json!(NOW - 1)), "alice", Code::UserSigExpired),
        (
            with("nbf", json!(NOW + 61)),
            "alice",
            Code::UserSigCheckFailed,
        ),
        (
            with("iat", json!(NOW + 61)),
            "alice",
            Code::UserSigCheckFailed,
        ),
        (
            with("aud", json!("someone-else")),
            "alice",
            Code::UserSigCheckFailed,
        ),
        (with("sub", json!(7)), "alice", Code::UserSigCheckFailed),
        ("a.b.c".to_owned(), "alice", Code::UserSigCheckFailed),
    ];
    for (token, user, code) in cases {
        assert_eq!(check(&v, &token, user), Err(code), "{token}");
    }
    // Wrong key: 70009.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &base,
        &EncodingKey::from_secret(b"another-secret-of-enough-length"),
    )
    .unwrap();
    assert_eq!(check(&v, &forged, "alice"), Err(Code::UserSigMismatchKey));
    // An algorithm the app did not configure: 70003.
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &base,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(check(&v, &hs512, "alice"), Err(Code::UserSigCheckFailed));
}

#[test]
fn alg_none_is_refused() {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": "alice", "exp": NOW + 60}))
    );
    assert!(looks_like_jwt(&token));
    assert_eq!(
        JwtTicket::decode(&token).unwrap_err().code,
        Code::UserSigCheckFailed
    );
}

#[test]
fn asymmetric_algorithms() {
    let claims = json!({"sub": "alice", "exp": NOW + 60});
    for (alg, jwt_alg, name) in [
        (JwtAlgorithm::RS256, Algorithm::RS256, "rs256"),
        (JwtAlgorithm::ES256, Algorithm::ES256, "es256"),
        (JwtAlgorithm::EdDSA, Algorithm::EdDSA, "eddsa"),
    ] {
        let private = fixture(&format!("{name}.key"));
        let key = match alg {
            JwtAlgorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()),
            JwtAlgorithm::ES256 => EncodingKey::from_ec_pem(private.as_bytes()),
            _ => EncodingKey::from_ed_pem(private.as_bytes()),
        }
        .unwrap();
        let token = jsonwebtoken::encode(&Header::new(jwt_alg), &claims, &key).unwrap();
        let pem = fixture(&format!("{name}.pub"));
        let v =
            JwtVerifier::new(&[alg, JwtAlgorithm::HS256], Some(SECRET), Some(&pem), None).unwrap();
        assert!(check(&v, &token, "alice").is_ok(), "{name}");
        // Tampered claims keep the signature of the original: 70009.
        let mut parts: Vec<&str> = token.split('.').collect();
        let tampered_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"sub": "alice", "exp": NOW + 9999}).to_string());
        parts[1] = &tampered_claims;
        assert_eq!(
            check(&v, &parts.join("."), "alice"),
            Err(Code::UserSigMismatchKey),
            "{name}"
        );
    }
}

#[test]
fn bad_configs_name_the_key() {
    let err = |algs: &[JwtAlgorithm], secret: Option<&str>, pem: Option<&str>| {
        JwtVerifier::new(algs, secret, pem, None).err().map(|e| e.0)
    };
    use JwtAlgorithm::*;
    assert_eq!(err(&[], Some(SECRET), None), Some("algorithms"));
    assert_eq!(err(&[HS256], None, None), Some("secret"));
    assert_eq!(err(&[HS256], Some("short"), None), Some("secret"));
    assert_eq!(err(&[RS256], None, None), Some("public_key_pem"));
    assert_eq!(err(&[RS256], None, Some("garbage")), Some("public_key_pem"));
    let pem = fixture("rs256.pub");
    assert_eq!(err(&[RS256, ES256], None, Some(&pem)), Some("algorithms"));
}

#[test]
fn a_previous_secret_verifies_during_a_rotation() {
    let old = hs256(json!({"sub": "alice", "exp": NOW + 60}));
    let new_secret = "the-rotated-jwt-secret-0123";
    let rotated = JwtVerifier::new(&[JwtAlgorithm::HS256], Some(new_secret), None, None).unwrap();
    assert_eq!(
        check(&rotated, &old, "alice"),
        Err(Code::UserSigMismatchKey)
    );
    let rotating = JwtVerifier::new(&[JwtAlgorithm::HS256], Some(new_secret), None, None)
        .unwrap()
        .with_previous(Some(SECRET), None)
        .unwrap();
    assert!(check(&rotating, &old, "alice").is_ok());
    let fresh = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "exp": NOW + 60}),
        &EncodingKey::from_secret(new_secret.as_bytes()),
    )
    .unwrap();
    assert!(check(&rotating, &fresh, "alice").is_ok());
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "exp": NOW + 60}),
        &EncodingKey::from_secret(b"neither-key-of-the-two-0123"),
    )
    .unwrap();
    assert_eq!(
        check(&rotating, &forged, "alice"),
        Err(Code::UserSigMismatchKey)
    );
    assert!(
        JwtVerifier::new(&[JwtAlgorithm::HS256], Some(new_secret), None, None)
            .unwrap()
            .with_previous(Some("short"), None)
            .is_err()
    );
}
