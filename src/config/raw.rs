//! The raw TOML shape (`Raw*`, `deny_unknown_fields`: a typo is an error,
//! never a silently ignored key), read section by section. A key of the
//! wrong type or an unknown key is a problem of its own section or entry
//! (`sources.a: unknown field …`), and every other section is still read
//! and checked: one mistake hides no other.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::expand::without_value;
use super::feed::RawFeed;
use super::validate_destinations::{RawDeliverRule, RawDestination};
use super::{Locator, Secret};

/// The whole file, put together by [`read`] (not derived: each section
/// is deserialized on its own).
#[derive(Debug, Default)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    pub(super) processing: RawProcessing,
    pub(super) sources: BTreeMap<String, RawSource>,
    /// `None`: the entry did not deserialize (already a problem); its name
    /// still counts as a destination, so no `deliver` rule naming it is
    /// reported as unknown on top.
    pub(super) destinations: BTreeMap<String, Option<RawDestination>>,
    /// `[feed]`; `None`: no feed (or a table that did not deserialize,
    /// already a problem).
    pub(super) feed: Option<RawFeed>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) bind: Option<String>,
    pub(super) database_url: Option<String>,
    pub(super) admin_token: Option<Secret>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) body_timeout_secs: Option<u64>,
    pub(super) workers: Option<usize>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) shutdown_grace_secs: Option<u64>,
    pub(super) batch_max_rows: Option<usize>,
    pub(super) batch_linger_us: Option<u64>,
    pub(super) batch_writers: Option<usize>,
    pub(super) public_origin: Option<String>,
    pub(super) log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProcessing {
    pub(super) lease_secs: Option<u64>,
    pub(super) max_attempts: Option<u32>,
    pub(super) backoff_base_secs: Option<u64>,
    pub(super) backoff_max_secs: Option<u64>,
    pub(super) max_retry_after_secs: Option<u64>,
    pub(super) poll_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) preset: String,
    pub(super) secret: Option<Secrets>,
    pub(super) public_url: Option<String>,
    pub(super) public_key: Option<String>,
    pub(super) verify: Option<String>,
    pub(super) tolerance_secs: Option<u64>,
    pub(super) signature_header: Option<String>,
    pub(super) signature_encoding: Option<String>,
    pub(super) signature_prefix: Option<String>,
    pub(super) event_id: Option<Locator>,
    pub(super) action: Option<Locator>,
    pub(super) object_id: Option<Locator>,
    pub(super) object_type: Option<Locator>,
    pub(super) event_time: Option<Locator>,
    pub(super) actions: Option<BTreeMap<String, String>>,
    pub(super) hash_window_secs: Option<u64>,
    pub(super) fetch: Option<RawFetch>,
    #[serde(default)]
    pub(super) deliver: Vec<RawDeliverRule>,
}

/// `secret = "…"` or `secret = ["new", "old"]`.
#[derive(Debug)]
pub(super) enum Secrets {
    One(Secret),
    Many(Vec<Secret>),
}

/// By hand rather than `untagged`, so that a value of another type is
/// serde's usual "invalid type: …, expected …" (whose value `without_value`
/// then drops), not a bare "did not match any variant".
impl<'de> Deserialize<'de> for Secrets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Secrets;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secrets, E> {
                Ok(Secrets::One(Secret::new(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Secrets, A::Error> {
                let mut list = Vec::new();
                while let Some(secret) = seq.next_element::<Secret>()? {
                    list.push(secret);
                }
                Ok(Secrets::Many(list))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Secrets {
    pub(super) fn into_vec(self) -> Vec<Secret> {
        match self {
            Secrets::One(s) => vec![s],
            Secrets::Many(list) => list,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFetch {
    pub(super) url: String,
    pub(super) bearer: Option<Secret>,
    pub(super) basic: Option<Secret>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, Secret>,
    pub(super) timeout_secs: Option<u64>,
    pub(super) rate_per_sec: Option<f64>,
}

/// The top-level sections, in the order the file documents them.
const SECTIONS: [&str; 5] = ["server", "processing", "sources", "destinations", "feed"];

/// Reads the expanded TOML into its raw shape. What does not deserialize
/// is a problem under its key, and that key is added to `tainted`, so that
/// the checks' complaints about the defaults standing in for it (a
/// `[server]` of the wrong shape has no `admin_token`) are left out.
pub(super) fn read(
    value: toml::Value,
    problems: &mut Vec<String>,
    tainted: &mut Vec<String>,
) -> RawConfig {
    let mut raw = RawConfig::default();
    let toml::Value::Table(table) = value else {
        problems.push("the config is not a TOML table".into());
        return raw;
    };
    for (key, value) in table {
        match key.as_str() {
            "server" => raw.server = entry(&key, value, problems, tainted).unwrap_or_default(),
            "processing" => {
                raw.processing = entry(&key, value, problems, tainted).unwrap_or_default()
            }
            "sources" => {
                for (name, value) in named(&key, value, problems) {
                    let at = format!("sources.{name}");
                    if let Some(source) = entry(&at, value, problems, tainted) {
                        raw.sources.insert(name, source);
                    }
                }
            }
            "destinations" => {
                for (name, value) in named(&key, value, problems) {
                    let at = format!("destinations.{name}");
                    let destination = entry(&at, value, problems, tainted);
                    raw.destinations.insert(name, destination);
                }
            }
            "feed" => raw.feed = entry(&key, value, problems, tainted),
            other => problems.push(format!(
                "unknown field `{other}`, expected one of {}",
                SECTIONS.map(|s| format!("`{s}`")).join(", ")
            )),
        }
    }
    raw
}

/// One section or named entry, or `None` with the problem recorded.
fn entry<T: DeserializeOwned>(
    at: &str,
    value: toml::Value,
    problems: &mut Vec<String>,
    tainted: &mut Vec<String>,
) -> Option<T> {
    match value.try_into::<T>() {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            problems.push(format!("{at}: {}", without_value(e.message())));
            tainted.push(at.to_string());
            None
        }
    }
}

/// The entries of `[sources.NAME]` or `[destinations.NAME]`.
fn named(
    key: &str,
    value: toml::Value,
    problems: &mut Vec<String>,
) -> toml::map::Map<String, toml::Value> {
    match value {
        toml::Value::Table(entries) => entries,
        _ => {
            problems.push(format!("{key}: expected a table of [{key}.NAME] entries"));
            Default::default()
        }
    }
}
