//! The bodies' codes, one case for each way a body can be malformed.

use serde_json::json;

use super::body::Request;
use super::{Command, Fail};

/// The code a body gets, 0 if it parses.
fn code(cmd: Command, body: &str) -> u32 {
    Request::parse(cmd, body.as_bytes()).map_or_else(|Fail(code, _)| code, |_| 0)
}

#[test]
fn every_malformed_body_keeps_its_code() {
    use Command::*;
    let many = |n: usize| json!({"To_Account": vec!["u"; n]}).to_string();
    let batch = |n: usize| json!({"Accounts": vec!["u"; n]}).to_string();
    let cases: &[(Command, &str, u32)] = &[
        (AccountImport, "", 60003),
        (AccountImport, "[]", 60003),
        (AccountImport, "{", 60003),
        (QueryOnlineStatus, "[]", 90001),
        (QueryState, "nope", 90001),
        (AccountImport, r#"{"UserID": "alice"}"#, 0),
        (AccountImport, r#"{"Identifier": "alice"}"#, 0),
        (
            AccountImport,
            r#"{"UserID": null, "Identifier": "alice"}"#,
            0,
        ),
        (
            AccountImport,
            r#"{"UserID": 5, "Identifier": "alice"}"#,
            70402,
        ),
        (AccountImport, r#"{"UserID": "alice", "Identifier": 5}"#, 0),
        (AccountImport, r#"{}"#, 70402),
        (AccountImport, r#"{"UserID": "@TLS#a"}"#, 70402),
        (AccountImport, r#"{"UserID": "alice", "Nick": 5}"#, 70402),
        (AccountImport, r#"{"UserID": "alice", "FaceUrl": null}"#, 0),
        (AccountImport, r#"{"UserID": 5, "UserID": "alice"}"#, 0),
        (Kick, r#"{"Identifier": ""}"#, 70402),
        (MultiaccountImport, r#"{"Accounts": ["a", "b"]}"#, 0),
        (MultiaccountImport, r#"{"Accounts": [1]}"#, 70402),
        (MultiaccountImport, r#"{"Accounts": []}"#, 70206),
        (MultiaccountImport, &batch(100), 0),
        (MultiaccountImport, &batch(101), 70206),
        (
            MultiaccountImport,
            r#"{"AccountList": [{"UserID": "a", "Nick": "n"}]}"#,
            0,
        ),
        (
            MultiaccountImport,
            r#"{"AccountList": [{"UserID": "a", "Nick": 5}]}"#,
            70402,
        ),
        (
            MultiaccountImport,
            r#"{"AccountList": null, "Accounts": ["a"]}"#,
            70402,
        ),
        (MultiaccountImport, r#"{"AccountList": [["a"]]}"#, 0),
        (MultiaccountImport, r#"{}"#, 70402),
        (AccountDelete, r#"{"DeleteItem": [{"UserID": "a"}]}"#, 0),
        (AccountDelete, r#"{"DeleteItem": [["a"]]}"#, 70402),
        (AccountDelete, r#"{"DeleteItem": [{"UserID": 1}]}"#, 70402),
        (AccountDelete, r#"{"DeleteItem": {}}"#, 70402),
        (AccountCheck, r#"{"CheckItem": []}"#, 70206),
        (AccountCheck, r#"{"CheckItem": [{"UserID": "@TLS#a"}]}"#, 0),
        (
            QueryOnlineStatus,
            r#"{"To_Account": ["a"], "IsNeedDetail": 1}"#,
            0,
        ),
        (QueryOnlineStatus, r#"{}"#, 90001),
        (QueryOnlineStatus, r#"{"To_Account": []}"#, 90001),
        (QueryOnlineStatus, r#"{"To_Account": "a"}"#, 90001),
        (QueryOnlineStatus, r#"{"To_Account": [1]}"#, 90003),
        (QueryOnlineStatus, r#"{"To_Account": [null]}"#, 90003),
        (QueryOnlineStatus, &many(500), 0),
        (QueryOnlineStatus, &many(501), 90011),
        (
            QueryOnlineStatus,
            r#"{"To_Account": ["a"], "IsNeedDetail": 2}"#,
            90001,
        ),
        (
            QueryOnlineStatus,
            r#"{"To_Account": ["a"], "IsReturnInstid": 1.0}"#,
            90001,
        ),
        (
            QueryState,
            r#"{"To_Account": ["a"], "IsReturnInstid": true}"#,
            90001,
        ),
        (
            QueryState,
            r#"{"To_Account": ["a"], "IsNeedDetail": null}"#,
            0,
        ),
    ];
    for (cmd, body, expected) in cases {
        assert_eq!(code(*cmd, body), *expected, "{cmd:?} {body}");
    }
}
