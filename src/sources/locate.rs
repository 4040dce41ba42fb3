//! Where a delivery's event id, action, object and event time are found:
//! the presets' defaults of SPEC §2, with per-source overrides, resolved once
//! into [`Rules`] and applied to each parsed delivery.
//!
//! A located value is a string as-is or a JSON number in decimal (as
//! serde_json writes it); empty strings, booleans, null, arrays and objects
//! are absent. A delivery with no object id has no object type either. An
//! event time is a JSON number of Unix seconds or an RFC 3339 string;
//! anything else is absent (the caller then uses the arrival time).

use serde_json::Value;

use super::{field_value, Headers};
use crate::config::{Locator, SourceConfig};

/// A field found where a locator says, or computed by the preset from the
/// delivery (GitHub's composed action).
#[derive(Debug, Clone)]
pub enum Find {
    Absent,
    At(Locator),
    With(fn(&Lookup<'_>) -> Option<String>),
}

/// An object type: as [`Find`], or derived.
#[derive(Debug, Clone)]
pub enum FindType {
    Absent,
    At(Locator),
    /// The located value up to the first `separator` (Shopify topic
    /// `orders/create` → `orders`, Standard type `invoice.paid` → `invoice`).
    FirstSegment(Locator, char),
    /// Computed from the delivery and its located action (Acuity).
    With(fn(&Lookup<'_>, Option<&str>) -> Option<String>),
}

/// Where an event time is, and in what unit a number there counts.
#[derive(Debug, Clone)]
pub struct TimeAt {
    pub at: Locator,
    /// A number is Unix milliseconds rather than seconds (Zoom, Linear).
    pub millis: bool,
}

/// A preset's defaults: where each delivery field is found (SPEC §2, §11).
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Tried in order; the first present wins (Shopify has two).
    pub event_id: Vec<Locator>,
    pub action: Find,
    pub object_id: Find,
    pub object_type: FindType,
    pub event_time: Option<TimeAt>,
}

impl Defaults {
    /// Nothing found unless configured (the generic preset).
    pub fn none() -> Defaults {
        Defaults {
            event_id: Vec::new(),
            action: Find::Absent,
            object_id: Find::Absent,
            object_type: FindType::Absent,
            event_time: None,
        }
    }
}

/// A header locator.
pub fn header(name: &str) -> Locator {
    Locator::Header(name.to_string())
}

/// A JSON pointer locator.
pub fn pointer(path: &str) -> Locator {
    Locator::Pointer(path.to_string())
}

/// A form field locator.
pub fn field(name: &str) -> Locator {
    Locator::Field(name.to_string())
}

/// An event time in Unix seconds (or RFC 3339) at `at`.
pub fn seconds(at: Locator) -> Option<TimeAt> {
    Some(TimeAt { at, millis: false })
}

/// An event time in Unix milliseconds (or RFC 3339) at `at`.
pub fn millis(at: Locator) -> Option<TimeAt> {
    Some(TimeAt { at, millis: true })
}

/// One delivery as the locators see it.
pub struct Lookup<'a> {
    pub payload: &'a Value,
    pub headers: &'a dyn Headers,
}

impl Lookup<'_> {
    /// The located value as text (see [`text`]).
    pub fn text(&self, locator: &Locator) -> Option<String> {
        text(find(locator, self.payload, self.headers))
    }

    pub fn pointer(&self, path: &str) -> Option<String> {
        self.text(&pointer(path))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.text(&header(name))
    }
}

/// A source's locators: its overrides, else its preset's defaults.
#[derive(Debug, Clone)]
pub struct Rules(Defaults);

/// What [`Rules::locate`] found in one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    pub event_id: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub event_time_ms: Option<i64>,
}

impl Rules {
    /// Each override replaces the preset's default for its field only.
    pub fn new(config: &SourceConfig) -> Rules {
        let mut rules = (config.preset.provider().defaults)();
        if let Some(l) = &config.event_id {
            rules.event_id = vec![l.clone()];
        }
        if let Some(l) = &config.action {
            rules.action = Find::At(l.clone());
        }
        if let Some(l) = &config.object_id {
            rules.object_id = Find::At(l.clone());
        }
        if let Some(l) = &config.object_type {
            rules.object_type = FindType::At(l.clone());
        }
        if let Some(l) = &config.event_time {
            rules.event_time = seconds(l.clone());
        }
        Rules(rules)
    }

    pub fn locate(&self, payload: &Value, headers: &dyn Headers) -> Found {
        let rules = &self.0;
        let lookup = Lookup { payload, headers };
        let at = |l: &Locator| lookup.text(l);
        let found = |f: &Find| match f {
            Find::Absent => None,
            Find::At(l) => at(l),
            Find::With(f) => f(&lookup),
        };
        let event_id = rules.event_id.iter().find_map(at);
        let action = found(&rules.action);
        let object_id = found(&rules.object_id);
        let object_type = object_id.as_ref().and_then(|_| match &rules.object_type {
            FindType::Absent => None,
            FindType::At(l) => at(l),
            FindType::FirstSegment(l, sep) => at(l)
                .and_then(|v| v.split(*sep).next().map(str::to_string))
                .filter(|v| !v.is_empty()),
            FindType::With(f) => f(&lookup, action.as_deref()),
        });
        let event_time_ms = rules.event_time.as_ref().and_then(|t| {
            let raw = find(&t.at, payload, headers)?;
            if t.millis {
                event_time_from_ms(raw)
            } else {
                event_time_ms(raw)
            }
        });
        Found {
            event_id,
            action,
            object_type,
            object_id,
            event_time_ms,
        }
    }
}

/// A value as found, before it is read as text or as a time.
#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    Text(&'a str),
    Json(&'a Value),
}

fn find<'a>(locator: &'a Locator, payload: &'a Value, headers: &'a dyn Headers) -> Option<Raw<'a>> {
    match locator {
        // Read as `signature` reads a signed header: the same bytes.
        Locator::Header(name) => field_value(headers, name).map(Raw::Text),
        Locator::Pointer(path) => payload.pointer(path).map(Raw::Json),
        Locator::Field(key) => payload.get(key.as_str()).map(Raw::Json),
        Locator::Value(constant) => Some(Raw::Text(constant)),
    }
}

/// Strings as-is, numbers in decimal; everything else, and "", is absent.
fn text(raw: Option<Raw<'_>>) -> Option<String> {
    let s = match raw? {
        Raw::Text(s) => s.to_string(),
        Raw::Json(Value::String(s)) => s.clone(),
        Raw::Json(Value::Number(n)) => n.to_string(),
        Raw::Json(_) => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// Unix ms of a number of Unix seconds or an RFC 3339 string.
fn event_time_ms(raw: Raw<'_>) -> Option<i64> {
    match raw {
        Raw::Text(s) => time_from_str(s),
        Raw::Json(Value::String(s)) => time_from_str(s),
        Raw::Json(Value::Number(n)) => match n.as_i64() {
            Some(secs) => secs.checked_mul(1000),
            None => seconds_to_ms(n.as_f64()?),
        },
        Raw::Json(_) => None,
    }
}

/// Unix ms of a number of Unix milliseconds or an RFC 3339 string.
fn event_time_from_ms(raw: Raw<'_>) -> Option<i64> {
    match raw {
        Raw::Json(Value::Number(n)) => match n.as_i64() {
            Some(ms) => Some(ms),
            None => seconds_to_ms(n.as_f64()? / 1000.0),
        },
        Raw::Json(Value::String(s)) => ms_from_str(s),
        Raw::Text(s) => ms_from_str(s),
        Raw::Json(_) => None,
    }
}

/// Plain decimal digits are milliseconds; anything else as [`time_from_str`].
fn ms_from_str(s: &str) -> Option<i64> {
    let digits = s.trim();
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits.parse().ok();
    }
    time_from_str(s)
}

fn seconds_to_ms(secs: f64) -> Option<i64> {
    let ms = (secs * 1000.0).round();
    // i64::MAX as f64 rounds up to 2^63, which is already out of range.
    (ms.is_finite() && ms.abs() < i64::MAX as f64).then_some(ms as i64)
}

/// RFC 3339; a string of plain decimal digits (a header or form field can
/// carry nothing but strings) is read as Unix seconds.
fn time_from_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok()?.checked_mul(1000);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_reads_strings_and_numbers_only() {
        let v = json!({"s": "abc", "i": 42, "neg": -7, "big": 18446744073709551615u64,
            "f": 1.5, "e": "", "b": true, "n": null, "a": [1], "o": {"x": 1}});
        let get = |k: &str| text(Some(Raw::Json(&v[k])));
        assert_eq!(get("s").as_deref(), Some("abc"));
        assert_eq!(get("i").as_deref(), Some("42"));
        assert_eq!(get("neg").as_deref(), Some("-7"));
        assert_eq!(get("big").as_deref(), Some("18446744073709551615"));
        assert_eq!(get("f").as_deref(), Some("1.5"));
        for absent in ["e", "b", "n", "a", "o", "missing"] {
            assert_eq!(get(absent), None, "{absent}");
        }
        assert_eq!(text(Some(Raw::Text(""))), None);
        assert_eq!(text(None), None);
    }

    #[test]
    fn event_times() {
        let ms = |v: Value| event_time_ms(Raw::Json(&v));
        assert_eq!(ms(json!(1_700_000_000)), Some(1_700_000_000_000));
        assert_eq!(ms(json!(1_700_000_000.25)), Some(1_700_000_000_250));
        assert_eq!(ms(json!("2024-01-02T03:04:05Z")), Some(1_704_164_645_000));
        assert_eq!(
            ms(json!("2024-01-02T03:04:05.123+01:00")),
            Some(1_704_161_045_123)
        );
        assert_eq!(ms(json!("1700000000")), Some(1_700_000_000_000));
        for bad in [
            json!("yesterday"),
            json!("2024-01-02"),
            json!(""),
            json!(true),
            json!(null),
            json!({"t": 1}),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e300),
        ] {
            assert_eq!(ms(bad.clone()), None, "{bad}");
        }
        assert_eq!(
            event_time_ms(Raw::Text("2023-03-29T18:00:27.877041743Z")),
            Some(1_680_112_827_877)
        );
    }
}
