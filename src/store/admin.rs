//! Read models for the admin API and housekeeping (prune, which takes a
//! row's deliveries and kept variants with it and keeps a row while a
//! delivery is unfinished).
//! Listing is keyset paginated: a page asks for one row more than its limit
//! to learn whether another page follows, and the next page starts strictly
//! after the last row shown, so every row is visited once.

use std::collections::BTreeMap;

use sqlx::FromRow;

use super::deliveries::POSTGRES_DELIVERY_CHANGE_BEGINS;
use super::{with_pool, Store, StoreError};

/// Ledger rows a prune drops per transaction.
pub const PRUNE_BATCH_ROWS: i64 = 1_000;

/// The next batch of rows a prune may drop: `$1` the cut-off, `$2` the id
/// cursor, `$3` the batch size.
const PRUNABLE: &str = "SELECT id FROM events e WHERE e.received_at < $1 AND e.id > $2 \
AND e.status NOT IN ('pending', 'processing', 'failed') \
AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id \
    AND d.status IN ('pending', 'delivering', 'failed')) \
ORDER BY id LIMIT $3";

/// One ledger row as the admin API shows it.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub source: String,
    pub dedup_key: String,
    pub strategy: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub provider_event_id: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// When the provider says the event happened (SPEC §2; arrival time
    /// when it says nothing), Unix ms.
    pub event_time: i64,
    pub received_at: i64,
    pub processed_at: Option<i64>,
    pub duplicates: i64,
    pub last_duplicate_at: Option<i64>,
    pub payload_differs: bool,
}

/// The same, with the stored payload (JSON text).
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub row: EventRow,
    pub payload: String,
}

#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub status: Option<String>,
    pub source: Option<String>,
    /// `received_at >= since`
    pub since_ms: Option<i64>,
    /// Rows with `id < before_id` (the cursor).
    pub before_id: Option<i64>,
}

#[derive(Debug, Default, Clone)]
pub struct DuplicateFilter {
    pub source: Option<String>,
    /// `last_duplicate_at >= since`
    pub since_ms: Option<i64>,
    /// Rows after `(last_duplicate_at, id)` in newest-first order (the cursor).
    pub before: Option<(i64, i64)>,
}

pub const STATUSES: [&str; 6] = ["pending", "processing", "done", "failed", "dead", "ignored"];

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub total: i64,
    pub duplicates: i64,
    /// status → count, every status present.
    pub by_status: BTreeMap<String, i64>,
    /// source → status → count.
    pub by_source: BTreeMap<String, BTreeMap<String, i64>>,
}

/// The ledger gauges of `/metrics` (SPEC §9).
#[derive(Debug, Clone, Default)]
pub struct LedgerGauges {
    /// status → rows, every status present.
    pub by_status: BTreeMap<String, i64>,
    /// Arrival (Unix ms) of the oldest `pending` row, if any.
    pub oldest_pending_received_at: Option<i64>,
}

/// `processed_at` is when processing completed, so only a `done` event shows
/// one: builds before 252b0d3 also stamped it on `dead` events, and their
/// rows still carry it.
pub(super) const EVENT_COLUMNS: &str =
    "id, source, dedup_key, strategy, status, attempts, last_error, \
provider_event_id, action, object_type, object_id, event_time, received_at, \
CASE WHEN status = 'done' THEN processed_at END AS processed_at, duplicates, \
last_duplicate_at, payload_differs";

impl Store {
    pub async fn event(&self, id: i64) -> Result<Option<EventDetail>, StoreError> {
        self.fold_pending_duplicates().await?;
        let sql = format!("SELECT {EVENT_COLUMNS}, payload FROM events WHERE id = $1");
        let row = with_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            match row {
                Some(row) => {
                    use sqlx::Row;
                    Some(EventDetail { row: EventRow::from_row(&row)?, payload: row.try_get("payload")? })
                }
                None => None,
            }
        });
        Ok(row)
    }

    /// Newest first; `limit + 1` rows are read so the caller can tell whether
    /// another page follows.
    pub async fn events(
        &self,
        filter: &EventFilter,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) \
               AND (CAST($2 AS TEXT) IS NULL OR source = $2) \
               AND (CAST($3 AS BIGINT) IS NULL OR received_at >= $3) \
               AND (CAST($4 AS BIGINT) IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5"
        );
        Ok(with_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(&filter.status)
                .bind(&filter.source)
                .bind(filter.since_ms)
                .bind(filter.before_id)
                .bind(limit + 1)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Rows delivered more than once, newest duplicate first.
    pub async fn duplicates(
        &self,
        filter: &DuplicateFilter,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.fold_pending_duplicates().await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE duplicates > 0 \
               AND (CAST($1 AS TEXT) IS NULL OR source = $1) \
               AND (CAST($2 AS BIGINT) IS NULL OR last_duplicate_at >= $2) \
               AND (CAST($3 AS BIGINT) IS NULL OR last_duplicate_at < $3 \
                    OR (last_duplicate_at = $3 AND id < $4)) \
             ORDER BY last_duplicate_at DESC, id DESC LIMIT $5"
        );
        let (at, id) = match filter.before {
            Some((at, id)) => (Some(at), Some(id)),
            None => (None, None),
        };
        Ok(with_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(&filter.source)
                .bind(filter.since_ms)
                .bind(at)
                .bind(id)
                .bind(limit + 1)
                .fetch_all(pool)
                .await?
        }))
    }

    pub async fn stats(&self) -> Result<Stats, StoreError> {
        self.fold_pending_duplicates().await?;
        let rows: Vec<(String, String, i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT source, status, COUNT(*), CAST(COALESCE(SUM(duplicates), 0) AS BIGINT) \
                 FROM events GROUP BY source, status",
            )
            .fetch_all(pool)
            .await?
        });
        let zeroes: BTreeMap<String, i64> = STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
        let mut stats = Stats {
            by_status: zeroes.clone(),
            ..Stats::default()
        };
        for (source, status, count, duplicates) in rows {
            stats.total += count;
            stats.duplicates += duplicates;
            *stats.by_status.entry(status.clone()).or_default() += count;
            *stats
                .by_source
                .entry(source)
                .or_insert_with(|| zeroes.clone())
                .entry(status)
                .or_default() += count;
        }
        Ok(stats)
    }

    /// Rows by status and the oldest pending arrival, for `/metrics`. Two
    /// reads without a fold: duplicates do not change either.
    pub async fn ledger_gauges(&self) -> Result<LedgerGauges, StoreError> {
        let (rows, oldest): (Vec<(String, i64)>, Option<i64>) = with_pool!(self, pool => {
            let rows = sqlx::query_as("SELECT status, COUNT(*) FROM events GROUP BY status")
                .fetch_all(pool)
                .await?;
            // The queue's partial index (pending and failed rows) serves it.
            let oldest = sqlx::query_scalar(
                "SELECT MIN(received_at) FROM events WHERE status = 'pending'",
            )
            .fetch_one(pool)
            .await?;
            (rows, oldest)
        });
        let mut by_status: BTreeMap<String, i64> =
            STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
        by_status.extend(rows);
        Ok(LedgerGauges {
            by_status,
            oldest_pending_received_at: oldest,
        })
    }

    /// Drops finished ledger rows received before `before_ms` (never
    /// pending, processing or failed ones, nor one with a delivery still
    /// unfinished), with their deliveries; returns how many rows.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.prune_in_batches(before_ms, PRUNE_BATCH_ROWS).await
    }

    /// [`prune`](Store::prune), `batch_rows` ledger rows per transaction, in
    /// id order, so SQLite's write lock is never held for long. On
    /// PostgreSQL each batch runs under the delivery-change lock: an
    /// operator's retry of a delivered delivery (which makes it unfinished)
    /// lands either before the batch's snapshot, keeping its row, or after
    /// the row and the delivery are gone.
    pub async fn prune_in_batches(
        &self,
        before_ms: i64,
        batch_rows: i64,
    ) -> Result<u64, StoreError> {
        // Copies of a pruned row go with it: folded into it, then dropped.
        self.fold_pending_duplicates().await?;
        let batch_rows = batch_rows.max(1);
        let mut after = 0_i64;
        let mut dropped = 0_u64;
        loop {
            let ids: Vec<(i64,)> = match self {
                Store::Sqlite(sqlite) => {
                    let _gate = self.write_gate().await;
                    let mut tx = sqlite.pool.begin_with("BEGIN IMMEDIATE").await?;
                    // One writer: the later statements pick the same rows,
                    // which are still prunable once their deliveries are gone.
                    for table in ["deliveries", "event_variants", "event_variant_overflow"] {
                        sqlx::query(&format!(
                            "DELETE FROM {table} WHERE event_id IN ({PRUNABLE})"
                        ))
                        .bind(before_ms)
                        .bind(after)
                        .bind(batch_rows)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let ids = sqlx::query_as(&format!(
                        "DELETE FROM events WHERE id IN ({PRUNABLE}) RETURNING id"
                    ))
                    .bind(before_ms)
                    .bind(after)
                    .bind(batch_rows)
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    ids
                }
                Store::Postgres(pg) => {
                    let mut tx = pg.pool.begin().await?;
                    sqlx::query(POSTGRES_DELIVERY_CHANGE_BEGINS)
                        .execute(&mut *tx)
                        .await?;
                    // One statement, one snapshot: the deliveries dropped
                    // are those of the rows dropped (a row replayed
                    // meanwhile is re-checked by the DELETE and kept).
                    let ids = sqlx::query_as(&format!(
                        "WITH gone AS (DELETE FROM events WHERE id IN ({PRUNABLE}) \
                           AND status NOT IN ('pending', 'processing', 'failed') RETURNING id), \
                         dropped AS (DELETE FROM deliveries WHERE event_id IN \
                           (SELECT id FROM gone)), \
                         variants AS (DELETE FROM event_variants WHERE event_id IN \
                           (SELECT id FROM gone)), \
                         overflow AS (DELETE FROM event_variant_overflow WHERE event_id IN \
                           (SELECT id FROM gone)) \
                         SELECT id FROM gone"
                    ))
                    .bind(before_ms)
                    .bind(after)
                    .bind(batch_rows)
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    ids
                }
            };
            dropped += ids.len() as u64;
            match ids.iter().map(|(id,)| *id).max() {
                Some(last) if ids.len() as i64 >= batch_rows => after = last,
                _ => return Ok(dropped),
            }
        }
    }
}
