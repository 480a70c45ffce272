//! `tlschat fingerprint [NICK]` and `tlschat trust NICK`: the E2E key checks of the chat
//! client (`/fingerprint`, `/trust`), for scripts and for users of `send` and `listen`.

use super::{connect_as, connection_failed, open_e2e, EXIT_ERR_REPLY, EXIT_OK};
use crate::config::ClientConfig;
use crate::e2e::E2e;

/// Prints our fingerprint, or NICK's as offered now.
pub(super) async fn fingerprint(config: &ClientConfig, nick: Option<&str>) -> u8 {
    let mut e2e = match needs_key(config) {
        Ok(e2e) => e2e,
        Err(code) => return code,
    };
    let Some(nick) = nick else {
        println!("{}", e2e.own_fingerprint());
        return EXIT_OK;
    };
    let mut client = match connect_as(config, None).await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let code = match e2e.describe(&mut client, nick).await {
        Ok(line) => {
            println!("{line}");
            EXIT_OK
        }
        Err(err) => return connection_failed(err),
    };
    let _ = client.quit().await;
    code
}

/// Remembers NICK's current key in place of the one remembered.
pub(super) async fn trust(config: &ClientConfig, nick: &str) -> u8 {
    let mut e2e = match needs_key(config) {
        Ok(e2e) => e2e,
        Err(code) => return code,
    };
    let mut client = match connect_as(config, None).await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let code = match e2e.trust(&mut client, nick).await {
        Ok(Ok(done)) => {
            println!("{done}");
            EXIT_OK
        }
        Ok(Err(why)) => {
            eprintln!("tlschat: error: {why}");
            EXIT_ERR_REPLY
        }
        Err(err) => return connection_failed(err),
    };
    let _ = client.quit().await;
    code
}

/// The user's E2E state, which these commands cannot do without.
fn needs_key(config: &ClientConfig) -> Result<E2e, u8> {
    match open_e2e(config)? {
        Some(e2e) => Ok(e2e),
        None => {
            eprintln!("tlschat: error: E2E keys need a client certificate (--cert, --key)");
            Err(EXIT_ERR_REPLY)
        }
    }
}
