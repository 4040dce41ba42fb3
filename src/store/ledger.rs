//! Recording deliveries: where first-seen versus duplicate is decided. A
//! delivery's row is inserted with `INSERT … ON CONFLICT DO NOTHING RETURNING
//! id`; a returned id means first-seen (and the row, status `pending`, *is*
//! the processing job), no id means a row with that key exists, and the
//! duplicate is counted against it. Several deliveries can be recorded in one
//! transaction (group commit); each learns its own outcome, and none is
//! answered before the commit.
//!
//! This file holds the types and the PostgreSQL path (the multi-row fast
//! path of `batch.rs`, then one guarded `UPDATE … RETURNING` per leftover
//! delivery). SQLite's writer (`sqlite_ledger.rs`) makes the same decision
//! with the same statements, one delivery at a time.
//!
//! On PostgreSQL, ledger ids follow arrival order within a batch, and a
//! transaction holds its objects' locks from before it draws ids until it
//! commits (see `batch.rs`). A batch the fast path settles whole is one
//! statement. A batch with deliveries that must go one at a time (coalesce,
//! payload-hash, ignored) is one transaction instead, whose first statement
//! locks every object of the batch and draws every delivery's id, in
//! arrival order, so the fast path's ids and the others' interleave as the
//! deliveries arrived.
//!
//! A duplicate whose body hash differs from its row's goes this
//! one-at-a-time way (the fast path leaves it over), so that its body is
//! kept as a variant (`variants.rs`) under the row lock its `UPDATE` takes.

use std::sync::atomic::Ordering;

use sqlx::{Connection, PgConnection};

use super::batch::{self, Batch, Drawn};
use super::variants::{self, VariantLimit};
use super::{Store, StoreError};
use crate::dedup::Strategy;

/// One delivery to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub source: String,
    pub dedup_key: String,
    /// Payload-hash keys: the same hash in the previous time bucket. A row
    /// holding it makes this delivery its duplicate.
    pub previous_key: Option<String>,
    pub strategy: Strategy,
    /// An `ignore` action: recorded once, never processed.
    pub ignored: bool,
    pub provider_event_id: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// The provider's event time, else the arrival time (Unix ms).
    pub event_time_ms: i64,
    /// The parsed body as JSON text.
    pub payload: String,
    /// SHA-256 of the body's canonical form.
    pub body_hash: String,
    pub received_at_ms: i64,
}

/// What recording a delivery decided. `id` is always the ledger row that
/// holds the event (for a duplicate: the first delivery's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    Accepted {
        id: i64,
    },
    /// `previous_bucket`: the row holds the payload hash of the previous time
    /// bucket (its key is the delivery's `previous_key`).
    Duplicate {
        id: i64,
        previous_bucket: bool,
    },
    Ignored {
        id: i64,
    },
}

impl RecordOutcome {
    pub fn id(self) -> i64 {
        match self {
            RecordOutcome::Accepted { id }
            | RecordOutcome::Duplicate { id, .. }
            | RecordOutcome::Ignored { id } => id,
        }
    }
}

/// `$13`: the id `batch::lock_and_draw` drew for this delivery.
pub(super) const INSERT_EVENT: &str = "\
INSERT INTO events (id, source, dedup_key, strategy, status, provider_event_id, action, \
    object_type, object_id, event_time, payload, body_hash, received_at, next_attempt_at) \
OVERRIDING SYSTEM VALUE \
VALUES ($13, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
ON CONFLICT DO NOTHING RETURNING id";

/// Counts a duplicate on the row holding `dedup_key`. The strategy condition
/// is spelled out so each statement can use its partial unique index.
const RECORD_DUPLICATE: &str = "\
UPDATE events SET duplicates = duplicates + 1, last_duplicate_at = $1, \
    payload_differs = (payload_differs OR body_hash <> $2) \
WHERE source = $3 AND dedup_key = $4 AND strategy <> 'coalesce' \
RETURNING id, status, body_hash";

/// A coalesce key names only its pending row: once claimed, the next
/// delivery is first-seen again.
const RECORD_COALESCED: &str = "\
UPDATE events SET duplicates = duplicates + 1, last_duplicate_at = $1, \
    payload_differs = (payload_differs OR body_hash <> $2) \
WHERE source = $3 AND dedup_key = $4 AND strategy = 'coalesce' AND status = 'pending' \
RETURNING id, status, body_hash";

/// PostgreSQL: serializes payload-hash deliveries of one body for the rest of
/// the transaction, so "look in the previous bucket, else insert" cannot race
/// with a copy arriving across a bucket boundary. (SQLite has one writer.)
const PG_LOCK_HASH: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

/// A coalesce row can be claimed between our failed insert and our update;
/// then the insert is tried again. More rounds than this means something else
/// is wrong.
const MAX_RECORD_ROUNDS: usize = 4;

/// Binds a [`NewEvent`]'s columns in the order both backends'
/// `INSERT_EVENT` take them (source … received_at); the PostgreSQL
/// statement's drawn id is bound after them by the caller.
macro_rules! bind_new_event {
    ($query:expr, $ev:expr) => {
        $query
            .bind(&$ev.source)
            .bind(&$ev.dedup_key)
            .bind($ev.strategy.as_str())
            .bind(if $ev.ignored { "ignored" } else { "pending" })
            .bind(&$ev.provider_event_id)
            .bind(&$ev.action)
            .bind(&$ev.object_type)
            .bind(&$ev.object_id)
            .bind($ev.event_time_ms)
            .bind(&$ev.payload)
            .bind(&$ev.body_hash)
            .bind($ev.received_at_ms)
    };
}
pub(super) use bind_new_event;

/// The per-delivery statements. Evaluates to a `RecordOutcome` or returns
/// the error. `$id`: the ledger id to insert it with, if it is new;
/// `$limit`: the variant size bound.
macro_rules! record_in_tx {
    ($conn:expr, $ev:expr, $id:expr, $limit:expr) => {{
        let ev: &NewEvent = $ev;
        let id: i64 = $id;
        let mut found: Option<RecordOutcome> = None;
        if let Some(previous) = &ev.previous_key {
            let lock_name = format!("{}\u{1f}{}", ev.source, hash_part(&ev.dedup_key));
            sqlx::query(PG_LOCK_HASH)
                .bind(lock_name)
                .execute($conn)
                .await?;
            found = record_duplicate!($conn, ev, previous, true, $limit);
        }
        let mut rounds = 0;
        while found.is_none() {
            rounds += 1;
            if rounds > MAX_RECORD_ROUNDS {
                return Err(StoreError::Database(sqlx::Error::Protocol(format!(
                    "could not settle dedup key after {MAX_RECORD_ROUNDS} rounds"
                ))));
            }
            let inserted: Option<(i64,)> = bind_new_event!(sqlx::query_as(INSERT_EVENT), ev)
                .bind(id)
                .fetch_optional($conn)
                .await?;
            found = match inserted {
                Some((id,)) if ev.ignored => Some(RecordOutcome::Ignored { id }),
                Some((id,)) => Some(RecordOutcome::Accepted { id }),
                None => record_duplicate!($conn, ev, &ev.dedup_key, false, $limit),
            };
        }
        found.expect("loop ends with an outcome")
    }};
}

/// Counts a duplicate on the row holding `$key`, and keeps its body as a
/// variant when it differs (the `UPDATE` holds the row's lock until the
/// commit, which serializes the variant writes of one row).
macro_rules! record_duplicate {
    ($conn:expr, $ev:expr, $key:expr, $previous_bucket:expr, $limit:expr) => {{
        let statement = if $ev.strategy == Strategy::Coalesce {
            RECORD_COALESCED
        } else {
            RECORD_DUPLICATE
        };
        let row: Option<(i64, String, String)> = sqlx::query_as(statement)
            .bind($ev.received_at_ms)
            .bind(&$ev.body_hash)
            .bind(&$ev.source)
            .bind($key)
            .fetch_optional($conn)
            .await?;
        if let Some((id, _, held_hash)) = &row {
            if *held_hash != $ev.body_hash {
                variants::keep_postgres($conn, *id, $ev, $limit).await?;
            }
        }
        row.map(|(id, status, _)| {
            if status == "ignored" {
                RecordOutcome::Ignored { id }
            } else {
                RecordOutcome::Duplicate {
                    id,
                    previous_bucket: $previous_bucket,
                }
            }
        })
    }};
}

impl Store {
    /// Records one delivery in its own transaction.
    pub async fn record(&self, event: &NewEvent) -> Result<RecordOutcome, StoreError> {
        let outcomes = self.record_batch(std::slice::from_ref(event)).await?;
        Ok(outcomes[0])
    }

    /// Records one delivery; on SQLite, in whatever batch the ledger thread
    /// gathers it into (see `Store::gather_sqlite_batches`).
    pub async fn record_one(&self, event: NewEvent) -> Result<RecordOutcome, StoreError> {
        let outcomes = match self {
            Store::Sqlite(sqlite) => sqlite.ledger.record(vec![event]).await?,
            Store::Postgres(_) => self.record_batch(std::slice::from_ref(&event)).await?,
        };
        Ok(outcomes[0])
    }

    /// Records deliveries (group commit); the outcomes are in input order and
    /// hold only once this returns `Ok` (every commit is done). An error
    /// means none of them may be acknowledged: on SQLite none was recorded;
    /// on PostgreSQL the fast path's statement may have committed before
    /// the rest failed, and a provider that retries such an event is told
    /// it is a duplicate, so nothing is lost and nothing is done twice.
    pub async fn record_batch(
        &self,
        events: &[NewEvent],
    ) -> Result<Vec<RecordOutcome>, StoreError> {
        let pg = match self {
            // One thread with its own connection records SQLite batches,
            // one delivery at a time (`sqlite_ledger.rs`).
            Store::Sqlite(sqlite) => return sqlite.ledger.record(events.to_vec()).await,
            Store::Postgres(pg) => pg,
        };
        let batch = Batch::new(events);
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; events.len()];
        let mut conn = pg.ledger.acquire().await?;
        let copies_first = pg.copies_first.load(Ordering::Relaxed);
        if batch.has_slow() {
            // One transaction, every id drawn first (in arrival order,
            // under every object lock of the batch).
            let mut tx = conn.begin().await?;
            let everyone: Vec<usize> = (0..events.len()).collect();
            let drawn = batch::lock_and_draw(&mut tx, events, &everyone).await?;
            let left =
                batch::record_postgres(&mut tx, &batch, &mut outcomes, copies_first, Some(&drawn))
                    .await?;
            record_each(
                &mut tx,
                events,
                left,
                &drawn,
                &pg.variant_limit,
                &mut outcomes,
            )
            .await?;
            tx.commit().await?;
        } else {
            // The multi-row fast path is one statement, committed on its own.
            let left = batch::record_postgres(&mut conn, &batch, &mut outcomes, copies_first, None)
                .await?;
            if !left.is_empty() {
                let mut tx = conn.begin().await?;
                let drawn = batch::lock_and_draw(&mut tx, events, &left).await?;
                record_each(
                    &mut tx,
                    events,
                    left,
                    &drawn,
                    &pg.variant_limit,
                    &mut outcomes,
                )
                .await?;
                tx.commit().await?;
            }
        }
        pg.copies_first
            .store(batch::mostly_copies(&batch, &outcomes), Ordering::Relaxed);
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every delivery of the batch is settled"))
            .collect())
    }
}

/// Records `left` one at a time, in the transaction `conn` is in, with the
/// ids `drawn` for them. In key order, so that two transactions take row
/// and payload-hash locks in one order (their object locks are all taken).
async fn record_each(
    conn: &mut PgConnection,
    events: &[NewEvent],
    mut left: Vec<usize>,
    drawn: &Drawn,
    limit: &VariantLimit,
    outcomes: &mut [Option<RecordOutcome>],
) -> Result<(), StoreError> {
    // Stable: copies of one key stay in arrival order.
    left.sort_by(|&a, &b| {
        (&events[a].source, &events[a].dedup_key).cmp(&(&events[b].source, &events[b].dedup_key))
    });
    for i in left {
        let id = drawn[i].ok_or_else(|| {
            StoreError::Database(sqlx::Error::Protocol(format!(
                "no ledger id was drawn for delivery {i} of the batch"
            )))
        })?;
        outcomes[i] = Some(record_in_tx!(&mut *conn, &events[i], id, limit));
    }
    Ok(())
}

/// `hash:<hex>:<bucket>` → `hash:<hex>`: the part shared across buckets.
fn hash_part(key: &str) -> &str {
    key.rsplit_once(':').map(|(head, _)| head).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_part_drops_the_bucket() {
        assert_eq!(super::hash_part("hash:abc:42"), "hash:abc");
        assert_eq!(super::hash_part("hash:abc:-1"), "hash:abc");
    }
}
