//! Configuration: defaults → TOML file → `${VAR}` expansion → the named
//! environment overrides → one [`validate`] step that reports every problem at
//! once.
//!
//! The raw TOML is deserialized into `Raw*` structs with `deny_unknown_fields`
//! (a typo is an error, never a silently ignored key). Values that need
//! checking beyond their TOML type (preset names, action rules, templates,
//! secrets) are checked in [`validate`], which turns the raw config into the
//! typed [`Config`] the rest of the program uses. Secrets are wrapped in
//! [`Secret`] so they never appear in `Debug` output or logs.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// `server.batch_writers` at most; also the size of the PostgreSQL ledger
/// pool, in which each writer task holds one connection at a time.
pub const MAX_BATCH_WRITERS: usize = 32;

/// `server.batch_max_rows` when not set; also the bound of SQLite's ledger
/// thread before the ingest path configures it.
pub const DEFAULT_BATCH_MAX_ROWS: usize = 128;

/// Where the config file is, unless `HOOKLEDGER_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "./hookledger.toml";
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://hookledger.db";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 15;
/// `server.body_timeout_secs` at most: a day is already no bound worth having.
pub const MAX_BODY_TIMEOUT_SECS: u64 = 86_400;
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
pub const DEFAULT_HASH_WINDOW_SECS: u64 = 300;
pub const DEFAULT_FETCH_TIMEOUT_SECS: u64 = 10;

/// A secret string: compared and used, never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret's value, for signing and comparing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

// ---------------------------------------------------------------------------
// Typed, validated configuration.

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub processing: ProcessingConfig,
    /// Sources by name, served at `POST /webhooks/{name}`.
    pub sources: BTreeMap<String, SourceConfig>,
}

#[derive(Clone)]
pub struct ServerConfig {
    pub bind: String,
    pub database_url: String,
    pub admin_token: Secret,
    pub max_body_bytes: usize,
    /// A webhook body not received within this many seconds of its headers
    /// is answered 408 and its connection closed.
    pub body_timeout_secs: u64,
    /// Concurrent processing tasks per process; 0 = ingest only.
    pub workers: usize,
    /// Webhook requests in flight at once before new ones get 429 `overloaded`.
    pub max_in_flight: usize,
    /// How long SIGTERM waits for in-flight requests and workers.
    pub shutdown_grace_secs: u64,
    /// Ledger writes committed together in one transaction at most.
    pub batch_max_rows: usize,
    /// How long a batch waits for company after its first row (microseconds).
    pub batch_linger_us: u64,
    /// PostgreSQL: ledger writer tasks, each committing its own batches on a
    /// connection of its own. (SQLite has one writer thread.)
    pub batch_writers: usize,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("bind", &self.bind)
            .field("database_url", &redact_url(&self.database_url))
            .field("admin_token", &self.admin_token)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_timeout_secs", &self.body_timeout_secs)
            .field("workers", &self.workers)
            .field("max_in_flight", &self.max_in_flight)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("batch_max_rows", &self.batch_max_rows)
            .field("batch_linger_us", &self.batch_linger_us)
            .field("batch_writers", &self.batch_writers)
            .finish()
    }
}

/// A URL with its password (and query, which may carry keys) replaced, for
/// printing.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("[redacted]"));
            }
            if url.query().is_some() {
                url.set_query(Some("[redacted]"));
            }
            url.to_string()
        }
        Err(_) => "[unparseable URL]".to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct ProcessingConfig {
    pub lease_secs: u64,
    pub max_attempts: u32,
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// An upstream's `Retry-After` is honoured up to this many seconds from
    /// now, no further: a huge one must not park an event (and every later
    /// event of its object) for years.
    pub max_retry_after_secs: u64,
    /// How often an idle worker looks for due events (milliseconds).
    pub poll_interval_ms: u64,
}

/// The provider a source follows: its signature scheme and field defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    Stripe,
    Github,
    Shopify,
    Acuity,
    Standard,
    Generic,
}

impl Preset {
    pub const ALL: [Preset; 6] = [
        Preset::Stripe,
        Preset::Github,
        Preset::Shopify,
        Preset::Acuity,
        Preset::Standard,
        Preset::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Stripe => "stripe",
            Preset::Github => "github",
            Preset::Shopify => "shopify",
            Preset::Acuity => "acuity",
            Preset::Standard => "standard",
            Preset::Generic => "generic",
        }
    }

    pub fn parse(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// Where a value is found in a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Locator {
    /// An HTTP header (case-insensitive name).
    Header(String),
    /// A JSON pointer (RFC 6901) into the parsed body.
    Pointer(String),
    /// A key of a form body (also looked up at the top level of a JSON body).
    Field(String),
    /// A constant.
    Value(String),
}

/// What the dedup rules do with an action (SPEC §3, rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionRule {
    Unique,
    Coalesce,
    Ignore,
    Hash,
}

impl ActionRule {
    pub fn parse(name: &str) -> Option<ActionRule> {
        match name {
            "unique" => Some(ActionRule::Unique),
            "coalesce" => Some(ActionRule::Coalesce),
            "ignore" => Some(ActionRule::Ignore),
            "hash" => Some(ActionRule::Hash),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub preset: Preset,
    /// `None` only when the source says `verify = "off"`.
    pub secret: Option<Secret>,
    pub tolerance_secs: u64,
    /// Generic preset: the header carrying HMAC-SHA256(secret, body).
    pub signature_header: Option<String>,
    pub signature_encoding: SignatureEncoding,
    pub signature_prefix: Option<String>,
    /// Overrides of the preset's locators (`None`: the preset's default).
    pub event_id: Option<Locator>,
    pub action: Option<Locator>,
    pub object_id: Option<Locator>,
    pub object_type: Option<Locator>,
    pub event_time: Option<Locator>,
    /// Action rules; `None`: the preset's default table (Acuity has one).
    pub actions: Option<BTreeMap<String, ActionRule>>,
    pub hash_window_secs: u64,
    pub fetch: Option<FetchConfig>,
}

#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// URL template with `{event_id}`, `{object_id}`, `{object_type}`, `{action}`.
    pub url: String,
    pub auth: FetchAuth,
    pub headers: BTreeMap<String, Secret>,
    pub timeout_secs: u64,
    /// Token-bucket rate per source; `None`: unlimited.
    pub rate_per_sec: Option<f64>,
}

#[derive(Debug, Clone)]
pub enum FetchAuth {
    None,
    Bearer(Secret),
    /// `user:password`
    Basic {
        user: String,
        password: Secret,
    },
}

/// The placeholders a fetch URL template may use.
pub const TEMPLATE_PLACEHOLDERS: [&str; 4] = ["event_id", "object_id", "object_type", "action"];

// ---------------------------------------------------------------------------
// Raw TOML shape.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    processing: RawProcessing,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    bind: Option<String>,
    database_url: Option<String>,
    admin_token: Option<Secret>,
    max_body_bytes: Option<usize>,
    body_timeout_secs: Option<u64>,
    workers: Option<usize>,
    max_in_flight: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    batch_max_rows: Option<usize>,
    batch_linger_us: Option<u64>,
    batch_writers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcessing {
    lease_secs: Option<u64>,
    max_attempts: Option<u32>,
    backoff_base_secs: Option<u64>,
    backoff_max_secs: Option<u64>,
    max_retry_after_secs: Option<u64>,
    poll_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    preset: String,
    secret: Option<Secret>,
    verify: Option<String>,
    tolerance_secs: Option<u64>,
    signature_header: Option<String>,
    signature_encoding: Option<String>,
    signature_prefix: Option<String>,
    event_id: Option<Locator>,
    action: Option<Locator>,
    object_id: Option<Locator>,
    object_type: Option<Locator>,
    event_time: Option<Locator>,
    actions: Option<BTreeMap<String, String>>,
    hash_window_secs: Option<u64>,
    fetch: Option<RawFetch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFetch {
    url: String,
    bearer: Option<Secret>,
    basic: Option<Secret>,
    #[serde(default)]
    headers: BTreeMap<String, Secret>,
    timeout_secs: Option<u64>,
    rate_per_sec: Option<f64>,
}

// ---------------------------------------------------------------------------
// Loading.

/// Every problem found while loading, each on its own line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// Reads environment variables; injectable so tests never touch the real
/// process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for [(&str, &str)] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// Loads the file named by `HOOKLEDGER_CONFIG` (default `./hookledger.toml`).
pub fn load(env: &dyn Env) -> Result<Config, ConfigError> {
    let path = env
        .var("HOOKLEDGER_CONFIG")
        .unwrap_or_else(|| DEFAULT_CONFIG_PATH.to_string());
    load_file(std::path::Path::new(&path), env)
}

pub fn load_file(path: &std::path::Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(vec![format!(
            "cannot read config file {}: {e}",
            path.display()
        )])
    })?;
    load_str(&text, env)
}

/// Parses TOML text, expands `${VAR}`s, applies the environment overrides and
/// validates.
pub fn load_str(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut value: toml::Value =
        toml::from_str(text).map_err(|e| ConfigError(vec![toml_syntax_problem(text, &e)]))?;
    let mut problems = Vec::new();
    expand_vars(&mut value, env, &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError(problems));
    }
    let raw: RawConfig = value
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError(vec![without_value(e.message())]))?;
    validate(raw, env)
}

/// A type or variant error without the value it quotes. serde writes
/// `invalid type: integer `123…`, expected a string` for an unquoted
/// `secret = 123…`, and the string a misplaced `${VAR}` expanded to
/// (`tolerance_secs = "${STRIPE_WEBHOOK_SECRET}"`): either may be a secret,
/// and the message ends up in logs. The kind of value and what was expected
/// are kept; field names (`unknown field `secrett``) are not values and stay.
fn without_value(message: &str) -> String {
    let message = message.trim();
    for lead in ["invalid type: ", "invalid value: ", "unknown variant"] {
        let Some(rest) = message.strip_prefix(lead) else {
            continue;
        };
        // What follows the value is ours (the expected type or variants),
        // so the last separator is the real one even if the value holds it.
        let tail_at = [", expected ", ", there are no variants"]
            .iter()
            .filter_map(|sep| rest.rfind(sep))
            .max()
            .unwrap_or(rest.len());
        let (found, tail) = rest.split_at(tail_at);
        // `integer `5``, `floating point `1.5``, `string "…"`: the kind is
        // what comes before the quoted value; `sequence` or `map` have none.
        let kind = found
            .find(['`', '"'])
            .map_or(found, |at| &found[..at])
            .trim_end();
        let space = if kind.is_empty() || lead.ends_with(' ') {
            ""
        } else {
            " "
        };
        return format!("{lead}{space}{kind}{tail}");
    }
    message.to_string()
}

/// Where a syntax error is and what it is, without the offending line that
/// toml's own message quotes: that line may hold a secret (an unterminated
/// `secret = "…`), and the message ends up in logs.
fn toml_syntax_problem(text: &str, error: &toml::de::Error) -> String {
    let what = error.message().trim();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("TOML syntax error at line {line}, column {column}: {what}")
        }
        None => format!("TOML syntax error: {what}"),
    }
}

/// Replaces `${VAR}` in every string value; a missing variable is a problem
/// that names it.
fn expand_vars(value: &mut toml::Value, env: &dyn Env, problems: &mut Vec<String>) {
    match value {
        toml::Value::String(s) if s.contains("${") => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(p) => problems.push(p),
        },
        toml::Value::Array(items) => items.iter_mut().for_each(|v| expand_vars(v, env, problems)),
        toml::Value::Table(table) => table
            .iter_mut()
            .for_each(|(_, v)| expand_vars(v, env, problems)),
        _ => {}
    }
}

fn expand_str(s: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${ in a config value".to_string())?;
        let name = &after[..end];
        match env.var(name) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn validate(raw: RawConfig, env: &dyn Env) -> Result<Config, ConfigError> {
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

    let mut sources = BTreeMap::new();
    for (name, raw_source) in raw.sources {
        if let Some(source) = validate_source(&name, raw_source, &mut problems) {
            sources.insert(name, source);
        }
    }

    if problems.is_empty() {
        Ok(Config {
            server,
            processing,
            sources,
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
            "{at}.preset: unknown preset {:?} (expected stripe, github, shopify, acuity, standard or generic)",
            raw.preset
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
    let secret = match (&raw.secret, verify_off) {
        (Some(_), true) => {
            problems.push(format!("{at}: has both a secret and verify = \"off\""));
            None
        }
        (Some(s), false) if s.0.is_empty() => {
            problems.push(format!("{at}.secret is empty"));
            None
        }
        (Some(s), false) => Some(s.clone()),
        (None, true) => None,
        (None, false) => {
            problems.push(format!(
                "{at}: has no secret; an unsigned source must say verify = \"off\""
            ));
            None
        }
    };
    if preset == Some(Preset::Standard) {
        if let Some(s) = &secret {
            if crate::sources::standard_webhooks_key(s.expose()).is_none() {
                problems.push(format!(
                    "{at}.secret: a Standard Webhooks secret is whsec_ followed by base64"
                ));
            }
        }
    }
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
    if preset == Some(Preset::Generic) && secret.is_some() && raw.signature_header.is_none() {
        problems.push(format!(
            "{at}: a signed generic source needs signature_header"
        ));
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
    let hash_window_secs = raw.hash_window_secs.unwrap_or(DEFAULT_HASH_WINDOW_SECS);
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

    if problems.len() > before {
        return None;
    }
    Some(SourceConfig {
        name: name.to_string(),
        preset: preset?,
        secret,
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
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[server]\nadmin_token = \"t\"\n";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn problems(text: &str) -> Vec<String> {
        load_str(text, &env(&[])).expect_err("should be refused").0
    }

    #[test]
    fn the_shipped_config_loads_with_an_empty_environment() {
        let text = include_str!("../hookledger.toml");
        let config = load_str(text, &env(&[])).expect("shipped config is valid");
        assert_eq!(config.server.bind, "127.0.0.1:8080");
        assert_eq!(config.server.database_url, "sqlite://hookledger.db");
        for preset in Preset::ALL {
            assert!(
                config.sources.values().any(|s| s.preset == preset),
                "the shipped config has a {} source",
                preset.as_str()
            );
        }
    }

    #[test]
    fn variables_are_expanded_and_env_overrides_win() {
        let text = r#"
[server]
admin_token = "${TOKEN}"
bind = "0.0.0.0:1"
[sources.s]
preset = "github"
secret = "pre-${GH}-post"
"#;
        let config = load_str(
            text,
            &env(&[
                ("TOKEN", "from-var"),
                ("GH", "x"),
                ("HOOKLEDGER_BIND", "127.0.0.1:9"),
                ("DATABASE_URL", "postgres://u@h/db"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.admin_token.expose(), "from-var");
        assert_eq!(config.server.bind, "127.0.0.1:9");
        assert_eq!(config.server.database_url, "postgres://u@h/db");
        assert_eq!(
            config.sources["s"].secret.as_ref().unwrap().expose(),
            "pre-x-post"
        );
        let overridden = load_str(
            text,
            &env(&[("TOKEN", "a"), ("GH", "x"), ("HOOKLEDGER_ADMIN_TOKEN", "b")]),
        )
        .unwrap();
        assert_eq!(overridden.server.admin_token.expose(), "b");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let found = problems("[server]\nadmin_token = \"${NOT_SET_ANYWHERE}\"\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("NOT_SET_ANYWHERE"), "{found:?}");
    }

    #[test]
    fn a_source_without_secret_must_say_verify_off() {
        let found = problems(&format!("{MINIMAL}[sources.a]\npreset = \"stripe\"\n"));
        assert!(found[0].contains("verify = \"off\""), "{found:?}");
        let ok = load_str(
            &format!("{MINIMAL}[sources.a]\npreset = \"generic\"\nverify = \"off\"\n"),
            &env(&[]),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn bad_templates_are_refused() {
        for (template, expect) in [
            ("https://api.example.com/{nope}", "unknown placeholder"),
            ("https://{object_id}.example.com/x", "after the host"),
            ("https://api.example.com/{object_id", "unclosed"),
            ("ftp://api.example.com/{object_id}", "http"),
            ("not a url {object_id}", "valid URL"),
            ("https:///{object_id}", "host"),
            ("https:///{object_id}/x", "host"),
            ("https://\t/{object_id}", "host"),
            ("https://\\\\/{object_id}", "host"),
        ] {
            let text = format!(
                "{MINIMAL}[sources.a]\npreset = \"acuity\"\nsecret = \"k\"\nfetch.url = \"{template}\"\n"
            );
            let found = problems(&text);
            assert!(
                found.iter().any(|p| p.contains(expect)),
                "{template}: {found:?}"
            );
        }
        assert!(
            check_template("https://api.example.com/v1/{object_type}/{object_id}?x={action}")
                .is_ok()
        );
    }

    #[test]
    fn an_unknown_preset_is_refused() {
        let found = problems(&format!(
            "{MINIMAL}[sources.a]\npreset = \"paypal\"\nsecret = \"k\"\n"
        ));
        assert!(found[0].contains("unknown preset \"paypal\""), "{found:?}");
    }

    #[test]
    fn the_body_timeout_defaults_to_15_s_and_must_be_between_1_s_and_a_day() {
        let config = load_str(MINIMAL, &env(&[])).unwrap();
        assert_eq!(config.server.body_timeout_secs, 15);
        let set = load_str(&format!("{MINIMAL}body_timeout_secs = 2\n"), &env(&[])).unwrap();
        assert_eq!(set.server.body_timeout_secs, 2);
        for bad in [0, MAX_BODY_TIMEOUT_SECS + 1] {
            let found = problems(&format!("{MINIMAL}body_timeout_secs = {bad}\n"));
            assert!(found[0].contains("body_timeout_secs"), "{bad}: {found:?}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
[server]
max_body_bytes = 0
batch_writers = 0
[sources.a]
preset = "paypal"
secret = "k"
[sources.b]
preset = "stripe"
[sources.c]
preset = "acuity"
secret = "k"
actions = { scheduled = "sometimes" }
fetch.url = "https://x.example/{bad}"
"#;
        let found = problems(text);
        for expect in [
            "admin_token",
            "max_body_bytes",
            "batch_writers",
            "paypal",
            "sources.b",
            "sometimes",
            "{bad}",
        ] {
            assert!(
                found.iter().any(|p| p.contains(expect)),
                "{expect} in {found:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_names_are_refused() {
        let found = problems("[server]\nadmin_token = \"t\"\nbnid = \"x\"\n");
        assert!(found[0].contains("bnid"), "{found:?}");
        let found = problems(&format!(
            "{MINIMAL}[sources.\"a/b\"]\npreset = \"generic\"\nverify = \"off\"\n"
        ));
        assert!(found[0].contains("source name"), "{found:?}");
        let found = problems(&format!(
            "{MINIMAL}[sources.a]\npreset = \"standard\"\nsecret = \"not-whsec\"\n"
        ));
        assert!(found[0].contains("whsec_"), "{found:?}");
    }

    #[test]
    fn max_retry_after_secs_defaults_to_an_hour_and_must_be_at_least_one() {
        let config = load_str(MINIMAL, &env(&[])).unwrap();
        assert_eq!(config.processing.max_retry_after_secs, 3600);
        let set = load_str(
            &format!("{MINIMAL}[processing]\nmax_retry_after_secs = 120\n"),
            &env(&[]),
        )
        .unwrap();
        assert_eq!(set.processing.max_retry_after_secs, 120);
        let found = problems(&format!(
            "{MINIMAL}[processing]\nmax_retry_after_secs = 0\n"
        ));
        assert!(found[0].contains("max_retry_after_secs"), "{found:?}");
    }

    #[test]
    fn database_passwords_never_print() {
        let config = load_str(
            &format!("{MINIMAL}database_url = \"postgres://app:pa55word@db.internal/ledger?sslmode=require\"\n"),
            &env(&[]),
        )
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("pa55word"), "{printed}");
        assert!(printed.contains("db.internal"));
    }

    #[test]
    fn type_errors_keep_the_kind_and_drop_the_value() {
        for (message, expected) in [
            (
                "invalid type: integer `12345`, expected a string",
                "invalid type: integer, expected a string",
            ),
            (
                "invalid type: string \"a, expected b\", expected u64",
                "invalid type: string, expected u64",
            ),
            (
                "invalid value: floating point `1.5`, expected usize",
                "invalid value: floating point, expected usize",
            ),
            (
                "invalid type: sequence, expected a string",
                "invalid type: sequence, expected a string",
            ),
            (
                "unknown variant `hunter2`, expected one of `header`, `pointer`",
                "unknown variant, expected one of `header`, `pointer`",
            ),
            (
                "unknown field `secrett`, expected one of `preset`",
                "unknown field `secrett`, expected one of `preset`",
            ),
        ] {
            assert_eq!(without_value(message), expected, "{message}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let text = format!("{MINIMAL}[sources.a]\npreset = \"github\"\nsecret = \"hunter2\"\nfetch.url = \"https://x.example/{{object_id}}\"\nfetch.bearer = \"sk_live_zzz\"\n");
        let config = load_str(&text, &env(&[])).unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("sk_live_zzz"));
        assert!(printed.contains("[redacted]"));
    }
}
