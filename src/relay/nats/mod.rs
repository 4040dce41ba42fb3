//! NATS JetStream transport (SPEC §7): each attempt is published to the
//! destination's subject (`subject.rs`) with `Nats-Msg-Id: <delivery id>`,
//! `Nats-Expected-Stream: <stream>`, `hookledger-source` and
//! `hookledger-attempt`, and is delivered only when the stream's PubAck
//! arrives within `timeout_secs` — a duplicate PubAck (the same delivery id
//! within the stream's duplicate window) counts. Everything else is a
//! retry with a `last_error` that names what failed; nothing here is ever
//! `Dead`, since no NATS answer says an attempt can never succeed.
//!
//! Connection handling: [`NatsTransport::new`] only parses — no IO, so a
//! destination never delays or fails start-up. The first `send` connects,
//! within the attempt's `timeout_secs`; a failed connect is that attempt's
//! retry, and the next send connects afresh. Once connected, async-nats
//! keeps the connection: when it drops, the client reconnects in the
//! background (backoff of at most 4 s, without end), and once it has seen
//! the loss, sends fail at once, naming the last reconnection failure,
//! instead of queueing (one that slips in before is a PubAck timeout). Every connection — the first and each
//! reconnection, told apart by the server id and client id the server
//! announces — passes the stream check before its first publish:
//! `STREAM.INFO`, and with `create_stream` the stream is created when
//! missing (file storage, subjects from [`SubjectTemplate::stream_subject`]).
//! A publish that finds no stream also drops the check, so a stream
//! deleted under a live connection is looked at (and re-created) again.
//! The URL's credentials go to async-nats as connect options, never inside
//! the URL, and errors show the URL without userinfo (`endpoint.rs`).

mod endpoint;
mod subject;

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::header::{HeaderMap, NATS_EXPECTED_STREAM, NATS_MESSAGE_ID};
use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::Mutex;
use tokio::time::{timeout_at, Instant};

use super::{Attempt, AttemptResult};
use crate::config::{DestinationConfig, NatsDestination};
use endpoint::Endpoint;
pub use subject::SubjectTemplate;

/// The header naming the source an event came from.
pub const SOURCE_HEADER: &str = "hookledger-source";
/// The header numbering the attempt (1, 2, …).
pub const ATTEMPT_HEADER: &str = "hookledger-attempt";

/// Publishes deliveries to one JetStream stream.
pub struct NatsTransport {
    destination: String,
    /// `Err`: the URL did not parse (configuration checking refuses that);
    /// every attempt then fails with this message.
    endpoint: Result<Endpoint, String>,
    template: SubjectTemplate,
    stream: String,
    create_stream: bool,
    timeout: Duration,
    /// Held while connecting and checking, so concurrent sends make one
    /// connection and one check; a publish itself runs outside it.
    session: Mutex<Option<Session>>,
    /// The connection the stream was last found on; `None`: check again.
    checked_on: StdMutex<Option<ConnectionId>>,
}

struct Session {
    client: Client,
    jetstream: jetstream::Context,
    /// Why the last reconnection try failed (async-nats's words, which
    /// carry no URL); cleared on connecting.
    reconnect_failure: Arc<StdMutex<Option<String>>>,
}

/// One connection of the client: a reconnection gets a new client id, a
/// restarted or other server a new server id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConnectionId {
    server_id: String,
    client_id: u64,
}

impl ConnectionId {
    fn of(client: &Client) -> ConnectionId {
        let info = client.server_info();
        ConnectionId {
            server_id: info.server_id,
            client_id: info.client_id,
        }
    }
}

impl NatsTransport {
    /// Never fails and does no IO: the connection is made by the first send.
    pub fn new(destination: &DestinationConfig, nats: &NatsDestination) -> NatsTransport {
        NatsTransport {
            destination: destination.name.clone(),
            endpoint: Endpoint::parse(&nats.url),
            template: SubjectTemplate::parse(&nats.subject),
            stream: nats.stream.clone(),
            create_stream: nats.create_stream,
            timeout: Duration::from_secs(destination.timeout_secs.max(1)),
            session: Mutex::new(None),
            checked_on: StdMutex::new(None),
        }
    }

    /// One attempt: delivered on the stream's PubAck, else a retry. Returns
    /// within `timeout_secs` (connecting and the stream check included).
    pub async fn send(&self, attempt: &Attempt<'_>) -> AttemptResult {
        let deadline = Instant::now() + self.timeout;
        match self.publish(attempt, deadline).await {
            Ok(_ack) => AttemptResult::Delivered { status: None },
            Err(error) => AttemptResult::Retry {
                error: match &self.endpoint {
                    Ok(endpoint) => endpoint.scrub(error),
                    Err(_) => error,
                },
                status: None,
                retry_after_ms: None,
            },
        }
    }

    /// Drops the connection after flushing what it holds (within
    /// `timeout_secs`); a later send connects again.
    pub async fn close(&self) {
        let session = self.session.lock().await.take();
        if let Some(session) = session {
            let _ = tokio::time::timeout(self.timeout, session.client.drain()).await;
        }
    }

    async fn publish(
        &self,
        attempt: &Attempt<'_>,
        deadline: Instant,
    ) -> Result<PublishAck, String> {
        let endpoint = self.endpoint.as_ref().map_err(Clone::clone)?;
        let jetstream = self.ready(endpoint, deadline).await?;
        let subject = self.template.render(attempt);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, attempt.delivery_id);
        // Refused by the server if another stream captures the subject:
        // the message belongs in this one or nowhere.
        headers.insert(NATS_EXPECTED_STREAM, self.stream.as_str());
        headers.insert(SOURCE_HEADER, attempt.source);
        headers.insert(ATTEMPT_HEADER, attempt.attempt.to_string());
        let at = endpoint.shown();
        let timed_out = || {
            format!(
                "no PubAck from NATS at {at} within {}s for subject {subject}",
                self.timeout.as_secs()
            )
        };
        let failed = |e: async_nats::jetstream::context::PublishError| match e.kind() {
            PublishErrorKind::StreamNotFound => {
                self.forget_check();
                format!(
                    "no stream on NATS at {at} captures subject {subject} (expected stream {})",
                    self.stream
                )
            }
            PublishErrorKind::TimedOut => timed_out(),
            _ => format!("publishing to subject {subject} on NATS at {at} failed: {e}"),
        };
        let body = attempt.body.to_string().into();
        let ack = timeout_at(
            deadline,
            jetstream.publish_with_headers(subject.clone(), headers, body),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(failed)?;
        timeout_at(deadline, ack)
            .await
            .map_err(|_| timed_out())?
            .map_err(failed)
    }

    /// The JetStream context of a live connection whose stream check passed.
    async fn ready(
        &self,
        endpoint: &Endpoint,
        deadline: Instant,
    ) -> Result<jetstream::Context, String> {
        let mut session = timeout_at(deadline, self.session.lock())
            .await
            .map_err(|_| {
                format!(
                    "connecting to NATS at {} did not finish within {}s",
                    endpoint.shown(),
                    self.timeout.as_secs()
                )
            })?;
        if session.is_none() {
            *session = Some(self.connect(endpoint, deadline).await?);
        }
        let Some(live) = session.as_ref() else {
            unreachable!("a session was just made");
        };
        if live.client.connection_state() != State::Connected {
            let failure = lock(&live.reconnect_failure).clone();
            return Err(format!(
                "the connection to NATS at {} is lost; reconnecting{}",
                endpoint.shown(),
                failure
                    .map(|f| format!(" (last try: {f})"))
                    .unwrap_or_default()
            ));
        }
        let connection = ConnectionId::of(&live.client);
        if self.checked_connection().as_ref() != Some(&connection) {
            self.check_stream(&live.jetstream, endpoint, deadline)
                .await?;
            *lock(&self.checked_on) = Some(connection);
        }
        Ok(live.jetstream.clone())
    }

    async fn connect(&self, endpoint: &Endpoint, deadline: Instant) -> Result<Session, String> {
        let reconnect_failure = Arc::new(StdMutex::new(None));
        let failure = reconnect_failure.clone();
        let options = endpoint
            .authenticate(ConnectOptions::new())
            .event_callback(move |event| {
                match event {
                    Event::Connected => *lock(&failure) = None,
                    Event::ClientError(e) => *lock(&failure) = Some(e.to_string()),
                    _ => {}
                }
                async {}
            })
            .name(format!("hookledger destination {}", self.destination))
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout));
        let client = match timeout_at(deadline, options.connect(endpoint.address())).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(format!(
                    "connecting to NATS at {} failed: {e}",
                    endpoint.shown()
                ))
            }
            Err(_) => {
                return Err(format!(
                    "connecting to NATS at {} timed out after {}s",
                    endpoint.shown(),
                    self.timeout.as_secs()
                ))
            }
        };
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(self.timeout)
            .build(client.clone());
        Ok(Session {
            client,
            jetstream,
            reconnect_failure,
        })
    }

    /// The stream exists (or, with `create_stream`, now does).
    async fn check_stream(
        &self,
        jetstream: &jetstream::Context,
        endpoint: &Endpoint,
        deadline: Instant,
    ) -> Result<(), String> {
        let at = endpoint.shown();
        let stream = &self.stream;
        let check = async {
            match jetstream.get_stream(stream).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e.kind()) => {
                    if !self.create_stream {
                        return Err(format!(
                            "stream {stream} does not exist on NATS at {at} \
                             (create it, or set create_stream = true)"
                        ));
                    }
                    let subjects = self.template.stream_subject();
                    let config = StreamConfig {
                        name: stream.clone(),
                        subjects: vec![subjects.clone()],
                        storage: StorageType::File,
                        ..Default::default()
                    };
                    jetstream.create_stream(config).await.map_err(|e| {
                        format!("creating stream {stream} on NATS at {at} failed: {e}")
                    })?;
                    tracing::info!(
                        destination = %self.destination,
                        stream = %stream,
                        subjects = %subjects,
                        "created the JetStream stream"
                    );
                    Ok(())
                }
                Err(e) => Err(format!(
                    "checking stream {stream} on NATS at {at} failed: {e}"
                )),
            }
        };
        timeout_at(deadline, check).await.unwrap_or_else(|_| {
            Err(format!(
                "checking stream {stream} on NATS at {at} timed out after {}s",
                self.timeout.as_secs()
            ))
        })
    }

    fn checked_connection(&self) -> Option<ConnectionId> {
        lock(&self.checked_on).clone()
    }

    fn forget_check(&self) {
        *lock(&self.checked_on) = None;
    }
}

fn is_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// A std mutex's guard; a panic elsewhere cannot leave these values torn.
fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
