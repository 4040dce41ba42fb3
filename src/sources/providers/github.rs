//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body
//! (the legacy SHA-1-only `X-Hub-Signature` counts as missing). The event
//! id is `X-GitHub-Delivery`; the action is `X-GitHub-Event` plus `.` and
//! `/action` when present; the object is the first present of
//! [`OBJECTS`]. A form-encoded delivery (`payload=<json>`) is unwrapped:
//! the JSON in `payload` is what is parsed, located and stored (SPEC §11).

use serde_json::Value;

use super::{GapFill, Provider, BASE};
use crate::sources::locate::{header, Defaults, Find, FindType, Lookup};
use crate::sources::signature::{decode_hex, verify_body_hmac, ToSign};
use crate::sources::{body, BodyKind, PayloadError};

pub const SIGNATURE: &str = "X-Hub-Signature-256";
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// GitHub's object pointers, most specific first, with the object type each
/// one names.
pub const OBJECTS: [(&str, &str); 13] = [
    ("/pull_request/id", "pull_request"),
    ("/issue/id", "issue"),
    ("/check_run/id", "check_run"),
    ("/check_suite/id", "check_suite"),
    ("/workflow_run/id", "workflow_run"),
    ("/workflow_job/id", "workflow_job"),
    ("/release/id", "release"),
    ("/deployment/id", "deployment"),
    ("/comment/id", "comment"),
    ("/repository/id", "repository"),
    ("/organization/id", "organization"),
    ("/installation/id", "installation"),
    ("/hook_id", "hook"),
];

pub const PROVIDER: Provider = Provider {
    name: "github",
    verify: |s| verify_body_hmac(s, SIGNATURE, SIGNATURE_PREFIX, decode_hex),
    sign,
    parse,
    defaults,
    // GitHub keeps (and can redeliver) a hook's deliveries for 3 days.
    gap_fill: Some(GapFill::GithubDeliveries),
    ..BASE
};

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![header("X-GitHub-Delivery")],
        action: Find::With(action),
        object_id: Find::With(|l| object(l).map(|(_, id)| id)),
        object_type: FindType::With(|l, _| object(l).map(|(kind, _)| kind.to_string())),
        event_time: None,
    }
}

/// `X-GitHub-Event`, plus `.` and `/action` when present (`issues.opened`).
fn action(l: &Lookup<'_>) -> Option<String> {
    let event = l.header("X-GitHub-Event")?;
    Some(match l.pointer("/action") {
        Some(action) => format!("{event}.{action}"),
        None => event,
    })
}

/// The first present of [`OBJECTS`]: (type, id).
fn object(l: &Lookup<'_>) -> Option<(&'static str, String)> {
    OBJECTS
        .iter()
        .find_map(|(p, kind)| l.pointer(p).map(|id| (*kind, id)))
}

/// JSON as usual; a form body's `payload` field parsed as the JSON body.
fn parse(kind: BodyKind, raw: &[u8]) -> Result<Value, PayloadError> {
    let parsed = body::parse(kind, raw)?;
    if kind == BodyKind::Json {
        return Ok(parsed);
    }
    match parsed.get("payload") {
        Some(Value::String(json)) => body::parse(BodyKind::Json, json.as_bytes()),
        _ => Err(PayloadError(
            "a form-encoded GitHub delivery has no payload field".into(),
        )),
    }
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    let sig = hex::encode(s.key.tag256(&[s.body]));
    vec![(SIGNATURE.to_string(), format!("{SIGNATURE_PREFIX}{sig}"))]
}
