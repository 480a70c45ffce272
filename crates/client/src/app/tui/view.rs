//! Drawing [`TuiState`] with ratatui: a status bar, the buffer list, the messages, the members,
//! the input line and a key hint line; a banner while the connection is down; overlays for
//! help and for warnings that must be acknowledged. Drawing reads the state and changes
//! nothing, so a `TestBackend` shows exactly what a terminal would.

use chrono::{Datelike, Local};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;
use tlschat_proto::Trust;
use unicode_width::UnicodeWidthChar;

use super::state::{BufferId, Kind, Line, Link, TuiState};

/// Width of the buffer list.
const LIST_WIDTH: u16 = 18;

/// Width of the member list.
const MEMBERS_WIDTH: u16 = 18;

/// The keys, as the help overlay and README list them.
pub(crate) const KEYS: &[(&str, &str)] = &[
    (
        "Enter",
        "send the line (text to the current room or conversation, or a /command)",
    ),
    (
        "Tab",
        "complete a nickname, #room or /command (again: the next match)",
    ),
    ("Up / Down", "earlier / later lines typed"),
    ("PageUp / PageDown, wheel", "scroll the messages"),
    (
        "Ctrl-N / Ctrl-P, Alt-→ / Alt-←",
        "next / previous room or conversation",
    ),
    ("Alt-1 … Alt-9", "go to room or conversation 1 to 9"),
    ("Ctrl-A / Ctrl-E, Home / End", "start / end of the line"),
    ("Ctrl-W / Ctrl-U", "delete a word / the whole line"),
    ("? (empty line), F1", "this help"),
    ("Ctrl-C, Ctrl-D (empty line), /quit", "leave"),
];

/// Colours, or none at all when `NO_COLOR` is set (bold, reverse and italics stay).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Theme {
    color: bool,
}

impl Theme {
    /// Colours unless `no_color`.
    pub(crate) fn new(no_color: bool) -> Self {
        Self { color: !no_color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    fn bar(self) -> Style {
        if self.color {
            Style::new().bg(Color::Blue).fg(Color::White)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
}

/// Draws the whole screen.
pub(crate) fn draw(frame: &mut Frame<'_>, state: &TuiState, theme: Theme) {
    let [status, body, input, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [list, messages, members] = Layout::horizontal([
        Constraint::Length(LIST_WIDTH),
        Constraint::Min(10),
        Constraint::Length(MEMBERS_WIDTH),
    ])
    .areas(body);
    frame.render_widget(
        Paragraph::new(status_line(state)).style(theme.bar()),
        status,
    );
    draw_list(frame, list, state, theme);
    draw_messages(frame, messages, state, theme);
    draw_members(frame, members, state, theme);
    draw_input(frame, input, state);
    let hint = "? help  Tab complete  PgUp/PgDn scroll  Ctrl-N/P switch  Ctrl-C quit";
    frame.render_widget(Paragraph::new(hint).style(theme.fg(Color::DarkGray)), hints);
    if state.help {
        draw_help(frame, theme);
    }
    if let Some(warning) = &state.warning {
        draw_warning(frame, warning, theme);
    }
}

/// `alice ✓verified │ TLSv1_3 <suite> <group> │ cert <fingerprint> exp <date>`: who we are,
/// then what protects the connection, most important first (a narrow terminal cuts the end).
pub(crate) fn status_line(state: &TuiState) -> String {
    let until = |date: &Option<String>| {
        date.as_ref()
            .map_or_else(String::new, |d| format!(" to {d}"))
    };
    let me = match (&state.me, state.verified) {
        (Some(me), true) => format!("{me} ✓verified{}", until(&state.security.own_expiry)),
        (Some(me), false) => format!("?{me} unverified"),
        (None, _) => "no nickname, unverified".to_owned(),
    };
    let s = &state.security;
    format!(
        " {me} │ {} {} {} │ server cert {} exp {}",
        s.version, s.cipher, s.group, s.server_fingerprint, s.server_expiry
    )
}

fn draw_list(frame: &mut Frame<'_>, area: Rect, state: &TuiState, theme: Theme) {
    let lines: Vec<TextLine<'_>> = state
        .buffers
        .iter()
        .enumerate()
        .map(|(i, buffer)| {
            let mut text = buffer.id.label();
            if buffer.unread > 0 {
                text.push_str(&format!(" ({})", buffer.unread));
            }
            if buffer.mention {
                text.push_str(" !");
            }
            let mut style = if buffer.mention {
                theme.fg(Color::Yellow).add_modifier(Modifier::BOLD)
            } else if buffer.unread > 0 {
                Style::new().add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            if i == state.current {
                style = style.add_modifier(Modifier::REVERSED);
            }
            TextLine::styled(text, style)
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" rooms ")),
        area,
    );
}

fn draw_members(frame: &mut Frame<'_>, area: Rect, state: &TuiState, theme: Theme) {
    let lines: Vec<TextLine<'_>> = state
        .current()
        .members
        .values()
        .map(|(nick, trust)| match trust {
            Trust::Verified => TextLine::raw(format!("✓{nick}")),
            Trust::Unverified => TextLine::styled(format!("?{nick}"), theme.fg(Color::Yellow)),
        })
        .collect();
    let title = match state.current().id {
        BufferId::Room(_) => format!(" members ({}) ", lines.len()),
        _ => " members ".to_owned(),
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

fn draw_messages(frame: &mut Frame<'_>, area: Rect, state: &TuiState, theme: Theme) {
    let buffer = state.current();
    let mut label = buffer.id.label();
    if !buffer.modes.is_empty() {
        label.push_str(&format!(" {}", buffer.modes));
    }
    if buffer.operator {
        label.push_str(" (operator)");
    }
    let title = match &buffer.topic {
        Some(topic) => format!(" {label}: {topic} "),
        None => format!(" {label} "),
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut inner = inner;
    if let Some(banner) = banner(&state.link) {
        let [top, rest] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        frame.render_widget(
            Paragraph::new(banner).style(theme.error().add_modifier(Modifier::REVERSED)),
            top,
        );
        inner = rest;
    }
    let width = usize::from(inner.width.max(1));
    let mut rows: Vec<TextLine<'_>> = Vec::new();
    let mut day = None;
    for line in &buffer.lines {
        let date = line.time.date_naive();
        if day != Some(date) {
            day = Some(date);
            let label = format!(
                "── {} {} {} ──",
                line.time.format("%A"),
                date.day(),
                line.time.format("%B %Y")
            );
            rows.push(TextLine::styled(label, theme.fg(Color::DarkGray)));
        }
        rows.extend(wrap(message_spans(line, theme), width));
    }
    let height = usize::from(inner.height);
    let end = rows.len().saturating_sub(state.scroll);
    let start = end.saturating_sub(height);
    let visible: Vec<TextLine<'_>> = rows.drain(start..end).collect();
    frame.render_widget(Paragraph::new(visible), inner);
}

/// The banner while the connection is down.
pub(crate) fn banner(link: &Link) -> Option<String> {
    match link {
        Link::Up => None,
        Link::Reconnecting { reason, attempt } => Some(format!(
            "reconnecting (attempt {attempt})… connection lost: {reason}"
        )),
        Link::Down(reason) => Some(format!("disconnected; /quit to leave. {reason}")),
    }
}

/// One line as spans: time, marks, sender, text.
fn message_spans(line: &Line, theme: Theme) -> Vec<Span<'static>> {
    let mut spans = vec![Span::styled(
        format!("{} ", line.time.with_timezone(&Local).format("%H:%M")),
        theme.fg(Color::DarkGray),
    )];
    if line.e2e {
        spans.push(Span::styled(
            "[E2E] ",
            theme.fg(Color::Green).add_modifier(Modifier::BOLD),
        ));
    }
    if let Some(from) = &line.from {
        let (name, style) = match (line.kind, line.trust) {
            (Kind::Own, _) => (format!("<{from}> "), theme.fg(Color::Cyan)),
            (_, Trust::Verified) => (
                format!("<{from}> "),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            (_, Trust::Unverified) => (
                format!("<?{from}> "),
                theme.fg(Color::Yellow).add_modifier(Modifier::ITALIC),
            ),
        };
        spans.push(Span::styled(name, style));
    }
    let style = match line.kind {
        Kind::Error => theme.error(),
        Kind::Notice => theme.fg(Color::DarkGray).add_modifier(Modifier::ITALIC),
        Kind::Reply => theme.fg(Color::Magenta),
        Kind::Message | Kind::Own => Style::new(),
    };
    let text = match line.kind {
        Kind::Error => format!("!! {}", line.text),
        Kind::Notice => format!("-- {}", line.text),
        _ => line.text.clone(),
    };
    spans.push(Span::styled(text, style));
    spans
}

/// Breaks spans into rows of at most `width` columns, by character width (wide characters
/// never straddle a row end).
fn wrap(spans: Vec<Span<'static>>, width: usize) -> Vec<TextLine<'static>> {
    let mut rows = Vec::new();
    let mut row: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for span in spans {
        let mut piece = String::new();
        for c in span.content.chars() {
            let w = c.width().unwrap_or(0);
            if used + w > width && used > 0 {
                row.push(Span::styled(std::mem::take(&mut piece), span.style));
                rows.push(TextLine::from(std::mem::take(&mut row)));
                used = 0;
            }
            piece.push(c);
            used += w;
        }
        if !piece.is_empty() {
            row.push(Span::styled(piece, span.style));
        }
    }
    rows.push(TextLine::from(row));
    rows
}

fn draw_input(frame: &mut Frame<'_>, area: Rect, state: &TuiState) {
    let block = Block::bordered();
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let prompt = state.prompt();
    let prompt_width = prompt
        .chars()
        .map(|c| c.width().unwrap_or(0))
        .sum::<usize>();
    let text = state.editor.text();
    let cursor = prompt_width + state.editor.cursor_column();
    let width = usize::from(inner.width.max(1));
    // Scroll sideways so the cursor stays in view.
    let skip = (cursor + 1).saturating_sub(width);
    let full = format!("{prompt}{text}");
    let mut shown = String::new();
    let mut column = 0;
    for c in full.chars() {
        let w = c.width().unwrap_or(0);
        if column >= skip {
            shown.push(c);
        }
        column += w;
    }
    frame.render_widget(Paragraph::new(shown), inner);
    let x = inner.x + u16::try_from(cursor - skip).unwrap_or(inner.width);
    frame.set_cursor_position(Position::new(
        x.min(inner.right().saturating_sub(1)),
        inner.y,
    ));
}

fn centered(frame: &Frame<'_>, width: u16, height: u16) -> Rect {
    let area = frame.area();
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

fn draw_help(frame: &mut Frame<'_>, theme: Theme) {
    let mut lines: Vec<TextLine<'_>> = KEYS
        .iter()
        .map(|(key, what)| {
            TextLine::from(vec![
                Span::styled(
                    format!("{key:<36}"),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(TextLine::raw(""));
    lines.push(TextLine::styled(
        "Commands: /help in the input line lists them. Any key closes this.",
        theme.fg(Color::DarkGray),
    ));
    let area = centered(frame, 110, u16::try_from(lines.len()).unwrap_or(20) + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys ")),
        area,
    );
}

fn draw_warning(frame: &mut Frame<'_>, warning: &str, theme: Theme) {
    // Tall enough for the wrapped text (a row of slack for word breaks); the way out is in the
    // frame itself, so it shows however small the terminal.
    let width = frame.area().width.min(80);
    let inner = usize::from(width.saturating_sub(2).max(1));
    let rows = warning.chars().count().div_ceil(inner) + 1;
    let area = centered(frame, width, u16::try_from(rows + 2).unwrap_or(u16::MAX));
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(TextLine::styled(warning.to_owned(), theme.error()))
            .wrap(Wrap { trim: true })
            .block(
                Block::bordered()
                    .title(" WARNING ")
                    .title_bottom(" Press Enter to acknowledge ")
                    .style(theme.error()),
            ),
        area,
    );
}

#[cfg(test)]
mod tests;
