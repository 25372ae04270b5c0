//! One delivery attempt: the signed query, the POST, and what the receiver's answer means.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::event::STATE_CHANGE;
use super::outbox::OutboxEvent;
use crate::config::WebhookConfig;

/// How much of a receiver's answer is read. An acknowledgement is a few bytes of JSON; past this the attempt
/// counts by its status alone and the rest is not read (dropping the response drops its connection), so a
/// receiver answering without end costs at most this much per attempt in flight.
pub const MAX_ANSWER: usize = 64 * 1024;

/// `Sign` = lowercase hex SHA-256 of the token followed by the request time (decimal unix seconds).
pub fn sign(token: &str, request_time: i64) -> String {
    let digest = Sha256::digest(format!("{token}{request_time}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The HTTP client of one app's deliveries (its connection pool). It follows no redirect: a receiver's 3xx would
/// have the event re-POSTed wherever it points (with a `Referer` carrying the signed URL); it is a failed
/// attempt instead. No `Referer` is ever sent.
pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .build()
        .expect("an HTTP client")
}

/// One attempt: POST the body with the query fields; delivered when the receiver answers 200 with JSON (or with
/// more than [`MAX_ANSWER`] bytes, not read to the end).
pub(super) async fn send(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    ev: &OutboxEvent,
    request_time: i64,
) -> Result<(), String> {
    let mut query: Vec<(&str, String)> = vec![
        ("SdkAppid", ev.sdkappid.to_string()),
        ("CallbackCommand", STATE_CHANGE.to_owned()),
        ("contenttype", "json".to_owned()),
        ("ClientIP", ev.client_ip.clone()),
        ("OptPlatform", ev.opt_platform.clone()),
    ];
    if let Some(token) = &hook.token {
        query.push(("Sign", sign(token.expose(), request_time)));
        query.push(("RequestTime", request_time.to_string()));
    }
    let response = client
        .post(hook.url.expose())
        .query(&query)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(Duration::from_millis(hook.timeout_ms))
        .body(ev.body.get().to_owned())
        .send()
        .await
        .map_err(|e| format!("request failed: {}", without_url(e)))?;
    let status = response.status();
    let body = read_answer(response)
        .await
        .map_err(|e| format!("reading the answer failed: {}", without_url(e)))?;
    if status.is_redirection() {
        return Err(format!("redirect ({}) not followed", status.as_u16()));
    }
    if status != reqwest::StatusCode::OK {
        return Err(format!("answered HTTP {}", status.as_u16()));
    }
    let Some(body) = body else {
        return Ok(());
    };
    serde_json::from_slice::<serde_json::Value>(&body)
        .map(|_| ())
        .map_err(|_| "answered 200 with a body that is not JSON".to_owned())
}

/// The answer's body, or `None` when it is longer than [`MAX_ANSWER`] (then it is not read further).
async fn read_answer(mut response: reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// An error's text without its URL, whose query carries the signature.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_the_documented_vector() {
        assert_eq!(
            sign("xxxxyyyy", 1_669_872_112),
            "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
        );
    }
}
