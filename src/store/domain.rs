//! Reading the domain rows that processing writes (`domain_objects`). The
//! write itself happens in [`Store::complete`](super::Store::complete), in
//! the same transaction that marks the event done. `data` is `jsonb` on
//! PostgreSQL and read back as its text, which PostgreSQL normalises (key
//! order, whitespace): compare it as JSON, not as a string.

use sqlx::FromRow;

use super::{with_pool, Store, StoreError};

#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct DomainObject {
    pub source: String,
    pub object_type: String,
    pub object_id: String,
    /// JSON text: on SQLite as written, on PostgreSQL as `jsonb` prints
    /// it (the same value). What it holds: `domain_data`.
    pub data: String,
    /// The ledger id of the event that wrote it.
    pub last_event_id: i64,
    pub event_time: i64,
    pub updated_at: i64,
}

impl Store {
    pub async fn domain_object(
        &self,
        source: &str,
        object_type: &str,
        object_id: &str,
    ) -> Result<Option<DomainObject>, StoreError> {
        Ok(with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT source, object_type, object_id, CAST(data AS TEXT) AS data, last_event_id, \
                 event_time, updated_at \
                 FROM domain_objects WHERE source = $1 AND object_type = $2 AND object_id = $3",
            )
            .bind(source)
            .bind(object_type)
            .bind(object_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn domain_object_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = with_pool!(self, pool => {
            sqlx::query_as("SELECT COUNT(*) FROM domain_objects").fetch_one(pool).await?
        });
        Ok(n)
    }
}
