//! Harness for the end-to-end tests: real binaries, real certificates, real TLS on loopback.
//!
//! - [`binary`] builds the workspace binaries once per test process (with the same cargo that
//!   runs the tests) and returns their paths, so tests never run stale binaries.
//! - [`Pki`] makes a CA and certificates in a temporary folder with `tlschat-certgen`.
//! - [`ServerProcess`] starts `tlschat-server` on `127.0.0.1:0` and waits for its readiness line;
//!   it is killed when dropped, and its log is kept for assertions.
//! - [`tlschat`] runs the `tlschat` client binary; [`RawTls`] speaks raw bytes over TLS for
//!   what the typed client refuses to send.
//!
//! - [`tmux::Tmux`] drives interactive programs through a real terminal.
//! - [`relay::Relay`] is a man-in-the-middle standing in for a compromised server.
//! - [`nats::Nats`] is a real nats-server with JetStream, for the cluster tests.
//!
//! Every wait here is bounded: a hung binary fails the test instead of hanging it.

#![forbid(unsafe_code)]

pub mod nats;
pub mod relay;
pub mod tmux;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tlschat_client::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How long any single step (a start, a request, an exit) may take before a test fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// The path of a workspace binary, built (once per process) if needed.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // This test runs from <target>/<profile>/deps/; the binaries live in <target>/<profile>.
        let exe = std::env::current_exe().expect("path of the test binary");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary inside target/<profile>/deps")
            .to_owned();
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "--workspace", "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // The same profile and target as this test binary: `debug` is the dev profile, any
        // other folder name is its profile's; a `<triple>/` above it means --target.
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                build.args(["--profile", profile]);
            }
        }
        let triple = profile_dir
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .filter(|n| n.matches('-').count() >= 2 && n.is_ascii());
        if let Some(triple) = triple {
            build.args(["--target", triple]);
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "cargo build --bins failed");
        profile_dir
    });
    let path = dir.join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Certificates made by `tlschat-certgen` in a temporary folder.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate, users `alice`, `bob` and `carol`, and admin `root`.
    pub fn standard() -> Self {
        Self::with_args(&[
            "--client", "alice", "--client", "bob", "--client", "carol", "--admin", "root",
        ])
    }

    /// Runs `tlschat-certgen` with these extra arguments.
    pub fn with_args(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let output = run(
            Command::new(binary("tlschat-certgen"))
                .arg("--out")
                .arg(dir.path())
                .args(args),
            b"",
        );
        assert!(
            output.status.success(),
            "certgen failed: {}",
            text(&output.stderr)
        );
        Self { dir }
    }

    /// The folder holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The device name in `user`'s E2E key file (made by the client on first use).
    pub fn device(&self, user: &str) -> String {
        let text = std::fs::read_to_string(self.path(&format!("{user}-e2e-key")))
            .unwrap_or_else(|e| panic!("{user}'s E2E key file: {e}"));
        text.lines()
            .find_map(|l| l.strip_prefix("device "))
            .unwrap_or_else(|| panic!("no device line in {user}'s E2E key file"))
            .trim()
            .to_owned()
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The certificate and key of a user.
    pub fn identity(&self, user: &str) -> (PathBuf, PathBuf) {
        (
            self.path(&format!("{user}.pem")),
            self.path(&format!("{user}-key.pem")),
        )
    }

    /// Server flags for this PKI's certificate, key and CA.
    pub fn server_args(&self) -> Vec<String> {
        [
            "--cert",
            "server.pem",
            "--key",
            "server-key.pem",
            "--ca",
            "ca.pem",
        ]
        .chunks(2)
        .flat_map(|pair| [pair[0].to_owned(), self.path(pair[1]).display().to_string()])
        .collect()
    }

    /// A client library configuration for `server`, as `user` (or anonymous).
    pub fn client_config(&self, server: SocketAddr, user: Option<&str>) -> ClientConfig {
        let config = ClientConfig::new(server.to_string(), self.ca());
        match user {
            Some(user) => {
                let (cert, key) = self.identity(user);
                config.with_identity(cert, key)
            }
            None => config,
        }
    }
}

/// A running `tlschat-server`, killed on drop.
pub struct ServerProcess {
    child: Child,
    /// The server's working folder: its default store (`data/tlschat.redb`) lands here.
    home: tempfile::TempDir,
    addr: SocketAddr,
    udp_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
}

/// A server that did not start: its exit status and everything it wrote to standard error.
#[derive(Debug)]
pub struct StartFailure {
    /// The exit status, if it exited.
    pub status: Option<ExitStatus>,
    /// Its standard error.
    pub stderr: String,
}

impl ServerProcess {
    /// Starts a server with the PKI's certificates on an OS-chosen loopback port.
    pub fn start(pki: &Pki, extra: &[&str]) -> Self {
        let mut args = pki.server_args();
        args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_with(&args)
            .unwrap_or_else(|failure| panic!("server did not start: {failure:?}"))
    }

    /// Starts a server with exactly these arguments; waits for the readiness line.
    pub fn start_with(args: &[String]) -> Result<Self, StartFailure> {
        Self::start_wrapped(&[], args)
    }

    /// Like [`start`](Self::start), logging everything (`RUST_LOG=trace`): each request line,
    /// and rustls's handshake details.
    pub fn start_traced(pki: &Pki, extra: &[&str]) -> Self {
        let mut args = pki.server_args();
        args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::launch(&[], &args, "trace")
            .unwrap_or_else(|failure| panic!("server did not start: {failure:?}"))
    }

    /// Like [`start_with`](Self::start_with), run through a wrapper command such as
    /// `ip netns exec NAME`.
    pub fn start_wrapped(wrapper: &[&str], args: &[String]) -> Result<Self, StartFailure> {
        Self::launch(wrapper, args, "debug")
    }

    fn launch(wrapper: &[&str], args: &[String], log_filter: &str) -> Result<Self, StartFailure> {
        let server = binary("tlschat-server");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(&server);
                command
            }
            None => Command::new(&server),
        };
        let home = tempfile::tempdir().expect("temporary folder");
        let mut child = command
            .args(args)
            .current_dir(home.path())
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning tlschat-server");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        let stderr_reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || {
            let (mut udp_addr, mut metrics_addr) = (None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("tlschat-server udp listening on ") {
                    udp_addr = addr.parse::<SocketAddr>().ok();
                }
                if let Some(addr) = line.strip_prefix("tlschat-server metrics on ") {
                    metrics_addr = addr.parse::<SocketAddr>().ok();
                }
                if let Some(addr) = line.strip_prefix("tlschat-server listening on ") {
                    let _ = ready_tx.send(
                        addr.parse::<SocketAddr>()
                            .ok()
                            .map(|a| (a, udp_addr, metrics_addr)),
                    );
                }
            }
        });
        match ready_rx.recv_timeout(STEP_TIMEOUT) {
            Ok(Some((addr, udp_addr, metrics_addr))) => Ok(Self {
                child,
                home,
                addr,
                udp_addr,
                metrics_addr,
                log,
            }),
            _ => {
                let status = wait_timeout(&mut child, Duration::from_secs(5));
                if status.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                // The process is gone, so its standard error ends: the reader has every word.
                let _ = stderr_reader.join();
                let stderr = log.lock().expect("log lock").clone();
                Err(StartFailure { status, stderr })
            }
        }
    }

    /// The server's working folder (its default store is `data/tlschat.redb` in it).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The monitoring address, when started with `--metrics`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
            .expect("the server was started with --metrics")
    }

    /// The UDP address, when started with `--udp`.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr.expect("the server was started without --udp")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, in KiB (Linux: VmRSS from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Sends a signal by name (`HUP`, `TERM`…) without waiting.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (bounded) until the server has logged a line containing `needle`. The log is read
    /// by another thread, so a line can arrive just after the reply it belongs to.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the server never logged {needle:?}; its log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        self.wait_exit()
    }

    /// Waits (bounded) for the server to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_timeout(&mut self.child, STEP_TIMEOUT).expect("server did not exit in time")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Server flags that lift the per-connection request and byte rates, for tests that flood on
/// purpose or go as fast as round trips allow.
pub const NO_RATE_LIMIT: &[&str] = &[
    "--rate",
    "1000000",
    "--rate-burst",
    "1000000",
    "--rate-bytes",
    "1000000000",
    "--rate-bytes-burst",
    "1000000000",
];

/// Where the clients under test look for a user's defaults file: nowhere, so the machine's
/// own `~/.config/tlschat/config.toml` never changes what a test does.
pub const NO_USER_CONFIG: &str = "/nonexistent/tlschat-tests/config.toml";

/// A `tlschat` command line for `server` as `user` (or anonymous), not started yet.
pub fn tlschat_command(pki: &Pki, server: impl std::fmt::Display, user: Option<&str>) -> Command {
    let mut command = Command::new(binary("tlschat"));
    command
        .env("TLSCHAT_CONFIG", NO_USER_CONFIG)
        .arg("--server")
        .arg(server.to_string())
        .arg("--ca")
        .arg(pki.ca());
    if let Some(user) = user {
        let (cert, key) = pki.identity(user);
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    command
}

/// The `tlschat` command line for `server` as `user`, for a shell (tmux runs it through one).
pub fn tlschat_shell(pki: &Pki, addr: impl std::fmt::Display, user: Option<&str>) -> String {
    let mut command = format!(
        "env TLSCHAT_CONFIG={NO_USER_CONFIG} '{}' --server {addr} --ca '{}'",
        binary("tlschat").display(),
        pki.ca().display()
    );
    if let Some(user) = user {
        let (cert, key) = pki.identity(user);
        command.push_str(&format!(
            " --cert '{}' --key '{}'",
            cert.display(),
            key.display()
        ));
    }
    command
}

/// A running background process (such as `tlschat listen`) whose standard error is watched
/// line by line; killed on drop.
pub struct Background {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
    stdout: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Background {
    /// Starts `command` with piped output.
    pub fn start(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, stderr_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdout = Some(drain(child.stdout.take().expect("piped stdout")));
        Self {
            child,
            stderr_lines,
            stdout,
        }
    }

    /// Waits (bounded) for a line on standard error that contains `needle`.
    pub fn wait_for_stderr(&self, needle: &str) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no {needle:?} on standard error; saw {seen:?}");
    }

    /// Waits (bounded) for the exit; returns the status and standard output.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let status =
            wait_timeout(&mut self.child, STEP_TIMEOUT).expect("process did not exit in time");
        let stdout = self
            .stdout
            .take()
            .expect("stdout reader")
            .join()
            .expect("stdout reader");
        (status, text(&stdout))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `tlschat` client binary against `server` as `user` (or anonymous).
pub fn tlschat(pki: &Pki, server: SocketAddr, user: Option<&str>, args: &[&str]) -> Output {
    tlschat_with_input(pki, server, user, args, b"")
}

/// Like [`tlschat`], feeding `input` on standard input.
pub fn tlschat_with_input(
    pki: &Pki,
    server: SocketAddr,
    user: Option<&str>,
    args: &[&str],
    input: &[u8],
) -> Output {
    run(tlschat_command(pki, server, user).args(args), input)
}

/// Runs a command to completion within [`STEP_TIMEOUT`], feeding `input` on standard input.
pub fn run(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let Some(status) = wait_timeout(&mut child, STEP_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} did not finish within {STEP_TIMEOUT:?}");
    };
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Polls a child for its exit until `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A plain TCP connection from `local` (port chosen by the OS) to `server`.
pub async fn tcp_from(local: std::net::IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match local {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(server).await
}

/// Reports that a test skipped itself, by name, on the real standard error (not captured by the
/// test harness), so the skip shows in CI's log. CI greps for lines starting with `SKIPPED`.
pub fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// Bytes as text, for assertions and messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A TLS connection that sends raw bytes and reads raw lines: for input the typed client will
/// not produce (invalid UTF-8, overlong lines, pipelined bursts).
pub struct RawTls {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl RawTls {
    /// Connects with the standard client TLS setup.
    pub async fn connect(config: &ClientConfig) -> std::io::Result<Self> {
        let tls = config.tls_config().map_err(std::io::Error::other)?;
        Self::connect_with(config, tls).await
    }

    /// Connects from a given local address (another loopback address, say, so per-address
    /// limits see a different client).
    pub async fn connect_from(
        config: &ClientConfig,
        local: std::net::IpAddr,
    ) -> std::io::Result<Self> {
        let tls = config.tls_config().map_err(std::io::Error::other)?;
        let name = config.verify_name().map_err(std::io::Error::other)?;
        let server: SocketAddr = config.server.parse().map_err(std::io::Error::other)?;
        let tcp = tcp_from(local, server).await?;
        let stream = tokio::time::timeout(STEP_TIMEOUT, TlsConnector::from(tls).connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::other("handshake timed out"))??;
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    /// Connects with a given rustls configuration (for example TLS 1.2 only).
    pub async fn connect_with(
        config: &ClientConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Self> {
        let name = config.verify_name().map_err(std::io::Error::other)?;
        let tcp = TcpStream::connect(&config.server).await?;
        let stream = tokio::time::timeout(STEP_TIMEOUT, TlsConnector::from(tls).connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::other("handshake timed out"))??;
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    /// Writes bytes as they are.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads one line (without its newline), or `None` at end of stream, within the step
    /// timeout.
    pub async fn read_line(&mut self) -> Option<String> {
        let read = async {
            loop {
                if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = self.buf.drain(..=end).collect();
                    return Some(text(&line[..end]));
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, read)
            .await
            .expect("no line from the server in time")
    }
}

/// `tlschat udp exec` of `request` as `user`, one retry after 300 ms: quick to give up when no
/// valid reply comes (exit 2).
pub fn udp_exec(pki: &Pki, server: SocketAddr, user: Option<&str>, request: &[&str]) -> Output {
    let mut args = vec!["udp", "exec", "--timeout", "300ms", "--retries", "1"];
    args.extend_from_slice(request);
    tlschat(pki, server, user, &args)
}

/// A client of `server` as `user` (or anonymous), connected.
pub async fn connect(pki: &Pki, server: SocketAddr, user: Option<&str>) -> tlschat_client::Client {
    tlschat_client::Client::connect(&pki.client_config(server, user))
        .await
        .expect("connect")
}

/// `MSG target text`.
pub fn msg(target: &str, text: &str) -> tlschat_proto::Request {
    tlschat_proto::Request::Msg {
        target: tlschat_proto::Target::parse(target).expect("a room or a name"),
        text: text.into(),
    }
}

/// Sends `request` and returns the reply, within the step timeout.
pub async fn call(
    client: &mut tlschat_client::Client,
    request: &tlschat_proto::Request,
) -> tlschat_proto::Reply {
    tokio::time::timeout(STEP_TIMEOUT, client.request(request))
        .await
        .expect("reply in time")
        .expect("reply")
}

/// Sends `request`, which must succeed: its `OK` payload.
pub async fn ok(client: &mut tlschat_client::Client, request: tlschat_proto::Request) -> String {
    match call(client, &request).await {
        tlschat_proto::Reply::Ok(payload) => payload,
        tlschat_proto::Reply::Err(err) => panic!("{request} failed: {err}"),
    }
}

/// Sends `request`, which must be refused: the error code.
pub async fn refused(
    client: &mut tlschat_client::Client,
    request: tlschat_proto::Request,
) -> tlschat_proto::ErrorCode {
    match call(client, &request).await {
        tlschat_proto::Reply::Err(err) => err.code,
        tlschat_proto::Reply::Ok(payload) => panic!("{request} should fail, got OK {payload}"),
    }
}

/// `GET path` on the monitoring endpoint: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, b)| b.to_owned());
    (status, body)
}
