//! The change feed over HTTP (SPEC §8): `GET /feed` (a page after a
//! cursor, with long polling) and `GET /feed/stream` (the same items as
//! Server-Sent Events, framed by `actix-web-lab`). Both need the feed's own
//! bearer token, checked by [`require_feed`] before anything else of the
//! request; without `[feed]` both answer 404.
//!
//! Waiting is driven by a signal, not by polling the database in a loop:
//! a reader registers with the worker's feed signal (notified after every
//! completion commit of this process that appended items, and, on
//! PostgreSQL, on every `NOTIFY` of the feed channel from any process)
//! before it reads, then sleeps until it is notified. Two slower re-checks
//! back it up: after a wake-up that found nothing (on PostgreSQL an item is
//! held back until older transactions end, which notifies nobody) a few
//! quick ones with growing gaps up to [`WOKEN_RECHECK_MAX`], and otherwise
//! one every `feed.recheck_ms` (on SQLite the only way to see another
//! process's commits).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_lab::sse;
use serde::Deserialize;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use utoipa::IntoParams;

use super::feed_schema::{FeedPageAnswer, StreamEvent, StreamHeaders};

use crate::config::ActionGlob;
use crate::error::{ApiError, ErrorEnvelope};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::feed::{FeedError, FeedFilter, FeedPage, Position, Start};
use crate::store::Store;

/// `limit` when not given (SPEC §8; the admin lists' default is 50).
pub const DEFAULT_LIMIT: i64 = 100;
/// `wait` at most, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;
/// The first re-check after a wake-up that found nothing; doubling.
const WOKEN_RECHECK: Duration = Duration::from_millis(5);
/// The longest gap between the re-checks that follow a wake-up which found
/// nothing, until something is found: the wake-up said a commit happened,
/// and on PostgreSQL its items show once older transactions end.
pub const WOKEN_RECHECK_MAX: Duration = Duration::from_secs(1);
/// A comment on an idle stream at least this often (SPEC: every 15 s).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Items a stream reads per query (a page: at most `MAX_PAGE_BYTES` too).
const STREAM_PAGE: i64 = 100;
/// Events queued for a stream's response beyond what its client has read:
/// few, so that a client that stops reading holds at most this many
/// envelopes and one page (itself at most `MAX_PAGE_BYTES`) of memory.
const STREAM_QUEUE: usize = 4;
/// After a failed read a stream tries again this much later.
const STREAM_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Action globs a query may give.
pub const MAX_GLOBS: usize = 32;

/// The signal that wakes waiting readers (app data of the feed routes):
/// the worker's feed signal, also notified by the PostgreSQL listener.
#[derive(Clone)]
pub struct FeedWake {
    pub signal: Arc<Notify>,
}

/// Middleware of the feed routes: 404 without `[feed]`, 401 without the
/// feed token, before the query is looked at.
pub async fn require_feed(
    request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<EitherBody<BoxBody>>, actix_web::Error> {
    super::bearer::guard(request, next, authorize, "feed").await
}

/// Compares the bearer token with the feed token (both hashed first, so
/// the comparison takes the same time whatever the guess). The admin token
/// differs from it (checked at start-up), so it is refused here.
fn authorize(state: &AppState, request: &HttpRequest) -> Result<(), ApiError> {
    let Some(feed) = &state.config.feed else {
        return Err(ApiError::NotFound("no such resource".into()));
    };
    if super::bearer::presents(request, &feed.token) {
        Ok(())
    } else {
        Err(ApiError::FeedUnauthorized)
    }
}

/// The query of `GET /feed`, read as text and checked by hand (see
/// `admin::ListQuery`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// `now` (the current end), or a `cursor` / `next_cursor` of this
    /// feed; absent: the oldest kept item.
    after: Option<String>,
    /// Page size, 1 to 500 (larger is taken as 500); default 100.
    #[param(schema_with = super::answers::limit_schema)]
    limit: Option<String>,
    /// Seconds to hold the request until an item is there (long poll).
    #[param(schema_with = super::feed_schema::wait_schema)]
    wait: Option<String>,
    /// Only items of this source (empty: any).
    source: Option<String>,
    /// Only items whose action matches one of these comma-separated globs
    /// (`*` matches any run of characters; at most 32).
    #[param(schema_with = super::feed_schema::actions_schema)]
    actions: Option<String>,
}

fn invalid(message: &str) -> ApiError {
    ApiError::InvalidQuery(message.into())
}

/// `after`: absent → the oldest kept item, `now` → the current end, else a
/// cursor this feed handed out.
fn parse_after(raw: Option<&str>) -> Result<Start, ApiError> {
    match raw {
        None => Ok(Start::Oldest),
        Some("now") => Ok(Start::Now),
        Some(cursor) => Position::from_cursor(cursor)
            .map(Start::After)
            .ok_or_else(|| invalid("after is not a cursor of this feed")),
    }
}

/// 0 to 60 in plain decimal digits; default 0.
fn parse_wait(raw: Option<&str>) -> Result<Duration, ApiError> {
    let Some(raw) = raw else {
        return Ok(Duration::ZERO);
    };
    let bad = || invalid("wait must be a whole number of seconds from 0 to 60");
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // Digits only: an overflow just means "too large".
    let secs: u64 = raw.parse().unwrap_or(u64::MAX);
    if secs > MAX_WAIT_SECS {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

fn parse_filter(source: Option<&str>, actions: Option<&str>) -> Result<FeedFilter, ApiError> {
    let source = source.filter(|s| !s.is_empty()).map(str::to_string);
    let actions = match actions.filter(|a| !a.is_empty()) {
        None => None,
        Some(list) => {
            let globs = list
                .split(',')
                .map(|g| {
                    ActionGlob::parse(g)
                        .map(|g| g.as_str().to_string())
                        .map_err(|e| ApiError::InvalidQuery(format!("actions: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if globs.len() > MAX_GLOBS {
                return Err(invalid("actions: at most 32 globs"));
            }
            Some(globs)
        }
    };
    Ok(FeedFilter { source, actions })
}

/// One read, on the application's runtime; `Err(CursorExpired)` for 410.
async fn read_page(
    state: &AppState,
    start: Start,
    limit: i64,
    filter: &FeedFilter,
) -> Result<FeedPage, ApiError> {
    let filter = filter.clone();
    let page = state
        .on_main(move |store: Store| async move {
            match store.feed_page(start, limit, &filter).await {
                Ok(page) => Ok(Ok(page)),
                Err(FeedError::Expired) => Ok(Err(())),
                Err(FeedError::Store(e)) => Err(e),
            }
        })
        .await?;
    page.map_err(|()| {
        ApiError::CursorExpired(
            "an item after this cursor has been dropped (feed.retention_secs); start again \
             without after, or with after=now"
                .into(),
        )
    })
}

/// How long to sleep before looking again unwoken: after a wake-up that
/// found nothing, re-checks with growing gaps up to [`WOKEN_RECHECK_MAX`];
/// else `recheck` (`feed.recheck_ms`).
fn next_nap(woken: &mut Option<Duration>, recheck: Duration) -> Duration {
    match woken.take() {
        Some(gap) => {
            *woken = Some((gap * 2).min(WOKEN_RECHECK_MAX));
            gap
        }
        None => recheck,
    }
}

/// `feed.recheck_ms` of the configured feed.
fn recheck_of(state: &AppState) -> Duration {
    Duration::from_millis(
        state
            .config
            .feed
            .as_ref()
            .map_or(crate::config::feed::DEFAULT_FEED_RECHECK_MS, |feed| {
                feed.recheck_ms
            }),
    )
}

/// Counts a waiting long poll for as long as it lives.
struct Waiting<'a>(&'a Metrics);

impl<'a> Waiting<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.feed_waiters_add(1);
        Waiting(metrics)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.feed_waiters_add(-1);
    }
}

/// `GET /feed`.
#[utoipa::path(
    get,
    path = "/feed",
    tag = "feed",
    description = "The change feed's items after a cursor, oldest first; with `wait`, held \
        until at least one item is there or the time is up. Without `[feed]` configured, 404.",
    params(FeedQuery),
    security(("feed_token" = [])),
    responses(
        (status = 200, description = "A page (it may hold fewer than `limit` items although \
            more follow)", body = FeedPageAnswer),
        (status = 400, description = "`invalid_query`: a malformed cursor, limit, wait or \
            glob", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`: no feed token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no `[feed]` configured",
            body = ErrorEnvelope),
        (status = 410, description = "`cursor_expired`: an item after the cursor was dropped \
            by retention", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn feed(
    state: web::Data<AppState>,
    wake: web::Data<FeedWake>,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, ApiError> {
    let start = parse_after(query.after.as_deref())?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        raw => super::admin::parse_limit(raw)?,
    };
    let wait = parse_wait(query.wait.as_deref())?;
    let filter = parse_filter(query.source.as_deref(), query.actions.as_deref())?;
    let deadline = Instant::now() + wait;
    // `now` is pinned to a concrete position by the first read, so a
    // wait that follows sees only what came after the request arrived.
    let mut start = start;
    let mut woken = None;
    let mut waiting = None;
    let recheck = recheck_of(&state);
    loop {
        let mut notified = pin!(wake.signal.notified());
        // Registered before the read: a commit after it wakes us.
        notified.as_mut().enable();
        let page = read_page(&state, start, limit, &filter).await?;
        let now = Instant::now();
        if !page.rows.is_empty() || now >= deadline {
            return Ok(page_answer(&page));
        }
        if start == Start::Now || start == Start::Oldest {
            start = Start::After(page.next);
        }
        waiting.get_or_insert_with(|| Waiting::new(&state.metrics));
        let nap = next_nap(&mut woken, recheck).min(deadline - now);
        tokio::select! {
            () = notified => woken = Some(WOKEN_RECHECK),
            () = tokio::time::sleep(nap) => {}
        }
    }
}

/// `{"items":[…],"next_cursor":"…"}`, written around the stored envelopes.
fn page_answer(page: &FeedPage) -> HttpResponse {
    let mut body =
        String::with_capacity(64 + page.rows.iter().map(|r| r.body.len() + 64).sum::<usize>());
    body.push_str("{\"items\":[");
    for (i, row) in page.rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&row.item_json());
    }
    body.push_str("],\"next_cursor\":");
    body.push_str(&serde_json::Value::String(page.next.cursor()).to_string());
    body.push('}');
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

/// The query of `GET /feed/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// As for `GET /feed`; a `Last-Event-ID` header wins over it.
    after: Option<String>,
    /// Only items of this source (empty: any).
    source: Option<String>,
    /// As for `GET /feed`.
    #[param(schema_with = super::feed_schema::actions_schema)]
    actions: Option<String>,
}

/// `GET /feed/stream`: the items as SSE events (`id` the cursor, `event`
/// the action, `data` the envelope). `Last-Event-ID` wins over `after`.
/// The first page is read here, so an expired or malformed cursor is
/// answered with its status; the rest is read by a task on the
/// application's runtime that ends as soon as the client is gone.
#[utoipa::path(
    get,
    path = "/feed/stream",
    tag = "feed",
    description = "The feed's items as Server-Sent Events: `id` the cursor, `event` the \
        action (no `event` line without one), `data` the envelope; a comment line at least \
        every 15 s. The stream does not end by itself.",
    params(StreamQuery, StreamHeaders),
    security(("feed_token" = [])),
    responses(
        (status = 200, description = "The event stream; the schema is that of each event \
            (as OpenAPI 3.2's `itemSchema` puts it)", body = StreamEvent,
            content_type = "text/event-stream"),
        (status = 400, description = "`invalid_query`", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`: no feed token", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no `[feed]` configured",
            body = ErrorEnvelope),
        (status = 410, description = "`cursor_expired`", body = ErrorEnvelope),
        (status = 503, description = "`storage_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn stream(
    request: HttpRequest,
    state: web::Data<AppState>,
    wake: web::Data<FeedWake>,
    query: web::Query<StreamQuery>,
) -> Result<impl actix_web::Responder, ApiError> {
    let last_event_id = request
        .headers()
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| invalid("Last-Event-ID is not a cursor of this feed"))
        })
        .transpose()?;
    // An empty one names no event (an SSE client that has seen no `id`
    // sends none): as if absent.
    let start = match last_event_id.map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => Position::from_cursor(id)
            .map(Start::After)
            .ok_or_else(|| invalid("Last-Event-ID is not a cursor of this feed"))?,
        None => parse_after(query.after.as_deref())?,
    };
    let filter = parse_filter(query.source.as_deref(), query.actions.as_deref())?;
    let first = read_page(&state, start, STREAM_PAGE, &filter).await?;
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let streamer = Streamer {
        store: state.store.clone(),
        signal: wake.signal.clone(),
        metrics: state.metrics.clone(),
        filter,
        tx,
        recheck: recheck_of(&state),
    };
    state.metrics.feed_streams_add(1);
    state.runtime.spawn(streamer.run(first));
    Ok(sse::Sse::from_infallible_receiver(rx).with_keep_alive(KEEP_ALIVE))
}

/// Reads the feed for one stream and hands its events to the response.
struct Streamer {
    store: Store,
    signal: Arc<Notify>,
    metrics: Arc<Metrics>,
    filter: FeedFilter,
    tx: mpsc::Sender<sse::Event>,
    /// `feed.recheck_ms`.
    recheck: Duration,
}

impl Streamer {
    /// Sends `page`, then follows the feed until the client goes away
    /// (the response, and with it the receiver, is dropped) or the reader
    /// falls behind retention. The stream gauge counts it until then.
    async fn run(self, page: FeedPage) {
        let _open = StreamOpen(self.metrics.clone());
        let mut next = page.next;
        if !self.send(page).await {
            return;
        }
        let mut woken = None;
        loop {
            let mut notified = pin!(self.signal.notified());
            notified.as_mut().enable();
            let nap = match self
                .store
                .feed_page(Start::After(next), STREAM_PAGE, &self.filter)
                .await
            {
                Ok(page) => {
                    next = page.next;
                    let more = !page.rows.is_empty();
                    if !self.send(page).await {
                        return;
                    }
                    if more {
                        // Found: back to waiting for the next wake-up.
                        woken = None;
                        continue;
                    }
                    next_nap(&mut woken, self.recheck)
                }
                Err(FeedError::Expired) => {
                    let _ = self
                        .tx
                        .send(sse::Event::Comment(
                            "cursor_expired: items after the last event were dropped".into(),
                        ))
                        .await;
                    return;
                }
                Err(FeedError::Store(e)) => {
                    tracing::warn!(error = %e, "reading the feed for a stream failed; retrying");
                    STREAM_ERROR_PAUSE
                }
            };
            tokio::select! {
                () = notified => woken = Some(WOKEN_RECHECK),
                () = tokio::time::sleep(nap) => {}
                () = self.tx.closed() => return,
            }
        }
    }

    /// Queues a page's events; false once the client is gone.
    async fn send(&self, page: FeedPage) -> bool {
        for row in page.rows {
            let mut data = sse::Data::new(row.body.clone()).id(row.position().cursor());
            if let Some(action) = row.action {
                data.set_event(event_name(action));
            }
            if self.tx.send(data.into()).await.is_err() {
                return false;
            }
        }
        !self.tx.is_closed()
    }
}

/// An action as an SSE `event` field. The action is webhook data, and SSE
/// ends a field at CR or LF: left as they are, an action such as
/// `"x\nid: <cursor>\ndata: {…}"` would write its own `id` and `data`
/// lines — a forged event, and a forged `Last-Event-ID` that a browser
/// resumes from. Each CR and LF becomes U+FFFD; the envelope's `type` keeps
/// the action exactly.
fn event_name(action: String) -> String {
    if action.contains(['\r', '\n']) {
        action.replace(['\r', '\n'], "\u{fffd}")
    } else {
        action
    }
}

/// Counts an open stream until its reading task ends.
struct StreamOpen(Arc<Metrics>);

impl Drop for StreamOpen {
    fn drop(&mut self) {
        self.0.feed_streams_add(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_cannot_end_its_event_field() {
        assert_eq!(event_name("invoice.paid".into()), "invoice.paid");
        let forged = "x\nid: ZmVlZDo5OTk5\r\ndata: {}\rretry: 1".to_string();
        let name = event_name(forged);
        assert!(!name.contains(['\r', '\n']), "{name:?}");
        assert_eq!(
            name,
            "x\u{fffd}id: ZmVlZDo5OTk5\u{fffd}\u{fffd}data: {}\u{fffd}retry: 1"
        );
    }

    #[test]
    fn wait_takes_zero_to_sixty_plain_digits() {
        assert_eq!(parse_wait(None).unwrap(), Duration::ZERO);
        assert_eq!(parse_wait(Some("0")).unwrap(), Duration::ZERO);
        assert_eq!(parse_wait(Some("60")).unwrap(), Duration::from_secs(60));
        assert_eq!(parse_wait(Some("060")).unwrap(), Duration::from_secs(60));
        for bad in [
            "",
            "61",
            "-1",
            "+5",
            "1.5",
            " 5",
            "abc",
            "99999999999999999999999",
        ] {
            assert!(parse_wait(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn after_is_absent_now_or_a_cursor() {
        assert_eq!(parse_after(None).unwrap(), Start::Oldest);
        assert_eq!(parse_after(Some("now")).unwrap(), Start::Now);
        let p = Position { xid: 3, id: 9 };
        assert_eq!(parse_after(Some(&p.cursor())).unwrap(), Start::After(p));
        assert!(parse_after(Some("garbage")).is_err());
        assert!(parse_after(Some("")).is_err());
    }

    #[test]
    fn a_wake_up_that_found_nothing_re_checks_soon_then_less_often() {
        let recheck = Duration::from_secs(3600);
        let mut woken = Some(WOKEN_RECHECK);
        let naps: Vec<Duration> = (0..12).map(|_| next_nap(&mut woken, recheck)).collect();
        assert_eq!(naps[0], WOKEN_RECHECK);
        assert_eq!(naps[1], WOKEN_RECHECK * 2);
        assert_eq!(*naps.last().unwrap(), WOKEN_RECHECK_MAX);
        assert!(naps.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(next_nap(&mut None, recheck), recheck);
    }
}
