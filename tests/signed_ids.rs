//! Property tests of SPEC §3's "a signature and the dedup key are computed
//! from the same bytes": for every preset whose event id the signature
//! covers — Standard Webhooks' `webhook-id` header, Stripe's `/id` and a
//! generic source's `/event/id` in the signed body — no change to a signed
//! delivery's id (Unicode whitespace anywhere in it, ASCII case, any other
//! character) both verifies and yields a new dedup key. Presets whose id
//! travels in an unsigned header (GitHub, Shopify) are the protocol's
//! business and are not claimed here. Kept apart from `properties.rs`, which
//! is near its size limit; `PROPTEST_CASES=N` raises the case count.

use std::collections::BTreeMap;

use hookledger::config::{self, Config};
use hookledger::dedup;
use hookledger::sources::{BodyKind, Headers, Source};
use proptest::prelude::*;
use serde_json::{json, Value};

const SOURCES: &str = r#"
[server]
admin_token = "t"

[sources.standard]
preset = "standard"
secret = "whsec_cHJvcC1zdGFuZGFyZC13ZWJob29rcy1rZXk="

[sources.stripe]
preset = "stripe"
secret = "whsec_prop_stripe"

[sources.billing]
preset = "generic"
secret = "prop-billing"
signature_header = "X-Signature"
signature_prefix = "sha256="
event_id = { pointer = "/event/id" }
"#;

fn config() -> Config {
    let no_env: BTreeMap<String, String> = BTreeMap::new();
    config::load_str(SOURCES, &no_env).expect("the property-test config is valid")
}

fn cases(n: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            n
        },
        failure_persistence: None,
        ..default
    }
}

/// Every Unicode `White_Space` character, plus the invisible ones that
/// `str::trim` keeps (zero-width space, BOM, Mongolian vowel separator).
const SPACES: &[char] = &[
    '\t', '\n', '\u{0B}', '\u{0C}', '\r', ' ', '\u{85}', '\u{A0}', '\u{1680}', '\u{2000}',
    '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}',
    '\u{2009}', '\u{200A}', '\u{2028}', '\u{2029}', '\u{202F}', '\u{205F}', '\u{3000}', '\u{200B}',
    '\u{FEFF}', '\u{180E}',
];

/// One change to an id.
#[derive(Debug, Clone)]
enum Change {
    /// A character inserted at a position (taken modulo the id's length + 1).
    Insert(usize, char),
    /// The character at a position (modulo the length) in the other ASCII case.
    FlipCase(usize),
    Upper,
    Lower,
}

fn change() -> impl Strategy<Value = Change> {
    let space = proptest::sample::select(SPACES);
    prop_oneof![
        // At either end, where trimming would act, and anywhere.
        space.clone().prop_map(|c| Change::Insert(0, c)),
        space.clone().prop_map(|c| Change::Insert(usize::MAX, c)),
        (any::<usize>(), space).prop_map(|(at, c)| Change::Insert(at, c)),
        (any::<usize>(), any::<char>()).prop_map(|(at, c)| Change::Insert(at, c)),
        any::<usize>().prop_map(Change::FlipCase),
        Just(Change::Upper),
        Just(Change::Lower),
    ]
}

fn apply(id: &str, changes: &[Change]) -> String {
    let mut chars: Vec<char> = id.chars().collect();
    for change in changes {
        match *change {
            Change::Insert(at, c) => {
                let at = if at == usize::MAX {
                    chars.len()
                } else {
                    at % (chars.len() + 1)
                };
                chars.insert(at, c);
            }
            Change::FlipCase(at) if !chars.is_empty() => {
                let len = chars.len();
                let c = &mut chars[at % len];
                *c = if c.is_ascii_uppercase() {
                    c.to_ascii_lowercase()
                } else {
                    c.to_ascii_uppercase()
                };
            }
            Change::FlipCase(_) => {}
            Change::Upper => chars.iter_mut().for_each(|c| c.make_ascii_uppercase()),
            Change::Lower => chars.iter_mut().for_each(|c| c.make_ascii_lowercase()),
        }
    }
    chars.into_iter().collect()
}

/// The dedup key a verified delivery claims.
fn key(source: &Source, headers: &dyn Headers, body: &[u8], at_ms: i64) -> String {
    let delivery = source
        .parse(BodyKind::Json, headers, body)
        .expect("a signed test body parses");
    let hash = dedup::body_hash(BodyKind::Json, body, &delivery.payload);
    dedup::plan(
        &delivery,
        source.actions(),
        source.config.hash_window_secs,
        &hash,
        at_ms,
    )
    .key()
    .to_string()
}

/// `headers` with `name`'s value replaced.
fn replaced(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let v = if k.eq_ignore_ascii_case(name) {
                value
            } else {
                v
            };
            (k.clone(), v.to_string())
        })
        .collect()
}

/// A signed delivery of `source` with the id `id`, and the same delivery
/// (same signature headers) with the id changed to `changed`, each as
/// (headers, body).
type Pair = (
    (Vec<(String, String)>, Vec<u8>),
    (Vec<(String, String)>, Vec<u8>),
);

fn original_and_changed(source: &Source, id: &str, changed: &str, now: i64) -> Pair {
    let body_with = |id: &str| -> Vec<u8> {
        let value: Value = match source.name() {
            "standard" => json!({"type": "invoice.paid", "data": {"id": "inv_1"}}),
            "stripe" => json!({"id": id, "type": "invoice.paid", "created": now,
                "data": {"object": {"id": "in_1", "object": "invoice"}}}),
            _ => json!({"event": {"id": id}, "invoice": {"id": "inv_1"}}),
        };
        serde_json::to_vec(&value).unwrap()
    };
    let given = vec![("webhook-id".to_string(), id.to_string())];
    let body = body_with(id);
    let signed = source.sign(&given, &body, now);
    match source.name() {
        // The id is a header, covered by the signature: only it changes.
        "standard" => {
            let changed_headers = replaced(&signed, "webhook-id", changed);
            ((signed, body.clone()), (changed_headers, body))
        }
        // The id is in the signed body: the body changes, the signature stays.
        _ => ((signed.clone(), body), (signed, body_with(changed))),
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// Whatever is done to a signed id — whitespace of any kind at either
    /// end or inside, a change of case, any character added — the changed
    /// delivery either fails verification or claims the original's key.
    #[test]
    fn no_change_to_a_signed_id_both_verifies_and_yields_a_new_key(
        id in "[A-Za-z0-9_]{1,40}",
        changes in proptest::collection::vec(change(), 1..4),
        now in 1_000_000_000i64..4_102_444_800,
    ) {
        let changed = apply(&id, &changes);
        let config = config();
        for name in ["standard", "stripe", "billing"] {
            let source = Source::new(config.sources[name].clone());
            let ((headers, body), (changed_headers, changed_body)) =
                original_and_changed(&source, &id, &changed, now);
            prop_assert_eq!(source.verify(&headers, &body, now), Ok(()), "{}", name);
            let original_key = key(&source, &headers, &body, now * 1000);
            if source.verify(&changed_headers, &changed_body, now).is_ok() {
                let changed_key = key(&source, &changed_headers, &changed_body, now * 1000);
                prop_assert_eq!(
                    &changed_key,
                    &original_key,
                    "{}: id {:?} changed to {:?} verifies and makes a new key",
                    name,
                    id,
                    changed
                );
            }
        }
    }
}
