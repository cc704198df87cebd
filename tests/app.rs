//! App state transitions: message in, state and effects out. No terminal, no engine.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use lerpscope::app::keymap::Keymap;
use lerpscope::app::{App, ColumnState, Effect, Mode, Msg, PairState};
use lerpscope::engine::{Alpha, GenerationParams, PairInfo, StopReason};
use lerpscope::eval::find::{Outcome, Verdict};
use lerpscope::eval::stats::estimate;
use lerpscope::session::{ColumnId, ColumnRun, EngineEvent, FindReport, JobId};

fn info() -> PairInfo {
    PairInfo {
        a: "neg".into(),
        b: "pos".into(),
        description: "A ↔ B".into(),
        architecture: "LlamaForCausalLM".into(),
        params: 2_400_000,
        dtype: "f32".into(),
        device: "cpu".into(),
        buffer_bytes: 9_600_000,
        gpu_memory: None,
        chat_template: false,
        turn_markers: vec![],
        method: Default::default(),
        layers: None,
        beta: None,
        gamma: None,
        layers_fixed: None,
        layer_strip: vec![],
        others: vec![],
    }
}

/// A plane with a β of its own, loaded at β = 0.5.
fn plane_info() -> PairInfo {
    PairInfo {
        description: "A ↔ B + β·(C − A)".into(),
        beta: Some(0.5),
        ..info()
    }
}

/// The screen of `a` drawn at `w` × `h`, one string per row.
fn screen_rows(a: &App, w: u16, h: u16) -> Vec<String> {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
    t.draw(|f| lerpscope::ui::view(a, f)).unwrap();
    let buf = t.backend().buffer();
    (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect())
        .collect()
}

/// The engine's meters for column 1 of `loaded()`, as its job finished.
fn meters_on(a: &mut App, job: JobId, vader: f64, perplexity: f64) {
    a.update(Msg::Engine(EngineEvent::Scored {
        column: ColumnId(1),
        job,
        vader,
        perplexity,
    }));
}

fn app() -> App {
    App::new(
        "neg".into(),
        "pos".into(),
        "The food",
        &[Alpha::A, Alpha::new(0.5).unwrap(), Alpha::B],
        GenerationParams::default(),
        Keymap::default(),
    )
}

/// A submission as the tests look at it: the column's id number, α as a plain number.
#[derive(Debug, Clone)]
struct Sub {
    column: u64,
    id: JobId,
    alpha: f64,
    beta: Option<f64>,
    urgent: bool,
    prompt: String,
    params: GenerationParams,
}

fn alpha(a: &App, i: usize) -> f64 {
    a.columns[i].alpha.value()
}

fn loaded() -> (App, Vec<Sub>) {
    let mut a = app();
    let jobs = jobs(a.update(Msg::Engine(EngineEvent::Loaded(info()))));
    (a, jobs)
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn shift(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::SHIFT))
}

fn jobs(effects: Vec<Effect>) -> Vec<Sub> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Submit { column, job } => Some(Sub {
                column: column.0,
                id: job.id,
                alpha: job.alpha.value(),
                beta: job.beta.map(|b| b.value()),
                urgent: job.urgent,
                prompt: job.prompt,
                params: job.params,
            }),
            _ => None,
        })
        .collect()
}

#[test]
fn nothing_is_submitted_before_the_pair_loads() {
    let mut a = app();
    assert!(a.update(key(KeyCode::Right)).is_empty());
    assert_eq!(alpha(&a, 0), 0.05);
    assert_eq!(a.columns[0].state, ColumnState::Idle);
}

#[test]
fn loading_submits_every_column_focused_first() {
    let (a, jobs) = loaded();
    assert!(matches!(a.pair, PairState::Ready(_)));
    assert_eq!(jobs.iter().map(|j| j.column).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(jobs[0].urgent && !jobs[1].urgent);
    assert_eq!(
        jobs.iter().map(|j| j.alpha).collect::<Vec<_>>(),
        [0.0, 0.5, 1.0]
    );
    assert!(jobs.iter().all(|j| j.prompt == "The food"));
    // One seed for every column: the columns stay comparable.
    assert!(jobs
        .iter()
        .all(|j| j.params.sampling.seed == jobs[0].params.sampling.seed));
}

#[test]
fn load_failure_is_shown_and_nothing_runs() {
    let mut a = app();
    let e = a.update(Msg::Engine(EngineEvent::LoadFailed(
        "b/config.json: cannot read".into(),
    )));
    assert!(e.is_empty());
    assert_eq!(
        a.pair,
        PairState::Failed("b/config.json: cannot read".into())
    );
    assert!(a.last_error.as_deref().unwrap().contains("config.json"));
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(a.update(key(KeyCode::Char('q'))), vec![Effect::Quit]);
}

#[test]
fn arrows_move_the_focused_alpha_and_regenerate_only_that_column() {
    let (mut a, _) = loaded();
    a.update(key(KeyCode::Tab));
    assert_eq!(a.focused, 1);
    let j = jobs(a.update(key(KeyCode::Right)));
    assert_eq!(j.len(), 1);
    assert_eq!((j[0].column, j[0].alpha, j[0].urgent), (1, 0.55, true));
    let j = jobs(a.update(shift(KeyCode::Left)));
    assert_eq!(j[0].alpha, 0.3);
    // Steps land on the α grid, with no binary noise.
    for _ in 0..7 {
        a.update(key(KeyCode::Right));
    }
    assert_eq!(alpha(&a, 1), 0.65);
    assert_eq!(a.columns[1].state, ColumnState::Queued);
    assert_eq!(alpha(&a, 0), 0.0);
}

#[test]
fn typing_a_number_sets_alpha_exactly() {
    let (mut a, _) = loaded();
    for c in "-0.75".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    assert_eq!(a.mode, Mode::EnterAlpha("-0.75".into()));
    let j = jobs(a.update(key(KeyCode::Enter)));
    assert_eq!(j[0].alpha, -0.75);
    assert_eq!(a.mode, Mode::Normal);
    // Past 24 characters nothing more is taken, and the entry says so.
    for _ in 0..30 {
        a.update(key(KeyCode::Char('0')));
    }
    assert_eq!(a.mode, Mode::EnterAlpha("0".repeat(24)));
    assert!(a.last_error.as_deref().unwrap().contains("24 characters"));
    a.update(key(KeyCode::Esc));
    a.last_error = None;
    // Nonsense is refused with a message, α unchanged.
    for c in "1e9".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    assert!(jobs(a.update(key(KeyCode::Enter))).is_empty());
    assert!(a.last_error.as_deref().unwrap().contains("absurd"));
    assert_eq!(alpha(&a, 0), -0.75);
    // Esc cancels.
    a.update(key(KeyCode::Char('3')));
    a.update(key(KeyCode::Esc));
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(alpha(&a, 0), -0.75);
}

/// A key bound to the α entry that is not part of a number opens it empty.
#[test]
fn a_rebound_alpha_entry_key_opens_it_empty() {
    let keys = Keymap::from_toml(
        "[keys]\ntype_alpha = [\"=\", \"0\", \"1\", \"2\", \"3\", \"4\", \"5\", \"6\", \"7\", \"8\", \"9\", \".\", \"-\", \",\"]",
        std::path::Path::new("k.toml"),
    )
    .unwrap();
    let mut a = App::new(
        "neg".into(),
        "pos".into(),
        "The food",
        &[Alpha::A],
        GenerationParams::default(),
        keys,
    );
    a.update(Msg::Engine(EngineEvent::Loaded(info())));
    a.update(key(KeyCode::Char('=')));
    assert_eq!(a.mode, Mode::EnterAlpha(String::new()));
    for c in "0.3".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    let j = jobs(a.update(key(KeyCode::Enter)));
    assert_eq!(j[0].alpha, 0.3);
}

#[test]
fn stale_events_are_ignored_and_current_ones_stream() {
    let (mut a, first) = loaded();
    let old = first[0].id;
    let new = jobs(a.update(key(KeyCode::Right)))[0].id;
    a.update(Msg::Engine(EngineEvent::Text {
        column: ColumnId(0),
        job: old,
        piece: "old".into(),
        token: None,
    }));
    assert_eq!(a.columns[0].text, "");
    a.update(Msg::Engine(EngineEvent::Started {
        column: ColumnId(0),
        job: new,
        run: ColumnRun::Blended { ms: 0.4 },
    }));
    assert_eq!(a.columns[0].state, ColumnState::Generating);
    a.update(Msg::Engine(EngineEvent::Text {
        column: ColumnId(0),
        job: new,
        piece: " was".into(),
        token: None,
    }));
    a.update(Msg::Engine(EngineEvent::Text {
        column: ColumnId(0),
        job: new,
        piece: " \u{1b}[2J good".into(),
        token: None,
    }));
    assert_eq!(
        a.columns[0].text, " was \u{FFFD}[2J good",
        "control characters are neutralised"
    );
    a.update(Msg::Engine(EngineEvent::Done {
        column: ColumnId(0),
        job: new,
        tokens: 2,
        tokens_per_s: 300.0,
        stop: StopReason::MaxTokens,
    }));
    assert_eq!(a.columns[0].state, ColumnState::Done(StopReason::MaxTokens));
    assert_eq!(a.last_blend_ms, Some(0.4));
    assert_eq!(a.last_tokens_per_s, Some(300.0));
}

#[test]
fn engine_errors_show_in_the_column_and_status() {
    let (mut a, jobs0) = loaded();
    a.update(Msg::Engine(EngineEvent::Failed {
        column: ColumnId(1),
        job: jobs0[1].id,
        error: "non-finite logits".into(),
    }));
    assert_eq!(
        a.columns[1].state,
        ColumnState::Failed("non-finite logits".into())
    );
    assert_eq!(a.last_error.as_deref(), Some("non-finite logits"));
    // Once every column has failed the status no longer says they are generating, and the
    // next key clears the error it showed (the columns keep theirs).
    for job in &jobs0 {
        a.update(Msg::Engine(EngineEvent::Failed {
            column: ColumnId(job.column),
            job: job.id,
            error: "non-finite logits".into(),
        }));
    }
    assert_eq!(a.activity, "idle");
    a.update(key(KeyCode::Tab));
    assert!(a.last_error.is_none());
    assert!(matches!(a.columns[1].state, ColumnState::Failed(_)));
}

#[test]
fn prompt_editing_and_enter_regenerates_everything() {
    let (mut a, _) = loaded();
    a.update(key(KeyCode::Char('e')));
    assert_eq!(a.mode, Mode::EditPrompt);
    // Keys that are actions elsewhere are text here.
    for c in " q was".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    a.update(Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT)));
    a.update(Msg::Paste("ok".into()));
    let j = jobs(a.update(key(KeyCode::Enter)));
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(j.len(), 3);
    assert_eq!(j[0].prompt, "The food q was\nok");
}

/// An edit left with Esc runs nowhere: an α move, a new column and the saved session keep
/// the prompt the columns ran, until Enter runs every column with the edit.
#[test]
fn an_edit_left_with_esc_is_not_run_until_enter() {
    let (mut a, _) = loaded();
    a.update(key(KeyCode::Char('e')));
    for c in " NOT RUN".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    assert!(jobs(a.update(key(KeyCode::Esc))).is_empty());
    assert!(a.edit_pending());
    assert_eq!(a.prompt.text(), "The food NOT RUN");
    let j = jobs(a.update(key(KeyCode::Right)));
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].prompt, "The food");
    let j = jobs(a.update(key(KeyCode::Char('a'))));
    assert_eq!(j[0].prompt, "The food");
    // A new seed, or every column again, reruns what ran.
    for k in ['r', '\n'] {
        let code = if k == '\n' {
            KeyCode::Enter
        } else {
            KeyCode::Char(k)
        };
        let j = jobs(a.update(key(code)));
        assert!(
            j.len() == 4 && j.iter().all(|x| x.prompt == "The food"),
            "{j:?}"
        );
    }
    assert_eq!(a.session().prompt, "The food");
    a.update(key(KeyCode::Char('e')));
    let j = jobs(a.update(key(KeyCode::Enter)));
    assert_eq!(j.len(), 4);
    assert!(j.iter().all(|x| x.prompt == "The food NOT RUN"));
    assert!(!a.edit_pending());
    assert_eq!(a.session().prompt, "The food NOT RUN");
    // The same for the text score mode scores.
    a.update(key(KeyCode::Char('S')));
    a.update(Msg::Paste("Scored.".into()));
    assert_eq!(jobs(a.update(key(KeyCode::Enter))).len(), 4);
    a.update(key(KeyCode::Char('e')));
    a.update(Msg::Paste(" More.".into()));
    a.update(key(KeyCode::Esc));
    let j = jobs(a.update(key(KeyCode::Right)));
    assert_eq!(j[0].prompt, "Scored.");
    assert_eq!(a.session().score_text.as_deref(), Some("Scored."));
}

/// A load (or a pair changed under the columns) runs every column as it last ran: an
/// editor open meanwhile keeps its half-typed text, and score mode with nothing scored yet
/// still shows generations.
#[test]
fn a_load_runs_what_ran_not_an_open_editor() {
    let mut a = app();
    a.update(key(KeyCode::Char('S')));
    assert!(a.score_mode && !a.scored());
    let j = jobs(a.update(Msg::Engine(EngineEvent::Loaded(info()))));
    assert_eq!(j.len(), 3);
    assert!(j.iter().all(|x| x.prompt == "The food"), "{j:?}");
    assert!(!a.scored());
    a.update(key(KeyCode::Esc));
    assert!(!a.score_mode);
    a.update(key(KeyCode::Char('e')));
    a.update(Msg::Paste(" half".into()));
    let j = jobs(a.update(Msg::Engine(EngineEvent::LayersChanged(Ok(
        Box::new(info()),
    )))));
    assert!(
        j.len() == 3 && j.iter().all(|x| x.prompt == "The food"),
        "{j:?}"
    );
    assert_eq!(a.mode, Mode::EditPrompt);
    assert_eq!(a.prompt.text(), "The food half");
}

/// Score mode left with Esc before anything was scored is generating again (nothing would
/// score an empty text), and S runs the text of the mode it switches to: a prompt edit left
/// with Esc stays unrun while score mode is on, and runs as S leaves it.
#[test]
fn score_mode_left_unscored_generates_and_modes_keep_their_own_texts() {
    let (mut a, _) = loaded();
    a.update(key(KeyCode::Char('S')));
    assert_eq!(a.mode, Mode::EditPrompt);
    a.update(Msg::Paste("Hello there.".into()));
    assert!(jobs(a.update(key(KeyCode::Esc))).is_empty());
    assert!(!a.score_mode);
    let j = jobs(a.update(key(KeyCode::Right)));
    assert_eq!(j[0].prompt, "The food");
    // A prompt edit left unrun, then score mode on (its text scored) and off again.
    a.update(key(KeyCode::Char('e')));
    a.update(Msg::Paste(" DRAFT".into()));
    a.update(key(KeyCode::Esc));
    let j = jobs(a.update(key(KeyCode::Char('S'))));
    assert!(j.iter().all(|x| x.prompt == "Hello there."), "{j:?}");
    let mut s = a.session();
    assert_eq!(s.prompt, "The food");
    let j = jobs(a.update(key(KeyCode::Char('S'))));
    assert!(j.iter().all(|x| x.prompt == "The food DRAFT"), "{j:?}");
    s = a.session();
    assert_eq!(s.prompt, "The food DRAFT");
    // Scored once, then back to generating: S opening an empty editor and Esc leave the
    // columns generating, and the session says so.
    a.update(key(KeyCode::Char('S')));
    assert!(a.score_mode);
    a.update(key(KeyCode::Char('e')));
    a.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    a.update(key(KeyCode::Esc));
    let j = jobs(a.update(key(KeyCode::Char('S'))));
    assert!(!a.score_mode && j.iter().all(|x| x.prompt == "The food DRAFT"));
    a.update(key(KeyCode::Char('S')));
    assert_eq!(a.mode, Mode::EditPrompt);
    a.update(key(KeyCode::Esc));
    assert!(!a.score_mode);
    assert_eq!(a.session().score_text, None);
    // An empty α entry closes with Enter, running nothing.
    a.update(key(KeyCode::Char('1')));
    a.update(key(KeyCode::Backspace));
    assert_eq!(a.mode, Mode::Normal);
    a.update(key(KeyCode::Char('1')));
    a.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    assert!(jobs(a.update(key(KeyCode::Enter))).is_empty());
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn resample_changes_the_seed_for_all_columns_alike() {
    let (mut a, first) = loaded();
    let j = jobs(a.update(key(KeyCode::Char('r'))));
    assert_eq!(j.len(), 3);
    let seed = j[0].params.sampling.seed;
    assert_ne!(seed, first[0].params.sampling.seed);
    assert!(j.iter().all(|x| x.params.sampling.seed == seed));
}

#[test]
fn adding_and_removing_columns() {
    let (mut a, _) = loaded();
    let j = jobs(a.update(key(KeyCode::Char('a'))));
    assert_eq!(a.columns.len(), 4);
    assert_eq!((j[0].column, j[0].alpha), (3, 1.5));
    assert_eq!(a.focused, 3);
    a.update(key(KeyCode::Tab)); // wraps to column 0
    a.update(key(KeyCode::Tab));
    assert_eq!(a.focused, 1);
    let e = a.update(key(KeyCode::Char('x')));
    assert_eq!(
        a.columns
            .iter()
            .map(|c| c.alpha.value())
            .collect::<Vec<_>>(),
        [0.0, 1.0, 1.5]
    );
    // Only the removed column's work stops: no other column is resubmitted.
    assert_eq!(
        e,
        vec![Effect::Remove {
            column: ColumnId(1)
        }]
    );
    assert_eq!(
        a.columns.iter().map(|c| c.id).collect::<Vec<_>>(),
        [ColumnId(0), ColumnId(2), ColumnId(3)]
    );
    a.update(key(KeyCode::Char('x')));
    a.update(key(KeyCode::Char('x')));
    assert_eq!(a.columns.len(), 1);
    assert!(
        a.update(key(KeyCode::Char('x'))).is_empty(),
        "the last column stays"
    );
}

#[test]
fn removing_the_middle_column_leaves_the_others_streaming() {
    let (mut a, first) = loaded();
    let text = |a: &mut App, sub: &Sub, piece: &str| {
        a.update(Msg::Engine(EngineEvent::Text {
            column: ColumnId(sub.column),
            job: sub.id,
            piece: piece.into(),
            token: None,
        }))
    };
    for s in &first {
        text(&mut a, s, "The");
    }
    a.update(key(KeyCode::Tab));
    let e = a.update(key(KeyCode::Char('x')));
    assert!(jobs(e).is_empty(), "no new job for the others");
    // The others keep their text and keep streaming; the removed one's events are dropped.
    for s in &first {
        text(&mut a, s, " end");
    }
    assert_eq!(
        a.columns
            .iter()
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>(),
        ["The end", "The end"]
    );
}

#[test]
fn help_toggles_and_any_key_closes_it() {
    let (mut a, _) = loaded();
    a.update(key(KeyCode::Char('?')));
    assert!(a.show_help);
    assert!(
        a.update(key(KeyCode::Right)).is_empty(),
        "keys do not act behind the help"
    );
    assert!(!a.show_help);
}

#[test]
fn ctrl_c_quits_from_any_mode() {
    let (mut a, _) = loaded();
    a.update(key(KeyCode::Char('e')));
    let e = a.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert_eq!(e, vec![Effect::Quit]);
}

/// A pair loaded from a mergekit recipe names it in the saved session, beside its sources.
#[test]
fn a_session_names_the_recipe_its_pair_came_from() {
    let mut a = app();
    a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        others: vec![("recipe".into(), "merges/m.yaml".into())],
        ..info()
    })));
    let s = a.session();
    let md = s.to_markdown();
    assert!(
        md.contains("- recipe (its merge at α = 1): `merges/m.yaml`"),
        "{md}"
    );
    assert!(md.contains("- B: `pos`"), "{md}");
    let html = lerpscope::app::html::render(&s);
    assert!(
        html.contains("recipe (its merge at α = 1): merges/m.yaml"),
        "{html}"
    );
}

#[test]
fn save_produces_the_session() {
    let (mut a, first) = loaded();
    // Columns 0 and 1 ran as one batch, column 2 alone; each says so, in every format.
    for (i, run) in [
        ColumnRun::Batch { rows: 2 },
        ColumnRun::Batch { rows: 2 },
        ColumnRun::Blended { ms: 0.3 },
    ]
    .into_iter()
    .enumerate()
    {
        a.update(Msg::Engine(EngineEvent::Started {
            column: ColumnId(i as u64),
            job: first[i].id,
            run,
        }));
    }
    a.update(Msg::Engine(EngineEvent::Text {
        column: ColumnId(2),
        job: first[2].id,
        piece: " was great".into(),
        token: None,
    }));
    let e = a.update(key(KeyCode::Char('s')));
    let Effect::Save(s) = &e[0] else {
        panic!("{e:?}")
    };
    assert_eq!(s.prompt, "The food");
    assert_eq!(s.columns[2].text, " was great");
    let md = s.to_markdown();
    assert!(md.contains("## α = 1.00") && md.contains("The food was great"));
    assert!(
        s.path.is_none() && !md.contains("path:"),
        "the line has no path line"
    );
    assert!(
        md.contains("## α = 0.00 (incomplete)\n\nRan a row of a batch of 2.\n"),
        "{md}"
    );
    assert!(
        md.contains("## α = 1.00 (incomplete)\n\nRan alone at its blend.\n"),
        "{md}"
    );
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["columns"][1]["run"], "a row of a batch of 2");
    assert_eq!(json["columns"][2]["run"], "alone at its blend");
    assert!(lerpscope::app::html::render(s).contains("a row of a batch of 2"));
    // A column sent again has not run yet: what ran before no longer describes its text.
    a.update(key(KeyCode::Right));
    let Effect::Save(s) = &a.update(key(KeyCode::Char('s')))[0] else {
        panic!("no save")
    };
    let runs: Vec<_> = s.columns.iter().map(|c| c.run.as_deref()).collect();
    assert_eq!(runs[0], None, "{runs:?}");
    // The stop texts the columns ran with are part of the settings.
    assert!(!s.to_markdown().contains("stop texts"));
    a.stop = vec!["bomb".into(), "a \"b\"".into()];
    let Effect::Save(s) = &a.update(key(KeyCode::Char('s')))[0] else {
        panic!("no save")
    };
    // Literal in Markdown: its backslashes and a tag-like stop text escaped.
    assert!(
        s.to_markdown()
            .contains(r#"max tokens 64, stop texts "bomb", "a \\"b\\"""#),
        "{}",
        s.to_markdown()
    );
    assert_eq!(serde_json::to_value(s).unwrap()["stop"][0], "bomb");
    a.stop = vec!["</s>".into()];
    let Effect::Save(s) = &a.update(key(KeyCode::Char('s')))[0] else {
        panic!("no save")
    };
    assert!(
        s.to_markdown().contains(r#"stop texts "\</s\>""#),
        "{}",
        s.to_markdown()
    );
    assert!(!s.to_markdown().contains("end tokens"));
    a.params.ignore_eos = true;
    let Effect::Save(s) = &a.update(key(KeyCode::Char('s')))[0] else {
        panic!("no save")
    };
    assert!(s
        .to_markdown()
        .contains("max tokens 64, going on past end tokens, stop texts"));
    a.update(Msg::Saved(Ok("/tmp/x.md".into())));
    assert!(a.notice.as_deref().unwrap().contains("/tmp/x.md"));
}

/// A saved session holds the model's text as it came (a tab, a control character), where the
/// screen shows it made safe; a column that failed says why, in every form.
#[test]
fn a_saved_session_keeps_the_models_characters_and_its_failures() {
    let (mut a, first) = loaded();
    for (piece, id) in [(" a\tb", 7), ("\u{8}c\u{85}", 9)] {
        a.update(Msg::Engine(EngineEvent::Text {
            column: ColumnId(0),
            job: first[0].id,
            piece: piece.into(),
            token: Some(lerpscope::session::Token { id, info: None }),
        }));
    }
    assert_eq!(
        a.columns[0].text, " a b\u{FFFD}c\u{FFFD}",
        "the screen's text"
    );
    a.update(Msg::Engine(EngineEvent::Failed {
        column: ColumnId(1),
        job: first[1].id,
        error: "the prompt has 301 tokens; the model's context is 256".into(),
    }));
    let Effect::Save(s) = &a.update(key(KeyCode::Char('s')))[0] else {
        panic!("no save")
    };
    assert_eq!(s.columns[0].text, " a\tb\u{8}c\u{85}");
    let texts: Vec<&str> = s.columns[0]
        .token_detail
        .iter()
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(texts, [" a\tb", "\u{8}c\u{85}"]);
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["columns"][0]["text"], " a\tb\u{8}c\u{85}");
    assert!(json["columns"][0].get("error").is_none());
    assert_eq!(
        json["columns"][1]["error"],
        "the prompt has 301 tokens; the model's context is 256"
    );
    let md = s.to_markdown();
    assert!(
        md.contains("## α = 0.50 (failed)\n\nFailed: the prompt has 301 tokens"),
        "{md}"
    );
    assert!(md.contains("## α = 0.00 (incomplete)"), "{md}");
    let html = lerpscope::app::html::render(s);
    assert!(
        html.contains("(failed)") && html.contains("failed: the prompt has 301 tokens"),
        "{html}"
    );
}

/// The Markdown keeps a prompt and a model's text verbatim: a line of backticks or HTML in
/// either cannot close the fence or render; a chat reply starts on a line of its own.
#[test]
fn a_saved_session_keeps_its_texts_verbatim_in_markdown() {
    let (mut a, first) = loaded();
    a.update(Msg::Engine(EngineEvent::Text {
        column: ColumnId(0),
        job: first[0].id,
        piece: " <b>bold</b> ````".into(),
        token: None,
    }));
    let e = a.update(key(KeyCode::Char('s')));
    let Effect::Save(s) = &e[0] else {
        panic!("{e:?}")
    };
    let mut s = s.clone();
    s.prompt = "```\n# not a heading".into();
    let md = s.to_markdown();
    assert!(
        md.contains("`````\n```\n# not a heading <b>bold</b> ````\n`````"),
        "{md}"
    );
    s.reply = true;
    assert!(s.to_markdown().contains("# not a heading\n <b>bold</b>"));
}

/// A plane's C and the adapters' base are named in all three saved forms, so the session can
/// be loaded again; score mode's Markdown says so and gives each column's NLL and perplexity.
#[test]
fn a_saved_session_names_every_source_and_says_when_it_scored() {
    let mut a = app();
    a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        others: vec![
            ("c".into(), "adapters/positive".into()),
            ("base".into(), "SmolLM2.Q4_1.gguf".into()),
        ],
        ..plane_info()
    })));
    let e = a.update(key(KeyCode::Char('s')));
    let Effect::Save(s) = &e[0] else {
        panic!("{e:?}")
    };
    let md = s.to_markdown();
    assert!(
        md.contains("- C: `adapters/positive`\n- base: `SmolLM2.Q4_1.gguf`\n"),
        "{md}"
    );
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["sources"]["c"], "adapters/positive");
    assert_eq!(json["sources"]["base"], "SmolLM2.Q4_1.gguf");
    let html = lerpscope::app::html::render(s);
    assert!(html.contains("columns between A, B and C</h1>"), "{html}");
    // The prompt's right-to-left text does not reorder the text after it, and tokens are not
    // isolated from each other: a right-to-left word spelled in several reads as one.
    assert!(
        html.contains(".prompt, .tip { unicode-bidi: isolate; }") && !html.contains(".t,"),
        "{html}"
    );
    assert!(
        html.contains(" · C: adapters/positive · base: SmolLM2.Q4_1.gguf"),
        "{html}"
    );

    let mut scored = s.clone();
    scored.score_text = Some("The food was cold.".into());
    for c in &mut scored.columns {
        c.text = "The food was cold.".into();
        c.score = Some(lerpscope::app::ColumnScore {
            nll: 12.5,
            perplexity: 3.25,
        });
    }
    // The page holds the scored text itself, so a failed column's loses nothing.
    let html = lerpscope::app::html::render(&scored);
    assert!(
        html.contains("<summary>the scored text (18 characters)</summary><div class=\"text prompt\">The food was cold.</div>"),
        "{html}"
    );
    let md = scored.to_markdown();
    assert!(
        md.contains("- score mode: every column scores the same text"),
        "{md}"
    );
    assert!(
        md.contains("## Scored text\n\n```\nThe food was cold.\n```"),
        "{md}"
    );
    assert!(
        !md.contains("## Prompt") && !md.contains("sampling:"),
        "{md}"
    );
    assert!(md.contains(": NLL 12.500, perplexity 3.250\n"), "{md}");
    assert_eq!(md.matches("The food was cold.").count(), 1, "{md}");
    // The JSON keys each number: nll as `score --json` names it, perplexity in full.
    let json = serde_json::to_value(&scored).unwrap();
    let score = &json["columns"][0]["score"];
    assert_eq!(
        (score["nll"].as_f64(), score["perplexity"].as_f64()),
        (Some(12.5), Some(3.25))
    );
}

#[test]
fn clicking_and_dragging_the_slider_sets_alpha() {
    let (mut a, _) = loaded();
    a.update(Msg::Resize(100, 30));
    let areas = lerpscope::ui::layout(ratatui::layout::Rect::new(0, 0, 100, 30), &a);
    let track = areas.slider_track.unwrap();
    let mut dragging = false;
    // The runtime maps each mouse event onto what was drawn, then the app acts on it.
    let mut mouse = |a: &mut App, kind, column, row| {
        let m = MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        };
        match lerpscope::ui::pointer(a, &areas, &mut dragging, m) {
            Some(p) => a.update(Msg::Pointer(p)),
            None => vec![],
        }
    };
    // The right end of the track is the top of the range.
    let j = jobs(mouse(
        &mut a,
        MouseEventKind::Down(MouseButton::Left),
        track.x + track.width - 1,
        track.y,
    ));
    assert_eq!(j[0].alpha, 2.0);
    let j = jobs(mouse(
        &mut a,
        MouseEventKind::Drag(MouseButton::Left),
        track.x,
        track.y,
    ));
    assert_eq!(j[0].alpha, -1.0);
    mouse(
        &mut a,
        MouseEventKind::Up(MouseButton::Left),
        track.x,
        track.y,
    );
    // Clicking a column focuses it.
    let (i, r) = areas.columns[2];
    mouse(
        &mut a,
        MouseEventKind::Down(MouseButton::Left),
        r.x + 2,
        r.y + 2,
    );
    assert_eq!(a.focused, i);
    // With the help open, a press on the slider closes the help and moves nothing.
    a.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('?'),
        KeyModifiers::NONE,
    )));
    assert!(a.show_help);
    let press = MouseEventKind::Down(MouseButton::Left);
    assert!(jobs(mouse(&mut a, press, track.x, track.y)).is_empty());
    assert!(!a.show_help);
    // A press on the header (nothing to press there) stops an animation, as a key does.
    a.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('v'),
        KeyModifiers::NONE,
    )));
    assert!(a.animating.is_some());
    assert!(jobs(mouse(&mut a, press, 1, 0)).is_empty());
    assert!(a.animating.is_none());
}

#[test]
fn clicking_a_column_at_the_edge_of_the_window_does_not_shift_the_others() {
    let (mut a, _) = loaded();
    for _ in 0..3 {
        a.update(key(KeyCode::Char('a')));
    }
    assert_eq!(a.columns.len(), 6);
    a.update(Msg::Resize(60, 30));
    let rect = ratatui::layout::Rect::new(0, 0, 60, 30);
    while a.focused + 1 < a.columns.len() {
        a.update(key(KeyCode::Tab));
        lerpscope::ui::layout(rect, &a);
    }
    let shown = |a: &App| -> Vec<usize> {
        let areas = lerpscope::ui::layout(rect, a);
        areas.columns.iter().map(|(i, _)| *i).collect()
    };
    assert_eq!(shown(&a), [3, 4, 5]);
    let areas = lerpscope::ui::layout(rect, &a);
    let (i, r) = areas.columns[0];
    let m = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: r.x + 2,
        row: r.y + 2,
        modifiers: KeyModifiers::NONE,
    };
    let p = lerpscope::ui::pointer(&a, &areas, &mut false, m).unwrap();
    a.update(Msg::Pointer(p));
    assert_eq!(a.focused, i);
    assert_eq!(
        shown(&a),
        [3, 4, 5],
        "the clicked column stays under the pointer"
    );
    // Focus past the window's left edge moves it by one.
    a.update(key(KeyCode::BackTab));
    assert_eq!(shown(&a), [2, 3, 4]);
}

#[test]
fn meters_arrive_after_completion_and_clear_on_regeneration() {
    let (mut a, first) = loaded();
    meters_on(&mut a, first[1].id, 0.42, 23.5);
    assert_eq!(a.columns[1].meters, Some((0.42, 23.5)));
    // A stale score is dropped; a new job clears the old meters.
    a.update(key(KeyCode::Tab));
    a.update(key(KeyCode::Right));
    assert_eq!(a.columns[1].meters, None);
    meters_on(&mut a, first[1].id, 0.1, 9.0);
    assert_eq!(a.columns[1].meters, None);
}

/// A column too narrow for its meters in full shows what fits, the sentiment first.
#[test]
fn a_narrow_column_keeps_its_sentiment_meter() {
    let (mut a, first) = loaded();
    meters_on(&mut a, first[1].id, 0.42, 23.5);
    let mut screen = |w: u16| {
        a.size = (w, 30);
        screen_rows(&a, w, 30).join("\n")
    };
    assert!(screen(120).contains(" VADER +0.42 · ppl 23.5 "));
    let narrow = screen(60);
    assert!(
        narrow.contains(" V +0.42 ") && !narrow.contains("VADER"),
        "{narrow}"
    );
}

#[test]
fn a_saved_session_holds_the_meters_of_its_columns() {
    let (mut a, first) = loaded();
    meters_on(&mut a, first[1].id, 0.42, 23.5);
    let s = a.session();
    let md = s.to_markdown();
    assert!(md.contains(": VADER +0.42, ppl 23.5\n"), "{md}");
    assert_eq!(md.matches("VADER").count(), 1, "{md}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json["columns"][1]["meters"],
        serde_json::json!({"vader": 0.42, "perplexity": 23.5})
    );
    assert!(json["columns"][0].get("meters").is_none());
    let html = lerpscope::app::html::render(&s);
    assert!(html.contains(" · VADER +0.42 · ppl 23.5</small>"), "{html}");
}

#[test]
fn the_curve_panel_runs_a_quick_sweep_and_collects_its_points() {
    let (mut a, _) = loaded();
    let e = a.update(key(KeyCode::Char('g')));
    assert!(a.show_curve);
    let Effect::Curve(job) = &e[0] else {
        panic!("{e:?}")
    };
    assert_eq!(job.alphas.first().map(|a| a.value()), Some(-1.0));
    assert_eq!(job.alphas.last().map(|a| a.value()), Some(2.0));
    assert_eq!(job.prompt, "The food");
    assert_eq!(job.samples, lerpscope::app::CURVE_SAMPLES);
    let point = estimate(&[-0.5, -0.3]);
    a.update(Msg::Engine(EngineEvent::CurvePoint {
        id: job.id,
        alpha: Alpha::new(-1.0).unwrap(),
        beta: None,
        vader: point,
    }));
    a.update(Msg::Engine(EngineEvent::CurvePoint {
        id: job.id + 99,
        alpha: Alpha::A,
        beta: None,
        vader: estimate(&[0.9]),
    }));
    assert_eq!(
        a.curve.points,
        vec![(Alpha::new(-1.0).unwrap(), point)],
        "points of another sweep are ignored"
    );
    // + doubles the samples per point: a new sweep, whose points replace the old ones.
    let e = a.update(key(KeyCode::Char('+')));
    let Effect::Curve(more) = &e[0] else {
        panic!("{e:?}")
    };
    assert_eq!(more.samples, 2 * job.samples);
    assert_ne!(more.id, job.id);
    assert!(a.curve.points.is_empty());
    assert_eq!(a.curve.samples, more.samples);
    for _ in 0..10 {
        a.update(key(KeyCode::Char('+')));
    }
    assert_eq!(a.curve.samples, lerpscope::app::CURVE_MAX_SAMPLES);
    let running = a.curve.id;
    assert_eq!(
        a.update(key(KeyCode::Char('g'))),
        vec![Effect::CancelCurve(running)],
        "closing stops the unfinished sweep"
    );
    assert!(!a.show_curve);
    assert!(
        a.update(key(KeyCode::Char('+'))).is_empty(),
        "+ with the curve closed starts nothing"
    );
}

/// A shown curve is of the prompt the columns run: a new prompt starts it over (its points
/// stayed the old prompt's), and the same prompt run again leaves it be.
#[test]
fn a_new_prompt_starts_a_shown_curve_over() {
    let (mut a, _) = loaded();
    let e = a.update(key(KeyCode::Char('g')));
    let Effect::Curve(first) = &e[0] else {
        panic!("{e:?}")
    };
    let first = first.id;
    a.update(key(KeyCode::Char('e')));
    for c in " was bad".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    let e = a.update(key(KeyCode::Enter));
    let curve = e.iter().find_map(|e| match e {
        Effect::Curve(j) => Some(j),
        _ => None,
    });
    let curve = curve.expect("the curve starts over");
    assert_eq!(curve.prompt, "The food was bad");
    assert_ne!(curve.id, first);
    a.update(key(KeyCode::Char('e')));
    let e = a.update(key(KeyCode::Enter));
    assert!(!e.iter().any(|e| matches!(e, Effect::Curve(_))), "{e:?}");
}

/// Closing a finished curve has nothing to stop.
#[test]
fn closing_a_finished_curve_stops_nothing() {
    let (mut a, _) = loaded();
    let e = a.update(key(KeyCode::Char('g')));
    let Effect::Curve(job) = &e[0] else {
        panic!("{e:?}")
    };
    for alpha in &job.alphas {
        a.update(Msg::Engine(EngineEvent::CurvePoint {
            id: job.id,
            alpha: *alpha,
            beta: None,
            vader: estimate(&[0.1]),
        }));
    }
    assert!(a.update(key(KeyCode::Char('g'))).is_empty());
}

fn type_keys(a: &mut App, text: &str) -> Vec<Effect> {
    text.chars()
        .flat_map(|c| a.update(key(KeyCode::Char(c))))
        .collect()
}

/// `f`, a typed target and Enter start a search for the focused column; its points arrive
/// while the columns keep working; when it ends the column moves to α* and regenerates.
#[test]
fn find_sets_the_focused_columns_alpha_to_the_answer() {
    let (mut a, _) = loaded();
    a.update(key(KeyCode::Tab));
    let column = a.columns[a.focused].id;
    assert!(type_keys(&mut a, "f0.3").is_empty());
    let e = a.update(key(KeyCode::Enter));
    let Effect::Find(job) = &e[0] else {
        panic!("{e:?}")
    };
    assert_eq!(job.target, 0.3);
    assert_eq!(job.prompt, "The food");
    assert_eq!(job.range, a.range);
    // Other keys act as usual meanwhile: α moves on the focused column.
    let e = a.update(key(KeyCode::Right));
    assert!(matches!(e[0], Effect::Submit { .. }), "{e:?}");
    let report = |alpha: f64, bracket| FindReport::Point {
        alpha: Alpha::new(alpha).unwrap(),
        vader: estimate(&[0.1, 0.2]),
        bracket,
    };
    a.update(Msg::Engine(EngineEvent::Find {
        id: job.id,
        report: report(0.0, None),
    }));
    let bracket = Some((Alpha::A, Alpha::B));
    a.update(Msg::Engine(EngineEvent::Find {
        id: job.id,
        report: report(1.0, bracket),
    }));
    a.update(Msg::Engine(EngineEvent::Find {
        id: job.id + 7,
        report: report(0.5, None),
    }));
    let f = a.finding.as_ref().unwrap();
    assert_eq!(f.points.len(), 2, "another search's points are ignored");
    assert_eq!(f.bracket, bracket);
    // Focus moves away; the answer still goes to the column the search was for.
    a.update(key(KeyCode::Tab));
    let star = Alpha::new(0.42).unwrap();
    let e = a.update(Msg::Engine(EngineEvent::Find {
        id: job.id,
        report: FindReport::Done {
            outcome: Outcome {
                verdict: Verdict::Found,
                alpha: star,
                alpha_ci: Some((0.3, 0.5)),
                bracket,
                ppl_limit: None,
                unmeasured: None,
            },
            vader: estimate(&[0.25, 0.35]),
            points: 3,
        },
    }));
    assert!(a.finding.is_none());
    assert_eq!(a.columns[a.focused].id, column);
    assert_eq!(a.columns[a.focused].alpha, star);
    let Effect::Submit { column: c, job } = &e[0] else {
        panic!("{e:?}")
    };
    assert_eq!((*c, job.alpha), (column, star));
    assert!(
        a.notice.as_deref().unwrap().contains("α* = 0.42"),
        "{:?}",
        a.notice
    );
}

#[test]
fn esc_stops_a_search_and_a_miss_says_why() {
    let (mut a, _) = loaded();
    type_keys(&mut a, "f-0.5");
    let e = a.update(key(KeyCode::Enter));
    let Effect::Find(job) = &e[0] else {
        panic!("{e:?}")
    };
    assert_eq!(job.target, -0.5);
    let e = a.update(key(KeyCode::Esc));
    assert_eq!(e, vec![Effect::CancelFind(job.id)]);
    assert!(a.finding.is_none());
    // A late report of the stopped search changes nothing.
    let before = a.columns[0].alpha;
    a.update(Msg::Engine(EngineEvent::Find {
        id: job.id,
        report: FindReport::Done {
            outcome: Outcome {
                verdict: Verdict::Found,
                alpha: Alpha::new(0.7).unwrap(),
                alpha_ci: None,
                bracket: None,
                ppl_limit: None,
                unmeasured: None,
            },
            vader: estimate(&[0.0]),
            points: 2,
        },
    }));
    assert_eq!(a.columns[0].alpha, before);
    // Out of reach: one line with the closest point; no α changes.
    type_keys(&mut a, "f0.9");
    let e = a.update(key(KeyCode::Enter));
    let Effect::Find(job) = &e[0] else {
        panic!("{e:?}")
    };
    let e = a.update(Msg::Engine(EngineEvent::Find {
        id: job.id,
        report: FindReport::Done {
            outcome: Outcome {
                verdict: Verdict::OutOfReach,
                alpha: Alpha::new(2.0).unwrap(),
                alpha_ci: None,
                bracket: None,
                ppl_limit: None,
                unmeasured: None,
            },
            vader: estimate(&[0.5, 0.6]),
            points: 3,
        },
    }));
    assert!(e.is_empty());
    let err = a.last_error.clone().unwrap();
    assert!(
        err.contains("out of reach") && err.contains("α = 2.00"),
        "{err}"
    );
    // A target beyond VADER's scale, or not a number, is refused before any work.
    for typed in ["f3", "f-", "f1.2.3"] {
        type_keys(&mut a, typed);
        assert!(a.update(key(KeyCode::Enter)).is_empty(), "{typed}");
        assert!(a.finding.is_none());
    }
    // Esc while typing leaves without searching.
    type_keys(&mut a, "f0.2");
    assert!(a.update(key(KeyCode::Esc)).is_empty());
    assert_eq!(a.mode, Mode::Normal);
}

#[test]
fn bake_exports_the_focused_column_and_reports_progress() {
    let (mut a, _) = loaded();
    a.update(key(KeyCode::Tab));
    let e = a.update(key(KeyCode::Char('b')));
    assert_eq!(
        e,
        vec![Effect::Export {
            alpha: Alpha::new(0.5).unwrap(),
            beta: None,
            out: "pos-alpha0.5".into()
        }]
    );
    a.update(Msg::Engine(EngineEvent::ExportProgress {
        done: 1,
        total: 4,
    }));
    assert!(a.activity.contains("25%"), "{}", a.activity);
    a.update(Msg::Engine(EngineEvent::Exported(
        Ok("pos-alpha0.5".into()),
    )));
    assert!(a.notice.as_deref().unwrap().contains("baked pos-alpha0.5"));
    a.update(Msg::Engine(EngineEvent::Exported(Err("disk full".into()))));
    assert_eq!(a.last_error.as_deref(), Some("disk full"));
}

#[test]
fn the_animation_sweeps_the_focused_alpha_until_a_key_is_pressed() {
    let (mut a, _) = loaded();
    let j = jobs(a.update(key(KeyCode::Char('v'))));
    assert_eq!(j[0].alpha, -1.0, "from the slider's low end");
    // A finished step stays on screen a while: the next comes on the wake it asks for.
    let done = |a: &mut App, sub: &Sub| {
        let effects = a.update(Msg::Engine(EngineEvent::Done {
            column: ColumnId(sub.column),
            job: sub.id,
            tokens: 3,
            tokens_per_s: 100.0,
            stop: StopReason::MaxTokens,
        }));
        if effects.is_empty() {
            return vec![];
        }
        assert_eq!(
            effects,
            vec![Effect::WakeAfter(lerpscope::app::ANIMATION_DWELL)]
        );
        jobs(a.update(Msg::Wake))
    };
    let mut sub = j[0].clone();
    let mut seen = vec![sub.alpha];
    for _ in 0..14 {
        let next = done(&mut a, &sub);
        assert_eq!(next.len(), 1);
        assert_eq!(
            next[0].params.sampling.seed, sub.params.sampling.seed,
            "one seed"
        );
        sub = next[0].clone();
        seen.push(sub.alpha);
    }
    // Up in steps of 0.25 to the top of the range (2), then back down.
    assert_eq!(&seen[..3], &[-1.0, -0.75, -0.5]);
    assert_eq!(seen[12], 2.0);
    assert_eq!(seen[13], 1.75);
    // Any key stops it; the next Done starts nothing.
    assert!(
        a.update(key(KeyCode::Char('q'))).is_empty(),
        "the key only stops it"
    );
    assert!(done(&mut a, &sub).is_empty());
    assert!(a.animating.is_none());
    assert!(a.update(Msg::Wake).is_empty(), "a late wake moves nothing");
    // A mouse press stops it as a key does (it used to move the animation to the column
    // clicked, or stall it).
    a.update(key(KeyCode::Char('v')));
    assert!(a.animating.is_some());
    assert!(a
        .update(Msg::Pointer(lerpscope::app::Pointer::Column(1)))
        .is_empty());
    assert!(a.animating.is_none());
}

#[test]
fn presenter_mode_toggles() {
    let (mut a, _) = loaded();
    a.update(key(KeyCode::Char('z')));
    assert!(a.presenter);
    a.update(key(KeyCode::Char('z')));
    assert!(!a.presenter);
}

/// A job's panic, caught by the engine: the column shows the failure, the status line says the
/// engine recovered, and keys go on working (→ regenerates the column).
#[test]
fn a_recovered_panic_is_shown_and_keys_still_work() {
    let (mut a, subs) = loaded();
    let first = subs.iter().find(|s| s.column == 0).unwrap().id;
    let error = lerpscope::session::Failure::internal(
        "internal error: a panic injected by the test hook".to_string(),
    );
    a.update(Msg::Engine(EngineEvent::Failed {
        column: ColumnId(0),
        job: first,
        error: error.clone(),
    }));
    a.update(Msg::Engine(EngineEvent::Recovered(error)));
    assert!(matches!(a.columns[0].state, ColumnState::Failed(_)));
    let status = a.last_error.clone().unwrap();
    assert!(status.contains("recovered"), "{status}");
    assert!(a.broken.is_none());
    let again = jobs(a.update(key(KeyCode::Right)));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].column, 0);
}

/// An engine that cannot be trusted any more makes the UI quit, with the reason kept for the
/// one line it prints.
#[test]
fn a_broken_engine_quits_the_ui() {
    let (mut a, _) = loaded();
    let effects = a.update(Msg::Engine(EngineEvent::Broken(
        "re-blending failed".into(),
    )));
    assert!(effects.iter().any(|e| matches!(e, Effect::Quit)));
    assert_eq!(a.broken.as_deref(), Some("re-blending failed"));
}

/// A pair that does not fit: the engine's memory error, its kind kept across the thread,
/// shows with the numbers, the dtype to try and what the UI itself can change.
#[test]
fn a_memory_error_shows_the_numbers_and_what_to_try() {
    let mut a = app();
    let gib = 1u64 << 30;
    let e = lerpscope::engine::memory_fit(24 * gib, gib, 16 * gib).unwrap_err();
    a.update(Msg::Engine(EngineEvent::LoadFailed(
        lerpscope::session::Failure::engine(&e),
    )));
    let shown = a.last_error.clone().unwrap();
    for part in [
        "73.00 GiB",
        "16.00 GiB free",
        "--dtype bf16",
        "fewer columns",
    ] {
        assert!(shown.contains(part), "{part:?} missing from: {shown}");
    }
    assert!(matches!(a.pair, PairState::Failed(ref s) if s == &shown));
    // Another kind of failure is shown as it is.
    a.update(Msg::Engine(EngineEvent::LoadFailed(
        "a.json: not a config".into(),
    )));
    assert_eq!(a.last_error.as_deref(), Some("a.json: not a config"));
}

/// On a plane with its own β every column sits at its own point: ↑/↓ move the focused
/// column's β (and regenerate it alone, at its α); without a plane they say why and do nothing.
#[test]
fn up_and_down_move_the_focused_columns_beta() {
    let mut a = app();
    let plane = plane_info();
    let loaded_jobs = jobs(a.update(Msg::Engine(EngineEvent::Loaded(plane))));
    assert!(
        loaded_jobs.iter().all(|j| j.beta == Some(0.5)),
        "every column starts at the loaded β: {loaded_jobs:?}"
    );
    let subs = jobs(a.update(key(KeyCode::Up)));
    assert_eq!(subs.len(), 1, "the focused column alone regenerates");
    assert_eq!((subs[0].alpha, subs[0].beta), (0.0, Some(0.55)));
    assert!(subs[0].urgent);
    let subs = jobs(a.update(shift(KeyCode::Down)));
    assert_eq!((subs[0].alpha, subs[0].beta), (0.0, Some(0.3)));
    assert_eq!(a.beta().map(|b| b.value()), Some(0.3));
    // The next column keeps its own β, and moves from there.
    a.update(key(KeyCode::Tab));
    assert_eq!(a.beta().map(|b| b.value()), Some(0.5));
    let subs = jobs(a.update(key(KeyCode::Up)));
    assert_eq!((subs[0].alpha, subs[0].beta), (0.5, Some(0.55)));
    // α stays where each column had it.
    assert_eq!(
        (0..3).map(|i| alpha(&a, i)).collect::<Vec<_>>(),
        [0.0, 0.5, 1.0]
    );
    // A bake is of the focused column's point.
    let e = a.update(key(KeyCode::Char('b')));
    assert_eq!(
        e,
        vec![Effect::Export {
            alpha: Alpha::new(0.5).unwrap(),
            beta: Some(Alpha::new(0.55).unwrap()),
            out: "pos-alpha0.5-beta0.55".into()
        }]
    );
    // A new column starts at the focused column's point's β.
    let subs = jobs(a.update(key(KeyCode::Char('a'))));
    assert_eq!(subs[0].beta, Some(0.55));

    // A saved session says where on the plane each column was, in every format.
    let Effect::Save(s) = &a.update(key(KeyCode::Char('s')))[0] else {
        panic!("no save")
    };
    assert_eq!(s.path.as_deref(), Some("A + α·(B − A) + β·(C − A)"));
    // It says what ran the columns: dtype, device, the columns mode and the header's model.
    let engine = s.engine.as_ref().expect("the engine recorded");
    assert_eq!(
        engine.line(),
        "f32 on cpu, --columns auto: A ↔ B + β·(C − A)"
    );
    assert!(s
        .to_markdown()
        .contains(&format!("- engine: {}\n", engine.line())));
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["engine"]["dtype"], "f32");
    assert_eq!(json["engine"]["columns"], "auto");
    let md = s.to_markdown();
    assert!(md.contains("## α = 0.00, β = 0.30"), "{md}");
    assert!(md.contains("## α = 0.50, β = 0.55"), "{md}");
    assert!(lerpscope::app::html::render(s).contains("α = 1.00, β = 0.50"));
    let json = serde_json::to_string(s).unwrap();
    assert!(json.contains("\"beta\":0.3"), "{json}");

    let (mut line, _) = loaded();
    assert!(line.update(key(KeyCode::Up)).is_empty());
    assert!(line
        .notice
        .as_deref()
        .unwrap_or("")
        .contains("no third endpoint"));
    let Effect::Save(s) = &line.update(key(KeyCode::Char('s')))[0] else {
        panic!("no save")
    };
    assert!(!serde_json::to_string(s).unwrap().contains("beta"));
}

/// `g` on a plane measures a coarse grid of (α, β) for the heat map: the slider's α range
/// across, the pad's β range up; each point lands in its cell, and a point off the grid or of
/// another sweep is ignored.
#[test]
fn the_curve_on_a_plane_is_a_grid() {
    let mut a = app();
    a.update(Msg::Engine(EngineEvent::Loaded(plane_info())));
    let effects = a.update(key(KeyCode::Char('g')));
    let Some(Effect::Curve(job)) = effects.into_iter().find(|e| matches!(e, Effect::Curve(_)))
    else {
        panic!("no curve job")
    };
    let values = |v: &[Alpha]| v.iter().map(|a| a.value()).collect::<Vec<_>>();
    assert_eq!(values(&job.alphas), [-1.0, -0.25, 0.5, 1.25, 2.0]);
    assert_eq!(values(&job.betas), [-0.5, 0.0, 0.5, 1.0, 1.5]);
    assert_eq!(a.curve.expected, 25);
    let at = |x: f64| Alpha::new(x).unwrap();
    for (id, alpha, beta, m) in [
        (job.id, 0.5, 1.0, 0.4),
        (job.id, 0.5, 0.7, 0.9),
        (job.id + 1, 2.0, 1.5, 0.9),
    ] {
        a.update(Msg::Engine(EngineEvent::CurvePoint {
            id,
            alpha: at(alpha),
            beta: Some(at(beta)),
            vader: estimate(&[m]),
        }));
    }
    let grid = a.curve.grid.as_ref().expect("a grid on a plane");
    let filled: Vec<(usize, usize, f64)> = grid
        .cells
        .iter()
        .enumerate()
        .flat_map(|(b, row)| {
            row.iter()
                .enumerate()
                .filter_map(move |(i, c)| c.map(|e| (b, i, e.mean)))
        })
        .collect();
    assert_eq!(filled, [(3, 2, 0.4)]);
    // On a line the curve has no grid.
    let (mut line, _) = loaded();
    let effects = line.update(key(KeyCode::Char('g')));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Curve(j) if j.betas.is_empty())));
    assert!(line.curve.grid.is_none());
}

/// With a fourth endpoint, typing `α,β,γ` moves the focused column's point and asks for γ;
/// when the engine answers every column regenerates at the new γ. Without one a second comma
/// is not taken.
#[test]
fn a_typed_gamma_moves_d_for_every_column() {
    let mut a = app();
    a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        description: "A ↔ B + β·(C − A) + γ·(D − A)".into(),
        gamma: Some(0.2),
        ..plane_info()
    })));
    let effects = {
        type_keys(&mut a, "0.3,0.25,-0.4");
        a.update(key(KeyCode::Enter))
    };
    assert!(
        effects.contains(&Effect::SetGamma(Alpha::new(-0.4).unwrap())),
        "{effects:?}"
    );
    let subs = jobs(effects);
    assert_eq!((subs[0].alpha, subs[0].beta), (0.3, Some(0.25)));
    let info = PairInfo {
        description: "A ↔ B + β·(C − A) + γ·(D − A)".into(),
        gamma: Some(-0.4),
        ..plane_info()
    };
    let subs = jobs(a.update(Msg::Engine(EngineEvent::GammaChanged(Ok(Box::new(info))))));
    assert_eq!(subs.len(), 3, "every column regenerates at the new γ");
    assert_eq!(a.gamma(), Some(-0.4));
    // A bake is named for the whole point.
    let bake = a.update(key(KeyCode::Char('b')));
    assert!(
        matches!(&bake[..], [Effect::Export { out, .. }] if out.to_str() == Some("pos-alpha0.3-beta0.25-gamma-0.4")),
        "{bake:?}"
    );
    // A refused γ says why and changes nothing.
    let refused = a.update(Msg::Engine(EngineEvent::GammaChanged(Err(
        lerpscope::session::Failure::other("γ: no"),
    ))));
    assert!(refused.is_empty());
    assert_eq!(a.gamma(), Some(-0.4));
    // On a plane without D the entry takes one comma only.
    let mut plane = app();
    plane.update(Msg::Engine(EngineEvent::Loaded(plane_info())));
    type_keys(&mut plane, "0.3,0.25,0.1");
    let effects = plane.update(key(KeyCode::Enter));
    assert!(!effects.iter().any(|e| matches!(e, Effect::SetGamma(_))));
    let subs = jobs(effects);
    assert!(
        subs.is_empty(),
        "the third number makes the entry invalid: {subs:?}"
    );
}

/// The pad's "(α, β) =" label moves to the bottom row rather than hide a marker in the top
/// right corner.
#[test]
fn the_pad_label_never_hides_a_marker() {
    let mut a = app();
    a.update(Msg::Engine(EngineEvent::Loaded(plane_info())));
    a.update(Msg::Resize(100, 40));
    // The focused column to the top right corner: α at the range's top, β at its top.
    for c in "2,1.5".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    a.update(key(KeyCode::Enter));
    let area = ratatui::layout::Rect::new(0, 0, 100, 40);
    let pad = lerpscope::ui::layout(area, &a).pad.unwrap();
    let rows = screen_rows(&a, 100, 40);
    let row = |y: u16| -> String {
        rows[y as usize]
            .chars()
            .skip(pad.x as usize)
            .take(pad.width as usize)
            .collect()
    };
    let (top, bottom) = (row(pad.y), row(pad.y + pad.height - 1));
    assert!(top.trim_end().ends_with('●'), "{top}");
    assert!(bottom.contains("(α, β) = (2.00, 1.50)"), "{bottom}");
}

/// On a plane the pad sits under the slider: a click sets the focused column's point (α, β),
/// typing `α,β` does the same, and the other columns stay where they are; off a plane there
/// is no pad and `,` is not taken.
#[test]
fn the_pad_and_typed_points_set_alpha_and_beta() {
    let mut a = app();
    a.update(Msg::Engine(EngineEvent::Loaded(plane_info())));
    a.update(Msg::Resize(100, 40));
    let areas = lerpscope::ui::layout(ratatui::layout::Rect::new(0, 0, 100, 40), &a);
    let pad = areas.pad.expect("a pad on a plane");
    let track = areas.slider_track.unwrap();
    assert_eq!(
        (pad.x, pad.width),
        (track.x, track.width),
        "α lines up with the slider"
    );
    // The pad's bottom-right corner: α at the top of the range, β at −0.5 (its lowest row).
    let m = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: pad.x + pad.width - 1,
        row: pad.y + pad.height - 1,
        modifiers: KeyModifiers::NONE,
    };
    let p = lerpscope::ui::pointer(&a, &areas, &mut false, m).unwrap();
    let subs = jobs(a.update(Msg::Pointer(p)));
    assert_eq!(subs.len(), 1, "the focused column alone moves");
    assert_eq!((subs[0].alpha, subs[0].beta), (2.0, Some(-0.5)));
    assert_eq!(a.columns[1].beta.map(|b| b.value()), Some(0.5));
    // A click on the pad's left edge at the same β moves its α.
    let m = MouseEvent { column: pad.x, ..m };
    let p = lerpscope::ui::pointer(&a, &areas, &mut false, m).unwrap();
    let subs = jobs(a.update(Msg::Pointer(p)));
    assert_eq!((subs[0].alpha, subs[0].beta), (-1.0, Some(-0.5)));
    // Clicking the focused column's own point again regenerates nothing new while it runs.
    let p = lerpscope::ui::pointer(&a, &areas, &mut false, m).unwrap();
    assert!(jobs(a.update(Msg::Pointer(p))).is_empty());
    // Typed: "0.3,0.25".
    for c in "0.3,0.25".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    let subs = jobs(a.update(key(KeyCode::Enter)));
    assert_eq!((subs[0].alpha, subs[0].beta), (0.3, Some(0.25)));
    assert_eq!(alpha(&a, a.focused), 0.3);
    // A bad β says so and changes nothing.
    for c in "0.1,1e9".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    let err = a.last_error.clone().unwrap();
    assert!(
        err.starts_with("β = 1000000000") && !err.contains('α'),
        "{err}"
    );
    assert_eq!(a.beta().map(|b| b.value()), Some(0.25));
    for c in "0.1,-".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    a.update(key(KeyCode::Enter));
    let err = a.last_error.clone().unwrap();
    assert!(
        err.starts_with("β: ") && err.contains("not a number"),
        "{err}"
    );
    // An empty α or β keeps the focused column's: ",0.7" moves β alone (the comma opens the
    // entry; it was dropped, and α became 0.7), "0.4," α alone.
    for c in ",0.7".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    let subs = jobs(a.update(key(KeyCode::Enter)));
    assert_eq!((subs[0].alpha, subs[0].beta), (0.3, Some(0.7)));
    for c in "0.4,".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    let subs = jobs(a.update(key(KeyCode::Enter)));
    assert_eq!((subs[0].alpha, subs[0].beta), (0.4, Some(0.7)));

    // Off a plane: no pad, and "1,2" is refused by name (it used to set α = 12).
    let (mut line, _) = loaded();
    let areas = lerpscope::ui::layout(ratatui::layout::Rect::new(0, 0, 100, 40), &line);
    assert!(areas.pad.is_none());
    let before = alpha(&line, line.focused);
    for c in "1,2".chars() {
        line.update(key(KeyCode::Char(c)));
    }
    assert_eq!(line.mode, Mode::EnterAlpha("1,2".into()));
    assert!(line.update(key(KeyCode::Enter)).is_empty());
    let err = line.last_error.clone().unwrap();
    assert!(err.contains("1,2") && err.contains("--c"), "{err}");
    assert_eq!(alpha(&line, line.focused), before);
    // On the plane, a third number needs a fourth endpoint.
    for c in "0.2,0.5,0.7".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    let err = a.last_error.clone().unwrap();
    assert!(err.contains("--d"), "{err}");
}

/// `l` edits α per layer: the entry starts from the rules in force, Enter asks the engine, and
/// its answer regenerates every column (a refusal says why and regenerates nothing).
#[test]
fn l_edits_alpha_per_layer_and_the_answer_regenerates_the_columns() {
    let (mut a, _) = loaded();
    assert!(a.update(key(KeyCode::Char('l'))).is_empty());
    assert_eq!(a.mode, Mode::EnterLayers(String::new()));
    for c in "mlp=0,1".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    let effects = a.update(key(KeyCode::Enter));
    assert!(
        matches!(effects.as_slice(), [Effect::SetLayers(s)] if s == "mlp=0,1"),
        "{effects:?}"
    );
    assert_eq!(a.mode, Mode::Normal);
    let info = PairInfo {
        layers: Some("mlp=0,1".into()),
        layers_fixed: None,
        layer_strip: vec![lerpscope::engine::LayerStrip {
            kind: "mlp".into(),
            factors: vec![0.0, 0.5, 1.0],
        }],
        ..info()
    };
    let subs = jobs(a.update(Msg::Engine(EngineEvent::LayersChanged(Ok(Box::new(info))))));
    assert_eq!(
        subs.len(),
        3,
        "every column regenerates under the new rules"
    );
    assert!(a.notice.as_deref().unwrap_or("").contains("mlp=0,1"));
    // The entry starts from the rules in force, takes no chords as characters (Alt-U was a
    // 'u'), and Ctrl-U empties it; Esc leaves them.
    a.update(key(KeyCode::Char('l')));
    a.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::ALT,
    )));
    assert_eq!(a.mode, Mode::EnterLayers("mlp=0,1".into()));
    a.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('u'),
        KeyModifiers::CONTROL,
    )));
    assert_eq!(a.mode, Mode::EnterLayers(String::new()));
    assert!(a.update(key(KeyCode::Esc)).is_empty());
    assert_eq!(a.mode, Mode::Normal);
    // Refused rules: the message speaks of the entry, not the flag, and the entry opens
    // again on them as typed.
    a.update(key(KeyCode::Char('l')));
    a.update(key(KeyCode::Char(',')));
    a.update(key(KeyCode::Char('x')));
    a.update(key(KeyCode::Enter));
    let effects = a.update(Msg::Engine(EngineEvent::LayersChanged(Err(
        "--layer-alphas: \"x\" in rule \"mlp=0,1,x\" is not a number".into(),
    ))));
    assert!(effects.is_empty());
    let err = a.last_error.clone().unwrap_or_default();
    assert!(
        err.starts_with("α per layer: ") && err.contains("not a number"),
        "{err}"
    );
    a.update(key(KeyCode::Char('l')));
    assert_eq!(a.mode, Mode::EnterLayers("mlp=0,1,x".into()));
    a.update(key(KeyCode::Esc));
    // A recipe's normalised shares are no rules to edit: said at once, no entry opened.
    let recipe = PairInfo {
        layers: Some("share 1 of 3 + 1".into()),
        layers_fixed: Some(
            "the recipe m.yaml's weights are its own; edit the recipe and load it again".into(),
        ),
        ..self::info()
    };
    a.update(Msg::Engine(EngineEvent::LayersChanged(Ok(Box::new(
        recipe,
    )))));
    assert!(a.update(key(KeyCode::Char('l'))).is_empty());
    assert_eq!(a.mode, Mode::Normal);
    assert!(a
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("edit the recipe"));
}

/// A saved session's path puts B's factors on B's term, as C's are on C's: a mergekit
/// recipe's weight on B reads `α·0.7·(B − A)`, rules read `α·[rules]·(B − A)`, and on the
/// line alone they stay "α per layer …".
#[test]
fn a_session_path_gives_b_its_own_factor() {
    let path = |description: &str, layers: &str| {
        let mut a = app();
        a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
            description: description.into(),
            layers: Some(layers.into()),
            beta: None,
            ..plane_info()
        })));
        a.path()
    };
    assert_eq!(
        path("A ↔ B (α per layer 0.7) + α·0.5·(C − A)", "0.7").as_deref(),
        Some("A + α·0.7·(B − A) + α·0.5·(C − A)")
    );
    assert_eq!(
        path("A ↔ B (α per layer mlp=0,1;0.5) + β·(C − A)", "mlp=0,1;0.5").as_deref(),
        Some("A + α·[mlp=0,1;0.5]·(B − A) + β·(C − A)")
    );
    assert_eq!(
        path("A ↔ B (α per layer mlp=0,1;0.5)", "mlp=0,1;0.5").as_deref(),
        Some("α per layer mlp=0,1;0.5")
    );
}

/// Score mode takes a --text file exactly as `score` does: its final newline is a token.
#[test]
fn score_mode_keeps_the_files_final_newline() {
    let mut a = app();
    a.start_in_score_mode("Good food.\n");
    a.update(Msg::Engine(EngineEvent::Loaded(info())));
    assert_eq!(a.score_text.text(), "Good food.\n");
    assert_eq!(a.session().score_text.as_deref(), Some("Good food.\n"));
}

/// The status line says what the engine is doing: a single column's row is "generating α = …",
/// and with the columns done, the curve's sweep until its last point.
#[test]
fn the_status_line_names_a_single_row_and_a_running_sweep() {
    let (mut a, subs) = loaded();
    a.update(Msg::Engine(EngineEvent::Started {
        column: ColumnId(subs[0].column),
        job: subs[0].id,
        run: ColumnRun::Batch { rows: 1 },
    }));
    assert!(a.activity.starts_with("generating α = "), "{}", a.activity);
    for s in &subs {
        a.update(Msg::Engine(EngineEvent::Done {
            column: ColumnId(s.column),
            job: s.id,
            tokens: 3,
            tokens_per_s: 100.0,
            stop: StopReason::MaxTokens,
        }));
    }
    assert_eq!(a.activity, "idle");
    let e = a.update(key(KeyCode::Char('g')));
    assert!(matches!(&e[0], Effect::Curve(_)), "{e:?}");
    assert_eq!(a.activity, "sweeping the curve", "from the start");
    // Closed mid-sweep: nothing runs any more.
    a.update(key(KeyCode::Char('g')));
    assert_eq!(a.activity, "idle");
    let e = a.update(key(KeyCode::Char('g')));
    let Effect::Curve(job) = &e[0] else {
        panic!("{e:?}")
    };
    for (i, alpha) in job.alphas.iter().enumerate() {
        a.update(Msg::Engine(EngineEvent::CurvePoint {
            id: job.id,
            alpha: *alpha,
            beta: None,
            vader: estimate(&[0.1]),
        }));
        let expected = match i + 1 < job.alphas.len() {
            true => "sweeping the curve",
            false => "idle",
        };
        assert_eq!(a.activity, expected, "after point {i}");
    }
}

/// Keys that need the pair say so while it loads (they did nothing, with no word).
#[test]
fn keys_that_need_the_pair_say_it_is_loading() {
    for k in ['b', 'f', 'l', 'v', 'g', 's'] {
        let mut a = app();
        assert!(a.update(key(KeyCode::Char(k))).is_empty(), "{k}");
        assert_eq!(
            a.notice.as_deref(),
            Some("the pair is still loading"),
            "{k}"
        );
    }
}

/// α on the screen: two decimals, and as many more as it has, up to six, so columns at
/// 0.3331 and 0.3334 do not both read 0.333.
#[test]
fn alpha_shows_every_decimal_it_has() {
    let f = |x: f64| lerpscope::app::fmt_alpha(Alpha::new(x).unwrap());
    assert_eq!(f(0.5), "0.50");
    assert_eq!(f(-1.0), "-1.00");
    assert_eq!(f(0.333), "0.333");
    assert_eq!(f(0.3331), "0.3331");
    assert_eq!(f(0.3334), "0.3334");
    assert_eq!(f(1.0 / 3.0), "0.333333");
    assert_eq!(f(0.0123), "0.0123");
    assert_eq!(f(12.5), "12.50");
}
