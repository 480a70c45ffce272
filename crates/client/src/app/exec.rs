//! `tlschat exec`: one request, one reply, an exit code.

use tlschat_proto::Reply;

use super::{connection_failed, EXIT_ERR_REPLY, EXIT_OK};
use crate::client::Client;
use crate::config::ClientConfig;
use crate::text::sanitize_whole;

pub(super) async fn run(config: &ClientConfig, line: &str) -> u8 {
    let mut client = match Client::connect(config).await {
        Ok(client) => client,
        Err(err) => return connection_failed(err),
    };
    let reply = match client.request_line(line).await {
        Ok(reply) => reply,
        Err(err) => return connection_failed(err),
    };
    // The reply is what matters; a failed close after it changes nothing for the caller.
    let _ = client.close().await;
    print_reply(&reply)
}

/// Prints a one-shot command's reply, made safe for a terminal (the server is not trusted with
/// escape sequences): the payload on stdout (exit 0), or the error on stderr (exit 1).
pub(super) fn print_reply(reply: &Reply) -> u8 {
    match reply {
        Reply::Ok(payload) => {
            println!("{}", sanitize_whole(payload));
            EXIT_OK
        }
        Reply::Err(err) => {
            eprintln!("{}", sanitize_whole(&err.to_string()));
            EXIT_ERR_REPLY
        }
    }
}
