//! The commands, on the admin service, with their answers as the cloud gives them.

use serde_json::{json, Map, Value};

use super::body::{Import, OnlineQuery, Request};
use super::Answer;
use crate::admin::{Admin, AdminActor, AdminError, HasAccount, OnlineState};
use crate::model::Platform;
use crate::model::UserId;

pub(super) async fn run(admin: &Admin, who: &AdminActor, request: Request) -> Answer {
    match request {
        Request::AccountImport(import) => account_import(admin, who, import).await,
        Request::MultiaccountImport(items) => multiaccount_import(admin, who, items).await,
        Request::AccountDelete(users) => account_delete(admin, who, users).await,
        Request::AccountCheck(users) => account_check(admin, who, users).await,
        Request::Kick(user) => kick(admin, who, &user).await,
        Request::QueryOnlineStatus {
            query,
            legacy_state,
        } => query_online_status(admin, who, query, legacy_state).await,
    }
}

fn ok() -> Answer {
    Ok(Map::new())
}

async fn account_import(admin: &Admin, who: &AdminActor, import: Import) -> Answer {
    admin.import(who, &import.user_id, import.profile()).await?;
    ok()
}

/// Each account is imported alone: one whose UserID or profile is out of the rules is listed in `FailAccounts`.
async fn multiaccount_import(admin: &Admin, who: &AdminActor, items: Vec<Import>) -> Answer {
    let mut failed = Vec::new();
    for item in &items {
        match admin.import(who, &item.user_id, item.profile()).await {
            Ok(_) => {}
            Err(AdminError::Invalid(_)) => failed.push(item.user_id.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = Map::new();
    out.insert("FailAccounts".into(), json!(failed));
    Ok(out)
}

async fn account_delete(admin: &Admin, who: &AdminActor, users: Vec<String>) -> Answer {
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

async fn account_check(admin: &Admin, who: &AdminActor, users: Vec<String>) -> Answer {
    let valid: Vec<String> = users
        .iter()
        .filter(|u| UserId::parse(u).is_ok())
        .cloned()
        .collect();
    let existing = admin.existing(who.sdkappid, &valid).await?;
    let results: Vec<Value> = users
        .iter()
        .map(|u| {
            if UserId::parse(u).is_err() {
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
async fn kick(admin: &Admin, who: &AdminActor, user: &str) -> Answer {
    admin.kick(who, user, None, true).await?;
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

fn status(s: OnlineState) -> &'static str {
    match s {
        OnlineState::Online => "Online",
        OnlineState::PushOnline => "PushOnline",
        OnlineState::Offline => "Offline",
    }
}

/// `legacy_state`: each result also says its status as `State` (called as `querystate`).
async fn query_online_status(
    admin: &Admin,
    who: &AdminActor,
    query: OnlineQuery,
    legacy_state: bool,
) -> Answer {
    let OnlineQuery {
        users,
        detail,
        instid,
    } = query;
    let states = admin.online(who.sdkappid, &users).await?;
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for u in states {
        let missing = match u.account {
            HasAccount::Yes => None,
            HasAccount::No => Some(70107),
            HasAccount::NotAUserId => Some(70402),
        };
        if let Some(code) = missing {
            errors.push(json!({"To_Account": u.user_id, "ErrorCode": code}));
            continue;
        }
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
