//! Where a delivery's event id, action, object and event time are found:
//! the presets' defaults of SPEC §2, with per-source overrides, resolved once
//! into [`Rules`] and applied to each parsed delivery.
//!
//! A located value is a string as-is or a JSON number in decimal (as
//! serde_json writes it); empty strings, booleans, null, arrays and objects
//! are absent. A delivery with no object id has no object type either. An
//! event time is a JSON number of Unix seconds or an RFC 3339 string;
//! anything else is absent (the caller then uses the arrival time).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{field_value, Headers};
use crate::config::{ActionRule, Locator, Preset, SourceConfig};

/// GitHub's object pointers, most specific first, with the object type each
/// one names.
pub const GITHUB_OBJECTS: [(&str, &str); 13] = [
    ("/pull_request/id", "pull_request"),
    ("/issue/id", "issue"),
    ("/check_run/id", "check_run"),
    ("/check_suite/id", "check_suite"),
    ("/workflow_run/id", "workflow_run"),
    ("/workflow_job/id", "workflow_job"),
    ("/release/id", "release"),
    ("/deployment/id", "deployment"),
    ("/comment/id", "comment"),
    ("/repository/id", "repository"),
    ("/organization/id", "organization"),
    ("/installation/id", "installation"),
    ("/hook_id", "hook"),
];

/// The preset's default action table: only Acuity has one.
pub fn default_actions(preset: Preset) -> Option<BTreeMap<String, ActionRule>> {
    (preset == Preset::Acuity).then(|| {
        [
            ("scheduled", ActionRule::Unique),
            ("canceled", ActionRule::Unique),
            ("order.completed", ActionRule::Unique),
            ("rescheduled", ActionRule::Coalesce),
            ("changed", ActionRule::Coalesce),
        ]
        .into_iter()
        .map(|(action, rule)| (action.to_string(), rule))
        .collect()
    })
}

#[derive(Debug, Clone)]
enum ActionSpec {
    Absent,
    At(Locator),
    /// Header `X-GitHub-Event`, plus `.` and `/action` when present.
    GithubComposed,
}

#[derive(Debug, Clone)]
enum ObjectIdSpec {
    Absent,
    At(Locator),
    /// The first present of [`GITHUB_OBJECTS`].
    GithubFirstPresent,
}

#[derive(Debug, Clone)]
enum ObjectTypeSpec {
    Absent,
    At(Locator),
    /// The located value up to the first `separator` (Shopify topic
    /// `orders/create` → `orders`, Standard type `invoice.paid` → `invoice`).
    FirstSegment(Locator, char),
    /// `order` for `order.*` actions, else `appointment`.
    AcuityFromAction,
    /// The type named by the first present of [`GITHUB_OBJECTS`].
    GithubFirstPresent,
}

/// A source's locators: its overrides, else its preset's defaults.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Tried in order; the first present wins (Shopify has two).
    event_id: Vec<Locator>,
    action: ActionSpec,
    object_id: ObjectIdSpec,
    object_type: ObjectTypeSpec,
    event_time: Option<Locator>,
}

/// What [`Rules::locate`] found in one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    pub event_id: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub event_time_ms: Option<i64>,
}

fn header(name: &str) -> Locator {
    Locator::Header(name.to_string())
}

fn pointer(path: &str) -> Locator {
    Locator::Pointer(path.to_string())
}

fn field(name: &str) -> Locator {
    Locator::Field(name.to_string())
}

impl Rules {
    /// The preset's defaults (SPEC §2 table).
    fn preset_defaults(preset: Preset) -> Rules {
        use ObjectIdSpec as Id;
        use ObjectTypeSpec as Type;
        let (event_id, action, object_id, object_type, event_time) = match preset {
            Preset::Stripe => (
                vec![pointer("/id")],
                ActionSpec::At(pointer("/type")),
                Id::At(pointer("/data/object/id")),
                Type::At(pointer("/data/object/object")),
                Some(pointer("/created")),
            ),
            Preset::Github => (
                vec![header("X-GitHub-Delivery")],
                ActionSpec::GithubComposed,
                Id::GithubFirstPresent,
                Type::GithubFirstPresent,
                None,
            ),
            Preset::Shopify => (
                vec![header("X-Shopify-Event-Id"), header("X-Shopify-Webhook-Id")],
                ActionSpec::At(header("X-Shopify-Topic")),
                Id::At(pointer("/id")),
                Type::FirstSegment(header("X-Shopify-Topic"), '/'),
                Some(header("X-Shopify-Triggered-At")),
            ),
            Preset::Acuity => (
                Vec::new(),
                ActionSpec::At(field("action")),
                Id::At(field("id")),
                Type::AcuityFromAction,
                None,
            ),
            Preset::Standard => (
                vec![header("webhook-id")],
                ActionSpec::At(pointer("/type")),
                Id::At(pointer("/data/id")),
                Type::FirstSegment(pointer("/type"), '.'),
                Some(pointer("/timestamp")),
            ),
            Preset::Generic => (
                Vec::new(),
                ActionSpec::Absent,
                Id::Absent,
                Type::Absent,
                None,
            ),
        };
        Rules {
            event_id,
            action,
            object_id,
            object_type,
            event_time,
        }
    }

    /// Each override replaces the preset's default for its field only.
    pub fn new(config: &SourceConfig) -> Rules {
        let mut rules = Rules::preset_defaults(config.preset);
        if let Some(l) = &config.event_id {
            rules.event_id = vec![l.clone()];
        }
        if let Some(l) = &config.action {
            rules.action = ActionSpec::At(l.clone());
        }
        if let Some(l) = &config.object_id {
            rules.object_id = ObjectIdSpec::At(l.clone());
        }
        if let Some(l) = &config.object_type {
            rules.object_type = ObjectTypeSpec::At(l.clone());
        }
        if let Some(l) = &config.event_time {
            rules.event_time = Some(l.clone());
        }
        rules
    }

    pub fn locate(&self, payload: &Value, headers: &dyn Headers) -> Found {
        let at = |l: &Locator| text(find(l, payload, headers));
        let event_id = self.event_id.iter().find_map(at);
        let action = match &self.action {
            ActionSpec::Absent => None,
            ActionSpec::At(l) => at(l),
            ActionSpec::GithubComposed => {
                at(&header("X-GitHub-Event")).map(|event| match at(&pointer("/action")) {
                    Some(action) => format!("{event}.{action}"),
                    None => event,
                })
            }
        };
        let github = || {
            GITHUB_OBJECTS
                .iter()
                .find_map(|(p, kind)| at(&pointer(p)).map(|id| (*kind, id)))
        };
        let object_id = match &self.object_id {
            ObjectIdSpec::Absent => None,
            ObjectIdSpec::At(l) => at(l),
            ObjectIdSpec::GithubFirstPresent => github().map(|(_, id)| id),
        };
        let object_type = object_id.as_ref().and_then(|_| match &self.object_type {
            ObjectTypeSpec::Absent => None,
            ObjectTypeSpec::At(l) => at(l),
            ObjectTypeSpec::FirstSegment(l, sep) => at(l)
                .and_then(|v| v.split(*sep).next().map(str::to_string))
                .filter(|v| !v.is_empty()),
            ObjectTypeSpec::AcuityFromAction => Some(acuity_object_type(action.as_deref()).into()),
            ObjectTypeSpec::GithubFirstPresent => github().map(|(kind, _)| kind.to_string()),
        });
        let event_time_ms = self
            .event_time
            .as_ref()
            .and_then(|l| event_time_ms(find(l, payload, headers)?));
        Found {
            event_id,
            action,
            object_type,
            object_id,
            event_time_ms,
        }
    }
}

fn acuity_object_type(action: Option<&str>) -> &'static str {
    match action {
        Some(a) if a.starts_with("order.") => "order",
        _ => "appointment",
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

    #[test]
    fn acuity_default_actions() {
        let table = default_actions(Preset::Acuity).unwrap();
        assert_eq!(table.len(), 5);
        assert_eq!(table["scheduled"], ActionRule::Unique);
        assert_eq!(table["canceled"], ActionRule::Unique);
        assert_eq!(table["order.completed"], ActionRule::Unique);
        assert_eq!(table["rescheduled"], ActionRule::Coalesce);
        assert_eq!(table["changed"], ActionRule::Coalesce);
        for preset in Preset::ALL.into_iter().filter(|p| *p != Preset::Acuity) {
            assert_eq!(default_actions(preset), None, "{preset:?}");
        }
    }
}
