//! Recording how attempts at claimed deliveries ended, many in one
//! statement (SPEC §7). A relay's attempts finish in bursts; writing each
//! outcome on its own costs a commit per delivery, under SQLite's one write
//! gate that the ingest also waits on. So the relay hands its outcomes to
//! one settler that writes whatever has queued up since its last write in
//! one `UPDATE … FROM` a JSON array (SQLite) or `UNNEST` (PostgreSQL) —
//! group commit, as the ledger does for webhooks.
//!
//! Each row is guarded as a single settle would be: its id, its lease
//! token, `status = 'delivering'` and a lease still running. A row whose
//! lease was lost is left alone and reported as such; the others settle.
//!
//! On PostgreSQL the write commits with `synchronous_commit = off`: a
//! settle lost to a database crash leaves its delivery `delivering`, and the
//! lease's expiry sends it again with the same `webhook-id` — a copy, which
//! at-least-once allows, never a loss. A crash of hookledger itself loses
//! nothing that was committed.

use std::collections::HashSet;

use super::deliveries::ClaimedDelivery;
use super::queue::QueueError;
use super::{Store, StoreError};

/// How a claimed delivery's attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Delivered {
        status: Option<u16>,
    },
    /// Due again at `at_ms`.
    Retry {
        at_ms: i64,
        error: String,
        status: Option<u16>,
    },
    Dead {
        error: String,
        status: Option<u16>,
    },
    /// Not attempted after all (shutdown, a rate-limit wait too long to
    /// hold the lease for): due again at `at_ms`, the attempt not counted.
    Release {
        reason: String,
        at_ms: i64,
    },
}

/// One claimed delivery's outcome, as the batch write takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleRow {
    pub id: i64,
    pub lease_token: i64,
    pub settlement: Settlement,
}

impl SettleRow {
    pub fn new(delivery: &ClaimedDelivery, settlement: Settlement) -> SettleRow {
        SettleRow {
            id: delivery.id,
            lease_token: delivery.lease_token,
            settlement,
        }
    }

    /// The row's new status, next due time, `last_error` and `last_status`.
    /// `pending` is only ever a release, which the statement tells apart
    /// by it (a released attempt is not counted, and keeps the last status).
    fn columns(&self, now_ms: i64) -> (&'static str, i64, Option<String>, Option<i32>) {
        let (status, next_at, error, code) = self.raw_columns(now_ms);
        (status, next_at, error.map(storable_text), code)
    }

    fn raw_columns(&self, now_ms: i64) -> (&'static str, i64, Option<&str>, Option<i32>) {
        let code = |s: &Option<u16>| s.map(i32::from);
        match &self.settlement {
            Settlement::Delivered { status } => ("delivered", now_ms, None, code(status)),
            Settlement::Retry {
                at_ms,
                error,
                status,
            } => ("failed", *at_ms, Some(error), code(status)),
            Settlement::Dead { error, status } => ("dead", now_ms, Some(error), code(status)),
            Settlement::Release { reason, at_ms } => ("pending", *at_ms, Some(reason), None),
        }
    }
}

/// `last_error` as every backend can store it: an excerpt of a receiver's
/// answer may hold NUL, which PostgreSQL's text refuses — the whole settle
/// would fail, and the delivery be sent again at every lease expiry, past
/// its attempts, holding up its object for good. Each NUL becomes U+FFFD,
/// on both backends alike.
pub fn storable_text(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

/// `$1` is now; `b` the batch's rows.
const SET_AND_GUARD: &str = "\
SET status = b.status, next_attempt_at = b.next_at, last_error = b.error, \
    delivered_at = CASE WHEN b.status = 'delivered' THEN $1 ELSE deliveries.delivered_at END, \
    attempts = CASE WHEN b.status = 'pending' AND deliveries.attempts > 0 \
        THEN deliveries.attempts - 1 ELSE deliveries.attempts END, \
    last_status = CASE WHEN b.status = 'pending' THEN COALESCE(b.code, deliveries.last_status) \
        ELSE b.code END, \
    lease_token = NULL, lease_until = NULL \
FROM b WHERE deliveries.id = b.id AND deliveries.lease_token = b.token \
  AND deliveries.status = 'delivering' AND deliveries.lease_until > $1 \
RETURNING deliveries.id";

impl Store {
    /// Records a claimed delivery's outcome, if its lease is still this
    /// claim's; `LeaseLost` otherwise (another relay holds it, or it ran
    /// out: the outcome is not recorded, and it is sent again).
    pub async fn settle_delivery(
        &self,
        delivery: &ClaimedDelivery,
        settlement: &Settlement,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let row = SettleRow::new(delivery, settlement.clone());
        match self.settle_deliveries(&[row], now_ms).await?[..] {
            [true] => Ok(()),
            _ => Err(QueueError::LeaseLost(delivery.id)),
        }
    }

    /// Records many outcomes in one statement; per row, whether its lease
    /// was still held (and so whether it settled). Ids must be distinct.
    pub async fn settle_deliveries(
        &self,
        rows: &[SettleRow],
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let _gate = self.write_gate().await;
        let settled: Vec<(i64,)> = match self {
            Store::Sqlite(sqlite) => {
                let batch: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| {
                        let (status, next_at, error, code) = r.columns(now_ms);
                        serde_json::json!([r.id, r.lease_token, status, next_at, error, code])
                    })
                    .collect();
                let sql = format!(
                    "WITH b AS (SELECT j.value ->> 0 AS id, j.value ->> 1 AS token, \
                       j.value ->> 2 AS status, j.value ->> 3 AS next_at, \
                       j.value ->> 4 AS error, j.value ->> 5 AS code FROM json_each($2) AS j) \
                     UPDATE deliveries {SET_AND_GUARD}"
                );
                sqlx::query_as(&sql)
                    .bind(now_ms)
                    .bind(serde_json::Value::Array(batch).to_string())
                    .fetch_all(&sqlite.work)
                    .await?
            }
            Store::Postgres(pg) => {
                let mut cols = PgColumns::default();
                for r in rows {
                    let (status, next_at, error, code) = r.columns(now_ms);
                    cols.ids.push(r.id);
                    cols.tokens.push(r.lease_token);
                    cols.statuses.push(status);
                    cols.next_at.push(next_at);
                    cols.errors.push(error);
                    cols.codes.push(code);
                }
                let sql = format!(
                    "WITH b AS (SELECT * FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], \
                       $5::bigint[], $6::text[], $7::int4[]) \
                       AS b(id, token, status, next_at, error, code)) \
                     UPDATE deliveries {SET_AND_GUARD}"
                );
                let mut tx = pg.pool.begin().await?;
                sqlx::query("SELECT set_config('synchronous_commit', 'off', true)")
                    .execute(&mut *tx)
                    .await?;
                let settled = sqlx::query_as(&sql)
                    .bind(now_ms)
                    .bind(cols.ids)
                    .bind(cols.tokens)
                    .bind(cols.statuses)
                    .bind(cols.next_at)
                    .bind(cols.errors)
                    .bind(cols.codes)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                settled
            }
        };
        let settled: HashSet<i64> = settled.into_iter().map(|(id,)| id).collect();
        Ok(rows.iter().map(|r| settled.contains(&r.id)).collect())
    }
}

#[derive(Default)]
struct PgColumns {
    ids: Vec<i64>,
    tokens: Vec<i64>,
    statuses: Vec<&'static str>,
    next_at: Vec<i64>,
    errors: Vec<Option<String>>,
    codes: Vec<Option<i32>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_an_error_becomes_a_replacement_character() {
        assert_eq!(
            storable_text("HTTP 422: x\0y\0"),
            "HTTP 422: x\u{fffd}y\u{fffd}"
        );
        assert_eq!(storable_text("HTTP 503: fine"), "HTTP 503: fine");
    }
}
