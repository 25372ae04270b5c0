//! The documented error codes (PROTOCOL.md §2, §3, §6; REFERENCE.md §2) as one enum.
//!
//! Every layer converts its own failures into a [`Code`] once, at the edge: the WebSocket frame, the client HTTP
//! response or the admin envelope. Internal causes are logged where they happen and never sent.

use std::fmt;

/// A numeric code the wire protocol promises. `as u32` gives the number sent to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 6014: not logged in (or kicked); log in first.
    NotLoggedIn,
    /// 6017: invalid parameter (missing or mistyped field, unknown op, bad platform, bad frame).
    InvalidParameters,
    /// 6026: no such session (token does not verify, or the instance is gone).
    NoPreviousLogin,
    /// 6206: the UserSig expired while online.
    UserSigExpiredOnline,
    /// 6208: kicked by another login.
    KickedByOther,
    /// 7003: the UserID is empty, too long, not printable ASCII or reserved.
    InvalidIdentifier,
    /// 7501: a login is already in progress on this connection.
    LoginInProgress,
    /// 70001: the UserSig has expired.
    UserSigExpired,
    /// 70002: the UserSig is empty.
    UserSigEmpty,
    /// 70003: the UserSig cannot be decoded or parsed, or is not acceptable for login.
    UserSigCheckFailed,
    /// 70009: the signature does not verify.
    UserSigMismatchKey,
    /// 70013: the UserID in the ticket differs from the request.
    UserSigMismatchId,
    /// 70014: the SDKAppID in the ticket differs from the request.
    UserSigMismatchSdkAppId,
    /// 70020: unknown SDKAppID.
    SdkAppIdNotFound,
    /// 70050: too many failures; retry later.
    FrequencyLimit,
    /// 70051: the account is disabled.
    AccountDisabled,
    /// 70052: the ticket was revoked (admin kick); generate a new one.
    UserSigRevoked,
    /// 70107: the account does not exist (it was deleted).
    AccountNotFound,
    /// 70169: internal timeout (database unreachable); retry.
    InternalTimeout,
    /// 60020: a Web SDK command outside login and presence, which imlogin does not serve.
    Unsupported,
}

impl Code {
    /// The number sent on the wire.
    pub fn number(self) -> u32 {
        match self {
            Code::NotLoggedIn => 6014,
            Code::InvalidParameters => 6017,
            Code::NoPreviousLogin => 6026,
            Code::UserSigExpiredOnline => 6206,
            Code::KickedByOther => 6208,
            Code::InvalidIdentifier => 7003,
            Code::LoginInProgress => 7501,
            Code::UserSigExpired => 70001,
            Code::UserSigEmpty => 70002,
            Code::UserSigCheckFailed => 70003,
            Code::UserSigMismatchKey => 70009,
            Code::UserSigMismatchId => 70013,
            Code::UserSigMismatchSdkAppId => 70014,
            Code::SdkAppIdNotFound => 70020,
            Code::FrequencyLimit => 70050,
            Code::AccountDisabled => 70051,
            Code::UserSigRevoked => 70052,
            Code::AccountNotFound => 70107,
            Code::InternalTimeout => 70169,
            Code::Unsupported => 60020,
        }
    }

    /// HTTP status for the client HTTP API (PROTOCOL §6).
    pub fn http_status(self) -> u16 {
        match self {
            Code::InvalidParameters | Code::InvalidIdentifier => 400,
            Code::UserSigExpired
            | Code::UserSigEmpty
            | Code::UserSigCheckFailed
            | Code::UserSigMismatchKey
            | Code::UserSigMismatchId
            | Code::UserSigMismatchSdkAppId
            | Code::NoPreviousLogin => 401,
            Code::AccountDisabled | Code::UserSigRevoked => 403,
            Code::SdkAppIdNotFound | Code::AccountNotFound => 404,
            Code::FrequencyLimit => 429,
            Code::InternalTimeout => 503,
            Code::NotLoggedIn | Code::UserSigExpiredOnline | Code::KickedByOther => 401,
            Code::LoginInProgress => 409,
            Code::Unsupported => 501,
        }
    }

    /// A plain-words default message.
    pub fn default_message(self) -> &'static str {
        match self {
            Code::NotLoggedIn => "not logged in",
            Code::InvalidParameters => "invalid parameters",
            Code::NoPreviousLogin => "no such session; log in again",
            Code::UserSigExpiredOnline => "UserSig expired; get a new one and log in again",
            Code::KickedByOther => "kicked offline by another login",
            Code::InvalidIdentifier => {
                "invalid UserID: 1-32 bytes of printable ASCII, not starting with @TLS#, @TIM# or @TGS#"
            }
            Code::LoginInProgress => "a login is already in progress on this connection",
            Code::UserSigExpired => "UserSig expired; generate a new one",
            Code::UserSigEmpty => "UserSig is empty",
            Code::UserSigCheckFailed => "UserSig could not be parsed or is not acceptable",
            Code::UserSigMismatchKey => "UserSig signature does not verify",
            Code::UserSigMismatchId => "UserID in the UserSig does not match the request",
            Code::UserSigMismatchSdkAppId => "SDKAppID in the UserSig does not match the request",
            Code::SdkAppIdNotFound => "unknown SDKAppID",
            Code::FrequencyLimit => "too many failed logins; retry later",
            Code::AccountDisabled => "account is disabled",
            Code::UserSigRevoked => "UserSig was invalidated; generate a new one",
            Code::AccountNotFound => "account does not exist",
            Code::InternalTimeout => "server busy (database or session registry unreachable); retry",
            Code::Unsupported => "not supported: imlogin serves login and presence only",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.number(), self.default_message())
    }
}

/// A code with a message for the client; what every login-path function returns on failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code) -> Self {
        Failure {
            code,
            message: code.default_message().to_owned(),
        }
    }

    pub fn with_message(code: Code, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<Code> for Failure {
    fn from(code: Code) -> Self {
        Failure::new(code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.number(), self.message)
    }
}

impl std::error::Error for Failure {}
