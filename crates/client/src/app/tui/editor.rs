//! The input line: editing by grapheme cluster (so multi-byte and wide characters, emoji with
//! modifiers and combining accents move and delete as one), history, and the display width up
//! to the cursor.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// Lines of history kept.
pub(crate) const HISTORY_LEN: usize = 500;

/// The line being typed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Editor {
    text: String,
    /// Byte offset of the cursor, always on a grapheme boundary.
    cursor: usize,
    history: Vec<String>,
    /// Position while browsing the history (`history.len()` = the line being typed).
    browsing: Option<usize>,
    /// The line being typed when browsing started.
    draft: String,
}

impl Editor {
    /// The text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Columns from the start of the line to the cursor.
    pub(crate) fn cursor_column(&self) -> usize {
        self.text[..self.cursor].width()
    }

    /// Inserts a character at the cursor.
    pub(crate) fn insert(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
        // A combining mark joins the grapheme before it: keep the cursor on a boundary.
        self.cursor = self.boundary_at_or_after(self.cursor);
    }

    /// Inserts a string at the cursor.
    pub(crate) fn insert_str(&mut self, s: &str) {
        self.text.insert_str(self.cursor, s);
        self.cursor += s.len();
    }

    /// Deletes the grapheme before the cursor.
    pub(crate) fn backspace(&mut self) {
        if let Some(start) = self.previous_boundary() {
            self.text.replace_range(start..self.cursor, "");
            self.cursor = start;
        }
    }

    /// Deletes the grapheme under the cursor.
    pub(crate) fn delete(&mut self) {
        if let Some(end) = self.next_boundary() {
            self.text.replace_range(self.cursor..end, "");
        }
    }

    /// Moves one grapheme left.
    pub(crate) fn left(&mut self) {
        if let Some(start) = self.previous_boundary() {
            self.cursor = start;
        }
    }

    /// Moves one grapheme right.
    pub(crate) fn right(&mut self) {
        if let Some(end) = self.next_boundary() {
            self.cursor = end;
        }
    }

    /// To the start of the line.
    pub(crate) fn home(&mut self) {
        self.cursor = 0;
    }

    /// To the end of the line.
    pub(crate) fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Deletes the word before the cursor (Ctrl-W).
    pub(crate) fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches(' ');
        let start = trimmed.rfind(' ').map_or(0, |i| i + 1);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Clears the line (Ctrl-U).
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
    }

    /// Replaces the text from byte `start` to the cursor with `with` (completion).
    pub(crate) fn replace_before_cursor(&mut self, start: usize, with: &str) {
        self.text.replace_range(start..self.cursor, with);
        self.cursor = start + with.len();
    }

    /// The word before the cursor and its start.
    pub(crate) fn word_before_cursor(&self) -> (usize, &str) {
        let before = &self.text[..self.cursor];
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        (start, &before[start..])
    }

    /// Takes the line (Enter): returns it and remembers it in the history.
    pub(crate) fn take(&mut self) -> String {
        let line = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() == HISTORY_LEN {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }

    /// An older line from the history (Up).
    pub(crate) fn older(&mut self) {
        let at = self.browsing.unwrap_or(self.history.len());
        if at == 0 {
            return;
        }
        if self.browsing.is_none() {
            self.draft = self.text.clone();
        }
        self.browsing = Some(at - 1);
        self.set(self.history[at - 1].clone());
    }

    /// A newer line from the history, then the draft (Down).
    pub(crate) fn newer(&mut self) {
        let Some(at) = self.browsing else { return };
        if at + 1 < self.history.len() {
            self.browsing = Some(at + 1);
            self.set(self.history[at + 1].clone());
        } else {
            self.browsing = None;
            let draft = std::mem::take(&mut self.draft);
            self.set(draft);
        }
    }

    fn set(&mut self, text: String) {
        self.text = text;
        self.cursor = self.text.len();
    }

    fn previous_boundary(&self) -> Option<usize> {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map(|(i, _)| i)
    }

    fn next_boundary(&self) -> Option<usize> {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map(|g| self.cursor + g.len())
    }

    fn boundary_at_or_after(&self, at: usize) -> usize {
        let mut position = 0;
        for g in self.text.graphemes(true) {
            if position >= at {
                return position;
            }
            position += g.len();
        }
        self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> Editor {
        let mut editor = Editor::default();
        text.chars().for_each(|c| editor.insert(c));
        editor
    }

    #[test]
    fn wide_and_combined_characters_edit_as_one() {
        let mut editor = typed("a日本🇫🇷e\u{301}");
        assert_eq!(editor.cursor_column(), 1 + 2 + 2 + 2 + 1);
        editor.backspace(); // "é" as e + combining acute: one grapheme
        assert_eq!(editor.text(), "a日本🇫🇷");
        editor.left(); // over the flag (two code points)
        editor.left(); // over 本
        assert_eq!(editor.cursor_column(), 3);
        editor.insert('x');
        assert_eq!(editor.text(), "a日x本🇫🇷");
        editor.delete();
        assert_eq!(editor.text(), "a日x🇫🇷");
        editor.end();
        editor.backspace();
        assert_eq!(editor.text(), "a日x");
        editor.home();
        editor.backspace();
        assert_eq!(editor.text(), "a日x", "nothing before the start");
    }

    #[test]
    fn words_history_and_the_draft() {
        let mut editor = typed("hello big world");
        editor.delete_word();
        assert_eq!(editor.text(), "hello big ");
        assert_eq!(editor.word_before_cursor(), (10, ""));
        assert_eq!(editor.take(), "hello big ");
        editor.insert_str("second");
        editor.take();
        editor.insert_str("draft");
        editor.older();
        assert_eq!(editor.text(), "second");
        editor.older();
        assert_eq!(editor.text(), "hello big ");
        editor.older();
        assert_eq!(editor.text(), "hello big ", "stays at the oldest");
        editor.newer();
        editor.newer();
        assert_eq!(editor.text(), "draft");
        editor.clear();
        assert_eq!(editor.text(), "");
    }

    #[test]
    fn the_history_keeps_the_last_history_len_lines() {
        let mut editor = Editor::default();
        for i in 0..HISTORY_LEN + 3 {
            editor.insert_str(&format!("line {i}"));
            editor.take();
        }
        for _ in 0..HISTORY_LEN + 10 {
            editor.older();
        }
        assert_eq!(editor.text(), "line 3", "the three oldest are gone");
    }
}
