//! The fast path of group commit: a whole batch of deliveries decided with
//! one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING` and one
//! multi-row duplicate `UPDATE … RETURNING`, instead of two statements per
//! delivery. Each statement takes the batch as one parameter set (SQLite:
//! a JSON array read with `json_each`; PostgreSQL: `UNNEST` of arrays), so
//! the statement text never changes and stays prepared.
//!
//! Copies of one key inside a batch are grouped first: the earliest is the
//! insert candidate, the others are its duplicates. Groups are handled in
//! key order, so two batches on PostgreSQL take row locks in the same order.
//!
//! Only event-id and unique action+object keys take this path. Coalesce,
//! payload-hash (two buckets to look in) and ignored deliveries, and any
//! group whose row vanished between the two statements (a prune), go
//! through the one-at-a-time path in `ledger.rs`.

use std::collections::{BTreeMap, HashMap};

use sqlx::{PgConnection, SqliteConnection};

use super::ledger::{NewEvent, RecordOutcome};
use crate::dedup::Strategy;

/// Copies of one `(source, dedup_key)` in a batch, in arrival order.
struct Group<'a> {
    source: &'a str,
    key: &'a str,
    members: Vec<usize>,
}

/// What the fast path could not settle: indexes for the one-at-a-time path.
pub(super) type Leftover = Vec<usize>;

pub(super) struct Batch<'a> {
    events: &'a [NewEvent],
    groups: Vec<Group<'a>>,
    slow: Vec<usize>,
}

impl<'a> Batch<'a> {
    pub(super) fn new(events: &'a [NewEvent]) -> Batch<'a> {
        let mut by_key: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        let mut slow = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let fast = matches!(e.strategy, Strategy::EventId | Strategy::ActionObject)
                && !e.ignored
                && e.previous_key.is_none();
            if fast {
                by_key
                    .entry((e.source.as_str(), e.dedup_key.as_str()))
                    .or_default()
                    .push(i);
            } else {
                slow.push(i);
            }
        }
        let groups = by_key
            .into_iter()
            .map(|((source, key), members)| Group {
                source,
                key,
                members,
            })
            .collect();
        Batch {
            events,
            groups,
            slow,
        }
    }

    fn candidates(&self) -> impl Iterator<Item = &NewEvent> {
        self.groups.iter().map(|g| &self.events[g.members[0]])
    }

    /// Settles outcomes from the insert's and the update's answers; returns
    /// what is left for the one-at-a-time path.
    fn settle(
        &self,
        inserted: &HashMap<(String, String), i64>,
        duplicates: &HashMap<(String, String), (i64, String)>,
        outcomes: &mut [Option<RecordOutcome>],
    ) -> Leftover {
        let mut leftover = self.slow.clone();
        for group in &self.groups {
            let key = (group.source.to_string(), group.key.to_string());
            let mut dups = &group.members[..];
            if let Some(&id) = inserted.get(&key) {
                outcomes[group.members[0]] = Some(RecordOutcome::Accepted { id });
                dups = &group.members[1..];
            }
            if dups.is_empty() {
                continue;
            }
            match duplicates.get(&key) {
                Some((id, status)) => {
                    for &i in dups {
                        outcomes[i] = Some(if status == "ignored" {
                            RecordOutcome::Ignored { id: *id }
                        } else {
                            RecordOutcome::Duplicate {
                                id: *id,
                                previous_bucket: false,
                            }
                        });
                    }
                }
                None => leftover.extend_from_slice(dups),
            }
        }
        leftover
    }

    /// Per group with duplicates: how many, the latest arrival, and the body
    /// hash they share (`None` when they differ among themselves, which
    /// means some differ from the original too).
    fn duplicate_counts(
        &self,
        inserted: &HashMap<(String, String), i64>,
    ) -> Vec<(&str, &str, i64, i64, Option<&str>)> {
        self.groups
            .iter()
            .filter_map(|g| {
                let key = (g.source.to_string(), g.key.to_string());
                let dups = if inserted.contains_key(&key) {
                    &g.members[1..]
                } else {
                    &g.members[..]
                };
                let first = self.events.get(*dups.first()?)?;
                let latest = dups.iter().map(|&i| self.events[i].received_at_ms).max()?;
                let same = dups
                    .iter()
                    .all(|&i| self.events[i].body_hash == first.body_hash);
                Some((
                    g.source,
                    g.key,
                    dups.len() as i64,
                    latest,
                    same.then_some(first.body_hash.as_str()),
                ))
            })
            .collect()
    }
}

const SQLITE_INSERT: &str = "\
INSERT INTO events (source, dedup_key, strategy, status, provider_event_id, action, \
    object_type, object_id, event_time, payload, body_hash, received_at, next_attempt_at) \
SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, 'pending', j.value ->> 3, j.value ->> 4, \
    j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9, j.value ->> 10, \
    j.value ->> 10 \
FROM json_each($1) AS j WHERE true ORDER BY j.key \
ON CONFLICT DO NOTHING RETURNING id, source, dedup_key";

const SQLITE_DUPLICATES: &str = "\
WITH d AS (SELECT j.value ->> 0 AS source, j.value ->> 1 AS dedup_key, j.value ->> 2 AS n, \
    j.value ->> 3 AS at, j.value ->> 4 AS h FROM json_each($1) AS j) \
UPDATE events SET duplicates = duplicates + d.n, last_duplicate_at = d.at, \
    payload_differs = (payload_differs OR d.h IS NULL OR body_hash <> d.h) \
FROM d WHERE events.source = d.source AND events.dedup_key = d.dedup_key \
    AND events.strategy <> 'coalesce' \
RETURNING events.id, events.source, events.dedup_key, events.status";

type Inserted = HashMap<(String, String), i64>;
type Duplicated = HashMap<(String, String), (i64, String)>;

pub(super) async fn record_sqlite(
    conn: &mut SqliteConnection,
    batch: &Batch<'_>,
    outcomes: &mut [Option<RecordOutcome>],
) -> Result<Leftover, sqlx::Error> {
    let mut inserted = Inserted::new();
    if !batch.groups.is_empty() {
        let rows: Vec<serde_json::Value> = batch
            .candidates()
            .map(|e| {
                serde_json::json!([
                    e.source,
                    e.dedup_key,
                    e.strategy.as_str(),
                    e.provider_event_id,
                    e.action,
                    e.object_type,
                    e.object_id,
                    e.event_time_ms,
                    e.payload,
                    e.body_hash,
                    e.received_at_ms
                ])
            })
            .collect();
        let returned: Vec<(i64, String, String)> = sqlx::query_as(SQLITE_INSERT)
            .bind(serde_json::Value::Array(rows).to_string())
            .fetch_all(&mut *conn)
            .await?;
        inserted = returned
            .into_iter()
            .map(|(id, s, k)| ((s, k), id))
            .collect();
    }
    let counts = batch.duplicate_counts(&inserted);
    let mut duplicated = Duplicated::new();
    if !counts.is_empty() {
        let rows: Vec<serde_json::Value> = counts
            .iter()
            .map(|(s, k, n, at, h)| serde_json::json!([s, k, n, at, h]))
            .collect();
        let returned: Vec<(i64, String, String, String)> = sqlx::query_as(SQLITE_DUPLICATES)
            .bind(serde_json::Value::Array(rows).to_string())
            .fetch_all(&mut *conn)
            .await?;
        duplicated = returned
            .into_iter()
            .map(|(id, s, k, status)| ((s, k), (id, status)))
            .collect();
    }
    Ok(batch.settle(&inserted, &duplicated, outcomes))
}

const POSTGRES_INSERT: &str = "\
INSERT INTO events (source, dedup_key, strategy, status, provider_event_id, action, \
    object_type, object_id, event_time, payload, body_hash, received_at, next_attempt_at) \
SELECT u.source, u.dedup_key, u.strategy, 'pending', u.provider_event_id, u.action, \
    u.object_type, u.object_id, u.event_time, u.payload, u.body_hash, u.received_at, u.received_at \
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
    $8::bigint[], $9::text[], $10::text[], $11::bigint[]) WITH ORDINALITY \
    AS u(source, dedup_key, strategy, provider_event_id, action, object_type, object_id, \
         event_time, payload, body_hash, received_at, ord) \
ORDER BY u.ord \
ON CONFLICT DO NOTHING RETURNING id, source, dedup_key";

/// Rows are locked in id order before they are updated, so concurrent
/// batches never wait on each other in a cycle.
const POSTGRES_DUPLICATES: &str = "\
WITH d AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[]) \
        AS d(source, dedup_key, n, at, h)), \
    locked AS (SELECT e.id, d.n, d.at, d.h FROM events e JOIN d \
        ON e.source = d.source AND e.dedup_key = d.dedup_key AND e.strategy <> 'coalesce' \
        ORDER BY e.id FOR UPDATE OF e) \
UPDATE events SET duplicates = events.duplicates + locked.n, last_duplicate_at = locked.at, \
    payload_differs = (events.payload_differs OR locked.h IS NULL OR events.body_hash <> locked.h) \
FROM locked WHERE events.id = locked.id \
RETURNING events.id, events.source, events.dedup_key, events.status";

pub(super) async fn record_postgres(
    conn: &mut PgConnection,
    batch: &Batch<'_>,
    outcomes: &mut [Option<RecordOutcome>],
) -> Result<Leftover, sqlx::Error> {
    let mut inserted = Inserted::new();
    if !batch.groups.is_empty() {
        let c: Vec<&NewEvent> = batch.candidates().collect();
        let col = |f: fn(&NewEvent) -> String| c.iter().map(|e| f(e)).collect::<Vec<String>>();
        let opt = |f: fn(&NewEvent) -> Option<String>| {
            c.iter().map(|e| f(e)).collect::<Vec<Option<String>>>()
        };
        let num = |f: fn(&NewEvent) -> i64| c.iter().map(|e| f(e)).collect::<Vec<i64>>();
        let returned: Vec<(i64, String, String)> = sqlx::query_as(POSTGRES_INSERT)
            .bind(col(|e| e.source.clone()))
            .bind(col(|e| e.dedup_key.clone()))
            .bind(col(|e| e.strategy.as_str().to_string()))
            .bind(opt(|e| e.provider_event_id.clone()))
            .bind(opt(|e| e.action.clone()))
            .bind(opt(|e| e.object_type.clone()))
            .bind(opt(|e| e.object_id.clone()))
            .bind(num(|e| e.event_time_ms))
            .bind(col(|e| e.payload.clone()))
            .bind(col(|e| e.body_hash.clone()))
            .bind(num(|e| e.received_at_ms))
            .fetch_all(&mut *conn)
            .await?;
        inserted = returned
            .into_iter()
            .map(|(id, s, k)| ((s, k), id))
            .collect();
    }
    let counts = batch.duplicate_counts(&inserted);
    let mut duplicated = Duplicated::new();
    if !counts.is_empty() {
        let returned: Vec<(i64, String, String, String)> = sqlx::query_as(POSTGRES_DUPLICATES)
            .bind(counts.iter().map(|c| c.0).collect::<Vec<&str>>())
            .bind(counts.iter().map(|c| c.1).collect::<Vec<&str>>())
            .bind(counts.iter().map(|c| c.2).collect::<Vec<i64>>())
            .bind(counts.iter().map(|c| c.3).collect::<Vec<i64>>())
            .bind(counts.iter().map(|c| c.4).collect::<Vec<Option<&str>>>())
            .fetch_all(&mut *conn)
            .await?;
        duplicated = returned
            .into_iter()
            .map(|(id, s, k, status)| ((s, k), (id, status)))
            .collect();
    }
    Ok(batch.settle(&inserted, &duplicated, outcomes))
}
