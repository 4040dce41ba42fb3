//! `GET /admin/events/{id}/variants` (SPEC §9): the divergent bodies kept
//! for a ledger row, oldest first, each with the JSON-pointer paths at which
//! it differs from the first body, and the count of divergent copies that
//! were not kept. Behind the admin token like the rest of `/admin`.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::admin::parse_id;
use crate::clock::rfc3339;
use crate::dedup::{json_diff, PathChange};
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;

/// `GET /admin/events/{id}/variants`. (Fields of both types in sorted
/// order, the order `json!` wrote them in before these types.)
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantsAnswer {
    /// The distinct divergent bodies, oldest first.
    pub items: Vec<VariantItem>,
    /// Divergent copies whose body was not kept.
    pub overflow: i64,
}

/// One divergent body kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantItem {
    /// The canonical hash of this body.
    pub body_hash: String,
    /// Deliveries with this body.
    pub copies: i64,
    /// Where it differs from the first body.
    pub diff: Vec<PathChange>,
    /// Whether `diff` was cut short (at 1000 paths or 64 KiB of them).
    pub diff_truncated: bool,
    /// When the first copy with this body arrived.
    #[schema(format = DateTime)]
    pub first_seen_at: String,
    /// The body as received (parsed).
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// The divergent copies of a ledger row, with their differences.
#[utoipa::path(
    get,
    path = "/admin/events/{id}/variants",
    tag = "admin",
    params(("id" = u64, Path, description = "The ledger id", minimum = 1)),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The variants (none: an empty list)", body = VariantsAnswer),
        (status = 401, description = "`unauthorized`: no admin token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no such ledger id", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
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
    let items = found
        .items
        .iter()
        .map(|v| {
            let payload = parse(&v.payload);
            let diff = json_diff(&first, &payload);
            VariantItem {
                body_hash: v.body_hash.clone(),
                copies: v.copies,
                diff: diff.changes,
                diff_truncated: diff.truncated,
                first_seen_at: rfc3339(v.first_seen_at),
                payload,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(VariantsAnswer {
        items,
        overflow: found.overflow,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `json!` wrote before the answer had a type.
    #[test]
    fn the_answer_is_written_as_before() {
        let first = serde_json::json!({"a": 1, "b": [1]});
        let payload = serde_json::json!({"a": 2, "b": [1, 2], "c": null});
        let answer = VariantsAnswer {
            items: vec![VariantItem {
                body_hash: "ab".into(),
                copies: 2,
                diff: json_diff(&first, &payload).changes,
                diff_truncated: false,
                first_seen_at: rfc3339(1_700_000_000_000),
                payload: payload.clone(),
            }],
            overflow: 1,
        };
        let before = serde_json::json!({
            "items": [{
                "body_hash": "ab",
                "first_seen_at": rfc3339(1_700_000_000_000),
                "copies": 2,
                "diff": json_diff(&first, &payload).changes,
                "diff_truncated": false,
                "payload": payload,
            }],
            "overflow": 1,
        });
        assert_eq!(serde_json::to_string(&answer).unwrap(), before.to_string());
    }
}
