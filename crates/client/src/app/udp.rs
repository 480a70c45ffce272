//! `tlschat udp exec`: one signed request over UDP.

use tlschat_proto::Reply;

use super::{error_text, EXIT_CONNECTION, EXIT_ERR_REPLY, EXIT_OK};
use crate::config::ClientConfig;
use crate::udp::{UdpClient, UdpOptions};

pub(super) async fn exec(config: &ClientConfig, options: UdpOptions, line: &str) -> u8 {
    let result = match UdpClient::connect(config, options).await {
        Ok(mut client) => client.request(line).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(Reply::Ok(payload)) => {
            println!("{payload}");
            EXIT_OK
        }
        Ok(Reply::Err(err)) => {
            eprintln!("{err}");
            EXIT_ERR_REPLY
        }
        Err(err) => {
            eprintln!("tlschat: error: {}", error_text(&err));
            EXIT_CONNECTION
        }
    }
}
