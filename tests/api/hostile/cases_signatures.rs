//! Hostile signatures, for every scheme: Stripe's `t=…,v1=…` list, GitHub's
//! `sha256=` hex, Shopify's and Acuity's base64, Standard Webhooks' id,
//! timestamp and `v1,` list, and a generic HMAC with a prefix (billing) —
//! missing, empty, truncated, garbage, in the wrong encoding, with stale or
//! future timestamps (correctly signed or not), signed for another body, and
//! sent as bytes that are not UTF-8.

use super::*;

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

pub(super) fn cases(f: &Fixture) -> Vec<Case> {
    let app = f.app;
    let now = f.now;

    // ---- Stripe signatures.
    let stripe_sig_case = |name: &str, value: String, expect: Expect| -> Case {
        Case {
            name: format!("stripe: {name}"),
            request: http(
                "/webhooks/stripe",
                replaced(f.stripe_ok.clone(), "Stripe-Signature", value),
                f.event.clone(),
            ),
            expect,
            huge: false,
        }
    };
    let mut cases = vec![
        stripe_sig_case("empty header", String::new(), INVALID),
        stripe_sig_case("garbage", "\u{1F4A5} not a signature".into(), INVALID),
        stripe_sig_case("t only", format!("t={now}"), INVALID),
        stripe_sig_case("v1 only", format!("v1={}", f.stripe_v1), INVALID),
        stripe_sig_case(
            "truncated v1",
            format!("t={now},v1={}", &f.stripe_v1[..62]),
            INVALID,
        ),
        stripe_sig_case(
            "v1 cut to its first half",
            format!("t={now},v1={}", &f.stripe_v1[..32]),
            INVALID,
        ),
        stripe_sig_case(
            "v1 not hex",
            format!("t={now},v1={}", "zz".repeat(32)),
            INVALID,
        ),
        stripe_sig_case(
            "only a v0 entry",
            format!("t={now},v0={}", f.stripe_v1),
            INVALID,
        ),
        stripe_sig_case("separators only", ",,,=,=,".into(), INVALID),
        stripe_sig_case(
            "timestamp beyond i64",
            format!("t=99999999999999999999,v1={}", f.stripe_v1),
            INVALID,
        ),
        stripe_sig_case(
            "stale timestamp with a wrong signature",
            format!("t={},v1={}", now - 3600, "0".repeat(64)),
            INVALID,
        ),
        stripe_sig_case(
            "the timestamp changed after signing",
            format!("t={},v1={}", now + 1, f.stripe_v1),
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
        cases.push(Case {
            name: format!("stripe: {name}"),
            request: http(
                "/webhooks/stripe",
                app.stripe_at(t, &f.event),
                f.event.clone(),
            ),
            expect: STALE,
            huge: false,
        });
    }
    cases.push(Case {
        name: "stripe: signed for another body".into(),
        request: http(
            "/webhooks/stripe",
            f.stripe_ok.clone(),
            f.stripe_with("evt_other", "invoice.paid", "in_other"),
        ),
        expect: INVALID,
        huge: false,
    });

    // ---- GitHub signatures.
    for (name, value, expect) in [
        ("missing", None, MISSING),
        ("empty", Some(String::new()), INVALID),
        ("prefix only", Some("sha256=".to_string()), INVALID),
        ("truncated", Some(f.github_sig[..40].to_string()), INVALID),
        (
            "odd-length hex",
            Some(f.github_sig[..70].to_string()),
            INVALID,
        ),
        (
            "no prefix",
            Some(f.github_sig.trim_start_matches("sha256=").to_string()),
            INVALID,
        ),
        (
            "upper-case prefix",
            Some(f.github_sig.replace("sha256=", "SHA256=")),
            INVALID,
        ),
        (
            "sha1 prefix",
            Some(f.github_sig.replace("sha256=", "sha1=")),
            INVALID,
        ),
        (
            "garbage",
            Some("sha256=\u{1F4A5}\u{1F4A5}".to_string()),
            INVALID,
        ),
    ] {
        let headers = match value {
            Some(v) => replaced(f.github_ok.clone(), "X-Hub-Signature-256", v),
            None => without(f.github_ok.clone(), "X-Hub-Signature-256"),
        };
        cases.push(Case {
            name: format!("github: {name}"),
            request: http("/webhooks/github", headers, f.github_body.clone()),
            expect,
            huge: false,
        });
    }

    // ---- Shopify and Acuity (base64 over the body).
    for (source, sig_header, ok, sig, body) in [
        (
            "shopify",
            "X-Shopify-Hmac-Sha256",
            &f.shopify_ok,
            &f.shopify_sig,
            &f.shopify_body,
        ),
        (
            "acuity",
            "X-Acuity-Signature",
            &f.acuity_ok,
            &f.acuity_sig,
            &f.acuity_body,
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
            cases.push(Case {
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
        request: http("/webhooks/standard", headers, f.standard_body.clone()),
        expect,
        huge: false,
    };
    let sig_b64 = f.standard_sig.strip_prefix("v1,").unwrap().to_string();
    cases.extend([
        standard_case(
            "missing webhook-id",
            without(f.standard_ok.clone(), "webhook-id"),
            MISSING,
        ),
        standard_case(
            "missing webhook-timestamp",
            without(f.standard_ok.clone(), "webhook-timestamp"),
            MISSING,
        ),
        standard_case(
            "missing webhook-signature",
            without(f.standard_ok.clone(), "webhook-signature"),
            MISSING,
        ),
        standard_case(
            "v1 with nothing after the comma",
            replaced(f.standard_ok.clone(), "webhook-signature", "v1,"),
            INVALID,
        ),
        standard_case(
            "v1 without a comma",
            replaced(
                f.standard_ok.clone(),
                "webhook-signature",
                format!("v1{sig_b64}"),
            ),
            INVALID,
        ),
        standard_case(
            "only a v1a entry",
            replaced(
                f.standard_ok.clone(),
                "webhook-signature",
                format!("v1a,{sig_b64}"),
            ),
            INVALID,
        ),
        standard_case(
            "truncated base64",
            replaced(
                f.standard_ok.clone(),
                "webhook-signature",
                format!("v1,{}", &sig_b64[..20]),
            ),
            INVALID,
        ),
        standard_case(
            "garbage",
            replaced(
                f.standard_ok.clone(),
                "webhook-signature",
                ",,, v1 ,v1,, \u{1F4A5}",
            ),
            INVALID,
        ),
        standard_case(
            "non-numeric timestamp",
            replaced(f.standard_ok.clone(), "webhook-timestamp", "yesterday"),
            INVALID,
        ),
        standard_case(
            "webhook-id changed after signing",
            replaced(f.standard_ok.clone(), "webhook-id", "msg_other"),
            INVALID,
        ),
        standard_case(
            "stale, correctly signed",
            app.standard_at("msg_stale", now - 301, &f.standard_body),
            STALE,
        ),
        standard_case(
            "future, correctly signed",
            app.standard_at("msg_future", now + 301, &f.standard_body),
            STALE,
        ),
        standard_case(
            "stale with a wrong signature",
            replaced(
                app.standard_at("msg_stale2", now - 3600, &f.standard_body),
                "webhook-signature",
                format!("v1,{}", "A".repeat(43)),
            ),
            INVALID,
        ),
    ]);

    // ---- Generic HMAC with a prefix (billing).
    for (name, value, expect) in [
        ("missing", None, MISSING),
        ("without its prefix", Some(f.billing_hex.clone()), INVALID),
        ("prefix only", Some("sha256=".to_string()), INVALID),
        (
            "truncated hex",
            Some(format!("sha256={}", &f.billing_hex[..40])),
            INVALID,
        ),
        (
            "base64 instead of hex",
            Some(format!("sha256={}", base64_of_hex(&f.billing_hex))),
            INVALID,
        ),
        (
            "prefix twice",
            Some(format!("sha256=sha256={}", f.billing_hex)),
            INVALID,
        ),
        ("garbage", Some("\u{1F4A5}".to_string()), INVALID),
    ] {
        let headers = match value {
            Some(v) => replaced(f.billing_ok.clone(), "X-Signature", v),
            None => without(f.billing_ok.clone(), "X-Signature"),
        };
        cases.push(Case {
            name: format!("billing: {name}"),
            request: http("/webhooks/billing", headers, f.billing_body.clone()),
            expect,
            huge: false,
        });
    }

    // ---- A signature header present but not UTF-8 is unparseable: invalid, not missing.
    for (source, name, ok, body) in [
        ("stripe", "Stripe-Signature", &f.stripe_ok, &f.event),
        (
            "github",
            "X-Hub-Signature-256",
            &f.github_ok,
            &f.github_body,
        ),
        (
            "shopify",
            "X-Shopify-Hmac-Sha256",
            &f.shopify_ok,
            &f.shopify_body,
        ),
        ("acuity", "X-Acuity-Signature", &f.acuity_ok, &f.acuity_body),
        (
            "standard",
            "webhook-signature",
            &f.standard_ok,
            &f.standard_body,
        ),
        (
            "standard",
            "webhook-timestamp",
            &f.standard_ok,
            &f.standard_body,
        ),
        ("standard", "webhook-id", &f.standard_ok, &f.standard_body),
        ("billing", "X-Signature", &f.billing_ok, &f.billing_body),
    ] {
        cases.push(Case {
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

    cases
}
