//! The one [`validate`] step that turns the raw TOML shape (`raw.rs`) into
//! the typed [`Config`], reporting every problem at once.

use super::feed::validate_feed;
use super::public_origin;
use super::raw::{RawConfig, RawFetch, RawSource};
use super::validate_destinations::{validate_deliver, validate_destination};
use super::*;

pub(super) fn validate(raw: RawConfig, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let s = raw.server;
    let admin_token = env
        .var("HOOKLEDGER_ADMIN_TOKEN")
        .map(Secret)
        .or(s.admin_token);
    let admin_token = match admin_token {
        Some(t) if !t.0.is_empty() => t,
        _ => {
            problems
                .push("server.admin_token is not set (or set HOOKLEDGER_ADMIN_TOKEN)".to_string());
            Secret(String::new())
        }
    };
    let server = ServerConfig {
        bind: env
            .var("HOOKLEDGER_BIND")
            .or(s.bind)
            .unwrap_or_else(|| DEFAULT_BIND.to_string()),
        database_url: env
            .var("DATABASE_URL")
            .or(s.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()),
        admin_token,
        max_body_bytes: s.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        body_timeout_secs: s.body_timeout_secs.unwrap_or(DEFAULT_BODY_TIMEOUT_SECS),
        workers: s.workers.unwrap_or(8),
        max_in_flight: s.max_in_flight.unwrap_or(4096),
        shutdown_grace_secs: s.shutdown_grace_secs.unwrap_or(30),
        batch_max_rows: s.batch_max_rows.unwrap_or(DEFAULT_BATCH_MAX_ROWS),
        batch_linger_us: s.batch_linger_us.unwrap_or(0),
        batch_writers: s.batch_writers.unwrap_or(1),
        public_origin: s
            .public_origin
            .and_then(|raw| match public_origin::normalize(&raw) {
                Ok(origin) => Some(origin),
                Err(problem) => {
                    problems.push(format!("server.public_origin: {problem}"));
                    None
                }
            }),
        log_format: match s.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                problems.push(format!(
                    "server.log_format must be \"text\" or \"json\", not {other:?}"
                ));
                LogFormat::Text
            }
        },
    };
    if !(server.database_url.starts_with("sqlite:")
        || server.database_url.starts_with("postgres://")
        || server.database_url.starts_with("postgresql://"))
    {
        problems.push("server.database_url must start with sqlite:// or postgres://".into());
    }
    if server.database_url.starts_with("sqlite:") && !names_a_sqlite_file(&server.database_url) {
        problems.push(
            "server.database_url names no SQLite file (sqlite://path/to/ledger.db): an \
             in-memory or nameless database is private to each connection, so the ledger \
             would have no tables and nothing would outlive the process"
                .into(),
        );
    }
    if server.max_body_bytes == 0 {
        problems.push("server.max_body_bytes must be at least 1".into());
    }
    if !(1..=MAX_BODY_TIMEOUT_SECS).contains(&server.body_timeout_secs) {
        problems.push(format!(
            "server.body_timeout_secs must be between 1 and {MAX_BODY_TIMEOUT_SECS}"
        ));
    }
    if server.max_in_flight == 0 {
        problems.push("server.max_in_flight must be at least 1".into());
    }
    if server.batch_max_rows == 0 {
        problems.push("server.batch_max_rows must be at least 1".into());
    }
    if !(1..=MAX_BATCH_WRITERS).contains(&server.batch_writers) {
        problems.push(format!(
            "server.batch_writers must be between 1 and {MAX_BATCH_WRITERS}"
        ));
    }

    let p = raw.processing;
    let processing = ProcessingConfig {
        lease_secs: p.lease_secs.unwrap_or(60),
        max_attempts: p.max_attempts.unwrap_or(8),
        backoff_base_secs: p.backoff_base_secs.unwrap_or(2),
        backoff_max_secs: p.backoff_max_secs.unwrap_or(3600),
        max_retry_after_secs: p.max_retry_after_secs.unwrap_or(3600),
        poll_interval_ms: p.poll_interval_ms.unwrap_or(500),
    };
    if processing.lease_secs == 0 {
        problems.push("processing.lease_secs must be at least 1".into());
    }
    if processing.max_attempts == 0 {
        problems.push("processing.max_attempts must be at least 1".into());
    }
    if processing.backoff_max_secs < processing.backoff_base_secs {
        problems.push("processing.backoff_max_secs must be >= backoff_base_secs".into());
    }
    if processing.max_retry_after_secs == 0 {
        // 0 would not cut Retry-After but ignore it, against §4's promise
        // to wait no sooner than the upstream asks (up to the cap).
        problems.push("processing.max_retry_after_secs must be at least 1".into());
    }

    let source_names: std::collections::BTreeSet<String> = raw.sources.keys().cloned().collect();
    let mut sources = BTreeMap::new();
    for (name, mut raw_source) in raw.sources {
        let deliver = std::mem::take(&mut raw_source.deliver);
        let deliver = validate_deliver(
            &format!("sources.{name}"),
            deliver,
            &raw.destinations,
            &mut problems,
        );
        if let Some(mut source) = validate_source(&name, raw_source, &mut problems) {
            source.deliver = deliver;
            sources.insert(name, source);
        }
    }
    let mut destinations = BTreeMap::new();
    for (name, raw_destination) in raw.destinations {
        let Some(raw_destination) = raw_destination else {
            continue;
        };
        if let Some(destination) =
            validate_destination(&name, raw_destination, &processing, &mut problems)
        {
            destinations.insert(name, destination);
        }
    }

    let feed = raw
        .feed
        .and_then(|f| validate_feed(f, &source_names, &server.admin_token, &mut problems));

    if problems.is_empty() {
        Ok(Config {
            server,
            processing,
            sources,
            destinations,
            feed,
        })
    } else {
        Err(ConfigError(problems))
    }
}

/// Whether a `sqlite:` URL names a file. `sqlite://` (empty path) and
/// `sqlite::memory:` open a database of their own on every connection:
/// the migrations would run on one, and every webhook would then fail with
/// "no table" on the others while `/readyz` said ready. A URL that does not
/// parse is left to the store to report.
fn names_a_sqlite_file(url: &str) -> bool {
    use std::str::FromStr;
    match sqlx::sqlite::SqliteConnectOptions::from_str(url) {
        Ok(options) => {
            // sqlx has no getter for its in-memory flag: `:memory:` becomes
            // this file name, and `mode=memory` stays in the query.
            let file = options.get_filename().to_string_lossy();
            let memory_mode = url
                .split_once('?')
                .is_some_and(|(_, query)| query.split('&').any(|p| p == "mode=memory"));
            !(file.is_empty()
                || file == ":memory:"
                || file.starts_with("file:sqlx-in-memory-")
                || memory_mode)
        }
        Err(_) => true,
    }
}

/// Source names become URL path segments and metric labels.
fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_source(name: &str, raw: RawSource, problems: &mut Vec<String>) -> Option<SourceConfig> {
    let before = problems.len();
    let at = format!("sources.{name}");
    if !valid_source_name(name) {
        problems.push(format!(
            "{at}: a source name may hold only ASCII letters, digits, - and _ (1 to 64)"
        ));
    }
    let preset = Preset::parse(&raw.preset);
    if preset.is_none() {
        problems.push(format!(
            "{at}.preset: unknown preset {:?} (expected {})",
            raw.preset,
            crate::sources::providers::names()
        ));
    }
    let verify_off = match raw.verify.as_deref() {
        None | Some("on") => false,
        Some("off") => true,
        Some(other) => {
            problems.push(format!(
                "{at}.verify: expected \"on\" or \"off\", got {other:?}"
            ));
            false
        }
    };
    if raw.public_key.is_some() {
        if verify_off {
            problems.push(format!("{at}: has both a public_key and verify = \"off\""));
        }
        if preset.is_some_and(|p| p.provider().asymmetric.is_none()) {
            problems.push(format!(
                "{at}.public_key: the {} preset verifies no public-key signature",
                raw.preset
            ));
        }
    }
    let secrets = raw.secret.map(|s| s.into_vec());
    let secrets = match (secrets, verify_off) {
        (Some(_), true) => {
            problems.push(format!("{at}: has both a secret and verify = \"off\""));
            Vec::new()
        }
        (Some(list), false) if list.is_empty() => {
            problems.push(format!("{at}.secret is an empty list"));
            Vec::new()
        }
        (Some(list), false) if list.iter().any(|s| s.0.is_empty()) => {
            problems.push(format!("{at}.secret is empty"));
            Vec::new()
        }
        (Some(list), false) => list,
        (None, true) => Vec::new(),
        // An asymmetric scheme: the public key verifies, no secret needed.
        (None, false) if raw.public_key.is_some() => Vec::new(),
        (None, false) => {
            problems.push(format!(
                "{at}: has no secret; an unsigned source must say verify = \"off\""
            ));
            Vec::new()
        }
    };
    let signature_encoding = match raw.signature_encoding.as_deref() {
        None | Some("hex") => SignatureEncoding::Hex,
        Some("base64") => SignatureEncoding::Base64,
        Some(other) => {
            problems.push(format!(
                "{at}.signature_encoding: expected hex or base64, got {other:?}"
            ));
            SignatureEncoding::Hex
        }
    };
    if let Some(name) = &raw.signature_header {
        // An empty name would look for a header no request can carry, and
        // refuse every delivery as unsigned.
        if actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(format!(
                "{at}.signature_header: {name:?} is not an HTTP header name"
            ));
        }
    }
    let actions = raw.actions.map(|table| {
        table
            .into_iter()
            .filter_map(|(action, rule)| match ActionRule::parse(&rule) {
                Some(r) => Some((action, r)),
                None => {
                    problems.push(format!(
                        "{at}.actions.{action}: expected unique, coalesce, ignore or hash, got {rule:?}"
                    ));
                    None
                }
            })
            .collect()
    });
    let hash_window_secs = raw
        .hash_window_secs
        .unwrap_or(preset.map_or(DEFAULT_HASH_WINDOW_SECS, |p| p.provider().hash_window_secs));
    if hash_window_secs == 0 {
        problems.push(format!("{at}.hash_window_secs must be at least 1"));
    }
    for (key, loc) in [
        ("event_id", &raw.event_id),
        ("action", &raw.action),
        ("object_id", &raw.object_id),
        ("object_type", &raw.object_type),
        ("event_time", &raw.event_time),
    ] {
        if let Some(Locator::Pointer(p)) = loc {
            if !p.is_empty() && !p.starts_with('/') {
                problems.push(format!(
                    "{at}.{key}: a JSON pointer starts with / (got {p:?})"
                ));
            }
        }
    }
    let fetch = raw
        .fetch
        .and_then(|f| validate_fetch(&format!("{at}.fetch"), f, problems));

    if let Some(url) = &raw.public_url {
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => problems.push(format!("{at}.public_url: expected an absolute http(s) URL")),
        }
    }
    let source = SourceConfig {
        name: name.to_string(),
        preset: preset?,
        secrets,
        public_url: raw.public_url,
        public_key: raw.public_key,
        tolerance_secs: raw.tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS),
        signature_header: raw.signature_header,
        signature_encoding,
        signature_prefix: raw.signature_prefix,
        event_id: raw.event_id,
        action: raw.action,
        object_id: raw.object_id,
        object_type: raw.object_type,
        event_time: raw.event_time,
        actions,
        hash_window_secs,
        fetch,
        deliver: Vec::new(),
    };
    // The preset's own checks (a Standard Webhooks secret's form, …).
    let own = (source.preset.provider().check)(&source);
    problems.extend(own.into_iter().map(|p| format!("{at}{p}")));
    (problems.len() == before).then_some(source)
}

fn validate_fetch(at: &str, raw: RawFetch, problems: &mut Vec<String>) -> Option<FetchConfig> {
    let before = problems.len();
    if let Err(e) = check_template(&raw.url) {
        problems.push(format!("{at}.url: {e}"));
    }
    let auth = match (raw.bearer, raw.basic) {
        (Some(_), Some(_)) => {
            problems.push(format!("{at}: bearer and basic are exclusive"));
            FetchAuth::None
        }
        (Some(token), None) => FetchAuth::Bearer(token),
        (None, Some(basic)) => match basic.0.split_once(':') {
            Some((user, password)) => FetchAuth::Basic {
                user: user.to_string(),
                password: Secret(password.to_string()),
            },
            None => {
                problems.push(format!("{at}.basic: expected \"user:password\""));
                FetchAuth::None
            }
        },
        (None, None) => FetchAuth::None,
    };
    let timeout_secs = raw.timeout_secs.unwrap_or(DEFAULT_FETCH_TIMEOUT_SECS);
    if timeout_secs == 0 {
        problems.push(format!("{at}.timeout_secs must be at least 1"));
    }
    if let Some(rate) = raw.rate_per_sec {
        if !(rate.is_finite() && rate > 0.0) {
            problems.push(format!("{at}.rate_per_sec must be a positive number"));
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(FetchConfig {
        url: raw.url,
        auth,
        headers: raw.headers,
        timeout_secs,
        rate_per_sec: raw.rate_per_sec,
    })
}

/// A fetch URL template is an absolute http(s) URL whose placeholders are all
/// known and stand only after the host, so that no delivered value can change
/// where the request goes.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    let mut first_placeholder = None;
    let mut offset = 0;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| "unclosed { in template".to_string())?;
        let name = &after[..close];
        if !TEMPLATE_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (expected {{event_id}}, {{object_id}}, {{object_type}} or {{action}})"
            ));
        }
        first_placeholder.get_or_insert(offset + open);
        offset += open + 1 + close + 1;
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("unmatched } in template".to_string());
    }
    // The part before the first placeholder must already name scheme and host
    // and end inside the path, query or fragment.
    let literal = match first_placeholder {
        Some(at) => &template[..at],
        None => template,
    };
    let filled = |value: &str| {
        url::Url::parse(
            &TEMPLATE_PLACEHOLDERS
                .iter()
                .fold(template.to_string(), |t, p| {
                    t.replace(&format!("{{{p}}}"), value)
                }),
        )
    };
    let url = filled("x").map_err(|e| format!("not a valid URL: {e}"))?;
    // Whatever the URL parser makes of the text (it drops tabs and newlines
    // and reads `\` as `/`), no value may move the request to another host.
    // (Values are percent-encoded at expansion; these are worst cases.)
    for other in ["other.example", "evil.example:1", "a@b.example"] {
        let moved = filled(other)
            .ok()
            .map(|u| (u.host_str().map(str::to_string), u.port()));
        if moved != Some((url.host_str().map(str::to_string), url.port())) {
            return Err(
                "placeholders may stand only after the host (in the path or query)".to_string(),
            );
        }
    }
    if literal.contains(['\t', '\n', '\r', '\\']) {
        return Err("the host part may not hold tabs, line breaks or backslashes".to_string());
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("must be an http:// or https:// URL".to_string());
    }
    if url.host_str().is_none() {
        return Err("must name a host".to_string());
    }
    let after_scheme = literal.split_once("://").map(|(_, r)| r).unwrap_or("");
    let authority = &after_scheme[..after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len())];
    if first_placeholder.is_some() && !after_scheme.contains(['/', '?', '#']) {
        return Err(
            "placeholders may stand only after the host (in the path or query)".to_string(),
        );
    }
    // `https:///{object_id}` parses with the first path segment as its host:
    // the host must stand in the template itself.
    if authority.is_empty() {
        return Err("must name its host literally, after the scheme's //".to_string());
    }
    Ok(())
}
