//! The prompt's text field: ratatui-textarea's editing (undo, redo, word motions, a kill
//! buffer) behind an explicit key table, so the keys are readline's where a new user expects
//! them and the app keeps its own: Enter runs, Alt+Enter / Shift+Enter / Ctrl+J add a line,
//! Esc leaves.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_textarea::{CursorMove, TextArea};

/// What a key did to the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Enter: run with the text.
    Run,
    /// Esc: stop editing.
    Leave,
    Edited,
    /// Not an editing key.
    Ignored,
}

/// The keys, for the help screen: (keys, what they do).
pub const KEYS: &[(&str, &str)] = &[
    ("Enter", "run (Esc leaves)"),
    ("Alt+Enter", "new line (or Ctrl+J)"),
    ("Ctrl+A / E", "line start / end"),
    ("Alt+B / F", "word back / forward"),
    ("Ctrl+K / U", "kill to line end / start"),
    ("Ctrl+W", "kill the word before"),
    ("Ctrl+Y", "yank what was killed"),
    ("Ctrl+Z / R", "undo / redo"),
];

#[derive(Debug, Clone)]
pub struct Editor {
    area: TextArea<'static>,
}

impl PartialEq for Editor {
    fn eq(&self, other: &Self) -> bool {
        self.area.lines() == other.area.lines() && self.cursor() == other.cursor()
    }
}

impl Editor {
    pub fn new(text: &str) -> Self {
        let mut area = TextArea::new(text.split('\n').map(str::to_string).collect());
        area.move_cursor(CursorMove::Bottom);
        area.move_cursor(CursorMove::End);
        Self { area }
    }

    pub fn text(&self) -> String {
        self.area.lines().join("\n")
    }

    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.area.lines().iter().cloned()
    }

    /// (row, column in chars).
    pub fn cursor(&self) -> (usize, usize) {
        let c = self.area.cursor();
        (c.0, c.1)
    }

    /// Paste: newlines become lines (CR LF and a lone CR too: many terminals paste line breaks
    /// as CR), tabs spaces, other control characters are dropped.
    pub fn insert_str(&mut self, s: &str) {
        let clean: String = s
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .chars()
            .filter_map(|c| match c {
                '\t' => Some(' '),
                '\n' => Some('\n'),
                c if c.is_control() => None,
                c => Some(c),
            })
            .collect();
        self.area.insert_str(clean);
    }

    pub fn key(&mut self, k: &KeyEvent) -> Outcome {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        let shift = k.modifiers.contains(KeyModifiers::SHIFT);
        let a = &mut self.area;
        match k.code {
            KeyCode::Enter if alt || shift => a.insert_newline(),
            KeyCode::Enter => return Outcome::Run,
            KeyCode::Esc => return Outcome::Leave,
            KeyCode::Char(c) if ctrl => match c {
                'j' => a.insert_newline(),
                'a' => a.move_cursor(CursorMove::Head),
                'e' => a.move_cursor(CursorMove::End),
                'b' => a.move_cursor(CursorMove::Back),
                'f' => a.move_cursor(CursorMove::Forward),
                'p' => a.move_cursor(CursorMove::Up),
                'n' => a.move_cursor(CursorMove::Down),
                'k' => {
                    a.delete_line_by_end();
                }
                'u' => {
                    a.delete_line_by_head();
                }
                'w' => {
                    a.delete_word();
                }
                'h' => {
                    a.delete_char();
                }
                'd' => {
                    a.delete_next_char();
                }
                'y' => {
                    a.paste();
                }
                'z' => {
                    a.undo();
                }
                'r' => {
                    a.redo();
                }
                _ => return Outcome::Ignored,
            },
            KeyCode::Char(c) if alt => match c {
                'b' => a.move_cursor(CursorMove::WordBack),
                'f' => a.move_cursor(CursorMove::WordForward),
                'd' => {
                    a.delete_next_word();
                }
                _ => return Outcome::Ignored,
            },
            KeyCode::Char(c) => a.insert_char(c),
            KeyCode::Backspace if alt || ctrl => {
                a.delete_word();
            }
            KeyCode::Backspace => {
                a.delete_char();
            }
            KeyCode::Delete => {
                a.delete_next_char();
            }
            KeyCode::Left if ctrl || alt => a.move_cursor(CursorMove::WordBack),
            KeyCode::Right if ctrl || alt => a.move_cursor(CursorMove::WordForward),
            KeyCode::Left => a.move_cursor(CursorMove::Back),
            KeyCode::Right => a.move_cursor(CursorMove::Forward),
            KeyCode::Up => a.move_cursor(CursorMove::Up),
            KeyCode::Down => a.move_cursor(CursorMove::Down),
            KeyCode::Home => a.move_cursor(CursorMove::Head),
            KeyCode::End => a.move_cursor(CursorMove::End),
            KeyCode::Tab => {
                a.insert_str("    ");
            }
            _ => return Outcome::Ignored,
        }
        Outcome::Edited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(e: &mut Editor, code: KeyCode, mods: KeyModifiers) -> Outcome {
        e.key(&KeyEvent::new(code, mods))
    }

    fn ctrl(e: &mut Editor, c: char) -> Outcome {
        press(e, KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn typed(e: &mut Editor, s: &str) {
        for c in s.chars() {
            press(e, KeyCode::Char(c), KeyModifiers::NONE);
        }
    }

    #[test]
    fn readline_keys_do_what_a_shell_does() {
        let mut e = Editor::new("the quick brown fox");
        ctrl(&mut e, 'a');
        assert_eq!(e.cursor(), (0, 0));
        ctrl(&mut e, 'e');
        assert_eq!(e.cursor(), (0, 19));
        ctrl(&mut e, 'w');
        assert_eq!(e.text(), "the quick brown ");
        press(&mut e, KeyCode::Char('b'), KeyModifiers::ALT);
        assert_eq!(e.cursor(), (0, 10));
        ctrl(&mut e, 'k');
        assert_eq!(e.text(), "the quick ");
        ctrl(&mut e, 'y');
        assert_eq!(e.text(), "the quick brown ");
        press(&mut e, KeyCode::Char('b'), KeyModifiers::ALT);
        press(&mut e, KeyCode::Char('b'), KeyModifiers::ALT);
        press(&mut e, KeyCode::Char('f'), KeyModifiers::ALT);
        assert_eq!(e.cursor(), (0, 10));
        ctrl(&mut e, 'u');
        assert_eq!(e.text(), "brown ");
        ctrl(&mut e, 'z');
        assert_eq!(e.text(), "the quick brown ");
        ctrl(&mut e, 'r');
        assert_eq!(e.text(), "brown ");
    }

    #[test]
    fn enter_runs_and_the_new_line_keys_add_lines() {
        let mut e = Editor::new("ab");
        assert_eq!(
            press(&mut e, KeyCode::Enter, KeyModifiers::NONE),
            Outcome::Run
        );
        press(&mut e, KeyCode::Enter, KeyModifiers::ALT);
        typed(&mut e, "cd");
        ctrl(&mut e, 'j');
        press(&mut e, KeyCode::Enter, KeyModifiers::SHIFT);
        typed(&mut e, "é");
        assert_eq!(e.text(), "ab\ncd\n\né");
        assert_eq!(e.cursor(), (3, 1));
        assert_eq!(
            press(&mut e, KeyCode::Esc, KeyModifiers::NONE),
            Outcome::Leave
        );
        assert_eq!(ctrl(&mut e, 'q'), Outcome::Ignored);
    }

    #[test]
    fn paste_keeps_lines_and_drops_control_characters() {
        let mut e = Editor::new("x");
        e.insert_str("one\r\ntwo\tthree\u{1b}[31m");
        assert_eq!(e.text(), "xone\ntwo three[31m");
        assert_eq!(e.cursor(), (1, 13));
        // A paste whose line breaks are CR alone (tmux, xterm) keeps its lines.
        let mut e = Editor::new("");
        e.insert_str("first\rsecond\r\rthird");
        assert_eq!(e.text(), "first\nsecond\n\nthird");
    }
}
