//! What the console's templates show, prepared: times in UTC with their
//! relative age (against the app's clock, so tests see fixed text),
//! pretty-printed JSON, and links whose query strings are built with
//! `form_urlencoded` from values that may have come from a webhook. The
//! templates escape everything they print (askama's HTML escaping), so
//! nothing here needs to escape HTML.

use crate::clock::rfc3339;
use crate::state::AppState;
use crate::store::admin::EventRow;
use crate::store::deliveries::DeliveryRow;

/// A moment as the console shows it.
#[derive(Debug, Clone)]
pub struct Moment {
    /// RFC 3339, for `<time datetime>` and the title.
    pub iso: String,
    /// `2026-12-07 17:20:43 UTC`.
    pub text: String,
    /// `5 min ago`, `in 2 h`.
    pub age: String,
}

impl Moment {
    pub fn at(ms: i64, now_ms: i64) -> Moment {
        let iso = rfc3339(ms);
        let text = chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| iso.clone());
        Moment {
            iso,
            text,
            age: age(now_ms - ms),
        }
    }

    pub fn maybe(ms: Option<i64>, now_ms: i64) -> Option<Moment> {
        ms.map(|ms| Moment::at(ms, now_ms))
    }
}

/// How long ago (positive) or ahead (negative) `elapsed_ms` is, in the
/// largest whole unit.
pub fn age(elapsed_ms: i64) -> String {
    let secs = elapsed_ms.saturating_abs() / 1000;
    let span = match secs {
        0..=4 => return "just now".to_string(),
        5..=59 => format!("{secs} s"),
        60..=3_599 => format!("{} min", secs / 60),
        3_600..=86_399 => format!("{} h", secs / 3_600),
        _ => format!("{} d", secs / 86_400),
    };
    if elapsed_ms >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A `since` filter: RFC 3339, or what a `datetime-local` input sends
/// (`2026-12-07T17:20`, with or without seconds), read as UTC. Empty: no
/// filter.
pub fn parse_since(raw: &str) -> Result<Option<i64>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if let Some(ms) = crate::clock::parse_rfc3339(raw) {
        return Ok(Some(ms));
    }
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|format| chrono::NaiveDateTime::parse_from_str(raw, format).ok())
    .map(|t| Some(t.and_utc().timestamp_millis()))
    .ok_or_else(|| {
        "since must be a time such as 2026-12-07T17:20 (UTC) or an RFC 3339 time".to_string()
    })
}

/// A stored JSON text, indented; text that is not JSON is shown as it is.
pub fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

/// `path?k=v&…` with every pair percent-encoded; empty values are left out.
pub fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(k, v);
        any = true;
    }
    if any {
        format!("{path}?{}", query.finish())
    } else {
        path.to_string()
    }
}

/// A path segment, percent-encoded (a destination name in a URL).
pub fn segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// One ledger row, ready to show.
#[derive(Debug, Clone)]
pub struct EventView {
    pub row: EventRow,
    pub received: Moment,
    pub event_time: Moment,
    pub processed: Option<Moment>,
    pub last_duplicate: Option<Moment>,
}

impl EventView {
    pub fn new(row: EventRow, now_ms: i64) -> EventView {
        EventView {
            received: Moment::at(row.received_at, now_ms),
            event_time: Moment::at(row.event_time, now_ms),
            processed: Moment::maybe(row.processed_at, now_ms),
            last_duplicate: Moment::maybe(row.last_duplicate_at, now_ms),
            row,
        }
    }

    pub fn href(&self) -> String {
        format!("/console/events/{}", self.row.id)
    }

    /// What the event is about, in a word or three: its action and object.
    pub fn summary(&self) -> String {
        let object = match (&self.row.object_type, &self.row.object_id) {
            (Some(t), Some(id)) => format!("{t} {id}"),
            (None, Some(id)) => id.clone(),
            _ => String::new(),
        };
        match (&self.row.action, object.is_empty()) {
            (Some(action), false) => format!("{action} · {object}"),
            (Some(action), true) => action.clone(),
            (None, _) => object,
        }
    }
}

/// One delivery, ready to show.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub row: DeliveryRow,
    pub delivery_id: String,
    pub created: Moment,
    pub delivered: Option<Moment>,
    /// When the next attempt is due, while one is awaited.
    pub next_attempt: Option<Moment>,
}

impl DeliveryView {
    pub fn new(row: DeliveryRow, now_ms: i64) -> DeliveryView {
        let waiting = matches!(row.status.as_str(), "pending" | "failed");
        DeliveryView {
            delivery_id: row.delivery_id(),
            created: Moment::at(row.created_at, now_ms),
            delivered: Moment::maybe(row.delivered_at, now_ms),
            next_attempt: waiting.then(|| Moment::at(row.next_attempt_at, now_ms)),
            row,
        }
    }
}

/// A filter form's field: `None` when left empty ("any").
pub fn chosen(value: &str) -> Option<String> {
    Some(value.to_string()).filter(|v| !v.is_empty())
}

/// The configured sources' names, sorted, for a filter form's select.
pub fn source_names(state: &AppState) -> Vec<String> {
    let mut names: Vec<String> = state.sources.keys().cloned().collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_in_the_largest_whole_unit() {
        assert_eq!(age(0), "just now");
        assert_eq!(age(4_999), "just now");
        assert_eq!(age(5_000), "5 s ago");
        assert_eq!(age(61_000), "1 min ago");
        assert_eq!(age(2 * 3_600_000 + 5), "2 h ago");
        assert_eq!(age(3 * 86_400_000), "3 d ago");
        assert_eq!(age(-600_000), "in 10 min");
    }

    #[test]
    fn moments_are_utc() {
        let m = Moment::at(1_700_000_000_000, 1_700_000_060_000);
        assert_eq!(m.text, "2023-11-14 22:13:20 UTC");
        assert_eq!(m.iso, "2023-11-14T22:13:20.000Z");
        assert_eq!(m.age, "1 min ago");
    }

    #[test]
    fn links_encode_every_value_and_skip_empty_ones() {
        assert_eq!(link("/console/events", &[]), "/console/events");
        assert_eq!(
            link(
                "/console/events",
                &[
                    ("source", "a&b=c"),
                    ("status", ""),
                    ("since", "2026-01-01T00:00:00+01:00")
                ]
            ),
            "/console/events?source=a%26b%3Dc&since=2026-01-01T00%3A00%3A00%2B01%3A00"
        );
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn since_takes_rfc3339_and_datetime_local_as_utc() {
        assert_eq!(parse_since(""), Ok(None));
        assert_eq!(
            parse_since("2023-11-14T22:13:20Z"),
            Ok(Some(1_700_000_000_000))
        );
        assert_eq!(
            parse_since("2023-11-14T22:13:20"),
            Ok(Some(1_700_000_000_000))
        );
        assert_eq!(parse_since("2023-11-14T22:13"), Ok(Some(1_699_999_980_000)));
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn json_is_indented_and_other_text_left_alone() {
        assert_eq!(pretty_json(r#"{"a":[1]}"#), "{\n  \"a\": [\n    1\n  ]\n}");
        assert_eq!(pretty_json("not json"), "not json");
    }
}
