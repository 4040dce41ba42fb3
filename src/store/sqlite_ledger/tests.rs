//! Unit tests of the SQLite ledger thread: batching, outcomes, copies.

use super::*;

fn event(key: &str, strategy: Strategy, hash: &str, at: i64) -> NewEvent {
    NewEvent {
        source: "s".into(),
        dedup_key: key.into(),
        previous_key: None,
        strategy,
        ignored: false,
        provider_event_id: None,
        action: None,
        object_type: Some("thing".into()),
        object_id: Some(format!("o-{key}")),
        event_time_ms: at,
        payload: "{}".into(),
        body_hash: hash.into(),
        received_at_ms: at,
    }
}

/// Every kind of delivery, new and repeated, across three batches.
fn batches() -> Vec<Vec<NewEvent>> {
    let mut hashed = event("hash:h:2", Strategy::PayloadHash, "h", 30);
    hashed.previous_key = Some("hash:h:1".into());
    let mut ignored = event("act:x:1", Strategy::ActionObject, "i", 40);
    ignored.ignored = true;
    let b1 = vec![
        event("id:a", Strategy::EventId, "1", 10),
        event("id:a", Strategy::EventId, "2", 11),
        event("co:u:1", Strategy::Coalesce, "c", 12),
        event("hash:h:1", Strategy::PayloadHash, "h", 13),
        ignored.clone(),
    ];
    let b2 = vec![
        event("id:a", Strategy::EventId, "1", 20),
        event("co:u:1", Strategy::Coalesce, "c", 21),
        hashed,
        ignored,
        event("id:b", Strategy::EventId, "1", 22),
    ];
    let b3 = vec![
        event("id:b", Strategy::EventId, "1", 30),
        event("id:c", Strategy::EventId, "1", 31),
    ];
    vec![b1, b2, b3]
}

/// A `duplicate_deliveries` row: (event id, copies, latest, differs).
type CopyRow = (i64, i64, i64, bool);

/// Outcomes of `batches()` and the copies recorded, with one order
/// (ledger ids replaced by their rank).
fn run(lookup_first: bool) -> (Vec<RecordOutcome>, Vec<CopyRow>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(super::super::Store::open(&format!(
            "sqlite://{}",
            path.display()
        )))
        .unwrap();
    let gate = Mutex::new(());
    let mut conn = open(&path).unwrap();
    let mut outcomes = Vec::new();
    for batch in batches() {
        let batch: Vec<&NewEvent> = batch.iter().collect();
        let deadline = super::super::sqlite_write_deadline();
        let limit = VariantLimit::default();
        let writing = Writing {
            gate: &gate,
            lookup_first,
            deadline,
            variant_limit: &limit,
        };
        let recorded = record_batch(&mut conn, &writing, &batch);
        outcomes.extend(recorded.unwrap());
    }
    let copies: Vec<CopyRow> = conn
        .prepare("SELECT event_id, copies, last_at, differs FROM duplicate_deliveries")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    // Ledger ids as ranks: a failed insert uses up an AUTOINCREMENT id,
    // so the two orders leave different gaps.
    let mut ids: Vec<i64> = outcomes.iter().map(|o| o.id()).collect();
    ids.sort();
    ids.dedup();
    let rank = |id: i64| ids.binary_search(&id).unwrap() as i64 + 1;
    let outcomes = outcomes
        .into_iter()
        .map(|o| match o {
            RecordOutcome::Accepted { id } => RecordOutcome::Accepted { id: rank(id) },
            RecordOutcome::Ignored { id } => RecordOutcome::Ignored { id: rank(id) },
            RecordOutcome::Duplicate {
                id,
                previous_bucket,
            } => RecordOutcome::Duplicate {
                id: rank(id),
                previous_bucket,
            },
        })
        .collect();
    let mut copies: Vec<_> = copies
        .into_iter()
        .map(|(id, n, at, differs)| (rank(id), n, at, differs))
        .collect();
    copies.sort();
    (outcomes, copies)
}

/// Requests queued while a batch is being recorded are gathered into the
/// next one, up to the row bound and never split; each gets its own
/// outcomes, in order, copies across requests included.
#[test]
fn queued_requests_share_the_next_batch_and_each_gets_its_own_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(super::super::Store::open(&format!(
            "sqlite://{}",
            path.display()
        )))
        .unwrap();
    let gate = Arc::new(Mutex::new(()));
    let ledger = SqliteLedger::start(path, gate.clone(), VariantLimit::default()).unwrap();
    let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = batches.clone();
    ledger.gather_batches(GroupCommit {
        max_rows: 3,
        linger: Duration::ZERO,
        observe: Box::new(move |rows, _| seen.lock().unwrap().push(rows)),
    });
    let e = |key: &str| event(key, Strategy::EventId, "h", 1);
    let requests = vec![
        vec![e("id:a"), e("id:a"), e("id:b")],
        vec![e("id:a")],
        vec![e("id:c")],
        vec![e("id:c")],
        vec![e("id:b")],
    ];
    // The first batch waits on the write gate until all are queued.
    let held = gate.blocking_lock();
    let answers: Vec<_> = requests
        .into_iter()
        .map(|events| {
            let (reply, answer) = oneshot::channel();
            let deadline = super::super::sqlite_write_deadline();
            let request = Request {
                events,
                reply,
                deadline,
            };
            ledger.requests.send(request).unwrap();
            answer
        })
        .collect();
    drop(held);
    let outcomes: Vec<Vec<RecordOutcome>> = answers
        .into_iter()
        .map(|a| a.blocking_recv().unwrap().unwrap())
        .collect();
    assert_eq!(*batches.lock().unwrap(), vec![3, 3, 1]);
    use RecordOutcome::*;
    let dup = |id| Duplicate {
        id,
        previous_bucket: false,
    };
    let (a, b) = (outcomes[0][0].id(), outcomes[0][2].id());
    let c = outcomes[2][0].id();
    assert_eq!(
        outcomes,
        vec![
            vec![Accepted { id: a }, dup(a), Accepted { id: b }],
            vec![dup(a)],
            vec![Accepted { id: c }],
            vec![dup(c)],
            vec![dup(b)],
        ]
    );
    assert!(a != b && b != c && a != c);
}

#[test]
fn looking_up_first_or_inserting_first_decides_the_same() {
    use RecordOutcome::*;
    let (insert_first, copies) = run(false);
    assert_eq!(
        insert_first,
        vec![
            Accepted { id: 1 },
            Duplicate {
                id: 1,
                previous_bucket: false
            },
            Accepted { id: 2 },
            Accepted { id: 3 },
            Ignored { id: 4 },
            Duplicate {
                id: 1,
                previous_bucket: false
            },
            Duplicate {
                id: 2,
                previous_bucket: false
            },
            Duplicate {
                id: 3,
                previous_bucket: true
            },
            Ignored { id: 4 },
            Accepted { id: 5 },
            Duplicate {
                id: 5,
                previous_bucket: false
            },
            Accepted { id: 6 },
        ]
    );
    // One row per event and batch: (id, copies, latest, differs).
    assert_eq!(
        copies,
        vec![
            (1, 1, 11, true),
            (1, 1, 20, false),
            (2, 1, 21, false),
            (3, 1, 30, false),
            (4, 1, 40, false),
            (5, 1, 30, false)
        ]
    );
    assert_eq!(run(true), (insert_first, copies));
}

#[test]
fn a_batch_of_mostly_copies_turns_the_order_around() {
    let accepted = RecordOutcome::Accepted { id: 1 };
    let copy = RecordOutcome::Duplicate {
        id: 1,
        previous_bucket: false,
    };
    assert!(!mostly_copies(&[accepted, copy]));
    assert!(mostly_copies(&[accepted, copy, copy]));
    assert!(!mostly_copies(&[]));
}
