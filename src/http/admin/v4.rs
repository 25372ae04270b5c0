//! The Tencent-compatible REST API (PROTOCOL §7): `POST /v4/<service>/<command>?sdkappid=&identifier=&usersig=
//! &random=&contenttype=json`, authenticated by an admin's UserSig, always HTTP 200 with `ActionStatus`,
//! `ErrorCode`, `ErrorInfo` and `RequestId`. A business server that calls the cloud's API works against imlogin
//! by changing only the host.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::accounts::Profile;
use crate::admin::{Admin, AdminActor, AdminError, OnlineState};
use crate::http::serve::ClientIp;
use crate::limits::rate::RateLimiter;
use crate::model::is_valid_user_id;
use crate::model::Code;
use crate::model::Platform;
use crate::usersig::Ticket;

/// The most accounts one batch command takes (70206 above), and `query_online_status` (90011 above).
pub const MAX_BATCH: usize = 100;
pub const MAX_QUERY: usize = 500;

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

fn request_id() -> String {
    let bytes: [u8; 8] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The envelope: `OK` with the command's fields, or `FAIL` with the code.
fn envelope(result: Result<Map<String, Value>, Fail>) -> Response {
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

/// The largest body of a call (100 accounts with their profiles).
pub const V4_BODY_LIMIT: usize = 256 * 1024;

async fn dispatch(
    v4: &V4,
    ip: std::net::IpAddr,
    service: &str,
    command: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, Fail> {
    let who = authenticate(v4, ip, query).await?;
    let cmd = Command::parse(service, command)
        .ok_or_else(|| Fail::new(60009, format!("unknown command {service}/{command}")))?;
    let app = v4
        .admin
        .sessions()
        .auth
        .apps()
        .get(who.sdkappid)
        .ok_or_else(|| Fail::new(60006, "unknown SDKAppID"))?;
    let l = &app.rest_limits;
    let per_second = match cmd {
        Command::AccountImport => l.account_import,
        Command::MultiaccountImport => l.multiaccount_import,
        Command::AccountDelete => l.account_delete,
        Command::AccountCheck => l.account_check,
        Command::Kick => l.kick,
        Command::QueryOnlineStatus | Command::QueryState => l.query_online_status,
    };
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
    let body: Value = serde_json::from_slice(body).map_err(|_| match cmd {
        Command::QueryOnlineStatus | Command::QueryState => {
            Fail::new(90001, "the body is not valid JSON")
        }
        _ => Fail::new(60003, "the body is not valid JSON"),
    })?;
    let Value::Object(body) = body else {
        return Err(match cmd {
            Command::QueryOnlineStatus | Command::QueryState => {
                Fail::new(90001, "the body must be a JSON object")
            }
            _ => Fail::new(60003, "the body must be a JSON object"),
        });
    };
    let admin = &v4.admin;
    match cmd {
        Command::AccountImport => account_import(admin, &who, &body).await,
        Command::MultiaccountImport => multiaccount_import(admin, &who, &body).await,
        Command::AccountDelete => account_delete(admin, &who, &body).await,
        Command::AccountCheck => account_check(admin, &who, &body).await,
        Command::Kick => kick(admin, &who, &body).await,
        Command::QueryOnlineStatus => query_online_status(admin, &who, &body, false).await,
        Command::QueryState => query_online_status(admin, &who, &body, true).await,
    }
}

/// The query string's app, admin and ticket, checked: 60012 no sdkappid · 60006 bad or unknown sdkappid · 60004
/// no identifier · 60005 no usersig · 60002 `contenttype` not json or `random` not a 32-bit number · 60010 not
/// an admin of the app · a bad ticket: 70050 if its address is throttled, else its own code (70001, 70003,
/// 70009, …).
async fn authenticate(
    v4: &V4,
    ip: std::net::IpAddr,
    query: Option<&str>,
) -> Result<AdminActor, Fail> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| Fail::new(60002, "the query string cannot be read"))?;
    let q: HashMap<&str, &str> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let sdkappid = q
        .get("sdkappid")
        .ok_or_else(|| Fail::new(60012, "sdkappid is missing from the query string"))?;
    let sdkappid: u32 = sdkappid
        .parse()
        .map_err(|_| Fail::new(60006, "sdkappid must be a 32-bit unsigned number"))?;
    let sessions = v4.admin.sessions();
    let app = sessions
        .auth
        .apps()
        .get(sdkappid)
        .ok_or_else(|| Fail::new(60006, "unknown SDKAppID"))?;
    let identifier = q
        .get("identifier")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fail::new(60004, "identifier is missing from the query string"))?;
    let usersig = q
        .get("usersig")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fail::new(60005, "usersig is missing from the query string"))?;
    if q.get("contenttype") != Some(&"json") {
        return Err(Fail::new(60002, "contenttype=json is required"));
    }
    if q.get("random").is_none_or(|r| r.parse::<u32>().is_err()) {
        return Err(Fail::new(60002, "random must be a number 0-4294967295"));
    }
    if !app.admins.iter().any(|a| a == identifier) {
        return Err(Fail::new(60010, "identifier is not an admin of this app"));
    }
    // The ticket is checked first: a valid one always passes, so that failures (counted per source address)
    // cannot lock an admin out, whoever causes them and from wherever. A bad one from an address over the limit
    // answers 70050, not its own code (which would tell a guesser more), and is not counted again.
    let verified = Ticket::decode(usersig)
        .and_then(|t| t.verify(&app.keys, sdkappid, identifier, sessions.clock.now_secs()));
    if let Err(f) = verified {
        let failures = v4.admin.failed_auth();
        if let Some(secs) = failures.wait_secs(ip, None) {
            return Err(Fail::new(
                Code::FrequencyLimit.number(),
                format!("too many failed admin authentications from this address; retry after {secs} seconds"),
            ));
        }
        failures.record_failure(ip, None);
        return Err(Fail::new(f.code.number(), f.message));
    }
    Ok(AdminActor {
        sdkappid,
        admin: (*identifier).to_owned(),
        ip,
    })
}

fn ok() -> Result<Map<String, Value>, Fail> {
    Ok(Map::new())
}

/// A string field, or 70402.
fn text<'a>(body: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Fail> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Fail::new(70402, format!("{name} must be a string"))),
    }
}

/// The account a single-account command names: `UserID`, or the legacy `Identifier`.
fn user_id(body: &Map<String, Value>) -> Result<&str, Fail> {
    let user = match text(body, "UserID")? {
        Some(u) => u,
        None => text(body, "Identifier")?.ok_or_else(|| Fail::new(70402, "UserID is required"))?,
    };
    if !is_valid_user_id(user) {
        return Err(Fail::new(70402, format!("invalid UserID {user:?}")));
    }
    Ok(user)
}

/// A list field of at most `max` entries (70206 above).
fn list<'a>(body: &'a Map<String, Value>, name: &str, max: usize) -> Result<&'a Vec<Value>, Fail> {
    let list = match body.get(name) {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(Fail::new(70402, format!("{name} must be an array"))),
        None => return Err(Fail::new(70402, format!("{name} is required"))),
    };
    if list.is_empty() || list.len() > max {
        return Err(Fail::new(
            70206,
            format!("{name} must hold 1 to {max} entries"),
        ));
    }
    Ok(list)
}

/// `[{"UserID": …}, …]` → the UserIDs (a missing or mistyped one is 70402).
fn user_items(items: &[Value]) -> Result<Vec<String>, Fail> {
    items
        .iter()
        .map(|item| match item.get("UserID") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(Fail::new(70402, "each item needs a UserID string")),
        })
        .collect()
}

async fn account_import(
    admin: &Admin,
    who: &AdminActor,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, Fail> {
    let user = user_id(body)?;
    let profile = Profile {
        nick: text(body, "Nick")?,
        face_url: text(body, "FaceUrl")?,
    };
    admin.import(who, user, profile).await?;
    ok()
}

#[derive(Deserialize)]
struct ImportItem {
    #[serde(rename = "UserID")]
    user_id: String,
    #[serde(rename = "Nick", default)]
    nick: Option<String>,
    #[serde(rename = "FaceUrl", default)]
    face_url: Option<String>,
}

/// Both forms: `{"Accounts": ["id", …]}` (old) and `{"AccountList": [{"UserID", "Nick", "FaceUrl"}, …]}`.
async fn multiaccount_import(
    admin: &Admin,
    who: &AdminActor,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, Fail> {
    let items: Vec<ImportItem> = if body.contains_key("AccountList") {
        list(body, "AccountList", MAX_BATCH)?
            .iter()
            .map(|v| serde_json::from_value(v.clone()))
            .collect::<Result<_, _>>()
            .map_err(|_| Fail::new(70402, "each AccountList item needs a UserID string"))?
    } else {
        list(body, "Accounts", MAX_BATCH)?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(ImportItem {
                    user_id: s.clone(),
                    nick: None,
                    face_url: None,
                }),
                _ => Err(Fail::new(70402, "Accounts must hold strings")),
            })
            .collect::<Result<_, _>>()?
    };
    let mut failed = Vec::new();
    for item in &items {
        let profile = Profile {
            nick: item.nick.as_deref(),
            face_url: item.face_url.as_deref(),
        };
        match admin.import(who, &item.user_id, profile).await {
            Ok(_) => {}
            Err(AdminError::Invalid(_)) => failed.push(item.user_id.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = Map::new();
    out.insert("FailAccounts".into(), json!(failed));
    Ok(out)
}

async fn account_delete(
    admin: &Admin,
    who: &AdminActor,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, Fail> {
    let users = user_items(list(body, "DeleteItem", MAX_BATCH)?)?;
    let mut results = Vec::with_capacity(users.len());
    for user in &users {
        let (code, info) = match admin.delete(who, user).await {
            Ok(()) => (0, String::new()),
            Err(AdminError::NoAccount) => (70107, "Err_TLS_PT_Open_Login_Account_Not_Exist".into()),
            Err(AdminError::Invalid(why)) => (70402, why),
            Err(e) => return Err(e.into()),
        };
        results.push(json!({"ResultCode": code, "ResultInfo": info, "UserID": user}));
    }
    let mut out = Map::new();
    out.insert("ResultItem".into(), Value::Array(results));
    Ok(out)
}

async fn account_check(
    admin: &Admin,
    who: &AdminActor,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, Fail> {
    let users = user_items(list(body, "CheckItem", MAX_BATCH)?)?;
    let valid: Vec<String> = users
        .iter()
        .filter(|u| is_valid_user_id(u))
        .cloned()
        .collect();
    let existing = admin.existing(who.sdkappid, &valid).await?;
    let results: Vec<Value> = users
        .iter()
        .map(|u| {
            if !is_valid_user_id(u) {
                return json!({"UserID": u, "ResultCode": 70402, "ResultInfo": "invalid UserID",
                    "AccountStatus": "NotImported"});
            }
            let status = if existing.contains(u) {
                "Imported"
            } else {
                "NotImported"
            };
            json!({"UserID": u, "ResultCode": 0, "ResultInfo": "", "AccountStatus": status})
        })
        .collect();
    let mut out = Map::new();
    out.insert("ResultItem".into(), Value::Array(results));
    Ok(out)
}

/// Kicks every instance and revokes every ticket issued up to this second.
async fn kick(
    admin: &Admin,
    who: &AdminActor,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, Fail> {
    admin.kick(who, user_id(body)?, None, true).await?;
    ok()
}

/// The platform as `query_online_status` spells it.
fn detail_platform(p: Platform) -> &'static str {
    match p {
        Platform::Android => "Android",
        Platform::Iphone => "iPhone",
        Platform::Ipad => "iPad",
        Platform::Windows => "Windows",
        Platform::Mac => "Mac",
        Platform::Linux => "Linux",
        Platform::Web => "Web",
    }
}

fn flag(body: &Map<String, Value>, name: &str) -> Result<bool, Fail> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(v) => match v.as_u64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(Fail::new(90001, format!("{name} must be 0 or 1"))),
        },
    }
}

/// `legacy_state`: each result also says its status as `State` (called as `querystate`).
async fn query_online_status(
    admin: &Admin,
    who: &AdminActor,
    body: &Map<String, Value>,
    legacy_state: bool,
) -> Result<Map<String, Value>, Fail> {
    let users = match body.get("To_Account") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        _ => return Err(Fail::new(90001, "To_Account must be a non-empty array")),
    };
    if users.len() > MAX_QUERY {
        return Err(Fail::new(
            90011,
            format!("at most {MAX_QUERY} accounts per call"),
        ));
    }
    let users: Vec<String> = users
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| Fail::new(90003, "To_Account must hold strings"))?;
    let detail = flag(body, "IsNeedDetail")?;
    let instid = flag(body, "IsReturnInstid")?;
    let states = admin.online(who.sdkappid, &users).await?;
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for u in states {
        if !u.exists {
            errors.push(json!({"To_Account": u.user_id, "ErrorCode": 70107}));
            continue;
        }
        let status = |s: OnlineState| match s {
            OnlineState::Online => "Online",
            OnlineState::PushOnline => "PushOnline",
            OnlineState::Offline => "Offline",
        };
        let mut item = json!({"To_Account": u.user_id, "Status": status(u.state)});
        if legacy_state {
            item["State"] = json!(status(u.state));
        }
        if detail || instid {
            let details: Vec<Value> = u
                .instances
                .iter()
                .map(|i| {
                    let mut d = json!({
                        "Platform": detail_platform(i.platform),
                        "Status": if i.is_online() { "Online" } else { "PushOnline" },
                    });
                    if instid {
                        d["InstID"] = json!(i.instance_id);
                    }
                    d
                })
                .collect();
            item["Detail"] = Value::Array(details);
        }
        results.push(item);
    }
    let mut out = Map::new();
    out.insert("QueryResult".into(), Value::Array(results));
    if !errors.is_empty() {
        out.insert("ErrorList".into(), Value::Array(errors));
    }
    Ok(out)
}
