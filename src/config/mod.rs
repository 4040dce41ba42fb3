//! Configuration: defaults → TOML file → `${VAR}` expansion → the named
//! environment overrides → one [`validate`] step that reports every problem at
//! once.
//!
//! The raw TOML is deserialized section by section into `Raw*` structs with
//! `deny_unknown_fields` (`raw.rs`: a typo is an error, never a silently
//! ignored key). Values that need checking beyond their TOML type (preset
//! names, action rules, templates, destinations, secrets) are checked in
//! [`validate`], which turns the raw config into the typed [`Config`] the
//! rest of the program uses. Only a TOML syntax error stops at once; every
//! other problem — an unset `${VAR}`, a key of the wrong type, a failed
//! check — is collected into the one [`ConfigError`]. Secrets are wrapped in
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
    /// Where processed events are delivered (SPEC §7), by name.
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// The change feed (SPEC §8); `None`: no `[feed]` table, no feed.
    pub feed: Option<FeedConfig>,
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
    /// The origin users reach the server at (`https://hooks.example.com`,
    /// normalized: lower-case host, no default port, no trailing slash):
    /// the console's origin for its CSRF check and its cookie's `Secure`
    /// (SPEC §9). `None`: `http://` + the request's `Host`.
    pub public_origin: Option<String>,
    /// How log lines are written (SPEC §9).
    pub log_format: LogFormat,
}

/// `server.log_format`: human-readable lines (the default), or one JSON
/// object per line for log collectors (`json_log.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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
            .field("public_origin", &self.public_origin)
            .field("log_format", &self.log_format)
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

/// The provider a source follows: a name in the preset table
/// (`sources::PROVIDERS`), which holds its signature scheme and defaults.
#[derive(Clone, Copy)]
pub struct Preset(&'static crate::sources::Provider);

impl Preset {
    /// Every preset of the table, in its order.
    pub fn all() -> impl Iterator<Item = Preset> {
        crate::sources::PROVIDERS.iter().map(|p| Preset(p))
    }

    pub fn as_str(self) -> &'static str {
        self.0.name
    }

    pub fn parse(name: &str) -> Option<Preset> {
        crate::sources::providers::find(name).map(Preset)
    }

    /// The preset of a name known to be in the table (tests, fixed code).
    pub fn named(name: &str) -> Preset {
        Preset::parse(name).unwrap_or_else(|| panic!("no preset named {name:?}"))
    }

    /// Its entry in the preset table.
    pub fn provider(self) -> &'static crate::sources::Provider {
        self.0
    }
}

impl PartialEq for Preset {
    fn eq(&self, other: &Preset) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Preset {}

impl std::hash::Hash for Preset {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// `secret`, one or a list (rotation: a signature made with any of them
    /// is accepted); empty only when the source says `verify = "off"`.
    pub secrets: Vec<Secret>,
    /// The URL the provider calls, for schemes that sign it (Twilio, Square).
    pub public_url: Option<String>,
    /// `whpk_…`: the Ed25519 public key of an asymmetric scheme (the
    /// `standard` preset's `v1a`, SPEC §11); with it `secret` may be absent.
    pub public_key: Option<String>,
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
    /// Where this source's processed events go (empty: nowhere).
    pub deliver: Vec<DeliverRule>,
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

pub mod destinations;
mod expand;
pub mod feed;
mod public_origin;
mod raw;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_destinations;
mod validate;
mod validate_destinations;

pub use destinations::{
    printable_url, ActionGlob, DeliverRule, DestinationConfig, DestinationKind, HttpDestination,
    NatsDestination,
};
pub use feed::{FeedConfig, DEFAULT_FEED_RETENTION_SECS};
pub use validate_destinations::check_subject;

use expand::{expand_vars, follows_from, toml_syntax_problem};
pub use validate::check_template;
use validate::validate;

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
/// validates. Only a TOML syntax error stops at once; an unset variable is
/// reported with every problem the rest of the config has (SPEC §7: every
/// problem at once), less those that only follow from it.
pub fn load_str(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut value: toml::Value =
        toml::from_str(text).map_err(|e| ConfigError(vec![toml_syntax_problem(text, &e)]))?;
    let mut problems = Vec::new();
    let mut tainted = expand_vars(&mut value, env, &mut problems);
    let raw = raw::read(value, &mut problems, &mut tainted);
    match validate(raw, env) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError(problems)),
        Err(ConfigError(more)) => {
            problems.extend(more.into_iter().filter(|p| !follows_from(p, &tainted)));
            Err(ConfigError(problems))
        }
    }
}
