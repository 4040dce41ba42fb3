//! The outbox half of a completion (SPEC §7): which destinations an event
//! goes to ([`Outbox`], from the sources' `deliver` rules), the envelope
//! each delivery carries, and the one multi-row `INSERT` that writes the
//! deliveries inside the transaction that marks their events `done`
//! (`complete.rs`). Nothing here talks to a destination: relays read the
//! rows once that transaction has committed. The feed (SPEC §8) is one
//! more route: an event of a source it carries also gets a feed item with
//! the same envelope (`feed.rs`), in the same transaction.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{PgConnection, SqliteConnection};

use super::feed::NewFeedItem;
use super::queue::{ClaimedEvent, DomainWrite};
use crate::config::{Config, DeliverRule};
use utoipa::ToSchema;

/// Where each source's processed events go.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    routes: HashMap<String, Vec<DeliverRule>>,
    /// The sources the feed carries: `None`, no feed; `Some(None)`, every
    /// source.
    feed: Option<Option<BTreeSet<String>>>,
}

impl Outbox {
    /// The sources' `deliver` rules; an empty outbox delivers nothing.
    pub fn from_config(config: &Config) -> Outbox {
        Outbox {
            routes: config
                .sources
                .iter()
                .filter(|(_, s)| !s.deliver.is_empty())
                .map(|(name, s)| (name.clone(), s.deliver.clone()))
                .collect(),
            feed: config.feed.as_ref().map(|f| f.sources.clone()),
        }
    }

    /// An outbox that delivers nothing and feeds the events of `sources`
    /// (`None`: every source).
    pub fn feed_only(sources: Option<BTreeSet<String>>) -> Outbox {
        Outbox {
            routes: HashMap::new(),
            feed: Some(sources),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.feed.is_none()
    }

    /// Whether a completed event of `source` gets a feed item.
    pub fn feeds(&self, source: &str) -> bool {
        match &self.feed {
            None => false,
            Some(None) => true,
            Some(Some(sources)) => sources.contains(source),
        }
    }

    /// The destinations an event of `source` with `action` goes to, each
    /// once (two rules may name one destination), in the rules' order.
    pub fn destinations(&self, source: &str, action: Option<&str>) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for rule in self.routes.get(source).into_iter().flatten() {
            if rule.matches(action) && !names.contains(&rule.to.as_str()) {
                names.push(&rule.to);
            }
        }
        names
    }
}

/// `hl_<ledger id>` for the first completion, `hl_<ledger id>-r<n>` for the
/// n-th replay: the id of every attempt of that delivery.
pub fn delivery_id(event_id: i64, replay: i64) -> String {
    if replay == 0 {
        format!("hl_{event_id}")
    } else {
        format!("hl_{event_id}-r{replay}")
    }
}

/// The envelope of SPEC §7, in the Standard Webhooks payload shape: the
/// body of every delivery and feed item. Fields in sorted order, as
/// `json!` wrote them before this type (stored bodies keep one shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<'a> {
    pub data: EnvelopeData<'a>,
    /// When processing completed (RFC 3339).
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The event's action, or null.
    #[serde(rename = "type")]
    pub kind: Option<&'a str>,
}

/// The event an envelope carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnvelopeData<'a> {
    pub action: Option<&'a str>,
    #[schema(format = DateTime)]
    pub event_time: String,
    /// `hl_<ledger id>`: the same for every completion of the event.
    pub id: String,
    pub ledger_id: i64,
    /// What this event's processing produced (the fetched document, else
    /// the payload's object), whether or not it won the domain row; null
    /// when the event names no object.
    #[schema(value_type = Object)]
    pub object: Value,
    pub object_id: Option<&'a str>,
    pub object_type: Option<&'a str>,
    /// The webhook body as received; a form body as its flat object.
    #[schema(value_type = Object)]
    pub payload: Value,
    pub provider_event_id: Option<&'a str>,
    #[schema(format = DateTime)]
    pub received_at: String,
    /// 0 for the first completion, n for the n-th replay.
    pub replay: i64,
    pub source: &'a str,
}

/// The envelope of an event's completion, as JSON text. `object` is what
/// this event's processing produced (whether or not it won the domain
/// row), `null` when the event names no object.
pub fn envelope(
    event: &ClaimedEvent,
    write: Option<&DomainWrite>,
    replay: i64,
    completed_at_ms: i64,
) -> String {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let object = match (write, &event.object_id) {
        (Some(write), Some(_)) => parse(&write.data),
        _ => Value::Null,
    };
    let envelope = Envelope {
        data: EnvelopeData {
            action: event.action.as_deref(),
            event_time: crate::clock::rfc3339(event.event_time),
            id: format!("hl_{}", event.id),
            ledger_id: event.id,
            object,
            object_id: event.object_id.as_deref(),
            object_type: event.object_type.as_deref(),
            payload: parse(&event.payload),
            provider_event_id: event.provider_event_id.as_deref(),
            received_at: crate::clock::rfc3339(event.received_at),
            replay,
            source: &event.source,
        },
        timestamp: crate::clock::rfc3339(completed_at_ms),
        kind: event.action.as_deref(),
    };
    serde_json::to_string(&envelope).expect("an envelope is always serializable")
}

/// One delivery row to insert.
pub(super) struct NewDelivery<'a> {
    pub event: &'a ClaimedEvent,
    pub destination: &'a str,
    pub replay: i64,
    pub body: String,
}

/// The deliveries and feed items of the completions that took effect:
/// `completed` pairs each done completion with its event's completion
/// count after this one. Each event's envelope is built once, for all.
pub(super) fn new_rows<'a>(
    outbox: &'a Outbox,
    completed: &[(&'a ClaimedEvent, Option<&'a DomainWrite>, i64)],
    now_ms: i64,
) -> (Vec<NewDelivery<'a>>, Vec<NewFeedItem<'a>>) {
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for &(event, write, completions) in completed {
        let destinations = outbox.destinations(&event.source, event.action.as_deref());
        let feeds = outbox.feeds(&event.source);
        if destinations.is_empty() && !feeds {
            continue;
        }
        let replay = (completions - 1).max(0);
        let body = envelope(event, write, replay, now_ms);
        for destination in destinations {
            rows.push(NewDelivery {
                event,
                destination,
                replay,
                body: body.clone(),
            });
        }
        if feeds {
            items.push(NewFeedItem {
                event,
                replay,
                body,
            });
        }
    }
    (rows, items)
}

const SQLITE_INSERT: &str = "\
INSERT INTO deliveries (event_id, destination, replay, source, action, object_type, object_id, \
    status, body, next_attempt_at, created_at) \
SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
    j.value ->> 5, j.value ->> 6, 'pending', j.value ->> 7, $1, $1 \
FROM json_each($2) AS j ORDER BY j.key";

const POSTGRES_INSERT: &str = "\
INSERT INTO deliveries (event_id, destination, replay, source, action, object_type, object_id, \
    status, body, next_attempt_at, created_at) \
SELECT d.event_id, d.destination, d.replay, d.source, d.action, d.object_type, d.object_id, \
    'pending', d.body, $1, $1 \
FROM UNNEST($2::bigint[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], \
    $8::text[], $9::text[]) \
    WITH ORDINALITY AS d(event_id, destination, replay, source, action, object_type, \
        object_id, body, ord) \
ORDER BY d.ord";

/// Rows are inserted in the order given (event id order within a batch), so
/// delivery ids follow the order the events completed.
pub(super) async fn insert_sqlite(
    conn: &mut SqliteConnection,
    rows: &[NewDelivery<'_>],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!([
                d.event.id,
                d.destination,
                d.replay,
                d.event.source,
                d.event.action,
                d.event.object_type,
                d.event.object_id,
                d.body
            ])
        })
        .collect();
    sqlx::query(SQLITE_INSERT)
        .bind(now_ms)
        .bind(Value::Array(rows).to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn insert_postgres(
    conn: &mut PgConnection,
    rows: &[NewDelivery<'_>],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(POSTGRES_INSERT)
        .bind(now_ms)
        .bind(rows.iter().map(|d| d.event.id).collect::<Vec<i64>>())
        .bind(rows.iter().map(|d| d.destination).collect::<Vec<&str>>())
        .bind(
            rows.iter()
                .map(|d| i32::try_from(d.replay).unwrap_or(i32::MAX))
                .collect::<Vec<i32>>(),
        )
        .bind(
            rows.iter()
                .map(|d| d.event.source.as_str())
                .collect::<Vec<&str>>(),
        )
        .bind(
            rows.iter()
                .map(|d| d.event.action.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(
            rows.iter()
                .map(|d| d.event.object_type.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(
            rows.iter()
                .map(|d| d.event.object_id.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(rows.iter().map(|d| d.body.as_str()).collect::<Vec<&str>>())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_mark_replays() {
        assert_eq!(delivery_id(42, 0), "hl_42");
        assert_eq!(delivery_id(42, 1), "hl_42-r1");
        assert_eq!(delivery_id(42, 12), "hl_42-r12");
    }

    /// The bytes `json!` wrote before the envelope had a type: stored and
    /// delivered bodies keep one shape.
    #[test]
    fn the_envelope_is_written_as_before() {
        let event = ClaimedEvent {
            id: 42,
            source: "stripe".into(),
            dedup_key: "id:evt_1".into(),
            provider_event_id: Some("evt_1".into()),
            action: Some("invoice.paid".into()),
            object_type: Some("invoice".into()),
            object_id: Some("in_1".into()),
            event_time: 1_700_000_000_000,
            received_at: 1_700_000_000_500,
            payload: r#"{"z":1,"a":[2]}"#.into(),
            attempts: 1,
            lease_token: 9,
        };
        let write = DomainWrite {
            data: r#"{"id":"in_1"}"#.into(),
        };
        let text = envelope(&event, Some(&write), 2, 1_700_000_001_000);
        let before = json!({
            "type": event.action,
            "timestamp": crate::clock::rfc3339(1_700_000_001_000),
            "data": {
                "id": "hl_42",
                "ledger_id": 42,
                "replay": 2,
                "source": "stripe",
                "provider_event_id": "evt_1",
                "action": "invoice.paid",
                "object_type": "invoice",
                "object_id": "in_1",
                "event_time": crate::clock::rfc3339(1_700_000_000_000),
                "received_at": crate::clock::rfc3339(1_700_000_000_500),
                "object": {"id": "in_1"},
                "payload": {"a": [2], "z": 1},
            }
        })
        .to_string();
        assert_eq!(text, before);
        let bare = ClaimedEvent {
            action: None,
            object_id: None,
            object_type: None,
            provider_event_id: None,
            ..event
        };
        let text = envelope(&bare, None, 0, 0);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, parsed.to_string());
        assert_eq!(parsed["type"], Value::Null);
        assert_eq!(parsed["data"]["object"], Value::Null);
    }
}
