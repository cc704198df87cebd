//! The UI's state and its transitions: `App::update(msg)` changes the state and returns the
//! effects for the runtime to carry out (engine jobs, saving, quitting). No I/O happens here,
//! so every transition is a plain unit test.

pub mod editor;
pub mod html;
pub mod inspect;
pub mod keymap;

use crate::engine::{Alpha, AlphaRange, GenerationParams, PairInfo, StopReason};
use crate::eval::find::Verdict;
use crate::eval::stats::Estimate;
use crate::session::{
    ColumnId, ColumnRun, CurveJob, EngineEvent, Failure, FindJob, FindReport, Job, JobId, JobKind,
    ScrubJob,
};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use editor::Editor;
pub use inspect::{Piece, Scrub, TokenCursor, TokenView, Vocab};
use keymap::{Action, Keymap};
use serde::Serialize;

/// The α steps of the arrow keys, plain and with Shift.
pub const FINE_STEP: f64 = 0.05;
pub const COARSE_STEP: f64 = 0.25;
/// Lines PageUp / PageDown scroll the focused column by.
pub const PAGE_LINES: i32 = 5;
/// The α step of the animation (`v`), across the slider's range and back.
pub const ANIMATION_STEP: f64 = 0.25;
/// How long a step's finished text stays before the animation moves on: long enough to read,
/// where a small pair would otherwise sweep the whole range in under a second.
pub const ANIMATION_DWELL: std::time::Duration = std::time::Duration::from_millis(500);
/// The quick sweep behind the curve panel: points across the slider's range, samples each
/// (at first: `+` doubles them while the panel is open, up to the most).
pub const CURVE_POINTS: usize = 9;
pub const CURVE_SAMPLES: usize = 6;
/// The heat map's grid on a plane: alphas across, βs up (25 points: coarse, but each costs a
/// curve point's samples).
pub const HEAT_ALPHAS: usize = 5;
pub const HEAT_BETAS: usize = 5;
pub const CURVE_MAX_SAMPLES: usize = 96;
/// Samples of the prompt at each α the UI's search for a target measures, and their length.
pub const FIND_SAMPLES: usize = 16;
pub const FIND_MAX_TOKENS: usize = 32;
/// The longest α per layer rules the entry takes.
pub const LAYERS_MAX_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub id: u64,
    /// (α, mean VADER compound with its 95% interval), in the order they arrived.
    pub points: Vec<(Alpha, Estimate)>,
    /// On a plane, the heat map's grid: its alphas and βs, and each point measured, by
    /// (α index, β index).
    pub grid: Option<HeatGrid>,
    pub expected: usize,
    pub samples: usize,
}

impl Default for Curve {
    fn default() -> Self {
        Self {
            id: 0,
            points: Vec::new(),
            grid: None,
            expected: 0,
            samples: CURVE_SAMPLES,
        }
    }
}

/// The meter over a coarse grid of the plane (`g` on a plane).
#[derive(Debug, Clone, PartialEq)]
pub struct HeatGrid {
    pub alphas: Vec<Alpha>,
    pub betas: Vec<Alpha>,
    /// `cells[β index][α index]`, filled in as points arrive.
    pub cells: Vec<Vec<Option<Estimate>>>,
}

impl HeatGrid {
    /// `n_alpha` alphas across `alphas` and `n_beta` βs across `betas`, both ends included.
    fn new(alphas: (f64, f64), betas: (f64, f64), n_alpha: usize, n_beta: usize) -> Self {
        let spread = |(lo, hi): (f64, f64), n: usize| -> Vec<Alpha> {
            (0..n)
                .map(|i| Alpha::saturating(lo + (hi - lo) * i as f64 / (n - 1) as f64))
                .collect()
        };
        Self {
            alphas: spread(alphas, n_alpha),
            betas: spread(betas, n_beta),
            cells: vec![vec![None; n_alpha]; n_beta],
        }
    }

    /// Record a measured point (one not on the grid is ignored).
    fn record(&mut self, alpha: Alpha, beta: Alpha, vader: Estimate) {
        let a = self.alphas.iter().position(|&x| x == alpha);
        let b = self.betas.iter().position(|&x| x == beta);
        if let (Some(a), Some(b)) = (a, b) {
            self.cells[b][a] = Some(vader);
        }
    }
}

/// A running search for the α of a target (`f`): what it has measured so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub id: u64,
    pub target: f64,
    /// The column that gets α* (the focused one when the search started).
    pub column: ColumnId,
    pub points: Vec<(Alpha, Estimate)>,
    pub bracket: Option<(Alpha, Alpha)>,
}

// A few hundred bytes moved once per event: boxing the engine's events would cost an
// allocation each instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Key(KeyEvent),
    /// Mouse input, already mapped by the runtime onto what was drawn.
    Pointer(Pointer),
    Paste(String),
    Resize(u16, u16),
    Engine(EngineEvent),
    Saved(Result<String, Failure>),
    /// The time asked for by `Effect::WakeAfter` has passed.
    Wake,
}

/// What a mouse event means on the screen as drawn (see `ui::pointer`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pointer {
    /// A press or drag on the slider, at this α.
    Slider(Alpha),
    /// A press or drag on a plane's pad, at this (α, β).
    Pad(Alpha, Alpha),
    /// A press on the prompt.
    Prompt,
    /// A press on the column at this position.
    Column(usize),
    /// A press on token `token` of the column at position `column`.
    Token { column: usize, token: usize },
    /// The wheel: lines up (positive) or down.
    Scroll(i32),
    /// A press on nothing that takes one (the header, a label, the status line), or on
    /// anything while the help is open: it stops an animation, closes the help, and no more.
    Elsewhere,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Run `job` for `column`, replacing whatever the column had queued or running.
    Submit {
        column: ColumnId,
        job: Job,
    },
    Curve(CurveJob),
    /// Stop the quick sweep with this id: its panel was closed before it finished.
    CancelCurve(u64),
    Find(FindJob),
    /// Stop the search with this id.
    CancelFind(u64),
    Scrub(ScrubJob),
    /// The column is gone: cancel its work. No other column is affected.
    Remove {
        column: ColumnId,
    },
    /// Bake the model at this α (on a plane, at this point (α, β)) into a Hugging Face folder
    /// in the working directory.
    Export {
        alpha: Alpha,
        beta: Option<Alpha>,
        out: std::path::PathBuf,
    },
    Save(Box<Session>),
    /// Edit α per layer (`--layer-alphas` syntax; empty: off).
    SetLayers(String),
    /// Move a fourth endpoint's γ (every column regenerates when the engine answers).
    SetGamma(Alpha),
    /// Send `Msg::Wake` after this long (the animation's pause between steps).
    WakeAfter(std::time::Duration),
    Quit,
}

// One per app, replaced a few times in its life: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PairState {
    Loading,
    Ready(PairInfo),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ColumnState {
    /// Waiting for the pair to load.
    Idle,
    Queued,
    Generating,
    Done(StopReason),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub id: ColumnId,
    pub alpha: Alpha,
    /// On a plane with a β of its own, the column's β: each column sits at its own point.
    pub beta: Option<Alpha>,
    /// The text as terminal cells show it ([`sanitize`]d).
    pub text: String,
    /// The text as the model wrote it (tabs and control characters too): what a saved
    /// session holds, as `generate` writes it.
    pub raw: String,
    /// The text's tokens, in order.
    pub pieces: Vec<Piece>,
    /// For a fork: what is known of the tokens it was given, by position.
    pub carry: Vec<Option<crate::engine::TokenInfo>>,
    pub state: ColumnState,
    /// The latest job submitted for this column; events of any other are stale.
    pub job: Option<JobId>,
    pub tokens: usize,
    pub tokens_per_s: Option<f64>,
    /// How its latest text is made, once started.
    pub run: Option<crate::session::ColumnRun>,
    /// Where the text was forked (the token cursor's Enter: that token given, sampling going
    /// on from it): (token index, id), earliest first. A fork keeps the ones before it.
    pub forks: Vec<(usize, u32)>,
    /// Lines scrolled up from the bottom (0 follows the stream).
    pub scroll: u16,
    /// The most `scroll` can show, as the column was last drawn (its lines less its height):
    /// scrolling stops there rather than piling up presses to undo.
    pub scroll_limit: std::cell::Cell<u16>,
    /// (VADER compound, perplexity) once the text is complete.
    pub meters: Option<(f64, f64)>,
    /// Score mode: (NLL, perplexity) of the text.
    pub score: Option<(f64, f64)>,
}

impl Column {
    /// A piece of the model's text, kept as it came and as the screen shows it.
    fn push_text(&mut self, piece: &str) {
        self.raw.push_str(piece);
        self.text.push_str(&sanitize(piece));
    }

    fn new(id: ColumnId, alpha: Alpha) -> Self {
        Self {
            id,
            alpha,
            beta: None,
            text: String::new(),
            raw: String::new(),
            pieces: Vec::new(),
            carry: Vec::new(),
            state: ColumnState::Idle,
            job: None,
            tokens: 0,
            tokens_per_s: None,
            run: None,
            forks: Vec::new(),
            scroll: 0,
            scroll_limit: std::cell::Cell::new(u16::MAX),
            meters: None,
            score: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    EditPrompt,
    /// Typing an exact α for the focused column.
    EnterAlpha(String),
    /// Typing the sentiment to find the α of.
    EnterTarget(String),
    /// Editing α per layer's rules (`--layer-alphas` syntax).
    EnterLayers(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    pub a: String,
    pub b: String,
    /// Sources beyond A and B (a plane's C, D, the adapters' base, the recipe that named
    /// them), by role: what it takes, with A and B, to load the same blend again.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sources: std::collections::BTreeMap<String, String>,
    /// How the weights move with α, where it is not the line: the method, α per layer, a
    /// plane's C and β.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// With a fourth endpoint D: γ, one for every column (each column's β is its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// What ran the columns (None before the pair loaded): in half precision, or on a base
    /// kept quantized, these change the text as much as the sampling does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<SessionEngine>,
    pub prompt: String,
    /// Whether each column's text is a reply in a turn of its own (a chat template wrapped
    /// the prompt) rather than the prompt's continuation.
    pub reply: bool,
    pub params: GenerationParams,
    /// Texts that stop a column once it writes them (`--stop`).
    pub stop: Vec<String>,
    /// Score mode: the text every column scored (their text), instead of generating.
    pub score_text: Option<String>,
    pub columns: Vec<SessionColumn>,
}

/// The engine a session ran on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionEngine {
    /// The header's description: the sources, what was kept quantized, the path.
    pub model: String,
    pub dtype: String,
    pub device: String,
    /// `--columns` as asked: auto, batched or reblend (auto batches where that measures
    /// faster); each column records how it actually ran.
    pub columns: String,
}

impl SessionEngine {
    /// "f32 on cpu, --columns auto: <model>".
    pub fn line(&self) -> String {
        format!(
            "{} on {}, --columns {}: {}",
            self.dtype, self.device, self.columns, self.model
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionColumn {
    pub alpha: Alpha,
    /// On a plane, the column's β.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta: Option<Alpha>,
    pub text: String,
    pub tokens: usize,
    pub complete: bool,
    /// Why the column stopped short, where it failed (its text is what came before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every token with what the model thought of it (see [`SessionToken`]).
    pub token_detail: Vec<SessionToken>,
    /// Where this column first differs from the one to its left (a token index).
    pub diverges_at: Option<usize>,
    /// How its text was made ("alone at its blend", "a row of a batch of 4"): the two can
    /// round differently. None where no text was generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Tokens the text was forked onto (the token cursor's Enter): its tokens before each
    /// were sampled as `run` says, the fork's token was chosen, and sampling went on from it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forks: Vec<SessionFork>,
    /// Score mode: the text's fit at this column's point.
    pub score: Option<ColumnScore>,
    /// The meters at the column's foot, once its text is complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meters: Option<ColumnMeters>,
}

/// A finished column's meters, as the screen shows them at its foot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ColumnMeters {
    /// VADER's compound sentiment of the text, −1 … 1.
    pub vader: f64,
    /// The continuation's perplexity under the blend that wrote it (null where not finite).
    pub perplexity: f64,
}

impl ColumnMeters {
    /// "VADER +0.42 · ppl 23.5", with `sep` between the two.
    pub fn line(&self, sep: &str) -> String {
        let ppl = match self.perplexity.is_finite() {
            true => crate::engine::fixed(self.perplexity, 1),
            false => "–".to_string(),
        };
        format!("VADER {:+.2}{sep}ppl {ppl}", self.vader)
    }
}

/// A token a column's text was forked onto.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionFork {
    /// Its index among the column's tokens (as `diverges_at` and `token_detail` count).
    pub token: usize,
    pub text: String,
}

/// A scored text's fit under one column's blend, as `score` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ColumnScore {
    /// −Σ log p over the text's tokens after the first (natural log).
    pub nll: f64,
    pub perplexity: f64,
}

/// One token of a saved column: its text as it reads in the column (empty while a character
/// spans tokens: the next one then holds it) and, for written tokens, its log-probability, the
/// entropy and the top alternatives (natural log, the model's own distribution).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionToken {
    pub id: u32,
    pub text: String,
    pub logprob: Option<f32>,
    pub entropy: Option<f32>,
    pub top: Vec<SessionAlternative>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionAlternative {
    pub id: u32,
    pub text: String,
    pub logprob: f32,
}

/// The texts the columns last ran with, and whether they scored one (score mode) or
/// generated from the prompt.
struct Ran {
    prompt: String,
    score_text: String,
    scored: bool,
}

pub struct App {
    pub a: String,
    pub b: String,
    pub pair: PairState,
    pub prompt: Editor,
    pub mode: Mode,
    pub columns: Vec<Column>,
    pub focused: usize,
    /// The first column shown when they do not all fit side by side, as last drawn: the
    /// window moves only as far as it must to hold the focused column, so a click on a
    /// column at its edge does not shift the others.
    pub first_shown: std::cell::Cell<usize>,
    /// The slider's visible α range.
    pub range: AlphaRange,
    pub params: GenerationParams,
    pub keymap: Keymap,
    pub show_help: bool,
    pub show_details: bool,
    /// The attribute-vs-α panel: shown or not, and the points of the latest quick sweep.
    pub show_curve: bool,
    pub curve: Curve,
    /// The search for a target's α, while it runs.
    pub finding: Option<Finding>,
    /// Presenter mode: columns only, the focused α in big digits.
    pub presenter: bool,
    /// The α animation: the direction it is moving in, while it runs.
    pub animating: Option<f64>,
    /// Token shading, the token cursor and its α-scrub.
    pub token_view: TokenView,
    pub cursor: Option<TokenCursor>,
    pub scrub: Scrub,
    /// Score mode: the columns score `score_text` instead of generating.
    pub score_mode: bool,
    pub score_text: Editor,
    /// The prompt and the text to score as the columns last ran them. An edit left with Esc
    /// stays in its editor, but nothing runs it (an α move included) until every column
    /// runs again, so the columns always share one prompt and the session records it.
    ran: Ran,
    /// No colours: token shading by underline, bold and reverse instead.
    pub monochrome: bool,
    /// `--columns` as asked, for saved sessions.
    pub columns_mode: crate::engine::ColumnsMode,
    /// `--stop` texts, for saved sessions (the engine stops columns at them).
    pub stop: Vec<String>,
    /// α per layer's rules as last sent to the engine, until it takes them: refused ones
    /// open the entry again as typed.
    layers_asked: Option<String>,
    pub vocab: Vocab,
    /// What the status line says the engine is doing.
    pub activity: String,
    pub last_error: Option<String>,
    pub notice: Option<String>,
    /// The engine stopped and cannot be trusted (why): the UI says so and quits.
    pub broken: Option<String>,
    pub last_blend_ms: Option<f64>,
    pub last_tokens_per_s: Option<f64>,
    /// The terminal's size (the layout is computed from it).
    pub size: (u16, u16),
    next_job: u64,
    next_column: u64,
}

impl App {
    pub fn new(
        a: String,
        b: String,
        prompt: &str,
        alphas: &[Alpha],
        params: GenerationParams,
        keymap: Keymap,
    ) -> Self {
        let columns: Vec<Column> = alphas
            .iter()
            .enumerate()
            .map(|(i, &a)| Column::new(ColumnId(i as u64), a))
            .collect();
        Self {
            a,
            b,
            pair: PairState::Loading,
            prompt: Editor::new(prompt),
            mode: Mode::Normal,
            next_column: columns.len() as u64,
            columns,
            focused: 0,
            first_shown: std::cell::Cell::new(0),
            range: "-1:2".parse().expect("a valid range"),
            // The token view, the cursor and the saved session read every token's data.
            params: GenerationParams {
                token_info: true,
                ..params
            },
            keymap,
            show_help: false,
            show_details: false,
            show_curve: false,
            curve: Curve::default(),
            finding: None,
            presenter: false,
            animating: None,
            token_view: TokenView::Off,
            cursor: None,
            scrub: Scrub::default(),
            score_mode: false,
            score_text: Editor::new(""),
            ran: Ran {
                prompt: prompt.to_string(),
                score_text: String::new(),
                scored: false,
            },
            monochrome: false,
            columns_mode: Default::default(),
            stop: Vec::new(),
            layers_asked: None,
            vocab: Vocab::default(),
            activity: "loading the pair…".to_string(),
            last_error: None,
            notice: None,
            broken: None,
            last_blend_ms: None,
            last_tokens_per_s: None,
            size: (80, 24),
            next_job: 0,
        }
    }

    pub fn ready(&self) -> bool {
        matches!(self.pair, PairState::Ready(_))
    }

    /// Not loaded (yet): a key that needs the pair says so, rather than doing nothing.
    fn not_ready(&mut self) -> bool {
        let why = match &self.pair {
            PairState::Ready(_) => return false,
            PairState::Failed(_) => "the pair did not load",
            _ => "the pair is still loading",
        };
        self.notice = Some(why.to_string());
        true
    }

    /// Loaded, and no column waiting or generating.
    pub fn settled(&self) -> bool {
        self.ready()
            && self
                .columns
                .iter()
                .all(|c| !matches!(c.state, ColumnState::Queued | ColumnState::Generating))
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(k) if k.kind != KeyEventKind::Release => self.on_key(k),
            Msg::Key(_) => vec![],
            Msg::Pointer(p) => self.on_pointer(p),
            Msg::Paste(text) => {
                if self.mode == Mode::EditPrompt {
                    self.editor_mut().insert_str(&text);
                }
                vec![]
            }
            Msg::Resize(w, h) => {
                self.size = (w, h);
                vec![]
            }
            Msg::Engine(e) => self.on_engine(e),
            // A wake left from an animation since stopped (or restarted) moves nothing.
            Msg::Wake => match self.columns.get(self.focused).map(|c| &c.state) {
                Some(ColumnState::Done(_)) => self.animation_step(),
                _ => vec![],
            },
            Msg::Saved(r) => {
                match r {
                    Ok(p) => self.notice = Some(format!("saved {p}")),
                    Err(e) => self.last_error = Some(explain(&e)),
                }
                vec![]
            }
        }
    }

    fn on_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        // Ctrl-C always quits, whatever the mode.
        if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
            return vec![Effect::Quit];
        }
        // The status line's notice and error described what came before this key.
        self.notice = None;
        self.last_error = None;
        // Any key stops the animation (and does nothing else).
        if self.animating.take().is_some() {
            self.notice = Some("animation stopped".to_string());
            return vec![];
        }
        // The one-line entries take plain characters: Ctrl-U is no 'u'.
        let chord = matches!(k.code, KeyCode::Char(_))
            && k.modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        match self.mode.clone() {
            Mode::EditPrompt => self.on_prompt_key(k),
            Mode::EnterAlpha(_) | Mode::EnterTarget(_) | Mode::EnterLayers(_) if chord => {
                // Ctrl-U empties the entry, as in a shell (the layers' opens filled in).
                if k.code == KeyCode::Char('u') && k.modifiers == KeyModifiers::CONTROL {
                    self.mode = match self.mode {
                        Mode::EnterAlpha(_) => Mode::EnterAlpha(String::new()),
                        Mode::EnterTarget(_) => Mode::EnterTarget(String::new()),
                        _ => Mode::EnterLayers(String::new()),
                    };
                }
                vec![]
            }
            Mode::EnterAlpha(buf) => self.on_alpha_key(k, buf),
            Mode::EnterTarget(buf) => self.on_target_key(k, buf),
            Mode::EnterLayers(buf) => self.on_layers_key(k, buf),
            Mode::Normal => {
                if k.code == KeyCode::Esc {
                    if let Some(f) = self.finding.take() {
                        self.notice = Some("search stopped".to_string());
                        return vec![Effect::CancelFind(f.id)];
                    }
                }
                if self.show_help {
                    // Any key closes the help; the help key toggles it.
                    self.show_help = false;
                    return vec![];
                }
                if let Some(effects) = self.on_cursor_key(&k) {
                    return effects;
                }
                match self.keymap.action(&k) {
                    Some(Action::TypeAlpha) => {
                        // The key starts the entry's text where it is some (keys.toml may bind
                        // any key to the entry: `=` opens it empty).
                        let first = match k.code {
                            KeyCode::Char(c)
                                if c.is_ascii_digit() || matches!(c, '-' | '.' | ',' | '+') =>
                            {
                                c.to_string()
                            }
                            _ => String::new(),
                        };
                        self.mode = Mode::EnterAlpha(first);
                        vec![]
                    }
                    Some(a) => self.on_action(a),
                    None => vec![],
                }
            }
        }
    }

    fn on_action(&mut self, a: Action) -> Vec<Effect> {
        match a {
            Action::Quit => vec![Effect::Quit],
            Action::AlphaUp => self.nudge(FINE_STEP),
            Action::AlphaDown => self.nudge(-FINE_STEP),
            Action::AlphaUpCoarse => self.nudge(COARSE_STEP),
            Action::AlphaDownCoarse => self.nudge(-COARSE_STEP),
            Action::BetaUp => self.nudge_beta(FINE_STEP),
            Action::BetaDown => self.nudge_beta(-FINE_STEP),
            Action::BetaUpCoarse => self.nudge_beta(COARSE_STEP),
            Action::BetaDownCoarse => self.nudge_beta(-COARSE_STEP),
            Action::NextColumn => self.focus((self.focused + 1) % self.columns.len()),
            Action::PrevColumn => {
                self.focus((self.focused + self.columns.len() - 1) % self.columns.len())
            }
            Action::TokenView => self.cycle_token_view(),
            Action::Inspect => {
                if self.cursor.take().is_some() {
                    return vec![];
                }
                self.move_cursor(0)
            }
            Action::CursorPrev => self.move_cursor(-1),
            Action::CursorNext => self.move_cursor(1),
            Action::ScoreMode => self.toggle_score_mode(),
            Action::ScrollUp => {
                self.scroll_focused(PAGE_LINES);
                vec![]
            }
            Action::ScrollDown => {
                self.scroll_focused(-PAGE_LINES);
                vec![]
            }
            Action::TypeAlpha => vec![],
            Action::AddColumn => {
                let highest = self
                    .columns
                    .iter()
                    .map(|c| c.alpha.value())
                    .fold(f64::MIN, f64::max);
                let id = ColumnId(self.next_column);
                self.next_column += 1;
                let mut column = Column::new(id, Alpha::saturating(highest + 0.5));
                column.beta = self.beta();
                self.columns.push(column);
                self.focused = self.columns.len() - 1;
                self.submit(self.focused, true)
            }
            Action::RemoveColumn => {
                if self.columns.len() <= 1 {
                    self.notice = Some("the last column stays".to_string());
                    return vec![];
                }
                // Only the removed column's work stops; the others keep their generations.
                let gone = self.columns.remove(self.focused);
                self.focused = self.focused.min(self.columns.len() - 1);
                // The token cursor and its α-scrub were the removed column's.
                self.cursor = None;
                self.scrub = Default::default();
                vec![Effect::Remove { column: gone.id }]
            }
            Action::EditPrompt => {
                self.mode = Mode::EditPrompt;
                vec![]
            }
            Action::Regenerate => self.rerun_all(),
            Action::Resample => {
                self.params.sampling.seed = self.params.sampling.seed.wrapping_add(1);
                self.notice = Some(format!("seed {}", self.params.sampling.seed));
                self.rerun_all()
            }
            // Before the pair is loaded a session would say nothing of how it is held, and
            // no column has text.
            Action::Save if self.not_ready() => vec![],
            Action::Save => vec![Effect::Save(Box::new(self.session()))],
            Action::Presenter => {
                self.presenter = !self.presenter;
                vec![]
            }
            Action::Animate => {
                if self.not_ready() {
                    return vec![];
                }
                // From the range's low end up, then back down, until a key is pressed.
                self.animating = Some(ANIMATION_STEP);
                self.notice = Some("animating α (any key stops)".to_string());
                self.set_alpha(self.range.lo())
            }
            Action::Bake => {
                if self.not_ready() {
                    return vec![];
                }
                let (alpha, beta) = (self.columns[self.focused].alpha, self.beta());
                let mut out = crate::engine::export::default_name(&self.b, alpha);
                if let Some(b) = beta {
                    out.push_str(&format!("-beta{b}"));
                }
                if let Some(g) = self.gamma() {
                    out.push_str(&format!("-gamma{g}"));
                }
                self.activity = format!("baking {} into {out}…", point_label(alpha, beta));
                vec![Effect::Export {
                    alpha,
                    beta,
                    out: out.into(),
                }]
            }
            Action::Help => {
                self.show_help = !self.show_help;
                vec![]
            }
            Action::Meters => {
                self.show_details = !self.show_details;
                vec![]
            }
            Action::Curve => {
                self.show_curve = !self.show_curve;
                if !self.show_curve {
                    self.idle_when_done();
                    // Nobody is looking: the rest of its sweep would only take the CPU.
                    return if self.curve.points.len() < self.curve.expected {
                        vec![Effect::CancelCurve(self.curve.id)]
                    } else {
                        vec![]
                    };
                }
                self.start_curve(CURVE_SAMPLES)
            }
            Action::CurveMore => {
                if !self.show_curve {
                    self.notice = Some("open the curve (g) first".to_string());
                    return vec![];
                }
                let samples = (self.curve.samples * 2).min(CURVE_MAX_SAMPLES);
                self.notice = Some(format!("curve: {samples} samples per point"));
                self.start_curve(samples)
            }
            Action::Find => {
                if self.not_ready() {
                    return vec![];
                }
                self.mode = Mode::EnterTarget(String::new());
                vec![]
            }
            Action::Layers => {
                if self.not_ready() {
                    return vec![];
                }
                let PairState::Ready(info) = &self.pair else {
                    return vec![];
                };
                // Refused before the entry opens where nothing typed could be taken: a
                // recipe's rules (its shares, "share … of …", are not even rules), a method
                // other than the line's.
                if let Some(why) = &info.layers_fixed {
                    self.last_error = Some(format!("α per layer: {why}"));
                    return vec![];
                }
                // Rules the engine refused open again as typed, to be put right.
                let spec = match self.layers_asked.take() {
                    Some(asked) => asked,
                    None => info.layers.clone().unwrap_or_default(),
                };
                self.mode = Mode::EnterLayers(spec);
                vec![]
            }
        }
    }

    /// α per layer's rules as they are typed; Enter asks the engine, whose answer
    /// (`LayersChanged`) regenerates the columns or says why not.
    fn on_layers_key(&mut self, k: KeyEvent, mut buf: String) -> Vec<Effect> {
        match k.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Backspace => {
                buf.pop();
                self.mode = Mode::EnterLayers(buf);
            }
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                self.activity = "α per layer…".to_string();
                self.layers_asked = Some(buf.trim().to_string());
                return vec![Effect::SetLayers(buf.trim().to_string())];
            }
            KeyCode::Char(c) if !c.is_control() => {
                if buf.chars().count() < LAYERS_MAX_CHARS {
                    buf.push(c);
                }
                self.mode = Mode::EnterLayers(buf);
            }
            _ => {}
        }
        vec![]
    }

    /// A fresh quick sweep for the curve panel, `samples` per point (the prompt may have
    /// changed since the last one).
    fn start_curve(&mut self, samples: usize) -> Vec<Effect> {
        if self.not_ready() {
            return vec![];
        }
        let id = self.fresh_id();
        let (lo, hi) = self.range.bounds();
        // On a plane: a coarse grid over the slider's α range and the pad's β range.
        let grid = self.beta().map(|_| {
            let betas = self.beta_range();
            HeatGrid::new((lo, hi), betas, HEAT_ALPHAS, HEAT_BETAS)
        });
        let (alphas, betas) = match &grid {
            Some(g) => (g.alphas.clone(), g.betas.clone()),
            None => (
                (0..CURVE_POINTS)
                    .map(|i| {
                        Alpha::saturating(lo + (hi - lo) * i as f64 / (CURVE_POINTS - 1) as f64)
                    })
                    .collect(),
                Vec::new(),
            ),
        };
        self.curve = Curve {
            id,
            points: Vec::new(),
            expected: alphas.len() * betas.len().max(1),
            grid,
            samples,
        };
        self.idle_when_done();
        let mut params = self.params;
        params.max_tokens = params.max_tokens.min(24);
        vec![Effect::Curve(CurveJob {
            id,
            alphas,
            betas,
            prompt: self.ran.prompt.clone(),
            samples,
            params,
        })]
    }

    fn on_target_key(&mut self, k: KeyEvent, mut buf: String) -> Vec<Effect> {
        match k.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Backspace => {
                buf.pop();
                self.mode = Mode::EnterTarget(buf);
            }
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                match buf.trim().parse::<f64>() {
                    Ok(t) if (-1.0..=1.0).contains(&t) => return self.start_find(t),
                    Ok(t) => {
                        self.last_error = Some(format!(
                            "sentiment target {t}: VADER compound lies in [-1, 1]"
                        ))
                    }
                    Err(_) => {
                        self.last_error = Some(format!("sentiment target {buf:?} is not a number"))
                    }
                }
            }
            KeyCode::Char(c) if c.is_ascii_digit() || matches!(c, '-' | '.' | '+') => {
                if buf.len() < 12 {
                    buf.push(c);
                }
                self.mode = Mode::EnterTarget(buf);
            }
            _ => {}
        }
        vec![]
    }

    /// Search for the α at which the prompt's mean VADER reaches `target`, for the focused
    /// column; a search already running is replaced.
    fn start_find(&mut self, target: f64) -> Vec<Effect> {
        let mut effects: Vec<Effect> = self
            .finding
            .take()
            .map(|f| Effect::CancelFind(f.id))
            .into_iter()
            .collect();
        let id = self.fresh_id();
        self.finding = Some(Finding {
            id,
            target,
            column: self.columns[self.focused].id,
            points: Vec::new(),
            bracket: None,
        });
        let mut params = self.params;
        params.max_tokens = params.max_tokens.min(FIND_MAX_TOKENS);
        effects.push(Effect::Find(FindJob {
            id,
            target,
            range: self.range,
            beta: self.beta(),
            prompt: self.ran.prompt.clone(),
            samples: FIND_SAMPLES,
            params,
        }));
        effects
    }

    /// A search's report: progress, or its end (α* set on its column).
    fn on_find(&mut self, id: u64, report: FindReport) -> Vec<Effect> {
        let Some(f) = self.finding.as_mut().filter(|f| f.id == id) else {
            return vec![];
        };
        match report {
            FindReport::Point {
                alpha,
                vader,
                bracket,
            } => {
                f.points.push((alpha, vader));
                f.bracket = bracket;
                vec![]
            }
            FindReport::Done {
                outcome,
                vader,
                points,
            } => {
                let f = self.finding.take().expect("matched above");
                let at = match vader.ci_low.is_nan() {
                    true => format!("VADER {:+.2} (n = {})", vader.mean, vader.n),
                    false => format!(
                        "VADER {:+.2} [{:+.2}, {:+.2}]",
                        vader.mean, vader.ci_low, vader.ci_high
                    ),
                };
                if outcome.verdict != Verdict::Found {
                    let why = match outcome.verdict {
                        Verdict::OutOfReach => "out of reach in the slider's range",
                        Verdict::NotMonotone => "not monotone in α here",
                        Verdict::OutOfPoints => "not bracketed within the points allowed",
                        _ => "reached only where the text turns disfluent",
                    };
                    self.last_error = Some(format!(
                        "sentiment {:+.2} is {why}; closest α = {} ({at})",
                        f.target,
                        fmt_alpha(outcome.alpha)
                    ));
                    return vec![];
                }
                let interval = match outcome.alpha_ci {
                    Some((lo, hi)) => format!("95% CI {lo:.2} … {hi:.2}"),
                    None => "no interval".to_string(),
                };
                self.notice = Some(format!(
                    "α* = {} ({interval}) for sentiment {:+.2}: {at}, {points} points",
                    fmt_alpha(outcome.alpha),
                    f.target
                ));
                let Some(i) = self.columns.iter().position(|c| c.id == f.column) else {
                    return vec![];
                };
                self.focused = i;
                self.set_alpha(outcome.alpha)
            }
        }
    }

    /// The prompt the columns ran (where they scored a text, that text).
    pub fn ran_text(&self) -> &str {
        if self.ran.scored {
            &self.ran.score_text
        } else {
            &self.ran.prompt
        }
    }

    /// Whether the columns hold scores of a text (score mode, once its text has run) rather
    /// than generations: what they show, and what acts on them, follows this.
    pub fn scored(&self) -> bool {
        self.ran.scored
    }

    /// The prompt the columns ran, which an edit not yet run leaves as it was.
    pub fn ran_prompt(&self) -> &str {
        &self.ran.prompt
    }

    /// Whether the editor holds an edit that has not run (or a mode the columns have not
    /// run in yet).
    pub fn edit_pending(&self) -> bool {
        self.score_mode != self.ran.scored || self.editor().text() != self.ran_text()
    }

    /// The text being edited: the prompt, or in score mode the text to score.
    pub fn editor(&self) -> &Editor {
        if self.score_mode {
            &self.score_text
        } else {
            &self.prompt
        }
    }

    fn editor_mut(&mut self) -> &mut Editor {
        if self.score_mode {
            &mut self.score_text
        } else {
            &mut self.prompt
        }
    }

    fn on_prompt_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        match self.editor_mut().key(&k) {
            editor::Outcome::Run => {
                self.mode = Mode::Normal;
                self.submit_all()
            }
            editor::Outcome::Leave => {
                self.mode = Mode::Normal;
                // Score mode left before anything was scored: the columns still show
                // generations, so it is generating again (the text stays for the next S).
                if self.score_mode && !self.ran.scored {
                    self.score_mode = false;
                    self.notice =
                        Some("nothing scored: generating (S, a text, Enter scores it)".into());
                }
                vec![]
            }
            editor::Outcome::Edited | editor::Outcome::Ignored => vec![],
        }
    }

    /// Focus column `i`; an open cursor moves over to it.
    fn focus(&mut self, i: usize) -> Vec<Effect> {
        self.focused = i;
        match self.cursor {
            Some(c) => self.cursor_to(c.token),
            None => vec![],
        }
    }

    fn on_alpha_key(&mut self, k: KeyEvent, mut buf: String) -> Vec<Effect> {
        match k.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Backspace => {
                buf.pop();
                self.mode = if buf.is_empty() {
                    Mode::Normal
                } else {
                    Mode::EnterAlpha(buf)
                };
            }
            KeyCode::Enter if buf.trim().is_empty() => self.mode = Mode::Normal,
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                // On a plane, "α,β" sets both; with a fourth endpoint "α,β,γ" moves γ too.
                let parts: Vec<&str> = buf.split(',').map(str::trim).collect();
                if parts.len() > self.commas_allowed() + 1 {
                    self.last_error = Some(match self.commas_allowed() {
                        0 => format!("{buf}: one α here (α,β needs a third endpoint, --c)"),
                        1 => format!("{buf}: α,β at most (γ needs a fourth endpoint, --d)"),
                        _ => format!("{buf}: α,β,γ at most"),
                    });
                    return vec![];
                }
                // β and γ are read as alphas; their errors speak of themselves. An empty α
                // or β (",0.7", "0.3,") keeps the focused column's.
                let focused = &self.columns[self.focused];
                let kept = [Some(focused.alpha), focused.beta];
                let value = |i: usize, name: &str| {
                    if let (true, Some(Some(v))) = (parts[i].is_empty(), kept.get(i)) {
                        return Ok(*v);
                    }
                    parts[i].parse::<Alpha>().map_err(|e| match name {
                        "α" => e.to_string(),
                        _ => {
                            let toward = if name == "β" { "1 is C" } else { "1 is D" };
                            let e = e.to_string().replace("1 is B", toward).replace('α', name);
                            // "β = 1000.5 is absurd …" names itself already; "\"x\" is not a
                            // number" does not.
                            match e.contains(name) {
                                true => e,
                                false => format!("{name}: {e}"),
                            }
                        }
                    })
                };
                let point = (|| -> Result<_, String> {
                    let a = value(0, "α")?;
                    let b = parts.get(1).map(|_| value(1, "β")).transpose()?;
                    let g = parts.get(2).map(|_| value(2, "γ")).transpose()?;
                    Ok((a, b, g))
                })();
                match point {
                    Ok((a, None, _)) => return self.set_alpha(a),
                    Ok((a, Some(b), None)) => return self.set_point(a, b),
                    Ok((a, Some(b), Some(g))) => {
                        let mut effects = self.set_point(a, b);
                        effects.push(Effect::SetGamma(g));
                        self.activity = "moving γ…".to_string();
                        return effects;
                    }
                    Err(e) => self.last_error = Some(e),
                }
            }
            // Shown as typed even where it is not taken, so Enter can say why.
            KeyCode::Char(',') if buf.len() < 24 => {
                buf.push(',');
                self.mode = Mode::EnterAlpha(buf);
            }
            KeyCode::Char(c) if c.is_ascii_digit() || matches!(c, '-' | '.' | 'e' | 'E' | '+') => {
                if buf.len() < 24 {
                    buf.push(c);
                } else {
                    self.last_error = Some("α entry: 24 characters at most".to_string());
                }
                self.mode = Mode::EnterAlpha(buf);
            }
            _ => {}
        }
        vec![]
    }

    fn on_pointer(&mut self, p: Pointer) -> Vec<Effect> {
        // Like a key, a press stops the animation (and does nothing else); the wheel scrolls.
        if !matches!(p, Pointer::Scroll(_)) && self.animating.take().is_some() {
            self.notice = Some("animation stopped".to_string());
            return vec![];
        }
        // Like a key, a press closes the help (and does nothing beneath it).
        if !matches!(p, Pointer::Scroll(_)) && self.show_help {
            self.show_help = false;
            return vec![];
        }
        match p {
            Pointer::Slider(alpha) => self.set_alpha(alpha),
            Pointer::Pad(alpha, beta) => self.set_point(alpha, beta),
            Pointer::Prompt => {
                self.mode = Mode::EditPrompt;
                vec![]
            }
            Pointer::Column(i) if i < self.columns.len() => {
                if i != self.focused {
                    self.cursor = None;
                }
                self.focused = i;
                vec![]
            }
            Pointer::Column(_) => vec![],
            Pointer::Token { column, token } if column < self.columns.len() => {
                self.focused = column;
                self.cursor_to(token)
            }
            Pointer::Token { .. } => vec![],
            Pointer::Scroll(lines) => {
                self.scroll_focused(lines);
                vec![]
            }
            Pointer::Elsewhere => vec![],
        }
    }

    fn on_engine(&mut self, e: EngineEvent) -> Vec<Effect> {
        match e {
            EngineEvent::Loaded(info) => {
                self.activity = "ready".to_string();
                let beta = info.beta.and_then(|b| Alpha::new(b).ok());
                for c in &mut self.columns {
                    c.beta = beta;
                }
                self.pair = PairState::Ready(info);
                self.rerun_all()
            }
            EngineEvent::LoadFailed(error) => {
                let error = explain(&error);
                self.activity = "load failed".to_string();
                self.last_error = Some(error.clone());
                self.pair = PairState::Failed(error);
                vec![]
            }
            EngineEvent::Started { column, job, run } => {
                if let Some(c) = self.current(column, job) {
                    c.state = ColumnState::Generating;
                    c.run = Some(run);
                    let alpha = c.alpha;
                    self.activity = match run {
                        ColumnRun::Blended { ms } => {
                            self.last_blend_ms = Some(ms);
                            format!("generating α = {}", fmt_alpha(alpha))
                        }
                        ColumnRun::Batch { rows: 1 } => {
                            format!("generating α = {}", fmt_alpha(alpha))
                        }
                        ColumnRun::Batch { rows } => {
                            format!("generating {rows} columns as one batch")
                        }
                    };
                }
                vec![]
            }
            EngineEvent::Text {
                column,
                job,
                piece,
                token,
            } => {
                if let Some(c) = self.current(column, job) {
                    c.push_text(&piece);
                    match token {
                        Some(t) => {
                            let carried = c.carry.get(c.pieces.len()).copied().flatten();
                            c.pieces.push(Piece {
                                id: t.id,
                                end: c.text.len(),
                                raw_end: c.raw.len(),
                                info: t.info.or(carried),
                            });
                            c.tokens = c.pieces.len();
                            // A fork's own token, back under the cursor: its α-scrub now.
                            let arrived = c.pieces.len() - 1;
                            let id = c.id;
                            if self.scrub.column.is_none()
                                && self.columns[self.focused].id == id
                                && self.cursor.is_some_and(|k| k.token == arrived)
                            {
                                return self.scrub_effect();
                            }
                        }
                        None => {
                            if let Some(last) = c.pieces.last_mut() {
                                last.end = c.text.len();
                                last.raw_end = c.raw.len();
                            }
                        }
                    }
                }
                vec![]
            }
            EngineEvent::TextScored { column, job, score } => {
                if self.current(column, job).is_some() {
                    self.on_text_scored(column, score);
                    self.idle_when_done();
                }
                vec![]
            }
            EngineEvent::ScrubPoints {
                id,
                points,
                complete,
            } => {
                if id == self.scrub.id {
                    self.scrub.points.extend(points);
                    self.scrub
                        .points
                        .sort_by(|a, b| a.0.value().total_cmp(&b.0.value()));
                    self.scrub.complete = complete;
                }
                vec![]
            }
            EngineEvent::ScrubFailed { id, error } => {
                if id == self.scrub.id {
                    self.scrub.error = Some(explain(&error));
                }
                vec![]
            }
            EngineEvent::Vocabulary(v) => {
                self.vocab = Vocab(v);
                vec![]
            }
            EngineEvent::Done {
                column,
                job,
                tokens,
                tokens_per_s,
                stop,
            } => {
                let mut effects = vec![];
                if let Some(c) = self.current(column, job) {
                    c.state = ColumnState::Done(stop);
                    c.tokens = tokens;
                    c.tokens_per_s = Some(tokens_per_s);
                    self.last_tokens_per_s = Some(tokens_per_s);
                    // The animated column finished a step: on to the next α once it has been
                    // on screen a while.
                    if self.animating.is_some()
                        && self.columns[self.focused].id == column
                        && stop != StopReason::Cancelled
                    {
                        effects = vec![Effect::WakeAfter(ANIMATION_DWELL)];
                    }
                }
                self.idle_when_done();
                effects
            }
            EngineEvent::Scored {
                column,
                job,
                vader,
                perplexity,
            } => {
                if let Some(c) = self.current(column, job) {
                    c.meters = Some((vader, perplexity));
                }
                vec![]
            }
            EngineEvent::CurvePoint {
                id,
                alpha,
                beta,
                vader,
            } => {
                if id == self.curve.id {
                    self.curve.points.push((alpha, vader));
                    if let (Some(grid), Some(beta)) = (self.curve.grid.as_mut(), beta) {
                        grid.record(alpha, beta, vader);
                    }
                    self.idle_when_done();
                }
                vec![]
            }
            EngineEvent::Find { id, report } => self.on_find(id, report),
            EngineEvent::FindFailed { id, error } => {
                if self.finding.as_ref().is_some_and(|f| f.id == id) {
                    self.finding = None;
                    self.last_error = Some(format!("finding α: {}", explain(&error)));
                }
                vec![]
            }
            EngineEvent::LayersChanged(Ok(info)) => {
                self.layers_asked = None;
                let notice = match &info.layers {
                    Some(l) => format!("α per layer: {l}"),
                    None => "α per layer: off (every tensor on the line)".to_string(),
                };
                self.pair_changed(*info, notice)
            }
            EngineEvent::GammaChanged(Ok(info)) => {
                let notice = format!("γ = {} for every column", info.gamma.unwrap_or_default());
                self.pair_changed(*info, notice)
            }
            EngineEvent::LayersChanged(Err(error)) | EngineEvent::GammaChanged(Err(error)) => {
                self.activity = "ready".to_string();
                // Typed in the strip's entry, not given as the flag its messages name.
                let message = explain(&error);
                self.last_error = Some(match message.strip_prefix("--layer-alphas: ") {
                    Some(rest) => format!("α per layer: {rest}"),
                    None => message,
                });
                vec![]
            }
            EngineEvent::ExportProgress { done, total } => {
                let pct = (100 * done).checked_div(total).unwrap_or(100);
                self.activity = format!("baking… {pct}%");
                vec![]
            }
            EngineEvent::Exported(r) => {
                match r {
                    Ok(p) => self.notice = Some(format!("baked {}", p.display())),
                    Err(e) => self.last_error = Some(explain(&e)),
                }
                self.activity = "idle".to_string();
                vec![]
            }
            EngineEvent::Failed { column, job, error } => {
                if let Some(c) = self.current(column, job) {
                    let error = explain(&error);
                    c.state = ColumnState::Failed(error.clone());
                    self.last_error = Some(error);
                }
                self.idle_when_done();
                vec![]
            }
            EngineEvent::Recovered(error) => {
                self.last_error = Some(format!(
                    "recovered from {error} (weights re-blended; move α to run again)"
                ));
                self.idle_when_done();
                vec![]
            }
            EngineEvent::Broken(error) => {
                self.activity = "stopped".to_string();
                self.broken = Some(error.to_string());
                vec![Effect::Quit]
            }
        }
    }

    fn idle_when_done(&mut self) {
        if self.settled() {
            let sweeping = self.show_curve && self.curve.points.len() < self.curve.expected;
            self.activity = match sweeping {
                true => "sweeping the curve".to_string(),
                false => "idle".to_string(),
            };
        }
    }

    /// The column if `job` is its current job. The one place stale events are dropped: those
    /// of superseded jobs, and of removed columns.
    fn current(&mut self, column: ColumnId, job: JobId) -> Option<&mut Column> {
        self.columns
            .iter_mut()
            .find(|c| c.id == column)
            .filter(|c| c.job == Some(job))
    }

    /// The next α of the animation, bouncing between the ends of the slider's range.
    fn animation_step(&mut self) -> Vec<Effect> {
        let Some(dir) = self.animating else {
            return vec![];
        };
        let (lo, hi) = self.range.bounds();
        let a = self.columns[self.focused].alpha.value();
        let mut next = a + dir;
        if next > hi + 1e-9 || next < lo - 1e-9 {
            self.animating = Some(-dir);
            next = a - dir;
        }
        self.set_alpha(Alpha::saturating(next))
    }

    fn scroll_focused(&mut self, lines: i32) {
        if let Some(c) = self.columns.get_mut(self.focused) {
            // What the screen shows after a resize is the scroll within the limit.
            let limit = c.scroll_limit.get();
            c.scroll = (c.scroll.min(limit) as i32 + lines).clamp(0, limit as i32) as u16;
        }
    }

    /// The focused column's β (on a plane with a β of its own).
    pub fn beta(&self) -> Option<Alpha> {
        self.columns.get(self.focused).and_then(|c| c.beta)
    }

    /// The pair changed for every column (α per layer edited, γ moved): say so, and
    /// regenerate every column (and the curve, where it is shown).
    fn pair_changed(&mut self, info: PairInfo, notice: String) -> Vec<Effect> {
        self.activity = "ready".to_string();
        self.notice = Some(notice);
        self.pair = PairState::Ready(info);
        let mut effects = self.rerun_all();
        if self.show_curve {
            let samples = self.curve.samples;
            effects.extend(self.start_curve(samples));
        }
        effects
    }

    /// Commas the α entry takes: one on a plane with a β of its own ("α,β"), two with a
    /// fourth endpoint's γ besides ("α,β,γ").
    fn commas_allowed(&self) -> usize {
        match (self.beta(), self.gamma()) {
            (None, _) => 0,
            (Some(_), None) => 1,
            (Some(_), Some(_)) => 2,
        }
    }

    /// D's weight γ, the same for every column, with a fourth endpoint (`--d D --gamma G`).
    pub fn gamma(&self) -> Option<f64> {
        match &self.pair {
            PairState::Ready(info) => info.gamma,
            _ => None,
        }
    }

    /// β's visible range on the pad (and the heat map's): the unit triangle with a margin,
    /// widened just enough to keep every column's β in view (so a click on the edge row keeps
    /// its β).
    pub fn beta_range(&self) -> (f64, f64) {
        self.columns
            .iter()
            .filter_map(|c| c.beta)
            .fold((-0.5, 1.5), |(lo, hi), b| {
                (lo.min(b.value()), hi.max(b.value()))
            })
    }

    /// Move the focused column's β by `step` and regenerate it.
    fn nudge_beta(&mut self, step: f64) -> Vec<Effect> {
        let Some(beta) = self.beta() else {
            self.notice = Some(
                match self.plane_term() {
                    Some(_) => {
                        "β moves with α on this recipe's plane; load with --c C --beta B to set it"
                    }
                    None => "β: the pair has no third endpoint (--c C --beta B)",
                }
                .to_string(),
            );
            return vec![];
        };
        let alpha = self.columns[self.focused].alpha;
        self.set_point(alpha, Alpha::saturating(beta.value() + step))
    }

    /// The focused column to (α, β) (on a plane; elsewhere β is refused as the β keys are),
    /// regenerated there.
    fn set_point(&mut self, alpha: Alpha, beta: Alpha) -> Vec<Effect> {
        if self.beta().is_none() {
            let mut effects = self.set_alpha(alpha);
            effects.extend(self.nudge_beta(0.0));
            return effects;
        }
        let c = &mut self.columns[self.focused];
        let moved = c.beta != Some(beta);
        c.beta = Some(beta);
        self.set_alpha_forced(alpha, moved)
    }

    fn nudge(&mut self, step: f64) -> Vec<Effect> {
        let a = self.columns[self.focused].alpha.value() + step;
        self.set_alpha(Alpha::saturating(a))
    }

    /// Set the focused column's α and regenerate it.
    pub fn set_alpha(&mut self, alpha: Alpha) -> Vec<Effect> {
        self.set_alpha_forced(alpha, false)
    }

    /// [`App::set_alpha`]; `moved` when something else about the column (its β) changed, so
    /// that an unchanged α still regenerates it.
    fn set_alpha_forced(&mut self, alpha: Alpha, moved: bool) -> Vec<Effect> {
        let c = &mut self.columns[self.focused];
        let busy = matches!(c.state, ColumnState::Queued | ColumnState::Generating);
        if c.alpha == alpha && busy && !moved {
            return vec![];
        }
        c.alpha = alpha;
        self.submit(self.focused, true)
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_job += 1;
        self.next_job
    }

    /// Generate (or in score mode, score) column `column` afresh.
    fn submit(&mut self, column: usize, urgent: bool) -> Vec<Effect> {
        // As the other columns run: score mode on with its editor still open has scored
        // nothing yet.
        let kind = if self.ran.scored {
            JobKind::Score
        } else {
            JobKind::Generate
        };
        self.submit_kind(column, urgent, kind)
    }

    fn submit_kind(&mut self, column: usize, urgent: bool, kind: JobKind) -> Vec<Effect> {
        if !self.ready() {
            return vec![];
        }
        if column == self.focused && !matches!(kind, JobKind::Fork(_)) {
            // Its tokens are about to change, and with them the α-scrub's token.
            self.cursor = None;
            self.scrub = Default::default();
        }
        let id = JobId(self.fresh_id());
        let prompt = self.ran_text().to_string();
        let c = &mut self.columns[column];
        c.job = Some(id);
        c.text.clear();
        c.raw.clear();
        c.pieces.clear();
        c.carry.clear();
        c.tokens = 0;
        c.tokens_per_s = None;
        c.run = None;
        match &kind {
            JobKind::Fork(given) => c.forks.retain(|&(t, _)| t + 1 < given.len()),
            _ => c.forks.clear(),
        }
        c.meters = None;
        c.score = None;
        c.scroll = 0;
        c.state = ColumnState::Queued;
        vec![Effect::Submit {
            column: c.id,
            job: Job {
                id,
                alpha: c.alpha,
                beta: c.beta,
                prompt,
                params: self.params,
                urgent,
                kind,
            },
        }]
    }

    /// Regenerate every column, the focused one first.
    fn submit_all(&mut self) -> Vec<Effect> {
        // What every column now runs: the edit of this mode's text (the other's stays as
        // it was until its own mode runs).
        let prompt = self.ran.prompt.clone();
        match self.score_mode {
            true => self.ran.score_text = self.score_text.text(),
            false => self.ran.prompt = self.prompt.text(),
        }
        self.ran.scored = self.score_mode;
        let mut effects = self.rerun_all();
        // The curve is the prompt's too: a shown one of the old prompt starts over.
        if self.show_curve && self.ran.prompt != prompt {
            let samples = self.curve.samples;
            effects.extend(self.start_curve(samples));
        }
        effects
    }

    /// Every column again as it last ran, the focused one first (the pair changed, or
    /// loaded): an editor open meanwhile keeps its text to itself.
    fn rerun_all(&mut self) -> Vec<Effect> {
        let mut effects = self.submit(self.focused, true);
        for i in 0..self.columns.len() {
            if i != self.focused {
                effects.extend(self.submit(i, false));
            }
        }
        effects
    }

    /// A plane's terms, "β·(C − A)" (or "α·0.5·(C − A)" for a recipe's direction at its
    /// factor, and with a fourth endpoint "… + γ·(D − A)"), from the pair's description.
    pub fn plane_term(&self) -> Option<&str> {
        let PairState::Ready(info) = &self.pair else {
            return None;
        };
        let d = &info.description;
        let at = [" + β·", " + α·"].iter().filter_map(|t| d.find(t)).min()?;
        Some(&d[at + " + ".len()..])
    }

    /// The mergekit recipe the pair was loaded from, as given.
    pub fn recipe(&self) -> Option<&str> {
        let PairState::Ready(info) = &self.pair else {
            return None;
        };
        info.others
            .iter()
            .find(|(role, _)| role == "recipe")
            .map(|(_, file)| file.as_str())
    }

    /// The pair's path beyond the line, in words (None on the line).
    pub fn path(&self) -> Option<String> {
        let PairState::Ready(info) = &self.pair else {
            return None;
        };
        let mut parts = Vec::new();
        if info.method != crate::engine::Method::Linear {
            parts.push(info.method.name().to_string());
        }
        match (&info.layers, self.plane_term()) {
            // B's factors go on its own term, as C's do (a recipe's weight on B, say).
            (Some(l), Some(c)) => {
                let k = match l.parse::<f64>() {
                    Ok(_) => format!("{l}·"),
                    Err(_) => format!("[{l}]·"),
                };
                parts.push(format!("A + α·{k}(B − A) + {c}"));
            }
            // A recipe's single weight on B is its factor, not a rule per layer.
            (Some(l), None) if self.recipe().is_some() && l.parse::<f64>().is_ok() => {
                parts.push(format!("A + α·{l}·(B − A)"))
            }
            (Some(l), None) => parts.push(format!("α per layer {l}")),
            (None, Some(c)) => parts.push(format!("A + α·(B − A) + {c}")),
            (None, None) => {}
        }
        if let Some(gamma) = info.gamma {
            parts.push(format!("γ = {gamma}"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Whether the columns' texts are replies in a turn of their own (a chat template wraps
    /// the plain prompt) rather than the prompt's continuation.
    pub fn reply_apart(&self) -> bool {
        matches!(&self.pair, PairState::Ready(info)
            if info.chat_template
                && !crate::engine::tokens::is_formatted(&self.ran.prompt, &info.turn_markers))
    }

    pub fn session(&self) -> Session {
        Session {
            a: self.a.clone(),
            b: self.b.clone(),
            sources: match &self.pair {
                PairState::Ready(info) => info.others.iter().cloned().collect(),
                _ => Default::default(),
            },
            path: self.path(),
            gamma: match &self.pair {
                PairState::Ready(info) => info.gamma,
                _ => None,
            },
            engine: match &self.pair {
                PairState::Ready(info) => Some(SessionEngine {
                    model: info.description.clone(),
                    dtype: info.dtype.clone(),
                    device: info.device.clone(),
                    columns: self.columns_mode.name().to_string(),
                }),
                _ => None,
            },
            prompt: self.ran.prompt.clone(),
            reply: self.reply_apart(),
            params: self.params,
            stop: self.stop.clone(),
            score_text: self.ran.scored.then(|| self.ran.score_text.clone()),
            columns: self
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| SessionColumn {
                    alpha: c.alpha,
                    beta: c.beta,
                    text: crate::engine::tokens::plain(&c.raw),
                    tokens: c.tokens,
                    complete: matches!(c.state, ColumnState::Done(_)),
                    error: match &c.state {
                        ColumnState::Failed(e) => Some(e.clone()),
                        _ => None,
                    },
                    token_detail: c
                        .pieces
                        .iter()
                        .enumerate()
                        .map(|(t, p)| SessionToken {
                            id: p.id,
                            text: {
                                let (s, e) = inspect::raw_span(&c.pieces, t);
                                crate::engine::tokens::plain(c.raw.get(s..e).unwrap_or_default())
                            },
                            logprob: p.info.map(|t| t.logprob),
                            entropy: p.info.map(|t| t.entropy),
                            top: p.info.map_or(Vec::new(), |t| {
                                t.top
                                    .iter()
                                    .map(|a| SessionAlternative {
                                        id: a.id,
                                        text: self.vocab.text(a.id),
                                        logprob: a.logprob,
                                    })
                                    .collect()
                            }),
                        })
                        .collect(),
                    diverges_at: self.divergence_of(i),
                    run: c.run.map(|r| r.describe()),
                    forks: c
                        .forks
                        .iter()
                        .map(|&(token, id)| SessionFork {
                            token,
                            text: self.vocab.text(id),
                        })
                        .collect(),
                    score: c
                        .score
                        .map(|(nll, perplexity)| ColumnScore { nll, perplexity }),
                    meters: c
                        .meters
                        .map(|(vader, perplexity)| ColumnMeters { vader, perplexity }),
                })
                .collect(),
        }
    }
}

/// α for the screen: two decimals, more where it has them (a typed 0.333, a found 0.3418),
/// up to six, so that columns at different points never show one number.
pub fn fmt_alpha(a: Alpha) -> String {
    let fixed = format!("{:.6}", a.value());
    let (whole, fraction) = fixed.split_once('.').expect("a fixed-point number");
    format!("{whole}.{:0<2}", fraction.trim_end_matches('0'))
}

/// Text safe to put in terminal cells: control characters (escape sequences from a model's
/// bytes) become visible replacements; newlines and tabs survive as layout.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

impl SessionColumn {
    /// " (failed)" or " (incomplete)" after its point, where it did not finish.
    pub fn unfinished(&self) -> &'static str {
        match (self.complete, &self.error) {
            (true, _) => "",
            (false, Some(_)) => " (failed)",
            (false, None) => " (incomplete)",
        }
    }

    /// "α = 0.50", or on a plane "α = 0.50, β = 0.20".
    pub fn point(&self) -> String {
        point_label(self.alpha, self.beta)
    }

    /// How its text was made: "alone at its blend", with its forks ("…, forked at token 4
    /// onto \" a\"") where the text was forked.
    pub fn how(&self) -> Option<String> {
        let forks = self
            .forks
            .iter()
            .map(|f| format!("forked at token {} onto {:?}", f.token + 1, f.text));
        let parts: Vec<String> = self.run.clone().into_iter().chain(forks).collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// A column's point for titles: "α = 0.50", or on a plane "α = 0.50, β = 0.20".
pub fn point_label(alpha: Alpha, beta: Option<Alpha>) -> String {
    match beta {
        Some(b) => format!("α = {}, β = {}", fmt_alpha(alpha), fmt_alpha(b)),
        None => format!("α = {}", fmt_alpha(alpha)),
    }
}

impl Session {
    /// What stands before each column's text: the prompt, and a line break where the text
    /// is a reply of its own (score mode: nothing, the column's text is the scored text).
    pub fn lead(&self) -> String {
        match (&self.score_text, self.reply) {
            (Some(_), _) => String::new(),
            (None, true) => format!("{}\n", self.prompt),
            (None, false) => self.prompt.clone(),
        }
    }

    /// The sampling settings, `sep` between them (Markdown and HTML write them alike).
    pub fn sampling(&self, sep: &str) -> String {
        let s = &self.params.sampling;
        [
            format!("temperature {}", s.temperature),
            format!("top-p {}", s.top_p),
            format!("top-k {}", s.top_k),
            format!("repeat penalty {}", s.repeat_penalty),
            format!("seed {}", s.seed),
            format!("max tokens {}", self.params.max_tokens),
        ]
        .into_iter()
        .chain(
            self.params
                .ignore_eos
                .then(|| "going on past end tokens".to_string()),
        )
        .chain((!self.stop.is_empty()).then(|| {
            let texts: Vec<String> = self.stop.iter().map(|t| format!("{t:?}")).collect();
            format!("stop texts {}", texts.join(", "))
        }))
        .collect::<Vec<_>>()
        .join(sep)
    }

    /// " (α = 1)" after B's label, except for a recipe, whose α = 1 is its own merge.
    pub fn b_at_one(&self) -> &'static str {
        match self.sources.contains_key("recipe") {
            true => "",
            false => " (α = 1)",
        }
    }

    /// The sources beyond A and B as `(label, source)`: C, D, the base, then the recipe
    /// that named them.
    pub fn other_sources(&self) -> Vec<(&'static str, &str)> {
        [
            ("c", "C"),
            ("d", "D"),
            ("base", "base"),
            ("recipe", "recipe (its merge at α = 1)"),
        ]
        .into_iter()
        .filter_map(|(role, label)| Some((label, self.sources.get(role)?.as_str())))
        .collect()
    }

    pub fn to_markdown(&self) -> String {
        let others: String = self
            .other_sources()
            .iter()
            .map(|(label, source)| format!("- {label}: {}\n", code_span(source)))
            .collect();
        let (settings, heading, text) = match &self.score_text {
            Some(t) => (
                "- score mode: every column scores the same text (NLL in nats, and perplexity)"
                    .to_string(),
                "Scored text",
                t.as_str(),
            ),
            None => (
                format!("- sampling: {}", md_text(&self.sampling(", "))),
                "Prompt",
                self.prompt.as_str(),
            ),
        };
        let mut md = format!(
            "# lerpscope session\n\n- A (α = 0): {}\n- B{}: {}\n{others}{}{settings}\n\n## {heading}\n\n{}\n",
            code_span(&self.a),
            self.b_at_one(),
            code_span(&self.b),
            self.path
                .as_ref()
                .map_or(String::new(), |p| format!("- path: {}\n", md_text(p)))
                + &self
                    .engine
                    .as_ref()
                    .map_or(String::new(), |e| format!("- engine: {}\n", md_text(&e.line()))),
            fenced(text)
        );
        for c in &self.columns {
            let stats = match (c.score, c.meters) {
                (Some(s), _) => format!(
                    ": NLL {:.3}, perplexity {}",
                    s.nll,
                    crate::engine::fixed(s.perplexity, 3)
                ),
                (None, Some(m)) => format!(": {}", m.line(", ")),
                (None, None) => String::new(),
            };
            md.push_str(&format!("\n## {}{}{stats}\n", c.point(), c.unfinished(),));
            if let Some(e) = &c.error {
                md.push_str(&format!("\nFailed: {}\n", md_text(e)));
            }
            match (c.how(), &c.run) {
                (Some(how), Some(_)) => md.push_str(&format!("\nRan {how}.\n")),
                (Some(how), None) => md.push_str(&format!("\nNot yet run: {how}.\n")),
                (None, _) => {}
            }
            // In score mode the column's text is the scored text itself, given once above.
            if self.score_text.is_none() {
                md.push_str(&format!(
                    "\n{}\n",
                    fenced(&format!("{}{}", self.lead(), c.text))
                ));
            }
        }
        md
    }
}

/// `s` as literal Markdown text: the punctuation that could start markup or HTML escaped
/// (a stop text `</s>` would otherwise vanish as a tag).
fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '&' | '~' | '!' | '|' | '#'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `s` as a Markdown code span, in a run of backticks longer than any inside it (a path may
/// hold one).
fn code_span(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let ticks = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{s}{pad}{ticks}")
}

/// `text` verbatim in a Markdown code fence longer than any run of backticks inside it, so
/// that nothing in a prompt or a model's text closes it or renders as Markdown or HTML.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}\n{text}\n{fence}")
}

/// How a failure reads on screen: its line (a memory error's has the numbers and a smaller
/// dtype to try), and for a memory error what else the UI can do about it.
pub fn explain(f: &Failure) -> String {
    if f.is_memory() {
        format!("{f}; or run fewer columns (each holds a key/value cache), or --device cpu")
    } else {
        f.to_string()
    }
}
