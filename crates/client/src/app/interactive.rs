//! `tlschat chat` (the default): a prompt that sends lines and prints what the server sends.

use std::io::{IsTerminal, Write};

use tlschat_proto::{Request, ServerLine};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{connection_failed, EXIT_CONNECTION, EXIT_OK};
use crate::client::Client;
use crate::config::ClientConfig;
use crate::error::ClientError;

pub(super) async fn run(config: &ClientConfig) -> u8 {
    let mut client = match Client::connect(config).await {
        Ok(client) => client,
        Err(err) => return connection_failed(err),
    };
    let info = client.tls_info();
    eprintln!(
        "connected to {} ({:?}, {:?}, key exchange {:?})",
        config.server,
        info.version.unwrap_or(rustls::ProtocolVersion::Unknown(0)),
        info.cipher_suite.unwrap_or(rustls::CipherSuite::Unknown(0)),
        info.key_exchange.unwrap_or(rustls::NamedGroup::Unknown(0)),
    );
    println!("{}", client.greeting());
    let prompt = std::io::stdin().is_terminal();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // Once quitting, the session ends when every request sent has its reply (the last one being
    // QUIT's), so piped input gets all its answers.
    let mut quitting = false;
    let mut pending = 0usize;
    show_prompt(prompt);
    loop {
        tokio::select! {
            line = lines.next_line(), if !quitting => match line {
                Ok(Some(line)) => {
                    let parsed = Request::parse(&line);
                    if parsed == Ok(None) {
                        show_prompt(prompt);
                        continue;
                    }
                    quitting |= matches!(parsed, Ok(Some(Request::Quit)));
                    pending += 1;
                    if let Err(err) = client.send(&line).await {
                        return connection_failed(err);
                    }
                }
                // End of input: leave politely and wait for the goodbye.
                Ok(None) | Err(_) => {
                    quitting = true;
                    pending += 1;
                    if let Err(err) = client.send(&Request::Quit.to_string()).await {
                        return connection_failed(err);
                    }
                }
            },
            server = client.next_line() => match server {
                Ok(line) => {
                    print_line(&line);
                    if let ServerLine::Reply(_) = line {
                        pending = pending.saturating_sub(1);
                        if quitting && pending == 0 {
                            return EXIT_OK;
                        }
                    }
                    show_prompt(prompt && !quitting);
                }
                Err(ClientError::Closed { .. }) if quitting => return EXIT_OK,
                Err(err) => {
                    eprintln!("tlschat: connection lost");
                    let _ = connection_failed(err);
                    return EXIT_CONNECTION;
                }
            },
        }
    }
}

fn print_line(line: &ServerLine) {
    match line {
        ServerLine::Hello(greeting) => println!("{greeting}"),
        ServerLine::Reply(reply) => println!("{reply}"),
        ServerLine::Event(event) => println!("{event}"),
    }
}

fn show_prompt(enabled: bool) {
    if enabled {
        print!("> ");
        let _ = std::io::stdout().flush();
    }
}
