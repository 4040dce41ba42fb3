//! The web console (SPEC §9) at `/console`: server-rendered pages for the
//! people operating hookledger — overview, events, one event (with
//! Replay), duplicates (with the variants of divergent copies and their
//! JSON-path diffs), dead letters (with "retry all matching"),
//! destinations (pause, resume) — built from askama templates compiled
//! into the binary (`templates/`) and one stylesheet (`static/`), with no
//! script at all. Every page reads through the admin API's store calls.
//!
//! Security lives in `guard.rs` (CSRF origin check on every POST, session
//! check, CSP and other headers) and `session.rs` (the signed, expiring
//! cookie keyed by the admin token); `login.rs` signs in and out. Every
//! value shown is escaped by the templates (askama escapes HTML in every
//! `.html` template), so a payload holding `<script>` shows as text.

mod dead;
mod destinations;
mod duplicates;
mod events;
pub mod guard;
mod login;
mod overview;
mod pages;
pub mod session;
mod variants;
mod view;

use actix_web::{web, HttpResponse};

/// The stylesheet, compiled in.
const CONSOLE_CSS: &str = include_str!("static/console.css");

/// Mounts the console under `/console`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/console")
            .wrap(actix_web::middleware::from_fn(guard::guard))
            .route("", web::get().to(overview::page))
            .route("/", web::get().to(overview::page))
            .route("/login", web::get().to(login::form))
            .route("/login", web::post().to(login::login))
            .route("/logout", web::post().to(login::logout))
            .route("/events", web::get().to(events::list))
            .route("/events/{id}", web::get().to(events::detail))
            .route("/events/{id}/replay", web::post().to(events::replay))
            .route("/events/{id}/variants", web::get().to(variants::page))
            .route("/duplicates", web::get().to(duplicates::list))
            .route("/dead", web::get().to(dead::page))
            .route("/dead/retry", web::post().to(dead::retry_matching))
            .route("/deliveries/{id}/retry", web::post().to(dead::retry_one))
            .route("/destinations", web::get().to(destinations::page))
            .route(
                "/destinations/{name}/pause",
                web::post().to(destinations::pause),
            )
            .route(
                "/destinations/{name}/resume",
                web::post().to(destinations::resume),
            )
            .route("/static/console.css", web::get().to(stylesheet))
            .default_service(web::to(not_found)),
    );
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(CONSOLE_CSS)
}

async fn not_found() -> pages::PageResult {
    Err(pages::PageError::not_found("There is no such page."))
}
