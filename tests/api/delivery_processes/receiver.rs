//! The application's side of a destination, for tests with real processes:
//! a minimal HTTP/1.1 server (request head and `Content-Length` body,
//! keep-alive) that records every request it takes and, per object
//! (`data.object_id` of the envelope), how many are in flight at once. Two
//! at once is recorded as a violation — never a panic inside the server,
//! which would only drop a connection and look like a network error to the
//! relay. Each request is held for a delay the test chooses from its
//! envelope, and while the receiver is on hold, until the test releases it.
//!
//! Times are a sequence number of the receiver's own (one tick per request
//! taken or ended), so "B started after A ended" is exact rather than a
//! comparison of clock readings. A request whose sender dies while it is
//! held ends when its connection closes: that attempt is no longer in
//! flight anywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The answer to every request that is answered.
const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";

/// One request as the receiver took it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub webhook_id: String,
    pub attempt: String,
    /// The `X-Relay` header: which process sent it.
    pub relay: String,
    pub object: Option<String>,
    pub ledger_id: i64,
    pub provider_event_id: String,
    pub replay: i64,
    /// Tick at which it was read whole.
    pub started: u64,
    /// Tick at which it was answered, or its connection closed unanswered.
    pub ended: Option<u64>,
}

#[derive(Default)]
struct Log {
    tick: u64,
    seen: Vec<Seen>,
    in_flight: HashMap<String, usize>,
    violations: Vec<String>,
    open_connections: usize,
}

type Delay = dyn Fn(&Value) -> Duration + Send + Sync;

struct Shared {
    log: Mutex<Log>,
    /// `true` while requests are held until released.
    hold: watch::Sender<bool>,
    delay: Box<Delay>,
}

/// A running receiver; it serves until the test's runtime ends.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts a receiver that holds each request for `delay(envelope)`.
    pub async fn start(delay: impl Fn(&Value) -> Duration + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            log: Mutex::new(Log::default()),
            hold: watch::channel(false).0,
            delay: Box::new(delay),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, serving.clone()));
            }
        });
        Receiver { url, shared }
    }

    /// From now on, requests wait (after their delay) until [`Self::release`].
    pub fn hold(&self) {
        self.shared.hold.send_replace(true);
    }

    /// Answers every held request, and every later one after its delay.
    pub fn release(&self) {
        self.shared.hold.send_replace(false);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log().seen.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.log().violations.clone()
    }

    /// Requests taken and neither answered nor abandoned yet.
    pub fn in_flight(&self) -> usize {
        self.log().in_flight.values().sum()
    }

    pub fn open_connections(&self) -> usize {
        self.log().open_connections
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.shared.log.lock().unwrap()
    }
}

/// Counts a connection as open for as long as it lives.
struct Open<'a>(&'a Shared);

impl<'a> Open<'a> {
    fn new(shared: &'a Shared) -> Open<'a> {
        shared.log.lock().unwrap().open_connections += 1;
        Open(shared)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.log.lock().unwrap().open_connections -= 1;
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _open = Open::new(&shared);
    let mut stream = BufReader::new(stream);
    while let Some((headers, body)) = read_request(&mut stream).await {
        let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let index = begin(&shared, &headers, &envelope);
        let delay = (shared.delay)(&envelope);
        let mut hold = shared.hold.subscribe();
        let answerable = async {
            tokio::time::sleep(delay).await;
            let _ = hold.wait_for(|held| !*held).await;
        };
        let closed = tokio::select! {
            () = answerable => false,
            () = peer_closed(&mut stream) => true,
        };
        end(&shared, index);
        if closed || stream.get_mut().write_all(NO_CONTENT).await.is_err() {
            return;
        }
    }
}

/// Resolves when the peer closes the connection (or it fails). A client
/// that sent more while waiting for its answer does not pipeline here: the
/// future then never resolves and the answer is sent as usual.
async fn peer_closed(stream: &mut BufReader<TcpStream>) {
    match stream.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Reads one request: its lower-cased headers and its body. `None` at the
/// end of the connection or on anything this reader does not handle.
async fn read_request(
    stream: &mut BufReader<TcpStream>,
) -> Option<(HashMap<String, String>, Vec<u8>)> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut headers = HashMap::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((headers, body))
}

fn begin(shared: &Shared, headers: &HashMap<String, String>, envelope: &Value) -> usize {
    let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
    let data = &envelope["data"];
    let object = data["object_id"].as_str().map(str::to_string);
    let mut log = shared.log.lock().unwrap();
    let webhook_id = header("webhook-id");
    if !data.is_object() {
        log.violations
            .push(format!("{webhook_id}: the body is not an envelope"));
    }
    if let Some(object) = &object {
        let n = log.in_flight.entry(object.clone()).or_default();
        *n += 1;
        if *n > 1 {
            let message = format!("{webhook_id}: {n} requests in flight at once for {object}");
            log.violations.push(message);
        }
    }
    log.tick += 1;
    let started = log.tick;
    log.seen.push(Seen {
        webhook_id,
        attempt: header("hookledger-attempt"),
        relay: header("x-relay"),
        object,
        ledger_id: data["ledger_id"].as_i64().unwrap_or(-1),
        provider_event_id: data["provider_event_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        replay: data["replay"].as_i64().unwrap_or(-1),
        started,
        ended: None,
    });
    log.seen.len() - 1
}

fn end(shared: &Shared, index: usize) {
    let mut log = shared.log.lock().unwrap();
    log.tick += 1;
    let tick = log.tick;
    let seen = &mut log.seen[index];
    seen.ended = Some(tick);
    if let Some(object) = seen.object.clone() {
        if let Some(n) = log.in_flight.get_mut(&object) {
            *n -= 1;
        }
    }
}
