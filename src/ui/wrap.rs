//! Word wrapping that returns byte ranges into the text, so styled segments (the prompt, the
//! continuation) can be cut out of each line without copying or re-wrapping.

use unicode_width::UnicodeWidthChar;

pub fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
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
