//! Hostile input, black-box: a table of requests no provider would send —
//! broken bodies, huge and endless bodies, odd media types, oversized and
//! malformed headers, odd source names, garbage and truncated signatures for
//! every scheme, stale and future timestamps, oversized ids — each answered
//! with its status and error code, none of them moving the ledger, and the
//! server still taking a good delivery afterwards. Inputs that look hostile
//! but are legitimate (ids with `/ ? # ..` or newlines, form bodies with
//! repeated and empty keys, values right at a limit) are checked to be
//! accepted verbatim and to dedup.
//!
//! Requests that break HTTP itself go over a raw TCP connection, so the exact
//! bytes reach the server (an HTTP client would normalise `..` away or refuse
//! to send them); what is asserted there is what such a client sees.
//!
//! This file holds the shared types and helpers and runs the table: its cases
//! are built by topic in `cases_*.rs` from one [`Fixture`] (correctly signed
//! deliveries for every scheme) and run as one test per backend, on one app,
//! with the failures reported together. The other files hold the tests that
//! are more than one request each.

use std::io::{Read, Write};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

mod cases_bodies;
mod cases_headers;
mod cases_ids;
mod cases_signatures;
mod endless_bodies;
mod forms_and_limits;
mod ids;

backend_tests!(hostile_requests_are_refused_with_their_code_and_store_nothing,);

/// A header as sent: the value is bytes, so non-UTF-8 values can be sent too.
type Header = (String, Vec<u8>);

fn header(name: &str, value: impl Into<Vec<u8>>) -> Header {
    (name.to_string(), value.into())
}

fn to_headers(pairs: Vec<(String, String)>) -> Vec<Header> {
    pairs
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect()
}

/// `headers` with every `name` (any case) replaced by one `value`.
fn replaced(mut headers: Vec<Header>, name: &str, value: impl Into<Vec<u8>>) -> Vec<Header> {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers.push(header(name, value));
    headers
}

/// `headers` without `name` (any case).
fn without(mut headers: Vec<Header>, name: &str) -> Vec<Header> {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers
}

fn value_of<'h>(headers: &'h [Header], name: &str) -> &'h str {
    let (_, v) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no {name} header"));
    std::str::from_utf8(v).unwrap()
}

enum Request {
    /// Through the test's HTTP client.
    Http {
        path: String,
        headers: Vec<Header>,
        body: Vec<u8>,
    },
    /// These exact bytes, on a fresh TCP connection.
    Raw(Vec<u8>),
}

enum Expect {
    /// hookledger's own answer: this status, the `{"error":{…}}` envelope with this code.
    Error(u16, &'static str),
    /// Refused by the HTTP layer before any handler runs: one of these
    /// statuses without hookledger's envelope, or the connection closed.
    HttpLayer(&'static [u16]),
    /// Either of the two: which layer answers depends on how the bytes
    /// arrive (actix checks its head limit only while a head is incomplete,
    /// and a broken chunk may be seen by the handler or by the codec first).
    HttpLayerOr(&'static [u16], u16, &'static str),
}

struct Case {
    name: String,
    request: Request,
    expect: Expect,
    /// Check right after this case that a good delivery is still accepted.
    huge: bool,
}

fn http(path: &str, headers: Vec<Header>, body: impl Into<Vec<u8>>) -> Request {
    Request::Http {
        path: path.to_string(),
        headers,
        body: body.into(),
    }
}

/// A complete HTTP/1.1 POST with `Connection: close`, as bytes.
fn raw_post(path: &str, headers: &[Header], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// What the client saw.
#[derive(Debug)]
enum Seen {
    Answer {
        status: u16,
        body: Value,
    },
    /// The connection closed or reset without an answer.
    Closed(String),
}

/// Sends `request` on a connection of its own (see [`send_on`]).
async fn send(app: &TestApp, request: Request) -> Seen {
    // actix closes the connection after a 431 without always saying
    // `Connection: close`, so a pooled client may pick that connection for
    // its next request and fail; hostile requests get a client of their own.
    send_on(app, &reqwest::Client::new(), request).await
}

async fn send_on(app: &TestApp, client: &reqwest::Client, request: Request) -> Seen {
    match request {
        Request::Http {
            path,
            headers,
            body,
        } => {
            let mut builder = client.post(format!("{}{}", app.address, path)).body(body);
            for (name, value) in headers {
                builder = builder.header(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(&value).unwrap(),
                );
            }
            let response = match builder.send().await {
                Ok(r) => r,
                Err(e) => return Seen::Closed(format!("{e:?}")),
            };
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(bytes) => Seen::Answer {
                    status,
                    body: body_value(&bytes),
                },
                Err(e) => Seen::Closed(format!("{e:?}")),
            }
        }
        Request::Raw(bytes) => raw_exchange(app.port, bytes).await,
    }
}

fn body_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// Writes `request` on a fresh connection and reads until the server closes
/// it. A server that neither answers nor closes within 20 s fails the test.
async fn raw_exchange(port: u16, request: Vec<u8>) -> Seen {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // The server may answer and close before it has read everything.
        let write_error = stream.write_all(&request).err();
        let mut received = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let read_error = loop {
            match stream.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = &read_error {
            assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the server neither answered nor closed within 20 s"
            );
        }
        parse_raw_answer(&received).unwrap_or_else(|| {
            Seen::Closed(format!(
                "no answer (write: {write_error:?}, read: {read_error:?}, {} bytes)",
                received.len()
            ))
        })
    })
    .await
    .unwrap()
}

fn parse_raw_answer(bytes: &[u8]) -> Option<Seen> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Seen::Answer {
        status,
        body: body_value(&bytes[end + 4..]),
    })
}

/// Whether `seen` is what `expect` asks for; what differs, if not.
fn check(expect: &Expect, seen: &Seen) -> Result<(), String> {
    match (expect, seen) {
        (Expect::Error(status, code), Seen::Answer { status: s, body }) => {
            let message = body["error"]["message"].as_str();
            if s != status || body["error"]["code"] != *code || message.is_none() {
                return Err(format!("expected {status} {code}, got {s} {body}"));
            }
            if message.is_some_and(|m| m.len() > 512) {
                return Err(format!(
                    "the message echoes hostile input at length: {body}"
                ));
            }
            Ok(())
        }
        (Expect::HttpLayer(statuses), Seen::Answer { status, body }) => {
            if !statuses.contains(status) || body.get("error").is_some() {
                return Err(format!(
                    "expected one of {statuses:?} from the HTTP layer, got {status} {body}"
                ));
            }
            Ok(())
        }
        (Expect::HttpLayer(_), Seen::Closed(_)) => Ok(()),
        (Expect::HttpLayerOr(statuses, status, code), seen) => match seen {
            Seen::Answer { body, .. } if body.get("error").is_some() => {
                check(&Expect::Error(*status, code), seen)
            }
            _ => check(&Expect::HttpLayer(statuses), seen),
        },
        (Expect::Error(status, code), Seen::Closed(e)) => Err(format!(
            "expected {status} {code}, the connection closed: {e}"
        )),
    }
}

/// Delivers a fresh, correctly signed Stripe event and expects it accepted.
async fn assert_still_serving(app: &TestApp, alive: &mut i64, after: &str) {
    *alive += 1;
    let event = serde_json::to_vec(&stripe_event(
        &format!("evt_alive_{alive}"),
        "invoice.paid",
        app.now_secs(),
        json!({"id": "in_alive", "object": "invoice"}),
    ))
    .unwrap();
    let headers =
        to_headers(app.signed_headers("stripe", &[("Content-Type", "application/json")], &event));
    let seen = send_on(app, &app.client, http("/webhooks/stripe", headers, event)).await;
    match &seen {
        Seen::Answer { status: 202, body } if body["status"] == "accepted" => {}
        _ => panic!("a good delivery after {after}: {seen:?}"),
    }
}

/// The answers the cases expect most often.
const BAD: Expect = Expect::Error(400, "invalid_payload");
const INVALID: Expect = Expect::Error(401, "invalid_signature");
const MISSING: Expect = Expect::Error(401, "missing_signature");
const STALE: Expect = Expect::Error(401, "timestamp_out_of_tolerance");
const UNKNOWN: Expect = Expect::Error(404, "unknown_source");
const MEDIA: Expect = Expect::Error(415, "unsupported_media_type");
const TOO_LARGE: Expect = Expect::Error(413, "payload_too_large");

/// The size of the huge header and media-type values (actix buffers heads up
/// to 128 KiB, so these reach the handler).
const KB100: usize = 100 * 1024;

/// Correctly signed headers for the app's sources, as [`Header`]s.
trait Sign {
    /// Signed headers, JSON content type unless `extra` says otherwise.
    fn signed(&self, source: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<Header>;
    /// Signed headers with a form content type.
    fn signed_form(&self, source: &str, body: &[u8]) -> Vec<Header>;
    /// Stripe headers signed (correctly) at time `t`.
    fn stripe_at(&self, t: i64, body: &[u8]) -> Vec<Header>;
    /// Standard Webhooks headers for message `id`, signed (correctly) at time `t`.
    fn standard_at(&self, id: &str, t: i64, body: &[u8]) -> Vec<Header>;
}

impl Sign for TestApp {
    fn signed(&self, source: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<Header> {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(extra);
        to_headers(self.signed_headers(source, &all, body))
    }

    fn signed_form(&self, source: &str, body: &[u8]) -> Vec<Header> {
        to_headers(self.signed_headers(
            source,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body,
        ))
    }

    fn stripe_at(&self, t: i64, body: &[u8]) -> Vec<Header> {
        let no_headers: Vec<(String, String)> = Vec::new();
        let mut headers = to_headers(self.source("stripe").sign(&no_headers, body, t));
        headers.push(header("Content-Type", "application/json"));
        headers
    }

    fn standard_at(&self, id: &str, t: i64, body: &[u8]) -> Vec<Header> {
        let mut headers = to_headers(self.source("standard").sign(
            &vec![("webhook-id".to_string(), id.to_string())],
            body,
            t,
        ));
        headers.push(header("Content-Type", "application/json"));
        headers
    }
}

/// What the case tables share: the app, its time and body limit, and one
/// correctly signed delivery per scheme — its body, its headers and the
/// value of its signature header — for the cases to break.
struct Fixture<'a> {
    app: &'a TestApp,
    now: i64,
    limit: usize,
    json_type: Header,
    /// A Stripe `invoice.paid` event.
    event: Vec<u8>,
    stripe_ok: Vec<Header>,
    /// The hex of the `v1` entry of `stripe_ok`'s `Stripe-Signature`.
    stripe_v1: String,
    github_body: Vec<u8>,
    github_ok: Vec<Header>,
    github_sig: String,
    shopify_body: Vec<u8>,
    shopify_ok: Vec<Header>,
    shopify_sig: String,
    /// A form body.
    acuity_body: Vec<u8>,
    acuity_ok: Vec<Header>,
    acuity_sig: String,
    standard_body: Vec<u8>,
    standard_ok: Vec<Header>,
    standard_sig: String,
    billing_body: Vec<u8>,
    billing_ok: Vec<Header>,
    /// The hex of `billing_ok`'s `X-Signature`, without its `sha256=`.
    billing_hex: String,
}

impl<'a> Fixture<'a> {
    fn new(app: &'a TestApp) -> Self {
        let now = app.now_secs();
        let event = serde_json::to_vec(&stripe_event(
            "evt_hostile",
            "invoice.paid",
            now,
            json!({"id": "in_hostile", "object": "invoice"}),
        ))
        .unwrap();
        let stripe_ok = app.signed("stripe", &[], &event);
        let stripe_sig = value_of(&stripe_ok, "Stripe-Signature").to_string();
        let stripe_v1 = stripe_sig.split_once(",v1=").unwrap().1.to_string();

        let github_body = br#"{"action":"opened","issue":{"id":1347,"number":1}}"#.to_vec();
        let github_ok = app.signed(
            "github",
            &[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "d-1")],
            &github_body,
        );
        let github_sig = value_of(&github_ok, "X-Hub-Signature-256").to_string();

        let shopify_body = br#"{"id":820982911946154500,"email":"jon@example.com"}"#.to_vec();
        let shopify_ok = app.signed(
            "shopify",
            &[
                ("X-Shopify-Topic", "orders/create"),
                ("X-Shopify-Event-Id", "e-1"),
            ],
            &shopify_body,
        );
        let shopify_sig = value_of(&shopify_ok, "X-Shopify-Hmac-Sha256").to_string();

        let acuity_body = b"action=scheduled&id=12345&calendarID=1".to_vec();
        let acuity_ok = app.signed_form("acuity", &acuity_body);
        let acuity_sig = value_of(&acuity_ok, "X-Acuity-Signature").to_string();

        let standard_body = br#"{"type":"invoice.paid","data":{"id":"inv_1"}}"#.to_vec();
        let standard_ok = app.standard_at("msg_hostile", now, &standard_body);
        let standard_sig = value_of(&standard_ok, "webhook-signature").to_string();

        let billing_body = br#"{"invoice":{"id":"INV-1"},"total":10}"#.to_vec();
        let billing_ok = app.signed("billing", &[], &billing_body);
        let billing_sig = value_of(&billing_ok, "X-Signature").to_string();
        let billing_hex = billing_sig.strip_prefix("sha256=").unwrap().to_string();

        Fixture {
            app,
            now,
            limit: app.config.server.max_body_bytes,
            json_type: header("Content-Type", "application/json"),
            event,
            stripe_ok,
            stripe_v1,
            github_body,
            github_ok,
            github_sig,
            shopify_body,
            shopify_ok,
            shopify_sig,
            acuity_body,
            acuity_ok,
            acuity_sig,
            standard_body,
            standard_ok,
            standard_sig,
            billing_body,
            billing_ok,
            billing_hex,
        }
    }

    /// A Stripe event of this id, type and object id, at `now`.
    fn stripe_with(&self, id: &str, kind: &str, object_id: &str) -> Vec<u8> {
        serde_json::to_vec(&stripe_event(
            id,
            kind,
            self.now,
            json!({"id": object_id, "object": "invoice"}),
        ))
        .unwrap()
    }
}

async fn hostile_requests_are_refused_with_their_code_and_store_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let fixture = Fixture::new(&app);
    let mut cases = cases_bodies::cases(&fixture);
    cases.extend(cases_headers::cases(&fixture));
    cases.extend(cases_signatures::cases(&fixture));
    cases.extend(cases_ids::cases(&fixture));

    // The ones that cost the most are each followed by a good delivery.
    for case in &mut cases {
        case.huge = case.name.starts_with("deep:")
            || case.name.starts_with("size:")
            || case.name.starts_with("headers:")
            || case.name.contains("10 KB");
    }

    assert!(cases.len() >= 30, "{} cases", cases.len());
    // Every case runs; the failures are reported together.
    let mut alive = 0;
    let mut failures = Vec::new();
    for Case {
        name,
        request,
        expect,
        huge,
    } in cases
    {
        let seen = send(&app, request).await;
        if let Err(e) = check(&expect, &seen) {
            failures.push(format!("{name}: {e}"));
        }
        let total = app.ledger_total().await;
        if total != alive {
            failures.push(format!("{name}: the ledger moved to {total}"));
            alive = total;
        }
        if huge {
            assert_still_serving(&app, &mut alive, &name).await;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_still_serving(&app, &mut alive, "the whole matrix").await;
    assert_eq!(app.ledger_total().await, alive);

    // No hostile source name became a metric label.
    let metrics = app.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(text.contains("source=\"_unknown\""), "{text}");
    for odd in ["..", "%2e", "sss", "STRIPE", "stripé"] {
        assert!(
            !text.contains(&format!("source=\"{odd}")),
            "{odd} in\n{text}"
        );
    }
}
