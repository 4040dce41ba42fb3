//! How SQLite plans the processing claim, checked with `EXPLAIN QUERY
//! PLAN` on a migrated database: SQLite keeps no statistics unless told to
//! (`ANALYZE`), so its choice follows from the statement and the indexes
//! alone, and a statement that lets it walk the whole table shows here as
//! a `SCAN` of `events` without an index, whatever the rows. (Given
//! `ORDER BY e.id`, the expired-lease half scanned the table in id order on
//! every claim: ~1 ms of CPU per event processed at 100 000 events.)

use sqlx::Row;

use super::super::Store;

/// The plan's detail lines for `sql` (parameters bound as `now` = 0, the
/// other three as 1).
async fn plan(store: &Store, sql: &str) -> Vec<String> {
    let Store::Sqlite(sqlite) = store else {
        unreachable!("an SQLite store")
    };
    let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
        .bind(1_i64)
        .bind(1_i64)
        .bind(0_i64)
        .bind(1_i64)
        .fetch_all(&sqlite.work)
        .await
        .expect("explaining the claim");
    rows.iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect()
}

/// A full scan of a table: `SCAN <alias>` with no index named.
fn full_scans(plan: &[String], aliases: &[&str]) -> Vec<String> {
    plan.iter()
        .filter(|line| aliases.iter().any(|a| line.as_str() == format!("SCAN {a}")))
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_sqlite_claim_reads_events_only_through_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("plans.db").display());
    let store = Store::open(&url).await.unwrap();
    let plan = plan(&store, &store.claim_sql()).await;
    assert!(
        plan.iter()
            .any(|line| line.contains("USING INDEX events_due")),
        "the due walk is on events_due: {plan:#?}"
    );
    assert!(
        plan.iter()
            .any(|line| line.contains("USING INDEX events_leased")),
        "the expired leases are found on events_leased: {plan:#?}"
    );
    let scans = full_scans(&plan, &["e", "o", "events"]);
    assert!(
        scans.is_empty(),
        "the claim scans the ledger: {scans:?} in {plan:#?}"
    );
}
