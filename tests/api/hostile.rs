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

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

backend_tests!(
    hostile_requests_are_refused_with_their_code_and_store_nothing,
    endless_chunked_bodies_are_cut_off_at_the_limit,
    ids_and_actions_with_url_syntax_and_newlines_are_kept_verbatim_and_dedup,
    form_bodies_with_repeated_and_empty_keys_are_accepted,
    values_right_at_the_limits_are_accepted,
    ids_with_nul_characters_are_not_a_storage_failure,
    a_nul_id_does_not_fail_the_other_deliveries_in_its_batch,
);

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

/// `depth` nested objects around `1`: `{"a":{"a":…1…}}`.
fn nested_objects(depth: usize) -> Vec<u8> {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes()
}

async fn hostile_requests_are_refused_with_their_code_and_store_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.now_secs();
    let limit = app.config.server.max_body_bytes;
    let json_type = header("Content-Type", "application/json");

    // Correctly signed headers, JSON content type unless `extra` says otherwise.
    let signed = |source: &str, extra: &[(&str, &str)], body: &[u8]| -> Vec<Header> {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(extra);
        to_headers(app.signed_headers(source, &all, body))
    };
    let signed_form = |source: &str, body: &[u8]| -> Vec<Header> {
        to_headers(app.signed_headers(
            source,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body,
        ))
    };
    let no_headers: Vec<(String, String)> = Vec::new();
    // Stripe headers signed (correctly) at time `t`.
    let stripe_at = |t: i64, body: &[u8]| -> Vec<Header> {
        let mut headers = to_headers(app.source("stripe").sign(&no_headers, body, t));
        headers.push(header("Content-Type", "application/json"));
        headers
    };
    // Standard Webhooks headers for message `id`, signed (correctly) at time `t`.
    let standard_at = |id: &str, t: i64, body: &[u8]| -> Vec<Header> {
        let mut headers = to_headers(app.source("standard").sign(
            &vec![("webhook-id".to_string(), id.to_string())],
            body,
            t,
        ));
        headers.push(header("Content-Type", "application/json"));
        headers
    };

    let event = serde_json::to_vec(&stripe_event(
        "evt_hostile",
        "invoice.paid",
        now,
        json!({"id": "in_hostile", "object": "invoice"}),
    ))
    .unwrap();
    let stripe_ok = signed("stripe", &[], &event);
    let stripe_sig = value_of(&stripe_ok, "Stripe-Signature").to_string();
    let stripe_v1 = stripe_sig.split_once(",v1=").unwrap().1.to_string();

    let github_body = br#"{"action":"opened","issue":{"id":1347,"number":1}}"#.to_vec();
    let github_ok = signed(
        "github",
        &[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "d-1")],
        &github_body,
    );
    let github_sig = value_of(&github_ok, "X-Hub-Signature-256").to_string();

    let shopify_body = br#"{"id":820982911946154500,"email":"jon@example.com"}"#.to_vec();
    let shopify_ok = signed(
        "shopify",
        &[
            ("X-Shopify-Topic", "orders/create"),
            ("X-Shopify-Event-Id", "e-1"),
        ],
        &shopify_body,
    );
    let shopify_sig = value_of(&shopify_ok, "X-Shopify-Hmac-Sha256").to_string();

    let acuity_body = b"action=scheduled&id=12345&calendarID=1".to_vec();
    let acuity_ok = signed_form("acuity", &acuity_body);
    let acuity_sig = value_of(&acuity_ok, "X-Acuity-Signature").to_string();

    let standard_body = br#"{"type":"invoice.paid","data":{"id":"inv_1"}}"#.to_vec();
    let standard_ok = standard_at("msg_hostile", now, &standard_body);
    let standard_sig = value_of(&standard_ok, "webhook-signature").to_string();

    let billing_body = br#"{"invoice":{"id":"INV-1"},"total":10}"#.to_vec();
    let billing_ok = signed("billing", &[], &billing_body);
    let billing_sig = value_of(&billing_ok, "X-Signature").to_string();
    let billing_hex = billing_sig.strip_prefix("sha256=").unwrap().to_string();

    let deep = nested_objects(100_000);
    let deep_arrays = format!(
        "{{\"id\":\"evt_deep\",\"a\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    )
    .into_bytes();
    let unclosed = "[".repeat(100_000).into_bytes();
    let over_limit = {
        let mut body = br#"{"id":"evt_big","pad":""#.to_vec();
        body.resize(limit - 1, b'x');
        body.extend_from_slice(b"\"}");
        assert_eq!(body.len(), limit + 1);
        body
    };
    let kb100 = 100 * 1024;
    let id_10kb = "e".repeat(10 * 1024);
    let stripe_with = |id: &str, kind: &str, object_id: &str| -> Vec<u8> {
        serde_json::to_vec(&stripe_event(
            id,
            kind,
            now,
            json!({"id": object_id, "object": "invoice"}),
        ))
        .unwrap()
    };

    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name: &str, request: Request, expect: Expect| {
        cases.push(Case {
            name: name.to_string(),
            request,
            expect,
            huge: false,
        })
    };
    use Expect::{Error, HttpLayer, HttpLayerOr};
    const BAD: Expect = Error(400, "invalid_payload");
    const INVALID: Expect = Error(401, "invalid_signature");
    const MISSING: Expect = Error(401, "missing_signature");
    const STALE: Expect = Error(401, "timestamp_out_of_tolerance");
    const UNKNOWN: Expect = Error(404, "unknown_source");
    const MEDIA: Expect = Error(415, "unsupported_media_type");
    const TOO_LARGE: Expect = Error(413, "payload_too_large");

    // ---- Bodies that are not a JSON object, each correctly signed.
    for (name, body) in [
        (
            "trailing data after the object",
            &br#"{"id":"evt_t"} {}"#[..],
        ),
        ("byte order mark", b"\xEF\xBB\xBF{\"id\":\"evt_bom\"}"),
        ("single-quoted JSON", b"{'id':'evt_q'}"),
        ("NaN literal", br#"{"id":"evt_n","amount":NaN}"#),
        ("number out of range", br#"{"id":"evt_n","amount":1e999}"#),
        ("lone surrogate escape", br#"{"id":"\ud800"}"#),
        ("unescaped control character", b"{\"id\":\"a\x01b\"}"),
        ("truncated object", br#"{"id":"evt_trunc","data":{"obj"#),
        ("JSON null", b"null"),
        ("JSON string", br#""evt_1""#),
        ("JSON true", b"true"),
        ("array of objects", br#"[{"id":"evt_a"}]"#),
        ("whitespace only", b" \r\n\t "),
        ("NUL bytes", b"\0\0\0\0"),
        ("overlong UTF-8", b"{\"id\":\"\xC0\xAF\"}"),
        ("UTF-16 surrogate bytes", b"{\"id\":\"\xED\xA0\x80\"}"),
        (
            "UTF-16LE encoded JSON",
            b"{\0\"\0i\0d\0\"\0:\0\"\0x\0\"\0}\0",
        ),
    ] {
        add(
            &format!("body: {name}"),
            http("/webhooks/stripe", signed("stripe", &[], body), body),
            BAD,
        );
    }
    add(
        "body: invalid UTF-8 in a form body",
        http(
            "/webhooks/acuity",
            signed_form("acuity", b"action=scheduled&id=\xff"),
            &b"action=scheduled&id=\xff"[..],
        ),
        BAD,
    );
    add(
        "body: JSON sent as an empty form",
        http("/webhooks/acuity", signed_form("acuity", b""), &b""[..]),
        BAD,
    );

    // ---- Deep nesting, correctly signed: serde_json's recursion limit, not a stack overflow.
    for (name, body) in [
        ("100 000 nested objects", &deep),
        ("100 000 nested arrays in an object", &deep_arrays),
        ("100 000 unclosed brackets", &unclosed),
    ] {
        add(
            &format!("deep: {name}"),
            http(
                "/webhooks/stripe",
                signed("stripe", &[], body),
                body.clone(),
            ),
            BAD,
        );
    }

    // ---- Size: refused from Content-Length before reading, or while streaming.
    add(
        "size: one byte over the limit",
        http(
            "/webhooks/stripe",
            signed("stripe", &[], &over_limit),
            over_limit.clone(),
        ),
        TOO_LARGE,
    );
    add(
        "size: 10 GB declared, nothing sent",
        Request::Raw(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Stripe-Signature: t=1,v1=00\r\nContent-Length: 10000000000\r\n\r\n"
                .to_vec(),
        ),
        TOO_LARGE,
    );
    add(
        "size: chunked, over the limit",
        Request::Raw({
            let mut raw = b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
            for chunk in over_limit.chunks(64 * 1024) {
                raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                raw.extend_from_slice(chunk);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            raw
        }),
        TOO_LARGE,
    );
    add(
        "size: Content-Length beyond u64",
        Request::Raw(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 99999999999999999999999\r\n\r\n{}"
                .to_vec(),
        ),
        HttpLayer(&[400]),
    );
    add(
        "size: malformed chunk size",
        Request::Raw(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
              Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
              zz\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
        ),
        HttpLayerOr(&[400], 400, "invalid_payload"),
    );
    add(
        "size: chunk size overflowing u64",
        Request::Raw(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
              Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
              fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
        ),
        HttpLayerOr(&[400], 400, "invalid_payload"),
    );

    // ---- Content type: missing, wrong, malformed, huge.
    for (name, value) in [
        ("text/json", &b"text/json"[..]),
        ("application/json-seq", b"application/json-seq"),
        ("multipart/form-data", b"multipart/form-data; boundary=xyz"),
        ("empty", b""),
        ("parameters only", b"; charset=utf-8"),
        ("non-UTF-8 bytes", b"application/json\xff"),
        ("two types in one", b"application/json, text/plain"),
    ] {
        add(
            &format!("content type: {name}"),
            http(
                "/webhooks/stripe",
                replaced(stripe_ok.clone(), "Content-Type", value),
                event.clone(),
            ),
            MEDIA,
        );
    }
    add(
        "content type: 100 KB subtype",
        http(
            "/webhooks/stripe",
            replaced(
                stripe_ok.clone(),
                "Content-Type",
                format!("application/{}", "x".repeat(kb100)),
            ),
            event.clone(),
        ),
        MEDIA,
    );

    // ---- The order of the checks: the first failure answers.
    add(
        "order: unknown source beats missing type and size",
        http("/webhooks/nope", vec![], over_limit.clone()),
        UNKNOWN,
    );
    add(
        "order: content type beats size",
        http(
            "/webhooks/stripe",
            vec![header("Content-Type", "text/plain")],
            over_limit.clone(),
        ),
        MEDIA,
    );
    add(
        "order: size beats a missing signature",
        http(
            "/webhooks/stripe",
            vec![json_type.clone()],
            over_limit.clone(),
        ),
        TOO_LARGE,
    );
    add(
        "order: a missing signature beats malformed JSON",
        http(
            "/webhooks/stripe",
            vec![json_type.clone()],
            &b"{\"id\":"[..],
        ),
        MISSING,
    );
    add(
        "order: a bad signature beats 100 000-deep JSON",
        http(
            "/webhooks/stripe",
            replaced(
                stripe_ok.clone(),
                "Stripe-Signature",
                format!("t={now},v1={}", "0".repeat(64)),
            ),
            deep.clone(),
        ),
        INVALID,
    );

    // ---- Headers: 100 KB values reach the handler (actix buffers heads up to
    // 128 KiB); a head beyond that, or beyond 96 headers, is refused with 431.
    add(
        "headers: 100 KB Stripe-Signature of v1 entries",
        http(
            "/webhooks/stripe",
            replaced(
                stripe_ok.clone(),
                "Stripe-Signature",
                format!(
                    "t={now}{}",
                    format!(",v1={}", "ab".repeat(32)).repeat(kb100 / 68)
                ),
            ),
            event.clone(),
        ),
        INVALID,
    );
    add(
        "headers: 100 KB X-Hub-Signature-256",
        http(
            "/webhooks/github",
            replaced(
                github_ok.clone(),
                "X-Hub-Signature-256",
                format!("sha256={}", "a".repeat(kb100)),
            ),
            github_body.clone(),
        ),
        INVALID,
    );
    add(
        "headers: 100 KB webhook-signature list",
        http(
            "/webhooks/standard",
            replaced(
                standard_ok.clone(),
                "webhook-signature",
                format!("v1,{} ", "A".repeat(42)).repeat(kb100 / 46),
            ),
            standard_body.clone(),
        ),
        INVALID,
    );
    add(
        "headers: 100 KB X-Request-Id on an unsigned source",
        http(
            "/webhooks/orders",
            vec![json_type.clone(), header("X-Request-Id", "r".repeat(kb100))],
            &br#"{"order":1}"#[..],
        ),
        BAD,
    );
    // Just over actix's 128 KiB head buffer: refused with 431 when the head
    // arrives in pieces, read whole when it arrives at once (so this one is
    // unsigned, and refused by hookledger then).
    add(
        "headers: a 200 KB header",
        http(
            "/webhooks/stripe",
            vec![
                json_type.clone(),
                header("X-Padding", "p".repeat(2 * kb100)),
            ],
            event.clone(),
        ),
        HttpLayerOr(&[431], 401, "missing_signature"),
    );
    add(
        "headers: an 8 MB header",
        http(
            "/webhooks/stripe",
            {
                let mut h = stripe_ok.clone();
                h.push(header("X-Padding", "p".repeat(8 * 1024 * 1024)));
                h
            },
            event.clone(),
        ),
        HttpLayer(&[431]),
    );
    add(
        "headers: an 8 MB head over a raw connection",
        Request::Raw(raw_post(
            "/webhooks/stripe",
            &{
                let mut h = stripe_ok.clone();
                h.push(header("X-Padding", "p".repeat(8 * 1024 * 1024)));
                h
            },
            &event,
        )),
        HttpLayer(&[431]),
    );
    add(
        "headers: 120 headers",
        http(
            "/webhooks/stripe",
            {
                let mut h = stripe_ok.clone();
                h.extend((0..120).map(|i| header(&format!("X-Pad-{i}"), "x")));
                h
            },
            event.clone(),
        ),
        HttpLayer(&[431]),
    );
    add(
        "headers: a bare LF inside a header value",
        Request::Raw(raw_post(
            "/webhooks/orders",
            &[json_type.clone(), header("X-Request-Id", "a\nb")],
            br#"{"order":1}"#,
        )),
        HttpLayer(&[400]),
    );
    add(
        "headers: a CR inside a header value",
        Request::Raw(raw_post(
            "/webhooks/orders",
            &[json_type.clone(), header("X-Request-Id", "a\rb")],
            br#"{"order":1}"#,
        )),
        HttpLayer(&[400]),
    );
    add(
        "headers: a header name with a space",
        Request::Raw(raw_post(
            "/webhooks/orders",
            &[json_type.clone(), header("X Request Id", "abc")],
            br#"{"order":1}"#,
        )),
        HttpLayer(&[400]),
    );

    // ---- Source names: unknown, dot segments, long, non-ASCII. Raw, so `..` is not normalised away.
    let raw_signed = |path: &str| Request::Raw(raw_post(path, &stripe_ok, &event));
    add("source: ..", raw_signed("/webhooks/.."), UNKNOWN);
    add("source: %2e%2e", raw_signed("/webhooks/%2e%2e"), UNKNOWN);
    add("source: .", raw_signed("/webhooks/."), UNKNOWN);
    add(
        "source: encoded slash and dots",
        raw_signed("/webhooks/..%2Fstripe"),
        UNKNOWN,
    );
    add(
        "source: stripe%2F..",
        raw_signed("/webhooks/stripe%2F.."),
        UNKNOWN,
    );
    add(
        "source: a dot segment before the route",
        raw_signed("/webhooks/../webhooks/stripe"),
        Error(404, "not_found"),
    );
    add(
        "source: a dot segment after the source",
        raw_signed("/webhooks/stripe/.."),
        Error(404, "not_found"),
    );
    add(
        "source: 10 KB name",
        raw_signed(&format!("/webhooks/{}", "s".repeat(10 * 1024))),
        UNKNOWN,
    );
    add(
        "source: non-ASCII",
        http("/webhooks/stripé", stripe_ok.clone(), event.clone()),
        UNKNOWN,
    );
    add(
        "source: encoded NUL",
        raw_signed("/webhooks/stripe%00"),
        UNKNOWN,
    );
    add(
        "source: other case",
        raw_signed("/webhooks/STRIPE"),
        UNKNOWN,
    );
    add(
        "source: trailing encoded space",
        raw_signed("/webhooks/stripe%20"),
        UNKNOWN,
    );
    add(
        "source: percent-encoded invalid UTF-8",
        raw_signed("/webhooks/%FF%FE"),
        UNKNOWN,
    );
    add(
        "source: raw non-UTF-8 bytes in the path",
        Request::Raw({
            let mut raw = raw_post("/webhooks/XX", &stripe_ok, &event);
            raw[15] = 0xff;
            raw[16] = 0xfe;
            raw
        }),
        HttpLayer(&[400, 404]),
    );

    // ---- Stripe signatures.
    let stripe_sig_case = |name: &str, value: String, expect: Expect| -> Case {
        Case {
            name: format!("stripe: {name}"),
            request: http(
                "/webhooks/stripe",
                replaced(stripe_ok.clone(), "Stripe-Signature", value),
                event.clone(),
            ),
            expect,
            huge: false,
        }
    };
    let mut more = vec![
        stripe_sig_case("empty header", String::new(), INVALID),
        stripe_sig_case("garbage", "\u{1F4A5} not a signature".into(), INVALID),
        stripe_sig_case("t only", format!("t={now}"), INVALID),
        stripe_sig_case("v1 only", format!("v1={stripe_v1}"), INVALID),
        stripe_sig_case(
            "truncated v1",
            format!("t={now},v1={}", &stripe_v1[..62]),
            INVALID,
        ),
        stripe_sig_case(
            "v1 cut to its first half",
            format!("t={now},v1={}", &stripe_v1[..32]),
            INVALID,
        ),
        stripe_sig_case(
            "v1 not hex",
            format!("t={now},v1={}", "zz".repeat(32)),
            INVALID,
        ),
        stripe_sig_case(
            "only a v0 entry",
            format!("t={now},v0={stripe_v1}"),
            INVALID,
        ),
        stripe_sig_case("separators only", ",,,=,=,".into(), INVALID),
        stripe_sig_case(
            "timestamp beyond i64",
            format!("t=99999999999999999999,v1={stripe_v1}"),
            INVALID,
        ),
        stripe_sig_case(
            "stale timestamp with a wrong signature",
            format!("t={},v1={}", now - 3600, "0".repeat(64)),
            INVALID,
        ),
        stripe_sig_case(
            "the timestamp changed after signing",
            format!("t={},v1={stripe_v1}", now + 1),
            INVALID,
        ),
    ];
    for (name, t) in [
        ("ten years stale, correctly signed", now - 10 * 365 * 86_400),
        ("an hour in the future, correctly signed", now + 3600),
        ("timestamp i64::MAX, correctly signed", i64::MAX),
        ("timestamp i64::MIN, correctly signed", i64::MIN),
        ("timestamp 0, correctly signed", 0),
    ] {
        more.push(Case {
            name: format!("stripe: {name}"),
            request: http("/webhooks/stripe", stripe_at(t, &event), event.clone()),
            expect: STALE,
            huge: false,
        });
    }
    more.push(Case {
        name: "stripe: signed for another body".into(),
        request: http(
            "/webhooks/stripe",
            stripe_ok.clone(),
            stripe_with("evt_other", "invoice.paid", "in_other"),
        ),
        expect: INVALID,
        huge: false,
    });

    // ---- GitHub signatures.
    for (name, value, expect) in [
        ("missing", None, MISSING),
        ("empty", Some(String::new()), INVALID),
        ("prefix only", Some("sha256=".to_string()), INVALID),
        ("truncated", Some(github_sig[..40].to_string()), INVALID),
        (
            "odd-length hex",
            Some(github_sig[..70].to_string()),
            INVALID,
        ),
        (
            "no prefix",
            Some(github_sig.trim_start_matches("sha256=").to_string()),
            INVALID,
        ),
        (
            "upper-case prefix",
            Some(github_sig.replace("sha256=", "SHA256=")),
            INVALID,
        ),
        (
            "sha1 prefix",
            Some(github_sig.replace("sha256=", "sha1=")),
            INVALID,
        ),
        (
            "garbage",
            Some("sha256=\u{1F4A5}\u{1F4A5}".to_string()),
            INVALID,
        ),
    ] {
        let headers = match value {
            Some(v) => replaced(github_ok.clone(), "X-Hub-Signature-256", v),
            None => without(github_ok.clone(), "X-Hub-Signature-256"),
        };
        more.push(Case {
            name: format!("github: {name}"),
            request: http("/webhooks/github", headers, github_body.clone()),
            expect,
            huge: false,
        });
    }

    // ---- Shopify and Acuity (base64 over the body).
    for (source, sig_header, ok, sig, body) in [
        (
            "shopify",
            "X-Shopify-Hmac-Sha256",
            &shopify_ok,
            &shopify_sig,
            &shopify_body,
        ),
        (
            "acuity",
            "X-Acuity-Signature",
            &acuity_ok,
            &acuity_sig,
            &acuity_body,
        ),
    ] {
        for (name, value, expect) in [
            ("missing", None, MISSING),
            ("empty", Some(String::new()), INVALID),
            ("truncated base64", Some(sig[..20].to_string()), INVALID),
            (
                "one character short",
                Some(sig[..sig.len() - 2].to_string()),
                INVALID,
            ),
            ("garbage", Some("!!! not base64 !!!".to_string()), INVALID),
            ("hex instead of base64", Some(hex_of_base64(sig)), INVALID),
            (
                "with a sha256= prefix",
                Some(format!("sha256={sig}")),
                INVALID,
            ),
        ] {
            let headers = match value {
                Some(v) => replaced(ok.clone(), sig_header, v),
                None => without(ok.clone(), sig_header),
            };
            more.push(Case {
                name: format!("{source}: {name}"),
                request: http(&format!("/webhooks/{source}"), headers, body.clone()),
                expect,
                huge: false,
            });
        }
    }

    // ---- Standard Webhooks.
    let standard_case = |name: &str, headers: Vec<Header>, expect: Expect| Case {
        name: format!("standard: {name}"),
        request: http("/webhooks/standard", headers, standard_body.clone()),
        expect,
        huge: false,
    };
    let sig_b64 = standard_sig.strip_prefix("v1,").unwrap().to_string();
    more.extend([
        standard_case(
            "missing webhook-id",
            without(standard_ok.clone(), "webhook-id"),
            MISSING,
        ),
        standard_case(
            "missing webhook-timestamp",
            without(standard_ok.clone(), "webhook-timestamp"),
            MISSING,
        ),
        standard_case(
            "missing webhook-signature",
            without(standard_ok.clone(), "webhook-signature"),
            MISSING,
        ),
        standard_case(
            "v1 with nothing after the comma",
            replaced(standard_ok.clone(), "webhook-signature", "v1,"),
            INVALID,
        ),
        standard_case(
            "v1 without a comma",
            replaced(
                standard_ok.clone(),
                "webhook-signature",
                format!("v1{sig_b64}"),
            ),
            INVALID,
        ),
        standard_case(
            "only a v1a entry",
            replaced(
                standard_ok.clone(),
                "webhook-signature",
                format!("v1a,{sig_b64}"),
            ),
            INVALID,
        ),
        standard_case(
            "truncated base64",
            replaced(
                standard_ok.clone(),
                "webhook-signature",
                format!("v1,{}", &sig_b64[..20]),
            ),
            INVALID,
        ),
        standard_case(
            "garbage",
            replaced(
                standard_ok.clone(),
                "webhook-signature",
                ",,, v1 ,v1,, \u{1F4A5}",
            ),
            INVALID,
        ),
        standard_case(
            "non-numeric timestamp",
            replaced(standard_ok.clone(), "webhook-timestamp", "yesterday"),
            INVALID,
        ),
        standard_case(
            "webhook-id changed after signing",
            replaced(standard_ok.clone(), "webhook-id", "msg_other"),
            INVALID,
        ),
        standard_case(
            "stale, correctly signed",
            standard_at("msg_stale", now - 301, &standard_body),
            STALE,
        ),
        standard_case(
            "future, correctly signed",
            standard_at("msg_future", now + 301, &standard_body),
            STALE,
        ),
        standard_case(
            "stale with a wrong signature",
            replaced(
                standard_at("msg_stale2", now - 3600, &standard_body),
                "webhook-signature",
                format!("v1,{}", "A".repeat(43)),
            ),
            INVALID,
        ),
    ]);

    // ---- Generic HMAC with a prefix (billing).
    for (name, value, expect) in [
        ("missing", None, MISSING),
        ("without its prefix", Some(billing_hex.clone()), INVALID),
        ("prefix only", Some("sha256=".to_string()), INVALID),
        (
            "truncated hex",
            Some(format!("sha256={}", &billing_hex[..40])),
            INVALID,
        ),
        (
            "base64 instead of hex",
            Some(format!("sha256={}", base64_of_hex(&billing_hex))),
            INVALID,
        ),
        (
            "prefix twice",
            Some(format!("sha256=sha256={billing_hex}")),
            INVALID,
        ),
        ("garbage", Some("\u{1F4A5}".to_string()), INVALID),
    ] {
        let headers = match value {
            Some(v) => replaced(billing_ok.clone(), "X-Signature", v),
            None => without(billing_ok.clone(), "X-Signature"),
        };
        more.push(Case {
            name: format!("billing: {name}"),
            request: http("/webhooks/billing", headers, billing_body.clone()),
            expect,
            huge: false,
        });
    }

    // ---- A signature header present but not UTF-8 is unparseable: invalid, not missing.
    for (source, name, ok, body) in [
        ("stripe", "Stripe-Signature", &stripe_ok, &event),
        ("github", "X-Hub-Signature-256", &github_ok, &github_body),
        (
            "shopify",
            "X-Shopify-Hmac-Sha256",
            &shopify_ok,
            &shopify_body,
        ),
        ("acuity", "X-Acuity-Signature", &acuity_ok, &acuity_body),
        (
            "standard",
            "webhook-signature",
            &standard_ok,
            &standard_body,
        ),
        (
            "standard",
            "webhook-timestamp",
            &standard_ok,
            &standard_body,
        ),
        ("standard", "webhook-id", &standard_ok, &standard_body),
        ("billing", "X-Signature", &billing_ok, &billing_body),
    ] {
        more.push(Case {
            name: format!("{source}: {name} not UTF-8"),
            request: http(
                &format!("/webhooks/{source}"),
                replaced(ok.clone(), name, b"sha256=\xff\xfe".to_vec()),
                body.clone(),
            ),
            expect: INVALID,
            huge: false,
        });
    }

    // ---- Ids, actions and objects over 256 bytes, correctly signed.
    let long_github = br#"{"action":"opened","issue":{"id":1}}"#.to_vec();
    let e10k = stripe_with(&id_10kb, "invoice.paid", "in_1");
    let t10k = stripe_with("evt_t10k", &id_10kb, "in_1");
    let o10k = stripe_with("evt_o10k", "invoice.paid", &id_10kb);
    let multibyte = stripe_with(&"é".repeat(129), "invoice.paid", "in_1");
    let composed = format!(
        r#"{{"action":"{}","issue":{{"id":1}}}}"#,
        "a".repeat(256 - "issues.".len() + 1)
    )
    .into_bytes();
    let acuity_long = format!("action=scheduled&id={id_10kb}").into_bytes();
    let billing_long = format!(r#"{{"invoice":{{"id":"{id_10kb}"}}}}"#).into_bytes();
    let standard_long_id = format!("msg_{id_10kb}");
    for (name, path, headers, body) in [
        (
            "stripe: 10 KB event id",
            "/webhooks/stripe",
            signed("stripe", &[], &e10k),
            e10k.clone(),
        ),
        (
            "stripe: 10 KB event type",
            "/webhooks/stripe",
            signed("stripe", &[], &t10k),
            t10k.clone(),
        ),
        (
            "stripe: 10 KB object id",
            "/webhooks/stripe",
            signed("stripe", &[], &o10k),
            o10k.clone(),
        ),
        (
            "stripe: 129 two-byte characters (258 bytes)",
            "/webhooks/stripe",
            signed("stripe", &[], &multibyte),
            multibyte.clone(),
        ),
        (
            "github: 10 KB X-GitHub-Delivery",
            "/webhooks/github",
            signed(
                "github",
                &[
                    ("X-GitHub-Event", "issues"),
                    ("X-GitHub-Delivery", &id_10kb),
                ],
                &long_github,
            ),
            long_github.clone(),
        ),
        (
            "github: composed event.action of 257 bytes",
            "/webhooks/github",
            signed(
                "github",
                &[
                    ("X-GitHub-Event", "issues"),
                    ("X-GitHub-Delivery", "d-long"),
                ],
                &composed,
            ),
            composed.clone(),
        ),
        (
            "shopify: 10 KB X-Shopify-Event-Id",
            "/webhooks/shopify",
            signed(
                "shopify",
                &[
                    ("X-Shopify-Topic", "orders/create"),
                    ("X-Shopify-Event-Id", &id_10kb),
                ],
                &shopify_body,
            ),
            shopify_body.clone(),
        ),
        (
            "shopify: 10 KB X-Shopify-Topic",
            "/webhooks/shopify",
            signed(
                "shopify",
                &[("X-Shopify-Topic", &id_10kb), ("X-Shopify-Event-Id", "e-2")],
                &shopify_body,
            ),
            shopify_body.clone(),
        ),
        (
            "standard: 10 KB webhook-id",
            "/webhooks/standard",
            standard_at(&standard_long_id, now, &standard_body),
            standard_body.clone(),
        ),
        (
            "acuity: 10 KB appointment id",
            "/webhooks/acuity",
            signed_form("acuity", &acuity_long),
            acuity_long.clone(),
        ),
        (
            "orders: 10 KB X-Request-Id",
            "/webhooks/orders",
            vec![json_type.clone(), header("X-Request-Id", id_10kb.as_str())],
            br#"{"order":1}"#.to_vec(),
        ),
        (
            "billing: 10 KB invoice id",
            "/webhooks/billing",
            signed("billing", &[], &billing_long),
            billing_long.clone(),
        ),
    ] {
        more.push(Case {
            name: name.to_string(),
            request: http(path, headers, body),
            expect: BAD,
            huge: false,
        });
    }
    cases.extend(more);

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

/// The bytes of a base64 string, as hex.
fn hex_of_base64(b64: &str) -> String {
    use base64::Engine as _;
    hex::encode(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
}

/// The bytes of a hex string, as base64.
fn base64_of_hex(h: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hex::decode(h).unwrap())
}

/// Four endless chunked bodies at once: each is refused with 413 while it
/// streams, long before it ends, and the server reads little more than the
/// limit of each (the client's stream counts what it was asked for).
async fn endless_chunked_bodies_are_cut_off_at_the_limit(backend: Backend) {
    const CHUNK: usize = 64 * 1024;
    // 256 MiB each if the server were to read them to the end.
    const CHUNKS: usize = 4096;
    let app = spawn_app(backend).await;
    let limit = app.config.server.max_body_bytes;
    let headers = app.signed_headers(
        "stripe",
        &[("Content-Type", "application/json")],
        b"{\"id\":\"evt_endless\"}",
    );
    let sends = (0..4).map(|_| {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let stream = futures_util::stream::repeat_with(move || {
            counter.fetch_add(CHUNK, Ordering::SeqCst);
            Ok::<_, std::io::Error>(vec![b' '; CHUNK])
        })
        .take(CHUNKS);
        // A client of its own: the connection is not reused after this.
        let client = reqwest::Client::new();
        let mut request = client
            .post(format!("{}/webhooks/stripe", app.address))
            .body(reqwest::Body::wrap_stream(stream));
        for (k, v) in &headers {
            request = request.header(k.as_str(), v.as_str());
        }
        async move {
            let answer = request.send().await;
            // What the body had given when the answer came: the limit, plus
            // what sat in the client's and the sockets' buffers.
            let pulled_at_answer = pulled.load(Ordering::SeqCst);
            let answer = match answer {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.json::<Value>().await.map(|body| (status, body))
                }
                Err(e) => Err(e),
            };
            (answer, pulled_at_answer)
        }
    });
    let answers = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(sends),
    )
    .await
    .expect("every endless body is answered within 60 s");
    for (answer, pulled) in answers {
        match answer {
            Ok((status, body)) => {
                assert_eq!(status, 413, "{body}");
                assert_eq!(body["error"]["code"], "payload_too_large");
            }
            // The server answered and closed while the client was still
            // writing; a client may then see the reset instead.
            Err(e) => assert!(e.is_request() || e.is_body(), "{e:?}"),
        }
        assert!(
            pulled <= limit + 32 * 1024 * 1024,
            "{pulled} bytes of an endless body sent before the answer, with a {limit}-byte limit"
        );
    }
    assert_eq!(app.ledger_total().await, 0);
    let mut alive = 0;
    assert_still_serving(&app, &mut alive, "endless chunked bodies").await;
}

/// Provider ids and actions are opaque strings: `/`, `?`, `#`, `..`, `%2F`
/// and newlines are kept byte for byte in the key, never decoded or
/// normalised, and a redelivery finds the same row.
async fn ids_and_actions_with_url_syntax_and_newlines_are_kept_verbatim_and_dedup(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let now = app.now_secs();
    let mut rows = Vec::new();
    for id in [
        "evt/../../admin?x=1#frag",
        "..",
        "../evt_1",
        "evt_1",
        "evt%2F..%2Fx",
        "evt/%2e%2e/x",
        "evt\nsecond line",
        "evt\r\nX-Injected: yes",
        "evt\ttab",
        "?#/",
        "évt/ストライプ",
    ] {
        let event = stripe_event(
            id,
            "invoice.paid/../x?y#z\n",
            now,
            json!({"id": "in/../1?#", "object": "invoice"}),
        );
        let first = app.deliver("stripe", &[], &event).await;
        assert_eq!(first.status, 202, "{id:?}: {:?}", first.body);
        assert_eq!(first.body["dedup_key"], format!("id:{id}"), "{id:?}");
        let again = app.deliver("stripe", &[], &event).await;
        assert_eq!(
            (again.status, again.body["status"].as_str(), again.id()),
            (200, Some("duplicate"), first.id()),
            "{id:?}"
        );
        let detail = app
            .admin_get(&format!("/admin/events/{}", first.id()))
            .await;
        assert_eq!(detail.body["provider_event_id"], id);
        assert_eq!(detail.body["action"], "invoice.paid/../x?y#z\n");
        assert_eq!(detail.body["object_id"], "in/../1?#");
        rows.push(first.id());
    }
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 11, "eleven distinct ids, eleven rows");

    // In a header, as far as HTTP allows (no newlines there).
    for id in ["../x?y#z", "/", "%2e%2e", "a/b/../c"] {
        let first = app
            .deliver("orders", &[("X-Request-Id", id)], &json!({"n": 1}))
            .await;
        assert_eq!(
            (first.status, first.body["dedup_key"].as_str()),
            (202, Some(format!("id:{id}").as_str())),
            "{:?}",
            first.body
        );
        let again = app
            .deliver("orders", &[("X-Request-Id", id)], &json!({"n": 2}))
            .await;
        assert_eq!((again.status, again.id()), (200, first.id()), "{id}");
    }

    // GitHub's composed action and Acuity's form fields.
    let github = app
        .deliver(
            "github",
            &[
                ("X-GitHub-Event", "issues"),
                ("X-GitHub-Delivery", "../d?#"),
            ],
            &json!({"action": "op/../en?#\n", "issue": {"id": 7}}),
        )
        .await;
    assert_eq!(github.status, 202, "{:?}", github.body);
    let detail = app
        .admin_get(&format!("/admin/events/{}", github.id()))
        .await;
    assert_eq!(detail.body["action"], "issues.op/../en?#\n");
    let form = |body: &'static str| {
        app.deliver_bytes(
            "acuity",
            "application/x-www-form-urlencoded",
            &[],
            body.as_bytes().to_vec(),
        )
    };
    let first = form("action=scheduled&id=..%2F..%2Fetc%3Fx%23y%0Az").await;
    assert_eq!(
        (first.status, first.body["dedup_key"].as_str()),
        (202, Some("act:scheduled:../../etc?x#y\nz")),
        "{:?}",
        first.body
    );
    let again = form("id=..%2F..%2Fetc%3Fx%23y%0Az&action=scheduled").await;
    assert_eq!((again.status, again.id()), (200, first.id()));
    assert_eq!(app.ledger_total().await, 11 + 4 + 1 + 1);
}

/// A repeated key keeps its last value; empty keys and values are kept; an
/// empty action or id counts as absent, so the payload hash decides.
async fn form_bodies_with_repeated_and_empty_keys_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let form = |body: &'static str| {
        app.deliver_bytes(
            "acuity",
            "application/x-www-form-urlencoded",
            &[],
            body.as_bytes().to_vec(),
        )
    };
    let cases: [(&str, u16, &str, &str); 9] = [
        (
            "action=scheduled&id=1&id=2",
            202,
            "act:scheduled:2",
            "action_object",
        ),
        (
            "id=2&action=scheduled",
            200,
            "act:scheduled:2",
            "action_object",
        ),
        (
            "action=canceled&action=scheduled&id=3",
            202,
            "act:scheduled:3",
            "action_object",
        ),
        (
            "=&&=x&action=scheduled&id=4&&&",
            202,
            "act:scheduled:4",
            "action_object",
        ),
        (
            "action=scheduled&id=4&=y",
            200,
            "act:scheduled:4",
            "action_object",
        ),
        (
            "action=changed&id=9&action=changed",
            202,
            "co:changed:9",
            "coalesce",
        ),
        ("action=&id=5", 202, "hash:", "payload_hash"),
        ("action=&id=5", 200, "hash:", "payload_hash"),
        ("action=scheduled&id=&id=", 202, "hash:", "payload_hash"),
    ];
    let mut first_ids = std::collections::BTreeMap::new();
    for (body, status, key, strategy) in cases {
        let answer = form(body).await;
        assert_eq!(answer.status, status, "{body}: {:?}", answer.body);
        let got = answer.body["dedup_key"].as_str().unwrap();
        assert!(got.starts_with(key), "{body}: {got}");
        assert_eq!(answer.body["strategy"], strategy, "{body}");
        let id = *first_ids.entry(got.to_string()).or_insert(answer.id());
        assert_eq!(answer.id(), id, "{body}: same key, same row");
    }
    let four = first_ids["act:scheduled:4"];
    let detail = app.admin_get(&format!("/admin/events/{four}")).await;
    assert_eq!(
        detail.body["payload"],
        json!({"": "x", "action": "scheduled", "id": "4"})
    );
    assert_eq!(app.ledger_total().await, 6);
}

/// Values right at a limit are accepted: an id of exactly 256 bytes (in
/// ASCII or in two-byte characters), a body of exactly `max_body_bytes`, a
/// timestamp exactly `tolerance_secs` old or ahead, JSON nested 100 deep, an
/// 800-byte and a 100 KB header the handler does not read, and a 100 KB
/// media-type parameter.
async fn values_right_at_the_limits_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.now_secs();
    let limit = app.config.server.max_body_bytes;
    let event = |id: &str| {
        stripe_event(
            id,
            "invoice.paid",
            now,
            json!({"id": "in_edge", "object": "invoice"}),
        )
    };
    let expect_accepted = |answer: Answer, what: &str| {
        assert_eq!(answer.status, 202, "{what}: {:?}", answer.body);
        assert_eq!(answer.body["status"], "accepted", "{what}");
        answer
    };

    let ascii = "i".repeat(256);
    let accepted = expect_accepted(
        app.deliver("stripe", &[], &event(&ascii)).await,
        "256 ASCII",
    );
    assert_eq!(accepted.body["dedup_key"], format!("id:{ascii}"));
    let two_byte = "é".repeat(128);
    expect_accepted(
        app.deliver("stripe", &[], &event(&two_byte)).await,
        "128 two-byte characters",
    );

    let exact = {
        let mut body = br#"{"id":"evt_exact","pad":""#.to_vec();
        body.resize(limit - 2, b'x');
        body.extend_from_slice(b"\"}");
        assert_eq!(body.len(), limit);
        body
    };
    expect_accepted(
        app.deliver_bytes("stripe", "application/json", &[], exact)
            .await,
        "a body of exactly the limit",
    );

    let tolerance = app.config.sources["stripe"].tolerance_secs as i64;
    let no_headers: Vec<(String, String)> = Vec::new();
    for (id, t) in [("evt_old", now - tolerance), ("evt_ahead", now + tolerance)] {
        let body = serde_json::to_vec(&event(id)).unwrap();
        let mut headers = app.source("stripe").sign(&no_headers, &body, t);
        headers.push(("Content-Type".into(), "application/json".into()));
        expect_accepted(app.post_raw("/webhooks/stripe", &headers, body).await, id);
    }

    let nested = format!(
        "{{\"id\":\"evt_nested\",\"n\":{}1{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    expect_accepted(
        app.deliver_bytes("stripe", "application/json", &[], nested.into_bytes())
            .await,
        "100 nested arrays",
    );

    let header_800 = "h".repeat(800);
    expect_accepted(
        app.deliver("stripe", &[("X-Padding", &header_800)], &event("evt_h800"))
            .await,
        "an 800-byte header",
    );
    let header_100k = "h".repeat(100 * 1024);
    expect_accepted(
        app.deliver(
            "stripe",
            &[("X-Padding", &header_100k)],
            &event("evt_h100k"),
        )
        .await,
        "a 100 KB header",
    );
    let long_type = format!("application/json; x={}", "p".repeat(100 * 1024));
    let body = serde_json::to_vec(&event("evt_type100k")).unwrap();
    expect_accepted(
        app.deliver_bytes("stripe", &long_type, &[], body).await,
        "a 100 KB media-type parameter",
    );
    assert_eq!(app.ledger_total().await, 9);
}

/// JSON strings may hold U+0000 (`\u0000`), which PostgreSQL text columns
/// cannot store. Such a delivery must get a definite answer on both
/// backends — accepted, or refused with 400 — never a 503 that the provider
/// retries forever.
async fn ids_with_nul_characters_are_not_a_storage_failure(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.now_secs();
    let bodies = [
        (
            "event id",
            "stripe",
            "application/json",
            serde_json::to_vec(&stripe_event(
                "evt_\u{0}nul",
                "invoice.paid",
                now,
                json!({"id": "in_nul"}),
            ))
            .unwrap(),
        ),
        (
            "action",
            "stripe",
            "application/json",
            serde_json::to_vec(&stripe_event(
                "evt_nul_action",
                "invoice.\u{0}paid",
                now,
                json!({"id": "in_nul"}),
            ))
            .unwrap(),
        ),
        (
            "object id",
            "stripe",
            "application/json",
            serde_json::to_vec(&stripe_event(
                "evt_nul_object",
                "invoice.paid",
                now,
                json!({"id": "in_\u{0}nul"}),
            ))
            .unwrap(),
        ),
        (
            "form object id",
            "acuity",
            "application/x-www-form-urlencoded",
            b"action=scheduled&id=a%00b".to_vec(),
        ),
        (
            "payload value",
            "orders",
            "application/json",
            br#"{"note":"a\u0000b"}"#.to_vec(),
        ),
    ];
    let mut stored = 0;
    for (what, source, content_type, body) in bodies {
        let answer = app
            .deliver_bytes(source, content_type, &[], body.clone())
            .await;
        match answer.status {
            202 => {
                stored += 1;
                let again = app.deliver_bytes(source, content_type, &[], body).await;
                assert_eq!((again.status, again.id()), (200, answer.id()), "{what}");
            }
            400 => assert_eq!(answer.error_code(), "invalid_payload", "{what}"),
            _ => panic!("{what} with U+0000: {} {:?}", answer.status, answer.body),
        }
        assert_eq!(app.ledger_total().await, stored, "{what}");
    }
    let mut alive = stored;
    assert_still_serving(&app, &mut alive, "NUL characters").await;
}

/// Deliveries share a ledger transaction under load (group commit). One
/// delivery the database cannot store must not fail the others in its batch.
async fn a_nul_id_does_not_fail_the_other_deliveries_in_its_batch(backend: Backend) {
    let app = spawn_app_with(
        backend,
        TestOptions {
            // Every request below lands in one batch.
            server_toml: "batch_linger_us = 200000".into(),
            ..Default::default()
        },
    )
    .await;
    let now = app.now_secs();
    let nul = stripe_event("evt_\u{0}", "invoice.paid", now, json!({"id": "in_1"}));
    let goods: Vec<Value> = (0..5)
        .map(|i| {
            stripe_event(
                &format!("evt_batch_{i}"),
                "invoice.paid",
                now,
                json!({"id": "in_1"}),
            )
        })
        .collect();
    let (poison, answers) = tokio::join!(
        app.deliver("stripe", &[], &nul),
        futures_util::future::join_all(goods.iter().map(|e| app.deliver("stripe", &[], e)))
    );
    for answer in &answers {
        assert_eq!(
            answer.status, 202,
            "a good delivery batched with a U+0000 id: {:?} (that one: {} {:?})",
            answer.body, poison.status, poison.body
        );
    }
}

/// An endless chunked body that the answer leaves unread (413 while
/// streaming, 404 before reading, 415 before reading) is not read without
/// end: the server closes the connection soon after answering (actix-http
/// lingers at most 1 s), so a caller cannot keep it reading and discarding
/// data forever (`routes::unread_body`). A chunked body read to its end
/// leaves the connection open for the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_chunked_body_left_unread_closes_the_connection() {
    let app = spawn_app(Backend::Sqlite).await;
    for (path, content_type, status) in [
        ("/webhooks/stripe", "application/json", "413"),
        ("/webhooks/no-such-source", "application/json", "404"),
        ("/webhooks/stripe", "text/plain", "415"),
    ] {
        let port = app.port;
        let (answer, closed) =
            tokio::task::spawn_blocking(move || endless_chunked_body(port, path, content_type))
                .await
                .unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {answer}"
        );
        assert!(
            closed,
            "{path}: the connection was still taking the body {CLOSE_DEADLINE:?} after the answer"
        );
    }

    // Read to its end, a chunked body leaves the connection open: two
    // requests on one.
    let port = app.port;
    let answers = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Read before the signature is checked: 401.
        let request = b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n\
            Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
            2\r\n{}\r\n0\r\n\r\n";
        let mut answers = Vec::new();
        for _ in 0..2 {
            stream.write_all(request).unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        answers
    })
    .await
    .unwrap();
    for answer in answers {
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
}

/// How long after its answer the server may go on taking an unread body.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);

/// Sends a chunked body without end; returns the answer and whether the
/// server closed the connection (a write failed other than by timing out)
/// within `CLOSE_DEADLINE` of answering.
fn endless_chunked_body(port: u16, path: &str, content_type: &str) -> (String, bool) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    stream
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    // Reads the answer while the body is being written.
    let mut reader = stream.try_clone().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let flag = answered.clone();
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let n = reader.read(&mut buf).unwrap_or(0);
        flag.store(1, Ordering::SeqCst);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
    chunk.resize(chunk.len() + 64 * 1024, b' ');
    chunk.extend_from_slice(b"\r\n");
    let mut answered_at = None;
    // Where in the chunk the next write starts: a write that times out is
    // resumed there, so the chunked framing stays intact (a broken one would
    // make the server close for that reason instead).
    let mut at = 0;
    let closed = loop {
        if answered_at.is_none() && answered.load(Ordering::SeqCst) == 1 {
            answered_at = Some(std::time::Instant::now());
        }
        if answered_at.is_some_and(|t| t.elapsed() > CLOSE_DEADLINE) {
            break false;
        }
        match stream.write(&chunk[at..]) {
            Ok(0) => break true,
            Ok(n) => at = (at + n) % chunk.len(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break true,
        }
    };
    (reading.join().unwrap(), closed)
}
