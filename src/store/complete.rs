//! Completing claimed events in batches: one transaction marks a whole batch
//! `done` with one multi-row, lease-guarded `UPDATE … RETURNING id` and
//! writes their domain rows with one multi-row upsert, instead of a
//! transaction (and a commit) per event. Like the ingest fast path in
//! `batch.rs`, each statement takes the batch as one parameter set (SQLite: a
//! JSON array read with `json_each`; PostgreSQL: `UNNEST` of arrays), so the
//! statement text never changes and stays prepared.
//!
//! A completion is keyed by its event *and* lease token: only one whose lease
//! is still held (the `UPDATE` returned it; a lease that ran out by the
//! completion's `now` is not held, see `lease.rs`) is done and gets its
//! domain write. One event can appear twice in a batch — a worker that lost its
//! lease and the new holder finishing at the same time — and then the stale
//! one changes nothing and is answered `false`, whatever its place in the
//! batch. Per-object order means a batch normally holds at most one event per
//! object; should two name the same object anyway, only the newer by
//! `(event_time, ledger id)` goes into the upsert (PostgreSQL refuses an `ON
//! CONFLICT DO UPDATE` that touches one row twice), which is what the "newer
//! wins" rule would have kept.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use sqlx::{PgConnection, SqliteConnection};

use super::domain_data::storable;
use super::feed;
use super::outbox::{self, Outbox};
use super::queue::{ClaimedEvent, DomainWrite};
use super::{Store, StoreError};

/// One finished event and the domain write it brings, if any.
pub type Completion<'a> = (&'a ClaimedEvent, Option<&'a DomainWrite>);

/// A domain row to upsert: the newest write per object among the completed.
struct Upsert<'a> {
    source: &'a str,
    object_type: &'a str,
    object_id: &'a str,
    /// The write's data as the row can hold it (`domain_data`).
    data: Cow<'a, str>,
    event_id: i64,
    event_time: i64,
}

/// The batch as rounds in which no event appears twice (round k holds the
/// k-th completion of each event), as indexes into the batch; normally one
/// round. Within a round the ids a `MARK_DONE` returns each name one
/// `(id, lease token)` of the batch — SQLite's `RETURNING` cannot name the
/// matching row of the `FROM` side, and the token itself is cleared by the
/// update. At most one completion of an event can hold its lease, so the
/// later rounds of an event find it done and match nothing.
fn rounds(batch: &[Completion<'_>]) -> Vec<Vec<usize>> {
    let mut seen: HashMap<i64, usize> = HashMap::with_capacity(batch.len());
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, (event, _)) in batch.iter().enumerate() {
        let round = seen.entry(event.id).or_insert(0);
        if *round == rounds.len() {
            rounds.push(Vec::new());
        }
        rounds[*round].push(i);
        *round += 1;
    }
    rounds
}

/// Marks as done the completions of `round` whose ids a `MARK_DONE`
/// returned, with their events' completion counts (this one included).
fn mark_done(
    done: &mut [Option<i64>],
    batch: &[Completion<'_>],
    round: &[usize],
    returned: &[(i64, i64)],
) {
    let index: HashMap<i64, usize> = round.iter().map(|&i| (batch[i].0.id, i)).collect();
    for &(id, completions) in returned {
        if let Some(&i) = index.get(&id) {
            done[i] = Some(completions);
        }
    }
}

/// The completions that took effect, with their completion counts, in the
/// batch's order.
fn completed<'a>(
    batch: &[Completion<'a>],
    done: &[Option<i64>],
) -> Vec<(&'a ClaimedEvent, Option<&'a DomainWrite>, i64)> {
    batch
        .iter()
        .zip(done)
        .filter_map(|(&(event, write), done)| done.map(|n| (event, write, n)))
        .collect()
}

/// The writes of the completed events, one per object (the newest), in
/// object order so that concurrent batches lock domain rows in one order.
fn upserts<'a>(batch: &[Completion<'a>], done: &[Option<i64>]) -> Vec<Upsert<'a>> {
    let mut by_object: BTreeMap<(&str, &str, &str), Upsert<'a>> = BTreeMap::new();
    for (&(event, write), &done) in batch.iter().zip(done) {
        let (Some(write), Some(object_type), Some(object_id)) = (
            write,
            event.object_type.as_deref(),
            event.object_id.as_deref(),
        ) else {
            continue;
        };
        if done.is_none() {
            continue;
        }
        let row = Upsert {
            source: &event.source,
            object_type,
            object_id,
            data: storable(&write.data),
            event_id: event.id,
            event_time: event.event_time,
        };
        match by_object.entry((&event.source, object_type, object_id)) {
            Entry::Vacant(slot) => {
                slot.insert(row);
            }
            Entry::Occupied(mut slot) => {
                let kept = slot.get();
                if (row.event_time, row.event_id) > (kept.event_time, kept.event_id) {
                    slot.insert(row);
                }
            }
        }
    }
    by_object.into_values().collect()
}

const SQLITE_MARK_DONE: &str = "\
WITH b AS (SELECT j.value ->> 0 AS id, j.value ->> 1 AS token FROM json_each($2) AS j) \
UPDATE events SET status = 'done', processed_at = $1, lease_token = NULL, \
    lease_until = NULL, last_error = NULL, completions = events.completions + 1 \
FROM b WHERE events.id = b.id AND events.lease_token = b.token AND events.status = 'processing' \
    AND events.lease_until > $1 \
RETURNING events.id, events.completions";

const SQLITE_UPSERT_DOMAIN: &str = "\
INSERT INTO domain_objects (source, object_type, object_id, data, last_event_id, \
    event_time, updated_at) \
SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
    j.value ->> 5, $1 \
FROM json_each($2) AS j WHERE true ORDER BY j.key \
ON CONFLICT (source, object_type, object_id) DO UPDATE SET \
    data = excluded.data, last_event_id = excluded.last_event_id, \
    event_time = excluded.event_time, updated_at = excluded.updated_at \
WHERE (excluded.event_time, excluded.last_event_id) \
   >= (domain_objects.event_time, domain_objects.last_event_id)";

/// No explicit lock ordering is needed: an event's lease token is held by
/// one worker, so two batches never both match one events row (a batch that
/// lost the lease waits for the new owner's lock, then no longer matches).
const POSTGRES_MARK_DONE: &str = "\
WITH b AS (SELECT * FROM UNNEST($2::bigint[], $3::bigint[]) AS b(id, token)) \
UPDATE events SET status = 'done', processed_at = $1, lease_token = NULL, \
    lease_until = NULL, last_error = NULL, completions = events.completions + 1 \
FROM b WHERE events.id = b.id AND events.lease_token = b.token AND events.status = 'processing' \
    AND events.lease_until > $1 \
RETURNING events.id, events.completions::bigint";

const POSTGRES_UPSERT_DOMAIN: &str = "\
INSERT INTO domain_objects (source, object_type, object_id, data, last_event_id, \
    event_time, updated_at) \
SELECT u.source, u.object_type, u.object_id, u.data::jsonb, u.event_id, u.event_time, $1 \
FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[]) \
    WITH ORDINALITY AS u(source, object_type, object_id, data, event_id, event_time, ord) \
ORDER BY u.ord \
ON CONFLICT (source, object_type, object_id) DO UPDATE SET \
    data = excluded.data, last_event_id = excluded.last_event_id, \
    event_time = excluded.event_time, updated_at = excluded.updated_at \
WHERE (excluded.event_time, excluded.last_event_id) \
   >= (domain_objects.event_time, domain_objects.last_event_id)";

async fn complete_sqlite(
    conn: &mut SqliteConnection,
    batch: &[Completion<'_>],
    outbox: &Outbox,
    now_ms: i64,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut done = vec![None; batch.len()];
    for round in rounds(batch) {
        let rows: Vec<serde_json::Value> = round
            .iter()
            .map(|&i| serde_json::json!([batch[i].0.id, batch[i].0.lease_token]))
            .collect();
        let returned: Vec<(i64, i64)> = sqlx::query_as(SQLITE_MARK_DONE)
            .bind(now_ms)
            .bind(serde_json::Value::Array(rows).to_string())
            .fetch_all(&mut *conn)
            .await?;
        mark_done(&mut done, batch, &round, &returned);
    }
    let writes = upserts(batch, &done);
    if !writes.is_empty() {
        let rows: Vec<serde_json::Value> = writes
            .iter()
            .map(|w| {
                serde_json::json!([
                    w.source,
                    w.object_type,
                    w.object_id,
                    w.data,
                    w.event_id,
                    w.event_time
                ])
            })
            .collect();
        sqlx::query(SQLITE_UPSERT_DOMAIN)
            .bind(now_ms)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut *conn)
            .await?;
    }
    let (deliveries, items) = outbox::new_rows(outbox, &completed(batch, &done), now_ms);
    outbox::insert_sqlite(conn, &deliveries, now_ms).await?;
    feed::insert_sqlite(conn, &items, now_ms).await?;
    Ok(done.iter().map(Option::is_some).collect())
}

async fn complete_postgres(
    conn: &mut PgConnection,
    batch: &[Completion<'_>],
    outbox: &Outbox,
    now_ms: i64,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut done = vec![None; batch.len()];
    for round in rounds(batch) {
        let returned: Vec<(i64, i64)> = sqlx::query_as(POSTGRES_MARK_DONE)
            .bind(now_ms)
            .bind(round.iter().map(|&i| batch[i].0.id).collect::<Vec<i64>>())
            .bind(
                round
                    .iter()
                    .map(|&i| batch[i].0.lease_token)
                    .collect::<Vec<i64>>(),
            )
            .fetch_all(&mut *conn)
            .await?;
        mark_done(&mut done, batch, &round, &returned);
    }
    let writes = upserts(batch, &done);
    if !writes.is_empty() {
        sqlx::query(POSTGRES_UPSERT_DOMAIN)
            .bind(now_ms)
            .bind(writes.iter().map(|w| w.source).collect::<Vec<&str>>())
            .bind(writes.iter().map(|w| w.object_type).collect::<Vec<&str>>())
            .bind(writes.iter().map(|w| w.object_id).collect::<Vec<&str>>())
            .bind(
                writes
                    .iter()
                    .map(|w| w.data.as_ref())
                    .collect::<Vec<&str>>(),
            )
            .bind(writes.iter().map(|w| w.event_id).collect::<Vec<i64>>())
            .bind(writes.iter().map(|w| w.event_time).collect::<Vec<i64>>())
            .execute(&mut *conn)
            .await?;
    }
    let (deliveries, items) = outbox::new_rows(outbox, &completed(batch, &done), now_ms);
    outbox::insert_postgres(conn, &deliveries, now_ms).await?;
    feed::insert_postgres(conn, &items, now_ms).await?;
    Ok(done.iter().map(Option::is_some).collect())
}

impl Store {
    /// Marks claimed events `done` and upserts the domain rows of those that
    /// name an object — all in one transaction. Each completion takes effect
    /// only if its claim (event and lease token) still holds the lease and
    /// the lease has not run out by `now_ms`; the
    /// answer says which did, in the order given (`false`: the lease was
    /// lost, or the same claim came earlier in the batch, and its domain
    /// write was not applied). An older event never overwrites a newer row:
    /// rows compare by `(event_time, ledger id)`.
    pub async fn complete_batch(
        &self,
        batch: &[Completion<'_>],
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        self.complete_batch_with(batch, &Outbox::default(), now_ms)
            .await
    }

    /// [`complete_batch`](Store::complete_batch) that also writes, in the
    /// same transaction, one delivery per destination `outbox` routes each
    /// completed event to (SPEC §7) and a feed item for each event of a
    /// source the feed carries (§8): a completion that lost its lease
    /// writes none, and no delivery or item exists whose completion did not
    /// commit.
    pub async fn complete_batch_with(
        &self,
        batch: &[Completion<'_>],
        outbox: &Outbox,
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let done = match self {
            Store::Sqlite(sqlite) => {
                let _gate = self.write_gate().await;
                let mut tx = sqlite.work.begin_with("BEGIN IMMEDIATE").await?;
                let done = complete_sqlite(&mut tx, batch, outbox, now_ms).await?;
                tx.commit().await?;
                done
            }
            Store::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                // Like the SQLite workers' pool (`synchronous=NORMAL`): a
                // completion lost with the server's crash puts the event back
                // to be processed again, never loses one; WAL order keeps it
                // ahead of any later synchronous commit. Saves a WAL flush
                // wait per batch.
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
                let done = complete_postgres(&mut tx, batch, outbox, now_ms).await?;
                tx.commit().await?;
                done
            }
        };
        Ok(done)
    }
}
