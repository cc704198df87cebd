//! Where the columns disagree about a fixed text: the tokens whose log-probability spreads
//! most across the alphas.

/// One token's spread across columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// Index of the token in the text (≥ 1: the first token is not scored).
    pub token: usize,
    /// The column where the token is least likely, and where it is most likely.
    pub lowest: usize,
    pub highest: usize,
    /// Highest minus lowest log-probability (nats).
    pub spread: f32,
}

/// The `n` tokens with the widest spread, widest first (ties: earlier token first); tokens
/// every column agrees on are left out.
/// `columns[c][i]` is column c's log-probability of token i + 1.
pub fn biggest(columns: &[&[f32]], n: usize) -> Vec<Difference> {
    let len = columns.iter().map(|c| c.len()).min().unwrap_or(0);
    if columns.len() < 2 {
        return Vec::new();
    }
    let mut all: Vec<Difference> = (0..len)
        .map(|i| {
            let (mut lowest, mut highest) = (0, 0);
            for (c, col) in columns.iter().enumerate() {
                if col[i] < columns[lowest][i] {
                    lowest = c;
                }
                if col[i] > columns[highest][i] {
                    highest = c;
                }
            }
            Difference {
                token: i + 1,
                lowest,
                highest,
                spread: columns[highest][i] - columns[lowest][i],
            }
        })
        .collect();
    all.retain(|d| d.spread > 0.0);
    all.sort_by(|a, b| b.spread.total_cmp(&a.spread).then(a.token.cmp(&b.token)));
    all.truncate(n);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widest_spread_first() {
        let a = [-1.0f32, -2.0, -0.5];
        let b = [-1.5f32, -0.1, -0.5];
        let c = [-1.2f32, -3.0, -0.4];
        let d = biggest(&[&a, &b, &c], 2);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].token, d[0].lowest, d[0].highest), (2, 2, 1));
        assert!((d[0].spread - 2.9).abs() < 1e-6);
        assert_eq!((d[1].token, d[1].lowest, d[1].highest), (1, 1, 0));
        assert!(biggest(&[&a], 3).is_empty());
    }
}
