//! Everything the terminal UI shows, as plain data, and the functions that change it: a key, a
//! reply, an event. No I/O and no terminal here; [`super::view`] draws this state and
//! [`super`] runs the loop, so every behaviour can be tested without a terminal.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Local};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};
use tlschat_proto::names::name_key;
use tlschat_proto::{Event, Reply, Request, Target, Trust};

use super::editor::Editor;
use crate::app::chat::input::{self, Input};
use crate::e2e::Received;
use crate::resync::Resync;
use crate::text::sanitize;

/// Lines kept per buffer; older ones scroll away for good.
pub(crate) const MAX_LINES: usize = 2_000;

/// Lines PageUp and PageDown scroll.
const PAGE: isize = 10;

/// Lines one mouse wheel step scrolls.
const WHEEL: isize = 3;

/// A place messages are shown: the server's own notices, a room, or a conversation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum BufferId {
    /// Replies, notices and errors not tied to a room.
    Server,
    /// A room, by canonical name.
    Room(String),
    /// Direct messages with one user, by canonical name.
    Direct(String),
}

impl BufferId {
    /// How the list shows it.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Server => "server".to_owned(),
            Self::Room(room) => room.clone(),
            Self::Direct(nick) => format!("@{nick}"),
        }
    }
}

/// How a line is styled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Someone's message.
    Message,
    /// Our own message.
    Own,
    /// A reply to a command.
    Reply,
    /// Something the client says (joins, notices).
    Notice,
    /// An error, a refusal, a failed E2E message.
    Error,
}

/// One line of a buffer. Text is sanitized when the line is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// When (local time).
    pub(crate) time: DateTime<Local>,
    /// The sender, for messages.
    pub(crate) from: Option<String>,
    /// Whether the sender's name is verified.
    pub(crate) trust: Trust,
    /// Sealed end to end.
    pub(crate) e2e: bool,
    /// The text.
    pub(crate) text: String,
    /// The style.
    pub(crate) kind: Kind,
}

/// A buffer: its lines, unread count, mention marker and (for rooms) members.
#[derive(Debug, Clone)]
pub(crate) struct Buffer {
    /// Which buffer.
    pub(crate) id: BufferId,
    /// The lines, oldest first.
    pub(crate) lines: VecDeque<Line>,
    /// Messages since it was last shown.
    pub(crate) unread: usize,
    /// Someone mentioned us since it was last shown.
    pub(crate) mention: bool,
    /// Room members: canonical name → (name as shown, trust).
    pub(crate) members: BTreeMap<String, (String, Trust)>,
    /// The room's topic, as last announced.
    pub(crate) topic: Option<String>,
    /// Whether we are one of the room's operators.
    pub(crate) operator: bool,
    /// The room's modes (`+is`), as last told; empty for none.
    pub(crate) modes: String,
}

impl Buffer {
    fn new(id: BufferId) -> Self {
        Self {
            id,
            lines: VecDeque::new(),
            unread: 0,
            mention: false,
            members: BTreeMap::new(),
            topic: None,
            operator: false,
            modes: String::new(),
        }
    }

    fn push(&mut self, line: Line) {
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// What the handshake and the server certificate say, for the status bar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Security {
    /// `TLSv1_3`.
    pub(crate) version: String,
    /// The cipher suite.
    pub(crate) cipher: String,
    /// The key exchange group (`X25519MLKEM768` with post-quantum hybrid).
    pub(crate) group: String,
    /// The server certificate's SHA-256, shortened for display.
    pub(crate) server_fingerprint: String,
    /// When the server certificate expires (`YYYY-MM-DD`).
    pub(crate) server_expiry: String,
    /// When our own certificate expires (`YYYY-MM-DD`), if we have one.
    pub(crate) own_expiry: Option<String>,
}

/// The connection, as the banner shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Link {
    /// Connected.
    Up,
    /// Lost; reconnecting.
    Reconnecting {
        /// Why it was lost.
        reason: String,
        /// Attempts so far.
        attempt: u32,
    },
    /// Lost for good (kicked, replaced, or reconnecting is off).
    Down(String),
}

/// A request sent and waiting for its reply.
#[derive(Debug, Clone)]
enum Pending {
    Request(Request),
    Sealed { to: String, text: String },
    Raw,
}

/// The whole screen's state.
#[derive(Debug)]
pub(crate) struct TuiState {
    /// The buffers, in list order: server first, then rooms and conversations as they come.
    pub(crate) buffers: Vec<Buffer>,
    /// The buffer shown.
    pub(crate) current: usize,
    /// Our name, when known.
    pub(crate) me: Option<String>,
    /// Whether our name is proven by a certificate.
    pub(crate) verified: bool,
    /// Handshake and certificate facts.
    pub(crate) security: Security,
    /// The connection.
    pub(crate) link: Link,
    /// The input line.
    pub(crate) editor: Editor,
    /// Lines scrolled up from the bottom of the current buffer.
    pub(crate) scroll: usize,
    /// A `QUIZ` problem is waiting: a number typed alone answers it.
    pub(crate) quiz: bool,
    /// A warning the user must acknowledge (a peer's key changed).
    pub(crate) warning: Option<String>,
    /// The key help overlay is open.
    pub(crate) help: bool,
    pending: VecDeque<Pending>,
    /// Completion in progress: where the word starts, the candidates, which one is shown.
    completion: Option<(usize, Vec<String>, usize)>,
    /// Messages shown, per conversation: repeats after a reconnect are dropped.
    pub(crate) resync: Resync,
    /// What `/whoami` shows.
    pub(crate) whoami: Vec<String>,
}

impl TuiState {
    /// A fresh state for `me` (the certificate name, if any).
    pub(crate) fn new(me: Option<String>, verified: bool, security: Security) -> Self {
        Self {
            buffers: vec![Buffer::new(BufferId::Server)],
            current: 0,
            me,
            verified,
            security,
            link: Link::Up,
            editor: Editor::default(),
            scroll: 0,
            quiz: false,
            warning: None,
            help: false,
            pending: VecDeque::new(),
            resync: Resync::default(),
            whoami: Vec::new(),
            completion: None,
        }
    }

    /// The buffer shown.
    pub(crate) fn current(&self) -> &Buffer {
        &self.buffers[self.current]
    }

    /// The prompt before the input line.
    pub(crate) fn prompt(&self) -> String {
        if self.quiz {
            return "answer> ".to_owned();
        }
        match &self.current().id {
            BufferId::Server => "> ".to_owned(),
            id => format!("{}> ", id.label()),
        }
    }

    /// Rooms to rejoin after reconnecting.
    pub(crate) fn rooms(&self) -> Vec<String> {
        self.buffers
            .iter()
            .filter_map(|b| match &b.id {
                BufferId::Room(room) => Some(room.clone()),
                _ => None,
            })
            .collect()
    }

    /// Shows buffer `index` (wrapping), clearing its unread count.
    pub(crate) fn show(&mut self, index: usize) {
        self.current = index % self.buffers.len();
        let buffer = &mut self.buffers[self.current];
        buffer.unread = 0;
        buffer.mention = false;
        self.scroll = 0;
    }

    /// The next buffer (`forward`) or the previous one.
    pub(crate) fn cycle(&mut self, forward: bool) {
        let n = self.buffers.len();
        self.show(if forward {
            self.current + 1
        } else {
            self.current + n - 1
        });
    }

    /// Scrolls the message view by `lines` (positive: back in time).
    pub(crate) fn scroll_by(&mut self, lines: isize) {
        let max = self.current().lines.len().saturating_sub(1);
        self.scroll = self.scroll.saturating_add_signed(lines).min(max);
    }

    /// A line from the client itself in the current buffer (or the server buffer).
    pub(crate) fn notice(&mut self, kind: Kind, text: impl AsRef<str>) {
        let index = self.current;
        self.push(index, None, Trust::Verified, false, text.as_ref(), kind);
    }

    /// The answer to `/fingerprint`, `/trust` or `/devices`: a reply, or an error.
    pub(crate) fn report(&mut self, report: Result<String, String>) {
        let (kind, text) = match report {
            Ok(text) => (Kind::Reply, text),
            Err(why) => (Kind::Error, why),
        };
        // A report of several lines (a person's devices) is shown line by line.
        for line in text.lines() {
            self.notice(kind, line);
        }
    }

    /// Enter: what the loop must do for the typed line (one of `Send`, `Raw`, `Direct`,
    /// `Fingerprint`, `Trust`, `Devices`, `Quit`); the rest is handled here.
    pub(crate) fn submit(&mut self) -> Option<Input> {
        self.completion = None;
        let line = self.editor.take();
        if self.quiz {
            if let Ok(n) = line.trim().parse::<i64>() {
                self.quiz = false;
                return Some(Input::Send(Request::Answer(n)));
            }
        }
        let current = match &self.current().id {
            BufferId::Room(room) => Some(room.clone()),
            _ => None,
        };
        // Plain text in a conversation goes to that user.
        if let BufferId::Direct(nick) = &self.current().id {
            if !line.starts_with('/') && !line.trim().is_empty() {
                return Some(Input::Direct {
                    nick: nick.clone(),
                    text: line,
                    plain: false,
                });
            }
        }
        match input::parse(&line, current.as_deref()) {
            Input::Raw(raw) => {
                self.pending.push_back(Pending::Raw);
                Some(Input::Raw(raw))
            }
            Input::Direct { nick, text, plain } => {
                let index = self.open(BufferId::Direct(name_key(&nick)));
                self.show(index);
                Some(Input::Direct { nick, text, plain })
            }
            action @ (Input::Send(_)
            | Input::Fingerprint(_)
            | Input::Trust(_)
            | Input::Devices(_)
            | Input::Quit) => Some(action),
            Input::History { target, count } => {
                let target = target.or_else(|| match &self.current().id {
                    BufferId::Room(room) => Some(room.clone()),
                    BufferId::Direct(nick) => Some(nick.clone()),
                    _ => None,
                });
                match target.and_then(|t| self.resync.older(&t, count)) {
                    Some(request) => Some(Input::Send(request)),
                    None => {
                        self.notice(Kind::Error, "/history needs a room or a conversation");
                        None
                    }
                }
            }
            Input::Switch(room) => {
                match self.find(&BufferId::Room(name_key(&room))) {
                    Some(index) => self.show(index),
                    None => self.notice(Kind::Error, format!("you are not in {}", sanitize(&room))),
                }
                None
            }
            Input::Whoami => {
                for line in self.whoami.clone() {
                    self.notice(Kind::Reply, line);
                }
                // The loop adds the devices (it has the E2E state).
                Some(Input::Whoami)
            }
            Input::Help => {
                for (usage, what) in input::HELP {
                    self.notice(Kind::Reply, format!("{usage:<28} {what}"));
                }
                self.notice(Kind::Reply, "keys: press ? on an empty line");
                None
            }
            Input::Nothing => None,
            Input::Invalid(message) => {
                self.notice(Kind::Error, message);
                None
            }
        }
    }

    /// A key press: edits, scrolls, switches, or (Enter) what the loop must do.
    pub(crate) fn on_key(&mut self, key: KeyEvent) -> Option<Input> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            return Some(Input::Quit);
        }
        // A warning stays until it is acknowledged.
        if self.warning.is_some() {
            if matches!(key.code, KeyCode::Enter | KeyCode::Esc) {
                self.warning = None;
            }
            return None;
        }
        if self.help {
            self.help = false;
            return None;
        }
        if key.code != KeyCode::Tab {
            self.end_completion();
        }
        match key.code {
            KeyCode::Enter => return self.submit(),
            KeyCode::Tab => self.complete(),
            KeyCode::F(1) => self.help = true,
            KeyCode::Char('?') if self.editor.text().is_empty() => self.help = true,
            KeyCode::Char('d') if ctrl && self.editor.text().is_empty() => {
                return Some(Input::Quit)
            }
            KeyCode::Char('n') if ctrl => self.cycle(true),
            KeyCode::Char('p') if ctrl => self.cycle(false),
            KeyCode::Char('a') if ctrl => self.editor.home(),
            KeyCode::Char('e') if ctrl => self.editor.end(),
            KeyCode::Char('u') if ctrl => self.editor.clear(),
            KeyCode::Char('w') if ctrl => self.editor.delete_word(),
            KeyCode::Char(c @ '1'..='9') if alt => {
                let index = usize::from(c as u8 - b'1');
                if index < self.buffers.len() {
                    self.show(index);
                }
            }
            KeyCode::Right if alt => self.cycle(true),
            KeyCode::Left if alt => self.cycle(false),
            KeyCode::Char(c) if !ctrl && !alt => self.editor.insert(c),
            KeyCode::Backspace => self.editor.backspace(),
            KeyCode::Delete => self.editor.delete(),
            KeyCode::Left => self.editor.left(),
            KeyCode::Right => self.editor.right(),
            KeyCode::Home => self.editor.home(),
            KeyCode::End => self.editor.end(),
            KeyCode::Up => self.editor.older(),
            KeyCode::Down => self.editor.newer(),
            KeyCode::PageUp => self.scroll_by(PAGE),
            KeyCode::PageDown => self.scroll_by(-PAGE),
            _ => {}
        }
        None
    }

    /// Pasted text goes into the input line, line breaks as spaces (a paste never sends).
    pub(crate) fn on_paste(&mut self, text: &str) {
        let flat: String = text
            .chars()
            .map(|c| {
                if c == '\n' || c == '\r' || c == '\t' {
                    ' '
                } else {
                    c
                }
            })
            .filter(|c| !c.is_control())
            .collect();
        self.editor.insert_str(&flat);
    }

    /// A mouse event: the wheel scrolls.
    pub(crate) fn on_mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::ScrollUp => self.scroll_by(WHEEL),
            MouseEventKind::ScrollDown => self.scroll_by(-WHEEL),
            _ => {}
        }
    }

    /// Remembers what was sent, to match its reply.
    pub(crate) fn sent(&mut self, request: &Request) {
        self.pending.push_back(Pending::Request(request.clone()));
    }

    /// Remembers a sealed message sent, to show it once accepted.
    pub(crate) fn sent_sealed(&mut self, to: &str, text: &str) {
        self.pending.push_back(Pending::Sealed {
            to: to.to_owned(),
            text: text.to_owned(),
        });
    }

    /// Forgets what was waiting (the connection was lost); returns how many.
    pub(crate) fn forget_pending(&mut self) -> usize {
        std::mem::take(&mut self.pending).len()
    }

    /// Tab: completes the word before the cursor (a `/command`, a `#room` or a nickname);
    /// pressed again, the next candidate.
    pub(crate) fn complete(&mut self) {
        if let Some((start, candidates, at)) = self.completion.take() {
            let next = (at + 1) % candidates.len();
            self.editor.replace_before_cursor(start, &candidates[next]);
            self.completion = Some((start, candidates, next));
            return;
        }
        let (start, word) = self.editor.word_before_cursor();
        let word = word.to_owned();
        let lower = word.to_ascii_lowercase();
        let mut candidates: Vec<String> = if start == 0 && word.starts_with('/') {
            input::HELP
                .iter()
                .filter_map(|(usage, _)| usage.strip_prefix('/'))
                .flat_map(|usage| usage.split(", "))
                .map(|c| {
                    format!(
                        "/{} ",
                        c.trim_start_matches('/').split(' ').next().unwrap_or("")
                    )
                })
                .collect()
        } else if word.starts_with('#') {
            self.rooms().into_iter().map(|r| format!("{r} ")).collect()
        } else {
            let suffix = if start == 0 { ": " } else { " " };
            let mut nicks: Vec<String> = self
                .current()
                .members
                .values()
                .map(|(n, _)| n.clone())
                .collect();
            nicks.extend(self.buffers.iter().filter_map(|b| match &b.id {
                BufferId::Direct(n) => Some(n.clone()),
                _ => None,
            }));
            nicks.into_iter().map(|n| format!("{n}{suffix}")).collect()
        };
        candidates.retain(|c| c.to_ascii_lowercase().starts_with(&lower) && !word.is_empty());
        candidates.sort();
        candidates.dedup();
        if let Some(first) = candidates.first().cloned() {
            self.editor.replace_before_cursor(start, &first);
            if candidates.len() > 1 {
                self.completion = Some((start, candidates, 0));
            }
        }
    }

    /// Any key other than Tab ends a completion.
    pub(crate) fn end_completion(&mut self) {
        self.completion = None;
    }

    /// A reply from the server, matched with what was sent; the requests it leads to (after a
    /// `JOIN`: the members, then the room's last messages).
    pub(crate) fn on_reply(&mut self, reply: &Reply) -> Vec<Request> {
        let mut follow_up = Vec::new();
        let pending = self.pending.pop_front();
        match (pending, reply) {
            (Some(Pending::Sealed { to, text }), Reply::Ok(_)) => {
                let index = self.open(BufferId::Direct(name_key(&to)));
                let me = self.me.clone();
                self.push(
                    index,
                    me.as_deref(),
                    Trust::Verified,
                    true,
                    &text,
                    Kind::Own,
                );
            }
            (Some(Pending::Request(Request::Msg { target, text })), Reply::Ok(_)) => {
                let id = match target {
                    Target::Room(room) => BufferId::Room(name_key(&room)),
                    Target::User(nick) => BufferId::Direct(name_key(&nick)),
                };
                let index = self.open(id);
                let me = self.me.clone();
                let trust = if self.verified {
                    Trust::Verified
                } else {
                    Trust::Unverified
                };
                self.push(index, me.as_deref(), trust, false, &text, Kind::Own);
            }
            (Some(Pending::Request(Request::Join(_))), Reply::Ok(room)) => {
                let index = self.open(BufferId::Room(room.clone()));
                self.show(index);
                self.notice(Kind::Notice, format!("joined {}", sanitize(room)));
                follow_up.push(Request::Who(room.clone()));
                follow_up.push(Request::Mode {
                    room: room.clone(),
                    change: None,
                });
                follow_up.extend(self.resync.older(room, input::HISTORY_PAGE));
            }
            (Some(Pending::Request(Request::Part(_))), Reply::Ok(room)) => {
                if let Some(index) = self.find(&BufferId::Room(room.clone())) {
                    self.buffers.remove(index);
                    self.show(self.current.min(self.buffers.len() - 1));
                }
            }
            (Some(Pending::Request(Request::Who(room))), Reply::Ok(list)) => {
                if let Some(index) = self.find(&BufferId::Room(name_key(&room))) {
                    let members = &mut self.buffers[index].members;
                    members.clear();
                    for (nick, trust) in list.split(' ').filter_map(|e| e.split_once('=')) {
                        let trust = if trust == "verified" {
                            Trust::Verified
                        } else {
                            Trust::Unverified
                        };
                        members.insert(name_key(nick), (sanitize(nick), trust));
                    }
                }
            }
            // Modes and operators: shown in the room's header.
            (Some(Pending::Request(Request::Mode { room, change: None })), Reply::Ok(payload)) => {
                let me = self.me.as_deref().map(name_key).unwrap_or_default();
                if let Some(index) = self.find(&BufferId::Room(name_key(&room))) {
                    let (modes, ops) = payload.split_once(" ops=").unwrap_or((payload, ""));
                    let buffer = &mut self.buffers[index];
                    buffer.modes = if modes == "+" {
                        String::new()
                    } else {
                        sanitize(modes)
                    };
                    buffer.operator = ops.split(',').any(|op| op == me);
                }
            }
            (Some(Pending::Request(Request::Mode { room, .. })), Reply::Ok(modes)) => {
                if let Some(index) = self.find(&BufferId::Room(name_key(&room))) {
                    self.buffers[index].modes = if modes == "+" {
                        String::new()
                    } else {
                        sanitize(modes)
                    };
                }
            }
            (Some(Pending::Request(Request::Nick(nick))), Reply::Ok(payload)) => {
                self.me = Some(nick);
                self.notice(Kind::Notice, format!("you are {}", sanitize(payload)));
            }
            (Some(Pending::Request(Request::Quiz)), Reply::Ok(problem)) => {
                self.quiz = true;
                self.notice(
                    Kind::Reply,
                    crate::app::hints::quiz_question(problem, "type the answer"),
                );
            }
            (Some(Pending::Request(Request::Quit)), _) => {}
            // The messages came just before, as events.
            (Some(Pending::Request(Request::History { .. })), Reply::Ok(payload))
                if payload.starts_with("0 ") => {}
            (Some(Pending::Request(Request::History { target, .. })), Reply::Ok(payload)) => {
                let (count, more) = payload.split_once(' ').unwrap_or((payload, "end"));
                let more = if more == "more" {
                    "; /history for more"
                } else {
                    ""
                };
                self.notice(
                    Kind::Notice,
                    format!(
                        "{} stored message(s) of {target} shown{more}",
                        sanitize(count)
                    ),
                );
            }
            // A server without history: nothing wrong.
            (Some(Pending::Request(Request::History { .. })), Reply::Err(err))
                if err.code == tlschat_proto::ErrorCode::NoHistory => {}
            (_, Reply::Ok(payload)) if payload.is_empty() => {}
            (_, Reply::Ok(payload)) => self.notice(Kind::Reply, sanitize(payload)),
            (_, Reply::Err(err)) => {
                self.notice(Kind::Error, crate::app::hints::interactive_error(err));
            }
        }
        follow_up
    }

    /// An event from the server.
    pub(crate) fn on_event(&mut self, event: &Event) {
        match event {
            Event::Message {
                room,
                from,
                trust,
                time,
                text,
                ..
            } => {
                let index = self.open(BufferId::Room(name_key(room)));
                self.message(index, from, *trust, time, false, text);
            }
            Event::Direct {
                from,
                to,
                trust,
                time,
                text,
                ..
            } => {
                let index = self.open(BufferId::Direct(name_key(self.other_party(from, to))));
                self.message(index, from, *trust, time, false, text);
            }
            // Our own person joined from another device: the room is ours here too.
            Event::Join { room, nick, trust } if self.is_me(nick) => {
                let index = self.open(BufferId::Room(name_key(room)));
                self.buffers[index]
                    .members
                    .insert(name_key(nick), (sanitize(nick), *trust));
                self.notice(Kind::Notice, format!("you are in {}", sanitize(room)));
            }
            Event::Part { room, nick, .. } if self.is_me(nick) => {
                if let Some(index) = self.find(&BufferId::Room(name_key(room))) {
                    self.buffers.remove(index);
                    self.show(self.current.min(self.buffers.len() - 1));
                }
                self.notice(
                    Kind::Notice,
                    format!("you left {} (on another device)", sanitize(room)),
                );
            }
            Event::Join { room, nick, trust } => {
                self.member(
                    room,
                    nick,
                    Some(*trust),
                    format!("{} joined", shown(nick, *trust)),
                );
            }
            Event::Part { room, nick, trust } => {
                self.member(room, nick, None, format!("{} left", shown(nick, *trust)));
            }
            Event::Quit {
                room,
                nick,
                trust,
                reason,
            } => {
                let text = format!("{} quit ({})", shown(nick, *trust), sanitize(reason));
                self.member(room, nick, None, text);
            }
            Event::Nick { room, old, new } => {
                self.member(
                    room,
                    old,
                    None,
                    format!("?{} is now ?{}", sanitize(old), sanitize(new)),
                );
                self.member(room, new, Some(Trust::Unverified), String::new());
            }
            Event::Disconnect { code, reason } => self.notice(
                Kind::Error,
                format!(
                    "the server disconnected you ({}): {}",
                    code,
                    sanitize(reason)
                ),
            ),
            Event::Shutdown { reason } => {
                self.notice(
                    Kind::Error,
                    format!("server shutting down: {}", sanitize(reason)),
                );
            }
            Event::Revoked { reason, .. } => self.notice(Kind::Error, sanitize(reason)),
            Event::Topic { room, by, text } => {
                let shown = (!text.is_empty()).then(|| sanitize(text));
                let line = match &shown {
                    Some(text) => format!("topic: {text} (set by {})", sanitize(by)),
                    None => format!("{} cleared the topic", sanitize(by)),
                };
                match self.find(&BufferId::Room(name_key(room))) {
                    Some(index) => {
                        self.buffers[index].topic = shown;
                        self.room_line(room, line);
                    }
                    // A room we are not in (ROOMS lists the topics): said where we are.
                    None => self.notice(Kind::Notice, format!("{}: {line}", sanitize(room))),
                }
            }
            Event::Mode { room, by, change } => {
                let me = self.me.clone().unwrap_or_default();
                if let Some(index) = self.find(&BufferId::Room(name_key(room))) {
                    let buffer = &mut self.buffers[index];
                    match change.split_once(' ') {
                        Some(("+o", name)) if name.eq_ignore_ascii_case(&me) => {
                            buffer.operator = true;
                        }
                        Some(("-o", name)) if name.eq_ignore_ascii_case(&me) => {
                            buffer.operator = false;
                        }
                        _ => buffer.modes = with_mode(&buffer.modes, change),
                    }
                }
                let line = format!("{} set mode {}", sanitize(by), sanitize(change));
                self.room_line(room, line);
            }
            Event::Kick {
                room,
                nick,
                by,
                reason,
            } => {
                let line = format!(
                    "{} was put out by {} ({})",
                    sanitize(nick),
                    sanitize(by),
                    sanitize(reason)
                );
                if self
                    .me
                    .as_deref()
                    .is_some_and(|me| me.eq_ignore_ascii_case(nick))
                {
                    self.notice(
                        Kind::Error,
                        format!("you were put out of {}: {line}", sanitize(room)),
                    );
                    if let Some(index) = self.find(&BufferId::Room(name_key(room))) {
                        self.buffers.remove(index);
                        self.show(self.current.min(self.buffers.len() - 1));
                    }
                } else {
                    self.member(room, nick, None, line);
                }
            }
            Event::Ban {
                room,
                name,
                by,
                reason,
            } => {
                let line = format!(
                    "{} banned {} ({})",
                    sanitize(by),
                    sanitize(name),
                    sanitize(reason)
                );
                self.room_line(room, line);
            }
            Event::Unban { room, name, by } => {
                let line = format!("{} lifted the ban on {}", sanitize(by), sanitize(name));
                self.room_line(room, line);
            }
            Event::Invite { room, by } => self.notice(
                Kind::Notice,
                format!(
                    "{} invited you to {} (/join {})",
                    sanitize(by),
                    sanitize(room),
                    sanitize(room)
                ),
            ),
            Event::E2e { .. } | Event::Ping { .. } => {}
            Event::Device { .. } => {
                let text = crate::app::chat::render::device_text(event);
                self.notice(Kind::Error, sanitize(&text));
            }
            other => self.notice(Kind::Notice, sanitize(&other.to_string())),
        }
    }

    /// An E2E message, opened or refused.
    pub(crate) fn on_sealed(&mut self, from: &str, to: &str, received: &Received) {
        let index = self.open(BufferId::Direct(name_key(self.other_party(from, to))));
        match received {
            Received::Message {
                text,
                reordered,
                sent,
            } => {
                let text = if *reordered {
                    format!("{text} (out of order)")
                } else {
                    text.clone()
                };
                // The signed send time, not the server's.
                self.message(index, from, Trust::Verified, sent, true, &text);
            }
            Received::Refused(why) => {
                let text = format!("E2E message NOT shown: {why}");
                self.push(index, Some(from), Trust::Verified, true, &text, Kind::Error);
                self.count_unread(index, false);
            }
        }
    }

    /// Opens (if needed) the buffer `id` and returns its index.
    pub(crate) fn open(&mut self, id: BufferId) -> usize {
        if let Some(index) = self.find(&id) {
            return index;
        }
        self.buffers.push(Buffer::new(id));
        self.buffers.len() - 1
    }

    fn find(&self, id: &BufferId) -> Option<usize> {
        self.buffers.iter().position(|b| &b.id == id)
    }

    /// Whether `nick` is us.
    fn is_me(&self, nick: &str) -> bool {
        self.me
            .as_deref()
            .is_some_and(|me| me.eq_ignore_ascii_case(nick))
    }

    /// Who a direct message from `from` to `to` is with, seen from here: `to` when we sent
    /// it (from another device, or replayed from the history), else `from`.
    fn other_party<'a>(&self, from: &'a str, to: &'a str) -> &'a str {
        if self.is_me(from) {
            to
        } else {
            from
        }
    }

    fn message(
        &mut self,
        index: usize,
        from: &str,
        trust: Trust,
        time: &str,
        e2e: bool,
        text: &str,
    ) {
        let time = DateTime::parse_from_rfc3339(time)
            .map(|t| t.with_timezone(&Local))
            .unwrap_or_else(|_| Local::now());
        let line = Line {
            time,
            from: Some(sanitize(from)),
            trust,
            e2e,
            text: sanitize(text),
            // What we sent from another device (or earlier, from the history) is ours.
            kind: if self.is_me(from) {
                Kind::Own
            } else {
                Kind::Message
            },
        };
        let own = line.kind == Kind::Own;
        let mention = self.me.as_deref().is_some_and(|me| mentions(text, me));
        self.buffers[index].push(line);
        if !own {
            self.count_unread(index, mention);
        }
    }

    fn count_unread(&mut self, index: usize, mention: bool) {
        if index != self.current {
            let buffer = &mut self.buffers[index];
            buffer.unread += 1;
            buffer.mention |= mention || matches!(buffer.id, BufferId::Direct(_));
        } else if self.scroll > 0 {
            // Keep the view where the reader left it.
            self.scroll += 1;
        }
    }

    fn push(
        &mut self,
        index: usize,
        from: Option<&str>,
        trust: Trust,
        e2e: bool,
        text: &str,
        kind: Kind,
    ) {
        self.buffers[index].push(Line {
            time: Local::now(),
            from: from.map(sanitize),
            trust,
            e2e,
            text: sanitize(text),
            kind,
        });
    }

    /// A notice line in a room's buffer, if it is open.
    fn room_line(&mut self, room: &str, text: String) {
        if let Some(index) = self.find(&BufferId::Room(name_key(room))) {
            self.push(index, None, Trust::Verified, false, &text, Kind::Notice);
        }
    }

    fn member(&mut self, room: &str, nick: &str, joined: Option<Trust>, text: String) {
        let Some(index) = self.find(&BufferId::Room(name_key(room))) else {
            return;
        };
        let members = &mut self.buffers[index].members;
        match joined {
            Some(trust) => {
                members.insert(name_key(nick), (sanitize(nick), trust));
            }
            None => {
                members.remove(&name_key(nick));
            }
        }
        if !text.is_empty() {
            self.push(index, None, Trust::Verified, false, &text, Kind::Notice);
        }
    }
}

/// A room's modes (`+is`, or empty for none) after a change such as `+i` or `-s`.
fn with_mode(modes: &str, change: &str) -> String {
    let [sign @ (b'+' | b'-'), letter] = change.as_bytes() else {
        return modes.to_owned();
    };
    let letter = char::from(*letter);
    let mut kept: Vec<char> = modes
        .chars()
        .filter(|c| *c != '+' && *c != letter)
        .collect();
    if *sign == b'+' {
        kept.push(letter);
    }
    kept.sort_unstable();
    if kept.is_empty() {
        String::new()
    } else {
        format!("+{}", kept.into_iter().collect::<String>())
    }
}

/// `alice`, or `?mallory` for a name without a certificate.
pub(crate) fn shown(nick: &str, trust: Trust) -> String {
    match trust {
        Trust::Verified => sanitize(nick),
        Trust::Unverified => format!("?{}", sanitize(nick)),
    }
}

/// Whether `text` names `me` as a word (case-insensitive).
fn mentions(text: &str, me: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .any(|word| word.eq_ignore_ascii_case(me))
}

#[cfg(test)]
pub(super) mod tests;
