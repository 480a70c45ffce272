//! `tlschat-floor`: the least a tokio + rustls server can do for `tlschat-bench`'s `echo` and
//! `connect` modes (send a greeting, answer `PING` with `OK PONG`), with tlschat-server's TLS
//! setup: aws-lc-rs, TLS 1.3, post-quantum hybrid key exchange, client certificates verified
//! against the CA, one session ticket. No chat, no limits, no timeouts, no logging.
//!
//! It is a yardstick, not a server: `scripts/bench-peers.sh` runs it next to tlschat-server, so
//! the table shows what this stack costs at the least, and what tlschat-server adds on top.
//!
//!     tlschat-floor --cert server.pem --key server-key.pem --ca ca.pem [--listen 127.0.0.1:0]

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::BytesMut;
use clap::Parser;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The floor server for benchmarks.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Server certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Server key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// CA that client certificates must chain to (optional client auth, as tlschat-server).
    #[arg(long)]
    ca: PathBuf,
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let provider = tlschat_tls::provider();
    let roots = Arc::new(tlschat_tls::load_roots(&cli.ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(tlschat_tls::versions(false))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            tlschat_tls::load_certs(&cli.cert, "certificate")?,
            tlschat_tls::load_key(&cli.key)?,
        )?;
    tls.alpn_protocols = vec![tlschat_tls::ALPN.to_vec()];
    tls.send_tls13_tickets = 1;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "tlschat-floor listening on {}",
        listener.local_addr()?
    )?;
    stdout.flush()?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(mut stream) = acceptor.accept(tcp).await else {
                return;
            };
            if stream
                .write_all(b"HELLO tlschat/1 floor ready\n")
                .await
                .is_err()
            {
                return;
            }
            let mut inbuf = BytesMut::with_capacity(16 * 1024);
            let mut out = Vec::new();
            loop {
                match stream.read_buf(&mut inbuf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while let Some(end) = inbuf.iter().position(|&b| b == b'\n') {
                    let line = inbuf.split_to(end + 1);
                    out.extend_from_slice(match line.trim_ascii() {
                        b"PING" => b"OK PONG\n".as_slice(),
                        b"QUIT" => b"OK BYE\n",
                        _ => b"ERR UNKNOWN_VERB the floor server knows PING only\n",
                    });
                }
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
        });
    }
}
