//! `tlschat udp exec`: one signed request over UDP.

use super::exec::print_reply;
use super::{error_text, EXIT_CONNECTION};
use crate::config::ClientConfig;
use crate::udp::{UdpClient, UdpOptions};

pub(super) async fn exec(config: &ClientConfig, options: UdpOptions, line: &str) -> u8 {
    let result = match UdpClient::connect(config, options).await {
        Ok(mut client) => client.request(line).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(reply) => print_reply(&reply),
        Err(err) => {
            eprintln!("tlschat: error: {}", error_text(&err));
            EXIT_CONNECTION
        }
    }
}
