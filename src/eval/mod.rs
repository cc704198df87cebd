//! Measuring what α does: attribute scorers, fluency (perplexity), diversity (distinct-n),
//! summary statistics, the sweep, and its plots.

pub mod classifier;
pub mod differences;
pub mod find;
pub mod grid;
pub mod plot;
pub mod points;
pub mod stats;
pub mod sweep;
pub mod vader;

use std::collections::HashSet;

/// Where a plane's other coordinates are held, for a line of text beside α: " (β = 0.5,
/// γ = -0.3)", or nothing on the line.
pub fn held_point(engine: &crate::engine::Engine) -> String {
    held_coordinates(engine).map_or(String::new(), |c| format!(" ({c})"))
}

/// The same bare, "β = 0.5, γ = -0.3", or None on the line.
pub fn held_coordinates(engine: &crate::engine::Engine) -> Option<String> {
    let parts: Vec<String> = [("β", engine.beta()), ("γ", engine.gamma())]
        .into_iter()
        .filter_map(|(name, v)| Some(format!("{name} = {}", v?)))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Scores one text for an attribute.
pub trait Scorer {
    fn name(&self) -> &str;
    fn score(&self, text: &str) -> anyhow::Result<f64>;
    /// The values a score can take (VADER's compound: [−1, 1]), where intervals are cut.
    fn range(&self) -> (f64, f64) {
        (-1.0, 1.0)
    }
}

/// VADER's compound sentiment score in [−1, 1] (vaderSentiment 3.3.2, ported in `vader`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Vader;

impl Scorer for Vader {
    fn name(&self) -> &str {
        "vader"
    }
    fn score(&self, text: &str) -> anyhow::Result<f64> {
        Ok(vader::compound(text))
    }
}

/// distinct-n over a set of texts: distinct word n-grams / all word n-grams. Undefined (NaN,
/// `null` in JSON) when there are none, as after one-word samples: 0 would read as "all repeats".
pub fn distinct_n<'a>(texts: impl IntoIterator<Item = &'a str>, n: usize) -> f64 {
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for t in texts {
        let words: Vec<&str> = t.split_whitespace().collect();
        for g in words.windows(n) {
            seen.insert(g.to_vec());
            total += 1;
        }
    }
    if total == 0 {
        f64::NAN
    } else {
        seen.len() as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_counts_unique_ngrams() {
        assert_eq!(distinct_n(["a b a b"], 1), 0.5);
        assert_eq!(distinct_n(["a b a b"], 2), 2.0 / 3.0);
        assert!(distinct_n(["a"], 2).is_nan());
        assert!(distinct_n(["", ""], 1).is_nan());
    }

    #[test]
    fn vader_signs() {
        let v = Vader;
        assert!(v.score("What a wonderful, lovely day!").unwrap() > 0.5);
        assert!(v.score("This is terrible and awful.").unwrap() < -0.5);
    }
}
