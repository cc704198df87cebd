//! The view: a pure function of `App` onto a frame. `layout` is shared with the mouse handler,
//! so what is clicked is what was drawn.

pub mod big;
pub mod slider;
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
    /// (column index, area) of the columns shown.
    pub columns: Vec<(usize, Rect)>,
    /// Presenter mode: the focused α in big digits.
    pub big_alpha: Option<Rect>,
    pub status: Option<Rect>,
}

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
    // The prompt box: bordered with up to three lines when there is room, one bare line when
    // space is short, none on the smallest screens.
    if h >= 18 {
        let lines = (app.prompt.lines().count() as u16).clamp(1, 3);
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
    a.columns = column_areas(app, x, w, top, bottom.saturating_sub(top));
    a
}

/// As many columns as fit side by side, a window that holds the focused one.
fn column_areas(app: &App, x: u16, w: u16, top: u16, rows: u16) -> Vec<(usize, Rect)> {
    let mut out = Vec::new();
    let k = app.columns.len() as u16;
    let shown = (w / MIN_COLUMN_WIDTH).clamp(1, k.max(1));
    // A window of `shown` columns that contains the focused one.
    let first = (app.focused as u16 + 1)
        .saturating_sub(shown)
        .min(k - shown);
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
    areas: &Areas,
    range: (f64, f64),
    dragging: &mut bool,
    m: crossterm::event::MouseEvent,
) -> Option<crate::app::Pointer> {
    use crate::app::Pointer;
    use crossterm::event::{MouseButton, MouseEventKind};
    let inside = |r: Rect| {
        m.column >= r.x && m.column < r.x + r.width && m.row >= r.y && m.row < r.y + r.height
    };
    match m.kind {
        MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left) => {
            let press = matches!(m.kind, MouseEventKind::Down(_));
            if let Some(track) = areas.slider_track {
                if inside(track) || (*dragging && !press) {
                    *dragging = true;
                    let x = m
                        .column
                        .clamp(track.x, track.x + track.width.saturating_sub(1));
                    let alpha = slider::alpha_at(range, track.width, x - track.x);
                    // The pointer's resolution: a hundredth, not a cell's arbitrary fraction.
                    let alpha = crate::engine::Alpha::saturating((alpha * 100.0).round() / 100.0);
                    return Some(Pointer::Slider(alpha));
                }
            }
            if !press {
                return None;
            }
            if areas.prompt.is_some_and(inside) {
                return Some(Pointer::Prompt);
            }
            areas
                .columns
                .iter()
                .find(|(_, r)| inside(*r))
                .map(|&(i, _)| Pointer::Column(i))
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

pub fn view(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let areas = layout(area, app);
    let buf = frame.buffer_mut();
    if app.presenter && !areas.columns.is_empty() {
        presenter(app, &areas, buf);
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
    if let Some(t) = areas.slider_track {
        slider::render(app, t, areas.slider_labels, buf);
        // The visible range's ends, in the margins beside the track.
        if t.x > area.x + 1 {
            let dim = Style::default().fg(Color::DarkGray);
            let lo = format!("{:>5}", fmt_range(app.range.0));
            let hi = fmt_range(app.range.1);
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
        Span::raw(app.a.clone()),
        Span::styled(" ↔ B ", dim),
        Span::raw(app.b.clone()),
    ];
    if let PairState::Ready(info) = &app.pair {
        // Adapters: what is on each side of the base, e.g. "base X + LoRA r8 ×7 modules ↔ …".
        if let Some(rest) = info.description.strip_prefix("base ") {
            spans.truncate(1);
            spans.push(Span::styled("base ", dim));
            spans.push(Span::raw(rest.to_string()));
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
    let lines: Vec<String> = app.prompt.lines().collect();
    let (row, col) = app.prompt.cursor();
    let style = if editing {
        Style::default().fg(Color::Yellow)
    } else {
        Style::default().fg(Color::DarkGray)
    };
    let (inner, block) = if r.height >= 3 {
        let title = if editing {
            " prompt — Enter runs · Alt+Enter new line · Esc leaves "
        } else {
            " prompt (e to edit) "
        };
        let b = Block::bordered().border_style(style).title(title);
        (b.inner(r), Some(b))
    } else {
        (r, None)
    };
    // Keep the cursor's line in view.
    let first = (row + 1).saturating_sub(inner.height as usize);
    let text: Vec<Line> = lines
        .iter()
        .skip(first)
        .map(|l| Line::raw(l.clone()))
        .collect();
    // Scroll horizontally so the cursor stays visible on long lines.
    let prefix: String = lines[row].chars().take(col).collect();
    let cursor_x = wrap::width(&prefix) as u16;
    let hscroll = cursor_x.saturating_sub(inner.width.saturating_sub(1));
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
        ColumnState::Done(_) => match c.tokens_per_s {
            Some(t) if t > 0.0 => format!("✓ {} tok · {:.0}/s", c.tokens, t),
            _ => format!("✓ {} tok", c.tokens),
        },
        ColumnState::Failed(_) => "✗ error".to_string(),
    };
    let title = format!(" α = {} ", fmt_alpha(c.alpha));
    let state = format!(" {state} ");
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
    // The state goes only where it fits beside α: α is what a narrow column must show.
    if wrap::width(&title) + wrap::width(&state) + 2 <= r.width as usize {
        block = block.title(Line::styled(state, border).right_aligned());
    }
    if let Some((vader, ppl)) = c.meters {
        let colour = if vader > 0.05 {
            Color::Green
        } else if vader < -0.05 {
            Color::Red
        } else {
            Color::Gray
        };
        let meters = format!(" VADER {vader:+.2} · ppl {ppl:.1} ");
        if wrap::width(&meters) + 2 <= r.width as usize {
            block = block.title_bottom(Line::styled(meters, Style::default().fg(colour)));
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
    let prompt = app.prompt.text();
    let raw = format!("{prompt}{}", c.text);
    let split = prompt.len();
    // Special tokens the model emitted show as dim ⟨markers⟩ (the brackets take the same bytes
    // as the stream's private-use delimiters, so offsets hold).
    use crate::engine::token_stream::{SPECIAL_END, SPECIAL_START};
    let mut specials = Vec::new();
    let mut open = None;
    for (i, ch) in raw.char_indices() {
        match ch {
            SPECIAL_START => open = Some(i),
            SPECIAL_END => specials.extend(open.take().map(|o| (o, i + ch.len_utf8()))),
            _ => {}
        }
    }
    let full = raw.replace(SPECIAL_START, "⟨").replace(SPECIAL_END, "⟩");
    let special = Style::default()
        .fg(Color::DarkGray)
        .add_modifier(Modifier::ITALIC);
    let style_at = |i: usize| {
        if i < split {
            dim
        } else if specials.iter().any(|&(a, b)| (a..b).contains(&i)) {
            special
        } else {
            Style::default()
        }
    };
    let lines = wrap::wrap(&full, inner.width as usize);
    let h = inner.height as usize;
    let scroll = (c.scroll as usize).min(lines.len().saturating_sub(h));
    let end = lines.len() - scroll;
    let start = end.saturating_sub(h);
    let shown: Vec<Line> = lines[start..end]
        .iter()
        .map(|&(s, e)| {
            // Runs of one style within the line.
            let mut spans = Vec::new();
            let mut run = s;
            for (i, _) in full[s..e].char_indices().map(|(i, ch)| (s + i, ch)) {
                if i > run && style_at(i) != style_at(run) {
                    spans.push(Span::styled(full[run..i].to_string(), style_at(run)));
                    run = i;
                }
            }
            if e > run {
                spans.push(Span::styled(full[run..e].to_string(), style_at(run)));
            }
            Line::from(spans)
        })
        .collect();
    Paragraph::new(shown).render(inner, buf);
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
        Mode::EditPrompt => spans.push(Span::styled(
            "editing the prompt  ",
            Style::default().fg(Color::Yellow),
        )),
        Mode::Normal => {}
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
    if app.show_details {
        spans.push(Span::styled(
            format!(
                " · seed {} · T {} · top-p {} · {} tokens",
                app.params.sampling.seed,
                app.params.sampling.temperature,
                app.params.sampling.top_p,
                app.params.max_tokens
            ),
            dim,
        ));
    }
    if let Some(n) = &app.notice {
        spans.push(Span::styled(" · ", dim));
        spans.push(Span::styled(n.clone(), Style::default().fg(Color::Green)));
    }
    if let Some(e) = &app.last_error {
        spans.push(Span::styled(" · ", dim));
        spans.push(Span::styled(e.clone(), Style::default().fg(Color::Red)));
    }
    spans.push(Span::styled("  ? keys", dim));
    Line::from(spans).render(r, buf);
}

fn help(app: &App, area: Rect, buf: &mut ratatui::buffer::Buffer) {
    use crate::app::keymap::Action;
    let mut lines: Vec<Line> = Action::all()
        .map(|a| {
            Line::from(vec![
                Span::styled(
                    format!("{:>18}  ", app.keymap.keys_of(a).join(" ")),
                    Style::default().fg(Color::Cyan),
                ),
                Span::raw(a.describe()),
            ])
        })
        .collect();
    lines.push(Line::from(vec![
        Span::styled(
            format!("{:>18}  ", "mouse"),
            Style::default().fg(Color::Cyan),
        ),
        Span::raw("click or drag the slider; click a column to focus it"),
    ]));
    if let Some(p) = crate::app::keymap::Keymap::user_file() {
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            format!("Rebind keys in {}", p.display()),
            Style::default().fg(Color::DarkGray),
        ));
    }
    let w = area.width.min(78);
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

/// The attribute-vs-α curve of the latest quick sweep, over the columns, with the columns'
/// alphas marked as vertical lines.
fn curve_panel(app: &App, r: Rect, buf: &mut ratatui::buffer::Buffer) {
    use ratatui::symbols::Marker;
    use ratatui::widgets::{Axis, Chart, Dataset, GraphType};
    if r.width < 20 || r.height < 8 {
        return;
    }
    let mut pts: Vec<(f64, f64)> = app
        .curve
        .points
        .iter()
        .map(|&(a, v)| (a.value(), v))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let marks: Vec<Vec<(f64, f64)>> = app
        .columns
        .iter()
        .map(|c| vec![(c.alpha.value(), -1.0), (c.alpha.value(), 1.0)])
        .collect();
    let mut sets: Vec<Dataset> = marks
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
        .collect();
    sets.push(
        Dataset::default()
            .name("mean VADER")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Cyan))
            .data(&pts),
    );
    let (lo, hi) = app.range;
    let progress = if pts.len() < app.curve.expected {
        format!(" — sweeping {}/{} ", pts.len(), app.curve.expected)
    } else {
        String::new()
    };
    let title = format!(
        " sentiment vs α: {} samples per point{progress} (g closes) ",
        crate::app::CURVE_SAMPLES
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
