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
/// `subject` when not set (SPEC §7's example).
pub const DEFAULT_SUBJECT: &str = "hookledger.{source}.{object_type}.{action}";
/// `stream` when not set.
pub const DEFAULT_STREAM: &str = "HOOKLEDGER";
/// What a stream made by `create_stream = true` takes: a subject outside
/// it would reach no stream, and every publish would fail for ever.
pub const CREATED_STREAM_SUBJECTS: &str = "hookledger.>";

/// Headers hookledger sets on every delivery itself (SPEC §7): a
/// configured one would duplicate or replace them and break the signature
/// or the receiver's deduplication, so configuring one is refused.
const RESERVED_HEADERS: [&str; 8] = [
    "content-type",
    "content-length",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "idempotency-key",
    "hookledger-source",
    "hookledger-attempt",
];

/// Every key optional, even the required ones, so that a missing `kind`
/// is one problem in the list instead of a serde error that hides the rest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    kind: Option<String>,
    url: Option<Secret>,
    secret: Option<Secret>,
    sign: Option<String>,
    /// Values may be credentials (`Authorization`): kept as secrets until
    /// they are checked.
    #[serde(default)]
    headers: BTreeMap<String, Secret>,
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
    to: Option<String>,
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
    let kind = match raw.kind.as_deref() {
        Some("http") => validate_http(&at, &raw, problems).map(DestinationKind::Http),
        Some("nats") => validate_nats(&at, &raw, problems).map(DestinationKind::Nats),
        Some(other) => {
            problems.push(format!(
                "{at}.kind: expected \"http\" or \"nats\", got {other:?}"
            ));
            None
        }
        None => {
            problems.push(format!("{at}.kind is not set (\"http\" or \"nats\")"));
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
    // The retry keys are checked here only when set here: an inherited bad
    // value is `[processing]`'s problem, reported once, under its own name.
    if raw.max_attempts == Some(0) {
        problems.push(format!("{at}.max_attempts must be at least 1"));
    }
    let max_attempts = raw.max_attempts.unwrap_or(processing.max_attempts);
    let backoff_base_secs = raw
        .backoff_base_secs
        .unwrap_or(processing.backoff_base_secs);
    let backoff_max_secs = raw.backoff_max_secs.unwrap_or(processing.backoff_max_secs);
    let own_backoff = raw.backoff_base_secs.is_some() || raw.backoff_max_secs.is_some();
    if own_backoff && backoff_max_secs < backoff_base_secs {
        problems.push(format!(
            "{at}.backoff_max_secs must be >= backoff_base_secs (with [processing]'s for the one not set here)"
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

/// Checks a destination's URL: set, parsed, one of `schemes`, with a host.
/// Any host is accepted, loopback and private ones included (SPEC §7: the
/// operator chose it). The messages quote nothing of the URL, not even its
/// scheme or the parser's complaint: it may hold a password or a token.
fn check_url(at: &str, url: Option<&Secret>, schemes: &[&str], problems: &mut Vec<String>) {
    let expected = schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ");
    let Some(url) = url else {
        problems.push(format!("{at}.url is not set"));
        return;
    };
    match url::Url::parse(url.expose()) {
        Ok(parsed) if !schemes.contains(&parsed.scheme()) => {
            problems.push(format!("{at}.url must start with {expected}"));
        }
        Ok(parsed) if parsed.host_str().unwrap_or("").is_empty() => {
            problems.push(format!("{at}.url names no host"));
        }
        Ok(_) => {}
        Err(_) => problems.push(format!("{at}.url is not a URL (expected {expected}…)")),
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
    check_url(at, raw.url.as_ref(), &["http", "https"], problems);
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
    for (name, value) in &raw.headers {
        if actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(format!("{at}.headers: {name:?} is not an HTTP header name"));
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            problems.push(format!(
                "{at}.headers: {name:?} is set by hookledger on every delivery"
            ));
        }
        if actix_web::http::header::HeaderValue::from_str(value.expose()).is_err() {
            problems.push(format!(
                "{at}.headers.{name}: the value is not a valid HTTP header value"
            ));
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(HttpDestination {
        url: raw.url.as_ref()?.expose().to_string(),
        secret: signing_key,
        headers: raw
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_string()))
            .collect(),
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
    check_url(at, raw.url.as_ref(), &["nats", "tls"], problems);
    let subject = raw
        .subject
        .clone()
        .unwrap_or_else(|| DEFAULT_SUBJECT.to_string());
    let create_stream = raw.create_stream.unwrap_or(false);
    let created_prefix = CREATED_STREAM_SUBJECTS.trim_end_matches('>');
    if let Err(e) = check_subject(&subject) {
        problems.push(format!("{at}.subject: {e}"));
    } else if create_stream && !subject.starts_with(created_prefix) {
        problems.push(format!(
            "{at}.subject: create_stream makes a stream of the subjects {CREATED_STREAM_SUBJECTS:?}, \
             so the subject must start with {created_prefix:?} (or create the stream yourself)"
        ));
    }
    let stream = raw
        .stream
        .clone()
        .unwrap_or_else(|| DEFAULT_STREAM.to_string());
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
        url: raw.url.clone()?,
        subject,
        stream,
        create_stream,
    })
}

/// A subject template: dot-separated tokens, each non-empty and free of
/// spaces and NATS wildcards, whose `{…}` placeholders are all known.
/// (Each value is made of `A-Za-z0-9_-` when it is filled in, so a valid
/// template makes a valid subject whatever the event holds.)
pub fn check_subject(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        if rest[at..].starts_with('}') {
            return Err(format!("stray }} in {template:?}"));
        }
        let after = &rest[at + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("unclosed {{ in {template:?}"));
        };
        let name = &after[..close];
        if !SUBJECT_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (expected one of {})",
                SUBJECT_PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &after[close + 1..];
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

/// A source's `deliver` list: every `to` names a destination, once; every
/// glob parses, and a rule that lists actions lists at least one.
///
/// A destination named twice is refused rather than merged: SPEC §7 makes
/// one delivery per matching destination, and one rule per destination
/// keeps that true of any code that walks the rules.
pub(super) fn validate_deliver(
    at: &str,
    raw: Vec<RawDeliverRule>,
    destinations: &BTreeMap<String, Option<RawDestination>>,
    problems: &mut Vec<String>,
) -> Vec<DeliverRule> {
    let mut rules: Vec<DeliverRule> = Vec::new();
    let mut named = Vec::new();
    for (i, rule) in raw.into_iter().enumerate() {
        let at = format!("{at}.deliver[{i}]");
        let before = problems.len();
        match &rule.to {
            None => problems.push(format!("{at}.to is not set (a destination name)")),
            Some(to) if !destinations.contains_key(to) => {
                let known = destinations.keys().cloned().collect::<Vec<_>>();
                let known = if known.is_empty() {
                    "no [destinations.NAME] is configured".to_string()
                } else {
                    format!("configured: {}", known.join(", "))
                };
                problems.push(format!("{at}.to: unknown destination {to:?} ({known})"));
            }
            Some(to) if named.contains(to) => problems.push(format!(
                "{at}.to: destination {to:?} is already named by an earlier rule of this \
                 source (list all its actions in one rule)"
            )),
            Some(to) => named.push(to.clone()),
        }
        if rule.actions.as_ref().is_some_and(Vec::is_empty) {
            problems.push(format!(
                "{at}.actions is empty, so nothing would be delivered (leave it out to \
                 deliver every event)"
            ));
        }
        let actions = rule.actions.map(|globs| {
            globs
                .iter()
                .filter_map(|g| {
                    ActionGlob::parse(g)
                        .map_err(|e| problems.push(format!("{at}.actions: {e}")))
                        .ok()
                })
                .collect::<Vec<_>>()
        });
        if problems.len() == before {
            if let Some(to) = rule.to {
                rules.push(DeliverRule { to, actions });
            }
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
        assert!(check_subject("a.{source}}").unwrap_err().contains("stray"));
        assert!(check_subject("a.}{source}").unwrap_err().contains("stray"));
        assert!(check_subject("a.{}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(check_subject("a.x{source}y.{object_id}").is_ok());
    }
}
