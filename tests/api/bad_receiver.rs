//! A hand-written HTTP/1.1 receiver that misbehaves on purpose, for the
//! relay fault tests: it can hang, close the connection before or in the
//! middle of an answer, stream a huge answer and report how far the client
//! let it get, or hold an answer until the test releases it. What it does
//! is decided per request by a closure, so one receiver serves a test's
//! every case (usually keyed on the envelope's `data.object_id`).
//!
//! It runs on plain threads with blocking sockets, outside the tokio
//! runtime it tests, and counts the requests it holds at once, so a test
//! can assert a relay's concurrency from the receiver's side. Every answer
//! carries `Connection: close`: each request has its own connection, and a
//! misbehaving one never poisons the client's pool for the next.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest a hanging or held request is kept, so a failed test cannot
/// leave threads behind for long.
const LONGEST_HOLD: Duration = Duration::from_secs(60);
/// How much a streamed answer writes at a time.
const STREAM_PIECE: usize = 64 * 1024;

/// What the receiver does with one request.
#[derive(Debug, Clone)]
pub enum Act {
    /// A whole answer.
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `status` with `Content-Length: len`, then `len` bytes of `x`, written
    /// as fast as the client takes them; how far it got is reported.
    Stream { status: u16, len: usize },
    /// Answers `status` (empty body) after `delay`.
    Delay { delay: Duration, status: u16 },
    /// Reads the request and never answers; the connection is closed when
    /// the test releases it (or after a minute).
    Hang,
    /// Holds the request until the test releases it, then answers `status`.
    HoldThen(u16),
    /// Closes the connection without a byte of answer.
    Close,
    /// Writes these bytes (a cut-off answer), then closes.
    Raw(Vec<u8>),
}

impl Act {
    pub fn status(status: u16) -> Act {
        Act::Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(status: u16, name: &str, value: &str) -> Act {
        Act::Answer {
            status,
            headers: vec![(name.to_string(), value.to_string())],
            body: Vec::new(),
        }
    }

    pub fn html(status: u16, body: &str) -> Act {
        Act::Answer {
            status,
            headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// One request as the receiver read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request target: path and query, as sent.
    pub target: String,
    pub method: String,
    /// Names lower-cased, in the order sent (repeats kept).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub arrived: Instant,
}

impl Request {
    /// Every value of header `name`.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of header `name`, asserted to be there exactly once.
    pub fn header(&self, name: &str) -> &str {
        match self.header_values(name).as_slice() {
            [one] => one,
            other => panic!("header {name}: expected one value, got {other:?}"),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The envelope's `data.object_id` ("" when there is none).
    pub fn object_id(&self) -> String {
        self.json()["data"]["object_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// How far a streamed answer got.
#[derive(Debug, Clone)]
pub struct StreamReport {
    pub object_id: String,
    /// Body bytes the socket took before the client went away.
    pub written: usize,
    pub len: usize,
    /// A write failed: the client closed the connection mid-answer.
    pub broken: bool,
    /// A write waited a minute without the client reading or closing.
    pub stalled: bool,
}

type Decide = dyn Fn(&Request) -> Act + Send + Sync;

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Request>>,
    streams: Mutex<Vec<StreamReport>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    released: Mutex<bool>,
    release: Condvar,
}

pub struct BadReceiver {
    pub port: u16,
    shared: Arc<Shared>,
}

impl BadReceiver {
    /// Starts a receiver on a free port; `decide` picks what to do with
    /// each request.
    pub fn start(decide: impl Fn(&Request) -> Act + Send + Sync + 'static) -> BadReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a port");
        let port = listener.local_addr().unwrap().port();
        let shared: Arc<Shared> = Arc::default();
        let decide: Arc<Decide> = Arc::new(decide);
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for connection in listener.incoming() {
                let Ok(connection) = connection else { continue };
                let (shared, decide) = (accepting.clone(), decide.clone());
                std::thread::spawn(move || serve(connection, &shared, &*decide));
            }
        });
        BadReceiver { port, shared }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request read so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn streams(&self) -> Vec<StreamReport> {
        self.shared.streams.lock().unwrap().clone()
    }

    /// Requests read and not yet answered (or hung up on).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests it held at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Lets every hanging and held request go (and the ones to come).
    pub fn release(&self) {
        *self.shared.released.lock().unwrap() = true;
        self.shared.release.notify_all();
    }
}

impl Drop for BadReceiver {
    fn drop(&mut self) {
        self.release();
    }
}

/// A port with nothing listening on it (bound, then let go).
pub fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn serve(mut connection: TcpStream, shared: &Shared, decide: &Decide) {
    let Some(request) = read_request(&mut connection) else {
        return;
    };
    let act = decide(&request);
    let object_id = request.object_id();
    shared.requests.lock().unwrap().push(request);
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    // The request counts as held until just before the first byte of its
    // answer (or the hang-up): the client cannot see the answer earlier, so
    // the count never exceeds what the client has in flight.
    let answering = || shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    match act {
        Act::Answer {
            status,
            headers,
            body,
        } => {
            answering();
            let _ = connection.write_all(&head(status, &headers, body.len()));
            let _ = connection.write_all(&body);
        }
        Act::Stream { status, len } => {
            answering();
            let report = stream(&mut connection, status, len, object_id);
            shared.streams.lock().unwrap().push(report);
        }
        Act::Delay { delay, status } => {
            std::thread::sleep(delay);
            answering();
            let _ = connection.write_all(&head(status, &[], 0));
        }
        Act::Hang => {
            wait_for_release(shared);
            answering();
        }
        Act::HoldThen(status) => {
            wait_for_release(shared);
            answering();
            let _ = connection.write_all(&head(status, &[], 0));
        }
        Act::Close => {
            answering();
        }
        Act::Raw(bytes) => {
            answering();
            let _ = connection.write_all(&bytes);
        }
    }
    let _ = connection.flush();
    let _ = connection.shutdown(Shutdown::Both);
}

fn wait_for_release(shared: &Shared) {
    let released = shared.released.lock().unwrap();
    let _ = shared
        .release
        .wait_timeout_while(released, LONGEST_HOLD, |released| !*released)
        .unwrap();
}

fn stream(connection: &mut TcpStream, status: u16, len: usize, object_id: String) -> StreamReport {
    let mut report = StreamReport {
        object_id,
        written: 0,
        len,
        broken: false,
        stalled: false,
    };
    let _ = connection.set_write_timeout(Some(LONGEST_HOLD));
    if connection.write_all(&head(status, &[], len)).is_err() {
        report.broken = true;
        return report;
    }
    let piece = vec![b'x'; STREAM_PIECE];
    while report.written < len {
        let n = STREAM_PIECE.min(len - report.written);
        match connection.write(&piece[..n]) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                report.stalled = true;
                break;
            }
            Ok(0) | Err(_) => {
                report.broken = true;
                break;
            }
            Ok(written) => report.written += written,
        }
    }
    report
}

fn head(status: u16, headers: &[(String, String)], len: usize) -> Vec<u8> {
    let mut text =
        format!("HTTP/1.1 {status} Whatever\r\nContent-Length: {len}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

fn read_request(connection: &mut TcpStream) -> Option<Request> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match connection.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    let arrived = Instant::now();
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let method = start.next()?.to_string();
    let target = start.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    connection.read_exact(&mut body).ok()?;
    Some(Request {
        target,
        method,
        headers,
        body,
        arrived,
    })
}
