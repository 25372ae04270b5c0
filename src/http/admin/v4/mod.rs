//! The Tencent-compatible REST API (PROTOCOL §7): `POST /v4/<service>/<command>?sdkappid=&identifier=&usersig=
//! &random=&contenttype=json`, authenticated by an admin's UserSig, always HTTP 200 with `ActionStatus`,
//! `ErrorCode`, `ErrorInfo` and `RequestId`. A business server that calls the cloud's API works against imlogin
//! by changing only the host.
//!
//! A call goes: the query string (`auth`), the command and its rate limit (here), the body, typed once with
//! the cloud's field names (`body`), and the command on the admin service (`commands`).

mod auth;
mod body;
mod commands;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use crate::admin::{Admin, AdminError};
use crate::config::RestLimits;
use crate::http::serve::ClientIp;
use crate::limits::rate::RateLimiter;

/// The most accounts one batch command takes (70206 above), and `query_online_status` (90011 above).
pub const MAX_BATCH: usize = 100;
pub const MAX_QUERY: usize = 500;

/// The largest body of a call (100 accounts with their profiles).
pub const V4_BODY_LIMIT: usize = 256 * 1024;

/// What the REST API needs.
#[derive(Clone)]
pub struct V4 {
    pub admin: Arc<Admin>,
    pub limits: Arc<RateLimiter>,
}

/// A failed call: its code and words.
struct Fail(u32, String);

impl Fail {
    fn new(code: u32, why: impl Into<String>) -> Fail {
        Fail(code, why.into())
    }
}

impl From<AdminError> for Fail {
    fn from(e: AdminError) -> Fail {
        match e {
            AdminError::Unavailable(cause) => {
                tracing::warn!(%cause, "REST call failed: unavailable");
                Fail::new(
                    70169,
                    "server busy (database or registry unreachable); retry",
                )
            }
            AdminError::NoAccount => Fail::new(70107, "Err_TLS_PT_Open_Login_Account_Not_Exist"),
            AdminError::NotFound(what) => Fail::new(60009, format!("{what} does not exist")),
            AdminError::Invalid(why) => Fail::new(70402, why),
        }
    }
}

/// A command's answer: the fields beside the envelope's.
type Answer = Result<Map<String, Value>, Fail>;

fn request_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The envelope: `OK` with the command's fields, or `FAIL` with the code.
fn envelope(result: Answer) -> Response {
    let mut body = match result {
        Ok(fields) => {
            let mut m = Map::new();
            m.insert("ActionStatus".into(), "OK".into());
            m.insert("ErrorCode".into(), 0.into());
            m.insert("ErrorInfo".into(), "".into());
            m.extend(fields);
            m
        }
        Err(Fail(code, why)) => {
            let mut m = Map::new();
            m.insert("ActionStatus".into(), "FAIL".into());
            m.insert("ErrorCode".into(), code.into());
            m.insert("ErrorInfo".into(), why.into());
            m
        }
    };
    body.insert("RequestId".into(), request_id().into());
    Json(Value::Object(body)).into_response()
}

/// The commands, with their name for rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    AccountImport,
    MultiaccountImport,
    AccountDelete,
    AccountCheck,
    Kick,
    QueryOnlineStatus,
    /// `query_online_status` by its other name; its answer also says `State`, as the cloud's did under it.
    QueryState,
}

impl Command {
    fn parse(service: &str, command: &str) -> Option<Command> {
        Some(match (service, command) {
            ("im_open_login_svc", "account_import") => Command::AccountImport,
            ("im_open_login_svc", "multiaccount_import") => Command::MultiaccountImport,
            ("im_open_login_svc", "account_delete") => Command::AccountDelete,
            ("im_open_login_svc", "account_check") => Command::AccountCheck,
            ("im_open_login_svc", "kick") => Command::Kick,
            ("openim", "query_online_status") => Command::QueryOnlineStatus,
            // The name the international edition of the cloud's documents gives it (and older clients use).
            ("openim", "querystate") => Command::QueryState,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Command::AccountImport => "account_import",
            Command::MultiaccountImport => "multiaccount_import",
            Command::AccountDelete => "account_delete",
            Command::AccountCheck => "account_check",
            Command::Kick => "kick",
            // One command by either name, and one limit.
            Command::QueryOnlineStatus | Command::QueryState => "query_online_status",
        }
    }

    /// The app's limit of calls per second.
    fn per_second(self, l: &RestLimits) -> u32 {
        match self {
            Command::AccountImport => l.account_import,
            Command::MultiaccountImport => l.multiaccount_import,
            Command::AccountDelete => l.account_delete,
            Command::AccountCheck => l.account_check,
            Command::Kick => l.kick,
            Command::QueryOnlineStatus | Command::QueryState => l.query_online_status,
        }
    }
}

/// `POST /v4/{service}/{command}`, or `GET` with the same query and body: clients written against the cloud send
/// both.
pub async fn call(
    State(v4): State<V4>,
    ClientIp(ip): ClientIp,
    method: Method,
    Path((service, command)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    // axum answers HEAD with the GET handler (and no body): a command must not run unseen.
    if method != Method::GET && method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, POST")],
        )
            .into_response();
    }
    // Read here, not by an extractor, so that a body over the limit is answered in the envelope too.
    let body = match axum::body::to_bytes(body, V4_BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            let f = Fail::new(
                60003,
                format!("the body is larger than {} KiB", V4_BODY_LIMIT / 1024),
            );
            return envelope(Err(f));
        }
    };
    envelope(dispatch(&v4, ip, &service, &command, query.as_deref(), &body).await)
}

async fn dispatch(
    v4: &V4,
    ip: std::net::IpAddr,
    service: &str,
    command: &str,
    query: Option<&str>,
    body: &[u8],
) -> Answer {
    let who = auth::authenticate(&v4.admin, ip, query)?;
    let cmd = Command::parse(service, command)
        .ok_or_else(|| Fail::new(60009, format!("unknown command {service}/{command}")))?;
    let app = v4
        .admin
        .app(who.sdkappid)
        .ok_or_else(|| Fail::new(60006, "unknown SDKAppID"))?;
    let per_second = cmd.per_second(&app.rest_limits);
    if !v4.limits.allow(
        who.sdkappid,
        cmd.name(),
        per_second,
        std::time::Instant::now(),
    ) {
        return Err(Fail::new(
            60007,
            format!("{} is limited to {per_second} calls per second", cmd.name()),
        ));
    }
    let request = body::Request::parse(cmd, body)?;
    commands::run(&v4.admin, &who, request).await
}
