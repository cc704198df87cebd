//! Actions and the keys bound to them. Defaults below; a user's
//! `$XDG_CONFIG_HOME/lerpscope/keys.toml` (usually ~/.config/lerpscope/keys.toml) may rebind any
//! action, e.g.
//!
//! ```toml
//! [keys]
//! quit = ["q", "ctrl+q"]
//! alpha_up = ["Right", "l"]
//! ```

use anyhow::{bail, Context, Result};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    AlphaUp,
    AlphaDown,
    AlphaUpCoarse,
    AlphaDownCoarse,
    NextColumn,
    PrevColumn,
    AddColumn,
    RemoveColumn,
    EditPrompt,
    Regenerate,
    Resample,
    Save,
    Help,
    Meters,
    Curve,
}

impl Action {
    pub const ALL: [Action; 16] = [
        Action::Quit,
        Action::AlphaUp,
        Action::AlphaDown,
        Action::AlphaUpCoarse,
        Action::AlphaDownCoarse,
        Action::NextColumn,
        Action::PrevColumn,
        Action::AddColumn,
        Action::RemoveColumn,
        Action::EditPrompt,
        Action::Regenerate,
        Action::Resample,
        Action::Save,
        Action::Help,
        Action::Meters,
        Action::Curve,
    ];

    /// The name used in keys.toml.
    pub fn name(self) -> &'static str {
        match self {
            Action::Quit => "quit",
            Action::AlphaUp => "alpha_up",
            Action::AlphaDown => "alpha_down",
            Action::AlphaUpCoarse => "alpha_up_coarse",
            Action::AlphaDownCoarse => "alpha_down_coarse",
            Action::NextColumn => "next_column",
            Action::PrevColumn => "prev_column",
            Action::AddColumn => "add_column",
            Action::RemoveColumn => "remove_column",
            Action::EditPrompt => "edit_prompt",
            Action::Regenerate => "regenerate",
            Action::Resample => "resample",
            Action::Save => "save",
            Action::Help => "help",
            Action::Meters => "meters",
            Action::Curve => "curve",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Action::Quit => "quit",
            Action::AlphaUp => "α + 0.05 (focused column)",
            Action::AlphaDown => "α − 0.05",
            Action::AlphaUpCoarse => "α + 0.25",
            Action::AlphaDownCoarse => "α − 0.25",
            Action::NextColumn => "focus the next column",
            Action::PrevColumn => "focus the previous column",
            Action::AddColumn => "add a column",
            Action::RemoveColumn => "remove the focused column",
            Action::EditPrompt => "edit the prompt (Enter runs, Alt+Enter new line, Esc leaves)",
            Action::Regenerate => "regenerate every column",
            Action::Resample => "resample every column with a new seed",
            Action::Save => "save the session as Markdown and JSON",
            Action::Help => "show or hide this help",
            Action::Meters => "show or hide the status details",
            Action::Curve => "sentiment-vs-α curve from a quick background sweep",
        }
    }

    fn defaults(self) -> &'static [&'static str] {
        match self {
            Action::Quit => &["q", "ctrl+c"],
            Action::AlphaUp => &["Right"],
            Action::AlphaDown => &["Left"],
            Action::AlphaUpCoarse => &["shift+Right"],
            Action::AlphaDownCoarse => &["shift+Left"],
            Action::NextColumn => &["Tab"],
            Action::PrevColumn => &["shift+Tab", "BackTab"],
            Action::AddColumn => &["a"],
            Action::RemoveColumn => &["x"],
            Action::EditPrompt => &["e", "p"],
            Action::Regenerate => &["Enter"],
            Action::Resample => &["r"],
            Action::Save => &["s"],
            Action::Help => &["?", "F1"],
            Action::Meters => &["m"],
            Action::Curve => &["g"],
        }
    }
}

/// A key as the keymap sees it: the code and the modifiers that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub fn from_event(e: &KeyEvent) -> Self {
        let mut mods =
            e.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        // Shift is already in the character for printable keys ('?', 'A').
        if let KeyCode::Char(_) = e.code {
            mods.remove(KeyModifiers::SHIFT);
        }
        if e.code == KeyCode::BackTab {
            mods.remove(KeyModifiers::SHIFT);
        }
        Key { code: e.code, mods }
    }

    /// Parse "q", "ctrl+c", "shift+Right", "Enter", "F1", "?".
    pub fn parse(s: &str) -> Result<Self> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = s;
        loop {
            let lower = rest.to_ascii_lowercase();
            let (m, n) = if lower.starts_with("ctrl+") {
                (KeyModifiers::CONTROL, 5)
            } else if lower.starts_with("alt+") {
                (KeyModifiers::ALT, 4)
            } else if lower.starts_with("shift+") {
                (KeyModifiers::SHIFT, 6)
            } else {
                break;
            };
            if rest.len() == n {
                break;
            }
            mods |= m;
            rest = &rest[n..];
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "backspace" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "space" => KeyCode::Char(' '),
            f if f.len() >= 2 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                KeyCode::F(f[1..].parse()?)
            }
            _ => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => bail!("unknown key {s:?}"),
                }
            }
        };
        if let KeyCode::Char(c) = code {
            if mods.contains(KeyModifiers::SHIFT) {
                mods.remove(KeyModifiers::SHIFT);
                return Ok(Key {
                    code: KeyCode::Char(c.to_ascii_uppercase()),
                    mods,
                });
            }
        }
        Ok(Key { code, mods })
    }

    pub fn label(&self) -> String {
        let mut s = String::new();
        if self.mods.contains(KeyModifiers::CONTROL) {
            s.push_str("Ctrl+");
        }
        if self.mods.contains(KeyModifiers::ALT) {
            s.push_str("Alt+");
        }
        if self.mods.contains(KeyModifiers::SHIFT) {
            s.push_str("Shift+");
        }
        match self.code {
            KeyCode::Char(' ') => s.push_str("Space"),
            KeyCode::Char(c) => s.push(c),
            KeyCode::F(n) => s.push_str(&format!("F{n}")),
            KeyCode::BackTab => s.push_str("Shift+Tab"),
            other => s.push_str(&format!("{other:?}")),
        }
        s
    }
}

#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: HashMap<Key, Action>,
}

impl Default for Keymap {
    fn default() -> Self {
        let mut bindings = HashMap::new();
        for a in Action::ALL {
            for k in a.defaults() {
                bindings.insert(Key::parse(k).expect("default key"), a);
            }
        }
        Self { bindings }
    }
}

impl Keymap {
    pub fn action(&self, e: &KeyEvent) -> Option<Action> {
        self.bindings.get(&Key::from_event(e)).copied()
    }

    /// The keys of `a`, for the help screen.
    pub fn keys_of(&self, a: Action) -> Vec<String> {
        let mut v: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, b)| **b == a)
            .map(|(k, _)| k.label())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The defaults with the bindings of `text` (keys.toml) replacing those of each action it
    /// names.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            keys: HashMap<String, Vec<String>>,
        }
        let file: File = toml::from_str(text)
            .with_context(|| format!("{}: malformed key configuration", origin.display()))?;
        let mut map = Self::default();
        for (name, keys) in file.keys {
            let Some(action) = Action::ALL.iter().copied().find(|a| a.name() == name) else {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                bail!(
                    "{}: unknown action {name:?} (actions: {})",
                    origin.display(),
                    names.join(", ")
                );
            };
            map.bindings.retain(|_, a| *a != action);
            for k in keys {
                let key = Key::parse(&k)
                    .with_context(|| format!("{}: action {name}", origin.display()))?;
                map.bindings.insert(key, action);
            }
        }
        Ok(map)
    }

    /// The per-user key file, if the platform has a config directory.
    pub fn user_file() -> Option<PathBuf> {
        dirs::config_dir().map(|d| d.join("lerpscope").join("keys.toml"))
    }

    /// The user's keymap, or the defaults when there is no file.
    pub fn load_user() -> Result<Self> {
        match Self::user_file() {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("{}: cannot read", p.display()))?;
                Self::from_toml(&text, &p)
            }
            _ => Ok(Self::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn defaults_resolve() {
        let k = Keymap::default();
        assert_eq!(
            k.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE)),
            Some(Action::Quit)
        );
        assert_eq!(
            k.action(&ev(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            k.action(&ev(KeyCode::Right, KeyModifiers::SHIFT)),
            Some(Action::AlphaUpCoarse)
        );
        assert_eq!(
            k.action(&ev(KeyCode::Char('?'), KeyModifiers::SHIFT)),
            Some(Action::Help)
        );
        assert_eq!(
            k.action(&ev(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Action::PrevColumn)
        );
    }

    #[test]
    fn toml_rebinds_an_action() {
        let k = Keymap::from_toml(
            "[keys]\nquit = [\"ctrl+q\"]\nalpha_up = [\"l\", \"Right\"]",
            Path::new("k.toml"),
        )
        .unwrap();
        assert_eq!(k.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE)), None);
        assert_eq!(
            k.action(&ev(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            k.action(&ev(KeyCode::Char('l'), KeyModifiers::NONE)),
            Some(Action::AlphaUp)
        );
    }

    #[test]
    fn bad_toml_names_the_file_and_action() {
        let e = Keymap::from_toml("[keys]\nfly = [\"f\"]", Path::new("/x/keys.toml")).unwrap_err();
        assert!(e.to_string().contains("/x/keys.toml") && e.to_string().contains("fly"));
        let e = Keymap::from_toml("[keys]\nquit = [\"hyper+q\"]", Path::new("k.toml")).unwrap_err();
        assert!(format!("{e:#}").contains("hyper+q"));
    }
}
