//! The retention guard of `hookledger prune` (SPEC §6, §10): a ledger row
//! is its event's dedup key, and a provider may resend an event until its
//! resend horizon has passed (Stripe 30 days, Shopify 2, most others 3).
//! Dropping a younger row would make that resend look new and process it
//! again, so a prune keeps every row younger than its source's horizon
//! unless forced, and keeps `dead` rows (the dead letters an operator has
//! still to look at) unless asked to drop them. It says how many it kept
//! for each reason.

use std::collections::BTreeMap;

use super::admin::PRUNE_BATCH_ROWS;
use super::{with_pool, Store, StoreError};

/// What a prune may drop.
#[derive(Debug, Clone)]
pub struct PrunePolicy {
    /// Rows received before this instant (Unix ms) are candidates.
    pub before_ms: i64,
    /// Now (Unix ms): horizons count back from here.
    pub now_ms: i64,
    /// Each configured source's resend horizon, in seconds.
    pub horizons_secs: BTreeMap<String, u64>,
    /// The horizon of rows whose source is no longer configured (it may
    /// come back, and its provider still resends).
    pub default_horizon_secs: u64,
    /// `--force`: no horizon holds a row back.
    pub force: bool,
    /// `--dead`: dead rows go too.
    pub dead: bool,
}

/// What a prune did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub dropped: u64,
    /// Rows old enough for `--older-than` but younger than their source's
    /// resend horizon.
    pub kept_for_horizon: u64,
    /// Dead rows old enough for `--older-than`, kept without `--dead`.
    pub kept_dead: u64,
}

impl PrunePolicy {
    /// The cut-off for `source`'s rows: `before_ms`, or its horizon's start
    /// when that is earlier (and the prune is not forced).
    fn cut_for(&self, source: &str) -> i64 {
        if self.force {
            return self.before_ms;
        }
        let secs = self
            .horizons_secs
            .get(source)
            .copied()
            .unwrap_or(self.default_horizon_secs);
        let horizon_ms = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.before_ms.min(self.now_ms.saturating_sub(horizon_ms))
    }
}

impl Store {
    /// Drops finished ledger rows as `policy` allows, source by source.
    pub async fn prune_with(&self, policy: &PrunePolicy) -> Result<PruneReport, StoreError> {
        let sources: Vec<(String,)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT DISTINCT source FROM events")
                .fetch_all(pool)
                .await?
        });
        let mut report = PruneReport::default();
        for (source,) in sources {
            let cut = policy.cut_for(&source);
            // Counted before dropping: what the cut (and the dead rule)
            // hold back of what `before_ms` alone would drop.
            const HELD: &str = "\
                SELECT \
                  COUNT(CASE WHEN received_at >= $2 AND ($4 OR status <> 'dead') THEN 1 END), \
                  COUNT(CASE WHEN status = 'dead' AND NOT $4 THEN 1 END) \
                FROM events WHERE source = $1 AND received_at < $3 \
                  AND status NOT IN ('pending', 'processing', 'failed')";
            let (horizon, dead): (i64, i64) = with_pool!(self, pool => {
                sqlx::query_as(HELD)
                    .bind(&source)
                    .bind(cut)
                    .bind(policy.before_ms)
                    .bind(policy.dead)
                    .fetch_one(pool)
                    .await?
            });
            report.kept_for_horizon += u64::try_from(horizon).unwrap_or(0);
            report.kept_dead += u64::try_from(dead).unwrap_or(0);
            report.dropped += self
                .prune_rows(cut, PRUNE_BATCH_ROWS, Some(&source), policy.dead)
                .await?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(force: bool) -> PrunePolicy {
        PrunePolicy {
            before_ms: 10_000_000_000,
            now_ms: 10_000_000_000,
            horizons_secs: [("stripe".to_string(), 30 * 86_400)].into(),
            default_horizon_secs: 3 * 86_400,
            force,
            dead: false,
        }
    }

    #[test]
    fn a_source_is_cut_at_its_horizon_unless_forced() {
        let p = policy(false);
        assert_eq!(p.cut_for("stripe"), 10_000_000_000 - 30 * 86_400_000);
        assert_eq!(p.cut_for("gone"), 10_000_000_000 - 3 * 86_400_000);
        assert_eq!(policy(true).cut_for("stripe"), 10_000_000_000);
        let older = PrunePolicy {
            before_ms: 1_000,
            ..policy(false)
        };
        assert_eq!(
            older.cut_for("stripe"),
            1_000,
            "older-than beyond the horizon"
        );
    }
}
