//! The console's pages (SPEC §9) through HTTP, signed in: what they show,
//! their filters and paging, Replay, "retry all matching" (count first,
//! then the retry), pause and resume — and a hostile payload rendered
//! inert on every page that shows it. The worker and relays are driven by
//! hand.

use serde_json::json;
use wiremock::ResponseTemplate;

use crate::console::{console_get, login, same_origin_post, Page};
use crate::deliveries_admin::{delivery_to, drained};
use crate::destinations::{answer_with, app_with_receiver};
use crate::helpers::*;

crate::backend_tests!(
    a_hostile_payload_shows_as_text_on_every_page,
    a_new_console_says_what_to_do_next,
    the_overview_counts_and_names_what_waits_longest,
    events_filter_by_source_status_and_since_and_page_newest_first,
    replay_makes_the_event_pending_and_the_worker_makes_it_done,
    the_variants_of_a_divergent_duplicate_show_the_paths_that_changed,
    retry_all_matching_shows_the_count_and_retries_only_when_confirmed,
    a_destination_is_paused_and_resumed_from_its_page,
);

/// A source that takes its ids, action and object from the body: every
/// one of them shows on the console.
const HOSTILE_SOURCE: &str = r#"
[sources.hostile]
preset = "generic"
verify = "off"
event_id = { pointer = "/id" }
action = { pointer = "/type" }
object_type = { pointer = "/kind" }
object_id = { pointer = "/obj" }
"#;

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = r#""><img src=x onerror=alert(1)>"#;
const JS_URL: &str = "javascript:alert(document.cookie)";

/// The tags the console's templates use; anything else in a page came
/// from somewhere else.
const OUR_TAGS: [&str; 38] = [
    "!doctype", "html", "head", "meta", "title", "link", "body", "header", "nav", "main", "a",
    "form", "button", "input", "select", "option", "label", "p", "h1", "h2", "section", "div",
    "dl", "dt", "dd", "span", "time", "table", "thead", "tbody", "tr", "th", "td", "pre", "code",
    "strong", "details", "summary",
];

/// Every tag of `html` is one of ours, no attribute is an event handler,
/// and no URL attribute is a `javascript:` URL.
fn assert_inert(html: &str, page: &str) {
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap();
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace())
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            OUR_TAGS.contains(&name.as_str()),
            "{page}: a <{name}> tag that is not the console's: <{tag}>"
        );
        for attribute in tag.split_whitespace().skip(1) {
            let Some((key, value)) = attribute.split_once('=') else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            assert!(
                !key.starts_with("on"),
                "{page}: an event handler in <{tag}>"
            );
            let value = value.trim_matches(|c| c == '"' || c == '\'').trim_start();
            if ["href", "src", "action", "formaction"].contains(&key.as_str()) {
                assert!(
                    !value.to_ascii_lowercase().starts_with("javascript:"),
                    "{page}: a javascript: URL in <{tag}>"
                );
            }
        }
    }
    for raw in [SCRIPT, IMG, "<img", "<svg", "onerror=alert(1)>"] {
        assert!(!html.contains(raw), "{page}: {raw} unescaped");
    }
}

async fn ok_page(app: &TestApp, cookie: &str, path: &str) -> Page {
    let page = console_get(app, Some(cookie), path).await;
    assert_eq!(page.status, 200, "{path}: {}", page.text);
    page
}

async fn a_hostile_payload_shows_as_text_on_every_page(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: HOSTILE_SOURCE.into(),
            ..TestOptions::default()
        },
    )
    .await;
    let body = json!({
        "id": SCRIPT,
        "type": IMG,
        "kind": JS_URL,
        "obj": "<svg onload=alert(1)>",
        "link": JS_URL,
        "html": format!(r#"<a href="{JS_URL}">click</a>"#),
    });
    let first = app.deliver("hostile", &[], &body).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let id = first.id();
    // The same id with another body: a duplicate whose payload differs.
    let mut other = body.clone();
    other["html"] = json!("<iframe src=\"javascript:alert(2)\"></iframe>");
    assert_eq!(app.deliver("hostile", &[], &other).await.status, 200);
    app.drain().await;

    let cookie = login(&app).await;
    for path in [
        "/console".to_string(),
        "/console/events".to_string(),
        "/console/events?source=hostile".to_string(),
        format!("/console/events/{id}"),
        "/console/duplicates".to_string(),
        format!("/console/events/{id}/variants"),
    ] {
        let page = ok_page(&app, &cookie, &path).await;
        assert_inert(&page.text, &path);
    }
    let detail = ok_page(&app, &cookie, &format!("/console/events/{id}")).await;
    // Shown, as text: the provider id, the action, the object, the payload.
    for escaped in [
        "&#60;script&#62;alert(1)&#60;/script&#62;",
        "&#34;&#62;&#60;img src=x onerror=alert(1)&#62;",
        "javascript:alert(document.cookie)",
        "&#60;svg onload=alert(1)&#62;",
        r#"&#60;a href=\&#34;javascript:alert(document.cookie)\&#34;&#62;click&#60;/a&#62;"#,
    ] {
        assert!(detail.text.contains(escaped), "{escaped} in the event page");
    }
    assert!(detail.text.contains("payload differs"));
    let duplicates = ok_page(&app, &cookie, "/console/duplicates").await;
    assert!(duplicates
        .text
        .contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    assert!(duplicates.text.contains("payload differs"));
}

async fn a_new_console_says_what_to_do_next(backend: Backend) {
    let app = spawn_app(backend).await;
    let cookie = login(&app).await;
    let overview = ok_page(&app, &cookie, "/console").await;
    assert!(overview.text.contains("No webhook has arrived yet."));
    assert!(overview.text.contains("hookledger replay fixtures/"));
    assert!(overview.text.contains("No destination is configured."));
    let events = ok_page(&app, &cookie, "/console/events").await;
    assert!(events.text.contains("No event has been received yet."));
    let duplicates = ok_page(&app, &cookie, "/console/duplicates").await;
    assert!(duplicates
        .text
        .contains("No event has been delivered twice yet."));
    let dead = ok_page(&app, &cookie, "/console/dead").await;
    assert!(dead.text.contains("No dead event."));
    let destinations = ok_page(&app, &cookie, "/console/destinations").await;
    assert!(destinations.text.contains("No destination is configured."));
}

async fn the_overview_counts_and_names_what_waits_longest(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(503)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(204)).await;
    let first = deliver_invoice(&app, "paid", "evt_1", "in_1").await;
    app.clock.advance_ms(90_000);
    let second = deliver_invoice(&app, "paid", "evt_2", "in_2").await;
    // The store's answer, on this backend: the first to arrive.
    let oldest = app.store.oldest_waiting_event().await.unwrap().unwrap();
    assert_eq!(oldest.id, first);
    let cookie = login(&app).await;
    let page = ok_page(&app, &cookie, "/console").await;
    assert!(page
        .text
        .contains(&format!("href=\"/console/events/{first}\">#{first}</a>")));
    assert!(page.text.contains("<span class=\"age\">1 min ago</span>"));
    assert!(page.text.contains("none: every delivery is finished"));

    app.drain().await;
    assert!(app.store.oldest_waiting_event().await.unwrap().is_none());
    drained(&app, "all").await;
    // The receiver answers 503: the deliveries to app wait for a retry.
    drained(&app, "app").await;
    assert_eq!(delivery_to(&app, second, "app").await.status, "failed");
    let page = ok_page(&app, &cookie, "/console").await;
    assert!(page.text.contains("none: every event is processed"));
    assert!(
        page.text.contains("to app, created"),
        "the oldest unfinished delivery"
    );
    // Ledger rows 2, done 2; deliveries: app 2 failed, all 2 delivered.
    let cards: Vec<&str> = page.text.split("class=\"card-value\">").skip(1).collect();
    assert!(cards[0].starts_with("2<"), "{}", cards[0]);
    // Per destination, in the order pending, delivering, delivered, failed, dead.
    let row = |name: &str| {
        let (_, rest) = page.text.split_once(&format!(">{name}</a></td>")).unwrap();
        rest.split("</tr>").next().unwrap().to_string()
    };
    let counts = |numbers: [i64; 5]| {
        numbers
            .iter()
            .map(|n| format!("<td class=\"num\">{n}</td>"))
            .collect::<String>()
    };
    assert!(
        row("app").contains(&counts([0, 0, 0, 2, 0])),
        "{}",
        row("app")
    );
    assert!(
        row("all").contains(&counts([0, 0, 2, 0, 0])),
        "{}",
        row("all")
    );
}

/// The ledger ids linked from an events list, in page order.
fn listed_ids(page: &Page) -> Vec<i64> {
    page.text
        .split("href=\"/console/events/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect()
}

/// The "Older" link of a list page, `&amp;`s decoded.
fn older_link(page: &Page) -> Option<String> {
    let (_, rest) = page.text.split_once("id=\"older\" href=\"")?;
    Some(rest.split('"').next().unwrap().replace("&amp;", "&"))
}

async fn events_filter_by_source_status_and_since_and_page_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut orders = Vec::new();
    for n in 0..51 {
        let id = app
            .deliver(
                "orders",
                &[("X-Request-Id", &format!("req-{n}"))],
                &json!({"n": n}),
            )
            .await
            .id();
        orders.push(id);
    }
    app.clock.advance_ms(60_000);
    let cut = hookledger::clock::rfc3339(app.clock.now_ms());
    let invoices = [
        deliver_invoice(&app, "stripe", "evt_1", "in_1").await,
        deliver_invoice(&app, "stripe", "evt_2", "in_2").await,
    ];
    let cookie = login(&app).await;

    let first = ok_page(&app, &cookie, "/console/events").await;
    let mut newest_first: Vec<i64> = orders.iter().chain(&invoices).copied().collect();
    newest_first.reverse();
    assert_eq!(listed_ids(&first), newest_first[..50]);
    let next = older_link(&first).expect("an Older link");
    let second = ok_page(&app, &cookie, &next).await;
    assert_eq!(listed_ids(&second), newest_first[50..]);
    assert!(older_link(&second).is_none(), "the last page");

    let stripe = ok_page(&app, &cookie, "/console/events?source=stripe").await;
    assert_eq!(listed_ids(&stripe), [invoices[1], invoices[0]]);
    assert!(stripe.text.contains(r#"<option value="stripe" selected>"#));
    let since = ok_page(
        &app,
        &cookie,
        &format!(
            "/console/events?since={}",
            url::form_urlencoded::byte_serialize(cut.as_bytes()).collect::<String>()
        ),
    )
    .await;
    assert_eq!(listed_ids(&since), [invoices[1], invoices[0]]);

    app.drain().await;
    let done = ok_page(&app, &cookie, "/console/events?status=done&source=stripe").await;
    assert_eq!(listed_ids(&done).len(), 2);
    let pending = ok_page(&app, &cookie, "/console/events?status=pending").await;
    assert!(listed_ids(&pending).is_empty());
    assert!(pending.text.contains("No event matches these filters."));

    for bad in ["status=sleeping", "since=yesterday", "cursor=nonsense"] {
        let page = console_get(&app, Some(&cookie), &format!("/console/events?{bad}")).await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(page.text.contains("notice-bad"), "{bad}");
    }
}

/// A source whose `noise` events are ignored.
const QUIET_SOURCE: &str = r#"
[sources.quiet]
preset = "generic"
verify = "off"
event_id = { pointer = "/id" }
action = { pointer = "/type" }
actions = { noise = "ignore" }
"#;

async fn replay_makes_the_event_pending_and_the_worker_makes_it_done(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            extra_toml: QUIET_SOURCE.into(),
            ..TestOptions::default()
        },
    )
    .await;
    let id = deliver_invoice(&app, "stripe", "evt_1", "in_1").await;
    let cookie = login(&app).await;
    let path = format!("/console/events/{id}");
    let pending = ok_page(&app, &cookie, &path).await;
    assert!(pending
        .text
        .contains(r#"<span class="status status-pending">pending</span>"#));
    assert!(
        !pending.text.contains("id=\"replay\""),
        "nothing to replay yet"
    );
    app.drain().await;
    let done = ok_page(&app, &cookie, &path).await;
    assert!(done
        .text
        .contains(r#"<span class="status status-done">done</span>"#));
    assert!(done.text.contains("id=\"replay\""));
    assert!(done.text.contains("&#34;in_1&#34;"), "the pretty payload");

    let answer = same_origin_post(&app, &cookie, &format!("{path}/replay"), &[]).await;
    assert_eq!(
        (answer.status, answer.location()),
        (303, format!("{path}?notice=replayed").as_str())
    );
    let replayed = ok_page(&app, &cookie, answer.location()).await;
    assert!(replayed.text.contains("Replayed: the event is pending"));
    assert!(replayed
        .text
        .contains(r#"<span class="status status-pending">pending</span>"#));
    assert_eq!(event(&app, id).await["status"], "pending");
    // Pressed again while it waits (the button is gone, but a second tab
    // may still show it): nothing changes, as in the API.
    let again = same_origin_post(&app, &cookie, &format!("{path}/replay"), &[]).await;
    assert_eq!(again.status, 303);
    assert_eq!(event(&app, id).await["status"], "pending");
    app.drain().await;
    let done = ok_page(&app, &cookie, &path).await;
    assert!(done
        .text
        .contains(r#"<span class="status status-done">done</span>"#));

    // An ignored event is never processed: refused, and said why.
    let ignored = app
        .deliver("quiet", &[], &json!({"id": "n-1", "type": "noise"}))
        .await;
    assert_eq!(ignored.body["status"], "ignored");
    let path = format!("/console/events/{}", ignored.id());
    assert!(!ok_page(&app, &cookie, &path)
        .await
        .text
        .contains("id=\"replay\""));
    let refused = same_origin_post(&app, &cookie, &format!("{path}/replay"), &[]).await;
    assert_eq!(refused.status, 409);
    assert!(refused.text.contains("Not replayed: event"));
    assert!(refused.text.contains("is ignored and is never processed."));
    let missing = same_origin_post(&app, &cookie, "/console/events/999999/replay", &[]).await;
    assert_eq!(missing.status, 404);
}

async fn the_variants_of_a_divergent_duplicate_show_the_paths_that_changed(backend: Backend) {
    let app = spawn_app(backend).await;
    let send = |body: serde_json::Value| {
        let app = &app;
        async move {
            app.deliver("orders", &[("X-Request-Id", "order-7")], &body)
                .await
        }
    };
    let first = send(json!({"total": 10, "customer": {"tier": "gold"}, "lines": [1, 2]})).await;
    let id = first.id();
    let path = format!("/console/events/{id}/variants");
    let cookie = login(&app).await;
    let none = ok_page(&app, &cookie, &path).await;
    assert!(none
        .text
        .contains("No copy of this event came with another body"));

    let other = json!({"total": 10, "customer": {"tier": "silver"}, "lines": [1], "note": "x"});
    for _ in 0..2 {
        assert_eq!(send(other.clone()).await.body["status"], "duplicate");
    }
    let page = ok_page(&app, &cookie, &path).await;
    for (pointer, change) in [
        ("/customer/tier", "changed"),
        ("/lines/1", "removed"),
        ("/note", "added"),
    ] {
        let row = format!(
            r#"<tr><td class="mono">{pointer}</td><td><span class="change change-{change}">{change}</span></td></tr>"#
        );
        assert!(page.text.contains(&row), "{row}");
    }
    assert!(
        !page.text.contains(r#"<td class="mono">/total</td>"#),
        "same value"
    );
    assert!(page.text.contains("2 copies, first seen"));
    assert!(page.text.contains("&#34;silver&#34;"), "the variant's body");
    // Linked from the event and from the duplicates list.
    let event = ok_page(&app, &cookie, &format!("/console/events/{id}")).await;
    assert!(event
        .text
        .contains(&format!(r#"id="variants" href="{path}""#)));
    let duplicates = ok_page(&app, &cookie, "/console/duplicates").await;
    assert!(duplicates.text.contains(&format!(r#"href="{path}""#)));
    let missing = console_get(&app, Some(&cookie), "/console/events/999999/variants").await;
    assert_eq!(missing.status, 404);
}

async fn retry_all_matching_shows_the_count_and_retries_only_when_confirmed(backend: Backend) {
    let (app, receiver) = app_with_receiver(backend).await;
    answer_with(&receiver, "/hooks/app", ResponseTemplate::new(422)).await;
    answer_with(&receiver, "/hooks/all", ResponseTemplate::new(204)).await;
    let ids = [
        deliver_invoice(&app, "paid", "evt_1", "in_1").await,
        deliver_invoice(&app, "paid", "evt_2", "in_2").await,
    ];
    app.drain().await;
    drained(&app, "app").await;
    drained(&app, "all").await;
    for id in ids {
        assert_eq!(delivery_to(&app, id, "app").await.status, "dead");
    }
    let cookie = login(&app).await;
    let dead = ok_page(&app, &cookie, "/console/dead").await;
    for id in ids {
        assert!(
            dead.text.contains(&format!("hl_{id}")),
            "delivery of {id} listed"
        );
    }
    assert!(dead.text.contains("422"));

    let count = same_origin_post(
        &app,
        &cookie,
        "/console/dead/retry",
        &[("destination", "app")],
    )
    .await;
    assert_eq!(count.status, 200, "{}", count.text);
    assert!(
        count.text.contains("<strong>2</strong> dead deliveries"),
        "{}",
        count.text
    );
    assert!(count.text.contains(r#"name="confirmed" value="2""#));
    for id in ids {
        assert_eq!(
            delivery_to(&app, id, "app").await.status,
            "dead",
            "only counted"
        );
    }
    let none = same_origin_post(
        &app,
        &cookie,
        "/console/dead/retry",
        &[("destination", "all")],
    )
    .await;
    assert!(none.text.contains("<strong>0</strong> dead deliveries"));
    assert!(!none.text.contains("confirm-retry"), "nothing to confirm");
    let unknown = same_origin_post(
        &app,
        &cookie,
        "/console/dead/retry",
        &[("destination", "nope")],
    )
    .await;
    assert_eq!(unknown.status, 400);

    let retried = same_origin_post(
        &app,
        &cookie,
        "/console/dead/retry",
        &[
            ("destination", "app"),
            ("since", ""),
            ("until", ""),
            ("confirmed", "2"),
        ],
    )
    .await;
    assert_eq!(
        (retried.status, retried.location()),
        (303, "/console/dead?retried=2")
    );
    for id in ids {
        let row = delivery_to(&app, id, "app").await;
        assert_eq!((row.status.as_str(), row.attempts), ("pending", 0));
    }
    let after = ok_page(&app, &cookie, retried.location()).await;
    assert!(after.text.contains("Retried 2 dead deliveries"));
}

async fn a_destination_is_paused_and_resumed_from_its_page(backend: Backend) {
    let (app, _receiver) = app_with_receiver(backend).await;
    let cookie = login(&app).await;
    let page = ok_page(&app, &cookie, "/console/destinations").await;
    assert!(page.text.contains("id=\"pause-app\""));
    let paused = same_origin_post(&app, &cookie, "/console/destinations/app/pause", &[]).await;
    assert_eq!(
        (paused.status, paused.location()),
        (303, "/console/destinations?paused=app")
    );
    assert!(app.store.destination_paused("app").await.unwrap());
    assert!(!app.store.destination_paused("all").await.unwrap());
    let page = ok_page(&app, &cookie, paused.location()).await;
    assert!(page.text.contains("Paused app"));
    assert!(page.text.contains("id=\"resume-app\""));
    let resumed = same_origin_post(&app, &cookie, "/console/destinations/app/resume", &[]).await;
    assert_eq!(resumed.status, 303);
    assert!(!app.store.destination_paused("app").await.unwrap());
    let unknown = same_origin_post(&app, &cookie, "/console/destinations/nope/pause", &[]).await;
    assert_eq!(unknown.status, 404);
}
