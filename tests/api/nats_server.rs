//! A real `nats-server -js` per test (Debian package `nats-server`): on a
//! free port of its own, with its own store directory, started only when
//! the test says so (so a test can first see NATS down), killed and
//! restarted at will, and killed when dropped. Without the binary a test is
//! skipped with a printed reason — unless `CI` is set, where that panics:
//! `.ci/run` installs the package, so CI never skips these tests.

#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

/// How long a server may take to accept its first client.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// How clients authenticate to the server.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    UserPassword(String, String),
    Token(String),
}

pub struct NatsServer {
    binary: PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
    /// The JetStream store; replaceable to restart with an empty one.
    store: PathBuf,
    auth: Auth,
    child: Option<Child>,
}

/// `nats-server` on `PATH` or where the Debian package puts it.
fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl NatsServer {
    /// A server not yet started; `None` (printed) when there is no
    /// nats-server outside CI.
    pub fn prepare(test: &str, auth: Auth) -> Option<NatsServer> {
        let Some(binary) = find_binary() else {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: nats-server is not installed; .ci/run installs it (apt-get install nats-server)");
            }
            eprintln!("skipped: {test}: nats-server not found (apt-get install nats-server)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store");
        Some(NatsServer {
            binary,
            port: free_port(),
            dir,
            store,
            auth,
            child: None,
        })
    }

    /// A running server without authentication, or `None` as [`prepare`].
    pub async fn started(test: &str) -> Option<NatsServer> {
        let mut server = NatsServer::prepare(test, Auth::None)?;
        server.start().await;
        Some(server)
    }

    /// `nats://127.0.0.1:<port>`, without credentials.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it greets a client with INFO.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = self.log_path();
        let mut command = Command::new(&self.binary);
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js"])
            .arg("-sd")
            .arg(&self.store)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match &self.auth {
            Auth::None => {}
            Auth::UserPassword(user, password) => {
                command.args(["--user", user, "--pass", password]);
            }
            Auth::Token(token) => {
                command.args(["--auth", token]);
            }
        }
        let child = command.spawn().expect("spawn nats-server");
        self.child = Some(child);
        let port = self.port;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "nats-server exited with {status} before accepting:\n{}",
                    self.log()
                );
            }
            if greets(port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not accept on port {port} within {START_DEADLINE:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and wait until the process is gone (its port is then free).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Points the next start at an empty store: every stream is gone.
    pub fn wipe_store(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.store = self.dir.path().join(format!("store-{}", free_port()));
    }

    /// A client of the test's own, authenticated as the server requires.
    pub async fn client(&self) -> async_nats::Client {
        let options = match &self.auth {
            Auth::None => async_nats::ConnectOptions::new(),
            Auth::UserPassword(user, password) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Auth::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
        };
        options
            .connect(self.url())
            .await
            .expect("test client connects")
    }

    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client().await)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a NATS server on `port` sends its INFO line to a new client.
fn greets(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut first = [0u8; 4];
    stream.read_exact(&mut first).is_ok() && &first == b"INFO"
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|e| format!("(no log: {e})"))
}
