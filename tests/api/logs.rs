//! What the real binary writes to its log (issue 11, item 9): bad-signature
//! warnings are rate-limited per source, and a database that cannot be
//! opened is reported with its cause once (a refused PostgreSQL connection
//! as refused, not as a pool time-out). With `log_format = "json"` (issue
//! 14, item 6) every line is one JSON object and none carries a secret.

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

/// `server.log_format = "json"` (SPEC §9): a real run — start-up, signed
/// webhooks (accepted, duplicate, forged), admin calls, a bad admin token,
/// shutdown — writes nothing to stdout or stderr that is not one JSON
/// object with a `message`, and no secret, signature or token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_carry_no_secret() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hookledger.toml");
    let options = TestOptions {
        server_toml: "log_format = \"json\"".into(),
        ..TestOptions::default()
    };
    let text = test_config_text(&db.url, "http://127.0.0.1:1", &options);
    std::fs::write(&config_path, &text).unwrap();
    let no_env: std::collections::BTreeMap<String, String> = Default::default();
    let config = hookledger::config::load_str(&text, &no_env).unwrap();
    let stripe = hookledger::sources::Source::new(config.sources["stripe"].clone());

    let log_path = dir.path().join("hookledger.log");
    let mut process = Binary::start(
        &config_path,
        &[("RUST_LOG", "info,hookledger=debug")],
        Some(&log_path),
    );
    let client = reqwest::Client::new();
    process.wait_ready(&client).await;

    let body = br#"{"id":"evt_json","type":"invoice.paid","created":1700000000,"data":{"object":{"id":"in_1","object":"invoice"}}}"#;
    let now = chrono::Utc::now().timestamp();
    let signed = stripe.sign(&Vec::<(String, String)>::new(), body, now);
    let mut signatures: Vec<String> = signed.iter().map(|(_, v)| v.clone()).collect();
    for expected in [202, 200] {
        let mut request = client
            .post(format!("{}/webhooks/stripe", process.address))
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        for (name, value) in &signed {
            request = request.header(name.as_str(), value.as_str());
        }
        assert_eq!(request.send().await.unwrap().status(), expected);
    }
    let forged = format!("t={now},v1={}", "ab".repeat(32));
    signatures.push(forged.clone());
    let status = client
        .post(format!("{}/webhooks/stripe", process.address))
        .header("Content-Type", "application/json")
        .header("Stripe-Signature", &forged)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    for path in ["/admin/events", "/admin/stats", "/admin/events/1/variants"] {
        let answer = client
            .get(format!("{}{path}", process.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    let wrong = client
        .get(format!("{}/admin/events", process.address))
        .bearer_auth("wrong-token-value")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    process.sigterm();
    assert!(process.wait_exit(Duration::from_secs(30)).await.success());

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.lines().count() >= 2, "start-up and shutdown: {log}");
    for line in log.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(value["message"].is_string(), "no message: {line}");
        for key in ["timestamp", "level", "target"] {
            assert!(value[key].is_string(), "no {key}: {line}");
        }
    }
    assert!(
        log.contains("\"source\":\"stripe\""),
        "the forged delivery is logged with its source: {log}"
    );
    let secrets = [
        "whsec_test_stripe",
        "test-github",
        ADMIN_TOKEN,
        "wrong-token-value",
    ];
    // Each signature whole, and its MAC alone (after `v1=`).
    let macs: Vec<String> = signatures.iter().flat_map(|s| v1_parts(s)).collect();
    for secret in secrets
        .iter()
        .map(|s| s.to_string())
        .chain(signatures)
        .chain(macs)
    {
        assert!(!log.contains(&secret), "{secret:?} is in the log:\n{log}");
    }

    // A command's own output is JSON too.
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_hookledger"))
        .arg("--config")
        .arg(&config_path)
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env_remove("HOOKLEDGER_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(migrate.status.success());
    let out = String::from_utf8(migrate.stdout).unwrap();
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["message"], "database is up to date");
    assert!(String::from_utf8(migrate.stderr).unwrap().lines().all(|l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["message"].is_string())
    }));
}

fn v1_parts(header: &str) -> Vec<String> {
    header
        .split(',')
        .filter_map(|part| part.strip_prefix("v1="))
        .map(str::to_string)
        .collect()
}
