//! Hostile ids: provider ids, event types, actions and object ids over
//! their 256-byte limit, in bodies, headers and forms, for every scheme —
//! each correctly signed, each refused as an invalid payload.

use super::*;

pub(super) fn cases(f: &Fixture) -> Vec<Case> {
    let app = f.app;
    let now = f.now;
    let id_10kb = "e".repeat(10 * 1024);
    let mut cases = Vec::new();
    // ---- Ids, actions and objects over 256 bytes, correctly signed.
    let long_github = br#"{"action":"opened","issue":{"id":1}}"#.to_vec();
    let e10k = f.stripe_with(&id_10kb, "invoice.paid", "in_1");
    let t10k = f.stripe_with("evt_t10k", &id_10kb, "in_1");
    let o10k = f.stripe_with("evt_o10k", "invoice.paid", &id_10kb);
    let multibyte = f.stripe_with(&"é".repeat(129), "invoice.paid", "in_1");
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
            app.signed("stripe", &[], &e10k),
            e10k.clone(),
        ),
        (
            "stripe: 10 KB event type",
            "/webhooks/stripe",
            app.signed("stripe", &[], &t10k),
            t10k.clone(),
        ),
        (
            "stripe: 10 KB object id",
            "/webhooks/stripe",
            app.signed("stripe", &[], &o10k),
            o10k.clone(),
        ),
        (
            "stripe: 129 two-byte characters (258 bytes)",
            "/webhooks/stripe",
            app.signed("stripe", &[], &multibyte),
            multibyte.clone(),
        ),
        (
            "github: 10 KB X-GitHub-Delivery",
            "/webhooks/github",
            app.signed(
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
            app.signed(
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
            app.signed(
                "shopify",
                &[
                    ("X-Shopify-Topic", "orders/create"),
                    ("X-Shopify-Event-Id", &id_10kb),
                ],
                &f.shopify_body,
            ),
            f.shopify_body.clone(),
        ),
        (
            "shopify: 10 KB X-Shopify-Topic",
            "/webhooks/shopify",
            app.signed(
                "shopify",
                &[("X-Shopify-Topic", &id_10kb), ("X-Shopify-Event-Id", "e-2")],
                &f.shopify_body,
            ),
            f.shopify_body.clone(),
        ),
        (
            "standard: 10 KB webhook-id",
            "/webhooks/standard",
            app.standard_at(&standard_long_id, now, &f.standard_body),
            f.standard_body.clone(),
        ),
        (
            "acuity: 10 KB appointment id",
            "/webhooks/acuity",
            app.signed_form("acuity", &acuity_long),
            acuity_long.clone(),
        ),
        (
            "orders: 10 KB X-Request-Id",
            "/webhooks/orders",
            vec![
                f.json_type.clone(),
                header("X-Request-Id", id_10kb.as_str()),
            ],
            br#"{"order":1}"#.to_vec(),
        ),
        (
            "billing: 10 KB invoice id",
            "/webhooks/billing",
            app.signed("billing", &[], &billing_long),
            billing_long.clone(),
        ),
    ] {
        cases.push(Case {
            name: name.to_string(),
            request: http(path, headers, body),
            expect: BAD,
            huge: false,
        });
    }

    cases
}
