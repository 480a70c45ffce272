//! Driving interactive programs through a real terminal: a private tmux server per test.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::STEP_TIMEOUT;

/// A tmux server of its own (its own socket), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts a tmux server with one window running `command`, on a `width` x `height` screen.
    /// Returns `None` when tmux is not installed.
    pub fn start(command: &str, width: u16, height: u16) -> Option<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "tlschat-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Self { socket };
        let output = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "test",
            "-n",
            "w0",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ])?;
        assert!(
            output.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(tmux)
    }

    /// Opens another window named `name` running `command`.
    pub fn window(&self, name: &str, command: &str) {
        self.expect(&["new-window", "-d", "-t", "test", "-n", name, command]);
    }

    /// Types text into a window (no Enter).
    pub fn type_text(&self, window: &str, text: &str) {
        self.expect(&["send-keys", "-t", &target(window), "-l", text]);
    }

    /// Presses keys (tmux key names such as `Enter`, `C-u`).
    pub fn keys(&self, window: &str, keys: &[&str]) {
        let target = target(window);
        let mut args = vec!["send-keys", "-t", target.as_str()];
        args.extend_from_slice(keys);
        self.expect(&args);
    }

    /// Types a line and presses Enter.
    pub fn line(&self, window: &str, text: &str) {
        self.type_text(window, text);
        self.keys(window, &["Enter"]);
    }

    /// The visible screen of a window.
    pub fn screen(&self, window: &str) -> String {
        let output = self.expect(&["capture-pane", "-p", "-t", &target(window)]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits (bounded) until the window's screen satisfies `test`; returns the screen.
    pub fn wait_until(&self, window: &str, what: &str, test: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let screen = self.screen(window);
            if test(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "window {window}: no {what} on screen:\n{screen}"
            );
            // Polling the screen is the only way to observe a terminal program.
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until the window's screen contains `needle`; returns the screen.
    pub fn wait_for(&self, window: &str, needle: &str) -> String {
        self.wait_until(window, &format!("{needle:?}"), |s| s.contains(needle))
    }

    /// Waits (bounded) for `needle` in the window's text, wherever the screen wrapped it:
    /// line ends, frame borders and spaces are ignored on both sides.
    pub fn wait_for_wrapped(&self, window: &str, needle: &str) -> String {
        let flat = |text: &str| -> String {
            text.chars()
                .filter(|c| !c.is_whitespace() && *c != '│')
                .collect()
        };
        let want = flat(needle);
        self.wait_until(window, needle, |screen| flat(screen).contains(&want))
    }

    /// Resizes a window.
    pub fn resize(&self, window: &str, width: u16, height: u16) {
        self.expect(&[
            "resize-window",
            "-t",
            &target(window),
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
    }

    fn expect(&self, args: &[&str]) -> Output {
        let output = self.run(args).expect("tmux vanished");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn run(&self, args: &[&str]) -> Option<Output> {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .ok()
    }
}

fn target(window: &str) -> String {
    format!("test:{window}")
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
