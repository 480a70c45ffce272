//! Server addresses as people write them: `chat.lan`, `chat.lan:7000`, `192.0.2.1`,
//! `[2001:db8::1]:7000` or a bare `2001:db8::1`. The port defaults to [`DEFAULT_PORT`]. Only
//! parsing: resolving a host name is for whoever opens the socket.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The port tlschat uses unless told otherwise.
pub const DEFAULT_PORT: u16 = 6254;

/// A host (name or address) and a port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// A DNS name or an IP address, without brackets.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// Why text is not a host and port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {0:?}: write host, host:port, an IP address, or [IPv6]:port")]
pub struct AddrError(pub String);

impl FromStr for HostPort {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || AddrError(text.to_owned());
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, DEFAULT_PORT).into());
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
            None => (text, DEFAULT_PORT),
        };
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|label| !label.is_empty() && label.len() <= 63)
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !name_ok {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl HostPort {
    /// The address itself, when the host is an IP address (no lookup needed).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.socket_addr() {
            Some(addr) => addr.fmt(f),
            None => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> String {
        text.parse::<HostPort>().unwrap().to_string()
    }

    #[test]
    fn the_port_defaults_and_every_written_form_is_read() {
        assert_eq!(parse("127.0.0.1"), "127.0.0.1:6254");
        assert_eq!(parse("127.0.0.1:7000"), "127.0.0.1:7000");
        assert_eq!(parse("localhost"), "localhost:6254");
        assert_eq!(parse("Chat.LAN:7000"), "chat.lan:7000");
        assert_eq!(parse("::1"), "[::1]:6254");
        assert_eq!(parse("[::1]:7000"), "[::1]:7000");
        assert_eq!(parse("[::1]"), "[::1]:6254");
        assert_eq!(parse("0.0.0.0:0"), "0.0.0.0:0");
        for bad in [
            "",
            "host:",
            "host:99999",
            "bad host",
            "a..b",
            ":7000",
            "[::1",
        ] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad}");
        }
    }
}
