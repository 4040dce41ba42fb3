//! The web console's sign-in and browser security (SPEC §9): the login
//! form and its cookie (HttpOnly, SameSite=Strict, Secure by the rules,
//! 12 h, void when the admin token changes), the origin check on every
//! POST, the CSP, and the API's bearer token staying the only way into the
//! API. Pages themselves: `console_pages.rs`; a real browser:
//! `console_browser.rs`. The helpers below sign in and carry the cookie
//! by hand (the test client keeps no cookies).

use std::sync::Arc;

use hookledger::config::Secret;
use hookledger::startup::Application;
use serde_json::json;

use crate::helpers::*;

crate::backend_tests!(
    the_console_asks_for_a_login_and_refuses_a_wrong_token,
    a_login_sets_a_strict_http_only_cookie_for_twelve_hours,
    the_json_api_takes_the_bearer_token_and_never_the_cookie,
    a_console_post_from_another_origin_is_refused_and_changes_nothing,
    a_session_expires_after_twelve_hours_and_dies_with_the_admin_token,
    with_an_https_public_origin_the_cookie_is_secure_and_that_origin_is_required,
    every_console_answer_carries_a_strict_content_security_policy,
);

pub const COOKIE: &str = "hookledger_console";

/// A console answer: status, headers, and the body as text.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookie(&self) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{COOKIE}=")))
            .map(str::to_string)
    }
}

async fn page_of(response: reqwest::Response) -> Page {
    Page {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.expect("reading the page"),
    }
}

/// `Origin` as a browser on the console's own page sends it.
pub fn own_origin(app: &TestApp) -> String {
    format!("http://127.0.0.1:{}", app.port)
}

/// A GET with the session cookie (`None`: without).
pub async fn console_get(app: &TestApp, cookie: Option<&str>, path: &str) -> Page {
    let mut request = app.client.get(format!("{}{}", app.address, path));
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("{COOKIE}={cookie}"));
    }
    page_of(request.send().await.unwrap()).await
}

/// A form POST with the cookie and the given extra headers (`Origin`,
/// `Sec-Fetch-Site`, …).
pub async fn console_post(
    app: &TestApp,
    cookie: Option<&str>,
    path: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Page {
    let mut request = app
        .client
        .post(format!("{}{}", app.address, path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish(),
        );
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("{COOKIE}={cookie}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    page_of(request.send().await.unwrap()).await
}

/// A POST as the console's own form sends it (Chromium's headers).
pub async fn same_origin_post(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> Page {
    let origin = own_origin(app);
    console_post(
        app,
        Some(cookie),
        path,
        form,
        &[("origin", &origin), ("sec-fetch-site", "same-origin")],
    )
    .await
}

/// The cookie's value from a `Set-Cookie` line.
pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("a name=value pair")
}

/// Signs in with the admin token; returns the session cookie's value.
pub async fn login(app: &TestApp) -> String {
    let origin = own_origin(app);
    let page = console_post(
        app,
        None,
        "/console/login",
        &[("token", ADMIN_TOKEN)],
        &[("origin", &origin)],
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.text);
    assert_eq!(page.location(), "/console");
    cookie_value(&page.set_cookie().expect("a session cookie"))
}

/// Whether the cookie opens the overview (else the console redirects to
/// the login form).
async fn signed_in(app: &TestApp, cookie: &str) -> bool {
    let page = console_get(app, Some(cookie), "/console").await;
    match page.status {
        200 => true,
        303 => {
            assert_eq!(page.location(), "/console/login");
            false
        }
        other => panic!("unexpected {other}: {}", page.text),
    }
}

async fn the_console_asks_for_a_login_and_refuses_a_wrong_token(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/console",
        "/console/events",
        "/console/events/1",
        "/console/dead",
    ] {
        let page = console_get(&app, None, path).await;
        assert_eq!(
            (page.status, page.location()),
            (303, "/console/login"),
            "{path}"
        );
    }
    let form = console_get(&app, None, "/console/login").await;
    assert_eq!(form.status, 200);
    assert!(form
        .text
        .contains(r#"<input type="password" id="token" name="token""#));

    let origin = own_origin(&app);
    for wrong in [
        "",
        "test-admin-toke",
        "test-admin-token-",
        "TEST-ADMIN-TOKEN",
    ] {
        let page = console_post(
            &app,
            None,
            "/console/login",
            &[("token", wrong)],
            &[("origin", &origin)],
        )
        .await;
        assert_eq!(page.status, 401, "{wrong:?}");
        assert!(page.set_cookie().is_none(), "{wrong:?}");
        assert!(page.text.contains("That is not the admin token."));
    }
    // A made-up cookie opens nothing.
    assert!(!signed_in(&app, "99999999999999.AAAA").await);
}

async fn a_login_sets_a_strict_http_only_cookie_for_twelve_hours(backend: Backend) {
    let app = spawn_app(backend).await;
    let origin = own_origin(&app);
    let page = console_post(
        &app,
        None,
        "/console/login",
        &[("token", ADMIN_TOKEN)],
        &[("origin", &origin)],
    )
    .await;
    assert_eq!((page.status, page.location()), (303, "/console"));
    let set_cookie = page.set_cookie().unwrap();
    let attributes: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for wanted in [
        "httponly",
        "samesite=strict",
        "path=/console",
        "max-age=43200",
    ] {
        assert!(
            attributes.iter().any(|a| a == wanted),
            "{wanted} in {set_cookie}"
        );
    }
    // Plain HTTP on loopback: a Secure cookie would never come back.
    assert!(!attributes.iter().any(|a| a == "secure"), "{set_cookie}");
    assert!(
        !set_cookie.contains(ADMIN_TOKEN),
        "the cookie does not carry the token"
    );
    let cookie = cookie_value(&set_cookie);
    assert!(signed_in(&app, &cookie).await);
    // Signed in, the login form leads to the overview.
    let form = console_get(&app, Some(&cookie), "/console/login").await;
    assert_eq!((form.status, form.location()), (303, "/console"));

    // Logging out expires the cookie.
    let out = same_origin_post(&app, &cookie, "/console/logout", &[]).await;
    assert_eq!((out.status, out.location()), (303, "/console/login"));
    let expired = out.set_cookie().unwrap();
    assert!(
        expired.to_ascii_lowercase().contains("max-age=0"),
        "{expired}"
    );
    assert_eq!(cookie_value(&expired), "");
}

async fn the_json_api_takes_the_bearer_token_and_never_the_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app
        .deliver("orders", &[("X-Request-Id", "req-1")], &json!({"n": 1}))
        .await
        .id();
    app.drain().await;
    let cookie = login(&app).await;
    let with_cookie = |method: reqwest::Method, path: String| {
        app.client
            .request(method, format!("{}{}", app.address, path))
            .header("cookie", format!("{COOKIE}={cookie}"))
            .header("origin", own_origin(&app))
            .header("sec-fetch-site", "same-origin")
    };
    for (method, path) in [
        (reqwest::Method::GET, "/admin/events".to_string()),
        (reqwest::Method::GET, format!("/admin/events/{id}")),
        (reqwest::Method::GET, "/admin/stats".to_string()),
        (reqwest::Method::POST, format!("/admin/events/{id}/replay")),
    ] {
        let answer = read(
            with_cookie(method.clone(), path.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (401, "unauthorized"),
            "{method} {path}"
        );
    }
    assert_eq!(event(&app, id).await["status"], "done", "nothing replayed");
    // The bearer token still works, and alone.
    assert_eq!(app.admin_get("/admin/events").await.status, 200);
}

async fn a_console_post_from_another_origin_is_refused_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app
        .deliver("orders", &[("X-Request-Id", "req-1")], &json!({"n": 1}))
        .await
        .id();
    app.drain().await;
    let cookie = login(&app).await;
    let ours = own_origin(&app);
    let replay = format!("/console/events/{id}/replay");
    let refused: [&[(&str, &str)]; 6] = [
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        // Sec-Fetch-Site wins over a matching Origin.
        &[("sec-fetch-site", "cross-site"), ("origin", &ours)],
        &[("origin", "http://evil.example")],
        &[("origin", "null")],
        // Neither header: refused too.
        &[],
    ];
    for headers in refused {
        let page = console_post(&app, Some(&cookie), &replay, &[], headers).await;
        assert_eq!(page.status, 403, "{headers:?}");
        let login = console_post(
            &app,
            None,
            "/console/login",
            &[("token", ADMIN_TOKEN)],
            headers,
        )
        .await;
        assert_eq!(login.status, 403, "login, {headers:?}");
        assert!(login.set_cookie().is_none());
    }
    let pause = console_post(
        &app,
        Some(&cookie),
        "/console/destinations/x/pause",
        &[],
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(pause.status, 403);
    assert_eq!(event(&app, id).await["status"], "done", "nothing replayed");

    // From the console's own origin, by either header.
    let by_origin = console_post(&app, Some(&cookie), &replay, &[], &[("origin", &ours)]).await;
    assert_eq!(by_origin.status, 303, "{}", by_origin.text);
    assert_eq!(event(&app, id).await["status"], "pending");
    app.drain().await;
    let by_fetch_site = console_post(
        &app,
        Some(&cookie),
        &replay,
        &[],
        &[("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(by_fetch_site.status, 303);
    assert_eq!(event(&app, id).await["status"], "pending");
}

/// Another process on the same database, with its own admin token.
async fn other_process(app: &TestApp, admin_token: &str) -> String {
    let mut config = app.config.clone();
    config.server.admin_token = Secret::new(admin_token);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = Application::with_parts(
        config,
        Arc::new(app.clock.clone()),
        app.store.clone(),
        listener,
        false,
    )
    .unwrap();
    let address = format!("http://127.0.0.1:{}", other.port());
    tokio::spawn(other.run_until_stopped());
    address
}

async fn a_session_expires_after_twelve_hours_and_dies_with_the_admin_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let cookie = login(&app).await;
    // Sessions are stateless: another process with the same token honours it.
    let same = other_process(&app, ADMIN_TOKEN).await;
    let changed = other_process(&app, "a-new-admin-token").await;
    let opens = |address: String| {
        let client = app.client.clone();
        let cookie = cookie.clone();
        async move {
            client
                .get(format!("{address}/console"))
                .header("cookie", format!("{COOKIE}={cookie}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(opens(same.clone()).await, 200);
    assert_eq!(opens(changed.clone()).await, 303, "another token voids it");

    app.clock.advance_ms(12 * 3_600_000 - 1);
    assert!(signed_in(&app, &cookie).await, "good for 12 h");
    app.clock.advance_ms(1);
    assert!(!signed_in(&app, &cookie).await, "not a moment longer");
    assert_eq!(opens(same).await, 303);
    // A new login works, of course.
    let fresh = login(&app).await;
    assert!(signed_in(&app, &fresh).await);
}

async fn with_an_https_public_origin_the_cookie_is_secure_and_that_origin_is_required(
    backend: Backend,
) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            server_toml: "public_origin = \"https://hooks.example.com\"\n".into(),
            ..TestOptions::default()
        },
    )
    .await;
    // The Host-derived origin is no longer the console's.
    let own = own_origin(&app);
    let page = console_post(
        &app,
        None,
        "/console/login",
        &[("token", ADMIN_TOKEN)],
        &[("origin", &own)],
    )
    .await;
    assert_eq!(page.status, 403);
    let page = console_post(
        &app,
        None,
        "/console/login",
        &[("token", ADMIN_TOKEN)],
        &[("origin", "https://hooks.example.com")],
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.text);
    let set_cookie = page.set_cookie().unwrap();
    assert!(
        set_cookie
            .split(';')
            .any(|a| a.trim().eq_ignore_ascii_case("secure")),
        "{set_cookie}"
    );

    // Without a public origin, a Host that is not loopback gets Secure too.
    let plain = spawn_app(backend).await;
    let page = console_post(
        &plain,
        None,
        "/console/login",
        &[("token", ADMIN_TOKEN)],
        &[
            ("host", "hooks.example.com"),
            ("origin", "http://hooks.example.com"),
        ],
    )
    .await;
    assert_eq!(page.status, 303, "{}", page.text);
    let set_cookie = page.set_cookie().unwrap();
    assert!(
        set_cookie
            .split(';')
            .any(|a| a.trim().eq_ignore_ascii_case("secure")),
        "{set_cookie}"
    );
}

async fn every_console_answer_carries_a_strict_content_security_policy(backend: Backend) {
    let app = spawn_app(backend).await;
    let cookie = login(&app).await;
    let pages = [
        console_get(&app, None, "/console/login").await,
        console_get(&app, None, "/console").await,
        console_get(&app, Some(&cookie), "/console").await,
        console_get(&app, Some(&cookie), "/console/events?status=nonsense").await,
        console_get(&app, Some(&cookie), "/console/events/12345").await,
        console_post(&app, Some(&cookie), "/console/logout", &[], &[]).await,
    ];
    let statuses: Vec<u16> = pages.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [200, 303, 200, 400, 404, 403]);
    for page in &pages {
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(page.headers["x-content-type-options"], "nosniff");
        assert_eq!(page.headers["cache-control"], "no-store");
    }
    let css = console_get(&app, None, "/console/static/console.css").await;
    assert_eq!(css.status, 200);
    assert!(css.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
}
