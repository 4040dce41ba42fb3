//! What every console page shares: the layout's data (which tab is
//! active, the notice to show), rendering a template into an HTML answer,
//! and the HTML error pages (a failed store call, a bad filter, a refused
//! POST) — the console answers HTML, never the API's JSON envelope.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::error::ApiError;

/// The navigation tabs, by path and label.
pub const TABS: [(&str, &str); 5] = [
    ("/console", "Overview"),
    ("/console/events", "Events"),
    ("/console/duplicates", "Duplicates"),
    ("/console/dead", "Dead letters"),
    ("/console/destinations", "Destinations"),
];

/// The frame around every page.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    /// The active tab's path (`""`: none, as on the login page).
    pub active: &'static str,
    /// Whether to show the tabs and the logout button.
    pub signed_in: bool,
    /// A one-line message at the top (`notice-ok` or `notice-bad`).
    pub notice: Option<Notice>,
}

impl Layout {
    pub fn page(title: impl Into<String>, active: &'static str) -> Layout {
        Layout {
            title: title.into(),
            active,
            signed_in: true,
            notice: None,
        }
    }

    pub fn with_notice(mut self, notice: Option<Notice>) -> Layout {
        self.notice = notice;
        self
    }

    pub fn tabs(&self) -> Vec<(&'static str, &'static str, bool)> {
        TABS.iter()
            .map(|(path, label)| (*path, *label, *path == self.active))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Notice {
    pub good: bool,
    pub text: String,
}

impl Notice {
    pub fn good(text: impl Into<String>) -> Option<Notice> {
        Some(Notice {
            good: true,
            text: text.into(),
        })
    }
    pub fn bad(text: impl Into<String>) -> Option<Notice> {
        Some(Notice {
            good: false,
            text: text.into(),
        })
    }
}

/// A console page that could not be shown, as an HTML page.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        let status = e.status_code();
        if status.is_server_error() {
            // The API's answer logs the cause; this page does the same,
            // and like it shows none of it.
            tracing::error!(error = %crate::error::chain(&e), "console page failed");
        }
        PageError {
            status,
            message: e.to_string(),
        }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl PageError {
    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    message: &'a str,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let page = ErrorPage {
            layout: Layout::page("Error", ""),
            status: self.status.as_u16(),
            message: &self.message,
        };
        html(self.status, &page)
    }
}

pub type PageResult = Result<HttpResponse, PageError>;

/// A rendered template as an HTML answer.
pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "rendering a console page failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("internal error")
        }
    }
}

pub fn ok(page: &impl Template) -> PageResult {
    Ok(html(StatusCode::OK, page))
}

/// A redirect after a POST (`303 See Other`: the browser GETs `to`).
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// The answer to a console POST from another origin (SPEC §9).
pub fn forbidden() -> HttpResponse {
    HttpResponse::Forbidden()
        .content_type("text/plain; charset=utf-8")
        .body(
            "403 Forbidden: this form was not sent from the console's own origin. \
             Behind a proxy or TLS terminator, set server.public_origin to the URL \
             you open the console at.",
        )
}
