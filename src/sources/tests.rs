//! Source-level tests: each preset's defaults against a realistic delivery,
//! overrides, limits, and sign → verify round trips for every preset. The
//! signature schemes' vectors are in `signature.rs`.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::config::{Locator, Preset, Secret, SignatureEncoding};

fn config(preset: Preset, secret: Option<&str>) -> SourceConfig {
    let secrets: Vec<&str> = secret.into_iter().collect();
    super::vectors_providers::config_named(preset.as_str(), preset, &secrets)
}

fn source(preset: Preset) -> Source {
    Source::new(config(preset, Some("test-secret")))
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_json(source: &Source, hs: &[(&str, &str)], body: &serde_json::Value) -> Delivery {
    source
        .parse(BodyKind::Json, &headers(hs), body.to_string().as_bytes())
        .unwrap()
}

#[test]
fn stripe_defaults() {
    let body = json!({
        "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
        "object": "event",
        "api_version": "2023-10-16",
        "created": 1_700_000_123,
        "type": "invoice.payment_succeeded",
        "livemode": false,
        "data": {"object": {"id": "in_1NG8Dt2eZvKYlo2C", "object": "invoice", "amount_paid": 2000}},
        "request": {"id": null, "idempotency_key": null}
    });
    let d = parse_json(&source(Preset::named("stripe")), &[], &body);
    assert_eq!(d.event_id.as_deref(), Some("evt_1NG8Du2eZvKYlo2CUI79vXWy"));
    assert_eq!(d.action.as_deref(), Some("invoice.payment_succeeded"));
    assert_eq!(d.object_type.as_deref(), Some("invoice"));
    assert_eq!(d.object_id.as_deref(), Some("in_1NG8Dt2eZvKYlo2C"));
    assert_eq!(d.event_time_ms, Some(1_700_000_123_000));
    assert_eq!(d.payload, body);
}

#[test]
fn github_defaults_compose_the_action_and_name_the_object() {
    let body = json!({
        "action": "opened",
        "issue": {"id": 1_234_567_890u64, "number": 42, "title": "Bug"},
        "repository": {"id": 1_296_269, "full_name": "octocat/Hello-World"},
        "sender": {"login": "octocat", "id": 1}
    });
    let hs = [
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-GitHub-Event", "issues"),
        ("X-GitHub-Hook-ID", "292430182"),
    ];
    let d = parse_json(&source(Preset::named("github")), &hs, &body);
    assert_eq!(
        d.event_id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(d.action.as_deref(), Some("issues.opened"));
    assert_eq!(d.object_type.as_deref(), Some("issue"));
    assert_eq!(d.object_id.as_deref(), Some("1234567890"));
    assert_eq!(d.event_time_ms, None);
}

#[test]
fn github_action_without_body_action_and_pointer_order() {
    // A push has no /action and no issue: the repository is the object.
    let push = json!({"ref": "refs/heads/main", "repository": {"id": 1_296_269}, "organization": {"id": 9}});
    let hs = [("X-GitHub-Delivery", "d-1"), ("X-GitHub-Event", "push")];
    let d = parse_json(&source(Preset::named("github")), &hs, &push);
    assert_eq!(d.action.as_deref(), Some("push"));
    assert_eq!(
        (d.object_type.as_deref(), d.object_id.as_deref()),
        (Some("repository"), Some("1296269"))
    );
    // A ping names only its hook: hook_id → type "hook".
    let ping = json!({"zen": "Design for failure.", "hook_id": 292_430_182, "hook": {"type": "Repository"}});
    let hs = [("X-GitHub-Delivery", "d-2"), ("X-GitHub-Event", "ping")];
    let d = parse_json(&source(Preset::named("github")), &hs, &ping);
    assert_eq!(d.action.as_deref(), Some("ping"));
    assert_eq!(
        (d.object_type.as_deref(), d.object_id.as_deref()),
        (Some("hook"), Some("292430182"))
    );
    // A pull request comes before the issue and the repository.
    let pr = json!({"action": "closed", "pull_request": {"id": 5}, "issue": {"id": 6}, "repository": {"id": 7}});
    let hs = [("X-GitHub-Event", "pull_request")];
    let d = parse_json(&source(Preset::named("github")), &hs, &pr);
    assert_eq!(d.event_id, None);
    assert_eq!(d.action.as_deref(), Some("pull_request.closed"));
    assert_eq!(
        (d.object_type.as_deref(), d.object_id.as_deref()),
        (Some("pull_request"), Some("5"))
    );
    // No event header: no action, even with a body action.
    let d = parse_json(&source(Preset::named("github")), &[], &pr);
    assert_eq!(d.action, None);
    // Nothing present: no object at all.
    let d = parse_json(&source(Preset::named("github")), &[], &json!({"zen": "x"}));
    assert_eq!((d.object_type, d.object_id), (None, None));
}

#[test]
fn shopify_defaults() {
    let body = json!({"id": 820_982_911_946_154_508u64, "email": "jon@example.com", "total_price": "403.00"});
    let hs = [
        ("X-Shopify-Topic", "orders/create"),
        ("X-Shopify-Hmac-Sha256", "ignored-here"),
        ("X-Shopify-Shop-Domain", "example.myshopify.com"),
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
        ("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
        ("X-Shopify-Triggered-At", "2023-03-29T18:00:27.877041743Z"),
    ];
    let d = parse_json(&source(Preset::named("shopify")), &hs, &body);
    assert_eq!(
        d.event_id.as_deref(),
        Some("98880550-7158-44d4-b7cd-2c97c8a091b5")
    );
    assert_eq!(d.action.as_deref(), Some("orders/create"));
    assert_eq!(d.object_type.as_deref(), Some("orders"));
    assert_eq!(d.object_id.as_deref(), Some("820982911946154508"));
    assert_eq!(d.event_time_ms, Some(1_680_112_827_877));
    // Without X-Shopify-Event-Id, the webhook id is the event id.
    let without: Vec<_> = hs
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "X-Shopify-Event-Id" | "X-Shopify-Triggered-At"))
        .collect();
    let d = parse_json(&source(Preset::named("shopify")), &without, &body);
    assert_eq!(
        d.event_id.as_deref(),
        Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    );
    assert_eq!(d.event_time_ms, None);
}

#[test]
fn acuity_defaults_from_a_form_body() {
    let acuity = source(Preset::named("acuity"));
    let body = b"action=scheduled&id=12345&calendarID=1&appointmentTypeID=2";
    let d = acuity.parse(BodyKind::Form, &headers(&[]), body).unwrap();
    assert_eq!(d.event_id, None);
    assert_eq!(d.action.as_deref(), Some("scheduled"));
    assert_eq!(d.object_type.as_deref(), Some("appointment"));
    assert_eq!(d.object_id.as_deref(), Some("12345"));
    assert_eq!(d.event_time_ms, None);
    assert_eq!(
        d.payload,
        json!({"action": "scheduled", "id": "12345", "calendarID": "1", "appointmentTypeID": "2"})
    );
    let d = acuity
        .parse(
            BodyKind::Form,
            &headers(&[]),
            b"action=order.completed&id=987",
        )
        .unwrap();
    assert_eq!(d.object_type.as_deref(), Some("order"));
    // The same fields in a JSON body (numbers written in decimal).
    let d = parse_json(&acuity, &[], &json!({"action": "changed", "id": 12345}));
    assert_eq!(
        (d.action.as_deref(), d.object_id.as_deref()),
        (Some("changed"), Some("12345"))
    );
    assert_eq!(d.object_type.as_deref(), Some("appointment"));
    // No id: no object, so no object type either.
    let d = parse_json(&acuity, &[], &json!({"action": "scheduled"}));
    assert_eq!((d.object_type, d.object_id), (None, None));
}

#[test]
fn standard_defaults() {
    let body = json!({
        "type": "invoice.paid",
        "timestamp": "2022-11-03T20:26:10.344522Z",
        "data": {"id": "inv_123", "amount": 100}
    });
    let hs = [
        ("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
        ("webhook-timestamp", "1667507170"),
    ];
    let d = parse_json(&source(Preset::named("standard")), &hs, &body);
    assert_eq!(
        d.event_id.as_deref(),
        Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    );
    assert_eq!(d.action.as_deref(), Some("invoice.paid"));
    assert_eq!(d.object_type.as_deref(), Some("invoice"));
    assert_eq!(d.object_id.as_deref(), Some("inv_123"));
    assert_eq!(d.event_time_ms, Some(1_667_507_170_344));
    // A type with no '.' is its own object type; a bad timestamp is absent.
    let body = json!({"type": "ping", "timestamp": "soon", "data": {"id": 7}});
    let d = parse_json(&source(Preset::named("standard")), &hs, &body);
    assert_eq!(d.object_type.as_deref(), Some("ping"));
    assert_eq!(d.object_id.as_deref(), Some("7"));
    assert_eq!(d.event_time_ms, None);
}

#[test]
fn generic_finds_only_what_is_configured() {
    let body = json!({"id": "x", "type": "y", "meta": {"id": "m-1"}, "invoice": {"id": 99}, "at": 1_700_000_000});
    let d = parse_json(
        &Source::new(config(Preset::named("generic"), None)),
        &[("X-Request-Id", "r-1")],
        &body,
    );
    assert_eq!(
        (
            d.event_id,
            d.action,
            d.object_type,
            d.object_id,
            d.event_time_ms
        ),
        (None, None, None, None, None)
    );

    let mut c = config(Preset::named("generic"), None);
    c.event_id = Some(Locator::Header("X-Request-Id".into()));
    c.action = Some(Locator::Field("type".into()));
    c.object_type = Some(Locator::Value("invoice".into()));
    c.object_id = Some(Locator::Pointer("/invoice/id".into()));
    c.event_time = Some(Locator::Pointer("/at".into()));
    let d = parse_json(&Source::new(c.clone()), &[("x-request-id", "r-1")], &body);
    assert_eq!(d.event_id.as_deref(), Some("r-1"));
    assert_eq!(d.action.as_deref(), Some("y"));
    assert_eq!(d.object_type.as_deref(), Some("invoice"));
    assert_eq!(d.object_id.as_deref(), Some("99"));
    assert_eq!(d.event_time_ms, Some(1_700_000_000_000));
    // Pointer to the meta id instead; the constant type goes with a present id only.
    c.event_id = Some(Locator::Pointer("/meta/id".into()));
    c.object_id = Some(Locator::Pointer("/nowhere".into()));
    let d = parse_json(&Source::new(c), &[], &body);
    assert_eq!(d.event_id.as_deref(), Some("m-1"));
    assert_eq!((d.object_type, d.object_id), (None, None));
}

#[test]
fn overrides_replace_the_preset_default_for_their_field_only() {
    let mut c = config(Preset::named("stripe"), Some("s"));
    c.event_id = Some(Locator::Pointer("/request/idempotency_key".into()));
    c.object_type = Some(Locator::Value("thing".into()));
    let body = json!({"id": "evt_1", "type": "a.b", "created": 5, "request": {"idempotency_key": "ik-1"},
        "data": {"object": {"id": "o1", "object": "charge"}}});
    let d = parse_json(&Source::new(c), &[], &body);
    assert_eq!(d.event_id.as_deref(), Some("ik-1"));
    assert_eq!(d.action.as_deref(), Some("a.b"));
    assert_eq!(d.object_type.as_deref(), Some("thing"));
    assert_eq!(d.object_id.as_deref(), Some("o1"));
    assert_eq!(d.event_time_ms, Some(5000));

    // Shopify's event id override drops both default headers.
    let mut c = config(Preset::named("shopify"), Some("s"));
    c.event_id = Some(Locator::Header("X-Custom".into()));
    let hs = [
        ("X-Shopify-Event-Id", "e"),
        ("X-Shopify-Topic", "products/update"),
    ];
    let d = parse_json(&Source::new(c), &hs, &json!({"id": 1}));
    assert_eq!(d.event_id, None);
    assert_eq!(d.object_type.as_deref(), Some("products"));
}

#[test]
fn empty_strings_and_non_scalars_are_absent() {
    let body = json!({"id": "", "type": true, "created": "never", "data": {"object": {"id": {"nested": 1}, "object": "x"}}});
    let d = parse_json(&source(Preset::named("stripe")), &[], &body);
    assert_eq!(
        (
            d.event_id,
            d.action,
            d.object_type,
            d.object_id,
            d.event_time_ms
        ),
        (None, None, None, None, None)
    );
    let hs = [("X-GitHub-Delivery", ""), ("X-GitHub-Event", "")];
    let d = parse_json(
        &source(Preset::named("github")),
        &hs,
        &json!({"action": "opened"}),
    );
    assert_eq!((d.event_id, d.action), (None, None));
}

#[test]
fn ids_and_actions_longer_than_256_bytes_are_payload_errors() {
    let ok = "e".repeat(MAX_ID_BYTES);
    let long = "e".repeat(MAX_ID_BYTES + 1);
    let stripe = source(Preset::named("stripe"));
    let parse = |body: serde_json::Value| {
        stripe.parse(BodyKind::Json, &headers(&[]), body.to_string().as_bytes())
    };
    assert!(parse(json!({"id": ok, "type": ok})).is_ok());
    assert!(parse(json!({"id": long})).is_err());
    assert!(parse(json!({"type": long})).is_err());
    assert!(parse(json!({"data": {"object": {"id": long}}})).is_err());
    // GitHub's composed action counts as a whole: 250 + "." + 6 = 257.
    let event = "e".repeat(250);
    let hs = headers(&[("X-GitHub-Event", &event)]);
    let github = source(Preset::named("github"));
    let err = github
        .parse(BodyKind::Json, &hs, br#"{"action":"opened"}"#)
        .unwrap_err();
    assert!(err.0.contains("action"), "{err}");
    assert!(github
        .parse(BodyKind::Json, &hs, br#"{"action":"open"}"#)
        .is_ok());
    // A header-borne event id too.
    let hs = headers(&[("X-GitHub-Delivery", &long)]);
    assert!(github.parse(BodyKind::Json, &hs, b"{}").is_err());
}

#[test]
fn bad_bodies_are_payload_errors() {
    let s = source(Preset::named("stripe"));
    for body in [&b""[..], b"[1]", b"{", b"\xff\xfe"] {
        assert!(
            s.parse(BodyKind::Json, &headers(&[]), body).is_err(),
            "{body:?}"
        );
    }
    let deep = "[".repeat(100_000);
    assert!(s
        .parse(BodyKind::Json, &headers(&[]), deep.as_bytes())
        .is_err());
}

#[test]
fn actions_table_is_the_sources_own_else_acuitys_default() {
    assert_eq!(
        source(Preset::named("acuity")).actions().map(BTreeMap::len),
        Some(5)
    );
    for preset in [
        Preset::named("stripe"),
        Preset::named("github"),
        Preset::named("shopify"),
        Preset::named("standard"),
        Preset::named("generic"),
    ] {
        assert!(source(preset).actions().is_none(), "{preset:?}");
    }
    let own: BTreeMap<String, ActionRule> = [("changed".to_string(), ActionRule::Ignore)].into();
    let mut c = config(Preset::named("acuity"), Some("k"));
    c.actions = Some(own.clone());
    assert_eq!(Source::new(c).actions(), Some(&own));
    let mut c = config(Preset::named("generic"), None);
    c.actions = Some(own.clone());
    assert_eq!(Source::new(c).actions(), Some(&own));
}

/// A source of each preset, signed by `sign` and checked by `verify`.
fn every_signed_source() -> Vec<Source> {
    let mut generic_b64 = config(Preset::named("generic"), Some("billing-secret"));
    generic_b64.signature_header = Some("X-Signature".into());
    generic_b64.signature_encoding = SignatureEncoding::Base64;
    let mut generic_hex = generic_b64.clone();
    generic_hex.signature_encoding = SignatureEncoding::Hex;
    generic_hex.signature_prefix = Some("sha256=".into());
    vec![
        source(Preset::named("stripe")),
        source(Preset::named("github")),
        source(Preset::named("shopify")),
        source(Preset::named("acuity")),
        Source::new(config(
            Preset::named("standard"),
            Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        )),
        Source::new(generic_b64),
        Source::new(generic_hex),
    ]
}

#[test]
fn sign_then_verify_round_trips_for_every_preset() {
    let body = br#"{"id":"evt_1","type":"thing.happened","data":{"id":"o_1"}}"#;
    let now = 1_700_000_000;
    for s in every_signed_source() {
        let sent = s.sign(&headers(&[]), body, now);
        assert!(!sent.is_empty(), "{}", s.name());
        assert_eq!(s.verify(&sent, body, now), Ok(()), "{}", s.name());
        assert_eq!(s.verify(&sent, body, now + 60), Ok(()), "{}", s.name());
        assert_eq!(
            s.verify(&sent, b"{}", now),
            Err(SignatureError::Invalid),
            "{}",
            s.name()
        );
        assert_eq!(
            s.verify(&headers(&[]), body, now),
            Err(SignatureError::Missing),
            "{}",
            s.name()
        );
        let timed = ["stripe", "standard"].contains(&s.config.preset.as_str());
        let late = s.verify(&sent, body, now + 301);
        let expected = if timed {
            Err(SignatureError::TimestampOutOfTolerance)
        } else {
            Ok(())
        };
        assert_eq!(late, expected, "{}", s.name());
        // Another secret's signature does not pass.
        let mut other = s.config.clone();
        other.secrets = vec![Secret::new(match other.preset.as_str() {
            "standard" => "whsec_aGVsbG8gd29ybGQ=",
            _ => "another-secret",
        })];
        assert_eq!(
            Source::new(other).verify(&sent, body, now),
            Err(SignatureError::Invalid),
            "{}",
            s.name()
        );
    }
}

#[test]
fn standard_sign_keeps_a_given_webhook_id() {
    let s = Source::new(config(
        Preset::named("standard"),
        Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ));
    let given = headers(&[
        ("Webhook-Id", "msg_fixture_1"),
        ("content-type", "application/json"),
    ]);
    let sent = s.sign(&given, b"{}", 1);
    assert_eq!(sent.len(), 3);
    assert_eq!(Headers::get(&sent, "webhook-id"), Some("msg_fixture_1"));
    assert_eq!(s.verify(&sent, b"{}", 1), Ok(()));
}

/// Issue 11 item 6: the `webhook-id` the MAC covers is the one the key is
/// made of. Unicode whitespace added to a signed id breaks the signature;
/// HTTP's optional whitespace (spaces, tabs) is no part of a field value
/// and is dropped by both.
#[test]
fn a_standard_webhook_id_is_signed_and_keyed_as_the_same_bytes() {
    let source = Source::new(config(Preset::named("standard"), Some("whsec_dGVzdA==")));
    let body = br#"{"type":"invoice.paid","data":{"id":"inv_1"}}"#;
    let now = 1_700_000_000;
    let signed = source.sign(&headers(&[("webhook-id", "msg_1")]), body, now);
    let with_id = |id: &str| -> Vec<(String, String)> {
        signed
            .iter()
            .map(|(k, v)| match k.as_str() {
                "webhook-id" => (k.clone(), id.to_string()),
                _ => (k.clone(), v.clone()),
            })
            .collect()
    };
    assert_eq!(source.verify(&with_id("msg_1"), body, now), Ok(()));
    for space in ['\u{A0}', '\u{2003}', '\u{3000}', '\u{FEFF}', '\n', '\r'] {
        for id in [format!("msg_1{space}"), format!("{space}msg_1")] {
            assert_eq!(
                source.verify(&with_id(&id), body, now),
                Err(SignatureError::Invalid),
                "{id:?}"
            );
        }
    }
    for id in [" msg_1", "msg_1\t", " \tmsg_1  "] {
        let changed = with_id(id);
        assert_eq!(source.verify(&changed, body, now), Ok(()), "{id:?}");
        let delivery = source.parse(BodyKind::Json, &changed, body).unwrap();
        assert_eq!(delivery.event_id.as_deref(), Some("msg_1"), "{id:?}");
    }
}

/// Issue 11 item 8 (SPEC §2): an event time more than `tolerance_secs`
/// after arrival is the arrival time; earlier ones, however old, stand.
#[test]
fn an_event_time_beyond_the_tolerance_after_arrival_is_the_arrival_time() {
    let arrival = 1_700_000_000_000;
    let shopify = source(Preset::named("shopify"));
    for (given, expect) in [
        (None, arrival),
        (Some(arrival), arrival),
        (Some(arrival + 300_000), arrival + 300_000),
        (Some(arrival + 300_001), arrival),
        (Some(253_370_764_800_000), arrival),
        (Some(i64::MAX), arrival),
        (Some(arrival - 86_400_000), arrival - 86_400_000),
        (Some(i64::MIN), i64::MIN),
    ] {
        assert_eq!(shopify.event_time_ms(given, arrival), expect, "{given:?}");
    }
    let mut relaxed = config(Preset::named("generic"), None);
    relaxed.tolerance_secs = 3600;
    let relaxed = Source::new(relaxed);
    assert_eq!(
        relaxed.event_time_ms(Some(arrival + 1_800_000), arrival),
        arrival + 1_800_000
    );
    assert_eq!(
        relaxed.event_time_ms(Some(arrival + 3_600_001), arrival),
        arrival
    );
}

#[test]
fn verify_off_passes_everything_and_signs_nothing() {
    let s = Source::new(config(Preset::named("generic"), None));
    assert_eq!(s.verify(&headers(&[]), b"anything", 0), Ok(()));
    assert!(s.sign(&headers(&[]), b"{}", 0).is_empty());
    let s = Source::new(config(Preset::named("stripe"), None));
    assert_eq!(s.verify(&headers(&[]), b"{}", 0), Ok(()));
}

#[test]
fn header_lookup_ignores_case_for_every_container() {
    let pairs = headers(&[
        ("Content-Type", "application/json"),
        ("X-Dup", "1"),
        ("x-dup", "2"),
    ]);
    assert_eq!(
        Headers::get(&pairs, "content-type"),
        Some("application/json")
    );
    assert_eq!(
        Headers::get(pairs.as_slice(), "CONTENT-TYPE"),
        Some("application/json")
    );
    assert_eq!(Headers::get(&pairs, "x-dup"), Some("1"));
    assert_eq!(Headers::get(&pairs, "missing"), None);
    let strs = [("Webhook-ID", "m")];
    assert_eq!(Headers::get(&strs, "webhook-id"), Some("m"));
    let map: BTreeMap<String, String> = [("X-GitHub-Event".to_string(), "push".to_string())].into();
    assert_eq!(Headers::get(&map, "x-github-event"), Some("push"));

    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    let mut map = HeaderMap::new();
    map.insert(
        HeaderName::from_static("x-github-event"),
        HeaderValue::from_static("push"),
    );
    map.append(
        HeaderName::from_static("x-multi"),
        HeaderValue::from_static("first"),
    );
    map.append(
        HeaderName::from_static("x-multi"),
        HeaderValue::from_static("second"),
    );
    map.insert(
        HeaderName::from_static("x-utf8"),
        HeaderValue::from_bytes("café".as_bytes()).unwrap(),
    );
    map.insert(
        HeaderName::from_static("x-latin1"),
        HeaderValue::from_bytes(b"caf\xe9").unwrap(),
    );
    assert_eq!(Headers::get(&map, "X-GitHub-Event"), Some("push"));
    assert_eq!(Headers::get(&map, "x-multi"), Some("first"));
    assert_eq!(Headers::get(&map, "x-utf8"), Some("café"));
    assert_eq!(Headers::get(&map, "x-latin1"), None);
    assert_eq!(Headers::get(&map, "not a header name"), None);
    let dynamic: &dyn Headers = &map;
    assert_eq!(dynamic.get("x-github-event"), Some("push"));
}
