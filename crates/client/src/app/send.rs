//! `tlschat send TARGET text`: one message, like `mosquitto_pub` or `nats pub`.

use tlschat_proto::{ErrorCode, Reply, Request, Target};

use super::{connect_as, connection_failed, expect_ok, EXIT_ERR_REPLY, EXIT_OK};
use crate::config::ClientConfig;

pub(super) async fn run(config: &ClientConfig, nick: Option<&str>, target: &str, text: &str) -> u8 {
    let target = match Target::parse(target) {
        Ok(target) => target,
        Err(err) => {
            eprintln!("tlschat: error: {err}");
            return EXIT_ERR_REPLY;
        }
    };
    let mut client = match connect_as(config, nick).await {
        Ok(client) => client,
        Err(code) => return code,
    };
    if let Target::Room(room) = &target {
        match client.request(&Request::Join(room.clone())).await {
            Ok(Reply::Ok(_)) => {}
            Ok(Reply::Err(err)) if err.code == ErrorCode::AlreadyInRoom => {}
            Ok(Reply::Err(err)) => {
                eprintln!("{err}");
                return EXIT_ERR_REPLY;
            }
            Err(err) => return connection_failed(err),
        }
    }
    let request = Request::Msg {
        target,
        text: text.to_owned(),
    };
    if request.to_string().contains('\n') || Request::parse(&request.to_string()).is_err() {
        eprintln!("tlschat: error: the message cannot hold newlines or control characters");
        return EXIT_ERR_REPLY;
    }
    let code = match expect_ok(&mut client, &request).await {
        Ok(_) => EXIT_OK,
        Err(code) => code,
    };
    let _ = client.quit().await;
    code
}
