//! The deliveries as the admin API sees them (SPEC §7): the newest-first
//! list with its filters, an operator's retry of one delivery or of many,
//! and the per-destination counts behind `/admin/destinations`,
//! `/admin/stats` and the `hookledger_deliveries_pending` gauge.
//!
//! A retry is the one change to a delivery that is not the relay's own, so
//! it follows the relay's rules: it never touches a delivery whose lease is
//! still running (that attempt's outcome is its relay's to record), and on
//! PostgreSQL it runs under the delivery-change lock, so no claim's snapshot
//! straddles it (a retried older delivery of an object must hold back its
//! newer ones from the first claim after the retry answered). A bulk retry
//! changes at most [`RETRY_BATCH_ROWS`] rows per statement, so SQLite's
//! write lock (and this process's write gate) is never held for long.

use std::collections::BTreeMap;

use super::deliveries::{DeliveryRow, DELIVERY_COLUMNS, POSTGRES_DELIVERY_CHANGE_BEGINS};
use super::{with_pool, Store, StoreError};

/// Every delivery status, in the order a delivery goes through them.
pub const DELIVERY_STATUSES: [&str; 5] = ["pending", "delivering", "delivered", "failed", "dead"];

/// The statuses a delivery is unfinished in (SPEC §7: `delivered` and
/// `dead` are finished).
pub const UNFINISHED: [&str; 3] = ["pending", "delivering", "failed"];

/// Rows a bulk retry changes per statement.
pub const RETRY_BATCH_ROWS: i64 = 1_000;

#[derive(Debug, Default, Clone)]
pub struct DeliveryFilter {
    pub destination: Option<String>,
    pub status: Option<String>,
    pub event_id: Option<i64>,
    /// `created_at >= since`
    pub since_ms: Option<i64>,
    /// Rows with `id < before_id` (the cursor).
    pub before_id: Option<i64>,
}

/// Which deliveries a bulk retry takes: one destination's rows in one
/// status, created in `[since, until)`.
#[derive(Debug, Clone)]
pub struct BulkRetry {
    pub destination: String,
    /// `dead` or `failed` (checked by the caller).
    pub status: String,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// What became of a retry of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// It is `pending`, due now, its attempts starting over.
    Retried,
    /// A relay holds a running lease on it: left alone.
    InFlight,
    NotFound,
}

/// One destination's deliveries, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSummary {
    pub paused: bool,
    /// status → count, every status present.
    pub by_status: BTreeMap<String, i64>,
    /// When the oldest unfinished delivery was created.
    pub oldest_pending_at: Option<i64>,
}

impl Default for DestinationSummary {
    fn default() -> Self {
        DestinationSummary {
            paused: false,
            by_status: DELIVERY_STATUSES
                .iter()
                .map(|s| (s.to_string(), 0))
                .collect(),
            oldest_pending_at: None,
        }
    }
}

/// What a retry sets (`now` names the parameter holding now). `last_error`
/// and `last_status` are kept: they still describe the last attempt made,
/// which is what an operator looking at a retried delivery that waits
/// (behind a pause, or an older delivery of its object) wants to see; the
/// next attempt replaces them. `delivered_at` goes: a pending delivery has
/// not been delivered (again) yet.
fn retry_set(now: &str) -> String {
    format!(
        "status = 'pending', attempts = 0, next_attempt_at = {now}, \
         lease_token = NULL, lease_until = NULL, delivered_at = NULL"
    )
}

/// The rows of a [`BulkRetry`]: `$1` destination, `$2` status, `$3` since,
/// `$4` until.
const BULK_MATCH: &str = "destination = $1 AND status = $2 \
AND (CAST($3 AS BIGINT) IS NULL OR created_at >= $3) \
AND (CAST($4 AS BIGINT) IS NULL OR created_at < $4)";

impl Store {
    /// Newest first; `limit + 1` rows are read so the caller can tell
    /// whether another page follows.
    pub async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries \
             WHERE (CAST($1 AS TEXT) IS NULL OR destination = $1) \
               AND (CAST($2 AS TEXT) IS NULL OR status = $2) \
               AND (CAST($3 AS BIGINT) IS NULL OR event_id = $3) \
               AND (CAST($4 AS BIGINT) IS NULL OR created_at >= $4) \
               AND (CAST($5 AS BIGINT) IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6"
        );
        Ok(with_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(&filter.destination)
                .bind(&filter.status)
                .bind(filter.event_id)
                .bind(filter.since_ms)
                .bind(filter.before_id)
                .bind(limit + 1)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Makes one delivery `pending` again, due at `now_ms`, attempts from
    /// zero — a `delivered` one too (it is sent again under the same
    /// delivery id) — unless a relay holds a running lease on it.
    pub async fn retry_delivery(&self, id: i64, now_ms: i64) -> Result<RetryOutcome, StoreError> {
        // A lease that ran out is no one's: its relay can no longer record
        // anything (settling is lease-guarded), so retrying it is safe.
        let sql = format!(
            "UPDATE deliveries SET {} \
             WHERE id = $2 AND NOT (status = 'delivering' AND lease_until > $1)",
            retry_set("$1")
        );
        let changed = match self {
            Store::Sqlite(sqlite) => {
                let _gate = self.write_gate().await;
                sqlx::query(&sql)
                    .bind(now_ms)
                    .bind(id)
                    .execute(&sqlite.pool)
                    .await?
                    .rows_affected()
            }
            Store::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                sqlx::query(POSTGRES_DELIVERY_CHANGE_BEGINS)
                    .execute(&mut *tx)
                    .await?;
                let changed = sqlx::query(&sql)
                    .bind(now_ms)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                changed
            }
        };
        if changed == 1 {
            return Ok(RetryOutcome::Retried);
        }
        // Only to say why nothing changed: the row was in flight, or absent.
        Ok(match self.delivery(id).await? {
            Some(_) => RetryOutcome::InFlight,
            None => RetryOutcome::NotFound,
        })
    }

    /// How many deliveries a bulk retry would take now (its dry run).
    pub async fn count_retryable(&self, bulk: &BulkRetry) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM deliveries WHERE {BULK_MATCH}");
        let (n,): (i64,) = with_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(&bulk.destination)
                .bind(&bulk.status)
                .bind(bulk.since_ms)
                .bind(bulk.until_ms)
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Retries every delivery `bulk` takes, `batch_rows` per statement, in
    /// id order; returns how many. Each batch is its own short write (and
    /// on PostgreSQL its own transaction under the delivery-change lock);
    /// the id cursor means a row retried here and dead again before the
    /// loop ends is not taken twice.
    pub async fn retry_deliveries(
        &self,
        bulk: &BulkRetry,
        now_ms: i64,
        batch_rows: i64,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE deliveries SET {} WHERE id IN ( \
               SELECT id FROM deliveries WHERE {BULK_MATCH} AND id > $6 ORDER BY id LIMIT $7) \
             AND status = $2 RETURNING id",
            retry_set("$5")
        );
        macro_rules! batch {
            ($after:expr, $limit:expr) => {
                sqlx::query_as::<_, (i64,)>(&sql)
                    .bind(&bulk.destination)
                    .bind(&bulk.status)
                    .bind(bulk.since_ms)
                    .bind(bulk.until_ms)
                    .bind(now_ms)
                    .bind($after)
                    .bind($limit)
            };
        }
        let batch_rows = batch_rows.max(1);
        let mut after = 0_i64;
        let mut retried = 0_u64;
        loop {
            let ids: Vec<(i64,)> = match self {
                Store::Sqlite(sqlite) => {
                    let _gate = self.write_gate().await;
                    batch!(after, batch_rows).fetch_all(&sqlite.pool).await?
                }
                Store::Postgres(pg) => {
                    let mut tx = pg.pool.begin().await?;
                    sqlx::query(POSTGRES_DELIVERY_CHANGE_BEGINS)
                        .execute(&mut *tx)
                        .await?;
                    let ids = batch!(after, batch_rows).fetch_all(&mut *tx).await?;
                    tx.commit().await?;
                    ids
                }
            };
            retried += ids.len() as u64;
            match ids.iter().map(|(id,)| *id).max() {
                Some(last) if ids.len() as i64 >= batch_rows => after = last,
                _ => return Ok(retried),
            }
        }
    }

    /// Every destination that has deliveries or a pause state, counted
    /// (`only`: just that one). Destinations with neither are absent.
    pub async fn destination_summaries(
        &self,
        only: Option<&str>,
    ) -> Result<BTreeMap<String, DestinationSummary>, StoreError> {
        let counts: Vec<(String, String, i64, Option<i64>)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT destination, status, COUNT(*), MIN(created_at) FROM deliveries \
                 WHERE (CAST($1 AS TEXT) IS NULL OR destination = $1) \
                 GROUP BY destination, status",
            )
            .bind(only)
            .fetch_all(pool)
            .await?
        });
        let states: Vec<(String, bool)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT name, paused FROM destination_state \
                 WHERE (CAST($1 AS TEXT) IS NULL OR name = $1)",
            )
            .bind(only)
            .fetch_all(pool)
            .await?
        });
        let mut summaries: BTreeMap<String, DestinationSummary> = BTreeMap::new();
        for (destination, status, count, oldest) in counts {
            let summary = summaries.entry(destination).or_default();
            if UNFINISHED.contains(&status.as_str()) {
                summary.oldest_pending_at = match (summary.oldest_pending_at, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            summary.by_status.insert(status, count);
        }
        for (name, paused) in states {
            summaries.entry(name).or_default().paused = paused;
        }
        Ok(summaries)
    }

    /// Unfinished deliveries per destination (those with none are absent):
    /// the `hookledger_deliveries_pending` gauge, in one statement that the
    /// index of open rows answers.
    pub async fn unfinished_by_destination(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT destination, COUNT(*) FROM deliveries \
                 WHERE status IN ('pending', 'delivering', 'failed') GROUP BY destination",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().collect())
    }
}
