//! Completeness of the change feed under concurrency (SPEC §8, issue 13
//! item 5): two processes of the real binary, several ledger writers each
//! (PostgreSQL), webhooks flowing to both and completing concurrently,
//! while a reader follows `next_cursor` as fast as it can. At the end the
//! reader has every completed event exactly once: none skipped (on
//! PostgreSQL identity values become visible out of commit order, which a
//! reader asking only for `id > cursor` would pass over), none twice.
//!
//! Waiting is on conditions with a deadline: real processes run on the
//! real clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::backend_tests;
use crate::feed::{feed_toml, FEED_TOKEN};
use crate::helpers::*;

backend_tests!(a_reader_following_next_cursor_sees_every_item_of_two_busy_processes_once);

/// Events posted, spread over both processes.
const EVENTS: usize = 2_000;
/// Webhook requests in flight at once.
const SENDERS: usize = 16;

struct Pair {
    _db: TestDb,
    config: hookledger::config::Config,
    config_path: std::path::PathBuf,
    store: hookledger::store::Store,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Pair {
    async fn new(backend: Backend) -> Pair {
        let db = TestDb::new(backend).await;
        let text = test_config_text(&db.url, "http://127.0.0.1:9", &TestOptions::default())
            .replace("workers = 4\n", "workers = 16\nbatch_writers = 4\n")
            .replace(
                "lease_secs = 30\n",
                "lease_secs = 30\npoll_interval_ms = 20\n",
            )
            + &feed_toml(None);
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("hookledger.toml");
        std::fs::write(&config_path, &text).unwrap();
        let no_env: BTreeMap<String, String> = BTreeMap::new();
        let config = hookledger::config::load_str(&text, &no_env).expect("valid config");
        let store = hookledger::store::Store::open(&db.url).await.unwrap();
        Pair {
            _db: db,
            config,
            config_path,
            store,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            _dir: dir,
        }
    }

    async fn start(&self) -> Binary {
        let process = Binary::start(&self.config_path, &[], None);
        process.wait_ready(&self.client).await;
        process
    }
}

/// Posts a signed Stripe event for its own invoice; the ledger id.
async fn post(
    client: &reqwest::Client,
    source: &hookledger::sources::Source,
    address: &str,
    n: usize,
) -> i64 {
    let now = chrono::Utc::now().timestamp();
    let body = stripe_event(
        &format!("evt_{n}"),
        "invoice.paid",
        now,
        json!({"id": format!("in_{n}"), "object": "invoice"}),
    );
    let bytes = serde_json::to_vec(&body).unwrap();
    let mut headers: Vec<(String, String)> =
        vec![("Content-Type".into(), "application/json".into())];
    headers.extend(source.sign(&headers, &bytes, now));
    let mut request = client
        .post(format!("{address}/webhooks/stripe"))
        .body(bytes);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let answer = read(request.send().await.expect("delivering a webhook")).await;
    assert_eq!(answer.status, 202, "evt_{n}: {:?}", answer.body);
    answer.id()
}

/// One page after `cursor` from `address`: the ledger ids and next cursor.
async fn page(client: &reqwest::Client, address: &str, cursor: &str) -> (Vec<i64>, String) {
    let answer = read(
        client
            .get(format!("{address}/feed?after={cursor}&limit=500"))
            .bearer_auth(FEED_TOKEN)
            .send()
            .await
            .expect("reading the feed"),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let ids = answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i: &Value| i["data"]["ledger_id"].as_i64().unwrap())
        .collect();
    (
        ids,
        answer.body["next_cursor"].as_str().unwrap().to_string(),
    )
}

async fn a_reader_following_next_cursor_sees_every_item_of_two_busy_processes_once(
    backend: Backend,
) {
    let pair = Pair::new(backend).await;
    let first = pair.start().await;
    let second = pair.start().await;
    let addresses = [first.address.clone(), second.address.clone()];

    // The reader: as fast as it can, alternating between the processes,
    // from the start of the (empty) feed.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let client = pair.client.clone();
        let addresses = addresses.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (_, mut cursor) = page(&client, &addresses[0], "now").await;
            let mut seen = Vec::new();
            let mut reads = 0_usize;
            let mut stopped_at: Option<std::time::Instant> = None;
            loop {
                let stopping = stop.load(Ordering::SeqCst);
                let (ids, next) = page(&client, &addresses[reads % 2], &cursor).await;
                reads += 1;
                let empty = ids.is_empty();
                seen.extend(ids);
                cursor = next;
                // Told to stop (everything is done by then): read on
                // until every event has been seen and a page read after
                // that comes back empty, or until the deadline. An empty
                // page alone does not mean caught up on PostgreSQL: the
                // feed serves nothing past the oldest transaction still
                // running on the server — another test's, in another
                // database — so it may be empty for a while with items to
                // come. A skipped item never comes: the deadline ends
                // the read, and the checks below name what is missing.
                if stopping {
                    let started = *stopped_at.get_or_insert_with(std::time::Instant::now);
                    let all = seen.iter().collect::<BTreeSet<_>>().len() >= EVENTS;
                    if (all && empty) || started.elapsed() > DEADLINE / 2 {
                        return (seen, reads);
                    }
                }
            }
        })
    };

    let source = hookledger::sources::Source::new(pair.config.sources["stripe"].clone());
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..SENDERS {
        let client = pair.client.clone();
        let source = source.clone();
        let addresses = addresses.clone();
        senders.spawn(async move {
            let mut ids = Vec::new();
            for n in (s..EVENTS).step_by(SENDERS) {
                ids.push(post(&client, &source, &addresses[n % 2], n).await);
            }
            ids
        });
    }
    let mut accepted = BTreeSet::new();
    while let Some(ids) = senders.join_next().await {
        accepted.extend(ids.unwrap());
    }
    assert_eq!(accepted.len(), EVENTS);
    wait_until("every event is done", || async {
        pair.store.stats().await.unwrap().by_status["done"] == EVENTS as i64
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (seen, reads) = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("the reader caught up")
        .unwrap();

    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    let missing: Vec<&i64> = accepted.difference(&unique).take(10).collect();
    eprintln!(
        "feed reader ({backend:?}): {} items in {reads} reads, {} distinct, {} of {} completed \
         events missing (first: {missing:?})",
        seen.len(),
        unique.len(),
        accepted.difference(&unique).count(),
        accepted.len()
    );
    assert_eq!(unique.len(), seen.len(), "no item was served twice");
    assert!(missing.is_empty(), "no item was skipped");
    assert_eq!(unique, accepted, "every completed event, nothing else");
    assert!(reads > 2, "the reader read while events completed");
}
