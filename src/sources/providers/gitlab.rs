//! GitLab: no MAC — `X-Gitlab-Token` carries the webhook's secret token
//! itself ("Webhooks", docs.gitlab.com: "Validate requests with a secret
//! token"), compared in constant time with each configured secret (as
//! SHA-256 digests, so not even the length leaks). The event id is the
//! `Idempotency-Key` header (GitLab 17.4+, merge request 160952: one UUID
//! kept across retries of a delivery); older GitLab sends none, and then
//! deliveries dedup by payload hash. The action is `/object_kind`, plus `.`
//! and `/object_attributes/action` when present (`merge_request.open`);
//! the object is `/object_kind` / `/object_attributes/id`. GitLab's bodies
//! carry no event time that every kind shares, so the time is arrival.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Provider, BASE};
use crate::sources::locate::{header, pointer, Defaults, Find, FindType, Lookup};
use crate::sources::signature::{Signed, ToSign};
use crate::sources::SignatureError;

pub const TOKEN: &str = "X-Gitlab-Token";
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

pub const PROVIDER: Provider = Provider {
    name: "gitlab",
    verify,
    sign,
    defaults,
    ..BASE
};

fn verify(s: &Signed<'_>) -> Result<(), SignatureError> {
    let given = Sha256::digest(s.header(TOKEN)?.as_bytes());
    if s.any_key(|key| {
        bool::from(
            Sha256::digest(key.bytes())
                .as_slice()
                .ct_eq(given.as_slice()),
        )
    }) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    let token = String::from_utf8_lossy(s.key.bytes()).into_owned();
    vec![(TOKEN.to_string(), token)]
}

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![header(IDEMPOTENCY_KEY)],
        action: Find::With(action),
        object_id: Find::At(pointer("/object_attributes/id")),
        object_type: FindType::At(pointer("/object_kind")),
        event_time: None,
    }
}

/// `/object_kind`, plus `.` and `/object_attributes/action` when present.
fn action(l: &Lookup<'_>) -> Option<String> {
    let kind = l.pointer("/object_kind")?;
    Some(match l.pointer("/object_attributes/action") {
        Some(action) => format!("{kind}.{action}"),
        None => kind,
    })
}
