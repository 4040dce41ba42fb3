//! Endless bodies: chunked bodies without end are refused with 413 while
//! they stream, after little more than the limit has been read, and a body
//! the answer leaves unread is not read forever — the server closes the
//! connection soon after answering, while a chunked body read to its end
//! leaves the connection open for the next request.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use super::*;
use crate::backend_tests;

backend_tests!(endless_chunked_bodies_are_cut_off_at_the_limit,);

/// Four endless chunked bodies at once: each is refused with 413 while it
/// streams, long before it ends, and the server reads little more than the
/// limit of each (the client's stream counts what it was asked for).
async fn endless_chunked_bodies_are_cut_off_at_the_limit(backend: Backend) {
    const CHUNK: usize = 64 * 1024;
    // 256 MiB each if the server were to read them to the end.
    const CHUNKS: usize = 4096;
    let app = spawn_app(backend).await;
    let limit = app.config.server.max_body_bytes;
    let headers = app.signed_headers(
        "stripe",
        &[("Content-Type", "application/json")],
        b"{\"id\":\"evt_endless\"}",
    );
    let sends = (0..4).map(|_| {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let stream = futures_util::stream::repeat_with(move || {
            counter.fetch_add(CHUNK, Ordering::SeqCst);
            Ok::<_, std::io::Error>(vec![b' '; CHUNK])
        })
        .take(CHUNKS);
        // A client of its own: the connection is not reused after this.
        let client = reqwest::Client::new();
        let mut request = client
            .post(format!("{}/webhooks/stripe", app.address))
            .body(reqwest::Body::wrap_stream(stream));
        for (k, v) in &headers {
            request = request.header(k.as_str(), v.as_str());
        }
        async move {
            let answer = request.send().await;
            // What the body had given when the answer came: the limit, plus
            // what sat in the client's and the sockets' buffers.
            let pulled_at_answer = pulled.load(Ordering::SeqCst);
            let answer = match answer {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.json::<Value>().await.map(|body| (status, body))
                }
                Err(e) => Err(e),
            };
            (answer, pulled_at_answer)
        }
    });
    let answers = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(sends),
    )
    .await
    .expect("every endless body is answered within 60 s");
    for (answer, pulled) in answers {
        match answer {
            Ok((status, body)) => {
                assert_eq!(status, 413, "{body}");
                assert_eq!(body["error"]["code"], "payload_too_large");
            }
            // The server answered and closed while the client was still
            // writing; a client may then see the reset instead.
            Err(e) => assert!(e.is_request() || e.is_body(), "{e:?}"),
        }
        assert!(
            pulled <= limit + 32 * 1024 * 1024,
            "{pulled} bytes of an endless body sent before the answer, with a {limit}-byte limit"
        );
    }
    assert_eq!(app.ledger_total().await, 0);
    let mut alive = 0;
    assert_still_serving(&app, &mut alive, "endless chunked bodies").await;
}

/// An endless chunked body that the answer leaves unread (413 while
/// streaming, 404 before reading, 415 before reading) is not read without
/// end: the server closes the connection soon after answering (actix-http
/// lingers at most 1 s), so a caller cannot keep it reading and discarding
/// data forever (`routes::unread_body`). A chunked body read to its end
/// leaves the connection open for the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_chunked_body_left_unread_closes_the_connection() {
    let app = spawn_app(Backend::Sqlite).await;
    for (path, content_type, status) in [
        ("/webhooks/stripe", "application/json", "413"),
        ("/webhooks/no-such-source", "application/json", "404"),
        ("/webhooks/stripe", "text/plain", "415"),
    ] {
        let port = app.port;
        let (answer, closed) =
            tokio::task::spawn_blocking(move || endless_chunked_body(port, path, content_type))
                .await
                .unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {answer}"
        );
        assert!(
            closed,
            "{path}: the connection was still taking the body {CLOSE_DEADLINE:?} after the answer"
        );
    }

    // Read to its end, a chunked body leaves the connection open: two
    // requests on one.
    let port = app.port;
    let answers = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Read before the signature is checked: 401.
        let request = b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n\
            Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
            2\r\n{}\r\n0\r\n\r\n";
        let mut answers = Vec::new();
        for _ in 0..2 {
            stream.write_all(request).unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        answers
    })
    .await
    .unwrap();
    for answer in answers {
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
}

/// How long after its answer the server may go on taking an unread body.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);

/// Sends a chunked body without end; returns the answer and whether the
/// server closed the connection (a write failed other than by timing out)
/// within `CLOSE_DEADLINE` of answering.
fn endless_chunked_body(port: u16, path: &str, content_type: &str) -> (String, bool) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    stream
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    // Reads the answer while the body is being written.
    let mut reader = stream.try_clone().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let flag = answered.clone();
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let n = reader.read(&mut buf).unwrap_or(0);
        flag.store(1, Ordering::SeqCst);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
    chunk.resize(chunk.len() + 64 * 1024, b' ');
    chunk.extend_from_slice(b"\r\n");
    let mut answered_at = None;
    // Where in the chunk the next write starts: a write that times out is
    // resumed there, so the chunked framing stays intact (a broken one would
    // make the server close for that reason instead).
    let mut at = 0;
    let closed = loop {
        if answered_at.is_none() && answered.load(Ordering::SeqCst) == 1 {
            answered_at = Some(std::time::Instant::now());
        }
        if answered_at.is_some_and(|t| t.elapsed() > CLOSE_DEADLINE) {
            break false;
        }
        match stream.write(&chunk[at..]) {
            Ok(0) => break true,
            Ok(n) => at = (at + n) % chunk.len(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break true,
        }
    };
    (reading.join().unwrap(), closed)
}
