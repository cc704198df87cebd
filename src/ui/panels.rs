//! The panel under the columns: the token cursor's alternatives and α-scrub, or in score mode
//! the tokens the columns disagree about most.

use super::tokens::token_text;
use crate::app::App;
use crate::eval::differences;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget};

pub fn render(app: &App, r: Rect, buf: &mut ratatui::buffer::Buffer) {
    Clear.render(r, buf);
    if app.cursor.is_some() {
        cursor_panel(app, r, buf);
    } else if app.scored() {
        differences_panel(app, r, buf);
    }
}

fn block(title: String, hint: impl Into<String>) -> Block<'static> {
    let cyan = Style::default().fg(Color::Cyan);
    Block::bordered()
        .border_style(cyan)
        .title(Line::styled(title, cyan.add_modifier(Modifier::BOLD)))
        .title(Line::styled(hint.into(), Style::default().fg(Color::DarkGray)).right_aligned())
}

/// A token as a quoted, visible string.
fn quoted(s: &str) -> String {
    format!("{:?}", s.replace('\n', "⏎"))
}

fn cursor_panel(app: &App, r: Rect, buf: &mut ratatui::buffer::Buffer) {
    let Some(cursor) = app.cursor else {
        return;
    };
    let text = token_text(app, app.focused, cursor.token);
    let info = app.cursor_info();
    let title = match info {
        Some(i) => format!(
            " token {} {} · p {:.3} · entropy {:.2} nats ",
            cursor.token + 1,
            quoted(&text),
            i.prob(),
            i.entropy
        ),
        None => format!(" token {} {} ", cursor.token + 1, quoted(&text)),
    };
    let b = block(title, " ←→ token · ↑↓ pick · Enter forks · Esc closes ");
    let inner = b.inner(r);
    b.render(r, buf);
    if inner.width < 20 || inner.height < 3 {
        return;
    }
    let Some(info) = info else {
        Paragraph::new(if app.scored() {
            "the text's first token: nothing before it to predict it"
        } else {
            "a token given to a fork: no distribution recorded for it here"
        })
        .style(Style::default().fg(Color::DarkGray))
        .render(inner, buf);
        return;
    };
    let list_w = (inner.width * 2 / 5).clamp(20, 40);
    let list = Rect::new(inner.x, inner.y, list_w, inner.height);
    let chart = Rect::new(
        inner.x + list_w + 1,
        inner.y,
        inner.width.saturating_sub(list_w + 1),
        inner.height,
    );
    let chosen = info.id;
    let mut lines = vec![Line::styled(
        "alternatives at this α",
        Style::default().fg(Color::DarkGray),
    )];
    for (k, alt) in info.top.iter().enumerate() {
        let selected = k == cursor.choice;
        let mark = if selected { "▸" } else { " " };
        let own = if alt.id == chosen { " •" } else { "" };
        let style = if selected {
            Style::default().fg(Color::Black).bg(Color::Cyan)
        } else {
            Style::default()
        };
        lines.push(Line::styled(
            format!(
                "{mark}{:>6.1}% {}{own}",
                100.0 * alt.logprob.exp(),
                quoted(&app.vocab.text(alt.id))
            ),
            style,
        ));
    }
    Paragraph::new(lines).render(list, buf);
    if chart.width >= 16 {
        scrub_chart(app, chart, buf);
    }
}

/// p(token | prefix) across α, the columns' alphas marked.
fn scrub_chart(app: &App, r: Rect, buf: &mut ratatui::buffer::Buffer) {
    use ratatui::symbols::Marker;
    use ratatui::widgets::{Axis, Chart, Dataset, GraphType};
    let s = &app.scrub;
    if let Some(e) = &s.error {
        Paragraph::new(format!("scrub failed: {e}"))
            .style(Style::default().fg(Color::Red))
            .render(r, buf);
        return;
    }
    let pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .map(|&(a, p)| (a.value(), p as f64))
        .collect();
    let top = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    let ceiling = if top > 0.5 {
        1.0
    } else {
        (top * 1.2).max(0.01)
    };
    let marks: Vec<Vec<(f64, f64)>> = app
        .columns
        .iter()
        .map(|c| vec![(c.alpha.value(), 0.0), (c.alpha.value(), ceiling)])
        .collect();
    let mut sets = super::alpha_marks(app, &marks);
    sets.push(
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Cyan))
            .data(&pts),
    );
    let (lo, hi) = app.range.bounds();
    let state = if s.complete {
        format!("{} points", pts.len())
    } else if pts.is_empty() {
        "computing…".to_string()
    } else {
        format!("{} points, refining…", pts.len())
    };
    let caption = Rect::new(r.x, r.y, r.width, 1);
    Line::styled(
        format!("p(this token | what precedes it) across α · {state}"),
        Style::default().fg(Color::DarkGray),
    )
    .render(caption, buf);
    let r = Rect::new(r.x, r.y + 1, r.width, r.height.saturating_sub(1));
    Chart::new(sets)
        .x_axis(Axis::default().bounds([lo, hi]).labels([
            Span::raw(super::fmt_range(lo)),
            Span::raw(super::fmt_range((lo + hi) / 2.0)),
            Span::raw(super::fmt_range(hi)),
        ]))
        .y_axis(
            Axis::default()
                .bounds([0.0, ceiling])
                .labels(["0".to_string(), format!("{ceiling:.2}")]),
        )
        .render(r, buf);
}

/// Score mode: the tokens whose log-probability spreads most across the columns.
fn differences_panel(app: &App, r: Rect, buf: &mut ratatui::buffer::Buffer) {
    let b = block(
        " where the columns disagree most (log p, nats) ".to_string(),
        {
            use crate::app::keymap::Action;
            let hint = |a| app.keymap.hint(a);
            format!(
                " {}: token cursor · {}: edit the text · {}: back ",
                hint(Action::Inspect),
                hint(Action::EditPrompt),
                hint(Action::ScoreMode)
            )
        },
    );
    let inner = b.inner(r);
    b.render(r, buf);
    let logprobs: Vec<Vec<f32>> = app
        .columns
        .iter()
        .map(|c| {
            c.pieces
                .iter()
                .skip(1)
                .map(|p| p.info.map_or(f32::NAN, |i| i.logprob))
                .collect()
        })
        .collect();
    if app.columns.iter().any(|c| c.score.is_none()) {
        let failed = app
            .columns
            .iter()
            .any(|c| matches!(c.state, crate::app::ColumnState::Failed(_)));
        Paragraph::new(if failed {
            "a column could not score the text: its error is in it"
        } else {
            "scoring…"
        })
        .style(Style::default().fg(Color::DarkGray))
        .render(inner, buf);
        return;
    }
    if app.columns.len() < 2 {
        Paragraph::new(format!(
            "one column: nothing to compare it with ({} adds a column)",
            app.keymap.hint(crate::app::keymap::Action::AddColumn)
        ))
        .style(Style::default().fg(Color::DarkGray))
        .render(inner, buf);
        return;
    }
    let columns: Vec<&[f32]> = logprobs.iter().map(Vec::as_slice).collect();
    let lines: Vec<Line> = differences::biggest(&columns, inner.height as usize)
        .into_iter()
        .map(|d| {
            let lp = |c: usize| {
                app.columns[c].pieces[d.token]
                    .info
                    .map_or(0.0, |i| i.logprob)
            };
            Line::from(vec![
                Span::raw(format!(
                    "#{:<4} {}",
                    // The token's place in the text, counted from 1 as the cursor and
                    // `score` count it.
                    d.token + 1,
                    super::wrap::pad(
                        &super::wrap::fit(&quoted(&token_text(app, 0, d.token)), 18),
                        18
                    )
                )),
                Span::styled(
                    format!(
                        "{:>8.2} at {:<8}",
                        lp(d.lowest),
                        super::short_point(&app.columns[d.lowest])
                    ),
                    Style::default().fg(Color::Red),
                ),
                Span::styled(
                    format!(
                        "{:>8.2} at {:<8}",
                        lp(d.highest),
                        super::short_point(&app.columns[d.highest])
                    ),
                    Style::default().fg(Color::Green),
                ),
                Span::styled(
                    format!("  spread {:.2}", d.spread),
                    Style::default().fg(Color::DarkGray),
                ),
            ])
        })
        .collect();
    Paragraph::new(lines).render(inner, buf);
}
