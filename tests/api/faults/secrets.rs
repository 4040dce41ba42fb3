//! Secrets: with the real binary at `RUST_LOG=debug`, no secret, signature
//! or credential reaches its output or the config's debug form.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hookledger::config::{Config, Secret};
use hookledger::sources::Source;
use hookledger::store::Store;
use serde_json::{json, Value};
use wiremock::matchers::{basic_auth, bearer_token, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::backend_tests;

backend_tests!(no_secret_reaches_the_debug_log_or_the_config_debug_output,);

fn random_secret(label: &str) -> String {
    format!(
        "{label}-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// Everything secret in the session's config, by name.
struct Secrets {
    admin: String,
    wrong_admin: String,
    stripe: String,
    github: String,
    shopify: String,
    acuity: String,
    standard: String,
    standard_key: String,
    billing: String,
    billing64: String,
    stripe_fetch: String,
    bearer: String,
    acuity_fetch: String,
    basic_password: String,
    keyed: String,
    header_key: String,
}

impl Secrets {
    fn new() -> Secrets {
        let key: [u8; 24] = rand::random();
        let standard_key = BASE64.encode(key);
        Secrets {
            admin: random_secret("admin-token"),
            wrong_admin: random_secret("not-the-admin-token"),
            stripe: format!("whsec_{}", random_secret("stripe")),
            github: random_secret("github"),
            shopify: random_secret("shopify"),
            acuity: random_secret("acuity"),
            standard: format!("whsec_{standard_key}"),
            standard_key,
            billing: random_secret("billing"),
            billing64: random_secret("billing64"),
            stripe_fetch: format!("whsec_{}", random_secret("stripe-fetch")),
            bearer: format!("sk_live_{}", random_secret("bearer")),
            acuity_fetch: random_secret("acuity-fetch"),
            basic_password: random_secret("basic-password"),
            keyed: random_secret("keyed"),
            header_key: random_secret("header-api-key"),
        }
    }

    /// Every value that must never be printed.
    fn all(&self) -> Vec<(&'static str, String)> {
        vec![
            ("admin token", self.admin.clone()),
            ("a wrong admin token", self.wrong_admin.clone()),
            ("stripe secret", self.stripe.clone()),
            ("github secret", self.github.clone()),
            ("shopify secret", self.shopify.clone()),
            ("acuity secret", self.acuity.clone()),
            ("standard secret", self.standard.clone()),
            ("standard key", self.standard_key.clone()),
            ("billing secret", self.billing.clone()),
            ("billing64 secret", self.billing64.clone()),
            ("stripe_fetch secret", self.stripe_fetch.clone()),
            ("fetch bearer", self.bearer.clone()),
            ("acuity_fetch secret", self.acuity_fetch.clone()),
            ("basic password", self.basic_password.clone()),
            (
                "basic credentials",
                BASE64.encode(format!("fetcher:{}", self.basic_password)),
            ),
            ("keyed secret", self.keyed.clone()),
            ("fetch header value", self.header_key.clone()),
        ]
    }

    /// Some come through `${VAR}`s, as production configs have them.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HL_TEST_ADMIN", self.admin.clone()),
            ("HL_TEST_STRIPE", self.stripe.clone()),
            ("HL_TEST_BEARER", self.bearer.clone()),
        ]
    }

    fn config_text(&self, database_url: &str, upstream: &str) -> String {
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
database_url = "{database_url}"
admin_token = "${{HL_TEST_ADMIN}}"
workers = 2
shutdown_grace_secs = 5

[processing]
lease_secs = 5
max_attempts = 2
backoff_base_secs = 1
backoff_max_secs = 1
poll_interval_ms = 50

[sources.stripe]
preset = "stripe"
secret = "${{HL_TEST_STRIPE}}"

[sources.github]
preset = "github"
secret = "{github}"

[sources.shopify]
preset = "shopify"
secret = "{shopify}"

[sources.acuity]
preset = "acuity"
secret = "{acuity}"

[sources.standard]
preset = "standard"
secret = "{standard}"

[sources.billing]
preset = "generic"
secret = "{billing}"
signature_header = "X-Signature"
signature_prefix = "sha256="
event_id = {{ header = "X-Request-Id" }}

[sources.billing64]
preset = "generic"
secret = "{billing64}"
signature_header = "X-Billing-Signature"
signature_encoding = "base64"
event_id = {{ pointer = "/id" }}

[sources.stripe_fetch]
preset = "stripe"
secret = "{stripe_fetch}"
fetch.url = "{upstream}/v1/events/{{event_id}}"
fetch.bearer = "${{HL_TEST_BEARER}}"
fetch.timeout_secs = 2

[sources.acuity_fetch]
preset = "acuity"
secret = "{acuity_fetch}"
fetch.url = "{upstream}/appointments/{{object_id}}"
fetch.basic = "fetcher:{basic_password}"
fetch.timeout_secs = 2

[sources.keyed_fetch]
preset = "generic"
secret = "{keyed}"
signature_header = "X-Keyed-Signature"
event_id = {{ header = "X-Request-Id" }}
object_type = {{ value = "thing" }}
object_id = {{ pointer = "/id" }}
fetch.url = "{upstream}/keyed/{{object_id}}"
fetch.headers = {{ "X-Api-Key" = "{header_key}" }}
fetch.timeout_secs = 2
"#,
            github = self.github,
            shopify = self.shopify,
            acuity = self.acuity,
            standard = self.standard,
            billing = self.billing,
            billing64 = self.billing64,
            stripe_fetch = self.stripe_fetch,
            acuity_fetch = self.acuity_fetch,
            basic_password = self.basic_password,
            keyed = self.keyed,
            header_key = self.header_key,
        )
    }
}

/// One delivery of the session.
struct Delivery {
    source: &'static str,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn json_delivery(
    source: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Value,
) -> Delivery {
    Delivery {
        source,
        content_type: "application/json",
        headers,
        body: serde_json::to_vec(&body).unwrap(),
    }
}

/// Headers that only identify a delivery, not sign it.
fn is_signature_header(name: &str) -> bool {
    !["webhook-id", "webhook-timestamp"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// Issue item 6, with the real binary at `RUST_LOG=debug`, stdout and stderr
/// captured: good and badly signed deliveries to every signed source,
/// fetches with a bearer token, basic auth and a secret header (the
/// upstream insists on each), an upstream that fails and one that answers
/// 401 echoing the token back, admin calls with the right token and wrong
/// ones, a replay, SIGTERM. None of the config's secrets, the admin token
/// (right or wrong), the fetch credentials (the basic ones encoded too) or
/// any signature sent appears in the log, in `last_error`, or in the
/// config's and the sources' `Debug` output.
async fn no_secret_reaches_the_debug_log_or_the_config_debug_output(backend: Backend) {
    let secrets = Secrets::new();
    let db = TestDb::new(backend).await;
    let upstream = MockServer::start().await;
    let text = secrets.config_text(&db.url, &upstream.uri());
    let env: std::collections::BTreeMap<String, String> = secrets
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let config: Config = hookledger::config::load_str(&text, &env).expect("valid config");

    // The upstream answers only when the credentials are right.
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_fetch_ok"))
        .and(bearer_token(secrets.bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "evt_fetch_ok"})))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_fetch_denied"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header(
                    "WWW-Authenticate",
                    format!("Bearer error=\"{}\"", secrets.bearer).as_str(),
                )
                .set_body_json(json!({"error": format!("token {} revoked", secrets.bearer)})),
        )
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/events/evt_fetch_fail"))
        .respond_with(
            ResponseTemplate::new(500).set_body_string(format!("upstream saw {}", secrets.bearer)),
        )
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/appointments/5001"))
        .and(basic_auth("fetcher", secrets.basic_password.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 5001})))
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/keyed/k1"))
        .and(header("X-Api-Key", secrets.header_key.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "k1"})))
        .mount(&upstream)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hookledger.toml");
    std::fs::write(&config_path, &text).unwrap();
    let log_path: PathBuf = dir.path().join("hookledger.log");
    let env_pairs = secrets.env();
    let mut process_env: Vec<(&str, &str)> =
        env_pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    process_env.push(("RUST_LOG", "debug"));
    let client = reqwest::Client::new();
    let mut process = Binary::start(&config_path, &process_env, Some(&log_path));
    process.wait_ready(&client).await;
    let store = Store::open(&db.url).await.unwrap();

    let now = chrono::Utc::now().timestamp();
    let stripe_body = |id: &str, object: &str| {
        json!({"id": id, "object": "event", "type": "invoice.paid", "created": now,
               "data": {"object": {"id": object, "object": "invoice"}}})
    };
    let deliveries = vec![
        json_delivery("stripe", vec![], stripe_body("evt_plain", "in_plain")),
        json_delivery(
            "github",
            vec![
                ("X-GitHub-Delivery", "gh-1".into()),
                ("X-GitHub-Event", "issues".into()),
            ],
            json!({"action": "opened", "issue": {"id": 7}}),
        ),
        json_delivery(
            "shopify",
            vec![
                ("X-Shopify-Topic", "orders/create".into()),
                ("X-Shopify-Event-Id", "sh-1".into()),
            ],
            json!({"id": 820982911946154508u64}),
        ),
        Delivery {
            source: "acuity",
            content_type: "application/x-www-form-urlencoded",
            headers: vec![],
            body: b"action=scheduled&id=4001".to_vec(),
        },
        json_delivery(
            "standard",
            vec![("webhook-id", "msg_1".into())],
            json!({"type": "invoice.paid", "timestamp": "2026-01-01T00:00:00Z", "data": {"id": "inv_s"}}),
        ),
        json_delivery(
            "billing",
            vec![("X-Request-Id", "bill-1".into())],
            json!({"total": 5}),
        ),
        json_delivery("billing64", vec![], json!({"id": "b64-1"})),
        json_delivery("stripe_fetch", vec![], stripe_body("evt_fetch_ok", "in_ok")),
        json_delivery(
            "stripe_fetch",
            vec![],
            stripe_body("evt_fetch_denied", "in_denied"),
        ),
        json_delivery(
            "stripe_fetch",
            vec![],
            stripe_body("evt_fetch_fail", "in_fail"),
        ),
        Delivery {
            source: "acuity_fetch",
            content_type: "application/x-www-form-urlencoded",
            headers: vec![],
            body: b"action=scheduled&id=5001".to_vec(),
        },
        json_delivery(
            "keyed_fetch",
            vec![("X-Request-Id", "keyed-1".into())],
            json!({"id": "k1"}),
        ),
    ];

    let mut signatures: Vec<String> = Vec::new();
    let mut ids: HashMap<String, i64> = HashMap::new();
    for delivery in &deliveries {
        let source = Source::new(config.sources[delivery.source].clone());
        let mut wrong_config = config.sources[delivery.source].clone();
        wrong_config.secrets = vec![Secret::new(match delivery.source {
            "standard" => format!("whsec_{}", BASE64.encode(b"not the key at all")),
            _ => random_secret("wrong"),
        })];
        let wrong = Source::new(wrong_config);
        let mut base: Vec<(String, String)> =
            vec![("Content-Type".into(), delivery.content_type.into())];
        base.extend(
            delivery
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone())),
        );
        let signed = |signer: &Source, at: i64| {
            let mut all = base.clone();
            for (name, value) in signer.sign(&base, &delivery.body, at) {
                all.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
                all.push((name, value));
            }
            all
        };
        let good = signed(&source, now);
        let mut tampered = delivery.body.clone();
        tampered.extend_from_slice(b" ");
        let attempts = [
            (good.clone(), delivery.body.clone(), 202),
            (signed(&wrong, now), delivery.body.clone(), 401),
            (good.clone(), tampered, 401),
            (signed(&source, now - 3600), delivery.body.clone(), 401),
        ];
        for (headers, body, expected) in attempts {
            for (name, value) in &headers {
                if base.iter().all(|(k, _)| k != name) && is_signature_header(name) {
                    signatures.push(value.clone());
                }
            }
            let answer =
                post_json(&client, &process.address, delivery.source, &headers, body).await;
            if expected == 202 {
                assert_eq!(answer.status, 202, "{}: {:?}", delivery.source, answer.body);
                ids.insert(
                    String::from_utf8_lossy(&delivery.body).to_string(),
                    answer.id(),
                );
            } else if matches!(
                delivery.source,
                "github"
                    | "shopify"
                    | "acuity"
                    | "billing"
                    | "billing64"
                    | "keyed_fetch"
                    | "acuity_fetch"
            ) {
                // No signed timestamp: the "stale" copy is simply a duplicate.
                assert!(
                    matches!(answer.status, 200 | 401),
                    "{}: {:?}",
                    delivery.source,
                    answer.body
                );
            } else {
                assert_eq!(answer.status, 401, "{}: {:?}", delivery.source, answer.body);
            }
        }
    }
    assert!(
        signatures.len() >= 30,
        "{} signatures sent",
        signatures.len()
    );

    // Admin calls with the right token and with wrong ones.
    let admin = |token: String, path: String, post: bool| {
        let client = client.clone();
        let address = process.address.clone();
        async move {
            let url = format!("{address}{path}");
            let request = if post {
                client.post(url)
            } else {
                client.get(url)
            };
            request
                .header("Authorization", token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(
        admin(bearer(&secrets.admin), "/admin/stats".into(), false).await,
        200
    );
    assert_eq!(
        admin(
            bearer(&secrets.admin),
            "/admin/events?limit=5".into(),
            false
        )
        .await,
        200
    );
    assert_eq!(
        admin(bearer(&secrets.admin), "/admin/events/1".into(), false).await,
        200
    );
    assert_eq!(
        admin(bearer(&secrets.wrong_admin), "/admin/stats".into(), false).await,
        401
    );
    assert_eq!(
        admin(
            format!(
                "Basic {}",
                BASE64.encode(format!("admin:{}", secrets.admin))
            ),
            "/admin/events".into(),
            false
        )
        .await,
        401
    );
    assert_eq!(
        admin(secrets.admin.clone(), "/admin/duplicates".into(), false).await,
        401
    );

    // Processing: the fetches with credentials succeed, the failing ones die.
    let status_of = |id: i64| {
        let store = store.clone();
        async move { store.event(id).await.unwrap().unwrap().row }
    };
    let stripe_fetch_id = |event: &str| {
        let key = serde_json::to_string(&stripe_body(
            event,
            match event {
                "evt_fetch_ok" => "in_ok",
                "evt_fetch_denied" => "in_denied",
                _ => "in_fail",
            },
        ))
        .unwrap();
        ids[&key]
    };
    let ok = stripe_fetch_id("evt_fetch_ok");
    let denied = stripe_fetch_id("evt_fetch_denied");
    let failing = stripe_fetch_id("evt_fetch_fail");
    let basic = ids["action=scheduled&id=5001"];
    let keyed = ids[r#"{"id":"k1"}"#];
    wait_until("every fetch is settled", || async {
        let mut settled = true;
        for (id, want) in [
            (ok, "done"),
            (basic, "done"),
            (keyed, "done"),
            (denied, "dead"),
            (failing, "dead"),
        ] {
            settled &= status_of(id).await.status == want;
        }
        settled
    })
    .await;
    assert_eq!(
        admin(
            bearer(&secrets.admin),
            format!("/admin/events/{denied}/replay"),
            true
        )
        .await,
        202
    );
    wait_until("the replayed event is settled again", || async {
        let row = status_of(denied).await;
        row.status == "dead" && row.attempts == 1
    })
    .await;
    let mut last_errors = String::new();
    for id in [denied, failing] {
        last_errors.push_str(&status_of(id).await.last_error.unwrap_or_default());
        last_errors.push('\n');
    }

    process.sigterm();
    let exit = process.wait_exit(Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();

    assert!(
        !log.contains('\u{1b}'),
        "a log written to a file has no terminal colour codes (which also split values)"
    );
    // The log is not vacuous: it has debug lines, the rejections and the
    // failed fetches.
    for needle in [
        "DEBUG",
        "webhook rejected",
        "event attempt failed",
        "401",
        "500",
    ] {
        assert!(log.contains(needle), "the log has {needle:?}:\n{log}");
    }
    let debug = format!("{config:?}\n{config:#?}");
    let sources_debug: String = config
        .sources
        .values()
        .map(|c| format!("{:?}", Source::new(c.clone())))
        .collect();
    let mut checked = secrets.all();
    for signature in &signatures {
        checked.push(("a signature header value", signature.clone()));
        // The MACs inside (`t=…,v1=<hex>`, `sha256=<hex>`, `v1,<b64>`, …).
        for part in signature.split([',', ' ', '=']).filter(|p| p.len() >= 16) {
            checked.push(("a signature", part.to_string()));
        }
    }
    for (what, value) in &checked {
        assert!(
            !log.contains(value.as_str()),
            "the log shows {what} ({value}):\n{log}"
        );
        assert!(
            !last_errors.contains(value.as_str()),
            "last_error shows {what}: {last_errors}"
        );
        assert!(
            !debug.contains(value.as_str()),
            "Config's Debug shows {what}: {debug}"
        );
        assert!(
            !sources_debug.contains(value.as_str()),
            "Source's Debug shows {what}"
        );
    }
}
