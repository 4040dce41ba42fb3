//! The fast path of group commit: a whole batch of deliveries decided with
//! one multi-row read of the rows that already hold its keys (each such key
//! is a duplicate: its copies are appended to `duplicate_deliveries` in one
//! more statement, see `duplicates.rs`) and a multi-row `INSERT … ON
//! CONFLICT DO NOTHING RETURNING` for the keys left over (inserted: first
//! seen), instead of two statements per delivery. New events carry no
//! 600-byte payloads through a statement that will not use them, and
//! re-deliveries write no ledger row at all. (Copies of a new key that
//! arrived in the same batch are recorded as duplicates after the insert.)
//! Each statement takes the batch as one parameter set (`UNNEST` of arrays),
//! so the statement text never changes and stays prepared. (PostgreSQL only:
//! on SQLite, where a statement is a function call rather than a round trip,
//! `sqlite_ledger.rs` records one delivery at a time.)
//!
//! Copies of one key inside a batch are grouped first: the earliest is the
//! insert candidate, the others are its duplicates. Groups are handled in
//! key order, so two batches on PostgreSQL wait on each other's inserts of
//! the same keys in one order.
//!
//! Only event-id and unique action+object keys take this path. Coalesce,
//! payload-hash (two buckets to look in) and ignored deliveries, and any
//! key that another writer inserted between the read and the insert
//! (PostgreSQL), go through the one-at-a-time path in `ledger.rs`.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;

use super::ledger::{NewEvent, RecordOutcome};
use crate::dedup::Strategy;

/// Copies of one `(source, dedup_key)` in a batch, in arrival order.
struct Group<'a> {
    source: &'a str,
    key: &'a str,
    members: Vec<usize>,
}

/// What the fast path could not settle: indexes for the one-at-a-time path.
pub(super) type Leftover = Vec<usize>;

pub(super) struct Batch<'a> {
    events: &'a [NewEvent],
    groups: Vec<Group<'a>>,
    slow: Vec<usize>,
}

impl<'a> Batch<'a> {
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
        let groups = by_key
            .into_iter()
            .map(|((source, key), members)| Group {
                source,
                key,
                members,
            })
            .collect();
        Batch {
            events,
            groups,
            slow,
        }
    }

    /// Groups no row holds yet, after the first duplicate update.
    fn unheld(&self, held: &Duplicated) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&g| !held.contains_key(&self.key_of(g)))
            .collect()
    }

    fn key_of(&self, g: usize) -> (String, String) {
        (
            self.groups[g].source.to_string(),
            self.groups[g].key.to_string(),
        )
    }

    /// The insert candidates of the given groups: each group's first copy.
    fn candidates<'b>(&'b self, groups: &'b [usize]) -> impl Iterator<Item = &'b NewEvent> {
        groups
            .iter()
            .map(|&g| &self.events[self.groups[g].members[0]])
    }

    /// Settles outcomes; returns what is left for the one-at-a-time path.
    /// `held`: groups whose row existed (all copies are duplicates);
    /// `inserted`: groups inserted now (the first copy is accepted);
    /// `recounted`: copies after the first of inserted groups.
    fn settle(
        &self,
        held: &Duplicated,
        inserted: &Inserted,
        recounted: &Duplicated,
        outcomes: &mut [Option<RecordOutcome>],
    ) -> Leftover {
        let mut leftover = self.slow.clone();
        for (g, group) in self.groups.iter().enumerate() {
            let key = self.key_of(g);
            let (holder, dups) = if let Some(found) = held.get(&key) {
                (Some(found), &group.members[..])
            } else if let Some(&id) = inserted.get(&key) {
                outcomes[group.members[0]] = Some(RecordOutcome::Accepted { id });
                (recounted.get(&key), &group.members[1..])
            } else {
                // Inserted meanwhile by another writer (PostgreSQL): settle
                // these one at a time.
                (None, &group.members[..])
            };
            if dups.is_empty() {
                continue;
            }
            match holder {
                Some((id, status)) => {
                    for &i in dups {
                        outcomes[i] = Some(if status == "ignored" {
                            RecordOutcome::Ignored { id: *id }
                        } else {
                            RecordOutcome::Duplicate {
                                id: *id,
                                previous_bucket: false,
                            }
                        });
                    }
                }
                None => leftover.extend_from_slice(dups),
            }
        }
        leftover
    }

    /// Duplicate counts for the given groups, skipping each group's first
    /// `skip` copies: how many, the latest arrival, and the body hash they
    /// share (`None` when they differ among themselves, which means some
    /// differ from the original too).
    fn counts(&self, groups: &[usize], skip: usize) -> Vec<Count<'_>> {
        groups
            .iter()
            .filter_map(|&g| {
                let group = &self.groups[g];
                let dups = group.members.get(skip..)?;
                let first = self.events.get(*dups.first()?)?;
                let latest = dups.iter().map(|&i| self.events[i].received_at_ms).max()?;
                let same = dups
                    .iter()
                    .all(|&i| self.events[i].body_hash == first.body_hash);
                Some((
                    group.source,
                    group.key,
                    dups.len() as i64,
                    latest,
                    same.then_some(first.body_hash.as_str()),
                ))
            })
            .collect()
    }

    fn all_groups(&self) -> Vec<usize> {
        (0..self.groups.len()).collect()
    }

    /// Inserted groups with copies after the first.
    fn with_copies(&self, inserted: &Inserted) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&g| self.groups[g].members.len() > 1 && inserted.contains_key(&self.key_of(g)))
            .collect()
    }
}

/// `(source, dedup_key, copies, latest arrival, shared body hash)`
type Count<'a> = (&'a str, &'a str, i64, i64, Option<&'a str>);

type Inserted = HashMap<(String, String), i64>;
type Duplicated = HashMap<(String, String), (i64, String)>;

/// `(id, source, dedup_key, status, body_hash)` of a row holding a key.
type Holder = (i64, String, String, String, String);

/// `(event_id, copies, last_at, differs)` for each counted key a row holds.
fn copies_of<'a>(
    counts: &'a [Count<'a>],
    held: &'a [Holder],
) -> impl Iterator<Item = (i64, i64, i64, bool)> + 'a {
    let by_key: HashMap<(&str, &str), &Holder> = held
        .iter()
        .map(|h| ((h.1.as_str(), h.2.as_str()), h))
        .collect();
    counts.iter().filter_map(move |(s, k, n, at, hash)| {
        let (id, .., body_hash) = by_key.get(&(*s, *k))?;
        // No shared hash means the copies differ among themselves, so some
        // differ from the original too.
        let differs = hash.map_or(true, |h| h != body_hash);
        Some((*id, *n, *at, differs))
    })
}

fn holders(held: Vec<Holder>) -> Duplicated {
    held.into_iter()
        .map(|(id, s, k, status, _)| ((s, k), (id, status)))
        .collect()
}

const POSTGRES_INSERT: &str = "\
INSERT INTO events (source, dedup_key, strategy, status, provider_event_id, action, \
    object_type, object_id, event_time, payload, body_hash, received_at, next_attempt_at) \
SELECT u.source, u.dedup_key, u.strategy, 'pending', u.provider_event_id, u.action, \
    u.object_type, u.object_id, u.event_time, u.payload, u.body_hash, u.received_at, u.received_at \
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
    $8::bigint[], $9::text[], $10::text[], $11::bigint[]) WITH ORDINALITY \
    AS u(source, dedup_key, strategy, provider_event_id, action, object_type, object_id, \
         event_time, payload, body_hash, received_at, ord) \
ORDER BY u.ord \
ON CONFLICT DO NOTHING RETURNING id, source, dedup_key";

const POSTGRES_HELD: &str = "\
SELECT e.id, e.source, e.dedup_key, e.status, e.body_hash \
FROM UNNEST($1::text[], $2::text[]) AS d(source, dedup_key) \
JOIN events AS e ON e.source = d.source AND e.dedup_key = d.dedup_key AND e.strategy <> 'coalesce'";

const POSTGRES_RECORD_DUPLICATES: &str = "\
INSERT INTO duplicate_deliveries (event_id, copies, last_at, differs) \
SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bool[])";

pub(super) async fn record_postgres(
    conn: &mut PgConnection,
    batch: &Batch<'_>,
    outcomes: &mut [Option<RecordOutcome>],
) -> Result<Leftover, sqlx::Error> {
    let held = postgres_duplicates(conn, &batch.counts(&batch.all_groups(), 0)).await?;
    let unheld = batch.unheld(&held);
    let mut inserted = Inserted::new();
    if !unheld.is_empty() {
        let c: Vec<&NewEvent> = batch.candidates(&unheld).collect();
        let col = |f: fn(&NewEvent) -> String| c.iter().map(|e| f(e)).collect::<Vec<String>>();
        let opt = |f: fn(&NewEvent) -> Option<String>| {
            c.iter().map(|e| f(e)).collect::<Vec<Option<String>>>()
        };
        let num = |f: fn(&NewEvent) -> i64| c.iter().map(|e| f(e)).collect::<Vec<i64>>();
        let returned: Vec<(i64, String, String)> = sqlx::query_as(POSTGRES_INSERT)
            .bind(col(|e| e.source.clone()))
            .bind(col(|e| e.dedup_key.clone()))
            .bind(col(|e| e.strategy.as_str().to_string()))
            .bind(opt(|e| e.provider_event_id.clone()))
            .bind(opt(|e| e.action.clone()))
            .bind(opt(|e| e.object_type.clone()))
            .bind(opt(|e| e.object_id.clone()))
            .bind(num(|e| e.event_time_ms))
            .bind(col(|e| e.payload.clone()))
            .bind(col(|e| e.body_hash.clone()))
            .bind(num(|e| e.received_at_ms))
            .fetch_all(&mut *conn)
            .await?;
        inserted = returned
            .into_iter()
            .map(|(id, s, k)| ((s, k), id))
            .collect();
    }
    let recounted =
        postgres_duplicates(conn, &batch.counts(&batch.with_copies(&inserted), 1)).await?;
    Ok(batch.settle(&held, &inserted, &recounted, outcomes))
}

/// Finds the rows holding the counted keys and records the copies against
/// them; returns the holders (keys no row holds are left out). The holders are read without a lock: recording a
/// copy changes no ledger row, and a row pruned meanwhile was finished.
async fn postgres_duplicates(
    conn: &mut PgConnection,
    counts: &[Count<'_>],
) -> Result<Duplicated, sqlx::Error> {
    if counts.is_empty() {
        return Ok(Duplicated::new());
    }
    let held: Vec<Holder> = sqlx::query_as(POSTGRES_HELD)
        .bind(counts.iter().map(|c| c.0).collect::<Vec<&str>>())
        .bind(counts.iter().map(|c| c.1).collect::<Vec<&str>>())
        .fetch_all(&mut *conn)
        .await?;
    let copies: Vec<(i64, i64, i64, bool)> = copies_of(counts, &held).collect();
    if !copies.is_empty() {
        sqlx::query(POSTGRES_RECORD_DUPLICATES)
            .bind(copies.iter().map(|c| c.0).collect::<Vec<i64>>())
            .bind(copies.iter().map(|c| c.1).collect::<Vec<i64>>())
            .bind(copies.iter().map(|c| c.2).collect::<Vec<i64>>())
            .bind(copies.iter().map(|c| c.3).collect::<Vec<bool>>())
            .execute(&mut *conn)
            .await?;
    }
    Ok(holders(held))
}
