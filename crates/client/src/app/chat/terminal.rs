//! The terminal side of the chat client: a line editor with history (rustyline) on its own
//! thread, and a printer that puts incoming lines above the prompt without breaking the line
//! being typed.
//!
//! The editor thread reads one line, hands it over, and waits to be told to read the next one,
//! so the prompt always shows the current room and no editor is active once the chat is over.
//! If the chat ends while the editor waits for keys (connection lost, kicked), dropping the
//! printer wakes the editor, which leaves raw mode itself; as that races with the process
//! exiting, the terminal settings saved at start (`stty -g`) are also put back explicitly.

use std::io::{IsTerminal, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::thread;

use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};
use tokio::sync::mpsc;

/// Lines of history kept.
const HISTORY: usize = 1000;

/// What the person at the keyboard did.
#[derive(Debug)]
pub(crate) enum Typed {
    /// Entered a line.
    Line(String),
    /// Ctrl-D, Ctrl-C, or the end of piped input.
    End,
}

/// Something that prints a line above the prompt.
trait Print: Send {
    fn print(&mut self, line: String);
}

struct EditorPrinter<P>(P);

impl<P: ExternalPrinter + Send> Print for EditorPrinter<P> {
    fn print(&mut self, line: String) {
        if self.0.print(format!("{line}\n")).is_err() {
            println!("{line}");
        }
    }
}

struct StdoutPrinter;

impl Print for StdoutPrinter {
    fn print(&mut self, line: String) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The running terminal: typed lines come from [`next`](Self::next), lines go out through
/// [`print`](Self::print).
pub(crate) struct Terminal {
    typed: mpsc::Receiver<Typed>,
    /// Tells the editor thread to read the next line with this prompt, or (`None`) to stop.
    proceed: std_mpsc::Sender<Option<String>>,
    printer: Box<dyn Print>,
    saved_tty: Option<String>,
}

impl Terminal {
    /// Starts the editor thread with a first prompt.
    pub(crate) fn start(prompt: String) -> Self {
        let saved_tty = save_tty();
        let (typed_tx, typed) = mpsc::channel(1);
        let (proceed, proceed_rx) = std_mpsc::channel::<Option<String>>();
        let (printer_tx, printer_rx) = std_mpsc::channel::<Box<dyn Print>>();
        thread::spawn(move || editor_thread(&typed_tx, &proceed_rx, &printer_tx));
        let printer = printer_rx
            .recv()
            .unwrap_or_else(|_| Box::new(StdoutPrinter));
        let _ = proceed.send(Some(prompt));
        Self {
            typed,
            proceed,
            printer,
            saved_tty,
        }
    }

    /// The next thing typed. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Typed {
        self.typed.recv().await.unwrap_or(Typed::End)
    }

    /// Lets the editor read the next line, showing `prompt`.
    pub(crate) fn resume(&self, prompt: String) {
        let _ = self.proceed.send(Some(prompt));
    }

    /// Prints a line above the prompt.
    pub(crate) fn print(&mut self, line: impl Into<String>) {
        self.printer.print(line.into());
    }

    /// Ends the editor (the terminal is restored), then prints `line` straight to standard
    /// output: the last words of a chat that is ending must not wait on an editor thread the
    /// process is about to leave.
    pub(crate) fn finish_with(self, line: impl Into<String>) {
        let line = line.into();
        drop(self);
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.proceed.send(None);
        if let Some(saved) = &self.saved_tty {
            let _ = Command::new("stty")
                .arg(saved)
                .stdin(Stdio::inherit())
                .status();
        }
    }
}

fn editor_thread(
    typed: &mpsc::Sender<Typed>,
    proceed: &std_mpsc::Receiver<Option<String>>,
    printer: &std_mpsc::Sender<Box<dyn Print>>,
) {
    let config = rustyline::Config::builder()
        .max_history_size(HISTORY)
        .map(|b| b.auto_add_history(false).build());
    let editor = config.and_then(DefaultEditor::with_config);
    let Ok(mut editor) = editor else {
        let _ = printer.send(Box::new(StdoutPrinter));
        return plain_lines(typed, proceed);
    };
    let print: Box<dyn Print> = match editor.create_external_printer() {
        Ok(p) if std::io::stdin().is_terminal() => Box::new(EditorPrinter(p)),
        _ => Box::new(StdoutPrinter),
    };
    let _ = printer.send(print);
    while let Ok(Some(prompt)) = proceed.recv() {
        let typed_now = match editor.readline(&prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                Typed::Line(line)
            }
            // Ctrl-D (Eof), Ctrl-C (Interrupted) or a terminal error: leave.
            Err(ReadlineError::Eof | ReadlineError::Interrupted | _) => Typed::End,
        };
        let end = matches!(typed_now, Typed::End);
        if typed.blocking_send(typed_now).is_err() || end {
            return;
        }
    }
}

/// Fallback when no editor can be made: plain lines from standard input.
fn plain_lines(typed: &mpsc::Sender<Typed>, proceed: &std_mpsc::Receiver<Option<String>>) {
    let stdin = std::io::stdin();
    while let Ok(Some(_)) = proceed.recv() {
        let mut line = String::new();
        let next = match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => Typed::End,
            Ok(_) => Typed::Line(line.trim_end_matches(['\r', '\n']).to_owned()),
        };
        let end = matches!(next, Typed::End);
        if typed.blocking_send(next).is_err() || end {
            return;
        }
    }
}

/// The terminal's settings (`stty -g`), when standard input is a terminal.
fn save_tty() -> Option<String> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let output = Command::new("stty")
        .arg("-g")
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let saved = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !saved.is_empty()).then_some(saved)
}
