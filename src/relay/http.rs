//! HTTP transport: one `POST` of the envelope to the destination's fixed
//! URL, signed as Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`), and
//! the answer classified as SPEC §7 says: any 2xx is delivered; 408, 409,
//! 425, 429, 5xx, a timeout, a connection error or a redirect (never
//! followed) is retried, no sooner than a `Retry-After`; any other 4xx is
//! dead, with the status and the first KiB of the answer. The answer's body
//! is read only that far, so a receiver that answers 10 MiB costs 1 KiB.
//! The URL is the operator's, never built from webhook data; its configured
//! `headers` are added, except any the transport sets itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use sha2::Sha256;

use super::{Attempt, AttemptResult};
use crate::clock::Clock;
use crate::config::{DestinationConfig, HttpDestination};
use crate::worker::backoff::parse_retry_after;

/// How much of a refusing receiver's answer goes into `last_error`.
pub const ANSWER_EXCERPT_BYTES: usize = 1024;

/// Delivers to one HTTP endpoint.
pub struct HttpTransport {
    url: String,
    /// HMAC key (the `whsec_` secret decoded); `None` with `sign = "off"`.
    key: Option<Vec<u8>>,
    headers: HeaderMap,
    timeout: Duration,
    client: Result<reqwest::Client, String>,
    clock: Arc<dyn Clock>,
}

impl HttpTransport {
    pub fn new(
        destination: &DestinationConfig,
        http: &HttpDestination,
        clock: Arc<dyn Clock>,
    ) -> HttpTransport {
        let timeout = Duration::from_secs(destination.timeout_secs);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(destination.concurrency)
            .build()
            .map_err(|e| format!("HTTP client unavailable: {e}"));
        let headers = configured_headers(&destination.name, &http.headers);
        HttpTransport {
            url: http.url.clone(),
            key: http
                .secret
                .as_ref()
                .and_then(|s| crate::sources::standard_webhooks_key(s.expose())),
            headers,
            timeout,
            client,
            clock,
        }
    }

    pub async fn send(&self, attempt: &Attempt<'_>) -> AttemptResult {
        let client = match &self.client {
            Ok(client) => client,
            Err(e) => {
                return AttemptResult::Retry {
                    error: e.clone(),
                    status: None,
                    retry_after_ms: None,
                }
            }
        };
        let now_ms = self.clock.now_ms();
        let timestamp = now_ms.div_euclid(1000);
        let mut request = client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", attempt.delivery_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("Idempotency-Key", attempt.delivery_id)
            .header("hookledger-attempt", attempt.attempt.to_string());
        // A source name is ASCII by config validation.
        if let Ok(source) = HeaderValue::from_str(attempt.source) {
            request = request.header("hookledger-source", source);
        }
        if let Some(key) = &self.key {
            request = request.header(
                "webhook-signature",
                sign(key, attempt.delivery_id, timestamp, attempt.body),
            );
        }
        let exchange = async {
            let response = request.body(attempt.body.to_string()).send().await?;
            let status = response.status();
            if status.is_success() {
                return Ok(AttemptResult::Delivered {
                    status: Some(status.as_u16()),
                });
            }
            let retry_after_ms = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now_ms));
            let excerpt = excerpt(response).await;
            Ok::<_, reqwest::Error>(classify(status.as_u16(), &excerpt, retry_after_ms))
        };
        // `timeout` bounds the request; this bounds the excerpt's read too.
        match tokio::time::timeout(self.timeout + Duration::from_millis(100), exchange).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => AttemptResult::Retry {
                error: describe(e),
                status: None,
                retry_after_ms: None,
            },
            Err(_) => AttemptResult::Retry {
                error: format!("no answer within {} s", self.timeout.as_secs()),
                status: None,
                retry_after_ms: None,
            },
        }
    }
}

/// Headers the transport sets itself: the protocol's (a configured
/// `webhook-id` next to ours would give a receiver two ids, and a
/// Standard Webhooks library one it cannot verify) and the message's
/// framing, which only the HTTP client may decide.
const OWN_HEADERS: [&str; 16] = [
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "idempotency-key",
    "hookledger-source",
    "hookledger-attempt",
];

/// A destination's `headers`, without any of [`OWN_HEADERS`] (each one
/// dropped is logged, by name only: a value may be a credential).
fn configured_headers(destination: &str, headers: &BTreeMap<String, String>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        // Names and values are checked to parse at start-up.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            continue;
        };
        if OWN_HEADERS.contains(&name.as_str()) {
            tracing::warn!(destination, header = %name,
                "a configured header that hookledger sets itself is ignored");
            continue;
        }
        map.append(name, value);
    }
    map
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("v1,{signature}")
}

/// What a non-2xx answer means for the delivery.
fn classify(status: u16, excerpt: &str, retry_after_ms: Option<i64>) -> AttemptResult {
    let error = if excerpt.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {excerpt}")
    };
    if (300..400).contains(&status) {
        return AttemptResult::Retry {
            error: format!("HTTP {status}: a redirect, which is not followed"),
            status: Some(status),
            retry_after_ms,
        };
    }
    if matches!(status, 408 | 409 | 425 | 429) || status >= 500 {
        AttemptResult::Retry {
            error,
            status: Some(status),
            retry_after_ms,
        }
    } else {
        AttemptResult::Dead {
            error,
            status: Some(status),
        }
    }
}

/// The first [`ANSWER_EXCERPT_BYTES`] of an answer's body (lossy UTF-8, cut
/// at a character boundary); the rest is never read. What it holds at most
/// is that excerpt plus the one chunk the client just read (hyper's read
/// buffer, a few hundred KiB at most), which is dropped at once; dropping
/// the unfinished response closes the connection.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::with_capacity(ANSWER_EXCERPT_BYTES);
    while bytes.len() < ANSWER_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = ANSWER_EXCERPT_BYTES - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    // A character cut at the limit shows as one replacement character.
    if text.ends_with('\u{FFFD}') && bytes.len() == ANSWER_EXCERPT_BYTES {
        text.pop();
    }
    text
}

/// A transport error without the URL (the operator's; its query may carry
/// a key) and with its causes, which say what went wrong.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_spec_7_says() {
        for status in [408, 409, 425, 429, 500, 502, 503, 599, 301, 302, 307, 308] {
            assert!(
                matches!(classify(status, "", None), AttemptResult::Retry { .. }),
                "{status} is retried"
            );
        }
        for status in [400, 401, 403, 404, 405, 410, 413, 422] {
            assert!(
                matches!(classify(status, "", None), AttemptResult::Dead { .. }),
                "{status} is dead"
            );
        }
        assert_eq!(
            classify(422, "bad field", None),
            AttemptResult::Dead {
                error: "HTTP 422: bad field".into(),
                status: Some(422)
            }
        );
    }

    #[test]
    fn configured_headers_never_include_the_transports_own() {
        let configured: BTreeMap<String, String> = [
            ("X-Env", "prod"),
            ("Webhook-Id", "forged"),
            ("content-type", "text/plain"),
            ("Content-Length", "1"),
            ("Idempotency-Key", "forged"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let headers = configured_headers("app", &configured);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["x-env"], "prod");
    }

    #[test]
    fn the_signature_is_v1_base64_hmac_of_id_timestamp_body() {
        // Computed outside this code: python3 -c "import hmac,hashlib,base64;
        // print(base64.b64encode(hmac.new(b'key', b'hl_1.1700000000.{}', hashlib.sha256).digest()))"
        assert_eq!(
            sign(b"key", "hl_1", 1_700_000_000, "{}"),
            "v1,qYD/dr5wEewzpVnPxtuMnTHwj+sS3x0sD1LSqvgXMhs="
        );
    }
}
