//! `tlschat exec`: one request, one reply, an exit code.

use tlschat_proto::Reply;

use super::{connection_failed, EXIT_ERR_REPLY, EXIT_OK};
use crate::client::Client;
use crate::config::ClientConfig;

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
    match reply {
        Reply::Ok(payload) => {
            println!("{payload}");
            EXIT_OK
        }
        Reply::Err(err) => {
            eprintln!("{err}");
            EXIT_ERR_REPLY
        }
    }
}
