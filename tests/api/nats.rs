//! The NATS JetStream transport against a real `nats-server -js` of each
//! test's own (`nats_server.rs`): what lands in the stream (subjects,
//! headers, bodies, order), duplicate PubAcks, the stream check and
//! `create_stream`, and NATS being down — at the first send, mid-run, and
//! restarted with or without its store. Stream contents are read back with
//! a client of the test's own, by sequence.

use std::fmt::Display;
use std::time::{Duration, Instant};

use async_nats::header::{IntoHeaderName, NATS_MESSAGE_ID};

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use hookledger::config::{DestinationConfig, DestinationKind, NatsDestination, Secret};
use hookledger::relay::nats::NatsTransport;
use hookledger::relay::{Attempt, AttemptResult};

use crate::nats_server::{Auth, NatsServer};

const TIMEOUT_SECS: u64 = 2;
const TEMPLATE: &str = "hookledger.{source}.{object_type}.{action}.{object_id}";
/// Slack on top of `TIMEOUT_SECS` for "returned within the timeout".
const SLACK: Duration = Duration::from_millis(1500);
/// How long a restarted server may take to see the client back.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(20);

fn transport(url: &str, subject: &str, stream: &str, create_stream: bool) -> NatsTransport {
    let nats = NatsDestination {
        url: Secret::new(url),
        subject: subject.to_string(),
        stream: stream.to_string(),
        create_stream,
    };
    let destination = DestinationConfig {
        name: "bus".to_string(),
        kind: DestinationKind::Nats(nats.clone()),
        timeout_secs: TIMEOUT_SECS,
        concurrency: 4,
        rate_per_sec: None,
        max_attempts: 5,
        backoff_base_secs: 1,
        backoff_max_secs: 60,
    };
    NatsTransport::new(&destination, &nats)
}

fn attempt<'a>(delivery_id: &'a str, body: &'a str) -> Attempt<'a> {
    Attempt {
        delivery_id,
        source: "stripe",
        action: Some("invoice.paid"),
        object_type: Some("invoice"),
        object_id: Some("in_1"),
        attempt: 1,
        body,
    }
}

fn assert_delivered(result: &AttemptResult, what: &str) {
    assert_eq!(result, &AttemptResult::Delivered { status: None }, "{what}");
}

/// The error of a retry (panics on anything else).
fn retry_error(result: AttemptResult) -> String {
    match result {
        AttemptResult::Retry {
            error,
            status: None,
            retry_after_ms: None,
        } => error,
        other => panic!("expected a retry without status, got {other:?}"),
    }
}

async fn make_stream(server: &NatsServer, name: &str, subjects: &[&str]) {
    server
        .jetstream()
        .await
        .create_stream(StreamConfig {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create the stream by hand");
}

/// Every message of `stream`, in sequence order.
pub async fn stored(server: &NatsServer, stream: &str) -> Vec<StreamMessage> {
    let jetstream = server.jetstream().await;
    let mut stream = jetstream
        .get_stream(stream)
        .await
        .expect("the stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut messages = Vec::new();
    if state.messages == 0 {
        return messages;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        messages.push(
            stream
                .get_raw_message(sequence)
                .await
                .expect("message by sequence"),
        );
    }
    messages
}

/// A header's value; `name` as async-nats names it (its standard headers
/// are found only by their constants, not by their text).
fn header(message: &StreamMessage, name: impl IntoHeaderName + Clone + Display) -> &str {
    message
        .headers
        .get(name.clone())
        .unwrap_or_else(|| {
            panic!(
                "header {name} missing on {}: {:?}",
                message.subject, message.headers
            )
        })
        .as_str()
}

fn msg_ids(messages: &[StreamMessage]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| header(m, NATS_MESSAGE_ID))
        .collect()
}

/// Sends `attempt` until it is delivered (each failure must be a retry),
/// within `RECONNECT_DEADLINE`; returns the retries' errors.
async fn send_until_delivered(transport: &NatsTransport, attempt: &Attempt<'_>) -> Vec<String> {
    let deadline = Instant::now() + RECONNECT_DEADLINE;
    let mut errors = Vec::new();
    loop {
        match transport.send(attempt).await {
            AttemptResult::Delivered { status: None } => return errors,
            other => errors.push(retry_error(other)),
        }
        assert!(
            Instant::now() < deadline,
            "not delivered within {RECONNECT_DEADLINE:?}; errors: {errors:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_attempts_land_in_order_with_sanitised_subjects_headers_and_exact_bodies() {
    let Some(server) = NatsServer::started("nats published_attempts").await else {
        return;
    };
    make_stream(&server, "HOOKLEDGER", &["hookledger.>"]).await;
    let relay = transport(&server.url(), TEMPLATE, "HOOKLEDGER", false);

    let bodies = [
        r#"{"type":"invoice.paid","data":{"id":"hl_1"}}"#,
        "{\"type\":null,\"data\":{\"note\":\"caf\u{e9} \\u00e9 \\\"q\\\"\"}}",
        r#"{"type":"x","data":{}}"#,
    ];
    let attempts = [
        attempt("hl_1", bodies[0]),
        Attempt {
            action: Some("a b*c>d"),
            object_type: None,
            object_id: Some("\u{e9}.x"),
            attempt: 3,
            ..attempt("hl_2-r1", bodies[1])
        },
        Attempt {
            source: "git-hub_2",
            action: None,
            object_type: Some("pull.request"),
            object_id: None,
            ..attempt("hl_3", bodies[2])
        },
    ];
    for a in &attempts {
        assert_delivered(&relay.send(a).await, a.delivery_id);
    }

    let messages = stored(&server, "HOOKLEDGER").await;
    let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "hookledger.stripe.invoice.invoice_paid.in_1",
            "hookledger.stripe._.a_b_c_d.__x",
            "hookledger.git-hub_2.pull_request._._",
        ],
        "sanitised subjects, in publish order"
    );
    assert_eq!(msg_ids(&messages), ["hl_1", "hl_2-r1", "hl_3"]);
    let sequences: Vec<u64> = messages.iter().map(|m| m.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    for (message, sent) in messages.iter().zip(&attempts) {
        assert_eq!(header(message, "hookledger-source"), sent.source);
        assert_eq!(
            header(message, "hookledger-attempt"),
            sent.attempt.to_string()
        );
        assert_eq!(
            message.payload.as_ref(),
            sent.body.as_bytes(),
            "body byte for byte"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_id_published_twice_is_delivered_twice_and_stored_once() {
    let Some(server) = NatsServer::started("nats duplicate").await else {
        return;
    };
    make_stream(&server, "HOOKLEDGER", &["hookledger.>"]).await;
    let relay = transport(&server.url(), TEMPLATE, "HOOKLEDGER", false);

    let first = attempt("hl_7", "{\"n\":1}");
    assert_delivered(&relay.send(&first).await, "first publish");
    let again = Attempt {
        attempt: 2,
        ..first.clone()
    };
    assert_delivered(
        &relay.send(&again).await,
        "a duplicate PubAck counts as delivered",
    );
    assert_delivered(
        &relay.send(&attempt("hl_8", "{}")).await,
        "another delivery id",
    );

    let messages = stored(&server, "HOOKLEDGER").await;
    assert_eq!(
        msg_ids(&messages),
        ["hl_7", "hl_8"],
        "the duplicate was not stored"
    );
    assert_eq!(header(&messages[0], "hookledger-attempt"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_a_retry_naming_it_unless_create_stream_makes_it() {
    let Some(server) = NatsServer::started("nats missing stream").await else {
        return;
    };
    let checking = transport(&server.url(), TEMPLATE, "HOOKLEDGER", false);
    let error = retry_error(checking.send(&attempt("hl_1", "{}")).await);
    assert!(
        error.contains("stream HOOKLEDGER does not exist"),
        "{error}"
    );
    let jetstream = server.jetstream().await;
    assert!(
        jetstream.get_stream("HOOKLEDGER").await.is_err(),
        "without create_stream nothing is created"
    );

    let creating = transport(&server.url(), TEMPLATE, "HOOKLEDGER", true);
    assert_delivered(
        &creating.send(&attempt("hl_1", "{}")).await,
        "after creating",
    );
    let mut stream = jetstream.get_stream("HOOKLEDGER").await.expect("created");
    let config = stream.info().await.expect("info").config.clone();
    assert_eq!(config.subjects, ["hookledger.>"]);
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(msg_ids(&stored(&server, "HOOKLEDGER").await), ["hl_1"]);

    // The stream exists now, so the checking transport finds it on its
    // next attempt rather than remembering the failure.
    assert_delivered(
        &checking.send(&attempt("hl_2", "{}")).await,
        "stream now exists",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_under_a_live_connection_is_created_again() {
    let Some(server) = NatsServer::started("nats stream deleted").await else {
        return;
    };
    let relay = transport(&server.url(), TEMPLATE, "HOOKLEDGER", true);
    assert_delivered(&relay.send(&attempt("hl_1", "{}")).await, "first");
    let jetstream = server.jetstream().await;
    jetstream.delete_stream("HOOKLEDGER").await.expect("delete");

    // The connection was checked already: this publish finds no stream...
    let error = retry_error(relay.send(&attempt("hl_2", "{}")).await);
    assert!(error.contains("no stream"), "{error}");
    // ...and makes the next attempt check, and so create, it again.
    assert_delivered(&relay.send(&attempt("hl_2", "{}")).await, "re-created");
    assert_msg_ids(&server, &["hl_2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_no_stream_captures_or_another_stream_captures_is_a_retry() {
    let Some(server) = NatsServer::started("nats uncaptured subject").await else {
        return;
    };
    make_stream(&server, "HOOKLEDGER", &["other.>"]).await;
    let relay = transport(&server.url(), TEMPLATE, "HOOKLEDGER", false);
    let error = retry_error(relay.send(&attempt("hl_1", "{}")).await);
    assert!(
        error.contains("no stream")
            && error.contains("hookledger.stripe.invoice.invoice_paid.in_1"),
        "{error}"
    );

    make_stream(&server, "ELSEWHERE", &["hookledger.>"]).await;
    let error = retry_error(relay.send(&attempt("hl_1", "{}")).await);
    assert!(error.contains("expected stream"), "{error}");
    assert!(
        stored(&server, "ELSEWHERE").await.is_empty(),
        "not stored in the wrong stream"
    );
    assert!(stored(&server, "HOOKLEDGER").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_at_first_send_is_a_quick_retry_and_a_later_send_connects_and_creates_the_stream()
{
    let Some(mut server) = NatsServer::prepare("nats down at first send", Auth::None) else {
        return;
    };
    let built = Instant::now();
    let relay = transport(&server.url(), TEMPLATE, "HOOKLEDGER", true);
    assert!(
        built.elapsed() < Duration::from_millis(100),
        "new does no IO"
    );

    let sent = Instant::now();
    let error = retry_error(relay.send(&attempt("hl_1", "{}")).await);
    assert!(sent.elapsed() < Duration::from_secs(TIMEOUT_SECS) + SLACK);
    assert!(
        error.contains(&format!(
            "connecting to NATS at nats://127.0.0.1:{}",
            server.port
        )),
        "{error}"
    );

    server.start().await;
    assert_delivered(&relay.send(&attempt("hl_1", "{}")).await, "once NATS is up");
    assert_msg_ids(&server, &["hl_1"]).await;
}

async fn assert_msg_ids(server: &NatsServer, expected: &[&str]) {
    assert_eq!(msg_ids(&stored(server, "HOOKLEDGER").await), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_fails_sends_until_it_is_back_with_its_store() {
    let Some(mut server) = NatsServer::started("nats killed mid-run").await else {
        return;
    };
    let relay = transport(&server.url(), TEMPLATE, "HOOKLEDGER", true);
    assert_delivered(&relay.send(&attempt("hl_1", "{}")).await, "before the kill");

    server.kill();
    // Every send while it is down is a retry within the timeout; soon the
    // client's failed reconnection tries show in the error.
    let deadline = Instant::now() + RECONNECT_DEADLINE;
    loop {
        let sent = Instant::now();
        let error = retry_error(relay.send(&attempt("hl_2", "{}")).await);
        assert!(
            sent.elapsed() < Duration::from_secs(TIMEOUT_SECS) + SLACK,
            "{error}"
        );
        if error.contains("is lost; reconnecting (last try: ") {
            break;
        }
        assert!(Instant::now() < deadline, "last error: {error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    server.start().await;
    send_until_delivered(&relay, &attempt("hl_2", "{}")).await;
    assert_delivered(
        &relay.send(&attempt("hl_3", "{}")).await,
        "after reconnecting",
    );
    // The store survived; hl_2 is there once however often it was tried.
    assert_msg_ids(&server, &["hl_1", "hl_2", "hl_3"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnection_to_an_empty_server_checks_the_stream_again() {
    let Some(mut server) = NatsServer::started("nats reconnect without store").await else {
        return;
    };
    make_stream(&server, "HOOKLEDGER", &["hookledger.>"]).await;
    let checking = transport(&server.url(), TEMPLATE, "HOOKLEDGER", false);
    let creating = transport(&server.url(), TEMPLATE, "HOOKLEDGER", true);
    assert_delivered(
        &checking.send(&attempt("hl_1", "{}")).await,
        "checking, before",
    );
    assert_delivered(
        &creating.send(&attempt("hl_2", "{}")).await,
        "creating, before",
    );

    server.kill();
    server.wipe_store();
    server.start().await;

    // Creating: its reconnection re-creates the stream, so the send goes
    // through once the client is back.
    send_until_delivered(&creating, &attempt("hl_3", "{}")).await;
    assert_msg_ids(&server, &["hl_3"]).await;

    // Checking: wipe again, so its reconnection finds no stream.
    server.kill();
    server.wipe_store();
    server.start().await;
    let deadline = Instant::now() + RECONNECT_DEADLINE;
    let error = loop {
        let error = retry_error(checking.send(&attempt("hl_4", "{}")).await);
        if error.contains("does not exist") || Instant::now() > deadline {
            break error;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        error.contains("stream HOOKLEDGER does not exist"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_authenticate_and_never_appear_in_errors() {
    let users = Auth::UserPassword("hook".into(), "s3cr3t-pw".into());
    let Some(mut server) = NatsServer::prepare("nats credentials", users) else {
        return;
    };
    server.start().await;
    let port = server.port;
    let good = transport(
        &format!("nats://hook:s3cr3t-pw@127.0.0.1:{port}"),
        TEMPLATE,
        "HOOKLEDGER",
        true,
    );
    assert_delivered(
        &good.send(&attempt("hl_1", "{}")).await,
        "user and password",
    );

    let bad = transport(
        &format!("nats://hook:wr0ng-pw@127.0.0.1:{port}"),
        TEMPLATE,
        "HOOKLEDGER",
        true,
    );
    let error = retry_error(bad.send(&attempt("hl_2", "{}")).await);
    assert!(error.contains("authorization violation"), "{error}");
    assert!(!error.contains("wr0ng-pw"), "{error}");
    assert!(
        error.contains(&format!("nats://127.0.0.1:{port}")),
        "{error}"
    );

    let Some(mut tokens) = NatsServer::prepare("nats token", Auth::Token("t0ken-abc".into()))
    else {
        return;
    };
    tokens.start().await;
    let token = transport(
        &format!("nats://t0ken-abc@127.0.0.1:{}", tokens.port),
        TEMPLATE,
        "HOOKLEDGER",
        true,
    );
    assert_delivered(&token.send(&attempt("hl_1", "{}")).await, "token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_the_attempt_within_the_timeout() {
    // Accepts connections and says nothing: no INFO, no PubAck.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let relay = transport(
        &format!("nats://127.0.0.1:{port}"),
        TEMPLATE,
        "HOOKLEDGER",
        true,
    );
    let sent = Instant::now();
    let error = retry_error(relay.send(&attempt("hl_1", "{}")).await);
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(TIMEOUT_SECS) + SLACK,
        "took {took:?}: {error}"
    );
    assert!(error.contains("connecting to NATS"), "{error}");
    drop(listener);
}
