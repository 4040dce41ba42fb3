//! Store contract tests: the SQL behind the API, called directly, on both
//! backends. These pin down what the handlers and workers rely on — above all
//! that a group-commit batch tells each delivery exactly whether it was
//! first-seen, whatever else shares its transaction.

use hookledger::dedup::Strategy;
use hookledger::store::queue::{ClaimedEvent, DomainWrite};
use hookledger::store::{NewEvent, RecordOutcome, Store};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    a_batch_settles_every_delivery_against_the_ledger_and_each_other,
    a_batch_mixing_every_strategy_gives_each_its_own_outcome,
    concurrent_batches_with_overlapping_keys_accept_each_key_once,
    claims_follow_per_object_arrival_order_and_leases_guard_completion,
    prune_drops_only_finished_rows_older_than_the_cutoff,
    a_completion_batch_is_lease_guarded_per_event_and_newer_writes_win,
    duplicate_copies_count_once_whether_or_not_they_are_folded_yet,
    a_mixed_batch_after_a_storm_of_copies_is_settled_the_same,
);

async fn store(backend: Backend) -> (Store, TestDb) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.unwrap();
    (store, db)
}

fn event(key: &str, strategy: Strategy, hash: &str, at: i64) -> NewEvent {
    NewEvent {
        source: "s".into(),
        dedup_key: key.into(),
        previous_key: None,
        strategy,
        ignored: false,
        provider_event_id: key.strip_prefix("id:").map(str::to_string),
        action: None,
        object_type: Some("thing".into()),
        object_id: Some(format!("o-{key}")),
        event_time_ms: at,
        payload: "{}".into(),
        body_hash: hash.into(),
        received_at_ms: at,
    }
}

fn accepted(o: RecordOutcome) -> i64 {
    match o {
        RecordOutcome::Accepted { id } => id,
        other => panic!("expected accepted, got {other:?}"),
    }
}

fn duplicate_of(o: RecordOutcome) -> i64 {
    match o {
        RecordOutcome::Duplicate { id, .. } => id,
        other => panic!("expected duplicate, got {other:?}"),
    }
}

/// Records a new key twice (bodies differ), `id:old` twice and another new
/// key, in one batch; checks each outcome and returns the new key's id.
async fn record_the_mixed_batch(store: &Store, old: i64) -> i64 {
    let batch = vec![
        event("id:new", Strategy::EventId, "h1", 2_000),
        event("id:old", Strategy::EventId, "h1", 2_001),
        event("id:new", Strategy::EventId, "h2", 2_002),
        event("id:other", Strategy::EventId, "h1", 2_003),
        event("id:old", Strategy::EventId, "h1", 2_004),
    ];
    let out = store.record_batch(&batch).await.unwrap();
    let new = accepted(out[0]);
    assert_eq!(duplicate_of(out[1]), old);
    assert_eq!(
        duplicate_of(out[2]),
        new,
        "a copy in the same batch is a duplicate of the first"
    );
    let other = accepted(out[3]);
    assert_eq!(duplicate_of(out[4]), old);
    assert!(new != other && new != old);
    new
}

async fn a_batch_settles_every_delivery_against_the_ledger_and_each_other(backend: Backend) {
    let (store, _db) = store(backend).await;
    let old = accepted(
        store
            .record(&event("id:old", Strategy::EventId, "h1", 1_000))
            .await
            .unwrap(),
    );
    let new = record_the_mixed_batch(&store, old).await;
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.total, stats.duplicates), (3, 3));
    let old_row = store.event(old).await.unwrap().unwrap().row;
    assert_eq!(
        (
            old_row.duplicates,
            old_row.last_duplicate_at,
            old_row.payload_differs
        ),
        (2, Some(2_004), false)
    );
    let new_row = store.event(new).await.unwrap().unwrap().row;
    assert_eq!(
        (new_row.duplicates, new_row.payload_differs),
        (1, true),
        "h2 differs from h1"
    );
}

async fn a_batch_mixing_every_strategy_gives_each_its_own_outcome(backend: Backend) {
    let (store, _db) = store(backend).await;
    let mut hashed = event("hash:abc:11", Strategy::PayloadHash, "abc", 3_300_000);
    hashed.previous_key = Some("hash:abc:10".into());
    let mut earlier = event("hash:abc:10", Strategy::PayloadHash, "abc", 3_299_000);
    earlier.previous_key = Some("hash:abc:9".into());
    let first_hash = accepted(store.record(&earlier).await.unwrap());
    let mut ignored = event("ign:noise:1", Strategy::ActionObject, "h", 1);
    ignored.ignored = true;
    let batch = vec![
        event("co:changed:1", Strategy::Coalesce, "h", 1),
        event("co:changed:1", Strategy::Coalesce, "h", 2),
        hashed,
        ignored.clone(),
        ignored,
        event("act:scheduled:1", Strategy::ActionObject, "h", 3),
    ];
    let out = store.record_batch(&batch).await.unwrap();
    let coalesced = accepted(out[0]);
    assert_eq!(duplicate_of(out[1]), coalesced);
    assert!(
        matches!(out[2], RecordOutcome::Duplicate { id, previous_bucket: true } if id == first_hash)
    );
    let RecordOutcome::Ignored { id: ignored_id } = out[3] else {
        panic!("{:?}", out[3])
    };
    assert_eq!(out[4], RecordOutcome::Ignored { id: ignored_id });
    accepted(out[5]);
    assert_eq!(store.stats().await.unwrap().total, 4);
}

async fn concurrent_batches_with_overlapping_keys_accept_each_key_once(backend: Backend) {
    let (store, _db) = store(backend).await;
    // Eight batches at once, each holding the same 20 keys in its own order.
    let batches: Vec<Vec<NewEvent>> = (0..8)
        .map(|b| {
            (0..20)
                .map(|k| {
                    event(
                        &format!("id:k{}", (k * 7 + b * 3) % 20),
                        Strategy::EventId,
                        "h",
                        10 + b as i64,
                    )
                })
                .collect()
        })
        .collect();
    let results =
        futures_util::future::join_all(batches.iter().map(|batch| store.record_batch(batch))).await;
    let mut first_seen = std::collections::HashMap::new();
    let mut duplicates = 0;
    for (batch, result) in batches.iter().zip(results) {
        for (e, outcome) in batch.iter().zip(result.expect("no batch fails")) {
            match outcome {
                RecordOutcome::Accepted { id } => {
                    assert!(
                        first_seen.insert(e.dedup_key.clone(), id).is_none(),
                        "{} accepted twice",
                        e.dedup_key
                    );
                }
                RecordOutcome::Duplicate { .. } => duplicates += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!((first_seen.len(), duplicates), (20, 140));
    assert_eq!(store.stats().await.unwrap().duplicates, 140);
}

async fn claims_follow_per_object_arrival_order_and_leases_guard_completion(backend: Backend) {
    let (store, _db) = store(backend).await;
    let mut ids = Vec::new();
    for (i, object) in ["a", "b", "a", "a", "b"].iter().enumerate() {
        let mut e = event(&format!("id:e{i}"), Strategy::EventId, "h", i as i64);
        e.object_id = Some(object.to_string());
        ids.push(accepted(store.record(&e).await.unwrap()));
    }
    // One event per object is claimable at a time: the oldest of each.
    let first = store.claim(100, 1_000, 10).await.unwrap();
    assert_eq!(
        first.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[0], ids[1]]
    );
    assert!(
        store.claim(100, 1_000, 10).await.unwrap().is_empty(),
        "nothing else is free"
    );
    store.complete(&first[0], None, 200).await.unwrap();
    let next = store.claim(200, 1_000, 10).await.unwrap();
    assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[2]]);
    // The lease on b's event expires; a new claim takes it over and the old
    // holder can no longer complete it.
    let taken = store.claim(1_200, 1_000, 10).await.unwrap();
    assert!(taken.iter().any(|e| e.id == ids[1]));
    assert!(
        store.complete(&first[1], None, 1_300).await.is_err(),
        "a lost lease cannot complete"
    );
    let retaken = taken.iter().find(|e| e.id == ids[1]).unwrap();
    assert_eq!(retaken.attempts, 2);
    store.complete(retaken, None, 1_300).await.unwrap();
    assert_eq!(
        store.event_status(ids[1]).await.unwrap().as_deref(),
        Some("done")
    );
}

async fn prune_drops_only_finished_rows_older_than_the_cutoff(backend: Backend) {
    let (store, _db) = store(backend).await;
    let done = accepted(
        store
            .record(&event("id:done", Strategy::EventId, "h", 10))
            .await
            .unwrap(),
    );
    let pending = accepted(
        store
            .record(&event("id:pending", Strategy::EventId, "h", 10))
            .await
            .unwrap(),
    );
    let recent = accepted(
        store
            .record(&event("id:recent", Strategy::EventId, "h", 5_000))
            .await
            .unwrap(),
    );
    let claimed = store.claim(20, 1_000, 10).await.unwrap();
    let done_claim = claimed.iter().find(|e| e.id == done).unwrap();
    store.complete(done_claim, None, 30).await.unwrap();
    let other = claimed.iter().find(|e| e.id == pending).unwrap();
    store.fail(other, "later", Some(10_000), 30).await.unwrap();
    assert_eq!(store.prune(1_000).await.unwrap(), 1);
    assert!(store.event(done).await.unwrap().is_none());
    assert!(
        store.event(pending).await.unwrap().is_some(),
        "failed rows wait for their retry"
    );
    assert!(store.event(recent).await.unwrap().is_some());
}

async fn a_completion_batch_is_lease_guarded_per_event_and_newer_writes_win(backend: Backend) {
    let (store, _db) = store(backend).await;
    let record = |key: &str, object: Option<&str>, event_time: i64| {
        let mut e = event(&format!("id:{key}"), Strategy::EventId, "h", 0);
        e.object_id = object.map(str::to_string);
        if object.is_none() {
            e.object_type = None;
        }
        e.event_time_ms = event_time;
        e
    };
    // A claim whose lease expires and is taken over below.
    let lost = accepted(store.record(&record("lost", Some("l"), 10)).await.unwrap());
    let stale = store.claim(0, 100, 1).await.unwrap();
    assert_eq!(stale.iter().map(|e| e.id).collect::<Vec<_>>(), vec![lost]);
    let n_new = accepted(store.record(&record("n1", Some("n"), 1_000)).await.unwrap());
    // Arrives later but happened earlier: must not overwrite n's row.
    let n_old = accepted(store.record(&record("n2", Some("n"), 900)).await.unwrap());
    let x = accepted(store.record(&record("x", Some("x"), 500)).await.unwrap());
    let y = accepted(store.record(&record("y", Some("y"), 400)).await.unwrap());
    let bare = accepted(store.record(&record("bare", None, 1)).await.unwrap());

    let claimed = store.claim(200, 10_000, 10).await.unwrap();
    let find = |id: i64| claimed.iter().find(|e| e.id == id).unwrap().clone();
    assert_eq!(
        claimed.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![lost, n_new, x, y, bare],
        "the expired lease is taken over; n's second event waits for its first"
    );
    let write = |data: &str| {
        Some(DomainWrite {
            data: format!("{{\"v\":\"{data}\"}}"),
        })
    };
    // Per-object order keeps two events of one object out of a batch; were
    // they in one anyway, the newer by (event_time, id) must be the one kept
    // (here the older id, with the later event_time).
    let mut y_as_x: ClaimedEvent = find(y);
    y_as_x.object_id = Some("x".into());
    let batch = [
        (stale[0].clone(), write("stale")),
        (find(n_new), write("n-1000")),
        (find(x), write("x-500")),
        (y_as_x, write("y-400")),
        (find(bare), None),
    ];
    let refs: Vec<_> = batch.iter().map(|(e, w)| (e, w.as_ref())).collect();
    assert_eq!(
        store.complete_batch(&refs, 300).await.unwrap(),
        vec![false, true, true, true, true]
    );
    let data = |o: Option<hookledger::store::domain::DomainObject>| {
        o.map(|o| {
            (
                serde_json::from_str::<Value>(&o.data).unwrap(),
                o.last_event_id,
            )
        })
    };
    assert_eq!(
        data(store.domain_object("s", "thing", "l").await.unwrap()),
        None,
        "a lost lease writes nothing"
    );
    assert_eq!(
        store.event_status(lost).await.unwrap().as_deref(),
        Some("processing"),
        "the new holder still has it"
    );
    assert_eq!(
        data(store.domain_object("s", "thing", "x").await.unwrap()),
        Some((json!({"v": "x-500"}), x))
    );
    assert_eq!(
        data(store.domain_object("s", "thing", "y").await.unwrap()),
        None
    );
    for id in [n_new, x, y, bare] {
        assert_eq!(
            store.event_status(id).await.unwrap().as_deref(),
            Some("done")
        );
    }

    // n's second event is claimable now; its older write loses to the row.
    let next = store.claim(400, 10_000, 10).await.unwrap();
    assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), vec![n_old]);
    let w = write("n-900");
    assert_eq!(
        store
            .complete_batch(&[(&next[0], w.as_ref())], 500)
            .await
            .unwrap(),
        vec![true]
    );
    let n = store
        .domain_object("s", "thing", "n")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            serde_json::from_str::<Value>(&n.data).unwrap(),
            n.last_event_id,
            n.event_time
        ),
        (json!({"v": "n-1000"}), n_new, 1_000)
    );
    assert_eq!(
        store.event_status(n_old).await.unwrap().as_deref(),
        Some("done")
    );

    // The new holder of the taken-over event completes it.
    let w = write("l");
    assert_eq!(
        store
            .complete_batch(&[(&find(lost), w.as_ref())], 600)
            .await
            .unwrap(),
        vec![true]
    );
    assert_eq!(
        data(store.domain_object("s", "thing", "l").await.unwrap()),
        Some((json!({"v": "l"}), lost))
    );
    assert_eq!(store.domain_object_count().await.unwrap(), 3);
    assert_eq!(
        store.complete_batch(&[], 700).await.unwrap(),
        Vec::<bool>::new()
    );
}

/// Runs one statement on the store's database; returns the first column of
/// its first row as a number, or 0 when it returns no row.
async fn sql(store: &Store, statement: &str) -> i64 {
    let row = match store {
        Store::Sqlite(s) => sqlx::query_scalar::<_, i64>(statement)
            .fetch_optional(&s.pool)
            .await
            .unwrap(),
        Store::Postgres(pg) => sqlx::query_scalar::<_, i64>(statement)
            .fetch_optional(&pg.pool)
            .await
            .unwrap(),
    };
    row.unwrap_or_default()
}

/// Re-deliveries are recorded as narrow rows beside the ledger and folded
/// into it later (`store::duplicates`): every read that shows counts sees
/// each copy exactly once, folded or not, and a prune takes a row's copies
/// with it.
async fn duplicate_copies_count_once_whether_or_not_they_are_folded_yet(backend: Backend) {
    let (store, _db) = store(backend).await;
    let waiting = "SELECT COUNT(*) FROM duplicate_deliveries";
    let original = accepted(
        store
            .record(&event("id:e", Strategy::EventId, "h1", 1_000))
            .await
            .unwrap(),
    );
    // Three batches; the latest copy is not the last to arrive, one differs.
    for (at, hash) in [(3_000, "h1"), (2_500, "h2"), (2_000, "h1")] {
        let out = store
            .record(&event("id:e", Strategy::EventId, hash, at))
            .await
            .unwrap();
        assert_eq!(duplicate_of(out), original);
    }
    // On PostgreSQL the differing copy goes the one-at-a-time way, which
    // keeps its body as a variant and counts it on the row at once.
    let beside = if backend == Backend::Postgres { 2 } else { 3 };
    assert_eq!(
        sql(&store, waiting).await,
        beside,
        "recorded beside the row"
    );
    let row = store.event(original).await.unwrap().unwrap().row;
    assert_eq!(
        (row.duplicates, row.last_duplicate_at, row.payload_differs),
        (3, Some(3_000), true)
    );
    assert_eq!(sql(&store, waiting).await, 0, "the read folded them");
    assert_eq!(
        store.stats().await.unwrap().duplicates,
        3,
        "and counts them once"
    );

    // Two more in one batch, folded by hand (as the background task does).
    let copies = vec![
        event("id:e", Strategy::EventId, "h1", 4_000),
        event("id:e", Strategy::EventId, "h1", 4_001),
    ];
    store.record_batch(&copies).await.unwrap();
    assert_eq!(sql(&store, waiting).await, 1, "one row per key and batch");
    assert_eq!(store.fold_duplicates().await.unwrap(), 1, "one ledger row");
    assert_eq!(store.fold_duplicates().await.unwrap(), 0, "nothing left");
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.total, stats.duplicates), (1, 5));
    let listed = store.duplicates(&Default::default(), 10).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.id, r.duplicates, r.last_duplicate_at))
            .collect::<Vec<_>>(),
        vec![(original, 5, Some(4_001))]
    );

    // A copy waiting to be folded goes with its row when the row is pruned.
    sql(
        &store,
        "UPDATE events SET status = 'done', processed_at = 1 WHERE dedup_key = 'id:e'",
    )
    .await;
    store
        .record(&event("id:e", Strategy::EventId, "h1", 5_000))
        .await
        .unwrap();
    assert_eq!(sql(&store, waiting).await, 1);
    assert_eq!(store.prune(10_000).await.unwrap(), 1);
    assert_eq!(sql(&store, waiting).await, 0);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.total, stats.duplicates), (0, 0));
}

/// PostgreSQL: the batch statement reads the ledger in one snapshot. A key
/// that another transaction inserts but has not yet committed makes the
/// batch's insert wait; once it commits, the key is neither found in the
/// snapshot nor inserted, and must still come out a duplicate of that row,
/// never a second acceptance and never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_committed_by_another_writer_while_a_batch_waits_on_it_is_its_duplicate() {
    if postgres_url().is_none() {
        eprintln!("skipped: a_key_committed_by_another_writer… on PostgreSQL (set {POSTGRES_ENV} to run it)");
        return;
    }
    let (store, _db) = store(Backend::Postgres).await;
    let Store::Postgres(pg) = &store else {
        unreachable!("a PostgreSQL store")
    };
    let mut other = pg.pool.begin().await.unwrap();
    let (raced,): (i64,) = sqlx::query_as(
        "INSERT INTO events (source, dedup_key, strategy, status, event_time, payload, \
             body_hash, received_at, next_attempt_at) \
         VALUES ('s', 'id:raced', 'event_id', 'pending', 1, '{}', 'h', 1, 1) RETURNING id",
    )
    .fetch_one(&mut *other)
    .await
    .unwrap();
    let batch = vec![
        event("id:raced", Strategy::EventId, "h", 10),
        event("id:fresh", Strategy::EventId, "h", 11),
        event("id:raced", Strategy::EventId, "h2", 12),
    ];
    let recording = tokio::spawn({
        let store = store.clone();
        async move { store.record_batch(&batch).await }
    });
    let waiting_on_a_lock = "SELECT COUNT(*) FROM pg_stat_activity \
        WHERE datname = current_database() AND wait_event_type = 'Lock'";
    wait_until("the batch waits on the uncommitted row", || async {
        sql(&store, waiting_on_a_lock).await == 1
    })
    .await;
    other.commit().await.unwrap();

    let out = recording.await.unwrap().expect("the batch succeeds");
    assert_eq!(duplicate_of(out[0]), raced);
    let fresh = accepted(out[1]);
    assert_eq!(duplicate_of(out[2]), raced);
    assert_ne!(fresh, raced);
    let row = store.event(raced).await.unwrap().unwrap().row;
    assert_eq!(
        (row.duplicates, row.last_duplicate_at, row.payload_differs),
        (2, Some(12), true)
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.total, stats.duplicates), (2, 2));
}

/// After batches of nothing but re-deliveries both backends look keys up
/// before inserting (PostgreSQL: a lighter statement first, then the full
/// one for what it did not find). A mixed batch then must come out exactly
/// as in `a_batch_settles_every_delivery_against_the_ledger_and_each_other`.
async fn a_mixed_batch_after_a_storm_of_copies_is_settled_the_same(backend: Backend) {
    let (store, _db) = store(backend).await;
    let old = accepted(
        store
            .record(&event("id:old", Strategy::EventId, "h1", 1_000))
            .await
            .unwrap(),
    );
    for round in 0..3 {
        let storm = vec![
            event("id:old", Strategy::EventId, "h1", 1_100 + round),
            event("id:old", Strategy::EventId, "h1", 1_200 + round),
        ];
        for outcome in store.record_batch(&storm).await.unwrap() {
            assert_eq!(duplicate_of(outcome), old);
        }
    }
    let new = record_the_mixed_batch(&store, old).await;
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.total, stats.duplicates), (3, 6 + 3));
    let old_row = store.event(old).await.unwrap().unwrap().row;
    assert_eq!(
        (old_row.duplicates, old_row.last_duplicate_at),
        (8, Some(2_004))
    );
    let new_row = store.event(new).await.unwrap().unwrap().row;
    assert_eq!((new_row.duplicates, new_row.payload_differs), (1, true));
    // And back: a batch of new keys only is inserted whichever way is tried.
    let copy = event("id:old", Strategy::EventId, "h1", 2_100);
    assert_eq!(duplicate_of(store.record(&copy).await.unwrap()), old);
    let fresh = vec![
        event("id:f1", Strategy::EventId, "h", 3_000),
        event("id:f2", Strategy::EventId, "h", 3_001),
    ];
    for outcome in store.record_batch(&fresh).await.unwrap() {
        accepted(outcome);
    }
    assert_eq!(store.stats().await.unwrap().total, 5);
}
