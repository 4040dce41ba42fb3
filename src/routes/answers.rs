//! The JSON answers of the admin API as types: the handlers build these,
//! and the OpenAPI document's schemas are derived from them (`ToSchema`), so
//! the document cannot drift from what is sent. Fields are declared in
//! sorted order, which is the order `serde_json::json!` wrote them in before
//! these types existed: the bytes on the wire did not change (a unit test
//! below holds every answer to it). Columns kept as strings in the store
//! (statuses, strategies) are documented with the enum of their values.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::store::admin::EventRow;
use crate::store::deliveries::DeliveryRow;

/// A ledger row's status (SPEC §4).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Pending,
    Processing,
    Done,
    Failed,
    Dead,
    Ignored,
}

/// Which dedup rule made the key (SPEC §3).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StrategyName {
    EventId,
    ActionObject,
    Coalesce,
    PayloadHash,
}

/// A delivery's status (SPEC §7).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivering,
    Delivered,
    Failed,
    Dead,
}

/// What a replay or retry left the row as: queued again.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Requeued {
    Pending,
}

/// `202` of a replay or a retry: the row is pending again.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequeuedAnswer {
    /// The ledger id (replay) or delivery id (retry) requeued.
    pub id: i64,
    pub status: Requeued,
}

/// The schema of a query's `limit`: a whole number from 1, with no upper
/// bound or integer format (above 500 is taken as 500, however large).
pub fn limit_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .build()
}

/// The schema of a `status` filter: one of `statuses`, or empty for any.
fn status_filter(statuses: &[&str]) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(std::iter::once("").chain(statuses.iter().copied())))
        .build()
}

/// `status` of `GET /admin/events`.
pub fn event_status_filter() -> Object {
    status_filter(&crate::store::admin::STATUSES)
}

/// `status` of `GET /admin/deliveries`.
pub fn delivery_status_filter() -> Object {
    status_filter(&crate::store::deliveries_admin::DELIVERY_STATUSES)
}

/// An RFC 3339 UTC time, or null.
pub fn opt_time(ms: Option<i64>) -> Option<String> {
    ms.map(rfc3339)
}

/// One ledger row of `GET /admin/events` (absent values are null).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventItem {
    pub action: Option<String>,
    pub attempts: i32,
    pub dedup_key: String,
    /// When the provider says the event happened; its arrival when it
    /// says nothing.
    #[schema(format = DateTime)]
    pub event_time: String,
    /// The ledger id.
    pub id: i64,
    pub last_error: Option<String>,
    pub object_id: Option<String>,
    pub object_type: Option<String>,
    /// How the row came in: `webhook`, or `reconcile` (found by gap-fill).
    #[schema(pattern = "^(webhook|reconcile)$")]
    pub origin: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub processed_at: Option<String>,
    /// The provider's own id of the event.
    pub provider_event_id: Option<String>,
    #[schema(format = DateTime)]
    pub received_at: String,
    pub source: String,
    #[schema(value_type = EventStatus)]
    pub status: String,
    #[schema(value_type = StrategyName)]
    pub strategy: String,
}

impl From<&EventRow> for EventItem {
    fn from(row: &EventRow) -> Self {
        EventItem {
            action: row.action.clone(),
            attempts: row.attempts,
            dedup_key: row.dedup_key.clone(),
            event_time: rfc3339(row.event_time),
            id: row.id,
            last_error: row.last_error.clone(),
            object_id: row.object_id.clone(),
            object_type: row.object_type.clone(),
            origin: row.origin.clone(),
            processed_at: opt_time(row.processed_at),
            provider_event_id: row.provider_event_id.clone(),
            received_at: rfc3339(row.received_at),
            source: row.source.clone(),
            status: row.status.clone(),
            strategy: row.strategy.clone(),
        }
    }
}

/// `GET /admin/events/{id}`: the item's fields, the payload and the
/// duplicate count. (A struct of its own rather than the item flattened:
/// `flatten` would write the item's fields first, not in sorted order.)
#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetail {
    pub action: Option<String>,
    pub attempts: i32,
    pub dedup_key: String,
    /// Extra deliveries of this event.
    pub duplicates: i64,
    #[schema(format = DateTime)]
    pub event_time: String,
    pub id: i64,
    pub last_error: Option<String>,
    pub object_id: Option<String>,
    pub object_type: Option<String>,
    /// How the row came in: `webhook`, or `reconcile` (found by gap-fill).
    #[schema(pattern = "^(webhook|reconcile)$")]
    pub origin: String,
    /// The parsed JSON body; a form body as its flat object.
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub processed_at: Option<String>,
    pub provider_event_id: Option<String>,
    #[schema(format = DateTime)]
    pub received_at: String,
    pub source: String,
    #[schema(value_type = EventStatus)]
    pub status: String,
    #[schema(value_type = StrategyName)]
    pub strategy: String,
}

impl EventDetail {
    pub fn new(row: &EventRow, payload: Value) -> Self {
        let item = EventItem::from(row);
        EventDetail {
            action: item.action,
            attempts: item.attempts,
            dedup_key: item.dedup_key,
            duplicates: row.duplicates,
            event_time: item.event_time,
            id: item.id,
            last_error: item.last_error,
            object_id: item.object_id,
            object_type: item.object_type,
            origin: item.origin,
            payload,
            processed_at: item.processed_at,
            provider_event_id: item.provider_event_id,
            received_at: item.received_at,
            source: item.source,
            status: item.status,
            strategy: item.strategy,
        }
    }
}

/// One row of `GET /admin/duplicates`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DuplicateItem {
    pub dedup_key: String,
    /// Extra deliveries.
    pub duplicates: i64,
    #[schema(format = DateTime)]
    pub first_received_at: String,
    /// The ledger id.
    pub id: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_duplicate_at: Option<String>,
    /// A duplicate's canonical body differed from the first copy's.
    pub payload_differs: bool,
    pub source: String,
    #[schema(value_type = StrategyName)]
    pub strategy: String,
}

impl From<&EventRow> for DuplicateItem {
    fn from(row: &EventRow) -> Self {
        DuplicateItem {
            dedup_key: row.dedup_key.clone(),
            duplicates: row.duplicates,
            first_received_at: rfc3339(row.received_at),
            id: row.id,
            last_duplicate_at: opt_time(row.last_duplicate_at),
            payload_differs: row.payload_differs,
            source: row.source.clone(),
            strategy: row.strategy.clone(),
        }
    }
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventItem>,
    /// The next page's `cursor`; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of duplicated rows, newest duplicate first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DuplicatePage {
    pub items: Vec<DuplicateItem>,
    /// The next page's `cursor`; null on the last page.
    pub next_cursor: Option<String>,
}

/// Ledger rows by status, every status present.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventCounts {
    pub dead: i64,
    pub done: i64,
    pub failed: i64,
    pub ignored: i64,
    pub pending: i64,
    pub processing: i64,
}

impl From<&BTreeMap<String, i64>> for EventCounts {
    fn from(counts: &BTreeMap<String, i64>) -> Self {
        let n = |status: &str| counts.get(status).copied().unwrap_or(0);
        EventCounts {
            dead: n("dead"),
            done: n("done"),
            failed: n("failed"),
            ignored: n("ignored"),
            pending: n("pending"),
            processing: n("processing"),
        }
    }
}

/// Deliveries by status, every status present.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryCounts {
    pub dead: i64,
    pub delivered: i64,
    pub delivering: i64,
    pub failed: i64,
    pub pending: i64,
}

impl From<&BTreeMap<String, i64>> for DeliveryCounts {
    fn from(counts: &BTreeMap<String, i64>) -> Self {
        let n = |status: &str| counts.get(status).copied().unwrap_or(0);
        DeliveryCounts {
            dead: n("dead"),
            delivered: n("delivered"),
            delivering: n("delivering"),
            failed: n("failed"),
            pending: n("pending"),
        }
    }
}

/// `GET /admin/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsAnswer {
    /// Per configured source (and any source with rows).
    pub by_source: BTreeMap<String, EventCounts>,
    pub by_status: EventCounts,
    /// Per configured destination.
    pub deliveries: BTreeMap<String, DeliveryCounts>,
    /// Extra deliveries, all rows together.
    pub duplicates: i64,
    /// Ledger rows.
    pub total: i64,
}

/// One row of `GET /admin/deliveries`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryItem {
    pub attempts: i32,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<String>,
    /// `hl_<ledger id>`, or `hl_<ledger id>-r<n>` for the n-th replay.
    pub delivery_id: String,
    pub destination: String,
    /// The event's ledger id.
    pub event_id: i64,
    /// The delivery row's id (of `/admin/deliveries/{id}/retry`).
    pub id: i64,
    pub last_error: Option<String>,
    /// The receiver's last HTTP status.
    pub last_status: Option<i32>,
    /// Only while the delivery waits for an attempt (`pending`, `failed`).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(value_type = DeliveryStatus)]
    pub status: String,
}

impl From<&DeliveryRow> for DeliveryItem {
    /// `next_attempt_at` is shown only while the delivery waits for an
    /// attempt (`pending`, `failed`); the column is kept on other rows but
    /// means nothing there (no attempt is coming, or one is in flight).
    fn from(row: &DeliveryRow) -> Self {
        let waiting = matches!(row.status.as_str(), "pending" | "failed");
        DeliveryItem {
            attempts: row.attempts,
            created_at: rfc3339(row.created_at),
            delivered_at: opt_time(row.delivered_at),
            delivery_id: row.delivery_id(),
            destination: row.destination.clone(),
            event_id: row.event_id,
            id: row.id,
            last_error: row.last_error.clone(),
            last_status: row.last_status,
            next_attempt_at: opt_time(waiting.then_some(row.next_attempt_at)),
            status: row.status.clone(),
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryItem>,
    /// The next page's `cursor`; null on the last page.
    pub next_cursor: Option<String>,
}

/// The answer of `POST /admin/deliveries/retry`: a dry run's count, or
/// the number requeued.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BulkRetryAnswer {
    DryRun {
        /// Deliveries that a real run would requeue now.
        matched: i64,
    },
    Retried {
        /// Deliveries requeued.
        retried: u64,
    },
}

/// A destination's transport.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKindName {
    Http,
    Nats,
}

/// One configured destination, with its counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationItem {
    pub by_status: DeliveryCounts,
    #[schema(value_type = DestinationKindName)]
    pub kind: &'static str,
    pub name: String,
    /// When the oldest unfinished delivery was created.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub oldest_pending_at: Option<String>,
    pub paused: bool,
}

/// `GET /admin/destinations`, in name order.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationList {
    pub items: Vec<DestinationItem>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::admin::STATUSES;
    use crate::store::deliveries_admin::DELIVERY_STATUSES;

    /// What `json!` wrote before: a `Value`'s keys are sorted.
    fn as_json_did<T: Serialize>(answer: &T) {
        let typed = serde_json::to_string(answer).unwrap();
        let sorted = serde_json::to_value(answer).unwrap().to_string();
        assert_eq!(typed, sorted, "fields out of sorted order");
    }

    fn row() -> EventRow {
        EventRow {
            id: 7,
            source: "stripe".into(),
            dedup_key: "id:evt_1".into(),
            strategy: "event_id".into(),
            status: "done".into(),
            attempts: 1,
            last_error: None,
            provider_event_id: Some("evt_1".into()),
            action: Some("invoice.paid".into()),
            object_type: Some("invoice".into()),
            object_id: Some("in_1".into()),
            event_time: 1_700_000_000_000,
            received_at: 1_700_000_000_500,
            processed_at: Some(1_700_000_001_000),
            duplicates: 2,
            last_duplicate_at: None,
            payload_differs: true,
            origin: "webhook".into(),
        }
    }

    #[test]
    fn every_answer_writes_its_fields_in_sorted_order() {
        let row = row();
        let counts: BTreeMap<String, i64> = STATUSES.iter().map(|s| (s.to_string(), 1)).collect();
        let delivery_counts: BTreeMap<String, i64> = DELIVERY_STATUSES
            .iter()
            .map(|s| (s.to_string(), 1))
            .collect();
        as_json_did(&EventPage {
            items: vec![EventItem::from(&row)],
            next_cursor: Some("x".into()),
        });
        as_json_did(&EventDetail::new(&row, serde_json::json!({"b": 1, "a": 2})));
        as_json_did(&DuplicatePage {
            items: vec![DuplicateItem::from(&row)],
            next_cursor: None,
        });
        as_json_did(&StatsAnswer {
            by_source: [("stripe".to_string(), EventCounts::from(&counts))].into(),
            by_status: EventCounts::from(&counts),
            deliveries: [("app".to_string(), DeliveryCounts::from(&delivery_counts))].into(),
            duplicates: 1,
            total: 2,
        });
        as_json_did(&DeliveryPage {
            items: vec![DeliveryItem::from(&DeliveryRow {
                id: 1,
                event_id: 7,
                destination: "app".into(),
                replay: 1,
                status: "failed".into(),
                attempts: 2,
                last_error: Some("503".into()),
                last_status: Some(503),
                created_at: 1,
                delivered_at: None,
                next_attempt_at: 2,
            })],
            next_cursor: None,
        });
        as_json_did(&DestinationList {
            items: vec![DestinationItem {
                by_status: DeliveryCounts::from(&delivery_counts),
                kind: "http",
                name: "app".into(),
                oldest_pending_at: None,
                paused: false,
            }],
        });
        as_json_did(&RequeuedAnswer {
            id: 1,
            status: Requeued::Pending,
        });
    }

    /// The enum of a schema, as strings.
    fn documented<T: utoipa::PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["enum"]
            .as_array()
            .expect("an enum schema")
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_documented_statuses_are_the_stored_ones() {
        assert_eq!(documented::<EventStatus>(), STATUSES);
        assert_eq!(documented::<DeliveryStatus>(), DELIVERY_STATUSES);
        let strategies: Vec<&str> = crate::dedup::Strategy::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(documented::<StrategyName>(), strategies);
        // Counted statuses: the same lists.
        let counts = serde_json::to_value(EventCounts::from(&BTreeMap::new())).unwrap();
        let mut keys: Vec<&String> = counts.as_object().unwrap().keys().collect();
        let mut statuses: Vec<String> = STATUSES.iter().map(|s| s.to_string()).collect();
        statuses.sort();
        keys.sort();
        assert_eq!(keys, statuses.iter().collect::<Vec<_>>());
    }
}
