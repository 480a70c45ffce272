//! A real `nats-server` with JetStream for the cluster tests: on a loopback port it picks (or
//! a given one, to come back on after a stop), storing in a folder the test owns. Tests are
//! skipped, and say so, where nats-server is not installed; CI installs Debian's package.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use crate::STEP_TIMEOUT;

/// A running nats-server, killed on drop.
pub struct Nats {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    /// The folder, when it is the server's own (removed with it).
    _own: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl Nats {
    /// Starts one with JetStream storing in `dir`, on a free loopback port; `None` (with a
    /// `SKIPPED` line naming `test`) when nats-server is not installed.
    pub fn start(test: &str, dir: &Path) -> Option<Self> {
        Self::launch(test, dir, None)
    }

    /// Like [`start`](Self::start), storing in a temporary folder of its own.
    pub fn start_temp(test: &str) -> Option<Self> {
        let dir = std::sync::Arc::new(tempfile::tempdir().expect("temporary folder"));
        let mut nats = Self::launch(test, dir.path(), None)?;
        nats._own = Some(dir);
        Some(nats)
    }

    fn launch(test: &str, dir: &Path, port: Option<u16>) -> Option<Self> {
        let port = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let spawned = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                crate::skip(test, "nats-server is not installed");
                return None;
            }
            Err(err) => panic!("starting nats-server: {err}"),
        };
        let stderr = child.stderr.take().expect("piped");
        let (lines, seen) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        // Its log says where it listens, then that it is ready.
        let deadline = Instant::now() + STEP_TIMEOUT;
        let (mut addr, mut log) = (None, Vec::new());
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = seen.recv_timeout(left) else {
                break;
            };
            if let Some(at) = line.split("Listening for client connections on ").nth(1) {
                addr = at.trim().parse().ok();
            }
            let ready = line.contains("Server is ready");
            log.push(line);
            if ready {
                break;
            }
        }
        let addr = addr.unwrap_or_else(|| panic!("nats-server did not start: {log:?}"));
        Some(Self {
            child,
            addr,
            dir: dir.to_owned(),
            _own: None,
        })
    }

    /// Its URL, for `--cluster`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Stops it at once (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it cleanly (SIGTERM, as a service manager does for a restart or an upgrade).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if crate::wait_timeout(&mut self.child, STEP_TIMEOUT).is_none() {
            self.kill();
        }
    }

    /// Starts it again on the same port and folder, after [`kill`](Self::kill) or
    /// [`stop`](Self::stop).
    pub fn restart(&mut self) {
        let mut again = Self::launch("restart", &self.dir, Some(self.addr.port()))
            .expect("nats-server was there a moment ago");
        again._own = self._own.take();
        *self = again;
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
