//! Word wrapping that returns byte ranges into the text, so styled segments (the prompt, the
//! continuation) can be cut out of each line without copying or re-wrapping.

use unicode_width::UnicodeWidthChar;

pub fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `s` in at most `max` cells: cut, with "…" in its last cell, where it is wider.
pub fn fit(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    if max > 0 {
        out.push('…');
    }
    out
}

/// `s` padded with spaces to `cells` cells (as `{:<N}` pads characters, but by width: a
/// wide character such as an emoji takes two).
pub fn pad(s: &str, cells: usize) -> String {
    format!("{s}{}", " ".repeat(cells.saturating_sub(width(s))))
}

/// Lines of at most `max` cells as (start, end) byte ranges of `text`. Breaks at spaces where
/// possible, inside words longer than a line otherwise; `\n` always breaks.
pub fn wrap(text: &str, max: usize) -> Vec<(usize, usize)> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    for para in text.split('\n') {
        let base = start;
        let mut line_start = base;
        let mut line_w = 0;
        // Last space seen on this line: where to break back to.
        let mut last_space: Option<usize> = None;
        for (i, c) in para.char_indices() {
            let pos = base + i;
            let cw = c.width().unwrap_or(0);
            if line_w + cw > max {
                match last_space {
                    Some(sp) if sp > line_start => {
                        out.push((line_start, sp));
                        line_start = sp + 1;
                        line_w = width(&text[line_start..pos]);
                    }
                    _ => {
                        out.push((line_start, pos));
                        line_start = pos;
                        line_w = 0;
                    }
                }
                last_space = None;
            }
            if c == ' ' {
                last_space = Some(pos);
            }
            line_w += cw;
        }
        out.push((line_start, base + para.len()));
        start = base + para.len() + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_and_pad_count_cells_not_characters() {
        assert_eq!(fit("edit α per layer", 40), "edit α per layer");
        assert_eq!(fit("edit α per layer", 8), "edit α …");
        assert_eq!(fit("🍕🍕🍕", 4), "🍕…");
        assert_eq!(fit("abc", 0), "");
        assert_eq!(pad("🍕", 4), "🍕  ");
        assert_eq!(width(&pad("\"🍕\"", 18)), 18);
    }

    fn lines(text: &str, max: usize) -> Vec<&str> {
        wrap(text, max)
            .into_iter()
            .map(|(s, e)| &text[s..e])
            .collect()
    }

    #[test]
    fn wraps_at_spaces_and_newlines() {
        assert_eq!(
            lines("the cat sat on the mat", 8),
            ["the cat", "sat on", "the mat"]
        );
        assert_eq!(lines("ab\ncd", 10), ["ab", "cd"]);
        assert_eq!(lines("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(lines("", 4), [""]);
    }

    #[test]
    fn wide_characters_count_double_and_never_exceed() {
        for text in ["日本語のテキストです", "a😀b😀c😀d", "\u{FFFD}\u{FFFD} x"] {
            for max in 1..8 {
                for l in lines(text, max) {
                    assert!(width(l) <= max.max(2), "{l:?} at {max}");
                }
            }
        }
    }
}
