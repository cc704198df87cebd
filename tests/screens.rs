//! Whole screens rendered with ratatui's TestBackend, snapshot-tested with insta
//! (tests/snapshots/). Review changes with `cargo insta review` or INSTA_UPDATE=always.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use lerpscope::app::keymap::Keymap;
use lerpscope::app::{App, Effect, Msg};
use lerpscope::engine::{Alpha, GenerationParams, PairInfo, StopReason};
use lerpscope::session::{ColumnId, ColumnRun, EngineEvent, Job};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn app() -> App {
    App::new(
        "assets/demo/negative".into(),
        "assets/demo/positive".into(),
        "The food at this place",
        &[Alpha::A, Alpha::new(0.5).unwrap(), Alpha::B],
        GenerationParams::default(),
        Keymap::default(),
    )
}

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| lerpscope::ui::view(app, f)).unwrap();
    t
}

/// A loaded pair as the screens show it: a small Llama on the CPU.
fn pair_info(a: impl Into<String>, b: impl Into<String>, description: &str) -> PairInfo {
    PairInfo {
        a: a.into(),
        b: b.into(),
        description: description.into(),
        architecture: "LlamaForCausalLM".into(),
        params: 2_401_536,
        dtype: "f32".into(),
        device: "cpu".into(),
        buffer_bytes: 9_606_144,
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

fn render(app: &App, w: u16, h: u16) -> String {
    format!("{}", draw(app, w, h).backend())
}

fn key(a: &mut App, code: KeyCode) -> Vec<Effect> {
    a.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn load(a: &mut App) -> Vec<(ColumnId, Job)> {
    a.update(Msg::Engine(EngineEvent::Loaded(pair_info(
        a.a.clone(),
        a.b.clone(),
        "A ↔ B",
    ))))
    .into_iter()
    .filter_map(|e| match e {
        Effect::Submit { column, job } => Some((column, job)),
        _ => None,
    })
    .collect()
}

fn stream(a: &mut App, (column, job): &(ColumnId, Job), pieces: &[&str], done: bool) {
    let column = *column;
    a.update(Msg::Engine(EngineEvent::Started {
        column,
        job: job.id,
        run: ColumnRun::Blended { ms: 0.12 },
    }));
    for (i, p) in pieces.iter().enumerate() {
        a.update(Msg::Engine(EngineEvent::Text {
            column,
            job: job.id,
            piece: p.to_string(),
            token: Some(lerpscope::session::Token {
                id: i as u32,
                info: None,
            }),
        }));
    }
    if done {
        a.update(Msg::Engine(EngineEvent::Done {
            column,
            job: job.id,
            tokens: pieces.len(),
            tokens_per_s: 412.0,
            stop: StopReason::MaxTokens,
        }));
    }
}

fn streaming_app() -> App {
    let mut a = app();
    let jobs = load(&mut a);
    stream(
        &mut a,
        &jobs[0],
        &[
            " was", " awful", ",", " cold", " and", " the", " staff", " rude", ".",
        ],
        true,
    );
    a.update(Msg::Engine(EngineEvent::Scored {
        column: jobs[0].0,
        job: jobs[0].1.id,
        vader: -0.7003,
        perplexity: 31.4,
    }));
    stream(
        &mut a,
        &jobs[1],
        &[" was", " fine", ",", " nothing", " special"],
        false,
    );
    a
}

#[test]
fn loading() {
    insta::assert_snapshot!(render(&app(), 100, 24));
}

#[test]
fn streaming() {
    insta::assert_snapshot!(render(&streaming_app(), 100, 24));
}

#[test]
fn focus_moved_and_alpha_changed() {
    let mut a = streaming_app();
    key(&mut a, KeyCode::Tab);
    key(&mut a, KeyCode::Tab);
    key(&mut a, KeyCode::Right);
    insta::assert_snapshot!(render(&a, 100, 24));
}

#[test]
fn several_columns_in_a_narrow_terminal_keep_the_focused_one() {
    let mut a = streaming_app();
    key(&mut a, KeyCode::Char('a'));
    key(&mut a, KeyCode::Char('a'));
    insta::assert_snapshot!(render(&a, 50, 16));
}

#[test]
fn help_overlay() {
    let mut a = streaming_app();
    key(&mut a, KeyCode::Char('?'));
    insta::assert_snapshot!(render(&a, 100, 30));
}

#[test]
fn engine_error_in_a_column() {
    let mut a = app();
    let jobs = load(&mut a);
    a.update(Msg::Engine(EngineEvent::Failed {
        column: jobs[2].0,
        job: jobs[2].1.id,
        error: "at α = 1000: non-finite logits (the weights overflow); try an α closer to [0, 1]"
            .into(),
    }));
    insta::assert_snapshot!(render(&a, 100, 20));
}

#[test]
fn pair_that_fails_to_load() {
    let mut a = app();
    a.update(Msg::Engine(EngineEvent::LoadFailed(
        "tensor model.norm.weight is in assets/demo/negative/model.safetensors but missing from assets/demo/positive".into(),
    )));
    insta::assert_snapshot!(render(&a, 100, 24));
}

#[test]
fn tiny_terminal() {
    insta::assert_snapshot!(render(&streaming_app(), 20, 5));
}

#[test]
fn too_small_terminal() {
    insta::assert_snapshot!(render(&streaming_app(), 12, 3));
}

#[test]
fn editing_prompt_and_typing_alpha() {
    let mut a = streaming_app();
    key(&mut a, KeyCode::Char('e'));
    for c in " and".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    let editing = render(&a, 80, 20);
    key(&mut a, KeyCode::Esc);
    for c in "1.2".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    insta::assert_snapshot!(format!("{editing}\n{}", render(&a, 80, 20)));
}

/// A tab in the prompt shows as a space (a cell drops a bare tab), and the cursor after it
/// sits where the text ends.
#[test]
fn a_tab_in_the_prompt_is_shown() {
    let mut a = App::new(
        "a".into(),
        "b".into(),
        "The food\tat",
        &[Alpha::A],
        GenerationParams::default(),
        Keymap::default(),
    );
    key(&mut a, KeyCode::Char('e'));
    let mut t = draw(&a, 60, 12);
    let screen = format!("{}", t.backend());
    assert!(screen.contains("The food at"), "{screen}");
    let line = screen.lines().find(|l| l.contains("The food at")).unwrap();
    let x = line
        .trim_start_matches('"')
        .chars()
        .position(|c| c == 'T')
        .unwrap()
        + 11;
    assert_eq!(t.get_cursor_position().unwrap().x as usize, x);
}

#[test]
fn every_size_renders_without_panicking() {
    let mut a = streaming_app();
    // Text the tokenizer might produce: replacement characters, wide glyphs, long words.
    let j = load(&mut a)[1].clone();
    stream(
        &mut a,
        &j,
        &["\u{FFFD}\u{FFFD}", "日本語", "😀", &"x".repeat(300), "\n\n"],
        false,
    );
    key(&mut a, KeyCode::Char('a'));
    for w in 0..70 {
        for h in 0..26 {
            draw(&a, w, h);
        }
    }
    key(&mut a, KeyCode::Char('?'));
    for (w, h) in [(1, 1), (20, 5), (33, 9), (79, 23)] {
        draw(&a, w, h);
    }
}

#[test]
fn curve_panel() {
    let mut a = streaming_app();
    let effects = key(&mut a, KeyCode::Char('g'));
    let Some(Effect::Curve(job)) = effects.into_iter().next() else {
        panic!("no curve job")
    };
    for (i, &alpha) in job.alphas.iter().enumerate().take(6) {
        let m = -0.5 + 0.2 * i as f64;
        a.update(Msg::Engine(EngineEvent::CurvePoint {
            id: job.id,
            alpha,
            beta: None,
            vader: lerpscope::eval::stats::estimate(&[m - 0.2, m, m + 0.2]),
        }));
    }
    insta::assert_snapshot!(render(&a, 100, 30));
}

#[test]
fn presenter_mode() {
    let mut a = streaming_app();
    key(&mut a, KeyCode::Char('z'));
    key(&mut a, KeyCode::Tab);
    insta::assert_snapshot!("presenter_120x40", render(&a, 120, 40));
    insta::assert_snapshot!("presenter_80x24", render(&a, 80, 24));
}

/// `f` asks for a target in the status line; while the search runs, the status line shows its
/// points and bracket.
#[test]
fn find_prompt_and_progress() {
    let mut a = streaming_app();
    for c in "f-0.25".chars() {
        key(&mut a, KeyCode::Char(c));
    }
    let typing = render(&a, 100, 30);
    let status = typing.lines().last().unwrap().to_string();
    insta::assert_snapshot!("find_typing_status", status);
    let effects = key(&mut a, KeyCode::Enter);
    let Some(Effect::Find(job)) = effects.into_iter().next() else {
        panic!("no find job")
    };
    for (alpha, bracket) in [(0.0, None), (1.0, Some((0.0, 1.0)))] {
        a.update(Msg::Engine(EngineEvent::Find {
            id: job.id,
            report: lerpscope::session::FindReport::Point {
                alpha: Alpha::new(alpha).unwrap(),
                vader: lerpscope::eval::stats::estimate(&[0.1, 0.3]),
                bracket: bracket.map(|(x, y)| (Alpha::new(x).unwrap(), Alpha::new(y).unwrap())),
            },
        }));
    }
    let running = render(&a, 120, 30);
    let status = running.lines().last().unwrap().to_string();
    insta::assert_snapshot!("find_running_status", status);
}

/// A slerp pair says so in the header.
#[test]
fn the_header_names_a_method_other_than_the_line() {
    let mut a = App::new(
        "assets/demo/negative".into(),
        "assets/demo/positive".into(),
        "The food",
        &[Alpha::A],
        GenerationParams::default(),
        Keymap::default(),
    );
    a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        a: a.a.clone(),
        b: a.b.clone(),
        description: "A ↔ B (slerp)".into(),
        architecture: "LlamaForCausalLM".into(),
        params: 2_401_536,
        dtype: "f32".into(),
        device: "cpu".into(),
        buffer_bytes: 9_606_144,
        gpu_memory: None,
        chat_template: false,
        turn_markers: vec![],
        method: lerpscope::engine::Method::Slerp,
        layers: None,
        beta: None,
        gamma: None,
        layers_fixed: None,
        layer_strip: vec![],
        others: vec![],
    })));
    let screen = render(&a, 120, 20);
    let header = screen.lines().next().unwrap();
    assert!(header.contains("positive (slerp)"), "{header}");
    let mut line = streaming_app();
    let header = render(&line, 120, 20).lines().next().unwrap().to_string();
    assert!(
        !header.contains("linear") && !header.contains("slerp"),
        "{header}"
    );
    key(&mut line, KeyCode::Char('q'));
}

/// A plane says so in the header, with C; each column's title has its point (α, β); α per
/// layer is in the header too.
#[test]
fn the_header_shows_the_plane_and_its_beta() {
    let mut a = App::new(
        "assets/demo/negative".into(),
        "assets/demo/positive".into(),
        "The food",
        &[Alpha::A],
        GenerationParams::default(),
        Keymap::default(),
    );
    a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        layers: Some("mlp=0,1".into()),
        beta: Some(0.5),
        ..pair_info(
            a.a.clone(),
            a.b.clone(),
            "A ↔ B (α per layer mlp=0,1) + β·(formal − A)",
        )
    })));
    key(&mut a, KeyCode::Up);
    let screen = render(&a, 160, 20);
    let header = screen.lines().next().unwrap().to_string();
    assert!(
        header.contains("(α per layer)") && header.contains("+ β·(formal − A)"),
        "{header}"
    );
    assert!(screen.contains(" α = 0.00, β = 0.55 "), "{screen}");
    // Narrow columns keep β: the title shortens before it is cut.
    for _ in 0..4 {
        key(&mut a, KeyCode::Char('a'));
    }
    let narrow = render(&a, 60, 20);
    assert!(narrow.contains(" α 2.00 β 0.55 "), "{narrow}");
    // Over adapters: the base and each side, then C once, with β.
    let mut adapters = App::new(
        "base".into(),
        "neg".into(),
        "The food",
        &[Alpha::A],
        GenerationParams::default(),
        Keymap::default(),
    );
    adapters.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        beta: Some(0.5),
        ..pair_info(
            "base",
            "neg",
            "base X + the base ↔ LoRA r8 ×7 modules + β·(LoRA r6 ×4 modules − A)",
        )
    })));
    let header = render(&adapters, 160, 20)
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(
        header.contains("base X + the base ↔ LoRA r8 ×7 modules + β·(LoRA r6 ×4 modules − A)")
            && header.matches("β·(").count() == 1,
        "{header}"
    );
}

/// With a fourth endpoint held at γ the header shows its term and γ, the pad the focused
/// point with γ, and a saved session's path records them.
#[test]
fn a_fourth_endpoint_shows_its_gamma() {
    let mut a = App::new(
        "base".into(),
        "neg".into(),
        "The food",
        &[Alpha::A, Alpha::B],
        GenerationParams::default(),
        Keymap::default(),
    );
    a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        beta: Some(0.5),
        gamma: Some(0.3),
        ..pair_info("base", "neg", "A ↔ B + β·(C − A) + γ·(D − A)")
    })));
    let screen = render(&a, 120, 40);
    assert!(
        screen.contains("+ β·(C − A) + γ·(D − A) (γ = 0.3)"),
        "{screen}"
    );
    assert!(
        screen.contains("(α, β, γ) = (0.00, 0.50, 0.30)"),
        "{screen}"
    );
    assert_eq!(
        a.session().path.as_deref(),
        Some("A + α·(B − A) + β·(C − A) + γ·(D − A); γ = 0.3")
    );
    // The JSON gives γ as a number too.
    let json = serde_json::to_value(a.session()).unwrap();
    assert_eq!(json["gamma"].as_f64(), Some(0.3));
}

/// On a plane the pad shows the triangle's vertices where α and β put them, and the focused
/// column's point.
#[test]
fn the_pad_draws_the_triangle_and_the_focused_point() {
    let mut a = App::new(
        "base".into(),
        "neg".into(),
        "The food",
        &[Alpha::A, Alpha::B],
        GenerationParams::default(),
        Keymap::default(),
    );
    a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        beta: Some(0.5),
        ..pair_info("base", "neg", "A ↔ B + β·(C − A)")
    })));
    let areas = lerpscope::ui::layout(ratatui::layout::Rect::new(0, 0, 100, 40), &a);
    let pad = areas.pad.unwrap();
    let screen = render(&a, 100, 40);
    let lines: Vec<&str> = screen.lines().collect();
    let cell = |row: u16, alpha: f64| -> char {
        let x = lerpscope::ui::slider::cell_of(a.range.bounds(), pad.width, alpha).unwrap();
        // Each line of the backend's text is quoted.
        lines[(pad.y + row) as usize]
            .chars()
            .nth(1 + (pad.x + x) as usize)
            .unwrap()
    };
    // β from 1.5 at the top to −0.5 at the bottom, a quarter per row: C (β = 1) on row 2,
    // the columns (β = 0.5) on row 4, A and B (β = 0) on row 6.
    assert_eq!(cell(2, 0.0), 'C', "{screen}");
    assert_eq!(cell(6, 0.0), 'A', "{screen}");
    assert_eq!(cell(6, 1.0), 'B', "{screen}");
    assert_eq!(cell(4, 0.0), '●', "the focused column: {screen}");
    assert_eq!(cell(4, 1.0), '2', "the second column: {screen}");
    assert!(screen.contains("(α, β) = (0.00, 0.50)"), "{screen}");

    // Each column at its own point: the second moves to β = 1 (row 2) and the first stays.
    key(&mut a, KeyCode::Tab);
    for _ in 0..2 {
        a.update(Msg::Key(KeyEvent::new(KeyCode::Up, KeyModifiers::SHIFT)));
    }
    let screen = render(&a, 100, 40);
    let lines: Vec<&str> = screen.lines().collect();
    let cell = |row: u16, alpha: f64| -> char {
        let x = lerpscope::ui::slider::cell_of(a.range.bounds(), pad.width, alpha).unwrap();
        lines[(pad.y + row) as usize]
            .chars()
            .nth(1 + (pad.x + x) as usize)
            .unwrap()
    };
    assert_eq!(
        cell(2, 1.0),
        '●',
        "the focused second column at β = 1: {screen}"
    );
    assert_eq!(
        cell(4, 0.0),
        '1',
        "the first column stays at β = 0.5: {screen}"
    );
    assert!(screen.contains("(α, β) = (1.00, 1.00)"), "{screen}");
    assert!(screen.contains(" α = 0.00, β = 0.50 "), "{screen}");
    assert!(screen.contains(" α = 1.00, β = 1.00 "), "{screen}");

    // `g` on the plane: the heat map over (α, β), cells filled as points arrive.
    let effects = key(&mut a, KeyCode::Char('g'));
    let Some(Effect::Curve(job)) = effects.into_iter().find(|e| matches!(e, Effect::Curve(_)))
    else {
        panic!("no curve job")
    };
    for (i, &beta) in job.betas.iter().enumerate() {
        for (j, &alpha) in job.alphas.iter().enumerate().skip(i % 2) {
            let m = -0.8 + 0.3 * j as f64 + 0.1 * i as f64;
            a.update(Msg::Engine(EngineEvent::CurvePoint {
                id: job.id,
                alpha,
                beta: Some(beta),
                vader: lerpscope::eval::stats::estimate(&[m - 0.1, m + 0.1]),
            }));
        }
    }
    insta::assert_snapshot!(render(&a, 100, 40));
}

/// A column on one of the heat map's grid points draws its marker a space from the cell's
/// value, never over or against a digit of it.
#[test]
fn heat_map_markers_leave_the_values_whole() {
    let mut a = App::new(
        "base".into(),
        "neg".into(),
        "The food",
        &[Alpha::new(0.5).unwrap()],
        GenerationParams::default(),
        Keymap::default(),
    );
    a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        beta: Some(0.0),
        ..pair_info("base", "neg", "A ↔ B + β·(C − A)")
    })));
    let effects = key(&mut a, KeyCode::Char('g'));
    let Some(Effect::Curve(job)) = effects.into_iter().find(|e| matches!(e, Effect::Curve(_)))
    else {
        panic!("no curve job")
    };
    assert!(job.alphas.iter().any(|x| x.value() == 0.5));
    assert!(job.betas.iter().any(|x| x.value() == 0.0));
    for &beta in &job.betas {
        for &alpha in &job.alphas {
            a.update(Msg::Engine(EngineEvent::CurvePoint {
                id: job.id,
                alpha,
                beta: Some(beta),
                vader: lerpscope::eval::stats::estimate(&[-0.23, -0.03]),
            }));
        }
    }
    for (w, h) in [(100, 40), (120, 40), (80, 30)] {
        let screen = render(&a, w, h);
        let cells = job.alphas.len() * job.betas.len();
        // Each value whole, with a space on both sides (a marker against it would read as a
        // digit).
        assert_eq!(
            screen.matches(" -0.13 ").count(),
            cells,
            "{w}×{h}: {screen}"
        );
        assert!(
            screen.contains('●'),
            "{w}×{h}: the column's marker: {screen}"
        );
    }
}

/// With α per layer the strip sits under the slider: a row per module kind, a bar per layer of
/// the focused column's α times the layer's factor, and the range they span.
#[test]
fn the_layer_strip_shows_each_layers_alpha() {
    let mut a = App::new(
        "neg".into(),
        "pos".into(),
        "The food",
        &[Alpha::B],
        GenerationParams::default(),
        Keymap::default(),
    );
    a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        layers: Some("self_attn=0,1;mlp=1,0".into()),
        gamma: None,
        layers_fixed: None,
        layer_strip: vec![
            lerpscope::engine::LayerStrip {
                kind: "self_attn".into(),
                factors: vec![0.0, 0.25, 0.5, 0.75, 1.0],
            },
            lerpscope::engine::LayerStrip {
                kind: "mlp".into(),
                factors: vec![1.0, 0.75, 0.5, 0.25, 0.0],
            },
        ],
        ..pair_info("neg", "pos", "A ↔ B (α per layer self_attn=0,1;mlp=1,0)")
    })));
    let screen = render(&a, 80, 24);
    assert!(screen.contains("self_attn ▃▄▅▅▆ α 0.00…1.00"), "{screen}");
    assert!(screen.contains("      mlp ▆▅▅▄▃ α 0.00…1.00"), "{screen}");
    // Too few rows: no strip, the columns keep theirs.
    let small = render(&a, 80, 12);
    assert!(!small.contains("self_attn"), "{small}");
}

/// A --text file ends in a newline: out of editing, its box shows the text from its start,
/// not the empty line after the newline where the cursor sits.
#[test]
fn a_scored_files_text_shows_from_its_start() {
    let mut a = app();
    a.start_in_score_mode("Good food here.\n");
    load(&mut a);
    let screen = render(&a, 100, 24);
    let boxed = screen
        .lines()
        .skip_while(|l| !l.contains("text to score"))
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(boxed.contains("Good food here."), "{screen}");
}

/// A pair loaded from a mergekit recipe names it in the header, and the slider calls α = 1
/// the recipe's own merge rather than B.
#[test]
fn a_recipe_is_named_in_the_header_and_on_the_slider() {
    let mut a = app();
    a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
        others: vec![("recipe".into(), "merges/linear-four.yaml".into())],
        ..pair_info(a.a.clone(), a.b.clone(), "A ↔ B")
    })));
    let screen = render(&a, 140, 24);
    assert!(screen.contains("(recipe linear-four.yaml)"), "{screen}");
    let labels = screen
        .lines()
        .find(|l| l.contains("α=0.00"))
        .expect("the slider's labels");
    assert!(
        labels.contains("recipe") && !labels.contains(" B "),
        "{labels}"
    );
    // Its single weight on B is no rule per layer; a gradient is.
    for (layers, per_layer) in [("0.7", false), ("[0.2, 1]", true)] {
        let mut a = app();
        a.update(Msg::Engine(EngineEvent::Loaded(PairInfo {
            others: vec![("recipe".into(), "merges/task.yaml".into())],
            layers: Some(layers.into()),
            ..pair_info(a.a.clone(), a.b.clone(), "A ↔ B")
        })));
        let screen = render(&a, 140, 24);
        assert_eq!(
            screen.contains("(α per layer)"),
            per_layer,
            "{layers}: {screen}"
        );
    }
}

/// The help lists every key in force, however many a keys.toml gives an action (it cut them at
/// 12 characters), and shows in presenter mode too (the key that opened it swallowed the next
/// one there, with nothing drawn).
#[test]
fn the_help_shows_every_rebound_key_and_in_presenter_mode() {
    let keymap = Keymap::from_toml(
        "[keys]\nquit = [\"q\", \"ctrl+q\", \"F10\", \"Esc\"]",
        std::path::Path::new("k.toml"),
    )
    .unwrap();
    let mut a = App::new(
        "assets/demo/negative".into(),
        "assets/demo/positive".into(),
        "The food at this place",
        &[Alpha::A, Alpha::B],
        GenerationParams::default(),
        keymap,
    );
    load(&mut a);
    key(&mut a, KeyCode::Char('?'));
    let screen = render(&a, 120, 50);
    assert!(screen.contains("Ctrl+c Ctrl+q Esc F10 q"), "{screen}");
    key(&mut a, KeyCode::Char('x'));
    key(&mut a, KeyCode::Char('z'));
    key(&mut a, KeyCode::Char('?'));
    let screen = render(&a, 120, 50);
    assert!(screen.contains("keys (any key closes)"), "{screen}");
}

/// A column shows its prompt as it shows the model's text: a tab as a space, a control
/// character as � (the tab vanished and ESC and CR were dropped without a mark).
#[test]
fn a_columns_prompt_shows_tabs_and_control_characters() {
    let mut a = App::new(
        "a".into(),
        "b".into(),
        "tab\there esc\u{1b}[31mred cr\rx",
        &[Alpha::A],
        GenerationParams::default(),
        Keymap::default(),
    );
    let jobs = load(&mut a);
    stream(&mut a, &jobs[0], &[" ok"], true);
    let screen = render(&a, 80, 20);
    assert!(screen.contains("tab here esc�[31mred cr�x ok"), "{screen}");
}

/// The hints on the screen name the keys in force, not the defaults a keys.toml took away.
#[test]
fn the_hints_name_the_rebound_keys() {
    let keymap = Keymap::from_toml(
        "[keys]\nedit_prompt = [\"i\"]\nhelp = [\"h\"]\nscore_mode = [\"alt+s\"]",
        std::path::Path::new("k.toml"),
    )
    .unwrap();
    let mut a = App::new(
        "a".into(),
        "b".into(),
        "The food",
        &[Alpha::A],
        GenerationParams::default(),
        keymap,
    );
    load(&mut a);
    let screen = render(&a, 100, 20);
    assert!(
        screen.contains("prompt (i to edit)") && screen.contains("h keys"),
        "{screen}"
    );
    assert!(!screen.contains("(e to edit)") && !screen.contains("? keys"));
}

/// In score mode the columns' fits fill the status line: an error said there comes before
/// them (a refused α entry used to look as if nothing had happened).
#[test]
fn score_mode_shows_an_error_before_the_fits() {
    let mut a = App::new(
        "a".into(),
        "b".into(),
        "x",
        &[0.0, 0.25, 0.5, 0.75, 1.0].map(|x| Alpha::new(x).unwrap()),
        GenerationParams::default(),
        Keymap::default(),
    );
    a.start_in_score_mode("Good food here.\n");
    load(&mut a);
    for c in ['1', '0', '0', '1'] {
        key(&mut a, KeyCode::Char(c));
    }
    key(&mut a, KeyCode::Enter);
    let screen = render(&a, 80, 24);
    let status = screen.lines().last().unwrap();
    assert!(status.contains("1001"), "{screen}");
}
