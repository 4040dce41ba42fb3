//! Property tests of the pure parts hostile input reaches first: signature
//! headers, form bodies, media types, canonical JSON, dedup keys and time
//! buckets, fetch URL templates and config loading. They run in plain
//! `cargo test`, each with a moderate number of cases; `PROPTEST_CASES=N`
//! raises them all for a longer run. The cargo-fuzz targets in `fuzz/` cover
//! the same functions with coverage-guided input.

use std::collections::BTreeMap;

use hookledger::config::{self, ActionRule, Config};
use hookledger::dedup::{self, KeyPlan, Strategy as Rule};
use hookledger::sources::{body_kind, BodyKind, Delivery, SignatureError, Source};
use hookledger::worker::fetch::{expand_url, TemplateError, TemplateValues};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Number, Value};

/// One source of each signature scheme (two generic ones: hex with a
/// prefix, base64 without), plus an unsigned one for parsing.
const SOURCES: &str = r#"
[server]
admin_token = "t"

[sources.stripe]
preset = "stripe"
secret = "whsec_prop_stripe"

[sources.github]
preset = "github"
secret = "prop-github"

[sources.shopify]
preset = "shopify"
secret = "prop-shopify"

[sources.acuity]
preset = "acuity"
secret = "prop-acuity"

[sources.standard]
preset = "standard"
secret = "whsec_cHJvcC1zdGFuZGFyZC13ZWJob29rcy1rZXk="

[sources.generic_hex]
preset = "generic"
secret = "prop-generic-hex"
signature_header = "X-Signature"
signature_prefix = "sha256="

[sources.generic_b64]
preset = "generic"
secret = "prop-generic-b64"
signature_header = "X-Sig"
signature_encoding = "base64"

[sources.plain]
preset = "generic"
verify = "off"
"#;

/// The signed sources and the headers each one's signature lives in.
const SIGNED: [(&str, &[&str]); 7] = [
    ("stripe", &["Stripe-Signature"]),
    ("github", &["X-Hub-Signature-256"]),
    ("shopify", &["X-Shopify-Hmac-Sha256"]),
    ("acuity", &["X-Acuity-Signature"]),
    (
        "standard",
        &["webhook-id", "webhook-timestamp", "webhook-signature"],
    ),
    ("generic_hex", &["X-Signature"]),
    ("generic_b64", &["X-Sig"]),
];

fn config() -> Config {
    let no_env: BTreeMap<String, String> = BTreeMap::new();
    config::load_str(SOURCES, &no_env).expect("the property-test config is valid")
}

fn source(name: &str) -> Source {
    Source::new(config().sources[name].clone())
}

fn cases(n: u32) -> ProptestConfig {
    // PROPTEST_CASES, when set, overrides `n` for a longer run.
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            n
        },
        // Integration tests have no lib.rs beside them for proptest's
        // regression files; a failure prints its minimal input instead.
        failure_persistence: None,
        ..default
    }
}

/// Header values as a hostile sender might write them: anything printable,
/// or something shaped like each scheme's header.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,200}",
        "t=[0-9-]{0,20},v1=[0-9a-fA-F]{0,70}(,v1=[0-9a-f]{64})?(,v0=[ -~]{0,10})?",
        "sha(256|1)?=[0-9a-fA-F]{0,70}",
        "[A-Za-z0-9+/=]{0,48}",
        "(v1a?,[A-Za-z0-9+/=]{0,48} ?){0,4}",
        "[0-9+-]{0,25}",
        "msg_[A-Za-z0-9]{0,30}",
    ]
}

/// A plausible instant: Unix seconds between 1970 and 2100.
fn now_secs() -> impl Strategy<Value = i64> {
    0i64..4_102_444_800
}

proptest! {
    #![proptest_config(cases(256))]

    /// Whatever the signature headers hold, verification answers without
    /// panicking, and never with `Ok`: random values are not signatures.
    #[test]
    fn signature_headers_never_panic_and_random_ones_never_verify(
        values in vec(header_value(), 3),
        body in vec(any::<u8>(), 0..256),
        now in now_secs(),
    ) {
        for (name, headers) in SIGNED {
            let source = source(name);
            let given: Vec<(String, String)> = headers
                .iter()
                .zip(&values)
                .map(|(h, v)| (h.to_string(), v.clone()))
                .collect();
            let verdict = source.verify(&given, &body, now);
            prop_assert!(verdict.is_err(), "{name} accepted {given:?}");
            // Each header alone (the others missing) is refused too.
            for one in &given {
                let alone = vec![one.clone()];
                prop_assert!(source.verify(&alone, &body, now).is_err(), "{name}: {one:?}");
            }
        }
    }

    /// A delivery signed by `sign` verifies, for any body, at any instant,
    /// and up to `tolerance_secs` later or earlier.
    #[test]
    fn what_sign_produces_verifies(
        body in vec(any::<u8>(), 0..1024),
        now in now_secs(),
        skew in -300i64..=300,
        message_id in "[A-Za-z0-9_]{1,40}",
    ) {
        for (name, _) in SIGNED {
            let source = source(name);
            let given = vec![("webhook-id".to_string(), message_id.clone())];
            let signed = source.sign(&given, &body, now);
            prop_assert!(!signed.is_empty(), "{name}");
            prop_assert_eq!(source.verify(&signed, &body, now), Ok(()), "{}", name);
            prop_assert_eq!(source.verify(&signed, &body, now + skew), Ok(()), "{}", name);
        }
    }

    /// Changing any one byte of a signed body breaks its signature.
    #[test]
    fn any_single_byte_change_of_the_body_is_refused(
        body in vec(any::<u8>(), 1..512),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        now in now_secs(),
    ) {
        let i = at.index(body.len());
        let mut changed = body.clone();
        changed[i] ^= flip;
        for (name, _) in SIGNED {
            let source = source(name);
            let signed = source.sign(&Vec::<(String, String)>::new(), &body, now);
            prop_assert_eq!(
                source.verify(&signed, &changed, now),
                Err(SignatureError::Invalid),
                "{} byte {}", name, i
            );
        }
    }

    /// Stale and future timestamps: correctly signed, more than the tolerance
    /// away, they are refused as such — never as a bad signature, never Ok.
    #[test]
    fn timestamps_beyond_the_tolerance_are_refused(
        body in vec(any::<u8>(), 0..256),
        now in now_secs(),
        beyond in 301i64..1_000_000_000,
        future in any::<bool>(),
    ) {
        let at = if future { now + beyond } else { now - beyond };
        for name in ["stripe", "standard"] {
            let source = source(name);
            let signed = source.sign(&Vec::<(String, String)>::new(), &body, at);
            prop_assert_eq!(
                source.verify(&signed, &body, now),
                Err(SignatureError::TimestampOutOfTolerance),
                "{}", name
            );
        }
    }

    /// Standard Webhooks keys: any string is looked at without panicking,
    /// and only `whsec_` + non-empty base64 is a key.
    #[test]
    fn standard_webhooks_keys_never_panic(secret in any::<String>()) {
        if let Some(key) = hookledger::sources::standard_webhooks_key(&secret) {
            prop_assert!(secret.starts_with("whsec_"));
            prop_assert!(!key.is_empty());
        }
    }
}

/// `pairs` url-encoded as a form body.
fn form_encode<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<u8> {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish().into_bytes()
}

fn strings_object(map: &BTreeMap<String, String>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn parse_form(body: &[u8]) -> Result<Value, String> {
    let no_headers: Vec<(String, String)> = Vec::new();
    source("plain")
        .parse(BodyKind::Form, &no_headers, body)
        .map(|d| d.payload)
        .map_err(|e| e.0)
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any bytes parse as a form without panicking; what parses is a flat
    /// object of strings.
    #[test]
    fn form_parsing_never_panics(body in prop_oneof![
        vec(any::<u8>(), 0..512),
        "[a-z=&%+0-9A-F;]{0,200}".prop_map(String::into_bytes),
    ]) {
        if let Ok(payload) = parse_form(&body) {
            let object = payload.as_object().expect("an object");
            prop_assert!(object.values().all(Value::is_string));
        }
    }

    /// A url-encoded map parses back to itself.
    #[test]
    fn url_encoded_maps_round_trip(map in btree_map(any::<String>(), any::<String>(), 1..12)) {
        let body = form_encode(&map);
        prop_assert_eq!(parse_form(&body), Ok(strings_object(&map)));
    }

    /// A repeated key keeps its last value; empty keys and values are kept.
    #[test]
    fn repeated_keys_keep_their_last_value(
        pairs in vec(("[ab]?", "[ -~]{0,5}"), 1..16),
    ) {
        let body = form_encode(pairs.iter().map(|(k, v)| (k, v)));
        let last: BTreeMap<String, String> = pairs.iter().cloned().collect();
        prop_assert_eq!(parse_form(&body), Ok(strings_object(&last)));
    }

    /// Media types: never a panic, and ASCII case never matters.
    #[test]
    fn media_types_ignore_ascii_case(content_type in prop_oneof![
        any::<String>(),
        "(application|text|APPLICATION)/[a-z+.-]{0,20}(; ?[a-z]+=[a-z0-9-]*)?",
    ]) {
        prop_assert_eq!(
            body_kind(Some(&content_type)),
            body_kind(Some(&content_type.to_ascii_uppercase()))
        );
    }
}

// ---------------------------------------------------------------------------
// Canonical JSON.

/// Finite floats other than -0.0 (which serde_json writes as `-0.0`, a
/// canonical form of its own although `-0.0 == 0.0`).
fn float() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter_map("finite", |f| {
        (f.is_finite()).then_some(if f == 0.0 { 0.0 } else { f })
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float().prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        any::<String>().prop_map(Value::String),
        "[a-c]{0,2}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(prop_oneof![any::<String>(), "[a-e]{0,2}"], inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    btree_map("[a-z]{1,6}", json_value(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// `value` as JSON text with object keys in a random order, random
/// whitespace between tokens and, when `decoys` is set, a decoy value for
/// some keys written before the real one (a duplicated key keeps its last
/// value).
fn scrambled(value: &Value, rng: &mut rand::rngs::StdRng, decoys: bool, out: &mut String) {
    let space = |rng: &mut rand::rngs::StdRng, out: &mut String| {
        for _ in 0..rng.gen_range(0..3) {
            out.push([' ', '\n', '\t', '\r'][rng.gen_range(0..4)]);
        }
    };
    space(rng, out);
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                scrambled(item, rng, decoys, out);
            }
            space(rng, out);
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.shuffle(rng);
            out.push('{');
            let mut first = true;
            for (k, v) in entries {
                let key = serde_json::to_string(k).unwrap();
                let mut field = |v: &Value, rng: &mut rand::rngs::StdRng, out: &mut String| {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    space(rng, out);
                    out.push_str(&key);
                    space(rng, out);
                    out.push(':');
                    scrambled(v, rng, decoys, out);
                };
                if decoys && rng.gen_bool(0.3) {
                    field(&Value::String("decoy".into()), rng, out);
                }
                field(v, rng, out);
            }
            space(rng, out);
            out.push('}');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
    }
    space(rng, out);
}

fn canonical_of_text(text: &str) -> Vec<u8> {
    let parsed: Value = serde_json::from_str(text).expect("scrambled JSON parses");
    dedup::canonical_json(&parsed)
}

fn hash_of(value: &Value) -> String {
    let raw = serde_json::to_vec(value).unwrap();
    dedup::body_hash(BodyKind::Json, &raw, value)
}

proptest! {
    #![proptest_config(cases(256))]

    /// Key order, whitespace and earlier copies of a duplicated key never
    /// change the canonical form.
    #[test]
    fn canonical_json_ignores_key_order_whitespace_and_earlier_duplicates(
        value in json_object(),
        seed in any::<u64>(),
    ) {
        let compact = serde_json::to_string(&value).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut text = String::new();
        scrambled(&value, &mut rng, false, &mut text);
        let mut with_decoys = String::new();
        scrambled(&value, &mut rng, true, &mut with_decoys);
        let canonical = canonical_of_text(&compact);
        prop_assert_eq!(&canonical_of_text(&text), &canonical, "{}", text);
        prop_assert_eq!(&canonical_of_text(&with_decoys), &canonical, "{}", with_decoys);
    }

    /// The canonical form is compact JSON of the same value with its keys
    /// in byte order, and canonicalising it again changes nothing (floats
    /// included: serde_json reads back exactly what it wrote, with its
    /// `float_roundtrip` feature).
    #[test]
    fn canonical_json_is_the_same_value_sorted_and_idempotent(value in json_value()) {
        let canonical = dedup::canonical_json(&value);
        let text = std::str::from_utf8(&canonical).expect("UTF-8");
        let reparsed: Value = serde_json::from_str(text).expect("canonical JSON parses");
        prop_assert_eq!(&reparsed, &value);
        prop_assert_eq!(dedup::canonical_json(&reparsed), canonical.clone());
        // Without serde_json's `preserve_order`, its maps iterate in key
        // byte order, so its own compact output is the canonical form.
        let mut probe = Map::new();
        probe.insert("b".into(), Value::Null);
        probe.insert("a".into(), Value::Null);
        if probe.keys().next().map(String::as_str) == Some("a") {
            prop_assert_eq!(canonical, serde_json::to_vec(&value).unwrap());
        }
    }

    /// Equal canonical hashes if and only if equal values.
    #[test]
    fn equal_hashes_if_and_only_if_equal_values(
        a in json_object(),
        b in json_object(),
        seed in any::<u64>(),
    ) {
        prop_assert_eq!(hash_of(&a) == hash_of(&b), a == b);
        // The same value, its keys inserted in another order.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut entries: Vec<(String, Value)> =
            a.as_object().unwrap().clone().into_iter().collect();
        entries.shuffle(&mut rng);
        let reordered = Value::Object(entries.into_iter().collect());
        prop_assert_eq!(hash_of(&reordered), hash_of(&a));
    }
}

// ---------------------------------------------------------------------------
// Dedup keys and buckets.

fn maybe_text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        "[a-c]{1,2}".prop_map(Some),
        any::<String>().prop_map(Some),
    ]
}

fn action_rule() -> impl Strategy<Value = ActionRule> {
    prop_oneof![
        Just(ActionRule::Unique),
        Just(ActionRule::Coalesce),
        Just(ActionRule::Ignore),
        Just(ActionRule::Hash),
    ]
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (maybe_text(), maybe_text(), maybe_text()).prop_map(|(event_id, action, object_id)| Delivery {
        payload: Value::Object(Map::new()),
        event_id,
        action,
        object_type: None,
        object_id,
        event_time_ms: None,
    })
}

/// SPEC §3's rules, written out independently of `dedup::plan`.
fn expected_plan(
    d: &Delivery,
    actions: Option<&BTreeMap<String, ActionRule>>,
    window: u64,
    hash: &str,
    at_ms: i64,
) -> KeyPlan {
    let present = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let (action, object_id) = (present(&d.action), present(&d.object_id));
    let rule = action
        .as_ref()
        .and_then(|a| actions.and_then(|t| t.get(a)).copied());
    if let (Some(ActionRule::Ignore), Some(a)) = (rule, &action) {
        return KeyPlan::Ignore {
            key: format!("ign:{a}:{}", object_id.unwrap_or_default()),
        };
    }
    let insert = |strategy, key: String, previous_key| KeyPlan::Insert {
        strategy,
        key,
        previous_key,
    };
    if let Some(id) = present(&d.event_id) {
        return insert(Rule::EventId, format!("id:{id}"), None);
    }
    match (rule, &action, &object_id) {
        (Some(ActionRule::Unique), Some(a), Some(o)) => {
            return insert(Rule::ActionObject, format!("act:{a}:{o}"), None)
        }
        (Some(ActionRule::Coalesce), Some(a), Some(o)) => {
            return insert(Rule::Coalesce, format!("co:{a}:{o}"), None)
        }
        _ => {}
    }
    let bucket = at_ms.div_euclid(1000 * window as i64);
    insert(
        Rule::PayloadHash,
        format!("hash:{hash}:{bucket}"),
        Some(format!("hash:{hash}:{}", bucket - 1)),
    )
}

proptest! {
    #![proptest_config(cases(256))]

    /// `plan` follows the rules, is deterministic, and its key's prefix
    /// names its strategy.
    #[test]
    fn plan_follows_the_rules_and_its_prefix_names_its_strategy(
        d in delivery(),
        table in prop::option::of(btree_map("[a-c]{1,2}", action_rule(), 0..6)),
        window in 1u64..=7 * 86_400,
        hash in "[0-9a-f]{64}",
        at_ms in -4_102_444_800_000i64..4_102_444_800_000,
    ) {
        let plan = dedup::plan(&d, table.as_ref(), window, &hash, at_ms);
        prop_assert_eq!(&plan, &dedup::plan(&d, table.as_ref(), window, &hash, at_ms));
        prop_assert_eq!(&plan, &expected_plan(&d, table.as_ref(), window, &hash, at_ms));
        let prefix = match &plan {
            KeyPlan::Ignore { .. } => "ign:",
            KeyPlan::Insert { strategy, .. } => match strategy {
                Rule::EventId => "id:",
                Rule::ActionObject => "act:",
                Rule::Coalesce => "co:",
                Rule::PayloadHash => "hash:",
            },
        };
        prop_assert!(plan.key().starts_with(prefix), "{:?}", plan);
        if let KeyPlan::Insert { strategy, previous_key, .. } = &plan {
            prop_assert_eq!(previous_key.is_some(), *strategy == Rule::PayloadHash);
        }
    }

    /// Copies less than one window apart are in the same or adjacent
    /// buckets, and the later copy's lookup (its key or the previous
    /// bucket's) finds the first; copies two or more windows apart never do.
    #[test]
    fn copies_less_than_a_window_apart_find_each_other(
        window in 1u64..=7 * 86_400,
        first_ms in -4_102_444_800_000i64..4_102_444_800_000,
        fraction in 0.0f64..1.0,
        windows_later in 2i64..1000,
        hash in "[0-9a-f]{64}",
    ) {
        let window_ms = window as i64 * 1000;
        let near_ms = first_ms + ((window_ms as f64 * fraction) as i64).min(window_ms - 1);
        let (b1, b2) = (dedup::bucket(first_ms, window), dedup::bucket(near_ms, window));
        prop_assert!(b2 - b1 == 0 || b2 - b1 == 1, "{b1} {b2}");
        let d = Delivery {
            payload: Value::Object(Map::new()),
            event_id: None,
            action: None,
            object_type: None,
            object_id: None,
            event_time_ms: None,
        };
        let keys = |at_ms| match dedup::plan(&d, None, window, &hash, at_ms) {
            KeyPlan::Insert { key, previous_key: Some(previous), .. } => (key, previous),
            other => panic!("{other:?}"),
        };
        let (first_key, _) = keys(first_ms);
        let (near_key, near_previous) = keys(near_ms);
        prop_assert!(near_key == first_key || near_previous == first_key);
        let far_ms = first_ms + windows_later * window_ms;
        let (far_key, far_previous) = keys(far_ms);
        prop_assert!(far_key != first_key && far_previous != first_key);
        prop_assert!(dedup::bucket(far_ms, window) - b1 >= 2);
    }
}

// ---------------------------------------------------------------------------
// Fetch URL templates and config.

/// Strings made of what URL templates are made of, so that the interesting
/// paths (braces, schemes, hosts) are reached, plus anything at all.
fn template_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(
            prop_oneof![
                Just("https://".to_string()),
                Just("http://".to_string()),
                Just("https:///".to_string()),
                Just("\t".to_string()),
                Just("\\".to_string()),
                Just("api.example.com".to_string()),
                Just("/".to_string()),
                Just("{object_id}".to_string()),
                Just("{event_id}".to_string()),
                Just("{action}".to_string()),
                Just("{object_type}".to_string()),
                Just("{nope}".to_string()),
                Just("{".to_string()),
                Just("}".to_string()),
                Just("?q=".to_string()),
                Just("#".to_string()),
                Just("@".to_string()),
                Just(":8080".to_string()),
                Just("..".to_string()),
                Just("%2e".to_string()),
                "[ -~]{0,4}",
                "[^\\x00-\\x7f]{1,2}",
            ],
            0..10
        )
        .prop_map(|parts| parts.concat()),
    ]
}

fn template_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        Just(Some(".".to_string())),
        Just(Some("..".to_string())),
        Just(Some("%2e%2E".to_string())),
        "[./?#@:%a-z]{1,8}".prop_map(Some),
        any::<String>().prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    /// `check_template` never panics; a template it accepts expands (for any
    /// values) without panicking, to a URL on the template's own host.
    #[test]
    fn templates_never_panic_and_values_never_move_the_host(
        template in template_like(),
        values in vec(template_value(), 4),
    ) {
        values_never_move_the_host(&template, &values)?;
    }

    /// With a fixed template, each value stays inside its own path segment
    /// or query value: never a new segment, query, fragment or host.
    #[test]
    fn each_value_stays_in_its_place(
        object_type in "[ -~]{1,12}|[^\\x00]{1,6}",
        object_id in "[ -~]{1,12}|[^\\x00]{1,6}",
        action in "[ -~]{1,12}|[^\\x00]{1,6}",
    ) {
        let template = "https://api.example.com/v1/{object_type}/{object_id}?a={action}";
        prop_assert!(config::check_template(template).is_ok());
        let values = TemplateValues {
            event_id: None,
            object_id: Some(&object_id),
            object_type: Some(&object_type),
            action: Some(&action),
        };
        match expand_url(template, &values) {
            Ok(url) => {
                prop_assert_eq!(url.host_str(), Some("api.example.com"));
                let segments: Vec<_> = url.path_segments().unwrap().collect();
                prop_assert_eq!(segments.len(), 3, "{}", url);
                let decoded = |s: &str| {
                    percent_encoding::percent_decode_str(s).decode_utf8().unwrap().into_owned()
                };
                prop_assert_eq!(decoded(segments[1]), object_type.clone());
                prop_assert_eq!(decoded(segments[2]), object_id.clone());
                let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
                prop_assert_eq!(query, vec![("a".to_string(), action.clone())]);
                prop_assert_eq!(url.fragment(), None);
            }
            Err(TemplateError::DotSegment) => {
                let dot = |v: &str| v == "." || v == "..";
                prop_assert!(dot(&object_type) || dot(&object_id), "{object_type:?} {object_id:?}");
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    /// Loading any text as config never panics.
    #[test]
    fn config_loading_never_panics(text in prop_oneof![
        any::<String>(),
        "\\[sources\\.[a-z.\"/]{1,6}\\]\npreset = \"[a-z]{0,8}\"\n(secret|verify|fetch\\.url) = \"[ -~]{0,20}\"\n",
    ]) {
        let no_env: BTreeMap<String, String> = BTreeMap::new();
        let _ = config::load_str(&format!("[server]\nadmin_token = \"t\"\n{text}"), &no_env);
        let _ = config::load_str(&text, &no_env);
    }
}

/// When `check_template` accepts `template`, expanding it with `values`
/// gives a URL on the template's own host (or an error).
fn values_never_move_the_host(
    template: &str,
    values: &[Option<String>],
) -> Result<(), TestCaseError> {
    if config::check_template(template).is_err() {
        return Ok(());
    }
    let host = url::Url::parse(
        &["event_id", "object_id", "object_type", "action"]
            .iter()
            .fold(template.to_string(), |t, p| {
                t.replace(&format!("{{{p}}}"), "x")
            }),
    )
    .unwrap()
    .host_str()
    .map(str::to_string);
    let values = TemplateValues {
        event_id: values[0].as_deref(),
        object_id: values[1].as_deref(),
        object_type: values[2].as_deref(),
        action: values[3].as_deref(),
    };
    if let Ok(url) = expand_url(template, &values) {
        prop_assert_eq!(url.host_str().map(str::to_string), host, "{}", url);
    }
    Ok(())
}

/// A known bug, by example (the template property above skips it): a template whose
/// authority is empty once the URL parser has dropped tabs and newlines and
/// read `\` as `/` passes validation, and an object id becomes the host the
/// fetch (with its credentials) goes to.
#[test]
fn a_template_with_an_empty_authority_is_refused() {
    let values = TemplateValues {
        object_id: Some("evil.example"),
        ..Default::default()
    };
    let accepted: Vec<String> = [
        "https:///{object_id}/x",
        "https:///..{object_id}/",
        "HTTPS:///{object_id}",
        "https://\t/{object_id}",
        "https://\n/{object_id}",
        "https://\r/{object_id}",
        "https://\\/{object_id}",
    ]
    .into_iter()
    .filter(|t| config::check_template(t).is_ok())
    .map(|t| {
        format!(
            "{t:?} → {:?}",
            expand_url(t, &values).map(|u| u.to_string())
        )
    })
    .collect();
    assert!(
        accepted.is_empty(),
        "accepted, with the object id as the host:\n{}",
        accepted.join("\n")
    );
}
