//! Gap-fill with the real binary (SPEC §10): two `hookledger serve`
//! processes on one database make one set of provider calls per interval
//! between them (the lease row and the shared schedule), and
//! `hookledger reconcile` prints its summary and exit status. Real
//! processes run on the real clock: the tests wait on conditions with a
//! deadline, never a fixed sleep.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::backend_tests;
use crate::gapfill_mocks::*;
use crate::helpers::*;

backend_tests!(
    two_servers_make_one_set_of_calls_per_interval_and_record_once,
    the_reconcile_command_prints_its_summary_and_fails_on_a_bad_key,
);

/// One call per pass: interval 1 s, every event settled at once.
const STRIPE_GAP: &str = r#"
[sources.stripe_gap]
preset = "stripe"
secret = "whsec_test_gap"

[sources.stripe_gap.reconcile]
api_key = "rk_test_gapfill"
base_url = "{upstream}"
interval_secs = 1
settle_secs = 0
"#;

struct Setup {
    db: TestDb,
    upstream: MockServer,
    stripe: StripeEvents,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(backend: Backend) -> Setup {
        let db = TestDb::new(backend).await;
        let upstream = MockServer::start().await;
        let stripe = StripeEvents::new(100, Faults::default());
        Mock::given(method("GET"))
            .and(path("/v1/events"))
            .respond_with(stripe.clone())
            .mount(&upstream)
            .await;
        let now = chrono::Utc::now().timestamp();
        stripe.add((0..3).map(|i| listed_event(i, now - 3_600 + i as i64)));
        Setup {
            db,
            upstream,
            stripe,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A config file for this database and mock, with `toml` as the source.
    fn config(&self, name: &str, toml: &str) -> std::path::PathBuf {
        let options = TestOptions {
            extra_toml: toml.to_string(),
            ..Default::default()
        };
        let text = test_config_text(&self.db.url, &self.upstream.uri(), &options);
        let no_env: BTreeMap<String, String> = BTreeMap::new();
        hookledger::config::load_str(&text, &no_env).expect("a valid config");
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    async fn ledger_total(&self) -> i64 {
        let store = hookledger::store::Store::open(&self.db.url).await.unwrap();
        let total = store.stats().await.unwrap().total;
        store.close().await;
        total
    }
}

async fn two_servers_make_one_set_of_calls_per_interval_and_record_once(backend: Backend) {
    let setup = Setup::new(backend).await;
    let config = setup.config("hookledger.toml", STRIPE_GAP);
    let client = reqwest::Client::new();
    // One after the other: the first creates and migrates the database.
    let first = Binary::start(&config, &[], None);
    first.wait_ready(&client).await;
    let second = Binary::start(&config, &[], None);
    second.wait_ready(&client).await;
    wait_until("five passes have called Stripe", || async {
        setup.stripe.seen().len() >= 5
    })
    .await;
    drop(first);
    drop(second);
    let calls: Vec<_> = setup.stripe.seen().iter().map(|s| s.at).collect();
    // Each pass is one call (one page); a pass starts only once the
    // previous one (of either process) has finished and an interval has
    // passed, so calls are at least an interval apart. Without the lease
    // and the shared schedule, two processes would call twice per interval.
    for pair in calls.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= Duration::from_millis(990),
            "two calls {gap:?} apart: {calls:?}"
        );
    }
    assert_eq!(setup.ledger_total().await, 3, "each event recorded once");
}

async fn the_reconcile_command_prints_its_summary_and_fails_on_a_bad_key(backend: Backend) {
    let setup = Setup::new(backend).await;
    let config = setup.config("hookledger.toml", STRIPE_GAP);
    let run = |config: &std::path::Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hookledger"))
            .arg("--config")
            .arg(config)
            .arg("reconcile")
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("HOOKLEDGER_ADMIN_TOKEN")
            .env_remove("HOOKLEDGER_CONFIG")
            .output()
            .unwrap()
    };
    let dry = run(&config, &["--source", "stripe_gap", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "stripe_gap: 3 listed, 3 missing, 0 recorded (dry run)"
    );
    assert_eq!(setup.ledger_total().await, 0, "a dry run records nothing");

    let real = run(&config, &["--since", "2h"]);
    let stdout = String::from_utf8_lossy(&real.stdout);
    assert!(real.status.success(), "{stdout}");
    assert_eq!(stdout.trim(), "stripe_gap: 3 listed, 3 missing, 3 recorded");
    // One warning per event that only gap-fill found (SPEC §10), naming it.
    let stderr = String::from_utf8_lossy(&real.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("gap-fill recorded an event that never arrived by webhook"))
        .collect();
    assert_eq!(warnings.len(), 3, "{stderr}");
    assert!(warnings.iter().all(|l| l.contains("WARN")), "{stderr}");
    let gte = setup
        .stripe
        .seen()
        .last()
        .unwrap()
        .param("created[gte]")
        .unwrap()
        .to_string();
    let since = chrono::Utc::now().timestamp() - gte.parse::<i64>().unwrap();
    assert!(
        (7_200..7_260).contains(&since),
        "--since 2h read from {since} s ago"
    );
    assert_eq!(setup.ledger_total().await, 3);

    let revoked = setup.config(
        "revoked.toml",
        &STRIPE_GAP.replace("rk_test_gapfill", "rk_test_revoked"),
    );
    let refused = run(&revoked, &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("stripe_gap: failed") && stderr.contains("401"),
        "{stderr}"
    );
    assert!(!stderr.contains("rk_test_revoked"), "{stderr}");

    let not_reconciled = run(&config, &["--source", "stripe"]);
    assert!(!not_reconciled.status.success());
}
