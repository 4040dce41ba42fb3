//! `GET /console/events/{id}/variants`: the divergent copies of a ledger
//! row (SPEC §9) — each distinct body that came with the row's key but
//! another content, oldest first, with how many copies carried it, the
//! JSON-pointer paths at which it differs from the first body (changed,
//! added, removed), and the body itself; copies whose body was not kept
//! are counted. The admin API's `variants` read and `json_diff`.

use actix_web::http::StatusCode;
use actix_web::web;
use askama::Template;
use serde_json::Value;

use super::pages::{html, Layout, PageError, PageResult};
use super::view::Moment;
use crate::dedup::{json_diff, Change};
use crate::state::AppState;

struct VariantView {
    /// The canonical body hash, and its first 12 characters for the eye.
    hash: String,
    short_hash: String,
    first_seen: Moment,
    copies: i64,
    /// `(JSON pointer, "changed" | "added" | "removed")`.
    diff: Vec<(String, &'static str)>,
    payload: String,
}

#[derive(Template)]
#[template(path = "variants.html")]
struct VariantsPage {
    layout: Layout,
    id: i64,
    first_payload: String,
    variants: Vec<VariantView>,
    overflow: i64,
}

fn change_name(change: Change) -> &'static str {
    match change {
        Change::Changed => "changed",
        Change::Added => "added",
        Change::Removed => "removed",
    }
}

/// Stored bodies were parsed on ingest; one that does not parse again is
/// shown as its text.
fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

fn pretty(value: &Option<Value>, text: &str) -> String {
    value
        .as_ref()
        .and_then(|v| serde_json::to_string_pretty(v).ok())
        .unwrap_or_else(|| text.to_string())
}

pub async fn page(state: web::Data<AppState>, id: web::Path<String>) -> PageResult {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| PageError::not_found("There is no such event."))?;
    let found = state
        .on_main(move |store| async move { store.variants(id).await })
        .await?
        .ok_or_else(|| PageError::not_found(format!("There is no event #{id}.")))?;
    let now = state.clock.now_ms();
    let first = parse(&found.first_payload);
    let first_value = first.clone().unwrap_or(Value::Null);
    let variants = found
        .items
        .iter()
        .map(|v| {
            let body = parse(&v.payload);
            let diff = json_diff(&first_value, body.as_ref().unwrap_or(&Value::Null))
                .into_iter()
                .map(|c| (c.path, change_name(c.change)))
                .collect();
            VariantView {
                short_hash: v.body_hash.chars().take(12).collect(),
                hash: v.body_hash.clone(),
                first_seen: Moment::at(v.first_seen_at, now),
                copies: v.copies,
                diff,
                payload: pretty(&body, &v.payload),
            }
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &VariantsPage {
            layout: Layout::page(format!("Variants of event #{id}"), "/console/duplicates"),
            id,
            first_payload: pretty(&first, &found.first_payload),
            variants,
            overflow: found.overflow,
        },
    ))
}
