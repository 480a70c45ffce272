//! Client errors.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tlschat_proto::reply::MalformedLine;

/// Every way connecting or talking to a server can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A certificate or key file could not be loaded.
    #[error("cannot load {what} from {}: {reason}{}", .path.display(), missing_file_hint(path, what))]
    Pem {
        /// What was expected.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No server to connect to was given.
    #[error("no server to connect to")]
    NoServer,
    /// `--cert` was given without `--key`, or the other way round, or they do not fit.
    #[error("invalid client certificate setup: {0}")]
    ClientCert(String),
    /// The CA file holds a certificate rustls will not trust.
    #[error("cannot use the CA certificate in {}", .path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The name to verify the server against is not a valid DNS name or IP address.
    #[error("invalid server name {0:?} (use --server-name to set the name in the certificate)")]
    ServerName(String),
    /// The server address could not be resolved or connected to.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Connecting plus the TLS handshake took too long.
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout {
        /// The address.
        addr: String,
        /// The timeout.
        after: Duration,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name, version refused…).
    #[error("TLS handshake with {addr} failed")]
    Handshake {
        /// The address.
        addr: String,
        /// The cause, from rustls.
        #[source]
        source: io::Error,
    },
    /// The handshake failed for a reason a person can act on, said in words.
    #[error("TLS handshake with {addr} failed: {explanation}")]
    TlsRefused {
        /// The address.
        addr: String,
        /// What happened, and what to do.
        explanation: String,
    },
    /// The server closed the connection before the handshake finished.
    #[error(
        "the server at {addr} closed the connection before the TLS handshake finished: it \
         refuses an address past its limits (too many connections or handshakes from it at \
         once), or it is not a TLS server; try again shortly"
    )]
    HandshakeClosed {
        /// The address.
        addr: String,
    },
    /// The server did not send a tlschat greeting.
    #[error("not a tlschat server: first line was {0:?}")]
    NoGreeting(String),
    /// The server closed the connection.
    #[error("the server closed the connection{}", .last_event.as_deref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Closed {
        /// The last event seen before the close, such as a shutdown notice.
        last_event: Option<String>,
    },
    /// The server sent a line that is not valid protocol.
    #[error(transparent)]
    Malformed(#[from] MalformedLine),
    /// The server sent a line longer than the client accepts, or not UTF-8.
    #[error("the server sent an invalid line ({0})")]
    BadLine(&'static str),
    /// Reading or writing failed.
    #[error("connection failed")]
    Io(#[from] io::Error),
}

/// For a file that is not there: which flag names it, and where to set it once.
fn missing_file_hint(path: &std::path::Path, what: &str) -> String {
    if path.exists() {
        return String::new();
    }
    let (flag, key) = match what {
        "CA certificate" => ("--ca FILE", "ca"),
        "private key" => ("--key FILE", "key"),
        _ => ("--cert FILE", "cert"),
    };
    let relative = if path.is_relative() {
        " (a relative path, read from the current folder)"
    } else {
        ""
    };
    format!(
        "{relative}; pass {flag}, or set {key} = \"/path/to/file\" in {}",
        crate::user_defaults::UserDefaults::path_hint()
    )
}
