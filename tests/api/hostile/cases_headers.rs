//! Hostile heads: header values of 100 KB that reach the handler, heads
//! beyond actix's 128 KiB buffer or 96 headers that it refuses with 431,
//! CR, LF and spaces where HTTP allows none, and source names in the path
//! that are unknown, dot segments, encoded, long, non-ASCII or not UTF-8.

use super::Expect::{Error, HttpLayer, HttpLayerOr};
use super::*;

pub(super) fn cases(f: &Fixture) -> Vec<Case> {
    let now = f.now;
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name: &str, request: Request, expect: Expect| {
        cases.push(Case {
            name: name.to_string(),
            request,
            expect,
            huge: false,
        })
    };

    // ---- Headers: 100 KB values reach the handler (actix buffers heads up to
    // 128 KiB); a head beyond that, or beyond 96 headers, is refused with 431.
    add(
        "headers: 100 KB Stripe-Signature of v1 entries",
        http(
            "/webhooks/stripe",
            replaced(
                f.stripe_ok.clone(),
                "Stripe-Signature",
                format!(
                    "t={now}{}",
                    format!(",v1={}", "ab".repeat(32)).repeat(KB100 / 68)
                ),
            ),
            f.event.clone(),
        ),
        INVALID,
    );
    add(
        "headers: 100 KB X-Hub-Signature-256",
        http(
            "/webhooks/github",
            replaced(
                f.github_ok.clone(),
                "X-Hub-Signature-256",
                format!("sha256={}", "a".repeat(KB100)),
            ),
            f.github_body.clone(),
        ),
        INVALID,
    );
    add(
        "headers: 100 KB webhook-signature list",
        http(
            "/webhooks/standard",
            replaced(
                f.standard_ok.clone(),
                "webhook-signature",
                format!("v1,{} ", "A".repeat(42)).repeat(KB100 / 46),
            ),
            f.standard_body.clone(),
        ),
        INVALID,
    );
    add(
        "headers: 100 KB X-Request-Id on an unsigned source",
        http(
            "/webhooks/orders",
            vec![
                f.json_type.clone(),
                header("X-Request-Id", "r".repeat(KB100)),
            ],
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
                f.json_type.clone(),
                header("X-Padding", "p".repeat(2 * KB100)),
            ],
            f.event.clone(),
        ),
        HttpLayerOr(&[431], 401, "missing_signature"),
    );
    add(
        "headers: an 8 MB header",
        http(
            "/webhooks/stripe",
            {
                let mut h = f.stripe_ok.clone();
                h.push(header("X-Padding", "p".repeat(8 * 1024 * 1024)));
                h
            },
            f.event.clone(),
        ),
        HttpLayer(&[431]),
    );
    add(
        "headers: an 8 MB head over a raw connection",
        Request::Raw(raw_post(
            "/webhooks/stripe",
            &{
                let mut h = f.stripe_ok.clone();
                h.push(header("X-Padding", "p".repeat(8 * 1024 * 1024)));
                h
            },
            &f.event,
        )),
        HttpLayer(&[431]),
    );
    add(
        "headers: 120 headers",
        http(
            "/webhooks/stripe",
            {
                let mut h = f.stripe_ok.clone();
                h.extend((0..120).map(|i| header(&format!("X-Pad-{i}"), "x")));
                h
            },
            f.event.clone(),
        ),
        HttpLayer(&[431]),
    );
    add(
        "headers: a bare LF inside a header value",
        Request::Raw(raw_post(
            "/webhooks/orders",
            &[f.json_type.clone(), header("X-Request-Id", "a\nb")],
            br#"{"order":1}"#,
        )),
        HttpLayer(&[400]),
    );
    add(
        "headers: a CR inside a header value",
        Request::Raw(raw_post(
            "/webhooks/orders",
            &[f.json_type.clone(), header("X-Request-Id", "a\rb")],
            br#"{"order":1}"#,
        )),
        HttpLayer(&[400]),
    );
    add(
        "headers: a header name with a space",
        Request::Raw(raw_post(
            "/webhooks/orders",
            &[f.json_type.clone(), header("X Request Id", "abc")],
            br#"{"order":1}"#,
        )),
        HttpLayer(&[400]),
    );

    // ---- Source names: unknown, dot segments, long, non-ASCII. Raw, so `..` is not normalised away.
    let raw_signed = |path: &str| Request::Raw(raw_post(path, &f.stripe_ok, &f.event));
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
        http("/webhooks/stripé", f.stripe_ok.clone(), f.event.clone()),
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
            let mut raw = raw_post("/webhooks/XX", &f.stripe_ok, &f.event);
            raw[15] = 0xff;
            raw[16] = 0xfe;
            raw
        }),
        HttpLayer(&[400, 404]),
    );

    cases
}
