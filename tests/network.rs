//! Chat across a real network boundary: the server in one network namespace, the clients in
//! another, joined by a veth pair, the server certificate carrying the veth address.
//!
//! Needs root (or CAP_NET_ADMIN) and iproute2; where the environment does not allow network
//! namespaces the test says it was skipped, by name. Addresses come from 198.18.0.0/15, the
//! block set aside for benchmarking network devices, and exist only inside the namespaces this
//! test makes and removes; nothing here connects from the test's own namespace.

use std::net::SocketAddr;
use std::process::Command;

use tlschat_tests::{binary, run, skip, text, Background, Pki, ServerProcess};

const SERVER_IP: &str = "198.18.0.1";
const CLIENT_IP: &str = "198.18.0.2";

/// Two namespaces joined by a veth pair; removed on drop.
struct Namespaces {
    server: String,
    client: String,
}

impl Namespaces {
    fn create() -> Result<Self, String> {
        let id = std::process::id();
        let ns = Self {
            server: format!("tlschat-s{id}"),
            client: format!("tlschat-c{id}"),
        };
        let (veth_s, veth_c) = (format!("tcs{id}"), format!("tcc{id}"));
        ip(&["netns", "add", &ns.server])?;
        ip(&["netns", "add", &ns.client])?;
        ip(&[
            "link", "add", &veth_s, "type", "veth", "peer", "name", &veth_c,
        ])?;
        ip(&["link", "set", &veth_s, "netns", &ns.server])?;
        ip(&["link", "set", &veth_c, "netns", &ns.client])?;
        for (space, dev, addr) in [
            (&ns.server, &veth_s, SERVER_IP),
            (&ns.client, &veth_c, CLIENT_IP),
        ] {
            ip(&[
                "-n",
                space,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ])?;
            ip(&["-n", space, "link", "set", dev, "up"])?;
            ip(&["-n", space, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the pair.
        let _ = ip(&["netns", "del", &self.server]);
        let _ = ip(&["netns", "del", &self.client]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            text(&output.stderr).trim()
        ))
    }
}

fn in_client_namespace(ns: &Namespaces, pki: &Pki, server: SocketAddr, user: &str) -> Command {
    let (cert, key) = pki.identity(user);
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &ns.client])
        .arg(binary("tlschat"))
        .args(["--server", &server.to_string(), "--ca"])
        .arg(pki.ca())
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key);
    command
}

#[test]
fn users_chat_across_a_network_namespace_boundary() {
    const NAME: &str = "users_chat_across_a_network_namespace_boundary";
    let ns = match Namespaces::create() {
        Ok(ns) => ns,
        Err(reason) => {
            skip(
                NAME,
                &format!("network namespaces are not available here ({reason})"),
            );
            return;
        }
    };
    let pki = Pki::with_args(&["--ip", SERVER_IP, "--client", "alice", "--client", "bob"]);
    let mut args = pki.server_args();
    args.extend([
        "--listen".to_owned(),
        format!("{SERVER_IP}:6254"),
        "--client-auth".to_owned(),
        "required".to_owned(),
    ]);
    let server = ServerProcess::start_wrapped(&["ip", "netns", "exec", &ns.server], &args)
        .expect("server starts in its namespace");
    let addr = server.addr();
    assert_eq!(addr.to_string(), format!("{SERVER_IP}:6254"));

    let listener = Background::start(
        in_client_namespace(&ns, &pki, addr, "alice")
            .args(["listen", "--room", "#lan", "--count", "1"]),
    );
    listener.wait_for_stderr("listening");
    let out = run(
        in_client_namespace(&ns, &pki, addr, "bob").args(["send", "#lan", "hello across the wire"]),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (status, stdout) = listener.finish();
    assert!(status.success(), "{status:?}");
    assert!(
        stdout
            .trim_end()
            .ends_with(" #lan bob: hello across the wire"),
        "{stdout}"
    );

    // The server saw the other namespace's address.
    server.wait_for_log(&format!("peer={CLIENT_IP}:"));
}
