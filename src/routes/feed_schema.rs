//! The feed's part of the OpenAPI document (`routes::openapi`): the schemas
//! of what `routes::feed` writes by hand (a page spliced around stored
//! envelopes, SSE events) and of the query values it checks by hand. Types
//! here are never built; they only describe.

#![allow(dead_code)] // schemas: see above

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use super::feed::{MAX_GLOBS, MAX_WAIT_SECS};
use crate::store::outbox::Envelope;

/// `GET /feed`: the items after a cursor. Written by hand around the stored
/// envelopes (`page_answer`); this type is its schema.
#[derive(ToSchema)]
pub struct FeedPageAnswer {
    items: Vec<FeedItem<'static>>,
    /// The last item's cursor; with no item, the cursor given (or the
    /// current end's). Never null.
    next_cursor: String,
}

/// An envelope of SPEC §7 with its cursor.
#[derive(ToSchema)]
pub struct FeedItem<'a> {
    /// Resume after this item with `after=<cursor>`.
    cursor: String,
    #[serde(flatten)]
    envelope: Envelope<'a>,
}

/// `wait`: 0 to 60, plain digits.
pub fn wait_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(MAX_WAIT_SECS))
        .build()
}

/// `actions`: empty (no filter), or 1 to [`MAX_GLOBS`] comma-separated
/// globs as [`crate::config::ActionGlob::parse`] takes them: not empty, no control
/// character (Unicode `Cc`), no whitespace (Unicode `White_Space`) at
/// either end, none of its foreign wildcard characters.
pub fn actions_schema() -> Object {
    let foreign: String = crate::config::destinations::FOREIGN_GLOB_CHARS
        .iter()
        .map(|c| format!("\\{c}"))
        .collect();
    let control = r"\x00-\x1f\x7f-\x9f";
    let space = r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
    let inner = format!("[^{control},{foreign}]");
    let edge = format!("[^{control}{space},{foreign}]");
    let glob = format!("{edge}(?:{inner}*{edge})?");
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(
            "^(?:{glob}(?:,{glob}){{0,{}}})?$",
            MAX_GLOBS - 1
        )))
        .build()
}

/// The header of `GET /feed/stream` (read by hand in `feed::stream`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct StreamHeaders {
    /// Resume after this cursor (a reconnecting client's last `id`); it
    /// wins over `after`. Empty: as if absent.
    #[param(rename = "Last-Event-ID", value_type = String, required = false)]
    last_event_id: Option<String>,
}

/// One event of `GET /feed/stream`.
#[derive(ToSchema)]
pub struct StreamEvent {
    /// The item's cursor (a reconnect's `Last-Event-ID`).
    id: String,
    /// The item's action, absent without one (a CR or LF in it written as
    /// U+FFFD; the envelope's `type` keeps it exactly).
    event: Option<String>,
    /// The envelope (JSON text of `Envelope`).
    #[schema(content_media_type = "application/json")]
    data: String,
}
