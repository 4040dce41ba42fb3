//! Vectors of the presets of SPEC §11 that sign inside the body or sign
//! the URL they call (Mailgun, Square, Twilio), in the manner of
//! `vectors_providers`: each positive vector names where it came from, and
//! each preset has its negatives (changed body, wrong key, stale timestamp
//! where there is one, another URL).

use base64::Engine as _;

use super::vectors_providers::{config, parsed, verify};
use super::{SignatureError, Source};
use SignatureError::*;

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---- Mailgun ------------------------------------------------------------

// Mailgun documents the recipe ("Webhooks" → "Securing webhooks",
// documentation.mailgun.com: hex HMAC-SHA256 of `timestamp` + `token` with
// the HTTP webhook signing key, compared with `signature`; its Python
// example is `hmac.new(key=signing_key.encode(), msg=f"{timestamp}{token}"
// .encode(), digestmod=hashlib.sha256).hexdigest()`) but publishes no key
// with its sample payloads; the token is shaped as Mailgun's (50 hex), the
// key is ours, and the signature was computed with
//   python3 -c 'import hmac,hashlib; print(hmac.new(b"key-mailgun-test-signing-key",
//     b"1715178069a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
//     hashlib.sha256).hexdigest())'
const MAILGUN_KEY: &str = "key-mailgun-test-signing-key";
const MAILGUN_TOKEN: &str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
const MAILGUN_SIG: &str = "b9059a0d8d66747ad3827a5e1555620f0b7f1f418f979c5b15e05a83f0026c05";
const MAILGUN_TS: i64 = 1_715_178_069;

fn mailgun_body(timestamp: serde_json::Value, token: &str, signature: &str) -> String {
    serde_json::json!({
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {"id": "CPgfbmQMTCKtHW6uIWtuVe", "event": "delivered",
            "timestamp": 1_715_178_069.908_181_f64, "recipient": "alice@example.com",
            "message": {"headers": {"message-id": "20240508142109.1.ABCDEF@mg.example.com",
                "to": "Alice <alice@example.com>", "subject": "Your receipt"}}}
    })
    .to_string()
}

fn mailgun_verify(key: &str, body: &str, now: i64) -> Result<(), SignatureError> {
    let s = super::vectors_providers::source("mailgun", &[key]);
    verify(&s, &[], body.as_bytes(), now)
}

#[test]
fn mailgun_accepts_its_vector_and_refuses_others() {
    let ts = serde_json::json!("1715178069");
    let good = mailgun_body(ts.clone(), MAILGUN_TOKEN, MAILGUN_SIG);
    assert_eq!(mailgun_verify(MAILGUN_KEY, &good, MAILGUN_TS + 5), Ok(()));
    // A number for the timestamp signs the same digits.
    let numeric = mailgun_body(serde_json::json!(MAILGUN_TS), MAILGUN_TOKEN, MAILGUN_SIG);
    assert_eq!(mailgun_verify(MAILGUN_KEY, &numeric, MAILGUN_TS), Ok(()));
    assert_eq!(
        mailgun_verify("another-key", &good, MAILGUN_TS),
        Err(Invalid)
    );
    let other_token = mailgun_body(ts.clone(), &MAILGUN_TOKEN.replace('a', "b"), MAILGUN_SIG);
    assert_eq!(
        mailgun_verify(MAILGUN_KEY, &other_token, MAILGUN_TS),
        Err(Invalid)
    );
    let moved = mailgun_body(serde_json::json!("1715178070"), MAILGUN_TOKEN, MAILGUN_SIG);
    assert_eq!(
        mailgun_verify(MAILGUN_KEY, &moved, MAILGUN_TS),
        Err(Invalid)
    );
    assert_eq!(
        mailgun_verify(MAILGUN_KEY, &good, MAILGUN_TS + 301),
        Err(TimestampOutOfTolerance)
    );
    // The event data is not covered by the MAC (hence the one-use token,
    // checked at ingest): a changed event still verifies here.
    let changed = good.replace("delivered", "failed");
    assert_eq!(mailgun_verify(MAILGUN_KEY, &changed, MAILGUN_TS), Ok(()));
    // No signature object, part of one, or no JSON at all: missing.
    for body in [
        r#"{"event-data": {"id": "x"}}"#.to_string(),
        r#"{"signature": {"timestamp": "1715178069", "token": "t"}}"#.to_string(),
        "timestamp=1715178069&token=t&signature=s".to_string(),
    ] {
        assert_eq!(
            mailgun_verify(MAILGUN_KEY, &body, MAILGUN_TS),
            Err(Missing),
            "{body}"
        );
    }
}

#[test]
fn mailgun_restamps_its_signature_object_and_locates() {
    let s = super::vectors_providers::source("mailgun", &[MAILGUN_KEY]);
    let stale = mailgun_body(serde_json::json!("1"), "old", "00");
    let now = MAILGUN_TS + 86_400;
    let fresh = s.restamp(stale.as_bytes(), now).unwrap();
    assert_eq!(verify(&s, &[], &fresh, now), Ok(()));
    let again = s.restamp(stale.as_bytes(), now).unwrap();
    assert_ne!(fresh, again, "a new token for each attempt");
    let payload: serde_json::Value = serde_json::from_slice(&fresh).unwrap();
    assert_eq!(payload["signature"]["timestamp"], now.to_string());
    assert_eq!(payload["signature"]["token"].as_str().unwrap().len(), 50);
    let d = parsed(&s, &[], &payload);
    assert_eq!(d.event_id.as_deref(), Some("CPgfbmQMTCKtHW6uIWtuVe"));
    assert_eq!(d.action.as_deref(), Some("delivered"));
    assert_eq!(
        (d.object_type.as_deref(), d.object_id.as_deref()),
        (
            Some("message"),
            Some("20240508142109.1.ABCDEF@mg.example.com")
        )
    );
    assert_eq!(d.event_time_ms, Some(1_715_178_069_908));
    assert_eq!(
        s.one_use_token(&d).as_deref(),
        payload["signature"]["token"].as_str()
    );
    // Other presets have no one-use token.
    let github = super::vectors_providers::source("github", &["x"]);
    assert_eq!(github.one_use_token(&d), None);
}

// ---- Square -------------------------------------------------------------

// Square's published vector: the test of `WebhooksHelper` in its SDKs
// (square-python-sdk, square-nodejs-sdk, square-php-sdk, square-ruby-sdk,
// square-java-sdk, square-go-sdk: the same body, URL, key and signature).
const SQUARE_BODY: &str = r#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;
const SQUARE_SIG: &str = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=";
const SQUARE_KEY: &str = "Ibxx_5AKakO-3qeNVR61Dw";
const SQUARE_URL: &str = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9";

fn square(key: &str, url: &str) -> Source {
    let mut c = config("square", &[key]);
    c.public_url = Some(url.to_string());
    Source::new(c)
}

fn square_verify(s: &Source, sig: &str, body: &str) -> Result<(), SignatureError> {
    verify(
        s,
        &[("x-square-hmacsha256-signature", sig)],
        body.as_bytes(),
        0,
    )
}

#[test]
fn square_accepts_its_published_vector_and_refuses_others() {
    let s = square(SQUARE_KEY, SQUARE_URL);
    assert_eq!(square_verify(&s, SQUARE_SIG, SQUARE_BODY), Ok(()));
    let changed = SQUARE_BODY.replace("MLEFBHHSJGVHD", "MLEFBHHSJGVHE");
    assert_eq!(square_verify(&s, SQUARE_SIG, &changed), Err(Invalid));
    let wrong_key = square("another-key", SQUARE_URL);
    assert_eq!(
        square_verify(&wrong_key, SQUARE_SIG, SQUARE_BODY),
        Err(Invalid)
    );
    // The URL is signed: another one (here with a trailing slash) fails.
    let other_url = square(SQUARE_KEY, &format!("{SQUARE_URL}/"));
    assert_eq!(
        square_verify(&other_url, SQUARE_SIG, SQUARE_BODY),
        Err(Invalid)
    );
    assert_eq!(verify(&s, &[], SQUARE_BODY.as_bytes(), 0), Err(Missing));
    let signed = s.sign(&Vec::<(String, String)>::new(), SQUARE_BODY.as_bytes(), 0);
    assert_eq!(
        signed,
        [(
            "x-square-hmacsha256-signature".to_string(),
            SQUARE_SIG.to_string()
        )]
    );
    let d = parsed(&s, &[], &serde_json::from_str(SQUARE_BODY).unwrap());
    assert_eq!(
        d.event_id.as_deref(),
        Some("ac3ac95b-f97d-458c-a6e6-18981597e05f")
    );
    assert_eq!(d.action.as_deref(), Some("webhooks.test_notification"));
    assert_eq!(
        (d.object_type.as_deref(), d.object_id.as_deref()),
        (
            Some("webhooks"),
            Some("bc368e64-01aa-407e-b46e-3231809b1129")
        )
    );
    assert_eq!(d.event_time_ms, Some(1_657_744_259_037));
}

#[test]
fn square_needs_a_public_url() {
    let c = config("square", &[SQUARE_KEY]);
    let problems = (c.preset.provider().check)(&c);
    assert!(
        problems[0].starts_with(".public_url: required"),
        "{problems:?}"
    );
}

// ---- Twilio -------------------------------------------------------------

// Twilio's published example ("Webhooks security" → "Validating signatures
// from Twilio", twilio.com/docs/usage/security): auth token 12345, URL
// https://mycompany.com/myapp.php?foo=1&bar=2, the five parameters below,
// signature 0/KCTR6DLpKmkAf8muzZqo1nDgQ=. The JSON vector is the SDKs'
// (twilio-python tests/unit/test_request_validator.py,
// test_validation_of_body_succeeds; the same in twilio-csharp, -php, -go):
// the body's hex SHA-256 in `bodySHA256`, signature a9nBmqA0ju/hNViExpshrM61xv4=.
// The `:443` variant was computed with
//   python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(b"12345",
//     b"https://mycompany.com:443/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDE"
//     b"Caller+12349013030Digits1234From+12349013030To+18005551212",
//     hashlib.sha1).digest()).decode())'
const TWILIO_TOKEN: &str = "12345";
const TWILIO_URL: &str = "https://mycompany.com/myapp.php";
const TWILIO_QUERY: &str = "foo=1&bar=2";
/// Out of order and percent-encoded, as a form body comes: the scheme sorts.
const TWILIO_FORM: &str = "To=%2B18005551212&CallSid=CA1234567890ABCDE&Digits=1234&From=%2B12349013030&Caller=%2B12349013030";
const TWILIO_SIG: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";
const TWILIO_SIG_443: &str = "EpDEmp1PyjDYp77YxYU3GILBWzE=";
const TWILIO_JSON: &str = r#"{"property": "value", "boolean": true}"#;
const TWILIO_JSON_SIG: &str = "a9nBmqA0ju/hNViExpshrM61xv4=";
const TWILIO_JSON_SHA: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

fn twilio(token: &str, url: &str) -> Source {
    let mut c = config("twilio", &[token]);
    c.public_url = Some(url.to_string());
    Source::new(c)
}

fn twilio_verify(
    s: &Source,
    content_type: &str,
    sig: &str,
    query: &str,
    body: &str,
) -> Result<(), SignatureError> {
    let headers = [("Content-Type", content_type), ("X-Twilio-Signature", sig)];
    s.verify_request(&headers.to_vec(), query, body.as_bytes(), 0)
}

const FORM_TYPE: &str = "application/x-www-form-urlencoded";

#[test]
fn twilio_accepts_its_published_vectors_and_refuses_others() {
    let s = twilio(TWILIO_TOKEN, TWILIO_URL);
    let form = |sig: &str, query: &str, body: &str| twilio_verify(&s, FORM_TYPE, sig, query, body);
    assert_eq!(form(TWILIO_SIG, TWILIO_QUERY, TWILIO_FORM), Ok(()));
    // With or without the default port, either way round.
    assert_eq!(form(TWILIO_SIG_443, TWILIO_QUERY, TWILIO_FORM), Ok(()));
    let with_port = twilio(TWILIO_TOKEN, "https://mycompany.com:443/myapp.php");
    assert_eq!(
        twilio_verify(&with_port, FORM_TYPE, TWILIO_SIG, TWILIO_QUERY, TWILIO_FORM),
        Ok(())
    );
    // Changed parameter, wrong token, other or no query, another URL.
    let changed = TWILIO_FORM.replace("Digits=1234", "Digits=9999");
    assert_eq!(form(TWILIO_SIG, TWILIO_QUERY, &changed), Err(Invalid));
    let added = format!("{TWILIO_FORM}&Extra=1");
    assert_eq!(form(TWILIO_SIG, TWILIO_QUERY, &added), Err(Invalid));
    let wrong = twilio("54321", TWILIO_URL);
    assert_eq!(
        twilio_verify(&wrong, FORM_TYPE, TWILIO_SIG, TWILIO_QUERY, TWILIO_FORM),
        Err(Invalid)
    );
    assert_eq!(form(TWILIO_SIG, "foo=1&bar=3", TWILIO_FORM), Err(Invalid));
    assert_eq!(form(TWILIO_SIG, "", TWILIO_FORM), Err(Invalid));
    let elsewhere = twilio(TWILIO_TOKEN, "https://mycompany.com:8443/myapp.php");
    assert_eq!(
        twilio_verify(&elsewhere, FORM_TYPE, TWILIO_SIG, TWILIO_QUERY, TWILIO_FORM),
        Err(Invalid)
    );
    let unsigned = [("Content-Type", FORM_TYPE)];
    assert_eq!(
        s.verify_request(&unsigned.to_vec(), TWILIO_QUERY, TWILIO_FORM.as_bytes(), 0),
        Err(Missing)
    );
    // A form that does not decode to UTF-8 cannot be read for the check.
    assert_eq!(form(TWILIO_SIG, TWILIO_QUERY, "Body=%FF%FE"), Err(Missing));

    // JSON: the body's digest in the signed URL.
    let json_type = "application/json";
    let query = format!("{TWILIO_QUERY}&bodySHA256={TWILIO_JSON_SHA}");
    let json = |sig: &str, query: &str, body: &str| twilio_verify(&s, json_type, sig, query, body);
    assert_eq!(json(TWILIO_JSON_SIG, &query, TWILIO_JSON), Ok(()));
    let tampered = TWILIO_JSON.replace("value", "evil");
    assert_eq!(json(TWILIO_JSON_SIG, &query, &tampered), Err(Invalid));
    // Without bodySHA256 the body is covered by nothing: refused.
    let url_only = super::signature::HmacKey(TWILIO_TOKEN.into())
        .tag1(&[b"https://mycompany.com/myapp.php?foo=1&bar=2"]);
    let url_only = base64_of(&url_only);
    assert_eq!(json(&url_only, TWILIO_QUERY, TWILIO_JSON), Err(Invalid));
}

#[test]
fn twilio_sorts_stably_toggles_default_ports_and_locates() {
    use super::providers::twilio::{signed_url, sorted_params, url_variants};
    assert_eq!(sorted_params(b"b=2&a=1&b=1&c").unwrap(), b"a1b2b1c");
    assert_eq!(
        sorted_params(b"Body=Hello+w%C3%B6rld").unwrap(),
        "BodyHello wörld".as_bytes()
    );
    // Byte order: upper case before lower case.
    assert_eq!(sorted_params(b"a=1&B=2").unwrap(), b"B2a1");
    assert_eq!(
        signed_url("https://h/p?old=1", "new=2"),
        "https://h/p?new=2"
    );
    assert_eq!(signed_url("https://h/p?old=1", ""), "https://h/p");
    assert_eq!(
        url_variants("https://h.example/p?q"),
        ["https://h.example/p?q", "https://h.example:443/p?q"]
    );
    assert_eq!(
        url_variants("http://u:pw@h.example:80/p"),
        ["http://u:pw@h.example:80/p", "http://u:pw@h.example/p"]
    );
    assert_eq!(
        url_variants("https://[::1]:8443/p"),
        ["https://[::1]:8443/p"]
    );
    assert_eq!(
        url_variants("https://[::1]/p"),
        ["https://[::1]/p", "https://[::1]:443/p"]
    );

    // The sender's side calls `public_url` as written, query included: the
    // published signature again.
    let s = twilio(TWILIO_TOKEN, "https://mycompany.com/myapp.php?foo=1&bar=2");
    let headers = [("Content-Type", FORM_TYPE)];
    let signed = s.sign(&headers.to_vec(), TWILIO_FORM.as_bytes(), 0);
    assert_eq!(
        signed,
        [("X-Twilio-Signature".to_string(), TWILIO_SIG.to_string())]
    );
    assert_eq!(
        twilio_verify(&s, FORM_TYPE, TWILIO_SIG, TWILIO_QUERY, TWILIO_FORM),
        Ok(())
    );

    let status = "MessageSid=SM1342fe1b2c904d1ab04f0fc7a58abca9&SmsSid=SM1342fe1b2c904d1ab04f0fc7a58abca9&MessageStatus=delivered&AccountSid=AC123&From=%2B15017250604&To=%2B15558675310";
    let headers = [(
        "I-Twilio-Idempotency-Token",
        "4bd1c5ea-2b9e-4c2b-9a4e-3f1b3f1b3f1b",
    )];
    let d = s
        .parse(super::BodyKind::Form, &headers.to_vec(), status.as_bytes())
        .unwrap();
    assert_eq!(
        d.event_id.as_deref(),
        Some("4bd1c5ea-2b9e-4c2b-9a4e-3f1b3f1b3f1b")
    );
    assert_eq!(d.action.as_deref(), Some("delivered"));
    assert_eq!(
        (d.object_type.as_deref(), d.object_id.as_deref()),
        (Some("message"), Some("SM1342fe1b2c904d1ab04f0fc7a58abca9"))
    );
    let call = "CallSid=CA1234567890ABCDE&CallStatus=completed&AccountSid=AC123";
    let d = s
        .parse(
            super::BodyKind::Form,
            &Vec::<(String, String)>::new(),
            call.as_bytes(),
        )
        .unwrap();
    assert_eq!(d.action.as_deref(), Some("completed"));
    assert_eq!(
        (d.object_type.as_deref(), d.object_id.as_deref()),
        (Some("call"), Some("CA1234567890ABCDE"))
    );
    assert_eq!((d.event_id, d.event_time_ms), (None, None));
    let c = config("twilio", &[TWILIO_TOKEN]);
    assert!((c.preset.provider().check)(&c)[0].starts_with(".public_url: required"));
}
