//! Test harness: `spawn_app` starts hookledger on port 0 with a fresh
//! database, a manual clock, a wiremock upstream and no background workers;
//! tests drive processing by hand with `app.drain()`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use hookledger::clock::{Clock, ManualClock};
use hookledger::config::{self, Config};
use hookledger::reconcile::{Pause, Reconciler};
use hookledger::relay::Relay;
use hookledger::sources::Source;
use hookledger::startup::Application;
use hookledger::store::Store;
use hookledger::worker::Worker;
use serde_json::{json, Value};
use wiremock::MockServer;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const POSTGRES_ENV: &str = "HOOKLEDGER_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an `async fn(Backend)` test on SQLite, and on PostgreSQL when
/// configured (printing that it was skipped otherwise).
#[macro_export]
macro_rules! backend_tests {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$test($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if $crate::helpers::postgres_url().is_none() {
                        eprintln!(
                            "skipped: {} on PostgreSQL (set {} to run it)",
                            stringify!($test),
                            $crate::helpers::POSTGRES_ENV
                        );
                        return;
                    }
                    super::$test($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())
}

/// A database for one test; dropped (PostgreSQL) or deleted (SQLite) after.
pub struct TestDb {
    pub url: String,
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
                TestDb {
                    url,
                    postgres: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_url().expect("PostgreSQL URL");
                let name = format!("hookledger_test_{:016x}", rand::random::<u64>());
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .expect("connecting to the test PostgreSQL");
                sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("creating a test database");
                let url = with_database(&admin_url, &name);
                TestDb {
                    url,
                    postgres: Some((admin_url, name)),
                    _dir: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            // Drop is synchronous; a small runtime of its own does the drop.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) =
                        <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await
                    {
                        let _ = sqlx::Executor::execute(
                            &mut conn,
                            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                        )
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// `postgres://u@h:p/db?x` with another database name.
pub fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("a PostgreSQL URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// The sources every test app has. `{upstream}` is replaced by the wiremock
/// server's address.
pub const TEST_SOURCES: &str = r#"
[sources.stripe]
preset = "stripe"
secret = "whsec_test_stripe"

[sources.github]
preset = "github"
secret = "test-github"

[sources.shopify]
preset = "shopify"
secret = "test-shopify"

[sources.acuity]
preset = "acuity"
secret = "test-acuity"

[sources.standard]
preset = "standard"
secret = "whsec_dGVzdC1zdGFuZGFyZC13ZWJob29rcy1rZXk="

[sources.standard_ed25519]
preset = "standard"
public_key = "whpk_LU0t22iZe/+0OJrKyeUc2BMhv+dlaDmXYwbTbESIwBU="

[sources.slack]
preset = "slack"
secret = "test-slack"

[sources.zoom]
preset = "zoom"
secret = "test-zoom"

[sources.svix]
preset = "svix"
secret = "whsec_dGVzdC1zdml4"

[sources.paddle]
preset = "paddle"
secret = "test-paddle"

[sources.bitbucket]
preset = "bitbucket"
secret = "test-bitbucket"

[sources.typeform]
preset = "typeform"
secret = "test-typeform"

[sources.gitlab]
preset = "gitlab"
secret = "test-gitlab"

[sources.linear]
preset = "linear"
secret = "test-linear"

[sources.intercom]
preset = "intercom"
secret = "test-intercom"

[sources.woocommerce]
preset = "woocommerce"
secret = "test-woocommerce"

[sources.mailgun]
preset = "mailgun"
secret = "test-mailgun"

[sources.square]
preset = "square"
secret = "test-square"
public_url = "https://hooks.example.com/webhooks/square"

[sources.twilio]
preset = "twilio"
secret = "test-twilio"
public_url = "https://hooks.example.com/webhooks/twilio"

[sources.orders]
preset = "generic"
verify = "off"
event_id = { header = "X-Request-Id" }
hash_window_secs = 300

[sources.billing]
preset = "generic"
secret = "test-billing"
signature_header = "X-Signature"
signature_encoding = "hex"
signature_prefix = "sha256="
object_type = { value = "invoice" }
object_id = { pointer = "/invoice/id" }

[sources.stripe_fetch]
preset = "stripe"
secret = "whsec_test_stripe_fetch"
fetch.url = "{upstream}/v1/events/{event_id}"
fetch.bearer = "sk_test_upstream"
fetch.timeout_secs = 2

[sources.acuity_fetch]
preset = "acuity"
secret = "test-acuity-fetch"
fetch.url = "{upstream}/api/v1/appointments/{object_id}"
fetch.basic = "user:test-acuity-fetch"
fetch.timeout_secs = 2
"#;

#[derive(Default)]
pub struct TestOptions {
    /// Extra TOML appended after the `[server]`/`[processing]` defaults.
    pub extra_toml: String,
    pub server_toml: String,
    pub processing_toml: String,
    /// Start the background workers (most tests drive them by hand instead).
    pub run_workers: bool,
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub store: Store,
    pub clock: ManualClock,
    pub upstream: MockServer,
    pub config: Config,
    pub worker: Worker,
    /// Every destination's relay, for driving deliveries by hand.
    pub relays: Vec<Relay>,
    /// Every gap-fill reconciler, for running passes by hand.
    pub reconcilers: Vec<Reconciler>,
    pub db: TestDb,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, TestOptions::default()).await
}

pub fn test_config_text(database_url: &str, upstream: &str, options: &TestOptions) -> String {
    format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\nadmin_token = \"{ADMIN_TOKEN}\"\nworkers = 4\n{}\n[processing]\nlease_secs = 30\nmax_attempts = 4\nbackoff_base_secs = 2\nbackoff_max_secs = 60\n{}\n{}\n{}",
        options.server_toml,
        options.processing_toml,
        TEST_SOURCES.replace("{upstream}", upstream),
        options.extra_toml.replace("{upstream}", upstream)
    )
}

/// `TEST_LOG=1 cargo test …` shows the application's logs.
fn init_test_logging() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,sqlx=warn,hyper=warn",
            ))
            .with_test_writer()
            .try_init();
    }
}

pub async fn spawn_app_with(backend: Backend, options: TestOptions) -> TestApp {
    init_test_logging();
    let db = TestDb::new(backend).await;
    let upstream = MockServer::start().await;
    let text = test_config_text(&db.url, &upstream.uri(), &options);
    let no_env: BTreeMap<String, String> = BTreeMap::new();
    let config = config::load_str(&text, &no_env).expect("test config is valid");
    let clock = ManualClock::new(chrono::Utc::now().timestamp_millis());
    let store = Store::open(&db.url)
        .await
        .expect("opening the test database");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    let app = Application::with_parts(
        config.clone(),
        Arc::new(clock.clone()),
        store.clone(),
        listener,
        options.run_workers,
    )
    .expect("building the app");
    let port = app.port();
    let worker = app.worker();
    let relays = app.relays();
    let reconcilers = config
        .sources
        .keys()
        .filter_map(|name| app.reconciler(name))
        .collect();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .build()
            .unwrap(),
        store,
        clock,
        upstream,
        config,
        worker,
        relays,
        reconcilers,
        db,
    }
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }
    pub fn id(&self) -> i64 {
        self.body["id"].as_i64().expect("answer has an id")
    }
}

pub async fn read(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("reading the answer");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Answer {
        status,
        headers,
        body,
    }
}

impl TestApp {
    /// The source as its provider signs: a source with a `public_key`
    /// signs with the development private key kept beside its fixture.
    pub fn source(&self, name: &str) -> Source {
        let config = self.config.sources[name].clone();
        let asymmetric = config.public_key.is_some();
        let source = Source::new(config);
        if asymmetric {
            return source
                .with_signing_key(include_str!(
                    "../../fixtures/standard_ed25519/dev-signing-key.whsk"
                ))
                .expect("the development private key");
        }
        source
    }

    pub fn now_secs(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }

    /// Posts raw bytes with exactly the given headers.
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{}", self.address, path))
            .body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        read(request.send().await.expect("sending the request")).await
    }

    /// The headers a provider would send: `headers` plus its signature.
    pub fn signed_headers(
        &self,
        source: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (name, value) in self.source(source).sign(&all, body, self.now_secs()) {
            all.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
            all.push((name, value));
        }
        all
    }

    /// Posts `body` to `/webhooks/{source}` as JSON, signed as its provider would.
    pub async fn deliver(&self, source: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).unwrap();
        self.deliver_bytes(source, "application/json", headers, bytes)
            .await
    }

    pub async fn deliver_bytes(
        &self,
        source: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut with_type = vec![("Content-Type", content_type)];
        with_type.extend_from_slice(headers);
        // Linear, Mailgun: the signed timestamp inside the body made fresh.
        let body = self
            .source(source)
            .restamp(&body, self.now_secs())
            .unwrap_or(body);
        let signed = self.signed_headers(source, &with_type, &body);
        self.post_raw(&format!("/webhooks/{source}"), &signed, body)
            .await
    }

    /// The relay of destination `name`.
    pub fn relay(&self, name: &str) -> Relay {
        self.relays
            .iter()
            .find(|r| r.name() == name)
            .unwrap_or_else(|| panic!("no destination {name:?} is configured"))
            .clone()
    }

    /// The reconciler of source `name`, waiting by moving the test's clock
    /// (the waits are recorded in `pause`).
    pub fn reconciler(&self, name: &str, pause: &ClockPause) -> Reconciler {
        self.reconcilers
            .iter()
            .find(|r| r.source_name() == name)
            .unwrap_or_else(|| panic!("source {name:?} has no reconcile table"))
            .clone()
            .with_pause(Arc::new(pause.clone()))
    }

    /// A GET on the admin API with the test token.
    pub async fn admin_get(&self, path_and_query: &str) -> Answer {
        let response = self
            .client
            .get(format!("{}{}", self.address, path_and_query))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    pub async fn admin_post(&self, path: &str) -> Answer {
        let response = self
            .client
            .post(format!("{}{}", self.address, path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        read(
            self.client
                .get(format!("{}{}", self.address, path))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Ledger totals, straight from the admin stats.
    pub async fn ledger_total(&self) -> i64 {
        self.store.stats().await.unwrap().total
    }

    /// Webhook requests holding an in-flight slot, from `/metrics`: a test
    /// waits on this to know that its slow requests have their slots.
    pub async fn in_flight(&self) -> i64 {
        let text = self.get("/metrics").await.body;
        in_flight_of(text.as_str().expect("metrics are text"))
    }

    /// Processes everything due at the clock's current time.
    pub async fn drain(&self) -> usize {
        self.worker.drain().await.expect("draining the worker")
    }
}

/// A gap-fill wait that moves the manual clock instead of sleeping, and
/// remembers how long each wait was.
#[derive(Clone)]
pub struct ClockPause {
    pub clock: ManualClock,
    pub waits: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl ClockPause {
    pub fn new(clock: &ManualClock) -> ClockPause {
        ClockPause {
            clock: clock.clone(),
            waits: Arc::default(),
        }
    }

    pub fn waits(&self) -> Vec<u64> {
        self.waits.lock().unwrap().clone()
    }
}

impl Pause for ClockPause {
    fn pause(&self, ms: u64) -> futures_util::future::BoxFuture<'static, ()> {
        self.clock.advance_ms(ms as i64);
        self.waits.lock().unwrap().push(ms);
        Box::pin(async {})
    }
}

/// A Stripe event envelope for `object`.
pub fn stripe_event(event_id: &str, event_type: &str, created: i64, object: Value) -> Value {
    serde_json::json!({
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": { "object": object },
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": event_type,
    })
}

/// The `hookledger_webhooks_in_flight` gauge in a `/metrics` text.
pub fn in_flight_of(metrics: &str) -> i64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("hookledger_webhooks_in_flight "))
        .unwrap_or_else(|| panic!("no in-flight gauge in:\n{metrics}"))
        .trim()
        .parse()
        .expect("the in-flight gauge is an integer")
}

/// How long a condition on a real process may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Waits until `condition` holds, failing after `DEADLINE`. Real processes
/// run on the real clock: this waits on a condition, never a fixed time.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Spawned binaries.

/// A `hookledger serve` child process.
pub struct Binary {
    pub child: Child,
    pub port: u16,
    pub address: String,
}

impl Binary {
    /// Starts the binary; its stdout and stderr go to `log` when given.
    pub fn start(config_path: &Path, env: &[(&str, &str)], log: Option<&Path>) -> Binary {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookledger"));
        command
            .arg("--config")
            .arg(config_path)
            .arg("serve")
            .env("HOOKLEDGER_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .env_remove("HOOKLEDGER_ADMIN_TOKEN")
            .env_remove("HOOKLEDGER_CONFIG");
        for (name, value) in env {
            command.env(name, value);
        }
        match log {
            Some(path) => {
                let file = std::fs::File::create(path).unwrap();
                command
                    .stdout(Stdio::from(file.try_clone().unwrap()))
                    .stderr(Stdio::from(file));
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::inherit());
            }
        }
        Binary {
            child: command.spawn().expect("starting hookledger"),
            port,
            address: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn wait_ready(&self, client: &reqwest::Client) {
        wait_until("the process answers /readyz", || async {
            client
                .get(format!("{}/readyz", self.address))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success());
    }

    /// SIGKILL: no shutdown code runs, exactly like a crash.
    pub fn kill(&mut self) {
        self.child.kill().expect("killing hookledger");
        self.child.wait().unwrap();
    }

    /// Waits (bounded by `limit`) for the process to exit by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /admin/events/{id}`, asserted to exist: the event as the admin API
/// shows it.
pub async fn event(app: &TestApp, id: i64) -> Value {
    let answer = app.admin_get(&format!("/admin/events/{id}")).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

/// Delivers a Stripe `invoice.paid` event for `invoice_id` to `source`,
/// asserted to be first-seen; returns its ledger id.
pub async fn deliver_invoice(app: &TestApp, source: &str, event_id: &str, invoice_id: &str) -> i64 {
    let body = stripe_event(
        event_id,
        "invoice.paid",
        app.now_secs(),
        json!({"id": invoice_id, "object": "invoice"}),
    );
    let answer = app.deliver(source, &[], &body).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    answer.id()
}
