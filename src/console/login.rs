//! Signing in and out (SPEC §9). The login form takes the admin token,
//! compares it in constant time (as the API's bearer check does) and sets
//! the session cookie: `HttpOnly` (no script reads it), `SameSite=Strict`
//! (no other site's page sends it), path `/console` (no API route sees
//! it), `Secure` by `guard::cookie_is_secure`. A wrong token answers 401
//! with the form again and sets nothing. Logging out expires the cookie.
//! Both are POSTs, so the guard's origin check comes first.

use actix_web::cookie::{time::Duration, Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::guard;
use super::pages::{html, see_other, Layout, Notice};
use super::session;
use crate::routes::bearer;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
}

fn login_page(notice: Option<Notice>) -> LoginPage {
    let mut layout = Layout::page("Sign in", "").with_notice(notice);
    layout.signed_in = false;
    LoginPage { layout }
}

/// `GET /console/login`: the form (or, already signed in, the overview).
pub async fn form(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if guard::has_session(&state, &request) {
        return see_other("/console");
    }
    html(StatusCode::OK, &login_page(None))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

fn cookie(
    state: &AppState,
    request: &HttpRequest,
    value: String,
    max_age: Duration,
) -> Cookie<'static> {
    let secure = guard::cookie_is_secure(
        state.config.server.public_origin.as_deref(),
        guard::host(request),
    );
    Cookie::build(session::COOKIE_NAME, value)
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(max_age)
        .finish()
}

/// `POST /console/login`.
pub async fn login(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let token = &state.config.server.admin_token;
    if !bearer::matches(token, form.token.trim()) {
        return html(
            StatusCode::UNAUTHORIZED,
            &login_page(Notice::bad("That is not the admin token.")),
        );
    }
    let value = session::issue(token, state.clock.now_ms());
    let cookie = cookie(
        &state,
        &request,
        value,
        Duration::seconds(session::SESSION_SECS),
    );
    let mut answer = see_other("/console");
    // A cookie built here always encodes to a valid header value.
    let _ = answer.add_cookie(&cookie);
    answer
}

/// `POST /console/logout`: the cookie is expired in the browser. (The
/// session is stateless: to void every session everywhere at once, change
/// the admin token.)
pub async fn logout(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let cookie = cookie(&state, &request, String::new(), Duration::ZERO);
    let mut answer = see_other("/console/login");
    let _ = answer.add_cookie(&cookie);
    answer
}
