//! A chunked request body that a response left unread closes the connection
//! instead of being read to its end.
//!
//! When a handler answers without reading the whole body (413 while
//! streaming, 404, 415, 429, a route that takes no body) and drops it,
//! actix-http reads and discards what is left of a chunked body, so that the
//! connection can serve the next request. A body that never ends is then
//! read without end, and the caller can keep a connection and a share of a
//! core busy for as long as it likes. If the body is still held when the
//! response goes out, actix-http closes the connection after the response
//! instead (reading at most for its client-disconnect linger, 1 s). So for
//! chunked requests this middleware hands the handler a stream over the
//! payload and holds the payload itself until the response body has been
//! written. A body that was read to its end changes nothing (the connection
//! stays open), and requests with a `Content-Length`, which actix-http never
//! drains past what it declares, pass through untouched.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage};
use futures_util::Stream;

type Shared = Rc<RefCell<Payload>>;

pub async fn close_after_unread_chunked_body(
    mut request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<EitherBody<BoxBody, Holding>>, Error> {
    let chunked = request
        .headers()
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if !chunked {
        return Ok(next.call(request).await?.map_into_left_body());
    }
    let payload: Shared = Rc::new(RefCell::new(request.take_payload()));
    request.set_payload(Payload::from(
        Box::pin(Reading(payload.clone())) as Pin<Box<dyn Stream<Item = _>>>
    ));
    let response = next.call(request).await?;
    Ok(response
        .map_body(|_, body| Holding {
            body,
            _payload: payload,
        })
        .map_into_right_body())
}

/// What the handler reads: the shared payload.
struct Reading(Shared);

impl Stream for Reading {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

/// A response body that holds the request's payload until it is dropped.
pub struct Holding {
    body: BoxBody,
    _payload: Shared,
}

impl MessageBody for Holding {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}
