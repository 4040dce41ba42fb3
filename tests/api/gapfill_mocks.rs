//! Mock provider APIs for the gap-fill tests, paging as the real ones do.
//!
//! Their answers follow the providers' documented examples:
//! - Stripe, "List all events" (`GET /v1/events`, https://docs.stripe.com/api/events/list):
//!   a list object `{"object":"list","url":"/v1/events","has_more":…,"data":[…]}`,
//!   newest first, `created[gte]`, `limit`, `types[]`, `starting_after`; each
//!   item an event object (`id`, `object: "event"`, `api_version`, `created`,
//!   `data.object`, `livemode`, `pending_webhooks`, `request`, `type`), and a
//!   bad key answered 401 with `{"error":{"message":"Invalid API Key provided: …",
//!   "type":"invalid_request_error"}}`.
//! - GitHub, "List deliveries for a repository webhook" (`GET
//!   /repos/{owner}/{repo}/hooks/{hook_id}/deliveries`,
//!   https://docs.github.com/en/rest/webhooks/repo-deliveries): an array of
//!   `{"id":42,"guid":"58474f00-b361-11eb-836d-0e4f3503ccbe","delivered_at":
//!   "2021-05-12T20:33:44Z","redelivery":false,"duration":0.03,"status":
//!   "failed to connect","status_code":502,"event":"issues","action":"opened",
//!   "installation_id":123,"repository_id":123}`, paged by `per_page` and an
//!   opaque `cursor` given only in the `Link` header's `rel="next"`; and
//!   "Redeliver a delivery for a repository webhook" (`POST
//!   …/deliveries/{delivery_id}/attempts`), answered 202 Accepted.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};
use wiremock::{Request, Respond, ResponseTemplate};

pub const STRIPE_KEY: &str = "rk_test_gapfill";
pub const GITHUB_TOKEN: &str = "ghp_test_gapfill";
pub const HOOK: &str = "repos/octo-org/octo-repo/hooks/12345678";

/// A request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

impl Seen {
    fn of(request: &Request) -> Seen {
        Seen {
            method: request.method.to_string(),
            path: request.url.path().to_string(),
            query: request.url.query_pairs().into_owned().collect(),
            headers: request
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            at: Instant::now(),
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Faults a mock answers with, each once, in order: before the n-th
/// request (counting from 1) it answers this status instead.
#[derive(Debug, Clone, Default)]
pub struct Faults(pub Vec<(usize, u16, Option<&'static str>)>);

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
}

/// `GET /v1/events`: the events given (any order), served newest first,
/// `page` per page (fewer than Stripe's 100, so 50 events span pages).
#[derive(Clone)]
pub struct StripeEvents {
    events: Arc<Mutex<Vec<Value>>>,
    page: usize,
    faults: Faults,
    state: Arc<Mutex<State>>,
}

impl StripeEvents {
    pub fn new(page: usize, faults: Faults) -> StripeEvents {
        StripeEvents {
            events: Arc::default(),
            page,
            faults,
            state: Arc::default(),
        }
    }

    /// Makes `events` listable (as Stripe does once they are created).
    pub fn add(&self, events: impl IntoIterator<Item = Value>) {
        self.events.lock().unwrap().extend(events);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

impl Respond for StripeEvents {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let seen = Seen::of(request);
        let n = {
            let mut state = self.state.lock().unwrap();
            state.seen.push(seen.clone());
            state.seen.len()
        };
        if let Some(answer) = fault(&self.faults, n) {
            return answer;
        }
        if seen.header("authorization") != Some(&format!("Bearer {STRIPE_KEY}")) {
            return ResponseTemplate::new(401).set_body_json(json!({
                "error": {
                    "message": "Invalid API Key provided: rk_test_****",
                    "type": "invalid_request_error"
                }
            }));
        }
        let gte: i64 = seen
            .param("created[gte]")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let types: Vec<&str> = seen
            .query
            .iter()
            .filter(|(k, _)| k == "types[]")
            .map(|(_, v)| v.as_str())
            .collect();
        let mut listed: Vec<Value> = self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["created"].as_i64().unwrap() >= gte)
            .filter(|e| types.is_empty() || types.contains(&e["type"].as_str().unwrap()))
            .cloned()
            .collect();
        // Newest first; equal times by id, descending, as a stable order.
        listed.sort_by(|a, b| {
            (b["created"].as_i64(), b["id"].as_str())
                .cmp(&(a["created"].as_i64(), a["id"].as_str()))
        });
        if let Some(after) = seen.param("starting_after") {
            let at = listed
                .iter()
                .position(|e| e["id"] == after)
                .expect("starting_after names a listed event");
            listed.drain(..=at);
        }
        let limit: usize = seen
            .param("limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10);
        let take = limit.min(self.page);
        let has_more = listed.len() > take;
        listed.truncate(take);
        ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "url": "/v1/events",
            "has_more": has_more,
            "data": listed,
        }))
    }
}

/// A fault's answer for the n-th request, if one is due.
fn fault(faults: &Faults, n: usize) -> Option<ResponseTemplate> {
    let (_, status, retry_after) = faults.0.iter().find(|(at, _, _)| *at == n)?;
    let mut answer = ResponseTemplate::new(*status).set_body_json(json!({
        "error": { "message": "mock fault", "type": "api_error" }
    }));
    if let Some(after) = retry_after {
        answer = answer.insert_header("Retry-After", *after);
    }
    Some(answer)
}

/// A Stripe event as "List all events" shows one.
pub fn listed_event(n: usize, created: i64) -> Value {
    json!({
        "id": format!("evt_1NG8Du2eZvKYlo2C{n:08}"),
        "object": "event",
        "api_version": "2019-02-19",
        "created": created,
        "data": {
            "object": {
                "id": format!("seti_1NG8Du2eZvKYlo2C{n:08}"),
                "object": "setup_intent",
                "status": "requires_confirmation",
                "livemode": false
            }
        },
        "livemode": false,
        "pending_webhooks": 0,
        "request": { "id": null, "idempotency_key": null },
        "type": "setup_intent.created"
    })
}

/// `GET /<hook>/deliveries` and `POST /<hook>/deliveries/{id}/attempts`.
#[derive(Clone)]
pub struct GithubDeliveries {
    deliveries: Arc<Mutex<Vec<Value>>>,
    page: usize,
    /// The API's origin, for the `Link` header.
    origin: Arc<Mutex<String>>,
    /// Where the next link points instead (a hostile answer), if set.
    link_to: Arc<Mutex<Option<String>>>,
    state: Arc<Mutex<State>>,
}

impl GithubDeliveries {
    pub fn new(origin: &str, page: usize) -> GithubDeliveries {
        GithubDeliveries {
            deliveries: Arc::default(),
            page,
            origin: Arc::new(Mutex::new(origin.to_string())),
            link_to: Arc::default(),
            state: Arc::default(),
        }
    }

    pub fn add(&self, deliveries: impl IntoIterator<Item = Value>) {
        self.deliveries.lock().unwrap().extend(deliveries);
    }

    pub fn link_to(&self, origin: &str) {
        *self.link_to.lock().unwrap() = Some(origin.to_string());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The delivery ids whose redelivery was asked for, in order.
    pub fn redelivered(&self) -> Vec<i64> {
        self.seen()
            .iter()
            .filter(|s| s.method == "POST")
            .map(|s| {
                s.path
                    .trim_end_matches("/attempts")
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    }
}

impl Respond for GithubDeliveries {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let seen = Seen::of(request);
        self.state.lock().unwrap().seen.push(seen.clone());
        if seen.header("authorization") != Some(&format!("Bearer {GITHUB_TOKEN}")) {
            return ResponseTemplate::new(401).set_body_json(json!({
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest"
            }));
        }
        if seen.method == "POST" {
            return ResponseTemplate::new(202).set_body_json(json!({}));
        }
        let mut all = self.deliveries.lock().unwrap().clone();
        // Newest first, as GitHub lists them.
        all.sort_by(|a, b| b["id"].as_i64().cmp(&a["id"].as_i64()));
        // The cursor names the delivery id a page starts after.
        if let Some(cursor) = seen.param("cursor") {
            let after: i64 = cursor.trim_start_matches("v1_").parse().unwrap();
            all.retain(|d| d["id"].as_i64().unwrap() < after);
        }
        let per_page: usize = seen
            .param("per_page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        let take = per_page.min(self.page);
        let more = all.len() > take;
        all.truncate(take);
        let mut answer = ResponseTemplate::new(200).set_body_json(Value::Array(all.clone()));
        if more {
            let last = all.last().unwrap()["id"].as_i64().unwrap();
            let origin = self
                .link_to
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| self.origin.lock().unwrap().clone());
            answer = answer.insert_header(
                "Link",
                format!(
                    "<{origin}{}?per_page={per_page}&cursor=v1_{last}>; rel=\"next\"",
                    seen.path
                )
                .as_str(),
            );
        }
        answer
    }
}

/// A delivery as "List deliveries for a repository webhook" shows one.
pub fn listed_delivery(n: i64, guid: &str, delivered_at_ms: i64) -> Value {
    json!({
        "id": n,
        "guid": guid,
        "delivered_at": chrono::DateTime::from_timestamp_millis(delivered_at_ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "redelivery": false,
        "duration": 0.03,
        "status": "failed to connect",
        "status_code": 502,
        "event": "issues",
        "action": "opened",
        "installation_id": 123,
        "repository_id": 123
    })
}
