//! One-use signature tokens (SPEC §11, Mailgun): a scheme whose MAC covers
//! a token and a timestamp but not the event is safe only if a token, once
//! seen with an event id, is refused with any other. [`Store::claim_token`]
//! records the first use and answers whether this use is the same event
//! (a redelivery of it is). Rows past their use — their signed timestamp is
//! out of tolerance by then whatever the token — are dropped as claims come.

use super::{Store, StoreError};

impl Store {
    /// Claims `token` of `source` for `event_id` at `now_ms`: `true` when it
    /// was unclaimed or is claimed by the same event id, `false` when
    /// another event id holds it. Tokens seen before `forget_before_ms` are
    /// dropped first (they can no longer pass the timestamp check).
    pub async fn claim_token(
        &self,
        source: &str,
        token: &str,
        event_id: &str,
        now_ms: i64,
        forget_before_ms: i64,
    ) -> Result<bool, StoreError> {
        const FORGET: &str = "DELETE FROM signature_tokens WHERE source = $1 AND seen_at < $2";
        const CLAIM: &str = "INSERT INTO signature_tokens (source, token, event_id, seen_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (source, token) DO NOTHING";
        const HOLDER: &str =
            "SELECT event_id FROM signature_tokens WHERE source = $1 AND token = $2";
        // The three statements in one transaction, on either backend.
        macro_rules! claim {
            ($tx:ident) => {{
                sqlx::query(FORGET)
                    .bind(source)
                    .bind(forget_before_ms)
                    .execute(&mut *$tx)
                    .await?;
                sqlx::query(CLAIM)
                    .bind(source)
                    .bind(token)
                    .bind(event_id)
                    .bind(now_ms)
                    .execute(&mut *$tx)
                    .await?;
                let (holder,): (String,) = sqlx::query_as(HOLDER)
                    .bind(source)
                    .bind(token)
                    .fetch_one(&mut *$tx)
                    .await?;
                $tx.commit().await?;
                holder
            }};
        }
        let holder = match self {
            Store::Sqlite(sqlite) => {
                let _gate = self.write_gate().await;
                let mut tx = sqlite.work.begin_with("BEGIN IMMEDIATE").await?;
                claim!(tx)
            }
            Store::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                claim!(tx)
            }
        };
        Ok(holder == event_id)
    }
}
