//! Fetching an event's details from its provider before the upsert: the
//! source's URL template expanded with the event's values, then one GET.
//!
//! Every value is percent-encoded (all but ASCII letters, digits and
//! `-._~`), so a delivered id can never add a path segment, a query, a
//! fragment or change the host; a value that would make a `.` or `..` path
//! segment (which URL parsers resolve away) is refused, and so is an absent
//! or empty one — all permanent failures. The answer is read in chunks up to
//! [`MAX_ANSWER_BYTES`] and must be JSON, nested at most
//! [`domain_data::MAX_DEPTH`] levels. Failures are sorted into
//! [`FetchError::Transient`] (retry later) and [`FetchError::Permanent`]
//! (the event is dead); their messages name the URL without its query (which
//! may carry credentials) and never a header. No database transaction is
//! open while this runs: the caller fetches first and writes afterwards.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, RETRY_AFTER};
use reqwest::{redirect, Client, StatusCode};
use url::Url;

use super::backoff::parse_retry_after;
use crate::clock::Clock;
use crate::config::{FetchAuth, FetchConfig};
use crate::store::domain_data;

/// The largest upstream answer read; a larger one makes the event dead.
pub const MAX_ANSWER_BYTES: usize = 10 * 1024 * 1024;
/// Redirects are followed only within the same origin, and only this many.
pub const MAX_REDIRECTS: usize = 5;
/// Upper bound on a `last_error` message, in bytes.
const MAX_MESSAGE_BYTES: usize = 300;

/// RFC 3986 unreserved characters stay; everything else is encoded.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The values a fetch URL template may use; `None` = the event has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateValues<'a> {
    pub event_id: Option<&'a str>,
    pub object_id: Option<&'a str>,
    pub object_type: Option<&'a str>,
    pub action: Option<&'a str>,
}

impl<'a> TemplateValues<'a> {
    fn get(&self, placeholder: &str) -> Option<&'a str> {
        match placeholder {
            "event_id" => self.event_id,
            "object_id" => self.object_id,
            "object_type" => self.object_type,
            "action" => self.action,
            _ => None,
        }
    }
}

/// Why a template could not be expanded for an event; permanent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the fetch URL needs {{{0}}}, which this event does not have")]
    Missing(String),
    #[error("the fetch URL template has an unknown or unclosed placeholder")]
    BadTemplate,
    #[error("the event's values would make a '.' or '..' segment in the fetch URL's path")]
    DotSegment,
    #[error("the expanded fetch URL is not valid: {0}")]
    Invalid(String),
}

/// Expands `template` (already checked by `config::check_template`) with
/// `values`, each percent-encoded.
pub fn expand_url(template: &str, values: &TemplateValues<'_>) -> Result<Url, TemplateError> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(TemplateError::BadTemplate)?;
        let name = &after[..close];
        if !crate::config::TEMPLATE_PLACEHOLDERS.contains(&name) {
            return Err(TemplateError::BadTemplate);
        }
        let value = values
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| TemplateError::Missing(name.to_string()))?;
        out.extend(utf8_percent_encode(value, VALUE));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    if raw_path(&out).split('/').any(is_dot_segment) {
        return Err(TemplateError::DotSegment);
    }
    let url = Url::parse(&out).map_err(|e| TemplateError::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(TemplateError::Invalid(
            "not an http(s) URL with a host".to_string(),
        ));
    }
    Ok(url)
}

/// The path part of an absolute URL string, before any parsing normalises it.
fn raw_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let Some(slash) = after_scheme.find('/') else {
        return "";
    };
    let path = &after_scheme[slash..];
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

/// `.` and `..`, also spelled with `%2e` (which the URL standard treats alike).
fn is_dot_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    let unescaped = lower.replace("%2e", ".");
    unescaped == "." || unescaped == ".."
}

/// How a fetch went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Worth another attempt later (5xx, 408, 429, timeout, connection
    /// error, an answer that is not JSON).
    Transient {
        message: String,
        /// The upstream's `Retry-After`, as a Unix-ms instant.
        retry_after_ms: Option<i64>,
        /// 429: the upstream wants the whole source to slow down.
        throttled: bool,
    },
    /// Will not work however often it is tried (other 4xx, redirects
    /// elsewhere, an oversized answer, a broken fetch config).
    Permanent { message: String },
}

impl FetchError {
    pub fn message(&self) -> &str {
        match self {
            FetchError::Transient { message, .. } | FetchError::Permanent { message } => message,
        }
    }

    /// A transient error with just a message.
    pub fn transient_message(message: &str) -> FetchError {
        FetchError::transient(message.to_string())
    }

    fn transient(message: String) -> FetchError {
        FetchError::Transient {
            message: short(message),
            retry_after_ms: None,
            throttled: false,
        }
    }

    fn permanent(message: String) -> FetchError {
        FetchError::Permanent {
            message: short(message),
        }
    }
}

/// The HTTP client all fetches share: no redirects except within the same
/// origin (so credentials never travel to another host).
pub fn build_client() -> reqwest::Result<Client> {
    let policy = redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if same_origin && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    Client::builder()
        .redirect(policy)
        .user_agent(concat!("hookledger/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// GETs `url` with the source's auth and headers; on success, the answer's
/// JSON text as returned. A `Retry-After` in seconds counts from when the
/// answer came (RFC 9110 §10.2.3), read off `clock` then: a fetch may take
/// as long as `timeout_secs`, and an instant taken before the request would
/// shorten the wait by that much.
pub async fn fetch_json(
    client: &Client,
    config: &FetchConfig,
    url: &Url,
    clock: &dyn Clock,
) -> Result<String, FetchError> {
    let shown = display_url(url);
    let timeout = Duration::from_secs(config.timeout_secs.max(1));
    // The request timeout covers connect and headers; this one the whole
    // exchange, body included.
    match tokio::time::timeout(timeout, get(client, config, url, timeout, clock)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(prefix(&shown, e)),
        Err(_) => Err(FetchError::transient(format!(
            "GET {shown}: timed out after {} s",
            timeout.as_secs()
        ))),
    }
}

async fn get(
    client: &Client,
    config: &FetchConfig,
    url: &Url,
    timeout: Duration,
    clock: &dyn Clock,
) -> Result<String, FetchError> {
    let mut request = client.get(url.clone()).timeout(timeout);
    request = match &config.auth {
        FetchAuth::None => request,
        FetchAuth::Bearer(token) => request.bearer_auth(token.expose()),
        FetchAuth::Basic { user, password } => request.basic_auth(user, Some(password.expose())),
    };
    if !config
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("accept"))
    {
        request = request.header(ACCEPT, "application/json");
    }
    for (name, value) in &config.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            FetchError::permanent(format!(
                "fetch header name {name:?} is not a valid header name"
            ))
        })?;
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
            FetchError::permanent(format!("fetch header {name} has an invalid value"))
        })?;
        value.set_sensitive(true);
        request = request.header(name, value);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| transport_error(e, timeout))?;
    let status = response.status();
    if !status.is_success() {
        return Err(status_error(status, response.headers(), clock.now_ms()));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(e, timeout))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    json_text(body)
}

/// The answer as JSON text, unchanged (a UTF-8 byte-order mark aside); one
/// too deep for the domain row (`domain_data`) is a permanent failure.
fn json_text(mut body: Vec<u8>) -> Result<String, FetchError> {
    if body.starts_with(b"\xEF\xBB\xBF") {
        body.drain(..3);
    }
    let not_json = || FetchError::transient("upstream answer is not JSON".to_string());
    let text = String::from_utf8(body).map_err(|_| not_json())?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|_| not_json())?;
    if domain_data::too_deep(&text) {
        return Err(FetchError::permanent(format!(
            "upstream answer nests deeper than {} levels",
            domain_data::MAX_DEPTH
        )));
    }
    Ok(text)
}

fn too_large() -> FetchError {
    FetchError::permanent(format!(
        "upstream answer is larger than {} MiB",
        MAX_ANSWER_BYTES / (1024 * 1024)
    ))
}

/// A non-2xx answer: 408, 429 and 5xx are worth retrying, the rest is not.
fn status_error(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    now_ms: i64,
) -> FetchError {
    let message = format!("upstream answered {status}");
    let retry_after_ms = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now_ms));
    match status.as_u16() {
        408 | 429 | 500..=599 => FetchError::Transient {
            message,
            retry_after_ms,
            throttled: status == StatusCode::TOO_MANY_REQUESTS,
        },
        300..=399 => FetchError::permanent(format!("{message} (redirect not followed)")),
        _ => FetchError::permanent(message),
    }
}

/// A failure below HTTP: always transient. reqwest's own message names the
/// URL, so it is rebuilt from the cause chain without it.
fn transport_error(error: reqwest::Error, timeout: Duration) -> FetchError {
    if error.is_timeout() {
        return FetchError::transient(format!("timed out after {} s", timeout.as_secs()));
    }
    let what = if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "connection failed while reading the answer"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    match causes.last() {
        Some(root) => FetchError::transient(format!("{what}: {root}")),
        None => FetchError::transient(what.to_string()),
    }
}

fn prefix(shown: &str, error: FetchError) -> FetchError {
    match error {
        FetchError::Transient {
            message,
            retry_after_ms,
            throttled,
        } => FetchError::Transient {
            message: short(format!("GET {shown}: {message}")),
            retry_after_ms,
            throttled,
        },
        FetchError::Permanent { message } => {
            FetchError::permanent(format!("GET {shown}: {message}"))
        }
    }
}

/// Scheme, host, port and path: the query and any user info are left out,
/// since they may hold credentials.
pub fn display_url(url: &Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

/// Cuts a message to [`MAX_MESSAGE_BYTES`] at a character boundary.
fn short(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(event_id: &str) -> TemplateValues<'_> {
        TemplateValues {
            event_id: Some(event_id),
            ..Default::default()
        }
    }

    fn expand(template: &str, values: TemplateValues<'_>) -> String {
        expand_url(template, &values).unwrap().to_string()
    }

    const EVENTS: &str = "https://api.example.com/v1/events/{event_id}";

    #[test]
    fn plain_ids_are_substituted_unchanged() {
        assert_eq!(
            expand(EVENTS, id("evt_1Nq-x.y~z")),
            "https://api.example.com/v1/events/evt_1Nq-x.y~z"
        );
        let all = TemplateValues {
            event_id: Some("e1"),
            object_id: Some("42"),
            object_type: Some("appointment"),
            action: Some("order.completed"),
        };
        assert_eq!(
            expand(
                "http://h:8080/{object_type}s/{object_id}?ev={event_id}&a={action}",
                all
            ),
            "http://h:8080/appointments/42?ev=e1&a=order.completed"
        );
    }

    #[test]
    fn reserved_characters_are_percent_encoded_so_the_url_keeps_its_shape() {
        assert_eq!(
            expand(EVENTS, id("a/b?c#d")),
            "https://api.example.com/v1/events/a%2Fb%3Fc%23d"
        );
        assert_eq!(
            expand(EVENTS, id("x@evil.com:80&y=1%2F")),
            "https://api.example.com/v1/events/x%40evil.com%3A80%26y%3D1%252F"
        );
        assert_eq!(
            expand(EVENTS, id("../../admin")),
            "https://api.example.com/v1/events/..%2F..%2Fadmin"
        );
        let url = expand_url(EVENTS, &id("a/b?c#d")).unwrap();
        assert_eq!(url.host_str(), Some("api.example.com"));
        assert_eq!(url.query(), None);
        assert_eq!(url.fragment(), None);
        assert_eq!(url.path_segments().unwrap().count(), 3);
    }

    #[test]
    fn spaces_and_unicode_are_encoded_as_utf8_bytes() {
        assert_eq!(
            expand(EVENTS, id("a b+c")),
            "https://api.example.com/v1/events/a%20b%2Bc"
        );
        assert_eq!(
            expand(EVENTS, id("café☃")),
            "https://api.example.com/v1/events/caf%C3%A9%E2%98%83"
        );
        assert_eq!(
            expand("https://h/q?id={event_id}", id("a b&c=d")),
            "https://h/q?id=a%20b%26c%3Dd"
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        for value in [".", ".."] {
            assert_eq!(
                expand_url(EVENTS, &id(value)),
                Err(TemplateError::DotSegment)
            );
        }
        // `%` itself is encoded, so a delivered `%2e%2e` cannot spell `..`.
        assert_eq!(
            expand(EVENTS, id("%2e%2E")),
            "https://api.example.com/v1/events/%252e%252E"
        );
        assert!(is_dot_segment("%2E.") && is_dot_segment(".%2e") && !is_dot_segment("..."));
        let two = TemplateValues {
            object_type: Some("."),
            object_id: Some("."),
            ..Default::default()
        };
        assert_eq!(
            expand_url("https://h/x/{object_type}{object_id}/y", &two),
            Err(TemplateError::DotSegment)
        );
        // Dots inside a segment, or in the query, are fine.
        assert_eq!(
            expand(EVENTS, id("...")),
            "https://api.example.com/v1/events/..."
        );
        assert_eq!(
            expand("https://h/q?id={event_id}", id("..")),
            "https://h/q?id=.."
        );
    }

    #[test]
    fn an_absent_or_empty_value_is_a_permanent_error_naming_the_placeholder() {
        let values = id("evt_1");
        let err = expand_url("https://h/objects/{object_id}", &values).unwrap_err();
        assert_eq!(err, TemplateError::Missing("object_id".into()));
        assert_eq!(
            err.to_string(),
            "the fetch URL needs {object_id}, which this event does not have"
        );
        assert_eq!(
            expand_url(EVENTS, &id("")),
            Err(TemplateError::Missing("event_id".into()))
        );
    }

    #[test]
    fn the_shown_url_leaves_out_query_and_user_info() {
        let url = Url::parse("https://user:pw@h.example:8443/v1/x%2Fy?api_key=secret#f").unwrap();
        assert_eq!(display_url(&url), "https://h.example:8443/v1/x%2Fy");
    }

    #[test]
    fn status_codes_are_sorted_into_retry_and_dead() {
        let headers = reqwest::header::HeaderMap::new();
        for code in [408, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    status_error(status, &headers, 0),
                    FetchError::Transient { .. }
                ),
                "{code}"
            );
        }
        for code in [301, 302, 400, 401, 403, 404, 410, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    status_error(status, &headers, 0),
                    FetchError::Permanent { .. }
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn a_429_carries_its_retry_after_and_asks_the_source_to_slow_down() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(
            status_error(StatusCode::TOO_MANY_REQUESTS, &headers, 1_000),
            FetchError::Transient {
                message: "upstream answered 429 Too Many Requests".into(),
                retry_after_ms: Some(31_000),
                throttled: true,
            }
        );
        let FetchError::Transient {
            throttled,
            retry_after_ms,
            ..
        } = status_error(StatusCode::SERVICE_UNAVAILABLE, &headers, 1_000)
        else {
            panic!("503 is transient");
        };
        assert!(!throttled);
        assert_eq!(retry_after_ms, Some(31_000));
    }

    #[test]
    fn answers_must_be_json_and_are_kept_as_returned() {
        assert_eq!(
            json_text(b"{ \"id\" : 1 }\n".to_vec()),
            Ok("{ \"id\" : 1 }\n".to_string())
        );
        assert_eq!(
            json_text(b"\xEF\xBB\xBF[1]".to_vec()),
            Ok("[1]".to_string())
        );
        for body in [&b""[..], b"<html>", b"{\"a\":1} trailing", b"\xff\xfe"] {
            assert!(matches!(
                json_text(body.to_vec()),
                Err(FetchError::Transient { .. })
            ));
        }
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert!(matches!(
            json_text(deep.into_bytes()),
            Err(FetchError::Permanent { .. })
        ));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let cut = short("é".repeat(400));
        assert!(cut.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
