//! Attacks on the input edges (signed ids, event-time cap, slow bodies,
//! config and start-up checks) that broke a promise: each test reproduces
//! one break.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hookledger::config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The shipped config's Standard Webhooks secret, as `hookledger.toml` has it.
const SHIPPED_STANDARD_SECRET: &str = "whsec_ZGV2LXN0YW5kYXJkLXdlYmhvb2tzLXNlY3JldA==";

/// How a started binary ended up: it exited (refused to start) or it served.
enum Started {
    Exited(String),
    Served,
}

/// Starts the binary on `bind` with `config_text` and waits until it either
/// exits or answers `/readyz`, whichever comes first.
async fn start_on(dir: &Path, name: &str, config_text: &str, bind: &str) -> Started {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config_text).unwrap();
    let log = dir.join(format!("{name}.log"));
    let mut process = Binary::start(&config_path, &[("HOOKLEDGER_BIND", bind)], Some(&log));
    let port = bind.rsplit(':').next().unwrap();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        if process.child.try_wait().unwrap().is_some() {
            return Started::Exited(std::fs::read_to_string(&log).unwrap());
        }
        if client
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            process.kill();
            return Started::Served;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: neither exited nor served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `whsec_` + base64 is decoded leniently (padding optional), so the shipped
/// Standard Webhooks secret without its `==` is the same HMAC key: anyone
/// can sign with it. It, and a shipped value with whitespace around it, must
/// count as the development value on a public bind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_secret_respelled_is_still_refused_on_a_public_bind() {
    let dir = tempfile::tempdir().unwrap();
    let unpadded = SHIPPED_STANDARD_SECRET.trim_end_matches('=');
    for (case, preset, secret) in [
        ("unpadded standard secret", "standard", unpadded.to_string()),
        (
            "stripe secret with a trailing newline",
            "stripe",
            "whsec_dev_stripe_secret\\n".into(),
        ),
        (
            "github secret with spaces",
            "github",
            " dev-github-secret ".into(),
        ),
    ] {
        let name = case.replace(' ', "-");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let db = dir.path().join(format!("{name}.db"));
        let text = format!(
            "[server]\ndatabase_url = \"sqlite://{}\"\nadmin_token = \"a-real-admin-token-7f3a\"\n\
             [sources.s]\npreset = \"{preset}\"\nsecret = \"{secret}\"\n",
            db.display()
        );
        // The same config on loopback is fine: it is the public bind that is refused.
        match start_on(
            dir.path(),
            &format!("{name}-lo"),
            &text,
            &format!("127.0.0.1:{port}"),
        )
        .await
        {
            Started::Served => {}
            Started::Exited(log) => panic!("{case}: refused on loopback: {log}"),
        }
        match start_on(dir.path(), &name, &text, &format!("0.0.0.0:{port}")).await {
            Started::Served => panic!("{case}: it served on 0.0.0.0 with a development secret"),
            Started::Exited(log) => {
                assert!(log.contains("not a loopback address"), "{case}: {log}");
                assert!(log.contains("sources.s.secret"), "{case}: {log}");
            }
        }
    }
}

fn problems(text: &str, env: &[(&str, &str)]) -> Vec<String> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::load_str(text, &env)
        .expect_err("the config should be refused")
        .0
}

/// serde's type errors quote the value: an unquoted numeric secret or admin
/// token, or a `${VAR}` holding a secret put under a key of another type,
/// was printed in the start-up error (and so in the logs).
#[test]
fn a_config_value_of_the_wrong_type_is_refused_without_echoing_it() {
    const VALUE: &str = "S3CR3T-from-the-environment";
    const DIGITS: &str = "9876543219876";
    let head = "[server]\nadmin_token = \"t\"\n";
    let source = "[sources.a]\npreset = \"github\"\n";
    for (case, text) in [
        (
            "numeric admin token",
            format!("[server]\nadmin_token = {DIGITS}\n"),
        ),
        (
            "numeric secret",
            format!("{head}{source}secret = {DIGITS}\n"),
        ),
        (
            "float secret",
            format!("{head}{source}secret = {DIGITS}.5\n"),
        ),
        (
            "a secret variable under a number key",
            format!("{head}{source}secret = \"x\"\ntolerance_secs = \"${{V}}\"\n"),
        ),
        (
            "a secret variable as a locator",
            format!("{head}{source}secret = \"x\"\nevent_id = \"${{V}}\"\n"),
        ),
        (
            "a secret variable under a server number",
            format!("{head}max_body_bytes = \"${{V}}\"\n"),
        ),
    ] {
        let found = problems(&text, &[("V", VALUE)]);
        let message = found.join("\n");
        assert!(!found.is_empty(), "{case}");
        assert!(
            !message.contains(VALUE) && !message.contains(DIGITS),
            "{case}: the error echoes the value: {message}"
        );
        assert!(
            message.contains("invalid type") || message.contains("unknown variant"),
            "{case}: the error no longer says what is wrong: {message}"
        );
    }
}

/// actix-http applies its request-head timeout to a connection's first
/// request only; after one answered request, a client that sends one byte of
/// the next head is never timed out (no keep-alive timer, no head timer).
/// Each such connection holds a socket and ~16 KB for ever: a few thousand
/// exhaust the process's file descriptors (reproduced against the release
/// binary under `ulimit -n 1024`: 997 such connections, and a normal delivery
/// then timed out; accept failed with EMFILE), whereas stalled bodies are
/// freed after `body_timeout_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "open: actix-http times out only the first request's head on a connection; a later head that stalls holds it open (needs a head timer per connection, or keep-alive off)"]
async fn a_kept_alive_connection_that_stalls_in_its_next_request_head_is_closed() {
    let app = spawn_app_with(
        Backend::Sqlite,
        TestOptions {
            server_toml: "body_timeout_secs = 2\n".into(),
            ..TestOptions::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 4096];
    let n = stream.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &first[..n]);
    // One byte of the next request's head, then nothing.
    stream.write_all(b"P").await.unwrap();
    // Closed (or answered 408) within the body timeout plus actix's 5 s
    // head timeout, with room to spare.
    let limit = Duration::from_secs(20);
    let mut rest = Vec::new();
    let outcome = tokio::time::timeout(limit, stream.read_to_end(&mut rest)).await;
    assert!(
        outcome.is_ok(),
        "the connection was still open {limit:?} after one byte of its second head"
    );
}

/// `DATABASE_URL=sqlite://` (no path) or `sqlite::memory:` started a server
/// that said ready while every connection had a database of its own: the
/// migrations ran on one, and every webhook was then 503 with "no such
/// table: events" in the log, the cause never named. It is a start-up
/// error that names the key.
#[test]
fn a_sqlite_url_without_a_file_is_a_start_up_error() {
    for url in [
        "sqlite://",
        "sqlite:",
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite://x.db?mode=memory",
    ] {
        let text = format!("[server]\nadmin_token = \"t\"\ndatabase_url = \"{url}\"\n");
        let found = problems(&text, &[]);
        assert!(
            found.iter().any(|p| p.contains("server.database_url")),
            "{url}: {found:?}"
        );
    }
    // A file is fine, relative or absolute.
    let no_env: BTreeMap<String, String> = BTreeMap::new();
    for url in ["sqlite://hookledger.db", "sqlite:///tmp/x/ledger.db"] {
        let text = format!("[server]\nadmin_token = \"t\"\ndatabase_url = \"{url}\"\n");
        config::load_str(&text, &no_env).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}
