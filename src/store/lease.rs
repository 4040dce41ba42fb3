//! Renewing a lease: a live worker moves its claimed event's `lease_until`
//! on while it fetches, so only a crashed or stalled worker's lease expires
//! and makes the event claimable again (SPEC §4). The renewal is guarded
//! like every change to a claimed event — `id`, `status = 'processing'` and
//! the lease token in the `WHERE` clause — so it can never revive a lease
//! that another worker has taken over or an event that is finished — and
//! only while the lease still runs: one that ran out counts as gone (the
//! claim no longer waits for it, and may have given the object's replayed
//! older event to another worker), so a stalled worker that wakes up
//! cannot bring it back.

use super::queue::{still_held, ClaimedEvent, QueueError};
use super::{with_work_pool, Store};

impl Store {
    /// Extends the lease on `event` to `until_ms` (never shortening it), if
    /// it is still this claim's and has not run out at `now_ms`; `LeaseLost`
    /// otherwise.
    pub async fn renew_lease(
        &self,
        event: &ClaimedEvent,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<(), QueueError> {
        const RENEW: &str = "\
            UPDATE events SET lease_until = CASE WHEN lease_until > $1 THEN lease_until ELSE $1 END \
            WHERE id = $2 AND lease_token = $3 AND status = 'processing' AND lease_until > $4";
        let _gate = self.write_gate().await;
        let renewed = with_work_pool!(self, pool => {
            sqlx::query(RENEW)
                .bind(until_ms)
                .bind(event.id)
                .bind(event.lease_token)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        still_held(event, renewed)
    }
}
