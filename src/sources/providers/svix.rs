//! Svix: Standard Webhooks under its own header names (`svix-id`,
//! `svix-timestamp`, `svix-signature`), with a `whsec_…` secret; the
//! signed `svix-id` is the event id.

use super::standard::{sign_with, standard_webhooks_key, verify_with};
use super::{Provider, BASE};
use crate::sources::locate::{header, pointer, seconds, Defaults, Find, FindType};

pub const HEADERS: [&str; 3] = ["svix-id", "svix-timestamp", "svix-signature"];

pub const PROVIDER: Provider = Provider {
    name: "svix",
    key: standard_webhooks_key,
    verify: |s| verify_with(s, HEADERS),
    sign: |s| sign_with(s, HEADERS),
    defaults,
    check: super::standard::PROVIDER.check,
    ..BASE
};

fn defaults() -> Defaults {
    Defaults {
        event_id: vec![header(HEADERS[0])],
        action: Find::At(pointer("/type")),
        object_id: Find::At(pointer("/data/id")),
        object_type: FindType::FirstSegment(pointer("/type"), '.'),
        event_time: seconds(pointer("/timestamp")),
    }
}
