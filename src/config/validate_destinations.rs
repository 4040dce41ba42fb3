//! Checking `[destinations.NAME]` and the sources' `deliver` lists (SPEC
//! §7): the raw TOML shape of a destination, and the step that turns it
//! into a [`DestinationConfig`], adding every problem to the one list that
//! [`validate`](super::validate) reports at once.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::destinations::{
    ActionGlob, DeliverRule, DestinationConfig, DestinationKind, HttpDestination, NatsDestination,
    SUBJECT_PLACEHOLDERS,
};
use super::{ProcessingConfig, Secret};

/// `timeout_secs` when not set.
pub const DEFAULT_DESTINATION_TIMEOUT_SECS: u64 = 10;
/// `concurrency` when not set.
pub const DEFAULT_DESTINATION_CONCURRENCY: usize = 8;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    kind: String,
    url: Option<Secret>,
    secret: Option<Secret>,
    sign: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    subject: Option<String>,
    stream: Option<String>,
    create_stream: Option<bool>,
    timeout_secs: Option<u64>,
    concurrency: Option<usize>,
    rate_per_sec: Option<f64>,
    max_attempts: Option<u32>,
    backoff_base_secs: Option<u64>,
    backoff_max_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeliverRule {
    to: String,
    actions: Option<Vec<String>>,
}

/// A destination name is used in metrics labels, URLs of the admin API and
/// log lines: the same characters as a source name.
fn valid_destination_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn validate_destination(
    name: &str,
    raw: RawDestination,
    processing: &ProcessingConfig,
    problems: &mut Vec<String>,
) -> Option<DestinationConfig> {
    let before = problems.len();
    let at = format!("destinations.{name}");
    if !valid_destination_name(name) {
        problems.push(format!(
            "{at}: a destination name may hold only ASCII letters, digits, - and _ (1 to 64)"
        ));
    }
    let kind = match raw.kind.as_str() {
        "http" => validate_http(&at, &raw, problems).map(DestinationKind::Http),
        "nats" => validate_nats(&at, &raw, problems).map(DestinationKind::Nats),
        other => {
            problems.push(format!(
                "{at}.kind: expected \"http\" or \"nats\", got {other:?}"
            ));
            None
        }
    };
    let timeout_secs = raw.timeout_secs.unwrap_or(DEFAULT_DESTINATION_TIMEOUT_SECS);
    if timeout_secs == 0 {
        problems.push(format!("{at}.timeout_secs must be at least 1"));
    }
    let concurrency = raw.concurrency.unwrap_or(DEFAULT_DESTINATION_CONCURRENCY);
    if concurrency == 0 {
        problems.push(format!("{at}.concurrency must be at least 1"));
    }
    if let Some(rate) = raw.rate_per_sec {
        if !(rate.is_finite() && rate > 0.0) {
            problems.push(format!("{at}.rate_per_sec must be a positive number"));
        }
    }
    let max_attempts = raw.max_attempts.unwrap_or(processing.max_attempts);
    if max_attempts == 0 {
        problems.push(format!("{at}.max_attempts must be at least 1"));
    }
    let backoff_base_secs = raw
        .backoff_base_secs
        .unwrap_or(processing.backoff_base_secs);
    let backoff_max_secs = raw.backoff_max_secs.unwrap_or(processing.backoff_max_secs);
    if backoff_max_secs < backoff_base_secs {
        problems.push(format!(
            "{at}.backoff_max_secs must be >= backoff_base_secs"
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(DestinationConfig {
        name: name.to_string(),
        kind: kind?,
        timeout_secs,
        concurrency,
        rate_per_sec: raw.rate_per_sec,
        max_attempts,
        backoff_base_secs,
        backoff_max_secs,
    })
}

/// Keys that belong to the other kind are refused rather than ignored: a
/// `subject` on an `http` destination is a mistake the operator should hear of.
fn refuse_keys(at: &str, kind: &str, keys: &[(&str, bool)], problems: &mut Vec<String>) {
    for (key, present) in keys {
        if *present {
            problems.push(format!("{at}.{key} does not apply to a {kind} destination"));
        }
    }
}

fn validate_http(
    at: &str,
    raw: &RawDestination,
    problems: &mut Vec<String>,
) -> Option<HttpDestination> {
    let before = problems.len();
    refuse_keys(
        at,
        "http",
        &[
            ("subject", raw.subject.is_some()),
            ("stream", raw.stream.is_some()),
            ("create_stream", raw.create_stream.is_some()),
        ],
        problems,
    );
    let url = match &raw.url {
        None => {
            problems.push(format!("{at}.url is not set"));
            String::new()
        }
        Some(url) => {
            match url::Url::parse(url.expose()) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    if parsed.host_str().map_or(true, str::is_empty) {
                        problems.push(format!("{at}.url has no host"));
                    }
                }
                Ok(parsed) => problems.push(format!(
                    "{at}.url: expected an http:// or https:// URL, got scheme {:?}",
                    parsed.scheme()
                )),
                Err(e) => problems.push(format!("{at}.url is not a URL: {e}")),
            }
            url.expose().to_string()
        }
    };
    let sign_off = match raw.sign.as_deref() {
        None | Some("on") => false,
        Some("off") => true,
        Some(other) => {
            problems.push(format!(
                "{at}.sign: expected \"on\" or \"off\", got {other:?}"
            ));
            false
        }
    };
    let signing_key = match (&raw.secret, sign_off) {
        (Some(_), true) => {
            problems.push(format!("{at}: has both a secret and sign = \"off\""));
            None
        }
        (None, true) => None,
        (None, false) => {
            problems.push(format!(
                "{at}: has no secret (whsec_…); an unsigned destination must say sign = \"off\""
            ));
            None
        }
        (Some(secret), false) => match crate::sources::standard_webhooks_key(secret.expose()) {
            Some(_) => Some(secret.clone()),
            None => {
                problems.push(format!(
                    "{at}.secret: a Standard Webhooks secret is whsec_ followed by base64"
                ));
                None
            }
        },
    };
    for name in raw.headers.keys() {
        if actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(format!("{at}.headers: {name:?} is not an HTTP header name"));
        }
    }
    for (name, value) in &raw.headers {
        if actix_web::http::header::HeaderValue::from_str(value).is_err() {
            problems.push(format!(
                "{at}.headers.{name}: the value is not a valid HTTP header value"
            ));
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(HttpDestination {
        url,
        secret: signing_key,
        headers: raw.headers.clone(),
    })
}

fn validate_nats(
    at: &str,
    raw: &RawDestination,
    problems: &mut Vec<String>,
) -> Option<NatsDestination> {
    let before = problems.len();
    refuse_keys(
        at,
        "nats",
        &[
            ("secret", raw.secret.is_some()),
            ("sign", raw.sign.is_some()),
            ("headers", !raw.headers.is_empty()),
        ],
        problems,
    );
    let url = match &raw.url {
        None => {
            problems.push(format!("{at}.url is not set"));
            Secret::new("")
        }
        Some(url) => {
            match url::Url::parse(url.expose()) {
                Ok(parsed) if matches!(parsed.scheme(), "nats" | "tls") => {}
                Ok(parsed) => problems.push(format!(
                    "{at}.url: expected a nats:// or tls:// URL, got scheme {:?}",
                    parsed.scheme()
                )),
                // Never the error's text with the URL in it: it may hold a password.
                Err(_) => problems.push(format!("{at}.url is not a URL")),
            }
            url.clone()
        }
    };
    let subject = raw
        .subject
        .clone()
        .unwrap_or_else(|| "hookledger.{source}.{object_type}.{action}".to_string());
    if let Err(e) = check_subject(&subject) {
        problems.push(format!("{at}.subject: {e}"));
    }
    let stream = raw
        .stream
        .clone()
        .unwrap_or_else(|| "HOOKLEDGER".to_string());
    if stream.is_empty()
        || !stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        problems.push(format!(
            "{at}.stream: a stream name holds only ASCII letters, digits, - and _"
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(NatsDestination {
        url,
        subject,
        stream,
        create_stream: raw.create_stream.unwrap_or(false),
    })
}

/// A subject template: dot-separated tokens, each non-empty and free of
/// spaces and NATS wildcards, whose `{…}` placeholders are all known.
pub fn check_subject(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("unclosed {{ in {template:?}"));
        };
        let name = &rest[open + 1..open + close];
        if !SUBJECT_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (expected one of {})",
                SUBJECT_PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &rest[open + close + 1..];
    }
    if template.contains('}') && !template.contains('{') {
        return Err(format!("stray }} in {template:?}"));
    }
    for token in template.split('.') {
        if token.is_empty() {
            return Err(format!("{template:?} has an empty token"));
        }
        if token.contains(['*', '>']) || token.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "{template:?}: a subject may not hold wildcards, spaces or control characters"
            ));
        }
    }
    Ok(())
}

/// A source's `deliver` list: every `to` names a destination, every glob parses.
pub(super) fn validate_deliver(
    at: &str,
    raw: Vec<RawDeliverRule>,
    destinations: &BTreeMap<String, RawDestination>,
    problems: &mut Vec<String>,
) -> Vec<DeliverRule> {
    let mut rules = Vec::new();
    for (i, rule) in raw.into_iter().enumerate() {
        let at = format!("{at}.deliver[{i}]");
        let mut ok = true;
        if !destinations.contains_key(&rule.to) {
            problems.push(format!("{at}.to: unknown destination {:?}", rule.to));
            ok = false;
        }
        let actions = rule.actions.map(|globs| {
            globs
                .iter()
                .filter_map(|g| match ActionGlob::parse(g) {
                    Ok(glob) => Some(glob),
                    Err(e) => {
                        problems.push(format!("{at}.actions: {e}"));
                        ok = false;
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        if ok {
            rules.push(DeliverRule {
                to: rule.to,
                actions,
            });
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_templates_take_only_known_placeholders_and_valid_tokens() {
        assert!(check_subject("hookledger.{source}.{object_type}.{action}").is_ok());
        assert!(check_subject("a.{object_id}").is_ok());
        assert!(check_subject("a.{event}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(check_subject("a.{source").is_err());
        assert!(check_subject("a..b").is_err());
        assert!(check_subject("a.*").is_err());
        assert!(check_subject("a.>").is_err());
        assert!(check_subject("a b").is_err());
    }
}
