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
    BetaUp,
    BetaDown,
    BetaUpCoarse,
    BetaDownCoarse,
    TypeAlpha,
    NextColumn,
    PrevColumn,
    AddColumn,
    RemoveColumn,
    ScrollUp,
    ScrollDown,
    EditPrompt,
    Regenerate,
    Resample,
    Save,
    Bake,
    Presenter,
    Animate,
    Help,
    Meters,
    Curve,
    CurveMore,
    Find,
    Layers,
    TokenView,
    Inspect,
    CursorPrev,
    CursorNext,
    ScoreMode,
}

/// One row of the keymap: an action, its name in keys.toml, its help text and its default
/// keys. `{fine}`, `{coarse}` and `{page}` in the help stand for the step constants.
struct Binding {
    action: Action,
    name: &'static str,
    help: &'static str,
    keys: &'static [&'static str],
}

/// Every action, in the order the help screen lists them.
const BINDINGS: &[Binding] = &[
    Binding {
        action: Action::Quit,
        name: "quit",
        help: "quit",
        keys: &["q", "ctrl+c"],
    },
    Binding {
        action: Action::AlphaUp,
        name: "alpha_up",
        help: "α + {fine} (focused column)",
        keys: &["Right"],
    },
    Binding {
        action: Action::AlphaDown,
        name: "alpha_down",
        help: "α − {fine}",
        keys: &["Left"],
    },
    Binding {
        action: Action::AlphaUpCoarse,
        name: "alpha_up_coarse",
        help: "α + {coarse}",
        keys: &["shift+Right"],
    },
    Binding {
        action: Action::AlphaDownCoarse,
        name: "alpha_down_coarse",
        help: "α − {coarse}",
        keys: &["shift+Left"],
    },
    Binding {
        action: Action::BetaUp,
        name: "beta_up",
        help: "β + {fine} (plane: focused column)",
        keys: &["Up"],
    },
    Binding {
        action: Action::BetaDown,
        name: "beta_down",
        help: "β − {fine}",
        keys: &["Down"],
    },
    Binding {
        action: Action::BetaUpCoarse,
        name: "beta_up_coarse",
        help: "β + {coarse}",
        keys: &["shift+Up"],
    },
    Binding {
        action: Action::BetaDownCoarse,
        name: "beta_down_coarse",
        help: "β − {coarse}",
        keys: &["shift+Down"],
    },
    Binding {
        action: Action::NextColumn,
        name: "next_column",
        help: "focus the next column",
        keys: &["Tab"],
    },
    Binding {
        action: Action::PrevColumn,
        name: "prev_column",
        help: "focus the previous column",
        keys: &["shift+Tab", "BackTab"],
    },
    Binding {
        action: Action::AddColumn,
        name: "add_column",
        help: "add a column",
        keys: &["a"],
    },
    Binding {
        action: Action::RemoveColumn,
        name: "remove_column",
        help: "remove the focused column",
        keys: &["x"],
    },
    Binding {
        action: Action::EditPrompt,
        name: "edit_prompt",
        help: "edit the prompt",
        keys: &["e", "p"],
    },
    Binding {
        action: Action::Regenerate,
        name: "regenerate",
        help: "regenerate every column",
        keys: &["Enter"],
    },
    Binding {
        action: Action::Resample,
        name: "resample",
        help: "resample with a new seed",
        keys: &["r"],
    },
    Binding {
        action: Action::Save,
        name: "save",
        help: "save: Markdown, JSON and HTML",
        keys: &["s"],
    },
    Binding {
        action: Action::Bake,
        name: "bake",
        help: "bake α into a model folder",
        keys: &["b"],
    },
    Binding {
        action: Action::Presenter,
        name: "presenter",
        help: "presenter mode (a big α)",
        keys: &["z"],
    },
    Binding {
        action: Action::Animate,
        name: "animate",
        help: "animate α across the slider",
        keys: &["v"],
    },
    Binding {
        action: Action::Help,
        name: "help",
        help: "show or hide this help",
        keys: &["?", "F1"],
    },
    Binding {
        action: Action::Meters,
        name: "meters",
        help: "show or hide the status details",
        keys: &["m"],
    },
    Binding {
        action: Action::Curve,
        name: "curve",
        help: "sentiment-vs-α curve",
        keys: &["g"],
    },
    Binding {
        action: Action::CurveMore,
        name: "curve_more",
        help: "curve: twice the samples per point",
        keys: &["+"],
    },
    Binding {
        action: Action::Find,
        name: "find",
        help: "find α for a typed sentiment",
        keys: &["f"],
    },
    Binding {
        action: Action::Layers,
        name: "layers",
        help: "edit α per layer (--layer-alphas rules)",
        keys: &["l"],
    },
    Binding {
        action: Action::TokenView,
        name: "token_view",
        help: "shade tokens: p, entropy, off",
        keys: &["t"],
    },
    Binding {
        action: Action::Inspect,
        name: "inspect",
        help: "token cursor: ←→ ↑↓, Enter forks",
        keys: &["c"],
    },
    Binding {
        action: Action::CursorPrev,
        name: "cursor_prev",
        help: "token cursor back one token",
        keys: &["["],
    },
    Binding {
        action: Action::CursorNext,
        name: "cursor_next",
        help: "token cursor on one token",
        keys: &["]"],
    },
    Binding {
        action: Action::ScoreMode,
        name: "score_mode",
        help: "score a fixed text at each α",
        keys: &["S"],
    },
    Binding {
        action: Action::TypeAlpha,
        name: "type_alpha",
        help: "type α (α,β; α,β,γ), Enter sets",
        keys: &[
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "-", ".", ",",
        ],
    },
    Binding {
        action: Action::ScrollUp,
        name: "scroll_up",
        help: "scroll the column up {page} lines",
        keys: &["PageUp"],
    },
    Binding {
        action: Action::ScrollDown,
        name: "scroll_down",
        help: "scroll it down {page} lines",
        keys: &["PageDown"],
    },
];

impl Action {
    /// Every action, in the help screen's order.
    pub fn all() -> impl Iterator<Item = Action> {
        BINDINGS.iter().map(|b| b.action)
    }

    fn binding(self) -> &'static Binding {
        BINDINGS
            .iter()
            .find(|b| b.action == self)
            .expect("every action has a row in BINDINGS")
    }

    /// The name used in keys.toml.
    pub fn name(self) -> &'static str {
        self.binding().name
    }

    /// The help text, with the steps the app really uses.
    pub fn describe(self) -> String {
        use super::{COARSE_STEP, FINE_STEP, PAGE_LINES};
        self.binding()
            .help
            .replace("{fine}", &FINE_STEP.to_string())
            .replace("{coarse}", &COARSE_STEP.to_string())
            .replace("{page}", &PAGE_LINES.to_string())
    }

    fn defaults(self) -> &'static [&'static str] {
        self.binding().keys
    }
}

/// A letter under Ctrl in one case: terminals cannot tell Ctrl+Q from Ctrl+q, and send `q`.
fn control_letter(code: KeyCode, mods: KeyModifiers) -> KeyCode {
    match code {
        KeyCode::Char(c) if mods.contains(KeyModifiers::CONTROL) => {
            KeyCode::Char(c.to_ascii_lowercase())
        }
        code => code,
    }
}

/// Ctrl+C, which always quits.
fn ctrl_c() -> Key {
    Key {
        code: KeyCode::Char('c'),
        mods: KeyModifiers::CONTROL,
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
        Key {
            code: control_letter(e.code, mods),
            mods,
        }
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
                match f[1..].parse()? {
                    n @ 1..=24 => KeyCode::F(n),
                    _ => bail!("{s:?}: no such key (function keys are F1 to F24)"),
                }
            }
            _ => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => bail!("unknown key {s:?}"),
                }
            }
        };
        // What terminals send: Shift+Tab is BackTab, and Shift is in a printable character.
        let shift = mods.contains(KeyModifiers::SHIFT);
        let code = match code {
            KeyCode::Tab | KeyCode::BackTab if shift => {
                mods.remove(KeyModifiers::SHIFT);
                KeyCode::BackTab
            }
            KeyCode::Char(c) if shift && c.is_ascii_alphabetic() => {
                mods.remove(KeyModifiers::SHIFT);
                KeyCode::Char(c.to_ascii_uppercase())
            }
            // Which character Shift makes of a digit or symbol depends on the keyboard's layout.
            KeyCode::Char(_) if shift => bail!(
                "{s:?}: Shift with a digit or symbol types another character; write the character it types (\"!\" for Shift+1 on a US keyboard)"
            ),
            code => code,
        };
        // Keys a terminal sends as others would never reach the action.
        if mods.contains(KeyModifiers::CONTROL) {
            if let KeyCode::Char(c) = code {
                let sent_as = match c.to_ascii_lowercase() {
                    'm' | 'j' => Some("Enter"),
                    'i' => Some("Tab"),
                    'h' => Some("Backspace"),
                    '[' => Some("Esc"),
                    _ => None,
                };
                if let Some(other) = sent_as {
                    bail!("{s:?}: terminals send this key as {other}; choose another");
                }
            }
        }
        Ok(Key {
            code: control_letter(code, mods),
            mods,
        })
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
    /// Each action's hint, worked out once: the screen names a few of them on every frame.
    hints: HashMap<Action, String>,
}

impl Default for Keymap {
    fn default() -> Self {
        let mut bindings = HashMap::new();
        for a in Action::all() {
            for k in a.defaults() {
                bindings.insert(Key::parse(k).expect("default key"), a);
            }
        }
        Self::with_bindings(bindings)
    }
}

impl Keymap {
    fn with_bindings(bindings: HashMap<Key, Action>) -> Self {
        let mut map = Self {
            bindings,
            hints: HashMap::new(),
        };
        map.hints = Action::all().map(|a| (a, map.find_hint(a))).collect();
        map
    }

    pub fn action(&self, e: &KeyEvent) -> Option<Action> {
        self.bindings.get(&Key::from_event(e)).copied()
    }

    /// The keys of `a`, for the help screen; all ten digits read as "0-9".
    pub fn keys_of(&self, a: Action) -> Vec<String> {
        let mut v: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, b)| **b == a)
            .map(|(k, _)| k.label())
            .collect();
        v.sort();
        v.dedup();
        let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        if digits.iter().all(|d| v.contains(d)) {
            v.retain(|k| !digits.contains(k));
            v.insert(0, "0-9".to_string());
        }
        v
    }

    /// The one key a hint on the screen names for `a` ("e to edit"): its first default key
    /// while that still does it, else the first of those a keys.toml gave it; "no key" where
    /// it has none.
    pub fn hint(&self, a: Action) -> &str {
        &self.hints[&a]
    }

    fn find_hint(&self, a: Action) -> String {
        let default = a
            .defaults()
            .iter()
            .filter_map(|k| Key::parse(k).ok())
            .find(|k| self.bindings.get(k) == Some(&a));
        match default {
            Some(k) => k.label(),
            None => self
                .keys_of(a)
                .into_iter()
                .next()
                .unwrap_or("no key".into()),
        }
    }

    /// The defaults with the bindings of `text` (keys.toml) replacing those of each action it
    /// names.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            keys: HashMap<String, Vec<String>>,
        }
        let file: File = toml::from_str(text)
            .with_context(|| format!("{}: malformed key configuration", origin.display()))?;
        // The file's bindings first, so a key it gives two actions is refused whatever
        // order they come in; then they replace those actions' defaults, and take their keys
        // from any other action's defaults.
        let mut chosen: HashMap<Key, Action> = HashMap::new();
        let mut actions = Vec::new();
        let mut names: Vec<&String> = file.keys.keys().collect();
        names.sort();
        for name in names {
            let Some(action) = Action::all().find(|a| a.name() == name) else {
                let names: Vec<&str> = Action::all().map(|a| a.name()).collect();
                bail!(
                    "{}: unknown action {name:?} (actions: {})",
                    origin.display(),
                    names.join(", ")
                );
            };
            actions.push(action);
            for k in &file.keys[name] {
                let key = Key::parse(k)
                    .with_context(|| format!("{}: action {name}", origin.display()))?;
                if key == ctrl_c() && action != Action::Quit {
                    bail!(
                        "{}: action {name}: {k:?} always quits; choose another key",
                        origin.display()
                    );
                }
                match chosen.insert(key, action) {
                    Some(other) if other != action => bail!(
                        "{}: {k:?} is bound to both {} and {name}",
                        origin.display(),
                        other.name()
                    ),
                    _ => {}
                }
            }
        }
        let mut bindings = Self::default().bindings;
        bindings.retain(|_, a| !actions.contains(a));
        bindings.extend(chosen);
        // Ctrl+C quits whatever the file says (the event loop sees it first); the help says so.
        bindings.insert(ctrl_c(), Action::Quit);
        Ok(Self::with_bindings(bindings))
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
    fn every_action_has_one_row_and_digits_and_pages_go_through_the_map() {
        for a in Action::all() {
            assert_eq!(BINDINGS.iter().filter(|b| b.action == a).count(), 1);
        }
        let k = Keymap::default();
        assert_eq!(
            k.action(&ev(KeyCode::Char('7'), KeyModifiers::NONE)),
            Some(Action::TypeAlpha)
        );
        assert_eq!(
            k.action(&ev(KeyCode::PageUp, KeyModifiers::NONE)),
            Some(Action::ScrollUp)
        );
        assert!(Action::AlphaUp.describe().contains("0.05"));
        assert!(Action::AlphaUpCoarse.describe().contains("0.25"));
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

    /// Bindings fire as terminals send them: Shift+Tab arrives as BackTab, Ctrl+Q as Ctrl+q.
    #[test]
    fn bindings_match_what_terminals_send() {
        assert_eq!(
            Key::parse("shift+Tab").unwrap(),
            Key::parse("BackTab").unwrap()
        );
        let k = Keymap::from_toml(
            "[keys]\nprev_column = [\"shift+Tab\"]\nquit = [\"ctrl+Q\"]",
            Path::new("k.toml"),
        )
        .unwrap();
        assert_eq!(
            k.action(&ev(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Action::PrevColumn)
        );
        assert_eq!(
            k.action(&ev(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        // A plain Q is another key.
        assert_eq!(k.action(&ev(KeyCode::Char('Q'), KeyModifiers::SHIFT)), None);
    }

    #[test]
    fn bad_toml_names_the_file_and_action() {
        let e = Keymap::from_toml("[keys]\nfly = [\"f\"]", Path::new("/x/keys.toml")).unwrap_err();
        assert!(e.to_string().contains("/x/keys.toml") && e.to_string().contains("fly"));
        let e = Keymap::from_toml("[keys]\nquit = [\"hyper+q\"]", Path::new("k.toml")).unwrap_err();
        assert!(format!("{e:#}").contains("hyper+q"));
    }

    /// A key the file gives one action leaves the action that had it by default, as the
    /// README says: that action is then without a key until the file gives it one.
    #[test]
    fn a_key_given_to_an_action_leaves_its_default_owner() {
        let k = Keymap::from_toml("[keys]\nsave = [\"r\"]", Path::new("k.toml")).unwrap();
        assert_eq!(
            k.action(&ev(KeyCode::Char('r'), KeyModifiers::NONE)),
            Some(Action::Save)
        );
        assert!(k.keys_of(Action::Resample).is_empty());
        assert_eq!(k.action(&ev(KeyCode::Char('s'), KeyModifiers::NONE)), None);
    }

    /// One key for two of the file's actions is refused by name: which one won used to change
    /// from launch to launch.
    #[test]
    fn a_key_bound_to_two_actions_is_refused() {
        let e = Keymap::from_toml(
            "[keys]\nsave = [\"x\"]\nresample = [\"Up\", \"x\"]",
            Path::new("k.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("k.toml") && e.contains("\"x\" is bound to both resample and save"),
            "{e}"
        );
        // Twice for one action is no conflict.
        assert!(Keymap::from_toml("[keys]\nsave = [\"x\", \"x\"]", Path::new("k.toml")).is_ok());
    }

    /// Keys that could never fire are refused by name: a shifted digit or symbol (its
    /// character depends on the layout), keys terminals send as others, F0 and F99, Ctrl+C
    /// for anything but quitting. A misspelt table is refused, not ignored; Ctrl+C quits
    /// whatever the file says, and the help lists it.
    #[test]
    fn keys_that_could_never_fire_are_refused() {
        let err = |text: &str| {
            let e = Keymap::from_toml(text, Path::new("k.toml")).unwrap_err();
            format!("{e:#}")
        };
        for (text, needle) in [
            (
                "[keys]\nsave = [\"shift+1\"]",
                "write the character it types",
            ),
            (
                "[keys]\nhelp = [\"shift+/\"]",
                "write the character it types",
            ),
            ("[keys]\nsave = [\"ctrl+m\"]", "as Enter"),
            ("[keys]\nsave = [\"ctrl+i\"]", "as Tab"),
            ("[keys]\nsave = [\"ctrl+h\"]", "as Backspace"),
            ("[keys]\nsave = [\"F0\"]", "F1 to F24"),
            ("[keys]\nsave = [\"F99\"]", "F1 to F24"),
            ("[keys]\nsave = [\"ctrl+c\"]", "always quits"),
            ("[key]\nsave = [\"x\"]", "unknown field `key`"),
            ("quit = [\"x\"]", "unknown field `quit`"),
        ] {
            let e = err(text);
            assert!(e.contains("k.toml") && e.contains(needle), "{text}: {e}");
        }
        let k = Keymap::from_toml(
            "[keys]\nquit = []\nprev_column = [\"shift+BackTab\"]\nsave = [\"!\", \"F24\"]",
            Path::new("k.toml"),
        )
        .unwrap();
        assert_eq!(k.keys_of(Action::Quit), ["Ctrl+c"]);
        assert_eq!(
            k.action(&ev(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Action::PrevColumn)
        );
        assert_eq!(k.keys_of(Action::PrevColumn), ["Shift+Tab"]);
        assert_eq!(
            k.action(&ev(KeyCode::Char('!'), KeyModifiers::SHIFT)),
            Some(Action::Save)
        );
    }
}
