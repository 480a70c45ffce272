//! `tlschat send TARGET text`: one message, like `mosquitto_pub` or `nats pub`.
//!
//! A direct message is sealed end to end when the recipient has published an E2E key
//! (see [`crate::e2e`]), unless `--plain` asks for clear text.

use tlschat_proto::{ErrorCode, Reply, Request, Target};

use super::{connect_with_e2e, connection_failed, expect_ok, EXIT_ERR_REPLY, EXIT_OK};
use crate::config::ClientConfig;
use crate::e2e::{self, Outgoing};

pub(super) async fn run(
    config: &ClientConfig,
    nick: Option<&str>,
    plain: bool,
    target: &str,
    text: &str,
) -> u8 {
    let target = match Target::parse(target) {
        Ok(target) => target,
        Err(err) => {
            eprintln!("tlschat: error: {err}");
            return EXIT_ERR_REPLY;
        }
    };
    let check = Request::Msg {
        target: target.clone(),
        text: text.to_owned(),
    };
    if Request::parse(&check.to_string()).is_err() {
        eprintln!("tlschat: error: the message cannot hold newlines or control characters");
        return EXIT_ERR_REPLY;
    }
    // The key is published first, so the recipient can verify the message after we leave.
    let (mut client, mut e2e) = match connect_with_e2e(config, nick).await {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let outgoing = match &target {
        Target::Room(room) => {
            match client.request(&Request::Join(room.clone())).await {
                Ok(Reply::Ok(_)) => {}
                Ok(Reply::Err(err)) if err.code == ErrorCode::AlreadyInRoom => {}
                Ok(Reply::Err(err)) => {
                    eprintln!("{err}");
                    return EXIT_ERR_REPLY;
                }
                Err(err) => return connection_failed(err),
            }
            Ok(Outgoing::Send {
                request: check,
                e2e: false,
                notice: None,
            })
        }
        Target::User(nick) => e2e::outgoing(&mut client, e2e.as_mut(), nick, text, plain).await,
    };
    let code = match outgoing {
        Ok(Outgoing::Send {
            request, notice, ..
        }) => {
            if let Some(notice) = notice {
                eprintln!("tlschat: {notice}");
            }
            match expect_ok(&mut client, &request).await {
                Ok(_) => EXIT_OK,
                Err(code) => code,
            }
        }
        Ok(Outgoing::Refused(why)) => {
            eprintln!("tlschat: error: {why}");
            EXIT_ERR_REPLY
        }
        Err(err) => return connection_failed(err),
    };
    let _ = client.quit().await;
    code
}
