//! The commands' bodies, typed once where they enter, with the cloud's field names.
//!
//! serde reads each field as a [`Field`] (absent, null, of its type, or of another) and so refuses nothing
//! itself; the conversion of a body into its [`Request`] gives each malformed one the code the cloud gives it:
//! 70402 a field missing or mistyped, 70206 a batch empty or over [`MAX_BATCH`]; for `query_online_status`,
//! 90001 `To_Account` missing, mistyped or empty or a flag not 0 or 1, 90011 over [`MAX_QUERY`] accounts, 90003
//! an account not a string.

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Command, Fail, MAX_BATCH, MAX_QUERY};
use crate::accounts::Profile;
use crate::model::UserId;

/// A command with its body, parsed.
pub(super) enum Request {
    AccountImport(Import),
    MultiaccountImport(Vec<Import>),
    AccountDelete(Vec<String>),
    AccountCheck(Vec<String>),
    /// The account whose instances are kicked and tickets revoked.
    Kick(String),
    /// `legacy_state`: called as `querystate`, each result also says its status as `State`.
    QueryOnlineStatus {
        query: OnlineQuery,
        legacy_state: bool,
    },
}

impl Request {
    /// The body of `cmd`: 60003 if it is not a JSON object (90001 for `query_online_status`), else the command's
    /// own codes.
    pub(super) fn parse(cmd: Command, body: &[u8]) -> Result<Request, Fail> {
        Ok(match cmd {
            Command::AccountImport => {
                Request::AccountImport(object::<AccountImportBody>(body, 60003)?.try_into()?)
            }
            Command::MultiaccountImport => Request::MultiaccountImport(
                object::<MultiaccountImportBody>(body, 60003)?.try_into()?,
            ),
            Command::AccountDelete => {
                let b: AccountDeleteBody = object(body, 60003)?;
                Request::AccountDelete(user_items(b.delete_item, "DeleteItem")?)
            }
            Command::AccountCheck => {
                let b: AccountCheckBody = object(body, 60003)?;
                Request::AccountCheck(user_items(b.check_item, "CheckItem")?)
            }
            Command::Kick => {
                let b: KickBody = object(body, 60003)?;
                Request::Kick(account(b.user_id, b.identifier)?)
            }
            Command::QueryOnlineStatus | Command::QueryState => Request::QueryOnlineStatus {
                query: object::<QueryOnlineStatusBody>(body, 90001)?.try_into()?,
                legacy_state: cmd == Command::QueryState,
            },
        })
    }
}

/// The body as `T`, or `code` if it is not a JSON object.
fn object<T: DeserializeOwned>(body: &[u8], code: u32) -> Result<T, Fail> {
    // Through a `Value`: a repeated key keeps its last value (a struct read from the bytes would refuse it), and
    // an array is no body (a struct would take it for its fields in order).
    let body: Value =
        serde_json::from_slice(body).map_err(|_| Fail::new(code, "the body is not valid JSON"))?;
    if !body.is_object() {
        return Err(Fail::new(code, "the body must be a JSON object"));
    }
    // Every field is a `Field`, which takes any value: an object always reads.
    serde_json::from_value(body).map_err(|_| Fail::new(code, "the body must be a JSON object"))
}

/// A field as sent.
#[derive(Debug, Default)]
enum Field<T> {
    #[default]
    Absent,
    Null,
    Given(T),
    /// Present, but not a `T`.
    Mistyped,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Field::Null,
            v => serde_json::from_value(v).map_or(Field::Mistyped, Field::Given),
        })
    }
}

impl<T> Field<T> {
    fn given(self) -> Option<T> {
        match self {
            Field::Given(t) => Some(t),
            _ => None,
        }
    }
}

impl Field<String> {
    /// An optional string (70402 if something else).
    fn text(self, name: &str) -> Result<Option<String>, Fail> {
        match self {
            Field::Absent | Field::Null => Ok(None),
            Field::Given(s) => Ok(Some(s)),
            Field::Mistyped => Err(Fail::new(70402, format!("{name} must be a string"))),
        }
    }
}

impl<T> Field<Vec<T>> {
    /// A list of 1 to `max` entries: 70402 absent or not a list, 70206 empty or longer.
    fn list(self, name: &str, max: usize) -> Result<Vec<T>, Fail> {
        let list = match self {
            Field::Given(list) => list,
            Field::Absent => return Err(Fail::new(70402, format!("{name} is required"))),
            Field::Null | Field::Mistyped => {
                return Err(Fail::new(70402, format!("{name} must be an array")))
            }
        };
        if list.is_empty() || list.len() > max {
            return Err(Fail::new(
                70206,
                format!("{name} must hold 1 to {max} entries"),
            ));
        }
        Ok(list)
    }
}

impl Field<u64> {
    /// `0` or `1`, false when absent (90001 if anything else).
    fn flag(self, name: &str) -> Result<bool, Fail> {
        match self {
            Field::Absent | Field::Null | Field::Given(0) => Ok(false),
            Field::Given(1) => Ok(true),
            Field::Given(_) | Field::Mistyped => {
                Err(Fail::new(90001, format!("{name} must be 0 or 1")))
            }
        }
    }
}

/// The account a single-account command names: `UserID`, or the legacy `Identifier` (read only when `UserID`
/// is absent or null), a valid UserID.
fn account(user_id: Field<String>, identifier: Field<String>) -> Result<String, Fail> {
    let user = match user_id.text("UserID")? {
        Some(u) => u,
        None => identifier
            .text("Identifier")?
            .ok_or_else(|| Fail::new(70402, "UserID is required"))?,
    };
    match UserId::parse(&user) {
        Ok(_) => Ok(user),
        Err(_) => Err(Fail::new(70402, format!("invalid UserID {user:?}"))),
    }
}

/// An account to import with the profile fields given: `account_import`'s body (its UserID checked), or an
/// `AccountList` item of `multiaccount_import` (as sent: an invalid UserID fails that account alone).
#[derive(Deserialize)]
pub(super) struct Import {
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "Nick", default)]
    pub nick: Option<String>,
    #[serde(rename = "FaceUrl", default)]
    pub face_url: Option<String>,
}

impl Import {
    pub fn profile(&self) -> Profile<'_> {
        Profile {
            nick: self.nick.as_deref(),
            face_url: self.face_url.as_deref(),
        }
    }
}

/// `{"UserID": "…", "Nick": "…", "FaceUrl": "…"}`; `Identifier` is the legacy name of `UserID`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct AccountImportBody {
    #[serde(rename = "UserID")]
    user_id: Field<String>,
    #[serde(rename = "Identifier")]
    identifier: Field<String>,
    #[serde(rename = "Nick")]
    nick: Field<String>,
    #[serde(rename = "FaceUrl")]
    face_url: Field<String>,
}

impl TryFrom<AccountImportBody> for Import {
    type Error = Fail;

    fn try_from(b: AccountImportBody) -> Result<Import, Fail> {
        Ok(Import {
            user_id: account(b.user_id, b.identifier)?,
            nick: b.nick.text("Nick")?,
            face_url: b.face_url.text("FaceUrl")?,
        })
    }
}

/// Both forms: `{"AccountList": [{"UserID", "Nick", "FaceUrl"}, …]}`, or the old `{"Accounts": ["id", …]}`
/// (read when `AccountList` is absent).
#[derive(Default, Deserialize)]
#[serde(default)]
struct MultiaccountImportBody {
    #[serde(rename = "AccountList")]
    account_list: Field<Vec<Field<Import>>>,
    #[serde(rename = "Accounts")]
    accounts: Field<Vec<Field<String>>>,
}

impl TryFrom<MultiaccountImportBody> for Vec<Import> {
    type Error = Fail;

    fn try_from(b: MultiaccountImportBody) -> Result<Vec<Import>, Fail> {
        if !matches!(b.account_list, Field::Absent) {
            return b
                .account_list
                .list("AccountList", MAX_BATCH)?
                .into_iter()
                .map(Field::given)
                .collect::<Option<_>>()
                .ok_or_else(|| Fail::new(70402, "each AccountList item needs a UserID string"));
        }
        b.accounts
            .list("Accounts", MAX_BATCH)?
            .into_iter()
            .map(|item| {
                item.given().map(|user_id| Import {
                    user_id,
                    nick: None,
                    face_url: None,
                })
            })
            .collect::<Option<_>>()
            .ok_or_else(|| Fail::new(70402, "Accounts must hold strings"))
    }
}

/// `{"UserID": "…"}`, an item of `DeleteItem` and `CheckItem`: an object only (a derived struct would also take
/// `["…"]`).
struct UserItem(String);

impl<'de> Deserialize<'de> for UserItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Item {
            #[serde(rename = "UserID")]
            user_id: String,
        }
        let object = Map::<String, Value>::deserialize(d)?;
        let item: Item =
            serde_json::from_value(Value::Object(object)).map_err(de::Error::custom)?;
        Ok(UserItem(item.user_id))
    }
}

/// `[{"UserID": …}, …]` → the UserIDs (a missing or mistyped one is 70402).
fn user_items(items: Field<Vec<Field<UserItem>>>, name: &str) -> Result<Vec<String>, Fail> {
    items
        .list(name, MAX_BATCH)?
        .into_iter()
        .map(|item| item.given().map(|UserItem(user)| user))
        .collect::<Option<_>>()
        .ok_or_else(|| Fail::new(70402, "each item needs a UserID string"))
}

/// `{"DeleteItem": [{"UserID": "…"}, …]}`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct AccountDeleteBody {
    #[serde(rename = "DeleteItem")]
    delete_item: Field<Vec<Field<UserItem>>>,
}

/// `{"CheckItem": [{"UserID": "…"}, …]}`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct AccountCheckBody {
    #[serde(rename = "CheckItem")]
    check_item: Field<Vec<Field<UserItem>>>,
}

/// `{"UserID": "…"}`; `Identifier` is the legacy name of `UserID`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct KickBody {
    #[serde(rename = "UserID")]
    user_id: Field<String>,
    #[serde(rename = "Identifier")]
    identifier: Field<String>,
}

/// Whose online state, and how much of it.
pub(super) struct OnlineQuery {
    pub users: Vec<String>,
    /// Each instance's platform and state (`IsNeedDetail`).
    pub detail: bool,
    /// Each instance's id too (`IsReturnInstid`).
    pub instid: bool,
}

/// `{"To_Account": ["…", …], "IsNeedDetail": 0|1, "IsReturnInstid": 0|1}`.
#[derive(Default, Deserialize)]
#[serde(default)]
struct QueryOnlineStatusBody {
    #[serde(rename = "To_Account")]
    to_account: Field<Vec<Field<String>>>,
    #[serde(rename = "IsNeedDetail")]
    is_need_detail: Field<u64>,
    #[serde(rename = "IsReturnInstid")]
    is_return_instid: Field<u64>,
}

impl TryFrom<QueryOnlineStatusBody> for OnlineQuery {
    type Error = Fail;

    fn try_from(b: QueryOnlineStatusBody) -> Result<OnlineQuery, Fail> {
        let users = match b.to_account {
            Field::Given(list) if !list.is_empty() => list,
            _ => return Err(Fail::new(90001, "To_Account must be a non-empty array")),
        };
        if users.len() > MAX_QUERY {
            return Err(Fail::new(
                90011,
                format!("at most {MAX_QUERY} accounts per call"),
            ));
        }
        let users = users
            .into_iter()
            .map(Field::given)
            .collect::<Option<_>>()
            .ok_or_else(|| Fail::new(90003, "To_Account must hold strings"))?;
        Ok(OnlineQuery {
            users,
            detail: b.is_need_detail.flag("IsNeedDetail")?,
            instid: b.is_return_instid.flag("IsReturnInstid")?,
        })
    }
}
