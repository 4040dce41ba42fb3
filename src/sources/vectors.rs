//! Signature test vectors: each scheme of `signature` against a vector
//! computed outside this code, published by the provider where one exists
//! (GitHub, Standard Webhooks), else computed with Python's `hmac` module and
//! cross-checked with `openssl dgst` (the commands stand next to each vector).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::providers::github::SIGNATURE as GITHUB_SIGNATURE;
use super::standard_webhooks_key;
use super::SignatureError;
use super::Source;
use crate::config::{Preset, SignatureEncoding, SourceConfig};
use SignatureError::*;

fn config(preset: Preset, secret: &str) -> SourceConfig {
    super::vectors_providers::config_named("test", preset, &[secret])
}

fn verify(
    source: &Source,
    headers: &[(&str, &str)],
    body: &str,
    now: i64,
) -> Result<(), SignatureError> {
    source.verify(&headers.to_vec(), body.as_bytes(), now)
}

// ---- Stripe -------------------------------------------------------
// python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test_secret",
//   b"1700000000." + BODY, hashlib.sha256).hexdigest())'
// and: printf %s "1700000000.$BODY" | openssl dgst -sha256 -hmac whsec_test_secret
// (the "old" one the same with key b"whsec_old_secret").
const STRIPE_BODY: &str =
    r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"customer.created"}"#;
const STRIPE_SIG: &str = "417353bb9b6abfb88d9fe516c5c3b964105258ffcad788da3ece8e1db687afa2";
const STRIPE_OLD_SIG: &str = "0751e57278bde0f938161dcae59572e91578042ee4acd901e3c4249c586afb43";
const STRIPE_T: i64 = 1_700_000_000;

fn stripe() -> Source {
    Source::new(config(Preset::named("stripe"), "whsec_test_secret"))
}

fn stripe_verify(header: &str, now: i64) -> Result<(), SignatureError> {
    verify(&stripe(), &[("stripe-signature", header)], STRIPE_BODY, now)
}

#[test]
fn stripe_accepts_its_vector() {
    let header = format!("t={STRIPE_T},v1={STRIPE_SIG}");
    assert_eq!(stripe_verify(&header, STRIPE_T + 10), Ok(()));
}

#[test]
fn stripe_accepts_any_v1_while_a_secret_rotates_and_ignores_v0() {
    let header = format!("t={STRIPE_T},v1={STRIPE_OLD_SIG},v1={STRIPE_SIG},v0=00ff");
    assert_eq!(stripe_verify(&header, STRIPE_T), Ok(()));
    let header = format!("t={STRIPE_T}, v0={STRIPE_SIG}, v1={STRIPE_SIG}");
    assert_eq!(stripe_verify(&header, STRIPE_T), Ok(()));
    // v0 alone (even a right value) is not a signature we check.
    let header = format!("t={STRIPE_T},v0={STRIPE_SIG}");
    assert_eq!(stripe_verify(&header, STRIPE_T), Err(Invalid));
    // The old secret's signature alone does not pass.
    let header = format!("t={STRIPE_T},v1={STRIPE_OLD_SIG}");
    assert_eq!(stripe_verify(&header, STRIPE_T), Err(Invalid));
}

#[test]
fn stripe_missing_unparseable_and_wrong_headers() {
    assert_eq!(verify(&stripe(), &[], STRIPE_BODY, STRIPE_T), Err(Missing));
    for header in [
        "",
        "garbage",
        &format!("v1={STRIPE_SIG}"),
        &format!("t=abc,v1={STRIPE_SIG}"),
        &format!("t={STRIPE_T}"),
        &format!("t={STRIPE_T},v1=zz"),
        &format!("t={},v1={STRIPE_SIG}", STRIPE_T + 1),
    ] {
        assert_eq!(stripe_verify(header, STRIPE_T), Err(Invalid), "{header}");
    }
    let tampered = verify(
        &stripe(),
        &[("Stripe-Signature", &format!("t={STRIPE_T},v1={STRIPE_SIG}"))],
        &STRIPE_BODY.replace("customer", "charge"),
        STRIPE_T,
    );
    assert_eq!(tampered, Err(Invalid));
}

#[test]
fn stripe_timestamp_is_checked_after_the_signature_both_ways() {
    let good = format!("t={STRIPE_T},v1={STRIPE_SIG}");
    assert_eq!(stripe_verify(&good, STRIPE_T + 300), Ok(()));
    assert_eq!(stripe_verify(&good, STRIPE_T - 300), Ok(()));
    assert_eq!(
        stripe_verify(&good, STRIPE_T + 301),
        Err(TimestampOutOfTolerance)
    );
    assert_eq!(
        stripe_verify(&good, STRIPE_T - 301),
        Err(TimestampOutOfTolerance)
    );
    let wrong = format!("t={STRIPE_T},v1={STRIPE_OLD_SIG}");
    assert_eq!(stripe_verify(&wrong, STRIPE_T + 10_000), Err(Invalid));
    assert_eq!(stripe_verify(&wrong, STRIPE_T - 10_000), Err(Invalid));
}

// ---- GitHub: the vector published in "Validating webhook deliveries"
// (docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries).
const GITHUB_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn github() -> Source {
    Source::new(config(
        Preset::named("github"),
        "It's a Secret to Everybody",
    ))
}

#[test]
fn github_accepts_its_published_vector() {
    let ok = verify(
        &github(),
        &[("x-hub-signature-256", GITHUB_SIG)],
        "Hello, World!",
        0,
    );
    assert_eq!(ok, Ok(()));
    let sent = github().sign(&Vec::<(String, String)>::new(), b"Hello, World!", 0);
    assert_eq!(
        sent,
        vec![(GITHUB_SIGNATURE.to_string(), GITHUB_SIG.to_string())]
    );
}

#[test]
fn github_legacy_sha1_header_alone_is_missing() {
    let legacy = [(
        "X-Hub-Signature",
        "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
    )];
    assert_eq!(verify(&github(), &legacy, "Hello, World!", 0), Err(Missing));
}

#[test]
fn github_wrong_prefix_or_body_is_invalid() {
    let hex_only = GITHUB_SIG.trim_start_matches("sha256=");
    for header in [hex_only, "sha1=757107ea", "sha256=", "sha256=xyz"] {
        let got = verify(
            &github(),
            &[("X-Hub-Signature-256", header)],
            "Hello, World!",
            0,
        );
        assert_eq!(got, Err(Invalid), "{header}");
    }
    let got = verify(
        &github(),
        &[("X-Hub-Signature-256", GITHUB_SIG)],
        "Hello, World?",
        0,
    );
    assert_eq!(got, Err(Invalid));
}

// ---- Shopify / Acuity: base64 of HMAC(body).
// python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(
//   b"shpss_test_secret", BODY, hashlib.sha256).digest()).decode())'
// and: printf %s "$BODY" | openssl dgst -sha256 -hmac shpss_test_secret -binary | base64
// (Acuity: key b"acuity-api-key", its form body below).
const SHOPIFY_BODY: &str = r#"{"id":820982911946154508,"email":"jon@example.com"}"#;
const SHOPIFY_SIG: &str = "LnwdZPLBbdjkBwPD/lDL1/rYEGby/GHPtL1aAH6Dxjc=";
const ACUITY_BODY: &str = "action=scheduled&id=12345&calendarID=1&appointmentTypeID=2";
const ACUITY_SIG: &str = "U/Uho7R3PnvDZLDzvtkLYWrjSrwW6vX7GYAeSGzhpVE=";

#[test]
fn shopify_accepts_its_vector_and_refuses_others() {
    let shopify = Source::new(config(Preset::named("shopify"), "shpss_test_secret"));
    let ok = verify(
        &shopify,
        &[("X-Shopify-Hmac-SHA256", SHOPIFY_SIG)],
        SHOPIFY_BODY,
        0,
    );
    assert_eq!(ok, Ok(()));
    assert_eq!(verify(&shopify, &[], SHOPIFY_BODY, 0), Err(Missing));
    let hex = hex::encode(STANDARD.decode(SHOPIFY_SIG).unwrap());
    let got = verify(
        &shopify,
        &[("X-Shopify-Hmac-Sha256", &hex)],
        SHOPIFY_BODY,
        0,
    );
    assert_eq!(got, Err(Invalid), "hex is not Shopify's encoding");
    let got = verify(
        &shopify,
        &[("X-Shopify-Hmac-Sha256", ACUITY_SIG)],
        SHOPIFY_BODY,
        0,
    );
    assert_eq!(got, Err(Invalid));
}

#[test]
fn acuity_accepts_its_vector_and_refuses_others() {
    let acuity = Source::new(config(Preset::named("acuity"), "acuity-api-key"));
    let ok = verify(
        &acuity,
        &[("x-acuity-signature", ACUITY_SIG)],
        ACUITY_BODY,
        0,
    );
    assert_eq!(ok, Ok(()));
    assert_eq!(verify(&acuity, &[], ACUITY_BODY, 0), Err(Missing));
    let got = verify(
        &acuity,
        &[("X-Acuity-Signature", "not base64!")],
        ACUITY_BODY,
        0,
    );
    assert_eq!(got, Err(Invalid));
    let got = verify(
        &acuity,
        &[("X-Acuity-Signature", ACUITY_SIG)],
        "action=canceled&id=12345",
        0,
    );
    assert_eq!(got, Err(Invalid));
}

// ---- Standard Webhooks: the vector published by the specification and
// its reference libraries (github.com/standard-webhooks/standard-webhooks).
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: &str = "1614265330";
const SW_BODY: &str = r#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const SW_NOW: i64 = 1_614_265_330;

fn standard() -> Source {
    Source::new(config(Preset::named("standard"), SW_SECRET))
}

fn sw_verify(signature: &str, now: i64) -> Result<(), SignatureError> {
    let headers = [
        ("webhook-id", SW_ID),
        ("webhook-timestamp", SW_TS),
        ("webhook-signature", signature),
    ];
    verify(&standard(), &headers, SW_BODY, now)
}

#[test]
fn standard_webhooks_accepts_the_published_vector() {
    assert_eq!(sw_verify(SW_SIG, SW_NOW), Ok(()));
    let headers = [("webhook-id", SW_ID)];
    let sent = standard().sign(&headers.to_vec(), SW_BODY.as_bytes(), SW_NOW);
    assert_eq!(sent[0], ("webhook-id".to_string(), SW_ID.to_string()));
    assert_eq!(
        sent[1],
        ("webhook-timestamp".to_string(), SW_TS.to_string())
    );
    assert_eq!(
        sent[2],
        ("webhook-signature".to_string(), SW_SIG.to_string())
    );
}

#[test]
fn standard_webhooks_rotation_and_v1a_entries() {
    let other = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=";
    let v1a = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYBQ=";
    assert_eq!(sw_verify(&format!("{other} {SW_SIG}"), SW_NOW), Ok(()));
    assert_eq!(
        sw_verify(&format!("{v1a} {other}  {SW_SIG}"), SW_NOW),
        Ok(())
    );
    assert_eq!(sw_verify(other, SW_NOW), Err(Invalid));
    assert_eq!(sw_verify(v1a, SW_NOW), Err(Invalid));
    // The right bytes under another version tag are not a v1 signature.
    let as_v1a = SW_SIG.replacen("v1,", "v1a,", 1);
    assert_eq!(sw_verify(&as_v1a, SW_NOW), Err(Invalid));
    assert_eq!(sw_verify("", SW_NOW), Err(Invalid));
    assert_eq!(sw_verify("v1,!!!", SW_NOW), Err(Invalid));
}

#[test]
fn standard_webhooks_missing_id_timestamp_or_signature_is_missing() {
    let all = [
        ("webhook-id", SW_ID),
        ("webhook-timestamp", SW_TS),
        ("webhook-signature", SW_SIG),
    ];
    for skip in 0..all.len() {
        let headers: Vec<_> = (0..all.len())
            .filter(|i| *i != skip)
            .map(|i| all[i])
            .collect();
        assert_eq!(
            verify(&standard(), &headers, SW_BODY, SW_NOW),
            Err(Missing),
            "{skip}"
        );
    }
}

#[test]
fn standard_webhooks_timestamp_after_signature() {
    assert_eq!(sw_verify(SW_SIG, SW_NOW + 300), Ok(()));
    assert_eq!(
        sw_verify(SW_SIG, SW_NOW + 301),
        Err(TimestampOutOfTolerance)
    );
    assert_eq!(
        sw_verify(SW_SIG, SW_NOW - 301),
        Err(TimestampOutOfTolerance)
    );
    let wrong = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=";
    assert_eq!(sw_verify(wrong, SW_NOW + 10_000), Err(Invalid));
    let headers = [
        ("webhook-id", SW_ID),
        ("webhook-timestamp", "yesterday"),
        ("webhook-signature", SW_SIG),
    ];
    assert_eq!(verify(&standard(), &headers, SW_BODY, SW_NOW), Err(Invalid));
}

#[test]
fn standard_webhooks_key_needs_the_prefix_and_base64() {
    let key = standard_webhooks_key(SW_SECRET).unwrap();
    assert_eq!(
        key,
        STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
    );
    assert_eq!(
        standard_webhooks_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        None
    );
    assert_eq!(standard_webhooks_key("whsec_"), None);
    assert_eq!(standard_webhooks_key("whsec_not base64!"), None);
    assert_eq!(
        standard_webhooks_key("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        None
    );
    // Padding may be present or left off.
    assert_eq!(
        standard_webhooks_key("whsec_aGVsbG8="),
        Some(b"hello".to_vec())
    );
    assert_eq!(
        standard_webhooks_key("whsec_aGVsbG8"),
        Some(b"hello".to_vec())
    );
}

#[test]
fn standard_webhooks_sign_generates_an_id_when_none_is_given() {
    let sent = standard().sign(&Vec::<(String, String)>::new(), b"{}", SW_NOW);
    let id = &sent[0].1;
    assert!(id.starts_with("msg_") && id.len() == 4 + 32, "{id}");
    assert_eq!(standard().verify(&sent, b"{}", SW_NOW), Ok(()));
    let again = standard().sign(&Vec::<(String, String)>::new(), b"{}", SW_NOW);
    assert_ne!(again[0].1, *id);
}

// ---- Generic: HMAC(body) in the configured header and encoding.
// printf %s '{"invoice":{"id":"in_1"}}' | openssl dgst -sha256 -hmac billing-secret
// printf %s '{"invoice":{"id":"in_1"}}' | openssl dgst -sha256 -hmac billing-secret -binary | base64
// (the same values from Python's hmac module).
const GENERIC_BODY: &str = r#"{"invoice":{"id":"in_1"}}"#;
const GENERIC_HEX: &str = "5e541b7e17bcb76fb9b3d55fcc078ce9a2f771b10c99ddf67f3d4374de1ec6f4";
const GENERIC_B64: &str = "XlQbfhe8t2+5s9VfzAeM6aL3cbEMmd32fz1DdN4exvQ=";

fn generic(encoding: SignatureEncoding, prefix: Option<&str>) -> Source {
    let mut c = config(Preset::named("generic"), "billing-secret");
    c.signature_header = Some("X-Signature".into());
    c.signature_encoding = encoding;
    c.signature_prefix = prefix.map(str::to_string);
    Source::new(c)
}

#[test]
fn generic_hex_and_base64() {
    let hex = generic(SignatureEncoding::Hex, None);
    let b64 = generic(SignatureEncoding::Base64, None);
    assert_eq!(
        verify(&hex, &[("x-signature", GENERIC_HEX)], GENERIC_BODY, 0),
        Ok(())
    );
    let upper = GENERIC_HEX.to_uppercase();
    assert_eq!(
        verify(&hex, &[("x-signature", &upper)], GENERIC_BODY, 0),
        Ok(())
    );
    assert_eq!(
        verify(&b64, &[("X-Signature", GENERIC_B64)], GENERIC_BODY, 0),
        Ok(())
    );
    assert_eq!(
        verify(&hex, &[("X-Signature", GENERIC_B64)], GENERIC_BODY, 0),
        Err(Invalid)
    );
    assert_eq!(
        verify(&b64, &[("X-Signature", GENERIC_HEX)], GENERIC_BODY, 0),
        Err(Invalid)
    );
    assert_eq!(
        verify(&hex, &[("X-Other", GENERIC_HEX)], GENERIC_BODY, 0),
        Err(Missing)
    );
}

#[test]
fn generic_prefix_is_stripped_and_required() {
    let scheme = generic(SignatureEncoding::Hex, Some("sha256="));
    let with = format!("sha256={GENERIC_HEX}");
    assert_eq!(
        verify(&scheme, &[("X-Signature", &with)], GENERIC_BODY, 0),
        Ok(())
    );
    assert_eq!(
        verify(&scheme, &[("X-Signature", GENERIC_HEX)], GENERIC_BODY, 0),
        Err(Invalid)
    );
    let sent = scheme.sign(&Vec::<(String, String)>::new(), GENERIC_BODY.as_bytes(), 0);
    assert_eq!(sent, vec![("X-Signature".to_string(), with)]);
}

#[test]
fn verify_off_always_passes_and_signs_nothing() {
    let mut c = config(Preset::named("generic"), "x");
    c.secrets = Vec::new();
    let off = Source::new(c);
    assert_eq!(verify(&off, &[], "anything", 0), Ok(()));
    assert!(off
        .sign(&Vec::<(String, String)>::new(), b"{}", 0)
        .is_empty());
}

#[test]
fn debug_output_never_shows_a_key() {
    let text = format!("{:?} {:?}", stripe(), standard());
    assert!(!text.contains("whsec_test_secret"), "{text}");
    assert!(text.contains("redacted"));
}
