//! The one read the web console makes that the admin API does not: the
//! oldest event still waiting to be processed, for the overview (every
//! other console page reads through the admin API's functions in
//! `admin.rs` and `deliveries_admin.rs`).

use sqlx::FromRow;

use super::admin::{EventRow, EVENT_COLUMNS};
use super::queue::postgres_queue_range;
use super::{with_pool, Store, StoreError};

impl Store {
    /// The `pending` or `failed` event with the smallest ledger id (the
    /// first to arrive), if any, without a scan: SQLite's `events_due`
    /// (those two statuses, by id) answers it; on PostgreSQL the oldest of
    /// each status is the first entry of its range of `events_queue`
    /// (the processing claim's walk, `queue::postgres_queue_range`).
    pub async fn oldest_waiting_event(&self) -> Result<Option<EventRow>, StoreError> {
        let sql = match self {
            Store::Sqlite(_) => format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE status IN ('pending', 'failed') \
                 ORDER BY id LIMIT 1"
            ),
            Store::Postgres(_) => {
                let first = |status: &str| {
                    let (waiting, order) = postgres_queue_range("w", status);
                    format!(
                        "SELECT id FROM (SELECT w.id FROM events w WHERE {waiting} \
                           ORDER BY {order} LIMIT 1) AS {status}"
                    )
                };
                format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE id = (SELECT MIN(id) FROM ( \
                       {pending} UNION ALL {failed}) AS oldest)",
                    pending = first("pending"),
                    failed = first("failed")
                )
            }
        };
        Ok(with_pool!(self, pool => {
            match sqlx::query(&sql).fetch_optional(pool).await? {
                Some(row) => Some(EventRow::from_row(&row)?),
                None => None,
            }
        }))
    }
}
