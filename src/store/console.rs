//! The one read the web console makes that the admin API does not: the
//! oldest event still waiting to be processed, for the overview (every
//! other console page reads through the admin API's functions in
//! `admin.rs` and `deliveries_admin.rs`).

use sqlx::FromRow;

use super::admin::{EventRow, EVENT_COLUMNS};
use super::{with_pool, Store, StoreError};

impl Store {
    /// The `pending` or `failed` event with the smallest ledger id (the
    /// first to arrive), if any. The queue's index of due events
    /// (`events_due`: those two statuses, by id) answers it without a scan.
    pub async fn oldest_waiting_event(&self) -> Result<Option<EventRow>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE status IN ('pending', 'failed') \
             ORDER BY id LIMIT 1"
        );
        Ok(with_pool!(self, pool => {
            match sqlx::query(&sql).fetch_optional(pool).await? {
                Some(row) => Some(EventRow::from_row(&row)?),
                None => None,
            }
        }))
    }
}
