//! A page of a list: `limit`, and the `cursor` a previous page gave.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// From a previous page's `next_cursor`.
    pub(super) cursor: Option<String>,
    /// 1-1000, default 100.
    pub(super) limit: Option<u32>,
}

pub(super) fn limit(l: Option<u32>) -> ApiResult<u32> {
    match l.unwrap_or(100) {
        l @ 1..=1000 => Ok(l),
        _ => Err(ApiError::invalid("`limit` must be between 1 and 1000")),
    }
}

pub(super) fn decode_cursor(cursor: &Option<String>) -> ApiResult<Option<String>> {
    cursor
        .as_deref()
        .map(|c| {
            B64.decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid("`cursor` is not one this API gave"))
        })
        .transpose()
}
