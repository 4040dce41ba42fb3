//! What the real binary writes to its log (issue 11, item 9): bad-signature
//! warnings are rate-limited per source, and a database that cannot be
//! opened is reported with its cause once (a refused PostgreSQL connection
//! as refused, not as a pool time-out).

use std::path::Path;
use std::time::{Duration, Instant};

use hookledger::telemetry::SIGNATURE_WARNING_INTERVAL;

use crate::helpers::*;

/// Lines of `log` that warn about a rejected webhook of `source`.
fn rejection_lines(log: &str, source: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("webhook rejected") && l.contains(&format!("source=\"{source}\"")))
        .map(str::to_string)
        .collect()
}

async fn badly_signed(client: &reqwest::Client, address: &str, source: &str) -> u16 {
    let header = match source {
        "stripe" => ("Stripe-Signature", "t=1,v1=00".to_string()),
        _ => ("X-Hub-Signature-256", "sha256=00".to_string()),
    };
    client
        .post(format!("{address}/webhooks/{source}"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Delivery", "d-1")
        .header("X-GitHub-Event", "push")
        .header(header.0, header.1)
        .body(r#"{"id":"evt_forged","type":"invoice.paid"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Thirty forged Stripe deliveries and three GitHub ones in a burst: one
/// warning per source. After the interval, the next one is logged with the
/// count of those that were not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_bad_signature_warnings_are_rate_limited_per_source() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hookledger.toml");
    let options = TestOptions::default();
    std::fs::write(
        &config_path,
        test_config_text(&db.url, "http://127.0.0.1:1", &options),
    )
    .unwrap();
    let log_path = dir.path().join("hookledger.log");
    let process = Binary::start(&config_path, &[], Some(&log_path));
    let client = reqwest::Client::new();
    process.wait_ready(&client).await;

    // The binary admits the first warning before it answers the first 401,
    // so its interval began before `first_answered`.
    assert_eq!(badly_signed(&client, &process.address, "stripe").await, 401);
    let first_answered = Instant::now();
    for _ in 1..30 {
        assert_eq!(badly_signed(&client, &process.address, "stripe").await, 401);
    }
    for _ in 0..3 {
        assert_eq!(badly_signed(&client, &process.address, "github").await, 401);
    }
    // Each line is written before its 401 is sent.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let stripe = rejection_lines(&log, "stripe");
    assert_eq!(
        stripe.len(),
        1,
        "{} warnings for 30 bad Stripe signatures:\n{}",
        stripe.len(),
        stripe.join("\n")
    );
    assert_eq!(rejection_lines(&log, "github").len(), 1, "{log}");
    assert!(stripe[0].contains("suppressed=0"), "{}", stripe[0]);

    // The binary's interval began before `first_answered`: this is past it.
    tokio::time::sleep_until((first_answered + SIGNATURE_WARNING_INTERVAL).into()).await;
    assert_eq!(badly_signed(&client, &process.address, "stripe").await, 401);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let stripe = rejection_lines(&log, "stripe");
    assert_eq!(stripe.len(), 2, "{log}");
    assert!(stripe[1].contains("suppressed=29"), "{}", stripe[1]);
}

/// Starts the binary on `database_url`, waits for it to fail, returns its log.
async fn failed_start(dir: &Path, name: &str, database_url: &str) -> String {
    let config_path = dir.join(format!("{name}.toml"));
    let options = TestOptions::default();
    std::fs::write(
        &config_path,
        test_config_text(database_url, "http://127.0.0.1:1", &options),
    )
    .unwrap();
    let log_path = dir.join(format!("{name}.log"));
    let mut process = Binary::start(&config_path, &[], Some(&log_path));
    let status = process.wait_exit(Duration::from_secs(30)).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!status.success(), "{name}: started: {log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_be_opened_is_reported_with_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = failed_start(
        dir.path(),
        "refused",
        &format!("postgres://postgres@127.0.0.1:{closed_port}/x"),
    )
    .await;
    assert!(
        !refused.contains("pool timed out"),
        "a refused connection is reported as a time-out: {refused}"
    );
    assert!(
        refused.to_lowercase().contains("connection refused"),
        "{refused}"
    );
    assert!(
        refused.contains(&format!("127.0.0.1:{closed_port}")),
        "{refused}"
    );

    let missing_dir = dir.path().join("no-such-dir").join("ledger.db");
    let sqlite = failed_start(
        dir.path(),
        "sqlite",
        &format!("sqlite://{}", missing_dir.display()),
    )
    .await;
    assert_eq!(
        sqlite.matches("unable to open database file").count(),
        1,
        "{sqlite}"
    );
    assert!(
        sqlite.contains("no-such-dir"),
        "the path is named: {sqlite}"
    );

    if let Some(admin_url) = postgres_url() {
        let name = format!("hookledger_missing_{:08x}", rand::random::<u32>());
        let absent = failed_start(dir.path(), "absent", &with_database(&admin_url, &name)).await;
        assert_eq!(absent.matches("does not exist").count(), 1, "{absent}");
    } else {
        eprintln!("skipped: the missing PostgreSQL database case (set {POSTGRES_ENV})");
    }
}
