//! A screen buffer as an SVG picture: what `lerpscope tui --screenshot` writes, so the README's
//! pictures of the UI come from the real screen and can be regenerated.
//!
//! Each row is drawn as runs of cells with one style: a background rectangle where the
//! background is not the terminal's, and the run's text stretched to exactly its cells'
//! width (`textLength`), so columns stay aligned whatever monospace font the viewer has.

use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use std::fmt::Write;

/// Cell size in SVG units (a 14 px monospace font).
const CELL_W: f32 = 8.4;
const CELL_H: f32 = 18.0;
const FONT_SIZE: f32 = 14.0;
/// The terminal's own colours: a dark theme.
const DEFAULT_FG: &str = "#d0d0d0";
const DEFAULT_BG: &str = "#1c1c1c";

/// The ANSI 16 colours as xterm draws them.
const ANSI: [&str; 16] = [
    "#000000", "#cd0000", "#00cd00", "#cdcd00", "#4070ee", "#cd00cd", "#00cdcd", "#e5e5e5",
    "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff",
];

pub fn render(buffer: &Buffer) -> String {
    let area = buffer.area;
    let (w, h) = (area.width as f32 * CELL_W, area.height as f32 * CELL_H);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.1} {h:.1}" font-family="'DejaVu Sans Mono', 'Menlo', 'Consolas', monospace" font-size="{FONT_SIZE}">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="{DEFAULT_BG}"/>"#
    );
    for y in 0..area.height {
        let mut x = 0;
        while x < area.width {
            let look = Look::of(&buffer[(area.x + x, area.y + y)]);
            let start = x;
            let mut text = String::new();
            while x < area.width {
                let cell = &buffer[(area.x + x, area.y + y)];
                if Look::of(cell) != look {
                    break;
                }
                text.push_str(cell.symbol());
                x += 1;
            }
            look.draw(&mut svg, start, y, x - start, &text);
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// What a cell looks like, reduced to what the picture shows.
#[derive(PartialEq)]
struct Look {
    fg: String,
    bg: Option<String>,
    bold: bool,
    italic: bool,
    underline: bool,
    dim: bool,
}

impl Look {
    fn of(cell: &ratatui::buffer::Cell) -> Self {
        let m = cell.modifier;
        let mut fg = colour(cell.fg).unwrap_or(DEFAULT_FG.to_string());
        let mut bg = colour(cell.bg);
        if m.contains(Modifier::REVERSED) {
            let back = bg.unwrap_or(DEFAULT_BG.to_string());
            bg = Some(fg);
            fg = back;
        }
        Look {
            fg,
            bg,
            bold: m.contains(Modifier::BOLD),
            italic: m.contains(Modifier::ITALIC),
            underline: m.contains(Modifier::UNDERLINED),
            dim: m.contains(Modifier::DIM),
        }
    }

    fn draw(&self, svg: &mut String, x: u16, y: u16, cells: u16, text: &str) {
        let (px, py, width) = (x as f32 * CELL_W, y as f32 * CELL_H, cells as f32 * CELL_W);
        if let Some(bg) = &self.bg {
            let _ = writeln!(
                svg,
                r#"<rect x="{px:.1}" y="{py:.1}" width="{width:.1}" height="{CELL_H:.1}" fill="{bg}"/>"#
            );
        }
        let trimmed = text.trim_end();
        if trimmed.is_empty() {
            return;
        }
        let leading = trimmed.len() - trimmed.trim_start().len();
        // Spaces are single-width, so the leading ones move the text by whole cells.
        let body = trimmed.trim_start();
        let cells_used = body.chars().count() as f32;
        let tx = px + leading as f32 * CELL_W;
        let mut attrs = format!(r#" fill="{}""#, self.fg);
        if self.bold {
            attrs.push_str(r#" font-weight="bold""#);
        }
        if self.italic {
            attrs.push_str(r#" font-style="italic""#);
        }
        if self.underline {
            attrs.push_str(r#" text-decoration="underline""#);
        }
        if self.dim {
            attrs.push_str(r#" opacity="0.55""#);
        }
        let _ = writeln!(
            svg,
            r#"<text x="{tx:.1}" y="{:.1}" textLength="{:.1}" lengthAdjust="spacingAndGlyphs" xml:space="preserve"{attrs}>{}</text>"#,
            py + CELL_H * 0.75,
            cells_used * CELL_W,
            escape(body)
        );
    }
}

fn colour(c: Color) -> Option<String> {
    let named = |i: usize| Some(ANSI[i].to_string());
    match c {
        Color::Reset => None,
        Color::Black => named(0),
        Color::Red => named(1),
        Color::Green => named(2),
        Color::Yellow => named(3),
        Color::Blue => named(4),
        Color::Magenta => named(5),
        Color::Cyan => named(6),
        Color::Gray => named(7),
        Color::DarkGray => named(8),
        Color::LightRed => named(9),
        Color::LightGreen => named(10),
        Color::LightYellow => named(11),
        Color::LightBlue => named(12),
        Color::LightMagenta => named(13),
        Color::LightCyan => named(14),
        Color::White => named(15),
        Color::Rgb(r, g, b) => Some(format!("#{r:02x}{g:02x}{b:02x}")),
        Color::Indexed(i) => Some(indexed(i)),
    }
}

/// xterm's 256-colour palette: the 16 ANSI colours, a 6×6×6 cube, then 24 greys.
fn indexed(i: u8) -> String {
    match i {
        0..=15 => ANSI[i as usize].to_string(),
        16..=231 => {
            let n = i - 16;
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
            let (r, g, b) = (level(n / 36), level(n / 6 % 6), level(n % 6));
            format!("#{r:02x}{g:02x}{b:02x}")
        }
        _ => {
            let v = 8 + 10 * (i - 232);
            format!("#{v:02x}{v:02x}{v:02x}")
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::style::Style;

    #[test]
    fn draws_styled_runs_aligned_to_cells() {
        let mut buf = Buffer::empty(ratatui::layout::Rect::new(0, 0, 12, 2));
        buf.set_string(0, 0, "a<b", Style::default().fg(Color::Red));
        buf.set_string(
            3,
            0,
            "  ok",
            Style::default().add_modifier(Modifier::REVERSED),
        );
        buf.set_string(2, 1, "α = 0.5", Style::default().fg(Color::Indexed(196)));
        let svg = render(&buf);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Escaped text in the ANSI red, one run.
        assert!(svg.contains(r##"fill="#cd0000">a&lt;b</text>"##), "{svg}");
        // Reversed: the default foreground becomes the background of its four cells.
        assert!(svg.contains(r##"x="25.2" y="0.0" width="33.6" height="18.0" fill="#d0d0d0""##));
        // Leading spaces move the text by whole cells; the width is the text's cells.
        assert!(
            svg.contains(r#"<text x="42.0" y="13.5" textLength="16.8""#),
            "{svg}"
        );
        assert!(svg.contains(r##"textLength="58.8" lengthAdjust="spacingAndGlyphs" xml:space="preserve" fill="#ff0000">α = 0.5"##), "{svg}");
    }

    #[test]
    fn the_palette_matches_xterm() {
        assert_eq!(indexed(16), "#000000");
        assert_eq!(indexed(196), "#ff0000");
        assert_eq!(indexed(231), "#ffffff");
        assert_eq!(indexed(232), "#080808");
        assert_eq!(indexed(255), "#eeeeee");
    }
}
