//! The console's browser security (SPEC §9), as one middleware on the
//! `/console` scope and the pure checks it is made of:
//! - every POST, the login included, is refused with 403 unless
//!   `Sec-Fetch-Site` is `same-origin`, or, without that header, `Origin`
//!   is the console's origin (`server.public_origin`, else `http://` + the
//!   request's `Host`): a form on another site cannot act for a logged-in
//!   operator, whatever `SameSite` a browser implements;
//! - every other page but the login form and the static files needs a
//!   valid session cookie (`session.rs`), else it redirects to the login;
//! - every answer carries the CSP and the other headers in [`HEADERS`]:
//!   scripts only from `/console/static/`, nothing inline, no framing.

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};

use super::session;
use crate::state::AppState;

/// The Content-Security-Policy of every console answer: no inline script or
/// style, no `eval`, no plugins, no framing, forms post only here.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers on every console answer.
pub const HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    // Pages show payloads: no shared cache keeps them, no back button
    // shows them after a logout.
    ("cache-control", "no-store"),
];

/// Paths under `/console` that need no session.
fn is_public(path: &str) -> bool {
    path == "/console/login" || path.starts_with("/console/static/")
}

/// The console's origin for this request: `server.public_origin`, else
/// `http://` + its `Host` (SPEC §9).
pub fn console_origin(public_origin: Option<&str>, host: Option<&str>) -> Option<String> {
    match public_origin {
        Some(origin) => Some(origin.to_string()),
        None => host.map(|h| format!("http://{h}")),
    }
}

/// Whether a POST comes from the console's own pages.
pub fn same_origin(
    sec_fetch_site: Option<&str>,
    origin: Option<&str>,
    console_origin: Option<&str>,
) -> bool {
    match (sec_fetch_site, origin, console_origin) {
        (Some(site), _, _) => site == "same-origin",
        (None, Some(origin), Some(ours)) => origin == ours,
        _ => false,
    }
}

/// Whether the session cookie gets `Secure` (SPEC §9): with a public
/// origin, when it is `https://`; without one, unless the request's `Host`
/// is a loopback address (plain `http://127.0.0.1:8080` in development,
/// where a `Secure` cookie would not be sent back).
pub fn cookie_is_secure(public_origin: Option<&str>, host: Option<&str>) -> bool {
    match public_origin {
        Some(origin) => origin.starts_with("https://"),
        None => !host.is_some_and(is_loopback_host),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn header_str<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The request's `Host` (HTTP/1.1 header, or an HTTP/2 authority).
pub fn host(request: &HttpRequest) -> Option<&str> {
    header_str(request, "host")
}

/// The console origin of a request, from the state's config.
pub fn origin_of(state: &AppState, request: &HttpRequest) -> Option<String> {
    console_origin(state.config.server.public_origin.as_deref(), host(request))
}

/// Whether the request carries a valid session cookie.
pub fn has_session(state: &AppState, request: &HttpRequest) -> bool {
    request.cookie(session::COOKIE_NAME).is_some_and(|c| {
        session::is_valid(
            &state.config.server.admin_token,
            c.value(),
            state.clock.now_ms(),
        )
    })
}

/// The middleware of the `/console` scope (see the module doc).
pub async fn guard(
    request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<EitherBody<BoxBody>>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(request
            .into_response(HttpResponse::InternalServerError().finish())
            .map_into_right_body());
    };
    let refusal = {
        let http = request.request();
        if request.method() == Method::POST
            && !same_origin(
                header_str(http, "sec-fetch-site"),
                header_str(http, "origin"),
                origin_of(&state, http).as_deref(),
            )
        {
            Some(super::pages::forbidden())
        } else if !is_public(request.path()) && !has_session(&state, http) {
            Some(
                HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, "/console/login"))
                    .finish(),
            )
        } else {
            None
        }
    };
    let mut response = match refusal {
        Some(answer) => request.into_response(answer).map_into_right_body(),
        None => next.call(request).await?.map_into_left_body(),
    };
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(
            header::HeaderName::from_static(name),
            header::HeaderValue::from_static(value),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_must_say_it_is_same_origin_or_come_from_our_origin() {
        let ours = Some("http://127.0.0.1:8080");
        assert!(same_origin(Some("same-origin"), None, ours));
        assert!(same_origin(
            Some("same-origin"),
            Some("http://evil.example"),
            ours
        ));
        for site in ["cross-site", "same-site", "none", ""] {
            assert!(
                !same_origin(Some(site), Some("http://127.0.0.1:8080"), ours),
                "{site}"
            );
        }
        assert!(same_origin(None, Some("http://127.0.0.1:8080"), ours));
        assert!(!same_origin(None, Some("http://127.0.0.1:8081"), ours));
        assert!(!same_origin(None, Some("null"), ours));
        assert!(!same_origin(None, None, ours));
        assert!(!same_origin(None, Some("http://x"), None));
    }

    #[test]
    fn the_console_origin_is_the_public_one_else_http_and_the_host() {
        assert_eq!(
            console_origin(Some("https://hooks.example.com"), Some("10.0.0.1:8080")).as_deref(),
            Some("https://hooks.example.com")
        );
        assert_eq!(
            console_origin(None, Some("10.0.0.1:8080")).as_deref(),
            Some("http://10.0.0.1:8080")
        );
        assert_eq!(console_origin(None, None), None);
    }

    #[test]
    fn the_cookie_is_secure_unless_plain_http_is_expected() {
        assert!(cookie_is_secure(
            Some("https://h.example"),
            Some("127.0.0.1:8080")
        ));
        assert!(!cookie_is_secure(
            Some("http://h.example"),
            Some("h.example")
        ));
        for loopback in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:8080",
            "[::1]:8080",
            "127.1.2.3",
        ] {
            assert!(!cookie_is_secure(None, Some(loopback)), "{loopback}");
        }
        for other in [
            "hooks.example.com",
            "10.0.0.1:8080",
            "[2001:db8::1]:80",
            "localhost.evil.example",
        ] {
            assert!(cookie_is_secure(None, Some(other)), "{other}");
        }
        assert!(cookie_is_secure(None, None));
    }
}
