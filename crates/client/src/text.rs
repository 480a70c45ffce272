//! Making text from the network safe to put on a terminal.
//!
//! The server refuses control characters in requests, but a client must not trust the server:
//! everything shown goes through [`sanitize`], which removes what could move the cursor, change
//! colours, clear the screen or reorder text (bidirectional overrides, the "Trojan Source"
//! trick that could make one sender's text look like another's).

/// Longest text shown for one field, in characters; the rest is cut with `…`.
pub const MAX_DISPLAY_CHARS: usize = 4000;

/// Returns `text` with control characters replaced by `�`, tabs by a space, bidirectional
/// controls removed, and cut to [`MAX_DISPLAY_CHARS`].
pub fn sanitize(text: &str) -> String {
    sanitize_up_to(text, MAX_DISPLAY_CHARS)
}

/// [`sanitize`] without the length cut: for a one-shot command's output, which scripts read
/// whole.
pub fn sanitize_whole(text: &str) -> String {
    sanitize_up_to(text, usize::MAX)
}

fn sanitize_up_to(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_DISPLAY_CHARS * 4));
    for (count, c) in text.chars().enumerate() {
        if count == max_chars {
            out.push('…');
            break;
        }
        match c {
            '\t' => out.push(' '),
            c if is_bidi_control(c) => {}
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Bidirectional formatting characters: embeddings, overrides, isolates and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_cannot_reach_the_terminal() {
        assert_eq!(sanitize("red \x1b[31malert\x1b[0m"), "red �[31malert�[0m");
        assert_eq!(sanitize("a\rb\nc\0d\u{7f}e\u{9b}f"), "a�b�c�d�e�f");
        assert_eq!(sanitize("tab\there"), "tab here");
    }

    #[test]
    fn bidi_overrides_are_removed() {
        assert_eq!(sanitize("admin\u{202E}txt.exe"), "admintxt.exe");
        assert_eq!(sanitize("\u{2066}x\u{2069}"), "x");
    }

    #[test]
    fn ordinary_text_passes_and_long_text_is_cut() {
        assert_eq!(sanitize("héllo ✓ 你好"), "héllo ✓ 你好");
        let long = "x".repeat(MAX_DISPLAY_CHARS + 10);
        let shown = sanitize(&long);
        assert_eq!(shown.chars().count(), MAX_DISPLAY_CHARS + 1);
        assert!(shown.ends_with('…'));
    }
}
