//! `hookledger replay` (SPEC §6; issue 11, item 9): a signed body goes only
//! where it was sent (a redirect is not followed), and without `--url` it
//! goes to the server of the same config, at its `bind`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_never_follows_a_redirect_with_a_signed_body() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&elsewhere)
        .await;
    let sent_to = MockServer::start().await;
    for status in [307, 308] {
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("Location", format!("{}/webhooks/stripe", elsewhere.uri())),
            )
            .up_to_n_times(1)
            .mount(&sent_to)
            .await;
    }
    let no_env: BTreeMap<String, String> = BTreeMap::new();
    let text = test_config_text(
        "sqlite://unused.db",
        "http://127.0.0.1:1",
        &TestOptions::default(),
    );
    let config = hookledger::config::load_str(&text, &no_env).unwrap();

    let summary = hookledger::replay::run(
        &config,
        &[fixture("stripe/invoice_paid.json")],
        &sent_to.uri(),
        2,
        1,
    )
    .await
    .unwrap();
    let followed = elsewhere.received_requests().await.unwrap();
    assert!(
        followed.is_empty(),
        "the signed body was sent on to the redirect's target {} time(s)",
        followed.len()
    );
    assert_eq!(sent_to.received_requests().await.unwrap().len(), 2);
    assert_eq!((summary.sent, summary.errors), (2, 2), "{summary}");
}

#[test]
fn the_default_url_is_the_configs_bind_on_loopback_for_an_unspecified_address() {
    use hookledger::replay::default_url;
    assert_eq!(default_url("127.0.0.1:9100"), "http://127.0.0.1:9100");
    assert_eq!(default_url("0.0.0.0:9100"), "http://127.0.0.1:9100");
    assert_eq!(default_url("[::]:9100"), "http://[::1]:9100");
    assert_eq!(default_url("localhost:9100"), "http://localhost:9100");
}

/// The real binary, without `--url`, with a config whose `bind` is the
/// port of a running server (not 8080).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_without_url_sends_to_the_bind_of_its_config() {
    let app = spawn_app(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hookledger.toml");
    let text = test_config_text(&app.db.url, &app.upstream.uri(), &TestOptions::default()).replace(
        "bind = \"127.0.0.1:0\"",
        &format!("bind = \"127.0.0.1:{}\"", app.port),
    );
    std::fs::write(&config_path, text).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hookledger"))
            .arg("--config")
            .arg(&config_path)
            .arg("replay")
            .arg(fixture("stripe/invoice_paid.json"))
            .env_remove("HOOKLEDGER_BIND")
            .env_remove("HOOKLEDGER_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "replay failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("202 accepted stripe"), "{stdout}");
    assert_eq!(app.ledger_total().await, 1);
}
