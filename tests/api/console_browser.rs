//! The console in a real browser (issue 14, item 4): Debian's Chromium,
//! headless, driven through chromedriver's WebDriver with `fantoccini`. It
//! signs in, filters events, opens one and replays it (pending, then done
//! once the test drives the worker), opens a duplicate's variants, pauses
//! and resumes a destination,
//! retries dead deliveries after confirming their count, and signs out —
//! with Chromium's own `Origin`, `Sec-Fetch-Site`, cookie and CSP
//! handling, which the HTTP-level tests can only imitate. Each page's
//! screenshot is saved under `target/console-screenshots/`.
//!
//! Without `chromium` and `chromedriver` the test is skipped with a reason,
//! except under CI (`CI` set), where that is a failure: CI installs them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::deliveries_admin::{delivery_to, drained};
use crate::destinations::{answer_with, app_with_receiver};
use crate::helpers::*;

crate::backend_tests!(a_browser_signs_in_filters_replays_pauses_retries_and_signs_out);

/// How long one page may take to show what the test waits for.
const PAGE_WAIT: Duration = Duration::from_secs(20);

/// The program named by the environment variable `env`, else the first of
/// `names` found on `PATH`.
fn program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver, ended with the test.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_browser(chromedriver: &Path, chromium: &Path, profile: &Path) -> (Driver, Client) {
    let port = free_port();
    let driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_until("chromedriver answers", || async {
        client
            .get(format!("{url}/status"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&url)
        .await
        .expect("a chromium session");
    (driver, browser)
}

/// Where screenshots go: `target/console-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Session<'a> {
    browser: &'a Client,
    base: String,
    shots: PathBuf,
    prefix: &'static str,
}

impl Session<'_> {
    async fn goto(&self, path: &str) {
        self.browser
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn path(&self) -> String {
        let url = self.browser.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.browser
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    async fn shoot(&self, name: &str) {
        let png = self.browser.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(self.shots.join(format!("{}-{name}.png", self.prefix)), png).unwrap();
    }
}

async fn a_browser_signs_in_filters_replays_pauses_retries_and_signs_out(backend: Backend) {
    let chromedriver = program("HOOKLEDGER_CHROMEDRIVER", &["chromedriver"]);
    let chromium = program("HOOKLEDGER_CHROMIUM", &["chromium", "chromium-browser"]);
    let (Some(chromedriver), Some(chromium)) = (chromedriver, chromium) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: install chromium and chromium-driver"
        );
        eprintln!("skipped: the console's browser test (no chromium/chromedriver installed)");
        return;
    };

    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(422)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(204)).await;
    let invoices = [
        deliver_invoice(&app, "paid", "evt_1", "in_1").await,
        deliver_invoice(&app, "paid", "evt_2", "in_2").await,
    ];
    for n in 0..3 {
        let answer = app
            .deliver(
                "orders",
                &[("X-Request-Id", &format!("req-{n}"))],
                &json!({"order": n}),
            )
            .await;
        assert_eq!(answer.status, 202);
    }
    // A duplicate whose body differs.
    let copy = stripe_event(
        "evt_1",
        "invoice.paid",
        app.now_secs(),
        json!({"id": "in_1", "object": "invoice", "amount": 2}),
    );
    assert_eq!(app.deliver("paid", &[], &copy).await.status, 200);
    app.drain().await;
    drained(&app, "app").await;
    drained(&app, "all").await;

    let profile = tempfile::tempdir().unwrap();
    let (_driver, browser) = start_browser(&chromedriver, &chromium, profile.path()).await;
    let s = Session {
        browser: &browser,
        base: app.address.clone(),
        shots: screenshot_dir(),
        prefix: match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        },
    };

    // Signed out, the console leads to the login form.
    s.goto("/console").await;
    s.wait_for("#token").await;
    assert_eq!(s.path().await, "/console/login");
    s.shoot("login").await;
    s.wait_for("#token")
        .await
        .send_keys("not the token")
        .await
        .unwrap();
    s.click("#login").await;
    assert!(s.text(".notice-bad").await.contains("not the admin token"));
    s.wait_for("#token")
        .await
        .send_keys(ADMIN_TOKEN)
        .await
        .unwrap();
    s.click("#login").await;
    s.wait_for(".cards").await;
    assert_eq!(s.path().await, "/console");
    s.shoot("overview").await;

    // Events, filtered by source.
    s.goto("/console/events").await;
    s.wait_for("#filter-source")
        .await
        .select_by_value("paid")
        .await
        .unwrap();
    s.click("#filter").await;
    s.wait_for("table.events").await;
    assert!(s.path().await.contains("source=paid"), "{}", s.path().await);
    let rows = browser
        .find_all(Locator::Css("table.events tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    s.shoot("events").await;

    // One event, replayed: pending, then done once the worker ran.
    let first = invoices[0];
    s.click(&format!("a[href='/console/events/{first}']")).await;
    assert_eq!(s.text("#event-status").await, "done");
    s.shoot("event").await;
    s.click("#replay").await;
    assert!(s.text(".notice-ok").await.starts_with("Replayed"));
    assert_eq!(s.text("#event-status").await, "pending");
    assert_eq!(
        s.path().await,
        format!("/console/events/{first}?notice=replayed")
    );
    app.drain().await;
    browser.refresh().await.unwrap();
    assert_eq!(s.text("#event-status").await, "done");

    // Duplicates, and the variants of the one whose copy differed.
    s.goto("/console/duplicates").await;
    assert!(s.text("table").await.contains("payload differs"));
    s.shoot("duplicates").await;
    s.click("a.variants-link").await;
    let diff = s.text("table.diff").await;
    assert!(diff.contains("/data/object/amount"), "{diff}");
    assert!(diff.contains("added"), "{diff}");
    assert_eq!(s.path().await, format!("/console/events/{first}/variants"));
    s.shoot("variants").await;

    // A destination paused and resumed.
    s.goto("/console/destinations").await;
    s.click("#pause-app").await;
    s.wait_for("#resume-app").await;
    assert!(app.store.destination_paused("app").await.unwrap());
    assert!(s.text("#destination-app .state").await.contains("paused"));
    s.shoot("destinations").await;
    s.click("#resume-app").await;
    s.wait_for("#pause-app").await;
    assert!(!app.store.destination_paused("app").await.unwrap());

    // Dead deliveries retried once their count is confirmed.
    s.goto("/console/dead").await;
    s.shoot("dead").await;
    s.wait_for("#retry-destination")
        .await
        .select_by_value("app")
        .await
        .unwrap();
    s.click("#retry-matching").await;
    assert!(s
        .text("#matched-count")
        .await
        .starts_with("2 dead deliveries"));
    for id in invoices {
        assert_eq!(
            delivery_to(&app, id, "app").await.status,
            "dead",
            "only counted"
        );
    }
    s.shoot("dead-confirm").await;
    s.click("#confirm-retry").await;
    assert!(s
        .text(".notice-ok")
        .await
        .contains("Retried 2 dead deliveries"));
    for id in invoices {
        assert_eq!(delivery_to(&app, id, "app").await.status, "pending");
    }

    // Signed out, the cookie is gone.
    s.click("#logout").await;
    s.wait_for("#token").await;
    s.goto("/console/events").await;
    s.wait_for("#token").await;
    assert_eq!(s.path().await, "/console/login");
    browser.close().await.unwrap();
}
