//! Hostile bodies: bodies that are not one JSON object (trailing data, a
//! BOM, JSON5-isms, scalars, broken UTF-8 and UTF-16) or not a usable form,
//! JSON nested 100 000 deep, bodies over the size limit however their length
//! is told (Content-Length, chunks, numbers beyond u64), media types that are
//! not the source's, and the order of the checks, where the first failure
//! answers.

use super::Expect::{HttpLayer, HttpLayerOr};
use super::*;

/// `depth` nested objects around `1`: `{"a":{"a":…1…}}`.
fn nested_objects(depth: usize) -> Vec<u8> {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes()
}

pub(super) fn cases(f: &Fixture) -> Vec<Case> {
    let app = f.app;
    let now = f.now;
    let limit = f.limit;
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

    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name: &str, request: Request, expect: Expect| {
        cases.push(Case {
            name: name.to_string(),
            request,
            expect,
            huge: false,
        })
    };

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
            http("/webhooks/stripe", app.signed("stripe", &[], body), body),
            BAD,
        );
    }
    add(
        "body: invalid UTF-8 in a form body",
        http(
            "/webhooks/acuity",
            app.signed_form("acuity", b"action=scheduled&id=\xff"),
            &b"action=scheduled&id=\xff"[..],
        ),
        BAD,
    );
    add(
        "body: JSON sent as an empty form",
        http("/webhooks/acuity", app.signed_form("acuity", b""), &b""[..]),
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
                app.signed("stripe", &[], body),
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
            app.signed("stripe", &[], &over_limit),
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
                replaced(f.stripe_ok.clone(), "Content-Type", value),
                f.event.clone(),
            ),
            MEDIA,
        );
    }
    add(
        "content type: 100 KB subtype",
        http(
            "/webhooks/stripe",
            replaced(
                f.stripe_ok.clone(),
                "Content-Type",
                format!("application/{}", "x".repeat(KB100)),
            ),
            f.event.clone(),
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
            vec![f.json_type.clone()],
            over_limit.clone(),
        ),
        TOO_LARGE,
    );
    add(
        "order: a missing signature beats malformed JSON",
        http(
            "/webhooks/stripe",
            vec![f.json_type.clone()],
            &b"{\"id\":"[..],
        ),
        MISSING,
    );
    add(
        "order: a bad signature beats 100 000-deep JSON",
        http(
            "/webhooks/stripe",
            replaced(
                f.stripe_ok.clone(),
                "Stripe-Signature",
                format!("t={now},v1={}", "0".repeat(64)),
            ),
            deep.clone(),
        ),
        INVALID,
    );

    cases
}
