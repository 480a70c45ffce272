//! `tlschat tui`: the full-screen terminal client (ratatui + crossterm).
//!
//! - [`state`]: everything on screen as plain data, changed by plain functions (a key, a
//!   reply, an event), testable without a terminal.
//! - [`view`]: draws the state; nothing else.
//! - [`editor`]: the input line, edited by grapheme cluster.
//!
//! This module runs the loop: terminal events come from a thread (crossterm's blocking
//! reader) over a bounded channel; server lines from [`Client::next_line`]. A lost connection
//! shows a banner while the client reconnects with backoff, publishes its E2E key again and
//! rejoins its rooms. The terminal is restored on every exit: normal, error, Ctrl-C and panic.

mod editor;
mod state;
mod view;

use std::io::{self, Stdout};
use std::time::Duration;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    self, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as TermEvent,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;
use tlschat_proto::{Event, Request, ServerLine};
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::state::{Kind, Link, Security, TuiState};
use self::view::Theme;
use super::chat::input::Input;
use super::reconnect::{jitter, next_backoff, FIRST_BACKOFF};
use super::{connection_failed, error_text, EXIT_CONNECTION, EXIT_OK};
use crate::client::{Client, TlsInfo};
use crate::config::ClientConfig;
use crate::e2e::{devices_report, fingerprint_report, trust_report, E2e, Outgoing, Received};
use crate::error::ClientError;
use crate::resync::Resync;
use crate::text::sanitize;

/// Terminal events that may wait to be handled; the reader thread blocks beyond this.
const INPUT_QUEUE: usize = 256;

/// Longest wait for the server's goodbye after `/quit`.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// TUI options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TuiOptions {
    /// Reconnect after a lost connection.
    pub(crate) reconnect: bool,
}

pub(super) async fn run(config: &ClientConfig, options: TuiOptions) -> u8 {
    let e2e = match super::open_e2e(config) {
        Ok(e2e) => e2e,
        Err(code) => return code,
    };
    // Connect before taking over the screen, so a wrong address or CA is a plain error.
    let client = match Client::connect(config).await {
        Ok(client) => client,
        Err(err) => return connection_failed(err),
    };
    let verified = config.cert.is_some();
    let mut security = security(&client.tls_info());
    security.own_expiry = config.certificate_expiry().and_then(day);
    let mut state = TuiState::new(config.certificate_name(), verified, security);
    state.whoami = super::whoami(config, e2e.as_ref());
    let mut screen = match Screen::enter() {
        Ok(screen) => screen,
        Err(err) => {
            eprintln!("tlschat: error: cannot use the terminal: {err}");
            return EXIT_CONNECTION;
        }
    };
    let theme = Theme::new(std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()));
    let mut keys = spawn_reader();
    match &e2e {
        Some(e2e) => state.notice(
            Kind::Notice,
            format!(
                "E2E: direct messages to users with a key are sealed end to end; your key {}",
                e2e.own_fingerprint()
            ),
        ),
        None => state.notice(
            Kind::Notice,
            "no client certificate: direct messages go in clear (no E2E)",
        ),
    }
    if let Some(warning) = config.certificate_expiry_warning(chrono::Utc::now().timestamp()) {
        state.notice(Kind::Error, warning);
    }
    state.notice(
        Kind::Notice,
        "/join #room to start; ? for keys, /help for commands",
    );
    let mut app = App {
        config,
        options,
        state,
        e2e,
        client: Some(client),
        retry_at: None,
        backoff: FIRST_BACKOFF,
        attempt: 0,
    };
    app.after_connect().await;
    let code = app.run(&mut screen, &mut keys, theme).await;
    drop(screen);
    code
}

/// The running client: the state, the connection (when there is one), and reconnection.
struct App<'a> {
    config: &'a ClientConfig,
    options: TuiOptions,
    state: TuiState,
    e2e: Option<E2e>,
    client: Option<Client>,
    /// When to try reconnecting next.
    retry_at: Option<Instant>,
    backoff: Duration,
    attempt: u32,
}

impl App<'_> {
    async fn run(
        &mut self,
        screen: &mut Screen,
        keys: &mut mpsc::Receiver<TermEvent>,
        theme: Theme,
    ) -> u8 {
        loop {
            if screen.draw(&self.state, theme).is_err() {
                return EXIT_CONNECTION;
            }
            let retry_at = self.retry_at;
            tokio::select! {
                key = keys.recv() => match key {
                    Some(TermEvent::Key(key)) => {
                        if let Some(input) = self.state.on_key(key) {
                            if matches!(input, Input::Quit) {
                                self.leave().await;
                                return EXIT_OK;
                            }
                            self.act(input).await;
                        }
                    }
                    Some(TermEvent::Mouse(mouse)) => self.state.on_mouse(mouse),
                    Some(TermEvent::Paste(text)) => self.state.on_paste(&text),
                    Some(TermEvent::Resize(..)) => screen.clear(),
                    Some(_) => {}
                    None => {
                        self.leave().await;
                        return EXIT_OK;
                    }
                },
                line = next_line(self.client.as_mut()) => self.on_line(line).await,
                () = sleep_until(retry_at) => self.reconnect().await,
                // SIGINT from outside the terminal (in raw mode Ctrl-C is a key).
                _ = tokio::signal::ctrl_c() => {
                    self.leave().await;
                    return EXIT_OK;
                }
            }
        }
    }

    /// Does what a typed line asked for.
    async fn act(&mut self, input: Input) {
        let Some(client) = self.client.as_mut() else {
            self.state
                .notice(Kind::Error, "not connected; reconnecting (/quit to leave)");
            return;
        };
        let result = match input {
            Input::Send(request) => {
                let sent = client.send(&request.to_string()).await;
                self.state.sent(&request);
                sent
            }
            Input::Raw(line) => client.send(&line).await,
            Input::Direct { nick, text, plain } => {
                direct(
                    client,
                    self.e2e.as_mut(),
                    &mut self.state,
                    &nick,
                    &text,
                    plain,
                )
                .await
            }
            Input::Fingerprint(who) => {
                let report = fingerprint_report(self.e2e.as_mut(), client, who.as_deref()).await;
                report.map(|report| self.state.report(report))
            }
            Input::Trust(nick) => {
                let report = trust_report(self.e2e.as_mut(), client, &nick).await;
                report.map(|report| self.state.report(report))
            }
            Input::Devices(remove) => {
                let report = devices_report(self.e2e.as_mut(), client, remove.as_deref()).await;
                report.map(|report| self.state.report(report))
            }
            Input::Whoami if self.e2e.is_some() => {
                let report = devices_report(self.e2e.as_mut(), client, None).await;
                report.map(|report| {
                    self.state
                        .report(report.map(|list| format!("your devices:\n{list}")))
                })
            }
            _ => Ok(()),
        };
        self.take_alert();
        if let Err(err) = result {
            self.lost(error_text(&err), false);
        }
    }

    async fn on_line(&mut self, line: Result<ServerLine, ClientError>) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        match line {
            Ok(ServerLine::Reply(reply)) => {
                for follow_up in self.state.on_reply(&reply) {
                    if client.send(&follow_up.to_string()).await.is_err() {
                        break;
                    }
                    self.state.sent(&follow_up);
                }
            }
            // A reconnect may bring a message again: shown once.
            Ok(ServerLine::Event(event))
                if !self.state.resync.admit(&event, self.state.me.as_deref()) => {}
            // Held back while we fell behind: fetch it.
            Ok(ServerLine::Event(Event::Gap {
                target,
                first,
                last,
            })) => {
                self.state.notice(
                    Kind::Notice,
                    format!(
                        "fetching {} missed message(s) of {} from history",
                        last - first + 1,
                        sanitize(&target)
                    ),
                );
                for request in Resync::fill(&target, first, last) {
                    if client.send(&request.to_string()).await.is_err() {
                        break;
                    }
                    self.state.sent(&request);
                }
            }
            Ok(ServerLine::Event(Event::CaughtUp { count })) => {
                self.state.notice(
                    Kind::Notice,
                    format!("── while you were away: the {count} message(s) above ──"),
                );
            }
            Ok(ServerLine::Event(Event::E2e {
                from,
                to,
                trust,
                sealed,
                ..
            })) => {
                let received = match self.e2e.as_mut() {
                    Some(e2e) => match e2e.receive(client, &from, &to, trust, &sealed).await {
                        Ok(received) => received,
                        Err(err) => return self.lost(error_text(&err), false),
                    },
                    None => {
                        Received::Refused("you have no client certificate, so no E2E key".into())
                    }
                };
                self.state.on_sealed(&from, &to, &received);
                self.take_alert();
            }
            Ok(ServerLine::Event(event)) => {
                self.state.on_event(&event);
                if let Event::Disconnect { code, reason } = &event {
                    if code.is_final() {
                        self.lost(format!("{code}: {reason}"), true);
                    }
                }
            }
            Ok(ServerLine::Hello(_)) => {}
            Err(err) => self.lost(error_text(&err), false),
        }
    }

    /// A key change found by the E2E layer becomes a warning to acknowledge.
    fn take_alert(&mut self) {
        if let Some(alert) = self.e2e.as_mut().and_then(E2e::take_alert) {
            self.state.warning = Some(alert);
        }
    }

    /// The connection is gone: show why and plan a reconnect unless it was final.
    fn lost(&mut self, reason: String, final_: bool) {
        self.client = None;
        let unanswered = self.state.forget_pending();
        if unanswered > 0 {
            self.state.notice(
                Kind::Error,
                format!("{unanswered} request(s) got no reply before the connection was lost"),
            );
        }
        if final_ || !self.options.reconnect {
            self.state.link = Link::Down(reason);
            self.retry_at = None;
            return;
        }
        self.attempt = 1;
        self.backoff = FIRST_BACKOFF;
        self.state.link = Link::Reconnecting { reason, attempt: 1 };
        self.retry_at = Some(Instant::now() + jitter(self.backoff));
    }

    async fn reconnect(&mut self) {
        match Client::connect(self.config).await {
            Ok(client) => {
                self.client = Some(client);
                self.retry_at = None;
                self.state.link = Link::Up;
                self.after_connect().await;
                let rooms = self.state.rooms();
                self.state.notice(
                    Kind::Notice,
                    match rooms.is_empty() {
                        true => "reconnected".to_owned(),
                        false => format!("reconnected; rejoining {}", rooms.join(", ")),
                    },
                );
                let nick = self.state.me.clone().filter(|_| !self.state.verified);
                let requests = nick
                    .map(Request::Nick)
                    .into_iter()
                    .chain(rooms.into_iter().map(Request::Join));
                for request in requests {
                    self.act(Input::Send(request)).await;
                }
            }
            Err(err) => {
                self.attempt += 1;
                self.backoff = next_backoff(self.backoff);
                if let Link::Reconnecting { reason, .. } = &self.state.link {
                    let reason = format!("{reason}; last try: {}", error_text(&err));
                    self.state.link = Link::Reconnecting {
                        reason,
                        attempt: self.attempt,
                    };
                }
                self.retry_at = Some(Instant::now() + jitter(self.backoff));
            }
        }
    }

    /// Publishes our E2E key on a fresh connection.
    async fn after_connect(&mut self) {
        let (Some(client), Some(e2e)) = (self.client.as_mut(), self.e2e.as_ref()) else {
            return;
        };
        match e2e.publish(client).await {
            Ok(Ok(())) => {}
            Ok(Err(refusal)) => self.state.notice(
                Kind::Error,
                format!("your E2E key was not published: {refusal}"),
            ),
            Err(err) => self.lost(error_text(&err), false),
        }
    }

    /// `/quit`: says goodbye (bounded) and closes.
    async fn leave(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(QUIT_TIMEOUT, client.quit()).await;
        }
    }
}

/// A direct message by the E2E rules; refusals are shown, never sent.
async fn direct(
    client: &mut Client,
    e2e: Option<&mut E2e>,
    state: &mut TuiState,
    nick: &str,
    text: &str,
    plain: bool,
) -> Result<(), ClientError> {
    let outgoing = crate::e2e::outgoing(client, e2e, nick, text, plain).await?;
    match outgoing {
        Outgoing::Send {
            request,
            e2e: sealed,
            notice,
        } => {
            if let Some(notice) = notice {
                state.notice(Kind::Notice, notice);
            }
            client.send(&request.to_string()).await?;
            if sealed {
                state.sent_sealed(nick, text);
            } else {
                state.sent(&request);
            }
        }
        Outgoing::Refused(why) => state.notice(Kind::Error, why),
    }
    Ok(())
}

/// The next server line, or never when disconnected.
async fn next_line(client: Option<&mut Client>) -> Result<ServerLine, ClientError> {
    match client {
        Some(client) => client.next_line().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The status bar's security facts.
fn security(info: &TlsInfo) -> Security {
    let show = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    let cert = info.server_cert.as_deref();
    let fingerprint = cert.map(|der| {
        let hex = tlschat_proto::hex::encode(&tlschat_tls::certificate_fingerprint(der));
        format!("{}…{}", &hex[..8], &hex[hex.len() - 8..])
    });
    let expiry = cert
        .and_then(|der| tlschat_proto::cert::summarize_der(der).ok())
        .and_then(|summary| day(summary.not_after));
    Security {
        version: show(info.version.map(|v| format!("{v:?}"))),
        cipher: show(info.cipher_suite.map(|c| format!("{c:?}"))),
        group: show(info.key_exchange.map(|g| format!("{g:?}"))),
        server_fingerprint: show(fingerprint),
        server_expiry: show(expiry),
        own_expiry: None,
    }
}

/// A time (seconds since 1970) as the day it falls on, `YYYY-MM-DD` (UTC).
fn day(at: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(at, 0).map(|time| time.format("%Y-%m-%d").to_string())
}

/// Reads terminal events on a thread of its own (crossterm's reader blocks) into a bounded
/// channel; the thread ends when the receiver is dropped.
fn spawn_reader() -> mpsc::Receiver<TermEvent> {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    std::thread::spawn(move || loop {
        match event::poll(Duration::from_millis(200)) {
            Ok(true) => match event::read() {
                Ok(event) => {
                    if tx.blocking_send(event).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            Ok(false) if tx.is_closed() => return,
            Ok(false) => {}
            Err(_) => return,
        }
    });
    rx
}

/// The terminal in raw mode on the alternate screen, with mouse reporting; restored when
/// dropped, and by the panic hook if the process panics.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> io::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        enable_raw_mode()?;
        if let Err(err) = execute!(
            io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste
        ) {
            restore();
            return Err(err);
        }
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        Ok(Self { terminal })
    }

    fn draw(&mut self, state: &TuiState, theme: Theme) -> io::Result<()> {
        self.terminal
            .draw(|frame| view::draw(frame, state, theme))
            .map(|_| ())
    }

    /// Forgets what is on screen, so the next draw repaints all of it (after a resize).
    fn clear(&mut self) {
        let _ = self.terminal.autoresize();
        let _ = self.terminal.clear();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
        let _ = self.terminal.show_cursor();
    }
}

/// Leaves raw mode, the alternate screen and mouse reporting. Safe to call twice.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen
    );
}
