//! The fast path of group commit on PostgreSQL: a whole batch of deliveries
//! decided by one statement, committed on its own, in one round trip. The
//! statement looks each key up in its unique index (a row holding it makes
//! every copy a duplicate, appended to `duplicate_deliveries`, see
//! `duplicates.rs`), inserts the keys no row holds with `INSERT … ON
//! CONFLICT DO NOTHING RETURNING` (returned: first seen), and appends the
//! copies that arrived in the same batch as a new key. New events carry no
//! 600-byte payloads through a lookup, re-deliveries write no ledger row,
//! and neither pays for `BEGIN` and `COMMIT` round trips. Each column is one
//! array parameter (`UNNEST`), so the text never changes and the plan is
//! made once per connection (the ledger pool uses generic plans; the lookup
//! is a `LATERAL … LIMIT 1`, which keeps it an index probe even in a plan
//! made while the table was empty). SQLite's writer (`sqlite_ledger.rs`),
//! where a statement is a function call rather than a round trip, records
//! one delivery at a time instead.
//!
//! Copies of one key inside a batch are grouped first: the earliest is the
//! insert candidate, the others are its duplicates. Groups are inserted in
//! key order, so two batches wait on each other's inserts of the same keys in
//! one order; their ledger ids are drawn in arrival order, since ids are
//! what per-object order and "equal event times fall back to arrival order"
//! go by (SPEC §4).
//!
//! Per-object order also needs a visible id to imply that every smaller id
//! of its object has committed or rolled back (a claim must not overtake an
//! earlier event still in an open transaction). So every transaction that
//! inserts an event of an object first takes a transaction-scoped advisory
//! lock on the object (`lock_objects!`), before it draws ids: a second
//! transaction with an event of that object waits for the first one's
//! commit before it draws a larger id. Locks are taken in one statement
//! (the batch statement itself, or `POSTGRES_LOCK_AND_DRAW`), sorted by
//! their key, and before any row lock of the transaction, so lockers never
//! wait on each other in a circle. Events without an object take none.
//!
//! In a re-delivery storm (the previous batch was nearly all copies), a
//! lighter statement goes first: it sends only keys and counts, looks the
//! keys up and appends the copies; the full statement then runs for the
//! keys it did not find, if any (a second commit, for those batches only).
//!
//! Only event-id and unique action+object keys take this path. Coalesce,
//! payload-hash (two buckets to look in) and ignored deliveries, and any key
//! that another writer inserted after the statement's snapshot (neither
//! found nor inserted), go through the one-at-a-time path in `ledger.rs`.
//! So do divergent copies, whose bodies are kept as variants there
//! (`variants.rs`): a key whose copies in the batch differ among themselves
//! goes there whole, and a key whose row holds another body hash than its
//! copies is neither counted nor inserted here (left over).

use std::collections::BTreeMap;

use sqlx::PgConnection;

use super::ledger::{NewEvent, RecordOutcome};
use crate::dedup::Strategy;

/// Copies of one `(source, dedup_key)` in a batch, in arrival order.
struct Group {
    members: Vec<usize>,
}

/// What the fast path could not settle: indexes for the one-at-a-time path.
pub(super) type Leftover = Vec<usize>;

/// Ledger ids drawn ahead of the inserts, by index in the batch.
pub(super) type Drawn = Vec<Option<i64>>;

pub(super) struct Batch<'a> {
    events: &'a [NewEvent],
    /// In key order.
    groups: Vec<Group>,
    slow: Vec<usize>,
}

/// Copies of a key counted against the row that holds it: how many, the
/// latest arrival, and the body hash they share (`None` when they differ
/// among themselves, which means some differ from the original too).
struct Copies<'a> {
    count: i64,
    latest_ms: i64,
    shared_hash: Option<&'a str>,
}

impl<'a> Batch<'a> {
    /// `events` in arrival order.
    pub(super) fn new(events: &'a [NewEvent]) -> Batch<'a> {
        let mut by_key: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        let mut slow = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let fast = matches!(e.strategy, Strategy::EventId | Strategy::ActionObject)
                && !e.ignored
                && e.previous_key.is_none();
            if fast {
                by_key
                    .entry((e.source.as_str(), e.dedup_key.as_str()))
                    .or_default()
                    .push(i);
            } else {
                slow.push(i);
            }
        }
        let mut groups = Vec::with_capacity(by_key.len());
        for members in by_key.into_values() {
            let first = &events[members[0]].body_hash;
            if members.iter().all(|&i| &events[i].body_hash == first) {
                groups.push(Group { members });
            } else {
                // Copies that differ among themselves: some are variants.
                slow.extend(members);
            }
        }
        Batch {
            events,
            groups,
            slow,
        }
    }

    fn first(&self, group: &Group) -> &'a NewEvent {
        &self.events[group.members[0]]
    }

    /// Whether some deliveries must go one at a time.
    pub(super) fn has_slow(&self) -> bool {
        !self.slow.is_empty()
    }

    fn copies(&self, members: &[usize]) -> Copies<'a> {
        let hash = |i: usize| self.events[i].body_hash.as_str();
        let shared_hash = members
            .first()
            .map(|&i| hash(i))
            .filter(|&h| members.iter().all(|&i| hash(i) == h));
        Copies {
            count: members.len() as i64,
            latest_ms: members
                .iter()
                .map(|&i| self.events[i].received_at_ms)
                .max()
                .unwrap_or(0),
            shared_hash,
        }
    }
}

/// Takes the advisory lock of every object named in `$names` (a `FROM`
/// item `names` with a text column `name`, `NULL` for no object), sorted by key,
/// as the one row of `taken`. All lockers sort the same keys the same way:
/// the two-key form keeps them apart from every one-key advisory lock, and
/// a hash collision of two objects only makes them wait on each other.
macro_rules! lock_objects {
    ($names:expr) => {
        concat!(
            "\
    SELECT count(*) AS taken FROM (
        SELECT pg_advisory_xact_lock(1751936866, sorted.key) FROM (
            SELECT DISTINCT hashtext(names.name) AS key FROM ",
            $names,
            "
            WHERE names.name IS NOT NULL ORDER BY key
        ) AS sorted
    ) AS locks
"
        )
    };
}

/// The ledger's id sequence (`events.id` is an identity column). Ids are
/// drawn explicitly, so that they can follow arrival order while the rows
/// are inserted in key order.
macro_rules! next_id {
    () => {
        "nextval('events_id_seq')"
    };
}

/// `$1`: lock names (`lock_name`), `$2`: how many ids to draw. Locks the
/// objects, then draws the ids (the one-time filter on `taken` runs before
/// any row is made).
const POSTGRES_LOCK_AND_DRAW: &str = concat!(
    "WITH locked AS (\n",
    lock_objects!("UNNEST($1::text[]) AS names(name)"),
    ")\nSELECT ",
    next_id!(),
    " AS id FROM generate_series(1, $2::bigint) \
     WHERE (SELECT taken FROM locked) IS NOT NULL"
);

/// What an event's object lock is named by (`None`: no object, no lock).
fn lock_name(event: &NewEvent) -> Option<String> {
    let (kind, id) = (event.object_type.as_ref()?, event.object_id.as_ref()?);
    Some(format!("{}\u{1f}{kind}\u{1f}{id}", event.source))
}

/// Locks the objects of `members` (indexes into `events`) and draws one id
/// for each, in arrival (index) order, in the transaction `conn` is in:
/// the locks and the ids last until it ends.
pub(super) async fn lock_and_draw(
    conn: &mut PgConnection,
    events: &[NewEvent],
    members: &[usize],
) -> Result<Drawn, sqlx::Error> {
    let names: Vec<Option<String>> = members.iter().map(|&i| lock_name(&events[i])).collect();
    let mut ids: Vec<i64> = sqlx::query_scalar(POSTGRES_LOCK_AND_DRAW)
        .bind(names)
        .bind(members.len() as i64)
        .fetch_all(&mut *conn)
        .await?;
    ids.sort_unstable();
    let mut arrivals = members.to_vec();
    arrivals.sort_unstable();
    let mut drawn: Drawn = vec![None; events.len()];
    for (i, id) in arrivals.into_iter().zip(ids) {
        drawn[i] = Some(id);
    }
    Ok(drawn)
}

/// The rows already holding the batch's keys (`u`), one index probe per
/// key: `LATERAL … LIMIT 1` keeps it so in any plan, including a generic
/// one made while the table was empty. `same`: the group's copies (which
/// share one hash, `Batch::new`) have the row's body hash; other copies are
/// divergent, left to the one-at-a-time path.
macro_rules! held_cte {
    () => {
        "\
), held AS (
    SELECT u.ord, e.id, e.status, e.body_hash,
        u.all_hash IS NOT DISTINCT FROM e.body_hash AS same
    FROM u CROSS JOIN LATERAL (
        SELECT e.id, e.status, e.body_hash FROM events AS e
        WHERE e.source = u.source AND e.dedup_key = u.dedup_key AND e.strategy <> 'coalesce'
        LIMIT 1
    ) AS e
"
    };
}

/// Appends the copies of keys found `held` with the row's body (so
/// `differs` is false here; spelled out for what the column means).
macro_rules! copies_of_held {
    () => {
        "\
    INSERT INTO duplicate_deliveries (event_id, copies, last_at, differs)
    SELECT held.id, u.all_copies, u.all_last_at, u.all_hash IS DISTINCT FROM held.body_hash
    FROM held JOIN u ON u.ord = held.ord
    WHERE held.same
"
    };
}

/// `$1…$11`: each group's first copy, the insert candidate. `$12…$14`: all
/// copies of the group (counted when a row already holds the key).
/// `$15…$17`: the copies after the first (counted when the first is
/// inserted). `$18`: the first copy's place in the batch (arrival order),
/// `$19`: its object's lock name, `$20`: its ledger id if one was drawn
/// already (`lock_and_draw`, and then the locks are held). The groups come
/// in key order, and are inserted in it; their ids are drawn in arrival
/// order, after the locks of the objects of every key no row holds yet.
/// One row per group, by `ord`: the holder's id and status, or the inserted
/// id, or neither (a writer inserted the key after this statement's
/// snapshot, or its row holds another body: the one-at-a-time path settles
/// it).
const POSTGRES_RECORD: &str = concat!(
    "\
WITH u AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::bigint[], $9::text[], $10::text[], $11::bigint[],
        $12::bigint[], $13::bigint[], $14::text[], $15::bigint[], $16::bigint[], $17::text[],
        $18::bigint[], $19::text[], $20::bigint[])
    WITH ORDINALITY AS u(source, dedup_key, strategy, provider_event_id, action, object_type,
        object_id, event_time, payload, body_hash, received_at,
        all_copies, all_last_at, all_hash, later_copies, later_last_at, later_hash,
        arrival, lock_name, given_id, ord)
",
    held_cte!(),
    "\
), fresh AS (
    SELECT u.ord, u.arrival, u.lock_name AS name, u.given_id FROM u
    WHERE NOT EXISTS (SELECT 1 FROM held WHERE held.ord = u.ord)
), locked AS (
",
    lock_objects!("fresh AS names"),
    "\
), drawn AS (
    SELECT waiting.ord, COALESCE(waiting.given_id, ",
    next_id!(),
    ") AS id
    FROM (
        SELECT fresh.ord, fresh.given_id FROM fresh
        WHERE (SELECT taken FROM locked) IS NOT NULL
        ORDER BY fresh.arrival
    ) AS waiting
), inserted AS (
    INSERT INTO events (id, source, dedup_key, strategy, status, provider_event_id, action,
        object_type, object_id, event_time, payload, body_hash, received_at, next_attempt_at)
    OVERRIDING SYSTEM VALUE
    SELECT drawn.id, u.source, u.dedup_key, u.strategy, 'pending', u.provider_event_id,
        u.action, u.object_type, u.object_id, u.event_time, u.payload, u.body_hash,
        u.received_at, u.received_at
    FROM u JOIN drawn ON drawn.ord = u.ord
    ORDER BY u.ord
    ON CONFLICT DO NOTHING RETURNING id, source, dedup_key
), accepted AS (
    SELECT u.ord, inserted.id FROM inserted
    JOIN u ON u.source = inserted.source AND u.dedup_key = inserted.dedup_key
), copies AS (
",
    copies_of_held!(),
    "\
    UNION ALL
    SELECT accepted.id, u.later_copies, u.later_last_at, u.later_hash IS DISTINCT FROM u.body_hash
    FROM accepted JOIN u ON u.ord = accepted.ord
    WHERE u.later_copies > 0
)
SELECT u.ord, CASE WHEN held.same THEN held.id END, held.status, accepted.id
FROM u LEFT JOIN held ON held.ord = u.ord LEFT JOIN accepted ON accepted.ord = u.ord"
);

/// The lookup half of `POSTGRES_RECORD` alone: one row per group that a
/// row already holds with the same body, by `ord`.
const POSTGRES_RECORD_COPIES: &str = concat!(
    "\
WITH u AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])
    WITH ORDINALITY AS u(source, dedup_key, all_copies, all_last_at, all_hash, ord)
",
    held_cte!(),
    "\
), copies AS (
",
    copies_of_held!(),
    "\
)
SELECT held.ord, held.id, held.status, NULL::bigint FROM held WHERE held.same"
);

/// `(ord, holder id, holder status, inserted id)`
type Decided = (i64, Option<i64>, Option<String>, Option<i64>);

/// Whether the next batch should look its keys up first: nine in ten of
/// this batch's fast-path deliveries were copies of a row that already
/// existed.
pub(super) fn mostly_copies(batch: &Batch<'_>, outcomes: &[Option<RecordOutcome>]) -> bool {
    let members = batch.groups.iter().flat_map(|g| g.members.iter());
    let (mut copies, mut all) = (0, 0);
    for &i in members {
        all += 1;
        if matches!(
            outcomes[i],
            Some(RecordOutcome::Duplicate { .. } | RecordOutcome::Ignored { .. })
        ) {
            copies += 1;
        }
    }
    all > 0 && copies * 10 >= all * 9
}

/// Records the batch's fast-path groups; settles their outcomes and returns
/// what is left for the one-at-a-time path. `copies_first`: run the
/// lookup-only statement before the full one (`mostly_copies`). `drawn`:
/// `None` when the connection is not in a transaction (each statement
/// commits when it returns, and draws its own ids under its own locks);
/// else the ids `lock_and_draw` drew, in the transaction that holds the
/// locks.
pub(super) async fn record_postgres(
    conn: &mut PgConnection,
    batch: &Batch<'_>,
    outcomes: &mut [Option<RecordOutcome>],
    copies_first: bool,
    drawn: Option<&Drawn>,
) -> Result<Leftover, sqlx::Error> {
    let mut groups: Vec<usize> = (0..batch.groups.len()).collect();
    if copies_first && !groups.is_empty() {
        let decided = record_copies(conn, batch, &groups).await?;
        settle(batch, &groups, decided, outcomes)?;
        groups.retain(|&g| outcomes[batch.groups[g].members[0]].is_none());
    }
    if !groups.is_empty() {
        let decided = record_groups(conn, batch, &groups, drawn).await?;
        settle(batch, &groups, decided, outcomes)?;
    }
    let mut leftover = batch.slow.clone();
    for group in &batch.groups {
        if outcomes[group.members[0]].is_none() {
            // Inserted by another writer after the statement's snapshot.
            leftover.extend_from_slice(&group.members);
        }
    }
    Ok(leftover)
}

/// The first copy of each given group (its insert candidate), and the
/// copies counted when a row already holds the key: all of them.
fn firsts_and_all<'a>(batch: &Batch<'a>, groups: &[usize]) -> (Vec<&'a NewEvent>, Vec<Copies<'a>>) {
    groups
        .iter()
        .map(|&g| {
            let group = &batch.groups[g];
            (batch.first(group), batch.copies(&group.members))
        })
        .unzip()
}

/// Copies as three array parameters: count, latest arrival, shared hash.
fn copy_columns<'a>(copies: &[Copies<'a>]) -> (Vec<i64>, Vec<i64>, Vec<Option<&'a str>>) {
    (
        copies.iter().map(|c| c.count).collect(),
        copies.iter().map(|c| c.latest_ms).collect(),
        copies.iter().map(|c| c.shared_hash).collect(),
    )
}

/// `POSTGRES_RECORD_COPIES` for the given groups.
async fn record_copies(
    conn: &mut PgConnection,
    batch: &Batch<'_>,
    groups: &[usize],
) -> Result<Vec<Decided>, sqlx::Error> {
    let (firsts, all) = firsts_and_all(batch, groups);
    let (all_copies, all_last_at, all_hash) = copy_columns(&all);
    sqlx::query_as(POSTGRES_RECORD_COPIES)
        .bind(firsts.iter().map(|e| e.source.as_str()).collect::<Vec<_>>())
        .bind(
            firsts
                .iter()
                .map(|e| e.dedup_key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(all_copies)
        .bind(all_last_at)
        .bind(all_hash)
        .fetch_all(&mut *conn)
        .await
}

/// `POSTGRES_RECORD` for the given groups.
async fn record_groups(
    conn: &mut PgConnection,
    batch: &Batch<'_>,
    groups: &[usize],
    drawn: Option<&Drawn>,
) -> Result<Vec<Decided>, sqlx::Error> {
    let (firsts, all) = firsts_and_all(batch, groups);
    let arrivals: Vec<usize> = groups.iter().map(|&g| batch.groups[g].members[0]).collect();
    // Ids drawn already mean the locks are held already.
    let (lock_names, given_ids): (Vec<Option<String>>, Vec<Option<i64>>) = match drawn {
        Some(drawn) => arrivals.iter().map(|&i| (None, drawn[i])).unzip(),
        None => firsts.iter().map(|e| (lock_name(e), None)).unzip(),
    };
    let later: Vec<Copies> = groups
        .iter()
        .map(|&g| batch.copies(&batch.groups[g].members[1..]))
        .collect();
    let (all_copies, all_last_at, all_hash) = copy_columns(&all);
    let (later_copies, later_last_at, later_hash) = copy_columns(&later);
    let text = |f: fn(&NewEvent) -> &str| firsts.iter().map(|e| f(e)).collect::<Vec<&str>>();
    let maybe = |f: fn(&NewEvent) -> Option<&str>| {
        firsts.iter().map(|e| f(e)).collect::<Vec<Option<&str>>>()
    };
    let number = |f: fn(&NewEvent) -> i64| firsts.iter().map(|e| f(e)).collect::<Vec<i64>>();
    sqlx::query_as(POSTGRES_RECORD)
        .bind(text(|e| &e.source))
        .bind(text(|e| &e.dedup_key))
        .bind(text(|e| e.strategy.as_str()))
        .bind(maybe(|e| e.provider_event_id.as_deref()))
        .bind(maybe(|e| e.action.as_deref()))
        .bind(maybe(|e| e.object_type.as_deref()))
        .bind(maybe(|e| e.object_id.as_deref()))
        .bind(number(|e| e.event_time_ms))
        .bind(text(|e| &e.payload))
        .bind(text(|e| &e.body_hash))
        .bind(number(|e| e.received_at_ms))
        .bind(all_copies)
        .bind(all_last_at)
        .bind(all_hash)
        .bind(later_copies)
        .bind(later_last_at)
        .bind(later_hash)
        .bind(arrivals.iter().map(|&i| i as i64).collect::<Vec<i64>>())
        .bind(lock_names)
        .bind(given_ids)
        .fetch_all(&mut *conn)
        .await
}

/// Sets the outcomes a statement decided; `ord` counts from 1 in `groups`.
fn settle(
    batch: &Batch<'_>,
    groups: &[usize],
    decided: Vec<Decided>,
    outcomes: &mut [Option<RecordOutcome>],
) -> Result<(), sqlx::Error> {
    for (ord, held_id, held_status, inserted_id) in decided {
        let Some(group) = usize::try_from(ord - 1)
            .ok()
            .and_then(|i| groups.get(i))
            .map(|&g| &batch.groups[g])
        else {
            return Err(sqlx::Error::Protocol(format!(
                "batch statement returned an unknown ordinal {ord}"
            )));
        };
        match (held_id, inserted_id) {
            (Some(id), _) => {
                let outcome = if held_status.as_deref() == Some("ignored") {
                    RecordOutcome::Ignored { id }
                } else {
                    RecordOutcome::Duplicate {
                        id,
                        previous_bucket: false,
                    }
                };
                for &i in &group.members {
                    outcomes[i] = Some(outcome);
                }
            }
            (None, Some(id)) => {
                outcomes[group.members[0]] = Some(RecordOutcome::Accepted { id });
                for &i in &group.members[1..] {
                    outcomes[i] = Some(RecordOutcome::Duplicate {
                        id,
                        previous_bucket: false,
                    });
                }
            }
            // Neither: inserted by another writer after the snapshot.
            (None, None) => {}
        }
    }
    Ok(())
}
