//! The hand-off's half in the store (see `crate::handoff`): inside the
//! completion transaction that wrote the deliveries, lease some of the new
//! rows at once to this process's relay, instead of leaving them `pending`
//! for the relay's next claim — one more statement in a transaction that is
//! already open, instead of another transaction.
//!
//! The lease is exactly a claim's: `delivering`, a random token, an expiry,
//! the attempt counted, and only where a claim would take the row — no
//! earlier unfinished delivery of its object to its destination and none
//! in flight (`OBJECT_FREE`, the claim's own condition, so a second row of
//! one object in the same batch waits behind the first), and its
//! destination not paused. On PostgreSQL the transaction takes the claims'
//! shared advisory lock first, so an operator's pause or retry orders
//! against a hand-off as it does against a claim. A leased row that never
//! reaches its relay is claimed by any relay when its lease runs out.

use std::collections::HashMap;

use sqlx::{PgConnection, SqliteConnection};

use super::deliveries::{ClaimedDelivery, OBJECT_FREE};

/// How many new deliveries to each destination may be leased to this
/// process's relays (the free slots reserved), and for how long.
#[derive(Debug, Clone, Default)]
pub struct HandoffSlots<'a> {
    pub slots: HashMap<&'a str, usize>,
    pub lease_ms: i64,
}

impl HandoffSlots<'_> {
    pub fn is_empty(&self) -> bool {
        self.slots.values().all(|&n| n == 0)
    }
}

/// What one completion batch did: which completions took effect (in the
/// order given), the deliveries it leased to relays, and whether it left
/// any new delivery `pending` for a claim.
#[derive(Debug, Default)]
pub struct Completed {
    pub done: Vec<bool>,
    pub leased: Vec<ClaimedDelivery>,
    pub left_pending: bool,
}

/// The ids of the new rows to try to lease: for each destination, its
/// first rows in id order, as many as it has slots.
pub(super) fn candidates(inserted: &[(i64, String)], slots: &HandoffSlots<'_>) -> Vec<i64> {
    let mut rows: Vec<&(i64, String)> = inserted.iter().collect();
    rows.sort_by_key(|(id, _)| *id);
    let mut left: HashMap<&str, usize> = slots.slots.clone();
    rows.into_iter()
        .filter_map(|(id, destination)| {
            let n = left.get_mut(destination.as_str())?;
            if *n == 0 {
                return None;
            }
            *n -= 1;
            Some(*id)
        })
        .collect()
}

/// `$1` token, `$2` lease end, `$3` now (as `OBJECT_FREE` expects), `$4`
/// the candidate ids. (SQLite's `RETURNING` does not know the alias.)
fn lease_sql(ids: &str) -> String {
    format!(
        "UPDATE deliveries AS d SET status = 'delivering', lease_token = $1, lease_until = $2, \
           attempts = d.attempts + 1 \
         WHERE d.id IN ({ids}) AND d.status = 'pending' AND {OBJECT_FREE} \
           AND NOT EXISTS (SELECT 1 FROM destination_state s \
                           WHERE s.name = d.destination AND s.paused) \
         RETURNING id, event_id, destination, replay, source, action, object_type, object_id, \
           body, attempts, lease_token"
    )
}

const SQLITE_IDS: &str = "SELECT value FROM json_each($4)";
const POSTGRES_IDS: &str = "SELECT UNNEST($4::bigint[])";

fn token() -> i64 {
    rand::random::<i64>() & i64::MAX
}

pub(super) async fn lease_sqlite(
    conn: &mut SqliteConnection,
    ids: &[i64],
    now_ms: i64,
    lease_ms: i64,
) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut leased: Vec<ClaimedDelivery> = sqlx::query_as(&lease_sql(SQLITE_IDS))
        .bind(token())
        .bind(now_ms.saturating_add(lease_ms))
        .bind(now_ms)
        .bind(serde_json::to_string(ids).expect("ids serialize"))
        .fetch_all(&mut *conn)
        .await?;
    leased.sort_by_key(|d| d.id);
    Ok(leased)
}

pub(super) async fn lease_postgres(
    conn: &mut PgConnection,
    ids: &[i64],
    now_ms: i64,
    lease_ms: i64,
) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut leased: Vec<ClaimedDelivery> = sqlx::query_as(&lease_sql(POSTGRES_IDS))
        .bind(token())
        .bind(now_ms.saturating_add(lease_ms))
        .bind(now_ms)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    leased.sort_by_key(|d| d.id);
    Ok(leased)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_each_destinations_first_rows_up_to_its_slots() {
        let inserted = vec![
            (12, "b".to_string()),
            (10, "a".to_string()),
            (11, "a".to_string()),
            (13, "a".to_string()),
            (14, "c".to_string()),
        ];
        let slots = HandoffSlots {
            slots: HashMap::from([("a", 2), ("b", 5)]),
            lease_ms: 1,
        };
        assert_eq!(candidates(&inserted, &slots), vec![10, 11, 12]);
    }
}
