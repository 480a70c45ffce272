//! `tlschat fingerprint [NICK]`, `tlschat trust NICK` and `tlschat devices [remove NAME]`:
//! the E2E key checks of the chat client (`/fingerprint`, `/trust`, `/devices`), for scripts
//! and for users of `send` and `listen`.

use super::{connect_as, connection_failed, open_e2e, EXIT_ERR_REPLY, EXIT_OK};
use crate::client::Client;
use crate::config::ClientConfig;
use crate::e2e::{devices_report, fingerprint_report, trust_report, E2e, NO_CERTIFICATE};
use crate::error::ClientError;

/// Prints our fingerprint, or NICK's as offered now.
pub(super) async fn fingerprint(config: &ClientConfig, nick: Option<&str>) -> u8 {
    let e2e = match needs_key(config) {
        Ok(e2e) => e2e,
        Err(code) => return code,
    };
    if nick.is_none() {
        println!("{}", e2e.own_fingerprint());
        return EXIT_OK;
    }
    report_from_server(config, e2e, async |e2e, client| {
        fingerprint_report(Some(e2e), client, nick).await
    })
    .await
}

/// Remembers NICK's current key in place of the one remembered.
pub(super) async fn trust(config: &ClientConfig, nick: &str) -> u8 {
    let e2e = match needs_key(config) {
        Ok(e2e) => e2e,
        Err(code) => return code,
    };
    report_from_server(config, e2e, async |e2e, client| {
        trust_report(Some(e2e), client, nick).await
    })
    .await
}

/// Lists our devices, or withdraws one.
pub(super) async fn devices(config: &ClientConfig, remove: Option<&str>) -> u8 {
    let e2e = match needs_key(config) {
        Ok(e2e) => e2e,
        Err(code) => return code,
    };
    report_from_server(config, e2e, async |e2e, client| {
        // Ours is published first, so the list holds this device.
        if let Err(refusal) = e2e.publish(client).await? {
            return Ok(Err(format!("your E2E key was not published: {refusal}")));
        }
        devices_report(Some(e2e), client, remove).await
    })
    .await
}

/// Connects, prints the report `make` draws from the server, and says goodbye.
async fn report_from_server(
    config: &ClientConfig,
    mut e2e: E2e,
    make: impl AsyncFnOnce(&mut E2e, &mut Client) -> Result<Result<String, String>, ClientError>,
) -> u8 {
    let mut client = match connect_as(config, None).await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let code = match make(&mut e2e, &mut client).await {
        Ok(report) => print_report(report),
        Err(err) => return connection_failed(err),
    };
    let _ = client.quit().await;
    code
}

/// A report on standard output (exit 0), or a refusal on standard error (exit 1).
fn print_report(report: Result<String, String>) -> u8 {
    match report {
        Ok(text) => {
            println!("{text}");
            EXIT_OK
        }
        Err(why) => {
            eprintln!("tlschat: error: {why}");
            EXIT_ERR_REPLY
        }
    }
}

/// The user's E2E state, which these commands cannot do without.
fn needs_key(config: &ClientConfig) -> Result<E2e, u8> {
    open_e2e(config)?.ok_or_else(|| {
        eprintln!("tlschat: error: {NO_CERTIFICATE}");
        EXIT_ERR_REPLY
    })
}
