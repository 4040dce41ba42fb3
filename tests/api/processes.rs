//! Real processes: the built `hookledger` binary, started and SIGKILLed by
//! the test. These are the claims that only hold across process boundaries —
//! a crash loses no accepted event, two processes on one database accept a
//! burst of copies once, fetch once, keep per-object order, and take over a
//! dead peer's events when its leases expire.
//!
//! Waiting here is on conditions (a status reached, a count seen) with a
//! deadline, never a fixed sleep: real processes run on the real clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    a_killed_process_loses_no_accepted_event,
    two_processes_accept_a_burst_of_copies_once_and_fetch_once,
    two_processes_keep_one_fetch_per_object_in_flight_and_arrival_order,
    a_surviving_process_finishes_a_killed_peers_events_after_their_leases,
);

/// How long a fetch takes upstream in these tests.
const UPSTREAM_DELAY_MS: u64 = 250;
/// Leases are short so a dead process's events come back quickly.
const LEASE_SECS: u64 = 2;

/// A source whose fetch URL names the object and the event, so the upstream
/// can tell which object each fetch is for.
const THINGS_SOURCE: &str = r#"
[sources.things]
preset = "generic"
verify = "off"
event_id = { header = "X-Request-Id" }
object_type = { value = "thing" }
object_id = { pointer = "/thing/id" }
fetch.url = "{upstream}/things/{object_id}?event={event_id}"
fetch.timeout_secs = 10
"#;

/// One fetch as the upstream saw it.
#[derive(Debug, Clone)]
struct Fetch {
    object: String,
    event: String,
    started: Instant,
}

/// Records every fetch and answers after a delay.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Fetch>>>);

impl Respond for Recorder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let object = request
            .url
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let event = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "event")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        self.0.lock().unwrap().push(Fetch {
            object: object.clone(),
            event: event.clone(),
            started: Instant::now(),
        });
        ResponseTemplate::new(200)
            .set_body_json(json!({ "id": object, "fetched_for": event }))
            .set_delay(Duration::from_millis(UPSTREAM_DELAY_MS))
    }
}

impl Recorder {
    fn fetches(&self) -> Vec<Fetch> {
        self.0.lock().unwrap().clone()
    }
}

/// Database, upstream and config file shared by the processes of one test.
struct Cluster {
    // Kept alive for the test's length: dropping them drops the database
    // and stops the upstream.
    _db: TestDb,
    _upstream: MockServer,
    recorder: Recorder,
    config_path: std::path::PathBuf,
    config: hookledger::config::Config,
    store: hookledger::store::Store,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn new(backend: Backend, workers: usize) -> Cluster {
        let db = TestDb::new(backend).await;
        let upstream = MockServer::start().await;
        let recorder = Recorder::default();
        Mock::given(method("GET"))
            .and(path_regex("^/(things|v1/events)/"))
            .respond_with(recorder.clone())
            .mount(&upstream)
            .await;
        let options = TestOptions {
            server_toml: format!("workers = {workers}"),
            processing_toml: format!("lease_secs = {LEASE_SECS}\npoll_interval_ms = 50"),
            extra_toml: THINGS_SOURCE.replace("{upstream}", &upstream.uri()),
            ..Default::default()
        };
        // `workers` and `lease_secs` are set by the defaults too; the test's
        // values come later in their tables and TOML refuses duplicates, so
        // build the text with the defaults replaced.
        let text = test_config_text(&db.url, &upstream.uri(), &TestOptions::default())
            .replace("workers = 4\n", &format!("{}\n", options.server_toml))
            .replace(
                "lease_secs = 30\n",
                &format!("{}\n", options.processing_toml),
            )
            + &options.extra_toml;
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("hookledger.toml");
        std::fs::write(&config_path, &text).unwrap();
        let no_env: BTreeMap<String, String> = BTreeMap::new();
        let config = hookledger::config::load_str(&text, &no_env).expect("valid config");
        let store = hookledger::store::Store::open(&db.url).await.unwrap();
        Cluster {
            _db: db,
            _upstream: upstream,
            recorder,
            config_path,
            config,
            store,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn start(&self) -> Binary {
        let process = Binary::start(&self.config_path, &[], None);
        process.wait_ready(&self.client).await;
        process
    }

    /// Posts a signed delivery to one process (real clock for the signature).
    async fn deliver(
        &self,
        process: &Binary,
        source: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let bytes = serde_json::to_vec(body).unwrap();
        let source_def = hookledger::sources::Source::new(self.config.sources[source].clone());
        let mut all: Vec<(String, String)> =
            vec![("Content-Type".into(), "application/json".into())];
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        for (name, value) in source_def.sign(&all, &bytes, chrono::Utc::now().timestamp()) {
            all.push((name, value));
        }
        let mut request = self
            .client
            .post(format!("{}/webhooks/{source}", process.address))
            .body(bytes);
        for (k, v) in &all {
            request = request.header(k.as_str(), v.as_str());
        }
        read(request.send().await.expect("delivering")).await
    }

    async fn count(&self, status: &str) -> i64 {
        self.store.stats().await.unwrap().by_status[status]
    }

    async fn wait_all_done(&self, total: i64) {
        wait_until("every event is done", || async {
            self.count("done").await == total
        })
        .await;
    }
}

fn thing(id: &str, n: usize) -> Value {
    json!({ "thing": { "id": id, "n": n } })
}

async fn a_killed_process_loses_no_accepted_event(backend: Backend) {
    let cluster = Cluster::new(backend, 4).await;
    let mut first = cluster.start().await;
    let mut accepted = Vec::new();
    for i in 0..12 {
        let rid = format!("crash-{i}");
        let answer = cluster
            .deliver(
                &first,
                "things",
                &[("X-Request-Id", &rid)],
                &thing(&format!("t{i}"), i),
            )
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        accepted.push(answer.id());
    }
    // Kill it while it is in the middle of fetching.
    wait_until("some events are processing", || async {
        cluster.count("processing").await > 0
    })
    .await;
    first.kill();
    let done_before = cluster.count("done").await;
    assert!(
        done_before < 12,
        "the kill happened mid-processing ({done_before} done)"
    );

    // A new process on the same database finishes every accepted event.
    let second = cluster.start().await;
    cluster.wait_all_done(12).await;
    for (i, id) in accepted.iter().enumerate() {
        let object = cluster
            .store
            .domain_object("things", "thing", &format!("t{i}"))
            .await
            .unwrap();
        let object = object.unwrap_or_else(|| panic!("domain row for t{i}"));
        assert_eq!(object.last_event_id, *id);
        let data: Value = serde_json::from_str(&object.data).unwrap();
        assert_eq!(data["fetched_for"], format!("crash-{i}"));
    }
    // Done once: the second process completed exactly the events the first had not.
    let metrics = read(
        cluster
            .client
            .get(format!("{}/metrics", second.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text = metrics.body.as_str().unwrap().to_string();
    let finished_by_second = text
        .lines()
        .find(|l| {
            l.starts_with("hookledger_events_processed_total{source=\"things\",result=\"done\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(0);
    assert_eq!(done_before + finished_by_second, 12, "{text}");
    assert_eq!(cluster.store.stats().await.unwrap().total, 12);
}

async fn two_processes_accept_a_burst_of_copies_once_and_fetch_once(backend: Backend) {
    let cluster = Cluster::new(backend, 4).await;
    let a = cluster.start().await;
    let b = cluster.start().await;
    let body = thing("burst", 0);
    let sends = (0..200).map(|i| {
        let target = if i % 2 == 0 { &a } else { &b };
        cluster.deliver(target, "things", &[("X-Request-Id", "burst-1")], &body)
    });
    let answers = futures_util::future::join_all(sends).await;
    let accepted = answers.iter().filter(|x| x.status == 202).count();
    let duplicates = answers.iter().filter(|x| x.status == 200).count();
    assert_eq!((accepted, duplicates), (1, 199));
    let id = answers[0].id();
    assert!(answers.iter().all(|x| x.id() == id));
    cluster.wait_all_done(1).await;
    let fetches = cluster.recorder.fetches();
    assert_eq!(
        fetches.len(),
        1,
        "one upstream fetch for 200 copies: {fetches:?}"
    );
}

async fn two_processes_keep_one_fetch_per_object_in_flight_and_arrival_order(backend: Backend) {
    let cluster = Cluster::new(backend, 8).await;
    let a = cluster.start().await;
    let b = cluster.start().await;
    // 50 events for 5 objects, alternating between the processes.
    let mut arrival: HashMap<String, Vec<String>> = HashMap::new();
    for n in 0..50 {
        let object = format!("obj{}", n % 5);
        let rid = format!("ord-{n}");
        let target = if n % 2 == 0 { &a } else { &b };
        let answer = cluster
            .deliver(
                target,
                "things",
                &[("X-Request-Id", &rid)],
                &thing(&object, n),
            )
            .await;
        assert_eq!(answer.status, 202);
        arrival.entry(object).or_default().push(rid);
    }
    cluster.wait_all_done(50).await;
    let fetches = cluster.recorder.fetches();
    assert_eq!(fetches.len(), 50, "one fetch per event");
    for (object, expected) in &arrival {
        let mut mine: Vec<&Fetch> = fetches.iter().filter(|f| &f.object == object).collect();
        mine.sort_by_key(|f| f.started);
        let order: Vec<String> = mine.iter().map(|f| f.event.clone()).collect();
        assert_eq!(&order, expected, "{object}: fetched in arrival order");
        // Each fetch takes UPSTREAM_DELAY_MS; two starting closer than that overlapped.
        for pair in mine.windows(2) {
            let gap = pair[1].started.duration_since(pair[0].started);
            assert!(
                gap >= Duration::from_millis(UPSTREAM_DELAY_MS),
                "{object}: two fetches in flight at once ({gap:?} apart)"
            );
        }
        let row = cluster
            .store
            .domain_object("things", "thing", object)
            .await
            .unwrap()
            .unwrap();
        let data: Value = serde_json::from_str(&row.data).unwrap();
        assert_eq!(
            data["fetched_for"],
            expected.last().unwrap().as_str(),
            "{object}: the last event wrote last"
        );
    }
    // Different objects did run in parallel.
    let mut starts: Vec<Instant> = fetches.iter().map(|f| f.started).collect();
    starts.sort();
    let overlapping = starts
        .windows(2)
        .any(|w| w[1].duration_since(w[0]) < Duration::from_millis(UPSTREAM_DELAY_MS));
    assert!(overlapping, "objects are processed in parallel");
}

async fn a_surviving_process_finishes_a_killed_peers_events_after_their_leases(backend: Backend) {
    let cluster = Cluster::new(backend, 4).await;
    let mut doomed = cluster.start().await;
    for i in 0..8 {
        let rid = format!("peer-{i}");
        let answer = cluster
            .deliver(
                &doomed,
                "things",
                &[("X-Request-Id", &rid)],
                &thing(&format!("p{i}"), i),
            )
            .await;
        assert_eq!(answer.status, 202);
    }
    wait_until("the doomed process holds leases", || async {
        cluster.count("processing").await > 0
    })
    .await;
    doomed.kill();
    let held = cluster.count("processing").await;
    assert!(held > 0);
    let survivor = cluster.start().await;
    cluster.wait_all_done(8).await;
    for i in 0..8 {
        assert!(cluster
            .store
            .domain_object("things", "thing", &format!("p{i}"))
            .await
            .unwrap()
            .is_some());
    }
    drop(survivor);
}
