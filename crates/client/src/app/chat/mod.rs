//! `tlschat` / `tlschat chat`: the interactive chat client.
//!
//! - [`input`]: what a typed line means (`/join`, plain text to the current room…).
//! - [`state`]: rooms, current room and requests awaiting replies.
//! - [`render`]: how events look on screen.
//! - [`terminal`]: the line editor thread and the printer.
//!
//! A lost connection is reported and, unless `--no-reconnect`, retried with exponential backoff
//! (0.5 s doubling to 30 s, with jitter); once back, the client restores its nickname and rooms
//! and says so. It does not reconnect after being kicked or replaced by a newer connection.
//!
//! Direct messages follow [`crate::e2e`]: sealed end to end when the recipient has a key, and
//! received E2E messages are verified and opened before they are shown (or shown as failed).

pub(super) mod input;
pub(crate) mod render;
mod state;
mod terminal;

use std::time::Duration;

use tlschat_proto::{Event, Reply, Request, ServerLine};

use self::input::Input;
use self::state::ChatState;
use self::terminal::{Terminal, Typed};
use super::reconnect::{jitter, next_backoff, FIRST_BACKOFF};
use super::{connection_failed, error_text, EXIT_CONNECTION, EXIT_OK};
use crate::client::Client;
use crate::config::ClientConfig;
use crate::e2e::{devices_report, fingerprint_report, trust_report, E2e, Outgoing, Received};
use crate::error::ClientError;
use crate::resync::Resync;
use crate::text::sanitize;

/// How long `/quit` waits for the server's goodbye.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Chat options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChatOptions {
    /// Reconnect after a lost connection.
    pub(crate) reconnect: bool,
}

enum SessionEnd {
    /// The user left.
    Quit,
    /// The connection failed; `final_` when the server said not to come back.
    Lost { reason: String, final_: bool },
}

pub(super) async fn run(config: &ClientConfig, options: ChatOptions) -> u8 {
    let mut e2e = match super::open_e2e(config) {
        Ok(e2e) => e2e,
        Err(code) => return code,
    };
    let mut client = match Client::connect(config).await {
        Ok(client) => client,
        Err(err) => return connection_failed(err),
    };
    let verified = config.cert.is_some();
    let mut state = ChatState::new(config.certificate_name());
    state.whoami = super::whoami(config, e2e.as_ref());
    let mut term = Terminal::start(prompt(&state));
    for line in connected_lines(&client) {
        term.print(line);
    }
    match &e2e {
        Some(e2e) => {
            if e2e.key_was_created() {
                term.print("-- created your E2E key");
            }
            term.print(format!(
                "-- E2E: direct messages to users with a key are end-to-end encrypted; your key {}",
                e2e.own_fingerprint()
            ));
        }
        None => term.print("-- no client certificate: direct messages go in clear (no E2E)"),
    }
    if let Err(reason) = publish(&mut client, &mut term, e2e.as_ref()).await {
        term.finish_with(format!("!! connection lost: {reason}"));
        return EXIT_CONNECTION;
    }
    if let Some(warning) = config.certificate_expiry_warning(chrono::Utc::now().timestamp()) {
        term.print(format!("!! {warning}"));
    }
    term.print("-- /join #room to start, /help for commands");
    loop {
        match session(&mut client, &mut term, &mut state, &mut e2e).await {
            SessionEnd::Quit => {
                let _ =
                    tokio::time::timeout(QUIT_TIMEOUT, leave(client, &mut term, &mut state)).await;
                return EXIT_OK;
            }
            SessionEnd::Lost { reason, final_ } => {
                let lost = format!("!! connection lost: {reason}");
                if final_ || !options.reconnect {
                    term.finish_with(lost);
                    return EXIT_CONNECTION;
                }
                term.print(lost);
                let Some(new_client) = reconnect(config, &mut term, &state).await else {
                    return EXIT_OK;
                };
                client = new_client;
                if publish(&mut client, &mut term, e2e.as_ref()).await.is_ok() {
                    restore(&mut client, &mut term, &mut state, verified).await;
                }
            }
        }
    }
}

/// Publishes our E2E key, if we have one; a refusal is shown, a failure returned.
async fn publish(
    client: &mut Client,
    term: &mut Terminal,
    e2e: Option<&E2e>,
) -> Result<(), String> {
    let Some(e2e) = e2e else { return Ok(()) };
    match e2e.publish(client).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(refusal)) => {
            term.print(format!(
                "!! your E2E key was not published: {}",
                sanitize(&refusal)
            ));
            Ok(())
        }
        Err(err) => Err(error_text(&err)),
    }
}

/// Serves one connection until the user leaves or the connection fails.
async fn session(
    client: &mut Client,
    term: &mut Terminal,
    state: &mut ChatState,
    e2e: &mut Option<E2e>,
) -> SessionEnd {
    let mut final_ = false;
    loop {
        tokio::select! {
            typed = term.next() => {
                let Typed::Line(line) = typed else { return SessionEnd::Quit };
                let result = handle_line(&line, client, term, state, e2e).await;
                match result {
                    Ok(true) => return SessionEnd::Quit,
                    Ok(false) => term.resume(prompt(state)),
                    Err(reason) => {
                        term.resume(prompt(state));
                        return SessionEnd::Lost { reason, final_ };
                    }
                }
            }
            line = client.next_line() => match line {
                Ok(ServerLine::Reply(reply)) => {
                    if let Some(text) = state.on_reply(&reply) {
                        term.print(text);
                    }
                }
                // A reconnect may bring a message again: shown once.
                Ok(ServerLine::Event(event)) if !state.resync.admit(&event, state.me.as_deref()) => {}
                // Held back while we fell behind: fetch it.
                Ok(ServerLine::Event(Event::Gap { target, first, last })) => {
                    term.print(format!(
                        "-- fetching {} missed message(s) of {} from history",
                        last - first + 1,
                        sanitize(&target)
                    ));
                    for request in Resync::fill(&target, first, last) {
                        if let Err(err) = client.send(&request.to_string()).await {
                            return SessionEnd::Lost { reason: error_text(&err), final_ };
                        }
                        state.sent(Some(request));
                    }
                }
                Ok(ServerLine::Event(Event::CaughtUp { count })) => {
                    term.print(format!("-- ^ while you were away: the {count} message(s) above"));
                }
                Ok(ServerLine::Event(Event::E2e { from, to, trust, time, sealed, .. })) => {
                    let received = match e2e.as_mut() {
                        Some(e2e) => match e2e.receive(client, &from, &to, trust, &sealed).await {
                            Ok(received) => received,
                            Err(err) => return SessionEnd::Lost { reason: error_text(&err), final_ },
                        },
                        None => Received::Refused("you have no client certificate, so no E2E key".into()),
                    };
                    let mine = state.is_me(&from);
                    term.print(render::sealed(&from, mine.then_some(to.as_str()), &time, &received));
                }
                Ok(ServerLine::Event(event)) => {
                    if let Event::Disconnect { code, .. } = &event {
                        final_ |= code.is_final();
                    }
                    term.print(state.on_event(&event));
                }
                Ok(ServerLine::Hello(_)) => {}
                Err(err) => return SessionEnd::Lost { reason: error_text(&err), final_ },
            }
        }
    }
}

/// Acts on one typed line. `Ok(true)` means leave; `Err` means the connection failed.
async fn handle_line(
    line: &str,
    client: &mut Client,
    term: &mut Terminal,
    state: &mut ChatState,
    e2e: &mut Option<E2e>,
) -> Result<bool, String> {
    let failed = |e: ClientError| error_text(&e);
    match input::parse(line, state.current.as_deref()) {
        Input::Direct { nick, text, plain } => {
            let outgoing = crate::e2e::outgoing(client, e2e.as_mut(), &nick, &text, plain).await;
            match outgoing.map_err(failed)? {
                Outgoing::Send {
                    request,
                    e2e: sealed,
                    notice,
                } => {
                    if let Some(notice) = notice {
                        term.print(format!("-- {notice}"));
                    }
                    client.send(&request.to_string()).await.map_err(failed)?;
                    if sealed {
                        state.sent_sealed(&nick, &text);
                    } else {
                        state.sent(Some(request));
                    }
                }
                Outgoing::Refused(why) => term.print(format!("!! {why}")),
            }
        }
        Input::Fingerprint(who) => {
            let report = fingerprint_report(e2e.as_mut(), client, who.as_deref()).await;
            term.print(report_line(report.map_err(failed)?));
        }
        Input::Trust(nick) => {
            let report = trust_report(e2e.as_mut(), client, &nick).await;
            term.print(report_line(report.map_err(failed)?));
        }
        Input::Devices(remove) => {
            let report = devices_report(e2e.as_mut(), client, remove.as_deref()).await;
            term.print(report_line(report.map_err(failed)?));
        }
        // The reply is awaited, so the next prompt shows the room only if it was joined.
        // Then the room's last messages, from the server's history.
        Input::Send(request @ Request::Join(_)) => {
            let reply = client.request(&request).await.map_err(failed)?;
            if let Some(text) = state.on_answered(request, &reply) {
                term.print(text);
            }
            if let Reply::Ok(room) = &reply {
                if let Some(recent) = state.resync.older(room, input::HISTORY_PAGE) {
                    client.send(&recent.to_string()).await.map_err(failed)?;
                    state.sent(Some(recent));
                }
            }
        }
        Input::History { target, count } => {
            let target = target.or_else(|| state.current.clone());
            match target.and_then(|t| state.resync.older(&t, count)) {
                Some(request) => {
                    client.send(&request.to_string()).await.map_err(failed)?;
                    state.sent(Some(request));
                }
                None => term.print("!! /history needs a room: /join one, or name it".to_owned()),
            }
        }
        Input::Send(request) => {
            client
                .send(&request.to_string())
                .await
                .map_err(|e| error_text(&e))?;
            state.sent(Some(request));
        }
        Input::Raw(raw) => {
            client.send(&raw).await.map_err(|e| error_text(&e))?;
            state.sent(None);
        }
        Input::Switch(room) => term.print(state.switch(&room).unwrap_or_else(|e| e)),
        Input::Whoami => {
            for line in &state.whoami {
                term.print(format!("-- {}", sanitize(line)));
            }
            // And every device of ours with a published key.
            if e2e.is_some() {
                let report = devices_report(e2e.as_mut(), client, None).await;
                if let Ok(list) = report.map_err(failed)? {
                    term.print("-- your devices:".to_owned());
                    for line in list.lines() {
                        term.print(format!("--   {}", sanitize(line)));
                    }
                }
            }
        }
        Input::Help => {
            for (usage, what) in input::HELP {
                term.print(format!("   {usage:<28} {what}"));
            }
        }
        Input::Quit => return Ok(true),
        Input::Nothing => {}
        Input::Invalid(message) => term.print(format!("!! {message}")),
    }
    Ok(false)
}

/// The answer to `/fingerprint`, `/trust` or `/devices` as a screen line.
fn report_line(report: Result<String, String>) -> String {
    let (mark, text) = match report {
        Ok(text) => ("--", text),
        Err(why) => ("!!", why),
    };
    text.lines()
        .map(|line| format!("{mark} {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Says `QUIT` and shows the replies still owed (piped input gets all its answers), up to the
/// server's goodbye.
async fn leave(mut client: Client, term: &mut Terminal, state: &mut ChatState) {
    if client.send(&Request::Quit.to_string()).await.is_err() {
        return;
    }
    state.sent(Some(Request::Quit));
    while state.pending() > 0 {
        match client.next_line().await {
            Ok(ServerLine::Reply(reply)) => {
                if let Some(text) = state.on_reply(&reply) {
                    term.print(text);
                }
            }
            Ok(ServerLine::Event(event)) => term.print(state.on_event(&event)),
            Ok(ServerLine::Hello(_)) => {}
            Err(_) => return,
        }
    }
    let _ = client.close().await;
}

/// Reconnects with backoff; `None` when the user quits meanwhile.
async fn reconnect(
    config: &ClientConfig,
    term: &mut Terminal,
    state: &ChatState,
) -> Option<Client> {
    let mut wait = FIRST_BACKOFF;
    for attempt in 1.. {
        let delay = jitter(wait);
        term.print(format!(
            "-- reconnecting in {:.1}s (attempt {attempt})",
            delay.as_secs_f64()
        ));
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                typed = term.next() => match typed {
                    Typed::End => return None,
                    Typed::Line(line) if matches!(input::parse(&line, None), Input::Quit) => return None,
                    Typed::Line(_) => {
                        term.print("!! not connected; reconnecting (type /quit to leave)");
                        term.resume(prompt(state));
                    }
                },
            }
        }
        match Client::connect(config).await {
            Ok(client) => return Some(client),
            Err(err) => term.print(format!("!! reconnect failed: {}", error_text(&err))),
        }
        wait = next_backoff(wait);
    }
    None
}

/// After reconnecting: says what was lost, then restores the nickname and the rooms.
async fn restore(client: &mut Client, term: &mut Terminal, state: &mut ChatState, verified: bool) {
    let lost = state.forget_pending();
    if lost > 0 {
        term.print(format!(
            "!! {lost} request(s) got no reply before the connection was lost; they may not have reached the server"
        ));
    }
    let requests = state.restore_requests(verified);
    let rooms: Vec<String> = state.joined.iter().cloned().collect();
    state.joined.clear();
    for request in requests {
        if client.send(&request.to_string()).await.is_err() {
            break;
        }
        state.sent(Some(request));
    }
    term.print(match rooms.is_empty() {
        true => "-- reconnected".to_owned(),
        false => format!("-- reconnected; rejoining {}", rooms.join(", ")),
    });
}

fn prompt(state: &ChatState) -> String {
    match &state.current {
        Some(room) => format!("{room}> "),
        None => "> ".to_owned(),
    }
}

fn connected_lines(client: &Client) -> [String; 2] {
    let info = client.tls_info();
    let show = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    [
        format!(
            "-- connected to {} ({})",
            client.server(),
            sanitize(&client.greeting().server)
        ),
        format!(
            "-- {}, {}, key exchange {}",
            show(info.version.map(|v| format!("{v:?}"))),
            show(info.cipher_suite.map(|c| format!("{c:?}"))),
            show(info.key_exchange.map(|g| format!("{g:?}"))),
        ),
    ]
}
