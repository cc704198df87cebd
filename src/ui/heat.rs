//! `g` on a plane: the meter as a heat map over a coarse grid of (α, β), α across and β up as
//! on the pad, each cell coloured by its mean VADER (red negative, green positive) with the
//! value written where it fits, and a marker per column at its point.

use super::slider;
use crate::app::{App, HeatGrid};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, Clear, Widget};

/// Columns for the β labels on the left.
const LABEL_W: u16 = 6;

pub fn render(app: &App, grid: &HeatGrid, r: Rect, buf: &mut Buffer) {
    let (na, nb) = (grid.alphas.len() as u16, grid.betas.len() as u16);
    if r.width < LABEL_W + 2 + na || r.height < 4 + nb || na < 2 || nb < 2 {
        return;
    }
    let measured = grid.cells.iter().flatten().flatten().count();
    let progress = if measured < grid.cells.len() * grid.alphas.len() {
        format!(" — sweeping {measured}/{}", na * nb)
    } else {
        String::new()
    };
    let title = format!(
        " sentiment over (α, β): {} samples per point{progress} ({}) ",
        app.curve.samples,
        super::curve_keys(app)
    );
    Clear.render(r, buf);
    let block = Block::bordered()
        .title(title)
        .border_style(Style::default().fg(Color::Cyan));
    let inner = block.inner(r);
    block.render(r, buf);
    // The grid: every cell the same size, the last row of the panel for the α labels.
    let (cw, ch) = ((inner.width - LABEL_W) / na, (inner.height - 1) / nb);
    let (gx, gy) = (inner.x + LABEL_W, inner.y);
    // Where each value is written (row, first column, end, and its cell's end), so that no
    // marker covers a digit of one.
    let mut values: Vec<(u16, u16, u16, u16)> = Vec::new();
    for (bi, row) in grid.cells.iter().enumerate() {
        // The highest β at the top.
        let y = gy + (nb - 1 - bi as u16) * ch;
        let label = format!("β{:>5}", short(grid.betas[bi].value()));
        buf.set_stringn(inner.x, y + ch / 2, &label, LABEL_W as usize, dim());
        for (ai, cell) in row.iter().enumerate() {
            let x = gx + ai as u16 * cw;
            let area = Rect::new(x, y, cw, ch);
            let (style, text) = match cell {
                Some(e) => (shade(e.mean, app.monochrome), signed(e.mean)),
                None => (dim(), "·".to_string()),
            };
            for yy in area.top()..area.bottom() {
                buf.set_stringn(x, yy, " ".repeat(cw as usize), cw as usize, style);
            }
            let len = text.chars().count() as u16;
            if len <= cw {
                let tx = x + (cw - len) / 2;
                buf.set_stringn(tx, y + ch / 2, &text, cw as usize, style);
                values.push((y + ch / 2, tx, tx + len, x + cw));
            }
        }
    }
    let bottom = gy + nb * ch;
    for (ai, a) in grid.alphas.iter().enumerate() {
        let s = format!("α {}", short(a.value()));
        let x = gx + ai as u16 * cw + cw.saturating_sub(s.chars().count() as u16) / 2;
        buf.set_stringn(x, bottom, &s, cw as usize, dim());
    }
    // The columns' points, where they fall inside the grid (cell centres are the grid's points).
    let (alo, ahi) = (grid.alphas[0].value(), grid.alphas[na as usize - 1].value());
    let (blo, bhi) = (grid.betas[0].value(), grid.betas[nb as usize - 1].value());
    for i in slider::draw_order(app) {
        let c = &app.columns[i];
        let Some(beta) = c.beta else { continue };
        let x = slider::cell_of((alo, ahi), (na - 1) * cw + 1, c.alpha.value());
        let y = slider::cell_of((blo, bhi), (nb - 1) * ch + 1, beta.value());
        if let (Some(x), Some(y)) = (x, y) {
            let (sym, style) = slider::look(app, i);
            let (mut mx, my) = (gx + cw / 2 + x, gy + ch / 2 + (nb - 1) * ch - y);
            // On a value or against it (where it would read as one more digit): a space after
            // it, or before it, in its cell.
            if let Some(&(_, start, end, cell_end)) =
                values.iter().find(|&&(row, start, end, _)| {
                    row == my && (start.saturating_sub(1)..=end).contains(&mx)
                })
            {
                mx = if end + 1 < cell_end {
                    end + 1
                } else if start >= cell_end - cw + 2 {
                    start - 2
                } else {
                    continue;
                };
            }
            let under = buf[(mx, my)].style();
            buf.set_stringn(mx, my, &sym, 1, under.patch(style));
        }
    }
}

fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

/// A cell's colours for a mean in [-1, 1]: red through grey to green (in monochrome, plain).
fn shade(mean: f64, monochrome: bool) -> Style {
    if monochrome {
        return Style::default();
    }
    let t = mean.clamp(-1.0, 1.0);
    let grey = 60.0;
    let (r, g) = if t < 0.0 {
        (grey + (200.0 - grey) * -t, grey * (1.0 + t))
    } else {
        (grey * (1.0 - t), grey + (180.0 - grey) * t)
    };
    Style::default()
        .bg(Color::Rgb(r as u8, g as u8, (grey * (1.0 - t.abs())) as u8))
        .fg(Color::White)
}

/// A mean with its sign, "0.00" for one that rounds to zero (not "-0.00").
fn signed(m: f64) -> String {
    if m.abs() < 0.005 {
        "0.00".to_string()
    } else {
        format!("{m:+.2}")
    }
}

fn short(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shades_run_from_red_to_green() {
        let bg = |m| match shade(m, false).bg {
            Some(Color::Rgb(r, g, _)) => (r, g),
            other => panic!("{other:?}"),
        };
        let (neg, zero, pos) = (bg(-1.0), bg(0.0), bg(1.0));
        assert!(neg.0 > neg.1 && pos.1 > pos.0, "{neg:?} {pos:?}");
        assert_eq!(zero.0, zero.1);
        assert_eq!(shade(0.5, true), Style::default());
        assert_eq!(
            [signed(-0.001), signed(0.25), signed(-0.5)],
            ["0.00", "+0.25", "-0.50"]
        );
    }
}
