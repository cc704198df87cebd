//! Big digits for presenter mode: α in a five-row block font a room can read.

/// Five rows per glyph, three cells wide.
fn glyph(c: char) -> [&'static str; 5] {
    match c {
        '0' => ["███", "█ █", "█ █", "█ █", "███"],
        '1' => [" █ ", "██ ", " █ ", " █ ", "███"],
        '2' => ["███", "  █", "███", "█  ", "███"],
        '3' => ["███", "  █", " ██", "  █", "███"],
        '4' => ["█ █", "█ █", "███", "  █", "  █"],
        '5' => ["███", "█  ", "███", "  █", "███"],
        '6' => ["███", "█  ", "███", "█ █", "███"],
        '7' => ["███", "  █", "  █", "  █", "  █"],
        '8' => ["███", "█ █", "███", "█ █", "███"],
        '9' => ["███", "█ █", "███", "  █", "███"],
        '.' => ["   ", "   ", "   ", "   ", " █ "],
        '-' => ["   ", "   ", "███", "   ", "   "],
        '=' => ["   ", "███", "   ", "███", "   "],
        'α' => ["    ", "██ █", "█ █ ", "██ █", "    "],
        _ => ["   ", "   ", "   ", "   ", "   "],
    }
}

/// `text` as five lines of block characters (one cell between glyphs).
pub fn render(text: &str) -> [String; 5] {
    let mut rows: [String; 5] = Default::default();
    for (i, c) in text.chars().enumerate() {
        for (row, g) in rows.iter_mut().zip(glyph(c)) {
            if i > 0 {
                row.push(' ');
            }
            row.push_str(g);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_five_rows_of_equal_width() {
        let r = super::render("α=-0.75");
        assert!(r.iter().all(|l| l.chars().count() == r[0].chars().count()));
        assert_eq!(r[2], "█ █      ███ █ █       █ ███");
    }
}
