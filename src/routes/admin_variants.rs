//! `GET /admin/events/{id}/variants` (SPEC §9): the divergent bodies kept
//! for a ledger row, oldest first, each with the JSON-pointer paths at which
//! it differs from the first body, and the count of divergent copies that
//! were not kept. Behind the admin token like the rest of `/admin`.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::admin::parse_id;
use crate::clock::rfc3339;
use crate::dedup::json_diff;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn variants(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let found = state
        .on_main(move |store| async move { store.variants(id).await })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no event with id {id}")))?;
    // Stored bodies parsed on ingest, so they parse again; null otherwise
    // rather than a 500 for a row written by hand.
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let first = parse(&found.first_payload);
    let items: Vec<Value> = found
        .items
        .iter()
        .map(|v| {
            let payload = parse(&v.payload);
            json!({
                "body_hash": v.body_hash,
                "first_seen_at": rfc3339(v.first_seen_at),
                "copies": v.copies,
                "diff": json_diff(&first, &payload),
                "payload": payload,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "overflow": found.overflow })))
}
