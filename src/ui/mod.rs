//! The view: a pure function of `App` onto a frame. `layout` is shared with the mouse handler,
//! so what is clicked is what was drawn.

pub mod big;
mod heat;
pub mod pad;
mod panels;
pub mod slider;
mod strip;
pub mod svg;
pub mod tokens;
pub mod wrap;

use crate::app::{fmt_alpha, App, Column, ColumnState, Mode, PairState};
use crate::engine::{PairInfo, StopReason};
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Widget, Wrap};
use ratatui::Frame;

/// Below this a column's text is unreadable; fewer columns are shown instead.
const MIN_COLUMN_WIDTH: u16 = 16;
/// The smallest terminal that gets the real screen.
pub const MIN_SIZE: (u16, u16) = (20, 5);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Areas {
    pub header: Option<Rect>,
    pub prompt: Option<Rect>,
    pub slider_track: Option<Rect>,
    pub slider_labels: Option<Rect>,
    /// On a plane: the pad, α across and β up.
    pub pad: Option<Rect>,
    /// With α per layer: the layer strip, a row per module kind.
    pub strip: Option<Rect>,
    /// (column index, area) of the columns shown.
    pub columns: Vec<(usize, Rect)>,
    /// Presenter mode: the focused α in big digits.
    pub big_alpha: Option<Rect>,
    /// Under the columns: the token cursor's panel, or score mode's differences.
    pub panel: Option<Rect>,
    /// The token shading's legend, above the status line.
    pub legend: Option<Rect>,
    pub status: Option<Rect>,
}

/// Rows of the panel under the columns (borders included).
const PANEL_ROWS: u16 = 9;

/// Rows of the plane's pad: β in quarters from −0.5 to 1.5.
const PAD_ROWS: u16 = 9;

/// Rows the presenter's big α takes (five of glyphs, a blank below).
const BIG_ROWS: u16 = 6;

pub fn layout(area: Rect, app: &App) -> Areas {
    let mut a = Areas::default();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        return a;
    }
    let (x, w) = (area.x, area.width);
    let mut top = area.y;
    let mut bottom = area.y + area.height;
    let h = area.height;
    if app.presenter {
        // Columns only, under the big α when there is room for it.
        if h >= BIG_ROWS + 8 {
            a.big_alpha = Some(Rect::new(x, top, w, BIG_ROWS));
            top += BIG_ROWS;
        }
        a.columns = column_areas(app, x, w, top, bottom - top);
        return a;
    }
    a.header = Some(Rect::new(x, top, w, 1));
    top += 1;
    bottom -= 1;
    a.status = Some(Rect::new(x, bottom, w, 1));
    if h >= 12 && tokens::shading(app) != crate::app::TokenView::Off {
        bottom -= 1;
        a.legend = Some(Rect::new(x, bottom, w, 1));
    }
    // The prompt box: bordered with up to three lines when there is room, one bare line when
    // space is short, none on the smallest screens.
    if h >= 18 {
        let lines = (app.editor().lines().count() as u16).clamp(1, 3);
        a.prompt = Some(Rect::new(x, top, w, lines + 2));
        top += lines + 2;
    } else if h >= 10 {
        a.prompt = Some(Rect::new(x, top, w, 1));
        top += 1;
    }
    if h >= 8 {
        let margin = if w >= 40 { 6 } else { 0 };
        a.slider_track = Some(Rect::new(x + margin, top, w - 2 * margin, 1));
        top += 1;
        if h >= 12 {
            a.slider_labels = Some(Rect::new(x + margin, top, w - 2 * margin, 1));
            top += 1;
        }
    }
    // The token panel comes first where it is wanted: the strip and the pad yield their rows
    // to it, so an open cursor is never out of sight.
    let wants_panel = app.cursor.is_some() || app.scored();
    let for_panel = if app.cursor.is_some() { PANEL_ROWS } else { 0 };
    // With α per layer the strip sits under the slider, where the columns keep rows.
    let strip = strip::rows(app);
    if strip > 0 && bottom.saturating_sub(top) >= strip + 8 + for_panel && w >= 40 {
        a.strip = Some(Rect::new(x, top, w, strip));
        top += strip;
    }
    // On a plane the pad sits under the slider where the columns keep rows of their own.
    if app.beta().is_some() && bottom.saturating_sub(top) >= PAD_ROWS + 8 + for_panel && w >= 40 {
        let margin = 6;
        a.pad = Some(Rect::new(x + margin, top, w - 2 * margin, PAD_ROWS));
        top += PAD_ROWS;
    }
    // The panel takes rows from the columns only where they keep a few of their own.
    if wants_panel && bottom.saturating_sub(top) >= PANEL_ROWS + 6 && w >= 40 {
        bottom -= PANEL_ROWS;
        a.panel = Some(Rect::new(x, bottom, w, PANEL_ROWS));
    }
    a.columns = column_areas(app, x, w, top, bottom.saturating_sub(top));
    a
}

/// As many columns as fit side by side, a window that holds the focused one.
fn column_areas(app: &App, x: u16, w: u16, top: u16, rows: u16) -> Vec<(usize, Rect)> {
    let mut out = Vec::new();
    let k = app.columns.len() as u16;
    let shown = (w / MIN_COLUMN_WIDTH).clamp(1, k.max(1));
    // A window of `shown` columns that contains the focused one, moved from where it was
    // only as far as that needs.
    let focused = app.focused as u16;
    let first = (app.first_shown.get() as u16)
        .min(focused)
        .max((focused + 1).saturating_sub(shown))
        .min(k.saturating_sub(shown));
    app.first_shown.set(first as usize);
    let width = w / shown;
    for j in 0..shown {
        let cx = x + j * width;
        let cw = if j + 1 == shown { w - j * width } else { width };
        out.push(((first + j) as usize, Rect::new(cx, top, cw, rows)));
    }
    out
}

/// What a mouse event means on the screen `areas` describes, for [`crate::app::Pointer`].
/// `dragging` carries a slider drag across events: once a press lands on the track, drags
/// anywhere keep setting α until the button is released.
pub fn pointer(
    app: &App,
    areas: &Areas,
    dragging: &mut bool,
    m: crossterm::event::MouseEvent,
) -> Option<crate::app::Pointer> {
    let range = app.range.bounds();
    use crate::app::Pointer;
    use crossterm::event::{MouseButton, MouseEventKind};
    let inside = |r: Rect| {
        m.column >= r.x && m.column < r.x + r.width && m.row >= r.y && m.row < r.y + r.height
    };
    match m.kind {
        MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left) => {
            let press = matches!(m.kind, MouseEventKind::Down(_));
            // Over the help, or while α animates, a press only closes or stops it.
            if press && (app.show_help || app.animating.is_some()) {
                return Some(Pointer::Elsewhere);
            }
            if let Some(track) = areas.slider_track {
                if inside(track) || (*dragging && !press) {
                    *dragging = true;
                    let x = m
                        .column
                        .clamp(track.x, track.x + track.width.saturating_sub(1));
                    let alpha = slider::alpha_at(range, track.width, x - track.x);
                    let alpha = round_to_cell(alpha, range, track.width);
                    return Some(Pointer::Slider(alpha));
                }
            }
            if let Some(pad) = areas.pad {
                if inside(pad) {
                    let alpha = slider::alpha_at(range, pad.width, m.column - pad.x);
                    let beta = pad::beta_at(app.beta_range(), pad.height, m.row - pad.y);
                    return Some(Pointer::Pad(
                        round_to_cell(alpha, range, pad.width),
                        round_to_cell(beta, app.beta_range(), pad.height),
                    ));
                }
            }
            if !press {
                return None;
            }
            if areas.prompt.is_some_and(inside) {
                return Some(Pointer::Prompt);
            }
            let Some(&(i, r)) = areas.columns.iter().find(|(_, r)| inside(*r)) else {
                return Some(Pointer::Elsewhere);
            };
            // A press on a token of the text puts the cursor there.
            let token = column_window(app, i, r).and_then(|(text, inner, start)| {
                if !inside(inner) {
                    return None;
                }
                let row = (m.row - inner.y) as usize;
                let at = text.byte_at(start, row, (m.column - inner.x) as usize)?;
                text.token_at(&app.columns[i].pieces, at)
            });
            Some(match token {
                Some(token) => Pointer::Token { column: i, token },
                None => Pointer::Column(i),
            })
        }
        MouseEventKind::Up(_) => {
            *dragging = false;
            None
        }
        MouseEventKind::ScrollUp => Some(Pointer::Scroll(1)),
        MouseEventKind::ScrollDown => Some(Pointer::Scroll(-1)),
        _ => None,
    }
}

/// A value under the pointer at the pointer's resolution: the power of ten at or below one
/// cell's span of `range` over `cells` (a hundredth on the default range, finer on a narrow
/// one, where hundredths would skip cells), not a cell's arbitrary fraction.
fn round_to_cell(v: f64, (lo, hi): (f64, f64), cells: u16) -> crate::engine::Alpha {
    let span = (hi - lo) / f64::from(cells.max(2) - 1);
    let unit = 10f64.powf(span.log10().floor()).clamp(1e-6, 1.0);
    crate::engine::Alpha::saturating((v / unit).round() * unit)
}

pub fn view(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let areas = layout(area, app);
    let buf = frame.buffer_mut();
    if app.presenter && !areas.columns.is_empty() {
        presenter(app, &areas, buf);
        // The help the key opened shows here too (it closes on the next key either way).
        if app.show_help {
            help(app, area, buf);
        }
        return;
    }
    let Some(status) = areas.status else {
        // Too small for anything but a hint (and never a panic).
        let hint = format!("terminal too small ({}×{})", area.width, area.height);
        Paragraph::new(hint)
            .wrap(Wrap { trim: true })
            .render(area, buf);
        return;
    };
    if let Some(r) = areas.header {
        header(app, r, buf);
    }
    if let Some(r) = areas.prompt {
        prompt(app, r, frame);
    }
    let buf = frame.buffer_mut();
    if let Some(r) = areas.pad {
        pad::render(app, r, buf);
    }
    if let Some(r) = areas.strip {
        strip::render(app, r, buf);
    }
    if let Some(t) = areas.slider_track {
        slider::render(app, t, areas.slider_labels, buf);
        // The visible range's ends, in the margins beside the track.
        if t.x > area.x + 1 {
            let dim = Style::default().fg(Color::DarkGray);
            let lo = format!("{:>5}", fmt_range(app.range.lo().value()));
            let hi = fmt_range(app.range.hi().value());
            buf.set_stringn(area.x, t.y, &lo, (t.x - area.x - 1) as usize, dim);
            let hx = t.x + t.width + 1;
            buf.set_stringn(
                hx,
                t.y,
                &hi,
                (area.x + area.width).saturating_sub(hx) as usize,
                dim,
            );
        }
    }
    match &app.pair {
        PairState::Failed(e) => load_error(app, e, columns_area(&areas), buf),
        _ => {
            for (i, r) in &areas.columns {
                column(app, *i, &app.columns[*i], *r, buf);
            }
        }
    }
    if let (Some(r), Some(line)) = (areas.legend, tokens::legend(app)) {
        line.render(r, buf);
    }
    if let Some(r) = areas.panel {
        panels::render(app, r, buf);
    }
    status_line(app, status, buf);
    if app.show_curve {
        curve_panel(app, columns_area(&areas), buf);
    }
    if app.show_help {
        help(app, area, buf);
    }
}

/// Presenter mode: the big α of the focused column, and the columns.
fn presenter(app: &App, areas: &Areas, buf: &mut ratatui::buffer::Buffer) {
    if let Some(r) = areas.big_alpha {
        let alpha = app.columns[app.focused].alpha;
        let rows = big::render(&format!("α={}", fmt_alpha(alpha)));
        let width = wrap::width(&rows[0]) as u16;
        let x = r.x + r.width.saturating_sub(width) / 2;
        for (i, line) in rows.iter().enumerate() {
            buf.set_stringn(
                x,
                r.y + i as u16,
                line,
                r.width as usize,
                Style::default().fg(Color::Yellow),
            );
        }
    }
    match &app.pair {
        PairState::Failed(e) => load_error(app, e, columns_area(areas), buf),
        _ => {
            for (i, r) in &areas.columns {
                column(app, *i, &app.columns[*i], *r, buf);
            }
        }
    }
}

/// A vertical line at each column's α (the focused one highlighted), for the charts over α.
fn alpha_marks<'a>(app: &App, marks: &'a [Vec<(f64, f64)>]) -> Vec<ratatui::widgets::Dataset<'a>> {
    use ratatui::{
        symbols::Marker,
        widgets::{Dataset, GraphType},
    };
    marks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let colour = if i == app.focused {
                Color::Yellow
            } else {
                Color::DarkGray
            };
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(colour))
                .data(m)
        })
        .collect()
}

/// "Q4_1 + Q8_0, kept quantized" from a full pair's description "A ↔ B (…, kept quantized)".
fn kept_quantized(description: &str) -> Option<&str> {
    let end = description.rfind(", kept quantized)")? + ", kept quantized".len();
    let start = description[..end].rfind(" (")? + 2;
    Some(&description[start..end])
}

/// Long paths in a header text cut to their last component ("…/model.gguf"), so that the
/// architecture, dtype and device after them stay on screen.
fn compact_paths(text: &str) -> String {
    text.split(' ')
        .map(|w| match (w.find('/'), w.rsplit_once('/')) {
            (Some(first), Some((_, last))) if w.chars().count() > 32 && !last.is_empty() => {
                // What leads into the path ("β·(" of a plane's term) stays.
                let lead = &w[..w[..first].rfind('(').map_or(0, |i| i + 1)];
                format!("{lead}…/{last}")
            }
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn columns_area(a: &Areas) -> Rect {
    a.columns
        .iter()
        .map(|(_, r)| *r)
        .reduce(|x, y| x.union(y))
        .unwrap_or_default()
}

fn header(app: &App, r: Rect, buf: &mut ratatui::buffer::Buffer) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let dim = Style::default().fg(Color::DarkGray);
    let mut spans = vec![
        Span::styled("lerpscope ", bold.fg(Color::Magenta)),
        Span::styled("A ", dim),
        Span::raw(compact_paths(&app.a)),
        Span::styled(" ↔ B ", dim),
        Span::raw(compact_paths(&app.b)),
    ];
    if let PairState::Ready(info) = &app.pair {
        // Adapters: what is on each side of the base, e.g. "base X + LoRA r8 ×7 modules ↔ …".
        if let Some(rest) = info.description.strip_prefix("base ") {
            // A plane's C follows, with β, below.
            let rest = app
                .plane_term()
                .and_then(|c| rest.strip_suffix(c)?.strip_suffix(" + "))
                .unwrap_or(rest);
            spans.truncate(1);
            spans.push(Span::styled("base ", dim));
            spans.push(Span::raw(compact_paths(rest)));
        } else if let Some(kept) = kept_quantized(&info.description) {
            // Two full endpoints kept quantized: their types, as adapters' bases show them.
            spans.push(Span::styled(format!(" ({kept})"), dim));
        }
        if info.method != crate::engine::Method::Linear {
            spans.push(Span::styled(
                format!(" ({})", info.method.name()),
                Style::default().fg(Color::Cyan),
            ));
        }
        if let Some(file) = app.recipe() {
            let name = std::path::Path::new(file)
                .file_name()
                .map_or(file.into(), |n| n.to_string_lossy());
            spans.push(Span::styled(
                format!(" (recipe {name})"),
                Style::default().fg(Color::Cyan),
            ));
        }
        // The path's other parts, from the description: α per layer, a plane's C and β.
        // A recipe's single weight on B is no rule per layer: the recipe names it.
        let scalar = |l: &String| app.recipe().is_some() && l.parse::<f64>().is_ok();
        if info.layers.as_ref().is_some_and(|l| !scalar(l)) {
            spans.push(Span::styled(
                " (α per layer)",
                Style::default().fg(Color::Cyan),
            ));
        }
        if let Some(c) = app.plane_term() {
            let mut c = format!(" + {}", compact_paths(c));
            if let Some(gamma) = info.gamma {
                c.push_str(&format!(" (γ = {gamma})"));
            }
            spans.push(Span::styled(c, Style::default().fg(Color::Cyan)));
        }
        spans.push(Span::styled(
            format!(
                "  {} · {} params · {} · {}",
                info.architecture
                    .trim_end_matches("ForCausalLM")
                    .trim_end_matches("LMHeadModel"),
                human_count(info.params),
                info.dtype,
                info.device
            ),
            dim,
        ));
    }
    Line::from(spans).render(r, buf);
}

fn prompt(app: &App, r: Rect, frame: &mut Frame) {
    let editing = app.mode == Mode::EditPrompt;
    let lines: Vec<String> = app.editor().lines().collect();
    let (row, col) = app.editor().cursor();
    let style = if editing {
        Style::default().fg(Color::Yellow)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    let (inner, block) = if r.height >= 3 {
        use crate::app::keymap::Action;
        let (e, back) = (
            app.keymap.hint(Action::EditPrompt),
            app.keymap.hint(Action::ScoreMode),
        );
        let title = match (app.score_mode, editing, app.edit_pending()) {
            (false, true, _) => " prompt — Enter runs · Alt+Enter new line · Esc leaves ".into(),
            (false, false, false) => format!(" prompt ({e} to edit) "),
            (false, false, true) => format!(
                " prompt — edited, not run: the columns show the last one ({e}, Enter runs it) "
            ),
            (true, true, _) => {
                " text to score — Enter scores · paste or type · Esc leaves ".to_string()
            }
            (true, false, false) => {
                format!(" text to score ({e} to edit · {back} back to generating) ")
            }
            (true, false, true) => format!(
                " text to score — edited, not scored: the columns show the last ({e}, Enter scores) "
            ),
        };
        let b = Block::bordered().border_style(style).title(title);
        (b.inner(r), Some(b))
    } else {
        (r, None)
    };
    // Editing, the cursor's line stays in view; otherwise the text shows from its start (a
    // --text file's final newline would otherwise leave only its empty last line in sight).
    let first = match editing {
        true => (row + 1).saturating_sub(inner.height as usize),
        false => 0,
    };
    // Tabs and control characters as the columns show them (a terminal cell drops a tab).
    let mut text: Vec<Line> = lines
        .iter()
        .skip(first)
        .take(inner.height as usize)
        .map(|l| Line::raw(crate::app::sanitize(l)))
        .collect();
    // A bare line has no title to say that its edit has not run.
    if block.is_none() && !editing && app.edit_pending() {
        if let Some(l) = text.first_mut() {
            l.spans.insert(
                0,
                Span::styled("not run: ", Style::default().fg(Color::Yellow)),
            );
        }
    }
    // Scroll horizontally so the cursor stays visible on long lines.
    let prefix: String = lines[row].chars().take(col).collect();
    let cursor_x = wrap::width(&crate::app::sanitize(&prefix)) as u16;
    let hscroll = match editing {
        true => cursor_x.saturating_sub(inner.width.saturating_sub(1)),
        false => 0,
    };
    let p = Paragraph::new(text).scroll((0, hscroll));
    if let Some(b) = block {
        frame.render_widget(b, r);
    }
    frame.render_widget(p, inner);
    if editing && inner.width > 0 && inner.height > 0 {
        frame.set_cursor_position(Position::new(
            inner.x + cursor_x - hscroll,
            inner.y + (row - first) as u16,
        ));
    }
}

fn column(app: &App, i: usize, c: &Column, r: Rect, buf: &mut ratatui::buffer::Buffer) {
    let focused = i == app.focused;
    let border = if focused {
        Style::default().fg(Color::Yellow)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    let state = match &c.state {
        ColumnState::Idle => "…".to_string(),
        ColumnState::Queued => "queued".to_string(),
        ColumnState::Generating => format!("▸ {} tok", c.tokens),
        ColumnState::Done(StopReason::Cancelled) => "stopped".to_string(),
        // A text the context cut short says so: its length is the context's, not the budget.
        ColumnState::Done(StopReason::Context) => format!("✓ {} tok · context full", c.tokens),
        ColumnState::Done(_) => match c.tokens_per_s {
            Some(t) if t > 0.0 => format!("✓ {} tok · {:.0}/s", c.tokens, t),
            _ => format!("✓ {} tok", c.tokens),
        },
        ColumnState::Failed(_) => "✗ error".to_string(),
    };
    // The short form where the long one does not fit, so a narrow column keeps β as well as α.
    let title = [crate::app::point_label(c.alpha, c.beta), short_point(c)]
        .into_iter()
        .map(|t| format!(" {t} "))
        .find(|t| wrap::width(t) + 2 <= r.width as usize)
        .unwrap_or_else(|| format!(" {} ", short_point(c)));
    let mut block = Block::bordered()
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(border)
        .title(Line::styled(
            title.clone(),
            border.add_modifier(Modifier::BOLD),
        ));
    // The state goes only where it fits beside α (α is what a narrow column must show): in
    // full, else its first part ("✓ 20 tok"), else its mark.
    let first_part = state.split(" · ").next().unwrap_or_default().to_string();
    // A mark alone says something only where it is a symbol (✓, ▸, ✗), not a word's letter.
    let mark: String = state
        .chars()
        .take(1)
        .filter(|c| !c.is_alphanumeric())
        .collect();
    let fits = [state, first_part, mark]
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| format!(" {s} "))
        .find(|s| wrap::width(&title) + wrap::width(s) + 2 <= r.width as usize);
    if let Some(state) = fits {
        block = block.title(Line::styled(state, border).right_aligned());
    }
    if let Some((vader, perplexity)) = c.meters {
        let colour = if vader > 0.05 {
            Color::Green
        } else if vader < -0.05 {
            Color::Red
        } else {
            Color::Gray
        };
        let long = crate::app::ColumnMeters { vader, perplexity }.line(" · ");
        // A narrow column keeps what fits: the sentiment first.
        let short = long.replacen("VADER", "V", 1);
        let shortest = format!("V {vader:+.2}");
        let fits = [long, short, shortest]
            .into_iter()
            .map(|m| format!(" {m} "))
            .find(|m| wrap::width(m) + 2 <= r.width as usize);
        if let Some(meters) = fits {
            block = block.title_bottom(Line::styled(meters, Style::default().fg(colour)));
        }
    }
    if let Some((nll, ppl)) = c.score {
        let score = format!(" NLL {nll:.1} · ppl {} ", crate::engine::fixed(ppl, 1));
        if wrap::width(&score) + 2 <= r.width as usize {
            block = block.title_bottom(Line::styled(score, Style::default().fg(Color::Cyan)));
        }
    }
    // Where this column parts from its left neighbour (the token is marked in the text).
    if let Some(d) = app.divergence_of(i) {
        let parts = format!(" parts at token {} ", d + 1);
        if wrap::width(&parts) + 24 <= r.width as usize {
            block = block.title_bottom(
                Line::styled(parts, Style::default().fg(Color::Magenta)).right_aligned(),
            );
        }
    }
    let inner = block.inner(r);
    block.render(r, buf);
    if inner.width == 0 || inner.height == 0 {
        return;
    }
    let dim = Style::default().fg(Color::DarkGray);
    match (&app.pair, &c.state) {
        (PairState::Loading, _) => {
            Paragraph::new("loading the pair…")
                .style(dim)
                .render(inner, buf);
            return;
        }
        (_, ColumnState::Failed(e)) => {
            Paragraph::new(e.as_str())
                .style(Style::default().fg(Color::Red))
                .wrap(Wrap { trim: false })
                .render(inner, buf);
            return;
        }
        _ => {}
    }
    let Some((text, _, start)) = column_window(app, i, r) else {
        return;
    };
    let end = (start + inner.height as usize).min(text.lines.len());
    Paragraph::new(text.render(app, i, start, end)).render(inner, buf);
}

/// Column `i` drawn in `r`: its text laid out for the inside of the border, that inside, and
/// the first line shown (following the stream, scrolled, or holding the token cursor).
fn column_window(app: &App, i: usize, r: Rect) -> Option<(tokens::ColumnText, Rect, usize)> {
    let inner = Block::bordered().inner(r);
    if inner.width == 0 || inner.height == 0 {
        return None;
    }
    let c = &app.columns[i];
    let text = tokens::ColumnText::of(app, i, inner.width as usize);
    let cursor_line = app
        .cursor
        .filter(|_| i == app.focused)
        .and_then(|cur| c.pieces.get(cur.token).map(|_| cur.token))
        .map(|t| {
            let (s, _) = crate::app::inspect::span(&c.pieces, t);
            text.line_of(text.split + s)
        });
    let (start, _) = text.window(inner.height as usize, c.scroll as usize, cursor_line);
    let limit = text.lines.len().saturating_sub(inner.height as usize);
    c.scroll_limit.set(limit.min(u16::MAX as usize) as u16);
    Some((text, inner, start))
}

fn load_error(app: &App, e: &str, r: Rect, buf: &mut ratatui::buffer::Buffer) {
    let text = vec![
        Line::styled("The model pair could not be loaded:", Style::default().add_modifier(Modifier::BOLD)),
        Line::raw(""),
        Line::styled(e.to_string(), Style::default().fg(Color::Red)),
        Line::raw(""),
        Line::raw(format!("A = {}", app.a)),
        Line::raw(format!("B = {}", app.b)),
        Line::raw(""),
        Line::raw("To fix it: pass two fine-tunes of one base model, each a directory with config.json, model.safetensors (or shards) and tokenizer.json, or a Hub id in the local cache:"),
        Line::styled("  lerpscope tui --a PATH_OR_ID --b PATH_OR_ID", Style::default().fg(Color::Cyan)),
        Line::raw("Press q to quit."),
    ];
    Paragraph::new(text)
        .wrap(Wrap { trim: false })
        .block(
            Block::bordered()
                .border_style(Style::default().fg(Color::Red))
                .title(" error "),
        )
        .render(r, buf);
}

fn status_line(app: &App, r: Rect, buf: &mut ratatui::buffer::Buffer) {
    let dim = Style::default().fg(Color::DarkGray);
    let mut spans = Vec::new();
    match &app.mode {
        Mode::EnterAlpha(s) => {
            spans.push(Span::styled(
                format!("α = {s}▏ Enter sets · Esc cancels  "),
                Style::default().fg(Color::Yellow),
            ));
        }
        Mode::EnterLayers(s) => {
            spans.push(Span::styled(
                format!(
                    "α per layer (FILTER=V0,V1,…;… empty: off) {s}▏ Enter sets · Esc cancels  "
                ),
                Style::default().fg(Color::Yellow),
            ));
        }
        Mode::EnterTarget(s) => {
            spans.push(Span::styled(
                format!(
                    "find the α of sentiment (VADER, −1…1) {s}▏ Enter searches · Esc cancels  "
                ),
                Style::default().fg(Color::Yellow),
            ));
        }
        Mode::EditPrompt => spans.push(Span::styled(
            if app.score_mode {
                "editing the text to score  "
            } else {
                "editing the prompt  "
            },
            Style::default().fg(Color::Yellow),
        )),
        Mode::Normal => {}
    }
    // The notice and the error, in the colours they have at the line's end.
    let said = |spans: &mut Vec<Span<'static>>| {
        if let Some(n) = &app.notice {
            spans.push(Span::styled(n.clone(), Style::default().fg(Color::Green)));
            spans.push(Span::styled(" · ", dim));
        }
        if let Some(e) = &app.last_error {
            spans.push(Span::styled(e.clone(), Style::default().fg(Color::Red)));
            spans.push(Span::styled(" · ", dim));
        }
    };
    if app.scored() {
        // The columns' fits can fill the line: what was just said goes before them.
        said(&mut spans);
        // Each column's fit to the text, left to right.
        spans.push(Span::styled("score ", Style::default().fg(Color::Cyan)));
        for c in &app.columns {
            let fit = match c.score {
                Some((nll, ppl)) => format!(
                    "{}: NLL {nll:.1} ppl {}",
                    short_point(c),
                    crate::engine::fixed(ppl, 1)
                ),
                None => format!("{}: …", short_point(c)),
            };
            spans.push(Span::raw(fit));
            spans.push(Span::styled(" · ", dim));
        }
    }
    if let Some(ms) = app.last_blend_ms {
        spans.push(Span::raw(format!("blend {ms:.2} ms")));
        spans.push(Span::styled(" · ", dim));
    }
    if let Some(t) = app.last_tokens_per_s {
        spans.push(Span::raw(format!("{t:.0} tok/s")));
        spans.push(Span::styled(" · ", dim));
    }
    if let PairState::Ready(PairInfo {
        gpu_memory: Some((used, total)),
        ..
    }) = &app.pair
    {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        spans.push(Span::raw(format!(
            "GPU {:.1}/{:.0} GiB",
            gib(*used),
            gib(*total)
        )));
        spans.push(Span::styled(" · ", dim));
    }
    spans.push(Span::raw(app.activity.clone()));
    if let Some(f) = &app.finding {
        let bracket = match f.bracket {
            Some((a, b)) => format!(", bracket [{}, {}]", fmt_alpha(a), fmt_alpha(b)),
            None => String::new(),
        };
        spans.push(Span::styled(
            format!(
                " · finding sentiment {:+.2}: {} pts{bracket}, Esc stops",
                f.target,
                f.points.len()
            ),
            Style::default().fg(Color::Cyan),
        ));
    }
    if app.show_details {
        spans.push(Span::styled(
            format!(
                " · seed {} · T {} · top-k {} · top-p {} · penalty {} · {} tokens",
                app.params.sampling.seed,
                app.params.sampling.temperature,
                app.params.sampling.top_k,
                app.params.sampling.top_p,
                app.params.sampling.repeat_penalty,
                app.params.max_tokens
            ),
            dim,
        ));
    }
    if !app.scored() && (app.notice.is_some() || app.last_error.is_some()) {
        spans.push(Span::styled(" · ", dim));
        said(&mut spans);
        // The separator `said` ends with has nothing after it.
        spans.pop();
    }
    let help = app.keymap.hint(crate::app::keymap::Action::Help);
    spans.push(Span::styled(format!("  {help} keys"), dim));
    Line::from(spans).render(r, buf);
}

fn help(app: &App, area: Rect, buf: &mut ratatui::buffer::Buffer) {
    use crate::app::keymap::Action;
    let mut entries: Vec<(String, String)> = Action::all()
        .map(|a| (compact_keys(&app.keymap.keys_of(a)), a.describe()))
        .collect();
    entries.push(("mouse".into(), "click slider, pad, column or token".into()));
    entries.push((String::new(), "in the prompt:".into()));
    for (k, what) in crate::app::editor::KEYS {
        entries.push((k.to_string(), what.to_string()));
    }
    // The keys' column as wide as its longest entry (rebound keys can be many), within reason.
    let kw = entries
        .iter()
        .map(|(k, _)| wrap::width(k))
        .max()
        .unwrap_or(0)
        .clamp(12, 30);
    // Two columns when one would not fit the height and the width allows.
    let rows_one = entries.len() as u16 + 4;
    let two_wide = 2 * (kw + 2 + 34 + 1) + 2;
    let halves = if rows_one > area.height && area.width as usize >= two_wide.max(96) {
        2
    } else {
        1
    };
    let per = entries.len().div_ceil(halves);
    let dw = if halves == 2 { 34 } else { 46 };
    let col_w = kw + 2 + dw;
    let key = Style::default().fg(Color::Cyan);
    let mut lines: Vec<Line> = (0..per)
        .map(|row| {
            let mut spans = Vec::new();
            for h in 0..halves {
                if let Some((k, what)) = entries.get(h * per + row) {
                    let k = wrap::fit(k, kw);
                    let k = format!("{}{k}  ", " ".repeat(kw - wrap::width(&k)));
                    spans.push(Span::styled(k, key));
                    spans.push(Span::raw(wrap::pad(&wrap::fit(what, dw), dw + 1)));
                }
            }
            Line::from(spans)
        })
        .collect();
    if let Some(p) = crate::app::keymap::Keymap::user_file() {
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            format!("Rebind keys in {}", p.display()),
            Style::default().fg(Color::DarkGray),
        ));
    }
    let w = area.width.min((col_w as u16 + 1) * halves as u16 + 2);
    let h = area.height.min(lines.len() as u16 + 2);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    Clear.render(r, buf);
    Paragraph::new(lines)
        .block(
            Block::bordered()
                .title(" keys (any key closes) ")
                .border_style(Style::default().fg(Color::Cyan)),
        )
        .render(r, buf);
}

/// The curve panel's keys, as bound: "+ more, g closes".
pub(crate) fn curve_keys(app: &App) -> String {
    use crate::app::keymap::Action;
    format!(
        "{} more, {} closes",
        app.keymap.hint(Action::CurveMore),
        app.keymap.hint(Action::Curve)
    )
}

/// A key list for the help: ten digit keys read as "0-9".
fn compact_keys(keys: &[String]) -> String {
    let digits = (0..10).all(|d| keys.contains(&d.to_string()));
    let rest = keys
        .iter()
        .filter(|k| !(digits && k.len() == 1 && k.as_bytes()[0].is_ascii_digit()))
        .cloned();
    let mut out: Vec<String> = Vec::new();
    if digits {
        out.push("0-9".into());
    }
    out.extend(rest);
    out.join(" ")
}

/// The attribute-vs-α curve of the latest quick sweep, over the columns, with the columns'
/// alphas marked as vertical lines.
fn curve_panel(app: &App, r: Rect, buf: &mut ratatui::buffer::Buffer) {
    use ratatui::symbols::Marker;
    use ratatui::widgets::{Axis, Chart, Dataset, GraphType};
    if r.width < 20 || r.height < 8 {
        return;
    }
    if let Some(grid) = &app.curve.grid {
        return heat::render(app, grid, r, buf);
    }
    let mut pts: Vec<(f64, crate::eval::stats::Estimate)> = app
        .curve
        .points
        .iter()
        .map(|&(a, v)| (a.value(), v))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let means: Vec<(f64, f64)> = pts.iter().map(|&(a, e)| (a, e.mean)).collect();
    // Each point's 95% interval as a vertical bar (clipped to the axis).
    let bars: Vec<Vec<(f64, f64)>> = pts
        .iter()
        .filter(|(_, e)| e.n > 1)
        .map(|&(a, e)| vec![(a, e.ci_low.max(-1.0)), (a, e.ci_high.min(1.0))])
        .collect();
    let marks: Vec<Vec<(f64, f64)>> = app
        .columns
        .iter()
        .map(|c| vec![(c.alpha.value(), -1.0), (c.alpha.value(), 1.0)])
        .collect();
    let mut sets = alpha_marks(app, &marks);
    sets.extend(bars.iter().map(|b| {
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Blue))
            .data(b)
    }));
    sets.push(
        Dataset::default()
            .name("mean VADER, 95% CI")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Cyan))
            .data(&means),
    );
    let (lo, hi) = app.range.bounds();
    let progress = if pts.len() < app.curve.expected {
        format!(" — sweeping {}/{} ", pts.len(), app.curve.expected)
    } else {
        String::new()
    };
    let title = format!(
        " sentiment vs α: {} samples per point{progress} ({}) ",
        app.curve.samples,
        curve_keys(app)
    );
    Clear.render(r, buf);
    Chart::new(sets)
        .block(
            Block::bordered()
                .title(title)
                .border_style(Style::default().fg(Color::Cyan)),
        )
        .x_axis(Axis::default().title("α").bounds([lo, hi]).labels([
            fmt_range(lo),
            fmt_range((lo + hi) / 2.0),
            fmt_range(hi),
        ]))
        .y_axis(
            Axis::default()
                .title("VADER")
                .bounds([-1.0, 1.0])
                .labels(["-1", "0", "+1"]),
        )
        .render(r, buf);
}

fn fmt_range(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn human_count(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// A column's point in few characters, for lines that name columns: "α 0.50", and on a plane
/// "α 0.50 β 0.20" (two columns may share an α there).
pub(crate) fn short_point(c: &crate::app::Column) -> String {
    match c.beta {
        Some(b) => format!("α {} β {}", fmt_alpha(c.alpha), fmt_alpha(b)),
        None => format!("α {}", fmt_alpha(c.alpha)),
    }
}

#[cfg(test)]
mod tests {
    /// The pointer resolves a cell on any range: hundredths on the default one, finer on a
    /// narrow one (hundredths there put eleven values on 128 cells).
    #[test]
    fn the_pointer_resolves_a_cell_on_any_range() {
        let v = |x: f64, range, cells| super::round_to_cell(x, range, cells).value();
        assert_eq!(v(0.123456, (-1.0, 2.0), 128), 0.12);
        assert_eq!(v(0.0123456, (0.0, 0.1), 128), 0.0123);
        let narrow: std::collections::BTreeSet<i64> = (0..128u16)
            .map(|c| (v(0.1 * f64::from(c) / 127.0, (0.0, 0.1), 128) * 1e6).round() as i64)
            .collect();
        assert_eq!(narrow.len(), 128);
        assert_eq!(v(0.5, (0.0, 1e-5), 128), 0.5);
    }

    #[test]
    fn a_full_pair_kept_quantized_shows_its_types() {
        assert_eq!(
            super::kept_quantized("a.gguf ↔ b.gguf (Q4_1 + Q8_0, kept quantized)"),
            Some("Q4_1 + Q8_0, kept quantized")
        );
        assert_eq!(super::kept_quantized("a ↔ b"), None);
    }

    /// Long paths shrink to their last part, and what leads into one ("β·(") stays.
    #[test]
    fn compact_paths_keeps_what_leads_into_a_path() {
        let long = "/tmp/a/rather/long/folder/of/models/for/c";
        assert_eq!(
            super::compact_paths(&format!("A ↔ B + β·({long} − A)")),
            "A ↔ B + β·(…/c − A)"
        );
        assert_eq!(
            super::compact_paths(&format!("{long} ↔ tests/x")),
            "…/c ↔ tests/x"
        );
    }
}
