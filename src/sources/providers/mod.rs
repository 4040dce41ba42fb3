//! The preset table: one [`Provider`] per preset, each defined whole in its
//! own file here — its signature scheme (both sides), where its deliveries
//! carry ids, action, object and event time, its default action table and
//! hash window, its extra config checks and its challenge handshake.
//!
//! Adding a preset is one file in this directory, defining a
//! `pub const PROVIDER: Provider`, plus its `mod` line and its entry in
//! [`PROVIDERS`]. Everything else — `preset = "…"` in the config, the list
//! of names in the "unknown preset" error, verification, location, replay
//! signing — reads the table. The shared machinery lives beside it:
//! `signature` (keys, MACs, decoding, constant-time comparison over every
//! configured secret) and `locate` (locators and the [`Defaults`] shape).

use std::collections::BTreeMap;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::Value;

use super::locate::Defaults;
use super::signature::{HmacKey, Signed, ToSign};
use super::{body, BodyKind, PayloadError, SignatureError};
use crate::config::{ActionRule, SourceConfig};

pub mod acuity;
pub mod bitbucket;
pub mod generic;
pub mod github;
pub mod gitlab;
pub mod intercom;
pub mod linear;
pub mod mailgun;
pub mod paddle;
pub mod shopify;
pub mod slack;
pub mod square;
pub mod standard;
pub mod stripe;
pub mod svix;
pub mod twilio;
pub mod typeform;
pub mod woocommerce;
pub mod zoom;

/// Every preset, in the order the documentation lists them.
pub static PROVIDERS: &[&Provider] = &[
    &stripe::PROVIDER,
    &github::PROVIDER,
    &shopify::PROVIDER,
    &acuity::PROVIDER,
    &standard::PROVIDER,
    &slack::PROVIDER,
    &zoom::PROVIDER,
    &svix::PROVIDER,
    &paddle::PROVIDER,
    &bitbucket::PROVIDER,
    &typeform::PROVIDER,
    &gitlab::PROVIDER,
    &linear::PROVIDER,
    &intercom::PROVIDER,
    &woocommerce::PROVIDER,
    &mailgun::PROVIDER,
    &square::PROVIDER,
    &twilio::PROVIDER,
    // Last: it is the fallback of the docs' list.
    &generic::PROVIDER,
];

/// Rewrites a body to sign as a sender would send it now ([`Provider::restamp`]).
pub type Restamp = fn(&ToSign<'_>) -> Option<Vec<u8>>;

/// The config check of a preset whose provider signs the URL it calls
/// (square, twilio): a signed source needs `public_url`; `verify = "off"`
/// checks nothing, so it does not.
pub(crate) fn public_url_required(config: &SourceConfig, preset: &str) -> Vec<String> {
    if config.public_url.is_none() && !config.secrets.is_empty() {
        vec![format!(
            ".public_url: required by the {preset} preset ({provider} signs the URL it calls, \
             e.g. \"https://hooks.example.com/webhooks/{preset}\")",
            provider = capitalised(preset)
        )]
    } else {
        Vec::new()
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// What a challenge handshake answers (SPEC §11): 200 with this JSON body,
/// nothing recorded.
pub type ChallengeAnswer = Value;

/// One preset: everything hookledger knows about a provider.
pub struct Provider {
    /// The `preset = "…"` name.
    pub name: &'static str,
    /// One configured secret as the key its scheme uses; `None` when the
    /// secret is malformed for this scheme (then `check` reports it).
    pub key: fn(&str) -> Option<Vec<u8>>,
    /// Verifies a delivery's signature (and then its timestamp), with any
    /// of the source's keys.
    pub verify: fn(&Signed<'_>) -> Result<(), SignatureError>,
    /// The headers a sender adds to sign a body (replay CLI and tests).
    pub sign: fn(&ToSign<'_>) -> Vec<(String, String)>,
    /// For a scheme that signs inside the body (Linear's
    /// `webhookTimestamp`, Mailgun's `signature` object): the body as a
    /// sender would send it at `now_secs`, rewritten; `None`: as it is.
    pub restamp: Option<Restamp>,
    /// Parses a verified body into the JSON object that is located and
    /// stored (GitHub unwraps its form-encoded `payload`).
    pub parse: fn(BodyKind, &[u8]) -> Result<Value, PayloadError>,
    /// Where ids, action, object and event time are found by default.
    pub defaults: fn() -> Defaults,
    /// The default action table (Acuity), when the source has none.
    pub actions: fn() -> Option<BTreeMap<String, ActionRule>>,
    /// `hash_window_secs` when the source does not set it.
    pub hash_window_secs: u64,
    /// Config checks of this preset beyond the shared ones: problems,
    /// each starting with the key it is about relative to the source
    /// (`.secret: …`, `: …`).
    pub check: fn(&SourceConfig) -> Vec<String>,
    /// For a scheme whose MAC does not cover the event (Mailgun): the
    /// verified payload's one-use token, which ingest claims for the
    /// event's id (SPEC §11: the token with another event id is 401).
    pub one_use_token: Option<fn(&Value) -> Option<String>>,
    /// A verified, parsed delivery that is a handshake rather than an
    /// event: its answer (computed with the source's first key).
    pub challenge: Option<fn(&Value, &HmacKey) -> Option<ChallengeAnswer>>,
    /// Where a processed event's domain data is in its payload when no
    /// fetch is configured (Stripe: `/data/object`); `None`: the payload.
    pub domain_object: Option<&'static str>,
    /// The preset's public-key scheme, if it has one (`public_key` is
    /// refused for the others).
    pub asymmetric: Option<&'static Asymmetric>,
    /// How long after an event the provider may still send it again
    /// (SPEC §10): `prune` keeps a row this young unless forced, or the
    /// resend would be new again. `sources.NAME.horizon_secs` overrides it.
    pub resend_horizon_secs: u64,
    /// How its lost events can be found again (SPEC §10); `None`: the
    /// provider lists nothing, and a `reconcile` table is a config error.
    pub gap_fill: Option<GapFill>,
}

/// The providers whose API lists what they sent (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapFill {
    /// `GET /v1/events`: listed events are recorded directly.
    StripeEvents,
    /// `GET <hook>/deliveries`: missing deliveries are asked to be redelivered.
    GithubDeliveries,
}

/// Three days: how long most providers retry a failed delivery, and the
/// resend horizon of every preset that does not say otherwise.
pub const DEFAULT_RESEND_HORIZON_SECS: u64 = 3 * 86_400;

/// An asymmetric (Ed25519) scheme: the receiver holds only a public key.
pub struct Asymmetric {
    /// The configured `public_key` as a verifying key, if well-formed.
    pub public_key: fn(&str) -> Option<VerifyingKey>,
    /// A private key's text as a signing key, if well-formed (replay, tests).
    pub signing_key: fn(&str) -> Option<SigningKey>,
    /// The headers a sender holding the private key adds.
    pub sign: fn(&ToSign<'_, SigningKey>) -> Vec<(String, String)>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The fields most presets share, for `..BASE` in their definitions.
pub const BASE: Provider = Provider {
    name: "",
    key: secret_bytes,
    verify: |_| Err(SignatureError::Invalid),
    sign: |_| Vec::new(),
    restamp: None,
    parse: body::parse,
    defaults: Defaults::none,
    actions: || None,
    hash_window_secs: crate::config::DEFAULT_HASH_WINDOW_SECS,
    check: |_| Vec::new(),
    one_use_token: None,
    challenge: None,
    domain_object: None,
    asymmetric: None,
    resend_horizon_secs: DEFAULT_RESEND_HORIZON_SECS,
    gap_fill: None,
};

/// The secret's bytes as they are: the key of most HMAC schemes.
pub fn secret_bytes(secret: &str) -> Option<Vec<u8>> {
    Some(secret.as_bytes().to_vec())
}

/// The preset named `name`.
pub fn find(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().copied().find(|p| p.name == name)
}

/// "stripe, github, … or generic": the names, for error messages.
pub fn names() -> String {
    let names: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}
