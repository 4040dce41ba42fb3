//! `[sources.NAME.reconcile]` (SPEC §10): how gap-fill reads a provider's
//! list of what it sent. One raw table for both providers; which keys a
//! source may use follows from its preset's [`GapFill`] (Stripe: `api_key`,
//! `types`, `account`; GitHub: `token`, `hook`), and a preset whose
//! provider lists nothing may not have the table at all. The credential is
//! a [`Secret`] (`${VAR}` expanded like every other string), so it never
//! prints; the hook path and the Connect account are checked to hold only
//! the characters they can, since both go into requests as they are.

use serde::Deserialize;

use super::Secret;
use crate::sources::providers::GapFill;

pub const DEFAULT_RECONCILE_INTERVAL_SECS: u64 = 300;
/// A first pass looks back 3 days (Stripe lists 30, GitHub keeps 3).
pub const DEFAULT_RECONCILE_LOOKBACK_SECS: u64 = 3 * 86_400;
pub const DEFAULT_RECONCILE_OVERLAP_SECS: u64 = 60;
pub const DEFAULT_RECONCILE_SETTLE_SECS: u64 = 300;
/// Stripe's `types[]` takes at most this many entries.
pub const MAX_STRIPE_TYPES: usize = 20;
pub const STRIPE_API: &str = "https://api.stripe.com";
pub const GITHUB_API: &str = "https://api.github.com";

/// The validated table.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    pub kind: GapFill,
    /// Stripe's `api_key` or GitHub's `token`: sent as a bearer token.
    pub credential: Secret,
    pub interval_secs: u64,
    pub lookback_secs: u64,
    pub overlap_secs: u64,
    pub settle_secs: u64,
    /// Requests per second to the provider's API; `None`: unpaced.
    pub rate_per_sec: Option<f64>,
    /// Scheme, host and optional path prefix, without a trailing `/`.
    pub base_url: String,
    /// Stripe: `types[]` (empty: every type).
    pub types: Vec<String>,
    /// Stripe Connect: the `Stripe-Account` header.
    pub account: Option<String>,
    /// GitHub: `repos/OWNER/REPO/hooks/ID` or `orgs/ORG/hooks/ID`.
    pub hook: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReconcile {
    api_key: Option<Secret>,
    token: Option<Secret>,
    hook: Option<String>,
    types: Option<Vec<String>>,
    account: Option<String>,
    interval_secs: Option<u64>,
    lookback_secs: Option<u64>,
    overlap_secs: Option<u64>,
    settle_secs: Option<u64>,
    rate_per_sec: Option<f64>,
    base_url: Option<String>,
}

/// Checks the table of a source of `preset` (problems prefixed with `at`,
/// `sources.NAME.reconcile`).
pub(super) fn validate_reconcile(
    at: &str,
    preset: &crate::sources::Provider,
    raw: RawReconcile,
    problems: &mut Vec<String>,
) -> Option<ReconcileConfig> {
    let Some(kind) = preset.gap_fill else {
        problems.push(format!(
            "{at}: the {} preset cannot be gap-filled (only stripe and github list the events \
             they sent); remove the table",
            preset.name
        ));
        return None;
    };
    let before = problems.len();
    let (credential, wrong) = match kind {
        GapFill::StripeEvents => (
            ("api_key", raw.api_key),
            [("token", raw.token.is_some()), ("hook", raw.hook.is_some())],
        ),
        GapFill::GithubDeliveries => (
            ("token", raw.token),
            [
                ("api_key", raw.api_key.is_some()),
                ("types", raw.types.is_some()),
            ],
        ),
    };
    for (key, present) in wrong {
        if present {
            problems.push(format!(
                "{at}.{key}: not a key of the {} preset",
                preset.name
            ));
        }
    }
    if kind == GapFill::GithubDeliveries && raw.account.is_some() {
        problems.push(format!("{at}.account: not a key of the github preset"));
    }
    let credential = match credential {
        (_, Some(secret)) if !secret.expose().is_empty() => secret,
        (key, _) => {
            problems.push(format!(
                "{at}.{key} is required (the provider's API needs it)"
            ));
            Secret::new("")
        }
    };
    if credential.expose().bytes().any(|b| b.is_ascii_control()) {
        problems.push(format!("{at}: the credential holds a control character"));
    }
    let hook = raw.hook.unwrap_or_default();
    if kind == GapFill::GithubDeliveries && !valid_hook(&hook) {
        problems.push(format!(
            "{at}.hook: expected \"repos/OWNER/REPO/hooks/ID\" or \"orgs/ORG/hooks/ID\", got {hook:?}"
        ));
    }
    let types = raw.types.unwrap_or_default();
    if types.len() > MAX_STRIPE_TYPES {
        problems.push(format!(
            "{at}.types: Stripe takes at most {MAX_STRIPE_TYPES} types"
        ));
    }
    if types.iter().any(|t| t.is_empty()) {
        problems.push(format!("{at}.types: an empty type"));
    }
    if let Some(account) = &raw.account {
        let ok = account.starts_with("acct_")
            && account
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            problems.push(format!(
                "{at}.account: expected a Stripe account id (acct_…)"
            ));
        }
    }
    let interval_secs = raw.interval_secs.unwrap_or(DEFAULT_RECONCILE_INTERVAL_SECS);
    let lookback_secs = raw.lookback_secs.unwrap_or(DEFAULT_RECONCILE_LOOKBACK_SECS);
    for (key, value) in [
        ("interval_secs", interval_secs),
        ("lookback_secs", lookback_secs),
    ] {
        if value == 0 {
            problems.push(format!("{at}.{key} must be at least 1"));
        }
    }
    if let Some(rate) = raw.rate_per_sec {
        if !(rate.is_finite() && rate > 0.0) {
            problems.push(format!("{at}.rate_per_sec must be a positive number"));
        }
    }
    let default_base = match kind {
        GapFill::StripeEvents => STRIPE_API,
        GapFill::GithubDeliveries => GITHUB_API,
    };
    let base_url = raw
        .base_url
        .unwrap_or_else(|| default_base.to_string())
        .trim_end_matches('/')
        .to_string();
    match url::Url::parse(&base_url) {
        Ok(u)
            if (u.scheme() == "https" || u.scheme() == "http")
                && u.host_str().is_some()
                && u.query().is_none()
                && u.fragment().is_none() => {}
        _ => problems.push(format!(
            "{at}.base_url: expected an absolute http(s) URL without query"
        )),
    }
    (problems.len() == before).then_some(ReconcileConfig {
        kind,
        credential,
        interval_secs,
        lookback_secs,
        overlap_secs: raw.overlap_secs.unwrap_or(DEFAULT_RECONCILE_OVERLAP_SECS),
        settle_secs: raw.settle_secs.unwrap_or(DEFAULT_RECONCILE_SETTLE_SECS),
        rate_per_sec: raw.rate_per_sec,
        base_url,
        types,
        account: raw.account,
        hook,
    })
}

/// `repos/OWNER/REPO/hooks/ID` or `orgs/ORG/hooks/ID`, names of GitHub's
/// characters only: the path is joined to the API URL as it is.
fn valid_hook(hook: &str) -> bool {
    let name = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let id = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = hook.split('/').collect();
    match parts.as_slice() {
        ["repos", owner, repo, "hooks", n] => name(owner) && name(repo) && id(n),
        ["orgs", org, "hooks", n] => name(org) && id(n),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::valid_hook;

    #[test]
    fn hook_paths_are_a_repository_or_an_organisation_hook() {
        assert!(valid_hook("repos/octo-org/hello.world/hooks/12345678"));
        assert!(valid_hook("orgs/octo-org/hooks/1"));
        for bad in [
            "",
            "repos/o/r/hooks/",
            "repos/o/r/hooks/1x",
            "repos/o/../hooks/1",
            "repos/o/r%2F/hooks/1",
            "users/o/hooks/1",
            "repos/o/r/hooks/1/deliveries",
            "/repos/o/r/hooks/1",
        ] {
            assert!(!valid_hook(bad), "{bad:?}");
        }
    }
}
