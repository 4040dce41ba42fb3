//! Gap-fill from GitHub's webhook deliveries (SPEC §10), against a mock of
//! `GET /<hook>/deliveries` that pages through its `Link` header's
//! `cursor`, and of `POST …/deliveries/{id}/attempts` (answers from
//! GitHub's documented examples, see `gapfill_mocks.rs`). GitHub's list
//! has no bodies: a missing delivery is asked for again, once, and arrives
//! signed through the ingest path.

use serde_json::{json, Value};
use wiremock::matchers::path_regex;
use wiremock::Mock;

use crate::backend_tests;
use crate::gapfill_mocks::*;
use crate::helpers::*;
use hookledger::reconcile::{PassOptions, ReconcileError, Summary};

backend_tests!(
    missing_deliveries_are_asked_for_once_and_arrive_as_first_seen_webhooks,
    an_ignored_action_and_an_unsettled_delivery_are_not_asked_for,
    a_next_link_to_another_origin_is_not_followed,
    a_bad_token_is_reported_and_asks_for_nothing,
);

pub(crate) const GITHUB_GAP: &str = r#"
[sources.github_gap]
preset = "github"
secret = "test-github-gap"
actions = { "issues.closed" = "ignore" }

[sources.github_gap.reconcile]
token = "ghp_test_gapfill"
hook = "repos/octo-org/octo-repo/hooks/12345678"
base_url = "{upstream}"
settle_secs = 300
"#;

/// Deliveries per page of the mock (GitHub's own is up to 100).
const PAGE: usize = 20;

pub(crate) struct Gap {
    pub app: TestApp,
    pub github: GithubDeliveries,
    pub pause: ClockPause,
}

pub(crate) async fn gap(backend: Backend, toml: &str) -> Gap {
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: toml.to_string(),
            ..Default::default()
        },
    )
    .await;
    let github = GithubDeliveries::new(&app.upstream.uri(), PAGE);
    Mock::given(path_regex(
        "^/repos/octo-org/octo-repo/hooks/12345678/deliveries",
    ))
    .respond_with(github.clone())
    .mount(&app.upstream)
    .await;
    let pause = ClockPause::new(&app.clock);
    Gap { app, github, pause }
}

pub(crate) fn guid(n: i64) -> String {
    format!("58474f00-b361-11eb-836d-{n:012}")
}

impl Gap {
    pub(crate) async fn pass(&self) -> Result<Option<Summary>, ReconcileError> {
        self.app
            .reconciler("github_gap", &self.pause)
            .run_once(PassOptions::default())
            .await
    }

    pub(crate) async fn pass_ok(&self) -> Summary {
        self.pass()
            .await
            .expect("the pass succeeds")
            .expect("the lease was free")
    }

    /// A pass reading back `secs` (as `hookledger reconcile --since`).
    pub(crate) async fn pass_since(&self, secs: u64) -> Summary {
        let options = PassOptions {
            since_secs: Some(secs),
            ..PassOptions::default()
        };
        self.app
            .reconciler("github_gap", &self.pause)
            .run_once(options)
            .await
            .expect("the pass succeeds")
            .expect("the lease was free")
    }

    /// Deliveries 1..=n, an hour ago, ten seconds apart.
    pub(crate) fn deliveries(&self, n: i64) -> Vec<Value> {
        let start = self.app.clock.now_ms() - 3_600_000;
        (1..=n)
            .map(|i| listed_delivery(i, &guid(i), start + i * 10_000))
            .collect()
    }

    /// The webhook of delivery `n` (as GitHub sends it, or redelivers it).
    pub(crate) async fn webhook(&self, n: i64, action: &str) -> Answer {
        let body = json!({ "action": action, "issue": { "id": 9000 + n, "number": n } });
        let guid = guid(n);
        self.app
            .deliver(
                "github_gap",
                &[("X-GitHub-Delivery", &guid), ("X-GitHub-Event", "issues")],
                &body,
            )
            .await
    }
}

async fn missing_deliveries_are_asked_for_once_and_arrive_as_first_seen_webhooks(backend: Backend) {
    let g = gap(backend, GITHUB_GAP).await;
    let lost = [5, 26, 44];
    for n in 1..=50 {
        if !lost.contains(&n) {
            assert_eq!(g.webhook(n, "opened").await.status, 202);
        }
    }
    g.github.add(g.deliveries(50));

    let summary = g.pass_ok().await;
    assert_eq!(
        summary.to_string(),
        "github_gap: 50 listed, 3 missing, 3 requested"
    );
    let mut asked = g.github.redelivered();
    asked.sort();
    assert_eq!(asked, lost.to_vec(), "exactly the three lost deliveries");
    let gets: Vec<Seen> = g
        .github
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert_eq!(gets.len(), 3, "three pages, following the Link header");
    assert_eq!(gets[0].param("per_page"), Some("100"));
    assert!(gets[1].param("cursor").is_some());
    assert!(gets
        .iter()
        .all(|s| s.header("authorization") == Some("Bearer ghp_test_gapfill")));
    let metrics = g.app.get("/metrics").await.body;
    assert!(metrics.as_str().unwrap().contains(
        "hookledger_reconciled_total{source=\"github_gap\",result=\"redelivery_requested\"} 3"
    ));

    // Not asked for twice, though the redeliveries have not arrived yet
    // (this pass reads the whole list again, not only past the cursor).
    let again = g.pass_since(7_200).await;
    assert_eq!((again.missing, again.filled), (3, 0));
    assert_eq!(g.github.redelivered().len(), 3);

    // GitHub redelivers, signed, with the same guid: first seen, by webhook.
    for n in lost {
        let answer = g.webhook(n, "opened").await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        assert_eq!(answer.body["dedup_key"], format!("id:{}", guid(n)));
        assert_eq!(event(&g.app, answer.id()).await["origin"], "webhook");
    }
    let settled = g.pass_since(7_200).await;
    assert_eq!(
        (settled.listed, settled.missing, settled.filled),
        (50, 0, 0)
    );
}

async fn an_ignored_action_and_an_unsettled_delivery_are_not_asked_for(backend: Backend) {
    let g = gap(backend, GITHUB_GAP).await;
    let mut closed = listed_delivery(1, &guid(1), g.app.clock.now_ms() - 3_600_000);
    closed["action"] = json!("closed");
    // Delivered a minute ago: its webhook may be on the way.
    let young = listed_delivery(2, &guid(2), g.app.clock.now_ms() - 60_000);
    g.github.add([closed, young]);
    let summary = g.pass_ok().await;
    assert_eq!((summary.listed, summary.missing, summary.filled), (2, 0, 0));
    assert!(g.github.redelivered().is_empty());
    // Once settled, the young one is asked for.
    g.app.clock.advance_ms(600_000);
    assert_eq!(g.pass_ok().await.filled, 1);
    assert_eq!(g.github.redelivered(), vec![2]);
}

async fn a_next_link_to_another_origin_is_not_followed(backend: Backend) {
    let g = gap(backend, GITHUB_GAP).await;
    g.github.add(g.deliveries(30));
    g.github.link_to("http://127.0.0.1:9");
    let failed = g.pass().await;
    assert!(
        matches!(failed, Err(ReconcileError::Unreadable(_))),
        "{failed:?}"
    );
    let gets = g.github.seen().iter().filter(|s| s.method == "GET").count();
    assert_eq!(gets, 1);
    assert_eq!(
        g.app.store.reconcile_cursor("github_gap").await.unwrap(),
        None
    );
}

async fn a_bad_token_is_reported_and_asks_for_nothing(backend: Backend) {
    let g = gap(
        backend,
        &GITHUB_GAP.replace("ghp_test_gapfill", "ghp_revoked"),
    )
    .await;
    g.github.add(g.deliveries(3));
    let refused = g.pass().await;
    assert!(
        matches!(refused, Err(ReconcileError::Refused(401))),
        "{refused:?}"
    );
    assert!(g.github.redelivered().is_empty());
    assert_eq!(
        g.app.store.reconcile_cursor("github_gap").await.unwrap(),
        None
    );
}
