//! The query string of a call: the app, the admin and its UserSig.

use std::collections::HashMap;
use std::net::IpAddr;

use super::Fail;
use crate::admin::{Admin, AdminActor, TicketRefused};
use crate::model::Code;

/// The query string's app, admin and ticket, checked: 60012 no sdkappid · 60006 bad or unknown sdkappid · 60004
/// no identifier · 60005 no usersig · 60002 `contenttype` not json or `random` not a 32-bit number · 60010 not
/// an admin of the app · a bad ticket: 70050 if its address is throttled, else its own code (70001, 70003,
/// 70009, …).
pub(super) fn authenticate(
    admin: &Admin,
    ip: IpAddr,
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
    let app = admin
        .app(sdkappid)
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
    admin
        .admin_by_ticket(&app, identifier, usersig, ip)
        .map_err(|refused| match refused {
            TicketRefused::NotAdmin => Fail::new(60010, "identifier is not an admin of this app"),
            TicketRefused::Throttled { retry_after_secs } => Fail::new(
                Code::FrequencyLimit.number(),
                format!("too many failed admin authentications from this address; retry after {retry_after_secs} seconds"),
            ),
            TicketRefused::Invalid(f) => Fail::new(f.code.number(), f.message),
        })
}
